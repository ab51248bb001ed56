//! Connection URLs as `Debug` may show them: without passwords, secrets or inline keys.

/// `url` with the password of its `user:password@` part and the values of its
/// credential-like query parameters replaced by `***`.
///
/// Credential-like: a parameter whose name holds `password`, `passwd`, `pwd`, `secret` or
/// `token` (`password`, `sslpassword`), the client key (`sslkey`, `ssl-key`, whose value may be
/// the key itself rather than a path), and any parameter whose value is inline PEM. When in
/// doubt it hides more: an `@` in the query makes everything before it count as credentials.
pub(super) fn redact(url: &str) -> String {
    // The query first: hiding the user info may swallow a query that holds an `@`.
    let url = match url.find('?') {
        Some(question) => {
            let (base, query) = url.split_at(question + 1);
            let query: Vec<String> = query.split('&').map(redact_parameter).collect();
            format!("{base}{}", query.join("&"))
        }
        None => url.to_owned(),
    };
    redact_user_info(&url)
}

/// `scheme://user:***@rest` for `scheme://user:password@rest`.
fn redact_user_info(url: &str) -> String {
    let Some(scheme) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme + 3..];
    match rest.rfind('@') {
        Some(at) => {
            let credentials = &rest[..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &rest[at..]
                ),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// `name=***` for a credential-like `name=value`; anything else as it is.
fn redact_parameter(parameter: &str) -> String {
    let Some((name, value)) = parameter.split_once('=') else {
        return parameter.to_owned();
    };
    let name_lower = decode(name).to_ascii_lowercase();
    let sensitive = ["password", "passwd", "pwd", "secret", "token"]
        .iter()
        .any(|word| name_lower.contains(word))
        || matches!(name_lower.as_str(), "sslkey" | "ssl-key")
        || decode(value).trim_start().starts_with("-----BEGIN");
    if sensitive {
        format!("{name}=***")
    } else {
        parameter.to_owned()
    }
}

/// Percent-decoding (and `+` as a space), lossy: only for recognising names and PEM.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn user_info_passwords_are_hidden() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/events"),
            "postgres://app:***@db:5432/events"
        );
        // An `@` inside the password: the last one ends the credentials.
        assert_eq!(
            redact("postgres://app:p@ss@db/events"),
            "postgres://app:***@db/events"
        );
        assert_eq!(
            redact("postgres://app@db/events"),
            "postgres://app@db/events"
        );
        assert_eq!(redact("sqlite://data/keys.db"), "sqlite://data/keys.db");
    }

    #[test]
    fn password_query_parameters_are_hidden() {
        let cases = [
            (
                "postgres://db/keys?user=app&password=s3cret&sslmode=verify-full",
                "postgres://db/keys?user=app&password=***&sslmode=verify-full",
            ),
            (
                "postgres://db/keys?sslmode=verify-full&sslpassword=s3cret",
                "postgres://db/keys?sslmode=verify-full&sslpassword=***",
            ),
            (
                "postgres://db/keys?PASSWORD=s3cret",
                "postgres://db/keys?PASSWORD=***",
            ),
            // A percent-encoded name is recognised too.
            (
                "postgres://db/keys?pass%77ord=s3cret",
                "postgres://db/keys?pass%77ord=***",
            ),
            (
                "postgres://db/keys?auth_token=s3cret&client_secret=s3cret",
                "postgres://db/keys?auth_token=***&client_secret=***",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(redact(url), expected);
        }
    }

    #[test]
    fn client_keys_and_inline_pem_are_hidden_and_paths_of_certificates_kept() {
        assert_eq!(
            redact("postgres://db/k?sslkey=%2Fkeys%2Fclient.key&sslrootcert=/etc/ca.pem"),
            "postgres://db/k?sslkey=***&sslrootcert=/etc/ca.pem"
        );
        assert_eq!(
            redact("postgres://db/k?sslcert=-----BEGIN%20CERTIFICATE-----MIIB"),
            "postgres://db/k?sslcert=***"
        );
        assert_eq!(
            redact("postgres://db/k?ssl-key=-----BEGIN+PRIVATE+KEY-----MIIE"),
            "postgres://db/k?ssl-key=***"
        );
    }

    #[test]
    fn both_at_once_and_odd_shapes_hide_more_never_less() {
        let redacted = redact("postgres://app:s3cret@db/keys?password=other");
        assert_eq!(redacted, "postgres://app:***@db/keys?password=***");
        // A password with an unencoded `?`: nothing of it is shown.
        let redacted = redact("postgres://app:pa?ss@db/keys?password=s3cret");
        assert!(
            !redacted.contains("ss@") && !redacted.contains("s3cret"),
            "{redacted}"
        );
        // An `@` in the query: all before it is taken for credentials.
        let redacted = redact("postgres://db:5432/keys?application_name=a@b&password=s3cret");
        assert!(!redacted.contains("s3cret"), "{redacted}");
        let redacted = redact("postgres://db/keys?password=s3cret&application_name=a@b");
        assert!(!redacted.contains("s3cret"), "{redacted}");
    }
}
