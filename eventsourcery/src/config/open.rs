//! Opening what the settings name: the plan of targets, then each store.

#[cfg(feature = "sqlite")]
use std::path::PathBuf;
use std::sync::Arc;

use super::{
    ConfigError, EVENTS_URL, EventsBackend, KEYS_URL, MasterKeySource, PERSONAL_URL, Settings,
    Stores,
};
use crate::personal::{MasterKey, MasterKeyRing, PersonalError};
#[cfg(feature = "postgres")]
use crate::store::StoreError;
use crate::store::{KeyStore, PersonalStore};
use crate::vault::PersonalVault;

impl Settings {
    /// Opens the event store and the personal data vault, after the checks of
    /// [`validate`](Self::validate).
    pub async fn open(&self) -> Result<Stores, ConfigError> {
        let plan = self.plan()?;
        let mut masters = MasterKeyRing::new(self.master_key(&self.master_key)?);
        for previous in &self.previous_master_keys {
            masters = masters.with_previous(self.master_key(previous)?);
        }
        let backend = self.open_events(plan.events).await?;
        let keys = self.open_vault_store::<dyn KeyStore>(plan.keys).await?;
        let personal = self
            .open_vault_store::<dyn PersonalStore>(plan.personal)
            .await?;
        Ok(Stores {
            events: backend.consumer_store(),
            backend,
            vault: Arc::new(PersonalVault::new(keys, personal, masters)),
            tenant: self.tenant.clone(),
        })
    }

    /// The master key `source` names, generated on first use for the embedded default.
    fn master_key(&self, source: &MasterKeySource) -> Result<MasterKey, ConfigError> {
        match source {
            MasterKeySource::Hex(hex) => MasterKey::from_hex(hex),
            MasterKeySource::File(path) => MasterKey::from_file(path),
            MasterKeySource::GeneratedFile(path) => {
                self.create_data_dir()?;
                MasterKey::load_or_generate(path)
            }
        }
        .map_err(ConfigError::Personal)
    }

    fn create_data_dir(&self) -> Result<(), ConfigError> {
        std::fs::create_dir_all(&self.data_dir).map_err(|source| ConfigError::DataDir {
            path: self.data_dir.clone(),
            source,
        })
    }

    async fn open_events(&self, target: Target) -> Result<EventsBackend, ConfigError> {
        match target {
            #[cfg(feature = "sqlite")]
            Target::SqliteMemory => crate::backend::SqliteStore::in_memory()
                .await
                .map(EventsBackend::Sqlite)
                .map_err(ConfigError::Events),
            #[cfg(feature = "sqlite")]
            Target::SqliteFile(path) => {
                let path = self.tenant_file(path);
                create_parent(&path)?;
                crate::backend::SqliteStore::open(path)
                    .await
                    .map(EventsBackend::Sqlite)
                    .map_err(ConfigError::Events)
            }
            // The event store follows its URL's `sslmode`: it holds no personal data.
            #[cfg(feature = "postgres")]
            Target::Postgres(options) => {
                let options = self.tenant_schema(EVENTS_URL, *options).await?;
                let pool = crate::backend::PostgresStore::pool_options()
                    .connect_with(options)
                    .await
                    .map_err(|source| {
                        ConfigError::Events(StoreError::Database {
                            operation: "connect",
                            source,
                        })
                    })?;
                crate::backend::PostgresStore::from_pool(pool)
                    .await
                    .map(EventsBackend::Postgres)
                    .map_err(ConfigError::Events)
            }
        }
    }

    /// Opens the key store or the personal data store `target` names.
    async fn open_vault_store<S: VaultStore + ?Sized>(
        &self,
        target: Target,
    ) -> Result<Arc<S>, ConfigError> {
        match target {
            #[cfg(feature = "sqlite")]
            Target::SqliteMemory => S::sqlite(None).await,
            #[cfg(feature = "sqlite")]
            Target::SqliteFile(path) => {
                let path = self.tenant_file(path);
                create_parent(&path)?;
                S::sqlite(Some(path)).await
            }
            #[cfg(feature = "postgres")]
            Target::Postgres(options) => {
                let options = self.tenant_schema(S::VARIABLE, *options).await?;
                S::postgres(options, self.plaintext()).await
            }
        }
        .map_err(ConfigError::Personal)
    }
}

/// The key store and the personal data store, as [`Settings::open`] opens them.
#[async_trait::async_trait]
trait VaultStore: Send + Sync {
    /// The setting that names it.
    #[cfg(feature = "postgres")]
    const VARIABLE: &'static str;

    /// Opens it in the SQLite file `path`, or in memory.
    #[cfg(feature = "sqlite")]
    async fn sqlite(path: Option<PathBuf>) -> Result<Arc<Self>, PersonalError>;

    /// Opens it on PostgreSQL.
    #[cfg(feature = "postgres")]
    async fn postgres(
        options: sqlx::postgres::PgConnectOptions,
        plaintext: crate::tls::PlaintextConnections,
    ) -> Result<Arc<Self>, PersonalError>;
}

/// Implements [`VaultStore`] for `dyn $trait` with the backends' `$sqlite` and `$postgres`.
macro_rules! vault_store {
    ($trait:ident, $variable:expr, $sqlite:ident, $postgres:ident) => {
        #[async_trait::async_trait]
        impl VaultStore for dyn $trait {
            #[cfg(feature = "postgres")]
            const VARIABLE: &'static str = $variable;

            #[cfg(feature = "sqlite")]
            async fn sqlite(path: Option<PathBuf>) -> Result<Arc<Self>, PersonalError> {
                Ok(Arc::new(match path {
                    Some(path) => crate::backend::$sqlite::open(path).await?,
                    None => crate::backend::$sqlite::in_memory().await?,
                }))
            }

            #[cfg(feature = "postgres")]
            async fn postgres(
                options: sqlx::postgres::PgConnectOptions,
                plaintext: crate::tls::PlaintextConnections,
            ) -> Result<Arc<Self>, PersonalError> {
                Ok(Arc::new(
                    crate::backend::$postgres::connect_with(options, plaintext).await?,
                ))
            }
        }
    };
}

vault_store!(KeyStore, KEYS_URL, SqliteKeyStore, PostgresKeyStore);
vault_store!(
    PersonalStore,
    PERSONAL_URL,
    SqlitePersonalStore,
    PostgresPersonalStore
);

/// The stores that [`Settings::open`] opens, checked.
pub(super) struct Plan {
    pub(super) events: Target,
    pub(super) keys: Target,
    pub(super) personal: Target,
}

impl Plan {
    /// The first setting, if any, whose store is a PostgreSQL database.
    pub(super) fn first_postgres(&self) -> Option<&'static str> {
        [
            (EVENTS_URL, &self.events),
            (KEYS_URL, &self.keys),
            (PERSONAL_URL, &self.personal),
        ]
        .into_iter()
        .find(|(_, target)| target.is_postgres())
        .map(|(variable, _)| variable)
    }
}

/// One store's database, as its URL names it.
pub(super) enum Target {
    /// `sqlite::memory:`.
    #[cfg(feature = "sqlite")]
    SqliteMemory,
    /// `sqlite://path` (or `sqlite:path`).
    #[cfg(feature = "sqlite")]
    SqliteFile(PathBuf),
    /// `postgres://...`, with the TLS settings applied (boxed: three of these, once).
    #[cfg(feature = "postgres")]
    Postgres(Box<sqlx::postgres::PgConnectOptions>),
}

impl Target {
    fn is_postgres(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// Creates the directory of a SQLite file, if it has one.
#[cfg(feature = "sqlite")]
fn create_parent(path: &std::path::Path) -> Result<(), ConfigError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ConfigError::DataDir {
            path: parent.to_owned(),
            source,
        })?;
    }
    Ok(())
}
