//! The REST provider vendors (Phoniro, Lifecare Mobil Hemtjänst) held to their catalogue over HTTP on 127.0.0.1:
//! the correct system passes every case, each broken one fails exactly the cases named for
//! its mistake, the run's report hash is kept in the mock's journal, the reports are read
//! by a browser and a JUnit parser, and an order acknowledged before its POST is answered
//! is not taken for an unknown order.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use carehub_conformance::cli::{run_on_mock, ConformanceArgs, Outcome};
use carehub_conformance::exchange::{Counterpart, Direction};
use carehub_conformance::mock::{MockConfig, MockHub};
use carehub_devkit::conformance::http::{Flaw, HubAccess, RestVendor, Vendor};
use carehub_model::Clock;
use carehub_server::auth::{Auth, Role};
use serde_json::Value;

#[path = "../support/webdriver.rs"]
#[allow(dead_code)]
mod webdriver;

const START: &str = "2026-11-02T08:00:00+01:00";
const SECRET: &str = "conformance-http-test-secret-0123456789";

/// A vendor's system (with `flaw`, a broken one) and the mock hub in front of it, the hub
/// pointed at the system's `--target` as `carehub conformance` points it, and the system
/// connected as a vendor would be from what the command prints.
async fn system(which: Vendor, flaw: Option<Flaw>) -> (RestVendor, MockHub) {
    system_with(which, flaw, None).await
}

/// [`system`], with the mock's `[tls]` section when given (the system is then given the
/// certificates in `certs/` before it connects).
pub(crate) async fn system_with(which: Vendor, flaw: Option<Flaw>, tls: Option<toml::Table>) -> (RestVendor, MockHub) {
    let vendor = RestVendor::start(which, flaw).await.expect("the vendor's system starts");
    let config = MockConfig {
        at: Some(START.into()),
        jwt_secret: Some(SECRET.into()),
        tls,
        ..carehub_conformance::cli::system_for_target(which.name(), &vendor.base_url).expect("the target")
    };
    let hub = MockHub::on_loopback(which.name(), config).await.expect("the mock starts");
    // A valid token of the wrong role, as a municipality might hand a vendor by mistake.
    let at = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").expect("instant").to_utc();
    let wrong = Auth::new(SECRET, Clock::starting_at(at))
        .issue(which.name(), Role::CaseManagement, Some(which.name()), None, Duration::from_secs(10 * 365 * 86_400))
        .expect("a case-management token");
    vendor.connect(HubAccess {
        url: hub.url().to_owned(),
        system: hub.system().to_owned(),
        token: hub.token().to_owned(),
        wrong_role_token: Some(wrong),
    });
    (vendor, hub)
}

pub(crate) fn args(which: Vendor, vendor: &RestVendor, out: &Path, wait: u64) -> ConformanceArgs {
    ConformanceArgs {
        vendor: which.name().into(),
        target: vendor.base_url.clone(),
        out: out.to_owned(),
        cases: Vec::new(),
        trigger: Some(vendor.trigger_url.clone()),
        wait,
        case_timeout: 90,
        mappings: None,
    }
}

/// The cases that ran and failed (a case that did not apply did neither).
pub(crate) fn failed(outcome: &Outcome) -> BTreeSet<String> {
    outcome.run.cases.iter().filter(|c| !c.passed && c.not_applicable.is_none()).map(|c| c.id.clone()).collect()
}

/// The Phoniro cases that need the mock to serve mTLS (refused client certificates).
pub(crate) const MTLS_CASES: [&str; 2] = ["CONF-PHONIRO-VISIT-004", "CONF-PHONIRO-VISIT-005"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_phoniro_catalogue_passes_against_a_correct_phoniro_and_its_hash_is_kept() {
    let (vendor, hub) = system(Vendor::Phoniro, None).await;
    let dir = tempfile::tempdir().expect("a folder");
    let started = Instant::now();
    let outcome = run_on_mock(&args(Vendor::Phoniro, &vendor, dir.path(), 20), &hub).await.expect("the run");
    println!("the Phoniro catalogue took {:.1} s", started.elapsed().as_secs_f64());
    let failures: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed && c.not_applicable.is_none()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(outcome.run.score.total, 21, "every case of the catalogue ran but those that need mTLS");
    assert_eq!(outcome.exit_code(), 0);
    // Over plain HTTP the cases of refused client certificates do not apply: neither
    // passed nor failed, and said why.
    let not_applicable: BTreeSet<&str> =
        outcome.run.cases.iter().filter(|c| c.not_applicable.is_some()).map(|c| c.id.as_str()).collect();
    assert_eq!(not_applicable, MTLS_CASES.into_iter().collect());
    assert_eq!(outcome.run.score.not_applicable, 2);
    assert!(outcome
        .run
        .cases
        .iter()
        .filter(|c| c.not_applicable.is_some())
        .all(|c| !c.passed && c.not_applicable.as_deref().is_some_and(|w| w.contains("client certificates"))));

    // The run's entry in the mock's journal, over the mock's API and on its page.
    let http = reqwest::Client::new();
    let reports: Value =
        http.get(format!("{}/mock/reports", hub.url())).send().await.expect("reports").json().await.expect("json");
    let entry = &reports[0];
    assert_eq!(entry["sha256"], outcome.written.sha256.as_str());
    assert_eq!(entry["vendor"], "phoniro");
    assert_eq!(entry["passed"], 21);
    assert_eq!(entry["total"], 21);
    assert_eq!(entry["cases"].as_array().map(Vec::len), Some(23));
    assert_eq!(entry["at"].as_str().map(|t| t.starts_with("2026-12-01")), Some(true), "the mock's clock: {entry}");
    let json = std::fs::read(&outcome.written.json).expect("the JSON report");
    let hashed = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&json))
    };
    assert_eq!(hashed, outcome.written.sha256, "the kept hash is the JSON file's");
    let page =
        http.get(format!("{}/mock/journal.html", hub.url())).send().await.expect("page").text().await.expect("text");
    assert!(page.contains(&outcome.written.sha256), "the journal's page shows the run's hash");

    // The reports as their readers meet them.
    junit_counts(&outcome.written.junit, 23, 0, 2);
    let html = std::fs::read_to_string(&outcome.written.html).expect("the HTML report");
    assert!(html.contains("21 of 21 cases passed (2 not applicable)"), "the score names the cases left out");
    assert_eq!(html.matches("<b>Not applicable:</b>").count(), 2, "each such case says why");
    html_opens_without_console_errors(&outcome.written.html).await;
    hub.stop().await;
    vendor.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_phoniro_fails_exactly_the_cases_named_for_its_mistake() {
    let expected = |flaw: Flaw| -> BTreeSet<String> {
        let ids: &[&str] = match flaw {
            Flaw::IgnoresIdempotencyKey => &["CONF-PHONIRO-ORDER-002"],
            Flaw::WrongDateFormat => &["CONF-PHONIRO-DEVIATION-001", "CONF-PHONIRO-DEVIATION-002"],
            Flaw::MissingMandatoryField => &["CONF-PHONIRO-NEED_CHANGE-001"],
            Flaw::CheckDigitOff => &["CONF-PHONIRO-INVOICE_LINE-001"],
            Flaw::AckForUnknownOrder => &["CONF-PHONIRO-ORDER_ACK-006"],
            Flaw::PlanBeforeAck => &["CONF-PHONIRO-PLAN_NOTICE-001"],
            Flaw::PeppolTotalOff => &["CONF-PHONIRO-VERIFICATION-001"],
            // Only over mTLS (the `mtls` module), where these cases apply.
            Flaw::KeepsExpiredCertificate => &[],
        };
        ids.iter().map(|s| (*s).to_owned()).collect()
    };
    let mut wrong = Vec::new();
    for flaw in Flaw::ALL {
        let (vendor, hub) = system(Vendor::Phoniro, Some(flaw)).await;
        let dir = tempfile::tempdir().expect("a folder");
        let started = Instant::now();
        let outcome = run_on_mock(&args(Vendor::Phoniro, &vendor, dir.path(), 4), &hub).await.expect("the run");
        println!("{flaw:?}: the catalogue took {:.1} s", started.elapsed().as_secs_f64());
        let got = failed(&outcome);
        if got != expected(flaw) {
            let why: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed).map(|c| (&c.id, &c.failure)).collect();
            wrong.push(format!("{flaw:?}: failed {got:?}, expected {:?}: {why:#?}", expected(flaw)));
        }
        assert_eq!(outcome.exit_code(), 1);
        if flaw == Flaw::IgnoresIdempotencyKey {
            let order = outcome.run.cases.iter().find(|c| c.id == "CONF-PHONIRO-ORDER-002").and_then(|c| {
                c.exchanges.iter().find(|x| x.direction == Direction::Outbound).and_then(|x| x.key.clone())
            });
            assert_eq!(vendor.times_taken(&order.expect("the order twice delivered")), 2);
        }
        hub.stop().await;
        vendor.stop();
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_lifecare_mobil_catalogue_passes_against_a_correct_lifecare_mobil() {
    let (vendor, hub) = system(Vendor::LifecareMobil, None).await;
    let dir = tempfile::tempdir().expect("a folder");
    let started = Instant::now();
    let outcome = run_on_mock(&args(Vendor::LifecareMobil, &vendor, dir.path(), 20), &hub).await.expect("the run");
    println!("the Lifecare Mobil catalogue took {:.1} s", started.elapsed().as_secs_f64());
    let failures: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed).collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(outcome.run.score.total, 23, "every case of the catalogue ran");
    let coverage = &outcome.run.coverage;
    assert!(
        coverage.uncovered_messages.is_empty() && coverage.uncovered_fields.is_empty(),
        "every message and field of the profile is exercised: {coverage:?}"
    );
    assert_eq!(coverage.share, 1.0);
    junit_counts(&outcome.written.junit, 23, 0, 0);
    let reports: Value =
        reqwest::get(format!("{}/mock/reports", hub.url())).await.expect("reports").json().await.expect("json");
    assert_eq!(reports[0]["sha256"], outcome.written.sha256.as_str());
    hub.stop().await;
    vendor.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_lifecare_mobil_fails_exactly_the_cases_named_for_its_mistake() {
    let expected = |flaw: Flaw| -> BTreeSet<String> {
        let ids: &[&str] = match flaw {
            Flaw::IgnoresIdempotencyKey => &["CONF-LIFECARE_MOBIL-ORDER-002"],
            Flaw::WrongDateFormat | Flaw::CheckDigitOff => {
                &["CONF-LIFECARE_MOBIL-DEVIATION-001", "CONF-LIFECARE_MOBIL-DEVIATION-002"]
            }
            Flaw::MissingMandatoryField => &["CONF-LIFECARE_MOBIL-NEED_CHANGE-001"],
            Flaw::AckForUnknownOrder => &["CONF-LIFECARE_MOBIL-ORDER_ACK-006"],
            Flaw::PlanBeforeAck => &["CONF-LIFECARE_MOBIL-PLAN_NOTICE-001"],
            Flaw::PeppolTotalOff => &["CONF-LIFECARE_MOBIL-VERIFICATION-001"],
            Flaw::KeepsExpiredCertificate => &[],
        };
        ids.iter().map(|s| (*s).to_owned()).collect()
    };
    let mut wrong = Vec::new();
    for flaw in Flaw::ALL {
        let (vendor, hub) = system(Vendor::LifecareMobil, Some(flaw)).await;
        let dir = tempfile::tempdir().expect("a folder");
        let started = Instant::now();
        let outcome = run_on_mock(&args(Vendor::LifecareMobil, &vendor, dir.path(), 4), &hub).await.expect("the run");
        println!("{flaw:?}: the catalogue took {:.1} s", started.elapsed().as_secs_f64());
        let got = failed(&outcome);
        if got != expected(flaw) {
            let why: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed).map(|c| (&c.id, &c.failure)).collect();
            wrong.push(format!("{flaw:?}: failed {got:?}, expected {:?}: {why:#?}", expected(flaw)));
        }
        hub.stop().await;
        vendor.stop();
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A Phoniro that confirms an order before it answers the order's POST: the mock takes
/// the order as sent from the moment the hub starts delivering it, so the confirmation is
/// clean. The vendor's answer waits for the hub's answer to the confirmation, so the
/// confirmation is certain to come first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_sent_before_the_orders_answer_is_for_a_known_order() {
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Json;
    use std::sync::{Arc, Mutex};

    type Hub = Arc<Mutex<Option<(String, String)>>>;
    async fn order(State(hub): State<Hub>, Json(body): Json<Value>) -> StatusCode {
        let Some((url, token)) = hub.lock().expect("hub").clone() else { return StatusCode::SERVICE_UNAVAILABLE };
        let ack = serde_json::json!({"type": "orderConfirmation", "orderId": body["orderId"], "status": "ACCEPTED",
                                     "confirmedAt": "2026-11-02T09:15:00+01:00"});
        let answer = reqwest::Client::new().post(url).bearer_auth(token).json(&ack).send().await;
        match answer {
            Ok(a) if a.status().is_success() => StatusCode::CREATED,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
    let hub_at: Hub = Arc::default();
    let app = axum::Router::new().route("/api/v1/orders", post(order)).with_state(hub_at.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/api/v1", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = MockConfig::parse(&format!("at = \"{START}\"\n[system]\nbase_url = \"{base}\"\napi_key = \"k\"\n"))
        .expect("config");
    let hub = MockHub::on_loopback("phoniro", config).await.expect("the mock starts");
    *hub_at.lock().expect("hub") =
        Some((format!("{}/v1/systems/{}/messages", hub.url(), hub.system()), hub.token().to_owned()));

    let ids = hub
        .send(&carehub_conformance::exchange::SendCommand { message: "order".into(), ..Default::default() })
        .await
        .expect("sent");
    let all = hub.exchanges_since(0).await.expect("journal");
    let delivery = all.iter().find(|x| x.id == ids[0]).expect("the delivery");
    assert_eq!(delivery.status, Some(201), "the vendor took the order once its confirmation was taken");
    let ack = all
        .iter()
        .find(|x| x.direction == Direction::Inbound && x.message_type.as_deref() == Some("order_ack"))
        .expect("the confirmation");
    assert!(ack.id < delivery.id, "the confirmation was journaled before the order's answer");
    assert_eq!(ack.key, delivery.key);
    assert!(ack.problems.is_empty(), "{:?}", ack.problems);
    hub.stop().await;
}

/// The JUnit XML read by Python's junitparser (the venv scripts/test makes): its tests,
/// failures and skipped (the cases that did not apply).
pub(crate) fn junit_counts(path: &Path, tests: usize, failures: usize, skipped: usize) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-python/bin/python");
    let script = "import sys\nfrom junitparser import JUnitXml\nx = JUnitXml.fromfile(sys.argv[1])\n\
                  t = f = k = 0\nfor s in (x if hasattr(x, '__iter__') else [x]):\n    t += s.tests; f += s.failures; k += s.skipped\n\
                  print(t, f, k)\n";
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; scripts/test makes the venv with junitparser", python.display()));
    assert!(out.status.success(), "junitparser: {}", String::from_utf8_lossy(&out.stderr));
    let counts = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        counts,
        format!("{tests} {failures} {skipped}"),
        "tests, failures and skipped as junitparser counts them"
    );
}

/// The HTML report opened from disk in headless Chromium, with no console errors.
async fn html_opens_without_console_errors(path: &Path) {
    let profile = tempfile::tempdir().expect("a folder");
    let browser = webdriver::Browser::start(profile.path()).await;
    browser.goto(&format!("file://{}", path.display())).await;
    let text = browser.page_text().await;
    assert!(text.contains("CONF-PHONIRO-ORDER-001"), "the page lists the cases");
    // The report has no error collector of its own (the console's script sets one), so
    // only what the browser logged counts.
    let errors: Vec<String> =
        browser.errors().await.into_iter().filter(|e| !e.contains("the console script did not load")).collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    browser.quit().await;
}

/// `carehub conformance` as a vendor runs it: the binary starts the mock toward the
/// vendor's `--target` on the `--listen` address, prints the hub's URL and token (which the
/// vendor's system is configured with as they appear), runs the cases and exits 0 when all
/// passed, 1 when one failed, 2 for a mistake in the arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_runs_the_cases_against_the_target_and_exits_by_the_outcome() {
    use tokio::io::AsyncBufReadExt;

    let bin = env!("CARGO_BIN_EXE_carehub");
    let out = tokio::process::Command::new(bin)
        .args(["conformance", "--vendor", "nobody", "--target", "http://127.0.0.1:9/api", "--out"])
        .arg(std::env::temp_dir())
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "an unknown vendor is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("phoniro"), "the error names the vendors known");

    for (flaw, code) in [(None, 0), (Some(Flaw::PeppolTotalOff), 1)] {
        let vendor = RestVendor::phoniro(flaw).await.expect("the vendor's system");
        let dir = tempfile::tempdir().expect("a folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut child = tokio::process::Command::new(bin)
            .args([
                "conformance",
                "--vendor",
                "phoniro",
                "--target",
                &vendor.base_url,
                "--trigger",
                &vendor.trigger_url,
            ])
            .args(["--cases", "CONF-PHONIRO-ORDER-001,CONF-PHONIRO-VERIFICATION-001", "--wait", "5"])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--out"])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut printed = Vec::new();
        while let Some(line) = lines.next_line().await.expect("reads") {
            if let Some(token) = line.trim().strip_prefix("token") {
                vendor.connect(HubAccess {
                    url: format!("http://127.0.0.1:{port}"),
                    system: "phoniro".into(),
                    token: token.trim().to_owned(),
                    wrong_role_token: None,
                });
            }
            printed.push(line);
        }
        let status = child.wait().await.expect("exits");
        let printed = printed.join("\n");
        assert_eq!(status.code(), Some(code), "{flaw:?}:\n{printed}");
        assert!(printed.contains(&format!("127.0.0.1:{port}/v1/systems/phoniro/messages")), "{printed}");
        let json = std::fs::read(dir.path().join("conformance-phoniro.json")).expect("the JSON report");
        let hash = {
            use sha2::Digest;
            format!("{:x}", sha2::Sha256::digest(&json))
        };
        assert!(printed.contains(&hash), "the report's hash is printed: {printed}");
        assert!(printed.contains("kept in the mock's journal as run 1"), "{printed}");
        vendor.stop();
    }
}
