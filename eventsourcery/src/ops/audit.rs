//! `audit`: the audit log of decrypted reads, as the personal data store keeps it.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::events::millis;
use super::{OpsError, Report};
use crate::config::Stores;

/// Up to `limit` entries after sequence `after`: who read which subjects' fields, where, when
/// and why. An entry holds no personal value, so neither does this listing.
pub(super) async fn list(stores: &Stores, after: u64, limit: usize) -> Result<Report, OpsError> {
    let records = stores.vault.audit_log(after, limit).await?;
    let mut text = String::new();
    let entries: Vec<Value> = records
        .iter()
        .map(|r| {
            let e = &r.entry;
            let subjects: Vec<String> = e.subjects.iter().map(ToString::to_string).collect();
            let positions: Vec<String> = e.positions.iter().map(ToString::to_string).collect();
            let place = e
                .stream
                .as_deref()
                .map_or("the global log".to_owned(), |s| format!("stream {s}"));
            let _ = writeln!(
                text,
                "#{} {} {} by {} in {place}: positions {}; subjects {}; fields {}; reason: {}",
                r.sequence,
                utc(e.at),
                e.action,
                e.actor,
                positions.join(", "),
                subjects.join(", "),
                e.fields.join(", "),
                e.reason,
            );
            json!({
                "sequence": r.sequence,
                "at_ms": millis(e.at),
                "at": utc(e.at),
                "actor": e.actor,
                "action": e.action,
                "reason": e.reason,
                "stream": e.stream,
                "positions": e.positions,
                "subjects": subjects,
                "fields": e.fields,
            })
        })
        .collect();
    if entries.is_empty() {
        let _ = write!(text, "no audit entries after sequence {after}");
    }
    Ok(Report::ok(json!({ "entries": entries }), text))
}

/// `time` as an RFC 3339 UTC timestamp, to the second (`1970-01-01T00:00:00Z` before the
/// epoch).
pub(super) fn utc(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), from 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(utc(leap), "2000-02-29T01:01:01Z");
        let late = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(utc(late), "2099-12-31T23:59:59Z");
    }
}
