//! The seam between payload encoding and the personal data vault: personal fields leave the
//! payload as references on encode, and come back from resolved values on decode.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{PersonalData, PersonalError, PersonalField, PersonalKey};
use crate::event::EventError;

/// The key of a reference object in a stored payload: `{"$personal": "<id>", "subject": "<key>"}`.
pub(crate) const REFERENCE_KEY: &str = "$personal";
const SUBJECT_KEY: &str = "subject";

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

impl fmt::Debug for PersonalWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalWrite")
            .field("reference", &self.reference)
            .field("subject", &self.subject)
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

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

    /// Moves a personal field out of the payload; returns the reference to store instead.
    pub(crate) fn personal<F: PersonalField>(
        &mut self,
        name: &str,
        field: &str,
        subject: PersonalKey,
        value: &F,
        lookup: bool,
    ) -> Value {
        let Some(data) = value.data() else {
            // An erased value stays erased: the reference points at nothing.
            return reference(Uuid::nil(), subject);
        };
        let id = Uuid::now_v7();
        self.writes.push(PersonalWrite {
            reference: id,
            subject,
            field: format!("{name}.{field}"),
            plaintext: data.to_plaintext(),
            lookup: lookup.then(|| (F::Data::KIND, data.lookup_form())),
        });
        reference(id, subject)
    }
}

fn reference(id: Uuid, subject: PersonalKey) -> Value {
    let mut map = Map::new();
    map.insert(REFERENCE_KEY.into(), Value::String(id.to_string()));
    map.insert(SUBJECT_KEY.into(), Value::String(subject.to_string()));
    Value::Object(map)
}

fn parse_reference(value: &Value) -> Option<(Uuid, PersonalKey)> {
    let object = value.as_object()?;
    let id = object.get(REFERENCE_KEY)?.as_str()?.parse().ok()?;
    let subject = object.get(SUBJECT_KEY)?.as_str()?.parse().ok()?;
    Some((id, subject))
}

/// Every personal data reference in a payload (top-level fields).
pub(crate) fn collect_references(payload: &Value, out: &mut Vec<(Uuid, PersonalKey)>) {
    if let Some(object) = payload.as_object() {
        out.extend(
            object
                .values()
                .filter_map(parse_reference)
                .filter(|(id, _)| !id.is_nil()),
        );
    }
}

/// Personal values fetched and decrypted for a batch of payloads.
#[derive(Default)]
pub(crate) struct Resolved {
    pub(crate) values: HashMap<Uuid, (PersonalKey, Zeroizing<String>)>,
    pub(crate) erased: HashSet<Uuid>,
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
        let (id, referenced) = parse_reference(value).ok_or(PersonalError::MalformedReference)?;
        if referenced != subject {
            return Err(PersonalError::SubjectMismatch {
                reference: id,
                subject,
            });
        }
        if id.is_nil() {
            return F::from_data(None);
        }
        let resolved = self.resolved.ok_or(PersonalError::NoVault)?;
        if let Some((owner, plaintext)) = resolved.values.get(&id) {
            if *owner != subject {
                return Err(PersonalError::SubjectMismatch {
                    reference: id,
                    subject,
                });
            }
            let data = F::Data::from_plaintext(plaintext).map_err(|_| {
                PersonalError::InvalidPlaintext {
                    type_name: std::any::type_name::<F::Data>(),
                }
            })?;
            return F::from_data(Some(data));
        }
        if resolved.erased.contains(&id) {
            return F::from_data(None);
        }
        Err(PersonalError::Missing {
            reference: id,
            subject,
        })
    }
}

/// Wraps a personal error with the event and field it concerns.
pub(crate) fn field_error(name: &str, field: &str) -> impl FnOnce(PersonalError) -> EventError {
    let (name, field) = (name.to_owned(), field.to_owned());
    move |source| EventError::Personal {
        name,
        field,
        source,
    }
}
