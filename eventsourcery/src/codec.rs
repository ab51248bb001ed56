//! Payload encoding with personal fields: personal values leave the payload as references on
//! encode (kept in an [`EncodeContext`] for the vault to store), and come back from the values
//! the vault resolved on decode (through a [`DecodeContext`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::personal::reference::{parse_reference, reference};
use crate::personal::{Origin, Personal, PersonalData, PersonalError, PersonalField, PersonalKey};

/// A personal value to be encrypted and stored before the payload that refers to it.
pub(crate) struct PersonalWrite {
    pub(crate) reference: Uuid,
    pub(crate) subject: PersonalKey,
    /// `"{event or command name}.{field}"`, bound into the ciphertext.
    pub(crate) field: String,
    pub(crate) plaintext: Zeroizing<String>,
    /// The blind-index entry to write: the kind and the lookup form.
    pub(crate) lookup: Option<(&'static str, Zeroizing<String>)>,
}

crate::redact::debug_fields!(PersonalWrite {
    reference,
    subject,
    field
});

/// Collects what an event or command encodes: personal fields are kept here, out of the payload.
#[derive(Debug, Default)]
pub struct EncodeContext {
    pub(crate) writes: Vec<PersonalWrite>,
}

impl EncodeContext {
    /// A context for one encoding pass.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes over what `other` collected.
    pub(crate) fn merge(&mut self, other: EncodeContext) {
        self.writes.extend(other.writes);
    }

    /// Whether personal values were collected.
    pub fn has_personal_data(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Moves a personal field out of the payload, each of its values (one, an optional one,
    /// several) kept here; returns the field's payload form, which holds only references.
    pub(crate) fn personal<F: PersonalField>(
        &mut self,
        name: &str,
        field: &str,
        subject: PersonalKey,
        value: &F,
        lookup: bool,
    ) -> Result<Value, PersonalError> {
        value.encode_personal(&mut |data| self.value(name, field, subject, data, lookup))
    }

    /// Keeps one personal value; returns the reference to store instead.
    fn value<T: PersonalData>(
        &mut self,
        name: &str,
        field: &str,
        subject: PersonalKey,
        data: Option<&T>,
        lookup: bool,
    ) -> Result<Value, PersonalError> {
        let Some(data) = data else {
            // An erased value stays erased: the reference points at nothing.
            return Ok(reference(Uuid::nil(), subject));
        };
        let unserializable = |_| PersonalError::UnserializablePlaintext {
            type_name: std::any::type_name::<T>(),
        };
        let plaintext = data.to_plaintext().map_err(unserializable)?;
        let lookup = match lookup {
            true => Some((T::KIND, data.lookup_form().map_err(unserializable)?)),
            false => None,
        };
        let id = Uuid::now_v7();
        self.writes.push(PersonalWrite {
            reference: id,
            subject,
            field: format!("{name}.{field}"),
            plaintext,
            lookup,
        });
        Ok(reference(id, subject))
    }

    /// The references of the values collected so far.
    pub(crate) fn references(&self) -> Vec<Uuid> {
        self.writes.iter().map(|w| w.reference).collect()
    }
}

/// A personal data reference found in a stored payload, with the field it sits in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) id: Uuid,
    pub(crate) subject: PersonalKey,
    /// `"{event or command}.{field}"`: the field the value must be bound to.
    pub(crate) field: String,
}

/// Every personal data reference in a payload as stored (before any upcaster ran), with the
/// field each sits in: a top-level field, or an element of one (optional and collection
/// fields). The value each points at must be bound to that field, so a reference moved to
/// another field is found out.
pub(crate) fn collect_references(name: &str, payload: &Value, out: &mut Vec<Reference>) {
    let Some(object) = payload.as_object() else {
        return;
    };
    for (key, value) in object {
        let mut push = |value: &Value| {
            if let Some((id, subject)) = parse_reference(value)
                && !id.is_nil()
            {
                out.push(Reference {
                    id,
                    subject,
                    field: format!("{name}.{key}"),
                });
            }
        };
        match value {
            Value::Array(items) => items.iter().for_each(&mut push),
            value => push(value),
        }
    }
}

/// The personal data references in these stored payloads (`(event or command name,
/// payload)`, before any upcaster ran).
pub(crate) fn references<'a>(
    payloads: impl Iterator<Item = (&'a str, &'a Value)>,
) -> Vec<Reference> {
    let mut references = Vec::new();
    for (name, payload) in payloads {
        collect_references(name, payload, &mut references);
    }
    references
}

/// Personal values fetched and decrypted for a batch of payloads: per reference, its value,
/// that it was erased, or what is wrong with it (so that the event holding it is the one
/// that fails, naming its field).
#[derive(Default)]
pub(crate) struct Resolved {
    pub(crate) values: HashMap<Uuid, (PersonalKey, Zeroizing<String>)>,
    /// The field each resolved value is bound to.
    pub(crate) fields: HashMap<Uuid, Arc<str>>,
    pub(crate) erased: HashSet<Uuid>,
    pub(crate) failed: HashMap<Uuid, PersonalError>,
}

/// Supplies the personal values that a payload refers to while it is decoded.
#[derive(Default)]
pub struct DecodeContext<'a> {
    resolved: Option<&'a Resolved>,
}

impl fmt::Debug for DecodeContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeContext")
            .field("resolved", &self.resolved.map(|r| r.values.len()))
            .finish()
    }
}

impl<'a> DecodeContext<'a> {
    /// A context with no personal values: decoding a personal field fails with
    /// [`PersonalError::NoVault`].
    pub fn new() -> Self {
        Self { resolved: None }
    }

    pub(crate) fn with(resolved: &'a Resolved) -> Self {
        Self {
            resolved: Some(resolved),
        }
    }

    pub(crate) fn personal<F: PersonalField>(
        &mut self,
        subject: PersonalKey,
        value: &Value,
    ) -> Result<F, PersonalError> {
        F::decode_personal(value, &mut |leaf| self.value(subject, leaf))
    }

    /// The value one reference points at, or an erased one.
    fn value<T: PersonalData>(
        &mut self,
        subject: PersonalKey,
        value: &Value,
    ) -> Result<Personal<T>, PersonalError> {
        let (id, referenced) = parse_reference(value).ok_or(PersonalError::MalformedReference)?;
        if referenced != subject {
            return Err(PersonalError::SubjectMismatch {
                reference: id,
                subject,
            });
        }
        if id.is_nil() {
            return Ok(Personal::erased());
        }
        let resolved = self.resolved.ok_or(PersonalError::NoVault)?;
        resolved.value(id, subject)
    }
}

impl Resolved {
    /// The value `id` of `subject` as resolved, or an erased one.
    pub(crate) fn value<T: PersonalData>(
        &self,
        id: Uuid,
        subject: PersonalKey,
    ) -> Result<Personal<T>, PersonalError> {
        if let Some(error) = self.failed.get(&id) {
            return Err(error.duplicate());
        }
        if let Some((owner, plaintext)) = self.values.get(&id) {
            if *owner != subject {
                return Err(PersonalError::SubjectMismatch {
                    reference: id,
                    subject,
                });
            }
            let value =
                T::from_plaintext(plaintext).map_err(|_| PersonalError::InvalidPlaintext {
                    type_name: std::any::type_name::<T>(),
                })?;
            return Ok(match self.fields.get(&id) {
                Some(field) => Personal::stored(
                    value,
                    Origin {
                        reference: id,
                        subject,
                        field: Arc::clone(field),
                    },
                ),
                None => Personal::new(value),
            });
        }
        if self.erased.contains(&id) {
            return Ok(Personal::erased());
        }
        Err(PersonalError::Missing {
            reference: id,
            subject,
        })
    }
}
