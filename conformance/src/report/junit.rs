//! The run as JUnit XML: a test suite for the vendor, a test case per conformance case
//! (name: the case's stable id; classname: its message), a `failure` with the step and
//! the reason, and the exchanges in `system-out`. The JSON report's hash, the score and
//! the coverage are the suite's properties, so a CI that keeps the XML keeps them too.

use std::fmt::Write;

use super::{escape, percent};
use crate::scenario::run::{CaseResult, Run};

/// The JUnit XML of a run; `sha256` is the JSON report's hash.
pub fn junit(run: &Run, sha256: &str) -> String {
    let seconds: f64 = run.cases.iter().map(|c| c.millis as f64 / 1000.0).sum();
    // A case that did not apply is a test skipped, with its reason.
    let (skipped, failures) = (run.score.not_applicable, run.score.failed);
    let tests = run.score.total + skipped;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{seconds:.3}\">",
        escape(&format!("carehub conformance: {}", run.vendor))
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{seconds:.3}\" timestamp=\"{}\">",
        escape(&run.vendor),
        run.started_at.format("%Y-%m-%dT%H:%M:%S")
    );
    x.push_str("    <properties>\n");
    let properties = [
        ("report.sha256", sha256.to_owned()),
        ("score", format!("{} of {} ({})", run.score.passed, run.score.total, percent(run.score.share))),
        ("coverage", percent(run.coverage.share)),
        ("coverage.messages", format!("{} of {}", run.coverage.messages.covered, run.coverage.messages.total)),
        ("coverage.fields", format!("{} of {}", run.coverage.fields.covered, run.coverage.fields.total)),
        ("target", run.target.clone()),
        ("catalogue", run.catalogue.clone()),
        ("tool", run.tool.clone()),
    ];
    for (name, value) in properties {
        let _ = writeln!(x, "      <property name=\"{}\" value=\"{}\"/>", escape(name), escape(&value));
    }
    x.push_str("    </properties>\n");
    for case in &run.cases {
        testcase(&mut x, case);
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn testcase(x: &mut String, case: &CaseResult) {
    let _ = write!(
        x,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">",
        escape(&case.id),
        escape(&case.message),
        case.millis as f64 / 1000.0
    );
    x.push('\n');
    if let Some(why) = &case.not_applicable {
        let _ = writeln!(x, "      <skipped message=\"{}\"/>", escape(&format!("not applicable: {why}")));
    }
    if let Some(f) = &case.failure {
        let message = format!("step {} ({}): {}", f.step, f.what, f.reason);
        let mut body = message.clone();
        if let Some(line) = f.line {
            let _ = write!(body, "\n(the step is at line {line} of the catalogue)");
        }
        if let Some(id) = f.exchange {
            if let Some(ex) = case.exchanges.iter().find(|e| e.id == id) {
                let _ = write!(body, "\n\nthe exchange:\n{}\n{}", ex.summary, ex.excerpt);
            }
        }
        if let Some(diff) = &f.diff {
            let _ = write!(body, "\n\nexpected (-) and actual (+) body:\n{diff}");
        }
        let _ = writeln!(
            x,
            "      <failure message=\"{}\" type=\"{}\">{}</failure>",
            escape(&message),
            if case.negative { "negative-case" } else { "case" },
            escape(&body)
        );
    }
    let mut out = format!("{}\nwhy: {}\n", case.title, case.why);
    for i in &case.instructions {
        let _ = writeln!(out, "asked of the vendor: {i}");
    }
    for e in &case.exchanges {
        let _ = writeln!(out, "{}", e.summary);
    }
    let _ = writeln!(x, "      <system-out>{}</system-out>", escape(&out));
    x.push_str("    </testcase>\n");
}
