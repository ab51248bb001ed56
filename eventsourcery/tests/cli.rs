//! The standalone `eventsourcery` binary, run as a subprocess against SQLite files in a
//! directory of each test's own. The commands that need an application's consumers are
//! tested through an application embedding them, in the workspace's tests/ops.rs.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "eventsourcery-cli-{test}-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eventsourcery"));
        for (name, _) in std::env::vars() {
            if name.starts_with("EVENTSOURCERY_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("EVENTSOURCERY_MASTER_KEY", "ab".repeat(32))
            .arg("--data-dir")
            .arg(&self.0)
            .output()
            .unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"))
}

#[test]
fn migrate_then_verify_an_empty_log() {
    let dir = Dir::new("migrate");
    let migrate = dir.run(&["migrate", "--json"]);
    assert_eq!(migrate.status.code(), Some(0), "{migrate:?}");
    assert_eq!(stdout_json(&migrate)["events_backend"], "sqlite");
    for file in ["events.db", "keys.db", "personal.db"] {
        assert!(dir.0.join(file).exists(), "{file}");
    }
    let verify = dir.run(&["verify", "--json"]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    let json = stdout_json(&verify);
    assert_eq!(json["events"], 0);
    assert_eq!(json["problem_count"], 0);
}

#[test]
fn erase_a_subject_then_export_it_to_a_private_file() {
    let dir = Dir::new("erase");
    let subject = uuid::Uuid::new_v4().to_string();
    let erase = dir.run(&["erase", "--subject", &subject, "--reason", "ticket 9"]);
    assert_eq!(erase.status.code(), Some(0), "{erase:?}");
    let file = dir.0.join("export.json");
    let export = dir.run(&[
        "export",
        "--subject",
        &subject,
        "-o",
        file.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(export.status.code(), Some(0), "{export:?}");
    assert_eq!(stdout_json(&export)["erased"], true);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["subject"], subject.as_str());
    assert_eq!(written["erased"], true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    // The fact of the erasure is in the log, and the log verifies.
    let verify = dir.run(&["verify", "--json"]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    assert_eq!(stdout_json(&verify)["events"], 1);
}

#[test]
fn what_needs_an_application_exits_with_2() {
    let dir = Dir::new("usage");
    for args in [
        &["status"][..],
        &["rebuild", "projection"],
        &["retry", "listener"],
        &["skip", "listener", "--reason", "r"],
    ] {
        let out = dir.run(args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("needs the application's consumers"),
            "{stderr}"
        );
    }
    let out = dir.run(&["erase", "--lookup", "ann@example.com", "--reason", "r"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("takes `--subject` only"), "{printed}");
    assert!(!printed.contains("ann@example.com"), "{printed}");
    let out = dir.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn help_lists_every_command() {
    let dir = Dir::new("help");
    let out = dir.run(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "status",
        "rebuild",
        "skip",
        "retry",
        "erase",
        "export",
        "migrate",
        "rotate-master-key",
        "events",
        "verify",
        "audit",
    ] {
        assert!(help.contains(command), "{command}: {help}");
    }
}

#[test]
fn a_first_run_without_a_master_key_says_it_generates_one() {
    let dir = Dir::new("generated-key");
    let migrate = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eventsourcery"));
        for (name, _) in std::env::vars() {
            if name.starts_with("EVENTSOURCERY_") {
                command.env_remove(name);
            }
        }
        let out = command
            .env("EVENTSOURCERY_DATA_DIR", &dir.0)
            .arg("migrate")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = migrate();
    assert!(first.contains("no master key is configured"), "{first}");
    assert!(dir.0.join("master.key").exists());
    // The second run uses the file the first made, and says nothing.
    let second = migrate();
    assert!(!second.contains("no master key"), "{second}");
}

#[test]
fn tail_from_a_position_prints_the_log_then_stops_at_the_limit() {
    let dir = Dir::new("tail");
    let subject = uuid::Uuid::new_v4().to_string();
    dir.run(&["erase", "--subject", &subject, "--reason", "ticket 3"]);
    let out = dir.run(&["events", "tail", "--from", "1", "--limit", "1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let event = stdout_json(&out);
    assert_eq!(event["position"], 1, "{event}");
    assert!(event["stream"].is_string(), "{event}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("following the log after position 0"),
        "{stderr}"
    );
    // No decrypted read happened, so nothing is in the audit log.
    let audit = dir.run(&["audit"]);
    assert_eq!(audit.status.code(), Some(0), "{audit:?}");
    assert!(String::from_utf8_lossy(&audit.stdout).contains("no audit entries"));
}

#[test]
fn decrypt_without_a_configured_master_key_exits_with_2_and_generates_none() {
    let dir = Dir::new("decrypt-no-key");
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventsourcery"));
    for (name, _) in std::env::vars() {
        if name.starts_with("EVENTSOURCERY_") {
            command.env_remove(name);
        }
    }
    let out = command
        .env("EVENTSOURCERY_DATA_DIR", &dir.0)
        .args(["events", "show", "voucher-1", "--decrypt"])
        .args(["--actor", "alice", "--reason", "ticket 4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--decrypt needs the master key"),
        "{stderr}"
    );
    assert!(!dir.0.join("master.key").exists());
}
