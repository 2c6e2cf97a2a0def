//! `carehub tags import`: load tag registrations from a CSV file; bad rows are reported
//! with their line and skipped.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use carehub_model::Clock;

use crate::config::Config;

pub(super) async fn import(config: Config, file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let cp1252 = carehub_core::mapping::text::encoding("windows-1252").context("windows-1252")?;
    let text =
        carehub_core::mapping::text::decode(&bytes, cp1252).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let header = text.lines().next().unwrap_or("");
    let delimiter = if header.contains(';') { b';' } else { b',' };
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(text.as_bytes());
    let columns: Vec<String> = reader.headers()?.iter().map(|h| h.trim().to_lowercase()).collect();
    let find = |names: &[&str]| columns.iter().position(|c| names.contains(&c.as_str()));
    let (Some(tag), Some(client), Some(from)) =
        (find(&["tag_uid", "taggid"]), find(&["client", "personnummer"]), find(&["installed_on", "monterad"]))
    else {
        eprintln!(
            "{}: the header needs tag_uid, client and installed_on (or taggid, personnummer, monterad)",
            file.display()
        );
        return Ok(ExitCode::from(2));
    };
    let to = find(&["removed_on", "nedtagen"]);
    let runtime = crate::assemble::build(&config, Clock::system())?;
    let hub = runtime.state.hub.clone();
    let (mut taken, mut refused) = (0, 0);
    for record in reader.records() {
        let record = record?;
        // The line from the byte offset: the csv crate's own line count is off with CRLF.
        // (with CRLF its offset can sit on the previous line's end: skip line-ending bytes).
        let bytes = text.as_bytes();
        let mut at = record.position().map(|p| p.byte() as usize).unwrap_or(0).min(bytes.len());
        while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        let cell = |i: usize| record.get(i).map(str::trim).filter(|v| !v.is_empty());
        let mut row = serde_json::Map::new();
        for (key, index) in
            [("tag_uid", Some(tag)), ("client", Some(client)), ("installed_on", Some(from)), ("removed_on", to)]
        {
            if let Some(v) = index.and_then(cell) {
                row.insert(key.into(), serde_json::Value::String(v.to_owned()));
            }
        }
        let value = serde_json::Value::Object(row);
        let parsed = serde_json::from_value::<carehub_model::TagRegistration>(value.clone())
            .map_err(|e| carehub_model::ValidationError::from_message(&e.to_string()));
        match hub
            .register_tag("import", value.to_string().into_bytes(), parsed, &carehub_core::hub::Sender::Trusted)
            .await
        {
            Ok(_) => taken += 1,
            Err(r) => {
                refused += 1;
                crate::out!("line {line}: {}: {}", r.code, r.message);
            }
        }
    }
    crate::out!("{taken} tag registrations taken, {refused} refused ({})", file.display());
    Ok(if refused == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
