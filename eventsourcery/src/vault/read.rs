//! Reading personal values back: resolving references, exports and blind-index lookups.

use super::PersonalVault;
use crate::codec::{Reference, Resolved};
use crate::personal::crypto::{DataKey, blind_index, ciphertext_version};
use crate::personal::{Personal, PersonalData, PersonalError, PersonalKey, PersonalRef};
use crate::store::{Erasure, PersonalRecord, WrappedKey};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::fmt;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Everything stored about one subject (the right of access).
///
/// Its `Debug` output shows field names only; [`Export::to_json`] gives the values.
pub struct Export {
    /// The subject.
    pub subject: PersonalKey,
    /// Whether the subject was erased (and so has no data).
    pub erased: bool,
    /// The subject's personal values, oldest first.
    pub fields: Vec<ExportedField>,
}

/// One exported personal value.
pub struct ExportedField {
    /// The personal data reference held by the event or command.
    pub reference: Uuid,
    /// `"{event or command}.{field}"`.
    pub field: String,
    /// The value, as its plaintext form.
    pub value: Zeroizing<String>,
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export")
            .field("subject", &self.subject)
            .field("erased", &self.erased)
            .field(
                "fields",
                &self.fields.iter().map(|x| &x.field).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Export {
    /// The export as JSON, values included: hand it to the person who asked for it.
    pub fn to_json(&self) -> Value {
        json!({
            "subject": self.subject.to_string(),
            "erased": self.erased,
            "data": self.fields.iter().map(|f| json!({
                "reference": f.reference.to_string(),
                "field": f.field,
                "value": f.value.as_str(),
            })).collect::<Vec<_>>(),
        })
    }
}

impl PersonalVault {
    /// Fetches and decrypts the values behind these references: per reference its value,
    /// that it was erased, or what is wrong with it (tampered, missing, moved to another
    /// field, under a master key this vault does not hold). Only a failing store fails the
    /// whole call.
    ///
    /// Reads the values, then the keys, then the erasure records: an erasure writes them in
    /// the opposite order, so a value or key found missing has its erasure record found.
    pub(crate) async fn resolve(
        &self,
        references: &[Reference],
    ) -> Result<Resolved, PersonalError> {
        let mut resolved = Resolved::default();
        if references.is_empty() {
            return Ok(resolved);
        }
        let ids = sorted_unique(references.iter().map(|r| r.id));
        let subjects = sorted_unique(references.iter().map(|r| r.subject));
        let records: HashMap<Uuid, PersonalRecord> =
            by_key(self.data.get(&ids).await?, |r| r.reference);
        let wrapped: HashMap<PersonalKey, WrappedKey> =
            by_key(self.keys.keys(&subjects).await?, |k| k.subject);
        let erasures: HashMap<PersonalKey, Erasure> =
            by_key(self.keys.erasures(&subjects).await?, |e| e.subject);
        let mut unwrapped: HashMap<PersonalKey, Result<DataKey, PersonalError>> = HashMap::new();
        for reference in references {
            let record = records.get(&reference.id);
            if resolved.values.contains_key(&reference.id)
                || resolved.erased.contains(&reference.id)
                || resolved.failed.contains_key(&reference.id)
            {
                // A reference held twice: each holder's field is checked.
                if let Some(record) = record
                    && record.field != reference.field
                {
                    resolved.values.remove(&reference.id);
                    resolved
                        .failed
                        .insert(reference.id, field_mismatch(reference, record));
                }
                continue;
            }
            let erasure = erasures.get(&reference.subject);
            let outcome = match record {
                None if erasure.is_some() => Outcome::Erased,
                None => Outcome::Failed(PersonalError::Missing {
                    reference: reference.id,
                    subject: reference.subject,
                }),
                Some(record) => self.open(reference, record, &wrapped, erasure, &mut unwrapped),
            };
            match outcome {
                Outcome::Value(plaintext) => {
                    resolved
                        .values
                        .insert(reference.id, (reference.subject, plaintext));
                    resolved
                        .fields
                        .insert(reference.id, reference.field.as_str().into());
                }
                Outcome::Erased => {
                    resolved.erased.insert(reference.id);
                }
                Outcome::Failed(error) => {
                    resolved.failed.insert(reference.id, error);
                }
            }
        }
        Ok(resolved)
    }

    /// Decrypts one stored value for `reference`.
    fn open(
        &self,
        reference: &Reference,
        record: &PersonalRecord,
        wrapped: &HashMap<PersonalKey, WrappedKey>,
        erasure: Option<&Erasure>,
        unwrapped: &mut HashMap<PersonalKey, Result<DataKey, PersonalError>>,
    ) -> Outcome {
        let (id, subject) = (reference.id, reference.subject);
        if record.subject != subject {
            return Outcome::Failed(PersonalError::SubjectMismatch {
                reference: id,
                subject,
            });
        }
        if record.field != reference.field {
            return Outcome::Failed(field_mismatch(reference, record));
        }
        let Some(wrapped) = wrapped.get(&subject) else {
            return match erasure {
                Some(_) => Outcome::Erased,
                None => Outcome::Failed(PersonalError::MissingKey { subject }),
            };
        };
        let key = match unwrapped
            .entry(subject)
            .or_insert_with(|| self.unwrap(wrapped))
        {
            Ok(key) => key,
            Err(error) => return Outcome::Failed(error.duplicate()),
        };
        let Some(version) = ciphertext_version(&record.ciphertext) else {
            return Outcome::Failed(PersonalError::Tampered {
                reference: id,
                subject,
            });
        };
        if version != key.version && erasure.is_some_and(|e| version <= e.last_key_version) {
            // Written under a key destroyed by an erasure, before a re-enrolment.
            return Outcome::Erased;
        }
        match key.decrypt(subject, id, &record.field, &record.ciphertext) {
            Ok(plaintext) => Outcome::Value(plaintext),
            Err(error) => Outcome::Failed(error),
        }
    }

    /// All personal data of a subject, decrypted (the right of access): every value that its
    /// events and command log entries refer to.
    pub async fn export(&self, subject: PersonalKey) -> Result<Export, PersonalError> {
        let records = self.data.by_subject(subject).await?;
        let references: Vec<Reference> = records
            .iter()
            .map(|r| Reference {
                id: r.reference,
                subject,
                field: r.field.clone(),
            })
            .collect();
        let mut resolved = self.resolve(&references).await?;
        if let Some(error) = resolved.failed.into_values().next() {
            return Err(error);
        }
        let fields = records
            .into_iter()
            .filter_map(|record| {
                let (_, value) = resolved.values.remove(&record.reference)?;
                Some(ExportedField {
                    reference: record.reference,
                    field: record.field,
                    value,
                })
            })
            .collect();
        Ok(Export {
            subject,
            erased: self.is_erased(subject).await?,
            fields,
        })
    }

    /// Resolves values held by reference (the [`PersonalRef`]s a read model keeps instead of
    /// values), in the order given: each one's value, or an erased [`Personal`] once its
    /// subject is forgotten. A reference that was tampered with, or points at a value of another
    /// field, is an error, as it is for an event.
    pub async fn resolve_refs<T: PersonalData>(
        &self,
        refs: &[PersonalRef<T>],
    ) -> Result<Vec<Personal<T>>, PersonalError> {
        let references: Vec<Reference> = refs
            .iter()
            .map(|r| Reference {
                id: r.reference(),
                subject: r.subject(),
                field: r.field().to_owned(),
            })
            .collect();
        let resolved = self.resolve(&references).await?;
        refs.iter()
            .map(|r| resolved.value(r.reference(), r.subject()))
            .collect()
    }

    /// The subjects holding `value` in a field marked `#[personal(lookup)]`, found through the
    /// keyed blind index (the value itself is never stored in plaintext).
    pub async fn lookup<T: PersonalData>(
        &self,
        value: &T,
    ) -> Result<Vec<PersonalKey>, PersonalError> {
        let form = value
            .lookup_form()
            .map_err(|_| PersonalError::UnserializablePlaintext {
                type_name: std::any::type_name::<T>(),
            })?;
        // Every index key present: while a rotation runs, entries of both versions exist.
        let mut found = Vec::new();
        for index_key in self.index_keys().await? {
            let hash = blind_index(&index_key.key, T::KIND, &form);
            found.extend(self.data.find(&hash).await?);
        }
        found.sort_unstable();
        found.dedup();
        let erased: HashSet<PersonalKey> = self
            .keys
            .erasures(&found)
            .await?
            .into_iter()
            .filter(|e| !e.re_enrolled)
            .map(|e| e.subject)
            .collect();
        found.retain(|s| !erased.contains(s));
        Ok(found)
    }
}

/// What resolving one reference gave.
enum Outcome {
    Value(Zeroizing<String>),
    Erased,
    Failed(PersonalError),
}

fn field_mismatch(reference: &Reference, record: &PersonalRecord) -> PersonalError {
    PersonalError::FieldMismatch {
        reference: reference.id,
        subject: reference.subject,
        expected: reference.field.as_str().into(),
        found: record.field.as_str().into(),
    }
}

/// The items, sorted, each once: the keys of one batched read.
fn sorted_unique<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.collect();
    items.sort_unstable();
    items.dedup();
    items
}

/// The rows of one batched read by their key.
fn by_key<K: std::hash::Hash + Eq, T>(rows: Vec<T>, key: impl Fn(&T) -> K) -> HashMap<K, T> {
    rows.into_iter().map(|row| (key(&row), row)).collect()
}
