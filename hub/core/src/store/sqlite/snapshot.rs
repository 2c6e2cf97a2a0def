//! A hub's SQLite database read table by table, every read in one snapshot: the source of
//! `carehub db copy`, which moves a hub to PostgreSQL (`carehub_postgres::copy`).
//!
//! Why it is here: SQL over the SQLite file stays in the store. The copy says which tables
//! it moves and what their columns become; this module only lists the tables and columns
//! the file has and hands over their rows as SQLite keeps them ([`Value`]), so a table a
//! later migration adds is seen (and refused by the copy until it knows it), never missed.
//!
//! One snapshot: [`Snapshot::open`] begins a read transaction and reads once, and SQLite's
//! write-ahead log then shows every later read the database as it stood at that moment,
//! whatever a running hub writes meanwhile. The counts a copy checks are the rows it read.
//! (Stop the hub before a copy all the same: what it writes after the snapshot would not
//! move.) Nothing is ever written to the file, and a missing file is an error, not a new
//! empty database.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::MIGRATIONS;
use crate::store::StoreError;

/// A value as SQLite keeps it (its storage class).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A table of the database and its columns, in the table's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
}

/// A SQLite database open for reading in one snapshot.
pub struct Snapshot {
    conn: Connection,
}

/// `name` quoted as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn failed(what: String) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::backend(what, e)
}

impl Snapshot {
    /// Opens the database at `path` (which must exist), begins its snapshot, and checks
    /// that its schema is this carehub's: an older file is migrated first (`carehub
    /// migrate`, or a start of the hub), a newer one needs a newer carehub.
    pub fn open(path: &Path) -> Result<Snapshot, StoreError> {
        if !path.is_file() {
            return Err(StoreError::backend(
                "opening the SQLite database",
                format!("{}: no such database file", path.display()),
            ));
        }
        // Read-write without create: a read-only open of a WAL database fails when its
        // shared-memory file is absent, and nothing here writes.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(failed(format!("opening the SQLite database {}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // The first read after BEGIN fixes the snapshot every later read sees.
        conn.execute_batch("BEGIN")?;
        let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let _: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
        let known = MIGRATIONS.len();
        if version != known {
            let what = if version < known {
                "older than this carehub's: run `carehub migrate` on it (or start the hub on it once) first"
            } else {
                "newer than this carehub's: use the carehub that wrote it"
            };
            return Err(StoreError::backend(
                "opening the SQLite database",
                format!("{} is at schema version {version}, {what} ({known})", path.display()),
            ));
        }
        Ok(Snapshot { conn })
    }

    /// The database's tables (SQLite's own `sqlite_*` tables left out), by name, each
    /// with its columns.
    pub fn tables(&self) -> Result<Vec<Table>, StoreError> {
        let names: Vec<String> = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        names
            .into_iter()
            .map(|name| {
                let columns = self
                    .conn
                    .prepare(&format!("PRAGMA table_info({})", quoted(&name)))?
                    .query_map([], |r| r.get::<_, String>(1))?
                    .collect::<Result<_, _>>()?;
                Ok(Table { name, columns })
            })
            .collect()
    }

    /// How many rows `table` has.
    pub fn count(&self, table: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM {}", quoted(table)), [], |r| r.get(0))
            .map_err(failed(format!("counting the rows of {table}")))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Hands every row of `table` to `each`, its values in the order of `columns`, in the
    /// table's key order (rowid, or the primary key of a table without one), streamed: at
    /// most one row is in memory at a time. Stops at the first error `each` returns.
    /// The rows handed over.
    pub fn rows<E: From<StoreError>>(
        &self,
        table: &str,
        columns: &[String],
        mut each: impl FnMut(&[Value]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let list: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
        let sql = format!("SELECT {} FROM {}", list.join(", "), quoted(table));
        let reading = |e| StoreError::backend(format!("reading {table}"), e);
        let mut statement = self.conn.prepare(&sql).map_err(reading)?;
        let mut rows = statement.query([]).map_err(reading)?;
        let mut values = Vec::with_capacity(columns.len());
        let mut n = 0;
        while let Some(row) = rows.next().map_err(reading)? {
            values.clear();
            for (i, column) in columns.iter().enumerate() {
                values.push(match row.get_ref(i).map_err(reading)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Integer(v),
                    ValueRef::Real(v) => Value::Real(v),
                    ValueRef::Text(t) => Value::Text(
                        String::from_utf8(t.to_vec())
                            .map_err(|e| StoreError::backend(format!("reading {table}.{column}, row {}", n + 1), e))?,
                    ),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                });
            }
            each(&values)?;
            n += 1;
        }
        Ok(n)
    }
}
