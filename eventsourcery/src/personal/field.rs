//! The shapes a `#[personal]` field can have, and how each becomes references in a payload:
//! one value (`Personal<T>`, or in a command a bare `T`), an optional one (`Option<_>`, `null`
//! when absent) or several (`Vec<_>`, an array), each value one reference.

use serde_json::Value;

use super::{Personal, PersonalData, PersonalError};

/// What encoding does with each personal value of a field: stores it (or an erased one) and
/// gives the reference the payload keeps.
pub type EncodeLeaf<'a, T> = dyn FnMut(Option<&T>) -> Result<Value, PersonalError> + 'a;

/// What decoding does with each reference of a field: gives the decrypted value (with where it
/// is stored), or an erased one.
pub type DecodeLeaf<'a, T> = dyn FnMut(&Value) -> Result<Personal<T>, PersonalError> + 'a;

/// A type a `#[personal]` field can have: `Personal<T>` (and in a command also a bare `T`),
/// or an `Option` or a `Vec` of those, where `T: PersonalData`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[personal]` field: it is not personal data",
    label = "expected `T` or `Personal<T>` where `T: PersonalData`, or an `Option` or `Vec` of those",
    note = "hold the value in a type that derives `PersonalData` (`#[derive(PersonalData)] struct Email(String);`), or remove `#[personal]` if the field is not personal"
)]
pub trait PersonalField: Sized {
    /// The personal data type.
    type Data: PersonalData;

    /// The field's payload form: `leaf` stores each value (`None` for an erased one, of which
    /// nothing is stored) and gives its reference.
    fn encode_personal(
        &self,
        leaf: &mut EncodeLeaf<'_, Self::Data>,
    ) -> Result<Value, PersonalError>;

    /// The field from its payload form: `leaf` resolves each reference.
    fn decode_personal(
        value: &Value,
        leaf: &mut DecodeLeaf<'_, Self::Data>,
    ) -> Result<Self, PersonalError>;
}

impl<T: PersonalData> PersonalField for Personal<T> {
    type Data = T;

    fn encode_personal(&self, leaf: &mut EncodeLeaf<'_, T>) -> Result<Value, PersonalError> {
        leaf(self.present())
    }

    fn decode_personal(value: &Value, leaf: &mut DecodeLeaf<'_, T>) -> Result<Self, PersonalError> {
        leaf(value)
    }
}

impl<T: PersonalData> PersonalField for T {
    type Data = T;

    fn encode_personal(&self, leaf: &mut EncodeLeaf<'_, T>) -> Result<Value, PersonalError> {
        leaf(Some(self))
    }

    fn decode_personal(value: &Value, leaf: &mut DecodeLeaf<'_, T>) -> Result<Self, PersonalError> {
        leaf(value)?
            .into_present()
            .ok_or(PersonalError::ErasedIntoPlainField {
                type_name: std::any::type_name::<T>(),
            })
    }
}

/// An optional personal value: `null` when absent. After its subject is erased, a present one
/// reads as `Some` of an erased [`Personal`], never as `None`.
impl<F: PersonalField> PersonalField for Option<F> {
    type Data = F::Data;

    fn encode_personal(&self, leaf: &mut EncodeLeaf<'_, F::Data>) -> Result<Value, PersonalError> {
        match self {
            Some(value) => value.encode_personal(leaf),
            None => Ok(Value::Null),
        }
    }

    fn decode_personal(
        value: &Value,
        leaf: &mut DecodeLeaf<'_, F::Data>,
    ) -> Result<Self, PersonalError> {
        match value {
            Value::Null => Ok(None),
            value => F::decode_personal(value, leaf).map(Some),
        }
    }
}

/// Several personal values of one subject: an array of references, in order.
impl<F: PersonalField> PersonalField for Vec<F> {
    type Data = F::Data;

    fn encode_personal(&self, leaf: &mut EncodeLeaf<'_, F::Data>) -> Result<Value, PersonalError> {
        self.iter()
            .map(|value| value.encode_personal(leaf))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    }

    fn decode_personal(
        value: &Value,
        leaf: &mut DecodeLeaf<'_, F::Data>,
    ) -> Result<Self, PersonalError> {
        let items = value.as_array().ok_or(PersonalError::MalformedReference)?;
        items
            .iter()
            .map(|item| F::decode_personal(item, leaf))
            .collect()
    }
}

/// A `#[personal]` field of an event: `Personal<T>`, or an `Option` or `Vec` of it, so that
/// domain code can tell an erased value from a present one.
#[diagnostic::on_unimplemented(
    message = "a personal field of an event must have type `Personal<_>` (or an `Option` or `Vec` of it), not `{Self}`",
    label = "an erased subject's value could not be represented",
    note = "hold a type `T` that derives `PersonalData` as `Personal<T>` (`email: Personal<Email>`, `phone: Option<Personal<Phone>>`): after the subject is erased, each value reads as erased (`Personal::is_erased`)"
)]
pub trait EventPersonalField: PersonalField {}

impl<T: PersonalData> EventPersonalField for Personal<T> {}

impl<F: EventPersonalField> EventPersonalField for Option<F> {}

impl<F: EventPersonalField> EventPersonalField for Vec<F> {}
