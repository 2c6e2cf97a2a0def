//! A decision's life in SQLite (SPEC §4.4): its versions, the pauses VIS009 looks at, and
//! the deviations and changes of need providers report.

use carehub_model::Month;
use chrono::NaiveDate;
use rusqlite::{Connection, Row};

use super::rows::instant;
use crate::store::{DecisionVersion, ProviderReport, ProviderReportFilter, StoreError};

/// Whether `day` falls in one of an order's pauses, as `orders.paused` keeps them (a JSON
/// array of `[from, to]` pairs, NULL for none). Dates are ISO text, so they compare as text.
pub(super) fn paused_on(paused: Option<&str>, day: &str) -> bool {
    let Some(text) = paused else { return false };
    let Ok(pairs) = serde_json::from_str::<Vec<[String; 2]>>(text) else { return false };
    pairs.iter().any(|[from, to]| from.as_str() <= day && day <= to.as_str())
}

fn json(r: &Row<'_>, at: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = r.get(at)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, Box::new(e)))
}

fn date(r: &Row<'_>, at: usize) -> rusqlite::Result<NaiveDate> {
    let text: String = r.get(at)?;
    text.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, Box::new(e)))
}

pub(super) fn decision_versions(conn: &Connection, id: &str) -> Result<Vec<DecisionVersion>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT decision_id, version, effective_from, kind, canonical, system, received_at
         FROM decision_versions WHERE decision_id = ?1 ORDER BY version",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(DecisionVersion {
            decision_id: r.get(0)?,
            version: r.get(1)?,
            effective_from: date(r, 2)?,
            kind: r.get(3)?,
            canonical: json(r, 4)?,
            system: r.get(5)?,
            received_at: instant(r, 6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn provider_reports(conn: &Connection, f: &ProviderReportFilter) -> Result<Vec<ProviderReport>, StoreError> {
    let mut sql = "SELECT id, message_type, kind, severity, provider, client, order_id, day, system, canonical,
                          received_at
                   FROM provider_reports WHERE 1=1"
        .to_owned();
    let mut args: Vec<String> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, value: String| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(m) = f.month {
        arg(&mut sql, " AND month = ?", Month::to_string(&m));
    }
    if let Some(p) = &f.provider {
        arg(&mut sql, " AND provider = ?", p.clone());
    }
    if let Some(o) = &f.order_id {
        arg(&mut sql, " AND order_id = ?", o.clone());
    }
    if let Some(k) = &f.kind {
        // The same value matches the message type (`deviation`) or the kind (`fall`).
        arg(&mut sql, " AND (message_type = ?", k.clone());
        arg(&mut sql, " OR kind = ?)", k.clone());
    }
    sql.push_str(&format!(" ORDER BY day, id LIMIT {}", f.limit.clamp(1, 10_000)));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok(ProviderReport {
            id: r.get(0)?,
            message_type: r.get(1)?,
            kind: r.get(2)?,
            severity: r.get(3)?,
            provider: r.get(4)?,
            client: r.get(5)?,
            order_id: r.get(6)?,
            day: date(r, 7)?,
            system: r.get(8)?,
            canonical: json(r, 9)?,
            received_at: instant(r, 10)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::paused_on;

    #[test]
    fn a_pause_covers_both_of_its_edges() {
        let p = Some(r#"[["2026-11-05","2026-11-12"]]"#);
        assert!(!paused_on(p, "2026-11-04"));
        assert!(paused_on(p, "2026-11-05"));
        assert!(paused_on(p, "2026-11-12"));
        assert!(!paused_on(p, "2026-11-13"));
        assert!(!paused_on(None, "2026-11-05"));
    }
}
