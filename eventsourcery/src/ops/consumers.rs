//! `status`, `rebuild`, `skip`, `retry`: the consumers of the application's dispatcher.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{OpsError, Report};
use crate::dispatch::{Dispatcher, HealthProblem, LeaseStatus, Progress};

/// Plain progress lines come at most this often.
const LINE_EVERY: Duration = Duration::from_secs(1);

fn lease(lease: LeaseStatus) -> &'static str {
    match lease {
        LeaseStatus::Unknown => "unknown",
        LeaseStatus::Held => "held",
        LeaseStatus::HeldElsewhere => "held elsewhere",
        LeaseStatus::Lost => "lost",
        #[allow(unreachable_patterns)]
        _ => "unknown",
    }
}

fn problem(problem: &HealthProblem) -> String {
    match problem {
        HealthProblem::StoreUnreachable { error } => format!("the store is unreachable: {error}"),
        HealthProblem::Lagging { consumer, lag } => format!("`{consumer}` lags {lag} events"),
        HealthProblem::Parked { consumer, position } => {
            format!("`{consumer}` is parked at position {position}")
        }
        HealthProblem::LeaseLost { consumer } => format!("`{consumer}` lost its lease"),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

fn parked_json(parked: Option<&crate::dispatch::Parked>) -> Value {
    parked.map_or(Value::Null, |p| {
        json!({
            "position": p.position,
            "error": p.error,
            "parked_at": p.parked_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        })
    })
}

pub(super) async fn status(dispatcher: &Dispatcher, max_lag: u64) -> Result<Report, OpsError> {
    let health = dispatcher.health(max_lag).await;
    let mut text = String::new();
    if let Some(head) = health.head {
        let _ = writeln!(text, "head: {head}");
    }
    let consumers: Vec<Value> = health
        .consumers
        .iter()
        .map(|c| {
            let _ = write!(text, "{}: checkpoint {}, lag {}", c.name, c.position, c.lag);
            // A command line takes no lease: only say what this process saw, if anything.
            if c.lease != LeaseStatus::Unknown {
                let _ = write!(text, ", lease {}", lease(c.lease));
            }
            if let Some(parked) = &c.parked {
                let _ = write!(text, ", PARKED at {}: {}", parked.position, parked.error);
            }
            text.push('\n');
            let partitions: Vec<Value> = c
                .partitions
                .iter()
                .map(|p| {
                    let _ = write!(
                        text,
                        "  partition {}: checkpoint {}, lag {}",
                        p.partition, p.position, p.lag
                    );
                    if let Some(parked) = &p.parked {
                        let _ = write!(text, ", PARKED at {}: {}", parked.position, parked.error);
                    }
                    text.push('\n');
                    json!({
                        "partition": p.partition.index(),
                        "of": p.partition.count(),
                        "checkpoint": p.position,
                        "lag": p.lag,
                        "parked": parked_json(p.parked.as_ref()),
                    })
                })
                .collect();
            json!({
                "name": c.name,
                "checkpoint": c.position,
                "lag": c.lag,
                "lease": lease(c.lease),
                "parked": parked_json(c.parked.as_ref()),
                "partitions": partitions,
            })
        })
        .collect();
    let problems: Vec<String> = health.problems.iter().map(problem).collect();
    for p in &problems {
        let _ = writeln!(text, "problem: {p}");
    }
    Ok(Report {
        json: json!({
            "head": health.head,
            "healthy": health.is_healthy(),
            "consumers": consumers,
            "problems": problems,
        }),
        text,
        problems: !health.is_healthy(),
    })
}

/// Shows rebuild progress: a bar on a terminal, a plain line a second otherwise.
enum Meter {
    Bar(indicatif::ProgressBar),
    Lines { last: Option<Instant> },
}

impl Meter {
    fn new(json: bool) -> Self {
        if !json && std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            Self::Bar(bar)
        } else {
            Self::Lines { last: None }
        }
    }

    fn show(&mut self, name: &str, progress: Progress, last: bool) {
        match self {
            Self::Bar(bar) => {
                bar.set_message(format!("rebuilding {name}"));
                bar.set_length(progress.total);
                bar.set_position(progress.done);
                if last {
                    bar.finish();
                }
            }
            Self::Lines { last: shown } => {
                if last || shown.is_none_or(|at| at.elapsed() >= LINE_EVERY) {
                    eprintln!("{}", line(name, progress));
                    *shown = Some(Instant::now());
                }
            }
        }
    }
}

/// A plain progress line: done / total, rate and the time left.
fn line(name: &str, p: Progress) -> String {
    let left = p.total.saturating_sub(p.done);
    let eta = if p.rate > 0.0 {
        format!("{:.0}s", left as f64 / p.rate)
    } else {
        "?".to_owned()
    };
    format!(
        "rebuilding {name}: {}/{} events, {:.0}/s, eta {eta}",
        p.done, p.total, p.rate
    )
}

pub(super) async fn rebuild(
    dispatcher: &Dispatcher,
    name: &str,
    json: bool,
) -> Result<Report, OpsError> {
    let mut meter = Meter::new(json);
    let progress = dispatcher
        .rebuild(name, |progress| meter.show(name, progress, false))
        .await?;
    meter.show(name, progress, true);
    let state = dispatcher.state(name).await?;
    let parked = state.parked.map(|p| (p.position, p.error));
    // Another running instance holds the lease: the checkpoint was reset, and that instance
    // replays the log, not this one.
    let elsewhere = dispatcher
        .health(u64::MAX)
        .await
        .consumers
        .iter()
        .any(|c| c.name == name && c.lease == LeaseStatus::HeldElsewhere);
    if !elsewhere {
        // This process is about to exit: let the application's instances take over at once.
        dispatcher.release(name).await?;
    }
    let mut text = format!(
        "rebuilt {name}: {} events, checkpoint {}",
        progress.done, state.position
    );
    if let Some((position, error)) = &parked {
        let _ = write!(text, "; PARKED at {position}: {error}");
    }
    if elsewhere {
        text = format!(
            "reset {name} to the start of the log, but another instance holds its lease: that \
             instance replays it (checkpoint now {})",
            state.position
        );
    }
    Ok(Report {
        json: json!({
            "consumer": name,
            "done": progress.done,
            "total": progress.total,
            "checkpoint": state.position,
            "parked": parked.as_ref().map(|(position, error)| json!({"position": position, "error": error})),
            "lease_held_elsewhere": elsewhere,
        }),
        text,
        problems: parked.is_some() || elsewhere,
    })
}

pub(super) async fn skip(
    dispatcher: &Dispatcher,
    name: &str,
    reason: &str,
) -> Result<Report, OpsError> {
    let position = dispatcher.skip_parked(name, reason).await?;
    Ok(Report::ok(
        json!({ "consumer": name, "skipped": position }),
        format!("{name}: skipped the event at position {position}"),
    ))
}

pub(super) async fn retry(dispatcher: &Dispatcher, name: &str) -> Result<Report, OpsError> {
    dispatcher.unpark(name).await?;
    Ok(Report::ok(
        json!({ "consumer": name, "unparked": true }),
        format!("{name}: unparked; it retries on its next run"),
    ))
}
