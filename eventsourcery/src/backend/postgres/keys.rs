//! The PostgreSQL key store: by default a database of its own, apart from the event store's
//! and the personal data store's.

use std::fmt;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool};
use uuid::Uuid;

use super::personal::{connect, describe, postgres_store};
use crate::backend::sql::personal::{self as sql, db};
use crate::backend::sql::{Schema, migration};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::{Erasure, WrappedKey};
use crate::tls::{self, PlaintextConnections};

/// The key store's embedded migrations, newest last.
const KEY_SCHEMA: Schema = Schema {
    database: "PostgreSQL key store",
    migrations: &[
        migration!(1, "key store", "postgres/keys/0001_key_store.sql"),
        migration!(2, "subject locks", "postgres/keys/0002_subject_locks.sql"),
        migration!(
            3,
            "generic claim plans",
            "postgres/keys/0003_generic_claim_plans.sql"
        ),
        migration!(4, "atomic erasure", "postgres/keys/0004_atomic_erasure.sql"),
    ],
};

/// The encryption key store in a PostgreSQL database: each subject's wrapped data key, and the
/// PII-free erasure records.
///
/// Keep it in a database of its own ([`connect`](Self::connect)), apart from the personal data
/// and the events, so that a copy of one database is not a copy of the others. It may also
/// share a database with the event and personal data stores: its tables and its migrations
/// table (`eventsourcery_key_store_migrations`) have names of their own. Tables are created
/// unqualified, in the first schema of the connections' `search_path`.
///
/// Concurrent first writes for one subject agree on one key: the insert does nothing when the
/// subject has a key, and the stored key is read back.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct PostgresKeyStore {
    pool: PgPool,
}

postgres_store!(
    PostgresKeyStore,
    "key store",
    "postgres://user@host:5432/keys",
    KEY_SCHEMA,
    sql::KEY_MIGRATIONS,
    [sql::DATA_KEYS, sql::ERASURES]
);

impl crate::backend::sql::SqlKeyStore for PostgresKeyStore {
    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError> {
        // A concurrent insert for the same subject makes this one wait for it to commit, then
        // do nothing; the next statement (with a fresh snapshot) reads the winner's key.
        let inserted = sqlx::query(
            "INSERT INTO eventsourcery_data_keys
                 (subject, version, wrapped, master_key_id, created_at_ns)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (subject) DO NOTHING
             RETURNING subject::text, version, wrapped, master_key_id",
        )
        .bind(key.subject.as_uuid())
        .bind(i64::from(key.version))
        .bind(key.wrapped.as_slice())
        .bind(&key.master_key_id)
        .bind(sql::now_ns()?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("insert data key"))?;
        if let Some(row) = inserted {
            return sql::VaultRow::key(&row);
        }
        let stored = sqlx::query(
            "SELECT subject::text, version, wrapped, master_key_id FROM eventsourcery_data_keys
             WHERE subject = $1",
        )
        .bind(key.subject.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("insert data key"))?;
        match stored {
            Some(row) => sql::VaultRow::key(&row),
            // Deleted between the two statements: the subject is being erased.
            None => Err(PersonalError::SubjectErased {
                subject: key.subject,
            }),
        }
    }

    async fn claim_keys(&self, keys: Vec<WrappedKey>) -> Result<Vec<bool>, PersonalError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let subjects: Vec<Uuid> = keys.iter().map(|k| k.subject.as_uuid()).collect();
        let versions: Vec<i64> = keys.iter().map(|k| i64::from(k.version)).collect();
        let wrapped: Vec<&[u8]> = keys.iter().map(|k| k.wrapped.as_slice()).collect();
        let master_keys: Vec<&str> = keys.iter().map(|k| k.master_key_id.as_str()).collect();
        // See migration 0002: the claim waits for an erasure of one of the subjects under
        // way, and reads the erasure records only once it holds their locks.
        let claimed: Vec<String> = sqlx::query_scalar(
            "SELECT s::text FROM eventsourcery_claim_keys($1, $2, $3, $4, $5) AS s",
        )
        .bind(&subjects)
        .bind(versions)
        .bind(wrapped)
        .bind(master_keys)
        .bind(sql::now_ns()?)
        .fetch_all(&self.pool)
        .await
        .map_err(db("claim data keys"))?;
        Ok(keys
            .iter()
            .map(|k| claimed.contains(&k.subject.to_string()))
            .collect())
    }

    async fn erase(
        &self,
        subject: PersonalKey,
        erased_at_ns: i64,
        reason: &str,
    ) -> Result<Erasure, PersonalError> {
        // Migration 0004: alone on the subject's lock, so the claims under way end first and
        // their keys are destroyed too; later claims see the record.
        let row = sqlx::query(
            "SELECT subject::text, erased_at_ns, reason, last_key_version, re_enrolled
             FROM eventsourcery_erase_subject($1, $2, $3)",
        )
        .bind(subject.as_uuid())
        .bind(erased_at_ns)
        .bind(reason)
        .fetch_one(&self.pool)
        .await
        .map_err(db("erase data key"))?;
        sql::VaultRow::erasure(&row)
    }

    async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError> {
        sqlx::query("UPDATE eventsourcery_erasures SET re_enrolled = TRUE WHERE subject = $1")
            .bind(subject.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(db("re-enroll"))?;
        Ok(())
    }
}
