//! Files that hold keys or personal data are for their owner only: the SQLite key and personal
//! data stores are created with mode 0600 (their `-wal` and `-shm` files too), a wider mode
//! found is tightened with a warning, and a master key file that its group or others may
//! access is refused with an error that says how to fix it. Permission bits are Unix's.
#![cfg(all(unix, feature = "sqlite"))]

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eventsourcery::backend::{SqliteKeyStore, SqlitePersonalStore};
use eventsourcery::personal::MasterKey;
use eventsourcery::personal::PersonalError;
use eventsourcery::{PersonalKey, PersonalVault};

const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut file = path.as_os_str().to_owned();
    file.push(suffix);
    PathBuf::from(file)
}

/// Opens both stores at fresh paths and writes to each (an erasure), so that every file
/// SQLite keeps for them exists.
async fn open_and_write(keys: &Path, data: &Path) -> (SqliteKeyStore, SqlitePersonalStore) {
    let key_store = SqliteKeyStore::open(keys).await.unwrap();
    let data_store = SqlitePersonalStore::open(data).await.unwrap();
    let vault = PersonalVault::new(
        key_store.clone(),
        data_store.clone(),
        MasterKey::generate().unwrap(),
    );
    vault
        .erase(PersonalKey::issue(), "file mode test")
        .await
        .unwrap();
    (key_store, data_store)
}

#[tokio::test]
async fn key_and_personal_data_files_are_created_for_their_owner_only() {
    let keys = support::sqlite_file("modes-keys");
    let data = support::sqlite_file("modes-personal");
    let (key_store, data_store) = open_and_write(&keys, &data).await;
    for path in [&keys, &data] {
        for suffix in ["", "-wal", "-shm"] {
            let file = with_suffix(path, suffix);
            assert!(file.exists(), "{} was not created", file.display());
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    key_store.pool().close().await;
    data_store.pool().close().await;
    support::remove_sqlite(&keys);
    support::remove_sqlite(&data);
}

/// The lines the `tracing` events of the current thread print, for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn wider_modes_found_are_tightened_with_a_warning() {
    let keys = support::sqlite_file("wide-keys");
    let data = support::sqlite_file("wide-personal");
    let (key_store, data_store) = open_and_write(&keys, &data).await;
    // Left open, so that the -wal and -shm files stay, and widened behind the stores' back.
    for path in [&keys, &data] {
        for suffix in ["", "-wal", "-shm"] {
            chmod(&with_suffix(path, suffix), 0o644);
        }
    }

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let (again_keys, again_data) = open_and_write(&keys, &data).await;
    drop(guard);

    for path in [&keys, &data] {
        for suffix in ["", "-wal", "-shm"] {
            let file = with_suffix(path, suffix);
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for path in [&keys, &data] {
        assert!(log.contains(&path.display().to_string()), "{log}");
    }
    assert!(log.contains("WARN") && log.contains("owner only"), "{log}");
    assert!(log.contains("was=644") && log.contains("now=600"), "{log}");

    for store in [key_store.pool(), again_keys.pool()] {
        store.close().await;
    }
    for store in [data_store.pool(), again_data.pool()] {
        store.close().await;
    }
    support::remove_sqlite(&keys);
    support::remove_sqlite(&data);
}

fn key_file(name: &str, mode: u32) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("eventsourcery-{name}-{}.key", uuid::Uuid::now_v7()));
    std::fs::write(&path, HEX).unwrap();
    chmod(&path, mode);
    path
}

#[test]
fn a_master_key_file_accessible_by_group_or_others_is_refused() {
    for bits in [0o644, 0o640, 0o604, 0o660, 0o602, 0o620, 0o610] {
        let path = key_file("shared-master", bits);
        for result in [
            MasterKey::from_file(&path),
            MasterKey::load_or_generate(&path),
        ] {
            let error = result.err();
            assert!(
                matches!(&error, Some(PersonalError::MasterKeyFileMode { path: p, mode })
                    if *p == path && *mode == bits),
                "{bits:o}: {error:?}"
            );
            let text = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert!(text.contains(&format!("{bits:o}")), "{text}");
            // Neither the key nor any part of it.
            assert!(
                !text.contains(&HEX[..8]) && !text.contains(&HEX[56..]),
                "{text}"
            );
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_master_key_file_for_its_owner_only_is_read() {
    for bits in [0o600, 0o400] {
        let path = key_file("private-master", bits);
        let from_file = MasterKey::from_file(&path).unwrap();
        let loaded = MasterKey::load_or_generate(&path).unwrap();
        assert_eq!(from_file.id(), MasterKey::from_hex(HEX).unwrap().id());
        assert_eq!(loaded.id(), from_file.id());
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_generated_master_key_file_is_for_its_owner_only_and_read_back() {
    let dir = std::env::temp_dir().join(format!("eventsourcery-gen-{}", uuid::Uuid::now_v7()));
    let path = dir.join("master.key");
    let generated = MasterKey::load_or_generate(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        MasterKey::load_or_generate(&path).unwrap().id(),
        generated.id()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
