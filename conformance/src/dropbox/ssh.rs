//! The SSH side of the drop box: logs a user in and starts the `sftp` subsystem on a
//! session channel; refuses shells, commands and everything else an SSH server may offer.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Config, Msg, PublicKeyOffer, Server as _, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tracing::{debug, info};

use super::files::Files;
use super::jail::Jail;
use super::{Account, Observer};

/// What every connection shares: the accounts and the observer.
pub(super) struct Shared {
    pub accounts: HashMap<String, Account>,
    pub observer: Observer,
}

/// Equal in time whatever the bytes, so a password cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Shared {
    fn password_ok(&self, user: &str, password: &str) -> bool {
        self.accounts
            .get(user)
            .and_then(|a| a.password.as_deref())
            .is_some_and(|p| same(p.as_bytes(), password.as_bytes()))
    }

    fn key_ok(&self, user: &str, key: &PublicKey) -> bool {
        self.accounts.get(user).is_some_and(|a| a.keys.iter().any(|k| k.key_data() == key.key_data()))
    }
}

struct Server {
    shared: Arc<Shared>,
}

impl russh::server::Server for Server {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        debug!(peer = ?peer, "dropbox connection");
        Connection { shared: self.shared.clone(), user: None, channels: HashMap::new() }
    }
}

/// One client connection.
pub(super) struct Connection {
    shared: Arc<Shared>,
    /// Set once a login succeeded.
    user: Option<String>,
    /// Session channels opened and not yet given to a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl Connection {
    fn accepted(&mut self, user: &str, how: &'static str) -> Auth {
        info!(user, how, "dropbox login");
        self.user = Some(user.to_owned());
        Auth::Accept
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.shared.password_ok(user, password) {
            return Ok(self.accepted(user, "password"));
        }
        info!(user, "dropbox login refused (password)");
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        // A key that would be refused anyway is refused before the client signs with it.
        Ok(if self.shared.key_ok(user, offer.public_key) { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        if self.shared.key_ok(user, key.public_key) {
            return Ok(self.accepted(user, "key"));
        }
        info!(user, "dropbox login refused (key)");
        Ok(Auth::reject())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(&mut self, id: ChannelId, name: &str, session: &mut Session) -> Result<(), Self::Error> {
        let account = self.user.as_deref().and_then(|u| self.shared.accounts.get(u).map(|a| (u, a)));
        let (Some((user, account)), Some(channel), "sftp") = (account, self.channels.remove(&id), name) else {
            return session.channel_failure(id);
        };
        let jail = match Jail::open(&account.root).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(user, error = %e, "dropbox folder cannot be opened");
                return session.channel_failure(id);
            }
        };
        session.channel_success(id)?;
        let files = Files::new(user.to_owned(), jail, self.shared.observer.clone());
        // Runs on a task of its own until the channel closes.
        russh_sftp::server::run(EndOnError(channel.into_stream()), files).await;
        Ok(())
    }

    async fn shell_request(&mut self, id: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        session.close(id)
    }

    async fn exec_request(&mut self, id: ChannelId, _data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        session.close(id)
    }

    async fn channel_eof(&mut self, id: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        // The client sends nothing more: the subsystem has ended, the channel can go.
        self.channels.remove(&id);
        session.close(id)
    }
}

/// Accepts connections on `listener` until `shutdown`, then disconnects the open ones.
pub(super) async fn run(
    config: Arc<Config>,
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut server = Server { shared };
    let running = server.run_on_socket(config, &listener);
    let handle = running.handle();
    tokio::select! {
        result = running => result,
        () = shutdown => {
            handle.shutdown("the drop box is closing".into());
            Ok(())
        }
    }
}

/// A channel's stream whose read errors read as its end. `russh-sftp` ends a session only at
/// end of stream and retries other errors, so a broken channel would otherwise keep its
/// session (and the files it holds open) alive.
struct EndOnError<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for EndOnError<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => {
                debug!(error = %e, "dropbox channel read failed, ending the session");
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EndOnError<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
