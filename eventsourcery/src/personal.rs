//! Personal data: the seam through which personal fields of events and commands leave the
//! payload on write and come back on read.

use std::collections::HashMap;

use uuid::Uuid;

/// Personal data could not be stored or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersonalError {
    /// Personal fields were written or read without a personal data store configured.
    #[error("no personal data store is configured")]
    NoVault,
}

/// Collects what an event or command encodes: personal fields are kept here, out of the payload.
#[derive(Debug, Default)]
pub struct EncodeContext {
    _private: (),
}

impl EncodeContext {
    /// A context for one encoding pass.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes over what `other` collected.
    pub(crate) fn merge(&mut self, other: EncodeContext) {
        let EncodeContext { _private: () } = other;
    }
}

/// Supplies the personal values that a payload refers to while it is decoded.
#[derive(Debug, Default)]
pub struct DecodeContext<'a> {
    #[allow(dead_code)]
    values: Option<&'a HashMap<Uuid, ()>>,
}

impl DecodeContext<'_> {
    /// A context with no personal values.
    pub fn new() -> Self {
        Self { values: None }
    }
}
