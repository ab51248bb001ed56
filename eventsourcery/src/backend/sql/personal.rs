//! What the SQLite and PostgreSQL key and personal data stores share: table names, the
//! migration bookkeeping, and the decoding of rows into API types, where a bad column is a
//! [`PersonalError::Corrupt`] whose reason names the column but never shows its value.
//!
//! Both backends store the same columns. Subjects and references are UUIDs (text on SQLite,
//! `uuid` on PostgreSQL, selected as text so that one decoder serves both), times are
//! `BIGINT` nanoseconds since the Unix epoch, and `u32` key versions are `BIGINT`.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

use crate::personal::{PersonalError, PersonalKey};
use crate::store::{AuditEntry, AuditRecord, Erasure, PersonalRecord, WrappedKey};

/// The table in which the key store's migrator records applied schema versions.
pub(crate) const KEY_MIGRATIONS: &str = "eventsourcery_key_store_migrations";
/// The table in which the personal data store's migrator records applied schema versions.
pub(crate) const PERSONAL_MIGRATIONS: &str = "eventsourcery_personal_store_migrations";

/// The data keys table.
pub(crate) const DATA_KEYS: &str = "eventsourcery_data_keys";
/// The erasures table.
pub(crate) const ERASURES: &str = "eventsourcery_erasures";
/// The personal data table.
pub(crate) const PERSONAL_DATA: &str = "eventsourcery_personal_data";
/// The personal data store's record of erased subjects.
pub(crate) const ERASED_SUBJECTS: &str = "eventsourcery_erased_subjects";
/// The blind index table.
pub(crate) const BLIND_INDEX: &str = "eventsourcery_blind_index";
/// The audit log of reads of personal values.
pub(crate) const AUDIT_LOG: &str = "eventsourcery_audit_log";

/// Wraps a driver error with what was being done.
pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> PersonalError {
    move |source| PersonalError::Database { operation, source }
}

/// Nanoseconds since the Unix epoch (negative before it).
pub(crate) fn nanos(time: SystemTime, what: &'static str) -> Result<i64, PersonalError> {
    let out_of_range = PersonalError::OutOfRange { what };
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).map_err(|_| out_of_range),
        Err(before) => i64::try_from(before.duration().as_nanos())
            .map(|n| -n)
            .map_err(|_| out_of_range),
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> Result<i64, PersonalError> {
    nanos(SystemTime::now(), "the current time")
}

/// Reads a row's columns; a column that does not decode is a [`PersonalError::Corrupt`]
/// naming the table and column, never the value.
pub(crate) struct VaultRow<'r, R> {
    row: &'r R,
    table: &'static str,
}

impl<'r, R> VaultRow<'r, R>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    /// The columns of `row`, a row of `table`.
    fn at(row: &'r R, table: &'static str) -> Self {
        Self { row, table }
    }

    fn corrupt(&self, reason: String) -> PersonalError {
        PersonalError::Corrupt {
            table: self.table,
            reason,
        }
    }

    fn get<T>(&self, index: usize, column: &str, expected: &str) -> Result<T, PersonalError>
    where
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        // The driver's message is not shown: it may quote the stored value.
        self.row
            .try_get(index)
            .map_err(|_| self.corrupt(format!("column `{column}` does not hold {expected}")))
    }

    fn uuid(&self, index: usize, column: &str) -> Result<Uuid, PersonalError> {
        let text: String = self.get(index, column, "text")?;
        // Only the hyphenated form is written.
        if text.len() != 36 {
            return Err(self.corrupt(format!("column `{column}` is not a UUID (wrong length)")));
        }
        Uuid::parse_str(&text).map_err(|_| self.corrupt(format!("column `{column}` is not a UUID")))
    }

    fn subject(&self, index: usize, column: &str) -> Result<PersonalKey, PersonalError> {
        self.uuid(index, column).map(PersonalKey::from_uuid)
    }

    fn version(&self, index: usize, column: &str, least: u32) -> Result<u32, PersonalError> {
        let value: i64 = self.get(index, column, "an integer")?;
        match u32::try_from(value) {
            Ok(version) if version >= least => Ok(version),
            _ if value < 0 => Err(self.corrupt(format!("column `{column}` is negative"))),
            _ => Err(self.corrupt(format!(
                "column `{column}` is out of range for a key version"
            ))),
        }
    }

    /// Decodes a data key row selected as `subject, version, wrapped, master_key_id` (the subject
    /// as text).
    pub(crate) fn key(row: &'r R) -> Result<WrappedKey, PersonalError> {
        let columns = Self::at(row, DATA_KEYS);
        Ok(WrappedKey {
            subject: columns.subject(0, "subject")?,
            version: columns.version(1, "version", 1)?,
            wrapped: columns.get(2, "wrapped", "bytes")?,
            master_key_id: columns.get(3, "master_key_id", "text")?,
        })
    }

    /// Decodes an erasure row selected as `subject, erased_at_ns, reason, last_key_version,
    /// re_enrolled` (the subject as text).
    pub(crate) fn erasure(row: &'r R) -> Result<Erasure, PersonalError> {
        let columns = Self::at(row, ERASURES);
        Ok(Erasure {
            subject: columns.subject(0, "subject")?,
            erased_at: super::time(columns.get(1, "erased_at_ns", "an integer")?),
            reason: columns.get(2, "reason", "text")?,
            last_key_version: columns.version(3, "last_key_version", 0)?,
            re_enrolled: columns.get(4, "re_enrolled", "a boolean")?,
        })
    }

    /// Decodes a personal data row selected as `reference, subject, field, ciphertext` (UUIDs as
    /// text).
    pub(crate) fn record(row: &'r R) -> Result<PersonalRecord, PersonalError> {
        let columns = Self::at(row, PERSONAL_DATA);
        Ok(PersonalRecord {
            reference: columns.uuid(0, "reference")?,
            subject: columns.subject(1, "subject")?,
            field: columns.get(2, "field", "text")?,
            ciphertext: columns.get(3, "ciphertext", "bytes")?,
        })
    }

    /// Decodes an erased-subject row selected as `subject, last_key_version` (the subject as text).
    /// PostgreSQL checks erased subjects inside its put function, so only SQLite reads them.
    #[cfg(feature = "sqlite")]
    pub(crate) fn erased_subject(row: &'r R) -> Result<(PersonalKey, u32), PersonalError> {
        let columns = Self::at(row, ERASED_SUBJECTS);
        Ok((
            columns.subject(0, "subject")?,
            columns.version(1, "last_key_version", 0)?,
        ))
    }

    /// Decodes a blind index row selected as `subject` (as text).
    pub(crate) fn subject_of(row: &'r R) -> Result<PersonalKey, PersonalError> {
        Self::at(row, BLIND_INDEX).subject(0, "subject")
    }

    /// A JSON array column, each element decoded by `item`.
    fn json_list<T>(
        &self,
        index: usize,
        column: &str,
        item: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Result<Vec<T>, PersonalError> {
        let text: String = self.get(index, column, "text")?;
        let bad = || {
            self.corrupt(format!(
                "column `{column}` is not a JSON array of its items"
            ))
        };
        let values: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|_| bad())?;
        values.iter().map(|v| item(v).ok_or_else(bad)).collect()
    }

    /// Decodes an audit log row selected as `sequence, at_ns, actor, action, reason, stream,
    /// positions, subjects, fields`.
    pub(crate) fn audit(row: &'r R) -> Result<AuditRecord, PersonalError>
    where
        Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    {
        let columns = Self::at(row, AUDIT_LOG);
        let sequence: i64 = columns.get(0, "sequence", "an integer")?;
        let sequence = u64::try_from(sequence)
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| columns.corrupt("column `sequence` is not positive".into()))?;
        Ok(AuditRecord {
            sequence,
            entry: AuditEntry {
                at: super::time(columns.get(1, "at_ns", "an integer")?),
                actor: columns.get(2, "actor", "text")?,
                action: columns.get(3, "action", "text")?,
                reason: columns.get(4, "reason", "text")?,
                stream: columns.get(5, "stream", "text or NULL")?,
                positions: columns.json_list(6, "positions", serde_json::Value::as_u64)?,
                subjects: columns
                    .json_list(7, "subjects", |v| v.as_str().and_then(|s| s.parse().ok()))?,
                fields: columns.json_list(8, "fields", |v| v.as_str().map(str::to_owned))?,
            },
        })
    }
}

/// The JSON array columns of an audit entry: positions, subjects, fields.
pub(crate) fn audit_lists(entry: &AuditEntry) -> [String; 3] {
    let subjects: Vec<String> = entry.subjects.iter().map(ToString::to_string).collect();
    [
        serde_json::Value::from(entry.positions.clone()).to_string(),
        serde_json::Value::from(subjects).to_string(),
        serde_json::Value::from(entry.fields.clone()).to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_of_range_are_refused() {
        let far = UNIX_EPOCH + std::time::Duration::from_secs(400 * 365 * 24 * 3600);
        assert!(matches!(
            nanos(far, "erasure time"),
            Err(PersonalError::OutOfRange { .. })
        ));
        assert!(now_ns().is_ok());
    }
}
