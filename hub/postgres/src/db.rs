//! One connection and the statements prepared on it, and the few calls every query goes
//! through: a statement is prepared once per connection and reused, so a batch of visits
//! costs one round trip per look-up, not two; every failure becomes a [`StoreError`], and a
//! column that does not read back is an error, never a panic.

use std::collections::HashMap;

use carehub_core::store::StoreError;
use postgres::error::SqlState;
use postgres::types::{FromSql, ToSql};
use postgres::{Client, Row, Statement, Transaction};

/// Statements one connection keeps prepared, past which the cache starts over (the
/// listings' filters make a bounded but open set of texts).
const MAX_STATEMENTS: usize = 512;

/// A pooled connection with its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    pub(crate) fn new(client: Client) -> Conn {
        Conn { client, statements: HashMap::new() }
    }

    /// Reads straight on the connection (each statement its own snapshot).
    pub(crate) fn reader(&mut self) -> Db<'_> {
        Db { exec: Exec::Client(&mut self.client), statements: &mut self.statements }
    }

    /// A transaction on the connection: rolled back when dropped without [`Db::commit`].
    pub(crate) fn transaction(&mut self) -> Result<Db<'_>, StoreError> {
        let tx = self.client.transaction().map_err(|e| pg("beginning a transaction", e))?;
        Ok(Db { exec: Exec::Tx(tx), statements: &mut self.statements })
    }
}

enum Exec<'a> {
    Client(&'a mut Client),
    Tx(Transaction<'a>),
}

/// Where queries run: a connection, or a transaction on it.
pub(crate) struct Db<'a> {
    exec: Exec<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

/// The parameters of a statement.
pub(crate) type Params<'p> = [&'p (dyn ToSql + Sync)];

/// A driver error as the store reports it.
pub(crate) fn pg(context: &str, e: postgres::Error) -> StoreError {
    StoreError::backend(format!("postgres: {context}"), e)
}

impl Db<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = match &mut self.exec {
            Exec::Client(c) => c.prepare(sql)?,
            Exec::Tx(t) => t.prepare(sql)?,
        };
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn raw_query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        match &mut self.exec {
            Exec::Client(c) => c.query(&s, params),
            Exec::Tx(t) => t.query(&s, params),
        }
    }

    fn raw_execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        match &mut self.exec {
            Exec::Client(c) => c.execute(&s, params),
            Exec::Tx(t) => t.execute(&s, params),
        }
    }

    /// Every row of a query.
    ///
    /// A read whose parameter holds a NUL character (a filter as a client sent it) finds
    /// nothing, as on SQLite: PostgreSQL's text cannot hold NUL, so no stored value equals
    /// it, and the server refuses the parameter rather than comparing it.
    pub(crate) fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        match self.raw_query(sql, params) {
            Err(e) if self.is_reader() && e.code() == Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE) => Ok(Vec::new()),
            other => other.map_err(|e| pg("querying", e)),
        }
    }

    fn is_reader(&self) -> bool {
        matches!(self.exec, Exec::Client(_))
    }

    /// The first row of a query, if any.
    pub(crate) fn opt(&mut self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The one row a query must return.
    pub(crate) fn one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, StoreError> {
        self.opt(sql, params)?.ok_or_else(|| StoreError::backend("postgres", "a query returned no row"))
    }

    /// Runs a statement; the rows it changed.
    pub(crate) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        self.raw_execute(sql, params).map_err(|e| pg("writing", e))
    }

    /// [`Db::execute`], a unique key already taken being [`StoreError::Conflict`] with
    /// what `what` says.
    pub(crate) fn insert_unique(&mut self, sql: &str, params: &Params<'_>, what: &str) -> Result<u64, StoreError> {
        self.raw_execute(sql, params).map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                StoreError::Conflict(what.to_owned())
            } else {
                pg("writing", e)
            }
        })
    }

    /// Runs several statements as one simple query (migrations).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match &mut self.exec {
            Exec::Client(c) => c.batch_execute(sql),
            Exec::Tx(t) => t.batch_execute(sql),
        }
        .map_err(|e| pg("running a batch", e))
    }

    /// Starts a `COPY ... FROM STDIN` (`carehub db copy`'s bulk load).
    pub(crate) fn copy_in(&mut self, sql: &str) -> Result<postgres::CopyInWriter<'_>, StoreError> {
        match &mut self.exec {
            Exec::Client(c) => c.copy_in(sql),
            Exec::Tx(t) => t.copy_in(sql),
        }
        .map_err(|e| pg("starting a copy", e))
    }

    /// Commits the transaction (a reader has nothing to commit).
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        match self.exec {
            Exec::Client(_) => Ok(()),
            Exec::Tx(t) => t.commit().map_err(|e| pg("committing", e)),
        }
    }
}

/// Column `i` of a row, an error (not a panic) when it does not read as `T`.
pub(crate) fn col<'r, T: FromSql<'r>>(r: &'r Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i).map_err(|e| pg(&format!("reading column {i}"), e))
}
