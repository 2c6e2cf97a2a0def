//! Messages the mock's counterpart system injects into the hub, so that the hub itself
//! sends the vendor what a [`SendCommand`] asks for.
//!
//! The counterpart speaks its own vendor's format (Combine XML for decisions, Phoniro JSON
//! for acknowledgements and plans) and goes through the hub's real intake, flows and
//! outbox ([`carehub_core::hub::Hub::receive`]); what reaches the vendor is whatever the
//! hub renders from it with the vendor's mapping files. Defaults make a valid message; a
//! command's `fields` replace them:
//!
//! | message | fields (default) |
//! |---|---|
//! | `order` | `decision_id` (new), `client` (193601016987), `provider` (the first), `valid_from` (today), `valid_to`, `decided_at` (now), `services` (`[{"code":"SERV","minutes":480},{"code":"PO","minutes":1800}]`) |
//! | `order_change` | `decision_id` (the last sent), `version` (next), `effective_from` (today), `change` (`services`, `end_date` or `pause`); for services `services` (`[{"code":"SERV","minutes":600}]`), for an end date `valid_to` (a month on), for a pause `from` (`effective_from`), `to` (a week on) and `reason` (`SJUKHUS`) |
//! | `order_end` | `decision_id` (the last sent), `version` (next), `on` (today), `reason` (`SABO`) |
//! | `order_ack` | `order_id` (the vendor's latest order), `status` (`ACCEPTED`), `reason`, `at` (now) |
//! | `plan_notice` | `order_id` (the vendor's latest order), `established_on` (today) |
//! | `visit` | `visit_id` (new), `order_id` (the vendor's latest order), `staff` (`st-mock`), `check_in` (an hour ago), `check_out` (15 minutes ago), `status` (`PERFORMED`) |
//! | `deviation` | `deviation_id` (new), `order_id` (the latest), `occurred_on` (today), `category` (`FALL`), `severity` (`HIGH`), `description` |
//! | `need_change` | `need_change_id` (new), `order_id` (the latest), `noticed_on` (today), `direction` (`INCREASED`), `description` |
//! | `verification` | `invoice_id` (new), `order_id` (the latest), `minutes` (60), `amount_ore` (39000), `period_start` (the month's first day) |
//!
//! A visit, a deviation, a change of need and an invoice are the provider's, about the
//! order's client and provider, as the hub has them: the hub then reports them to the
//! vendor (the visit report, the deviation, the change of need, the invoice's
//! verification report) from its own flows.

use serde_json::{Map, Value};

use crate::exchange::SendCommand;
use crate::mock::MockError;

/// The values a message is made from: the command's fields over the defaults.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    /// A text field, or `default`.
    pub fn text(&self, name: &str, default: &str) -> String {
        match self.0.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => default.to_owned(),
        }
    }

    pub fn opt(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(Value::as_str).map(str::to_owned)
    }

    /// `services`: a list of `{code, minutes}`, or `default`.
    pub fn services(&self, default: &[(&str, u64)]) -> Result<Vec<(String, u64)>, MockError> {
        match self.0.get("services") {
            None => Ok(default.iter().map(|(c, m)| ((*c).to_owned(), *m)).collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    let code = i.get("code").and_then(Value::as_str);
                    let minutes = i.get("minutes").and_then(Value::as_u64);
                    match (code, minutes) {
                        (Some(c), Some(m)) => Ok((c.to_owned(), m)),
                        _ => Err(MockError::Send("services: each is {\"code\": TEXT, \"minutes\": NUMBER}".into())),
                    }
                })
                .collect(),
            Some(_) => Err(MockError::Send("services: a list of {\"code\", \"minutes\"}".into())),
        }
    }
}

/// Text for an XML element or attribute.
pub fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn insatser(services: &[(String, u64)]) -> String {
    services
        .iter()
        .map(|(code, minutes)| {
            format!("<Insats kod=\"{}\"><MinuterPerManad>{minutes}</MinuterPerManad></Insats>", xml(code))
        })
        .collect()
}

/// A new decision as Combine sends it.
pub struct NewDecision {
    pub id: String,
    pub client: String,
    pub provider: String,
    pub valid_from: String,
    pub valid_to: Option<String>,
    pub decided_at: String,
    pub services: Vec<(String, u64)>,
}

impl NewDecision {
    pub fn xml(&self) -> String {
        let to = self.valid_to.as_deref().map(|t| format!("<GiltigTom>{}</GiltigTom>", xml(t))).unwrap_or_default();
        format!(
            "<Beslut xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>{}</BeslutsId><Personnummer>{}</Personnummer>\
             <Handlaggare>hl-mock</Handlaggare><Utforare orgnr=\"{}\"/><GiltigFrom>{}</GiltigFrom>{to}\
             <Beslutstidpunkt>{}</Beslutstidpunkt>{}</Beslut>",
            xml(&self.id),
            xml(&self.client),
            xml(&self.provider),
            xml(&self.valid_from),
            xml(&self.decided_at),
            insatser(&self.services)
        )
    }
}

/// A decision's change as Combine sends it: new services, or the end of help.
pub fn decision_change(id: &str, version: u32, from: &str, decided_at: &str, change: &Change) -> String {
    let body = match change {
        Change::Services(services) => format!("<Andring typ=\"Insatser\">{}</Andring>", insatser(services)),
        Change::EndDate(to) => format!("<Andring typ=\"Slutdatum\"><GiltigTom>{}</GiltigTom></Andring>", xml(to)),
        Change::Pause { from, to, reason } => format!(
            "<Andring typ=\"Uppehall\"><UppehallFrom>{}</UppehallFrom><UppehallTom>{}</UppehallTom>\
             <Uppehallsorsak kod=\"{}\"/></Andring>",
            xml(from),
            xml(to),
            xml(reason)
        ),
        Change::End { on, reason } => format!(
            "<Andring typ=\"Avslut\"><SistaDag>{}</SistaDag><Avslutsorsak kod=\"{}\"/></Andring>",
            xml(on),
            xml(reason)
        ),
    };
    format!(
        "<Beslutsandring xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>{}</BeslutsId><Version>{version}</Version>\
         <GallerFrom>{}</GallerFrom><Beslutstidpunkt>{}</Beslutstidpunkt>{body}</Beslutsandring>",
        xml(id),
        xml(from),
        xml(decided_at)
    )
}

/// What a decision's change changes.
pub enum Change {
    Services(Vec<(String, u64)>),
    /// A new last day.
    EndDate(String),
    /// A pause, both days inclusive.
    Pause {
        from: String,
        to: String,
        reason: String,
    },
    End {
        on: String,
        reason: String,
    },
}

/// A provider's acknowledgement as Phoniro sends it.
pub fn order_ack(order: &str, status: &str, reason: Option<&str>, at: &str) -> String {
    let mut v = serde_json::json!({"type": "orderConfirmation", "orderId": order, "status": status, "confirmedAt": at});
    if let Some(r) = reason {
        v["reason"] = Value::String(r.to_owned());
    }
    v.to_string()
}

/// A provider's plan notice as Phoniro sends it.
pub fn plan_notice(order: &str, on: &str) -> String {
    serde_json::json!({"type": "carePlanEstablished", "orderId": order, "establishedDate": on}).to_string()
}

/// The order a provider's report is about: its id, client and provider.
pub struct About {
    pub order: String,
    pub client: String,
    pub provider: String,
}

impl About {
    fn head(&self, kind: &str, id_field: &str, id: &str) -> Value {
        serde_json::json!({
            "type": kind, id_field: id, "orderId": self.order,
            "provider": {"organisationNumber": self.provider},
            "client": {"personalIdentityNumber": self.client},
        })
    }
}

/// A provider's visit as Phoniro sends it, checked in and out by NFC.
pub fn visit(about: &About, id: &str, staff: &str, check_in: &str, check_out: &str, status: &str) -> String {
    let mut v = about.head("visit", "visitId", id);
    v["staffId"] = Value::String(staff.to_owned());
    v["checkIn"] = serde_json::json!({"time": check_in, "method": "NFC", "tagUid": "04A21BC3"});
    v["checkOut"] = serde_json::json!({"time": check_out, "method": "NFC", "tagUid": "04A21BC3"});
    v["activities"] = serde_json::json!(["CARE"]);
    v["status"] = Value::String(status.to_owned());
    v["doubleStaffing"] = Value::Bool(false);
    v.to_string()
}

/// A provider's deviation report as Phoniro sends it.
pub fn deviation(about: &About, id: &str, on: &str, category: &str, severity: &str, text: &str, at: &str) -> String {
    let mut v = about.head("deviation", "deviationId", id);
    v["occurredDate"] = Value::String(on.to_owned());
    v["category"] = Value::String(category.to_owned());
    v["severity"] = Value::String(severity.to_owned());
    v["description"] = Value::String(text.to_owned());
    v["reportedAt"] = Value::String(at.to_owned());
    v.to_string()
}

/// A provider's change of need as Phoniro sends it.
pub fn need_change(about: &About, id: &str, on: &str, direction: &str, text: &str, at: &str) -> String {
    let mut v = about.head("needChange", "needChangeId", id);
    v["noticedDate"] = Value::String(on.to_owned());
    v["direction"] = Value::String(direction.to_owned());
    v["description"] = Value::String(text.to_owned());
    v["reportedAt"] = Value::String(at.to_owned());
    v.to_string()
}

/// A provider's invoice basis as Phoniro exports it (CSV): one line for the order.
pub fn invoice_basis(about: &About, id: &str, period_start: &str, minutes: u64, amount_ore: u64) -> String {
    format!(
        "InvoiceNumber,Type,CreditedInvoice,OrganisationNumber,PeriodStart,Row,OrderId,Minutes,AmountOre,Comment\n\
         {id},INVOICE,,{},{period_start},1,{},{minutes},{amount_ore},\n",
        about.provider, about.order
    )
}

/// Refuses a command for a message this mock cannot send, naming those it can.
pub fn unsupported(command: &SendCommand, supported: &[&str]) -> MockError {
    MockError::Unsupported { message: command.message.clone(), supported: supported.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_escapes_what_it_is_given() {
        let d = NewDecision {
            id: "A<B".into(),
            client: "193601016987".into(),
            provider: "5599000014".into(),
            valid_from: "2026-11-01".into(),
            valid_to: None,
            decided_at: "2026-11-01T09:00:00Z".into(),
            services: vec![("SERV".into(), 480)],
        };
        let x = d.xml();
        assert!(x.contains("<BeslutsId>A&lt;B</BeslutsId>"), "{x}");
        assert!(x.contains("<Insats kod=\"SERV\"><MinuterPerManad>480</MinuterPerManad></Insats>"), "{x}");
    }

    #[test]
    fn a_change_of_end_date_or_a_pause_is_written_as_combine_writes_it() {
        let end =
            decision_change("D-1", 2, "2026-11-10", "2026-11-08T09:00:00Z", &Change::EndDate("2027-04-30".into()));
        assert!(end.contains("<Andring typ=\"Slutdatum\"><GiltigTom>2027-04-30</GiltigTom></Andring>"), "{end}");
        let pause = Change::Pause { from: "2026-11-05".into(), to: "2026-11-12".into(), reason: "SJUKHUS".into() };
        let x = decision_change("D-1", 3, "2026-11-05", "2026-11-04T09:00:00Z", &pause);
        assert!(x.contains("<UppehallFrom>2026-11-05</UppehallFrom><UppehallTom>2026-11-12</UppehallTom>"), "{x}");
        assert!(x.contains("<Uppehallsorsak kod=\"SJUKHUS\"/>") && x.contains("<Version>3</Version>"), "{x}");
    }
}
