//! The scenarios of reading the log as an operator: `events tail` following appends,
//! `--decrypt` refused without who and why, and every decrypted read in the audit log.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Demo, EMAIL_DOMAIN};

/// How long a subprocess gets to print what a test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

/// The lines a pipe gives, read on a thread of their own.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line, within [`PATIENCE`].
#[track_caller]
fn next(lines: &Receiver<String>, what: &str) -> String {
    match lines.recv_timeout(PATIENCE) {
        Ok(line) => line,
        Err(RecvTimeoutError::Timeout) => panic!("no {what} within {PATIENCE:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("the pipe closed before {what}"),
    }
}

/// The exit code of `child`, which must end within [`PATIENCE`] (it is killed otherwise).
fn exit_code(child: &mut Child) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait for ops-demo") {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ops-demo did not stop within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `events tail` prints the events appended after it started (nothing before), each as a JSON
/// object on a line of its own, personal fields as references, and stops after `--limit`.
pub fn tail_prints_what_is_appended_after_it_started(demo: &Demo) {
    demo.seed(1);
    let mut child = demo.spawn(&["ops", "events", "tail", "--limit", "2", "--json"]);
    let stdout = lines(child.stdout.take().expect("piped stdout"));
    let stderr = lines(child.stderr.take().expect("piped stderr"));
    let started = next(&stderr, "the line saying where tail starts");
    let head: u64 = started
        .strip_prefix("following the log after position ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{started}"));
    assert!(head >= 1, "{started}");

    let subjects = demo.seed(2);
    let printed: Vec<Value> = (0..2)
        .map(|n| {
            let line = next(&stdout, &format!("event {n}"));
            assert!(!line.contains(EMAIL_DOMAIN), "a personal value: {line}");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect();
    assert_eq!(exit_code(&mut child), 0);
    for (n, event) in printed.iter().enumerate() {
        assert_eq!(
            event["position"].as_u64(),
            Some(head + 1 + n as u64),
            "{event}"
        );
        assert_eq!(event["event"], "ops_demo_registered", "{event}");
        assert!(
            event["stream"].as_str().is_some_and(|s| !s.is_empty()),
            "{event}"
        );
        let email = &event["payload"]["email"];
        assert_eq!(email["subject"], subjects[n].as_str(), "{event}");
        assert!(email["$personal"].is_string(), "{event}");
        assert!(email.get("value").is_none(), "{event}");
    }
    // Nothing after the limit.
    assert!(stdout.recv_timeout(Duration::from_secs(1)).is_err());

    // From a position, in text: the first event of the log, with its stream.
    let out = demo
        .run(&["ops", "events", "tail", "--from", "1", "--limit", "1"])
        .code(0)
        .no_personal_values();
    let first = out.stdout.lines().collect::<Vec<_>>();
    assert_eq!(first.len(), 1, "{out:?}");
    assert!(first[0].starts_with("#1 "), "{out:?}");
    assert!(first[0].contains("ops_demo_registered"), "{out:?}");
    assert!(first[0].contains("$personal"), "{out:?}");
}

/// `--decrypt` without an actor or a reason is a usage error (exit 2), refused before anything
/// is read: nothing personal printed, nothing recorded.
pub fn decrypt_needs_an_actor_and_a_reason(demo: &Demo) {
    let (_, stream) = demo.seed_stream(1);
    let show = ["ops", "events", "show", stream.as_str(), "--decrypt"];
    let out = demo
        .run(&[&show[..], &["--reason", "ticket 1"]].concat())
        .code(2)
        .no_personal_values();
    assert!(out.stderr.contains("--actor"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = demo
        .run(&[&show[..], &["--reason", "ticket 1", "--json"]].concat())
        .code(2)
        .no_personal_values();
    assert!(
        out.json()["error"].as_str().unwrap().contains("--actor"),
        "{out:?}"
    );
    let out = demo
        .run_with(&show, &[("EVENTSOURCERY_ACTOR", "alice")])
        .code(2)
        .no_personal_values();
    assert!(out.stderr.contains("--reason"), "{out:?}");
    let out = demo
        .run(&[
            "ops",
            "events",
            "tail",
            "--from",
            "1",
            "--limit",
            "1",
            "--decrypt",
            "--reason",
            "r",
        ])
        .code(2)
        .no_personal_values();
    assert!(out.stderr.contains("--actor"), "{out:?}");
    // `--actor` means nothing without `--decrypt`: clap refuses it.
    demo.run(&["ops", "events", "show", &stream, "--actor", "alice"])
        .code(2);
    let audit = demo.run(&["ops", "audit", "--json"]).code(0).json();
    assert_eq!(audit["entries"], serde_json::json!([]), "{audit}");
}

/// `--decrypt` prints the values (erased ones as erased), and records who read which
/// subjects' fields, where and why, in the audit log that `audit` lists: without a value.
pub fn decrypt_is_recorded_in_the_audit_log(demo: &Demo) {
    let (subjects, stream) = demo.seed_stream(2);
    demo.run(&[
        "ops",
        "erase",
        "--subject",
        &subjects[1],
        "--reason",
        "req 1",
    ])
    .code(0);
    let shown = demo
        .run(&[
            "ops",
            "events",
            "show",
            &stream,
            "--decrypt",
            "--actor",
            "alice",
            "--reason",
            "ticket 42",
            "--json",
        ])
        .code(0)
        .json();
    let events = shown["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{shown}");
    assert_eq!(
        events[0]["payload"]["email"]["value"], "person0@example.com",
        "{shown}"
    );
    assert_eq!(events[1]["payload"]["email"]["erased"], true, "{shown}");
    assert!(
        events[1]["payload"]["email"].get("value").is_none(),
        "{shown}"
    );
    let sequence = shown["audit_sequence"].as_u64().unwrap();

    let audit = demo
        .run(&["ops", "audit", "--json"])
        .code(0)
        .no_personal_values()
        .json();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    let entry = &entries[0];
    assert_eq!(entry["sequence"].as_u64(), Some(sequence), "{audit}");
    assert_eq!(entry["actor"], "alice");
    assert_eq!(entry["action"], "decrypt");
    assert_eq!(entry["reason"], "ticket 42");
    assert_eq!(entry["stream"], stream.as_str());
    let positions: Vec<&Value> = events.iter().map(|e| &e["position"]).collect();
    assert_eq!(
        entry["positions"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        positions
    );
    let mut expected = subjects.clone();
    expected.sort();
    assert_eq!(entry["subjects"], serde_json::json!(expected), "{audit}");
    assert_eq!(
        entry["fields"],
        serde_json::json!(["ops_demo_registered.email"])
    );

    // The actor from the environment; a read of the global log names no stream.
    let out = demo
        .run_with(
            &[
                "ops",
                "events",
                "tail",
                "--from",
                "1",
                "--limit",
                "1",
                "--decrypt",
                "--reason",
                "ticket 43",
                "--json",
            ],
            &[("EVENTSOURCERY_ACTOR", "bob")],
        )
        .code(0);
    let tailed: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        tailed["payload"]["email"]["value"], "person0@example.com",
        "{out:?}"
    );
    let after = demo
        .run(&["ops", "audit", "--after", &sequence.to_string(), "--json"])
        .code(0)
        .json();
    let entries = after["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{after}");
    assert_eq!(entries[0]["actor"], "bob");
    assert_eq!(entries[0]["stream"], Value::Null);
    assert_eq!(entries[0]["positions"], serde_json::json!([1]));
    assert_eq!(entries[0]["subjects"], serde_json::json!([subjects[0]]));

    let text = demo.run(&["ops", "audit"]).code(0).no_personal_values();
    assert!(
        text.stdout
            .contains(&format!("decrypt by alice in stream {stream}: positions ")),
        "{text:?}"
    );
    assert!(
        text.stdout
            .contains("decrypt by bob in the global log: positions 1;"),
        "{text:?}"
    );
    assert!(text.stdout.contains("reason: ticket 43"), "{text:?}");
}
