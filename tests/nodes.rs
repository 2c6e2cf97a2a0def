//! Several hub nodes on one PostgreSQL database (SPEC §11), each a real `carehub serve`
//! process: three nodes under mixed load (decisions, their changes, tags, visits and
//! invoices over HTTP spread over the nodes, Procapita files in one SFTP inbox on a real
//! OpenSSH server, and a Phoniro visit feed) while one node after another is SIGKILLed and
//! restarted, twenty times; and the same visit, or the same invoice, sent to two nodes at
//! the same instant, taken once.
//!
//! A test binary of its own (`cargo test -p carehub --test nodes`): it always runs on
//! PostgreSQL (`CAREHUB_TEST_POSTGRES`, or 127.0.0.1:5432), in a database it creates and
//! drops, so the integration suite's PostgreSQL pass does not run it twice.
//!
//! The test is the sender a real municipality's systems are: a request a node did not
//! answer (it was killed, the connection was refused or reset) is sent again to another
//! node, and only a `2xx` answer counts as acknowledged. At the end, with every node up
//! and the outbox drained, everything acknowledged is in the log and the store, the chain
//! verifies, every delivery reached its vendor, and a vendor that got something twice got
//! it under the same idempotency key.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use carehub_postgres::scratch::{self, ScratchDb};
use carehub_server::auth::{Auth, Role};
use carehub_server::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::sshd::{LocalSshd, Sshd};
use crate::support::*;

/// Kills in the run, one node at a time, in turn.
const KILLS: usize = 20;
/// Concurrent senders of the HTTP load.
const SENDERS: usize = 6;
/// The senders' cases at most (each its own client from the test numbers, from the 3,000th).
const CASES_AT_MOST: usize = 12_000;
/// Visits on each page of the Phoniro feed, and its pages.
const FEED_PAGE: usize = 5;
const FEED_PAGES: usize = 16;

/// The PostgreSQL database the nodes share, made on the test server.
async fn shared_database(label: &str) -> ScratchDb {
    ScratchDb::create(&scratch::server(), label)
        .await
        .expect("a database on the test PostgreSQL server (CAREHUB_TEST_POSTGRES or 127.0.0.1:5432)")
}

/// Node `name`'s configuration: [`config_text`] on the shared database, named `name`
/// (`[hub] node`, on its metrics and in its poller leases), with leases short enough that a
/// killed node's pollers are taken over within seconds rather than the default 15.
fn node_config(dir: &Path, name: &str, db: &ScratchDb, vendor: &str, o: &Options) -> PathBuf {
    let mut named = o.clone();
    named.node = name.into();
    named.hub_extra = format!("poller_heartbeat_ms = 500\npoller_lease_ttl_ms = 3000\n{}", o.hub_extra);
    let text = config_text(&PathBuf::from(db.url()), vendor, vendor, &named);
    Config::parse(&text, dir).expect("a valid configuration");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write the configuration");
    path
}

/// Nodes as `carehub serve` processes, each with its configuration; the URLs of those up.
struct Cluster {
    /// The folder of the configurations.
    _dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
    children: Vec<Option<Child>>,
    urls: Arc<RwLock<Vec<Option<String>>>>,
    /// Every run's operational log.
    logs: Vec<Lines>,
}

/// Starts `carehub serve` on `config` (off the async threads: it waits for the address).
async fn serve_node(config: PathBuf) -> (Child, String, Lines) {
    tokio::task::spawn_blocking(move || serve_binary(&config, &[])).await.expect("the node starts")
}

impl Cluster {
    async fn start(dir: tempfile::TempDir, configs: Vec<PathBuf>) -> Cluster {
        let n = configs.len();
        let mut cluster = Cluster {
            _dir: dir,
            configs,
            children: (0..n).map(|_| None).collect(),
            urls: Arc::default(),
            logs: Vec::new(),
        };
        *cluster.urls.write().expect("urls") = vec![None; n];
        for i in 0..n {
            cluster.up(i).await;
        }
        cluster
    }

    async fn up(&mut self, i: usize) {
        let (child, addr, lines) = serve_node(self.configs[i].clone()).await;
        self.children[i] = Some(child);
        self.logs.push(lines);
        self.urls.write().expect("urls")[i] = Some(format!("http://{addr}"));
    }

    /// SIGKILLs node `i` (no shutdown of any kind) and reaps it.
    fn kill(&mut self, i: usize) {
        self.urls.write().expect("urls")[i] = None;
        if let Some(mut child) = self.children[i].take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    fn url(&self, i: usize) -> String {
        self.urls.read().expect("urls")[i].clone().expect("the node is up")
    }

    fn stop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a sender got back, and from which node.
struct Answer {
    status: StatusCode,
    body: Value,
    node: usize,
}

/// Sends requests to whichever nodes are up, in turn.
#[derive(Clone)]
struct Sender {
    urls: Arc<RwLock<Vec<Option<String>>>>,
    http: reqwest::Client,
    next: Arc<AtomicUsize>,
    /// Answers 5xx the hub gave (it took nothing then; the request is sent again).
    server_errors: Arc<Mutex<Vec<String>>>,
    /// Requests that reached no node, or whose answer was lost with its node.
    lost: Arc<AtomicUsize>,
}

impl Sender {
    fn new(urls: Arc<RwLock<Vec<Option<String>>>>) -> Sender {
        Sender {
            urls,
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client"),
            next: Arc::default(),
            server_errors: Arc::default(),
            lost: Arc::default(),
        }
    }

    /// Posts `body` to `path` on a node that is up, and again on another whenever no answer
    /// came (the node died) or the answer was 5xx, until a node answers; that answer.
    async fn post(&self, path: &str, token: &str, body: &str, json_body: bool) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "no node answered {path} for a minute");
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let target = {
                let urls = self.urls.read().expect("urls");
                (0..urls.len()).map(|k| (n + k) % urls.len()).find_map(|i| urls[i].clone().map(|u| (i, u)))
            };
            let Some((node, url)) = target else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let mut request = self.http.post(format!("{url}{path}")).bearer_auth(token).body(body.to_owned());
            if json_body {
                request = request.header("content-type", "application/json");
            }
            match request.send().await {
                Ok(r) if r.status().is_server_error() => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    self.server_errors.lock().expect("errors").push(format!("{path}: {status} {text}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(r) => {
                    let status = r.status();
                    match r.bytes().await {
                        Ok(bytes) => {
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            return Answer { status, body, node };
                        }
                        Err(_) => {
                            self.lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Err(_) => {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// Everything the hub acknowledged.
#[derive(Default)]
struct Acked {
    /// (what, the receipt's message id) of every message.
    messages: Vec<(String, i64)>,
    decisions: Vec<String>,
    /// Decision ids whose version 1 was acknowledged.
    changes: Vec<String>,
    visits: Vec<String>,
    /// (provider, invoice id).
    invoices: Vec<(String, String)>,
}

/// Tokens on the system clock (the nodes run on it).
#[derive(Clone)]
struct Keys {
    auth: Arc<Auth>,
}

impl Keys {
    fn new() -> Keys {
        Keys { auth: Arc::new(Auth::new(SECRET, carehub_model::Clock::system())) }
    }
    fn combine(&self) -> String {
        self.auth
            .issue("combine", Role::CaseManagement, Some("combine"), None, Duration::from_secs(900))
            .expect("token")
    }
    fn provider(&self, org: &str) -> String {
        self.auth
            .issue("phoniro", Role::ProviderSystem, Some("phoniro"), Some(org), Duration::from_secs(900))
            .expect("token")
    }
}

/// A Combine decision change of `decision`: version 1, SERV raised to 600 minutes from
/// the 10th.
fn change(decision: &str) -> String {
    format!(
        r#"<Beslutsandring xmlns="urn:carehub:vendor:combine:1"><BeslutsId>{decision}</BeslutsId><Version>1</Version><GallerFrom>2026-11-10</GallerFrom><Andring typ="Insatser"><Insats kod="SERV"><MinuterPerManad>600</MinuterPerManad></Insats></Andring></Beslutsandring>"#
    )
}

/// Acknowledgements that said the message had been taken before: a retry whose first
/// attempt a killed node had committed without answering.
static REPEATS: AtomicUsize = AtomicUsize::new(0);

/// The receipt's message id of an acknowledged message; panics on anything else.
fn receipt(what: &str, a: &Answer) -> i64 {
    assert!(a.status.is_success(), "{what}: node {} answered {} {}", a.node, a.status, a.body);
    if a.body["status"] == "duplicate" {
        REPEATS.fetch_add(1, Ordering::Relaxed);
    }
    a.body["message_id"].as_i64().unwrap_or_else(|| panic!("{what}: a receipt without a message id: {}", a.body))
}

/// One client's case, sent as case management and the provider would: the decision, the
/// tag in the home, the decision's change, two visits and, for every third case, an
/// invoice. Each step is sent until a node acknowledges it.
async fn one_case(i: usize, pnr: &str, sender: &Sender, keys: &Keys, acked: &Mutex<Acked>) {
    let provider = if i.is_multiple_of(2) { PROVIDER_A } else { PROVIDER_B };
    let decision = format!("DEC-N-{i}");
    let (combine, provider_token) = (keys.combine(), keys.provider(provider));
    let path = "/v1/systems/combine/messages";
    let a = sender.post(path, &combine, &november_decision(&decision, pnr, provider), false).await;
    let id = receipt(&decision, &a);
    // The order's id is the hub's, in the receipt (a repeat's names the order made first).
    let order = a.body["order_id"].as_str().unwrap_or_else(|| panic!("{decision}: no order id: {}", a.body)).to_owned();
    {
        let mut acked = acked.lock().expect("acked");
        acked.messages.push((format!("decision {decision}"), id));
        acked.decisions.push(decision.clone());
    }
    let tag = format!("04D{i:05}");
    let body = json!({"tag_uid": tag, "client": pnr, "installed_on": "2026-11-01"}).to_string();
    let a = sender.post("/v1/tags", &combine, &body, true).await;
    assert!(a.status.is_success() || a.status == StatusCode::CONFLICT, "tag {tag}: {} {}", a.status, a.body);

    let a = sender.post(path, &combine, &change(&decision), false).await;
    let id = receipt(&format!("change of {decision}"), &a);
    {
        let mut acked = acked.lock().expect("acked");
        acked.messages.push((format!("change of {decision}"), id));
        acked.changes.push(format!("combine:{decision}"));
    }
    for day in [3, 4] {
        let visit_id = format!("N-{i}-V{day}");
        let v = phoniro_visit(
            &visit_id,
            provider,
            pnr,
            &format!("n-{i}"),
            &tag,
            &format!("2026-11-{day:02}T09:00"),
            Some(&format!("2026-11-{day:02}T09:30")),
            None,
        );
        let a = sender.post("/v1/systems/phoniro/messages", &provider_token, &v.to_string(), false).await;
        let id = receipt(&visit_id, &a);
        let mut acked = acked.lock().expect("acked");
        acked.messages.push((format!("visit {visit_id}"), id));
        acked.visits.push(format!("phoniro:{visit_id}"));
    }
    if i.is_multiple_of(3) {
        let invoice = format!("NI-{i}");
        let doc = peppol_of(provider, "invoice", &invoice, None, &[("1", &order, "1", "HUR", "390.00")]);
        let a = sender.post("/v1/systems/phoniro/messages", &provider_token, &doc, false).await;
        let id = receipt(&invoice, &a);
        assert!(a.body["verification"].is_object(), "the invoice {invoice} was verified: {}", a.body);
        let mut acked = acked.lock().expect("acked");
        acked.messages.push((format!("invoice {invoice}"), id));
        acked.invoices.push((provider.to_owned(), invoice));
    }
}

/// The visits of the feed's page `page`, for the feed's client: every visit its own staff
/// member, day and hour, so none overlaps another.
fn feed_visits(page: usize, client: &str, tag: &str) -> Vec<Value> {
    (page * FEED_PAGE..(page + 1) * FEED_PAGE)
        .map(|i| {
            let (day, hour) = (1 + i % 25, 7 + i / 25);
            let mut v = phoniro_visit(
                &format!("F-{i}"),
                PROVIDER_A,
                client,
                &format!("f-{i}"),
                tag,
                &format!("2026-11-{day:02}T{hour:02}:00"),
                Some(&format!("2026-11-{day:02}T{hour:02}:30")),
                None,
            );
            v.as_object_mut().expect("object").remove("type");
            v
        })
        .collect()
}

/// Phoniro's visit feed: the cursor is the page number; the pages before `open` are
/// served, and past them an empty page that keeps the cursor.
struct Feed {
    open: Arc<AtomicUsize>,
    client: String,
    tag: String,
}

impl Respond for Feed {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let at: usize =
            request.url.query_pairs().find(|(k, _)| k == "cursor").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let page = if at < self.open.load(Ordering::SeqCst) {
            json!({"type": "visitPage", "visits": feed_visits(at, &self.client, &self.tag), "nextCursor": (at + 1).to_string()})
        } else {
            json!({"type": "visitPage", "visits": [], "nextCursor": at.to_string()})
        };
        ResponseTemplate::new(200).set_body_json(page)
    }
}

/// The value of `carehub_outbox{node="...",state="..."}` in a metrics text: the cluster's
/// outbox, whichever node is asked.
fn outbox_gauge(metrics: &str, state: &str) -> Option<i64> {
    let label = format!(",state=\"{state}\"}} ");
    metrics
        .lines()
        .filter(|l| l.starts_with("carehub_outbox{node=\""))
        .find_map(|l| l.split_once(&label).map(|(_, v)| v))
        .and_then(|v| v.trim().parse().ok())
}

/// A set of the first column of `sql`'s rows.
fn column(db: &Path, sql: &str) -> BTreeSet<String> {
    db_rows(db, sql).into_iter().filter_map(|r| r.into_iter().next().flatten()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_killed_and_restarted_under_load_lose_nothing_acknowledged() {
    let database = shared_database("nodes").await;
    let db = PathBuf::from(database.url());
    let sshd: LocalSshd = Sshd::start();
    let pnrs = test_pnrs();
    let (feed_client, feed_tag) = (pnrs[2499].clone(), "04F00001".to_owned());

    // One vendor plays every provider's and case-management system's HTTP side: it takes
    // every delivery, and serves Phoniro's visit feed.
    let vendor = MockServer::start().await;
    let open_pages = Arc::new(AtomicUsize::new(0));
    Mock::given(method("GET"))
        .and(path("/api/visits"))
        .respond_with(Feed { open: open_pages.clone(), client: feed_client.clone(), tag: feed_tag.clone() })
        .mount(&vendor)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;

    let dir = tempfile::tempdir().expect("dir");
    let options = Options {
        max_attempts: 100_000,
        procapita: Some(sshd.system_keys(&sshd.host_key_sha256)),
        phoniro_extra: format!("visits_poll_seconds = 1\nvisits_page_size = {FEED_PAGE}"),
        ..Options::default()
    };
    let configs: Vec<PathBuf> =
        ["n1", "n2", "n3"].iter().map(|n| node_config(dir.path(), n, &database, &vendor.uri(), &options)).collect();
    let mut cluster = Cluster::start(dir, configs).await;
    let keys = Keys::new();
    let sender = Sender::new(cluster.urls.clone());

    // The feed's client has an order and a tag before the feed opens.
    let a = sender
        .post(
            "/v1/systems/combine/messages",
            &keys.combine(),
            &november_decision("DEC-N-FEED", &feed_client, PROVIDER_A),
            false,
        )
        .await;
    receipt("the feed client's decision", &a);
    let tag = json!({"tag_uid": feed_tag, "client": feed_client, "installed_on": "2026-11-01"}).to_string();
    let a = sender.post("/v1/tags", &keys.combine(), &tag, true).await;
    assert!(a.status.is_success(), "{} {}", a.status, a.body);

    // The load: senders of cases over HTTP, Procapita files into the SFTP inbox, the feed
    // opening a page at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let cases = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (stop, acked, cases, sender, keys, pnrs) =
            (stop.clone(), acked.clone(), cases.clone(), sender.clone(), keys.clone(), pnrs.clone());
        senders.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let i = cases.fetch_add(1, Ordering::SeqCst);
                // More cases than the cluster gets through while the kills go on (about
                // 350 acknowledged messages a second here, four or five a case), so that
                // every kill lands under load; the stop at the last kill ends them.
                if i >= CASES_AT_MOST {
                    break;
                }
                one_case(i, &pnrs[3000 + i], &sender, &keys, &acked).await;
            }
        });
    }
    let dropped = Arc::new(Mutex::new(Vec::<String>::new()));
    let files = {
        let (stop, dropped, pnrs, root) = (stop.clone(), dropped.clone(), pnrs.clone(), sshd.root.clone());
        tokio::spawn(async move {
            let mut j = 0;
            while !stop.load(Ordering::SeqCst) && j < 400 {
                let name = format!("beslut-n{j}.xml");
                let bytes = decision_file(&format!("PC-N-{j}"), &pnrs[2500 + j], PROVIDER_A);
                let part = root.join("inbox").join(format!("{name}.part"));
                std::fs::write(&part, bytes).expect("write a file");
                std::fs::rename(&part, root.join("inbox").join(&name)).expect("rename into place");
                dropped.lock().expect("dropped").push(name);
                j += 1;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        })
    };
    let feed = {
        let (stop, open) = (stop.clone(), open_pages.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) && open.load(Ordering::SeqCst) < FEED_PAGES {
                open.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
        })
    };

    // Twenty kills, each node in turn, a few seconds apart (spread, so kills land at
    // different points of the work), each node restarted on its configuration at once.
    let started = Instant::now();
    let mut at_kill = Vec::new();
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(2000 + (k as u64 * 379) % 1500)).await;
        let i = k % 3;
        at_kill.push(acked.lock().expect("acked").messages.len());
        cluster.kill(i);
        cluster.up(i).await;
    }
    let load_time = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    while let Some(r) = senders.join_next().await {
        r.expect("a sender");
    }
    files.await.expect("the file dropper");
    feed.await.expect("the feed");
    open_pages.store(FEED_PAGES, Ordering::SeqCst);
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    let dropped = std::mem::take(&mut *dropped.lock().expect("dropped"));
    assert!(
        at_kill.windows(2).filter(|w| w[1] > w[0]).count() >= KILLS / 2,
        "the load went on between the kills: {at_kill:?}"
    );
    println!(
        "{} kills in {:.0} s: {} messages acknowledged ({} decisions, {} changes, {} visits, {} invoices), \
         {} files dropped; {} requests lost with their node and sent again ({} then found taken before), \
         {} answers 5xx",
        KILLS,
        load_time.as_secs_f64(),
        acked.messages.len(),
        acked.decisions.len(),
        acked.changes.len(),
        acked.visits.len(),
        acked.invoices.len(),
        dropped.len(),
        sender.lost.load(Ordering::Relaxed),
        REPEATS.load(Ordering::Relaxed),
        sender.server_errors.lock().expect("errors").len()
    );
    for e in sender.server_errors.lock().expect("errors").iter().take(5) {
        println!("  5xx: {e}");
    }

    // Every file dropped is taken (archived, none left in the inbox or refused), and every
    // page of the feed stored, with every node up.
    eventually_within("every dropped file is archived", Duration::from_secs(90), || async {
        let archived = sshd.files("archive");
        let all = dropped.iter().all(|name| archived.iter().any(|a| a.ends_with(&format!("-{name}"))));
        (all && sshd.files("inbox").is_empty()).then_some(())
    })
    .await;
    assert!(sshd.files("error").is_empty(), "no file was refused: {:?}", sshd.files("error"));
    let feed_ids: BTreeSet<String> = (0..FEED_PAGES * FEED_PAGE).map(|i| format!("phoniro:F-{i}")).collect();
    eventually_within("every page of the feed is stored", Duration::from_secs(90), || async {
        let stored = column(&db, "SELECT source_id FROM visits WHERE source_id LIKE 'phoniro:F-%'");
        (stored == feed_ids).then_some(())
    })
    .await;

    // The outbox drains: nothing pending, nothing given up, across the cluster.
    let http = reqwest::Client::new();
    let metrics_url = format!("{}/metrics", cluster.url(0));
    eventually_within("the outbox is empty", Duration::from_secs(180), || async {
        let text = http.get(&metrics_url).send().await.ok()?.text().await.ok()?;
        (outbox_gauge(&text, "pending") == Some(0)).then_some(())
    })
    .await;
    let text = http.get(&metrics_url).send().await.expect("metrics").text().await.expect("text");
    assert_eq!(outbox_gauge(&text, "dead"), Some(0), "no delivery was given up");

    // Every acknowledged message is in the log, under its receipt's id.
    let logged: BTreeSet<i64> =
        column(&db, "SELECT seq FROM message_log").iter().filter_map(|s| s.parse().ok()).collect();
    for (what, id) in &acked.messages {
        assert!(logged.contains(id), "{what} was acknowledged as message {id}, which is not in the log");
    }
    // ...and what it said is in the store.
    let decisions = column(&db, "SELECT id FROM decisions");
    for d in &acked.decisions {
        assert!(decisions.contains(&format!("combine:{d}")), "the acknowledged decision {d} is stored");
    }
    let changed = column(&db, "SELECT decision_id FROM decision_versions WHERE version = 1");
    for d in &acked.changes {
        assert!(changed.contains(d), "the acknowledged change of {d} is stored");
    }
    let visits = column(&db, "SELECT source_id FROM visits");
    for v in &acked.visits {
        assert!(visits.contains(v), "the acknowledged visit {v} is stored");
    }
    let invoices = column(&db, "SELECT provider || '/' || id FROM invoices WHERE kind = 'invoice'");
    for (org, id) in &acked.invoices {
        assert!(invoices.contains(&format!("{org}/{id}")), "the acknowledged invoice {id} is stored");
    }
    for (org, id) in &acked.invoices {
        let sql = format!("SELECT count(*) FROM verifications WHERE provider = '{org}' AND invoice_id = '{id}'");
        assert!(db_value(&db, &sql).parse::<i64>().expect("a count") >= 1, "the invoice {id} was verified");
    }
    // Every file's decision is in the log, with the file's content.
    let procapita = column(&db, "SELECT id FROM decisions WHERE system = 'procapita'");
    for j in 0..dropped.len() {
        assert!(procapita.contains(&format!("procapita:PC-N-{j}")), "the file of PC-N-{j} was taken");
    }
    let logged_files = db_value(
        &db,
        "SELECT count(DISTINCT decision_id) FROM message_log WHERE system = 'procapita' AND direction = 'in' \
         AND message_type = 'decision'",
    );
    assert_eq!(logged_files.parse::<usize>().ok(), Some(dropped.len()), "every file's decision is logged");

    // The chain verifies.
    let verify = carehub(&["audit", "verify", "--db", &database.url()]);
    assert!(verify.status.success(), "{verify:?}");

    // Every delivery reached its vendor; twice only under one idempotency key.
    let requests = vendor.received_requests().await.expect("recorded");
    let mut keys_by_body: BTreeMap<(String, Vec<u8>), BTreeSet<String>> = BTreeMap::new();
    let mut keys_by_order: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut received_keys = BTreeSet::new();
    for r in requests.iter().filter(|r| r.method.as_str() == "POST") {
        let key = r
            .headers
            .get(carehub_adapters::transport::http::IDEMPOTENCY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("a delivery to {} without an idempotency key", r.url.path()))
            .to_owned();
        received_keys.insert(key.clone());
        keys_by_body.entry((r.url.path().to_owned(), r.body.clone())).or_default().insert(key.clone());
        if r.url.path() == "/api/orders" {
            let order = serde_json::from_slice::<Value>(&r.body).expect("an order is JSON")["orderId"]
                .as_str()
                .expect("an order id")
                .to_owned();
            keys_by_order.entry(order).or_default().insert(key);
        }
    }
    for ((path, body), keys) in &keys_by_body {
        assert_eq!(
            keys.len(),
            1,
            "the same {path} delivery came under several keys {keys:?}: {}",
            String::from_utf8_lossy(body)
        );
    }
    for (order, keys) in &keys_by_order {
        assert_eq!(keys.len(), 1, "order {order} reached Phoniro under several keys: {keys:?}");
    }
    let orders = column(&db, "SELECT id FROM orders");
    assert!(orders.len() > acked.decisions.len(), "the cases' and the files' orders");
    for o in &orders {
        assert!(keys_by_order.contains_key(o), "order {o} reached its provider");
    }
    let outbox = db_rows(&db, "SELECT system, idempotency_key, state, endpoint FROM outbox");
    let sftp_files = sshd.files("outbox");
    for row in &outbox {
        let [system, key, state, endpoint] = &row[..] else { panic!("four columns: {row:?}") };
        let (system, key) = (system.clone().unwrap_or_default(), key.clone().unwrap_or_default());
        assert_eq!(state.as_deref(), Some("delivered"), "{system} delivery {key}");
        if system == "procapita" {
            let daily = endpoint.as_deref().is_some_and(|e| e.contains(carehub_adapters::transport::sftp::DAY));
            let name = carehub_adapters::transport::sftp::safe_name(&key);
            assert!(
                daily || sftp_files.iter().any(|f| f.contains(&name)),
                "the file of {key} is in Procapita's outbox"
            );
        } else {
            assert!(received_keys.contains(&key), "{system} delivery {key} reached the vendor");
        }
    }

    // The inbox changed hands as its nodes were killed: more than one node took it.
    cluster.stop();
    let takers: std::collections::BTreeSet<usize> = (0..cluster.logs.len())
        .filter(|&i| {
            cluster.logs[i].lock().expect("lines").iter().any(|l| {
                l.contains("inbox:procapita") && (l.contains("took the poller") || l.contains("took the poller over"))
            })
        })
        .collect();
    assert!(takers.len() >= 2, "the SFTP inbox was taken by more than one run: {takers:?}");

    // The operational logs of every run never carry a personal identity number.
    let used: Vec<&String> =
        pnrs[2499..2500 + dropped.len()].iter().chain(&pnrs[3000..3000 + acked.decisions.len()]).collect();
    for log in &cluster.logs {
        for line in log.lock().expect("lines").iter() {
            for pnr in &used {
                assert!(
                    !line.contains(pnr.as_str()) && !line.contains(&pnr[2..]),
                    "a personal identity number in the log: {line}"
                );
            }
        }
    }
}

/// Two nodes on a shared database, the vendors taking every delivery, and a client with an
/// order at provider A and a tag in the home; with the order's id.
async fn two_nodes(
    label: &str,
    client: &str,
    tag: &str,
    decision: &str,
) -> (ScratchDb, MockServer, Cluster, Keys, String) {
    let database = shared_database(label).await;
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let dir = tempfile::tempdir().expect("dir");
    let configs: Vec<PathBuf> = ["n1", "n2"]
        .iter()
        .map(|n| node_config(dir.path(), n, &database, &vendor.uri(), &Options::default()))
        .collect();
    let cluster = Cluster::start(dir, configs).await;
    let keys = Keys::new();
    let sender = Sender::new(cluster.urls.clone());
    let a = sender
        .post("/v1/systems/combine/messages", &keys.combine(), &november_decision(decision, client, PROVIDER_A), false)
        .await;
    receipt(decision, &a);
    let order = a.body["order_id"].as_str().unwrap_or_else(|| panic!("{decision}: no order id: {}", a.body)).to_owned();
    let body = json!({"tag_uid": tag, "client": client, "installed_on": "2026-11-01"}).to_string();
    let a = sender.post("/v1/tags", &keys.combine(), &body, true).await;
    assert!(a.status.is_success(), "{} {}", a.status, a.body);
    (database, vendor, cluster, keys, order)
}

/// Posts `body` to node 0 and node 1 at the same instant; both answers.
async fn to_both(cluster: &Cluster, path: &str, token: &str, body: &str) -> [(StatusCode, Value); 2] {
    let http = reqwest::Client::new();
    let send = |node: usize| {
        let request = http.post(format!("{}{path}", cluster.url(node))).bearer_auth(token).body(body.to_owned());
        async move {
            let r = request.send().await.expect("the node answers");
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (a, b) = tokio::join!(send(0), send(1));
    [a, b]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_visit_sent_to_two_nodes_at_once_is_stored_once() {
    let client = test_pnrs()[2400].clone();
    let (database, _vendor, cluster, keys, _) = two_nodes("twinvisit", &client, "04E00001", "DEC-TWIN-V").await;
    let db = PathBuf::from(database.url());
    let token = keys.provider(PROVIDER_A);
    for k in 0..10u32 {
        let id = format!("TWIN-{k}");
        let day = 1 + k;
        let v = phoniro_visit(
            &id,
            PROVIDER_A,
            &client,
            "s-twin",
            "04E00001",
            &format!("2026-11-{day:02}T10:00"),
            Some(&format!("2026-11-{day:02}T10:30")),
            None,
        );
        let answers = to_both(&cluster, "/v1/systems/phoniro/messages", &token, &v.to_string()).await;
        let mut results: Vec<&Value> = answers
            .iter()
            .map(|(s, r)| {
                assert!(s.is_success(), "{s} {r}");
                &r["visits"][0]
            })
            .collect();
        results.sort_by_key(|r| r["duplicate_of"].is_string());
        assert!(results[0]["duplicate_of"].is_null() && results[0]["outcome"] == "accepted", "{results:?}");
        assert_eq!(codes_of(results[1]), vec!["VIS007".to_owned()], "the other is the copy: {results:?}");
        assert_eq!(results[1]["duplicate_of"], format!("phoniro:{id}"));
        let stored = db_value(&db, &format!("SELECT count(*) FROM visits WHERE source_id = 'phoniro:{id}'"));
        assert_eq!(stored, "1", "{id} is stored once");
    }
    let verify = carehub(&["audit", "verify", "--db", &database.url()]);
    assert!(verify.status.success(), "{verify:?}");
}

/// A visit result's codes.
fn codes_of(v: &Value) -> Vec<String> {
    v["codes"].as_array().map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_invoice_sent_to_two_nodes_at_once_is_verified_once() {
    let client = test_pnrs()[2401].clone();
    let (database, _vendor, cluster, keys, order) = two_nodes("twininvoice", &client, "04E00002", "DEC-TWIN-I").await;
    let token = keys.provider(PROVIDER_A);
    for k in 0..6 {
        let id = format!("TWIN-INV-{k}");
        let doc = peppol("invoice", &id, None, &[("1", &order, "1", "HUR", "390.00")]);
        let answers = to_both(&cluster, "/v1/systems/phoniro/messages", &token, &doc).await;
        let repeats: Vec<bool> = answers
            .iter()
            .map(|(s, r)| {
                assert_eq!(*s, StatusCode::ACCEPTED, "{r}");
                let lines = r["verification"]["lines"].as_array().expect("a verification with lines");
                lines.iter().all(|l| codes(&l["findings"]).contains(&"INV005".to_owned()))
            })
            .collect();
        assert_eq!(
            repeats.iter().filter(|r| !**r).count(),
            1,
            "{id}: verified once, found a repeat (INV005) once: {answers:?}"
        );
    }
    let verify = carehub(&["audit", "verify", "--db", &database.url()]);
    assert!(verify.status.success(), "{verify:?}");
}
