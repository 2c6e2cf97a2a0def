//! The SFTP vendors (Procapita, ParaGå) against the mock hub's own drop box: files go over
//! real SFTP on 127.0.0.1, the real hub polls the drop box, and the project's vendor
//! systems (`carehub_devkit::conformance::files`) play the vendor, correct and broken.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use carehub_conformance::cli::{run, ConformanceArgs};
use carehub_conformance::exchange::{Counterpart, Direction, Exchange};
use carehub_conformance::mock::{MockConfig, MockHub, MockOptions};
use carehub_devkit::conformance::files::{FileVendor, Login, Mistake, Vendor};

const START: &str = "2026-11-02T08:00:00+01:00";

/// The mock hub toward `vendor`, its drop box on a port of its own, and the vendor's
/// system logged in to it.
async fn start(vendor: Vendor, mistake: Mistake) -> (MockHub, FileVendor) {
    let name = match vendor {
        Vendor::Procapita => "procapita",
        Vendor::Paraga => "paraga",
    };
    let config =
        MockConfig::parse(&format!("at = \"{START}\"\nsftp_listen = \"127.0.0.1:0\"\n")).expect("the mock's config");
    let hub = MockHub::on_loopback(name, config).await.expect("the mock starts");
    let dropbox = hub.dropbox().expect("a drop box for an SFTP vendor");
    let login = Login { addr: dropbox.addr, user: dropbox.user.clone(), password: dropbox.password.clone() };
    let system = FileVendor::start(vendor, mistake, login).await.expect("the vendor's system");
    (hub, system)
}

/// Polls `f` until it gives a value, for at most 30 s.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

async fn journal(hub: &MockHub) -> Vec<Exchange> {
    hub.exchanges_since(0).await.expect("the journal")
}

async fn harness(system: &FileVendor, what: &str) {
    let answer = reqwest::Client::new()
        .post(system.trigger_url())
        .json(&serde_json::json!({"case": "test", "do": what}))
        .send()
        .await
        .expect("the harness answers");
    assert_eq!(answer.status().as_u16(), 204, "the harness did {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_box_takes_a_vendors_file_answers_with_a_receipt_and_never_reads_a_partial_upload() {
    let (hub, procapita) = start(Vendor::Procapita, Mistake::None).await;
    let root = hub.dropbox().expect("drop box").root.clone();

    // An upload cut off half-way under its temporary name, then the same file whole.
    harness(&procapita, "Upload a decision and lose the connection half-way, then upload it again").await;
    let receipt = eventually("the vendor fetched a receipt", || {
        procapita.fetched().into_iter().find(|f| f.starts_with("kvitto-"))
    })
    .await;
    assert!(receipt.ends_with(".xml"), "{receipt}");

    let seen = journal(&hub).await;
    let inbound: Vec<&Exchange> = seen.iter().filter(|x| x.direction == Direction::Inbound).collect();
    assert_eq!(inbound.len(), 2, "the partial upload and the whole file: {inbound:#?}");
    // Which is journaled first depends on when the drop box sees the cut connection.
    let (cut, whole) = if inbound[0].problems.is_empty() { (inbound[1], inbound[0]) } else { (inbound[0], inbound[1]) };
    let codes: Vec<&str> = cut.problems.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, ["MOCK_PARTIAL_UPLOAD"]);
    assert!(cut.target.ends_with(".xml.part"), "{}", cut.target);
    assert!(cut.response.is_empty(), "the hub never answered the partial file");
    assert_eq!(whole.message_type.as_deref(), Some("decision"));
    assert!(whole.problems.is_empty(), "{:?}", whole.problems);
    assert!(whole.body.windows(1).any(|b| b == [0xC5]), "the file's bytes, as sent in ISO-8859-1 (Å)");
    let key = whole.key.clone().expect("the decision's number");
    assert!(hub.state("decision", &key).await.expect("state").is_some(), "the hub took {key}");
    let receipts = seen
        .iter()
        .filter(|x| x.direction == Direction::Outbound && x.message_type.as_deref() == Some("receipt"))
        .count();
    assert_eq!(receipts, 1, "one receipt, for the one file the hub read");

    // The hub read the whole file once and never the partial one: one file archived, none
    // refused, nothing left in the inbox.
    let archived = files(&root.join("archive"));
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert!(archived[0].ends_with(whole.target.trim_start_matches("inbox/")), "{archived:?}");
    assert_eq!(files(&root.join("error")), Vec::<String>::new());
    assert_eq!(files(&root.join("inbox")), Vec::<String>::new());

    // A partial upload left as it is: journaled at once, and still untouched in the inbox
    // after the hub has taken a later file (so a poll has seen it and passed it by).
    harness(&procapita, "Start uploading a decision and lose the connection half-way").await;
    let last = whole.id.max(cut.id);
    let partial = loop_until(&hub, |x| x.id > last && !x.problems.is_empty()).await;
    assert_eq!(partial.problems[0].code, "MOCK_PARTIAL_UPLOAD");
    let left = partial.target.trim_start_matches("inbox/").to_owned();
    harness(&procapita, "Upload a decision").await;
    eventually("the later file is archived", || (files(&root.join("archive")).len() == 2).then_some(())).await;
    assert_eq!(files(&root.join("inbox")), vec![left.clone()], "the partial file was never taken");
    assert_eq!(std::fs::read(root.join("inbox").join(&left)).expect("the partial file"), partial.body);
    assert_eq!(files(&root.join("error")), Vec::<String>::new(), "nor refused");
    procapita.stop();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_a_temporary_name_and_a_refused_file_are_journaled_with_their_codes() {
    let (hub, procapita) = start(Vendor::Procapita, Mistake::DashedEndDate).await;
    harness(&procapita, "Upload a decision with an end date").await;
    let x = loop_until(&hub, |x| x.direction == Direction::Inbound).await;
    let codes: Vec<&str> = x.problems.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, ["INVALID_DATE"], "{x:#?}");
    assert!(String::from_utf8_lossy(&x.response).starts_with("INVALID_DATE"), "the reason file is the answer");
    procapita.stop();
    hub.stop().await;

    let (hub, procapita) = start(Vendor::Procapita, Mistake::NoTemporaryName).await;
    harness(&procapita, "Upload a decision").await;
    let x = loop_until(&hub, |x| x.direction == Direction::Inbound).await;
    let codes: Vec<&str> = x.problems.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, ["MOCK_NO_TEMPORARY_NAME"], "{x:#?}");
    procapita.stop();
    hub.stop().await;
}

/// Waits for the first journal entry that `matches`.
async fn loop_until(hub: &MockHub, matches: impl Fn(&Exchange) -> bool) -> Exchange {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(x) = journal(hub).await.into_iter().find(|x| matches(x)) {
            return x;
        }
        assert!(Instant::now() < deadline, "no such exchange; journal: {:#?}", journal(hub).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the vendor's whole catalogue against the system; the ids of the failed cases.
async fn failed_cases(vendor: Vendor, mistake: Mistake, wait: u64) -> BTreeSet<String> {
    let (hub, system) = start(vendor, mistake).await;
    let dir = tempfile::tempdir().expect("a folder");
    let name = hub.system();
    let dropbox = hub.dropbox().expect("drop box");
    let args = ConformanceArgs {
        vendor: name.into(),
        target: format!("sftp://{}@{}", dropbox.user, dropbox.addr),
        out: dir.path().to_owned(),
        cases: Vec::new(),
        trigger: Some(system.trigger_url().to_owned()),
        wait,
        case_timeout: 90,
        mappings: None,
    };
    let outcome = run(&args, &hub).await.expect("the run");
    assert!(outcome.run.score.total >= 6, "the whole catalogue ran");
    let failed: BTreeSet<String> = outcome.run.cases.iter().filter(|c| !c.passed).map(|c| c.id.clone()).collect();
    if mistake == Mistake::None {
        let why: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed).collect();
        assert!(why.is_empty(), "{why:#?}");
        assert_eq!(outcome.exit_code(), 0);
    }
    system.stop();
    hub.stop().await;
    failed
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_procapita_passes_its_whole_catalogue() {
    assert_eq!(failed_cases(Vendor::Procapita, Mistake::None, 30).await, set(&[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_paraga_passes_its_whole_catalogue() {
    assert_eq!(failed_cases(Vendor::Paraga, Mistake::None, 30).await, set(&[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_procapita_without_temporary_names_fails_the_temporary_name_case_only() {
    assert_eq!(
        failed_cases(Vendor::Procapita, Mistake::NoTemporaryName, 8).await,
        set(&["CONF-PROCAPITA-DECISION-003"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_procapita_with_dashed_end_dates_fails_the_end_date_case_only() {
    assert_eq!(failed_cases(Vendor::Procapita, Mistake::DashedEndDate, 8).await, set(&["CONF-PROCAPITA-DECISION-002"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraga_without_temporary_names_fails_the_temporary_name_case_only() {
    assert_eq!(failed_cases(Vendor::Paraga, Mistake::NoTemporaryName, 8).await, set(&["CONF-PARAGA-ORDER_ACK-002"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraga_writing_utf8_fails_the_cases_with_swedish_letters_only() {
    // The encoding case's reason, and the headers with Swedish letters: the plan file's
    // (Genomförandeplan upprättad) and the invoice basis's (Belopp (öre)).
    assert_eq!(
        failed_cases(Vendor::Paraga, Mistake::Utf8, 8).await,
        set(&["CONF-PARAGA-INVOICE_LINE-001", "CONF-PARAGA-ORDER_ACK-005", "CONF-PARAGA-PLAN_NOTICE-001"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carehub_mock_for_paraga_prints_its_drop_box_and_the_vendor_logs_in_with_what_it_printed() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_carehub"))
        .args(["mock", "--vendor", "paraga", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.trim_start().starts_with("host key");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines).await.expect("prints in time").expect("joins");
    let sftp = lines.iter().find(|l| l.trim_start().starts_with("sftp ")).expect("an sftp line");
    // `sftp   sftp://paraga@127.0.0.1:PORT (password XYZ)`
    let url = sftp.split_whitespace().nth(1).expect("a URL");
    let (user, addr) = url.trim_start_matches("sftp://").split_once('@').expect("user@address");
    let password = sftp.trim_end_matches(')').split_whitespace().last().expect("a password").to_owned();
    assert_eq!(user, "paraga");
    let host_key = lines.last().expect("a host key line");
    assert!(host_key.contains("SHA256:"), "{host_key}");

    // ParaGå logs in with what was printed and fetches the hub's order file.
    let login = Login { addr: addr.parse().expect("an address"), user: user.to_owned(), password };
    let system = FileVendor::start(Vendor::Paraga, Mistake::None, login).await.expect("the vendor's system");
    let mock_api = lines.iter().find(|l| l.trim_start().starts_with("mock API")).expect("a mock API line");
    let base = mock_api.split_whitespace().last().expect("a URL").trim_end_matches('/').to_owned();
    let sent = reqwest::Client::new()
        .post(format!("{base}/send"))
        .json(&serde_json::json!({"message": "order"}))
        .send()
        .await
        .expect("the mock answers");
    assert!(sent.status().is_success(), "{}", sent.text().await.unwrap_or_default());
    eventually("ParaGå fetched the day's order file", || {
        system.fetched().into_iter().find(|f| f.starts_with("uppdrag-") && f.ends_with(".csv"))
    })
    .await;
    system.stop();
    child.kill().expect("stops");
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mock_restarted_on_the_same_data_folder_keeps_its_drop_box_host_key() {
    let data = tempfile::tempdir().expect("a data folder");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let config = MockConfig::parse(&format!("at = \"{START}\"\nsftp_listen = \"127.0.0.1:0\"\n")).expect("config");
        let hub = MockHub::start(MockOptions {
            vendor: "procapita".into(),
            config,
            listen: Some("127.0.0.1:0".into()),
            data: Some(data.path().to_owned()),
            ..MockOptions::default()
        })
        .await
        .expect("the mock starts");
        seen.push(hub.dropbox().expect("drop box").fingerprint.clone());
        hub.stop().await;
    }
    assert!(seen[0].starts_with("SHA256:"), "{seen:?}");
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn the_file_catalogues_claim_only_what_the_mappings_have_and_cover_the_messages_exchanged() {
    use carehub_conformance::scenario::case::Catalogue;
    use carehub_conformance::scenario::coverage::Universe;
    for (vendor, messages) in [
        ("procapita", &["decision", "order_ack", "plan_notice", "receipt", "verification"][..]),
        ("paraga", &["invoice_line", "order", "order_ack", "plan_notice", "verification"][..]),
    ] {
        let catalogue = Catalogue::builtin(vendor).expect("the catalogue reads");
        let set = carehub_adapters::load_mappings(vendor, None).expect("the mappings load");
        let universe = Universe::from_mappings(&set);
        assert_eq!(catalogue.check_against(&universe), Vec::<String>::new(), "{vendor}");
        let claimed: BTreeSet<&str> =
            catalogue.cases.iter().flat_map(|c| c.covers.keys()).map(String::as_str).collect();
        assert_eq!(claimed, messages.iter().copied().collect(), "{vendor}");
        assert!(catalogue.cases.iter().any(|c| c.negative), "{vendor} has negative cases");
    }
}
