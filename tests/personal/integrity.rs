//! Integrity cases: a tampered, truncated or moved ciphertext, a rotated or wrong master key,
//! each a typed error and never an erased value or garbage.

use eventsourcery::personal::{PersonalError, PersonalRecord};
use eventsourcery::{EventError, Id, MasterKey, PersonalKey, StoreError};

use super::{Backend, EMAIL, Email, NAME, Voucher, VoucherId, register_cmd};

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

pub async fn master_key_rotation_and_wrong_key(backend: Backend) {
    let (voucher, candidate, _) = one_registration(&backend).await;
    let new_master = MasterKey::generate().unwrap();
    let rotated = backend.vault.rotate_master_key(&new_master).await.unwrap();
    assert!(
        rotated >= 2,
        "the subject's key and the index key, got {rotated}"
    );

    // The old master key no longer opens the data keys: a typed error, never erased values.
    let error = backend
        .bus()
        .repository::<Voucher>()
        .load(&voucher)
        .await
        .unwrap_err();
    assert!(
        matches!(
            personal_source(&error),
            PersonalError::WrongMasterKey { .. }
        ),
        "{error}"
    );

    let reopened = backend.with_master(new_master);
    let loaded = reopened
        .bus()
        .repository::<Voucher>()
        .load(&voucher)
        .await
        .unwrap();
    assert_eq!(
        loaded.emails[0].present().map(|e| e.0.as_str()),
        Some(EMAIL)
    );
    assert_eq!(
        reopened.vault.lookup(&Email(EMAIL.into())).await.unwrap(),
        vec![candidate]
    );

    let wrong = backend.with_master(MasterKey::generate().unwrap());
    let error = wrong
        .bus()
        .repository::<Voucher>()
        .load(&voucher)
        .await
        .unwrap_err();
    assert!(
        matches!(
            personal_source(&error),
            PersonalError::WrongMasterKey { .. }
        ),
        "{error}"
    );
    let error = wrong
        .bus()
        .execute(register_cmd(&voucher, candidate, EMAIL, NAME))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("master key"), "{error}");
}
