//! What every outbound writer shares (the XML and JSON writer in `write`, the CSV writer in
//! `csv`): a field's `when` in the outbound context, its value found at a canonical path
//! and converted to the vendor's text. It imports no writer, so neither writer imports the
//! other for it.

use std::borrow::Cow;

use carehub_model::{ErrorCode, ValidationError};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;

use super::{Field, FieldType, Mapping};

impl Field {
    /// Whether the field's `when` holds in the outbound context.
    pub(super) fn applies(&self, ctx: &Value) -> bool {
        if self.when.is_none() {
            return true;
        }
        let found = self.compiled.when.iter().try_fold(ctx, |v, key| v.get(key.as_str()));
        self.when_holds(match found {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Some(Cow::Borrowed(s.as_str()))),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(Some(Cow::Owned(v.to_string()))),
            Some(_) => Some(None),
        })
    }
}

/// A scalar field's vendor text (see [`convert_out`] for the flag): the constant, the
/// converted canonical value, or the default; `None` when an optional field has nothing.
pub(super) fn scalar_out(
    f: &Field,
    source: Option<&Value>,
    m: &Mapping,
) -> Result<Option<(String, bool)>, ValidationError> {
    let text = match (&f.value, source) {
        (Some(v), _) => Some((v.clone(), false)),
        (None, Some(v)) => Some(convert_out(f, v, m)?),
        (None, None) => f.default.clone().map(|d| (d, false)),
    };
    match text {
        Some(t) => Ok(Some(t)),
        None if f.optional => Ok(None),
        None => Err(missing_out(f)),
    }
}

pub(super) fn missing_out(f: &Field) -> ValidationError {
    ValidationError::new(
        ErrorCode::MissingField,
        format!(
            "canonical {} is required for {}",
            f.canonical.as_deref().unwrap_or("?"),
            f.vendor.as_deref().unwrap_or("?")
        ),
    )
}

/// Canonical value to vendor text. The flag says whether the text keeps its canonical type
/// (a JSON target writes numbers and booleans as such); a code table makes it text.
fn convert_out(f: &Field, v: &Value, m: &Mapping) -> Result<(String, bool), ValidationError> {
    match (&f.list, v) {
        (Some(sep), Value::Array(items)) => {
            let texts = items.iter().map(|item| convert_out_one(f, item, m).map(|(t, _)| t));
            Ok((texts.collect::<Result<Vec<_>, _>>()?.join(sep.as_str()), false))
        }
        _ => convert_out_one(f, v, m),
    }
}

/// One canonical scalar to vendor text (see [`convert_out`]).
fn convert_out_one(f: &Field, v: &Value, m: &Mapping) -> Result<(String, bool), ValidationError> {
    let label = f.canonical.as_deref().unwrap_or("?");
    let bad = |what: &str| ValidationError::new(ErrorCode::InvalidValue, format!("canonical {label}: {what}"));
    let mut s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(bad("not a single value")),
    };
    match f.kind {
        FieldType::Date => {
            let d = NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| bad("not a date"))?;
            s = d.format(f.format.as_deref().unwrap_or("%Y-%m-%d")).to_string();
        }
        FieldType::Datetime => {
            let d = DateTime::parse_from_rfc3339(&s).map_err(|_| bad("not a time"))?.with_timezone(&Utc);
            s = match f.format.as_deref() {
                Some(fmt) => d.with_timezone(&f.zone()).format(fmt).to_string(),
                None => d.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            };
        }
        _ => {}
    }
    if let Some(p) = &f.prefix {
        if let Some(rest) = s.strip_prefix(p.as_str()) {
            s = rest.to_owned();
        }
    }
    let mut typed = true;
    if let Some(t) = &f.table {
        let table = m.tables.get(t).ok_or_else(|| bad("mapping lacks its table"))?;
        s = table
            .iter()
            .find(|(_, canonical)| **canonical == s)
            .map(|(vendor, _)| vendor.clone())
            .ok_or_else(|| bad(&format!("no code in table {t} for '{s}'")))?;
        typed = false;
    }
    Ok((s, typed))
}

/// The value at a dotted canonical path.
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').filter(|s| !s.is_empty()).try_fold(v, |v, seg| v.get(seg))
}
