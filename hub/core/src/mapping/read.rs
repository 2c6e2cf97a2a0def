//! Inbound: recognising which mapping a payload is and handing it to its reader.
//!
//! XML is read by `stream` (without a tree), CSV by `csv` one row at a time, and JSON
//! here, from its `serde_json` tree. What the readers share (the field rules, the
//! conversions, what they produce) is in `decode`, so the imports go one way: `read` uses
//! `stream`, `csv` and `decode`; `stream` and `csv` use `decode`; `decode` uses no reader.

use carehub_model::{ErrorCode, Message, ValidationError};
use serde_json::Value;

use super::canonical::Canon;
use super::decode::{decode_fields, json_text, Decoded, Node, Translated};
use super::{stream, text, Direction, Format, Mapping, MappingSet};

/// What a reader made of a payload: the canonical tree, or (from a JSON document or a CSV
/// row, whose tree cannot outlive the reader) its JSON text.
enum Read<'a> {
    Tree(&'a Mapping, Canon<'a>),
    Row(Decoded),
}

impl MappingSet {
    /// Decodes an inbound payload's bytes to text within the profile's encodings (see
    /// [`text::detect_accepted`]).
    pub fn text_of<'a>(&self, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, str>, ValidationError> {
        text::detect_accepted(bytes, self.inbound, &self.accepted)?.decode()
    }

    /// Translates an inbound payload's bytes: decodes the text (see
    /// [`MappingSet::text_of`]), then [`MappingSet::decode`].
    pub fn decode_bytes(&self, bytes: &[u8]) -> Result<Decoded, ValidationError> {
        let text = self.text_of(bytes)?;
        self.decode(&text)
    }

    /// Translates an inbound payload (text) to canonical JSON: recognises which message it
    /// is, then applies that mapping's fields.
    pub fn decode(&self, text: &str) -> Result<Decoded, ValidationError> {
        Ok(match self.read(text)? {
            Read::Tree(m, canonical) => {
                Decoded { mapping: m.name.clone(), message_type: m.message, canonical: canonical.to_json() }
            }
            Read::Row(d) => d,
        })
    }

    /// Translates an inbound payload's bytes to its typed canonical message, validated by
    /// the model: what [`MappingSet::decode_bytes`] and [`Decoded::message`] do, in one
    /// pass, the model reading the engine's tree with no JSON text in between. This is the
    /// path every message a system sends takes. A refusal carries the canonical JSON when
    /// the payload translated but the model refused it.
    pub fn translate_bytes(&self, bytes: &[u8]) -> Result<Translated, (Option<Decoded>, ValidationError)> {
        match (text::detect_accepted(bytes, self.inbound, &self.accepted).map_err(|e| (None, e))?, &self.single_byte) {
            // XML in the vendor's single-byte encoding is read as it is (see `stream`).
            (text::Detected::Encoded(enc, body), Some(table))
                if enc == table.encoding && text::starts_like_xml(body) =>
            {
                let (m, canonical) = stream::read(self, stream::Doc::SingleByte(body, table)).map_err(|e| (None, e))?;
                self.typed(m, canonical)
            }
            (detected, _) => {
                let text = detected.decode().map_err(|e| (None, e))?;
                self.translate(&text)
            }
        }
    }

    /// [`MappingSet::translate_bytes`] on text.
    pub fn translate(&self, text: &str) -> Result<Translated, (Option<Decoded>, ValidationError)> {
        match self.read(text).map_err(|e| (None, e))? {
            Read::Tree(m, canonical) => self.typed(m, canonical),
            Read::Row(d) => match d.message() {
                Ok(message) => Ok(Translated { mapping: d.mapping, message }),
                Err(e) => Err((Some(d), e)),
            },
        }
    }

    /// The model's typed message from a canonical tree.
    fn typed(&self, m: &Mapping, canonical: Canon<'_>) -> Result<Translated, (Option<Decoded>, ValidationError)> {
        match Message::from_deserializer(m.message, &canonical) {
            Ok(message) => Ok(Translated { mapping: m.name.clone(), message }),
            Err(e) => Err((
                Some(Decoded { mapping: m.name.clone(), message_type: m.message, canonical: canonical.to_json() }),
                e,
            )),
        }
    }

    /// Recognises which message a payload is and applies that mapping's fields.
    fn read<'a>(&'a self, text: &'a str) -> Result<Read<'a>, ValidationError> {
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.starts_with('<') {
            stream::read(self, stream::Doc::Text(text)).map(|(m, canonical)| Read::Tree(m, canonical))
        } else if trimmed.starts_with('{') || trimmed.starts_with('[') {
            let value: Value = serde_json::from_str(trimmed)
                .map_err(|e| ValidationError::new(ErrorCode::MalformedPayload, format!("not well-formed JSON: {e}")))?;
            let candidates: Vec<&Mapping> =
                self.mappings.iter().filter(|m| m.direction == Direction::In && m.format == Format::Json).collect();
            let mapping = candidates
                .iter()
                .find(|m| match &m.matcher {
                    Some(mt) => json_text(&value, &mt.path).as_deref() == Some(mt.value.as_str()),
                    None => candidates.len() == 1,
                })
                .ok_or_else(|| {
                    ValidationError::new(
                        ErrorCode::UnknownMessageType,
                        format!("no {} mapping recognises this JSON message", self.vendor),
                    )
                })?;
            // The tree borrows from the payload's JSON, which ends here.
            let canonical = decode_fields(Node::Json(&value), &mapping.fields)?.to_json();
            Ok(Read::Row(Decoded { mapping: mapping.name.clone(), message_type: mapping.message, canonical }))
        } else if self.mappings.iter().any(|m| m.direction == Direction::In && m.format == Format::Csv) {
            // One payload is one message: a file of several rows is a batch, and answering
            // for its first row alone would silently drop the others.
            let mut rows = self.decode_rows(text)?;
            if rows.len() > 1 {
                return Err(ValidationError::new(
                    ErrorCode::MalformedPayload,
                    format!("a CSV file with {} rows: one message is one row; read it as a batch", rows.len()),
                ));
            }
            match rows.pop() {
                Some(row) => row.result.map(Read::Row),
                None => Err(ValidationError::new(ErrorCode::MalformedPayload, "a CSV file with a header and no rows")),
            }
        } else {
            Err(ValidationError::new(ErrorCode::MalformedPayload, "the payload is neither XML nor JSON"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use carehub_model::MessageType;
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

    use super::super::decode::{at_or_after, in_zone};
    use super::*;

    /// Local times to instants as chrono-tz gives them, without the table of days.
    fn in_zone_direct(naive: NaiveDateTime, zone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        use chrono::TimeZone;
        zone.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc))
    }

    /// [`at_or_after`] as it read before the table of days.
    fn at_or_after_direct(naive: NaiveDateTime, zone: chrono_tz::Tz, floor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::TimeZone;
        let that_day = zone.from_local_datetime(&naive);
        let (first, last) = (that_day.earliest(), that_day.latest());
        if let Some(t) = [first, last].into_iter().flatten().map(|t| t.with_timezone(&Utc)).find(|t| *t >= floor) {
            return Some(t);
        }
        if first.is_some() || naive < floor.with_timezone(&zone).naive_local() {
            in_zone_direct(naive.checked_add_days(chrono::Days::new(1))?, zone)
        } else {
            None
        }
    }

    #[test]
    fn local_times_read_through_the_table_of_days_as_chrono_tz_reads_them() {
        // Every 20 minutes of three years, in zones with clock changes forward and back,
        // by half an hour (Lord Howe), none (Kolkata), and a day skipped (Apia, 2011);
        // on a thread of its own, so the table starts empty and fills and is overwritten.
        std::thread::spawn(|| {
            let zones: [chrono_tz::Tz; 5] = [
                carehub_model::MUNICIPAL_TZ,
                chrono_tz::America::New_York,
                chrono_tz::Australia::Lord_Howe,
                chrono_tz::Asia::Kolkata,
                chrono_tz::Pacific::Apia,
            ];
            let mut checked: i64 = 0;
            for zone in zones {
                let start = if zone == chrono_tz::Pacific::Apia { (2011, 12, 1) } else { (2025, 1, 1) };
                let mut at = NaiveDate::from_ymd_opt(start.0, start.1, start.2)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .expect("a time");
                let end = at + chrono::Duration::days(3 * 366);
                while at < end {
                    assert_eq!(in_zone(at, zone), in_zone_direct(at, zone), "{at} in {zone}");
                    // Floors from three hours before the time read as UTC to one after:
                    // before and after the instant, so both the same and the next day.
                    let floor = at.and_utc() + chrono::Duration::hours(checked % 5 - 3);
                    assert_eq!(
                        at_or_after(at, zone, Some(floor)),
                        at_or_after_direct(at, zone, floor),
                        "{at} in {zone}"
                    );
                    at += chrono::Duration::minutes(20);
                    checked += 1;
                }
            }
            assert!(checked > 5 * 3 * 365 * 72, "{checked}");
        })
        .join()
        .expect("the checks pass");
    }

    const DECISION: &str = r#"
message = "decision"
direction = "in"
format = "xml"
root = "Beslut"
namespace = "urn:x"

[[fields]]
vendor = "Id"
canonical = "id"
prefix = "sys:"

[[fields]]
vendor = "Items/Item"
canonical = "items"
  [[fields.fields]]
  vendor = "@code"
  canonical = "category"
  table = "cat"
  [[fields.fields]]
  vendor = "Minutes"
  canonical = "minutes"
  type = "integer"

[[fields]]
vendor = "From"
canonical = "from"
type = "date"
format = "%Y%m%d"

[tables.cat]
A = "alpha"
"#;

    fn set(text: &str) -> MappingSet {
        MappingSet::from_sources("t", [("decision.toml", text)]).expect("loads")
    }

    #[test]
    fn xml_decodes_through_paths_tables_and_types() {
        let d = set(DECISION)
            .decode(r#"<p:Beslut xmlns:p="urn:x"><p:Id>7</p:Id><p:Items><p:Item code="A"><p:Minutes> 30 </p:Minutes></p:Item></p:Items><p:From>20261101</p:From></p:Beslut>"#)
            .expect("decodes");
        assert_eq!(
            d.value(),
            serde_json::json!({"id": "sys:7", "items": [{"category": "alpha", "minutes": 30}], "from": "2026-11-01"})
        );
    }

    #[test]
    fn decode_errors_are_coded() {
        let s = set(DECISION);
        let e = s.decode(r#"<Beslut xmlns="urn:x"><Items><Item code="A"><Minutes>1</Minutes></Item></Items><From>20261101</From></Beslut>"#);
        assert_eq!(e.expect_err("missing id").code, ErrorCode::MissingField);
        let e = s.decode(r#"<Beslut xmlns="urn:x"><Id>1</Id><Items><Item code="Z"><Minutes>1</Minutes></Item></Items><From>20261101</From></Beslut>"#);
        assert_eq!(e.expect_err("unknown code").code, ErrorCode::InvalidValue);
        let e = s.decode(r#"<Beslut xmlns="urn:x"><Id>1</Id><Items><Item code="A"><Minutes>x</Minutes></Item></Items><From>20261101</From></Beslut>"#);
        assert_eq!(e.expect_err("not a number").code, ErrorCode::InvalidValue);
        let e = s.decode(r#"<Beslut xmlns="urn:x"><Id>1</Id><Items><Item code="A"><Minutes>1</Minutes></Item></Items><From>2026-11-01</From></Beslut>"#);
        assert_eq!(e.expect_err("bad date").code, ErrorCode::InvalidDate);
        let e = s.decode(r#"<Beslut xmlns="urn:other"><Id>1</Id></Beslut>"#);
        assert_eq!(e.expect_err("other namespace").code, ErrorCode::UnknownMessageType);
        assert_eq!(s.decode("hello").expect_err("text").code, ErrorCode::MalformedPayload);
        assert_eq!(s.decode("{\"a\":").expect_err("json").code, ErrorCode::MalformedPayload);
    }

    /// A visit-like inbound JSON mapping using the keys for values spread over several
    /// places: `join`, `after`, `split`/`part`, `list`, `when` and an item's own value.
    const VISIT_JSON: &str = r#"
message = "visit"
direction = "in"
format = "json"

[[fields]]
join = ["day", "in"]
canonical = "check_in.at"
type = "datetime"
format = "%Y-%m-%d %H:%M"

[[fields]]
join = ["day", "out"]
canonical = "check_out.at"
type = "datetime"
format = "%Y-%m-%d %H:%M"
after = "check_in.at"
optional = true

[[fields]]
vendor = "reg"
canonical = "check_in.method"
split = ":"
part = 0
table = "method"

[[fields]]
vendor = "reg"
canonical = "check_in.reason"
split = ":"
part = 1
optional = true
when = { canonical = "check_in.method", equals = "manual" }

[[fields]]
vendor = "tag"
canonical = "check_in.tag_uid"
when = { canonical = "check_in.method", equals = "nfc" }

[[fields]]
vendor = "reg"
canonical = "check_out.method"
split = ":"
part = 0
table = "method"
when = { canonical = "check_out.at" }

[[fields]]
vendor = "codes"
canonical = "services"
list = ","
table = "cat"
optional = true

[[fields]]
vendor = "activities"
canonical = "activities"
optional = true
  [[fields.fields]]
  vendor = "."
  canonical = "."
  table = "cat"

[tables.method]
NFC = "nfc"
Manuell = "manual"

[tables.cat]
A = "alpha"
B = "beta"
"#;

    fn visit(payload: Value) -> Result<Value, ValidationError> {
        let s = MappingSet::from_sources("t", [("visit.toml", VISIT_JSON)]).expect("loads");
        s.decode(&payload.to_string()).map(|d| d.value())
    }

    #[test]
    fn join_reads_several_places_as_one_value() {
        let v = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "NFC", "tag": "04A21BC3"}))
            .expect("decodes");
        assert_eq!(v["check_in"]["at"], "2026-11-03T07:02:00Z");
        assert!(v.get("check_out").is_none(), "no out: the optional joined value is absent, and so its method");
        let e =
            visit(serde_json::json!({"day": "2026-11-03", "in": " ", "reg": "NFC", "tag": "x"})).expect_err("no in");
        assert_eq!((e.code, e.reason.as_str()), (ErrorCode::MissingField, "day + in is required"));
    }

    #[test]
    fn after_moves_a_time_before_its_floor_to_the_next_day() {
        let at = |day: &str, i: &str, o: &str| {
            visit(serde_json::json!({"day": day, "in": i, "out": o, "reg": "Manuell"}))
                .map(|v| (v["check_in"]["at"].clone(), v["check_out"]["at"].clone()))
        };
        assert_eq!(
            at("2026-11-03", "08:02", "08:47").expect("same day"),
            ("2026-11-03T07:02:00Z".into(), "2026-11-03T07:47:00Z".into())
        );
        assert_eq!(
            at("2026-11-03", "23:30", "00:30").expect("midnight"),
            ("2026-11-03T22:30:00Z".into(), "2026-11-03T23:30:00Z".into())
        );
        assert_eq!(
            at("2026-11-03", "08:02", "08:02").expect("equal"),
            ("2026-11-03T07:02:00Z".into(), "2026-11-03T07:02:00Z".into())
        );
        // The hour October repeats: 02:10 after 02:50 is 02:10's second occurrence, 20
        // minutes later, not the next day.
        assert_eq!(
            at("2026-10-25", "02:50", "02:10").expect("repeated hour"),
            ("2026-10-25T00:50:00Z".into(), "2026-10-25T01:10:00Z".into())
        );
        // Across the March change: 23:00 to 03:30 the next morning, which lost an hour.
        assert_eq!(
            at("2026-03-28", "23:00", "03:30").expect("spring night"),
            ("2026-03-28T22:00:00Z".into(), "2026-03-29T01:30:00Z".into())
        );
        // 02:30 the next day does not exist that night; nor on the day itself.
        assert_eq!(at("2026-03-28", "23:00", "02:30").expect_err("skipped").code, ErrorCode::InvalidDate);
        assert_eq!(at("2026-03-29", "01:00", "02:30").expect_err("skipped").code, ErrorCode::InvalidDate);
        // The clock skipped 02:30 on the day, and it is before check-in by the clock: the next day's.
        assert_eq!(at("2026-03-29", "23:00", "02:30").expect("next day").1, "2026-03-30T00:30:00Z");
    }

    #[test]
    fn split_takes_a_side_and_when_keeps_fields_off() {
        let v = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "out": "08:40",
            "reg": "Manuell: Taggen saknades: ny beställd ", "tag": "04A21BC3"}))
        .expect("decodes");
        assert_eq!(
            v["check_in"],
            serde_json::json!({"at": "2026-11-03T07:02:00Z", "method": "manual", "reason": "Taggen saknades: ny beställd"}),
            "the reason keeps its colons; the manual registration's tag is not read"
        );
        assert_eq!(v["check_out"]["method"], "manual", "a check-out: its method is read");
        let v = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "Manuell:"})).expect("no reason");
        assert_eq!(v["check_in"], serde_json::json!({"at": "2026-11-03T07:02:00Z", "method": "manual"}));
        let v = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "NFC:x", "tag": "04A21BC3"}))
            .expect("nfc");
        assert_eq!(
            v["check_in"],
            serde_json::json!({"at": "2026-11-03T07:02:00Z", "method": "nfc", "tag_uid": "04A21BC3"})
        );
        let e = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "NFC"})).expect_err("no tag");
        assert_eq!(e.code, ErrorCode::MissingField);
        let e = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": ":x"})).expect_err("no method");
        assert_eq!(e.code, ErrorCode::MissingField);
    }

    #[test]
    fn list_splits_a_value_and_an_item_can_be_a_plain_value() {
        let base = serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "Manuell:x"});
        let with = |k: &str, v: Value| {
            let mut p = base.clone();
            p[k] = v;
            visit(p)
        };
        let v = with("codes", serde_json::json!(" A, ,B ,")).expect("a list");
        assert_eq!(v["services"], serde_json::json!(["alpha", "beta"]));
        assert!(with("codes", serde_json::json!(" , ")).expect("empty").get("services").is_none());
        assert_eq!(with("codes", serde_json::json!("A,Z")).expect_err("Z").code, ErrorCode::InvalidValue);
        let v = with("activities", serde_json::json!(["B", "A"])).expect("an array of codes");
        assert_eq!(v["activities"], serde_json::json!(["beta", "alpha"]));
        assert_eq!(with("activities", serde_json::json!(["Z"])).expect_err("Z").code, ErrorCode::InvalidValue);
    }

    /// A refusal by the model carries the canonical JSON the tree was, the same JSON a
    /// plain decode gives, from bytes in the vendor's encoding and from text.
    #[test]
    fn a_refused_translation_still_carries_its_canonical_json() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../mappings/procapita"));
        let s = MappingSet::load_dir("procapita", dir).unwrap_or_else(|e| panic!("{e:?}"));
        let file = |client: &str| {
            format!(
                "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<Biståndsbeslut xmlns=\"urn:carehub:vendor:procapita:1\">\
                 <Beslutsnummer>PC-9</Beslutsnummer><Brukare><Personnummer>{client}</Personnummer></Brukare>\
                 <Handläggare signatur=\"ÅÖB\"/><Utförare><Organisationsnummer>5599000014</Organisationsnummer></Utförare>\
                 <Giltighet från=\"20261101\"/><Insatser><Insats typ=\"Personlig omvårdnad\" minuterPerMånad=\"60\"/>\
                 </Insatser></Biståndsbeslut>"
            )
        };
        let latin = text::encoding("iso-8859-1").expect("latin-1");
        // A checksum that does not hold: the engine reads it, the model refuses it.
        let (good, bad) = (file("193601016987"), file("193601016988"));
        let t = s.translate_bytes(&text::encode(&good, latin).expect("encodes")).expect("translates");
        let Message::Decision(d) = t.message else { panic!("a decision") };
        assert_eq!((d.id.as_str(), d.case_officer.as_str()), ("procapita:PC-9", "ÅÖB"));
        assert_eq!(d.services[0].code, "Personlig omvårdnad");

        let bytes = text::encode(&bad, latin).expect("encodes");
        let expected = s.decode_bytes(&bytes).expect("decodes").canonical;
        assert!(expected.contains("\"case_officer\":\"ÅÖB\""), "{expected}");
        for (how, refused) in [("bytes", s.translate_bytes(&bytes)), ("text", s.translate(&bad))] {
            let (decoded, e) = refused.expect_err(how);
            assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber, "{how}");
            let decoded = decoded.unwrap_or_else(|| panic!("{how}: no canonical JSON"));
            assert_eq!((decoded.canonical.as_str(), decoded.message_type), (expected.as_str(), MessageType::Decision));
        }
    }
}
