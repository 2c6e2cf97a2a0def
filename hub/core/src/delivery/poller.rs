//! Reading the files systems leave for the hub (SFTP folders), one poller per system.
//!
//! Each poll lists the complete files in the system's inbox and takes them one by one:
//! the file is logged (with everything it causes) by [`Hub::take_file`] first, and only then
//! moved: to the archive when the hub took it (or had taken it before), to the error folder
//! with a reason file when the hub refused it. A file the hub could not log (the store was
//! unavailable) stays where it is for the next poll. A file that cannot be read or moved is
//! skipped, not allowed to block the others. A connection that fails is retried at the
//! next poll.

use std::sync::Arc;

use carehub_model::{ErrorCode, Message};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::adapter::{Feed, Inbox, System};
use crate::delivery::lease::Lease;
use crate::hub::{Hub, Sender};

/// A file name as the operational log may show it: a run of ten or more digits (which could
/// be a personal identity number a producer put in the name) is masked.
pub fn shown(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.chars().filter(char::is_ascii_digit).count() >= 10
            && !digits.contains("--")
            && digits.matches('-').count() <= 1
        {
            out.push_str("**REDACTED**");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in name.chars() {
        if c.is_ascii_digit() || (c == '-' && !digits.is_empty()) {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub taken: usize,
    pub rejected: usize,
    pub left: usize,
    /// The inbox could not be listed (connection, permissions).
    pub failed: bool,
}

/// Polls one system's inbox.
pub struct Poller {
    pub hub: Arc<Hub>,
    pub system: Arc<System>,
    pub inbox: Arc<dyn Inbox>,
}

impl Poller {
    /// The name of the lease an inbox is polled under (one node at a time polls it).
    pub fn lease_name(system: &str) -> String {
        format!("inbox:{system}")
    }

    /// Polls every `system.poll_interval` until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let lease = Lease::always(&Poller::lease_name(&self.system.name));
        self.run_leased(lease, shutdown).await;
    }

    /// [`run`](Self::run), polling only while this node holds `lease`: a pass begins only
    /// while it does (at once when the node takes the lease), and a lease lost during a pass
    /// stops the polling after it.
    pub async fn run_leased(self, mut lease: Lease, mut shutdown: watch::Receiver<bool>) {
        info!(system = %self.system.name, every_s = self.system.poll_interval.as_secs_f64(), "polling started");
        loop {
            if !lease.wait(&mut shutdown).await {
                break;
            }
            self.poll_once().await;
            tokio::select! {
                _ = tokio::time::sleep(self.system.poll_interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
    }

    /// One pass over the inbox.
    pub async fn poll_once(&self) -> PollReport {
        let mut report = PollReport::default();
        let system = self.system.name.as_str();
        let names = match self.inbox.ready().await {
            Ok(n) => n,
            Err(e) => {
                warn!(system, error = %e, "cannot list the inbox");
                report.failed = true;
                return report;
            }
        };
        for name in names {
            let bytes = match self.inbox.read(&name).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(system, file = %shown(&name), error = %e, "cannot read a file; skipped");
                    report.left += 1;
                    continue;
                }
            };
            match self.hub.take_file(system, &name, bytes).await {
                Ok(_) => match self.inbox.archive(&name).await {
                    Ok(()) => report.taken += 1,
                    Err(e) => {
                        // Logged but not moved: the next poll finds it again and the hub
                        // answers it as a repeat.
                        warn!(system, file = %shown(&name), error = %e, "cannot archive a file");
                        report.left += 1;
                    }
                },
                Err(r) if r.code == ErrorCode::Unavailable => {
                    warn!(system, file = %shown(&name), "the store is unavailable; the file waits for the next poll");
                    report.left += 1;
                }
                Err(r) => {
                    let reason = format!(
                        "{}: {}\nmessage_id: {}\n",
                        r.code,
                        r.message,
                        r.message_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into())
                    );
                    match self.inbox.reject(&name, &reason).await {
                        Ok(()) => report.rejected += 1,
                        Err(e) => {
                            warn!(system, file = %shown(&name), error = %e, "cannot move a refused file");
                            report.left += 1;
                        }
                    }
                }
            }
        }
        if report.taken + report.rejected > 0 {
            info!(system, taken = report.taken, rejected = report.rejected, left = report.left, "inbox polled");
        }
        self.hub.metrics().polled(system, "inbox", self.hub.clock().now().timestamp());
        report
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_names_in_the_log_hide_what_could_be_a_personal_identity_number() {
        assert_eq!(super::shown("beslut-193601016987.xml"), "beslut-**REDACTED**.xml");
        assert_eq!(super::shown("beslut-19360101-6987.xml"), "beslut-**REDACTED**.xml");
        assert_eq!(super::shown("beslut-2026-11-118.xml"), "beslut-2026-11-118.xml");
    }
}

/// Pulls one system's feed (Phoniro's visits): page after page from the cursor stored with
/// the last page taken, until the feed has nothing new, then again every `every`.
///
/// Each page is classified by [`crate::intake`] and taken by the visit flow through
/// `Hub::take_pages` rather than [`Hub::receive`], because several pages and the feed's
/// next cursor go into one commit: a hub stopped between pages resumes at the page after
/// the last one stored, so no visit is skipped and none is taken twice.
pub struct FeedPoller {
    pub hub: Arc<Hub>,
    pub system: Arc<System>,
    pub feed: Arc<dyn Feed>,
    pub every: std::time::Duration,
}

/// What one pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    pub pages: usize,
    pub visits: usize,
    /// The pull stopped early: the feed failed or a page was refused.
    pub stopped: Option<String>,
}

impl FeedPoller {
    /// The name of the lease a feed is pulled under (one node at a time pulls it).
    pub fn lease_name(system: &str) -> String {
        format!("feed:{system}")
    }

    /// Runs until `shutdown` turns true. A pull under way when it does stops after the
    /// commit in progress, so what was read is stored with its cursor.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let lease = Lease::always(&FeedPoller::lease_name(&self.system.name));
        self.run_leased(lease, shutdown).await;
    }

    /// [`run`](Self::run), pulling only while this node holds `lease`: a pull begins only
    /// while it does, and a lease lost during a pull stops the pulling after it. Whichever
    /// node pulls next starts at the cursor stored with the last page committed.
    pub async fn run_leased(self, mut lease: Lease, mut shutdown: watch::Receiver<bool>) {
        loop {
            if !lease.wait(&mut shutdown).await {
                return;
            }
            let report = self.pull_until(&shutdown).await;
            if *shutdown.borrow() {
                return;
            }
            if let Some(why) = &report.stopped {
                warn!(system = %self.system.name, pages = report.pages, reason = %why, "feed pull stopped");
            } else {
                self.hub.metrics().polled(&self.system.name, "feed", self.hub.clock().now().timestamp());
                if report.pages > 0 {
                    info!(system = %self.system.name, pages = report.pages, visits = report.visits, "feed pulled");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Takes pages until one brings nothing new (no visits, or no cursor beyond the one
    /// asked with). A reader task fetches and maps pages ahead (following each page's
    /// cursor) while the store takes the ones already read: up to [`PAGES_PER_COMMIT`] pages
    /// that are waiting go into one commit, each with its log entry, the last with its cursor,
    /// so the network, the mapping and the store work side by side and a commit's fixed cost
    /// is shared.
    pub async fn pull(&self) -> PullReport {
        let (_keep, never) = watch::channel(false);
        self.pull_until(&never).await
    }

    /// [`pull`](Self::pull), stopping after the commit under way once `stop` turns true.
    pub async fn pull_until(&self, stop: &watch::Receiver<bool>) -> PullReport {
        let mut report = PullReport::default();
        let cursor = match self.hub.store().feed_cursor(&self.system.name).await {
            Ok(c) => c,
            Err(e) => {
                report.stopped = Some(format!("store: {e}"));
                return report;
            }
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Fetched, String>>(PAGES_PER_COMMIT);
        let (feed, system) = (self.feed.clone(), self.system.clone());
        let reader = tokio::spawn(async move {
            let mut cursor = cursor;
            loop {
                let page = match feed.page(cursor.as_deref()).await {
                    Ok(body) => {
                        let decoded = crate::intake::Payload::of_feed_page(&system, &body);
                        Fetched { body, decoded }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string())).await;
                        return;
                    }
                };
                let (visits, next) = match &page.decoded {
                    Ok((_, Message::Visits(b))) => (b.visits.len(), b.cursor.clone()),
                    _ => (0, None),
                };
                // An empty page that moves nothing ends the pull: there is nothing to take,
                // and the log does not fill up with polls.
                if page.decoded.is_ok() && visits == 0 && (next.is_none() || next == cursor) {
                    return;
                }
                let more = visits > 0 && next.is_some() && next != cursor;
                if tx.send(Ok(page)).await.is_err() || !more {
                    return;
                }
                cursor = next;
            }
        });
        while let Some(first) = rx.recv().await {
            let mut pages = vec![first];
            while pages.len() < PAGES_PER_COMMIT {
                match rx.try_recv() {
                    Ok(p) => pages.push(p),
                    Err(_) => break,
                }
            }
            let mut readable = Vec::new();
            let mut problem = None;
            for p in pages {
                match p {
                    Ok(Fetched { body, decoded: Ok((decoded, Message::Visits(batch))) }) => {
                        readable.push((body, decoded, batch));
                    }
                    Ok(other) => {
                        problem = Some(other);
                        break;
                    }
                    Err(e) => {
                        report.stopped = Some(e);
                        break;
                    }
                }
            }
            if !readable.is_empty() {
                match self.hub.take_pages(&self.system, readable).await {
                    Ok(taken) => {
                        report.pages += taken.len();
                        report.visits += taken.iter().map(|r| r.results.len()).sum::<usize>();
                    }
                    Err(r) => {
                        report.stopped = Some(format!("pages not stored: {}: {}", r.code, r.message));
                    }
                }
            }
            if let Some(page) = problem {
                // Logged as rejected; the cursor stays, so the page is asked for again at the
                // next poll (the vendor may have fixed it by then).
                let refused = self
                    .hub
                    .dispatch(&self.system, page.body, "application/json", page.decoded, &Sender::Trusted)
                    .await
                    .err()
                    .map(|r| format!("{}: {}", r.code, r.message))
                    .unwrap_or_else(|| "not a page of visits".into());
                report.stopped = Some(format!("page refused: {refused}"));
            }
            if report.stopped.is_some() || *stop.borrow() {
                break;
            }
        }
        drop(rx);
        let _ = reader.await;
        report
    }
}

/// Pages of a feed stored in one commit at most (when that many are read and waiting).
pub const PAGES_PER_COMMIT: usize = 4;

/// A page fetched and read, not yet stored.
struct Fetched {
    body: Vec<u8>,
    decoded:
        Result<(crate::mapping::Decoded, Message), (Option<crate::mapping::Decoded>, carehub_model::ValidationError)>,
}
