//! Integrity cases: a tampered, truncated or moved ciphertext, a rotated or wrong master key,
//! each a typed error and never an erased value or garbage.

use eventsourcery::event::{EventError, Metadata};
use eventsourcery::personal::MasterKey;
use eventsourcery::personal::{MasterKeyRing, PersonalError};
use eventsourcery::store::{Commit, NewEvent, StreamAppend};
use eventsourcery::store::{PersonalRecord, WrappedKey};
use eventsourcery::value::StreamId;
use eventsourcery::{AggregateRoot, Id, PersonalKey, StoreError};
use serde_json::Value;
use uuid::Uuid;

use super::{Backend, EMAIL, Email, NAME, Voucher, VoucherId, random_master_hex, register_cmd};

pub async fn one_registration(backend: &Backend) -> (VoucherId, PersonalKey, Vec<PersonalRecord>) {
    let voucher = VoucherId::generate();
    let candidate = PersonalKey::issue();
    backend
        .bus()
        .execute(register_cmd(&voucher, candidate, EMAIL, NAME))
        .await
        .unwrap();
    let records = backend.data().by_subject(candidate).await.unwrap();
    (voucher, candidate, records)
}

fn personal_source(error: &StoreError) -> &PersonalError {
    match error {
        StoreError::Decode { source, .. } => match &**source {
            EventError::Personal { source, .. } => source,
            other => panic!("expected a personal data error, got {other}"),
        },
        other => panic!("expected a personal data error, got {other}"),
    }
}

pub async fn tampering_is_a_typed_error(backend: Backend) {
    let (voucher, _, records) = one_registration(&backend).await;
    let repository = backend.bus().repository::<Voucher>();
    let record = records
        .iter()
        .find(|r| r.field == "candidate_registered.email")
        .unwrap()
        .clone();
    for i in 0..record.ciphertext.len() {
        let mut tampered = record.clone();
        tampered.ciphertext[i] ^= 0x01;
        backend.data().put(vec![tampered], vec![]).await.unwrap();
        let error = repository.load(&voucher).await.unwrap_err();
        let source = personal_source(&error);
        match i {
            1..=4 => assert!(
                matches!(source, PersonalError::UnknownKeyVersion { .. }),
                "byte {i}: {source}"
            ),
            _ => assert!(
                matches!(source, PersonalError::Tampered { .. }),
                "byte {i}: {source}"
            ),
        }
    }
    // Truncated.
    let mut truncated = record.clone();
    truncated.ciphertext.truncate(20);
    backend.data().put(vec![truncated], vec![]).await.unwrap();
    assert!(matches!(
        personal_source(&repository.load(&voucher).await.unwrap_err()),
        PersonalError::Tampered { .. }
    ));

    // Another field's ciphertext copied onto this field's row.
    let name = records
        .iter()
        .find(|r| r.field == "candidate_registered.name")
        .unwrap();
    let moved = PersonalRecord {
        ciphertext: name.ciphertext.clone(),
        ..record.clone()
    };
    backend.data().put(vec![moved], vec![]).await.unwrap();
    assert!(matches!(
        personal_source(&repository.load(&voucher).await.unwrap_err()),
        PersonalError::Tampered { .. }
    ));

    // Restored, it loads again.
    backend
        .data()
        .put(vec![record.clone()], vec![])
        .await
        .unwrap();
    repository.load(&voucher).await.unwrap();

    // Another subject's ciphertext (under its own key) copied onto this row.
    let (_, _, others) = one_registration(&backend).await;
    let other = others
        .iter()
        .find(|r| r.field == "candidate_registered.email")
        .unwrap();
    let foreign = PersonalRecord {
        ciphertext: other.ciphertext.clone(),
        ..record.clone()
    };
    backend.data().put(vec![foreign], vec![]).await.unwrap();
    assert!(matches!(
        personal_source(&repository.load(&voucher).await.unwrap_err()),
        PersonalError::Tampered { .. }
    ));

    // The row moved to another subject: the event's subject no longer matches.
    let stolen = PersonalRecord {
        subject: other.subject,
        ..record.clone()
    };
    backend.data().put(vec![stolen], vec![]).await.unwrap();
    assert!(matches!(
        personal_source(&repository.load(&voucher).await.unwrap_err()),
        PersonalError::SubjectMismatch { .. }
    ));

    // The row gone while its subject was never erased.
    backend
        .data()
        .put(vec![record.clone()], vec![])
        .await
        .unwrap();
    repository.load(&voucher).await.unwrap();
}

/// The message of a load that failed because no master key opens a data key.
fn load_error(result: Result<AggregateRoot<Voucher>, StoreError>) -> String {
    let Err(error) = result else {
        panic!("the load succeeded");
    };
    let source = personal_source(&error);
    assert!(
        matches!(source, PersonalError::WrongMasterKey { .. }),
        "{error}"
    );
    source.to_string()
}

/// Online rotation with two vaults over one set of stores (two processes): the new master key
/// reaches every process first, one rotates, the running vault keeps reading and writing, a
/// rerun has nothing left to do, a key no master key opens is reported without stopping the
/// rest, and a wrong master key is a typed error, never erased values.
pub async fn master_key_rotation_works_online_and_can_be_rerun(backend: Backend) {
    let (voucher, ann, _) = one_registration(&backend).await;
    let old = backend.master();
    let new_hex = random_master_hex();
    let new = || MasterKey::from_hex(&new_hex).unwrap();
    let new_id = new().id();

    // Step 1: every process gets the new key as current and the old one as previous.
    let b = backend.with_masters(MasterKeyRing::new(new()).with_previous(old), &new_hex);
    let loaded = b
        .bus()
        .repository::<Voucher>()
        .load(&voucher)
        .await
        .unwrap();
    assert_eq!(
        loaded.emails[0].present().map(|e| e.0.as_str()),
        Some(EMAIL)
    );
    let (bob_voucher, bob) = (VoucherId::generate(), PersonalKey::issue());
    b.bus()
        .execute(register_cmd(&bob_voucher, bob, "bob@example.com", "Bob"))
        .await
        .unwrap();
    assert_eq!(
        b.keys().keys(&[bob]).await.unwrap()[0].master_key_id,
        new_id
    );
    // A process still on the old key alone cannot read what was wrapped under the new one:
    // why the new key goes to every process before anything is rotated.
    load_error(
        backend
            .bus()
            .repository::<Voucher>()
            .load(&bob_voucher)
            .await,
    );

    // Step 2: one process rotates, online.
    let rotation = b.vault.rotate_master_key().await.unwrap();
    assert!(rotation.is_complete(), "{rotation:?}");
    assert!(
        rotation.rewrapped >= 2,
        "Ann's key and the index key: {rotation:?}"
    );
    assert!(rotation.already_current >= 1, "Bob's key: {rotation:?}");
    for key in b.keys().all_keys().await.unwrap() {
        assert_eq!(
            key.master_key_id, new_id,
            "every key under the new master key"
        );
    }
    // The rotating vault reads and writes on.
    let loaded = b
        .bus()
        .repository::<Voucher>()
        .load(&voucher)
        .await
        .unwrap();
    assert_eq!(
        loaded.emails[0].present().map(|e| e.0.as_str()),
        Some(EMAIL)
    );
    b.bus()
        .execute(register_cmd(
            &voucher,
            PersonalKey::issue(),
            "carl@example.com",
            "Carl",
        ))
        .await
        .unwrap();
    // A rerun has nothing left to do.
    let again = b.vault.rotate_master_key().await.unwrap();
    assert_eq!(again.rewrapped, 0, "{again:?}");
    assert!(again.is_complete());

    // Step 3: the old key leaves the configuration; everything still reads, lookups too.
    let c = backend.with_masters(new(), &new_hex);
    let loaded = c
        .bus()
        .repository::<Voucher>()
        .load(&voucher)
        .await
        .unwrap();
    assert_eq!(
        loaded.emails[0].present().map(|e| e.0.as_str()),
        Some(EMAIL)
    );
    assert_eq!(loaded.emails.len(), 2);
    assert_eq!(
        c.vault.lookup(&Email(EMAIL.into())).await.unwrap(),
        vec![ann]
    );
    // The old key alone: a typed error, never erased values.
    load_error(backend.bus().repository::<Voucher>().load(&voucher).await);

    // A key that no master key of the ring opens is reported; the others are rotated, and the
    // next rotation is not stopped by it.
    let stray = PersonalKey::issue();
    c.keys()
        .insert_key(WrappedKey {
            subject: stray,
            version: 1,
            wrapped: vec![7; 60],
            master_key_id: "0000000000000000".into(),
        })
        .await
        .unwrap();
    let newer_hex = random_master_hex();
    let d = backend.with_masters(
        MasterKeyRing::new(MasterKey::from_hex(&newer_hex).unwrap()).with_previous(new()),
        &newer_hex,
    );
    let rotation = d.vault.rotate_master_key().await.unwrap();
    assert!(!rotation.is_complete());
    assert_eq!(rotation.failed.len(), 1);
    assert_eq!(rotation.failed[0].subject, stray);
    assert!(rotation.rewrapped >= 4, "{rotation:?}");
    let again = d.vault.rotate_master_key().await.unwrap();
    assert_eq!((again.rewrapped, again.failed.len()), (0, 1), "{again:?}");
    let loaded = d
        .bus()
        .repository::<Voucher>()
        .load(&voucher)
        .await
        .unwrap();
    assert_eq!(
        loaded.emails[0].present().map(|e| e.0.as_str()),
        Some(EMAIL)
    );

    // A wrong master key: typed errors on read and on write, never erased values.
    let wrong = backend.with_master(MasterKey::generate().unwrap());
    load_error(wrong.bus().repository::<Voucher>().load(&voucher).await);
    let error = wrong
        .bus()
        .execute(register_cmd(&voucher, ann, EMAIL, NAME))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("master key"), "{error}");
}

/// A stored event whose personal references were moved (two fields swapped, or a field pointed
/// at the command log's value) fails to load with a typed error naming the stream, the
/// position and the field; it never loads with the values exchanged.
pub async fn a_reference_moved_to_another_field_is_an_error(backend: Backend) {
    let (voucher, _, _) = one_registration(&backend).await;
    let stored = backend
        .store
        .read_stream(&StreamId::for_aggregate("voucher", &voucher), 0)
        .await
        .unwrap()
        .remove(0);
    let repository = backend.bus().repository::<Voucher>();
    // An event with this payload, alone in a stream of its own.
    let forge = |payload: Value| {
        let store = backend.store.clone();
        let event_name = stored.event_name.clone();
        let schema_version = stored.schema_version;
        async move {
            let voucher = VoucherId::generate();
            store
                .append(Commit {
                    streams: vec![StreamAppend {
                        stream_id: StreamId::for_aggregate("voucher", &voucher),
                        expected_version: 0,
                        events: vec![NewEvent {
                            event_id: Uuid::now_v7(),
                            event_name,
                            schema_version,
                            payload,
                            metadata: Metadata::default(),
                        }],
                    }],
                    command: None,
                })
                .await
                .unwrap();
            voucher
        }
    };
    let moved = |error: StoreError| -> (String, String) {
        let StoreError::Decode {
            version, source, ..
        } = &error
        else {
            panic!("expected a decode error, got {error}");
        };
        assert_eq!(*version, 1, "{error}");
        let EventError::Personal {
            field,
            source: PersonalError::FieldMismatch { found, .. },
            ..
        } = &**source
        else {
            panic!("expected a moved reference, got {error}");
        };
        assert!(error.to_string().contains("position"), "{error}");
        (field.clone(), found.to_string())
    };

    let mut swapped = stored.payload.clone();
    let (email, name) = (swapped["email"].clone(), swapped["name"].clone());
    swapped["email"] = name;
    swapped["name"] = email;
    let forged = forge(swapped).await;
    let (field, found) = moved(repository.load(&forged).await.unwrap_err());
    assert_eq!(
        (field.as_str(), found.as_str()),
        ("email", "candidate_registered.name")
    );

    let command = backend
        .store
        .read_commands(0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "register")
        .unwrap();
    let mut pointed = stored.payload.clone();
    pointed["email"] = command.payload["email"].clone();
    let forged = forge(pointed).await;
    let (field, found) = moved(repository.load(&forged).await.unwrap_err());
    assert_eq!(
        (field.as_str(), found.as_str()),
        ("email", "register.email")
    );

    // The original still loads.
    let loaded = repository.load(&voucher).await.unwrap();
    assert_eq!(
        loaded.emails[0].present().map(|e| e.0.as_str()),
        Some(EMAIL)
    );
}
