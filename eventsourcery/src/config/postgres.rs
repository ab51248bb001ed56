//! PostgreSQL URLs as connect options, with the TLS settings that apply to them.

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::{ConfigError, Settings, SslMode};

/// The connect options of the PostgreSQL `url` of `variable`: its own `sslmode` and
/// `sslrootcert` where it has them, else those of `settings`, else sqlx's (the `PGSSLMODE`
/// and `PGSSLROOTCERT` variables, then `prefer` and no root certificate). Parsing opens no
/// connection.
pub(super) fn options(
    variable: &'static str,
    url: &str,
    settings: &Settings,
) -> Result<PgConnectOptions, ConfigError> {
    let mut options: PgConnectOptions = url
        .parse()
        .map_err(|source| ConfigError::InvalidUrl { variable, source })?;
    if let Some(mode) = settings.ssl_mode
        && !has_parameter(url, &["sslmode", "ssl-mode"])
    {
        options = options.ssl_mode(pg_ssl_mode(mode));
    }
    if let Some(root) = &settings.ssl_root_cert
        && !has_parameter(url, &["sslrootcert", "ssl-root-cert", "ssl-ca"])
    {
        options = options.ssl_root_cert(root);
    }
    Ok(options)
}

fn pg_ssl_mode(mode: SslMode) -> PgSslMode {
    match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Allow => PgSslMode::Allow,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

/// Whether the query of `url` sets one of `names` (spelled as sqlx matches them).
fn has_parameter(url: &str, names: &[&str]) -> bool {
    let Some((_, query)) = url.split_once('?') else {
        return false;
    };
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .any(|name| names.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{Transport, transport};

    fn settings(mode: Option<SslMode>) -> Settings {
        let mut settings = Settings::defaults("data");
        settings.ssl_mode = mode;
        settings
    }

    #[test]
    fn the_settings_mode_applies_where_the_url_has_none() {
        let url = "postgres://app@db.example.com/keys";
        let options = options("K", url, &settings(Some(SslMode::VerifyFull)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(transport(&options), Transport::Tls { verified: true });
    }

    #[test]
    fn the_url_mode_wins_over_the_settings_mode() {
        for (url, expected) in [
            (
                "postgres://app@db.example.com/keys?sslmode=require",
                Transport::Tls { verified: false },
            ),
            (
                "postgres://app@db.example.com/keys?ssl-mode=disable",
                Transport::Plaintext,
            ),
        ] {
            let options = options("K", url, &settings(Some(SslMode::VerifyFull)))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(transport(&options), expected, "{url}");
        }
    }

    #[test]
    fn every_mode_maps_to_its_sqlx_spelling() {
        for (mode, name) in [
            (SslMode::Disable, "disable"),
            (SslMode::Allow, "allow"),
            (SslMode::Prefer, "prefer"),
            (SslMode::Require, "require"),
            (SslMode::VerifyCa, "verify-ca"),
            (SslMode::VerifyFull, "verify-full"),
        ] {
            assert_eq!(crate::tls::ssl_mode_name(pg_ssl_mode(mode)), name);
            assert_eq!(mode.as_str(), name);
            assert_eq!(name.parse::<SslMode>().ok(), Some(mode));
        }
    }

    #[test]
    fn parameters_are_found_by_name_only() {
        assert!(has_parameter(
            "postgres://h/d?a=1&sslrootcert=/x",
            &["sslrootcert"]
        ));
        assert!(has_parameter(
            "postgres://h/d?ssl-ca=/x",
            &["sslrootcert", "ssl-ca"]
        ));
        assert!(!has_parameter(
            "postgres://h/d?application_name=sslrootcert",
            &["sslrootcert"]
        ));
        assert!(!has_parameter("postgres://h/d", &["sslmode"]));
    }

    #[test]
    fn a_malformed_url_names_its_variable() {
        let error = options(
            "EVENTSOURCERY_KEYS_URL",
            "postgres://app@db:notaport/k",
            &settings(None),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(error.starts_with("EVENTSOURCERY_KEYS_URL"), "{error}");
    }
}
