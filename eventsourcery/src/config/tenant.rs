//! One set of the three stores per tenant: a schema on PostgreSQL, a directory on SQLite.

use std::fmt;
#[cfg(feature = "sqlite")]
use std::path::PathBuf;

use super::{ConfigError, Settings, Stores};

/// What a tenant name may be, for error messages.
pub(super) const TENANT_NAMES: &str = "1 to 48 characters of a-z, 0-9 and _, starting with a \
     letter, not `public` and not starting with `pg_`";

/// The longest tenant name: PostgreSQL cuts identifiers at 63 bytes, and a name stays well
/// below that.
const MAX_LEN: usize = 48;

/// A tenant: a name that selects one set of the three stores.
///
/// With a tenant, [`Settings::open`] opens, for each store:
///
/// - on PostgreSQL, the schema named after the tenant in the database the URL names, created
///   if missing, with `search_path` set to that schema alone, so every table, function and
///   migration record of the store is the tenant's own;
/// - on SQLite, the file the URL names, but in a directory named after the tenant beside it
///   (`sqlite://data/events.db` becomes `data/{tenant}/events.db`);
/// - `sqlite::memory:` stays in memory, which is private to each opening anyway.
///
/// The event store, the key store and the personal data store all follow the tenant, so one
/// tenant's events, keys and personal data are invisible to another's stores: an erasure,
/// an export or a lookup in one tenant never sees another. The master key is the one the
/// settings name, for every tenant; give each tenant its own by setting
/// [`Settings::master_key`](Settings#structfield.master_key) per tenant.
///
/// What tenants on one PostgreSQL database still share: the database's connections limit,
/// and the notification channel by which appends wake dispatch workers (a worker of one
/// tenant may wake up for another's append, find nothing new and sleep again).
///
/// The name is 1 to 48 characters of `a-z`, `0-9` and `_`, starting with a letter; `public`
/// and names starting with `pg_` are refused, as PostgreSQL reserves them. It is checked when
/// made, so it is safe as a schema and a directory name, and is never quoted into SQL
/// unchecked.
///
/// ```
/// use eventsourcery::config::{Settings, Tenant};
///
/// let acme = Tenant::new("acme").expect("a valid name");
/// assert_eq!(acme.as_str(), "acme");
/// assert!(Tenant::new("Acme; DROP TABLE").is_err());
///
/// let settings = Settings::defaults("data").for_tenant(acme);
/// assert_eq!(settings.tenant.as_ref().map(Tenant::as_str), Some("acme"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

impl Tenant {
    /// The tenant `name`, if it is a valid tenant name.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        let valid = (1..=MAX_LEN).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && name != "public"
            && !name.starts_with("pg_");
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(ConfigError::InvalidValue {
                variable: "tenant",
                value: name.chars().take(MAX_LEN * 2).collect(),
                expected: TENANT_NAMES,
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tenant").field(&self.0).finish()
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Tenant {
    type Err = ConfigError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl Settings {
    /// These settings for `tenant`: the same URLs and keys, with each store moved to the
    /// tenant's schema or directory (see [`Tenant`]).
    pub fn for_tenant(&self, tenant: Tenant) -> Self {
        Self {
            tenant: Some(tenant),
            ..self.clone()
        }
    }

    /// Opens the three stores of the tenant `name`: [`Tenant::new`], then
    /// [`for_tenant`](Self::for_tenant), then [`open`](Self::open).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), eventsourcery::config::ConfigError> {
    /// use eventsourcery::config::Settings;
    ///
    /// let settings = Settings::from_env();
    /// let acme = settings.open_tenant("acme").await?;
    /// let globex = settings.open_tenant("globex").await?;
    /// # let _ = (acme, globex);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open_tenant(&self, name: &str) -> Result<Stores, ConfigError> {
        self.for_tenant(Tenant::new(name)?).open().await
    }

    /// The SQLite file `path`, moved into the tenant's directory beside it.
    #[cfg(feature = "sqlite")]
    pub(super) fn tenant_file(&self, path: PathBuf) -> PathBuf {
        match (&self.tenant, path.file_name()) {
            (Some(tenant), Some(file)) => {
                let dir = path.parent().map(PathBuf::from).unwrap_or_default();
                dir.join(tenant.as_str()).join(file)
            }
            _ => path,
        }
    }

    /// `options` for the tenant's schema (created if missing), or as they are without a tenant.
    #[cfg(feature = "postgres")]
    pub(super) async fn tenant_schema(
        &self,
        variable: &'static str,
        options: sqlx::postgres::PgConnectOptions,
    ) -> Result<sqlx::postgres::PgConnectOptions, ConfigError> {
        let Some(tenant) = &self.tenant else {
            return Ok(options);
        };
        create_schema(&options, tenant)
            .await
            .map_err(|source| ConfigError::TenantSchema { variable, source })?;
        Ok(options.options([("search_path", tenant.as_str())]))
    }
}

/// Creates the schema of `tenant` if it is missing. Two processes creating it at once may
/// both try; the loser's error is dropped once the schema is seen to exist.
#[cfg(feature = "postgres")]
async fn create_schema(
    options: &sqlx::postgres::PgConnectOptions,
    tenant: &Tenant,
) -> Result<(), sqlx::Error> {
    use sqlx::Connection;

    let mut connection = sqlx::PgConnection::connect_with(options).await?;
    // The name was checked by `Tenant::new`: lowercase letters, digits and `_` only.
    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", tenant.as_str());
    let created = sqlx::query(sqlx::AssertSqlSafe(create))
        .execute(&mut connection)
        .await;
    if let Err(error) = created {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        )
        .bind(tenant.as_str())
        .fetch_one(&mut connection)
        .await?;
        if !exists {
            return Err(error);
        }
    }
    connection.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["acme", "a", "tenant_42", &"x".repeat(48)] {
            assert_eq!(Tenant::new(good).expect("a valid name").as_str(), good);
        }
        for bad in [
            "",
            "Acme",
            "4acme",
            "_acme",
            "acme-eu",
            "acme\"; DROP SCHEMA public; --",
            "public",
            "pg_catalog",
            "é",
            &"x".repeat(49),
        ] {
            assert!(Tenant::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_files_move_into_the_tenant_directory() {
        let settings =
            Settings::defaults("data").for_tenant(Tenant::new("acme").expect("a valid name"));
        assert_eq!(
            settings.tenant_file(PathBuf::from("data/events.db")),
            PathBuf::from("data/acme/events.db")
        );
        assert_eq!(
            settings.tenant_file(PathBuf::from("events.db")),
            PathBuf::from("acme/events.db")
        );
        let untenanted = Settings::defaults("data");
        assert_eq!(
            untenanted.tenant_file(PathBuf::from("data/events.db")),
            PathBuf::from("data/events.db")
        );
    }

    #[test]
    fn the_tenant_comes_from_the_environment() {
        let settings = Settings::from_vars(|name| {
            (name == "EVENTSOURCERY_TENANT").then(|| "globex".to_owned())
        });
        assert_eq!(
            settings.tenant,
            Some(Tenant::new("globex").expect("a valid name"))
        );
        let settings = Settings::from_vars(|name| {
            (name == "EVENTSOURCERY_TENANT").then(|| "Globex Inc".to_owned())
        });
        assert!(matches!(
            settings.validate(),
            Err(ConfigError::InvalidValue {
                variable: "EVENTSOURCERY_TENANT",
                ..
            })
        ));
    }
}
