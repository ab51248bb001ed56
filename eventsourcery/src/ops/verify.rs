//! `verify`: read the whole log and check every event and every personal reference.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{OpsError, Report};
use crate::codec::collect_references;
use crate::config::Stores;
use crate::event::EventRegistry;
use crate::store::RecordedEvent;
use uuid::Uuid;

/// Events read per batch.
const BATCH: usize = 500;

/// What was counted, and the first problems found.
#[derive(Default)]
struct Findings {
    events: u64,
    unknown_types: u64,
    references: u64,
    present: u64,
    erased: u64,
    problem_count: u64,
    problems: Vec<Value>,
    max_problems: usize,
}

impl Findings {
    /// Notes a problem at `event` (its location only: never a payload or a value).
    fn problem(&mut self, event: Option<&RecordedEvent>, what: String) {
        self.problem_count += 1;
        if self.problems.len() < self.max_problems {
            self.problems.push(match event {
                Some(e) => json!({
                    "position": e.position,
                    "stream": e.stream_id.to_string(),
                    "event": e.event_name,
                    "problem": what,
                }),
                None => json!({ "problem": what }),
            });
        }
    }

    /// Checks one event's payload as stored, and its upcast if its type is known.
    fn check(&mut self, registry: &EventRegistry, event: &RecordedEvent) {
        self.events += 1;
        if !event.payload.is_object() {
            self.problem(Some(event), "the payload is not a JSON object".to_owned());
            return;
        }
        if registry.get(&event.event_name).is_none() {
            self.unknown_types += 1;
            return;
        }
        if let Err(error) = registry.upcast(
            &event.event_name,
            event.schema_version,
            event.payload.clone(),
        ) {
            self.problem(Some(event), error.to_string());
        }
    }
}

pub(super) async fn verify(stores: &Stores, max_problems: usize) -> Result<Report, OpsError> {
    let registry = EventRegistry::global();
    let mut findings = Findings {
        max_problems,
        ..Findings::default()
    };
    let mut after = 0;
    let mut complete = true;
    // Each personal value belongs to one event: a reference held twice was copied.
    let mut holders_of: HashMap<Uuid, u64> = HashMap::new();
    loop {
        let batch = match stores.events.read_all(after, BATCH).await {
            Ok(batch) => batch,
            Err(error) => {
                // A row that does not decode stops the read: the rest cannot be reached past it.
                findings.problem(
                    None,
                    format!("reading the log after position {after}: {error}"),
                );
                complete = false;
                break;
            }
        };
        let Some(last) = batch.last() else { break };
        after = last.position;
        let mut references = Vec::new();
        let mut holders = Vec::new();
        for event in &batch {
            findings.check(registry, event);
            let before = references.len();
            collect_references(&event.event_name, &event.payload, &mut references);
            holders.extend(std::iter::repeat_n(event, references.len() - before));
        }
        findings.references += references.len() as u64;
        let resolved = stores.vault.resolve(&references).await?;
        for (reference, event) in references.iter().zip(holders) {
            let first = *holders_of.entry(reference.id).or_insert(event.position);
            let bad_reference = |what: &str| {
                format!(
                    "field `{}`: reference {} {what}",
                    reference.field, reference.id
                )
            };
            if first != event.position {
                let what = format!("is also held by the event at position {first}");
                findings.problem(Some(event), bad_reference(&what));
            } else if let Some(error) = resolved.failed.get(&reference.id) {
                findings.problem(Some(event), format!("field `{}`: {error}", reference.field));
            } else if let Some((owner, _)) = resolved.values.get(&reference.id) {
                if *owner == reference.subject {
                    findings.present += 1;
                } else {
                    let what = bad_reference("points at another subject's value");
                    findings.problem(Some(event), what);
                }
            } else if resolved.erased.contains(&reference.id) {
                findings.erased += 1;
            } else {
                findings.problem(Some(event), bad_reference("does not resolve"));
            }
        }
        // The decrypted values are dropped (and zeroed) here, unseen.
        drop(resolved);
    }
    let f = &findings;
    let mut text = format!(
        "verified {} events ({} of types this program does not know, not upcast); {} personal references: {} present, {} erased; {} problems{}",
        f.events,
        f.unknown_types,
        f.references,
        f.present,
        f.erased,
        f.problem_count,
        if complete { "" } else { " (stopped early)" },
    );
    for problem in &f.problems {
        let _ = write!(text, "\nproblem: ");
        if let Some(position) = problem.get("position") {
            let _ = write!(
                text,
                "position {position}, stream {}, event {}: ",
                problem["stream"], problem["event"]
            );
        }
        let _ = write!(text, "{}", problem["problem"].as_str().unwrap_or_default());
    }
    Ok(Report {
        json: json!({
            "events": f.events,
            "unknown_types": f.unknown_types,
            "references": f.references,
            "present": f.present,
            "erased": f.erased,
            "problem_count": f.problem_count,
            "complete": complete,
            "problems": f.problems,
        }),
        text,
        problems: f.problem_count > 0,
    })
}
