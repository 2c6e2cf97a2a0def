//! Assembling the hub from its configuration: store, systems and their mappings, flows,
//! delivery loop, the API's state.
//!
//! [`build`] turns a validated [`Config`] into a [`Runtime`], which does not serve yet:
//! [`crate::run::start`] does. `carehub check` uses the mapping checks here without building
//! anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use carehub_core::adapter::{Feed, Registry, System, Transport};
use carehub_core::delivery::lease::Ownership;
use carehub_core::delivery::outbox::DeliveryLoop;
use carehub_core::hub::{Hub, HubParts};
use carehub_core::mapping::MappingSet;
use carehub_core::metrics::Metrics;
use carehub_core::store::sqlite::SqliteStore;
use carehub_core::store::Store;
use carehub_model::Clock;
use tokio::sync::Notify;

use crate::auth::Auth;
use crate::config::Config;
use crate::http::AppState;

/// A hub assembled from its configuration, not yet serving.
pub struct Runtime {
    pub state: AppState,
    pub delivery: Arc<DeliveryLoop>,
    /// HTTPS settings, when `[hub.tls]` is configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The server's timeouts and connection limit.
    pub limits: crate::accept::Limits,
    /// How often the background task checkpoints the message log (none: only on demand).
    pub checkpoint_every: Option<std::time::Duration>,
    /// This node's leases: the pollers, the visit forwarder and the checkpointer run only
    /// while it holds theirs.
    pub ownership: Arc<Ownership>,
}

/// The HTTP client every outbound HTTP transport shares.
pub fn http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(config.retry_policy().timeout)
        .user_agent(concat!("carehub/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

/// Loads the mappings of every vendor the configuration uses.
pub fn load_mappings(config: &Config) -> anyhow::Result<BTreeMap<&'static str, Arc<MappingSet>>> {
    let mut sets = BTreeMap::new();
    let mut problems = Vec::new();
    for s in &config.systems {
        let vendor = s.vendor.vendor();
        if sets.contains_key(vendor) {
            continue;
        }
        match carehub_adapters::load_mappings(vendor, config.hub.mappings_dir.as_deref()) {
            Ok(set) => {
                sets.insert(vendor, Arc::new(set));
            }
            Err(errors) => problems.extend(errors.into_iter().map(|e| e.to_string())),
        }
    }
    if problems.is_empty() {
        Ok(sets)
    } else {
        anyhow::bail!("mapping files have problems:\n  - {}", problems.join("\n  - "))
    }
}

/// What `carehub check` finds in the mapping files of the vendors a configuration names,
/// even a configuration with problems of its own.
#[derive(Default)]
pub struct MappingCheck {
    /// The vendors whose files load.
    pub sets: BTreeMap<&'static str, Arc<MappingSet>>,
    /// Every problem of the files that do not, as `FILE:LINE:COLUMN: reason` (or
    /// `FILE: reason` where the file has no place for it).
    pub problems: Vec<String>,
    /// The mappings the systems and routes need that no file provides (see
    /// [`missing_mappings`]).
    pub missing: Vec<String>,
}

/// Loads the mapping files of every vendor in `outline` the way the hub does, reports each
/// problem at its file's path, and finds the mappings missing for its systems and routes.
/// A file that does not load still counts for the message it means to map, so it is not
/// also reported missing; a vendor folder that cannot be read is one problem, not a
/// missing mapping for each message.
pub fn check_mappings(outline: &crate::config::Outline) -> MappingCheck {
    use carehub_core::mapping::{declared, MappingFileError};
    let mut check = MappingCheck::default();
    if outline.unreadable_mappings_dir {
        return check;
    }
    let dir = outline.mappings_dir.as_deref();
    // Each problem at the file's path: the folder's when one is configured, else the
    // repository's `mappings/` the built-in files come from.
    let placed = |e: MappingFileError| -> String {
        let file = match dir {
            Some(dir) if !Path::new(&e.file).is_absolute() => dir.join(&e.file).display().to_string(),
            Some(_) => e.file.clone(),
            None => format!("mappings/{}", e.file),
        };
        MappingFileError { file, ..e }.to_string()
    };
    let mut covered = BTreeMap::new();
    for s in &outline.systems {
        if covered.contains_key(s.vendor) {
            continue;
        }
        let files = match carehub_adapters::mapping_sources(s.vendor, dir) {
            Ok(files) => files,
            Err(errors) => {
                check.problems.extend(errors.into_iter().map(&placed));
                covered.insert(s.vendor, None);
                continue;
            }
        };
        match MappingSet::from_sources(s.vendor, files.iter().map(|(n, t)| (n.as_str(), t.as_str()))) {
            Ok(set) => {
                covered.insert(s.vendor, Some(set.mappings.iter().map(|m| (m.direction, m.message)).collect()));
                check.sets.insert(s.vendor, Arc::new(set));
            }
            Err(errors) => {
                check.problems.extend(errors.into_iter().map(&placed));
                covered.insert(s.vendor, Some(declared(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))));
            }
        }
    }
    check.missing = missing_mappings(outline, &covered);
    check
}

/// What each vendor's files map, as (direction, message); none when its folder could not
/// be read.
pub type Coverage = BTreeMap<&'static str, Option<Vec<(carehub_core::mapping::Direction, carehub_model::MessageType)>>>;

/// The messages each configured system must have a mapping for, given the routes, that
/// are missing: a case-management system sends decisions and is sent acknowledgements and
/// plan notices; a provider system some provider's orders go to is sent orders and sends
/// acknowledgements. Without them the hub would refuse messages at run time
/// (`HUB_MISCONFIGURED`). Each gap names the file that would fill it.
pub fn missing_mappings(outline: &crate::config::Outline, covered: &Coverage) -> Vec<String> {
    use carehub_core::adapter::SystemRole;
    use carehub_core::mapping::Direction;
    use carehub_model::MessageType;
    let mut gaps = Vec::new();
    for s in &outline.systems {
        let vendor = s.vendor;
        let Some(Some(present)) = covered.get(vendor) else { continue };
        let routed = s.name.as_ref().is_some_and(|n| outline.routed.contains(n));
        let needs: &[(Direction, MessageType, &str)] = match s.role {
            SystemRole::CaseManagement => &[
                (Direction::In, MessageType::Decision, "decisions it sends"),
                (Direction::Out, MessageType::OrderAck, "acknowledgements of its orders"),
                (Direction::Out, MessageType::PlanNotice, "plan notices of its orders"),
            ],
            SystemRole::ProviderSystem if routed => &[
                (Direction::Out, MessageType::Order, "the orders of the providers routed to it"),
                (Direction::In, MessageType::OrderAck, "its acknowledgements of orders"),
            ],
            SystemRole::ProviderSystem => &[],
        };
        let name = s.name.as_deref().unwrap_or("(no name)");
        for (direction, kind, what) in needs {
            if !present.contains(&(*direction, *kind)) {
                let (dir, way) = match direction {
                    Direction::In => ("in", "inbound"),
                    Direction::Out => ("out", "outbound"),
                };
                let folder = match &outline.mappings_dir {
                    Some(d) => d.join(vendor).display().to_string(),
                    None => format!("mappings/{vendor} (built in)"),
                };
                let gap = format!(
                    "{folder}/{}.{dir}.toml: system {name} ({vendor}) has no {way} {kind} mapping, needed for {what}",
                    kind.as_str(),
                );
                if !gaps.contains(&gap) {
                    gaps.push(gap);
                }
            }
        }
    }
    gaps
}

/// How a caller may wrap a system's outbound transport (by the system's name), for
/// [`build_with_transports`].
pub type WrapTransport<'a> = &'a dyn Fn(&str, Arc<dyn Transport>) -> Arc<dyn Transport>;

/// How a caller may wrap a system's feed (given the system, for its mappings), for
/// [`build_with_hooks`].
pub type WrapFeed<'a> = &'a dyn Fn(&System, Arc<dyn Feed>) -> Arc<dyn Feed>;

/// The configured systems.
pub fn registry(config: &Config, clock: &Clock) -> anyhow::Result<Registry> {
    registry_with(config, clock, &|_, transport| transport, &|_, feed| feed)
}

/// The configured systems, each transport and feed as `wrap` and `wrap_feed` make them.
fn registry_with(
    config: &Config,
    clock: &Clock,
    wrap: WrapTransport<'_>,
    wrap_feed: WrapFeed<'_>,
) -> anyhow::Result<Registry> {
    let client = http_client(config)?;
    let mappings = load_mappings(config)?;
    Ok(Registry::new(config.systems.iter().map(|s| {
        let set = mappings[s.vendor.vendor()].clone();
        let mut system = carehub_adapters::build_system(&s.name, &s.vendor, set, &client, clock);
        system.visit_reports = s.visit_reports;
        system.transport = wrap(&s.name, system.transport.clone());
        if let Some((feed, every)) = system.feed.take() {
            system.feed = Some((wrap_feed(&system, feed), every));
        }
        system
    })))
}

/// Opens the store and assembles the hub, reading every "now" from `clock` (the system
/// clock for `carehub serve`; a clock set to an instant for tests, the demo and the mock hub).
pub fn build(config: &Config, clock: Clock) -> anyhow::Result<Runtime> {
    let store = open_store(&config.hub.database, clock.clone())?;
    build_with_store(config, store, clock)
}

/// Opens the store `database` names, migrating it: a PostgreSQL database by its
/// `postgres://` URL, otherwise a SQLite file (created if needed).
pub fn open_store(database: &Path, clock: Clock) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match crate::config::database_url(database) {
        Some(url) => Arc::new(
            carehub_postgres::PgStore::open_blocking(url, clock).context("cannot open the PostgreSQL database")?,
        ),
        None => Arc::new(
            SqliteStore::open(database, clock)
                .with_context(|| format!("cannot open the database {}", database.display()))?,
        ),
    })
}

/// Whether an existing database is named: a PostgreSQL URL (reached when opened), or a
/// SQLite file that exists. Commands that read a database refuse to create an empty one.
pub fn database_exists(database: &Path) -> bool {
    crate::config::database_url(database).is_some() || database.is_file()
}

/// `[console]` as the console takes it.
fn console_settings(c: &crate::config::ConsoleSection) -> crate::http::console::Settings {
    crate::http::console::Settings {
        issuer: c.issuer.clone(),
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.as_ref().map(|s| s.expose().to_owned()),
        role_claim: c.role_claim.clone(),
        provider_claim: c.provider_claim.clone(),
        public_url: c.public_url.as_ref().map(|u| u.trim_end_matches('/').to_owned()),
        redirect_url: c.redirect_url.clone(),
        max_age: chrono::Duration::minutes(i64::try_from(c.session_max_age_minutes).unwrap_or(i64::MAX / 120_000)),
    }
}

/// [`build`], with every system's outbound transport as `wrap` makes it: the mock hub
/// journals what the hub sends a vendor by wrapping that vendor's transport, so the
/// journal sees each attempt as the delivery loop makes it (the bytes, the answer, the
/// time taken), retries included.
pub fn build_with_transports(config: &Config, clock: Clock, wrap: WrapTransport<'_>) -> anyhow::Result<Runtime> {
    build_with_hooks(config, clock, wrap, &|_, feed| feed)
}

/// [`build_with_transports`], with every system's feed as `wrap_feed` makes it too: the
/// mock hub journals each page it pulls from a vendor's feed the same way.
pub fn build_with_hooks(
    config: &Config,
    clock: Clock,
    wrap: WrapTransport<'_>,
    wrap_feed: WrapFeed<'_>,
) -> anyhow::Result<Runtime> {
    let store = open_store(&config.hub.database, clock.clone())?;
    build_parts(config, store, clock, wrap, wrap_feed)
}

/// Assembles the hub over a given store.
pub fn build_with_store(config: &Config, store: Arc<dyn Store>, clock: Clock) -> anyhow::Result<Runtime> {
    build_parts(config, store, clock, &|_, transport| transport, &|_, feed| feed)
}

fn build_parts(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Clock,
    wrap: WrapTransport<'_>,
    wrap_feed: WrapFeed<'_>,
) -> anyhow::Result<Runtime> {
    let registry = Arc::new(registry_with(config, &clock, wrap, wrap_feed)?);
    let metrics = Arc::new(Metrics::for_node(&config.hub.node));
    let notify = Arc::new(Notify::new());
    let hub = Arc::new(Hub::new(HubParts {
        store: store.clone(),
        registry: registry.clone(),
        routes: config.routes(),
        deadlines: config.deadlines(),
        metrics: metrics.clone(),
        outbox_notify: notify.clone(),
        visit_rules: config.visits.thresholds(),
        report_batch: config.visits.report_batch(),
        invoice_policy: config.invoice_policy(),
        clock: clock.clone(),
    }));
    let checkpointer = config.audit.key().map(|key| {
        Arc::new(carehub_core::audit::Checkpointer::new(store.clone(), key, config.audit.origin.clone(), clock.clone()))
    });
    // Who this node and process is to the store: its delivery claims and its pollers'
    // leases. A restarted process is a new owner.
    let owner = format!("{}/pid{}-{:08x}", config.hub.node, std::process::id(), fastrand::u32(..));
    let ownership =
        Arc::new(Ownership::new(store.clone(), clock.clone(), owner.clone(), config.lease_settings(), metrics.clone()));
    let delivery = Arc::new(DeliveryLoop {
        store,
        registry,
        policy: config.retry_policy(),
        metrics,
        notify,
        owner,
        max_in_flight: config.delivery.max_in_flight,
        clock: clock.clone(),
        idle_poll: std::time::Duration::from_millis(config.delivery.idle_poll_ms),
    });
    let state = AppState {
        hub,
        auth: Arc::new(Auth::new(config.jwt_secret.expose(), clock.clone())),
        max_body: config.hub.max_body_bytes,
        delivery_running: Arc::new(AtomicBool::new(false)),
        scheme: if config.hub.tls.is_some() { "https" } else { "http" },
        manual_share_threshold: config.visits.manual_share_threshold,
        gate: Arc::new(crate::http::state::IntakeGate::new(config.delivery.max_backlog)),
        checkpointer,
        console: config
            .console
            .as_ref()
            .map(|c| Arc::new(crate::http::console::Console::new(console_settings(c), clock.clone()))),
    };
    let tls = match &config.hub.tls {
        Some(section) => Some(Arc::new(crate::tls::Tls::load(section, config)?)),
        None => None,
    };
    let checkpoint_every = (config.audit.checkpoint_every_ms > 0)
        .then(|| std::time::Duration::from_millis(config.audit.checkpoint_every_ms));
    Ok(Runtime { state, delivery, tls, limits: crate::accept::Limits::of(config), checkpoint_every, ownership })
}
