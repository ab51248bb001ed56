//! The SQLite key store and personal data store: by default two files of their own, apart
//! from the event store's.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use sqlx::{Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::backend::sql::personal::{self as sql, db};
use crate::backend::sql::{Backend, Schema, VaultSql, migration};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::{IndexEntry, PersonalRecord};

/// The personal data store's embedded migrations, newest last.
const PERSONAL_SCHEMA: Schema = Schema {
    database: "SQLite personal data store",
    migrations: &[
        migration!(
            1,
            "personal data store",
            "sqlite/personal/0001_personal_store.sql"
        ),
        migration!(
            2,
            "erased subjects",
            "sqlite/personal/0002_erased_subjects.sql"
        ),
        migration!(3, "audit log", "sqlite/personal/0003_audit_log.sql"),
    ],
};

/// How many times an erasure tries to truncate the write-ahead log while readers hold it.
const CHECKPOINT_ATTEMPTS: u32 = 5;

/// The key and personal data stores' reads in SQLite's dialect: UUIDs are text, and a list of
/// them is a JSON array read with `json_each`. Text order of hyphenated lowercase UUIDs is
/// UUID order, so pages go by text.
pub(super) const VAULT_SQL: VaultSql = VaultSql {
    keys: "SELECT subject, version, wrapped, master_key_id FROM eventsourcery_data_keys \
        WHERE subject IN (SELECT value FROM json_each($1))",
    erasures: "SELECT subject, erased_at_ns, reason, last_key_version, re_enrolled \
        FROM eventsourcery_erasures WHERE subject IN (SELECT value FROM json_each($1))",
    keys_after: "SELECT subject, version, wrapped, master_key_id FROM eventsourcery_data_keys \
        WHERE subject > $1 ORDER BY subject LIMIT $2",
    records: "SELECT reference, subject, field, ciphertext FROM eventsourcery_personal_data \
        WHERE reference IN (SELECT value FROM json_each($1))",
    by_subject: "SELECT reference, subject, field, ciphertext FROM eventsourcery_personal_data \
        WHERE subject = $1 ORDER BY created_at_ns, reference",
    find: "SELECT DISTINCT subject FROM eventsourcery_blind_index WHERE hash = $1 \
        ORDER BY subject",
    records_after: "SELECT reference, subject, field, ciphertext \
        FROM eventsourcery_personal_data WHERE reference > $1 ORDER BY reference LIMIT $2",
};

/// A pool and the queue of this process's writers, shared by clones.
#[derive(Clone)]
pub(super) struct Database {
    pub(super) pool: SqlitePool,
    writer: Arc<Mutex<()>>,
}

impl Database {
    /// The file at `path`, created if missing: WAL, `synchronous = FULL`, a busy timeout, and
    /// `secure_delete`, so that deleted keys and ciphertexts are overwritten with zeros
    /// rather than left in free pages. The file and its `-wal` and `-shm` files are readable
    /// by their owner only (mode 0600 on Unix; a wider mode found is tightened, with a warning).
    pub(super) async fn open(path: &Path) -> Result<Self, PersonalError> {
        crate::fs::private_database(path).map_err(|source| PersonalError::FileMode {
            path: path.to_owned(),
            source,
        })?;
        let options = super::file_options(path).pragma("secure_delete", "ON");
        let pool = super::file_pool(options).await.map_err(db("open"))?;
        Ok(Self::new(pool))
    }

    /// A database in memory, on one connection that is never retired.
    pub(super) async fn in_memory() -> Result<Self, PersonalError> {
        let pool = super::memory_pool().await.map_err(db("open"))?;
        Ok(Self::new(pool))
    }

    pub(super) fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            writer: Arc::new(Mutex::new(())),
        }
    }

    /// Applies the migrations of `schema` that the database does not have yet.
    pub(super) async fn migrate(
        &self,
        schema: &Schema,
        table: &'static str,
    ) -> Result<(), PersonalError> {
        let _writer = self.writer.lock().await;
        schema.migrate(&self.pool, table).await
    }

    /// A write transaction, queued behind this process's other writers.
    pub(super) async fn begin(
        &self,
        operation: &'static str,
    ) -> Result<(OwnedMutexGuard<()>, Transaction<'static, Sqlite>), PersonalError> {
        let guard = Arc::clone(&self.writer).lock_owned().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db(operation))?;
        Ok((guard, tx))
    }

    /// An erasure's transaction: [`begin`](Self::begin), with `secure_delete` on for its
    /// connection whatever the pool was opened with, so the deleted bytes are overwritten.
    pub(super) async fn begin_erasure(
        &self,
        operation: &'static str,
    ) -> Result<(OwnedMutexGuard<()>, Transaction<'static, Sqlite>), PersonalError> {
        let (guard, mut tx) = self.begin(operation).await?;
        sqlx::query("PRAGMA secure_delete = ON")
            .execute(&mut *tx)
            .await
            .map_err(db(operation))?;
        Ok((guard, tx))
    }

    /// Copies the write-ahead log into the database file and truncates it, after an erasure:
    /// `secure_delete` zeroes the erased bytes in the pages it writes, but the log still holds
    /// the earlier images of those pages until it is checkpointed and truncated. Waits for
    /// readers (of any process) that still use the log, up to the busy timeout, a few times;
    /// an erasure that cannot finish this reports it, and is finished by erasing again.
    pub(super) async fn truncate_wal(&self, operation: &'static str) -> Result<(), PersonalError> {
        for attempt in 0..CHECKPOINT_ATTEMPTS {
            // (busy, frames in the log, frames checkpointed); -1 frames when not in WAL mode.
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool)
                .await
                .map_err(db(operation))?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
        }
        Err(PersonalError::WalBusy {
            database: self.file(),
        })
    }

    pub(super) fn file(&self) -> String {
        self.pool
            .connect_options()
            .get_filename()
            .display()
            .to_string()
    }
}

/// The `Debug` impl and the constructors of a SQLite personal data backend store (a struct with
/// one field, `db`), identical but for its name and schema.
macro_rules! sqlite_store {
    ($store:ident, $schema:expr, $migrations:expr) => {
        impl crate::backend::sql::SqlVaultStore for $store {
            type Db = sqlx::Sqlite;
            const SQL: &'static crate::backend::sql::VaultSql = &super::personal::VAULT_SQL;

            type Writer = tokio::sync::OwnedMutexGuard<()>;

            fn pool(&self) -> &SqlitePool {
                &self.db.pool
            }

            async fn begin_write(
                &self,
                operation: &'static str,
            ) -> Result<(Self::Writer, sqlx::Transaction<'static, sqlx::Sqlite>), PersonalError>
            {
                self.db.begin(operation).await
            }
        }

        impl fmt::Debug for $store {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($store))
                    .field("file", &self.db.file())
                    .finish_non_exhaustive()
            }
        }

        impl $store {
            /// Opens the store in the file at `path`, creating the file if it is missing, and
            /// migrates its schema.
            ///
            /// Fails with [`PersonalError::SchemaTooNew`] if a newer program migrated the file.
            pub async fn open(path: impl AsRef<Path>) -> Result<Self, PersonalError> {
                Self::with(Database::open(path.as_ref()).await?).await
            }

            /// A store in memory, gone when the store (and its clones) are dropped: for tests.
            pub async fn in_memory() -> Result<Self, PersonalError> {
                Self::with(Database::in_memory().await?).await
            }

            /// A store over an existing pool, whose schema is migrated first.
            ///
            /// For several writers, configure the pool's connections with a busy timeout (and
            /// preferably WAL mode and `secure_delete`), as [`open`](Self::open) does.
            pub async fn from_pool(pool: SqlitePool) -> Result<Self, PersonalError> {
                Self::with(Database::new(pool)).await
            }

            async fn with(db: Database) -> Result<Self, PersonalError> {
                let store = Self { db };
                store.migrate().await?;
                Ok(store)
            }

            /// The connection pool.
            pub fn pool(&self) -> &SqlitePool {
                &self.db.pool
            }

            /// Applies the embedded migrations that the database does not have yet.
            ///
            /// Run by every constructor; safe to call again. Fails with
            /// [`PersonalError::SchemaTooNew`], changing nothing, if a newer program migrated
            /// the database.
            pub async fn migrate(&self) -> Result<(), PersonalError> {
                self.db.migrate(&$schema, $migrations).await
            }
        }
    };
}

pub(super) use sqlite_store;

/// The personal data store in a SQLite database: encrypted personal values and the keyed
/// blind index. No column holds a plaintext personal value.
///
/// Keep it in a file of its own ([`open`](Self::open)), apart from the keys and the events.
/// Files are opened in WAL mode with a busy timeout and `secure_delete`, so that an erased
/// subject's ciphertexts are overwritten rather than left in free pages. It may also share a
/// database with the event and key stores: its tables and its migrations table
/// (`eventsourcery_personal_store_migrations`) have names of their own.
///
/// Cheap to clone: clones share the connection pool.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventsourcery::store::PersonalStore;
/// use eventsourcery::{PersonalKey};
/// use eventsourcery::backend::SqlitePersonalStore;
///
/// let data = SqlitePersonalStore::in_memory().await?;
/// assert!(data.by_subject(PersonalKey::issue()).await?.is_empty());
/// # Ok::<(), eventsourcery::personal::PersonalError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqlitePersonalStore {
    db: Database,
}

sqlite_store!(
    SqlitePersonalStore,
    PERSONAL_SCHEMA,
    sql::PERSONAL_MIGRATIONS
);

impl crate::backend::sql::SqlPersonalStore for SqlitePersonalStore {
    async fn put(
        &self,
        mut records: Vec<PersonalRecord>,
        mut index: Vec<IndexEntry>,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        const OPERATION: &str = "store personal data";
        records.sort_by_key(|r| r.reference);
        index.sort();
        let created = sql::now_ns()?;
        let mut subjects: Vec<PersonalKey> = records
            .iter()
            .map(|r| r.subject)
            .chain(index.iter().map(|e| e.subject))
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        // One write transaction: the erasure records read are the ones in force as it writes.
        let (_writer, mut tx) = self.db.begin(OPERATION).await?;
        if !index.is_empty() {
            let floor: i64 =
                sqlx::query_scalar("SELECT floor FROM eventsourcery_index_floor WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db(OPERATION))?;
            crate::store::personal::check_index_floor(
                &index,
                u32::try_from(floor).unwrap_or(u32::MAX),
            )?;
        }
        let rows = sqlx::query(
            "SELECT subject, last_key_version FROM eventsourcery_erased_subjects
             WHERE subject IN (SELECT value FROM json_each(?1))",
        )
        .bind(Sqlite::uuids(subjects.iter().map(PersonalKey::as_uuid)))
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OPERATION))?;
        let erased = rows
            .iter()
            .map(sql::VaultRow::erased_subject)
            .collect::<Result<std::collections::HashMap<_, _>, _>>()?;
        let refused =
            crate::store::personal::refused_subjects(&records, &index, |s| erased.get(&s).copied());
        for record in records.iter().filter(|r| !refused.contains(&r.subject)) {
            sqlx::query(
                "INSERT INTO eventsourcery_personal_data
                     (reference, subject, field, ciphertext, created_at_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (reference) DO UPDATE SET
                     subject = excluded.subject,
                     field = excluded.field,
                     ciphertext = excluded.ciphertext",
            )
            .bind(record.reference.to_string())
            .bind(record.subject.to_string())
            .bind(&record.field)
            .bind(record.ciphertext.as_slice())
            .bind(created)
            .execute(&mut *tx)
            .await
            .map_err(db(OPERATION))?;
        }
        for entry in index.iter().filter(|e| !refused.contains(&e.subject)) {
            sqlx::query(
                "INSERT INTO eventsourcery_blind_index (hash, subject, key_version)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(entry.hash.as_slice())
            .bind(entry.subject.to_string())
            .bind(i64::from(entry.key_version))
            .execute(&mut *tx)
            .await
            .map_err(db(OPERATION))?;
        }
        tx.commit().await.map_err(db(OPERATION))?;
        Ok(refused)
    }

    async fn erase_subject(
        &self,
        subject: PersonalKey,
        last_key_version: u32,
    ) -> Result<u64, PersonalError> {
        const OPERATION: &str = "erase personal data";
        let subject = subject.to_string();
        let (_writer, mut tx) = self.db.begin_erasure(OPERATION).await?;
        sqlx::query(
            "INSERT INTO eventsourcery_erased_subjects (subject, last_key_version) VALUES (?1, ?2)
             ON CONFLICT (subject) DO UPDATE SET
                 last_key_version = MAX(last_key_version, excluded.last_key_version)",
        )
        .bind(&subject)
        .bind(i64::from(last_key_version))
        .execute(&mut *tx)
        .await
        .map_err(db(OPERATION))?;
        let deleted = sqlx::query("DELETE FROM eventsourcery_personal_data WHERE subject = ?1")
            .bind(&subject)
            .execute(&mut *tx)
            .await
            .map_err(db(OPERATION))?
            .rows_affected();
        sqlx::query("DELETE FROM eventsourcery_blind_index WHERE subject = ?1")
            .bind(&subject)
            .execute(&mut *tx)
            .await
            .map_err(db(OPERATION))?;
        tx.commit().await.map_err(db(OPERATION))?;
        self.db.truncate_wal(OPERATION).await?;
        Ok(deleted)
    }

    async fn delete(&self, references: &[Uuid]) -> Result<u64, PersonalError> {
        const OPERATION: &str = "delete personal data";
        let (_writer, mut tx) = self.db.begin(OPERATION).await?;
        let deleted = sqlx::query(
            "DELETE FROM eventsourcery_personal_data
             WHERE reference IN (SELECT value FROM json_each(?1))",
        )
        .bind(Sqlite::uuids(references.iter().copied()))
        .execute(&mut *tx)
        .await
        .map_err(db(OPERATION))?
        .rows_affected();
        tx.commit().await.map_err(db(OPERATION))?;
        Ok(deleted)
    }

    async fn raise_index_floor(&self, version: u32) -> Result<u32, PersonalError> {
        const OPERATION: &str = "raise the index floor";
        // A write transaction: puts under way commit first; later ones read the new floor.
        let (_writer, mut tx) = self.db.begin(OPERATION).await?;
        let floor: i64 = sqlx::query_scalar(
            "UPDATE eventsourcery_index_floor SET floor = MAX(floor, ?1) WHERE id = 1
             RETURNING floor",
        )
        .bind(i64::from(version))
        .fetch_one(&mut *tx)
        .await
        .map_err(db(OPERATION))?;
        tx.commit().await.map_err(db(OPERATION))?;
        Ok(u32::try_from(floor).unwrap_or(u32::MAX))
    }

    async fn delete_index_entries_below(&self, version: u32) -> Result<u64, PersonalError> {
        const OPERATION: &str = "delete old index entries";
        let (_writer, mut tx) = self.db.begin_erasure(OPERATION).await?;
        let deleted = sqlx::query("DELETE FROM eventsourcery_blind_index WHERE key_version < ?1")
            .bind(i64::from(version))
            .execute(&mut *tx)
            .await
            .map_err(db(OPERATION))?
            .rows_affected();
        tx.commit().await.map_err(db(OPERATION))?;
        self.db.truncate_wal(OPERATION).await?;
        Ok(deleted)
    }
}
