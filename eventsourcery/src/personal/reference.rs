//! Personal values held by reference: what a read model keeps instead of a value, resolved
//! through the vault when it is read.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::PersonalKey;
use crate::value::ValueError;

/// The key of a reference object in a stored payload: `{"$personal": "<id>", "subject": "<key>"}`.
pub(crate) const REFERENCE_KEY: &str = "$personal";
pub(crate) const SUBJECT_KEY: &str = "subject";

/// The payload form of a reference to the personal value `id` of `subject`.
pub(crate) fn reference(id: Uuid, subject: PersonalKey) -> Value {
    let mut map = Map::new();
    map.insert(REFERENCE_KEY.into(), Value::String(id.to_string()));
    map.insert(SUBJECT_KEY.into(), Value::String(subject.to_string()));
    Value::Object(map)
}

pub(crate) fn parse_reference(value: &Value) -> Option<(Uuid, PersonalKey)> {
    let object = value.as_object()?;
    let id = object.get(REFERENCE_KEY)?.as_str()?.parse().ok()?;
    let subject = object.get(SUBJECT_KEY)?.as_str()?.parse().ok()?;
    Some((id, subject))
}

/// A personal value of type `T` held by reference: its reference, subject and field, and no
/// part of the value. A read model (a projection's table, a search index) stores it instead of
/// the value and resolves it when it is read, with
/// [`PersonalVault::resolve_refs`](crate::vault::PersonalVault::resolve_refs): the value, or
/// an erased [`Personal`](super::Personal) once its subject is forgotten. So the read
/// model holds no plaintext and has nothing to forget.
///
/// Its string form (`Display`/`FromStr`, and serde through it) is
/// `{reference}/{subject}/{field}`, for a text column. A consumer gets one from the event it
/// handles with [`PersonalRefs`](crate::dispatch::PersonalRefs).
pub struct PersonalRef<T> {
    reference: Uuid,
    subject: PersonalKey,
    field: String,
    _value: PhantomData<fn() -> T>,
}

impl<T> PersonalRef<T> {
    pub(crate) fn new(reference: Uuid, subject: PersonalKey, field: String) -> Self {
        Self {
            reference,
            subject,
            field,
            _value: PhantomData,
        }
    }

    /// The references of the field `field` of the event or command `name`: one for a single
    /// value, one per value of a list, none for an absent or erased one. `bound` gives the
    /// field a reference was stored in, if an upcaster moved it since.
    pub(crate) fn in_payload(
        name: &str,
        field: &str,
        payload: &Value,
        bound: impl Fn(Uuid) -> Option<String>,
    ) -> Vec<Self> {
        let Some(value) = payload.get(field) else {
            return Vec::new();
        };
        let items = match value {
            Value::Array(items) => items.iter().collect(),
            value => vec![value],
        };
        items
            .into_iter()
            .filter_map(parse_reference)
            .filter(|(id, _)| !id.is_nil())
            .map(|(id, subject)| {
                let field = bound(id).unwrap_or_else(|| format!("{name}.{field}"));
                Self::new(id, subject, field)
            })
            .collect()
    }

    /// The personal data reference.
    pub fn reference(&self) -> Uuid {
        self.reference
    }

    /// The value's data subject.
    pub fn subject(&self) -> PersonalKey {
        self.subject
    }

    /// `"{event or command}.{field}"`: the field the value is bound to.
    pub fn field(&self) -> &str {
        &self.field
    }
}

impl<T> Clone for PersonalRef<T> {
    fn clone(&self) -> Self {
        Self::new(self.reference, self.subject, self.field.clone())
    }
}

impl<T> PartialEq for PersonalRef<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.reference, self.subject, &self.field)
            == (other.reference, other.subject, &other.field)
    }
}

impl<T> Eq for PersonalRef<T> {}

impl<T> std::hash::Hash for PersonalRef<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.reference, self.subject, &self.field).hash(state);
    }
}

impl<T> fmt::Display for PersonalRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.reference, self.subject, self.field)
    }
}

impl<T> fmt::Debug for PersonalRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonalRef({self})")
    }
}

impl<T> FromStr for PersonalRef<T> {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let invalid = |reason| ValueError::new("PersonalRef", reason);
        let mut parts = s.splitn(3, '/');
        let (Some(reference), Some(subject), Some(field)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected `{reference}/{subject}/{field}`"));
        };
        let reference = reference
            .parse()
            .map_err(|_| invalid("the reference is not a UUID"))?;
        let subject = subject
            .parse()
            .map_err(|_| invalid("the subject is not a UUID"))?;
        if field.is_empty() {
            return Err(invalid("the field is empty"));
        }
        Ok(Self::new(reference, subject, field.to_owned()))
    }
}

impl<T> serde::Serialize for PersonalRef<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, T> serde::Deserialize<'de> for PersonalRef<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::value::deserialize_from_str(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Email;

    #[test]
    fn the_string_form_round_trips_and_holds_no_value() {
        let r = PersonalRef::<Email>::new(
            Uuid::now_v7(),
            PersonalKey::issue(),
            "candidate_registered.email".into(),
        );
        let text = r.to_string();
        assert_eq!(text.parse::<PersonalRef<Email>>().ok(), Some(r.clone()));
        assert_eq!(serde_json::to_string(&r).ok(), Some(format!("\"{text}\"")));
        assert!("nonsense".parse::<PersonalRef<Email>>().is_err());
        assert!(
            format!("{}/{}/", Uuid::nil(), PersonalKey::issue())
                .parse::<PersonalRef<Email>>()
                .is_err()
        );
    }
}
