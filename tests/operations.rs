//! Health, readiness, metrics, the OpenAPI document, `carehub check` and the demo.

use reqwest::StatusCode;
use wiremock::MockServer;

use crate::support::*;

#[tokio::test]
async fn health_readiness_metrics_and_openapi_answer() {
    let phoniro = MockServer::start().await;
    let hub = TestHub::start(&phoniro.uri(), &phoniro.uri()).await;
    let (status, body) = hub.get("/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, body) = hub.get("/readyz", None).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    let resp = hub.http.get(format!("{}/metrics", hub.url)).send().await.expect("metrics");
    assert!(resp.headers()["content-type"].to_str().unwrap_or("").starts_with("application/openmetrics-text"));
    let text = resp.text().await.expect("text");
    assert!(text.contains("carehub_outbox{state=\"pending\"} 0"), "{text}");
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
    assert!(stdout.contains("mappings treserva: 5 files, 12 samples pass"), "{stdout}");
    assert!(stdout.contains("mappings combine: 5 files, 17 samples pass"), "{stdout}");
    assert!(stdout.contains("system phoniro (phoniro): reachable"), "{stdout}");
    assert!(stdout.contains("system combine (combine): FAILED: transient: cannot connect"), "{stdout}");

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
    let runtime = carehub_server::server::build(&config, clock.clone()).expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hub = carehub_server::server::start(runtime, listener).await.expect("start");
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
    let runtime = carehub_server::server::build(&config, clock.clone()).expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hub = carehub_server::server::start(runtime, listener).await.expect("start");
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
    let visits = stdout.split("7. Visits in ").nth(1).unwrap_or_default();
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
    assert!(stdout.contains("8. Invoices for February 2027"), "the demo's month follows its clock:\n{stdout}");
    let invoices = stdout.split("8. Invoices for ").nth(1).unwrap_or_default();
    let line =
        |who: &str, what: &str| invoices.lines().find(|l| l.contains(who) && l.contains(what)).unwrap_or_default();
    let count = |l: &str, code: &str| -> usize {
        l.split(&format!("{code} ×"))
            .nth(1)
            .and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .unwrap_or(0)
    };
    let over = line("Omsorgshuset", "a quarter over on 3 orders");
    let credited = line("Omsorgshuset", "after credit note K1 for line");
    assert!(count(over, "INV001") >= 1, "over-billing is found: {stdout}");
    assert_eq!(
        count(credited, "INV001"),
        count(over, "INV001") - 1,
        "the credit note takes line 1's excess back: {stdout}"
    );
    assert!(line("Hemtjänst Norr AB", "as performed").contains("INV003 ×1"), "{stdout}");
    assert!(!line("Hemtjänst Norr AB", "as performed").contains("INV001"), "{stdout}");
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
