//! AES-256-GCM for personal data and wrapped data keys, HMAC-SHA-256 for the blind index.
//!
//! Every encryption takes a fresh random 96-bit nonce. Associated data binds a data ciphertext
//! to its subject, its reference, its field and its key version, and a wrapped key to its
//! subject and version, so a ciphertext copied to another row fails to decrypt.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{PersonalError, PersonalKey};

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const FORMAT_V1: u8 = 1;
/// Format byte, key version, nonce.
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// The key that wraps every data key. It comes from configuration, never from source code.
///
/// Set `EVENTSOURCERY_MASTER_KEY` to 64 hex digits (32 random bytes, e.g. from
/// `openssl rand -hex 32`), or keep it in a file and use [`MasterKey::from_file`].
pub struct MasterKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// Built once: its key schedule is zeroed when the key is dropped.
    cipher: Aes256Gcm,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id {})", self.id)
    }
}

// The AES key schedules of every key this module holds are zeroed on drop: the `aes` crate is
// built with its `zeroize` feature (see the crate's Cargo.toml), which this checks.
const _: fn() = || {
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroized_on_drop::<aes::Aes256>();
};

/// The environment variable read by [`MasterKey::from_env`].
pub const MASTER_KEY_ENV: &str = "EVENTSOURCERY_MASTER_KEY";

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Result<Self, PersonalError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(|_| PersonalError::Random)?;
        Ok(Self::from_bytes(key))
    }

    fn from_bytes(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"eventsourcery/master-key-id/v1");
        let id = hex(&mac.finalize().into_bytes()[..8]);
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key[..])),
            key,
            id,
        }
    }

    /// The key from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(hex: &str) -> Result<Self, PersonalError> {
        let hex = hex.trim();
        if hex.len() != KEY_LEN * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PersonalError::MasterKey(format!(
                "expected {} hex digits, got {} characters",
                KEY_LEN * 2,
                hex.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        for (i, byte) in key.iter_mut().enumerate() {
            let pair = hex.get(i * 2..i * 2 + 2).unwrap_or("00");
            *byte = u8::from_str_radix(pair, 16)
                .map_err(|_| PersonalError::MasterKey("not hex".into()))?;
        }
        Ok(Self::from_bytes(key))
    }

    /// The key from the environment variable [`MASTER_KEY_ENV`].
    pub fn from_env() -> Result<Self, PersonalError> {
        let value = Zeroizing::new(std::env::var(MASTER_KEY_ENV).map_err(|_| {
            PersonalError::MasterKey(format!("environment variable {MASTER_KEY_ENV} is not set"))
        })?);
        Self::from_hex(&value)
    }

    /// The key from a file holding 64 hex digits.
    ///
    /// On Unix the file must be accessible by its owner only (`chmod 600`): one that its group
    /// or others may read or write is refused with [`PersonalError::MasterKeyFileMode`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PersonalError> {
        use std::io::Read;
        let path = path.as_ref();
        let reading = |e: std::io::Error| {
            PersonalError::MasterKey(format!("reading {}: {e}", path.display()))
        };
        let mut file = std::fs::File::open(path).map_err(reading)?;
        // The mode of the file opened, not of whatever the path names a moment later.
        let metadata = file.metadata().map_err(reading)?;
        if let Some(mode) = crate::fs::shared_mode(&metadata) {
            return Err(PersonalError::MasterKeyFileMode {
                path: path.to_owned(),
                mode,
            });
        }
        // Sized up front, so that no reallocation leaves a copy of the key behind.
        let capacity = usize::try_from(metadata.len()).unwrap_or(0).min(4096) + 1;
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        file.read_to_string(&mut text).map_err(reading)?;
        Self::from_hex(&text)
    }

    /// The key from `path`, generating and saving one (readable by the owner only) if the
    /// file does not exist. Logs a warning when it generates: production must supply its own
    /// key, kept apart from the databases. An existing file is read by
    /// [`from_file`](Self::from_file), which refuses one accessible by group or others.
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, PersonalError> {
        let path = path.as_ref();
        if path.exists() {
            return Self::from_file(path);
        }
        let key = Self::generate()?;
        let hex = Zeroizing::new(
            key.key
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
        write_private(path, hex.as_bytes())
            .map_err(|e| PersonalError::MasterKey(format!("writing {}: {e}", path.display())))?;
        tracing::warn!(
            path = %path.display(),
            "generated a new master key for personal data; production must supply its own \
             (EVENTSOURCERY_MASTER_KEY or a key file), kept apart from the databases"
        );
        Ok(key)
    }

    /// A non-secret identifier of this key, stored beside the data keys it wraps so that a
    /// wrong master key is recognised as such.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    pub(crate) fn id_str(&self) -> &str {
        &self.id
    }

    /// Wraps a data key for `subject`.
    pub(crate) fn wrap(
        &self,
        subject: PersonalKey,
        version: u32,
        key: &DataKey,
    ) -> Result<Vec<u8>, PersonalError> {
        seal(&self.cipher, &[], &key.key[..], &wrap_aad(subject, version))
    }

    /// Unwraps a data key of `subject`.
    pub(crate) fn unwrap_key(
        &self,
        subject: PersonalKey,
        version: u32,
        wrapped: &[u8],
    ) -> Result<DataKey, PersonalError> {
        let wrong = || PersonalError::WrongMasterKey { subject };
        if wrapped.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let aad = wrap_aad(subject, version);
        let plain = open(&self.cipher, nonce, sealed, &aad).ok_or_else(wrong)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(wrong());
        }
        key.copy_from_slice(&plain);
        Ok(DataKey::from_bytes(key, version))
    }
}

/// The master keys a vault holds: the current one, which wraps every new data key, and
/// previous ones, which still unwrap the data keys they wrapped until
/// [`PersonalVault::rotate_master_key`](crate::vault::PersonalVault::rotate_master_key) has re-wrapped
/// them under the current key.
///
/// Every stored data key names the master key that wrapped it (by [`MasterKey::id`]), so a read
/// picks the right one; a data key wrapped by a master key the ring does not hold is
/// [`PersonalError::WrongMasterKey`].
///
/// ```
/// use eventsourcery::personal::{MasterKey, MasterKeyRing};
///
/// let old = MasterKey::generate()?;
/// let new = MasterKey::generate()?;
/// let (old_id, new_id) = (old.id(), new.id());
/// let ring = MasterKeyRing::new(new).with_previous(old);
/// assert_eq!(ring.current().id(), new_id);
/// assert!(ring.get(&old_id).is_some());
/// # Ok::<(), eventsourcery::personal::PersonalError>(())
/// ```
///
/// Its `Debug` shows each master key as [`MasterKey`]'s does: its id, never the key.
#[derive(Debug)]
pub struct MasterKeyRing {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl MasterKeyRing {
    /// A ring holding only `current`.
    pub fn new(current: MasterKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds a previous master key, which unwraps the data keys it wrapped but wraps no new
    /// one. A key equal to the current one or to a key already held is ignored.
    pub fn with_previous(mut self, previous: MasterKey) -> Self {
        if self.get(previous.id_str()).is_none() {
            self.previous.push(previous);
        }
        self
    }

    /// The key that wraps new data keys.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The previous keys, in the order they were added.
    pub fn previous(&self) -> &[MasterKey] {
        &self.previous
    }

    /// The key with this id, current or previous.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id_str() == id)
    }
}

impl From<MasterKey> for MasterKeyRing {
    fn from(current: MasterKey) -> Self {
        Self::new(current)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn wrap_aad(subject: PersonalKey, version: u32) -> Vec<u8> {
    let mut aad = b"eventsourcery/data-key/v1".to_vec();
    aad.extend_from_slice(subject.as_uuid().as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// `header`, a fresh random nonce, then `msg` encrypted under it and bound to `aad`.
fn seal(
    cipher: &Aes256Gcm,
    header: &[u8],
    msg: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, PersonalError> {
    let nonce = random_nonce()?;
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .map_err(|_| PersonalError::Random)?;
    let mut out = Vec::with_capacity(header.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// `sealed` decrypted with `nonce` and `aad`, or `None` if it is not authentic.
fn open(cipher: &Aes256Gcm, nonce: &[u8], sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let payload = Payload { msg: sealed, aad };
    cipher
        .decrypt(Nonce::from_slice(nonce), payload)
        .ok()
        .map(Zeroizing::new)
}

fn random_nonce() -> Result<[u8; NONCE_LEN], PersonalError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| PersonalError::Random)?;
    Ok(nonce)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

/// One subject's data key, in memory only while it is used; the key and its AES key schedule
/// are zeroed on drop.
pub(crate) struct DataKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// Built once per key, for every value it encrypts or decrypts.
    cipher: Aes256Gcm,
    pub(crate) version: u32,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(version {}, <redacted>)", self.version)
    }
}

impl DataKey {
    pub(crate) fn generate(version: u32) -> Result<Self, PersonalError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(|_| PersonalError::Random)?;
        Ok(Self::from_bytes(key, version))
    }

    fn from_bytes(key: Zeroizing<[u8; KEY_LEN]>, version: u32) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key[..])),
            key,
            version,
        }
    }

    /// Encrypts `plaintext` for `subject`'s field `field` at `reference`.
    pub(crate) fn encrypt(
        &self,
        subject: PersonalKey,
        reference: Uuid,
        field: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, PersonalError> {
        let aad = data_aad(subject, reference, field, self.version);
        let [a, b, c, d] = self.version.to_be_bytes();
        seal(&self.cipher, &[FORMAT_V1, a, b, c, d], plaintext, &aad)
    }

    /// Decrypts a ciphertext made by [`DataKey::encrypt`] with the same subject, reference and
    /// field; anything else is [`PersonalError::Tampered`].
    pub(crate) fn decrypt(
        &self,
        subject: PersonalKey,
        reference: Uuid,
        field: &str,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<String>, PersonalError> {
        let tampered = || PersonalError::Tampered { reference, subject };
        let version = ciphertext_version(ciphertext).ok_or_else(tampered)?;
        if version != self.version {
            return Err(PersonalError::UnknownKeyVersion {
                reference,
                subject,
                found: version,
                current: self.version,
            });
        }
        let nonce = &ciphertext[5..HEADER_LEN];
        let sealed = &ciphertext[HEADER_LEN..];
        let aad = data_aad(subject, reference, field, version);
        let plain = open(&self.cipher, nonce, sealed, &aad).ok_or_else(tampered)?;
        // Authentic ciphertexts hold UTF-8: we encrypted a `String`.
        std::str::from_utf8(&plain)
            .map(|s| Zeroizing::new(s.to_owned()))
            .map_err(|_| tampered())
    }
}

/// The key version in a ciphertext's header, if the header is well formed.
pub(crate) fn ciphertext_version(ciphertext: &[u8]) -> Option<u32> {
    if ciphertext.len() < HEADER_LEN + 16 || ciphertext[0] != FORMAT_V1 {
        return None;
    }
    let bytes: [u8; 4] = ciphertext[1..5].try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn data_aad(subject: PersonalKey, reference: Uuid, field: &str, version: u32) -> Vec<u8> {
    let mut aad = b"eventsourcery/personal-data/v1".to_vec();
    aad.extend_from_slice(subject.as_uuid().as_bytes());
    aad.extend_from_slice(reference.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(field.as_bytes());
    aad
}

/// The keyed blind index: finds a subject by a personal value without storing the value.
pub(crate) fn blind_index(index_key: &DataKey, kind: &str, lookup_form: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&index_key.key[..])
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"eventsourcery/blind-index/v1");
    mac.update(kind.as_bytes());
    mac.update(&[0]);
    mac.update(lookup_form.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = DataKey::generate(1).unwrap_or_else(|e| panic!("{e}"));
        let (subject, other) = (PersonalKey::issue(), PersonalKey::issue());
        let reference = Uuid::now_v7();
        let sealed = key
            .encrypt(subject, reference, "e.email", b"ann@example.com")
            .unwrap_or_else(|e| panic!("{e}"));
        let plain = key.decrypt(subject, reference, "e.email", &sealed);
        assert_eq!(
            plain.ok().as_deref().map(String::as_str),
            Some("ann@example.com")
        );
        assert!(key.decrypt(other, reference, "e.email", &sealed).is_err());
        assert!(
            key.decrypt(subject, Uuid::now_v7(), "e.email", &sealed)
                .is_err()
        );
        assert!(key.decrypt(subject, reference, "e.name", &sealed).is_err());
    }

    #[test]
    fn a_hundred_thousand_encryptions_repeat_no_nonce() {
        let key = DataKey::generate(1).unwrap_or_else(|e| panic!("{e}"));
        let subject = PersonalKey::issue();
        let reference = Uuid::now_v7();
        let mut nonces = std::collections::HashSet::with_capacity(100_000);
        for _ in 0..100_000 {
            let sealed = key
                .encrypt(subject, reference, "f", b"x")
                .unwrap_or_else(|e| panic!("{e}"));
            let nonce: [u8; NONCE_LEN] = sealed[5..HEADER_LEN].try_into().unwrap_or_default();
            assert!(nonces.insert(nonce), "nonce repeated");
        }
    }

    #[test]
    fn wrapped_keys_are_bound_to_subject_and_version() {
        let master = MasterKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let key = DataKey::generate(3).unwrap_or_else(|e| panic!("{e}"));
        let (subject, other) = (PersonalKey::issue(), PersonalKey::issue());
        let wrapped = master
            .wrap(subject, 3, &key)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(master.unwrap_key(subject, 3, &wrapped).is_ok());
        assert!(master.unwrap_key(other, 3, &wrapped).is_err());
        assert!(master.unwrap_key(subject, 4, &wrapped).is_err());
        let other_master = MasterKey::generate().unwrap_or_else(|e| panic!("{e}"));
        assert!(other_master.unwrap_key(subject, 3, &wrapped).is_err());
        assert_ne!(master.id(), other_master.id());
    }

    #[test]
    fn master_key_parsing_never_echoes_the_key() {
        let error = MasterKey::from_hex("secretsecret")
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| !e.contains("secret")));
    }
}
