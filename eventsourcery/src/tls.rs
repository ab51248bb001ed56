//! TLS to PostgreSQL, and the rule that keeps the key store and the personal data store off
//! plaintext network connections.
//!
//! Every PostgreSQL URL honours libpq's `sslmode` and `sslrootcert` parameters (and the
//! `PGSSLMODE` and `PGSSLROOTCERT` variables when the URL has none):
//!
//! | `sslmode` | the connection |
//! | --- | --- |
//! | `disable`, `allow` | plaintext |
//! | `prefer` (the default) | TLS if the server offers it, else plaintext: whoever sits in between can decline it for the server |
//! | `require` | TLS, but the server's certificate is not checked: encrypted, not authenticated |
//! | `verify-ca` | TLS, the certificate must chain to `sslrootcert` (or to a Mozilla root); the host name is not checked |
//! | `verify-full` | TLS, the certificate must chain to `sslrootcert` (or to a Mozilla root) and name the host |
//!
//! TLS is rustls (the crate's `tls` feature, part of `postgres`): no system OpenSSL. Without
//! `sslrootcert`, certificates are checked against the Mozilla roots that the crate carries
//! (webpki-roots), not the system store; with it, the file's certificates are trusted as well.
//! So `verify-ca` accepts any publicly trusted certificate, whatever its name: on a network,
//! use `verify-full`.
//!
//! The event store follows its URL's `sslmode`. The key store and the personal data store
//! refuse ([`PlaintextRefused`]) a connection that could carry wrapped keys, blind-index
//! hashes, ciphertexts and the password in plaintext over a network: one to a host that is
//! neither a Unix socket nor a loopback address (`127.0.0.0/8`, `::1`, `localhost`), with an
//! `sslmode` that does not insist on TLS (`disable`, `allow`, `prefer`, or none). Allow it
//! explicitly, for a network you trust (an encrypted tunnel, say), with
//! [`PlaintextConnections::Allow`] or `EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES=1` (see
//! [`config`](crate::config)). Connecting to them with `require` or `verify-ca` over a network
//! logs a warning that the server is not authenticated by its name.
//!
//! The decision is made from the connect options alone, before any connection is opened.

use std::net::IpAddr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

pub use crate::error::PlaintextRefused;

/// The environment variable that allows the key store and the personal data store to be
/// reached over a network without TLS (read by [`Settings::from_env`](crate::config::Settings::from_env)).
pub const ALLOW_PLAINTEXT_ENV: &str = "EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES";

/// Whether a PostgreSQL key store or personal data store may be reached over a network
/// without TLS. A Unix socket or a loopback address is allowed either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PlaintextConnections {
    /// Refused with [`PlaintextRefused`] (the default).
    #[default]
    Refuse,
    /// Allowed: for a network you trust to keep the traffic private (a tunnel, a link of its
    /// own), since wrapped keys, ciphertexts and the password would cross it in plaintext.
    Allow,
}

/// How a connection would travel, decided from its options alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// A Unix socket or a loopback address: the traffic stays on this machine.
    Local,
    /// Over a network, TLS insisted on; `verified` when the server is authenticated by its
    /// name (`verify-full`), not only encrypted (`require`) or chained to a root (`verify-ca`).
    Tls {
        /// Whether the certificate's chain and host name are both checked.
        verified: bool,
    },
    /// Over a network, and plaintext is possible (`disable`, `allow`, `prefer`).
    Plaintext,
}

/// How a connection with these options would travel.
pub fn transport(options: &PgConnectOptions) -> Transport {
    let socket = options.get_socket().is_some();
    classify(options.get_host(), socket, options.get_ssl_mode())
}

/// The rule itself, on plain values: `host` as sqlx holds it (a path for a Unix socket
/// directory), `socket` when a socket path is set apart from the host.
fn classify(host: &str, socket: bool, ssl_mode: PgSslMode) -> Transport {
    if socket || host.starts_with('/') || is_loopback(host) {
        return Transport::Local;
    }
    match ssl_mode {
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer => Transport::Plaintext,
        PgSslMode::Require | PgSslMode::VerifyCa => Transport::Tls { verified: false },
        PgSslMode::VerifyFull => Transport::Tls { verified: true },
    }
}

/// Whether `host` is a loopback address or `localhost`. Other names are not resolved: a name
/// is a network host, whatever it resolves to today.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The `sslmode` parameter's spelling of `mode`.
pub(crate) fn ssl_mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// Refuses a plaintext network connection to the `store` (a key store or personal data
/// store) unless `plaintext` allows it; warns when TLS would not authenticate the server.
pub(crate) fn check_personal_store(
    store: &'static str,
    options: &PgConnectOptions,
    plaintext: PlaintextConnections,
) -> Result<(), PlaintextRefused> {
    let decision = decide(store, options, plaintext);
    match &decision {
        Decision::WarnUnverified => tracing::warn!(
            store,
            host = options.get_host(),
            sslmode = ssl_mode_name(options.get_ssl_mode()),
            "TLS to this store does not check the server's name, so it is not authenticated; \
             use sslmode=verify-full (with sslrootcert for a private CA)"
        ),
        Decision::WarnPlaintext => tracing::warn!(
            store,
            host = options.get_host(),
            "this store is reached over the network without TLS, as allowed by configuration"
        ),
        Decision::Allow | Decision::Refuse(_) => {}
    }
    match decision {
        Decision::Refuse(error) => Err(error),
        _ => Ok(()),
    }
}

/// What [`check_personal_store`] does, without its logging: the pure part, unit tested, and
/// what `Settings::validate` asks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    WarnUnverified,
    WarnPlaintext,
    Refuse(PlaintextRefused),
}

pub(crate) fn decide(
    store: &'static str,
    options: &PgConnectOptions,
    plaintext: PlaintextConnections,
) -> Decision {
    match (transport(options), plaintext) {
        (Transport::Local | Transport::Tls { verified: true }, _) => Decision::Allow,
        (Transport::Tls { verified: false }, _) => Decision::WarnUnverified,
        (Transport::Plaintext, PlaintextConnections::Allow) => Decision::WarnPlaintext,
        (Transport::Plaintext, PlaintextConnections::Refuse) => {
            Decision::Refuse(PlaintextRefused {
                store,
                host: options.get_host().to_owned(),
                port: options.get_port(),
                ssl_mode: ssl_mode_name(options.get_ssl_mode()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options for `url` with the `sslmode` given explicitly, so that no `PG*` variable of the
    /// machine running the tests changes the outcome.
    fn options(url: &str) -> PgConnectOptions {
        url.parse()
            .unwrap_or_else(|e| panic!("{url} does not parse: {e}"))
    }

    const NETWORK_HOSTS: [&str; 6] = [
        "db.example.com",
        "10.1.2.3",
        "192.0.2.10",
        "[2001:db8::1]",
        "localhost.example.com",
        "127.0.0.1.example.com",
    ];

    #[test]
    fn a_network_host_without_tls_is_plaintext_whatever_the_weak_mode() {
        for host in NETWORK_HOSTS {
            for mode in [PgSslMode::Disable, PgSslMode::Allow, PgSslMode::Prefer] {
                assert_eq!(classify(host, false, mode), Transport::Plaintext, "{host}");
            }
        }
        // No `sslmode` at all is sqlx's (and libpq's) default, `prefer`.
        assert_eq!(ssl_mode_name(PgSslMode::default()), "prefer");
    }

    #[test]
    fn tls_modes_over_a_network_are_tls_and_only_verify_full_is_verified() {
        for host in NETWORK_HOSTS {
            assert_eq!(
                classify(host, false, PgSslMode::Require),
                Transport::Tls { verified: false }
            );
            assert_eq!(
                classify(host, false, PgSslMode::VerifyCa),
                Transport::Tls { verified: false }
            );
            assert_eq!(
                classify(host, false, PgSslMode::VerifyFull),
                Transport::Tls { verified: true }
            );
        }
    }

    #[test]
    fn loopback_and_sockets_are_local_in_every_mode() {
        let local = [
            "127.0.0.1",
            "127.10.0.1",
            "localhost",
            "LocalHost.",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "/var/run/postgresql",
        ];
        for host in local {
            for mode in [PgSslMode::Disable, PgSslMode::Prefer, PgSslMode::VerifyFull] {
                assert_eq!(classify(host, false, mode), Transport::Local, "{host}");
            }
        }
        assert_eq!(
            classify("db.example.com", true, PgSslMode::Disable),
            Transport::Local
        );
    }

    #[test]
    fn urls_are_judged_by_what_sqlx_will_connect_to() {
        let cases = [
            (
                "postgres://app@db.example.com/keys?sslmode=prefer",
                Transport::Plaintext,
            ),
            (
                "postgres://app@db.example.com/keys?sslmode=disable",
                Transport::Plaintext,
            ),
            (
                "postgresql://app@10.0.0.5:6432/keys?ssl-mode=allow",
                Transport::Plaintext,
            ),
            (
                "postgres://app@db.example.com/keys?sslmode=require",
                Transport::Tls { verified: false },
            ),
            (
                "postgres://app@db.example.com/keys?sslmode=verify-ca&sslrootcert=/ca.pem",
                Transport::Tls { verified: false },
            ),
            (
                "postgres://app@db.example.com/keys?sslmode=verify-full",
                Transport::Tls { verified: true },
            ),
            (
                "postgres://app@127.0.0.1/keys?sslmode=disable",
                Transport::Local,
            ),
            (
                "postgres://app@localhost:5433/keys?sslmode=disable",
                Transport::Local,
            ),
            (
                "postgres://app@[::1]/keys?sslmode=disable",
                Transport::Local,
            ),
            // A socket directory, in the host or as the `host` parameter.
            (
                "postgres://app@%2Fvar%2Frun%2Fpostgresql/keys?sslmode=disable",
                Transport::Local,
            ),
            (
                "postgres:///keys?host=/var/run/postgresql&sslmode=disable",
                Transport::Local,
            ),
            // The `host` parameter wins over the URL's host: judged by where it goes.
            (
                "postgres://app@127.0.0.1/keys?host=db.example.com&sslmode=disable",
                Transport::Plaintext,
            ),
            (
                "postgres://app@db.example.com/keys?hostaddr=127.0.0.1&sslmode=disable",
                Transport::Local,
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(transport(&options(url)), expected, "{url}");
        }
    }

    #[test]
    fn the_personal_stores_refuse_plaintext_over_a_network_with_a_way_out() {
        let url = "postgres://app:s3cret@db.example.com:6432/keys?sslmode=prefer";
        let decision = decide("key store", &options(url), PlaintextConnections::Refuse);
        let Decision::Refuse(error) = decision else {
            panic!("expected a refusal, got {decision:?}");
        };
        assert_eq!(error.host, "db.example.com");
        assert_eq!(error.port, 6432);
        assert_eq!(error.ssl_mode, "prefer");
        let text = error.to_string();
        for needed in [
            "key store",
            "db.example.com:6432",
            "sslmode=verify-full",
            "sslrootcert",
            ALLOW_PLAINTEXT_ENV,
        ] {
            assert!(text.contains(needed), "{needed} missing from: {text}");
        }
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(
            decide("key store", &options(url), PlaintextConnections::Allow),
            Decision::WarnPlaintext
        );
    }

    #[test]
    fn the_personal_stores_accept_tls_and_local_connections() {
        let allowed = [
            (
                "postgres://app@db.example.com/k?sslmode=verify-full",
                Decision::Allow,
            ),
            (
                "postgres://app@db.example.com/k?sslmode=require",
                Decision::WarnUnverified,
            ),
            (
                "postgres://app@db.example.com/k?sslmode=verify-ca",
                Decision::WarnUnverified,
            ),
            (
                "postgres://app@127.0.0.1/k?sslmode=disable",
                Decision::Allow,
            ),
            ("postgres://app@localhost/k?sslmode=prefer", Decision::Allow),
        ];
        for (url, expected) in allowed {
            let decision = decide(
                "personal data store",
                &options(url),
                PlaintextConnections::Refuse,
            );
            assert_eq!(decision, expected, "{url}");
            assert!(
                check_personal_store(
                    "personal data store",
                    &options(url),
                    PlaintextConnections::Refuse
                )
                .is_ok()
            );
        }
    }
}
