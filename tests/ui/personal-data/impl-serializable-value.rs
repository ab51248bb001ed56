use std::fmt;
use std::str::FromStr;

use eventsourcery::{PersonalData, SerializableValue};
use eventsourcery::value::ValueError;

#[derive(PersonalData, Clone, PartialEq, Eq, Hash)]
struct Email(String);

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        Ok(Self(s.to_owned()))
    }
}

impl SerializableValue for Email {}

fn main() {}
