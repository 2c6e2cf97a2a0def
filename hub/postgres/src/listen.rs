//! Wake-ups across nodes: one `LISTEN carehub_outbox` connection per store.
//!
//! Every commit that adds outbox rows sends `NOTIFY carehub_outbox` inside its transaction
//! (`commit`), so the server tells every listening node once the rows are committed. Each
//! store keeps one connection of its own for it (not a pooled one: a pooled connection is
//! busy with queries and would not read notifications between them), on the async driver,
//! whose `Connection::poll_message` yields notifications as they arrive. A connection that
//! drops is opened again with a backoff (100 ms, doubling, at most 5 s); after each
//! (re)connection the delivery loop is woken once, for anything committed while no one
//! listened. The delivery loop polls as well, so a notification lost costs latency, never
//! a delivery. The listener ends when the store (every clone of it) is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_postgres::AsyncMessage;

use crate::commit::OUTBOX_CHANNEL;

/// The first wait before connecting again, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// What a store's listener needs: where to connect, and a signal that lives as long as the
/// store (the sender is the store's; dropped with its last clone).
pub(crate) struct Listener {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) alive: watch::Sender<()>,
}

impl Listener {
    pub(crate) fn new(config: tokio_postgres::Config) -> Listener {
        Listener { config, alive: watch::channel(()).0 }
    }

    /// Starts listening on the current Tokio runtime, waking `wake` on each notification;
    /// a warning (once) and nothing else outside a runtime.
    pub(crate) fn watch(&self, wake: Arc<Notify>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no async runtime: other nodes' outbox rows are found by polling only");
            return;
        };
        runtime.spawn(listen(self.config.clone(), self.alive.subscribe(), wake));
    }
}

/// Listens until `alive`'s sender is dropped, connecting again whenever the connection
/// drops.
async fn listen(config: tokio_postgres::Config, mut alive: watch::Receiver<()>, wake: Arc<Notify>) {
    let mut backoff = BACKOFF.0;
    loop {
        let ended = tokio::select! {
            ended = listen_once(&config, &wake) => ended,
            _ = alive.changed() => return,
        };
        match ended {
            // It listened, then the connection dropped: back off from the start again.
            Ok(true) => backoff = BACKOFF.0,
            Ok(false) => {
                tracing::warn!(
                    retry_in_ms = backoff.as_millis() as u64,
                    "the server closed the outbox wake-up connection"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot listen for outbox wake-ups");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = alive.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// One connection: LISTEN, wake once, then wake on every notification until the connection
/// ends. Whether it got as far as listening, or why it failed.
async fn listen_once(config: &tokio_postgres::Config, wake: &Notify) -> Result<bool, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    // The connection must be driven for the LISTEN to be sent and answered: read its
    // messages while the LISTEN runs, and after.
    let mut messages = std::pin::pin!(async {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    let statement = format!("LISTEN {OUTBOX_CHANNEL}");
    tokio::select! {
        listened = client.batch_execute(&statement) => listened?,
        ended = &mut messages => return ended.map(|()| false),
    }
    tracing::debug!("listening for outbox wake-ups");
    // Rows committed while no one listened.
    wake.notify_one();
    let ended = messages.await;
    drop(client);
    if let Err(e) = &ended {
        tracing::warn!(error = %e, "the outbox wake-up connection dropped; connecting again");
    }
    Ok(true)
}
