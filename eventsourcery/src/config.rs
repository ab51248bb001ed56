//! Opening the three stores from configuration: environment variables, with embedded
//! defaults for a first run.
//!
//! | variable | default | what |
//! | --- | --- | --- |
//! | `EVENTSOURCERY_DATA_DIR` | `./eventsourcery-data` | where the default SQLite files and key file go |
//! | `EVENTSOURCERY_EVENTS_URL` | `sqlite://{data dir}/events.db` | the event store |
//! | `EVENTSOURCERY_PERSONAL_URL` | `sqlite://{data dir}/personal.db` | the personal data store |
//! | `EVENTSOURCERY_KEYS_URL` | `sqlite://{data dir}/keys.db` | the encryption key store |
//! | `EVENTSOURCERY_MASTER_KEY` | none | the master key, 64 hex digits |
//! | `EVENTSOURCERY_MASTER_KEY_FILE` | `{data dir}/master.key` | a file holding the master key |
//! | `EVENTSOURCERY_PREVIOUS_MASTER_KEYS` | none | previous master keys during a rotation, comma-separated hex |
//! | `EVENTSOURCERY_PREVIOUS_MASTER_KEY_FILES` | none | files holding previous master keys, separated as in `PATH` |
//! | `EVENTSOURCERY_SSLMODE` | none | the `sslmode` of PostgreSQL URLs that set none |
//! | `EVENTSOURCERY_SSLROOTCERT` | none | the `sslrootcert` of PostgreSQL URLs that set none |
//! | `EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES` | `0` | `1` lets the key and personal data stores be reached over a network without TLS |
//! | `EVENTSOURCERY_TENANT` | none | the tenant whose stores to open: a schema or directory of its own per store (see [`Tenant`]) |
//!
//! URLs are `sqlite://path` (a file, created if missing), `sqlite::memory:`, or
//! `postgres://user@host:port/database`, with libpq's `sslmode` and `sslrootcert` parameters
//! for TLS (see [`crate::tls`] for what each mode checks). The key store and the personal data
//! store are refused a network host without TLS unless
//! `EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES=1`; loopback and Unix sockets need no TLS.
//!
//! One deployment can serve many tenants, each with its own three stores:
//! [`Settings::open_tenant`] opens them by name (see [`Tenant`] for what is kept apart and
//! what is shared).
//!
//! With neither master key variable set, a key file is generated on first run beside the
//! SQLite files, with a warning: production must supply its own key and keep it apart from the
//! databases (a key next to the data it protects protects nothing against someone who copies
//! the directory). That is for an all-SQLite first run only: with any PostgreSQL URL, a master
//! key must be configured ([`ConfigError::MasterKeyRequired`]), since several processes, or one
//! on an ephemeral disk, would each generate a key of their own.
//!
//! Guide: [configuration](crate::docs::configuration) and
//! [deploying the three stores](crate::docs::deploying_the_three_stores).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::dispatch::ConsumerStore;
use crate::personal::PersonalError;
use crate::store::StoreError;
use crate::vault::PersonalVault;

mod open;
#[cfg(feature = "postgres")]
mod postgres;
mod redact;
mod ssl_mode;
mod tenant;

use open::{Plan, Target};
use redact::redact;
use ssl_mode::SSL_MODES;
pub use ssl_mode::SslMode;
pub use tenant::Tenant;

/// The variable naming the event store.
const EVENTS_URL: &str = "EVENTSOURCERY_EVENTS_URL";
/// The variable naming the personal data store.
const PERSONAL_URL: &str = "EVENTSOURCERY_PERSONAL_URL";
/// The variable naming the key store.
const KEYS_URL: &str = "EVENTSOURCERY_KEYS_URL";
/// The variable with the default `sslmode` of PostgreSQL URLs.
const SSLMODE: &str = "EVENTSOURCERY_SSLMODE";
/// The variable with the default `sslrootcert` of PostgreSQL URLs.
const SSLROOTCERT: &str = "EVENTSOURCERY_SSLROOTCERT";
/// The variable that allows plaintext to the key and personal data stores over a network.
const ALLOW_PLAINTEXT: &str = "EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES";
/// The variable naming the tenant whose stores to open.
const TENANT: &str = "EVENTSOURCERY_TENANT";
/// Previous master keys, as comma-separated hex.
const PREVIOUS_MASTER_KEYS: &str = "EVENTSOURCERY_PREVIOUS_MASTER_KEYS";
/// Files holding previous master keys, separated as in `PATH`.
const PREVIOUS_MASTER_KEY_FILES: &str = "EVENTSOURCERY_PREVIOUS_MASTER_KEY_FILES";

/// The configuration could not be read, or a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL names a database this program cannot open.
    #[error(
        "{variable}: unsupported URL scheme in `{scheme}://...`; expected sqlite:// or postgres://{hint}"
    )]
    UnsupportedUrl {
        /// The setting.
        variable: &'static str,
        /// The scheme found (the rest of the URL, which may hold a password, is not shown).
        scheme: String,
        /// What feature to enable, if that is the problem.
        hint: &'static str,
    },
    /// The event store failed to open.
    #[error("opening the event store: {0}")]
    Events(#[source] StoreError),
    /// The key store, the personal data store or the master key failed.
    #[error("opening the personal data stores: {0}")]
    Personal(#[source] PersonalError),
    /// The data directory could not be created.
    #[error("creating the data directory {}: {source}", .path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A setting holds a value it cannot take.
    #[error("{variable}: `{value}` is not a valid value; expected {expected}")]
    InvalidValue {
        /// The setting.
        variable: &'static str,
        /// The value found (settings with secrets are never reported with their value).
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// A store is on PostgreSQL but no master key is configured, so one would be generated
    /// into a local file.
    #[error(
        "{variable} is a PostgreSQL URL, but no master key is configured: set \
         EVENTSOURCERY_MASTER_KEY (64 hex digits, e.g. from `openssl rand -hex 32`) or \
         EVENTSOURCERY_MASTER_KEY_FILE (a file readable by its owner only); a generated key file \
         is only for an all-SQLite first run, since several processes, or one on an ephemeral \
         disk, would each generate another key and could not read each other's personal data"
    )]
    MasterKeyRequired {
        /// The first setting that names a PostgreSQL database.
        variable: &'static str,
    },
    /// A PostgreSQL URL does not parse (the URL itself, which may hold a password, is not
    /// shown).
    #[cfg(feature = "postgres")]
    #[error("{variable}: not a valid PostgreSQL URL: {source}")]
    InvalidUrl {
        /// The setting.
        variable: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema of the tenant could not be created in the database a setting names.
    #[cfg(feature = "postgres")]
    #[error("{variable}: creating the tenant's schema: {source}")]
    TenantSchema {
        /// The setting.
        variable: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The key store or the personal data store would be reached over a network without TLS.
    #[cfg(feature = "postgres")]
    #[error("{variable}: {source}")]
    PlaintextConnection {
        /// The setting.
        variable: &'static str,
        /// Where, and how to enable TLS.
        #[source]
        source: crate::tls::PlaintextRefused,
    },
}

/// Where the stores are: read from the environment, or set by hand.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Where default files go.
    pub data_dir: PathBuf,
    /// The event store URL.
    pub events_url: String,
    /// The personal data store URL.
    pub personal_url: String,
    /// The key store URL.
    pub keys_url: String,
    /// The master key source.
    pub master_key: MasterKeySource,
    /// Previous master keys, which still unwrap the data keys they wrapped until a rotation
    /// re-wrapped them (`EVENTSOURCERY_PREVIOUS_MASTER_KEYS`, comma-separated hex;
    /// `EVENTSOURCERY_PREVIOUS_MASTER_KEY_FILES`, paths separated as in `PATH`). Empty by
    /// default. See [`PersonalVault::rotate_master_key`] for the procedure.
    pub previous_master_keys: Vec<MasterKeySource>,
    /// The `sslmode` of the PostgreSQL URLs that set none (`EVENTSOURCERY_SSLMODE`); with
    /// `None`, sqlx's default applies (`PGSSLMODE`, else `prefer`).
    pub ssl_mode: Option<SslMode>,
    /// The `sslrootcert` of the PostgreSQL URLs that set none (`EVENTSOURCERY_SSLROOTCERT`):
    /// a PEM file of the certificate authorities to trust, besides the Mozilla roots.
    pub ssl_root_cert: Option<PathBuf>,
    /// Lets the key store and the personal data store be reached over a network without TLS
    /// (`EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES=1`); `false` by default. Only for a
    /// network you trust to keep wrapped keys, ciphertexts and passwords private.
    pub allow_plaintext_personal_stores: bool,
    /// The tenant whose stores to open (`EVENTSOURCERY_TENANT`), or `None` for the stores the
    /// URLs name as they are. See [`Tenant`] for where each tenant's data goes.
    pub tenant: Option<Tenant>,
    /// Values of the environment that did not parse, reported by `validate` and `open`.
    invalid: Vec<(&'static str, String, &'static str)>,
}

/// The values a yes-or-no setting parses from.
const FLAGS: &str = "1, true, yes or on; or 0, false, no or off";

fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Where the master key comes from.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MasterKeySource {
    /// The hex value of `EVENTSOURCERY_MASTER_KEY` (never shown by `Debug`).
    Hex(String),
    /// A file that must exist.
    File(PathBuf),
    /// A file generated on first run (the embedded default, with a warning).
    GeneratedFile(PathBuf),
}

impl fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hex(_) => f.write_str("Hex(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::GeneratedFile(path) => f.debug_tuple("GeneratedFile").field(path).finish(),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("events_url", &redact(&self.events_url))
            .field("personal_url", &redact(&self.personal_url))
            .field("keys_url", &redact(&self.keys_url))
            .field("master_key", &self.master_key)
            .field("previous_master_keys", &self.previous_master_keys)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field(
                "allow_plaintext_personal_stores",
                &self.allow_plaintext_personal_stores,
            )
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The embedded defaults for `data_dir`: three SQLite files and a generated key file.
    pub fn defaults(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let file = |name: &str| format!("sqlite://{}", data_dir.join(name).display());
        Self {
            events_url: file("events.db"),
            personal_url: file("personal.db"),
            keys_url: file("keys.db"),
            master_key: MasterKeySource::GeneratedFile(data_dir.join("master.key")),
            previous_master_keys: Vec::new(),
            data_dir,
            ssl_mode: None,
            ssl_root_cert: None,
            allow_plaintext_personal_stores: false,
            tenant: None,
            invalid: Vec::new(),
        }
    }

    /// The settings from the environment, with the embedded defaults for what is not set.
    ///
    /// Never fails: a value that does not parse (`EVENTSOURCERY_SSLMODE=strict`, say) is
    /// reported by [`validate`](Self::validate) and [`open`](Self::open).
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The settings from `var`, a lookup of environment variables.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let data_dir = var("EVENTSOURCERY_DATA_DIR")
            .map_or_else(|| PathBuf::from("eventsourcery-data"), PathBuf::from);
        let mut settings = Self::defaults(data_dir);
        if let Some(url) = var(EVENTS_URL) {
            settings.events_url = url;
        }
        if let Some(url) = var(PERSONAL_URL) {
            settings.personal_url = url;
        }
        if let Some(url) = var(KEYS_URL) {
            settings.keys_url = url;
        }
        if let Some(hex) = var(crate::personal::MASTER_KEY_ENV) {
            settings.master_key = MasterKeySource::Hex(hex);
        } else if let Some(path) = var("EVENTSOURCERY_MASTER_KEY_FILE") {
            settings.master_key = MasterKeySource::File(PathBuf::from(path));
        }
        if let Some(keys) = var(PREVIOUS_MASTER_KEYS) {
            settings.previous_master_keys.extend(
                keys.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| MasterKeySource::Hex(k.to_owned())),
            );
        }
        if let Some(paths) = var(PREVIOUS_MASTER_KEY_FILES) {
            settings.previous_master_keys.extend(
                std::env::split_paths(&paths)
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(MasterKeySource::File),
            );
        }
        if let Some(mode) = var(SSLMODE) {
            match mode.parse() {
                Ok(mode) => settings.ssl_mode = Some(mode),
                Err(_) => settings.invalid.push((SSLMODE, mode, SSL_MODES)),
            }
        }
        if let Some(path) = var(SSLROOTCERT) {
            settings.ssl_root_cert = Some(PathBuf::from(path));
        }
        if let Some(name) = var(TENANT) {
            match Tenant::new(&name) {
                Ok(tenant) => settings.tenant = Some(tenant),
                Err(_) => settings.invalid.push((TENANT, name, tenant::TENANT_NAMES)),
            }
        }
        if let Some(flag) = var(ALLOW_PLAINTEXT) {
            match parse_flag(&flag) {
                Some(allow) => settings.allow_plaintext_personal_stores = allow,
                None => settings.invalid.push((ALLOW_PLAINTEXT, flag, FLAGS)),
            }
        }
        settings
    }

    /// Checks the settings without opening anything, connecting anywhere or reading a file:
    /// values that did not parse, URLs this build cannot open, a PostgreSQL store without a
    /// configured master key, and a key or personal data store that would be reached over a
    /// network without TLS. [`open`](Self::open) runs the same checks first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.plan().map(|_| ())
    }

    /// What [`open`](Self::open) will open, once every check passed.
    fn plan(&self) -> Result<Plan, ConfigError> {
        if let Some((variable, value, expected)) = self.invalid.first() {
            return Err(ConfigError::InvalidValue {
                variable,
                value: value.clone(),
                expected,
            });
        }
        let plan = Plan {
            events: self.target(EVENTS_URL, &self.events_url)?,
            keys: self.target(KEYS_URL, &self.keys_url)?,
            personal: self.target(PERSONAL_URL, &self.personal_url)?,
        };
        if matches!(self.master_key, MasterKeySource::GeneratedFile(_))
            && let Some(variable) = plan.first_postgres()
        {
            return Err(ConfigError::MasterKeyRequired { variable });
        }
        #[cfg(feature = "postgres")]
        for (variable, store, target) in [
            (KEYS_URL, "key store", &plan.keys),
            (PERSONAL_URL, "personal data store", &plan.personal),
        ] {
            if let Target::Postgres(options) = target
                && let crate::tls::Decision::Refuse(source) =
                    crate::tls::decide(store, options, self.plaintext())
            {
                return Err(ConfigError::PlaintextConnection { variable, source });
            }
        }
        Ok(plan)
    }

    /// What `url`, the value of `variable`, names.
    fn target(&self, variable: &'static str, url: &str) -> Result<Target, ConfigError> {
        #[cfg(feature = "sqlite")]
        if url == "sqlite::memory:" {
            return Ok(Target::SqliteMemory);
        }
        #[cfg(feature = "sqlite")]
        if let Some(rest) = url.strip_prefix("sqlite:") {
            return Ok(Target::SqliteFile(PathBuf::from(
                rest.trim_start_matches("//"),
            )));
        }
        #[cfg(feature = "postgres")]
        if is_postgres(url) {
            return postgres::options(variable, url, self).map(|o| Target::Postgres(Box::new(o)));
        }
        Err(unsupported(variable, url))
    }

    #[cfg(feature = "postgres")]
    fn plaintext(&self) -> crate::tls::PlaintextConnections {
        if self.allow_plaintext_personal_stores {
            crate::tls::PlaintextConnections::Allow
        } else {
            crate::tls::PlaintextConnections::Refuse
        }
    }
}

#[cfg(feature = "postgres")]
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn unsupported(variable: &'static str, url: &str) -> ConfigError {
    let scheme = url.split("://").next().unwrap_or_default().to_owned();
    let hint = match scheme.as_str() {
        "sqlite" => " (enable the `sqlite` feature)",
        "postgres" | "postgresql" => " (enable the `postgres` feature)",
        _ => "",
    };
    ConfigError::UnsupportedUrl {
        variable,
        scheme,
        hint,
    }
}

/// The event store as its concrete type, for read-model tables kept in its database.
///
/// Match on it, or ask with [`sqlite`](Self::sqlite) and [`postgres`](Self::postgres), which
/// need no arm for the backends a build leaves out.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventsBackend {
    /// A SQLite event store.
    #[cfg(feature = "sqlite")]
    Sqlite(crate::backend::SqliteStore),
    /// A PostgreSQL event store.
    #[cfg(feature = "postgres")]
    Postgres(crate::backend::PostgresStore),
}

impl EventsBackend {
    /// The SQLite store, if the event store is one.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&self) -> Option<&crate::backend::SqliteStore> {
        match self {
            Self::Sqlite(store) => Some(store),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The PostgreSQL store, if the event store is one.
    #[cfg(feature = "postgres")]
    pub fn postgres(&self) -> Option<&crate::backend::PostgresStore> {
        match self {
            Self::Postgres(store) => Some(store),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The backend's name: `"sqlite"` or `"postgres"`.
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }

    /// The store, as the event store and consumer state a [`Dispatcher`](crate::Dispatcher)
    /// and a [`CommandBus`](crate::CommandBus) take.
    pub fn consumer_store(&self) -> Arc<dyn ConsumerStore> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(store) => Arc::new(store.clone()),
            #[cfg(feature = "postgres")]
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }
}

/// The opened stores: the event store (with its consumer state) and the personal data vault.
#[derive(Clone)]
#[non_exhaustive]
pub struct Stores {
    /// The event store.
    pub events: Arc<dyn ConsumerStore>,
    /// The same store as its concrete type.
    pub backend: EventsBackend,
    /// The personal data vault over the key store and the personal data store.
    pub vault: Arc<PersonalVault>,
    /// The tenant these stores belong to, if they were opened for one.
    pub tenant: Option<Tenant>,
}

crate::redact::debug_fields!(Stores { backend.name(), tenant, vault });

#[cfg(test)]
mod tests;
