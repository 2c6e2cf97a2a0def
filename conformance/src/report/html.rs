//! The run as one self-contained HTML page: inline CSS, no scripts, no external assets,
//! so it opens from a file, in a mail attachment, or offline at the municipality. English,
//! since vendors work across countries; the ids and codes are the same in every language.

use std::fmt::Write;

use super::{escape, percent};
use crate::exchange::Direction;
use crate::scenario::run::{CaseResult, Run};

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ccc}
h3{font-size:1.05rem;margin:0}
.meta{color:#555}.hash{font-family:ui-monospace,monospace;word-break:break-all;background:#f3f3f3;padding:.4rem .6rem;border-radius:4px}
.figures{display:flex;gap:1.5rem;flex-wrap:wrap;margin:1rem 0}
.figure{border:1px solid #ccc;border-radius:6px;padding:.8rem 1rem;min-width:14rem}
.figure b{font-size:1.8rem;display:block}
.bar{height:.5rem;background:#e5e5e5;border-radius:3px;overflow:hidden}.bar span{display:block;height:100%;background:#2e7d32}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e2e2e2;vertical-align:top}
.pass{color:#1b5e20;font-weight:600}.fail{color:#b71c1c;font-weight:600}.na{color:#616161;font-weight:600}
.neg{font-size:.8rem;background:#fff3e0;border:1px solid #ffb74d;border-radius:3px;padding:0 .3rem;margin-left:.4rem}
.case{border:1px solid #ddd;border-left:6px solid #2e7d32;border-radius:4px;padding:.8rem 1rem;margin:1rem 0}
.case.failed{border-left-color:#b71c1c}
pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font-size:.85rem}
code{font-family:ui-monospace,monospace}
";

/// The HTML page of a run; `sha256` is the JSON report's hash.
pub fn html(run: &Run, sha256: &str) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let title = format!("carehub conformance report: {}", run.vendor);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        h,
        "<p class=\"meta\">Against <code>{}</code>, started {} (the mock hub's clock), catalogue <code>{}</code>, {}.</p>",
        escape(&run.target),
        escape(&run.started_at.to_rfc3339()),
        escape(&run.catalogue),
        escape(&run.tool)
    );
    let _ = writeln!(
        h,
        "<p>SHA-256 of this run's JSON report (<code>conformance-{}.json</code>): check it with <code>sha256sum</code>.</p>\n<p class=\"hash\" id=\"sha256\">{}</p>",
        escape(&run.vendor),
        escape(sha256)
    );

    h.push_str("<div class=\"figures\">\n");
    let not_applicable = match run.score.not_applicable {
        0 => String::new(),
        n => format!(" ({n} not applicable)"),
    };
    figure(
        &mut h,
        "Score",
        run.score.share,
        &format!("{} of {} cases passed{not_applicable}", run.score.passed, run.score.total),
    );
    figure(
        &mut h,
        "Coverage",
        run.coverage.share,
        &format!(
            "{} of {} messages, {} of {} fields of the profile",
            run.coverage.messages.covered,
            run.coverage.messages.total,
            run.coverage.fields.covered,
            run.coverage.fields.total
        ),
    );
    h.push_str("</div>\n");
    if !run.coverage.uncovered_messages.is_empty() || !run.coverage.uncovered_fields.is_empty() {
        let _ = writeln!(
            h,
            "<details><summary>Not exercised by this run: {} message(s), {} field(s)</summary><p><code>{}</code></p><p><code>{}</code></p></details>",
            run.coverage.uncovered_messages.len(),
            run.coverage.uncovered_fields.len(),
            escape(&run.coverage.uncovered_messages.join(", ")),
            escape(&run.coverage.uncovered_fields.join(", "))
        );
    }

    h.push_str("<h2>Cases</h2>\n<table>\n<thead><tr><th>Case</th><th>Title</th><th>Message</th><th>Result</th></tr></thead>\n<tbody>\n");
    for c in &run.cases {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#{id}\"><code>{id}</code></a></td><td>{}{}</td><td><code>{}</code></td><td>{}</td></tr>",
            escape(&c.title),
            if c.negative { "<span class=\"neg\">negative</span>" } else { "" },
            escape(&c.message),
            result(c),
            id = escape(&c.id),
        );
    }
    h.push_str("</tbody>\n</table>\n");

    for c in &run.cases {
        case(&mut h, c);
    }
    h.push_str("</body>\n</html>\n");
    h
}

fn result(c: &CaseResult) -> &'static str {
    if c.not_applicable.is_some() {
        "<span class=\"na\">not applicable</span>"
    } else if c.passed {
        "<span class=\"pass\">passed</span>"
    } else {
        "<span class=\"fail\">failed</span>"
    }
}

fn figure(h: &mut String, name: &str, share: f64, detail: &str) {
    let width = (share.clamp(0.0, 1.0) * 100.0).round();
    let _ = writeln!(
        h,
        "<div class=\"figure\">{}<b>{}</b><div class=\"bar\"><span style=\"width:{width}%\"></span></div><small>{}</small></div>",
        escape(name),
        percent(share),
        escape(detail)
    );
}

fn case(h: &mut String, c: &CaseResult) {
    let _ = writeln!(
        h,
        "<section class=\"case{}\" id=\"{}\">\n<h3><code>{}</code> {}{}</h3>",
        if c.passed || c.not_applicable.is_some() { "" } else { " failed" },
        escape(&c.id),
        escape(&c.id),
        escape(&c.title),
        if c.negative { "<span class=\"neg\">negative</span>" } else { "" }
    );
    let _ = writeln!(h, "<p><b>Why:</b> {}<br><b>Result:</b> {} in {} ms</p>", escape(&c.why), result(c), c.millis);
    if let Some(why) = &c.not_applicable {
        let _ = writeln!(h, "<p><b>Not applicable:</b> {}</p>", escape(why));
    }
    if let Some(f) = &c.failure {
        let line = f.line.map(|l| format!(" (catalogue line {l})")).unwrap_or_default();
        let _ = writeln!(
            h,
            "<p><b>Failed at step {}{}:</b> {}<br>{}</p>",
            f.step,
            escape(&line),
            escape(&f.what),
            escape(&f.reason)
        );
        if let Some(diff) = &f.diff {
            let _ = writeln!(h, "<p>Expected (-) and actual (+) body:</p>\n<pre>{}</pre>", escape(diff));
        }
    }
    if !c.instructions.is_empty() {
        h.push_str("<p><b>Asked of the vendor's system:</b></p>\n<ul>\n");
        for i in &c.instructions {
            let _ = writeln!(h, "<li>{}</li>", escape(i));
        }
        h.push_str("</ul>\n");
    }
    if c.exchanges.is_empty() {
        h.push_str("<p>No exchanges.</p>\n");
    } else {
        h.push_str("<table>\n<thead><tr><th>Journal</th><th>Way</th><th>Target</th><th>Message</th><th>Key</th><th>Status</th><th>Problems</th></tr></thead>\n<tbody>\n");
        for e in &c.exchanges {
            let shows = c.failure.as_ref().and_then(|f| f.exchange) == Some(e.id);
            let problems: Vec<String> = e
                .problems
                .iter()
                .map(|p| match (&p.field, p.offset) {
                    (Some(f), Some(o)) => format!("{} at {f} (byte {o}): {}", p.code, p.message),
                    (Some(f), None) => format!("{} at {f}: {}", p.code, p.message),
                    (None, Some(o)) => format!("{} at byte {o}: {}", p.code, p.message),
                    (None, None) => format!("{}: {}", p.code, p.message),
                })
                .collect();
            let _ = writeln!(
                h,
                "<tr><td>#{}{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.id,
                if shows { " <span class=\"fail\">&larr; shows the failure</span>" } else { "" },
                match e.direction {
                    Direction::Inbound => "in",
                    Direction::Outbound => "out",
                },
                escape(&e.target),
                escape(e.message_type.as_deref().unwrap_or("")),
                escape(e.key.as_deref().unwrap_or("")),
                e.status.map(|s| s.to_string()).unwrap_or_else(|| "none".into()),
                if problems.is_empty() { "none".to_owned() } else { escape(&problems.join("; ")) }
            );
            if !e.excerpt.is_empty() {
                let _ = writeln!(
                    h,
                    "<tr><td></td><td colspan=\"6\"><details><summary>body, {} bytes</summary><pre>{}</pre></details></td></tr>",
                    e.bytes,
                    escape(&e.excerpt)
                );
            }
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</section>\n");
}
