//! The key store and personal data store contracts, case by case, below the vault: every
//! backend must behave as `MemoryKeyStore` and `MemoryPersonalStore` do.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eventsourcery::PersonalKey;
use eventsourcery::personal::PersonalError;
use eventsourcery::store::{AuditEntry, AuditRecord, IndexEntry, PersonalRecord, WrappedKey};
use uuid::Uuid;

use super::Backend;

fn key(subject: PersonalKey, version: u32, fill: u8) -> WrappedKey {
    WrappedKey {
        subject,
        version,
        wrapped: vec![fill; 60],
        master_key_id: format!("master-{fill}"),
    }
}

/// An index entry made with index key version 0.
fn entry(hash: Vec<u8>, subject: PersonalKey) -> IndexEntry {
    IndexEntry {
        hash,
        subject,
        key_version: 0,
    }
}

fn sorted(mut subjects: Vec<PersonalKey>) -> Vec<PersonalKey> {
    subjects.sort();
    subjects
}

/// Writers racing to give one subject its first key all get the one key that was stored.
pub async fn racing_key_inserts_store_one_key(backend: Backend) {
    let keys = backend.keys().clone();
    let subject = PersonalKey::issue();
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let (keys, start) = (keys.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                keys.insert_key(key(subject, 1, i)).await.unwrap()
            })
        })
        .collect();
    let mut returned = Vec::new();
    for task in tasks {
        returned.push(task.await.unwrap());
    }
    let stored = keys.keys(&[subject]).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        returned.iter().all(|k| *k == stored[0]),
        "every writer got the stored key"
    );
    assert_eq!(keys.all_keys().await.unwrap(), stored);
}

pub async fn erasure_records_keep_the_first_unless_re_enrolled(backend: Backend) {
    let keys = backend.keys();
    let (subject, other) = (PersonalKey::issue(), PersonalKey::issue());
    assert!(keys.erasures(&[]).await.unwrap().is_empty());
    assert!(keys.erasures(&[subject]).await.unwrap().is_empty());
    let epoch = keys.erasure_epoch().await.unwrap();
    let early = SystemTime::now() - Duration::from_secs(60);
    let first = keys.erase(subject, early, "request 1").await.unwrap();
    assert_eq!(first.reason, "request 1");
    assert!(!first.re_enrolled);
    // Never keyed: version 1, which a racing first write would claim, is destroyed too.
    assert_eq!(first.last_key_version, 1);
    let again = keys
        .erase(subject, SystemTime::now(), "request 2")
        .await
        .unwrap();
    assert_eq!(again, first, "the first record stays, time and all");
    assert_eq!(
        keys.erasures(&[subject, other]).await.unwrap(),
        vec![first.clone()]
    );
    assert!(
        keys.erasure_epoch().await.unwrap() > epoch,
        "the epoch moved"
    );

    keys.re_enroll(subject).await.unwrap();
    keys.re_enroll(other).await.unwrap();
    let re_enrolled = keys.erasures(&[subject]).await.unwrap();
    assert!(re_enrolled[0].re_enrolled);
    assert!(keys.erasures(&[other]).await.unwrap().is_empty());

    let second = keys
        .erase(subject, SystemTime::now(), "request 3")
        .await
        .unwrap();
    assert_eq!(second.reason, "request 3");
    assert!(!second.re_enrolled);
    // Re-enrolled and not yet keyed: the next claimable version is destroyed as well.
    assert_eq!(second.last_key_version, 2);
    assert_eq!(keys.erasures(&[subject]).await.unwrap(), vec![second]);
}

/// An erasure counts the key it destroys, decided in the same step: a re-enrolled subject
/// always gets a version above every key it had.
pub async fn erasure_destroys_and_counts_the_current_key(backend: Backend) {
    let keys = backend.keys();
    let subject = PersonalKey::issue();
    assert_eq!(
        keys.claim_keys(vec![key(subject, 1, 1)]).await.unwrap(),
        [true]
    );
    let erasure = keys.erase(subject, SystemTime::now(), "r").await.unwrap();
    assert_eq!(erasure.last_key_version, 1);
    assert!(
        keys.keys(&[subject]).await.unwrap().is_empty(),
        "key destroyed"
    );
    keys.re_enroll(subject).await.unwrap();
    assert_eq!(
        keys.claim_keys(vec![key(subject, 1, 2)]).await.unwrap(),
        [false]
    );
    assert_eq!(
        keys.claim_keys(vec![key(subject, 2, 2)]).await.unwrap(),
        [true]
    );
    let erasure = keys.erase(subject, SystemTime::now(), "r").await.unwrap();
    assert_eq!(erasure.last_key_version, 2);
    keys.re_enroll(subject).await.unwrap();
    // A key claimed far above (by a vault that read an old record): counted too.
    assert_eq!(
        keys.claim_keys(vec![key(subject, 7, 3)]).await.unwrap(),
        [true]
    );
    let erasure = keys.erase(subject, SystemTime::now(), "r").await.unwrap();
    assert_eq!(erasure.last_key_version, 7);
    assert!(keys.keys(&[subject]).await.unwrap().is_empty());
}

pub async fn rewrapping_replaces_only_matching_versions(backend: Backend) {
    let keys = backend.keys();
    let (a, b, c) = (
        PersonalKey::issue(),
        PersonalKey::issue(),
        PersonalKey::issue(),
    );
    assert_eq!(keys.insert_key(key(a, 1, 1)).await.unwrap(), key(a, 1, 1));
    keys.insert_key(key(b, 2, 2)).await.unwrap();
    // A second insert for a subject with a key returns the stored one.
    assert_eq!(keys.insert_key(key(a, 5, 9)).await.unwrap(), key(a, 1, 1));

    keys.rewrap_keys(vec![key(a, 1, 7), key(b, 1, 7), key(c, 1, 7)])
        .await
        .unwrap();
    assert_eq!(keys.keys(&[a]).await.unwrap(), vec![key(a, 1, 7)]);
    assert_eq!(
        keys.keys(&[b]).await.unwrap(),
        vec![key(b, 2, 2)],
        "another version stays"
    );
    assert!(keys.keys(&[c]).await.unwrap().is_empty(), "nothing created");
    let mut all = keys.all_keys().await.unwrap();
    all.sort_by_key(|k| k.subject);
    let mut expected = vec![key(a, 1, 7), key(b, 2, 2)];
    expected.sort_by_key(|k| k.subject);
    assert_eq!(all, expected);

    keys.erase(a, SystemTime::now(), "r").await.unwrap();
    keys.erase(a, SystemTime::now(), "r").await.unwrap();
    assert!(keys.keys(&[a]).await.unwrap().is_empty());
    // Rewrapping an erased subject's key does not bring it back.
    keys.rewrap_keys(vec![key(a, 1, 8)]).await.unwrap();
    assert!(keys.keys(&[a]).await.unwrap().is_empty());
    assert_eq!(keys.keys(&[a, b]).await.unwrap(), vec![key(b, 2, 2)]);
    assert!(keys.keys(&[]).await.unwrap().is_empty());
}

/// A record whose ciphertext has a well-formed header for key `version` (format byte, version,
/// nonce) and `fill` bytes for the rest.
fn versioned(subject: PersonalKey, field: &str, version: u32, fill: u8) -> PersonalRecord {
    let mut ciphertext = vec![1];
    ciphertext.extend(version.to_be_bytes());
    ciphertext.extend([fill; 35]);
    PersonalRecord {
        reference: Uuid::now_v7(),
        subject,
        field: field.into(),
        ciphertext,
    }
}

fn record(subject: PersonalKey, field: &str, fill: u8) -> PersonalRecord {
    versioned(subject, field, 1, fill)
}

pub async fn put_upserts_and_delete_subject_removes_everything(backend: Backend) {
    let data = backend.data();
    let (a, b) = (PersonalKey::issue(), PersonalKey::issue());
    let (h1, h2) = (vec![1u8; 32], vec![2u8; 32]);
    let r1 = record(a, "e.email", 1);
    let r2 = record(a, "e.name", 2);
    let r3 = record(b, "e.email", 3);
    assert!(data.put(vec![], vec![]).await.unwrap().is_empty());
    data.put(
        vec![r1.clone(), r2.clone(), r3.clone()],
        vec![
            entry(h1.clone(), a),
            entry(h1.clone(), a),
            entry(h1.clone(), b),
            entry(h2.clone(), a),
        ],
    )
    .await
    .unwrap();
    // Index entries are idempotent; records are replaced by reference.
    let tampered = PersonalRecord {
        ciphertext: versioned(a, "e.email", 1, 9).ciphertext,
        ..r1.clone()
    };
    data.put(vec![tampered.clone()], vec![entry(h1.clone(), a)])
        .await
        .unwrap();

    let mut got = data
        .get(&[r1.reference, r2.reference, r3.reference, Uuid::now_v7()])
        .await
        .unwrap();
    got.sort_by_key(|r| r.reference);
    let mut expected = vec![tampered.clone(), r2.clone(), r3.clone()];
    expected.sort_by_key(|r| r.reference);
    assert_eq!(got, expected);
    assert!(data.get(&[]).await.unwrap().is_empty());
    assert_eq!(
        data.by_subject(a).await.unwrap(),
        vec![tampered, r2.clone()],
        "oldest first"
    );
    assert_eq!(sorted(data.find(&h1).await.unwrap()), sorted(vec![a, b]));
    assert_eq!(data.find(&h2).await.unwrap(), vec![a]);
    assert!(data.find(&[3u8; 32]).await.unwrap().is_empty());

    assert_eq!(data.erase_subject(a, 1).await.unwrap(), 2);
    assert_eq!(data.erase_subject(a, 1).await.unwrap(), 0);
    assert!(data.by_subject(a).await.unwrap().is_empty());
    assert!(
        data.get(&[r1.reference, r2.reference])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(data.find(&h1).await.unwrap(), vec![b]);
    assert!(data.find(&h2).await.unwrap().is_empty());
    assert_eq!(data.get(&[r3.reference]).await.unwrap(), vec![r3.clone()]);

    // Deleting by reference: only those records, and idempotent.
    let r4 = record(b, "e.name", 4);
    data.put(vec![r4.clone()], vec![]).await.unwrap();
    assert_eq!(
        data.delete(&[r4.reference, Uuid::now_v7()]).await.unwrap(),
        1
    );
    assert_eq!(data.delete(&[r4.reference]).await.unwrap(), 0);
    assert!(data.delete(&[]).await.is_ok());
    assert_eq!(data.by_subject(b).await.unwrap(), vec![r3]);
}

/// Once a subject is erased through a key version, the personal data store refuses its values
/// under that version or an older one (a write that raced the erasure), and its index entries,
/// in the put that brings them, while storing the other subjects' values of the same put.
pub async fn puts_refuse_values_of_erased_key_versions(backend: Backend) {
    let data = backend.data();
    let (a, b) = (PersonalKey::issue(), PersonalKey::issue());
    data.erase_subject(a, 2).await.unwrap();
    // Recording a lower version later keeps the higher one.
    data.erase_subject(a, 1).await.unwrap();
    let stale = versioned(a, "e.email", 2, 1);
    let older = versioned(a, "e.name", 1, 2);
    let other = versioned(b, "e.email", 1, 3);
    let refused = data
        .put(
            vec![stale.clone(), older.clone(), other.clone()],
            vec![entry(vec![7u8; 32], a), entry(vec![8u8; 32], b)],
        )
        .await
        .unwrap();
    assert_eq!(refused, vec![a]);
    assert!(data.by_subject(a).await.unwrap().is_empty(), "nothing of a");
    assert!(
        data.find(&[7u8; 32]).await.unwrap().is_empty(),
        "no index entry of a"
    );
    assert_eq!(data.by_subject(b).await.unwrap(), vec![other]);
    assert_eq!(data.find(&[8u8; 32]).await.unwrap(), vec![b]);
    // An index entry without a value of the subject is refused too.
    assert_eq!(
        data.put(vec![], vec![entry(vec![9u8; 32], a)])
            .await
            .unwrap(),
        vec![a]
    );
    // One stale value refuses the subject's whole share of the put.
    let fresh = versioned(a, "e.email", 3, 4);
    assert_eq!(
        data.put(vec![fresh.clone(), older], vec![]).await.unwrap(),
        vec![a]
    );
    assert!(data.by_subject(a).await.unwrap().is_empty());
    // Values under a version above the erased ones (a re-enrolled subject's new key) go in.
    assert!(
        data.put(vec![fresh.clone()], vec![entry(vec![7u8; 32], a)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(data.by_subject(a).await.unwrap(), vec![fresh]);
    assert_eq!(data.find(&[7u8; 32]).await.unwrap(), vec![a]);
}

/// A key is claimed only by a subject without a key that may take it: never by one erased and
/// not re-enrolled (whatever the writer read before), and by a re-enrolled one only above the
/// versions it had.
pub async fn claims_store_keys_only_for_subjects_that_may_take_them(backend: Backend) {
    let keys = backend.keys();
    let fresh = PersonalKey::issue();
    let keyed = PersonalKey::issue();
    let erased = PersonalKey::issue();
    let never_keyed = PersonalKey::issue();
    let re_enrolled = PersonalKey::issue();
    keys.insert_key(key(keyed, 1, 1)).await.unwrap();
    keys.insert_key(key(erased, 1, 1)).await.unwrap();
    keys.insert_key(key(re_enrolled, 2, 1)).await.unwrap();
    for subject in [erased, never_keyed, re_enrolled] {
        keys.erase(subject, SystemTime::now(), "test")
            .await
            .unwrap();
    }
    keys.re_enroll(re_enrolled).await.unwrap();

    let claimed = keys
        .claim_keys(vec![
            key(fresh, 1, 2),
            key(keyed, 1, 2),
            key(erased, 2, 2),
            key(never_keyed, 1, 2),
            key(re_enrolled, 2, 2),
        ])
        .await
        .unwrap();
    assert_eq!(claimed, [true, false, false, false, false]);
    assert_eq!(keys.keys(&[fresh]).await.unwrap(), [key(fresh, 1, 2)]);
    assert_eq!(keys.keys(&[keyed]).await.unwrap(), [key(keyed, 1, 1)]);
    assert!(
        keys.keys(&[erased, never_keyed, re_enrolled])
            .await
            .unwrap()
            .is_empty()
    );

    // Re-enrolled, the subject takes a key above its old versions.
    let claimed = keys.claim_keys(vec![key(re_enrolled, 3, 3)]).await.unwrap();
    assert_eq!(claimed, [true]);
    assert_eq!(
        keys.keys(&[re_enrolled]).await.unwrap(),
        [key(re_enrolled, 3, 3)]
    );
    assert!(keys.claim_keys(Vec::new()).await.unwrap().is_empty());
}

/// The index floor refuses, in the put that brings it, an entry made with an index key version
/// below it (storing nothing of that put); entries below a version are deleted on demand; the
/// records can be walked in reference order.
pub async fn the_index_floor_refuses_entries_of_retired_keys(backend: Backend) {
    let data = backend.data();
    let (a, b) = (PersonalKey::issue(), PersonalKey::issue());
    let old = entry(vec![1u8; 32], a);
    let record_a = record(a, "e.email", 1);
    data.put(vec![record_a.clone()], vec![old.clone()])
        .await
        .unwrap();
    assert_eq!(data.raise_index_floor(2).await.unwrap(), 2);
    assert_eq!(
        data.raise_index_floor(1).await.unwrap(),
        2,
        "a floor only rises"
    );
    let record_b = record(b, "e.email", 2);
    let stale = IndexEntry {
        key_version: 1,
        ..entry(vec![2u8; 32], b)
    };
    let error = data
        .put(vec![record_b.clone()], vec![stale])
        .await
        .unwrap_err();
    assert!(
        matches!(error, PersonalError::StaleIndexKey { found: 1 }),
        "{error}"
    );
    assert!(
        data.by_subject(b).await.unwrap().is_empty(),
        "nothing of the put is stored"
    );
    let current = IndexEntry {
        key_version: 2,
        ..entry(vec![3u8; 32], b)
    };
    assert!(
        data.put(vec![record_b.clone()], vec![current])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(data.find(&[3u8; 32]).await.unwrap(), vec![b]);
    // The old entry is still found until it is deleted.
    assert_eq!(data.find(&[1u8; 32]).await.unwrap(), vec![a]);
    assert_eq!(data.delete_index_entries_below(2).await.unwrap(), 1);
    assert!(data.find(&[1u8; 32]).await.unwrap().is_empty());
    assert_eq!(data.find(&[3u8; 32]).await.unwrap(), vec![b]);

    let mut expected = [record_a, record_b];
    expected.sort_by_key(|r| r.reference);
    let first = data.records_after(None, 1).await.unwrap();
    assert_eq!(first, expected[..1]);
    let rest = data
        .records_after(Some(first[0].reference), 10)
        .await
        .unwrap();
    assert_eq!(rest, expected[1..]);
    assert!(
        data.records_after(Some(expected[1].reference), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The audit log: entries come back in the order appended, paged by sequence number, with
/// every field as written; an entry without an actor or a reason is refused; an erasure of a
/// subject an entry names leaves the entry alone (it holds keys and field names, no value).
pub async fn the_audit_log_appends_and_pages(backend: Backend) {
    let data = backend.data();
    let base = data
        .audit_after(0, usize::MAX)
        .await
        .unwrap()
        .last()
        .map_or(0, |r| r.sequence);
    let (a, b) = (PersonalKey::issue(), PersonalKey::issue());
    // Whole microseconds, so every backend's clock resolution keeps it exactly.
    let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_760_000_000_123_456);
    let entry = |n: u64, stream: Option<&str>| AuditEntry {
        at,
        actor: format!("operator-{n}"),
        action: "decrypt".to_owned(),
        reason: format!("ticket {n}"),
        stream: stream.map(str::to_owned),
        positions: vec![n, n + 1],
        subjects: vec![a, b],
        fields: vec!["e.email".to_owned(), "e.name".to_owned()],
    };
    let written = [entry(1, Some("voucher-1")), entry(2, None), entry(3, None)];
    let mut sequences = Vec::new();
    for e in &written {
        sequences.push(data.append_audit(e).await.unwrap());
    }
    assert!(sequences[0] > base, "{sequences:?} after {base}");
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    let all = data.audit_after(base, 10).await.unwrap();
    let expected: Vec<AuditRecord> = sequences
        .iter()
        .zip(written.iter())
        .map(|(&sequence, entry)| AuditRecord {
            sequence,
            entry: entry.clone(),
        })
        .collect();
    assert_eq!(all, expected);
    let page = data.audit_after(sequences[0], 1).await.unwrap();
    assert_eq!(page, expected[1..2]);
    assert!(data.audit_after(sequences[2], 10).await.unwrap().is_empty());

    for incomplete in [
        AuditEntry {
            actor: " ".to_owned(),
            ..entry(4, None)
        },
        AuditEntry {
            reason: String::new(),
            ..entry(4, None)
        },
    ] {
        let error = data.append_audit(&incomplete).await.unwrap_err();
        assert!(
            matches!(error, PersonalError::InvalidAudit { .. }),
            "{error}"
        );
    }
    data.erase_subject(a, 1).await.unwrap();
    assert_eq!(data.audit_after(base, 10).await.unwrap(), expected);
}
