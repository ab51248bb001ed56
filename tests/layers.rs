//! The runtime crate's layers: each top-level module of `eventsourcery/src` may use only the
//! modules below it (see "Architecture" in the crate docs). Reads every `crate::...` path of
//! each module's files (comments left out) and fails on one that points up, or at a module no
//! layer names, so that an import circle cannot come back unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules, bottom first. A module may use those before it in this list.
const LAYERS: &[&[&str]] = &[
    // Shared types and helpers.
    &["error", "sync", "batch", "fs", "metrics", "redact"],
    // Values and ids.
    &["value"],
    // Personal data types, crypto, their errors.
    &["personal"],
    // Payload encoding with personal fields.
    &["codec"],
    // Events and aggregates.
    &["event", "aggregate"],
    // The storage traits and records; the span conventions, which name their records.
    &["store", "telemetry"],
    // The backends and their connection policy.
    &["tls", "backend"],
    // The personal data vault.
    &["vault"],
    // The engine: cache, unit of work; the fact of an erasure.
    &["cache", "engine", "erasure"],
    // Repositories and the extractors.
    &["repository", "service"],
    // Commands and their handlers.
    &["command"],
    // The command bus (it offers a commit hook and knows nothing of dispatch).
    &["bus"],
    // Dispatch to listeners, process managers and projections.
    &["dispatch"],
    // Adapters to other systems: command errors as HTTP responses (feature `axum`), the
    // JetStream publisher, a built-in consumer (feature `nats`).
    &["http", "publish"],
];

/// Facades, which may use any layer: the crate root, generated code's support, the
/// configuration, the testkit and the ops command line.
const FACADES: &[&str] = &["lib", "private", "config", "testkit", "docs", "ops"];

fn rank() -> BTreeMap<&'static str, (usize, usize)> {
    let mut rank = BTreeMap::new();
    for (layer, modules) in LAYERS.iter().enumerate() {
        for (position, module) in modules.iter().enumerate() {
            rank.insert(*module, (layer, position));
        }
    }
    rank
}

/// Every `crate::x` a file names outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                    found.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
            found.insert(name);
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("eventsourcery/src");
    let rank = rank();
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut problems = Vec::new();
    let mut edges = 0;
    for file in all {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        // `bin/` holds binaries: crates of their own that see the public API only.
        if FACADES.contains(&top.as_str()) || top == "bin" {
            continue;
        }
        let Some(&own) = rank.get(top.as_str()) else {
            problems.push(format!(
                "module `{top}` is in no layer: add it to LAYERS in tests/layers.rs"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for used in uses(&text) {
            if used == top || FACADES.contains(&used.as_str()) {
                continue;
            }
            // `crate::Name` paths are to the root's re-exports: a facade.
            let Some(&theirs) = rank.get(used.as_str()) else {
                continue;
            };
            edges += 1;
            if theirs >= own {
                problems.push(format!(
                    "{}: `{top}` uses `crate::{used}`, which is not below it",
                    relative.display()
                ));
            }
        }
    }
    assert!(edges > 30, "the scan saw the imports ({edges})");
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scan_reads_paths_groups_and_skips_comments() {
    let text = "use crate::store::Commit;\nuse crate::{codec, event::X};\n// crate::bus\n/// crate::dispatch\nlet a = crate::vault::f();";
    let found: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(found, ["codec", "event", "store", "vault"]);
}
