//! The lookup form of a personal value: what the keyed blind index hashes, so that a value
//! typed in another Unicode normalization, in another case, or with invisible characters
//! finds the stored one.

use std::collections::HashMap;
use std::sync::OnceLock;

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use super::PersonalData;
use crate::value::ValueError;

/// A field marked `#[personal(lookup)]`, submitted by the `DomainEvent` and `Command` derives,
/// so that the blind index can be rebuilt from the stored values
/// ([`PersonalVault::rotate_index_key`](crate::vault::PersonalVault::rotate_index_key)).
#[derive(Debug)]
pub struct LookupField {
    /// `"{event or command}.{field}"`, as bound into the field's values.
    pub field: &'static str,
    /// The personal data type's kind.
    pub kind: &'static str,
    /// The lookup form of a stored plaintext.
    pub form: fn(&str) -> Result<Zeroizing<String>, ValueError>,
}

inventory::collect!(LookupField);

/// A personal field of an event, submitted by the `DomainEvent` derive for each: the type of
/// value that references bound to it hold, so that a snapshot's reference is checked to point
/// at a field of the type it is read as.
#[derive(Debug)]
pub struct PersonalFieldType {
    /// `"{event}.{field}"`, as bound into the field's values.
    pub field: &'static str,
    /// The personal data type's kind.
    pub kind: &'static str,
}

inventory::collect!(PersonalFieldType);

/// The kind of the values of the event field `field`, if it is a personal field of an event
/// of this program.
pub(crate) fn kind_of(field: &str) -> Option<&'static str> {
    static KINDS: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    KINDS
        .get_or_init(|| {
            inventory::iter::<PersonalFieldType>
                .into_iter()
                .map(|f| (f.field, f.kind))
                .collect()
        })
        .get(field)
        .copied()
}

/// The lookup form of `T`'s plaintext, for [`LookupField::form`].
pub(crate) fn form_of<T: PersonalData>(plaintext: &str) -> Result<Zeroizing<String>, ValueError> {
    T::from_plaintext(plaintext)?.lookup_form()
}

/// Every lookup field of the program, by field.
pub(crate) fn lookup_fields() -> &'static HashMap<&'static str, &'static LookupField> {
    static FIELDS: OnceLock<HashMap<&'static str, &'static LookupField>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        inventory::iter::<LookupField>
            .into_iter()
            .map(|f| (f.field, f))
            .collect()
    })
}

/// The default lookup form of a plaintext: without default-ignorable code points (zero-width
/// spaces and joiners, soft hyphens, variation selectors, byte order marks), compatibility
/// normalized (NFKC), fully case folded, normalized again and trimmed of whitespace.
///
/// So `Ann@Example.com`, `ann@example.com ` and `ANN@EXAMPLE.COM\u{200B}` have one form, and so
/// have `José` typed precomposed or with a combining accent, `Straße` and `STRASSE`, `ﬁle` and
/// `file`. Every intermediate string is zeroed when dropped.
///
/// ```
/// use eventsourcery::personal::lookup_form;
///
/// assert_eq!(*lookup_form(" Jose\u{301}@Example.com\u{200B}"), *lookup_form("josé@example.com"));
/// assert_eq!(*lookup_form("Straße"), *lookup_form("STRASSE"));
/// ```
pub fn lookup_form(plaintext: &str) -> Zeroizing<String> {
    let visible: Zeroizing<String> = Zeroizing::new(
        plaintext
            .chars()
            .filter(|c| !is_default_ignorable(*c))
            .collect(),
    );
    let composed: Zeroizing<String> = Zeroizing::new(visible.nfkc().collect());
    let folded: Zeroizing<String> = Zeroizing::new(composed.chars().default_case_fold().collect());
    let normalized: Zeroizing<String> = Zeroizing::new(folded.nfkc().collect());
    Zeroizing::new(normalized.trim().to_owned())
}

/// Unicode's `Default_Ignorable_Code_Point` property (DerivedCoreProperties.txt, Unicode 15):
/// characters that render as nothing.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::lookup_form;

    fn same(a: &str, b: &str) {
        assert_eq!(*lookup_form(a), *lookup_form(b), "{a:?} and {b:?}");
    }

    #[test]
    fn forms_that_look_alike_are_one_form() {
        same("Ann@Example.com", "ann@example.com");
        same("  ann@example.com\t", "ann@example.com");
        same("ann@example.com\u{200B}", "ann@example.com");
        same("an\u{00AD}n@example.com", "ann@example.com");
        same("\u{FEFF}ann@example.com", "ann@example.com");
        same("Jose\u{301}", "josé");
        same("JOSÉ", "josé");
        same("Straße", "strasse");
        same("ﬁle", "file");
        same("Ｆｕｌｌｗｉｄｔｈ", "fullwidth");
        same("ΣΊΣΥΦΟΣ", "σίσυφος");
    }

    #[test]
    fn different_values_stay_different() {
        assert_ne!(
            *lookup_form("ann@example.com"),
            *lookup_form("anne@example.com")
        );
        assert_ne!(*lookup_form("jose"), *lookup_form("josé"));
    }
}
