//! Health, readiness, metrics, the OpenAPI document, `carehub check` and the demo.

use reqwest::StatusCode;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn health_readiness_metrics_and_openapi_answer() {
    let phoniro = MockServer::start().await;
    let hub = TestHub::start(&phoniro.uri(), &phoniro.uri()).await;
    let (status, body) = hub.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, body) = hub.get("/readyz", None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    let resp = hub
        .http
        .get(format!("{}/metrics", hub.url))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("metrics");
    assert!(resp.headers()["content-type"].to_str().unwrap_or("").starts_with("application/openmetrics-text"));
    let text = resp.text().await.expect("text");
    assert!(text.contains("carehub_outbox{node=\"test\",state=\"pending\"} 0"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    let (status, doc) = hub.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for p in [
        "/v1/systems/{system}/messages",
        "/v1/messages",
        "/v1/messages/{id}",
        "/v1/orders/{id}/trace",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
    assert!(doc["components"]["securitySchemes"].get("bearer").is_some());
    let (status, body) = hub.get("/v1/nothing", None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
}

#[tokio::test]
async fn check_reaches_every_system_and_reports_every_config_problem() {
    let up = MockServer::start().await;
    let hub = TestHub::start(&up.uri(), "http://127.0.0.1:9").await;
    let out = carehub(&["check", "--config", hub.config_path.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "combine is unreachable: {stdout}");
    assert!(stdout.contains("configuration: ok (5 systems, 3 providers)"), "{stdout}");
    for vendor in ["treserva", "combine"] {
        let (files, samples) = mapping_counts(vendor);
        assert!(stdout.contains(&format!("mappings {vendor}: {files} files, {samples} samples pass")), "{stdout}");
    }
    assert!(stdout.contains("system phoniro (phoniro): reachable"), "{stdout}");
    assert!(stdout.contains("system combine (combine): FAILED: transient: cannot connect"), "{stdout}");
    if hub.database.is_none() {
        assert!(stdout.contains("database: ok (SQLite file "), "{stdout}");
    }

    let bad = hub.dir.path().join("bad.toml");
    std::fs::write(&bad, "[hub]\nlisten = 5\n[[systems]]\nname = \"a\"\nvendor = \"visma\"\n").expect("write");
    let out = carehub(&["check", "--config", bad.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains(
            "unknown vendor 'visma', known: combine, treserva, procapita, lifecare, phoniro, lifecare-mobil, paraga"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("jwt_secret"), "{stderr}");
    assert!(stderr.contains("[hub]"), "{stderr}");
}

#[tokio::test]
async fn secrets_come_from_a_file_and_from_the_environment() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, ResponseTemplate};
    let phoniro = MockServer::start().await;
    // Orders reach Phoniro only with the key from the environment.
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .and(header("authorization", "Bearer key-from-the-environment"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&phoniro)
        .await;
    let dir = tempfile::tempdir().expect("dir");
    let config_path = dir.path().join("carehub.toml");
    std::fs::write(dir.path().join("jwt.secret"), format!("{SECRET}\n")).expect("write the key");
    let text = config_text(&dir.path().join("carehub.db"), &phoniro.uri(), &phoniro.uri(), &Options::default())
        .replace(&format!("jwt_secret = \"{SECRET}\""), "jwt_secret_file = \"jwt.secret\"")
        .replace("api_key = \"phoniro-test-key\"", "api_key_env = \"CAREHUB_TEST_PHONIRO_KEY\"");
    std::fs::write(&config_path, &text).expect("write config");

    // The binary: the variable set for it alone, then missing.
    let config = config_path.to_str().expect("path");
    let env = [("CAREHUB_TEST_PHONIRO_KEY", "key-from-the-environment")];
    let out = carehub_with_env(&["check", "--offline", "--config", config], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = carehub(&["check", "--offline", "--config", config]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("api_key_env: the environment variable CAREHUB_TEST_PHONIRO_KEY is not set"), "{stderr}");

    // A hub on that configuration: tokens signed with the key from the file are taken, and
    // Phoniro gets the key from the environment.
    let lookup = |var: &str| env.iter().find(|(k, _)| *k == var).map(|(_, v)| (*v).to_owned());
    let config = carehub_server::config::Config::load_with_env(&config_path, &lookup).expect("valid");
    let clock = carehub_model::Clock::starting_at(test_instant());
    let runtime = carehub_server::assemble::build(&config, clock.clone()).expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hub = carehub_server::run::start(runtime, listener).await.expect("start");
    let token = carehub_server::auth::Auth::new(SECRET, clock)
        .issue(
            "t",
            carehub_server::auth::Role::CaseManagement,
            Some("combine"),
            None,
            std::time::Duration::from_secs(60),
        )
        .expect("token");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/systems/combine/messages", hub.url()))
        .bearer_auth(token)
        .body(SPEC_DECISION)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    eventually("the order reaches Phoniro with the key", || async {
        let got = phoniro.received_requests().await.unwrap_or_default();
        got.iter().any(|r| r.url.path() == "/api/orders").then_some(())
    })
    .await;
    hub.stop().await;
}

#[test]
fn check_names_six_faults_at_once_each_at_its_line() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("six.toml");
    let text = format!(
        "[hub]\nlisten = \"nowhere\"\n[hub.tls]\ncert = \"missing-cert.pem\"\nkey = \"{key}\"\n\
         [auth]\njwt_secret = \"{SECRET}\"\n[delivery]\nmax_attempts = 0\n\
         [[systems]]\nname = \"combine\"\nvendor = \"visma\"\n\
         [[systems]]\nname = \"phoniro\"\nvendor = \"phoniro\"\nbase_url = \"http://127.0.0.1:1\"\n\
         [[providers]]\norg = \"5599000015\"\nname = \"Bad AB\"\nsystem = \"phoniro\"\n[extra]\n",
        key = cert_file("hub.key").display()
    );
    std::fs::write(&path, text).expect("write");
    let out = carehub(&["check", "--offline", "--config", path.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let prefix = format!("{}:", path.display());
    let lines: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| l.split(':').next().and_then(|n| n.parse().ok()).expect("a line number"))
        .collect();
    // listen, the TLS certificate, max_attempts, the vendor, the org number, [extra].
    assert_eq!(lines, vec![2, 4, 9, 12, 18, 21], "{stderr}");
    assert!(stderr.contains("6 problem(s)"), "{stderr}");
    for needle in ["[hub] listen", "no such file", "max_attempts", "unknown vendor 'visma'", "org:", "'extra'"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
}

/// Copies a folder tree.
/// A vendor's built-in mapping files and the samples they carry, counted from the files'
/// text (not by the engine that `carehub check` runs), so the expected figures follow the
/// folder as mappings are added.
fn mapping_counts(vendor: &str) -> (usize, usize) {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings").join(vendor);
    let mut files = 0;
    let mut samples = 0;
    for entry in std::fs::read_dir(&folder).expect("the vendor's mapping folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            files += 1;
            let text = std::fs::read_to_string(&path).expect("a mapping file");
            samples += text.lines().filter(|l| l.trim_start().starts_with("[[samples]]")).count();
        }
    }
    (files, samples)
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[tokio::test]
async fn a_missing_order_mapping_fails_check_and_is_the_hubs_fault_at_run_time() {
    let phoniro = MockServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let mappings = dir.path().join("mappings");
    copy_tree(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings"), &mappings);
    std::fs::remove_file(mappings.join("phoniro/order.out.toml")).expect("remove");
    let config_path = dir.path().join("carehub.toml");
    let text = config_text(&dir.path().join("carehub.db"), &phoniro.uri(), &phoniro.uri(), &Options::default())
        .replacen("[hub]\n", &format!("[hub]\nmappings_dir = \"{}\"\n", mappings.display()), 1);
    std::fs::write(&config_path, text).expect("write");

    let out = carehub(&["check", "--offline", "--config", config_path.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("phoniro/order.out.toml: system phoniro (phoniro) has no outbound order mapping"),
        "{stdout}"
    );

    // At run time a decision for a Phoniro provider is refused as the hub's fault, not
    // blamed on Combine, and logged as rejected with that code.
    let config = carehub_server::config::Config::load(&config_path).expect("valid");
    let clock = carehub_model::Clock::starting_at(test_instant());
    let runtime = carehub_server::assemble::build(&config, clock.clone()).expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hub = carehub_server::run::start(runtime, listener).await.expect("start");
    let auth = carehub_server::auth::Auth::new(SECRET, clock);
    let ttl = std::time::Duration::from_secs(60);
    let token = auth.issue("t", carehub_server::auth::Role::CaseManagement, Some("combine"), None, ttl).expect("token");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/v1/systems/combine/messages", hub.url()))
        .bearer_auth(&token)
        .body(SPEC_DECISION)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "HUB_MISCONFIGURED", "{body}");
    let admin = auth.issue("t", carehub_server::auth::Role::Admin, None, None, ttl).expect("token");
    let entry: serde_json::Value = http
        .get(format!("{}/v1/messages/{}", hub.url(), body["message_id"]))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!((entry["status"].as_str(), entry["error_code"].as_str()), (Some("rejected"), Some("HUB_MISCONFIGURED")));
    hub.stop().await;
}

/// A small configuration for `check`: Combine, and Phoniro with a provider routed to it.
fn two_systems(hub_extra: &str, combine_extra: &str, phoniro_extra: &str) -> String {
    format!(
        "[hub]\n{hub_extra}\n[auth]\njwt_secret = \"{SECRET}\"\n\
         [[systems]]\nname = \"combine\"\n{combine_extra}\ncallback_url = \"http://127.0.0.1:1/cb\"\n\
         [[systems]]\nname = \"phoniro\"\n{phoniro_extra}\nbase_url = \"http://127.0.0.1:2\"\n\
         [[providers]]\norg = \"559900-0014\"\nname = \"Omsorg AB\"\nsystem = \"phoniro\"\n"
    )
}

#[test]
fn check_goes_on_to_the_mapping_files_when_the_configuration_has_problems() {
    let dir = tempfile::tempdir().expect("dir");
    let mappings = dir.path().join("mappings");
    copy_tree(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings"), &mappings);
    // One required mapping gone, and another broken on its third line.
    std::fs::remove_file(mappings.join("phoniro/order.out.toml")).expect("remove");
    let ack = mappings.join("phoniro/order_ack.in.toml");
    let text = std::fs::read_to_string(&ack).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "format = [json");
    std::fs::write(&ack, lines.join("\n")).expect("write");
    let path = dir.path().join("carehub.toml");
    let config = two_systems(
        "mappings_dir = \"mappings\"\nlisten = \"nowhere\"",
        "vendor = \"combine\"",
        "vendor = \"phoniro\"",
    );
    std::fs::write(&path, config).expect("write");

    let out = carehub(&["check", "--offline", "--config", path.to_str().expect("path")]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    // The configuration's problem at its line ...
    assert!(stderr.contains(&format!("{}:3:1: [hub] listen: 'nowhere'", path.display())), "{stderr}");
    assert!(stderr.contains("1 problem(s) in the configuration"), "{stderr}");
    // ... and in the same run the broken file at its line and column, the missing mapping
    // at the path that would fill it, and the other vendor's samples.
    let folder = mappings.join("phoniro");
    assert!(stdout.contains(&format!("{}/order_ack.in.toml:3:11: ", folder.display())), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "mappings: MISSING: {}/order.out.toml: system phoniro (phoniro) has no outbound order mapping",
            folder.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("mappings combine: {} files,", mapping_counts("combine").0)), "{stdout}");
    // The broken file still counts for the acknowledgements it maps: not missing as well.
    assert!(!stdout.contains("has no inbound order_ack mapping"), "{stdout}");
    assert!(stdout.contains("configuration: FAILED"), "{stdout}");
}

#[test]
fn check_reports_a_system_without_a_vendor_and_the_rest_of_its_entry() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("carehub.toml");
    std::fs::write(&path, two_systems("", "vendor = \"combine\"", "colour = \"blue\"")).expect("write");
    let out = carehub(&["check", "--offline", "--config", path.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let at = |line: usize| format!("{}:{line}:1: [[systems]] phoniro: ", path.display());
    assert!(stderr.contains(&format!("{}needs vendor = \"...\"", at(9))), "{stderr}");
    assert!(stderr.contains(&format!("{}unknown key 'colour' (no vendor has it)", at(11))), "{stderr}");
    assert!(stderr.contains("2 problem(s) in the configuration"), "{stderr}");
    // The provider routed to it is not told the system is missing too.
    assert!(!stderr.contains("not configured"), "{stderr}");
}

#[test]
fn the_example_configuration_is_accepted_by_check() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../carehub.toml");
    let config = carehub_server::config::Config::load(&path).expect("the example config is valid");
    assert!(config.routes().get("5599000014").is_some_and(|r| r.system == "phoniro-ekero"));
    let out = carehub(&["check", "--offline", "--config", path.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("configuration: ok (2 systems, 2 providers)"), "{stdout}");
    assert!(stdout.contains("systems: not contacted (--offline)"), "{stdout}");
}

#[test]
fn the_demo_runs_end_to_end() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("demo.db");
    // On the hub's clock, at an instant of the test's choosing: the night the clocks go
    // forward, so February 2027 is the month of visits and invoices.
    let out = carehub(&["demo", "--db", db.to_str().expect("path"), "--at", "2027-03-28T01:30:00+01:00"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "accepted and logged before the answer: 36",
        "422 INVALID_PERSONAL_IDENTITY_NUMBER",
        "400 DTD_FORBIDDEN",
        "422 UNKNOWN_PROVIDER",
        "200 duplicate",
        "phoniro-soder  8 orders: 0 delivered at once, 0 after a retry, 8 dead-lettered",
        "resends the 8 dead letters",
        "delivered 8, still dead 0; phoniro-soder took 8 orders for 8 replayed",
        "not confirmed in time 4",
        // On the hub's clock: most providers answer within their deadlines, four late on purpose.
        "answered by the execute-by date 35, after it 4 (on purpose); plans by the due date 30, after it 4",
        "treserva-danderyd (SOAP): 3 decisions answered RegistreraBeslutResponse, 1 answered with a SOAP fault INVALID_PERSONAL_IDENTITY_NUMBER",
        "treserva-danderyd got 3 TaEmotKvittens",
        "procapita-sodertalje (SFTP): 3 files archived, 1 refused into the error folder with a reason file, 4 receipts uploaded",
        "paraga-stockholm (SFTP): 3 orders in the day's CSV file",
        "procapita-sodertalje got 3 Verkställighet files (ISO-8859-1) for 3 accepted orders",
        "audit verify: ok",
    ] {
        assert!(stdout.contains(line), "the demo's output lacks {line:?}:\n{stdout}");
    }
    // A month of visits: the planted faults come back with their codes, the provider with
    // many manual registrations is marked, and the demo found every figure as planted.
    // A decision's life: a pause, raised minutes, a switch to a provider on another Phoniro
    // system and an end become order changes, ends and a new order; the providers' reports
    // reach Combine.
    let life = stdout.split("7. A decision's life in ").nth(1).unwrap_or_default();
    for line in [
        "a hospital stay: no help 2027-02-05 to 2027-02-12: 202 accepted",
        "minutes raised from 2027-02-10 after a fall",
        "derived: 2 order changes and 2 order ends to the providers' systems (2 and 2 delivered; Phoniro took 2 and 2)",
        "ends 2027-02-16 at phoniro-norr, ",
        "starts 2027-02-17 at phoniro-soder (accepted,",
        "Combine received 3 deviations (Avvikelse) and 1 change of need (Bevakning)",
    ] {
        assert!(life.contains(line), "the demo's decision life lacks {line:?}:\n{stdout}");
    }
    let visits = stdout.split("8. Visits in ").nth(1).unwrap_or_default();
    for line in [
        "1 moved to another home on ",
        "feed pages (1 served twice)",
        "(1 push retried)",
        "paraga-stockholm  ",
        "daily files (Windows-1252 CSV over SFTP)",
        "copies recognised ",
        "VIS001 ",
        "VIS002     3  tag registered to another client",
        "VIS004     1  ",
        "VIS005     2  the same staff member in two homes at once",
        "VIS007 ",
        "VIS008     3  a manual registration without a reason",
        "VIS009     1  no active order for the client at the provider that day",
        "42 clients at their providers, 38 within 80-120%; planted under 2, over 2",
        "visit reports on to case management: ",
        "Manual registrations, ",
        "every figure above is what the demo planted",
    ] {
        assert!(visits.contains(line), "the demo's visits lack {line:?}:\n{stdout}");
    }
    assert!(!visits.contains("MISMATCH"), "{stdout}");
    let marked: Vec<&str> = visits.lines().filter(|l| l.contains("<- over the 10% threshold")).collect();
    assert_eq!(marked.len(), 1, "one provider over the threshold:\n{stdout}");
    assert!(marked[0].trim_start().starts_with("Hemtjänst Norr AB"), "{stdout}");
    // Invoices: the over-biller is found (INV001) and its credit note takes one line's
    // excess back; the provider with many manual registrations is reported (INV003).
    assert!(
        stdout.contains("9. Invoices for February 2027 on 2027-03-05"),
        "the demo's month follows its clock:\n{stdout}"
    );
    let invoices = stdout.split("9. Invoices for ").nth(1).unwrap_or_default();
    let line =
        |who: &str, what: &str| invoices.lines().find(|l| l.contains(who) && l.contains(what)).unwrap_or_default();
    let count = |l: &str, code: &str| -> usize {
        l.split(&format!("{code} ×"))
            .nth(1)
            .and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .unwrap_or(0)
    };
    let over = line("Omsorgshuset", "a tenth over on 3 orders");
    let credited = line("Omsorgshuset", "after credit note K1 for line");
    assert!(count(over, "INV001") >= 1, "over-billing is found: {stdout}");
    assert_eq!(
        count(credited, "INV001"),
        count(over, "INV001") - 1,
        "the credit note takes line 1's excess back: {stdout}"
    );
    assert!(line("Hemtjänst Norr AB", "as performed").contains("INV003 ×1"), "{stdout}");
    assert!(!line("Hemtjänst Norr AB", "as performed").contains("INV001"), "{stdout}");
    // The planted under-performer at Norr is the one order under 80% of its grant (INV006).
    assert!(line("Hemtjänst Norr AB", "as performed").contains("INV006 ×1"), "{stdout}");
    // The follow-up reports what was planted: most clients within their granted time, the
    // planted outliers outside it, and the providers' answers mostly in time.
    for line in [
        "42 clients: granted ",
        "within 80-120% of granted 38, under 2, over 2",
        "plans due 41: on time 29, late 4, missing 8; orders to confirm 43: on time 35, late 4, not confirmed 4",
        "every figure above is what the demo planted",
    ] {
        assert!(invoices.contains(line), "the demo's follow-up lacks {line:?}:\n{stdout}");
    }
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
    // No personal identity number is printed, with or without its dash.
    let pnrs: std::collections::HashSet<String> = test_pnrs().into_iter().collect();
    let squeezed = stdout.replace('-', "");
    for run in squeezed.split(|c: char| !c.is_ascii_digit()).filter(|r| r.len() >= 12) {
        assert!(
            (0..=run.len() - 12).all(|i| !pnrs.contains(&run[i..i + 12])),
            "the demo printed a personal identity number:\n{stdout}"
        );
    }
    // The database it kept verifies on its own.
    let verify = carehub(&["audit", "verify", "--db", db.to_str().expect("path")]);
    assert!(verify.status.success(), "{verify:?}");
}

/// Checks `text` the way a strict classic (0.0.4) parser reads it: each family's `# HELP`
/// and `# TYPE` name it before its samples, each sample belongs to the family above it
/// (a counter's samples carry the family's own `_total` name; a histogram's are its
/// `_bucket`, `_sum` and `_count`), and nothing else is there. The families and their types.
fn classic_families(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut families = std::collections::BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if families.contains_key(name) {
                return Err(at("a family described twice"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("a TYPE line without a type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at("not a classic type"));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("a counter family not named _total"));
            }
            if families.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(at("a family typed twice"));
            }
            current = Some((name.to_owned(), kind.to_owned()));
        } else if line.starts_with('#') {
            return Err(at("a comment a classic parser does not know"));
        } else if !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("a sample without a value"))?;
            if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
                return Err(at("not a number"));
            }
            let name = series.split('{').next().unwrap_or("");
            if series.contains('{') && !series.ends_with('}') {
                return Err(at("unclosed labels"));
            }
            let (family, kind) = current.as_ref().ok_or_else(|| at("a sample before any TYPE"))?;
            let allowed: Vec<String> = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{family}{s}")).collect(),
                "summary" => vec![family.clone(), format!("{family}_sum"), format!("{family}_count")],
                _ => vec![family.clone()],
            };
            if !allowed.iter().any(|a| a == name) {
                return Err(at(&format!("a sample outside its family {family} ({kind})")));
            }
        }
    }
    Ok(families)
}

#[tokio::test]
async fn metrics_answer_the_classic_format_with_request_delivery_build_and_poll_metrics() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    Mock::given(method("GET"))
        .and(path("/api/visits"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"type": "visitPage", "visits": [], "nextCursor": null})),
        )
        .mount(&vendor)
        .await;
    let options = Options { phoniro_extra: "visits_poll_seconds = 1".into(), ..Options::default() };
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let (status, body) = hub.post("combine", SPEC_DECISION, Some(&hub.system_token("combine"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let order = hub.order_id("DEC-2026-0001").await;
    hub.wait_for_order_status(&order, "delivered").await;

    // Scraped without asking for OpenMetrics (as a classic Prometheus does): the classic
    // format, once the feed poller has polled.
    let text = eventually("the feed poller's last success is shown", || async {
        let resp = hub.http.get(format!("{}/metrics", hub.url)).header("accept", "text/plain").send().await.ok()?;
        assert_eq!(resp.headers()["content-type"].to_str().unwrap_or(""), "text/plain; version=0.0.4; charset=utf-8");
        let text = resp.text().await.ok()?;
        text.contains("carehub_poller_last_success_timestamp_seconds{node=\"test\",system=\"phoniro\",kind=\"feed\"}")
            .then_some(text)
    })
    .await;
    let families = classic_families(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (family, kind) in [
        ("carehub_messages_total", "counter"),
        ("carehub_delivery_attempts_total", "counter"),
        ("carehub_http_request_duration_seconds", "histogram"),
        ("carehub_delivery_latency_seconds", "histogram"),
        ("carehub_build_info", "gauge"),
        ("carehub_poller_last_success_timestamp_seconds", "gauge"),
    ] {
        assert_eq!(families.get(family).map(String::as_str), Some(kind), "{family}:\n{text}");
    }
    // The poll's time is the hub's clock (set to December 2026), not the machine's.
    let polled = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "carehub_poller_last_success_timestamp_seconds{node=\"test\",system=\"phoniro\",kind=\"feed\"} ",
            )
        })
        .and_then(|v| v.parse::<i64>().ok())
        .expect("a poll time");
    let clock = hub.clock.now().timestamp();
    assert!((clock - 60..=clock).contains(&polled), "polled at {polled}, the hub's clock says {clock}");
    assert!(
        text.contains(&format!("carehub_build_info{{node=\"test\",version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // The order's status was read (route, not path) and the decision posted.
    assert!(
        text.contains(
            "carehub_http_request_duration_seconds_count{node=\"test\",route=\"/v1/orders/{id}\",method=\"GET\",status=\"2xx\"} "
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "carehub_http_request_duration_seconds_count{node=\"test\",route=\"/v1/systems/{system}/messages\",method=\"POST\",status=\"2xx\"} 1\n"
        ),
        "{text}"
    );
    assert!(!text.contains(&order), "no raw path (with its ids) as a label");
    assert!(text.contains("carehub_delivery_latency_seconds_count{node=\"test\",system=\"phoniro\"} 1\n"), "{text}");
}

#[test]
fn json_logs_on_request_are_one_json_object_a_line() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("carehub.toml");
    let db = dir.path().join("carehub.db");
    std::fs::write(&config, config_text(&db, "http://127.0.0.1:9", "http://127.0.0.1:9", &Options::default()))
        .expect("config");
    let (mut child, addr, lines) = serve_binary(&config, &[("CAREHUB_LOG_FORMAT", "json"), ("CAREHUB_LOG", "info")]);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    // The delivery loop logs its start just after the listening line: wait for it, so there
    // are lines from two modules to check, rather than racing the kill against it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !lines.lock().is_ok_and(|l| l.iter().any(|l| l.contains("delivery loop started"))) {
        assert!(std::time::Instant::now() < deadline, "no 'delivery loop started' line: {:?}", lines.lock());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    let listening = lines.iter().find(|l| l.contains("carehub listening")).expect("the listening line");
    let v: serde_json::Value = serde_json::from_str(listening).expect("json");
    assert_eq!(v["addr"].as_str(), Some(addr.as_str()), "fields are JSON fields: {listening}");
}

/// `carehub check` says whether it reaches the database: a PostgreSQL one with its server
/// and schema version (without migrating it), and FAILED (exit 1) for one that does not answer.
#[tokio::test]
async fn check_reaches_a_postgresql_database_or_says_it_cannot() {
    let up = MockServer::start().await;
    let database = carehub_postgres::scratch::ScratchDb::create(&carehub_postgres::scratch::server(), "check")
        .await
        .expect("a database on the test server");
    let dir = tempfile::tempdir().expect("dir");
    let check = |db: &str| {
        let config = dir.path().join("carehub.toml");
        let text = config_text(std::path::Path::new(db), &up.uri(), &up.uri(), &Options::default());
        std::fs::write(&config, text).expect("write config");
        carehub(&["check", "--config", config.to_str().expect("path")])
    };

    let out = check(&database.url());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let place = format!("at 127.0.0.1:5432/{}, schema version 0 of ", database.name());
    assert!(stdout.contains("database: ok (PostgreSQL ") && stdout.contains(&place), "{stdout}");

    // `carehub migrate` brings the schema up to this carehub's, and check then says so.
    let config = dir.path().join("carehub.toml");
    let out = carehub(&["migrate", "--config", config.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let out = check(&database.url());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let version = stdout.split("schema version ").nth(1).and_then(|v| v.split(')').next()).expect("a version");
    let (at, of) = version.split_once(" of ").expect("N of M");
    assert!(at == of && at != "0", "migrated to this carehub's schema: {stdout}");

    let out = check("postgres://postgres@127.0.0.1:9/nowhere");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("database: FAILED: "), "{stdout}");
    assert!(stdout.contains("system phoniro (phoniro): reachable"), "the systems are still checked: {stdout}");
}
