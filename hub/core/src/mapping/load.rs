//! Loading mapping files into a [`MappingSet`]: parsing, splitting each field's paths once
//! ([`Compiled`](super::spec::Compiled)), and every check of a file, so that a mistake is
//! refused when the hub starts, with all of a file's problems at once, rather than on the
//! first message that meets it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use carehub_model::MessageType;

use super::plan::Plan;
use super::spec::segments;
use super::{text, Direction, Field, FieldType, Format, Mapping, MappingSet};

/// A mapping file that could not be loaded, with the reason and, when the TOML reader
/// could tell, the line and column (1-based) the reason is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingFileError {
    pub file: String,
    pub reason: String,
    pub at: Option<(usize, usize)>,
}

impl MappingFileError {
    fn new(file: String, reason: String) -> MappingFileError {
        MappingFileError { file, reason, at: None }
    }

    /// A file that is not TOML, or not a mapping: the reader's message at its place.
    fn unreadable(file: String, text: &str, e: &toml::de::Error) -> MappingFileError {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
            (line, column)
        });
        // The reader's message can run over lines ("invalid array\nexpected `]`"): one line.
        let mut reason = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(": ");
        // A bad value: name its key, as the line `key = value` the span points into says.
        if let Some(start) = e.span().map(|span| span.start.min(text.len())) {
            let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
            if let Some((key, _)) = text[line_start..start].split_once('=') {
                let key = key.trim();
                if !key.is_empty() && !key.starts_with('[') && !reason.contains(key) {
                    reason = format!("{key}: {reason}");
                }
            }
        }
        MappingFileError { file, reason, at }
    }
}

impl fmt::Display for MappingFileError {
    /// `FILE:LINE:COLUMN: reason`, as a compiler prints it, or `FILE: reason`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for MappingFileError {}

/// The direction and message each file means to map, read leniently: what a file that
/// does not load was meant for, so that a check of which mappings are missing neither
/// misses a gap nor invents one because of a broken file. A file whose text does not say
/// (not TOML, or no valid `direction` and `message`) counts by its name (`order.out.toml`).
pub fn declared<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(Direction, MessageType)> {
    files
        .into_iter()
        .filter_map(|(file, text)| {
            let from_text = text.parse::<toml::Table>().ok().map(|t| {
                let direction = match t.get("direction").and_then(|d| d.as_str()) {
                    Some("in") => Some(Direction::In),
                    Some("out") => Some(Direction::Out),
                    _ => None,
                };
                (direction, t.get("message").and_then(|m| m.as_str()).and_then(MessageType::parse))
            });
            let name = file.rsplit('/').next().unwrap_or(file);
            let mut parts = name.strip_suffix(".toml").unwrap_or(name).rsplitn(2, '.');
            let direction = match parts.next() {
                Some("in") => Some(Direction::In),
                Some("out") => Some(Direction::Out),
                _ => None,
            };
            let from_name = (direction, parts.next().and_then(MessageType::parse));
            match from_text {
                Some((Some(d), Some(m))) => Some((d, m)),
                _ => Some((from_name.0?, from_name.1?)),
            }
        })
        .collect()
}

impl MappingSet {
    /// Parses and checks mapping files given as (file name, text). Every problem in every
    /// file is reported, not just the first.
    pub fn from_sources<'a>(
        vendor: &str,
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<MappingSet, Vec<MappingFileError>> {
        let mut mappings = Vec::new();
        let mut errors = Vec::new();
        for (file, text) in files {
            let label = format!("{vendor}/{file}");
            match toml::from_str::<Mapping>(text) {
                Ok(mut m) => {
                    m.name = label.as_str().into();
                    for f in &mut m.fields {
                        f.compile();
                    }
                    mark_sole_keys(&mut m.fields);
                    attach_codes(&mut m.fields, &m.tables);
                    let problems = m.check();
                    if problems.is_empty() {
                        mappings.push(m);
                    } else {
                        errors.extend(problems.into_iter().map(|reason| MappingFileError::new(label.clone(), reason)));
                    }
                }
                Err(e) => errors.push(MappingFileError::unreadable(label, text, &e)),
            }
        }
        for (i, a) in mappings.iter().enumerate() {
            for b in &mappings[i + 1..] {
                if a.direction == Direction::Out && b.direction == Direction::Out && a.message == b.message {
                    errors.push(MappingFileError::new(
                        b.name.to_string(),
                        format!("a second outbound mapping for {} (first: {})", b.message, a.name),
                    ));
                }
                if a.reads_same_csv_as(b) {
                    errors.push(MappingFileError::new(
                        b.name.to_string(),
                        format!("reads the same CSV columns as {}: their files could not be told apart", a.name),
                    ));
                }
            }
        }
        if errors.is_empty() {
            let inbound = mappings
                .iter()
                .filter(|m| m.direction == Direction::In)
                .filter_map(|m| m.encoding.as_deref().and_then(text::encoding))
                .find(|e| *e != encoding_rs::UTF_8)
                .unwrap_or(encoding_rs::UTF_8);
            let single_byte = text::SingleByte::new(inbound);
            for m in mappings.iter_mut().filter(|m| m.format == Format::Xml && m.direction == Direction::In) {
                m.xml_plan = Plan::new(m.root.as_deref(), &m.fields, single_byte.as_ref().map(|t| t.encoding));
            }
            let mut accepted = vec![inbound];
            for m in mappings.iter().filter(|m| m.direction == Direction::In) {
                let own = m.encoding.as_deref().and_then(text::encoding).unwrap_or(encoding_rs::UTF_8);
                for enc in std::iter::once(own).chain(m.accept_encodings.iter().filter_map(|l| text::encoding(l))) {
                    if !accepted.contains(&enc) {
                        accepted.push(enc);
                    }
                }
            }
            Ok(MappingSet { vendor: vendor.to_owned(), mappings, inbound, single_byte, accepted })
        } else {
            Err(errors)
        }
    }

    /// Loads every `*.toml` file of `dir` (a vendor's folder under `mappings/`).
    pub fn load_dir(vendor: &str, dir: &Path) -> Result<MappingSet, Vec<MappingFileError>> {
        let files = MappingSet::read_dir(dir)?;
        MappingSet::from_sources(vendor, files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// The `*.toml` files of `dir` as (file name, text), sorted by name.
    pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, Vec<MappingFileError>> {
        let err = |reason: String| vec![MappingFileError::new(dir.display().to_string(), reason)];
        let entries = std::fs::read_dir(dir).map_err(|e| err(format!("cannot read folder: {e}")))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| err(e.to_string()))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_owned();
                files.push((name, text));
            }
        }
        files.sort();
        Ok(files)
    }
}

/// Copies each field's code table into it (see [`Compiled::codes`](super::spec::Compiled::codes)).
fn attach_codes(fields: &mut [Field], tables: &BTreeMap<String, BTreeMap<String, String>>) {
    for f in fields {
        if let Some(table) = f.table.as_ref().and_then(|t| tables.get(t)) {
            f.compiled.codes = table.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        attach_codes(&mut f.fields, tables);
    }
}

/// Marks the fields whose canonical key no sibling shares (see
/// [`Compiled::sole_key`](super::spec::Compiled::sole_key)).
fn mark_sole_keys(fields: &mut [Field]) {
    let firsts: Vec<Option<String>> = fields.iter().map(|f| f.compiled.canonical.first().cloned()).collect();
    for f in fields.iter_mut() {
        let key = f.compiled.canonical.first();
        f.compiled.sole_key =
            f.compiled.canonical.len() == 1 && firsts.iter().filter(|k| k.as_ref() == key).count() == 1;
        mark_sole_keys(&mut f.fields);
    }
}

/// A canonical path as JSON keys.
fn canonical_keys(path: &str) -> Vec<String> {
    path.split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Field {
    fn compile(&mut self) {
        if let Some(path) = &self.vendor {
            let mut elems: Vec<String> = segments(path).map(str::to_owned).collect();
            let attr = match elems.last() {
                Some(last) if last.starts_with('@') => elems.pop().map(|a| a[1..].to_owned()),
                _ => None,
            };
            self.compiled.elems = elems;
            self.compiled.attr = attr;
        }
        if let Some(path) = &self.canonical {
            self.compiled.canonical = canonical_keys(path);
        }
        self.compiled.join = self.join.iter().map(|p| segments(p).map(str::to_owned).collect()).collect();
        self.compiled.after = self.after.as_deref().map(canonical_keys).unwrap_or_default();
        self.compiled.when = self.when.as_ref().map(|w| canonical_keys(&w.canonical)).unwrap_or_default();
        self.compiled.direct = self.fields.is_empty()
            && self.when.is_none()
            && self.value.is_none()
            && self.default.is_none()
            && self.split.is_none()
            && self.list.is_none()
            && self.after.is_none();
        for f in &mut self.fields {
            f.compile();
        }
    }
}

impl Mapping {
    /// Semantic checks beyond the file's syntax.
    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.format == Format::Xml && self.root.is_none() {
            problems.push("an XML mapping needs `root`".to_owned());
        }
        for label in self.encoding.iter().chain(&self.accept_encodings) {
            if text::encoding(label).is_none() {
                problems.push(format!("unknown encoding '{label}' (use utf-8, iso-8859-1 or windows-1252)"));
            }
        }
        if !self.accept_encodings.is_empty() && self.direction != Direction::In {
            problems.push("`accept_encodings` is for inbound mappings".to_owned());
        }
        if self.envelope.is_some() && self.format != Format::Xml {
            problems.push("an envelope needs format = \"xml\"".to_owned());
        }
        self.check_csv(&mut problems);
        self.check_fields(&self.fields, false, &mut problems);
        problems
    }

    /// Checks a list of fields: the mapping's own (`in_list` false) or a list field's items.
    fn check_fields(&self, fields: &[Field], in_list: bool, problems: &mut Vec<String>) {
        let inbound = self.direction == Direction::In;
        // Inbound, the canonical paths the fields before this one set: what `when` and
        // `after` can see.
        let mut set_before: Vec<&str> = Vec::new();
        for f in fields {
            let label = f.label();
            let (source, target) = match self.direction {
                Direction::In => (f.vendor.is_some() || !f.join.is_empty(), &f.canonical),
                Direction::Out => (f.canonical.is_some(), &f.vendor),
            };
            if target.is_none() {
                problems.push(format!(
                    "field {label}: needs a {} path",
                    match self.direction {
                        Direction::In => "canonical",
                        Direction::Out => "vendor",
                    }
                ));
            }
            if !source && f.value.is_none() {
                problems.push(format!("field {label}: needs a source path or a constant `value`"));
            }
            if let Some(z) = &f.timezone {
                if z.parse::<chrono_tz::Tz>().is_err() {
                    problems.push(format!("field {label}: unknown time zone '{z}'"));
                }
            }
            if let Some(t) = &f.table {
                if !self.tables.contains_key(t) {
                    problems.push(format!("field {label}: no table named '{t}'"));
                }
            }
            self.check_field_keys(f, &label, &set_before, problems);
            if f.canonical.is_some() && f.compiled.canonical.is_empty() {
                if !in_list {
                    problems
                        .push(format!("field {label}: canonical \".\" (the item itself) is for the fields of a list"));
                } else if fields.iter().filter(|g| g.canonical.is_some()).count() > 1 {
                    problems.push(format!(
                        "field {label}: canonical \".\" makes the item a plain value, so it is its list's only field"
                    ));
                }
            }
            if !f.fields.is_empty() {
                self.check_fields(&f.fields, true, problems);
            }
            if inbound {
                if let Some(c) = &f.canonical {
                    set_before.push(c);
                }
            }
        }
    }

    /// The checks of `join`, `after`, `split`, `part`, `list` and `when`.
    fn check_field_keys(&self, f: &Field, label: &str, set_before: &[&str], problems: &mut Vec<String>) {
        let inbound = self.direction == Direction::In;
        let mut refuse = |what: String| problems.push(format!("field {label}: {what}"));
        for (key, used) in [
            ("join", !f.join.is_empty()),
            ("after", f.after.is_some()),
            ("split", f.split.is_some()),
            ("part", f.part.is_some()),
        ] {
            if used && !inbound {
                refuse(format!("`{key}` is for inbound mappings"));
            }
        }
        let list_field = !f.fields.is_empty();
        if !f.join.is_empty() {
            if f.vendor.is_some() {
                refuse("`join` replaces `vendor`: give one or the other".to_owned());
            }
            if f.join.len() < 2 {
                refuse("`join` needs two or more paths".to_owned());
            }
            if list_field {
                refuse("`join` reads scalars, not a list's items".to_owned());
            }
            if self.format == Format::Xml {
                refuse("`join` reads CSV columns and JSON keys, not XML".to_owned());
            }
            if f.join.iter().any(|p| p.trim().is_empty()) {
                refuse("`join` has an empty path".to_owned());
            }
        }
        if let Some(after) = &f.after {
            if f.kind != FieldType::Datetime || f.format.is_none() {
                refuse("`after` needs type = \"datetime\" with a `format` (a wall-clock time)".to_owned());
            }
            if inbound && !set_before.contains(&after.as_str()) {
                refuse(format!("`after` names {after}, which no earlier field sets"));
            }
        }
        match (&f.split, f.part) {
            (Some(sep), Some(part)) => {
                if sep.is_empty() {
                    refuse("`split` needs a separator".to_owned());
                }
                if part > 1 {
                    refuse(format!("part = {part}: use 0 (before the separator) or 1 (after it)"));
                }
            }
            (Some(_), None) => refuse("`split` needs `part` (0: before the separator, 1: after it)".to_owned()),
            (None, Some(_)) => refuse("`part` needs `split`".to_owned()),
            (None, None) => {}
        }
        if let Some(sep) = &f.list {
            if sep.is_empty() {
                refuse("`list` needs a separator".to_owned());
            }
            if list_field {
                refuse("`list` is for a list in one value; a list field's items have their own `fields`".to_owned());
            }
            if f.after.is_some() {
                refuse("`list` and `after` do not go together".to_owned());
            }
        }
        if let Some(w) = &f.when {
            if f.compiled.when.is_empty() {
                refuse("`when` needs a canonical path".to_owned());
            } else if inbound {
                let w = w.canonical.trim_matches('.');
                let seen = set_before.iter().any(|c| {
                    let c = c.trim_matches('.');
                    c == w || c.strip_prefix(w).is_some_and(|rest| rest.starts_with('.'))
                });
                if !seen {
                    refuse(format!("`when` reads {w}, which no earlier field sets"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_toml_is_reported_at_its_line_and_still_counts_for_what_it_maps() {
        let broken = "message = \"order\"\ndirection = \"out\"\nformat = [json\n";
        let errors = MappingSet::from_sources("t", [("order.out.toml", broken)]).expect_err("not TOML");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].at, Some((3, 11)), "{errors:?}");
        assert!(errors[0].to_string().starts_with("t/order.out.toml:3:11: "), "{}", errors[0]);
        assert!(!errors[0].reason.contains('\n'), "one line: {}", errors[0].reason);
        // An unknown key is a place too.
        let errors =
            MappingSet::from_sources("t", [("x.toml", "message = \"order\"\ncolour = 1\n")]).expect_err("unknown key");
        assert!(errors[0].at.is_some(), "{errors:?}");

        // What each file means to map: its keys when it has them, else its name.
        assert_eq!(
            declared([
                ("t/order.out.toml", "not [toml"),
                ("t/acks.toml", "message = \"order_ack\"\ndirection = \"in\"\nformat = [\"broken\"]"),
                ("t/readme.toml", "x = 1"),
            ]),
            vec![(Direction::Out, MessageType::Order), (Direction::In, MessageType::OrderAck)]
        );
    }

    #[test]
    fn every_problem_in_a_mapping_file_is_reported() {
        let bad = r#"
message = "decision"
direction = "in"
format = "xml"

[[fields]]
vendor = "A"
table = "missing"
"#;
        let errors = MappingSet::from_sources("t", [("bad.toml", bad), ("worse.toml", "message = 'nope'")])
            .expect_err("bad files");
        assert!(errors.len() >= 4, "{errors:?}");
        assert!(errors.iter().any(|e| e.reason.contains("root")));
        assert!(errors.iter().any(|e| e.reason.contains("table")));
        assert!(errors.iter().any(|e| e.file == "t/worse.toml"));
    }

    #[test]
    fn misused_keys_are_reported_when_the_file_loads() {
        let problems = |text: &str| -> Vec<String> {
            MappingSet::from_sources("t", [("m.toml", text)])
                .err()
                .map(|e| e.into_iter().map(|e| e.reason).collect())
                .unwrap_or_default()
        };
        let inbound = "message = \"visit\"\ndirection = \"in\"\nformat = \"json\"\n";
        let with = |fields: &str| problems(&format!("{inbound}{fields}\n[tables.t]\nA = \"a\"\n"));
        let has = |found: Vec<String>, want: &str| {
            assert!(found.iter().any(|p| p.contains(want)), "{want:?} not in {found:?}");
        };
        has(with("[[fields]]\nvendor = \"a\"\njoin = [\"a\", \"b\"]\ncanonical = \"x\""), "`join` replaces `vendor`");
        has(with("[[fields]]\njoin = [\"a\"]\ncanonical = \"x\""), "two or more");
        has(
            with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\ntype = \"datetime\"\nafter = \"y\""),
            "`after` needs type",
        );
        has(
            with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\ntype = \"datetime\"\nformat = \"%H\"\nafter = \"y\""),
            "`after` names y, which no earlier field sets",
        );
        has(with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\nsplit = \":\""), "`split` needs `part`");
        has(with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\nsplit = \":\"\npart = 2"), "part = 2");
        has(with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\npart = 1"), "`part` needs `split`");
        has(with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\nlist = \"\""), "`list` needs a separator");
        has(
            with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\nlist = \",\"\n  [[fields.fields]]\n  vendor = \"b\"\n  canonical = \"c\""),
            "`list` is for a list in one value",
        );
        has(
            with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\nwhen = { canonical = \"y\" }\n[[fields]]\nvendor = \"b\"\ncanonical = \"y\""),
            "`when` reads y, which no earlier field sets",
        );
        assert!(with("[[fields]]\nvendor = \"b\"\ncanonical = \"y.z\"\n[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\nwhen = { canonical = \"y\" }").is_empty());
        has(with("[[fields]]\nvendor = \"a\"\ncanonical = \".\""), "is for the fields of a list");
        has(
            with("[[fields]]\nvendor = \"a\"\ncanonical = \"x\"\n  [[fields.fields]]\n  vendor = \".\"\n  canonical = \".\"\n  [[fields.fields]]\n  vendor = \"b\"\n  canonical = \"c\""),
            "its list's only field",
        );
        let xml = "message = \"visit\"\ndirection = \"in\"\nformat = \"xml\"\nroot = \"R\"\n[[fields]]\njoin = [\"a\", \"b\"]\ncanonical = \"x\"";
        has(problems(xml), "not XML");
        let out = "message = \"visit\"\ndirection = \"out\"\nformat = \"json\"\n[[fields]]\njoin = [\"a\", \"b\"]\nvendor = \"v\"\nsplit = \":\"\npart = 0";
        let found = problems(out);
        has(found.clone(), "`join` is for inbound mappings");
        has(found, "`split` is for inbound mappings");
    }
}
