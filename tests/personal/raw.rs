//! The guarantees checked on the stored bytes of the SQL backends: every table of the event,
//! key and personal data databases is read with raw SQL, below the stores.

use std::future::Future;
use std::pin::Pin;

use eventsourcery::store::AuditEntry;
use eventsourcery::{Id, PersonalKey};

use super::{Backend, EMAIL, NAME, assert_no_plaintext, register_cmd};

/// A boxed future borrowing the raw access.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One of the three databases of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Events,
    Keys,
    Personal,
}

impl Database {
    pub const ALL: [Database; 3] = [Database::Events, Database::Keys, Database::Personal];

    /// The database holding one of the key or personal data tables.
    pub fn of(table: &str) -> Database {
        match table {
            "eventsourcery_data_keys" | "eventsourcery_erasures" => Database::Keys,
            "eventsourcery_personal_data" | "eventsourcery_blind_index" => Database::Personal,
            _ => Database::Events,
        }
    }
}

/// Raw SQL on the three databases of a backend.
pub trait Raw: Send + Sync {
    /// Every value of every column of every table (schema tables included), as bytes: text as
    /// UTF-8, binary columns raw and in the database's own text form.
    fn dump(&self, database: Database) -> BoxFuture<'_, Vec<u8>>;

    /// The rows of `table` whose `subject` column is `subject`, each as the bytes of all its
    /// columns.
    fn rows_of(&self, table: &'static str, subject: PersonalKey) -> BoxFuture<'_, Vec<Vec<u8>>>;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Registers people (events and commands with personal values, lookups, a referral) and
/// finds none of their values, in any encoding, in any table of the three databases: the
/// personal data database holds them only as ciphertext.
pub async fn no_personal_value_in_any_table(backend: &Backend, raw: &dyn Raw) {
    let events = super::stored_tables_after_registering(backend).await;
    assert_no_plaintext("the event and command tables, as read", &events);
    // An audited read, recorded as `events show --decrypt` records it: the audit log is
    // scanned with the rest.
    let subjects: Vec<PersonalKey> = backend
        .keys()
        .all_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.subject)
        .collect();
    backend
        .data()
        .append_audit(&AuditEntry {
            at: std::time::SystemTime::now(),
            actor: "auditor-7".to_owned(),
            action: "decrypt".to_owned(),
            reason: "ticket 7".to_owned(),
            stream: None,
            positions: vec![1, 2],
            subjects,
            fields: vec!["candidate_registered.email".to_owned()],
        })
        .await
        .unwrap();
    for database in Database::ALL {
        let dump = raw.dump(database).await;
        assert_no_plaintext(&format!("the {database:?} database"), &dump);
        // The scan saw the data it must not find plaintext in.
        let expected: &[&[u8]] = match database {
            Database::Events => &[
                b"event store",
                b"candidate_registered",
                b"$personal",
                b"$state",
            ],
            Database::Keys => &[b"key store"],
            Database::Personal => &[
                b"personal data store",
                b"candidate_registered.email",
                b"referred.referee_name",
                b"auditor-7",
            ],
        };
        for marker in expected {
            assert!(
                contains(&dump, marker),
                "the scan of the {database:?} database did not see `{}`",
                String::from_utf8_lossy(marker)
            );
        }
    }
    // Every ciphertext the vault wrote was among the scanned bytes.
    let personal = raw.dump(Database::Personal).await;
    let keys = raw.dump(Database::Keys).await;
    let mut subjects = 0;
    for key in backend.keys().all_keys().await.unwrap() {
        assert!(contains(&keys, &key.wrapped), "wrapped key scanned");
        for record in backend.data().by_subject(key.subject).await.unwrap() {
            assert!(
                contains(&personal, &record.ciphertext),
                "ciphertext scanned"
            );
        }
        subjects += 1;
    }
    assert!(
        subjects >= 4,
        "three subjects and the blind index, got {subjects}"
    );
}

/// What an erased subject had, for backends that also check their files.
pub struct Erased {
    pub subject: PersonalKey,
    pub wrapped_key: Vec<u8>,
    pub ciphertexts: Vec<Vec<u8>>,
}

/// After erasure, the data-key, personal-data and blind-index tables hold no row of the
/// subject, another subject's rows stay, and the erasure row holds no personal data.
pub async fn erasure_leaves_no_row_of_the_subject(backend: &Backend, raw: &dyn Raw) -> Erased {
    let bus = backend.bus();
    let voucher = super::VoucherId::generate();
    let (ann, bob) = (PersonalKey::issue(), PersonalKey::issue());
    bus.execute(register_cmd(&voucher, ann, EMAIL, NAME))
        .await
        .unwrap();
    bus.execute(register_cmd(&voucher, bob, "bob@example.com", "Bob"))
        .await
        .unwrap();
    let tables = [
        "eventsourcery_data_keys",
        "eventsourcery_personal_data",
        "eventsourcery_blind_index",
    ];
    for table in tables {
        assert!(!raw.rows_of(table, ann).await.is_empty(), "{table} before");
    }
    let wrapped_key = backend.keys().keys(&[ann]).await.unwrap()[0]
        .wrapped
        .clone();
    let ciphertexts = backend
        .data()
        .by_subject(ann)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.ciphertext)
        .collect();

    backend.vault.erase(ann, "request 7").await.unwrap();

    for table in tables {
        assert!(raw.rows_of(table, ann).await.is_empty(), "{table} after");
        assert!(!raw.rows_of(table, bob).await.is_empty(), "{table}: Bob's");
    }
    let erasure = raw.rows_of("eventsourcery_erasures", ann).await;
    assert_eq!(erasure.len(), 1);
    assert!(contains(&erasure[0], b"request 7"), "the row was read");
    assert_no_plaintext("the erasure row", &erasure[0]);
    assert!(raw.rows_of("eventsourcery_erasures", bob).await.is_empty());
    assert!(backend.vault.export(ann).await.unwrap().fields.is_empty());
    Erased {
        subject: ann,
        wrapped_key,
        ciphertexts,
    }
}
