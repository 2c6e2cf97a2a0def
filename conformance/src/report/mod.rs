//! The conformance report, three ways: JSON (the run itself, what the hash is over), JUnit
//! XML (what a vendor's CI gates on) and one HTML page (what a municipality reads).
//!
//! Why a hash: a vendor shows a municipality the page, and the municipality wants to know
//! it is the run the vendor passed, not an edited copy. The SHA-256 of the JSON file's
//! bytes is printed on the page, in the JUnit properties and to the log; anyone can hash
//! the JSON again and compare. The HTML and XML are made from the same run, so they say
//! nothing the JSON does not.
//!
//! All three are written by hand, without a template engine or an XML writer: the shapes
//! are small and fixed, and the escaping (the one thing that must be right) is in
//! [`escape`], tested on its own.

mod html;
mod junit;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::scenario::run::Run;

pub use self::html::html;
pub use self::junit::junit;

/// What went wrong writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or the folder could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The run could not be written as JSON (it always can; kept for honesty).
    #[error("cannot write the run as JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl ReportError {
    /// The error's stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReportError::Io { .. } => "REPORT_IO",
            ReportError::Json(_) => "REPORT_JSON",
        }
    }
}

/// Where the reports went, and the hash of the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub json: PathBuf,
    pub junit: PathBuf,
    pub html: PathBuf,
    /// The SHA-256 of the JSON file's bytes, lowercase hex.
    pub sha256: String,
}

/// The run as the JSON report's bytes.
pub fn json(run: &Run) -> Result<Vec<u8>, ReportError> {
    let mut bytes = serde_json::to_vec_pretty(run).map_err(ReportError::Json)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `conformance-<vendor>.json`, `.junit.xml` and `.html` into `dir` (made if
/// missing); the HTML and the XML carry the JSON's hash.
pub fn write_reports(run: &Run, dir: &Path) -> Result<Written, ReportError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ReportError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let base = format!("conformance-{}", run.vendor);
    let json_bytes = json(run)?;
    let sha256 = sha256_hex(&json_bytes);
    let written = Written {
        json: dir.join(format!("{base}.json")),
        junit: dir.join(format!("{base}.junit.xml")),
        html: dir.join(format!("{base}.html")),
        sha256,
    };
    std::fs::write(&written.json, &json_bytes).map_err(io(&written.json))?;
    std::fs::write(&written.junit, junit(run, &written.sha256)).map_err(io(&written.junit))?;
    std::fs::write(&written.html, html(run, &written.sha256)).map_err(io(&written.html))?;
    tracing::info!(vendor = %run.vendor, sha256 = %written.sha256, passed = run.score.passed, total = run.score.total, "conformance report written");
    Ok(written)
}

/// Text for XML and HTML, in content and in attribute values: `&`, `<`, `>`, `"` and `'`
/// escaped, and the characters XML 1.0 cannot hold at all (control characters other than
/// tab, newline and carriage return; lone surrogates cannot occur in a `str`) replaced by
/// U+FFFD, so a vendor's bytes in an excerpt never make the file unreadable.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A share as a percentage with one decimal (`87.5%`).
pub(crate) fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_handles_markup_quotes_and_what_xml_cannot_hold() {
        assert_eq!(escape(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        assert_eq!(escape("ok\tå\n\u{0}\u{1b}"), "ok\tå\n\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn percent_has_one_decimal() {
        assert_eq!(percent(0.875), "87.5%");
        assert_eq!(percent(1.0), "100.0%");
    }
}
