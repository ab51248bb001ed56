//! The key store and personal data store contracts, case by case, below the vault: every
//! backend must behave as `MemoryKeyStore` and `MemoryPersonalStore` do.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eventsourcery::PersonalKey;
use eventsourcery::personal::{Erasure, PersonalRecord, WrappedKey};
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
    let first = Erasure {
        subject,
        erased_at: SystemTime::now() - Duration::from_secs(60),
        reason: "request 1".into(),
        last_key_version: 3,
        re_enrolled: false,
    };
    keys.record_erasure(first.clone()).await.unwrap();
    keys.record_erasure(Erasure {
        erased_at: SystemTime::now(),
        reason: "request 2".into(),
        last_key_version: 4,
        ..first.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        keys.erasures(&[subject, other]).await.unwrap(),
        vec![first.clone()],
        "the first record stays, time and all"
    );

    keys.re_enroll(subject).await.unwrap();
    keys.re_enroll(other).await.unwrap();
    let re_enrolled = keys.erasures(&[subject]).await.unwrap();
    assert!(re_enrolled[0].re_enrolled);
    assert!(keys.erasures(&[other]).await.unwrap().is_empty());

    let second = Erasure {
        subject,
        erased_at: SystemTime::now(),
        reason: "request 3".into(),
        last_key_version: 4,
        re_enrolled: false,
    };
    keys.record_erasure(second.clone()).await.unwrap();
    assert_eq!(keys.erasures(&[subject]).await.unwrap(), vec![second]);
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

    keys.delete_key(a).await.unwrap();
    keys.delete_key(a).await.unwrap();
    assert!(keys.keys(&[a]).await.unwrap().is_empty());
    assert_eq!(keys.keys(&[a, b]).await.unwrap(), vec![key(b, 2, 2)]);
    assert!(keys.keys(&[]).await.unwrap().is_empty());
}

fn record(subject: PersonalKey, field: &str, fill: u8) -> PersonalRecord {
    PersonalRecord {
        reference: Uuid::now_v7(),
        subject,
        field: field.into(),
        ciphertext: vec![fill; 40],
    }
}

pub async fn put_upserts_and_delete_subject_removes_everything(backend: Backend) {
    let data = backend.data();
    let (a, b) = (PersonalKey::issue(), PersonalKey::issue());
    let (h1, h2) = (vec![1u8; 32], vec![2u8; 32]);
    let r1 = record(a, "e.email", 1);
    let r2 = record(a, "e.name", 2);
    let r3 = record(b, "e.email", 3);
    data.put(vec![], vec![]).await.unwrap();
    data.put(
        vec![r1.clone(), r2.clone(), r3.clone()],
        vec![
            (h1.clone(), a),
            (h1.clone(), a),
            (h1.clone(), b),
            (h2.clone(), a),
        ],
    )
    .await
    .unwrap();
    // Index entries are idempotent; records are replaced by reference.
    let tampered = PersonalRecord {
        ciphertext: vec![9; 41],
        ..r1.clone()
    };
    data.put(vec![tampered.clone()], vec![(h1.clone(), a)])
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

    assert_eq!(data.delete_subject(a).await.unwrap(), 2);
    assert_eq!(data.delete_subject(a).await.unwrap(), 0);
    assert!(data.by_subject(a).await.unwrap().is_empty());
    assert!(
        data.get(&[r1.reference, r2.reference])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(data.find(&h1).await.unwrap(), vec![b]);
    assert!(data.find(&h2).await.unwrap().is_empty());
    assert_eq!(data.get(&[r3.reference]).await.unwrap(), vec![r3]);
}

fn erasure(subject: PersonalKey, last_key_version: u32) -> Erasure {
    Erasure {
        subject,
        erased_at: SystemTime::now(),
        reason: "test".into(),
        last_key_version,
        re_enrolled: false,
    }
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
    keys.record_erasure(erasure(erased, 1)).await.unwrap();
    keys.record_erasure(erasure(never_keyed, 0)).await.unwrap();
    keys.record_erasure(erasure(re_enrolled, 2)).await.unwrap();
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
