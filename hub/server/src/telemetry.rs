//! Operational telemetry: where the hub's own logs go and in what form.
//!
//! Operational logs are for operators, not auditors (the message log is the audit trail):
//! they name systems, message and delivery ids and error codes, never payloads or
//! personal identity numbers. The counters and histograms `/metrics` serves live in
//! `carehub_core::metrics`, because the flows count as they go; this module only sets up
//! the `tracing` subscriber, once per process, for every command.

use crate::config::LogFormat;

/// Sets up operational logging on stderr: `CAREHUB_LOG` filters (else `default`), and
/// `CAREHUB_LOG_FORMAT` (`text` or `json`) chooses the format (else `format`).
pub fn init_tracing(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAREHUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let format = match std::env::var("CAREHUB_LOG_FORMAT") {
        Ok(v) => v.parse().unwrap_or_else(|e| {
            eprintln!("CAREHUB_LOG_FORMAT: {e}; using {format:?}");
            format
        }),
        Err(_) => format,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        // One JSON object a line: the event's fields flattened beside its level, target and
        // timestamp, and the spans it happened in.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
}
