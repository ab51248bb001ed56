//! The PostgreSQL key store and personal data store: by default two databases of their own,
//! apart from the event store's.

use std::fmt;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool};
use uuid::Uuid;

use crate::backend::sql::personal::{self as sql, db};
use crate::backend::sql::{Schema, VaultSql, migration};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::{IndexEntry, PersonalRecord};
use crate::tls::{self, PlaintextConnections};

/// The personal data store's embedded migrations, newest last.
const PERSONAL_SCHEMA: Schema = Schema {
    database: "PostgreSQL personal data store",
    migrations: &[
        migration!(
            1,
            "personal data store",
            "postgres/personal/0001_personal_store.sql"
        ),
        migration!(
            2,
            "erased subjects",
            "postgres/personal/0002_erased_subjects.sql"
        ),
        migration!(3, "audit log", "postgres/personal/0003_audit_log.sql"),
    ],
};

/// The key and personal data stores' reads in PostgreSQL's dialect: UUIDs are `uuid`,
/// selected as text, a list of them is a `uuid[]`, and the first page has no lower bound.
pub(super) const VAULT_SQL: VaultSql = VaultSql {
    keys: "SELECT subject::text, version, wrapped, master_key_id FROM eventsourcery_data_keys \
        WHERE subject = ANY($1)",
    erasures: "SELECT subject::text, erased_at_ns, reason, last_key_version, re_enrolled \
        FROM eventsourcery_erasures WHERE subject = ANY($1)",
    keys_after: "SELECT subject::text, version, wrapped, master_key_id \
        FROM eventsourcery_data_keys WHERE $1::uuid IS NULL OR subject > $1 \
        ORDER BY subject LIMIT $2",
    records: "SELECT reference::text, subject::text, field, ciphertext \
        FROM eventsourcery_personal_data WHERE reference = ANY($1)",
    by_subject: "SELECT reference::text, subject::text, field, ciphertext \
        FROM eventsourcery_personal_data WHERE subject = $1 ORDER BY created_at_ns, reference",
    find: "SELECT DISTINCT subject::text FROM eventsourcery_blind_index WHERE hash = $1 \
        ORDER BY 1",
    records_after: "SELECT reference::text, subject::text, field, ciphertext \
        FROM eventsourcery_personal_data WHERE $1::uuid IS NULL OR reference > $1 \
        ORDER BY reference LIMIT $2",
};

/// The SQLSTATE with which the put function refuses an index entry below the index floor.
const STALE_INDEX_KEY: &str = "ES001";

/// A pool on the database that `options` name, with the event store's pool options, once
/// the transport to it is allowed for `store` (checked before anything is sent).
pub(super) async fn connect(
    store: &'static str,
    options: PgConnectOptions,
    plaintext: PlaintextConnections,
) -> Result<PgPool, PersonalError> {
    tls::check_personal_store(store, &options, plaintext)?;
    crate::backend::PostgresStore::pool_options()
        .connect_with(options)
        .await
        .map_err(db("connect"))
}

/// Shows where a pool connects, without credentials.
pub(super) fn describe(name: &str, pool: &PgPool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let options = pool.connect_options();
    f.debug_struct(name)
        .field("host", &options.get_host())
        .field("database", &options.get_database())
        .finish_non_exhaustive()
}

/// The `Debug` impl and the constructors of a PostgreSQL personal data backend store (a struct
/// with one field, `pool`), identical but for its name, URL example and schema.
macro_rules! postgres_store {
    ($store:ident, $what:literal, $example:literal, $schema:expr, $migrations:expr, $tables:expr) => {
        impl crate::backend::sql::SqlVaultStore for $store {
            type Db = sqlx::Postgres;
            const SQL: &'static crate::backend::sql::VaultSql = &super::personal::VAULT_SQL;

            type Writer = ();

            fn pool(&self) -> &PgPool {
                &self.pool
            }

            async fn begin_write(
                &self,
                operation: &'static str,
            ) -> Result<((), sqlx::Transaction<'static, sqlx::Postgres>), PersonalError> {
                Ok(((), self.pool.begin().await.map_err(db(operation))?))
            }
        }

        impl fmt::Debug for $store {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                describe(stringify!($store), &self.pool, f)
            }
        }

        impl $store {
            #[doc = concat!("Connects to the database at `url` (`", $example, "`) with a pool of up")]
            /// to 10 connections, and migrates its schema.
            ///
            /// Fails with [`PersonalError::SchemaTooNew`] if a newer program migrated the
            /// database, and with [`PersonalError::PlaintextConnection`], before connecting,
            /// if the URL names a network host without TLS (see [`crate::tls`]).
            pub async fn connect(url: &str) -> Result<Self, PersonalError> {
                let options = url.parse().map_err(db("connect"))?;
                Self::connect_with(options, PlaintextConnections::Refuse).await
            }

            /// Connects like [`connect`](Self::connect), with connect options, and with
            /// `plaintext` deciding whether a network host may be reached without TLS.
            pub async fn connect_with(
                options: PgConnectOptions,
                plaintext: PlaintextConnections,
            ) -> Result<Self, PersonalError> {
                Self::migrated(connect($what, options, plaintext).await?).await
            }

            /// A store over an existing pool, whose schema is migrated first.
            ///
            /// Fails with [`PersonalError::PlaintextConnection`] if the pool's connect options
            /// name a network host without TLS; [`from_pool_with`](Self::from_pool_with)
            /// can allow that.
            pub async fn from_pool(pool: PgPool) -> Result<Self, PersonalError> {
                Self::from_pool_with(pool, PlaintextConnections::Refuse).await
            }

            /// A store over an existing pool, with `plaintext` deciding whether its network
            /// host may be reached without TLS.
            pub async fn from_pool_with(
                pool: PgPool,
                plaintext: PlaintextConnections,
            ) -> Result<Self, PersonalError> {
                tls::check_personal_store($what, &pool.connect_options(), plaintext)?;
                Self::migrated(pool).await
            }

            async fn migrated(pool: PgPool) -> Result<Self, PersonalError> {
                let store = Self { pool };
                store.migrate().await?;
                Ok(store)
            }

            /// The connection pool.
            pub fn pool(&self) -> &PgPool {
                &self.pool
            }

            /// Applies the embedded migrations that the database does not have yet.
            ///
            /// Run by every constructor; safe to call again and from several processes at once
            /// (they take turns on an advisory lock). Fails with
            /// [`PersonalError::SchemaTooNew`], changing nothing, if a newer program migrated
            /// the database.
            pub async fn migrate(&self) -> Result<(), PersonalError> {
                $schema.migrate(&self.pool, $migrations).await
            }

            /// Rewrites the store's tables (`VACUUM FULL`), so that the tuples of erased
            /// subjects, which PostgreSQL leaves in the heap pages after a `DELETE` and even
            /// after a plain `VACUUM`, are in no file of the table any more.
            ///
            /// Run it after erasures, at a quiet time: it takes an exclusive lock on each table
            /// while it copies it. A tuple that a transaction still running may see (one that
            /// began before the erasure committed) is copied too: run it again once such
            /// transactions ended. The write-ahead log and backups still hold the old pages
            /// until they are recycled or expire: keep their retention short for this database
            /// (see the README's personal data section).
            pub async fn compact(&self) -> Result<(), PersonalError> {
                for table in $tables {
                    // `table` is one of this crate's constants, never input.
                    sqlx::query(AssertSqlSafe(format!("VACUUM FULL {table}")))
                        .execute(&self.pool)
                        .await
                        .map_err(db("compact"))?;
                }
                Ok(())
            }
        }
    };
}

pub(super) use postgres_store;

/// The personal data store in a PostgreSQL database: encrypted personal values and the keyed
/// blind index. No column holds a plaintext personal value.
///
/// Keep it in a database of its own ([`connect`](Self::connect)), apart from the keys and the
/// events. It may also share a database with the event and key stores: its tables and its
/// migrations table (`eventsourcery_personal_store_migrations`) have names of their own.
/// Tables are created unqualified, in the first schema of the connections' `search_path`.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct PostgresPersonalStore {
    pool: PgPool,
}

postgres_store!(
    PostgresPersonalStore,
    "personal data store",
    "postgres://user@host:5432/personal",
    PERSONAL_SCHEMA,
    sql::PERSONAL_MIGRATIONS,
    [sql::PERSONAL_DATA, sql::BLIND_INDEX]
);

impl crate::backend::sql::SqlPersonalStore for PostgresPersonalStore {
    async fn put(
        &self,
        mut records: Vec<PersonalRecord>,
        mut index: Vec<IndexEntry>,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        // One lock order for every writer, so that two writers cannot deadlock; a reference
        // given twice keeps its last record (one statement cannot update a row twice).
        records.reverse();
        records.sort_by_key(|r| r.reference);
        records.dedup_by_key(|r| r.reference);
        index.sort();
        index.dedup();
        let created = sql::now_ns()?;
        let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for record in records {
            // A malformed header counts as version 0 (see `PersonalStore::put`).
            let version = record.key_version().unwrap_or(0);
            columns.0.push(record.reference);
            columns.1.push(record.subject.as_uuid());
            columns.2.push(record.field);
            columns.3.push(record.ciphertext);
            columns.4.push(i64::from(version));
        }
        let lowest_index_version = index.iter().map(|e| e.key_version).min().unwrap_or(0);
        let mut entries = (Vec::new(), Vec::new(), Vec::new());
        for entry in index {
            entries.0.push(entry.hash);
            entries.1.push(entry.subject.as_uuid());
            entries.2.push(i64::from(entry.key_version));
        }
        // One round trip (migration 0002): the subjects' locks, the erasure check and the
        // writes, atomic without an explicit transaction.
        let refused: Vec<String> = sqlx::query_scalar(
            "SELECT s::text FROM eventsourcery_put_personal($1, $2, $3, $4, $5, $6, $7, $8, $9) AS s",
        )
        .bind(columns.0)
        .bind(columns.1)
        .bind(columns.2)
        .bind(columns.3)
        .bind(columns.4)
        .bind(created)
        .bind(entries.0)
        .bind(entries.1)
        .bind(&entries.2)
        .fetch_all(&self.pool)
        .await
        .map_err(|source| match &source {
            sqlx::Error::Database(error) if error.code().as_deref() == Some(STALE_INDEX_KEY) => {
                PersonalError::StaleIndexKey {
                    found: lowest_index_version,
                }
            }
            _ => PersonalError::Database {
                operation: "store personal data",
                source,
            },
        })?;
        refused
            .iter()
            .map(|s| {
                s.parse().map_err(|_| PersonalError::Corrupt {
                    table: sql::ERASED_SUBJECTS,
                    reason: "column `subject` is not a UUID".into(),
                })
            })
            .collect()
    }

    async fn erase_subject(
        &self,
        subject: PersonalKey,
        last_key_version: u32,
    ) -> Result<u64, PersonalError> {
        // Migration 0002: alone on the subject's lock, so the writes under way commit first
        // (and are deleted here) and later ones see the record.
        let deleted: i64 = sqlx::query_scalar("SELECT eventsourcery_erase_personal($1, $2)")
            .bind(subject.as_uuid())
            .bind(i64::from(last_key_version))
            .fetch_one(&self.pool)
            .await
            .map_err(db("erase personal data"))?;
        Ok(deleted.unsigned_abs())
    }

    async fn delete(&self, references: &[Uuid]) -> Result<u64, PersonalError> {
        let deleted =
            sqlx::query("DELETE FROM eventsourcery_personal_data WHERE reference = ANY($1)")
                .bind(references)
                .execute(&self.pool)
                .await
                .map_err(db("delete personal data"))?
                .rows_affected();
        Ok(deleted)
    }

    async fn raise_index_floor(&self, version: u32) -> Result<u32, PersonalError> {
        // The row lock waits for the puts holding it shared; later puts read the new floor.
        let floor: i64 = sqlx::query_scalar(
            "UPDATE eventsourcery_index_floor SET floor = GREATEST(floor, $1) WHERE id = 1
             RETURNING floor",
        )
        .bind(i64::from(version))
        .fetch_one(&self.pool)
        .await
        .map_err(db("raise the index floor"))?;
        Ok(u32::try_from(floor).unwrap_or(u32::MAX))
    }

    async fn delete_index_entries_below(&self, version: u32) -> Result<u64, PersonalError> {
        let deleted = sqlx::query("DELETE FROM eventsourcery_blind_index WHERE key_version < $1")
            .bind(i64::from(version))
            .execute(&self.pool)
            .await
            .map_err(db("delete old index entries"))?
            .rows_affected();
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::PostgresKeyStore;

    #[tokio::test]
    async fn the_stores_refuse_before_connecting() {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        // 0.0.0.0 is not loopback by this rule, and nothing listens on port 1: even a broken
        // check would send nothing off this machine.
        let url = "postgres://app:s3cret@0.0.0.0:1/keys?sslmode=prefer";
        let refused = |error: Option<PersonalError>| {
            matches!(&error, Some(PersonalError::PlaintextConnection(e)) if e.host == "0.0.0.0")
                && error.is_some_and(|e| !e.to_string().contains("s3cret"))
        };
        assert!(refused(PostgresKeyStore::connect(url).await.err()));
        assert!(refused(PostgresPersonalStore::connect(url).await.err()));
        // A lazy pool has not connected yet; `from_pool` checks its options.
        let pool = PgPoolOptions::new().connect_lazy_with(
            url.parse::<PgConnectOptions>()
                .unwrap_or_else(|e| panic!("{url} does not parse: {e}")),
        );
        assert!(refused(
            PostgresKeyStore::from_pool(pool.clone()).await.err()
        ));
        assert!(refused(PostgresPersonalStore::from_pool(pool).await.err()));
    }
}
