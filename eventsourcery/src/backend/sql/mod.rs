//! What the SQLite and PostgreSQL stores share: the embedded migrations, the conversions
//! between API types and columns, and the checks that turn a bad row into a typed error.
//!
//! Both backends store the same columns: JSON as text (PostgreSQL: `jsonb`, read back as
//! text), times as `BIGINT` nanoseconds since the Unix epoch (exact round trips of
//! `SystemTime` from 1677 to 2262), and `u64` versions and positions as `BIGINT`.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::error::ErrorKind;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::{Encode, SqlSafeStr, Type};

use crate::store::StoreError;

/// The table in which the migrator records applied schema versions.
///
/// Not sqlx's default `_sqlx_migrations`, so the event store can live in a database whose
/// application runs its own sqlx migrations without the two version sequences clashing.
pub(super) const MIGRATIONS_TABLE: &str = "eventsourcery_event_store_migrations";

/// The events table.
pub(super) const EVENTS: &str = "eventsourcery_events";
/// The command log table.
pub(super) const COMMANDS: &str = "eventsourcery_commands";
/// The snapshots table.
pub(super) const SNAPSHOTS: &str = "eventsourcery_snapshots";

/// One embedded migration, `(version, description, SQL)`, its SQL read at compile time from
/// `file` under the crate's `migrations/` folder.
macro_rules! migration {
    ($version:literal, $description:literal, $file:literal) => {
        (
            $version,
            $description,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $file)),
        )
    };
}
pub(crate) use migration;

/// One backend's embedded, versioned migrations (also used by the personal data and key
/// stores, each with a migrations table of its own).
pub(crate) struct Schema {
    /// The database, for messages ("SQLite event store").
    pub(crate) database: &'static str,
    /// `(version, description, sql)`, in version order.
    pub(crate) migrations: &'static [(i64, &'static str, &'static str)],
}

impl Schema {
    /// The newest schema version this program knows.
    pub(crate) fn latest(&self) -> i64 {
        self.migrations.last().map_or(0, |m| m.0)
    }

    /// A migrator over the embedded migrations, recording into `table`, so that several
    /// schemas (event store, key store, personal data store) can share one database with
    /// version sequences of their own.
    pub(crate) fn migrator_recording_into(&self, table: &'static str) -> Migrator {
        let migrations = self
            .migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(table);
        migrator
    }

    /// Applies the migrations that the database at `pool` does not have yet, recording them
    /// in `table`. Fails with a "schema too new" error, changing nothing, if a newer program
    /// migrated the database.
    pub(crate) async fn migrate<B: Backend, E: SchemaError>(
        &self,
        pool: &sqlx::Pool<B>,
        table: &'static str,
    ) -> Result<(), E>
    where
        for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
        B::Arguments: sqlx::IntoArguments<B>,
        usize: sqlx::ColumnIndex<B::Row>,
        for<'q> i64: sqlx::Decode<'q, B> + Type<B>,
    {
        let applied = applied_version(pool, table)
            .await
            .map_err(|source| E::database("migrate", source))?;
        self.check_version(applied)?;
        B::run_migrator(pool, self.migrator_recording_into(table))
            .await
            .map_err(|source| E::database("migrate", source))?
            .map_err(|error| self.migrate_failure(error))
    }

    /// Fails with a "schema too new" error if the database was migrated by a newer program.
    pub(crate) fn check_version<E: SchemaError>(&self, applied: Option<i64>) -> Result<(), E> {
        match applied {
            Some(found) if found > self.latest() => {
                Err(E::schema_too_new(self.database, found, self.latest()))
            }
            _ => Ok(()),
        }
    }

    /// Maps a migrator error; an applied version this program does not have means the schema
    /// is newer than the program.
    pub(crate) fn migrate_failure<E: SchemaError>(&self, error: MigrateError) -> E {
        match error {
            MigrateError::VersionMissing(found) if found > self.latest() => {
                E::schema_too_new(self.database, found, self.latest())
            }
            source => E::migrate(self.database, source),
        }
    }
}

/// The newest schema version recorded in the migrations table `table`, or `None` if the
/// database has no such table.
async fn applied_version<B: Backend>(
    pool: &sqlx::Pool<B>,
    table: &'static str,
) -> Result<Option<i64>, sqlx::Error>
where
    for<'c> &'c mut B::Connection: sqlx::Executor<'c, Database = B>,
    B::Arguments: sqlx::IntoArguments<B>,
    usize: sqlx::ColumnIndex<B::Row>,
    for<'q> i64: sqlx::Decode<'q, B> + Type<B>,
{
    // Two statements: both databases resolve every table name of a statement before running
    // it, so one statement cannot ask for the version only if the table exists.
    if !B::has_table(pool, table).await? {
        return Ok(None);
    }
    // `table` is one of this crate's constants, never input.
    let sql = sqlx::AssertSqlSafe(format!("SELECT MAX(version) FROM {table}"));
    sqlx::query_scalar(sql).fetch_one(pool).await
}

/// The error of a layer whose stores migrate a schema: the event store's [`StoreError`], the
/// key and personal data stores' `PersonalError`.
pub(crate) trait SchemaError: Sized {
    /// A driver error while doing `operation`.
    fn database(operation: &'static str, source: sqlx::Error) -> Self;
    /// The database was migrated by a newer program.
    fn schema_too_new(database: &'static str, found: i64, supported: i64) -> Self;
    /// A migration failed.
    fn migrate(database: &'static str, source: MigrateError) -> Self;
}

/// Implements [`SchemaError`] for an error enum with the variants `Database { operation,
/// source }`, `SchemaTooNew { database, found, supported }` and `Migrate { database, source }`.
macro_rules! schema_error {
    ($error:ty) => {
        impl $crate::backend::sql::SchemaError for $error {
            fn database(operation: &'static str, source: sqlx::Error) -> Self {
                Self::Database { operation, source }
            }

            fn schema_too_new(database: &'static str, found: i64, supported: i64) -> Self {
                Self::SchemaTooNew {
                    database,
                    found,
                    supported,
                }
            }

            fn migrate(database: &'static str, source: MigrateError) -> Self {
                Self::Migrate { database, source }
            }
        }
    };
}

schema_error!(StoreError);
schema_error!(crate::personal::PersonalError);

/// What one SQL database does its own way, as sqlx implements `Migrate` once per driver: the
/// generic code of this module (migrations, reads, snapshots, consumer state, key and personal
/// data stores) is written once against it. A new backend implements it in its own module.
pub(crate) trait Backend: sqlx::Database<Connection: Sync> {
    /// Whether the payload column refuses malformed JSON (PostgreSQL's `jsonb`), so that the
    /// text read back needs no check before it is decoded; SQLite's `TEXT` holds whatever was
    /// written into it.
    const REFUSES_MALFORMED_JSON: bool;

    /// Whether the database has the table `table`.
    fn has_table(
        pool: &sqlx::Pool<Self>,
        table: &'static str,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;

    /// A UUID as a parameter: text on SQLite, `uuid` on PostgreSQL.
    type Uuid: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// A list of UUIDs as one parameter: a JSON array for SQLite's `json_each`, a `uuid[]`
    /// on PostgreSQL.
    type Uuids: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// The lower bound of a page of UUIDs, for `key > $1`: on SQLite the empty text before
    /// the first page (text order is UUID order), on PostgreSQL `NULL`.
    type After: for<'q> Encode<'q, Self> + Type<Self> + Send;

    /// `id` as a parameter.
    fn uuid(id: uuid::Uuid) -> Self::Uuid;

    /// `ids` as one parameter.
    fn uuids(ids: impl Iterator<Item = uuid::Uuid>) -> Self::Uuids;

    /// The lower bound of the page after `id`, or of the first page.
    fn after(id: Option<uuid::Uuid>) -> Self::After;

    /// Runs `migrator` on the database of `pool`; the outer error is the connection's.
    fn run_migrator(
        pool: &sqlx::Pool<Self>,
        migrator: Migrator,
    ) -> impl Future<Output = Result<Result<(), MigrateError>, sqlx::Error>> + Send;
}

/// Wraps a driver error with what was being done.
pub(super) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { operation, source }
}

pub(crate) use crate::error::copy_sqlx_error as copy_error;

mod commit;
pub(crate) mod consumers;
mod events;
pub(crate) mod personal;
mod rows;
mod vault;

pub(crate) use commit::{AppendQueue, PendingAppend, PreparedCommit, append_in_group, fail_group};
pub(crate) use events::{EventSql, SqlStore};
pub(crate) use rows::StoreRow;
pub(crate) use vault::{SqlKeyStore, SqlPersonalStore, SqlVaultStore, VaultSql};

/// Which unique constraint an insert violated, if it violated one.
///
/// Recognised from the error kind (SQLSTATE 23505, SQLite extended codes 2067 and 1555),
/// never from the message text. The constraint name is known on PostgreSQL only.
pub(super) fn unique_violation(error: &sqlx::Error) -> Option<Option<&str>> {
    let error = error.as_database_error()?;
    (error.kind() == ErrorKind::UniqueViolation).then(|| error.constraint())
}

/// A `u64` as a `BIGINT` for a write; out of range is an invalid append.
pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::InvalidAppend(format!("{what} {value} is too large to store")))
}

/// A `usize` limit as a `BIGINT`, saturating.
pub(super) fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A `u64` bound of a read as a `BIGINT`, saturating (nothing is stored beyond `i64::MAX`).
pub(super) fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(super) fn nanos(time: SystemTime) -> Result<i64, StoreError> {
    let out_of_range = || StoreError::InvalidAppend(format!("time {time:?} cannot be stored"));
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).map_err(|_| out_of_range()),
        Err(before) => i64::try_from(before.duration().as_nanos())
            .map(|n| -n)
            .map_err(|_| out_of_range()),
    }
}

/// The time `nanos` nanoseconds after (or before) the Unix epoch.
pub(crate) fn time(nanos: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One failure reported to several callers keeps what a caller acts on: the variant where
    /// it carries no data, the I/O error kind, and the message.
    #[test]
    fn copied_errors_keep_their_kind_and_message() {
        assert!(matches!(
            copy_error(&sqlx::Error::PoolTimedOut),
            sqlx::Error::PoolTimedOut
        ));
        assert!(matches!(
            copy_error(&sqlx::Error::PoolClosed),
            sqlx::Error::PoolClosed
        ));
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset by peer",
        ));
        match copy_error(&io) {
            sqlx::Error::Io(copy) => {
                assert_eq!(copy.kind(), std::io::ErrorKind::ConnectionReset);
                assert!(copy.to_string().contains("reset by peer"));
            }
            other => panic!("expected an I/O error, got {other}"),
        }
        let protocol = sqlx::Error::Protocol("unexpected message".into());
        assert_eq!(copy_error(&protocol).to_string(), protocol.to_string());
        let tls = sqlx::Error::Tls("handshake failed".into());
        assert!(copy_error(&tls).to_string().contains("handshake failed"));
    }

    #[test]
    fn times_round_trip_exactly() {
        let now = SystemTime::now();
        let before = UNIX_EPOCH - Duration::from_nanos(1_234_567_891);
        for t in [now, before, UNIX_EPOCH] {
            assert_eq!(nanos(t).map(time).ok(), Some(t));
        }
    }

    #[test]
    fn times_out_of_range_are_rejected() {
        let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 24 * 3600);
        assert!(matches!(nanos(far), Err(StoreError::InvalidAppend(_))));
    }

    /// Checks `check_version` and `migrate_failure` building `E`; `too_new` reads `found` and
    /// `supported` out of a `SchemaTooNew`.
    fn newer_versions_are_schema_too_new<E: SchemaError + std::fmt::Debug>(
        too_new: fn(&E) -> Option<(i64, i64)>,
    ) {
        let schema = Schema {
            database: "test",
            migrations: &[(1, "one", "SELECT 1")],
        };
        assert!(schema.check_version::<E>(None).is_ok());
        assert!(schema.check_version::<E>(Some(1)).is_ok());
        let error = schema
            .check_version::<E>(Some(2))
            .expect_err("version 2 is newer");
        assert_eq!(too_new(&error), Some((2, 1)), "{error:?}");
        let error: E = schema.migrate_failure(MigrateError::VersionMissing(7));
        assert_eq!(too_new(&error), Some((7, 1)), "{error:?}");
    }

    #[test]
    fn a_newer_applied_version_is_schema_too_new() {
        newer_versions_are_schema_too_new::<StoreError>(|error| match error {
            StoreError::SchemaTooNew {
                found, supported, ..
            } => Some((*found, *supported)),
            _ => None,
        });
        newer_versions_are_schema_too_new::<crate::personal::PersonalError>(|error| match error {
            crate::personal::PersonalError::SchemaTooNew {
                found, supported, ..
            } => Some((*found, *supported)),
            _ => None,
        });
    }
}
