//! [`ConsumerStore`] for the SQLite and PostgreSQL stores: consumer state lives in the event
//! store's database, so a projection's update and its checkpoint share one transaction.
//!
//! The SQL is written once, with `$n` placeholders, which both SQLite and PostgreSQL read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::error::BoxError;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::{SqlStore, db};
use crate::store::{
    ConsumerEntry, ConsumerState, ConsumerStore, Parked, ProjectionTx, StoreError, TxWork,
};

pub(crate) const ENSURE: &str =
    "INSERT INTO eventsourcery_consumers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING";
pub(crate) const STATE: &str = "SELECT position, parked_position, parked_error, parked_at_ns \
     FROM eventsourcery_consumers WHERE name = $1";
/// Moves the checkpoint from `$2` to `$3` (a missing row is created): one statement, one row
/// changed or none if another instance moved it.
pub(crate) const ADVANCE: &str = "INSERT INTO eventsourcery_consumers (name, position) \
     VALUES ($1, $3) ON CONFLICT (name) DO UPDATE SET position = excluded.position \
     WHERE eventsourcery_consumers.position = $2";
pub(crate) const PARK: &str = "INSERT INTO eventsourcery_consumers \
     (name, parked_position, parked_error, parked_at_ns) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (name) DO UPDATE SET parked_position = excluded.parked_position, \
         parked_error = excluded.parked_error, parked_at_ns = excluded.parked_at_ns \
     WHERE eventsourcery_consumers.position = $5";
pub(crate) const UNPARK: &str = "UPDATE eventsourcery_consumers \
     SET parked_position = NULL, parked_error = NULL, parked_at_ns = NULL WHERE name = $1";
pub(crate) const SKIP_RECORD: &str = "INSERT INTO eventsourcery_consumer_skips \
     (consumer, position, reason, skipped_at_ns) VALUES ($1, $2, $3, $4)";
pub(crate) const SKIP_MOVE: &str = "INSERT INTO eventsourcery_consumers (name, position) \
     VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET position = CASE \
         WHEN eventsourcery_consumers.position < excluded.position THEN excluded.position \
         ELSE eventsourcery_consumers.position END, \
         parked_position = NULL, parked_error = NULL, parked_at_ns = NULL";
pub(crate) const SKIPPED: &str = "SELECT position, reason FROM eventsourcery_consumer_skips \
     WHERE consumer = $1 ORDER BY skipped_at_ns, position";
pub(crate) const CLAIM: &str = "INSERT INTO eventsourcery_consumers (name, lease_owner, lease_expires_at_ns) \
     VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE \
     SET lease_owner = excluded.lease_owner, lease_expires_at_ns = excluded.lease_expires_at_ns \
     WHERE eventsourcery_consumers.lease_owner IS NULL \
        OR eventsourcery_consumers.lease_owner = excluded.lease_owner \
        OR eventsourcery_consumers.lease_expires_at_ns < $4 \
     RETURNING lease_owner";
pub(crate) const RELEASE: &str = "UPDATE eventsourcery_consumers \
     SET lease_owner = NULL, lease_expires_at_ns = NULL WHERE name = $1 AND lease_owner = $2";
/// The rows whose names start with `$1`, with their leases if unexpired at `$2`.
pub(crate) const LIST: &str = "SELECT name, position, CASE WHEN lease_expires_at_ns >= $2 \
     THEN lease_owner END FROM eventsourcery_consumers \
     WHERE substr(name, 1, length($1)) = $1 ORDER BY name";
pub(crate) const RESET: &str = "UPDATE eventsourcery_consumers SET position = 0, \
     parked_position = NULL, parked_error = NULL, parked_at_ns = NULL WHERE name = $1";
pub(crate) const RETIRE: &str = "UPDATE eventsourcery_consumers SET position = 0, \
     parked_position = 0, parked_error = $2, parked_at_ns = $3 WHERE name = $1";
pub(crate) const FORGET: &str = "DELETE FROM eventsourcery_consumers WHERE name = $1";
/// Row `$1` unless its lease is held and unexpired at `$2`.
pub(crate) const FORGET_EXPIRED: &str = "DELETE FROM eventsourcery_consumers WHERE name = $1 \
     AND (lease_owner IS NULL OR lease_expires_at_ns IS NULL OR lease_expires_at_ns < $2)";
pub(crate) const IS_PROCESSED: &str =
    "SELECT 1 FROM eventsourcery_processed_events WHERE consumer = $1 AND event_id = $2";
pub(crate) const PROCESSED: &str = "INSERT INTO eventsourcery_processed_events (consumer, event_id) \
     VALUES ($1, $2) ON CONFLICT DO NOTHING";

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    super::to_i64(value, "position")
}

fn to_u64(value: i64, consumer: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        table: "eventsourcery_consumers",
        location: format!("consumer `{consumer}`"),
        reason: format!("negative position {value}"),
    })
}

/// A consumer row: position, and where, why and when it was parked.
type StateRow = (i64, Option<i64>, Option<String>, Option<i64>);

fn state_from_row(consumer: &str, row: Option<StateRow>) -> Result<ConsumerState, StoreError> {
    let Some((position, parked_position, parked_error, parked_at)) = row else {
        return Ok(ConsumerState::default());
    };
    let parked = match parked_position {
        Some(at) => Some(Parked::new(
            to_u64(at, consumer)?,
            parked_error.unwrap_or_default(),
            UNIX_EPOCH + Duration::from_nanos(parked_at.unwrap_or(0).max(0) as u64),
        )),
        None => None,
    };
    Ok(ConsumerState {
        position: to_u64(position, consumer)?,
        parked,
    })
}

/// Creates `consumer`'s row if it has none and locks it until `tx` ends (where the database has
/// row locks): its position as stored.
async fn lock_row<S: SqlStore>(
    tx: &mut sqlx::Transaction<'_, S::Db>,
    consumer: &str,
    operation: &'static str,
) -> Result<i64, StoreError>
where
    for<'c> &'c mut <S::Db as sqlx::Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as sqlx::Database>::Arguments: IntoArguments<S::Db>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'r> (i64,): sqlx::FromRow<'r, <S::Db as sqlx::Database>::Row>,
{
    sqlx::query(ENSURE)
        .bind(consumer)
        .execute(&mut **tx)
        .await
        .map_err(db(operation))?;
    sqlx::query_scalar(S::SQL.lock_checkpoint)
        .bind(consumer)
        .fetch_one(&mut **tx)
        .await
        .map_err(db(operation))
}

/// The error of a write that found `consumer`'s checkpoint moved from `expected`: reads where
/// it is, in the write's transaction, then rolls the transaction back.
async fn moved_from<B: super::Backend>(
    mut tx: sqlx::Transaction<'_, B>,
    consumer: &str,
    expected: u64,
    operation: &'static str,
) -> StoreError
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    B::Arguments: IntoArguments<B>,
    for<'q> &'q str: Encode<'q, B> + Type<B>,
    StateRow: for<'r> sqlx::FromRow<'r, B::Row>,
{
    let row = sqlx::query_as(STATE)
        .bind(consumer)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db(operation));
    let actual = match row.and_then(|row| state_from_row(consumer, row)) {
        Ok(state) => state.position,
        Err(error) => return error,
    };
    match tx.rollback().await.map_err(db(operation)) {
        Ok(()) => StoreError::checkpoint_moved(consumer, expected, actual),
        Err(error) => error,
    }
}

/// Runs `query` alone in a write transaction; the number of rows it changed.
///
/// With `checkpoint` (a consumer and where its checkpoint should be), `query` moves that
/// checkpoint, changing its one row unless another instance moved it first: then nothing is
/// committed and the error says where the checkpoint is.
async fn write_alone<S: SqlStore>(
    store: &S,
    query: Query<'_, S::Db, <S::Db as sqlx::Database>::Arguments>,
    operation: &'static str,
    checkpoint: Option<(&str, u64)>,
) -> Result<u64, StoreError>
where
    for<'c> &'c mut <S::Db as sqlx::Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as sqlx::Database>::Arguments: IntoArguments<S::Db>,
    <S::Db as sqlx::Database>::QueryResult: RowsAffected,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    StateRow: for<'r> sqlx::FromRow<'r, <S::Db as sqlx::Database>::Row>,
{
    let (_writer, mut tx) = store.begin_write().await?;
    let changed = query
        .execute(&mut *tx)
        .await
        .map_err(db(operation))?
        .rows_affected();
    if let Some((consumer, expected)) = checkpoint
        && changed != 1
    {
        return Err(moved_from(tx, consumer, expected, operation).await);
    }
    tx.commit().await.map_err(db(operation))?;
    Ok(changed)
}

fn lease_until(lease: Duration) -> i64 {
    now_ns().saturating_add(i64::try_from(lease.as_nanos()).unwrap_or(i64::MAX))
}

#[async_trait::async_trait]
impl<S> ConsumerStore for S
where
    S: SqlStore,
    for<'c> &'c mut <S::Db as sqlx::Database>::Connection: Executor<'c, Database = S::Db>,
    <S::Db as sqlx::Database>::Arguments: IntoArguments<S::Db>,
    usize: ColumnIndex<<S::Db as sqlx::Database>::Row>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i32: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    <S::Db as sqlx::Database>::QueryResult: RowsAffected,
{
    async fn consumer_state(&self, consumer: &str) -> Result<ConsumerState, StoreError> {
        let row = sqlx::query_as(STATE)
            .bind(consumer)
            .fetch_optional(SqlStore::pool(self))
            .await
            .map_err(db("consumer state"))?;
        state_from_row(consumer, row)
    }

    async fn advance(&self, consumer: &str, from: u64, to: u64) -> Result<(), StoreError> {
        let query = sqlx::query(ADVANCE)
            .bind(consumer)
            .bind(to_i64(from)?)
            .bind(to_i64(to)?);
        write_alone(self, query, "advance", Some((consumer, from))).await?;
        Ok(())
    }

    async fn advance_with(
        &self,
        consumer: &str,
        from: u64,
        to: u64,
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), BoxError>, StoreError> {
        let (_writer, mut tx) = self.begin_write().await?;
        let current = lock_row::<S>(&mut tx, consumer, "projection").await?;
        let current = to_u64(current, consumer)?;
        if current != from {
            tx.rollback().await.map_err(db("projection"))?;
            return Err(StoreError::checkpoint_moved(consumer, from, current));
        }
        if let Err(error) = work.run(&mut ProjectionTx::new(S::NAME, &mut *tx)).await {
            tx.rollback().await.map_err(db("projection"))?;
            return Ok(Err(error));
        }
        sqlx::query(ADVANCE)
            .bind(consumer)
            .bind(to_i64(from)?)
            .bind(to_i64(to)?)
            .execute(&mut *tx)
            .await
            .map_err(db("projection"))?;
        tx.commit().await.map_err(db("projection"))?;
        Ok(Ok(()))
    }

    async fn reset(
        &self,
        consumers: &[String],
        retire: &[String],
        work: &(dyn TxWork + '_),
    ) -> Result<Result<(), BoxError>, StoreError> {
        let (_writer, mut tx) = self.begin_write().await?;
        // Locked in name order, as every instance would, so two resets cannot deadlock; the
        // retired rows too, so that a batch of the old count cannot commit behind the reset.
        let mut locked: Vec<&String> = consumers.iter().chain(retire).collect();
        locked.sort();
        locked.dedup();
        for consumer in locked {
            lock_row::<S>(&mut tx, consumer, "reset").await?;
        }
        if let Err(error) = work.run(&mut ProjectionTx::new(S::NAME, &mut *tx)).await {
            tx.rollback().await.map_err(db("reset"))?;
            return Ok(Err(error));
        }
        for consumer in consumers {
            sqlx::query(RESET)
                .bind(consumer.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("reset"))?;
        }
        for consumer in retire {
            sqlx::query(RETIRE)
                .bind(consumer.as_str())
                .bind(crate::store::RETIRED)
                .bind(now_ns())
                .execute(&mut *tx)
                .await
                .map_err(db("reset"))?;
        }
        tx.commit().await.map_err(db("reset"))?;
        Ok(Ok(()))
    }

    async fn park(&self, consumer: &str, position: u64, error: &str) -> Result<(), StoreError> {
        let expected = position.saturating_sub(1);
        let query = sqlx::query(PARK)
            .bind(consumer)
            .bind(to_i64(position)?)
            .bind(error)
            .bind(now_ns())
            .bind(to_i64(expected)?);
        write_alone(self, query, "park", Some((consumer, expected))).await?;
        Ok(())
    }

    async fn unpark(&self, consumer: &str) -> Result<(), StoreError> {
        write_alone(self, sqlx::query(UNPARK).bind(consumer), "unpark", None).await?;
        Ok(())
    }

    async fn skip(&self, consumer: &str, position: u64, reason: &str) -> Result<(), StoreError> {
        let (_writer, mut tx) = self.begin_write().await?;
        sqlx::query(SKIP_RECORD)
            .bind(consumer)
            .bind(to_i64(position)?)
            .bind(reason)
            .bind(now_ns())
            .execute(&mut *tx)
            .await
            .map_err(db("skip"))?;
        sqlx::query(SKIP_MOVE)
            .bind(consumer)
            .bind(to_i64(position)?)
            .execute(&mut *tx)
            .await
            .map_err(db("skip"))?;
        tx.commit().await.map_err(db("skip"))
    }

    async fn skipped(&self, consumer: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let rows: Vec<(i64, String)> = sqlx::query_as(SKIPPED)
            .bind(consumer)
            .fetch_all(SqlStore::pool(self))
            .await
            .map_err(db("skipped"))?;
        rows.into_iter()
            .map(|(p, r)| Ok((to_u64(p, consumer)?, r)))
            .collect()
    }

    async fn claim(
        &self,
        consumer: &str,
        owner: Uuid,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let (_writer, mut tx) = self.begin_write().await?;
        let holder: Option<Option<String>> = sqlx::query_scalar(CLAIM)
            .bind(consumer)
            .bind(owner.to_string())
            .bind(lease_until(lease))
            .bind(now_ns())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("claim"))?;
        tx.commit().await.map_err(db("claim"))?;
        Ok(holder.flatten().is_some_and(|h| h == owner.to_string()))
    }

    async fn release(&self, consumer: &str, owner: Uuid) -> Result<(), StoreError> {
        let query = sqlx::query(RELEASE).bind(consumer).bind(owner.to_string());
        write_alone(self, query, "release", None).await?;
        Ok(())
    }

    async fn consumers(&self, prefix: &str) -> Result<Vec<ConsumerEntry>, StoreError> {
        let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(LIST)
            .bind(prefix)
            .bind(now_ns())
            .fetch_all(SqlStore::pool(self))
            .await
            .map_err(db("list consumers"))?;
        rows.into_iter()
            .map(|(name, position, holder)| {
                let position = to_u64(position, &name)?;
                // A holder that is not a uuid was not written by this library: no holder.
                let holder = holder.and_then(|h| Uuid::parse_str(&h).ok());
                Ok(ConsumerEntry::new(name, position, holder))
            })
            .collect()
    }

    async fn forget(&self, consumer: &str) -> Result<(), StoreError> {
        write_alone(
            self,
            sqlx::query(FORGET).bind(consumer),
            "forget consumer",
            None,
        )
        .await?;
        Ok(())
    }

    async fn forget_expired(&self, consumer: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(FORGET_EXPIRED).bind(consumer).bind(now_ns());
        Ok(write_alone(self, query, "forget expired consumer", None).await? == 1)
    }

    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        let query = sqlx::query(PROCESSED)
            .bind(consumer)
            .bind(event_id.to_string());
        Ok(write_alone(self, query, "mark processed", None).await? == 1)
    }

    async fn is_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        let found: Option<i32> = sqlx::query_scalar(IS_PROCESSED)
            .bind(consumer)
            .bind(event_id.to_string())
            .fetch_optional(SqlStore::pool(self))
            .await
            .map_err(db("is processed"))?;
        Ok(found.is_some())
    }

    async fn wait_for_append(&self, timeout: Duration) -> Result<(), StoreError> {
        SqlStore::wait_for_append(self, timeout).await
    }

    async fn stop_waiting(&self) {
        SqlStore::stop_waiting(self).await
    }
}

/// The number of rows a statement changed, which sqlx's drivers report each in their own type.
pub(crate) trait RowsAffected {
    /// The number of rows changed.
    fn rows_affected(&self) -> u64;
}
