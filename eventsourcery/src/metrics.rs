//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: the library records, the
//! application chooses the exporter (none is forced on it; with none installed, recording
//! costs next to nothing).
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `eventsourcery_commands_total` | counter | `command`, `outcome` | commands executed; `outcome` is `ok` or the [`ErrorKind`](crate::command::ErrorKind) in snake case (`rejected`, `conflict`, `invalid`, `subject_erased`, `unavailable`, `misconfigured`) |
//! | `eventsourcery_command_duration_seconds` | histogram | `command` | the time of one execution, retries included |
//! | `eventsourcery_command_retries_total` | counter | `command` | attempts repeated after a conflict (or a stale cached state) |
//! | `eventsourcery_events_appended_total` | counter | | events committed by commands |
//! | `eventsourcery_consumer_events_total` | counter | `consumer` | events handled by a consumer |
//! | `eventsourcery_consumer_lag` | gauge | `consumer` | positions between a consumer's checkpoint and the head of the log, after each catch-up and each [`health`](crate::Dispatcher::health) |
//! | `eventsourcery_consumer_parked` | gauge | `consumer` | 1 while a consumer is parked, else 0 |
//! | `eventsourcery_erasures_total` | counter | | data subjects erased |
//!
//! Labels hold command and consumer names, which come from code, never a value of a command.
//!
//! With Prometheus, install an exporter once at start-up (here the `metrics-exporter-prometheus`
//! crate, which is not a dependency of this one):
//!
//! ```text
//! metrics_exporter_prometheus::PrometheusBuilder::new()
//!     .with_http_listener(([0, 0, 0, 0], 9000))
//!     .install()?;
//! ```

use std::time::Duration;

/// Commands executed, by `command` and `outcome`.
pub const COMMANDS: &str = "eventsourcery_commands_total";
/// The time of one execution, by `command`.
pub const COMMAND_DURATION: &str = "eventsourcery_command_duration_seconds";
/// Attempts repeated, by `command`.
pub const COMMAND_RETRIES: &str = "eventsourcery_command_retries_total";
/// Events committed by commands.
pub const EVENTS_APPENDED: &str = "eventsourcery_events_appended_total";
/// Events handled, by `consumer`.
pub const CONSUMER_EVENTS: &str = "eventsourcery_consumer_events_total";
/// A consumer's lag behind the head, by `consumer`.
pub const CONSUMER_LAG: &str = "eventsourcery_consumer_lag";
/// 1 while a consumer is parked, by `consumer`.
pub const CONSUMER_PARKED: &str = "eventsourcery_consumer_parked";
/// Data subjects erased.
pub const ERASURES: &str = "eventsourcery_erasures_total";

/// A command finished with `outcome` after `elapsed`, having appended `events`.
pub(crate) fn command(command: &'static str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(COMMANDS, "command" => command, "outcome" => outcome).increment(1);
    metrics::histogram!(COMMAND_DURATION, "command" => command).record(elapsed.as_secs_f64());
}

/// `command` is attempted again.
pub(crate) fn retry(command: &'static str) {
    metrics::counter!(COMMAND_RETRIES, "command" => command).increment(1);
}

/// A command committed `events` events.
pub(crate) fn appended(events: usize) {
    metrics::counter!(EVENTS_APPENDED).increment(events as u64);
}

/// `consumer` handled `events` events.
pub(crate) fn handled(consumer: &str, events: u64) {
    if events > 0 {
        metrics::counter!(CONSUMER_EVENTS, "consumer" => consumer.to_owned()).increment(events);
    }
}

/// Where `consumer` stands.
pub(crate) fn consumer(consumer: &str, lag: u64, parked: bool) {
    metrics::gauge!(CONSUMER_LAG, "consumer" => consumer.to_owned()).set(lag as f64);
    metrics::gauge!(CONSUMER_PARKED, "consumer" => consumer.to_owned()).set(if parked {
        1.0
    } else {
        0.0
    });
}

/// A subject was erased.
pub(crate) fn erased() {
    metrics::counter!(ERASURES).increment(1);
}
