//! Rotating the master key and the blind-index key.

use super::PersonalVault;
use super::index_subject;
use crate::codec::Reference;
use crate::personal::crypto::{DataKey, blind_index};
use crate::personal::{PersonalError, PersonalKey};
use crate::store::IndexEntry;
use std::time::SystemTime;

impl PersonalVault {
    /// Re-wraps every data key that is not wrapped by the ring's current master key, unwrapping
    /// each with the master key that wrapped it; personal data and events are not touched.
    ///
    /// Online, and safe to rerun: keys already under the current master key are skipped, keys
    /// erased or replaced meanwhile are left alone, and a key that none of the ring's master
    /// keys opens is reported in [`Rotation::failed`] while the others are re-wrapped. With
    /// several processes: give every process the new master key as current and the old one as
    /// previous ([`MasterKeyRing::with_previous`](crate::personal::MasterKeyRing::with_previous)) first, then rotate from one of them, and drop
    /// the old key from the configuration once a rotation reports [`Rotation::is_complete`].
    pub async fn rotate_master_key(&self) -> Result<Rotation, PersonalError> {
        let current = self.masters.current();
        let span = tracing::info_span!(
            "rotate_master_key",
            otel.name = "rotate master key",
            otel.kind = "internal",
            eventsourcery.master_key.id = current.id_str(),
        );
        let _enter = span.enter();
        let mut rotation = Rotation::default();
        let mut after = None;
        loop {
            let page = self.keys.keys_after(after, ROTATION_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.subject);
            let mut rewrapped = Vec::with_capacity(page.len());
            for key in page {
                if key.master_key_id == current.id_str() {
                    rotation.already_current += 1;
                    continue;
                }
                match self.unwrap(&key) {
                    Ok(data_key) => {
                        rewrapped.push(self.wrap(key.subject, key.version, &data_key)?);
                    }
                    Err(_) => rotation.failed.push(RotationFailure {
                        subject: key.subject,
                        master_key_id: key.master_key_id,
                    }),
                }
            }
            rotation.rewrapped += rewrapped.len();
            self.keys.rewrap_keys(rewrapped).await?;
        }
        tracing::info!(
            rewrapped = rotation.rewrapped,
            failed = rotation.failed.len(),
            "master key rotation"
        );
        Ok(rotation)
    }

    /// Replaces the blind-index key with a new version and rebuilds the index under it from
    /// the stored values, so that a copied index, or the old key, links nothing any more; also
    /// what brings entries made before a change of lookup form (see
    /// [`PersonalData::lookup_form`](crate::PersonalData::lookup_form)) in line.
    ///
    /// Online: the personal data store first refuses entries made with the old key (a write
    /// that read the keys before is written again with the new one), lookups hash with both
    /// keys while the index is rebuilt, then the old entries are deleted and the old key
    /// destroyed. The values of every field marked `#[personal(lookup)]` in this program are
    /// re-indexed (fields are known by the events and commands this program defines); values
    /// that do not decrypt are counted in [`IndexRotation::unreadable`]. A rotation that
    /// stopped part-way is finished by the next call, which rotates no further.
    pub async fn rotate_index_key(&self) -> Result<IndexRotation, PersonalError> {
        let span = tracing::info_span!(
            "rotate_index_key",
            otel.name = "rotate index key",
            otel.kind = "internal",
        );
        let _enter = span.enter();
        let present = self.index_keys().await?;
        let Some(highest) = present.last().map(|k| k.version) else {
            // No value was ever indexed: the first write makes the first key.
            return Ok(IndexRotation::default());
        };
        let target = match present.len() {
            1 => {
                let next = highest.checked_add(1).ok_or(PersonalError::OutOfRange {
                    what: "the blind-index key version",
                })?;
                let fresh = DataKey::generate(1)?;
                self.keys
                    .insert_key(self.wrap(index_subject(next), 1, &fresh)?)
                    .await?;
                next
            }
            // A rotation that stopped part-way: finish it.
            _ => highest,
        };
        let target_key = self
            .index_keys()
            .await?
            .into_iter()
            .find(|k| k.version == target)
            .ok_or(PersonalError::MissingKey {
                subject: index_subject(target),
            })?;
        // From here on no entry of an older version is accepted: every value stored before now
        // is in the store for the walk below, every later one is indexed with the new key.
        self.data.raise_index_floor(target).await?;
        let fields = crate::personal::lookup::lookup_fields();
        let mut rotation = IndexRotation {
            version: target,
            ..IndexRotation::default()
        };
        let mut after = None;
        loop {
            let page = self.data.records_after(after, ROTATION_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.reference);
            let references: Vec<Reference> = page
                .iter()
                .filter(|r| fields.contains_key(r.field.as_str()))
                .map(|r| Reference {
                    id: r.reference,
                    subject: r.subject,
                    field: r.field.clone(),
                })
                .collect();
            let resolved = self.resolve(&references).await?;
            let mut entries = Vec::with_capacity(references.len());
            for reference in &references {
                let Some((subject, plaintext)) = resolved.values.get(&reference.id) else {
                    if resolved.failed.contains_key(&reference.id) {
                        rotation.unreadable += 1;
                    }
                    continue;
                };
                let Some(field) = fields.get(reference.field.as_str()) else {
                    continue;
                };
                let Ok(form) = (field.form)(plaintext) else {
                    rotation.unreadable += 1;
                    continue;
                };
                entries.push(IndexEntry {
                    hash: blind_index(&target_key.key, field.kind, &form),
                    subject: *subject,
                    key_version: target,
                });
            }
            rotation.reindexed += entries.len();
            // Entries of subjects erased meanwhile are refused, as any write's are.
            self.data.put(Vec::new(), entries).await?;
        }
        rotation.removed = self.data.delete_index_entries_below(target).await?;
        for old in present.iter().filter(|k| k.version < target) {
            self.keys
                .erase(
                    index_subject(old.version),
                    SystemTime::now(),
                    "blind-index key rotation",
                )
                .await?;
        }
        tracing::info!(
            version = target,
            reindexed = rotation.reindexed,
            removed = rotation.removed,
            "blind-index key rotated"
        );
        Ok(rotation)
    }
}

/// What [`PersonalVault::rotate_index_key`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexRotation {
    /// The index key version now in use (0 if nothing was ever indexed).
    pub version: u32,
    /// Index entries made with it from the stored values.
    pub reindexed: usize,
    /// Values of lookup fields that did not decrypt or parse, left out of the new index.
    pub unreadable: usize,
    /// Entries of older versions deleted.
    pub removed: u64,
}

/// How many keys a rotation reads and re-wraps at a time.
const ROTATION_PAGE: usize = 500;

/// What [`PersonalVault::rotate_master_key`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rotation {
    /// Keys re-wrapped under the current master key.
    pub rewrapped: usize,
    /// Keys that were already under it.
    pub already_current: usize,
    /// Keys that none of the vault's master keys could unwrap: left as they are.
    pub failed: Vec<RotationFailure>,
}

impl Rotation {
    /// Whether every key is now under the current master key.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A data key a rotation could not unwrap.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationFailure {
    /// Whose key it is.
    pub subject: PersonalKey,
    /// The id of the master key that wrapped it (not secret).
    pub master_key_id: String,
}
