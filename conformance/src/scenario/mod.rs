//! Scenarios and conformance cases as data, and the engine that plays them.
//!
//! Why data and not code: a vendor reads a case to learn what it must do, a municipality
//! reads it to learn what a pass means, and neither reads Rust. A scenario is a TOML file
//! of steps played in order against a [`Counterpart`](crate::exchange::Counterpart) (the
//! mock hub, or a fake in a test): send a message as the hub would, move the mock's clock,
//! arm a fault, and wait for what the vendor's system must do in answer. The engine knows
//! nothing of how the mock is built, so the same files drive the mock in a vendor's CI and
//! a fake in this crate's tests.
//!
//! # A scenario file
//!
//! ```toml
//! name = "an order is confirmed"
//! start = "2026-11-02T08:00:00Z"          # optional: the mock's clock is set here first
//!
//! [[steps]]
//! send = { message = "order", capture = { order_id = "key" } }
//!
//! [[steps]]
//! expect = { direction = "inbound", message = "order_ack", key = "${order_id}", status = "2xx", clean = true }
//! ```
//!
//! The steps, one key each:
//! - `send = { message, fields = {..}, twice = false, capture = {..} }`: the mock sends a
//!   message as the hub would ([`SendCommand`](crate::exchange::SendCommand)); `capture`
//!   takes values from the first exchange the send made.
//! - `advance = { days, hours, minutes, seconds }`: moves the mock's clock (no real time
//!   passes); `clock = "2026-11-17T08:00:00Z"` sets it.
//! - `fault = { path = "/v1/", times = 1, kind = "status", status = 503 }` (or
//!   `kind = "delay", millis = 3000`, or `kind = "reset"`): arms a fault on what the vendor
//!   sends next.
//! - `expect = { direction, message, key, target, status, clean, ignore, problem, count,
//!   json, body, within_ms, capture }`: waits, up to `within_ms` of real time, for `count`
//!   exchanges (one by default) that match: `direction` (`inbound`, `outbound`), `message`
//!   (the hub's message type), `key` (the business key), `target` (a prefix of `POST
//!   /v1/...` or of the file's path), `status` (`202`, or a class: `2xx`), `clean = true`
//!   (no problems but the codes in `ignore`) or `problem = "CODE"` (a problem with that
//!   code), `json = { "/status" = "ACCEPTED" }` (values in the body, by JSON pointer), and
//!   `body` (the exact bytes, diffed when they differ). Each exchange answers one `expect` at most, so two steps that
//!   expect an order confirmation need two confirmations. The journal is polled until the
//!   deadline; nothing is waited for that is not expected.
//! - `expect_state = { kind, key, pointer, equals, within_ms }`: polls the hub's state of
//!   a business key until the JSON pointer's value equals `equals` (or is present and not
//!   null).
//! - `trigger = "Register a visit for order ${order_id}"`: what the vendor's system must be
//!   made to do now; the runner posts it to the vendor's test harness or shows it to the
//!   tester (see [`play`]).
//!
//! There is deliberately no step that waits to see that nothing happens: such a step
//! either waits too long or passes by luck. What must not happen is checked as a state
//! (`expect_state`) or as an exchange with a problem.
//!
//! # Values: `${name}`
//!
//! A string in a step may hold `${name}`: a value captured by an earlier step (`capture =
//! { order_id = "key" }` takes the exchange's business key; `"id"`, `"status"`,
//! `"message_type"` and `"target"` take those; a JSON pointer such as `"/orderId"` takes a
//! value from the exchange's body), or one of `${case}` (the scenario's name or the case's
//! id), `${today}` (the mock clock's date, `YYYY-MM-DD`) and `${now}` (its instant, RFC
//! 3339). `$${` writes a literal `${`. A name no earlier step captures is refused when the
//! file is read, not when the step is played.
//!
//! # Layout
//! - this module: the types of a scenario and their reading, with errors at the file's
//!   line and column;
//! - `subst`: the `${name}` substitution;
//! - [`case`]: conformance cases and the catalogue, one embedded file per vendor;
//! - [`play`]: the engine that plays a scenario's steps against a counterpart;
//! - [`coverage`]: the profile's messages and fields, from the hub's own mapping files;
//! - [`run`]: the runner: a catalogue's cases, each with a timeout, to a [`run::Run`];
//! - [`diff`]: a byte-level diff of an expected and an actual body.

pub mod case;
pub mod coverage;
pub mod diff;
pub mod play;
pub mod run;
mod subst;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::exchange::{Direction, Exchange, Fault, FaultKind, SendCommand};

pub use self::subst::substitute;

/// The names every scenario may use without capturing them.
pub const BUILTIN_NAMES: [&str; 3] = ["case", "today", "now"];

/// What went wrong reading a scenario, a case or a catalogue; each has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file is not TOML, or not a scenario: a key unknown or missing, a value of the
    /// wrong type. `at` is the line and column the reader stopped at.
    #[error("{}", located(file, *at, reason))]
    Parse { file: String, at: Option<(usize, usize)>, reason: String },
    /// The file reads, but a step makes no sense (a `${name}` nothing captures, `clean` and
    /// `problem` together, a case id of the wrong form).
    #[error("{}", located(file, *at, reason))]
    Invalid { file: String, at: Option<(usize, usize)>, reason: String },
    /// No catalogue is built in for the vendor.
    #[error("no conformance catalogue for vendor '{vendor}'; catalogues exist for: {known}")]
    UnknownVendor { vendor: String, known: String },
    /// A filter named a case the catalogue does not have.
    #[error("no case {id} in the {vendor} catalogue")]
    UnknownCase { vendor: String, id: String },
}

impl ScenarioError {
    /// The error's stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ScenarioError::Parse { .. } => "SCENARIO_PARSE",
            ScenarioError::Invalid { .. } => "SCENARIO_INVALID",
            ScenarioError::UnknownVendor { .. } => "CATALOGUE_UNKNOWN_VENDOR",
            ScenarioError::UnknownCase { .. } => "CATALOGUE_UNKNOWN_CASE",
        }
    }

    /// The line and column in the file, when known.
    pub fn at(&self) -> Option<(usize, usize)> {
        match self {
            ScenarioError::Parse { at, .. } | ScenarioError::Invalid { at, .. } => *at,
            _ => None,
        }
    }
}

fn located(file: &str, at: Option<(usize, usize)>, reason: &str) -> String {
    match at {
        Some((line, column)) => format!("{file}:{line}:{column}: {reason}"),
        None => format!("{file}: {reason}"),
    }
}

/// The line and column (both from 1) of a byte offset in a text.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// A TOML reader's error at its place in `text`, on one line.
pub(crate) fn parse_error(file: &str, text: &str, e: &toml::de::Error) -> ScenarioError {
    let at = e.span().map(|span| line_col(text, span.start));
    let reason = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(": ");
    ScenarioError::Parse { file: file.to_owned(), at, reason }
}

/// A scenario: steps played in order against a counterpart.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    /// Where the mock's clock is set before the first step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    pub steps: Vec<Step>,
    /// Each step's line in its file (same length as `steps`), for messages: the line of
    /// its `[[steps]]` header, or of its `{` in an array of inline tables.
    #[serde(skip)]
    pub lines: Vec<usize>,
}

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    start: Option<TomlInstant>,
    #[serde(default)]
    steps: Vec<toml::Spanned<Step>>,
}

impl Scenario {
    /// Reads a scenario file; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let raw: ScenarioFile = toml::from_str(text).map_err(|e| parse_error(file, text, &e))?;
        let scenario = Scenario::assemble(raw.name, raw.start.map(|s| s.0), raw.steps, text);
        scenario.check(file, &[])?;
        Ok(scenario)
    }

    pub(crate) fn assemble(
        name: String,
        start: Option<DateTime<Utc>>,
        steps: Vec<toml::Spanned<Step>>,
        text: &str,
    ) -> Scenario {
        let lines = steps.iter().map(|s| line_col(text, s.span().start).0).collect();
        let steps = steps.into_iter().map(toml::Spanned::into_inner).collect();
        Scenario { name, start, steps, lines }
    }

    /// Checks what a reader cannot: each step on its own, and that every `${name}` is
    /// captured by an earlier step (or is built in, or among `given`).
    pub(crate) fn check(&self, file: &str, given: &[&str]) -> Result<(), ScenarioError> {
        let mut known: BTreeSet<String> = BUILTIN_NAMES.iter().chain(given).map(|s| (*s).to_owned()).collect();
        for (i, step) in self.steps.iter().enumerate() {
            let at = self.lines.get(i).map(|line| (*line, 1));
            let invalid = |reason: String| ScenarioError::Invalid {
                file: file.to_owned(),
                at,
                reason: format!("{}, step {} ({}): {reason}", self.name, i + 1, step.kind()),
            };
            step.check().map_err(invalid)?;
            for text in step.texts() {
                for name in subst::names(text).map_err(invalid)? {
                    if !known.contains(&name) {
                        let captured: Vec<_> =
                            known.iter().filter(|k| !BUILTIN_NAMES.contains(&k.as_str())).cloned().collect();
                        return Err(invalid(format!(
                            "${{{name}}} is not captured by an earlier step (captured so far: {}; built in: {})",
                            if captured.is_empty() { "none".to_owned() } else { captured.join(", ") },
                            BUILTIN_NAMES.join(", ")
                        )));
                    }
                }
            }
            known.extend(step.captures().map(str::to_owned));
        }
        Ok(())
    }
}

/// An instant as TOML writes it: an RFC 3339 string or a TOML offset date-time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TomlInstant(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for TomlInstant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(d)?;
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Datetime(dt) => dt.to_string(),
            other => return Err(serde::de::Error::custom(format!("expected an RFC 3339 instant, found {other}"))),
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|t| TomlInstant(t.with_timezone(&Utc)))
            .map_err(|e| serde::de::Error::custom(format!("'{text}' is not an RFC 3339 instant with an offset: {e}")))
    }
}

/// One step of a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The mock sends a message to the vendor's system, as the hub would.
    Send(SendStep),
    /// The mock's clock moves by this much.
    Advance(Advance),
    /// The mock's clock is set to this instant.
    Clock(#[serde(with = "instant_text")] DateTime<Utc>),
    /// A fault is armed on what the vendor sends next.
    Fault(FaultStep),
    /// Wait for exchanges that match (boxed: by far the largest step).
    Expect(Box<Expect>),
    /// Wait for the hub's state of a business key to hold a value.
    ExpectState(ExpectState),
    /// What the vendor's system must be made to do now.
    Trigger(String),
}

mod instant_text {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        super::TomlInstant::deserialize(d).map(|i| i.0)
    }
}

impl Step {
    /// The step's key in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Send(_) => "send",
            Step::Advance(_) => "advance",
            Step::Clock(_) => "clock",
            Step::Fault(_) => "fault",
            Step::Expect(_) => "expect",
            Step::ExpectState(_) => "expect_state",
            Step::Trigger(_) => "trigger",
        }
    }

    /// The names the step captures.
    fn captures(&self) -> impl Iterator<Item = &str> {
        let map = match self {
            Step::Send(s) => Some(&s.capture),
            Step::Expect(e) => Some(&e.capture),
            _ => None,
        };
        map.into_iter().flat_map(|m| m.keys().map(String::as_str))
    }

    /// Every text of the step that may hold `${name}`.
    fn texts(&self) -> Vec<&str> {
        let mut out = Vec::new();
        match self {
            Step::Send(s) => s.fields.values().for_each(|v| json_texts(v, &mut out)),
            Step::Expect(e) => {
                out.extend([&e.key, &e.target, &e.body].into_iter().flatten().map(String::as_str));
                e.json.values().for_each(|v| json_texts(v, &mut out));
            }
            Step::ExpectState(s) => {
                out.push(s.key.as_str());
                if let Some(v) = &s.equals {
                    json_texts(v, &mut out);
                }
            }
            Step::Trigger(t) => out.push(t.as_str()),
            Step::Advance(_) | Step::Clock(_) | Step::Fault(_) => {}
        }
        out
    }

    /// What a reader cannot check on its own.
    fn check(&self) -> Result<(), String> {
        match self {
            Step::Expect(e) => e.check(),
            Step::Send(s) if s.message.trim().is_empty() => Err("`message` is empty".into()),
            Step::Trigger(t) if t.trim().is_empty() => Err("the instruction is empty".into()),
            Step::Advance(a) if a.duration().is_none() => Err("the time to advance by is out of range".into()),
            _ => Ok(()),
        }
    }

    /// One line saying what the step does, for reports.
    pub fn summary(&self) -> String {
        match self {
            Step::Send(s) => format!("send {}{}", s.message, if s.twice { " twice" } else { "" }),
            Step::Advance(a) => format!("advance the clock by {}", a.describe()),
            Step::Clock(at) => format!("set the clock to {}", at.to_rfc3339()),
            Step::Fault(f) => format!("fault {} on {} (x{})", f.describe(), f.path, f.times),
            Step::Expect(e) => format!("expect {}", e.describe()),
            Step::ExpectState(s) => format!("expect {} {} {} {}", s.kind, s.key, pointer_or_root(&s.pointer), {
                match &s.equals {
                    Some(v) => format!("= {v}"),
                    None => "present".to_owned(),
                }
            }),
            Step::Trigger(t) => format!("trigger: {t}"),
        }
    }
}

fn pointer_or_root(p: &str) -> &str {
    if p.is_empty() {
        "(the whole state)"
    } else {
        p
    }
}

fn json_texts<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_texts(v, out)),
        serde_json::Value::Object(m) => m.values().for_each(|v| json_texts(v, out)),
        _ => {}
    }
}

/// `send`: a [`SendCommand`] and what to capture from the exchange it made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendStep {
    pub message: String,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub twice: bool,
    #[serde(default)]
    pub capture: BTreeMap<String, Capture>,
}

impl SendStep {
    /// The command, its texts substituted.
    pub fn command(&self, vars: &BTreeMap<String, String>) -> Result<SendCommand, String> {
        let fields = match subst::substitute_json(&serde_json::Value::Object(self.fields.clone()), vars)? {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        Ok(SendCommand { message: self.message.clone(), fields, twice: self.twice })
    }
}

/// `advance`: how far the clock moves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advance {
    #[serde(default)]
    pub days: i64,
    #[serde(default)]
    pub hours: i64,
    #[serde(default)]
    pub minutes: i64,
    #[serde(default)]
    pub seconds: i64,
}

impl Advance {
    /// The whole move, `None` when it overflows.
    pub fn duration(&self) -> Option<chrono::Duration> {
        let d = chrono::Duration::try_days(self.days)?;
        let h = chrono::Duration::try_hours(self.hours)?;
        let m = chrono::Duration::try_minutes(self.minutes)?;
        let s = chrono::Duration::try_seconds(self.seconds)?;
        d.checked_add(&h)?.checked_add(&m)?.checked_add(&s)
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = [(self.days, "d"), (self.hours, "h"), (self.minutes, "min"), (self.seconds, "s")]
            .into_iter()
            .filter(|(n, _)| *n != 0)
            .map(|(n, u)| format!("{n} {u}"))
            .collect();
        if parts.is_empty() {
            "0 s".to_owned()
        } else {
            parts.join(" ")
        }
    }
}

/// `fault`: a [`Fault`] written flat (`kind = "status", status = 503`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "FaultStepFile", into = "FaultStepFile")]
pub struct FaultStep {
    pub path: String,
    pub times: u32,
    pub kind: FaultKind,
}

impl FaultStep {
    /// The fault to arm.
    pub fn fault(&self) -> Fault {
        Fault { path: self.path.clone(), times: self.times, kind: self.kind.clone() }
    }

    fn describe(&self) -> String {
        match &self.kind {
            FaultKind::Delay { millis } => format!("answer after {millis} ms"),
            FaultKind::Status { status } => format!("answer {status}"),
            FaultKind::Reset => "reset the connection".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultStepFile {
    path: String,
    #[serde(default = "one")]
    times: u32,
    kind: FaultName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultName {
    Delay,
    Status,
    Reset,
}

impl TryFrom<FaultStepFile> for FaultStep {
    type Error = String;

    fn try_from(f: FaultStepFile) -> Result<Self, Self::Error> {
        fault_step(f).map_err(|e| format!("`fault`: {e}"))
    }
}

fn fault_step(f: FaultStepFile) -> Result<FaultStep, String> {
    {
        if f.times == 0 {
            return Err("`times` must be at least 1".into());
        }
        let kind = match (f.kind, f.millis, f.status) {
            (FaultName::Delay, Some(millis), None) => FaultKind::Delay { millis },
            (FaultName::Delay, None, _) => return Err("a `delay` fault needs `millis`".into()),
            (FaultName::Status, None, Some(status)) if (100..=599).contains(&status) => FaultKind::Status { status },
            (FaultName::Status, None, Some(status)) => return Err(format!("`status` {status} is not an HTTP status")),
            (FaultName::Status, _, None) => return Err("a `status` fault needs `status`".into()),
            (FaultName::Reset, None, None) => FaultKind::Reset,
            _ => {
                return Err("a fault takes only what its kind needs: `millis` for a delay, `status` for a status".into())
            }
        };
        Ok(FaultStep { path: f.path, times: f.times, kind })
    }
}

impl From<FaultStep> for FaultStepFile {
    fn from(f: FaultStep) -> Self {
        let (kind, millis, status) = match f.kind {
            FaultKind::Delay { millis } => (FaultName::Delay, Some(millis), None),
            FaultKind::Status { status } => (FaultName::Status, None, Some(status)),
            FaultKind::Reset => (FaultName::Reset, None, None),
        };
        FaultStepFile { path: f.path, times: f.times, kind, millis, status }
    }
}

/// An HTTP status to match: exact (`503`) or a class (`"2xx"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StatusFile", into = "String")]
pub enum StatusMatch {
    Exact(u16),
    /// The first digit: 2 for `2xx`.
    Class(u16),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StatusFile {
    Number(i64),
    Text(String),
}

impl TryFrom<StatusFile> for StatusMatch {
    type Error = String;

    fn try_from(s: StatusFile) -> Result<Self, Self::Error> {
        match s {
            StatusFile::Number(n) if (100..=599).contains(&n) => Ok(StatusMatch::Exact(n as u16)),
            StatusFile::Number(n) => Err(format!("`status`: {n} is not an HTTP status")),
            StatusFile::Text(t) => StatusMatch::parse(&t).map_err(|e| format!("`status`: {e}")),
        }
    }
}

impl StatusMatch {
    /// `"503"` or `"2xx"`.
    pub fn parse(t: &str) -> Result<StatusMatch, String> {
        let bad = || format!("'{t}' is not an HTTP status (`503`) or class (`2xx`)");
        let lower = t.trim().to_ascii_lowercase();
        if let Some(d) = lower.strip_suffix("xx") {
            let d: u16 = d.parse().map_err(|_| bad())?;
            return if (1..=5).contains(&d) { Ok(StatusMatch::Class(d)) } else { Err(bad()) };
        }
        match lower.parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(StatusMatch::Exact(n)),
            _ => Err(bad()),
        }
    }

    pub fn matches(self, status: Option<u16>) -> bool {
        match (self, status) {
            (StatusMatch::Exact(e), Some(s)) => e == s,
            (StatusMatch::Class(c), Some(s)) => s / 100 == c,
            (_, None) => false,
        }
    }
}

impl From<StatusMatch> for String {
    fn from(s: StatusMatch) -> String {
        s.to_string()
    }
}

impl fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusMatch::Exact(n) => write!(f, "{n}"),
            StatusMatch::Class(c) => write!(f, "{c}xx"),
        }
    }
}

/// Where a captured value comes from in an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Capture {
    /// The business key.
    Key,
    /// The journal id.
    Id,
    Status,
    MessageType,
    Target,
    /// A JSON pointer into the body (`/orderId`).
    Body(String),
}

impl TryFrom<String> for Capture {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Ok(match s.as_str() {
            "key" => Capture::Key,
            "id" => Capture::Id,
            "status" => Capture::Status,
            "message_type" => Capture::MessageType,
            "target" => Capture::Target,
            p if p.starts_with('/') => Capture::Body(s),
            _ => {
                return Err(format!(
                    "`capture`: cannot capture '{s}': use key, id, status, message_type, target, or a JSON pointer into the body (/orderId)"
                ))
            }
        })
    }
}

impl From<Capture> for String {
    fn from(c: Capture) -> String {
        match c {
            Capture::Key => "key".into(),
            Capture::Id => "id".into(),
            Capture::Status => "status".into(),
            Capture::MessageType => "message_type".into(),
            Capture::Target => "target".into(),
            Capture::Body(p) => p,
        }
    }
}

impl Capture {
    /// The value in an exchange, as text.
    pub fn take(&self, x: &Exchange) -> Result<String, String> {
        let missing = |what: &str| format!("exchange #{} has no {what} to capture", x.id);
        match self {
            Capture::Key => x.key.clone().ok_or_else(|| missing("business key")),
            Capture::Id => Ok(x.id.to_string()),
            Capture::Status => x.status.map(|s| s.to_string()).ok_or_else(|| missing("status")),
            Capture::MessageType => x.message_type.clone().ok_or_else(|| missing("message type")),
            Capture::Target => Ok(x.target.clone()),
            Capture::Body(pointer) => {
                let body: serde_json::Value = serde_json::from_slice(&x.body)
                    .map_err(|e| format!("exchange #{}'s body is not JSON: {e}", x.id))?;
                match body.pointer(pointer) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Null) | None => Err(missing(&format!("value at {pointer}"))),
                    Some(v) => Ok(v.to_string()),
                }
            }
        }
    }
}

/// `expect`: what exchanges must come, and how long to wait for them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The hub's message type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The business key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A prefix of the exchange's target (`POST /v1/systems/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusMatch>,
    /// The exchange has no problems (other than those in `ignore`).
    #[serde(default)]
    pub clean: bool,
    /// Problem codes `clean` does not count: what the case itself provoked, such as the
    /// mock's `MOCK_FAULT_DELAY` on the answer a delay fault slowed down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// The exchange has a problem with this code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// How many such exchanges (one by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The body's exact bytes (as UTF-8 text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Values in the body, read as JSON: a JSON pointer to the value it must have
    /// (`{ "/status" = "ACCEPTED" }`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json: BTreeMap<String, serde_json::Value>,
    /// How long to wait, in milliseconds of real time; the runner's default without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capture: BTreeMap<String, Capture>,
}

impl Expect {
    fn check(&self) -> Result<(), String> {
        if self.clean && self.problem.is_some() {
            return Err("`clean = true` and `problem` contradict each other".into());
        }
        if !self.ignore.is_empty() && !self.clean {
            return Err("`ignore` only says which problems `clean = true` does not count".into());
        }
        if self.count == Some(0) {
            return Err("`count = 0` would wait for nothing; there is no step that proves absence".into());
        }
        if let Some(p) = self.json.keys().find(|p| !p.starts_with('/')) {
            return Err(format!("`json` key '{p}' is not a JSON pointer (it starts with /)"));
        }
        if self.direction.is_none() && self.message.is_none() && self.key.is_none() && self.target.is_none() {
            return Err("say which exchange: at least one of direction, message, key or target".into());
        }
        Ok(())
    }

    /// How many exchanges must match.
    pub fn wanted(&self) -> usize {
        self.count.unwrap_or(1) as usize
    }

    /// "an inbound order_ack for O-1, status 2xx, without problems".
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if self.count.unwrap_or(1) > 1 {
            s.push_str(&format!("{} ", self.wanted()));
        } else {
            s.push_str("an ");
        }
        if let Some(d) = self.direction {
            s.push_str(match d {
                Direction::Inbound => "inbound ",
                Direction::Outbound => "outbound ",
            });
        }
        s.push_str(self.message.as_deref().unwrap_or("exchange"));
        if let Some(k) = &self.key {
            s.push_str(&format!(" for {k}"));
        }
        if let Some(t) = &self.target {
            s.push_str(&format!(" to {t}"));
        }
        if let Some(st) = self.status {
            s.push_str(&format!(", status {st}"));
        }
        if self.clean && self.ignore.is_empty() {
            s.push_str(", without problems");
        } else if self.clean {
            s.push_str(&format!(", without problems other than {}", self.ignore.join(", ")));
        }
        if let Some(p) = &self.problem {
            s.push_str(&format!(", with problem {p}"));
        }
        for (pointer, value) in &self.json {
            s.push_str(&format!(", {pointer} = {value}"));
        }
        if self.body.is_some() {
            s.push_str(", with the expected body");
        }
        s
    }
}

/// `expect_state`: a value in the hub's state of a business key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectState {
    /// `order`, `client`, `visit`, ...
    pub kind: String,
    pub key: String,
    /// A JSON pointer into the state; empty, the whole state.
    #[serde(default)]
    pub pointer: String,
    /// The value; absent, any value present (not null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ScenarioError {
        Scenario::from_toml("s.toml", text).expect_err("refused")
    }

    #[test]
    fn a_scenario_reads_with_each_kind_of_step() {
        let s = Scenario::from_toml(
            "s.toml",
            r#"
name = "all steps"
start = "2026-11-02T08:00:00+01:00"

[[steps]]
send = { message = "order", twice = true, fields = { start_date = "${today}" }, capture = { order_id = "key", ref = "/externalReference" } }
[[steps]]
advance = { days = 15, hours = 1 }
[[steps]]
clock = 2026-11-20T08:00:00Z
[[steps]]
fault = { path = "/v1/", times = 2, kind = "status", status = 503 }
[[steps]]
fault = { path = "*", kind = "delay", millis = 300 }
[[steps]]
fault = { path = "*", kind = "reset" }
[[steps]]
expect = { direction = "inbound", message = "order_ack", key = "${order_id}", status = "2xx", clean = true, within_ms = 500, json = { "/orderId" = "${order_id}" } }
[[steps]]
expect = { direction = "inbound", status = 503, problem = "UNAVAILABLE", count = 2 }
[[steps]]
expect_state = { kind = "order", key = "${order_id}", pointer = "/status", equals = "accepted" }
[[steps]]
trigger = "Confirm order ${order_id} ($${literal})"
"#,
        )
        .expect("reads");
        assert_eq!(s.steps.len(), 10);
        assert_eq!(s.lines[0], 5, "each step knows its line: its [[steps]] header");
        assert_eq!(s.start.map(|t| t.to_rfc3339()).as_deref(), Some("2026-11-02T07:00:00+00:00"));
        let Step::Fault(f) = &s.steps[3] else { panic!("a fault") };
        assert_eq!(f.fault(), Fault { path: "/v1/".into(), times: 2, kind: FaultKind::Status { status: 503 } });
        let Step::Expect(e) = &s.steps[6] else { panic!("an expect") };
        assert_eq!(e.status, Some(StatusMatch::Class(2)));
        assert!(e.status.is_some_and(|m| m.matches(Some(202))) && !StatusMatch::Class(2).matches(Some(503)));
        let Step::Send(send) = &s.steps[0] else { panic!("a send") };
        assert_eq!(send.capture.get("ref"), Some(&Capture::Body("/externalReference".into())));
    }

    #[test]
    fn a_misspelt_key_is_refused_at_its_line_naming_the_field() {
        let e = err("name = \"x\"\n\n[[steps]]\nexpect = { message = \"order_ack\", whitin_ms = 5 }\n");
        assert_eq!(e.code(), "SCENARIO_PARSE");
        assert_eq!(e.at().map(|a| a.0), Some(4), "{e}");
        assert!(e.to_string().contains("whitin_ms") && e.to_string().contains("within_ms"), "{e}");
    }

    #[test]
    fn an_unknown_step_a_bad_status_and_a_bad_fault_are_refused_with_their_line() {
        let e = err("name = \"x\"\n[[steps]]\nsned = { message = \"order\" }\n");
        assert_eq!(e.at().map(|a| a.0), Some(3), "{e}");
        assert!(e.to_string().contains("sned") && e.to_string().contains("send"), "{e}");

        let e = err("name = \"x\"\n[[steps]]\nexpect = { message = \"m\", status = \"2yy\" }\n");
        assert_eq!(e.at().map(|a| a.0), Some(3), "{e}");
        assert!(e.to_string().contains("2yy"), "{e}");

        let e = err("name = \"x\"\n[[steps]]\nsend = { message = \"m\" }\n[[steps]]\nfault = { path = \"*\", kind = \"status\" }\n");
        assert_eq!(e.at().map(|a| a.0), Some(4), "{e}");
        assert!(e.to_string().contains("`fault`: a `status` fault needs `status`"), "{e}");

        let e = err("name = \"x\"\nsteps = [\n  { send = { message = \"m\" } },\n  { send = { message = \"m\", capture = { x = \"nope\" } } },\n]\n");
        assert_eq!(e.at().map(|a| a.0), Some(4), "an inline step is found at its own line: {e}");
        assert!(e.to_string().contains("`capture`: cannot capture 'nope'"), "{e}");

        let e = err("name = \"x\"\nstart = \"yesterday\"\n");
        assert_eq!(e.at().map(|a| a.0), Some(2), "{e}");
        assert!(e.to_string().contains("RFC 3339"), "{e}");

        let e = err("[[steps]]\ntrigger = \"x\"\n");
        assert!(e.to_string().contains("missing field `name`"), "{e}");
    }

    #[test]
    fn a_name_nothing_captures_is_refused_when_read_not_when_played() {
        let e = err(
            "name = \"x\"\n[[steps]]\nsend = { message = \"order\", capture = { order_id = \"key\" } }\n[[steps]]\nexpect = { message = \"order_ack\", key = \"${order}\" }\n",
        );
        assert_eq!(e.code(), "SCENARIO_INVALID");
        assert_eq!(e.at().map(|a| a.0), Some(4), "{e}");
        let text = e.to_string();
        assert!(text.contains("step 2") && text.contains("${order}") && text.contains("order_id"), "{text}");
    }

    #[test]
    fn contradictions_in_a_step_are_refused() {
        let e = err("name = \"x\"\n[[steps]]\nexpect = { message = \"m\", clean = true, problem = \"X\" }\n");
        assert!(e.to_string().contains("contradict"), "{e}");
        let e = err("name = \"x\"\n[[steps]]\nexpect = { message = \"m\", count = 0 }\n");
        assert!(e.to_string().contains("absence"), "{e}");
        let e = err("name = \"x\"\n[[steps]]\nexpect = { clean = true }\n");
        assert!(e.to_string().contains("which exchange"), "{e}");
        let e = err("name = \"x\"\n[[steps]]\ncapture = { x = \"key\" }\n");
        assert_eq!(e.code(), "SCENARIO_PARSE");
    }
}
