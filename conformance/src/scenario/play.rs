//! The engine: a scenario's steps played in order against a [`Counterpart`].
//!
//! Waiting is always for something that should happen, polled with a deadline: an
//! `expect` reads the journal again every [`PlayOptions::poll`] until its exchanges are
//! there or its time is up, and then says what it saw instead (the near misses: the
//! exchange that came with a problem, or with another status, or with other bytes). Each
//! exchange answers one `expect` at most, so "503, then a retry that is taken" is two
//! steps that need two exchanges.
//!
//! A `trigger` is what the vendor's system must be made to do (send a visit now). With a
//! trigger URL the engine posts `{"case": ID, "do": TEXT}` to it, so an automated harness
//! on the vendor's side (or one of the project's mock vendors) acts at once; without one
//! it hands the instruction to [`PlayOptions::instruct`] (the command line prints it) and
//! the next `expect` waits for the person at the other end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::diff::byte_diff;
use super::{substitute, Expect, ExpectState, Scenario, Step};
use crate::exchange::{Counterpart, Direction, Exchange};

/// Who is told what the vendor's system must do.
pub type Instruct = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How a scenario is played.
#[derive(Clone)]
pub struct PlayOptions {
    /// How long an `expect` or `expect_state` waits without its own `within_ms`.
    pub default_within: Duration,
    /// How often the journal or the state is read again while waiting.
    pub poll: Duration,
    /// Where triggers are posted (`POST {url}` with `{"case", "do"}`).
    pub trigger_url: Option<String>,
    /// Told each trigger's (case, instruction) when there is no trigger URL.
    pub instruct: Option<Instruct>,
}

impl Default for PlayOptions {
    fn default() -> Self {
        PlayOptions {
            default_within: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            trigger_url: None,
            instruct: None,
        }
    }
}

impl std::fmt::Debug for PlayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayOptions")
            .field("default_within", &self.default_within)
            .field("poll", &self.poll)
            .field("trigger_url", &self.trigger_url)
            .field("instruct", &self.instruct.is_some())
            .finish()
    }
}

/// Why a scenario stopped: the step (from 1), what it was, and why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The step, from 1; 0 when the failure came before the first step.
    pub step: usize,
    /// The step's line in its file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What the step was (`expect an inbound order_ack for O-1, without problems`).
    pub what: String,
    pub reason: String,
    /// A byte-level diff of the expected and the actual body, when the step gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The journal id of the exchange that shows the failure, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<i64>,
}

/// What a scenario saw while it played: the journal from its start, the values it
/// captured, the instructions it gave, and the step it is at.
#[derive(Debug, Default)]
pub struct Play {
    /// The journal id before the scenario's first exchange.
    pub mark: i64,
    /// The exchanges after `mark`, oldest first.
    pub seen: Vec<Exchange>,
    /// Exchanges already matched by an `expect`.
    claimed: BTreeSet<i64>,
    pub vars: BTreeMap<String, String>,
    /// The instructions of the triggers played.
    pub instructions: Vec<String>,
    /// The step being played, from 1 (0 before the first).
    pub step: usize,
}

impl Play {
    /// A play that considers only exchanges after journal id `mark`.
    pub fn after(mark: i64) -> Play {
        Play { mark, ..Play::default() }
    }

    /// Reads the journal's news.
    pub async fn refresh(&mut self, cp: &dyn Counterpart) -> anyhow::Result<()> {
        let after = self.seen.last().map(|x| x.id).unwrap_or(self.mark);
        let news = cp.exchanges_since(after).await?;
        self.seen.extend(news.into_iter().filter(|x| x.id > after));
        Ok(())
    }

    /// The failure of the current step.
    fn fail(&self, scenario: &Scenario, reason: String) -> StepFailure {
        let i = self.step.saturating_sub(1);
        StepFailure {
            step: self.step,
            line: if self.step == 0 { None } else { scenario.lines.get(i).copied() },
            what: if self.step == 0 {
                "set the clock to the scenario's start".into()
            } else {
                let what = scenario.steps.get(i).map(Step::summary).unwrap_or_default();
                super::subst::substitute_known(&what, &self.vars)
            },
            reason,
            diff: None,
            exchange: None,
        }
    }
}

/// Plays a scenario from where the journal stands now: what it saw, and how it ended.
/// For a scenario file on its own (a conformance case is played by the runner).
pub async fn play_scenario(
    cp: &dyn Counterpart,
    scenario: &Scenario,
    options: &PlayOptions,
) -> (Play, Result<(), StepFailure>) {
    let mark = match cp.exchanges_since(0).await {
        Ok(all) => all.iter().map(|x| x.id).max().unwrap_or(0),
        Err(e) => {
            let failure = StepFailure {
                step: 0,
                line: None,
                what: "read the journal".into(),
                reason: format!("the journal could not be read: {e:#}"),
                diff: None,
                exchange: None,
            };
            return (Play::default(), Err(failure));
        }
    };
    let mut state = Play::after(mark);
    let result = play(cp, scenario, options, &mut state).await;
    (state, result)
}

/// Plays the scenario's steps in order; the first step that fails stops it. `play` keeps
/// what was seen, also when the caller gives up on the future (a case's timeout).
pub async fn play(
    cp: &dyn Counterpart,
    scenario: &Scenario,
    options: &PlayOptions,
    play: &mut Play,
) -> Result<(), StepFailure> {
    play.vars.insert("case".into(), scenario.name.clone());
    if let Some(at) = scenario.start {
        cp.set_clock(at);
    }
    let client = reqwest::Client::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        play.step = i + 1;
        let now = cp.now();
        play.vars.insert("today".into(), now.date_naive().to_string());
        play.vars.insert("now".into(), now.to_rfc3339());
        let sub = |t: &str, play: &Play| substitute(t, &play.vars).map_err(|r| play.fail(scenario, r));
        match step {
            Step::Send(s) => {
                let command = s.command(&play.vars).map_err(|r| play.fail(scenario, r))?;
                let ids = cp
                    .send(&command)
                    .await
                    .map_err(|e| play.fail(scenario, format!("the mock could not send {}: {e:#}", s.message)))?;
                if !s.capture.is_empty() {
                    let first = *ids.iter().min().ok_or_else(|| {
                        play.fail(scenario, format!("sending {} made no exchange to capture from", s.message))
                    })?;
                    let x = wait_for_id(cp, play, first, options).await.map_err(|r| play.fail(scenario, r))?;
                    for (name, from) in &s.capture {
                        let v = from.take(&x).map_err(|r| play.fail(scenario, r))?;
                        play.vars.insert(name.clone(), v);
                    }
                }
            }
            Step::Advance(a) => {
                let by = a.duration().ok_or_else(|| play.fail(scenario, "the time is out of range".into()))?;
                cp.set_clock(now + by);
            }
            Step::Clock(at) => cp.set_clock(*at),
            Step::Fault(f) => cp.fault(f.fault()),
            Step::Expect(e) => expect(cp, scenario, e, options, play).await?,
            Step::ExpectState(s) => expect_state(cp, scenario, s, options, play).await?,
            Step::Trigger(t) => {
                let text = sub(t, play)?;
                play.instructions.push(text.clone());
                match (&options.trigger_url, &options.instruct) {
                    (Some(url), _) => {
                        let body = serde_json::json!({"case": scenario.name, "do": text});
                        let answer = client.post(url).json(&body).send().await.map_err(|e| {
                            play.fail(scenario, format!("the trigger URL {url} could not be reached: {e}"))
                        })?;
                        if !answer.status().is_success() {
                            return Err(play.fail(
                                scenario,
                                format!("the trigger URL {url} answered {}", answer.status().as_u16()),
                            ));
                        }
                    }
                    (None, Some(instruct)) => instruct(&scenario.name, &text),
                    (None, None) => {}
                }
            }
        }
    }
    Ok(())
}

/// The exchange with journal id `id`, once the journal has it.
async fn wait_for_id(
    cp: &dyn Counterpart,
    play: &mut Play,
    id: i64,
    options: &PlayOptions,
) -> Result<Exchange, String> {
    let deadline = Instant::now() + options.default_within;
    loop {
        if let Some(x) = play.seen.iter().find(|x| x.id == id) {
            return Ok(x.clone());
        }
        play.refresh(cp).await.map_err(|e| format!("the journal could not be read: {e:#}"))?;
        if play.seen.iter().any(|x| x.id == id) {
            continue;
        }
        if Instant::now() >= deadline {
            return Err(format!("exchange #{id}, made by the send, is not in the journal"));
        }
        tokio::time::sleep(options.poll.min(deadline - Instant::now())).await;
    }
}

/// Whether an exchange is one the step is about (direction, message, key, target).
fn is_about(e: &Expect, x: &Exchange, key: Option<&str>, target: Option<&str>) -> bool {
    e.direction.is_none_or(|d| d == x.direction)
        && e.message.as_deref().is_none_or(|m| x.message_type.as_deref() == Some(m))
        && key.is_none_or(|k| x.key.as_deref() == Some(k))
        && target.is_none_or(|t| x.target.starts_with(t))
}

/// Why an exchange the step is about does not answer it; `None` when it does.
fn mismatch(
    e: &Expect,
    x: &Exchange,
    body: Option<&str>,
    json: &BTreeMap<String, serde_json::Value>,
) -> Option<(String, Option<String>)> {
    if let Some(s) = e.status {
        if !s.matches(x.status) {
            let got = x.status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into());
            return Some((format!("status {got}, not {s}"), None));
        }
    }
    if e.clean && x.problems.iter().any(|p| !e.ignore.contains(&p.code)) {
        return Some((format!("problems: {}", problems(x)), None));
    }
    if let Some(code) = &e.problem {
        if !x.problems.iter().any(|p| &p.code == code) {
            let had = if x.problems.is_empty() { "none".to_owned() } else { problems(x) };
            return Some((format!("no problem {code} (problems: {had})"), None));
        }
    }
    if !json.is_empty() {
        let parsed: serde_json::Value = match serde_json::from_slice(&x.body) {
            Ok(v) => v,
            Err(err) => return Some((format!("a body that is not JSON ({err})"), None)),
        };
        for (pointer, want) in json {
            match parsed.pointer(pointer) {
                Some(v) if v == want => {}
                Some(v) => return Some((format!("{v} at {pointer}, not {want}"), None)),
                None => return Some((format!("nothing at {pointer} (expected {want})"), None)),
            }
        }
    }
    if let Some(body) = body {
        if let Some(diff) = byte_diff(body.as_bytes(), &x.body) {
            return Some(("a body other than the one expected".into(), Some(diff)));
        }
    }
    None
}

fn problems(x: &Exchange) -> String {
    x.problems
        .iter()
        .map(|p| match &p.field {
            Some(f) => format!("{} at {f}: {}", p.code, p.message),
            None => format!("{}: {}", p.code, p.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line about an exchange, for reasons and reports.
pub fn summary(x: &Exchange) -> String {
    let mut s = head(x);
    if x.problems.is_empty() {
        s.push_str(", no problems");
    } else {
        s.push_str(&format!(", {} problem(s): {}", x.problems.len(), problems(x)));
    }
    s
}

/// An exchange's journal id, way, target, message, key and status.
fn head(x: &Exchange) -> String {
    let dir = match x.direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    let mut s = format!("#{} {dir} {}", x.id, x.target);
    if let Some(m) = &x.message_type {
        s.push_str(&format!(" {m}"));
    }
    if let Some(k) = &x.key {
        s.push_str(&format!(" [{k}]"));
    }
    match x.status {
        Some(st) => s.push_str(&format!(" -> {st}")),
        None => s.push_str(" -> no answer"),
    }
    s
}

async fn expect(
    cp: &dyn Counterpart,
    scenario: &Scenario,
    e: &Expect,
    options: &PlayOptions,
    play: &mut Play,
) -> Result<(), StepFailure> {
    let sub = |t: &Option<String>, play: &Play| match t {
        Some(t) => substitute(t, &play.vars).map(Some).map_err(|r| play.fail(scenario, r)),
        None => Ok(None),
    };
    let key = sub(&e.key, play)?;
    let target = sub(&e.target, play)?;
    let body = sub(&e.body, play)?;
    let json = e
        .json
        .iter()
        .map(|(p, v)| Ok((p.clone(), super::subst::substitute_json(v, &play.vars)?)))
        .collect::<Result<BTreeMap<_, _>, String>>()
        .map_err(|r| play.fail(scenario, r))?;
    let within = e.within_ms.map(Duration::from_millis).unwrap_or(options.default_within);
    let deadline = Instant::now() + within;
    loop {
        play.refresh(cp).await.map_err(|err| play.fail(scenario, format!("the journal could not be read: {err:#}")))?;
        let about: Vec<&Exchange> = play
            .seen
            .iter()
            .filter(|x| !play.claimed.contains(&x.id) && is_about(e, x, key.as_deref(), target.as_deref()))
            .collect();
        let good: Vec<i64> = about
            .iter()
            .filter(|x| mismatch(e, x, body.as_deref(), &json).is_none())
            .map(|x| x.id)
            .take(e.wanted())
            .collect();
        if good.len() == e.wanted() {
            let first = play.seen.iter().find(|x| x.id == good[0]).cloned();
            play.claimed.extend(good);
            if let Some(x) = first {
                for (name, from) in &e.capture {
                    let v = from.take(&x).map_err(|r| play.fail(scenario, r))?;
                    play.vars.insert(name.clone(), v);
                }
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut failure = play.fail(scenario, String::new());
            let misses: Vec<(&Exchange, String, Option<String>)> = about
                .iter()
                .filter_map(|x| mismatch(e, x, body.as_deref(), &json).map(|(why, diff)| (*x, why, diff)))
                .collect();
            let counted =
                if e.wanted() > 1 { format!("{} of {} came", good.len(), e.wanted()) } else { "none came".into() };
            failure.reason = if let Some((x, why, diff)) = misses.first() {
                failure.exchange = Some(x.id);
                failure.diff = diff.clone();
                let more =
                    if misses.len() > 1 { format!(" (and {} more like it)", misses.len() - 1) } else { String::new() };
                format!("within {} ms {counted}; the nearest, {}, has {why}{more}", within.as_millis(), head(x))
            } else {
                format!(
                    "within {} ms {counted}, and no exchange like it at all ({} exchange(s) in this case so far)",
                    within.as_millis(),
                    play.seen.len()
                )
            };
            return Err(failure);
        }
        tokio::time::sleep(options.poll.min(deadline - Instant::now())).await;
    }
}

async fn expect_state(
    cp: &dyn Counterpart,
    scenario: &Scenario,
    s: &ExpectState,
    options: &PlayOptions,
    play: &mut Play,
) -> Result<(), StepFailure> {
    let key = substitute(&s.key, &play.vars).map_err(|r| play.fail(scenario, r))?;
    let equals = match &s.equals {
        Some(v) => Some(super::subst::substitute_json(v, &play.vars).map_err(|r| play.fail(scenario, r))?),
        None => None,
    };
    let within = s.within_ms.map(Duration::from_millis).unwrap_or(options.default_within);
    let deadline = Instant::now() + within;
    loop {
        let state = cp
            .state(&s.kind, &key)
            .await
            .map_err(|e| play.fail(scenario, format!("the state of {} {key} could not be read: {e:#}", s.kind)))?;
        let value = state.as_ref().and_then(|v| v.pointer(&s.pointer)).filter(|v| !v.is_null()).cloned();
        let ok = match (&value, &equals) {
            (Some(v), Some(want)) => v == want,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let seen = match (state, value) {
                (None, _) => format!("the hub has no {} {key}", s.kind),
                (Some(_), None) => format!("{} {key} has nothing at {}", s.kind, super::pointer_or_root(&s.pointer)),
                (Some(_), Some(v)) => format!("{} {key} has {v} at {}", s.kind, super::pointer_or_root(&s.pointer)),
            };
            return Err(play.fail(scenario, format!("within {} ms: {seen}", within.as_millis())));
        }
        tokio::time::sleep(options.poll.min(deadline - Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Problem, Wire};

    fn exchange(problems: &[&str]) -> Exchange {
        Exchange {
            id: 7,
            at: chrono::DateTime::UNIX_EPOCH,
            direction: Direction::Inbound,
            wire: Wire::Http,
            message_type: Some("order_ack".into()),
            key: Some("O-1".into()),
            target: "POST /v1/systems/phoniro/messages".into(),
            headers: Vec::new(),
            body: br#"{"orderId": "O-1", "status": "ACCEPTED"}"#.to_vec(),
            status: Some(202),
            response: Vec::new(),
            millis: 1,
            problems: problems
                .iter()
                .map(|c| Problem { code: (*c).into(), message: "m".into(), field: None, offset: None })
                .collect(),
        }
    }

    #[test]
    fn clean_counts_every_problem_but_the_ignored_ones() {
        let e = Expect { clean: true, ignore: vec!["MOCK_FAULT_DELAY".into()], ..Expect::default() };
        let none = BTreeMap::new();
        assert_eq!(mismatch(&e, &exchange(&["MOCK_FAULT_DELAY"]), None, &none), None);
        let (why, _) = mismatch(&e, &exchange(&["MOCK_FAULT_DELAY", "INVALID_DATE"]), None, &none).expect("not clean");
        assert!(why.contains("INVALID_DATE"), "{why}");
    }

    #[test]
    fn json_values_are_compared_by_pointer() {
        let e = Expect::default();
        let want: BTreeMap<String, serde_json::Value> = [("/status".to_owned(), serde_json::json!("REJECTED"))].into();
        let (why, _) = mismatch(&e, &exchange(&[]), None, &want).expect("accepted, not rejected");
        assert_eq!(why, "\"ACCEPTED\" at /status, not \"REJECTED\"");
        let missing: BTreeMap<String, serde_json::Value> = [("/reason".to_owned(), serde_json::json!("x"))].into();
        assert!(mismatch(&e, &exchange(&[]), None, &missing).is_some_and(|(w, _)| w.starts_with("nothing at /reason")));
    }
}
