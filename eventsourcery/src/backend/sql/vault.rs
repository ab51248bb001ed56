//! The SQL key and personal data stores' [`KeyStore`] and [`PersonalStore`], written once: the
//! reads are here, over the backend's statements ([`VaultSql`]) and its way of binding UUIDs;
//! the writes, where the backends keep their erasure guarantees each in its own way (SQLite's
//! write transactions, PostgreSQL's subject locks in stored functions), stay in the backend.

use std::future::Future;
use std::time::SystemTime;

use sqlx::query::Query;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type};
use uuid::Uuid;

use super::Backend;
use super::personal::{VaultRow, audit_lists, db, nanos};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::{
    AuditEntry, AuditRecord, Erasure, IndexEntry, KeyStore, PersonalRecord, PersonalStore,
    WrappedKey,
};

/// One dialect's reads of the key and personal data stores. UUIDs are bound as the backend's
/// [`Backend::Uuids`] (a list) or [`Backend::After`] (a lower bound, none for the first page)
/// and selected as text; `$n` are the parameters.
pub(crate) struct VaultSql {
    /// The data keys of the subjects `$1`, as `VaultRow::key` reads them.
    pub(crate) keys: &'static str,
    /// The erasure records of the subjects `$1`, as `VaultRow::erasure` reads them.
    pub(crate) erasures: &'static str,
    /// Up to `$2` data keys of subjects after `$1`, in subject order.
    pub(crate) keys_after: &'static str,
    /// The personal data records with the references `$1`, as `VaultRow::record` reads them.
    pub(crate) records: &'static str,
    /// The records of subject `$1`, oldest first.
    pub(crate) by_subject: &'static str,
    /// The distinct subjects with blind index hash `$1`, in order.
    pub(crate) find: &'static str,
    /// Up to `$2` records with references after `$1`, in reference order.
    pub(crate) records_after: &'static str,
}

/// Replaces the wrapping of the data key `$1` version `$2` by `$3`, under master key `$4`.
const REWRAP_KEY: &str = "UPDATE eventsourcery_data_keys SET wrapped = $3, master_key_id = $4 \
    WHERE subject = $1 AND version = $2";

/// Appends an audit entry; the database numbers it. The same text in both dialects.
const APPEND_AUDIT: &str = "INSERT INTO eventsourcery_audit_log \
    (at_ns, actor, action, reason, stream, positions, subjects, fields) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING sequence";

/// Up to `$2` audit entries after sequence `$1`, in order.
const AUDIT_AFTER: &str = "SELECT sequence, at_ns, actor, action, reason, stream, positions, \
    subjects, fields FROM eventsourcery_audit_log WHERE sequence > $1 ORDER BY sequence LIMIT $2";

/// The erasure epoch, which every erasure moves on.
const ERASURE_EPOCH: &str = "SELECT epoch FROM eventsourcery_erasure_epoch WHERE id = 1";

/// A SQL key or personal data store: its pool and its reads.
pub(crate) trait SqlVaultStore: Send + Sync + 'static {
    /// The database.
    type Db: Backend;
    /// The reads in the backend's dialect.
    const SQL: &'static VaultSql;

    /// Held while this process writes, where the database admits one writer at a time.
    type Writer: Send;

    /// The connection pool.
    fn pool(&self) -> &Pool<Self::Db>;

    /// A write transaction for `operation`, taken in turn with this process's other writers.
    fn begin_write(
        &self,
        operation: &'static str,
    ) -> impl Future<Output = Result<(Self::Writer, Transaction<'static, Self::Db>), PersonalError>> + Send;
}

/// A SQL key store: the writes its backend does its own way. [`KeyStore`] is implemented
/// once for every such store.
pub(crate) trait SqlKeyStore: SqlVaultStore {
    /// [`KeyStore::insert_key`].
    fn insert_key(
        &self,
        key: WrappedKey,
    ) -> impl Future<Output = Result<WrappedKey, PersonalError>> + Send;

    /// [`KeyStore::claim_keys`].
    fn claim_keys(
        &self,
        keys: Vec<WrappedKey>,
    ) -> impl Future<Output = Result<Vec<bool>, PersonalError>> + Send;

    /// [`KeyStore::erase`], the time already in nanoseconds since the Unix epoch.
    fn erase(
        &self,
        subject: PersonalKey,
        erased_at_ns: i64,
        reason: &str,
    ) -> impl Future<Output = Result<Erasure, PersonalError>> + Send;

    /// [`KeyStore::re_enroll`].
    fn re_enroll(
        &self,
        subject: PersonalKey,
    ) -> impl Future<Output = Result<(), PersonalError>> + Send;
}

/// A SQL personal data store: the writes its backend does its own way. [`PersonalStore`] is
/// implemented once for every such store.
pub(crate) trait SqlPersonalStore: SqlVaultStore {
    /// [`PersonalStore::put`].
    fn put(
        &self,
        records: Vec<PersonalRecord>,
        index: Vec<IndexEntry>,
    ) -> impl Future<Output = Result<Vec<PersonalKey>, PersonalError>> + Send;

    /// [`PersonalStore::erase_subject`].
    fn erase_subject(
        &self,
        subject: PersonalKey,
        last_key_version: u32,
    ) -> impl Future<Output = Result<u64, PersonalError>> + Send;

    /// [`PersonalStore::delete`], given at least one reference.
    fn delete(
        &self,
        references: &[Uuid],
    ) -> impl Future<Output = Result<u64, PersonalError>> + Send;

    /// [`PersonalStore::raise_index_floor`].
    fn raise_index_floor(
        &self,
        version: u32,
    ) -> impl Future<Output = Result<u32, PersonalError>> + Send;

    /// [`PersonalStore::delete_index_entries_below`].
    fn delete_index_entries_below(
        &self,
        version: u32,
    ) -> impl Future<Output = Result<u64, PersonalError>> + Send;
}

/// The rows `query` selects; a driver error names `operation`.
async fn fetch_rows<B>(
    pool: &Pool<B>,
    query: Query<'_, B, B::Arguments>,
    operation: &'static str,
) -> Result<Vec<B::Row>, PersonalError>
where
    B: Backend,
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    B::Arguments: IntoArguments<B>,
{
    query.fetch_all(pool).await.map_err(db(operation))
}

/// The rows of `sql` for the UUIDs `ids`, bound as one list (`$1`); no rows, and no query, for
/// no UUIDs.
async fn of_uuids<B>(
    pool: &Pool<B>,
    sql: &'static str,
    ids: impl ExactSizeIterator<Item = Uuid>,
    operation: &'static str,
) -> Result<Vec<B::Row>, PersonalError>
where
    B: Backend,
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    B::Arguments: IntoArguments<B>,
{
    if ids.len() == 0 {
        return Ok(Vec::new());
    }
    fetch_rows(pool, sqlx::query(sql).bind(B::uuids(ids)), operation).await
}

/// The query of a page of `sql`: `$1` the lower bound (none for the first page), `$2` the size.
fn page<B: Backend>(
    sql: &'static str,
    after: Option<Uuid>,
    limit: usize,
) -> Query<'static, B, B::Arguments>
where
    for<'q> i64: Encode<'q, B> + Type<B>,
{
    sqlx::query(sql)
        .bind(B::after(after))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
}

#[async_trait::async_trait]
impl<S> KeyStore for S
where
    S: SqlKeyStore,
    for<'c> &'c mut <S::Db as sqlx::Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as sqlx::Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as sqlx::Database>::Row>,
    for<'q, 'h> &'h [u8]: Encode<'q, S::Db> + Type<S::Db>,
    for<'q, 'h> &'h str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> bool: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Decode<'q, S::Db> + Type<S::Db>,
{
    async fn keys(&self, subjects: &[PersonalKey]) -> Result<Vec<WrappedKey>, PersonalError> {
        let subjects = subjects.iter().map(PersonalKey::as_uuid);
        let (sql, operation) = (S::SQL.keys, "read data keys");
        let rows = of_uuids(self.pool(), sql, subjects, operation).await?;
        rows.iter().map(VaultRow::key).collect()
    }

    async fn insert_key(&self, key: WrappedKey) -> Result<WrappedKey, PersonalError> {
        SqlKeyStore::insert_key(self, key).await
    }

    async fn claim_keys(&self, keys: Vec<WrappedKey>) -> Result<Vec<bool>, PersonalError> {
        SqlKeyStore::claim_keys(self, keys).await
    }

    async fn erase(
        &self,
        subject: PersonalKey,
        erased_at: SystemTime,
        reason: &str,
    ) -> Result<Erasure, PersonalError> {
        let erased_at_ns = nanos(erased_at, "the erasure time")?;
        SqlKeyStore::erase(self, subject, erased_at_ns, reason).await
    }

    async fn erasures(&self, subjects: &[PersonalKey]) -> Result<Vec<Erasure>, PersonalError> {
        let subjects = subjects.iter().map(PersonalKey::as_uuid);
        let (sql, operation) = (S::SQL.erasures, "read erasures");
        let rows = of_uuids(self.pool(), sql, subjects, operation).await?;
        rows.iter().map(VaultRow::erasure).collect()
    }

    async fn erasure_epoch(&self) -> Result<u64, PersonalError> {
        let epoch: i64 = sqlx::query_scalar(ERASURE_EPOCH)
            .fetch_one(self.pool())
            .await
            .map_err(db("read the erasure epoch"))?;
        Ok(epoch.unsigned_abs())
    }

    async fn re_enroll(&self, subject: PersonalKey) -> Result<(), PersonalError> {
        SqlKeyStore::re_enroll(self, subject).await
    }

    async fn keys_after(
        &self,
        after: Option<PersonalKey>,
        limit: usize,
    ) -> Result<Vec<WrappedKey>, PersonalError> {
        let query = page(S::SQL.keys_after, after.map(|s| s.as_uuid()), limit);
        let rows = fetch_rows(self.pool(), query, "read data keys").await?;
        rows.iter().map(VaultRow::key).collect()
    }

    async fn rewrap_keys(&self, mut keys: Vec<WrappedKey>) -> Result<(), PersonalError> {
        const OPERATION: &str = "rewrap data keys";
        // One lock order for every writer.
        keys.sort_by_key(|k| k.subject);
        let (_writer, mut tx) = self.begin_write(OPERATION).await?;
        for key in &keys {
            sqlx::query(REWRAP_KEY)
                .bind(S::Db::uuid(key.subject.as_uuid()))
                .bind(i64::from(key.version))
                .bind(key.wrapped.as_slice())
                .bind(key.master_key_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db(OPERATION))?;
        }
        tx.commit().await.map_err(db(OPERATION))
    }
}

#[async_trait::async_trait]
impl<S> PersonalStore for S
where
    S: SqlPersonalStore,
    for<'c> &'c mut <S::Db as sqlx::Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as sqlx::Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as sqlx::Database>::Row>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> bool: Decode<'q, S::Db> + Type<S::Db>,
    for<'q, 'h> &'h [u8]: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<String>: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Decode<'q, S::Db> + Type<S::Db>,
{
    async fn put(
        &self,
        records: Vec<PersonalRecord>,
        index: Vec<IndexEntry>,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        if records.is_empty() && index.is_empty() {
            return Ok(Vec::new());
        }
        SqlPersonalStore::put(self, records, index).await
    }

    async fn get(&self, references: &[Uuid]) -> Result<Vec<PersonalRecord>, PersonalError> {
        let references = references.iter().copied();
        let (sql, operation) = (S::SQL.records, "read personal data");
        let rows = of_uuids(self.pool(), sql, references, operation).await?;
        rows.iter().map(VaultRow::record).collect()
    }

    async fn by_subject(&self, subject: PersonalKey) -> Result<Vec<PersonalRecord>, PersonalError> {
        let subject = S::Db::uuid(subject.as_uuid());
        let query = sqlx::query(S::SQL.by_subject).bind(subject);
        let rows = fetch_rows(self.pool(), query, "read personal data").await?;
        rows.iter().map(VaultRow::record).collect()
    }

    async fn erase_subject(
        &self,
        subject: PersonalKey,
        last_key_version: u32,
    ) -> Result<u64, PersonalError> {
        SqlPersonalStore::erase_subject(self, subject, last_key_version).await
    }

    async fn delete(&self, references: &[Uuid]) -> Result<u64, PersonalError> {
        if references.is_empty() {
            return Ok(0);
        }
        SqlPersonalStore::delete(self, references).await
    }

    async fn find(&self, hash: &[u8]) -> Result<Vec<PersonalKey>, PersonalError> {
        let query = sqlx::query(S::SQL.find).bind(hash);
        let rows = fetch_rows(self.pool(), query, "blind index lookup").await?;
        rows.iter().map(VaultRow::subject_of).collect()
    }

    async fn records_after(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PersonalRecord>, PersonalError> {
        let query = page(S::SQL.records_after, after, limit);
        let rows = fetch_rows(self.pool(), query, "read personal data").await?;
        rows.iter().map(VaultRow::record).collect()
    }

    async fn raise_index_floor(&self, version: u32) -> Result<u32, PersonalError> {
        SqlPersonalStore::raise_index_floor(self, version).await
    }

    async fn delete_index_entries_below(&self, version: u32) -> Result<u64, PersonalError> {
        SqlPersonalStore::delete_index_entries_below(self, version).await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64, PersonalError> {
        const OPERATION: &str = "append an audit entry";
        if let Some(problem) = entry.problem() {
            return Err(PersonalError::InvalidAudit { problem });
        }
        let at = nanos(entry.at, "the audit entry's time")?;
        let [positions, subjects, fields] = audit_lists(entry);
        let (_writer, mut tx) = self.begin_write(OPERATION).await?;
        let sequence: i64 = sqlx::query_scalar(APPEND_AUDIT)
            .bind(at)
            .bind(entry.actor.clone())
            .bind(entry.action.clone())
            .bind(entry.reason.clone())
            .bind(entry.stream.clone())
            .bind(positions)
            .bind(subjects)
            .bind(fields)
            .fetch_one(&mut *tx)
            .await
            .map_err(db(OPERATION))?;
        tx.commit().await.map_err(db(OPERATION))?;
        Ok(sequence.unsigned_abs())
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, PersonalError> {
        let query = sqlx::query(AUDIT_AFTER)
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = fetch_rows(self.pool(), query, "read the audit log").await?;
        rows.iter().map(VaultRow::audit).collect()
    }
}
