//! Files that hold secrets or personal data: created readable by their owner only, and
//! checked (or tightened) when they already exist. Permission bits are a Unix matter: on other
//! systems these functions do nothing and report nothing.

use std::fs::Metadata;
#[cfg(feature = "sqlite")]
use std::path::Path;

/// The permission bits that let a file's group or others read, write or run it.
#[cfg(unix)]
const GROUP_OR_OTHER: u32 = 0o077;

/// The file's permission bits, if they let its group or others in.
#[cfg(unix)]
pub(crate) fn shared_mode(metadata: &Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    (mode & GROUP_OR_OTHER != 0).then_some(mode)
}

/// The file's permission bits, if they let its group or others in: never, off Unix.
#[cfg(not(unix))]
pub(crate) fn shared_mode(_metadata: &Metadata) -> Option<u32> {
    None
}

/// Makes the SQLite database at `path`, and those of its `-wal`, `-shm` and `-journal` files
/// that exist, readable and writable by their owner only.
///
/// A missing database file is created empty (SQLite takes an empty file for a new database)
/// with mode 0600, before SQLite opens it: SQLite creates its `-wal`, `-shm` and `-journal`
/// files with the mode of the database file, so they are 0600 too. An existing file that lets
/// its group or others in loses those bits (0644 becomes 0600), with a warning naming the file.
#[cfg(feature = "sqlite")]
pub(crate) fn private_database(path: &Path) -> std::io::Result<()> {
    create_private(path)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        tighten(Path::new(&file))?;
    }
    Ok(())
}

/// Creates `path` empty with mode 0600, unless it exists.
#[cfg(all(unix, feature = "sqlite"))]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Off Unix, SQLite creates the file itself.
#[cfg(all(not(unix), feature = "sqlite"))]
fn create_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Takes the group and other bits off `path`, if it exists and has any.
#[cfg(all(unix, feature = "sqlite"))]
fn tighten(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if let Some(mode) = shared_mode(&metadata) {
        let tightened = mode & !GROUP_OR_OTHER;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(tightened))?;
        tracing::warn!(
            path = %path.display(),
            was = format_args!("{mode:03o}"),
            now = format_args!("{tightened:03o}"),
            "a personal data or key store file was accessible by group or others; \
             it is now accessible by its owner only"
        );
    }
    Ok(())
}

/// Off Unix there are no permission bits to tighten.
#[cfg(all(not(unix), feature = "sqlite"))]
fn tighten(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix, feature = "sqlite"))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("eventsourcery-fs-{name}-{}", uuid::Uuid::now_v7()))
    }

    #[test]
    fn a_missing_database_is_created_for_its_owner_only() {
        let path = temp("new");
        private_database(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(0));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn wider_modes_are_tightened_and_narrower_ones_kept() {
        let path = temp("wide");
        let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
        std::fs::write(&path, b"").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&wal, b"").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        private_database(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((mode(&path), mode(&wal)), (0o600, 0o600));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
            .unwrap_or_else(|e| panic!("{e}"));
        private_database(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mode(&path), 0o400);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&wal);
    }

    #[test]
    fn shared_mode_reports_group_and_other_bits() {
        let path = temp("shared");
        std::fs::write(&path, b"").unwrap_or_else(|e| panic!("{e}"));
        for (bits, shared) in [(0o600, false), (0o400, false), (0o640, true), (0o602, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits))
                .unwrap_or_else(|e| panic!("{e}"));
            let metadata = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(shared_mode(&metadata).is_some(), shared, "{bits:o}");
        }
        let _ = std::fs::remove_file(&path);
    }
}
