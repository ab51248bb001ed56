//! `erase` and `export`: a data subject's rights, through the vault.

use std::io::Write as _;
use std::path::Path;

use serde_json::json;

use super::{Context, OpsError, Report, subject};
use crate::config::Stores;
use crate::personal::PersonalKey;

pub(super) async fn erase(
    context: &Context,
    subject_flag: Option<&str>,
    lookup: Option<&str>,
    reason: &str,
) -> Result<Report, OpsError> {
    let subject: PersonalKey = match (subject_flag, lookup) {
        (Some(value), _) => subject(value)?,
        (None, Some(value)) => {
            let lookup = context.lookup.as_ref().ok_or(OpsError::NoLookup)?;
            let found = lookup(&context.stores.vault, value).await?;
            match found.as_slice() {
                [one] => *one,
                _ => return Err(OpsError::LookupNotUnique { found: found.len() }),
            }
        }
        // clap requires one of the two.
        (None, None) => return Err(OpsError::InvalidSubject),
    };
    context.bus.erase(subject, reason).await?;
    Ok(Report::ok(
        json!({ "erased": subject.to_string(), "reason": reason }),
        format!("erased subject {subject}"),
    ))
}

pub(super) async fn export(
    context: &Context,
    subject_flag: &str,
    output: Option<&Path>,
) -> Result<Report, OpsError> {
    let subject = subject(subject_flag)?;
    let export = context.stores.vault.export(subject).await?;
    let document = export.to_json();
    let fields = export.fields.len();
    let summary = json!({
        "subject": subject.to_string(),
        "erased": export.erased,
        "fields": fields,
    });
    match output {
        Some(path) => {
            write_private(path, &document.to_string()).map_err(|source| OpsError::Output {
                path: path.to_owned(),
                source,
            })?;
            let mut json = summary;
            json["file"] = json!(path.display().to_string());
            Ok(Report::ok(
                json,
                format!(
                    "exported {fields} personal values of subject {subject} to {}",
                    path.display()
                ),
            ))
        }
        // Asked for on stdout: the export itself is the result, in both output modes.
        None => Ok(Report::ok(document.clone(), document.to_string())),
    }
}

pub(super) async fn rotate_master_key(stores: &Stores) -> Result<Report, OpsError> {
    let rotation = stores.vault.rotate_master_key().await?;
    let failed: Vec<String> = rotation
        .failed
        .iter()
        .map(|f| format!("{} (under master key {})", f.subject, f.master_key_id))
        .collect();
    let mut text = format!(
        "re-wrapped {} data keys under the current master key; {} already were; {} failed",
        rotation.rewrapped,
        rotation.already_current,
        failed.len()
    );
    for failure in &failed {
        text.push_str("\nnot opened by any configured master key: ");
        text.push_str(failure);
    }
    Ok(Report {
        json: json!({
            "rewrapped": rotation.rewrapped,
            "already_current": rotation.already_current,
            "failed": rotation.failed.iter().map(|f| json!({
                "subject": f.subject.to_string(),
                "master_key_id": f.master_key_id,
            })).collect::<Vec<_>>(),
            "complete": rotation.is_complete(),
        }),
        text,
        problems: !rotation.is_complete(),
    })
}

/// Writes `text` to `path`, readable by its owner only (mode 0600, also when the file
/// existed with a wider mode).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
