//! One connection and the statements prepared on it, and the few calls every query goes
//! through: a statement is prepared once per connection and reused, so a batch of visits
//! costs one round trip per look-up, not two; every failure becomes a [`StoreError`], and a
//! column that does not read back is an error, never a panic.
//!
//! # Inserts held until the next statement
//!
//! A writer's transaction pays one round trip per statement, and the writer is one thread:
//! at a decision's eight inserts, a node's intake was bounded by loopback latency, not by
//! either CPU (measured: the hub at a fifth of the cores, PostgreSQL idle, the writer
//! thread always in a socket call). So a transaction may hold plain inserts
//! ([`Db::insert_later`]) and send them together: at the next statement of any other kind,
//! and before it commits, every held row goes to the server in one statement (a multi-row
//! `INSERT` per table, chained as `WITH` parts in the order their foreign keys need) with
//! its parameters' types, so one round trip carries them all. A held row's values are
//! encoded when it is held (with the types the single-row statement was prepared with), so
//! nothing borrowed outlives the call. Errors then surface at the flush, not at the insert:
//! the writer uses this only on its optimistic pass, and runs a batch again one statement
//! at a time when that pass fails (`commit.rs`).

use std::collections::HashMap;

use bytes::BytesMut;
use carehub_core::store::StoreError;
use postgres::error::SqlState;
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
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
        Db { exec: Exec::Client(&mut self.client), statements: &mut self.statements, held: None }
    }

    /// A transaction on the connection: rolled back when dropped without [`Db::commit`].
    pub(crate) fn transaction(&mut self) -> Result<Db<'_>, StoreError> {
        let tx = self.client.transaction().map_err(|e| pg("beginning a transaction", e))?;
        Ok(Db { exec: Exec::Tx(tx), statements: &mut self.statements, held: None })
    }

    /// [`Conn::transaction`] that holds [`Db::insert_later`]'s rows until the next
    /// statement of another kind or the commit.
    pub(crate) fn holding_transaction(&mut self) -> Result<Db<'_>, StoreError> {
        let mut db = self.transaction()?;
        db.held = Some(Vec::new());
        Ok(db)
    }
}

/// A parameter already encoded in PostgreSQL's binary format (or NULL).
#[derive(Debug)]
struct Encoded(Option<Vec<u8>>);

impl ToSql for Encoded {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The rows held for one single-row `INSERT` statement.
struct Held {
    /// Where its table comes in the flush: lower first (a table before those that refer to it).
    rank: u8,
    /// The statement as written, `INSERT INTO t (...) VALUES ($1, ..., $n)`.
    sql: &'static str,
    /// Where its `VALUES` starts.
    values_at: usize,
    /// Its parameters per row, and their types as the server prepared them.
    width: usize,
    types: Vec<Type>,
    values: Vec<Encoded>,
}

impl Held {
    fn rows(&self) -> usize {
        self.values.len() / self.width.max(1)
    }
}

/// Most parameters one flush sends in a statement (the protocol's limit is 65,535).
const MAX_PARAMS: usize = 30_000;

enum Exec<'a> {
    Client(&'a mut Client),
    Tx(Transaction<'a>),
}

/// Where queries run: a connection, or a transaction on it.
pub(crate) struct Db<'a> {
    exec: Exec<'a>,
    statements: &'a mut HashMap<String, Statement>,
    /// Rows [`Db::insert_later`] holds, when this transaction holds them at all.
    held: Option<Vec<Held>>,
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
        self.flush_held()?;
        let s = self.statement(sql)?;
        match &mut self.exec {
            Exec::Client(c) => c.query(&s, params),
            Exec::Tx(t) => t.query(&s, params),
        }
    }

    fn raw_execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        self.flush_held()?;
        self.execute_now(sql, params)
    }

    fn execute_now(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
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

    /// Inserts one row: now, or, in a [`Conn::holding_transaction`], with the rows held for
    /// the same statement at the next statement of another kind or the commit. `sql` is a
    /// plain `INSERT INTO t (...) VALUES ($1, ..., $n)` whose count of changed rows nobody
    /// reads; `rank` orders the tables in the flush (lower first: a table before the
    /// tables whose foreign keys refer to it).
    ///
    /// `unique` names what a taken unique key means ([`Db::insert_unique`]) when the row goes
    /// now; a held row's conflict fails the flush instead, and the writer's second pass,
    /// which holds nothing, reports it as this conflict.
    pub(crate) fn insert_later(
        &mut self,
        rank: u8,
        sql: &'static str,
        params: &Params<'_>,
        unique: Option<&str>,
    ) -> Result<(), StoreError> {
        if self.held.is_none() {
            return match unique {
                Some(what) => self.insert_unique(sql, params, what).map(drop),
                None => self.execute(sql, params).map(drop),
            };
        }
        let Some(values_at) = sql.rfind("VALUES") else {
            return Err(StoreError::backend("postgres", format!("only an INSERT ... VALUES can be held: {sql}")));
        };
        let statement = self.statement(sql).map_err(|e| pg("preparing an insert", e))?;
        let mut values = Vec::with_capacity(params.len());
        for (param, ty) in params.iter().zip(statement.params()) {
            let mut buf = BytesMut::new();
            let encoded = match param.to_sql_checked(ty, &mut buf) {
                Ok(IsNull::Yes) => Encoded(None),
                Ok(IsNull::No) => Encoded(Some(buf.to_vec())),
                Err(e) => return Err(StoreError::backend(format!("postgres: encoding a parameter of {sql}"), e)),
            };
            values.push(encoded);
        }
        let held = self.held.get_or_insert_with(Vec::new);
        match held.iter_mut().find(|h| std::ptr::eq(h.sql, sql)) {
            Some(h) => h.values.extend(values),
            None => {
                let types = statement.params().to_vec();
                held.push(Held { rank, sql, values_at, width: params.len(), types, values })
            }
        }
        Ok(())
    }

    /// Sends every held row in one round trip: one statement whose parts are a multi-row
    /// `INSERT` per table, in rank order (`WITH h0 AS (INSERT ...), h1 AS (INSERT ...)
    /// INSERT ...`: every part runs, and foreign keys are checked at the statement's end),
    /// sent with its parameters' types, so the server parses it without a round trip of
    /// its own. Past [`MAX_PARAMS`] the tables go one statement each, in row chunks.
    fn flush_held(&mut self) -> Result<(), postgres::Error> {
        let Some(held) = self.held.as_mut() else { return Ok(()) };
        if held.is_empty() {
            return Ok(());
        }
        let mut held = std::mem::take(held);
        held.sort_by_key(|h| h.rank);
        if held.iter().map(|h| h.values.len()).sum::<usize>() <= MAX_PARAMS {
            let parts: Vec<(&Held, std::ops::Range<usize>)> = held.iter().map(|h| (h, 0..h.rows())).collect();
            return self.insert_parts(&parts);
        }
        for h in &held {
            let per_statement = (MAX_PARAMS / h.width.max(1)).max(1);
            let mut from = 0;
            while from < h.rows() {
                let to = (from + per_statement).min(h.rows());
                self.insert_parts(&[(h, from..to)])?;
                from = to;
            }
        }
        Ok(())
    }

    /// One statement inserting the given rows of each part (see [`Db::flush_held`]).
    fn insert_parts(&mut self, parts: &[(&Held, std::ops::Range<usize>)]) -> Result<(), postgres::Error> {
        let mut sql = String::new();
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Vec::new();
        for (i, (h, rows)) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if parts.len() > 1 {
                sql.push_str(match (i, last) {
                    (0, _) => "WITH ",
                    (_, true) => " ",
                    _ => ", ",
                });
                if !last {
                    sql.push_str(&format!("h{i} AS ("));
                }
            }
            sql.push_str(&h.sql[..h.values_at]);
            sql.push_str("VALUES ");
            sql.push_str(&rows_like(&h.sql[h.values_at + "VALUES".len()..], rows.len(), h.width, params.len()));
            if parts.len() > 1 && !last {
                sql.push(')');
            }
            for (j, v) in h.values[rows.start * h.width..rows.end * h.width].iter().enumerate() {
                params.push((v as &(dyn ToSql + Sync), h.types[j % h.width].clone()));
            }
        }
        match &mut self.exec {
            Exec::Client(c) => c.execute_typed(&sql, &params),
            Exec::Tx(t) => t.execute_typed(&sql, &params),
        }
        .map(drop)
    }

    /// Runs several statements as one simple query (migrations).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.flush_held().map_err(|e| pg("writing held rows", e))?;
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

    /// Sends the rows held so far, so their errors show here (see the module's docs).
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_held().map_err(|e| pg("writing held rows", e))
    }

    /// Commits the transaction (a reader has nothing to commit), the rows it holds first.
    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        self.flush()?;
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

/// `rows` copies of the row `template` (the statement's text after `VALUES`, literals and
/// all: `($1, 0, $2, 'decision')`), separated by commas, each copy's parameters numbered
/// after the copy before it and after the `base` parameters of the parts before: `$k` of
/// copy `r` becomes `$(k + r * width + base)`.
fn rows_like(template: &str, rows: usize, width: usize, base: usize) -> String {
    let template = template.trim();
    let mut out = String::with_capacity(rows * (template.len() + 8));
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        let mut chars = template.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            out.push(c);
            if c != '$' {
                continue;
            }
            let mut k = 0usize;
            while let Some(&(_, d)) = chars.peek() {
                let Some(digit) = d.to_digit(10) else { break };
                k = k * 10 + digit as usize;
                chars.next();
            }
            out.push_str(&(k + r * width + base).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rows_like;

    #[test]
    fn held_rows_keep_their_literals_and_number_parameters_after_each_other() {
        assert_eq!(rows_like(" ($1, $2)", 1, 2, 0), "($1, $2)");
        assert_eq!(rows_like("($1, $2, $3)", 2, 3, 0), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(
            rows_like("($1, 0, $2, 'decision', $2)\n", 2, 2, 0),
            "($1, 0, $2, 'decision', $2), ($3, 0, $4, 'decision', $4)"
        );
        assert_eq!(rows_like("($9, $10)", 2, 10, 0), "($9, $10), ($19, $20)");
        assert_eq!(rows_like("($1, $2)", 2, 2, 5), "($6, $7), ($8, $9)", "after a part of five");
    }
}
