//! Scenarios, the runner and the reports, played against a fake counterpart: an in-memory
//! journal that plays a vendor well, or in one of the ways vendors go wrong.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carehub_conformance::cli::{run as run_cli, ConformanceArgs};
use carehub_conformance::exchange::{Counterpart, Direction, Exchange, Fault, FaultKind, Problem, SendCommand, Wire};
use carehub_conformance::report::{sha256_hex, write_reports};
use carehub_conformance::scenario::case::{check_id, Catalogue};
use carehub_conformance::scenario::coverage::Universe;
use carehub_conformance::scenario::play::PlayOptions;
use carehub_conformance::scenario::run::{run_cases, Run, RunOptions};
use chrono::{DateTime, TimeZone, Utc};

/// How the fake vendor behaves when the mock sends it an order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Takes the order and confirms it, without problems.
    Good,
    /// Confirms it, but the confirmation has a problem.
    AckWithProblem,
    /// Takes the order and never confirms it.
    NoAck,
}

struct Inner {
    mode: Mode,
    journal: Mutex<Vec<Exchange>>,
    next: AtomicI64,
    clock: Mutex<DateTime<Utc>>,
    faults: Mutex<Vec<Fault>>,
    states: Mutex<BTreeMap<(String, String), serde_json::Value>>,
    /// The last order sent: what a change or an end is about, as in the mock.
    last_order: Mutex<Option<String>>,
}

#[derive(Clone)]
struct Fake(Arc<Inner>);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("an instant")
}

impl Fake {
    fn new(mode: Mode) -> Fake {
        Fake(Arc::new(Inner {
            mode,
            journal: Mutex::new(Vec::new()),
            next: AtomicI64::new(1),
            clock: Mutex::new(t0()),
            faults: Mutex::new(Vec::new()),
            states: Mutex::new(BTreeMap::new()),
            last_order: Mutex::new(None),
        }))
    }

    fn append(
        &self,
        direction: Direction,
        message: &str,
        key: Option<&str>,
        status: u16,
        body: Vec<u8>,
        problems: Vec<Problem>,
    ) -> i64 {
        let id = self.0.next.fetch_add(1, Ordering::SeqCst);
        let at = *self.0.clock.lock().expect("clock");
        let target = match direction {
            Direction::Inbound => "POST /v1/systems/phoniro/messages".to_owned(),
            Direction::Outbound => format!("POST /{message}"),
        };
        self.0.journal.lock().expect("journal").push(Exchange {
            id,
            at,
            direction,
            wire: Wire::Http,
            message_type: Some(message.to_owned()),
            key: key.map(str::to_owned),
            target,
            headers: Vec::new(),
            body,
            status: Some(status),
            response: Vec::new(),
            millis: 3,
            problems,
        });
        id
    }

    /// The vendor confirms an order, a little later, as a real one would.
    fn confirm_later(&self, order: String) {
        let fake = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let body = serde_json::to_vec(
                &serde_json::json!({"type": "orderConfirmation", "orderId": order, "status": "ACCEPTED"}),
            )
            .expect("json");
            match fake.0.mode {
                Mode::Good => {
                    fake.append(Direction::Inbound, "order_ack", Some(&order), 202, body, Vec::new());
                    fake.0.states.lock().expect("states").insert(
                        ("order".into(), order.clone()),
                        serde_json::json!({"id": order, "ack_status": "accepted", "ack_reason": null}),
                    );
                }
                Mode::AckWithProblem => {
                    let problem = Problem {
                        code: "MOCK_UNKNOWN_ORDER".into(),
                        message: "no order O-X was sent".into(),
                        field: Some("/orderId".into()),
                        offset: Some(40),
                    };
                    fake.append(Direction::Inbound, "order_ack", Some(&order), 422, body, vec![problem]);
                }
                Mode::NoAck => {}
            }
        });
    }
}

#[async_trait::async_trait]
impl Counterpart for Fake {
    async fn send(&self, command: &SendCommand) -> anyhow::Result<Vec<i64>> {
        let last = self.0.last_order.lock().expect("last order").clone();
        let key = match command.fields.get("order_id").and_then(|v| v.as_str()) {
            Some(k) => Some(k.to_owned()),
            None if command.message == "order" => Some(format!("O-{:016X}", self.0.next.load(Ordering::SeqCst))),
            None if command.message.starts_with("order_") => last,
            None => None,
        };
        if command.message == "order" {
            *self.0.last_order.lock().expect("last order") = key.clone();
        }
        let body = serde_json::to_vec(&serde_json::json!({"orderId": key})).expect("json");
        let mut ids =
            vec![self.append(Direction::Outbound, &command.message, key.as_deref(), 201, body.clone(), Vec::new())];
        if command.twice {
            ids.push(self.append(Direction::Outbound, &command.message, key.as_deref(), 200, body, Vec::new()));
        }
        if let (Some(order), "order") = (key, command.message.as_str()) {
            self.confirm_later(order);
        }
        Ok(ids)
    }

    async fn exchanges_since(&self, after: i64) -> anyhow::Result<Vec<Exchange>> {
        Ok(self.0.journal.lock().expect("journal").iter().filter(|x| x.id > after).cloned().collect())
    }

    fn now(&self) -> DateTime<Utc> {
        *self.0.clock.lock().expect("clock")
    }

    fn set_clock(&self, at: DateTime<Utc>) {
        *self.0.clock.lock().expect("clock") = at;
    }

    fn fault(&self, fault: Fault) {
        self.0.faults.lock().expect("faults").push(fault);
    }

    async fn state(&self, kind: &str, key: &str) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(self.0.states.lock().expect("states").get(&(kind.to_owned(), key.to_owned())).cloned())
    }
}

fn universe() -> Universe {
    Universe::from_mappings(&carehub_adapters::load_mappings("phoniro", None).expect("phoniro's mappings"))
}

fn options() -> RunOptions {
    RunOptions {
        play: PlayOptions {
            default_within: Duration::from_secs(5),
            poll: Duration::from_millis(10),
            ..PlayOptions::default()
        },
        case_timeout: Duration::from_secs(10),
        target: "http://127.0.0.1:1/vendor".into(),
    }
}

/// A small catalogue: a good case, a case with everything the engine does, and one that
/// expects a body the vendor does not send.
const CATALOGUE: &str = r#"
vendor = "phoniro"

[[cases]]
id = "CONF-PHONIRO-ORDER-001"
title = "An order is taken and confirmed"
why = "mappings/phoniro/order.out.toml"
message = "order"
start = "2026-11-02T08:00:00+01:00"
covers.order = ["orderId", "startDate"]
covers.order_ack = ["orderId", "status"]
steps = [
  { send = { message = "order", capture = { order_id = "key" } } },
  { expect = { direction = "outbound", message = "order", key = "${order_id}", status = "2xx" } },
  { expect = { direction = "inbound", message = "order_ack", key = "${order_id}", status = "2xx", clean = true, json = { "/orderId" = "${order_id}", "/status" = "ACCEPTED" }, within_ms = 2000 } },
]

[[cases]]
id = "CONF-PHONIRO-ORDER_CHANGE-001"
title = "A change after fifteen days, with a fault armed and the state read"
why = "mappings/phoniro/order_change.out.toml"
message = "order_change"
start = "2026-11-02T08:00:00+01:00"
covers.order_change = ["orderId"]
steps = [
  { fault = { path = "/v1/", times = 1, kind = "status", status = 503 } },
  { send = { message = "order", twice = true, capture = { order_id = "key" } } },
  { expect = { direction = "outbound", message = "order", key = "${order_id}", count = 2, status = "2xx" } },
  { expect = { direction = "inbound", message = "order_ack", key = "${order_id}", clean = true, within_ms = 2000, capture = { ack = "id" } } },
  { expect_state = { kind = "order", key = "${order_id}", pointer = "/ack_status", equals = "accepted", within_ms = 2000 } },
  { advance = { days = 15 } },
  { send = { message = "order_change", fields = { order_id = "${order_id}", effective_from = "${today}" } } },
  { expect = { direction = "outbound", message = "order_change", key = "${order_id}", status = 201, body = "{\"orderId\":\"${order_id}\"}" } },
]

[[cases]]
id = "CONF-PHONIRO-ORDER_END-001"
title = "A body that is not the one expected"
why = "mappings/phoniro/order_end.out.toml"
message = "order_end"
covers.order_end = ["orderId"]
steps = [
  { send = { message = "order_end", fields = { order_id = "O-1" } } },
  { expect = { direction = "outbound", message = "order_end", key = "O-1", within_ms = 200, body = "{\"orderId\":\"O-2\"}" } },
]
"#;

async fn run_with(mode: Mode, text: &str, options: &RunOptions) -> (Fake, Run) {
    let fake = Fake::new(mode);
    let catalogue = Catalogue::from_toml("test.toml", text).expect("the test catalogue reads");
    let cases = catalogue.select(&[]).expect("all cases");
    // Bounded: a runner that waited for ever would fail here, not hang the suite.
    let run = tokio::time::timeout(Duration::from_secs(60), run_cases(&fake, &catalogue, &cases, &universe(), options))
        .await
        .expect("the run ends within its cases' timeouts");
    (fake, run)
}

#[tokio::test]
async fn a_good_vendor_passes_and_the_steps_reach_the_counterpart() {
    let (fake, run) = run_with(Mode::Good, CATALOGUE, &options()).await;
    let by_id = |id: &str| run.cases.iter().find(|c| c.id == id).expect("the case ran");

    let first = by_id("CONF-PHONIRO-ORDER-001");
    assert!(first.passed, "{:?}", first.failure);
    assert_eq!(first.exchanges.len(), 2, "the order out and the confirmation in");
    assert!(first.exchanges[1].summary.contains("order_ack") && first.exchanges[1].summary.contains("no problems"));

    let second = by_id("CONF-PHONIRO-ORDER_CHANGE-001");
    assert!(second.passed, "{:?}", second.failure);
    assert_eq!(
        fake.0.faults.lock().expect("faults").as_slice(),
        &[Fault { path: "/v1/".into(), times: 1, kind: FaultKind::Status { status: 503 } }]
    );
    let start = DateTime::parse_from_rfc3339("2026-11-02T08:00:00+01:00").expect("instant").with_timezone(&Utc);
    assert_eq!(fake.now(), start + chrono::Duration::days(15), "the case set the clock, then advanced it 15 days");

    // The third expects a body the vendor does not send: it fails with a byte diff.
    let third = by_id("CONF-PHONIRO-ORDER_END-001");
    let f = third.failure.as_ref().expect("the body differs");
    assert_eq!(f.step, 2);
    assert!(f.reason.contains("a body other than the one expected"), "{}", f.reason);
    let diff = f.diff.as_deref().expect("a diff");
    assert!(diff.contains("first difference at byte 14"), "{diff}");
    assert_eq!(f.exchange, third.exchanges.first().map(|x| x.id), "the exchange that shows it");

    assert_eq!((run.score.passed, run.score.failed, run.score.total), (2, 1, 3));
    assert!((run.score.share - 2.0 / 3.0).abs() < 1e-4);
    assert_eq!(run.coverage.messages.covered, 4, "order, order_ack, order_change, order_end");
    assert_eq!(run.coverage.fields.covered, 6);
    assert!(run.coverage.uncovered_messages.contains(&"visit".to_owned()));
}

#[tokio::test]
async fn a_confirmation_with_a_problem_fails_at_its_step_naming_the_problem() {
    let (_, run) = run_with(Mode::AckWithProblem, CATALOGUE, &options()).await;
    let case = &run.cases[0];
    assert!(!case.passed);
    let f = case.failure.as_ref().expect("a failure");
    assert_eq!(f.step, 3, "the step that expects a clean confirmation");
    assert_eq!(f.line, Some(15), "its line in the catalogue");
    assert!(f.what.starts_with("expect an inbound order_ack for O-"), "{}", f.what);
    assert!(f.reason.contains("status 422, not 2xx"), "{}", f.reason);
    let ack = case.exchanges.iter().find(|x| x.message_type.as_deref() == Some("order_ack")).expect("the ack");
    assert_eq!(f.exchange, Some(ack.id));
}

#[tokio::test]
async fn a_vendor_that_never_confirms_fails_within_the_expect_time() {
    let (_, run) = run_with(Mode::NoAck, CATALOGUE, &options()).await;
    let f = run.cases[0].failure.as_ref().expect("no confirmation");
    assert_eq!(f.step, 3);
    assert!(f.reason.starts_with("within 2000 ms none came, and no exchange like it at all"), "{}", f.reason);
    assert!(!run.cases[1].passed, "the second case waits for a confirmation too");
}

#[tokio::test]
async fn a_case_that_outlives_its_timeout_fails_at_the_step_it_was_in() {
    let text = CATALOGUE.replace("within_ms = 2000", "within_ms = 600000");
    let mut opts = options();
    opts.case_timeout = Duration::from_millis(300);
    let (_, run) = run_with(Mode::NoAck, &text, &opts).await;
    let f = run.cases[0].failure.as_ref().expect("timed out");
    assert_eq!(f.step, 3);
    assert!(f.reason.contains("the case's time (300 ms) ran out during this step"), "{}", f.reason);
    assert_eq!(run.cases[0].exchanges.len(), 1, "what it saw is kept");
}

#[tokio::test]
async fn a_wrong_state_is_named_with_the_value_seen() {
    let text = CATALOGUE
        .replace("equals = \"accepted\"", "equals = \"rejected\"")
        .replace("within_ms = 2000 }", "within_ms = 300 }");
    let (_, run) = run_with(Mode::Good, &text, &options()).await;
    let f = run.cases[1].failure.as_ref().expect("the state differs");
    assert_eq!(f.step, 5);
    assert!(f.reason.contains("has \"accepted\" at /ack_status"), "{}", f.reason);
}

#[tokio::test]
async fn triggers_are_posted_to_the_trigger_url_and_the_harness_acts_on_them() {
    use axum::routing::post;
    let fake = Fake::new(Mode::Good);
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (fake2, seen2) = (fake.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/trigger",
        post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let (fake, seen) = (fake2.clone(), seen2.clone());
            async move {
                seen.lock().expect("seen").push(body);
                // The vendor's harness does what it was told: it pushes a visit.
                fake.append(Direction::Inbound, "visit", Some("phoniro:V-1"), 202, b"{}".to_vec(), Vec::new());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/trigger", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let catalogue = Catalogue::from_toml(
        "t.toml",
        r#"
vendor = "phoniro"
[[cases]]
id = "CONF-PHONIRO-VISIT-001"
title = "A visit is pushed"
why = "mappings/phoniro/visit.in.toml"
message = "visit"
covers.visit = ["visitId"]
steps = [
  { trigger = "Register a visit in ${case}" },
  { expect = { direction = "inbound", message = "visit", status = "2xx", clean = true, within_ms = 3000 } },
]
"#,
    )
    .expect("reads");
    let mut opts = options();
    opts.play.trigger_url = Some(url.clone());
    let cases = catalogue.select(&[]).expect("all");
    let run = run_cases(&fake, &catalogue, &cases, &universe(), &opts).await;
    assert!(run.cases[0].passed, "{:?}", run.cases[0].failure);
    assert_eq!(run.cases[0].instructions, vec!["Register a visit in CONF-PHONIRO-VISIT-001".to_owned()]);
    assert_eq!(
        seen.lock().expect("seen").as_slice(),
        &[serde_json::json!({"case": "CONF-PHONIRO-VISIT-001", "do": "Register a visit in CONF-PHONIRO-VISIT-001"})]
    );

    // A trigger URL that refuses fails the step that posted to it.
    opts.play.trigger_url = Some(url.replace("/trigger", "/nothing-here"));
    let run = run_cases(&fake, &catalogue, &cases, &universe(), &opts).await;
    let f = run.cases[0].failure.as_ref().expect("refused");
    assert_eq!(f.step, 1);
    assert!(f.reason.contains("answered 404"), "{}", f.reason);
}

#[tokio::test]
async fn the_reports_round_trip_parse_and_carry_the_hash() {
    let (_, run) = run_with(Mode::Good, CATALOGUE, &options()).await;
    let dir = tempfile::tempdir().expect("a folder");
    let out = dir.path().join("reports");
    let written = write_reports(&run, &out).expect("written");

    // JSON: the run itself, and the hash is over its bytes.
    let json = std::fs::read(&written.json).expect("json");
    assert_eq!(written.sha256, sha256_hex(&json));
    assert_eq!(written.sha256.len(), 64);
    let back: Run = serde_json::from_slice(&json).expect("the JSON reads back");
    assert_eq!(back, run);

    // JUnit XML: parsed, with the counts of tests and failures.
    let xml = std::fs::read_to_string(&written.junit).expect("junit");
    let (mut testcases, mut failures, mut suite_attrs, mut classnames) = (0, 0, BTreeMap::new(), Vec::new());
    let mut properties = BTreeMap::new();
    let mut reader = quick_xml::Reader::from_str(&xml);
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                let attrs: BTreeMap<String, String> = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("an attribute");
                        (
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            a.unescape_value().expect("escaped properly").into_owned(),
                        )
                    })
                    .collect();
                match e.name().as_ref() {
                    b"testsuite" => suite_attrs = attrs,
                    b"testcase" => {
                        testcases += 1;
                        classnames.push(attrs.get("classname").cloned().unwrap_or_default());
                    }
                    b"failure" => {
                        failures += 1;
                        assert!(attrs
                            .get("message")
                            .is_some_and(|m| m.starts_with("step 2 (expect an outbound order_end")));
                    }
                    b"property" => {
                        properties.insert(attrs["name"].clone(), attrs["value"].clone());
                    }
                    _ => {}
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!((testcases, failures), (3, 1));
    assert_eq!(suite_attrs.get("name").map(String::as_str), Some("phoniro"));
    assert_eq!(suite_attrs.get("tests").map(String::as_str), Some("3"));
    assert_eq!(suite_attrs.get("failures").map(String::as_str), Some("1"));
    assert_eq!(classnames, ["order", "order_change", "order_end"]);
    assert_eq!(properties.get("report.sha256"), Some(&written.sha256));

    // HTML: every case, the hash, the figures; self-contained.
    let html = std::fs::read_to_string(&written.html).expect("html");
    for c in &run.cases {
        assert!(html.contains(&c.id), "{} on the page", c.id);
    }
    assert!(html.contains(&written.sha256));
    assert!(html.contains("66.7%"), "the score");
    assert!(html.contains("first difference at byte 14"), "the diff");
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("<link"),
        "no scripts or external assets"
    );
}

#[test]
fn the_phoniro_catalogue_reads_and_claims_only_what_the_mappings_have() {
    let catalogue = Catalogue::builtin("phoniro").expect("the phoniro catalogue reads");
    assert!(catalogue.cases.len() >= 19, "{} cases", catalogue.cases.len());
    let mut ids = std::collections::BTreeSet::new();
    for c in &catalogue.cases {
        assert!(ids.insert(c.id.clone()), "{} twice", c.id);
        check_id(&c.id, "phoniro", &c.message).expect("a well-formed id");
        assert!(!c.covers.is_empty(), "{} covers something", c.id);
    }
    let universe = universe();
    assert_eq!(catalogue.check_against(&universe), Vec::<String>::new());
    let all: Vec<_> = catalogue.cases.iter().collect();
    let coverage = universe.coverage(all.iter().flat_map(|c| c.covers.iter()));
    assert_eq!(
        coverage.uncovered_messages,
        Vec::<String>::new(),
        "every Phoniro message has a case (the verification report out follows a PEPPOL invoice)"
    );

    let negative: Vec<&str> = catalogue.cases.iter().filter(|c| c.negative).map(|c| c.title.as_str()).collect();
    for what in
        ["wrong role", "twice with one idempotency key", "503", "slow", "reset", "size limit", "encoding", "duplicate"]
    {
        assert!(negative.iter().any(|t| t.contains(what)), "a negative case for {what}: {negative:?}");
    }
}

#[tokio::test]
async fn the_command_runs_the_cases_named_and_writes_the_reports() {
    let fake = Fake::new(Mode::Good);
    let dir = tempfile::tempdir().expect("a folder");
    let args = ConformanceArgs {
        vendor: "phoniro".into(),
        target: "http://127.0.0.1:1/phoniro".into(),
        out: dir.path().to_owned(),
        cases: vec!["CONF-PHONIRO-ORDER-001".into(), "CONF-PHONIRO-ORDER_END-001".into()],
        trigger: None,
        wait: 5,
        case_timeout: 10,
        mappings: None,
    };
    let outcome = run_cli(&args, &fake).await.expect("the run");
    assert_eq!(outcome.run.cases.len(), 2);
    assert!(outcome.run.cases.iter().all(|c| c.passed), "{:?}", outcome.run.cases);
    assert_eq!(outcome.exit_code(), 0);
    assert!(outcome.written.html.exists() && outcome.written.junit.exists() && outcome.written.json.exists());

    let unknown = ConformanceArgs { cases: vec!["CONF-PHONIRO-ORDER-999".into()], ..args.clone() };
    let e = run_cli(&unknown, &fake).await.expect_err("no such case");
    assert!(e.to_string().contains("CONF-PHONIRO-ORDER-999"), "{e}");
    let other = ConformanceArgs { vendor: "nosuch".into(), ..args };
    let e = run_cli(&other, &fake).await.expect_err("no such vendor");
    assert!(e.to_string().contains("no conformance catalogue for vendor 'nosuch'"), "{e}");
}

#[tokio::test]
async fn a_scenario_file_plays_from_where_the_journal_stands() {
    use carehub_conformance::scenario::play::play_scenario;
    use carehub_conformance::scenario::Scenario;
    let fake = Fake::new(Mode::Good);
    fake.append(Direction::Inbound, "order_ack", Some("O-OLD"), 202, Vec::new(), Vec::new());
    let scenario = Scenario::from_toml(
        "retry.toml",
        r#"
name = "an order, and its confirmation"
start = "2026-11-02T08:00:00+01:00"

[[steps]]
send = { message = "order", capture = { order_id = "key" } }

[[steps]]
expect = { direction = "inbound", message = "order_ack", key = "${order_id}", clean = true, within_ms = 2000 }

[[steps]]
expect = { direction = "inbound", message = "order_ack", within_ms = 200 }
"#,
    )
    .expect("reads");
    let (seen, result) = play_scenario(&fake, &scenario, &options().play).await;
    let f = result.expect_err("one confirmation answers one expect, and the old one is not the scenario's");
    assert_eq!(f.step, 3);
    assert_eq!(f.line, Some(11), "the third [[steps]] header");
    assert_eq!(seen.seen.len(), 2, "the order and its confirmation, not what came before");
    assert!(seen.vars.get("order_id").is_some_and(|o| o.starts_with("O-")));
}

#[tokio::test]
async fn a_null_in_the_state_is_not_a_value_and_ignored_codes_do_not_spoil_clean() {
    let fake = Fake::new(Mode::Good);
    let catalogue = Catalogue::from_toml(
        "n.toml",
        r#"
vendor = "phoniro"
[[cases]]
id = "CONF-PHONIRO-ORDER_ACK-001"
title = "a reason that is null is no reason"
why = "mappings/phoniro/order_ack.in.toml"
message = "order_ack"
steps = [
  { send = { message = "order", capture = { order_id = "key" } } },
  { expect = { direction = "inbound", message = "order_ack", key = "${order_id}", clean = true, ignore = ["MOCK_FAULT_DELAY"], within_ms = 2000 } },
  { expect_state = { kind = "order", key = "${order_id}", pointer = "/ack_reason", within_ms = 200 } },
]
"#,
    )
    .expect("reads");
    let cases = catalogue.select(&[]).expect("all");
    let run = run_cases(&fake, &catalogue, &cases, &universe(), &options()).await;
    let f = run.cases[0].failure.as_ref().expect("no reason");
    assert_eq!(f.step, 3, "{f:?}");
    assert!(f.reason.contains("has nothing at /ack_reason"), "{}", f.reason);
}
