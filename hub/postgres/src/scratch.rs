//! Throwaway databases, for tests and benchmarks: each one created with a unique name on a
//! server and dropped again when its [`ScratchDb`] is, so tests that each want an empty
//! database run in parallel on one server.

use std::sync::atomic::{AtomicU64, Ordering};

use carehub_core::store::StoreError;
use postgres::NoTls;

use crate::db::pg;

/// The server tests use unless `CAREHUB_TEST_POSTGRES` names another (a URL without a
/// database; the `postgres` database on it is used to create and drop the others).
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The server to create scratch databases on.
pub fn server() -> String {
    std::env::var("CAREHUB_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// A database of its own on a server, dropped (its connections closed) on drop.
pub struct ScratchDb {
    server: String,
    name: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn admin(server: &str) -> Result<postgres::Client, StoreError> {
    postgres::Client::connect(&format!("{server}/postgres"), NoTls).map_err(|e| pg("connecting to the server", e))
}

impl ScratchDb {
    /// Creates an empty database on `server` named after `label`, the process and a counter.
    /// Blocking: call it off the async threads (`spawn_blocking`), or use [`ScratchDb::create`].
    pub fn create_blocking(server: &str, label: &str) -> Result<ScratchDb, StoreError> {
        let label: String =
            label.chars().filter(|c| c.is_ascii_alphanumeric()).take(24).collect::<String>().to_ascii_lowercase();
        let name = format!(
            "carehub_{label}_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            random_suffix()
        );
        admin(server)?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| pg("creating a scratch database", e))?;
        Ok(ScratchDb { server: server.to_owned(), name })
    }

    /// [`ScratchDb::create_blocking`] on the blocking thread pool.
    pub async fn create(server: &str, label: &str) -> Result<ScratchDb, StoreError> {
        let (server, label) = (server.to_owned(), label.to_owned());
        tokio::task::spawn_blocking(move || ScratchDb::create_blocking(&server, &label))
            .await
            .map_err(|e| StoreError::backend("creating a scratch database", e))?
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A few random characters, so two processes with one pid (containers) do not collide. Not
/// a time: nothing here depends on the date a test runs.
fn random_suffix() -> String {
    format!("{:08x}", fastrand::u32(..))
}

impl Drop for ScratchDb {
    /// Drops the database on a thread of its own (a blocking client must not run on an
    /// async task's thread), closing whatever connections are still open to it.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            if let Ok(mut c) = admin(&server) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        });
        let _ = dropped.join();
    }
}

/// The rows of `sql` on the database at `url`, every value as text (the simple query
/// protocol), through a blocking client on a thread of its own so that an async test may
/// call it: how tests look into a database beside the store.
pub fn text_rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.simple_query(&sql)
            .expect("query")
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    })
    .join()
    .expect("the thread runs")
}
