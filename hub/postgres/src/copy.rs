//! `carehub db copy`: a hub's SQLite database, with its hash chains, moved into an empty
//! PostgreSQL database for a municipality that outgrows one machine (SPEC §11).
//!
//! # What it does
//! 1. Refuses a SQLite table it does not know ([`TABLES`] names every table of this
//!    carehub's schema and what becomes of it), so a table a later migration adds is never
//!    silently left behind: the copy learns it first.
//! 2. Migrates the target, then, in **one transaction**, locks the chains' sequencers and
//!    refuses a target that holds any of a hub's data.
//! 3. Copies every table, parents before the tables whose foreign keys name them, each
//!    streamed from the SQLite snapshot through one binary `COPY` (at most one row in
//!    memory; progress every [`PROGRESS_EVERY`] rows). Columns are matched by name and
//!    converted by PostgreSQL's column types as `information_schema` gives them: integers
//!    to `bigint` (or a narrower integer, range-checked), SQLite's 0/1 to `boolean`, text
//!    to `text` (times stay the fixed-width UTC text both backends keep and the chain
//!    hashes), blobs to `bytea`. A column one side has and the other does not is an error,
//!    as is a value the column cannot take (named by table, column and row number, never
//!    by its content: it may be a personal identity number).
//! 4. Moves each identity column's sequence past the copied ids, and the sequencers
//!    `chain_head` and `access_head` to the last copied entries, so the nodes append after
//!    them.
//! 5. Verifies inside the same transaction: both hash chains walked with core's verifiers
//!    over the rows as PostgreSQL now returns them (the walk `carehub audit verify` makes),
//!    and every table's rows counted on both sides. It commits only when all of it holds;
//!    otherwise it rolls back and the target is left as empty as it was.
//!
//! Not resumable: a copy that fails (or is stopped) leaves nothing, and is run again.
//!
//! # What is not copied
//! - `leases`: ephemeral, which node owns a poller until when; the PostgreSQL nodes take
//!   the pollers afresh.
//! - SQLite's own tables (`sqlite_*`), and PostgreSQL's own bookkeeping: the target's
//!   `schema_migrations`, and `chain_head` / `access_head`, which are derived from the last
//!   entry of each chain (step 4).
//!
//! Everything else is copied as it is, derived tables included: `log_links` (an index over
//! the log, rebuilt from nothing only at a cost), `invoice_generations` (so INV005's
//! counter never moves back), the outbox with its state and any lease a stopped SQLite hub
//! left (it expires as a dead node's does).
//!
//! A NUL character PostgreSQL's text cannot hold fails the copy, except in a delivery's
//! last error, where the store itself writes U+FFFD instead (`log::storable`).

use carehub_core::log::access::AccessVerifier;
use carehub_core::log::{ChainReport, ChainVerifier};
use carehub_core::store::sqlite::snapshot::{Snapshot, Table, Value};
use carehub_core::store::{AccessFilter, StoreError};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use crate::db::{col, Db};
use crate::rows::{log_row, LOG_COLUMNS};
use crate::{audit, config, migrate, Pool};

/// Rows between two progress reports of one table.
pub const PROGRESS_EVERY: u64 = 10_000;

/// What the copy does with a table of the SQLite database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Copied row for row.
    Copy,
    /// Left behind, for the reason given.
    Skip(&'static str),
}

/// Every table of this carehub's SQLite schema and what the copy does with it, in the order
/// it copies them: a table before those whose foreign keys name it (`decisions` before
/// `orders` and `decision_versions`, `access_log` before `access_log_clients`). A
/// migration that adds a table adds it here, or the copy refuses the databases that have it.
pub const TABLES: &[(&str, Plan)] = &[
    ("message_log", Plan::Copy),
    ("log_links", Plan::Copy),
    ("log_reads", Plan::Copy),
    ("access_log", Plan::Copy),
    ("access_log_clients", Plan::Copy),
    ("checkpoints", Plan::Copy),
    ("decisions", Plan::Copy),
    ("decision_versions", Plan::Copy),
    ("orders", Plan::Copy),
    ("provider_reports", Plan::Copy),
    ("outbox", Plan::Copy),
    ("tag_registrations", Plan::Copy),
    ("visits", Plan::Copy),
    ("feed_cursors", Plan::Copy),
    ("closed_months", Plan::Copy),
    ("progress", Plan::Copy),
    ("invoices", Plan::Copy),
    ("verifications", Plan::Copy),
    ("verified_lines", Plan::Copy),
    ("invoice_generations", Plan::Copy),
    ("leases", Plan::Skip("ephemeral: which node owns a poller; the PostgreSQL nodes take them afresh")),
];

/// Text columns whose NUL characters become U+FFFD, as the store writes them.
const NUL_REPLACED: &[(&str, &str)] = &[("outbox", "last_error")];

/// Why a copy did not start or did not finish. Nothing is committed after any of them.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds a hub's data: the copy moves a hub into an empty database.
    #[error("the target database is not empty: {table} holds {rows} row(s); copy into a new, empty database")]
    TargetNotEmpty { table: String, rows: i64 },
    /// The SQLite database has a table [`TABLES`] does not name (a newer carehub's, or
    /// someone else's): the copy will not leave it behind silently.
    #[error(
        "the SQLite database has a table the copy does not know: {0}; \
         nothing was copied (a carehub that knows the table copies it)"
    )]
    UnknownTable(String),
    /// A table the copy moves is missing on one side.
    #[error("the {side} database has no table {table}")]
    MissingTable { side: &'static str, table: String },
    /// A table's columns differ between the two schemas.
    #[error("{table}: the columns differ between SQLite and PostgreSQL: {detail}")]
    Columns { table: String, detail: String },
    /// A value its PostgreSQL column cannot take.
    #[error("{table}.{column}, row {row} of the SQLite table: {detail}")]
    Value { table: String, column: String, row: u64, detail: String },
    /// Either database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How far the copy of one table has come.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub table: &'a str,
    /// Rows copied so far.
    pub copied: u64,
    /// Rows the table has in the SQLite snapshot.
    pub of: u64,
    /// The table is done (the last report of it).
    pub done: bool,
}

/// One table's rows on each side, after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub sqlite: u64,
    pub postgres: u64,
}

/// What a copy did and what its verification found.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Every table copied, in the order copied.
    pub tables: Vec<TableCount>,
    /// Tables of the SQLite database left behind, and why.
    pub skipped: Vec<(String, &'static str)>,
    /// The message log's chain as walked on PostgreSQL.
    pub chain: ChainReport,
    /// The access log's chain as walked on PostgreSQL.
    pub access: ChainReport,
    /// Whether it was committed (only when [`CopyReport::verified`]).
    pub committed: bool,
}

impl CopyReport {
    /// Both chains verify over every entry copied, and every table has as many rows on
    /// PostgreSQL as on SQLite.
    pub fn verified(&self) -> bool {
        let rows = |name: &str| self.tables.iter().find(|t| t.table == name).map_or(0, |t| t.postgres);
        self.tables.iter().all(|t| t.sqlite == t.postgres)
            && self.chain.first_bad.is_none()
            && self.access.first_bad.is_none()
            && self.chain.entries == rows("message_log")
            && self.access.entries == rows("access_log")
    }
}

/// A PostgreSQL column's type, as the copy writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int8,
    Int4,
    Int2,
    Bool,
    Text,
    Bytea,
    Float8,
}

impl Kind {
    /// `information_schema.columns.data_type`.
    fn of(data_type: &str) -> Option<Kind> {
        Some(match data_type {
            "bigint" => Kind::Int8,
            "integer" => Kind::Int4,
            "smallint" => Kind::Int2,
            "boolean" => Kind::Bool,
            "text" | "character varying" => Kind::Text,
            "bytea" => Kind::Bytea,
            "double precision" => Kind::Float8,
            _ => return None,
        })
    }

    fn pg(self) -> Type {
        match self {
            Kind::Int8 => Type::INT8,
            Kind::Int4 => Type::INT4,
            Kind::Int2 => Type::INT2,
            Kind::Bool => Type::BOOL,
            Kind::Text => Type::TEXT,
            Kind::Bytea => Type::BYTEA,
            Kind::Float8 => Type::FLOAT8,
        }
    }
}

/// A value converted for its column.
#[derive(Debug)]
enum Cell {
    Null(Kind),
    I8(i64),
    I4(i32),
    I2(i16),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    F8(f64),
}

impl Cell {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Cell::Null(Kind::Int8) => &None::<i64>,
            Cell::Null(Kind::Int4) => &None::<i32>,
            Cell::Null(Kind::Int2) => &None::<i16>,
            Cell::Null(Kind::Bool) => &None::<bool>,
            Cell::Null(Kind::Text) => &None::<String>,
            Cell::Null(Kind::Bytea) => &None::<Vec<u8>>,
            Cell::Null(Kind::Float8) => &None::<f64>,
            Cell::I8(v) => v,
            Cell::I4(v) => v,
            Cell::I2(v) => v,
            Cell::Bool(v) => v,
            Cell::Text(v) => v,
            Cell::Bytes(v) => v,
            Cell::F8(v) => v,
        }
    }
}

fn class(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real number",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

/// `v` as a column of kind `kind` takes it; what is wrong, without the value, if it cannot.
fn convert(kind: Kind, v: &Value, nul_replaced: bool) -> Result<Cell, String> {
    let range = |t: &str| format!("the integer is out of range for PostgreSQL's {t}");
    Ok(match (kind, v) {
        (_, Value::Null) => Cell::Null(kind),
        (Kind::Int8, Value::Integer(i)) => Cell::I8(*i),
        (Kind::Int4, Value::Integer(i)) => Cell::I4(i32::try_from(*i).map_err(|_| range("integer"))?),
        (Kind::Int2, Value::Integer(i)) => Cell::I2(i16::try_from(*i).map_err(|_| range("smallint"))?),
        (Kind::Bool, Value::Integer(0)) => Cell::Bool(false),
        (Kind::Bool, Value::Integer(1)) => Cell::Bool(true),
        (Kind::Bool, Value::Integer(_)) => return Err("a boolean is 0 or 1, and this is another integer".into()),
        (Kind::Text, Value::Text(t)) if t.contains('\0') => {
            if !nul_replaced {
                return Err("the text holds a NUL character, which PostgreSQL's text cannot".into());
            }
            Cell::Text(crate::log::storable(t.clone()))
        }
        (Kind::Text, Value::Text(t)) => Cell::Text(t.clone()),
        (Kind::Bytea, Value::Blob(b)) => Cell::Bytes(b.clone()),
        (Kind::Bytea, Value::Text(t)) => Cell::Bytes(t.as_bytes().to_vec()),
        (Kind::Float8, Value::Real(f)) => Cell::F8(*f),
        (Kind::Float8, Value::Integer(i)) => Cell::F8(*i as f64),
        (kind, v) => return Err(format!("SQLite holds {} where PostgreSQL's column is {:?}", class(v), kind.pg())),
    })
}

/// Copies the database `source` reads into the empty PostgreSQL database at `url`, and
/// verifies the copy (module docs). Blocking: call it off the async threads. `progress`
/// hears of each table as it goes. The report says what was copied and whether it
/// verified; it was committed only if it did.
pub fn copy_from_sqlite(
    source: &Snapshot,
    url: &str,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<CopyReport, CopyError> {
    let tables = source.tables()?;
    for t in &tables {
        if !TABLES.iter().any(|(name, _)| *name == t.name) {
            return Err(CopyError::UnknownTable(t.name.clone()));
        }
    }
    let pool = Pool::new(config(url)?);
    let mut conn = pool.take()?;
    migrate(&mut conn)?;
    let mut db = conn.transaction()?;
    // The sequencers first, in the store's order: no node appends while the copy runs.
    db.one("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE", &[])?;
    db.one("SELECT seq FROM access_head WHERE id = 1 FOR UPDATE", &[])?;
    refuse_data(&mut db)?;

    let (mut copied, mut skipped) = (Vec::new(), Vec::new());
    for (name, plan) in TABLES {
        let Some(table) = tables.iter().find(|t| t.name == *name) else {
            match plan {
                Plan::Copy => return Err(CopyError::MissingTable { side: "SQLite", table: (*name).to_owned() }),
                Plan::Skip(_) => continue,
            }
        };
        match plan {
            Plan::Skip(why) => skipped.push((table.name.clone(), *why)),
            Plan::Copy => copied.push(copy_table(&mut db, source, table, progress)?),
        }
    }
    let names: Vec<&str> = copied.iter().map(|t: &TableCount| t.table.as_str()).collect();
    reset_sequences(&mut db, &names)?;
    db.batch(
        "UPDATE chain_head SET seq = m.seq, hash = m.hash
           FROM (SELECT seq, hash FROM message_log ORDER BY seq DESC LIMIT 1) m WHERE chain_head.id = 1;
         UPDATE access_head SET seq = a.seq, hash = a.hash
           FROM (SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1) a WHERE access_head.id = 1;",
    )?;
    let (chain, access) = (verify_log(&mut db)?, verify_access(&mut db)?);
    let mut report = CopyReport { tables: copied, skipped, chain, access, committed: false };
    if report.verified() {
        db.commit()?;
        report.committed = true;
        // Fresh statistics for the planner: the tables went from empty to full at once.
        conn.reader().batch("ANALYZE")?;
    } else {
        drop(db);
    }
    pool.give(conn);
    Ok(report)
}

/// Fails unless every table a hub keeps data in is empty and both chains are at their start.
fn refuse_data(db: &mut Db<'_>) -> Result<(), CopyError> {
    let not_empty = |table: &str, rows: i64| CopyError::TargetNotEmpty { table: table.to_owned(), rows };
    for (name, plan) in TABLES {
        if *plan != Plan::Copy {
            continue;
        }
        let any: bool = col(&db.one(&format!("SELECT EXISTS (SELECT 1 FROM {name})"), &[])?, 0)?;
        if any {
            let rows: i64 = col(&db.one(&format!("SELECT COUNT(*) FROM {name}"), &[])?, 0)?;
            return Err(not_empty(name, rows));
        }
    }
    for head in ["chain_head", "access_head"] {
        let seq: i64 = col(&db.one(&format!("SELECT seq FROM {head} WHERE id = 1"), &[])?, 0)?;
        if seq != 0 {
            return Err(not_empty(head, 1));
        }
    }
    Ok(())
}

/// The columns of a PostgreSQL table, in its order, with their types.
fn pg_columns(db: &mut Db<'_>, table: &str) -> Result<Vec<(String, String)>, StoreError> {
    db.query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )?
    .iter()
    .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
    .collect()
}

/// Copies one table through a binary COPY; its rows on each side.
fn copy_table(
    db: &mut Db<'_>,
    source: &Snapshot,
    table: &Table,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<TableCount, CopyError> {
    let name = table.name.as_str();
    let target = pg_columns(db, name)?;
    if target.is_empty() {
        return Err(CopyError::MissingTable { side: "PostgreSQL", table: name.to_owned() });
    }
    let only = |a: &[String], b: &[String]| a.iter().filter(|c| !b.contains(c)).cloned().collect::<Vec<_>>();
    let target_names: Vec<String> = target.iter().map(|(c, _)| c.clone()).collect();
    let (sqlite_only, pg_only) = (only(&table.columns, &target_names), only(&target_names, &table.columns));
    if !sqlite_only.is_empty() || !pg_only.is_empty() {
        return Err(CopyError::Columns {
            table: name.to_owned(),
            detail: format!(
                "only in SQLite: [{}]; only in PostgreSQL: [{}]",
                sqlite_only.join(", "),
                pg_only.join(", ")
            ),
        });
    }
    let mut kinds = Vec::with_capacity(target.len());
    for (column, data_type) in &target {
        let kind = Kind::of(data_type).ok_or_else(|| CopyError::Columns {
            table: name.to_owned(),
            detail: format!("{column} is {data_type} on PostgreSQL, a type the copy does not convert to"),
        })?;
        kinds.push((kind, NUL_REPLACED.contains(&(name, column.as_str()))));
    }
    let of = source.count(name)?;
    progress(Progress { table: name, copied: 0, of, done: false });
    let list = target_names.join(", ");
    let types: Vec<Type> = kinds.iter().map(|(k, _)| k.pg()).collect();
    let writer = db.copy_in(&format!("COPY {name} ({list}) FROM STDIN (FORMAT binary)"))?;
    let mut writer = BinaryCopyInWriter::new(writer, &types);
    let mut copied = 0u64;
    let mut cells: Vec<Cell> = Vec::with_capacity(kinds.len());
    source.rows(name, &target_names, |values| -> Result<(), CopyError> {
        cells.clear();
        for (i, v) in values.iter().enumerate() {
            let (kind, nul) = kinds[i];
            cells.push(convert(kind, v, nul).map_err(|detail| CopyError::Value {
                table: name.to_owned(),
                column: target_names[i].clone(),
                row: copied + 1,
                detail,
            })?);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = cells.iter().map(Cell::sql).collect();
        writer.write(&refs).map_err(|e| crate::db::pg(&format!("copying {name}"), e))?;
        copied += 1;
        if copied.is_multiple_of(PROGRESS_EVERY) {
            progress(Progress { table: name, copied, of, done: false });
        }
        Ok(())
    })?;
    writer.finish().map_err(|e| crate::db::pg(&format!("copying {name}"), e))?;
    progress(Progress { table: name, copied, of, done: true });
    let postgres: i64 = col(&db.one(&format!("SELECT COUNT(*) FROM {name}"), &[])?, 0)?;
    Ok(TableCount { table: name.to_owned(), sqlite: of, postgres: u64::try_from(postgres).unwrap_or(0) })
}

/// Moves every identity (or serial) column's sequence of `tables` past the largest id
/// copied, so the next row a node inserts takes the id after it.
fn reset_sequences(db: &mut Db<'_>, tables: &[&str]) -> Result<(), StoreError> {
    let names: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    let columns = db.query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = ANY($1)
           AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')",
        &[&names],
    )?;
    for r in &columns {
        let (table, column): (String, String) = (col(r, 0)?, col(r, 1)?);
        db.one(
            &format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            ),
            &[&table, &column],
        )?;
    }
    Ok(())
}

/// The message log's chain walked as `carehub audit verify` walks it (core's
/// [`ChainVerifier`] over the store's own row mapping), inside the copy's transaction.
fn verify_log(db: &mut Db<'_>) -> Result<ChainReport, StoreError> {
    let mut verifier = ChainVerifier::default();
    let mut after = 0i64;
    loop {
        let rows = db.query(
            &format!("SELECT {LOG_COLUMNS}, payload FROM message_log WHERE seq > $1 ORDER BY seq LIMIT 2000"),
            &[&after],
        )?;
        if rows.is_empty() {
            return Ok(verifier.finish());
        }
        for r in &rows {
            let e = log_row(r, true)?;
            after = e.seq;
            if !verifier.push(&e) {
                return Ok(verifier.finish());
            }
        }
    }
}

/// The access log's chain walked with core's [`AccessVerifier`], inside the transaction.
fn verify_access(db: &mut Db<'_>) -> Result<ChainReport, StoreError> {
    let mut verifier = AccessVerifier::default();
    let mut after = 0i64;
    loop {
        let page =
            audit::access_log(db, &AccessFilter { after_seq: Some(after), limit: 2000, ..AccessFilter::default() })?;
        let Some(last) = page.last() else {
            return Ok(verifier.finish());
        };
        after = last.seq;
        for e in &page {
            if !verifier.push(e) {
                return Ok(verifier.finish());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_values_convert_to_their_columns_types_or_say_why_not() {
        assert!(matches!(convert(Kind::Bool, &Value::Integer(1), false), Ok(Cell::Bool(true))));
        assert!(matches!(convert(Kind::Bool, &Value::Integer(0), false), Ok(Cell::Bool(false))));
        assert!(convert(Kind::Bool, &Value::Integer(2), false).is_err_and(|e| e.contains("0 or 1")));
        assert!(matches!(convert(Kind::Int8, &Value::Null, false), Ok(Cell::Null(Kind::Int8))));
        assert!(convert(Kind::Int4, &Value::Integer(i64::from(i32::MAX) + 1), false).is_err());
        assert!(convert(Kind::Int8, &Value::Text("12".into()), false).is_err_and(|e| e.contains("SQLite holds text")));
        assert!(matches!(convert(Kind::Bytea, &Value::Blob(vec![0, 1]), false), Ok(Cell::Bytes(b)) if b == [0, 1]));
    }

    #[test]
    fn a_nul_character_fails_the_copy_except_where_the_store_replaces_it() {
        let text = Value::Text("answer\0tail".into());
        let refused = convert(Kind::Text, &text, false).expect_err("refused");
        assert!(refused.contains("NUL"), "{refused}");
        assert!(!refused.contains("answer"), "the value itself is never in the message: {refused}");
        assert!(matches!(convert(Kind::Text, &text, true), Ok(Cell::Text(t)) if t == "answer\u{FFFD}tail"));
    }

    #[test]
    fn every_table_is_planned_once_and_parents_come_before_their_children() {
        let at = |name: &str| TABLES.iter().position(|(t, _)| *t == name).expect(name);
        for (name, _) in TABLES {
            assert_eq!(TABLES.iter().filter(|(t, _)| t == name).count(), 1, "{name}");
        }
        assert!(at("decisions") < at("orders") && at("decisions") < at("decision_versions"));
        assert!(at("access_log") < at("access_log_clients"));
        assert!(matches!(TABLES[at("leases")].1, Plan::Skip(_)), "leases are ephemeral");
    }
}
