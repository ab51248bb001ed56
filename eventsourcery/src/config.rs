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
//!
//! URLs are `sqlite://path` (a file, created if missing), `sqlite::memory:`, or
//! `postgres://user@host:port/database`. With neither master key variable set, a key file is
//! generated on first run beside the SQLite files, with a warning: production must supply its
//! own key and keep it apart from the databases (a key next to the data it protects protects
//! nothing against someone who copies the directory).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::dispatch::ConsumerStore;
use crate::personal::{KeyStore, MasterKey, PersonalError, PersonalStore, PersonalVault};
use crate::store::StoreError;

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
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
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
            .finish()
    }
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
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
            data_dir,
        }
    }

    /// The settings from the environment, with the embedded defaults for what is not set.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let data_dir = var("EVENTSOURCERY_DATA_DIR")
            .map_or_else(|| PathBuf::from("eventsourcery-data"), PathBuf::from);
        let mut settings = Self::defaults(data_dir);
        if let Some(url) = var("EVENTSOURCERY_EVENTS_URL") {
            settings.events_url = url;
        }
        if let Some(url) = var("EVENTSOURCERY_PERSONAL_URL") {
            settings.personal_url = url;
        }
        if let Some(url) = var("EVENTSOURCERY_KEYS_URL") {
            settings.keys_url = url;
        }
        if let Some(hex) = var(crate::personal::MASTER_KEY_ENV) {
            settings.master_key = MasterKeySource::Hex(hex);
        } else if let Some(path) = var("EVENTSOURCERY_MASTER_KEY_FILE") {
            settings.master_key = MasterKeySource::File(PathBuf::from(path));
        }
        settings
    }

    /// Opens the event store and the personal data vault.
    pub async fn open(&self) -> Result<Stores, ConfigError> {
        let master = match &self.master_key {
            MasterKeySource::Hex(hex) => MasterKey::from_hex(hex),
            MasterKeySource::File(path) => MasterKey::from_file(path),
            MasterKeySource::GeneratedFile(path) => {
                self.create_data_dir()?;
                MasterKey::load_or_generate(path)
            }
        }
        .map_err(ConfigError::Personal)?;
        let backend = self.open_events().await?;
        let keys = self.open_keys().await?;
        let personal = self.open_personal().await?;
        let events: Arc<dyn ConsumerStore> = match &backend {
            #[cfg(feature = "sqlite")]
            EventsBackend::Sqlite(store) => Arc::new(store.clone()),
            #[cfg(feature = "postgres")]
            EventsBackend::Postgres(store) => Arc::new(store.clone()),
        };
        Ok(Stores {
            events,
            backend,
            vault: Arc::new(PersonalVault::from_shared(keys, personal, master)),
        })
    }

    fn create_data_dir(&self) -> Result<(), ConfigError> {
        std::fs::create_dir_all(&self.data_dir).map_err(|source| ConfigError::DataDir {
            path: self.data_dir.clone(),
            source,
        })
    }

    #[cfg(feature = "sqlite")]
    fn sqlite_path<'a>(&self, url: &'a str) -> Result<Option<&'a std::path::Path>, ConfigError> {
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Ok(None);
        };
        let path = std::path::Path::new(rest.trim_start_matches("//"));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| ConfigError::DataDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        Ok(Some(path))
    }

    async fn open_events(&self) -> Result<EventsBackend, ConfigError> {
        let url = &self.events_url;
        #[cfg(feature = "sqlite")]
        if url == "sqlite::memory:" {
            let store = crate::store::SqliteStore::in_memory()
                .await
                .map_err(ConfigError::Events)?;
            return Ok(EventsBackend::Sqlite(store));
        }
        #[cfg(feature = "sqlite")]
        if let Some(path) = self.sqlite_path(url)? {
            let store = crate::store::SqliteStore::open(path)
                .await
                .map_err(ConfigError::Events)?;
            return Ok(EventsBackend::Sqlite(store));
        }
        #[cfg(feature = "postgres")]
        if is_postgres(url) {
            let store = crate::store::PostgresStore::connect(url)
                .await
                .map_err(ConfigError::Events)?;
            return Ok(EventsBackend::Postgres(store));
        }
        Err(unsupported("EVENTSOURCERY_EVENTS_URL", url))
    }

    async fn open_keys(&self) -> Result<Arc<dyn KeyStore>, ConfigError> {
        let url = &self.keys_url;
        #[cfg(feature = "sqlite")]
        if url == "sqlite::memory:" {
            return Ok(Arc::new(
                crate::personal::SqliteKeyStore::in_memory()
                    .await
                    .map_err(ConfigError::Personal)?,
            ));
        }
        #[cfg(feature = "sqlite")]
        if let Some(path) = self.sqlite_path(url)? {
            return Ok(Arc::new(
                crate::personal::SqliteKeyStore::open(path)
                    .await
                    .map_err(ConfigError::Personal)?,
            ));
        }
        #[cfg(feature = "postgres")]
        if is_postgres(url) {
            return Ok(Arc::new(
                crate::personal::PostgresKeyStore::connect(url)
                    .await
                    .map_err(ConfigError::Personal)?,
            ));
        }
        Err(unsupported("EVENTSOURCERY_KEYS_URL", url))
    }

    async fn open_personal(&self) -> Result<Arc<dyn PersonalStore>, ConfigError> {
        let url = &self.personal_url;
        #[cfg(feature = "sqlite")]
        if url == "sqlite::memory:" {
            return Ok(Arc::new(
                crate::personal::SqlitePersonalStore::in_memory()
                    .await
                    .map_err(ConfigError::Personal)?,
            ));
        }
        #[cfg(feature = "sqlite")]
        if let Some(path) = self.sqlite_path(url)? {
            return Ok(Arc::new(
                crate::personal::SqlitePersonalStore::open(path)
                    .await
                    .map_err(ConfigError::Personal)?,
            ));
        }
        #[cfg(feature = "postgres")]
        if is_postgres(url) {
            return Ok(Arc::new(
                crate::personal::PostgresPersonalStore::connect(url)
                    .await
                    .map_err(ConfigError::Personal)?,
            ));
        }
        Err(unsupported("EVENTSOURCERY_PERSONAL_URL", url))
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
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventsBackend {
    /// A SQLite event store.
    #[cfg(feature = "sqlite")]
    Sqlite(crate::store::SqliteStore),
    /// A PostgreSQL event store.
    #[cfg(feature = "postgres")]
    Postgres(crate::store::PostgresStore),
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
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_three_sqlite_files_and_a_generated_key() {
        let settings = Settings::defaults("data");
        assert_eq!(settings.events_url, "sqlite://data/events.db");
        assert_eq!(settings.keys_url, "sqlite://data/keys.db");
        assert_eq!(
            settings.master_key,
            MasterKeySource::GeneratedFile(PathBuf::from("data/master.key"))
        );
    }

    #[test]
    fn debug_hides_passwords_and_keys() {
        let mut settings = Settings::defaults("data");
        settings.events_url = "postgres://app:s3cret@db:5432/events".into();
        settings.master_key = MasterKeySource::Hex("ab".repeat(32));
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("abab"),
            "{debug}"
        );
        assert!(
            debug.contains("postgres://app:***@db:5432/events"),
            "{debug}"
        );
    }
}
