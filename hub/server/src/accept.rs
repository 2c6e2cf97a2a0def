//! The one accept loop for HTTP and HTTPS: slow and idle clients, the connection limit,
//! and a graceful stop.
//!
//! Every connection, plain or TLS, is served by hyper's HTTP/1 connection under a small
//! watchdog that knows what the connection is doing (bytes read and written, requests in
//! the handlers) and closes it when:
//! - a request's headers take longer than `header_read_timeout` to arrive (counted from the
//!   connection's opening, or from the first byte of a later request on it): a client that
//!   connects and stalls holds nothing for long;
//! - a kept-alive connection has sat between requests for `idle_timeout`.
//!
//! A request whose headers have arrived is never cut by these timeouts: it is in the
//! handlers, which answer. At most `max_connections` connections are open at once (a TLS
//! handshake counts); the next is closed at once, a plain-HTTP one after a short 503.
//!
//! On shutdown the listener is dropped (no new connections), idle connections are closed,
//! and each connection with a request in flight answers it and closes; after
//! `drain_timeout` whatever is left is cut. A request the hub has started to handle is
//! therefore answered unless the drain timeout runs out; one it had not started is not
//! handled at all, and the client sees a closed connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::tls::{PeerSystem, Tls};

/// The server's timeouts and connection limit (`[hub]` in `carehub.toml`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

impl Limits {
    /// The limits `[hub]` configures. Here rather than in `config`, so the configuration
    /// stays plain data that knows nothing of the server that reads it.
    pub fn of(config: &Config) -> Limits {
        let hub = &config.hub;
        Limits {
            header_read_timeout: Duration::from_millis(hub.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(hub.idle_timeout_ms),
            max_connections: hub.max_connections,
            drain_timeout: Duration::from_millis(hub.drain_timeout_ms),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// What the server counts about connections (kept by the hub's metrics).
pub trait ConnectionEvents: Send + Sync + 'static {
    fn opened(&self);
    fn closed(&self);
    fn refused(&self);
}

/// Serves `app` on `listener`, over TLS when `tls` is given, until `shutdown` turns true;
/// then drains as described in the module documentation.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<Tls>>,
    limits: Limits,
    events: Arc<dyn ConnectionEvents>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
            _ = stopped(&mut shutdown) => break,
        };
        let (tcp, peer): (TcpStream, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            events.refused();
            debug!(%peer, max = limits.max_connections, "connection limit reached; connection closed");
            if tls.is_none() {
                // A fresh socket's send buffer is empty: this does not block, and if it
                // cannot write the client just sees the connection close.
                let _ = tcp.try_write(BUSY);
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (app, tls, events, shutdown) = (app.clone(), tls.clone(), events.clone(), shutdown.clone());
        events.opened();
        connections.spawn(async move {
            match tls {
                None => connection(tcp, app, limits, shutdown).await,
                Some(tls) => match tokio::time::timeout(limits.header_read_timeout, tls.accept(tcp, peer)).await {
                    Ok(Ok((stream, system))) => {
                        let app = app.layer(axum::Extension(PeerSystem(system)));
                        connection(stream, app, limits, shutdown).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                },
            }
            events.closed();
            drop(permit);
        });
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        info!(connections = open, "draining connections");
    }
    let drained =
        tokio::time::timeout(limits.drain_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            connections = connections.len(),
            drain_timeout_ms = limits.drain_timeout.as_millis() as u64,
            "connections still busy after the drain timeout; cut"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Resolves once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// What a plain-HTTP client over the connection limit reads before the connection closes.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n\
content-length: 66\r\n\r\n{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections; try again\"}";

/// Serves one connection until it ends, a timeout closes it, or shutdown drains it.
async fn connection<I>(io: I, app: Router, limits: Limits, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = Watched { inner: io, activity: activity.clone() };
    let hyper_service = TowerToHyperService::new(app);
    let in_handlers = activity.clone();
    let service = hyper::service::service_fn(move |request| {
        let guard = in_handlers.request_started();
        let answer = hyper::service::Service::call(&hyper_service, request);
        async move {
            let response = answer.await;
            drop(guard);
            response
        }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        let check = activity.next_check(&limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopped(&mut shutdown), if !draining => {
                draining = true;
                // Answers a request in flight, then closes; closes an idle connection.
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(check.into()) => {}
        }
        match activity.verdict(&limits, draining) {
            Verdict::Keep => {}
            Verdict::Close(why) => {
                debug!(reason = why, "connection closed");
                return;
            }
        }
    }
}

/// What the watchdog decided.
enum Verdict {
    Keep,
    Close(&'static str),
}

/// What a connection is doing, as its watchdog sees it. Times are milliseconds since the
/// connection opened.
struct Activity {
    opened: Instant,
    /// Requests in the handlers.
    in_flight: AtomicUsize,
    /// Requests the connection has handed to the handlers so far.
    served: AtomicU64,
    /// When the connection last became idle (opened, or its last request answered).
    idle_since: AtomicU64,
    /// When the first byte of the next request's headers arrived, while idle.
    head_since: Mutex<Option<u64>>,
}

/// Marks a request as in the handlers until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now(), Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_since: Mutex::new(None),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut head) = self.head_since.lock() {
            *head = None;
        }
        InFlight(self.clone())
    }

    /// Bytes arrived: if the connection was idle, a request's headers have begun.
    fn read_some(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            if let Ok(mut head) = self.head_since.lock() {
                head.get_or_insert_with(|| self.now());
            }
        }
    }

    /// The deadline the connection is held to now, in milliseconds since it opened, and
    /// why; `None` while a request is in the handlers.
    fn deadline(&self, limits: &Limits, draining: bool) -> Option<(u64, &'static str)> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let ms = |d: Duration| d.as_millis() as u64;
        let head = self.head_since.lock().ok().and_then(|h| *h);
        Some(match head {
            Some(since) => (since + ms(limits.header_read_timeout), "request headers not received in time"),
            None if draining => (0, "shutting down"),
            None if self.served.load(Ordering::SeqCst) == 0 => {
                (ms(limits.header_read_timeout), "no request headers in time")
            }
            None => (self.idle_since.load(Ordering::SeqCst) + ms(limits.idle_timeout), "idle"),
        })
    }

    fn verdict(&self, limits: &Limits, draining: bool) -> Verdict {
        match self.deadline(limits, draining) {
            Some((at, why)) if self.now() >= at => Verdict::Close(why),
            _ => Verdict::Keep,
        }
    }

    /// When the watchdog should look again: at the deadline, or in a while when a request
    /// is in the handlers (its end resets the deadline).
    fn next_check(&self, limits: &Limits) -> Instant {
        let poll = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        match self.deadline(limits, false) {
            Some((at, _)) => (self.opened + Duration::from_millis(at)).max(Instant::now()).min(Instant::now() + poll),
            None => Instant::now() + poll,
        }
    }
}

/// A connection's stream that tells its [`Activity`] when bytes arrive.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
