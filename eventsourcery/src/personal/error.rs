//! The errors of the personal data subsystem.

use uuid::Uuid;

use super::PersonalKey;

/// Personal data could not be stored, read, erased or exported.
///
/// None of these carries a personal value or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersonalError {
    /// Personal fields were written or read without a personal data vault configured.
    #[error(
        "this event or command has personal fields, but no personal data vault is configured; call `.personal_data(vault)` on the bus builder"
    )]
    NoVault,
    /// The subject was erased and not re-enrolled: no new personal data is accepted.
    #[error(
        "data subject {subject} was erased; new personal data is refused unless the subject is re-enrolled"
    )]
    SubjectErased {
        /// The subject.
        subject: PersonalKey,
    },
    /// A ciphertext failed authentication: tampered with, truncated, or moved to another row.
    #[error(
        "personal data {reference} of subject {subject} failed authentication (tampered, truncated or moved)"
    )]
    Tampered {
        /// The personal data reference.
        reference: Uuid,
        /// The subject.
        subject: PersonalKey,
    },
    /// A ciphertext names a key version the subject does not have.
    #[error(
        "personal data {reference} of subject {subject} is encrypted under key version {found}, but the subject's key is version {current}"
    )]
    UnknownKeyVersion {
        /// The personal data reference.
        reference: Uuid,
        /// The subject.
        subject: PersonalKey,
        /// The version in the ciphertext.
        found: u32,
        /// The subject's current version.
        current: u32,
    },
    /// A reference in a stored payload points at a value bound to another field (references
    /// swapped between fields, or copied from another event or command).
    #[error(
        "personal data {reference} of subject {subject} belongs to field `{found}`, not to `{expected}` (moved between fields)"
    )]
    FieldMismatch {
        /// The personal data reference.
        reference: Uuid,
        /// The subject.
        subject: PersonalKey,
        /// The field that holds the reference: `"{event or command}.{field}"`.
        expected: Box<str>,
        /// The field the value was encrypted for.
        found: Box<str>,
    },
    /// An event refers to personal data that is not stored, and its subject was never erased.
    #[error(
        "personal data {reference} of subject {subject} is missing from the personal data store"
    )]
    Missing {
        /// The personal data reference.
        reference: Uuid,
        /// The subject.
        subject: PersonalKey,
    },
    /// Personal data exists, but its subject has no data key and was never erased.
    #[error("data subject {subject} has personal data but no data key")]
    MissingKey {
        /// The subject.
        subject: PersonalKey,
    },
    /// A stored personal data row names another subject than the event referring to it.
    #[error("personal data {reference} belongs to another subject than the event says ({subject})")]
    SubjectMismatch {
        /// The personal data reference.
        reference: Uuid,
        /// The subject the event names.
        subject: PersonalKey,
    },
    /// A data key could not be unwrapped with the configured master key.
    #[error(
        "the data key of subject {subject} cannot be unwrapped: wrong master key, or the key row was altered"
    )]
    WrongMasterKey {
        /// The subject.
        subject: PersonalKey,
    },
    /// The master key configuration is missing or malformed (the key itself is never shown).
    #[error("master key: {0}")]
    MasterKey(String),
    /// A decrypted value does not parse as its type.
    #[error("decrypted personal data does not parse as `{type_name}`")]
    InvalidPlaintext {
        /// The personal data type.
        type_name: &'static str,
    },
    /// A personal value could not be turned into its plaintext form (one of its parts failed
    /// to serialize); nothing was stored.
    #[error("personal data of type `{type_name}` could not be turned into its plaintext form")]
    UnserializablePlaintext {
        /// The personal data type.
        type_name: &'static str,
    },
    /// A stored reference to personal data is malformed.
    #[error("malformed personal data reference in a stored payload")]
    MalformedReference,
    /// An erased value was read into a field that cannot hold one (a command's bare `T`).
    #[error(
        "an erased value cannot be read into a plain `{type_name}` field; use `Personal<{type_name}>`"
    )]
    ErasedIntoPlainField {
        /// The personal data type.
        type_name: &'static str,
    },
    /// The system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The subject's data key changed again and again while its values were written (it was
    /// erased and re-enrolled meanwhile). Nothing refers to the values; write them again.
    #[error("the data key of subject {subject} changed while its personal data was written")]
    KeyRace {
        /// The subject.
        subject: PersonalKey,
    },
    /// The task writing a batch of personal data ended without finishing (it panicked), so
    /// whether these values were stored is unknown. Nothing refers to them yet.
    #[error("the task writing personal data ended without an answer")]
    Unanswered,
    /// An erasure deleted everything, but the SQLite write-ahead log, which still holds earlier
    /// images of the erased pages, could not be truncated because readers kept using it.
    /// Erasing again finishes the job.
    #[error(
        "the erasure is recorded and the data deleted, but the write-ahead log of {database} could not be truncated while readers used it; erase the subject again to finish"
    )]
    WalBusy {
        /// The database file.
        database: String,
    },
    /// A blind-index entry was made with an index key that a rotation retired (the writer
    /// read the index keys before the rotation began); nothing was stored. The vault writes
    /// again with the current index key.
    #[error(
        "a blind-index entry was made with index key version {found}, which a rotation retired"
    )]
    StaleIndexKey {
        /// The version the entry was made with.
        found: u32,
    },
    /// A stored row is malformed.
    #[error("corrupt row in `{table}`: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong (never a value).
        reason: String,
    },
    /// A value cannot be stored in the database's columns (a time far outside 1677..2262).
    #[error("{what} is outside the range the database can store")]
    OutOfRange {
        /// What was out of range.
        what: &'static str,
    },
    /// An audit entry is incomplete (no actor, no reason): nothing was recorded or read.
    #[error("{problem}")]
    InvalidAudit {
        /// What is missing.
        problem: &'static str,
    },
    /// The key or personal data database was migrated by a newer program.
    #[error(
        "the {database} schema is at version {found}, newer than version {supported} that this program knows; upgrade eventsourcery"
    )]
    SchemaTooNew {
        /// Which database.
        database: &'static str,
        /// The version found.
        found: i64,
        /// The newest version this program has.
        supported: i64,
    },
    /// The key or personal data database failed.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("database error during {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrating the key or personal data database failed.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[error("migrating the {database} schema: {source}")]
    Migrate {
        /// Which database.
        database: &'static str,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A PostgreSQL key store or personal data store would be reached over a network without
    /// TLS (see [`crate::tls`]).
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    PlaintextConnection(#[from] crate::error::PlaintextRefused),
    /// The master key file may be read or written by its group or by others.
    #[error(
        "master key file {}: accessible by group or others (mode {mode:03o}); make it readable by its owner only: chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    MasterKeyFileMode {
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A SQLite key store or personal data store file could not be created, or its permissions
    /// not restricted to its owner.
    #[error("creating {} for its owner only, or restricting it to its owner: {source}", .path.display())]
    FileMode {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl PersonalError {
    /// A copy of this error, for one failure reported at each place it concerns (a reference
    /// held by two fields, a data key that opens several values). Driver errors are copied as
    /// [`copy_error`](crate::error::copy_sqlx_error) copies them.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::NoVault => Self::NoVault,
            Self::SubjectErased { subject } => Self::SubjectErased { subject: *subject },
            Self::Tampered { reference, subject } => Self::Tampered {
                reference: *reference,
                subject: *subject,
            },
            Self::UnknownKeyVersion {
                reference,
                subject,
                found,
                current,
            } => Self::UnknownKeyVersion {
                reference: *reference,
                subject: *subject,
                found: *found,
                current: *current,
            },
            Self::FieldMismatch {
                reference,
                subject,
                expected,
                found,
            } => Self::FieldMismatch {
                reference: *reference,
                subject: *subject,
                expected: expected.clone(),
                found: found.clone(),
            },
            Self::Missing { reference, subject } => Self::Missing {
                reference: *reference,
                subject: *subject,
            },
            Self::MissingKey { subject } => Self::MissingKey { subject: *subject },
            Self::SubjectMismatch { reference, subject } => Self::SubjectMismatch {
                reference: *reference,
                subject: *subject,
            },
            Self::WrongMasterKey { subject } => Self::WrongMasterKey { subject: *subject },
            Self::MasterKey(reason) => Self::MasterKey(reason.clone()),
            Self::InvalidPlaintext { type_name } => Self::InvalidPlaintext { type_name },
            Self::UnserializablePlaintext { type_name } => {
                Self::UnserializablePlaintext { type_name }
            }
            Self::MalformedReference => Self::MalformedReference,
            Self::ErasedIntoPlainField { type_name } => Self::ErasedIntoPlainField { type_name },
            Self::Random => Self::Random,
            Self::KeyRace { subject } => Self::KeyRace { subject: *subject },
            Self::Unanswered => Self::Unanswered,
            Self::StaleIndexKey { found } => Self::StaleIndexKey { found: *found },
            Self::WalBusy { database } => Self::WalBusy {
                database: database.clone(),
            },
            Self::Corrupt { table, reason } => Self::Corrupt {
                table,
                reason: reason.clone(),
            },
            Self::OutOfRange { what } => Self::OutOfRange { what },
            Self::InvalidAudit { problem } => Self::InvalidAudit { problem },
            Self::SchemaTooNew {
                database,
                found,
                supported,
            } => Self::SchemaTooNew {
                database,
                found: *found,
                supported: *supported,
            },
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Self::Database { operation, source } => Self::Database {
                operation,
                source: crate::error::copy_sqlx_error(source),
            },
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Self::Migrate { database, source } => Self::Migrate {
                database,
                source: sqlx::migrate::MigrateError::Source(source.to_string().into()),
            },
            #[cfg(feature = "postgres")]
            Self::PlaintextConnection(refused) => Self::PlaintextConnection(refused.clone()),
            Self::MasterKeyFileMode { path, mode } => Self::MasterKeyFileMode {
                path: path.clone(),
                mode: *mode,
            },
            Self::FileMode { path, source } => Self::FileMode {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
        }
    }
}
