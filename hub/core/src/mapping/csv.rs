//! CSV: rows under a header row, as ParaGå exchanges them in batch files over SFTP.
//!
//! In a CSV mapping a vendor path is a column name: the header row's names, compared after
//! trimming, case-sensitive. A cell is trimmed, and an empty cell is absent, so `optional`,
//! `default` and MISSING_FIELD work as for XML and JSON. Quoting is RFC 4180's (the `csv`
//! crate's): a cell holding the delimiter, a quote or a line break is quoted.
//!
//! Inbound, one file holds many messages, one per row, so [`MappingSet::decode_rows`]
//! answers per row: a bad row must not cost the good ones, and its line number tells the
//! vendor which one to fix. A file carries no message type, so its header decides: the
//! mapping whose columns all appear in it reads it. Outbound, a mapping writes a header and
//! one data row per element of its `rows` list (or one row), CRLF, quoted only when needed.

use ::csv::{QuoteStyle, ReaderBuilder, StringRecord, Terminator, WriterBuilder};
use carehub_model::{ErrorCode, ValidationError};
use serde_json::Value;

use super::decode::{decode_fields, Node, Row};
use super::encode::{get_path, scalar_out};
use super::{Decoded, Direction, Format, Mapping, MappingSet, RowDecoded};

/// The delimiter when a mapping names none: Swedish systems write `;`, as `,` is the
/// decimal separator.
pub const DEFAULT_DELIMITER: char = ';';

/// Where each field's columns are in a file's header: by field (in file order), an index
/// per column it reads, `None` for a column the header lacks. A duplicated column name
/// reads its first column.
fn resolve_columns(m: &Mapping, header: &[String]) -> Vec<Vec<Option<usize>>> {
    let find = |name: &String| header.iter().position(|h| h == name.trim());
    m.fields
        .iter()
        .map(|f| match (&f.value, f.join.is_empty()) {
            (Some(_), _) => Vec::new(),
            (None, true) => f.vendor.iter().map(find).collect(),
            (None, false) => f.join.iter().map(find).collect(),
        })
        .collect()
}

/// A file read with one delimiter: the trimmed header and the data rows with their lines.
struct Sheet {
    header: Vec<String>,
    rows: Vec<(usize, StringRecord)>,
}

/// Reads a file. Rows keep whatever number of cells they have: a row with the wrong count
/// is that row's error, not the file's.
fn read(text: &str, delimiter: u8) -> Result<Sheet, ValidationError> {
    // `text::decode` removes a byte order mark; a caller holding text may not have.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bytes = text.as_bytes();
    let mut reader = ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(bytes);
    let mut lines = LineCounter::default();
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    let mut record = StringRecord::new();
    // Where the reader stopped: the next record starts at the first byte after it that is
    // not a line break (the crate skips blank lines, and stops inside a CRLF).
    let mut stopped = 0;
    loop {
        let line = lines.line_at(bytes, stopped);
        // The crate's messages hold no cell contents, but say only where: cells may be
        // personal identity numbers.
        let more = reader.read_record(&mut record).map_err(|_| {
            ValidationError::new(ErrorCode::MalformedPayload, format!("not readable as CSV from line {line}"))
        })?;
        if !more {
            break;
        }
        stopped = usize::try_from(reader.position().byte()).unwrap_or(usize::MAX);
        if record.len() <= 1 && record.iter().all(|c| c.trim().is_empty()) {
            continue; // a line of blanks
        }
        match header {
            None => header = Some(record.iter().map(|c| c.trim().to_owned()).collect()),
            Some(_) => rows.push((line, record.clone())),
        }
    }
    let header =
        header.ok_or_else(|| ValidationError::new(ErrorCode::MalformedPayload, "an empty CSV file: no header row"))?;
    Ok(Sheet { header, rows })
}

/// Line numbers of record starts, counted by us: the `csv` crate's own line numbers miss
/// skipped blank lines and count a CRLF late.
#[derive(Default)]
struct LineCounter {
    counted_to: usize,
    newlines: usize,
}

impl LineCounter {
    /// The 1-based line of the record that starts at or after byte `from` (skipping line
    /// breaks). Calls must not go backwards.
    fn line_at(&mut self, bytes: &[u8], from: usize) -> usize {
        let rest = bytes.get(from..).unwrap_or_default();
        let start = from.saturating_add(rest.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count());
        let span = bytes.get(self.counted_to..start).unwrap_or_default();
        self.newlines += span.iter().filter(|b| **b == b'\n').count();
        self.counted_to = self.counted_to.max(start);
        self.newlines + 1
    }
}

/// Writes rows (the first being the header) as CSV text: CRLF, quoted only when needed.
fn write(rows: &[Vec<String>], delimiter: u8) -> Result<String, ValidationError> {
    let internal = |what: String| ValidationError::new(ErrorCode::Internal, format!("cannot write CSV: {what}"));
    let mut writer = WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(Terminator::CRLF)
        .quote_style(QuoteStyle::Necessary)
        .from_writer(Vec::new());
    for row in rows {
        writer.write_record(row).map_err(|e| internal(e.to_string()))?;
    }
    let bytes = writer.into_inner().map_err(|e| internal(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| internal(e.to_string()))
}

/// Renders an outbound CSV mapping: a header of the fields' vendor names, in file order,
/// then one row per element of `rows` (each row's context is the whole context plus
/// `item`), or a single row from the context.
pub(crate) fn render(m: &Mapping, context: &Value) -> Result<String, ValidationError> {
    let mut out = vec![m.fields.iter().filter_map(|f| f.vendor.clone()).collect::<Vec<_>>()];
    let Some(path) = &m.rows else {
        out.push(cells(m, context)?);
        return write(&out, m.csv_delimiter());
    };
    let items = match get_path(context, path).filter(|v| !v.is_null()) {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ValidationError::new(ErrorCode::InvalidValue, format!("canonical {path}: not a list"))),
        None if m.rows_optional => {
            out.push(cells(m, context)?);
            return write(&out, m.csv_delimiter());
        }
        None => {
            return Err(ValidationError::new(ErrorCode::MissingField, format!("canonical {path} is required for rows")))
        }
    };
    let Value::Object(base) = context else {
        return Err(ValidationError::new(ErrorCode::InvalidValue, "the context of a CSV file is not an object"));
    };
    let mut row_context = base.clone();
    for (i, item) in items.iter().enumerate() {
        row_context.insert("item".to_owned(), item.clone());
        let row = cells(m, &Value::Object(row_context.clone()))
            .map_err(|e| ValidationError::new(e.code, format!("row {}: {}", i + 1, e.reason)))?;
        out.push(row);
    }
    write(&out, m.csv_delimiter())
}

/// One data row: a cell per field with a vendor name (empty for an absent optional value).
fn cells(m: &Mapping, ctx: &Value) -> Result<Vec<String>, ValidationError> {
    let mut row = Vec::new();
    for f in m.fields.iter().filter(|f| f.vendor.is_some()) {
        if !f.applies(ctx) {
            row.push(String::new()); // the column stays, empty
            continue;
        }
        let source = f.canonical.as_deref().and_then(|c| get_path(ctx, c)).filter(|v| !v.is_null());
        row.push(scalar_out(f, source, m)?.map(|(text, _)| text).unwrap_or_default());
    }
    Ok(row)
}

/// Translates one data row with its mapping (`columns` from [`resolve_columns`]).
fn decode_row(
    m: &Mapping,
    header: &[String],
    columns: &[Vec<Option<usize>>],
    cells: &StringRecord,
) -> Result<Decoded, ValidationError> {
    if cells.len() != header.len() {
        return Err(ValidationError::new(
            ErrorCode::MalformedPayload,
            format!("{} cells where the header has {}", cells.len(), header.len()),
        ));
    }
    let canonical = decode_fields(Node::Csv(Row { cells, columns }), &m.fields)?.to_json();
    Ok(Decoded { mapping: m.name.clone(), message_type: m.message, canonical })
}

impl MappingSet {
    /// Translates an inbound CSV file (text), row by row, to canonical JSON (not validated
    /// by the model, as [`MappingSet::decode`] does not either). The mapping is chosen by
    /// the header: an inbound CSV mapping whose columns (the vendor paths of its fields
    /// that are not constants) all appear in it; when several do, the one reading the most
    /// columns, then the first. Blank lines are skipped.
    ///
    /// Only file-level problems fail the call: text that is not CSV, no header row
    /// (MALFORMED_PAYLOAD), no mapping for the header (UNKNOWN_MESSAGE_TYPE). Everything
    /// else, a wrong number of cells included, is the row's own result.
    pub fn decode_rows(&self, text: &str) -> Result<Vec<RowDecoded>, ValidationError> {
        let candidates: Vec<&Mapping> =
            self.mappings.iter().filter(|m| m.direction == Direction::In && m.format == Format::Csv).collect();
        if candidates.is_empty() {
            return Err(ValidationError::new(
                ErrorCode::UnknownMessageType,
                format!("no {} mapping reads CSV", self.vendor),
            ));
        }
        // Mappings may differ in delimiter: the file is read once per delimiter.
        let mut sheets: Vec<(u8, Sheet)> = Vec::new();
        let mut chosen: Option<(&Mapping, usize, usize)> = None; // mapping, sheet, columns
        let mut closest: Option<(&Mapping, Vec<&str>)> = None; // mapping, missing columns
        for m in candidates {
            let delimiter = m.csv_delimiter();
            let at = match sheets.iter().position(|(d, _)| *d == delimiter) {
                Some(at) => at,
                None => {
                    sheets.push((delimiter, read(text, delimiter)?));
                    sheets.len() - 1
                }
            };
            let header = &sheets[at].1.header;
            let columns = m.csv_columns();
            let missing: Vec<&str> = columns.iter().copied().filter(|c| !header.iter().any(|h| h == c)).collect();
            if missing.is_empty() {
                let more = match chosen {
                    Some((_, _, most)) => columns.len() > most,
                    None => true,
                };
                if more {
                    chosen = Some((m, at, columns.len()));
                }
            } else {
                let fewer = match &closest {
                    Some((_, fewest)) => missing.len() < fewest.len(),
                    None => true,
                };
                if fewer {
                    closest = Some((m, missing));
                }
            }
        }
        let Some((mapping, at, _)) = chosen else {
            // Name only the mapping's columns: a file without a header has data in its
            // first row, and that may be personal identity numbers.
            let hint = closest
                .map(|(m, missing)| format!("; closest: {} lacks column(s) '{}'", m.name, missing.join("', '")))
                .unwrap_or_default();
            return Err(ValidationError::new(
                ErrorCode::UnknownMessageType,
                format!("no {} CSV mapping reads a file with this header{hint}", self.vendor),
            ));
        };
        let sheet = &sheets[at].1;
        let columns = resolve_columns(mapping, &sheet.header);
        Ok(sheet
            .rows
            .iter()
            .map(|(line, cells)| RowDecoded {
                line: *line,
                result: decode_row(mapping, &sheet.header, &columns, cells),
            })
            .collect())
    }

    /// [`MappingSet::decode_rows`] on a file's bytes, decoded as
    /// [`MappingSet::decode_bytes`] does (ParaGå writes Windows-1252).
    pub fn decode_rows_bytes(&self, bytes: &[u8]) -> Result<Vec<RowDecoded>, ValidationError> {
        let text = self.text_of(bytes)?;
        self.decode_rows(&text)
    }
}

impl Mapping {
    /// The delimiter as the `csv` crate wants it (`check` makes sure it is ASCII).
    pub(crate) fn csv_delimiter(&self) -> u8 {
        let c = self.delimiter.unwrap_or(DEFAULT_DELIMITER);
        u8::try_from(c).unwrap_or(b';')
    }

    /// The columns an inbound CSV mapping reads, each once: every vendor path (and `join`
    /// path) but the constants'.
    pub(crate) fn csv_columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = Vec::new();
        for f in self.fields.iter().filter(|f| f.value.is_none()) {
            for c in f.vendor.iter().chain(&f.join).map(|c| c.trim()) {
                if !columns.contains(&c) {
                    columns.push(c);
                }
            }
        }
        columns
    }

    /// Whether `self` and `other` are inbound CSV mappings that would claim the same files:
    /// the same delimiter and the same columns.
    pub(crate) fn reads_same_csv_as(&self, other: &Mapping) -> bool {
        let inbound_csv = |m: &Mapping| m.direction == Direction::In && m.format == Format::Csv;
        if !inbound_csv(self) || !inbound_csv(other) || self.csv_delimiter() != other.csv_delimiter() {
            return false;
        }
        let (mut a, mut b) = (self.csv_columns(), other.csv_columns());
        a.sort_unstable();
        a.dedup();
        b.sort_unstable();
        b.dedup();
        a == b
    }

    /// The CSV-specific checks of [`Mapping::check`].
    pub(crate) fn check_csv(&self, problems: &mut Vec<String>) {
        if self.format != Format::Csv {
            if self.delimiter.is_some() {
                problems.push("`delimiter` needs format = \"csv\"".to_owned());
            }
            if self.rows.is_some() {
                problems.push("`rows` needs format = \"csv\"".to_owned());
            }
            return;
        }
        if let Some(c) = self.delimiter {
            if !c.is_ascii() || matches!(c, '"' | '\r' | '\n') {
                problems.push(format!("delimiter {c:?}: use one ASCII character other than a quote or line break"));
            }
        }
        if self.rows_optional && self.rows.is_none() {
            problems.push("`rows_optional` needs `rows`".to_owned());
        }
        if self.rows.is_some() && self.direction == Direction::In {
            problems.push("`rows` is for outbound mappings (inbound, every row is a message)".to_owned());
        }
        if self.matcher.is_some() {
            problems.push("`match` is for JSON; a CSV file is recognised by its header".to_owned());
        }
        if self.direction == Direction::In && self.csv_columns().is_empty() {
            problems.push("an inbound CSV mapping needs at least one column (a field with a `vendor` name)".to_owned());
        }
        for f in self.fields.iter().filter(|f| !f.fields.is_empty()) {
            let label = f.vendor.as_deref().or(f.canonical.as_deref()).unwrap_or("?");
            problems.push(format!(
                "field {label}: a CSV row is flat, so no nested `fields` (outbound, `rows` makes a row per item)"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use carehub_model::MessageType;
    use serde_json::json;

    use super::*;

    const ACK: &str = r#"
message = "order_ack"
direction = "in"
format = "csv"
encoding = "windows-1252"

[[fields]]
vendor = "Id"
canonical = "order_id"

[[fields]]
vendor = "Status"
canonical = "status"
table = "status"

[[fields]]
vendor = "Orsak"
canonical = "reason"
optional = true

[[fields]]
vendor = "Tid"
canonical = "at"
type = "datetime"
format = "%Y-%m-%d %H:%M"

[tables.status]
OK = "accepted"
NEJ = "rejected"
"#;

    const PLAN: &str = r#"
message = "plan_notice"
direction = "in"
format = "csv"

[[fields]]
vendor = "Id"
canonical = "order_id"

[[fields]]
vendor = "Plan klar"
canonical = "established_on"
type = "date"
"#;

    const ORDER: &str = r#"
message = "order"
direction = "out"
format = "csv"
encoding = "windows-1252"
endpoint = "uppdrag"
rows = "order.services"

[[fields]]
vendor = "Id"
canonical = "order.id"

[[fields]]
vendor = "Namn"
canonical = "order.name"

[[fields]]
vendor = "Slut"
canonical = "order.end_date"
type = "date"
format = "%Y%m%d"
optional = true

[[fields]]
vendor = "Typ"
value = "U"

[[fields]]
vendor = "Insats"
canonical = "item.category"
table = "cat"

[[fields]]
vendor = "Minuter"
canonical = "item.minutes_per_month"
type = "integer"

[tables.cat]
SERV = "service"
OMV = "personal_care"
"#;

    fn set(files: &[(&'static str, &'static str)]) -> MappingSet {
        MappingSet::from_sources("t", files.iter().copied()).expect("loads")
    }

    #[test]
    fn decode_rows_answers_per_row_with_line_numbers() {
        let s = set(&[("ack.toml", ACK)]);
        let file = "Id;Status;Orsak;Tid\r\n\
                    O-1;OK;;2026-11-02 09:15\r\n\
                    O-2;OK;2026-11-02 09:16\r\n\
                    \r\n\
                    O-3;NEJ;Full;2026-13-40 10:00\r\n\
                    O-4;NEJ;Ingen plats;2026-11-02 11:00\r\n";
        let rows = s.decode_rows(file).expect("a file");
        let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 5, 6]);
        assert_eq!(
            rows[0].result.as_ref().expect("good row").value(),
            json!({"order_id": "O-1", "status": "accepted", "at": "2026-11-02T08:15:00Z"}) // 09:15 in Stockholm
        );
        assert_eq!(rows[1].result.as_ref().expect_err("3 cells").code, ErrorCode::MalformedPayload);
        assert_eq!(rows[2].result.as_ref().expect_err("no such date").code, ErrorCode::InvalidDate);
        let last = rows[3].result.as_ref().expect("good row");
        assert_eq!(last.value()["reason"], "Ingen plats");
        assert_eq!(last.message_type, MessageType::OrderAck);
    }

    #[test]
    fn the_header_picks_the_mapping() {
        let s = set(&[("ack.toml", ACK), ("plan.toml", PLAN)]);
        let plan = s.decode_rows("Id;Plan klar\nO-1;2026-11-10\n").expect("a plan file");
        let d = plan[0].result.as_ref().expect("decodes");
        assert_eq!(&*d.mapping, "t/plan.toml");
        assert_eq!(d.value(), json!({"order_id": "O-1", "established_on": "2026-11-10"}));
        // Column order and extra columns do not matter; a trimmed, BOM-prefixed header works.
        let ack = s.decode_rows("\u{feff} Tid ;Extra;Id;Status;Orsak\n2026-11-02 09:15;x;O-1;OK;\n").expect("ack");
        assert_eq!(&*ack[0].result.as_ref().expect("decodes").mapping, "t/ack.toml");

        let e = s.decode_rows("Id;Status;Tid\nO-1;OK;2026-11-02 09:15\n").expect_err("no Orsak column");
        assert_eq!(e.code, ErrorCode::UnknownMessageType);
        assert!(e.reason.contains("t/ack.toml") && e.reason.contains("'Orsak'"), "{}", e.reason);
        // A file without a header: its first row must not show up in the message.
        let e = s.decode_rows("193601016987;OK\n").expect_err("no header");
        assert_eq!(e.code, ErrorCode::UnknownMessageType);
        assert!(!e.reason.contains("193601016987"), "{}", e.reason);
        assert_eq!(s.decode_rows("").expect_err("empty").code, ErrorCode::MalformedPayload);
        assert_eq!(s.decode_rows("\r\n  \n").expect_err("blank").code, ErrorCode::MalformedPayload);
        assert_eq!(set(&[("plan.toml", PLAN)]).decode_rows("Id;Plan klar\n").expect("header only").len(), 0);
    }

    #[test]
    fn empty_cells_are_absent() {
        let text = r#"
message = "plan_notice"
direction = "in"
format = "csv"

[[fields]]
vendor = "Id"
canonical = "order_id"

[[fields]]
vendor = "Datum"
canonical = "established_on"
default = "2026-01-01"
type = "date"

[[fields]]
vendor = "Not"
canonical = "note"
optional = true
"#;
        let s = set(&[("plan.toml", text)]);
        let rows = s.decode_rows("Id;Datum;Not\nO-1;  ;\n ;2026-11-10;x\n").expect("file");
        assert_eq!(
            rows[0].result.as_ref().expect("defaults").value(),
            json!({"order_id": "O-1", "established_on": "2026-01-01"})
        );
        let e = rows[1].result.as_ref().expect_err("no id");
        assert_eq!((e.code, e.reason.as_str()), (ErrorCode::MissingField, "Id is required"));
    }

    #[test]
    fn quoted_cells_keep_delimiters_quotes_and_line_breaks() {
        let s = set(&[("ack.toml", ACK)]);
        let file = "Id;Status;Orsak;Tid\n\
                    O-1;NEJ;\"Full; inga \"\"lediga\"\" tider\";2026-11-02 09:15\n\
                    O-2;NEJ;\"två\nrader\";2026-11-02 09:15\n\
                    O-3;OK;;2026-11-02 09:15\n";
        let rows = s.decode_rows(file).expect("file");
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3, 5]);
        let reason = |i: usize| rows[i].result.as_ref().expect("decodes").value()["reason"].clone();
        assert_eq!(reason(0), "Full; inga \"lediga\" tider");
        assert_eq!(reason(1), "två\nrader");
        // CRLF inside and between rows, blank lines before the header: lines still count.
        let file = "\r\n\r\nId;Status;Orsak;Tid\r\nO-1;NEJ;\"a\r\nb\";2026-11-02 09:15\r\n\r\nO-2;OK;;2026-11-02 09:15";
        let rows = s.decode_rows(file).expect("file");
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [4, 7]);
        assert_eq!(rows[0].result.as_ref().expect("decodes").value()["reason"], "a\r\nb");
        // Another delimiter, named by the mapping.
        let tab = ACK.replace("format = \"csv\"", "format = \"csv\"\ndelimiter = \"\\t\"");
        let s = MappingSet::from_sources("t", [("ack.toml", tab.as_str())]).expect("loads");
        let rows = s.decode_rows("Id\tStatus\tOrsak\tTid\nO-1\tNEJ\ta;b\t2026-11-02 09:15\n").expect("file");
        assert_eq!(rows[0].result.as_ref().expect("decodes").value()["reason"], "a;b");
    }

    #[test]
    fn decode_reads_a_one_row_file_and_refuses_a_batch() {
        let s = set(&[("ack.toml", ACK), ("plan.toml", PLAN)]);
        let d = s.decode("Id;Plan klar\r\nO-1;2026-11-10\r\n").expect("one row");
        assert_eq!(d.message_type, MessageType::PlanNotice);
        let e = s.decode("Id;Plan klar\nO-1;2026-11-10\nO-2;2026-11-11\n").expect_err("two rows");
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        assert!(e.reason.contains("2 rows") && e.reason.contains("batch"), "{}", e.reason);
        let e = s.decode("Id;Plan klar\nO-1;2026-02-30\n").expect_err("the row's own error");
        assert_eq!(e.code, ErrorCode::InvalidDate);
        assert_eq!(s.decode("Id;Plan klar\n").expect_err("no rows").code, ErrorCode::MalformedPayload);
    }

    fn order_context() -> Value {
        json!({"order": {"id": "O-1", "name": "Åsa Öberg; Gärdet", "services": [
            {"category": "service", "minutes_per_month": 480},
            {"category": "personal_care", "minutes_per_month": 1800}]}})
    }

    #[test]
    fn encode_writes_a_row_per_item_with_crlf() {
        let s = set(&[("order.toml", ORDER)]);
        let r = s.encode(MessageType::Order, &order_context()).expect("renders");
        assert_eq!(r.content_type, "text/csv; charset=windows-1252");
        assert_eq!(r.endpoint.as_deref(), Some("uppdrag"));
        let text = encoding_rs::WINDOWS_1252.decode(&r.body).0.into_owned();
        assert_eq!(
            text,
            "Id;Namn;Slut;Typ;Insats;Minuter\r\n\
             O-1;\"Åsa Öberg; Gärdet\";;U;SERV;480\r\n\
             O-1;\"Åsa Öberg; Gärdet\";;U;OMV;1800\r\n"
        );
        let mut ctx = order_context();
        ctx["order"]["end_date"] = json!("2027-10-31");
        ctx["order"]["services"][1]["category"] = json!("golf");
        let e = s.encode(MessageType::Order, &ctx).expect_err("no code for golf");
        assert_eq!(e.code, ErrorCode::InvalidValue);
        assert!(e.reason.starts_with("row 2: "), "{}", e.reason);
        ctx["order"]["services"] = json!("none");
        assert_eq!(s.encode(MessageType::Order, &ctx).expect_err("not a list").code, ErrorCode::InvalidValue);
        ctx["order"].as_object_mut().expect("object").remove("services");
        assert_eq!(s.encode(MessageType::Order, &ctx).expect_err("no list").code, ErrorCode::MissingField);
    }

    #[test]
    fn an_optional_list_absent_writes_one_row_without_its_item() {
        let optional = ORDER
            .replace("rows = \"order.services\"", "rows = \"order.services\"\nrows_optional = true")
            .replace("canonical = \"item.category\"", "canonical = \"item.category\"\noptional = true")
            .replace(
                "canonical = \"item.minutes_per_month\"",
                "canonical = \"item.minutes_per_month\"\noptional = true",
            );
        let s = MappingSet::from_sources("t", [("order.toml", optional.as_str())]).expect("loads");
        let mut ctx = order_context();
        let r = s.encode(MessageType::Order, &ctx).expect("renders");
        assert_eq!(encoding_rs::WINDOWS_1252.decode(&r.body).0.lines().count(), 3, "a row per item");
        ctx["order"].as_object_mut().expect("object").remove("services");
        let r = s.encode(MessageType::Order, &ctx).expect("renders");
        let text = encoding_rs::WINDOWS_1252.decode(&r.body).0.into_owned();
        assert_eq!(text, "Id;Namn;Slut;Typ;Insats;Minuter\r\nO-1;\"\u{c5}sa \u{d6}berg; G\u{e4}rdet\";;U;;\r\n");

        let without_rows = ORDER.replace("rows = \"order.services\"", "rows_optional = true");
        let errors = MappingSet::from_sources("t", [("order.toml", without_rows.as_str())]).expect_err("no rows");
        assert!(errors.iter().any(|e| e.reason.contains("`rows_optional` needs `rows`")), "{errors:?}");
    }

    #[test]
    fn windows_1252_round_trips() {
        let out = ORDER.replace("rows = \"order.services\"", "").replace("item.", "order.first.");
        let s = MappingSet::from_sources("t", [("order.toml", out.as_str())]).expect("loads");
        let ctx = json!({"order": {"id": "O-1", "name": "Åsa Öberg", "end_date": "2027-10-31",
            "first": {"category": "service", "minutes_per_month": 60}}});
        let r = s.encode(MessageType::Order, &ctx).expect("renders");
        assert_eq!(r.body, b"Id;Namn;Slut;Typ;Insats;Minuter\r\nO-1;\xc5sa \xd6berg;20271031;U;SERV;60\r\n");

        let back = r#"
message = "plan_notice"
direction = "in"
format = "csv"
encoding = "windows-1252"

[[fields]]
vendor = "Id"
canonical = "order_id"

[[fields]]
vendor = "Namn"
canonical = "name"

[[fields]]
vendor = "Slut"
canonical = "established_on"
type = "date"
format = "%Y%m%d"

[[fields]]
canonical = "kind"
value = "U"
"#;
        let s = MappingSet::from_sources("t", [("ack.toml", back)]).expect("loads");
        let rows = s.decode_rows_bytes(&r.body).expect("a windows-1252 file");
        assert_eq!(
            rows[0].result.as_ref().expect("decodes").value(),
            json!({"order_id": "O-1", "name": "Åsa Öberg", "established_on": "2027-10-31", "kind": "U"})
        );
        assert_eq!(s.decode_bytes(&r.body).expect("one row").value()["name"], "Åsa Öberg");
    }

    #[test]
    fn check_refuses_what_csv_cannot_hold() {
        let nested = r#"
message = "order"
direction = "out"
format = "csv"
delimiter = "ab"
"#;
        let e = MappingSet::from_sources("t", [("n.toml", nested)]).expect_err("two-character delimiter");
        assert!(e[0].reason.contains("delimiter"), "{e:?}");

        let nested = r#"
message = "order"
direction = "out"
format = "csv"
delimiter = "§"

[[fields]]
vendor = "Insats"
canonical = "order.services"
  [[fields.fields]]
  vendor = "Kod"
  canonical = "category"
"#;
        let e = MappingSet::from_sources("t", [("n.toml", nested)]).expect_err("nested");
        let reasons: Vec<&str> = e.iter().map(|e| e.reason.as_str()).collect();
        assert!(reasons.iter().any(|r| r.starts_with("field Insats: a CSV row is flat")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.starts_with("delimiter '§'")), "{reasons:?}");

        let json = r#"
message = "order"
direction = "out"
format = "json"
delimiter = ","
rows = "order.services"
"#;
        let e = MappingSet::from_sources("t", [("j.toml", json)]).expect_err("csv keys on json");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().any(|e| e.reason.contains("`rows`")) && e.iter().any(|e| e.reason.contains("`delimiter`")));

        let inbound = ACK.replace("format = \"csv\"", "format = \"csv\"\nrows = \"x\"");
        let e = MappingSet::from_sources("t", [("a.toml", inbound.as_str())]).expect_err("rows inbound");
        assert!(e[0].reason.contains("outbound"), "{e:?}");

        let twin = ACK.replace("message = \"order_ack\"", "message = \"plan_notice\"");
        let e = MappingSet::from_sources("t", [("a.toml", ACK), ("b.toml", twin.as_str())]).expect_err("twins");
        assert!(e[0].reason.contains("same CSV columns"), "{e:?}");
    }

    const VISIT: &str = r#"
message = "visit"
direction = "in"
format = "csv"

[[fields]]
vendor = "Vem"
canonical = "client"

[[fields]]
join = ["Datum", "Kom"]
canonical = "check_in.at"
type = "datetime"
format = "%Y-%m-%d %H:%M"

[[fields]]
join = ["Datum", "Gick"]
canonical = "check_out.at"
type = "datetime"
format = "%Y-%m-%d %H:%M"
after = "check_in.at"
optional = true

[[fields]]
vendor = "Reg"
canonical = "check_in.method"
split = ":"
part = 0
table = "reg"

[[fields]]
vendor = "Reg"
canonical = "check_in.reason"
split = ":"
part = 1
optional = true

[[fields]]
vendor = "Tagg"
canonical = "check_in.tag_uid"
when = { canonical = "check_in.method", equals = "nfc" }

[[fields]]
vendor = "Insatser"
canonical = "services"
list = ","
table = "cat"
optional = true

[tables.reg]
NFC = "nfc"
Manuell = "manual"

[tables.cat]
SERV = "service"
OMV = "personal_care"
"#;

    #[test]
    fn joined_columns_split_cells_and_lists_read_a_visit_row() {
        let s = set(&[("visit.toml", VISIT), ("ack.toml", ACK), ("plan.toml", PLAN)]);
        // Columns in any order, extra ones ignored: each is found once for the file.
        let file = "Extra;Tagg;Gick;Kom;Datum;Vem;Reg;Insatser\n\
                    x;04A21BC3;00:30;23:30;2026-11-03;193601016987;NFC;OMV, SERV\n\
                    x;04A21BC3;;08:00;2026-11-04;194202138014;Manuell:Taggen saknades;\n\
                    x;;08:10;08:00;;194202138014;Manuell;SERV\n";
        let rows = s.decode_rows(file).expect("a visit file");
        let got = |i: usize| rows[i].result.as_ref().map(|d| d.value());
        assert_eq!(&*rows[0].result.as_ref().expect("decodes").mapping, "t/visit.toml");
        assert_eq!(
            got(0).expect("across midnight"),
            json!({"client": "193601016987",
                   "check_in": {"at": "2026-11-03T22:30:00Z", "method": "nfc", "tag_uid": "04A21BC3"},
                   "check_out": {"at": "2026-11-03T23:30:00Z"}, "services": ["personal_care", "service"]})
        );
        assert_eq!(
            got(1).expect("manual, no check-out, the tag not read"),
            json!({"client": "194202138014",
                   "check_in": {"at": "2026-11-04T07:00:00Z", "method": "manual", "reason": "Taggen saknades"}})
        );
        let e = got(2).expect_err("no Datum");
        assert_eq!((e.code, e.reason.as_str()), (ErrorCode::MissingField, "Datum + Kom is required"));
        // The header must hold every joined column too.
        let e = s.decode_rows("Tagg;Kom;Vem;Reg;Insatser;Gick\n").expect_err("no Datum column");
        assert!(e.reason.contains("'Datum'"), "{}", e.reason);
    }

    #[test]
    fn outbound_csv_keeps_a_column_for_a_field_when_skips() {
        let text = r#"
message = "visit"
direction = "out"
format = "csv"

[[fields]]
vendor = "Tagg"
canonical = "visit.tag"
when = { canonical = "visit.method", equals = "nfc" }

[[fields]]
vendor = "Insatser"
canonical = "visit.services"
list = ","
table = "cat"

[tables.cat]
SERV = "service"
OMV = "personal_care"
"#;
        let s = set(&[("visit.toml", text)]);
        let ctx = json!({"visit": {"tag": "04A21BC3", "method": "manual", "services": ["personal_care", "service"]}});
        let r = s.encode(MessageType::Visit, &ctx).expect("renders");
        assert_eq!(String::from_utf8_lossy(&r.body), "Tagg;Insatser\r\n;OMV,SERV\r\n");
    }

    /// ParaGå's daily visit file has about 1 million rows a month for Stockholm: a file of
    /// a hundred thousand rows must go through in well under a second in a release build.
    #[test]
    fn a_large_visit_file_decodes_row_by_row() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../mappings/paraga"));
        let s = MappingSet::load_dir("paraga", dir).unwrap_or_else(|e| panic!("{e:?}"));
        let rows = if cfg!(debug_assertions) { 10_000 } else { 100_000 };
        let mut file = String::from("Personnummer;Datum;Kom;Gick;Taggid;Registrering;Insatser;Utfall;Personal\r\n");
        for i in 0..rows {
            let (h, m) = (6 + i % 16, i % 60);
            file.push_str(&format!(
                "193601016987;2026-11-{:02};{h:02}:{m:02};{:02}:{m:02};04A21BC3;NFC;OMV,SERV;Utförd;st-{}\r\n",
                1 + i % 28,
                h + 1,
                i % 500
            ));
        }
        let started = std::time::Instant::now();
        let decoded = s.decode_rows(&file).expect("a file");
        let took = started.elapsed();
        assert_eq!(decoded.len(), rows);
        assert!(decoded.iter().all(|r| r.result.is_ok()));
        assert_eq!(decoded[rows - 1].line, rows + 1);
        assert!(took < std::time::Duration::from_secs(5), "{rows} rows took {took:?}");
    }

    #[test]
    fn the_paraga_mappings_pass_their_samples() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../mappings/paraga"));
        let s = MappingSet::load_dir("paraga", dir).unwrap_or_else(|e| panic!("{e:?}"));
        let (count, failures) = s.run_samples();
        assert!(failures.is_empty(), "{}", failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"));
        assert!(count >= 4, "{count} samples");
        // ParaGå's headers hold å, ä and ö: they must reach the file in Windows-1252.
        let ctx = json!({"order": {"id": "O-1", "decision_id": "combine:D-1", "provider": "5599000014",
            "client": "193601016987", "start_date": "2026-11-01", "execute_by": "2026-11-15",
            "plan_due": "2026-11-15", "services": [{"code": "AVL", "category": "relief", "minutes_per_month": 60}]}});
        let r = s.encode(MessageType::Order, &ctx).expect("renders");
        assert!(r.body.starts_with(b"Uppdragsid;Beslutsreferens;Utf\xf6rare;"), "{:?}", r.body);
        assert!(r.body.ends_with(b";;2026-11-15;2026-11-15;AVL;60\r\n"));
    }
}
