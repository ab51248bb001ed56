//! The SQLite key store: by default a file of its own, apart from the event store's and the
//! personal data store's.

use std::fmt;
use std::path::Path;

use sqlx::AssertSqlSafe;
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqlitePool};

use super::personal::{Database, sqlite_store};
use crate::backend::sql::personal::{self as sql, db};
use crate::backend::sql::{Schema, migration};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::{Erasure, WrappedKey};

/// The key store's embedded migrations, newest last.
const KEY_SCHEMA: Schema = Schema {
    database: "SQLite key store",
    migrations: &[
        migration!(1, "key store", "sqlite/keys/0001_key_store.sql"),
        migration!(2, "erasure epoch", "sqlite/keys/0002_erasure_epoch.sql"),
    ],
};

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

/// The columns an erasure record is read with.
const ERASURE_COLUMNS: &str = "subject, erased_at_ns, reason, last_key_version, re_enrolled";

/// `sql`, an insert of `key` created at `created`, with its parameters bound: `?1` the subject,
/// `?2` the version, `?3` the wrapped key, `?4` the master key's id, `?5` the time.
fn key_insert<'q>(
    sql: &'static str,
    key: &'q WrappedKey,
    created: i64,
) -> Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments> {
    sqlx::query(sql)
        .bind(key.subject.to_string())
        .bind(i64::from(key.version))
        .bind(key.wrapped.as_slice())
        .bind(&key.master_key_id)
        .bind(created)
}

impl crate::backend::sql::SqlKeyStore for SqliteKeyStore {
    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError> {
        let subject = key.subject.to_string();
        let created = sql::now_ns()?;
        let (_writer, mut tx) = self.db.begin("insert data key").await?;
        key_insert(
            "INSERT INTO eventsourcery_data_keys
                 (subject, version, wrapped, master_key_id, created_at_ns)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (subject) DO NOTHING",
            &key,
            created,
        )
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
            Some(row) => sql::VaultRow::key(&row),
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
            let inserted = key_insert(
                "INSERT INTO eventsourcery_data_keys
                     (subject, version, wrapped, master_key_id, created_at_ns)
                 SELECT ?1, ?2, ?3, ?4, ?5
                 WHERE NOT EXISTS (SELECT 1 FROM eventsourcery_erasures WHERE subject = ?1
                                   AND (NOT re_enrolled OR last_key_version >= ?2))
                 ON CONFLICT (subject) DO NOTHING",
                key,
                created,
            )
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
        erased_at_ns: i64,
        reason: &str,
    ) -> Result<Erasure, PersonalError> {
        const OPERATION: &str = "erase data key";
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
            .map(sql::VaultRow::erasure)
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
        .bind(erased_at_ns)
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
        let erasure = sql::VaultRow::erasure(&row)?;
        tx.commit().await.map_err(db(OPERATION))?;
        self.db.truncate_wal(OPERATION).await?;
        Ok(erasure)
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
}
