//! libpq's `sslmode`, as a setting.

use std::fmt;
use std::str::FromStr;

use super::{ConfigError, SSLMODE};

/// libpq's `sslmode`: whether, and how strictly, a PostgreSQL connection uses TLS.
///
/// See [`crate::tls`] (feature `postgres`) for what each mode checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext.
    Disable,
    /// Plaintext (TLS only if the server insists; sqlx does not try it).
    Allow,
    /// TLS if the server offers it, else plaintext: not a protection against an attacker.
    Prefer,
    /// TLS, without checking the server's certificate.
    Require,
    /// TLS, with the server's certificate chained to a trusted root; its name unchecked.
    VerifyCa,
    /// TLS, with the server's certificate chained to a trusted root and naming the host.
    VerifyFull,
}

impl SslMode {
    /// The spelling of the `sslmode` parameter: `verify-full`, say.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values [`SslMode`] parses from.
pub(super) const SSL_MODES: &str = "disable, allow, prefer, require, verify-ca or verify-full";

impl FromStr for SslMode {
    type Err = ConfigError;

    /// Parses libpq's spelling (case-insensitive).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(match value.trim().to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(ConfigError::InvalidValue {
                    variable: SSLMODE,
                    value: value.to_owned(),
                    expected: SSL_MODES,
                });
            }
        })
    }
}
