//! The monthly follow-up (SPEC §4.4) over the real HTTP API and the real binary: a
//! November built from decisions, tags, acknowledgements, plan notices and pushed visits,
//! whose figures are computed by hand; the CSV; and `carehub report`'s HTML page opened in
//! a headless Chromium (Debian's `chromium`, installed by `scripts/test`), which must show
//! its charts without a console message.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carehub_server::auth::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// The scenario's hub and its three clients' order ids (a, b at provider A; c at B).
struct Scenario {
    hub: TestHub,
    pnrs: [String; 3],
    orders: [String; 3],
    _vendor: MockServer,
}

/// November 2026 (orders from the 1st: execute-by and plan-due the 15th; granted 480 min):
/// - a at A: confirmed on the 2nd, plan on the 10th (both on time); visits of 120, 120, 120
///   and 30 (manual) min: 390 min, 81.25%, within. Staff s-1 (2nd, 18th), s-2 (3rd), s-3 (17th):
///   3 in the month, at most 2 in 14 days.
/// - b at A: never confirmed, plan on the 20th (5 days late); one visit of 120 min: 25%,
///   under. 1 staff.
/// - c at B: confirmed, no plan (missing); five visits of 120 min by s-5: 600 min, 125%,
///   over. A manual visit without a reason is rejected and counts nowhere.
///
/// Manual share: A 1 of 5 (20%, over 10%), B 0 of 5.
async fn scenario() -> Scenario {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), Options::default()).await;
    let all = test_pnrs();
    let pnrs = [all[940].clone(), all[941].clone(), all[942].clone()];
    let cm = hub.system_token("combine");
    let providers = [PROVIDER_A, PROVIDER_A, PROVIDER_B];
    let tags = ["04F10001", "04F10002", "04F10003"];
    for n in 0..3 {
        let (s, r) =
            hub.post("combine", november_decision(&format!("DEC-F{n}"), &pnrs[n], providers[n]), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
        register_tag(&hub, tags[n], &pnrs[n], "2026-11-01").await;
    }
    let orders = [hub.order_id("DEC-F0").await, hub.order_id("DEC-F1").await, hub.order_id("DEC-F2").await];
    let (pa, pb) = (hub.provider(PROVIDER_A), hub.provider(PROVIDER_B));
    for (body, token) in [
        (phoniro_ack(&orders[0], "ACCEPTED"), &pa),
        (phoniro_plan(&orders[0], "2026-11-10"), &pa),
        (phoniro_plan(&orders[1], "2026-11-20"), &pa),
        (phoniro_ack(&orders[2], "ACCEPTED"), &pb),
    ] {
        let (s, r) = hub.post("phoniro", body, Some(token)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    }
    let visit = |id: &str, who: usize, staff: &str, day: u32, from: &str, to: &str, manual: Option<Option<&str>>| {
        phoniro_visit(
            id,
            providers[who],
            &pnrs[who],
            staff,
            tags[who],
            &format!("2026-11-{day:02}T{from}"),
            Some(&format!("2026-11-{day:02}T{to}")),
            manual,
        )
    };
    let mut visits = vec![
        (visit("F-1", 0, "s-1", 2, "08:00", "10:00", None), "accepted"),
        (visit("F-2", 0, "s-2", 3, "08:00", "10:00", None), "accepted"),
        (visit("F-3", 0, "s-3", 17, "08:00", "10:00", None), "accepted"),
        (visit("F-4", 0, "s-1", 18, "08:00", "08:30", Some(Some("Taggen saknas"))), "flagged"),
        (visit("F-5", 1, "s-4", 5, "11:00", "13:00", None), "accepted"),
        (visit("F-6", 2, "s-9", 9, "08:00", "09:00", Some(None)), "rejected"),
    ];
    for day in 4..9 {
        visits.push((visit(&format!("F-C{day}"), 2, "s-5", day, "08:00", "10:00", None), "accepted"));
    }
    for (v, want) in visits {
        let provider = v["provider"]["organisationNumber"].as_str().unwrap_or_default().to_owned();
        let (s, r) = hub.post("phoniro", v.to_string(), Some(&hub.provider(&provider))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
        assert_eq!(r["visits"][0]["outcome"], want, "{r}");
    }
    Scenario { hub, pnrs, orders, _vendor: vendor }
}

/// Days from the 15th of November to today: how late the unconfirmed order and the
/// missing plan are (the scenario's deadlines have passed whenever the test runs).
fn days_since_deadline(hub: &TestHub) -> i64 {
    (hub.clock.today() - chrono::NaiveDate::from_ymd_opt(2026, 11, 15).expect("date")).num_days()
}

#[tokio::test]
async fn the_follow_up_matches_a_hand_computation() {
    let sc = scenario().await;
    let (hub, o) = (&sc.hub, &sc.orders);
    let (s, r) = hub.get("/v1/reports/follow-up?month=2026-11", Some(&hub.token(Role::Auditor, None))).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let late = days_since_deadline(hub);
    assert!(late > 0, "the scenario's deadlines must have passed");

    assert_eq!(r["month"], "2026-11");
    assert_eq!(r["manual_share_threshold"], 0.1);
    let summary = &r["summary"];
    assert_eq!(summary["clients"], 3);
    assert_eq!(summary["bands"], json!({"under": 1, "within": 1, "over": 1, "not_granted": 0}));
    assert_eq!((summary["granted_minutes"].as_i64(), summary["performed_minutes"].as_i64()), (Some(1440), Some(1110)));
    assert_eq!((summary["visits"].as_u64(), summary["manual"].as_u64()), (Some(10), Some(1)));
    assert_eq!(summary["providers_over_threshold"], 1);
    assert_eq!(summary["plans"], json!({"due": 3, "on_time": 1, "late": 1, "missing": 1, "pending": 0}));
    assert_eq!(summary["confirmations"], json!({"due": 3, "on_time": 2, "late": 0, "not_confirmed": 1, "pending": 0}));
    // (3 + 1 + 1) / 3 staff per client; (2 + 1 + 1) / 3 at most in 14 days.
    assert_eq!(summary["avg_staff_per_client"].as_f64(), Some(5.0 / 3.0));
    assert_eq!(summary["avg_max_staff_14_days"].as_f64(), Some(4.0 / 3.0));

    // Providers by organisation number: B (5566778899) before A (5599000014).
    let providers = r["providers"].as_array().expect("providers");
    assert_eq!(providers.len(), 2);
    let (b, a) = (&providers[0], &providers[1]);
    assert_eq!((a["provider"].as_str(), a["name"].as_str()), (Some(PROVIDER_A), Some("Hemtjänst Norr AB")));
    assert_eq!(
        (a["clients"].as_u64(), a["granted_minutes"].as_i64(), a["performed_minutes"].as_i64()),
        (Some(2), Some(960), Some(510))
    );
    assert_eq!((a["visits"].as_u64(), a["manual"].as_u64(), a["manual_share"].as_f64()), (Some(5), Some(1), Some(0.2)));
    assert_eq!(a["over_threshold"], true);
    assert_eq!((a["avg_staff_per_client"].as_f64(), a["avg_max_staff_14_days"].as_f64()), (Some(2.0), Some(1.5)));
    assert_eq!(a["plans"], json!({"due": 2, "on_time": 1, "late": 1, "missing": 0, "pending": 0}));
    assert_eq!(a["confirmations"], json!({"due": 2, "on_time": 1, "late": 0, "not_confirmed": 1, "pending": 0}));
    assert_eq!(
        (b["provider"].as_str(), b["granted_minutes"].as_i64(), b["performed_minutes"].as_i64()),
        (Some(PROVIDER_B), Some(480), Some(600))
    );
    assert_eq!(
        (b["visits"].as_u64(), b["manual"].as_u64(), b["over_threshold"].as_bool()),
        (Some(5), Some(0), Some(false))
    );

    // Clients, by provider then key (their order id).
    let clients: Vec<Value> = r["clients"].as_array().expect("clients").clone();
    let row = |order: &str| clients.iter().find(|c| c["key"] == order).cloned().expect("client row");
    let (ca, cb, cc) = (row(&o[0]), row(&o[1]), row(&o[2]));
    assert_eq!(ca["band"], "within");
    assert_eq!(
        (ca["granted_minutes"].as_i64(), ca["performed_minutes"].as_i64(), ca["ratio"].as_f64()),
        (Some(480), Some(390), Some(0.8125))
    );
    assert_eq!(
        (ca["visits"].as_u64(), ca["staff_in_month"].as_u64(), ca["max_staff_14_days"].as_u64()),
        (Some(4), Some(3), Some(2))
    );
    assert_eq!(
        (cb["band"].as_str(), cb["performed_minutes"].as_i64(), cb["ratio"].as_f64()),
        (Some("under"), Some(120), Some(0.25))
    );
    assert_eq!(
        (cc["band"].as_str(), cc["performed_minutes"].as_i64(), cc["ratio"].as_f64()),
        (Some("over"), Some(600), Some(1.25))
    );
    assert_eq!((cc["staff_in_month"].as_u64(), cc["max_staff_14_days"].as_u64()), (Some(1), Some(1)));

    // Plans and confirmations name the orders and how late they are.
    let status = |list: &str, order: &str| -> (Value, Value) {
        let e = r[list].as_array().and_then(|l| l.iter().find(|x| x["order_id"] == order)).cloned().expect("row");
        (e["status"].clone(), e["days_late"].clone())
    };
    assert_eq!(status("plans", &o[0]), (json!("on_time"), Value::Null));
    assert_eq!(status("plans", &o[1]), (json!("late"), json!(5)));
    assert_eq!(status("plans", &o[2]), (json!("missing"), json!(late)));
    assert_eq!(status("confirmations", &o[1]), (json!("not_confirmed"), json!(late)));
    assert_eq!(status("confirmations", &o[2]), (json!("on_time"), Value::Null));

    // No personal identity number anywhere in the report.
    let text = r.to_string();
    for pnr in &sc.pnrs {
        assert!(!text.contains(pnr.as_str()), "the report names a client");
    }

    // A provider gets its own rows; a bad month or format is coded; no token, no report.
    let (s, own) = hub.get("/v1/reports/follow-up?month=2026-11", Some(&hub.provider(PROVIDER_B))).await;
    assert_eq!(s, StatusCode::OK, "{own}");
    assert_eq!(own["providers"].as_array().map(Vec::len), Some(1));
    assert_eq!(own["providers"][0]["provider"], PROVIDER_B);
    assert_eq!(own["clients"].as_array().map(Vec::len), Some(1));
    assert_eq!((own["summary"]["clients"].as_u64(), own["summary"]["granted_minutes"].as_i64()), (Some(1), Some(480)));
    assert!(own.to_string().find(o[0].as_str()).is_none(), "provider B sees provider A's order");
    let (s, bad) = hub.get("/v1/reports/follow-up?month=2026-13", Some(&hub.admin())).await;
    assert_eq!((s, bad["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("INVALID_DATE")));
    let (s, bad) = hub.get("/v1/reports/follow-up?month=2026-11&format=xml", Some(&hub.admin())).await;
    assert_eq!((s, bad["code"].as_str()), (StatusCode::BAD_REQUEST, Some("BAD_REQUEST")));
    let (s, _) = hub.get("/v1/reports/follow-up?month=2026-11", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The reads are in the access log, with the month asked for.
    let (_, log) = hub.get("/v1/access-log?limit=1000", Some(&hub.admin())).await;
    let reads = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| {
            e["query"]["endpoint"] == "GET /v1/reports/follow-up" && e["query"]["filters"]["month"] == "2026-11"
        })
        .count();
    assert!(reads >= 2, "{log}");
}

#[tokio::test]
async fn the_follow_up_as_csv_has_a_section_per_table() {
    let sc = scenario().await;
    let hub = &sc.hub;
    let resp = hub
        .http
        .get(format!("{}/v1/reports/follow-up?month=2026-11&format=csv", hub.url))
        .bearer_auth(hub.system_token("combine"))
        .send()
        .await
        .expect("get csv");
    assert_eq!(resp.status(), StatusCode::OK);
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(ctype, "text/csv; charset=utf-8");
    let csv = resp.text().await.expect("body");
    check_csv(&csv, &sc);
}

fn check_csv(csv: &str, sc: &Scenario) {
    let o = &sc.orders;
    let lines: Vec<&str> = csv.split("\r\n").collect();
    for header in [
        "summary;figure;value",
        "providers;provider;name;clients;granted_minutes;performed_minutes;ratio;",
        "clients;key;provider;granted_minutes;performed_minutes;ratio;band;visits;staff_in_month;max_staff_14_days",
        "plans;order_id;provider;plan_due;established_on;status;days_late",
        "confirmations;order_id;provider;execute_by;confirmed_on;status;days_late",
        "reports;provider;message_type;kind;count",
    ] {
        assert_eq!(lines.iter().filter(|l| l.starts_with(header)).count(), 1, "no header {header}:\n{csv}");
    }
    for expected in [
        "summary;granted_minutes;1440".to_owned(),
        "summary;performed_minutes;1110".to_owned(),
        "summary;plans_missing;1".to_owned(),
        "summary;orders_not_confirmed;1".to_owned(),
        format!("clients;{};{PROVIDER_A};480;120;0.250;under;1;1;1", o[1]),
        format!("clients;{};{PROVIDER_B};480;600;1.250;over;5;1;1", o[2]),
        format!("plans;{};{PROVIDER_A};2026-11-15;2026-11-20;late;5", o[1]),
        format!("confirmations;{};{PROVIDER_A};2026-11-15;;not_confirmed;{}", o[1], days_since_deadline(&sc.hub)),
    ] {
        assert!(lines.contains(&expected.as_str()), "no line {expected}:\n{csv}");
    }
    // 390 / 480 = 0.8125: the third decimal is left to the formatter.
    let a = format!("clients;{};{PROVIDER_A};480;390;0.81", o[0]);
    assert!(lines.iter().any(|l| l.starts_with(&a) && l.ends_with(";within;4;3;2")), "no line {a}...:\n{csv}");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("providers;{PROVIDER_A};Hemtjänst Norr AB;2;960;510;"))),
        "{csv}"
    );
    // Sections are separated by one empty line; every other line names its section.
    assert_eq!(lines.iter().filter(|l| l.is_empty()).count(), 6, "{csv}");
    for pnr in &sc.pnrs {
        assert!(!csv.contains(pnr.as_str()), "the CSV names a client");
    }
}

/// Chromium's binary: `CHROMIUM` if set, else `chromium` on the path.
fn chromium_binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Loads a page in headless Chromium; its DOM after loading, and the console messages
/// Chromium logged (`:CONSOLE` lines of its stderr log).
fn load_in_chromium(page: &Path, profile: &Path) -> (String, Vec<String>) {
    let bin = chromium_binary();
    let mut child = Command::new(&bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {bin} ({e}): the follow-up's HTML test needs a headless Chromium; \
                 scripts/test installs Debian's `chromium` (apt-get install chromium), or set CHROMIUM"
            )
        });
    // Read both pipes on threads, so a chatty Chromium cannot fill one and stall.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).map(|_| s)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} did not finish loading {} within 120 s", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().expect("stdout thread").expect("read stdout");
    let log = err.join().expect("stderr thread").expect("read stderr");
    assert!(status.success(), "{bin} failed ({status}):\n{log}");
    let console = log.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
    (dom, console)
}

#[tokio::test]
async fn the_html_report_opens_in_chromium_and_shows_its_charts() {
    let sc = scenario().await;
    let dir = sc.hub.dir.path().to_owned();
    let (html_path, csv_path) = (dir.join("report.html"), dir.join("report.csv"));
    let (config, db) = (sc.hub.config_path.clone(), sc.hub.db.clone());
    let (html_arg, csv_arg) = (html_path.display().to_string(), csv_path.display().to_string());
    // The report is made on the hub's today, as the API's is.
    let as_of = sc.hub.clock.today().to_string();
    let run = tokio::task::spawn_blocking(move || {
        let by_config = carehub(&[
            "report",
            "--as-of",
            &as_of,
            "--month",
            "2026-11",
            "--out",
            &html_arg,
            "--csv",
            &csv_arg,
            "--config",
            &config.display().to_string(),
            "--subject",
            "revisor.cli",
        ]);
        let by_db = carehub(&[
            "report",
            "--month",
            "2026-11",
            "--out",
            &format!("{html_arg}.db.html"),
            "--db",
            &db.display().to_string(),
        ]);
        let no_db = carehub(&[
            "report",
            "--month",
            "2026-11",
            "--out",
            &format!("{html_arg}.x.html"),
            "--db",
            "/nonexistent/carehub.db",
        ]);
        let bad_month = carehub(&[
            "report",
            "--month",
            "2026-13",
            "--out",
            &format!("{html_arg}.x.html"),
            "--db",
            &db.display().to_string(),
        ]);
        (by_config, by_db, no_db, bad_month)
    });
    let (by_config, by_db, no_db, bad_month) = run.await.expect("carehub report");
    let stdout = String::from_utf8_lossy(&by_config.stdout).to_string();
    assert!(by_config.status.success(), "{stdout}{}", String::from_utf8_lossy(&by_config.stderr));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("follow-up 2026-11: 3 clients (1 under 80%, 1 within 80-120%, 1 over 120%), performed 1110 of 1440 granted minutes (77.1%)"),
        "{stdout}"
    );
    assert!(by_db.status.success(), "{}", String::from_utf8_lossy(&by_db.stderr));
    assert_eq!((no_db.status.code(), bad_month.status.code()), (Some(2), Some(2)));
    // The read is in the access log, under the person who ran it, before the page was written.
    let (status, log) = sc.hub.get("/v1/access-log?subject=revisor.cli", Some(&sc.hub.admin())).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let reads = log["entries"].as_array().expect("entries");
    assert_eq!(reads.len(), 1, "{log}");
    assert_eq!(reads[0]["query"]["endpoint"], "carehub report");
    assert_eq!(reads[0]["query"]["filters"]["month"], "2026-11");

    let html = std::fs::read_to_string(&html_path).expect("report.html");
    let csv = std::fs::read_to_string(&csv_path).expect("report.csv");
    check_csv(&csv, &sc);
    for pnr in &sc.pnrs {
        assert!(!html.contains(pnr.as_str()), "the HTML names a client");
    }
    // Self-contained: nothing to fetch, no scripts.
    for forbidden in ["<script", "<link", " src=", " href=", "@import", "url("] {
        assert!(!html.contains(forbidden), "the page has {forbidden}");
    }
    assert!(html.contains("Hemtjänst Norr AB"));

    // Chromium loads it and logs nothing on its console; a page that does log is caught
    // (so the check cannot pass by not looking).
    let profile = tempfile::tempdir().expect("profile dir");
    let control_path = dir.join("control.html");
    std::fs::write(&control_path, html.replace("</body>", "<script>console.error('control')</script></body>"))
        .expect("write control page");
    let (page, control, profile_path) = (html_path.clone(), control_path.clone(), profile.path().to_owned());
    let ((dom, console), (_, control_console)) = tokio::task::spawn_blocking(move || {
        (load_in_chromium(&page, &profile_path.join("a")), load_in_chromium(&control, &profile_path.join("b")))
    })
    .await
    .expect("chromium");
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(
        control_console.iter().any(|l| l.contains("control")),
        "the console check saw nothing: {control_console:?}"
    );

    // The DOM after loading holds the six charts with their bars: two per provider
    // (granted, performed), four bands, one per provider (manual share, plus the
    // threshold line), two per provider (continuity), four plan and four confirmation
    // statuses.
    let charts = ["granted-performed", "bands", "manual-share", "continuity", "plans", "confirmations"];
    let bars = [4, 4, 2, 4, 4, 4];
    assert!(dom.contains("Uppföljning av hemtjänsten, november 2026"), "{dom}");
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), charts.len(), "{dom}");
    for (name, want) in charts.iter().zip(bars) {
        let start = dom.find(&format!("data-chart=\"{name}\"")).unwrap_or_else(|| panic!("no chart {name}"));
        let end = start + dom[start..].find("</svg>").expect("chart end");
        let svg = &dom[start..end];
        assert_eq!(svg.matches("<rect class=\"bar").count(), want, "chart {name}: {svg}");
    }
    let manual = &dom[dom.find("data-chart=\"manual-share\"").expect("manual chart")..];
    assert!(manual[..manual.find("</svg>").expect("end")].contains("class=\"threshold\""));
    // The over-threshold provider's bar is marked.
    assert!(manual.contains("class=\"bar manual over\""));
}
