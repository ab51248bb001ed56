//! The encodings in which a personal value must never appear in stored bytes.

use super::shapes::{PHONE, SECOND_EMAIL};
use super::{EMAIL, NAME};

/// Every encoding of `value` that must not appear in stored bytes.
pub fn forbidden_forms(value: &str) -> Vec<Vec<u8>> {
    use std::fmt::Write;
    let mut forms = vec![value.as_bytes().to_vec(), value.to_lowercase().into_bytes()];
    let json = serde_json::to_string(value).unwrap();
    forms.push(json.trim_matches('"').as_bytes().to_vec());
    let ascii_json: String = value
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\u{:04x}", c as u32)
            }
        })
        .collect();
    forms.push(ascii_json.into_bytes());
    for input in [value.as_bytes().to_vec(), value.to_lowercase().into_bytes()] {
        let mut hex = String::new();
        for b in &input {
            write!(hex, "{b:02x}").unwrap();
        }
        forms.push(hex.clone().into_bytes());
        forms.push(hex.to_uppercase().into_bytes());
        forms.push(base64(&input, false).into_bytes());
        forms.push(base64(&input, true).into_bytes());
    }
    forms
}

fn base64(input: &[u8], url: bool) -> String {
    let alphabet: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    // Unpadded, and without its last character, so it is found inside padded forms too.
    out.pop();
    out
}

/// Asserts that none of the personal values appears in `haystack`, in any encoding.
pub fn assert_no_plaintext(what: &str, haystack: &[u8]) {
    for value in [EMAIL, NAME, "1 Quay Street", "Dublin", PHONE, SECOND_EMAIL] {
        for form in forbidden_forms(value) {
            assert!(
                !haystack.windows(form.len()).any(|w| w == form.as_slice()),
                "{what} holds `{value}` as {:?}",
                String::from_utf8_lossy(&form)
            );
        }
    }
}
