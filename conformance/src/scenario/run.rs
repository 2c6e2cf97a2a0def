//! The runner: a catalogue's cases played one after another against a counterpart, each
//! within its own time, to a [`Run`] that the reports are written from.
//!
//! Cases run one at a time, not in parallel: they share the vendor's system and the mock's
//! clock, and a case's exchanges are told apart from the next one's by the journal's order.
//! A case's exchanges are those the journal took from its first step to its end (a late
//! retry of an earlier case may show in a later case's list; it cannot make that case pass,
//! since an `expect` names its key). The two figures: the score, cases passed of cases
//! run; the coverage, the profile's messages and fields that the cases run name, out of
//! all of them in the vendor's mapping files ([`Universe`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::case::{Case, Catalogue, Requirement};
use super::coverage::{Coverage, Universe};
use super::play::{play, summary, Play, PlayOptions, StepFailure};
use crate::exchange::{Counterpart, Direction, Exchange, Problem, Wire};

/// How a run is played.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub play: PlayOptions,
    /// The most one case may take, all its steps together, in real time.
    pub case_timeout: Duration,
    /// What the run was against (the vendor's URL), for the report.
    pub target: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { play: PlayOptions::default(), case_timeout: Duration::from_secs(120), target: String::new() }
    }
}

/// A conformance run: what a report is written from, and what its hash is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub vendor: String,
    pub target: String,
    /// The mock clock's instant when the run began.
    pub started_at: DateTime<Utc>,
    /// What ran it (`carehub-conformance 0.1.0`).
    pub tool: String,
    /// The catalogue the cases come from.
    pub catalogue: String,
    pub score: Score,
    pub coverage: Coverage,
    pub cases: Vec<CaseResult>,
}

/// Cases passed of cases run. A case that did not apply to the run (it needs what the
/// mock did not offer) is in none of these, only in `not_applicable`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub passed: usize,
    pub failed: usize,
    pub total: usize,
    #[serde(default)]
    pub not_applicable: usize,
    /// passed / total, 0 to 1, rounded to four decimals (0 when no case ran: nothing was
    /// shown).
    pub share: f64,
}

/// One case's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub id: String,
    pub title: String,
    pub why: String,
    pub message: String,
    pub negative: bool,
    pub passed: bool,
    /// Why the case did not apply to this run and was not run (neither passed nor
    /// failed); absent for a case that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
    /// The step that failed and why; absent for a case that passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StepFailure>,
    /// What the vendor's system was asked to do.
    #[serde(default)]
    pub instructions: Vec<String>,
    /// The exchanges the journal took while the case ran.
    #[serde(default)]
    pub exchanges: Vec<ExchangeSummary>,
    /// Real time the case took, in milliseconds.
    pub millis: u64,
}

/// An exchange as a report shows it: the journal id to look it up by, and enough to
/// understand it without the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeSummary {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub direction: Direction,
    pub wire: Wire,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default)]
    pub problems: Vec<Problem>,
    pub millis: u64,
    /// The body's length in bytes.
    pub bytes: usize,
    /// One line: `#12 inbound POST /v1/... order_ack [O-1] -> 202, no problems`.
    pub summary: String,
    /// The body's start, as text (bytes that are not UTF-8 as `\xNN`).
    pub excerpt: String,
}

/// The body's start shown in a report.
const EXCERPT_BYTES: usize = 1024;

impl From<&Exchange> for ExchangeSummary {
    fn from(x: &Exchange) -> Self {
        let head = &x.body[..x.body.len().min(EXCERPT_BYTES)];
        let mut excerpt = String::new();
        for chunk in head.utf8_chunks() {
            excerpt.push_str(chunk.valid());
            for b in chunk.invalid() {
                excerpt.push_str(&format!("\\x{b:02X}"));
            }
        }
        if x.body.len() > EXCERPT_BYTES {
            excerpt.push('…');
        }
        ExchangeSummary {
            id: x.id,
            at: x.at,
            direction: x.direction,
            wire: x.wire,
            message_type: x.message_type.clone(),
            key: x.key.clone(),
            target: x.target.clone(),
            status: x.status,
            problems: x.problems.clone(),
            millis: x.millis,
            bytes: x.body.len(),
            summary: summary(x),
            excerpt,
        }
    }
}

/// Runs the cases (of `catalogue`, in its order) against the counterpart.
pub async fn run_cases(
    cp: &dyn Counterpart,
    catalogue: &Catalogue,
    cases: &[&Case],
    universe: &Universe,
    options: &RunOptions,
) -> Run {
    let started_at = cp.now();
    // Where the journal stands: a case's exchanges are those after it.
    let mut mark = 0;
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        if let Some(unmet) = case.requires.filter(|r| !offers(cp, *r)) {
            tracing::info!(case = %case.id, "conformance case not applicable");
            results.push(not_applicable(case, unmet.unmet()));
            continue;
        }
        if let Ok(old) = cp.exchanges_since(mark).await {
            mark = old.iter().map(|x| x.id).max().unwrap_or(mark).max(mark);
        }
        let result = run_case(cp, case, mark, options).await;
        if let Some(last) = result.exchanges.iter().map(|x| x.id).max() {
            mark = mark.max(last);
        }
        tracing::info!(case = %case.id, passed = result.passed, millis = result.millis, "conformance case");
        results.push(result);
    }
    let passed = results.iter().filter(|r| r.passed).count();
    let not_applicable = results.iter().filter(|r| r.not_applicable.is_some()).count();
    let total = results.len() - not_applicable;
    let score = Score {
        passed,
        failed: total - passed,
        total,
        not_applicable,
        share: if total == 0 { 0.0 } else { super::coverage::share(passed, total) },
    };
    let ran = |c: &&&Case| c.requires.is_none_or(|r| offers(cp, r));
    let coverage = universe.coverage(cases.iter().filter(ran).flat_map(|c| c.covers.iter()));
    Run {
        vendor: catalogue.vendor.clone(),
        target: options.target.clone(),
        started_at,
        tool: format!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
        catalogue: catalogue.file.clone(),
        score,
        coverage,
        cases: results,
    }
}

/// Whether the counterpart offers what a case requires.
fn offers(cp: &dyn Counterpart, requirement: Requirement) -> bool {
    match requirement {
        Requirement::Mtls => cp.serves_mtls(),
    }
}

/// A case that did not apply to the run, and why.
fn not_applicable(case: &Case, why: &str) -> CaseResult {
    CaseResult { passed: false, not_applicable: Some(why.to_owned()), ..CaseResult::of(case) }
}

impl CaseResult {
    /// The case's own part of a result (its id, title, why, message, whether negative),
    /// the rest empty: not passed, no failure, nothing seen.
    fn of(case: &Case) -> CaseResult {
        CaseResult {
            id: case.id.clone(),
            title: case.title.clone(),
            why: case.why.clone(),
            message: case.message.clone(),
            negative: case.negative,
            passed: false,
            not_applicable: None,
            failure: None,
            instructions: Vec::new(),
            exchanges: Vec::new(),
            millis: 0,
        }
    }
}

/// Plays one case within its time.
pub async fn run_case(cp: &dyn Counterpart, case: &Case, mark: i64, options: &RunOptions) -> CaseResult {
    let started = tokio::time::Instant::now();
    let mut state = Play::after(mark);
    let outcome = tokio::time::timeout(options.case_timeout, play(cp, &case.scenario, &options.play, &mut state)).await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(_) => {
            let i = state.step.saturating_sub(1);
            Some(StepFailure {
                step: state.step,
                line: case.scenario.lines.get(i).copied(),
                what: super::subst::substitute_known(
                    &case.scenario.steps.get(i).map(|s| s.summary()).unwrap_or_default(),
                    &state.vars,
                ),
                reason: format!("the case's time ({} ms) ran out during this step", options.case_timeout.as_millis()),
                diff: None,
                exchange: None,
            })
        }
    };
    // What came while the last step was failing belongs to the case too.
    let _ = state.refresh(cp).await;
    CaseResult {
        passed: failure.is_none(),
        failure,
        instructions: state.instructions.clone(),
        exchanges: state.seen.iter().map(ExchangeSummary::from).collect(),
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..CaseResult::of(case)
    }
}
