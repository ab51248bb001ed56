//! The SQLite key store and personal data store: by default two files of their own, apart
//! from the event store's.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::backend::sql::Schema;
use crate::backend::sql::personal::{self as sql, db};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::{Erasure, IndexEntry, KeyStore, PersonalRecord, PersonalStore, WrappedKey};

/// The key store's embedded migrations, newest last.
const KEY_SCHEMA: Schema = Schema {
    database: "SQLite key store",
    migrations: &[
        (
            1,
            "key store",
            include_str!("../../../migrations/sqlite/keys/0001_key_store.sql"),
        ),
        (
            2,
            "erasure epoch",
            include_str!("../../../migrations/sqlite/keys/0002_erasure_epoch.sql"),
        ),
    ],
};

/// The personal data store's embedded migrations, newest last.
const PERSONAL_SCHEMA: Schema = Schema {
    database: "SQLite personal data store",
    migrations: &[
        (
            1,
            "personal data store",
            include_str!("../../../migrations/sqlite/personal/0001_personal_store.sql"),
        ),
        (
            2,
            "erased subjects",
            include_str!("../../../migrations/sqlite/personal/0002_erased_subjects.sql"),
        ),
    ],
};

/// How long a writer from another process waits for SQLite's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times an erasure tries to truncate the write-ahead log while readers hold it.
const CHECKPOINT_ATTEMPTS: u32 = 5;

/// Connections of a file-backed store: one writer at a time, readers in parallel (WAL).
const MAX_CONNECTIONS: u32 = 8;

/// A pool and the queue of this process's writers, shared by clones.
#[derive(Clone)]
struct Database {
    pool: SqlitePool,
    writer: Arc<Mutex<()>>,
}

impl Database {
    /// The file at `path`, created if missing: WAL, `synchronous = FULL`, a busy timeout, and
    /// `secure_delete`, so that deleted keys and ciphertexts are overwritten with zeros
    /// rather than left in free pages. The file and its `-wal` and `-shm` files are readable
    /// by their owner only (mode 0600 on Unix; a wider mode found is tightened, with a warning).
    async fn open(path: &Path) -> Result<Self, PersonalError> {
        crate::fs::private_database(path).map_err(|source| PersonalError::FileMode {
            path: path.to_owned(),
            source,
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(db("open"))?;
        Ok(Self::new(pool))
    }

    /// A database in memory, on one connection that is never retired.
    async fn in_memory() -> Result<Self, PersonalError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(SqliteConnectOptions::new().filename(":memory:"))
            .await
            .map_err(db("open"))?;
        Ok(Self::new(pool))
    }

    fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            writer: Arc::new(Mutex::new(())),
        }
    }

    /// Applies the migrations of `schema` that the database does not have yet.
    async fn migrate(&self, schema: &Schema, table: &'static str) -> Result<(), PersonalError> {
        let _writer = self.writer.lock().await;
        schema.migrate(&self.pool, table).await
    }

    /// A write transaction, queued behind this process's other writers.
    async fn begin(
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
    async fn begin_erasure(
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
    async fn truncate_wal(&self, operation: &'static str) -> Result<(), PersonalError> {
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

    fn file(&self) -> String {
        self.pool
            .connect_options()
            .get_filename()
            .display()
            .to_string()
    }
}

/// Subjects or references as a JSON array of UUID strings, for `json_each`.
fn uuid_list(ids: impl Iterator<Item = Uuid>) -> String {
    let ids: Vec<String> = ids.map(|id| id.to_string()).collect();
    serde_json::Value::from(ids).to_string()
}

/// The `Debug` impl and the constructors of a SQLite personal data backend store (a struct with
/// one field, `db`), identical but for its name and schema.
macro_rules! sqlite_store {
    ($store:ident, $schema:expr, $migrations:expr) => {
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

/// The encryption key store in a SQLite database: each subject's wrapped data key, and the
/// PII-free erasure records.
///
/// Keep it in a file of its own ([`open`](Self::open)), apart from the personal data and the
/// events, so that a copy of one database is not a copy of the others. Files are opened in WAL
/// mode with a busy timeout and `secure_delete`, so that an erased subject's key is
/// overwritten rather than left in a free page. It may also share a database with the event
/// and personal data stores: its tables and its migrations table
/// (`eventsourcery_key_store_migrations`) have names of their own.
///
/// Cheap to clone: clones share the connection pool.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventsourcery::store::KeyStore;
/// use eventsourcery::{PersonalKey};
/// use eventsourcery::backend::SqliteKeyStore;
///
/// let keys = SqliteKeyStore::in_memory().await?;
/// assert!(keys.keys(&[PersonalKey::issue()]).await?.is_empty());
/// # Ok::<(), eventsourcery::personal::PersonalError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteKeyStore {
    db: Database,
}

sqlite_store!(SqliteKeyStore, KEY_SCHEMA, sql::KEY_MIGRATIONS);

/// The columns a data key is read with.
const KEY_COLUMNS: &str = "subject, version, wrapped, master_key_id";

/// The columns an erasure record is read with.
const ERASURE_COLUMNS: &str = "subject, erased_at_ns, reason, last_key_version, re_enrolled";

#[async_trait::async_trait]
impl KeyStore for SqliteKeyStore {
    async fn keys(&self, subjects: &[PersonalKey]) -> Result<Vec<WrappedKey>, PersonalError> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT subject, version, wrapped, master_key_id FROM eventsourcery_data_keys
             WHERE subject IN (SELECT value FROM json_each(?1))",
        )
        .bind(uuid_list(subjects.iter().map(PersonalKey::as_uuid)))
        .fetch_all(&self.db.pool)
        .await
        .map_err(db("read data keys"))?;
        rows.iter().map(sql::key_from_row).collect()
    }

    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError> {
        let subject = key.subject.to_string();
        let created = sql::now_ns()?;
        let (_writer, mut tx) = self.db.begin("insert data key").await?;
        sqlx::query(
            "INSERT INTO eventsourcery_data_keys
                 (subject, version, wrapped, master_key_id, created_at_ns)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (subject) DO NOTHING",
        )
        .bind(&subject)
        .bind(i64::from(key.version))
        .bind(key.wrapped.as_slice())
        .bind(&key.master_key_id)
        .bind(created)
        .execute(&mut *tx)
        .await
        .map_err(db("insert data key"))?;
        // The key just inserted, or the one a writer stored first.
        let row = sqlx::query(
            "SELECT subject, version, wrapped, master_key_id FROM eventsourcery_data_keys
             WHERE subject = ?1",
        )
        .bind(&subject)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("insert data key"))?;
        tx.commit().await.map_err(db("insert data key"))?;
        match row {
            Some(row) => sql::key_from_row(&row),
            None => Err(PersonalError::MissingKey {
                subject: key.subject,
            }),
        }
    }

    async fn claim_keys(&self, keys: Vec<WrappedKey>) -> Result<Vec<bool>, PersonalError> {
        // One write transaction: no erasure can come between the check and the insert.
        let created = sql::now_ns()?;
        let (_writer, mut tx) = self.db.begin("claim data keys").await?;
        let mut claimed = Vec::with_capacity(keys.len());
        for key in &keys {
            let inserted = sqlx::query(
                "INSERT INTO eventsourcery_data_keys
                     (subject, version, wrapped, master_key_id, created_at_ns)
                 SELECT ?1, ?2, ?3, ?4, ?5
                 WHERE NOT EXISTS (SELECT 1 FROM eventsourcery_erasures WHERE subject = ?1
                                   AND (NOT re_enrolled OR last_key_version >= ?2))
                 ON CONFLICT (subject) DO NOTHING",
            )
            .bind(key.subject.to_string())
            .bind(i64::from(key.version))
            .bind(key.wrapped.as_slice())
            .bind(&key.master_key_id)
            .bind(created)
            .execute(&mut *tx)
            .await
            .map_err(db("claim data keys"))?;
            claimed.push(inserted.rows_affected() == 1);
        }
        tx.commit().await.map_err(db("claim data keys"))?;
        Ok(claimed)
    }

    async fn erase(
        &self,
        subject: PersonalKey,
        erased_at: SystemTime,
        reason: &str,
    ) -> Result<Erasure, PersonalError> {
        const OPERATION: &str = "erase data key";
        let erased_at = sql::nanos(erased_at, "the erasure time")?;
        let id = subject.to_string();
        // One write transaction: what it reads is what it erases, and no claim comes between.
        let (_writer, mut tx) = self.db.begin_erasure(OPERATION).await?;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM eventsourcery_data_keys WHERE subject = ?1")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db(OPERATION))?;
        let select =
            format!("SELECT {ERASURE_COLUMNS} FROM eventsourcery_erasures WHERE subject = ?1");
        let previous = sqlx::query(AssertSqlSafe(select.clone()))
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OPERATION))?
            .as_ref()
            .map(sql::erasure_from_row)
            .transpose()?;
        let current = current.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        let last = Erasure::next_last_key_version(current, previous.as_ref());
        // A subject erased and not re-enrolled keeps its first record.
        sqlx::query(
            "INSERT INTO eventsourcery_erasures
                 (subject, erased_at_ns, reason, last_key_version, re_enrolled)
             VALUES (?1, ?2, ?3, ?4, 0)
             ON CONFLICT (subject) DO UPDATE SET
                 erased_at_ns = CASE WHEN re_enrolled = 1 THEN excluded.erased_at_ns ELSE erased_at_ns END,
                 reason = CASE WHEN re_enrolled = 1 THEN excluded.reason ELSE reason END,
                 last_key_version = excluded.last_key_version,
                 re_enrolled = 0",
        )
        .bind(&id)
        .bind(erased_at)
        .bind(reason)
        .bind(i64::from(last))
        .execute(&mut *tx)
        .await
        .map_err(db(OPERATION))?;
        sqlx::query("DELETE FROM eventsourcery_data_keys WHERE subject = ?1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(db(OPERATION))?;
        sqlx::query("UPDATE eventsourcery_erasure_epoch SET epoch = epoch + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(db(OPERATION))?;
        let row = sqlx::query(AssertSqlSafe(select))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(OPERATION))?;
        let erasure = sql::erasure_from_row(&row)?;
        tx.commit().await.map_err(db(OPERATION))?;
        self.db.truncate_wal(OPERATION).await?;
        Ok(erasure)
    }

    async fn erasures(&self, subjects: &[PersonalKey]) -> Result<Vec<Erasure>, PersonalError> {
        if subjects.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT subject, erased_at_ns, reason, last_key_version, re_enrolled
             FROM eventsourcery_erasures
             WHERE subject IN (SELECT value FROM json_each(?1))",
        )
        .bind(uuid_list(subjects.iter().map(PersonalKey::as_uuid)))
        .fetch_all(&self.db.pool)
        .await
        .map_err(db("read erasures"))?;
        rows.iter().map(sql::erasure_from_row).collect()
    }

    async fn erasure_epoch(&self) -> Result<u64, PersonalError> {
        let epoch: i64 =
            sqlx::query_scalar("SELECT epoch FROM eventsourcery_erasure_epoch WHERE id = 1")
                .fetch_one(&self.db.pool)
                .await
                .map_err(db("read the erasure epoch"))?;
        Ok(epoch.unsigned_abs())
    }

    async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError> {
        let (_writer, mut tx) = self.db.begin("re-enroll").await?;
        sqlx::query("UPDATE eventsourcery_erasures SET re_enrolled = 1 WHERE subject = ?1")
            .bind(subject.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db("re-enroll"))?;
        tx.commit().await.map_err(db("re-enroll"))
    }

    async fn keys_after(
        &self,
        after: Option<PersonalKey>,
        limit: usize,
    ) -> Result<Vec<WrappedKey>, PersonalError> {
        // Subjects are hyphenated lowercase UUIDs: text order is UUID order.
        let select = format!(
            "SELECT {KEY_COLUMNS} FROM eventsourcery_data_keys WHERE subject > ?1
             ORDER BY subject LIMIT ?2"
        );
        let rows = sqlx::query(AssertSqlSafe(select))
            .bind(after.map_or_else(String::new, |s| s.to_string()))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.db.pool)
            .await
            .map_err(db("read data keys"))?;
        rows.iter().map(sql::key_from_row).collect()
    }

    async fn rewrap_keys(&self, keys: Vec<WrappedKey>) -> Result<(), PersonalError> {
        let (_writer, mut tx) = self.db.begin("rewrap data keys").await?;
        for key in &keys {
            sqlx::query(
                "UPDATE eventsourcery_data_keys SET wrapped = ?3, master_key_id = ?4
                 WHERE subject = ?1 AND version = ?2",
            )
            .bind(key.subject.to_string())
            .bind(i64::from(key.version))
            .bind(key.wrapped.as_slice())
            .bind(&key.master_key_id)
            .execute(&mut *tx)
            .await
            .map_err(db("rewrap data keys"))?;
        }
        tx.commit().await.map_err(db("rewrap data keys"))
    }
}

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

#[async_trait::async_trait]
impl PersonalStore for SqlitePersonalStore {
    async fn put(
        &self,
        mut records: Vec<PersonalRecord>,
        mut index: Vec<IndexEntry>,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        const OPERATION: &str = "store personal data";
        if records.is_empty() && index.is_empty() {
            return Ok(Vec::new());
        }
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
        .bind(uuid_list(subjects.iter().map(PersonalKey::as_uuid)))
        .fetch_all(&mut *tx)
        .await
        .map_err(db(OPERATION))?;
        let erased = rows
            .iter()
            .map(sql::erased_subject_from_row)
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

    async fn get(&self, references: &[Uuid]) -> Result<Vec<PersonalRecord>, PersonalError> {
        if references.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT reference, subject, field, ciphertext FROM eventsourcery_personal_data
             WHERE reference IN (SELECT value FROM json_each(?1))",
        )
        .bind(uuid_list(references.iter().copied()))
        .fetch_all(&self.db.pool)
        .await
        .map_err(db("read personal data"))?;
        rows.iter().map(sql::record_from_row).collect()
    }

    async fn by_subject(&self, subject: PersonalKey) -> Result<Vec<PersonalRecord>, PersonalError> {
        let rows = sqlx::query(
            "SELECT reference, subject, field, ciphertext FROM eventsourcery_personal_data
             WHERE subject = ?1 ORDER BY created_at_ns, reference",
        )
        .bind(subject.to_string())
        .fetch_all(&self.db.pool)
        .await
        .map_err(db("read personal data"))?;
        rows.iter().map(sql::record_from_row).collect()
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
        if references.is_empty() {
            return Ok(0);
        }
        let (_writer, mut tx) = self.db.begin(OPERATION).await?;
        let deleted = sqlx::query(
            "DELETE FROM eventsourcery_personal_data
             WHERE reference IN (SELECT value FROM json_each(?1))",
        )
        .bind(uuid_list(references.iter().copied()))
        .execute(&mut *tx)
        .await
        .map_err(db(OPERATION))?
        .rows_affected();
        tx.commit().await.map_err(db(OPERATION))?;
        Ok(deleted)
    }

    async fn find(&self, hash: &[u8]) -> Result<Vec<PersonalKey>, PersonalError> {
        let rows = sqlx::query(
            "SELECT DISTINCT subject FROM eventsourcery_blind_index WHERE hash = ?1
             ORDER BY subject",
        )
        .bind(hash)
        .fetch_all(&self.db.pool)
        .await
        .map_err(db("blind index lookup"))?;
        rows.iter().map(sql::subject_from_row).collect()
    }

    async fn records_after(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PersonalRecord>, PersonalError> {
        // References are hyphenated lowercase UUIDs: text order is UUID order.
        let rows = sqlx::query(
            "SELECT reference, subject, field, ciphertext FROM eventsourcery_personal_data
             WHERE reference > ?1 ORDER BY reference LIMIT ?2",
        )
        .bind(after.map_or_else(String::new, |r| r.to_string()))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.db.pool)
        .await
        .map_err(db("read personal data"))?;
        rows.iter().map(sql::record_from_row).collect()
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
