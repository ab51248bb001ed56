//! Personal values in aggregate snapshots, held by reference.
//!
//! An aggregate that takes snapshots (`#[aggregate(snapshot(every = N))]`) is stored with
//! serde. A [`Personal<T>`] has no serde form, so that no value can reach a payload in
//! plaintext; in the state of a snapshotted aggregate, mark each field that holds personal
//! values with `#[serde(with = "eventsourcery::aggregate::snapshot")]`. The snapshot then keeps,
//! for each value, only the reference it is stored under in the personal data store (its
//! reference, subject and field, as the event it came from does), and loading the snapshot
//! resolves them in one round trip: each value comes back decrypted, or erased once its subject
//! is forgotten. A snapshot holds no plaintext, and erasing a subject needs nothing of it.
//! Each reference is checked as an event's is (its subject and field, by the vault) and also
//! to point at a personal field of one of the aggregate's own events, of the type it is read
//! as: a snapshot whose references were moved is not used, and the load replays the events.
//! The [aggregates guide](crate::docs::aggregates#snapshots-of-personal-state) runs a whole
//! example, erasure included.
//!
//! The field may be a `Personal<T>`, or an `Option`, a `Vec`, a `BTreeMap` or a `HashMap` of
//! those ([`SnapshotField`]); put a struct with several personal fields in the state as usual,
//! each of its personal fields marked.
//!
//! Only a value read from the store has a reference: one the aggregate made itself (in
//! `apply`, say, with [`Personal::new`]) cannot be held by reference, and a state holding one
//! is not snapshotted (the load replays its events as without snapshots). Outside a snapshot
//! the functions fail: a `Personal<T>` in a serde type that goes into an event or a command is
//! an error when it is saved, never a value stored.
//!
//! ```
//! use eventsourcery::{Aggregate, Apply, DomainEvent, Personal, PersonalData, PersonalKey};
//! use eventsourcery::SerializableValue;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(PersonalData, Clone)]
//! struct Email(String);
//!
//! #[derive(SerializableValue, Clone, Debug)]
//! struct CandidateId(uuid::Uuid);
//!
//! #[derive(DomainEvent)]
//! #[event(name = "guide.snapshot.candidate_registered")]
//! struct CandidateRegistered {
//!     candidate: PersonalKey,
//!     #[personal(subject = candidate)]
//!     email: Personal<Email>,
//! }
//!
//! #[derive(Aggregate, Default, Serialize, Deserialize)]
//! #[aggregate(id = CandidateId, events(CandidateRegistered), snapshot(every = 100))]
//! struct Candidate {
//!     #[serde(with = "eventsourcery::aggregate::snapshot")]
//!     email: Option<Personal<Email>>,
//! }
//!
//! impl Apply<CandidateRegistered> for Candidate {
//!     fn apply(&mut self, event: &CandidateRegistered) {
//!         self.email = Some(event.email.clone());
//!     }
//! }
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{self, Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::codec::{Reference, Resolved};
use crate::personal::lookup::kind_of;
use crate::personal::reference::{REFERENCE_KEY, SUBJECT_KEY, parse_reference, reference};
use crate::personal::{Personal, PersonalData};

/// The keys of a reference in a snapshot: those of an event payload's, and its field.
const REFERENCE: &str = REFERENCE_KEY;
const SUBJECT: &str = SUBJECT_KEY;
const FIELD: &str = "field";
/// The key of the state in a snapshot that holds references.
const STATE: &str = "$state";

thread_local! {
    /// The references written by the snapshot being encoded on this thread.
    static ENCODING: RefCell<Option<Vec<Reference>>> = const { RefCell::new(None) };
    /// The values resolved for the snapshot being decoded on this thread.
    static DECODING: RefCell<Option<Decoding>> = const { RefCell::new(None) };
}

/// What decoding a snapshot checks its references against.
struct Decoding {
    resolved: Resolved,
    /// Whether the aggregate handles events of a name.
    handles: fn(&str) -> bool,
}

/// A field type that a snapshot can hold by reference: `Personal<T>`, or an `Option`, a `Vec`,
/// a `BTreeMap` or a `HashMap` of those. Implemented by the crate only.
#[diagnostic::on_unimplemented(
    message = "`{Self}` holds no personal values by reference",
    label = "not `Personal<T>`, nor an `Option`, a `Vec` or a map of it",
    note = "`#[serde(with = \"eventsourcery::aggregate::snapshot\")]` goes on a field of type `Personal<T>`, or an `Option`, a `Vec`, a `BTreeMap` or a `HashMap` of it"
)]
pub trait SnapshotField: Sized {
    /// Writes the references of the field's values.
    fn serialize_field<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;

    /// Reads the field back, each reference resolved.
    fn deserialize_field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

/// Writes a personal field of a snapshotted aggregate's state: the reference of each value,
/// never the value. For `#[serde(with = "eventsourcery::aggregate::snapshot")]`.
///
/// # Errors
/// Outside a snapshot, and for a value that was not read from the store (it has no reference).
pub fn serialize<F: SnapshotField, S: Serializer>(
    field: &F,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    field.serialize_field(serializer)
}

/// Reads a personal field of a snapshotted aggregate's state back: each value decrypted, or
/// erased once its subject is forgotten. For
/// `#[serde(with = "eventsourcery::aggregate::snapshot")]`.
///
/// # Errors
/// Outside the load of a snapshot, and for a reference that does not resolve (tampered with,
/// moved to another field, missing).
pub fn deserialize<'de, F: SnapshotField, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<F, D::Error> {
    F::deserialize_field(deserializer)
}

impl<T: PersonalData> SnapshotField for Personal<T> {
    fn serialize_field<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let reference = match (self.present(), self.origin()) {
            (None, _) => None,
            (Some(_), Some(origin)) => Some(Reference {
                id: origin.reference,
                subject: origin.subject,
                field: origin.field.to_string(),
            }),
            (Some(_), None) => {
                return Err(ser::Error::custom(
                    "a personal value that was not read from the store has no reference to snapshot",
                ));
            }
        };
        ENCODING.with_borrow_mut(|references| {
            let references = references.as_mut().ok_or_else(|| {
                ser::Error::custom(
                    "personal values are serialized by reference into aggregate snapshots only",
                )
            })?;
            references.extend(reference.clone());
            Ok::<_, S::Error>(())
        })?;
        match reference {
            None => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(REFERENCE, &Value::Null)?;
                map.end()
            }
            Some(reference) => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry(REFERENCE, &reference.id)?;
                map.serialize_entry(SUBJECT, &reference.subject)?;
                map.serialize_entry(FIELD, &reference.field)?;
                map.end()
            }
        }
    }

    fn deserialize_field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let form = Value::deserialize(deserializer)?;
        let malformed = || de::Error::custom("a malformed personal reference in a snapshot");
        let reference = match form.get(REFERENCE) {
            Some(Value::Null) => return Ok(Personal::erased()),
            Some(_) => parse(&form).ok_or_else(malformed)?,
            None => return Err(malformed()),
        };
        DECODING.with_borrow(|decoding| {
            let decoding = decoding.as_ref().ok_or_else(|| {
                de::Error::custom(
                    "personal values are read by reference from aggregate snapshots only",
                )
            })?;
            // The reference must be one this aggregate's events can hold, of this type: one
            // moved in from another field, or from an event of another aggregate, is refused.
            let holds = held_kind(decoding.handles, &reference.field) == Some(T::KIND);
            if !holds {
                return Err(de::Error::custom(
                    "a snapshot's reference points at a field this state does not hold",
                ));
            }
            let resolved = &decoding.resolved;
            // The vault checked the snapshot's list of references: this one must be among them.
            let listed = resolved.values.contains_key(&reference.id)
                && resolved
                    .fields
                    .get(&reference.id)
                    .is_some_and(|field| **field == *reference.field)
                || resolved.erased.contains(&reference.id)
                || resolved.failed.contains_key(&reference.id);
            if !listed {
                return Err(malformed());
            }
            resolved
                .value(reference.id, reference.subject)
                .map_err(de::Error::custom)
        })
    }
}

/// A field's values written and read through [`SnapshotField`], for the shapes holding several.
struct ByReference<'a, F>(&'a F);

impl<F: SnapshotField> Serialize for ByReference<'_, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_field(serializer)
    }
}

struct Resolving<F>(F);

impl<'de, F: SnapshotField> Deserialize<'de> for Resolving<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        F::deserialize_field(deserializer).map(Self)
    }
}

/// `null` when absent.
impl<F: SnapshotField> SnapshotField for Option<F> {
    fn serialize_field<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Some(value) => serializer.serialize_some(&ByReference(value)),
            None => serializer.serialize_none(),
        }
    }

    fn deserialize_field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<Resolving<F>>::deserialize(deserializer).map(|value| value.map(|v| v.0))
    }
}

/// An array, in order.
impl<F: SnapshotField> SnapshotField for Vec<F> {
    fn serialize_field<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(ByReference))
    }

    fn deserialize_field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Resolving<F>>::deserialize(deserializer)
            .map(|values| values.into_iter().map(|v| v.0).collect())
    }
}

/// A map of values by a key of the state's own (which is stored as it is: no personal data).
impl<K, F> SnapshotField for BTreeMap<K, F>
where
    K: Serialize + for<'de> Deserialize<'de> + Ord,
    F: SnapshotField,
{
    fn serialize_field<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter().map(|(k, v)| (k, ByReference(v))))
    }

    fn deserialize_field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<K, Resolving<F>>::deserialize(deserializer)
            .map(|values| values.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

/// A map of values by a key of the state's own (which is stored as it is: no personal data).
impl<K, F, H> SnapshotField for HashMap<K, F, H>
where
    K: Serialize + for<'de> Deserialize<'de> + Eq + Hash,
    F: SnapshotField,
    H: BuildHasher + Default,
{
    fn serialize_field<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter().map(|(k, v)| (k, ByReference(v))))
    }

    fn deserialize_field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        HashMap::<K, Resolving<F>, H>::deserialize(deserializer)
            .map(|values| values.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

/// A reference as a snapshot writes it.
fn parse(form: &Value) -> Option<Reference> {
    let (id, subject) = parse_reference(form)?;
    let field = form.get(FIELD)?.as_str()?;
    (!id.is_nil() && !field.is_empty()).then(|| Reference {
        id,
        subject,
        field: field.to_owned(),
    })
}

/// Puts back what a thread-local held before a snapshot was encoded or decoded, also when the
/// user's serde code panics.
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    previous: Option<T>,
}

impl<T: 'static> Restore<T> {
    /// Sets `key` to `value` until the guard is dropped.
    fn set(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, value: T) -> Self {
        let previous = key.replace(Some(value));
        Self { key, previous }
    }
}

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        self.key.set(self.previous.take());
    }
}

/// Runs `encode` (the state's serialization) with personal values written by reference, and
/// gives the snapshot as stored: the state alone, or the state and the references it holds.
/// `None` when the state does not serialize (for one, a personal value with no reference).
pub(crate) fn encode(encode: impl FnOnce() -> Option<Value>) -> Option<Value> {
    let (state, mut references) = {
        let restore = Restore::set(&ENCODING, Vec::new());
        let state = encode();
        let references = ENCODING.take().unwrap_or_default();
        drop(restore);
        (state?, references)
    };
    if references.is_empty() {
        return Some(state);
    }
    references.sort_by_key(|r| r.id);
    references.dedup_by_key(|r| r.id);
    let list = references
        .into_iter()
        .map(|r| {
            let mut form = reference(r.id, r.subject);
            form[FIELD] = Value::String(r.field);
            form
        })
        .collect();
    let mut envelope = Map::new();
    envelope.insert(REFERENCE.into(), Value::Array(list));
    envelope.insert(STATE.into(), state);
    Some(Value::Object(envelope))
}

/// The kind of personal data `field` (`"{event}.{field}"`) holds, if it is a personal field of
/// an event the aggregate `handles`.
fn held_kind(handles: fn(&str) -> bool, field: &str) -> Option<&'static str> {
    let (event, _) = field.rsplit_once('.')?;
    handles(event).then(|| kind_of(field)).flatten()
}

/// A stored snapshot taken apart: the state, and the references to resolve before it is
/// decoded. `None` when the list of references is malformed, or lists a reference that no
/// event the aggregate `handles` can hold (the snapshot is then ignored, and nothing it lists
/// is decrypted: a forged list cannot make a load decrypt another aggregate's values).
pub(crate) fn references(
    stored: Value,
    handles: fn(&str) -> bool,
) -> Option<(Value, Vec<Reference>)> {
    let is_envelope = stored.as_object().is_some_and(|object| {
        object.len() == 2 && object.contains_key(STATE) && object.contains_key(REFERENCE)
    });
    if !is_envelope {
        return Some((stored, Vec::new()));
    }
    let Value::Object(mut object) = stored else {
        return None;
    };
    let state = object.remove(STATE)?;
    let list = match object.remove(REFERENCE)? {
        Value::Array(list) => list,
        _ => return None,
    };
    let references = list.iter().map(parse).collect::<Option<Vec<_>>>()?;
    if !references
        .iter()
        .all(|r| held_kind(handles, &r.field).is_some())
    {
        return None;
    }
    Some((state, references))
}

/// Runs `decode` (the state's deserialization) with `resolved` supplying the personal values,
/// each checked to come from a field of an event the aggregate `handles`.
pub(crate) fn decode<R>(
    resolved: Resolved,
    handles: fn(&str) -> bool,
    decode: impl FnOnce() -> R,
) -> R {
    let _restore = Restore::set(&DECODING, Decoding { resolved, handles });
    decode()
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::personal::PersonalKey;

    /// A state of one personal field, written through [`serialize`].
    struct State(Personal<Email>);

    impl Serialize for State {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, s)
        }
    }

    #[test]
    fn outside_a_snapshot_a_personal_value_neither_serializes_nor_deserializes() {
        let erased = State(Personal::erased());
        assert!(serde_json::to_value(&erased).is_err());
        let read: Result<Personal<Email>, _> = deserialize(serde_json::json!({ REFERENCE: null }));
        // An erased value needs nothing resolved; a reference does.
        assert!(read.is_ok_and(|p| p.is_erased()));
        let reference = serde_json::json!({
            REFERENCE: Uuid::now_v7().to_string(),
            SUBJECT: PersonalKey::issue().to_string(),
            FIELD: "e.f",
        });
        let read: Result<Personal<Email>, _> = deserialize(reference);
        assert!(read.is_err());
    }

    #[test]
    fn a_state_without_references_is_stored_as_it_is_and_an_envelope_comes_apart() {
        let state = serde_json::json!({ "count": 3 });
        assert_eq!(encode(|| Some(state.clone())), Some(state.clone()));
        let any = |_: &str| true;
        assert_eq!(
            references(state.clone(), any).map(|(s, r)| (s, r.len())),
            Some((state, 0))
        );
        let broken = serde_json::json!({ REFERENCE: [{ REFERENCE: "x" }], STATE: {} });
        assert!(references(broken, any).is_none());
        // Listing a reference of an event the aggregate does not handle, or of a field that is
        // not personal, makes the whole snapshot ignored, before anything is resolved.
        let listing = |field: &str| {
            serde_json::json!({
                REFERENCE: [{
                    REFERENCE: Uuid::now_v7().to_string(),
                    SUBJECT: PersonalKey::issue().to_string(),
                    FIELD: field,
                }],
                STATE: {},
            })
        };
        let only_joined = |event: &str| event == "snapshot_test.joined";
        assert!(references(listing("snapshot_test.other.email"), only_joined).is_none());
        assert!(references(listing("snapshot_test.joined.nickname"), only_joined).is_none());
    }

    #[test]
    fn a_value_not_read_from_the_store_is_not_snapshotted() {
        let state = State(Personal::new(Email));
        assert_eq!(encode(|| serde_json::to_value(&state).ok()), None);
        // The thread is left as it was.
        assert!(ENCODING.with_borrow(Option::is_none));
    }

    struct Email;

    impl PersonalData for Email {
        const KIND: &'static str = "email";
        fn to_plaintext(&self) -> Result<zeroize::Zeroizing<String>, crate::value::ValueError> {
            Ok(String::new().into())
        }
        fn from_plaintext(_: &str) -> Result<Self, crate::value::ValueError> {
            Ok(Self)
        }
    }
}
