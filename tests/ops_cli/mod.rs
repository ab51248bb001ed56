//! The ops command line as a user runs it: the `ops-demo` application (which embeds
//! `eventsourcery::ops`) run as a subprocess against stores of a test's own. The scenarios
//! here run on every backend; tests/ops.rs (SQLite) and tests/ops_postgres.rs call them.
#![allow(dead_code)]

pub mod read;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// An email the demo stores as personal data: never printed by any command but `export`.
pub const EMAIL_DOMAIN: &str = "@example.com";

/// The stores of one test, and the master key of its subprocesses.
pub struct Demo {
    /// A directory of the test's own (SQLite files, export files).
    pub dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

/// What a run printed, and how it exited.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "{self:?}");
        self
    }

    /// Asserts that no personal value was printed.
    #[track_caller]
    pub fn no_personal_values(self) -> Self {
        assert!(
            !self.stdout.contains(EMAIL_DOMAIN) && !self.stderr.contains(EMAIL_DOMAIN),
            "a personal value was printed: {self:?}"
        );
        self
    }
}

impl Demo {
    fn with(test: &str, env: Vec<(&'static str, String)>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "eventsourcery-ops-{test}-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut env = env;
        env.push(("EVENTSOURCERY_MASTER_KEY", key));
        env.push(("EVENTSOURCERY_DATA_DIR", dir.display().to_string()));
        Self { dir, env }
    }

    /// Three SQLite files in a fresh directory.
    pub fn sqlite(test: &str) -> Self {
        Self::with(test, Vec::new())
    }

    /// The three stores in the PostgreSQL database `url`.
    pub fn postgres(test: &str, url: &str) -> Self {
        Self::with(
            test,
            vec![
                ("EVENTSOURCERY_EVENTS_URL", url.to_owned()),
                ("EVENTSOURCERY_PERSONAL_URL", url.to_owned()),
                ("EVENTSOURCERY_KEYS_URL", url.to_owned()),
            ],
        )
    }

    /// Runs `ops-demo ARGS` with the test's stores and no other eventsourcery settings.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[])
    }

    /// `ops-demo ARGS` with the test's stores, `extra` variables and no other eventsourcery
    /// settings, not started yet.
    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ops-demo"));
        command.args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("EVENTSOURCERY_") {
                command.env_remove(name);
            }
        }
        command.env_remove("OPS_DEMO_FAIL");
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        command.envs(extra.iter().copied());
        command
    }

    /// Starts `ops-demo ARGS` with its stdout and stderr piped, for a command that runs on
    /// (`events tail`).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args, &[])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start ops-demo")
    }

    /// Runs `ops-demo ARGS` with `extra` variables too.
    pub fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Out {
        let output = self.command(args, extra).output().expect("run ops-demo");
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Registers `count` people; their subject keys.
    pub fn seed(&self, count: u32) -> Vec<String> {
        let out = self.run(&["seed", "--count", &count.to_string()]).code(0);
        out.stdout.lines().map(str::to_owned).collect()
    }

    /// Registers `count` people; their subject keys and the stream they are in.
    pub fn seed_stream(&self, count: u32) -> (Vec<String>, String) {
        let out = self.run(&["seed", "--count", &count.to_string()]).code(0);
        let stream = out
            .stderr
            .lines()
            .find_map(|line| line.strip_prefix("stream "))
            .unwrap_or_else(|| panic!("{out:?}"))
            .to_owned();
        (out.stdout.lines().map(str::to_owned).collect(), stream)
    }

    /// The master key the test's subprocesses get, as hex.
    pub fn master_key(&self) -> &str {
        self.env
            .iter()
            .find(|(name, _)| *name == "EVENTSOURCERY_MASTER_KEY")
            .map(|(_, key)| key.as_str())
            .unwrap_or_default()
    }

    /// Removes the test's directory.
    pub fn finish(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `status --json`: each consumer with its checkpoint and lag, healthy while under the
/// threshold, exit 1 beyond it.
pub fn status_reports_lag(demo: &Demo) {
    demo.seed(3);
    let status = demo.run(&["ops", "status", "--json"]).code(0).json();
    let head = status["head"].as_u64().unwrap();
    assert!(head >= 3, "{status}");
    let consumers = status["consumers"].as_array().unwrap();
    let names: Vec<&str> = consumers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"welcome") && names.contains(&"fragile"),
        "{status}"
    );
    for consumer in consumers {
        assert_eq!(consumer["checkpoint"], 0, "{status}");
        assert_eq!(consumer["lag"].as_u64(), Some(head), "{status}");
        assert!(consumer["parked"].is_null(), "{status}");
    }
    assert_eq!(status["healthy"], true);

    let lagging = demo
        .run(&["ops", "status", "--json", "--max-lag", "1"])
        .code(1)
        .json();
    assert_eq!(lagging["healthy"], false, "{lagging}");

    demo.run(&["run"]).code(0);
    let text = demo.run(&["ops", "status"]).code(0).no_personal_values();
    assert!(
        text.stdout
            .contains(&format!("welcome: checkpoint {head}, lag 0")),
        "{text:?}"
    );
}

/// A parked consumer: `status` shows it with its error (exit 1), `retry` unparks it,
/// `skip` passes its event.
pub fn parked_consumer_retry_and_skip(demo: &Demo) {
    demo.seed(2);
    demo.run_with(&["run"], &[("OPS_DEMO_FAIL", "1")]).code(0);
    let status = demo
        .run(&["ops", "status", "--json"])
        .code(1)
        .no_personal_values()
        .json();
    let fragile = status["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "fragile")
        .unwrap()
        .clone();
    let parked = &fragile["parked"];
    assert!(parked["position"].as_u64().unwrap() >= 1, "{status}");
    // The error is shown as stored: withheld, since the event carries personal data.
    assert!(!parked["error"].as_str().unwrap().is_empty(), "{status}");

    demo.run(&["ops", "retry", "fragile"]).code(0);
    demo.run(&["ops", "status"]).code(0);

    demo.run_with(&["run"], &[("OPS_DEMO_FAIL", "1")]).code(0);
    let skipped = demo
        .run(&["ops", "skip", "fragile", "--reason", "ticket 7", "--json"])
        .code(0)
        .json();
    assert_eq!(skipped["skipped"], parked["position"], "{skipped}");
    // Skipping a consumer that is not parked is a problem, not a usage error.
    demo.run(&["ops", "skip", "fragile", "--reason", "again"])
        .code(1);
}

/// `rebuild` off a terminal: plain progress lines on stderr, the result on stdout.
pub fn rebuild_shows_progress_lines(demo: &Demo) {
    demo.seed(4);
    let out = demo.run(&["ops", "rebuild", "welcome"]).code(0);
    let head = demo.run(&["ops", "status", "--json"]).json()["head"]
        .as_u64()
        .unwrap();
    assert!(
        out.stderr
            .contains(&format!("rebuilding welcome: {head}/{head} events")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!(
            "rebuilt welcome: {head} events, checkpoint {head}"
        )),
        "{out:?}"
    );
    let json = demo
        .run(&["ops", "rebuild", "welcome", "--json"])
        .code(0)
        .json();
    assert_eq!(json["done"].as_u64(), Some(head), "{json}");
    assert_eq!(json["checkpoint"].as_u64(), Some(head), "{json}");
}

/// `erase` by subject and by lookup; `export` to a file readable by its owner only; `verify`
/// counts the erased references as erased, not as problems.
pub fn erase_export_and_verify(demo: &Demo) {
    let subjects = demo.seed(3);
    let file = demo.dir.join("export.json");
    let file_arg = file.display().to_string();
    let out = demo
        .run(&[
            "ops",
            "export",
            "--subject",
            &subjects[0],
            "-o",
            &file_arg,
            "--json",
        ])
        .code(0)
        .no_personal_values();
    // The event's value and the command log's.
    assert_eq!(out.json()["fields"], 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let export: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(export["subject"], subjects[0].as_str());
    assert_eq!(export["erased"], false);
    let event_field = export["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == "ops_demo_registered.email")
        .unwrap_or_else(|| panic!("{export}"));
    assert_eq!(event_field["value"], "person0@example.com", "{export}");

    let erased = demo
        .run(&[
            "ops",
            "erase",
            "--subject",
            &subjects[0],
            "--reason",
            "request 1",
            "--json",
        ])
        .code(0)
        .no_personal_values()
        .json();
    assert_eq!(erased["erased"], subjects[0].as_str());
    let by_lookup = demo
        .run(&[
            "ops",
            "erase",
            "--lookup",
            "Person1@Example.com",
            "--reason",
            "request 2",
            "--json",
        ])
        .code(0)
        .no_personal_values()
        .json();
    assert_eq!(by_lookup["erased"], subjects[1].as_str());
    // Nobody holds it any more.
    demo.run(&[
        "ops",
        "erase",
        "--lookup",
        "person1@example.com",
        "--reason",
        "again",
    ])
    .code(1);

    demo.run(&["ops", "export", "--subject", &subjects[0], "-o", &file_arg])
        .code(0);
    let export: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(export["erased"], true, "{export}");
    assert_eq!(export["data"].as_array().unwrap().len(), 0, "{export}");

    let verify = demo
        .run(&["ops", "verify", "--json"])
        .code(0)
        .no_personal_values()
        .json();
    assert_eq!(verify["problem_count"], 0, "{verify}");
    assert_eq!(verify["references"], 3, "{verify}");
    assert_eq!(verify["erased"], 2, "{verify}");
    assert_eq!(verify["present"], 1, "{verify}");
}

/// Usage errors exit with 2 and do not echo what may be personal data.
pub fn usage_errors(demo: &Demo) {
    demo.seed(1);
    let out = demo.run(&["ops", "rebuild", "nobody"]).code(2);
    assert!(
        out.stderr.contains("no consumer is named `nobody`"),
        "{out:?}"
    );
    let out = demo
        .run(&["ops", "export", "--subject", "ann@example.com"])
        .code(2)
        .no_personal_values();
    assert!(out.stderr.contains("not a subject key"), "{out:?}");
    let out = demo
        .run(&["ops", "erase", "--reason", "no subject", "--json"])
        .code(2);
    assert!(out.stderr.contains("--subject"), "{out:?}");
    let out = demo
        .run(&["ops", "status", "--events-url", "mysql://x", "--json"])
        .code(2);
    assert!(
        out.json()["error"]
            .as_str()
            .unwrap()
            .contains("unsupported URL scheme")
    );
}

/// `rebuild` while another instance holds the consumer's lease: the checkpoint is reset, the
/// holder replays, and the command says so with exit 1.
pub fn rebuild_with_the_lease_elsewhere(demo: &Demo) {
    demo.seed(2);
    // A running instance holds the leases.
    demo.run(&["run", "--keep-leases"]).code(0);
    let json = demo
        .run(&["ops", "rebuild", "welcome", "--json"])
        .code(1)
        .json();
    assert_eq!(json["lease_held_elsewhere"], true, "{json}");
    assert_eq!(json["checkpoint"], 0, "{json}");
}

/// `events show`: the stream's events with personal fields as references, never values.
pub fn events_show_prints_references(demo: &Demo) {
    let (subjects, stream) = demo.seed_stream(2);
    let json = demo
        .run(&["ops", "events", "show", &stream, "--json"])
        .code(0)
        .no_personal_values()
        .json();
    let events = json["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{json}");
    assert_eq!(events[0]["event"], "ops_demo_registered");
    assert_eq!(
        events[0]["payload"]["email"]["subject"],
        subjects[0].as_str()
    );
    assert!(
        events[0]["payload"]["email"]["$personal"].is_string(),
        "{json}"
    );
    let text = demo
        .run(&["ops", "events", "show", &stream, "--after", "1"])
        .code(0)
        .no_personal_values();
    assert!(
        text.stdout.starts_with("#") && text.stdout.contains(" v2 "),
        "{text:?}"
    );
    assert!(text.stdout.contains("$personal"), "{text:?}");
    let none = demo
        .run(&["ops", "events", "show", "no-such-stream"])
        .code(0);
    assert!(none.stdout.contains("no events"), "{none:?}");
}

/// `rotate-master-key`: with a new master key and the old one as previous, every data key is
/// re-wrapped; after that the new key alone reads everything.
pub fn rotate_master_key(demo: &Demo) {
    let subjects = demo.seed(2);
    let old = demo.master_key().to_owned();
    let new = "cd".repeat(32);
    let rotation = demo
        .run_with(
            &["ops", "rotate-master-key", "--json"],
            &[
                ("EVENTSOURCERY_MASTER_KEY", &new),
                ("EVENTSOURCERY_PREVIOUS_MASTER_KEYS", &old),
            ],
        )
        .code(0)
        .json();
    assert!(rotation["rewrapped"].as_u64().unwrap() >= 2, "{rotation}");
    assert_eq!(rotation["complete"], true, "{rotation}");
    let again = demo
        .run_with(
            &["ops", "rotate-master-key", "--json"],
            &[
                ("EVENTSOURCERY_MASTER_KEY", &new),
                ("EVENTSOURCERY_PREVIOUS_MASTER_KEYS", &old),
            ],
        )
        .code(0)
        .json();
    assert_eq!(again["rewrapped"], 0, "{again}");
    let verify = demo
        .run_with(
            &["ops", "verify", "--json"],
            &[("EVENTSOURCERY_MASTER_KEY", &new)],
        )
        .code(0)
        .json();
    assert_eq!(verify["present"], 2, "{verify}");
    let file = demo.dir.join("rotated.json");
    demo.run_with(
        &[
            "ops",
            "export",
            "--subject",
            &subjects[1],
            "-o",
            file.to_str().unwrap(),
        ],
        &[("EVENTSOURCERY_MASTER_KEY", &new)],
    )
    .code(0);
    let export = std::fs::read_to_string(&file).unwrap();
    assert!(export.contains("person1@example.com"), "{export}");
}
