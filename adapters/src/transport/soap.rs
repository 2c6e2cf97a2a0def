//! SOAP 1.1 over HTTP: what differs from plain HTTP.
//!
//! The payload's envelope is the mapping engine's business (`envelope = "soap11"`); this
//! module has what the hub says in SOAP itself: the response to a SOAP call, the fault for
//! a refused one (faultcode `Client` when the message is at fault, `Server` when the hub
//! is, with the hub's error code in the detail), the classification of a partner's fault
//! (a `Server` fault is transient, a `Client` fault permanent), and a WSDL generated from
//! the inbound SOAP mappings so the description never drifts from what the hub accepts.

use carehub_core::mapping::xml::{self, Element};
use carehub_core::mapping::{soap_envelope, Direction, EnvelopeKind, MappingSet, SOAP11};

/// The namespace of the hub's own SOAP elements (fault details).
pub const HUB_NS: &str = "urn:carehub:hub:1";

fn leaf(parent: &mut Element, name: &str, text: &str) {
    parent.push_child(name).text = text.to_owned();
}

/// What the hub answers to a SOAP call it took.
pub struct SoapReceipt<'a> {
    pub message_id: i64,
    pub status: &'a str,
    pub decision_id: Option<&'a str>,
    pub order_id: Option<&'a str>,
}

/// The response envelope for a call whose payload element was `root` in `namespace`:
/// `<{root}Response>` with the receipt's fields.
pub fn response(root: &str, namespace: Option<&str>, r: &SoapReceipt<'_>) -> String {
    let mut el = Element::new(format!("{root}Response"));
    el.namespace = namespace.map(Into::into);
    leaf(&mut el, "MessageId", &r.message_id.to_string());
    leaf(&mut el, "Status", r.status);
    if let Some(d) = r.decision_id {
        leaf(&mut el, "DecisionId", d);
    }
    if let Some(o) = r.order_id {
        leaf(&mut el, "OrderId", o);
    }
    xml::write(&soap_envelope(el), "UTF-8")
}

/// A SOAP fault carrying the hub's error code (and the log entry, when logged).
pub fn fault(client_fault: bool, code: &str, message: &str, message_id: Option<i64>) -> String {
    let mut f = Element::new("Fault");
    f.namespace = Some(SOAP11.into());
    // faultcode, faultstring and detail are unqualified in SOAP 1.1.
    let mut faultcode = Element::new("faultcode");
    faultcode.text = if client_fault { "soap:Client" } else { "soap:Server" }.to_owned();
    let mut faultstring = Element::new("faultstring");
    faultstring.text = message.to_owned();
    let mut detail = Element::new("detail");
    let mut error = Element::new("error");
    error.namespace = Some(HUB_NS.into());
    leaf(&mut error, "code", code);
    if let Some(id) = message_id {
        leaf(&mut error, "message_id", &id.to_string());
    }
    detail.children.push(error);
    f.children.extend([faultcode, faultstring, detail]);
    let mut envelope = soap_envelope(f);
    envelope.attrs.push(("xmlns:soap".into(), SOAP11.into()));
    xml::write(&envelope, "UTF-8")
}

/// A partner's SOAP fault: its code (local part, e.g. `Client`, `Server`) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: String,
    pub message: String,
}

impl Fault {
    /// A `Server` fault (or anything but `Client`) may pass; a `Client` fault will not.
    pub fn is_transient(&self) -> bool {
        !self.code.starts_with("Client")
    }
}

/// Reads a SOAP 1.1 fault from a response body, if it is one.
pub fn parse_fault(body: &[u8]) -> Option<Fault> {
    let text = std::str::from_utf8(body).ok()?;
    let doc = xml::parse(text).ok()?;
    if doc.name != "Envelope" || doc.namespace.as_deref() != Some(SOAP11) {
        return None;
    }
    let fault = doc.child("Body")?.child("Fault")?;
    let code = fault.child("faultcode").map(|c| c.text.trim().to_owned()).unwrap_or_default();
    let local = code.rsplit(':').next().unwrap_or("").to_owned();
    let message = fault.child("faultstring").map(|c| c.text.trim().to_owned()).unwrap_or_default();
    Some(Fault { code: local, message })
}

/// A WSDL 1.1 description of the SOAP operations a system offers the hub: one operation per
/// inbound SOAP mapping, named after its payload element.
pub fn wsdl(system: &str, location: &str, mappings: &MappingSet) -> String {
    let ops: Vec<(&str, &str)> = mappings
        .mappings
        .iter()
        .filter(|m| m.direction == Direction::In && m.envelope == Some(EnvelopeKind::Soap11))
        .filter_map(|m| Some((m.root.as_deref()?, m.namespace.as_deref().unwrap_or(""))))
        .collect();
    let tns = ops.first().map(|(_, ns)| *ns).unwrap_or(HUB_NS);
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:tns=\"{tns}\" targetNamespace=\"{tns}\" name=\"carehub-{system}\">\n"
    ));
    out.push_str(&format!("  <wsdl:documentation>carehub: the SOAP endpoint for the system {system}. Faults carry the hub's error code in detail/error/code ({HUB_NS}).</wsdl:documentation>\n"));
    out.push_str(&format!(
        "  <wsdl:types>\n    <xsd:schema targetNamespace=\"{tns}\" elementFormDefault=\"qualified\">\n"
    ));
    for (root, _) in &ops {
        out.push_str(&format!(
            "      <xsd:element name=\"{root}\"><xsd:complexType><xsd:sequence><xsd:any processContents=\"lax\" minOccurs=\"0\" maxOccurs=\"unbounded\"/></xsd:sequence></xsd:complexType></xsd:element>\n\
             \x20     <xsd:element name=\"{root}Response\"><xsd:complexType><xsd:sequence>\
             <xsd:element name=\"MessageId\" type=\"xsd:long\"/><xsd:element name=\"Status\" type=\"xsd:string\"/>\
             <xsd:element name=\"DecisionId\" type=\"xsd:string\" minOccurs=\"0\"/><xsd:element name=\"OrderId\" type=\"xsd:string\" minOccurs=\"0\"/>\
             </xsd:sequence></xsd:complexType></xsd:element>\n"
        ));
    }
    out.push_str("    </xsd:schema>\n  </wsdl:types>\n");
    for (root, _) in &ops {
        out.push_str(&format!(
            "  <wsdl:message name=\"{root}Request\"><wsdl:part name=\"body\" element=\"tns:{root}\"/></wsdl:message>\n\
             \x20 <wsdl:message name=\"{root}Response\"><wsdl:part name=\"body\" element=\"tns:{root}Response\"/></wsdl:message>\n"
        ));
    }
    out.push_str("  <wsdl:portType name=\"CarehubPortType\">\n");
    for (root, _) in &ops {
        out.push_str(&format!(
            "    <wsdl:operation name=\"{root}\"><wsdl:input message=\"tns:{root}Request\"/><wsdl:output message=\"tns:{root}Response\"/></wsdl:operation>\n"
        ));
    }
    out.push_str("  </wsdl:portType>\n  <wsdl:binding name=\"CarehubBinding\" type=\"tns:CarehubPortType\">\n");
    out.push_str("    <soap:binding style=\"document\" transport=\"http://schemas.xmlsoap.org/soap/http\"/>\n");
    for (root, ns) in &ops {
        out.push_str(&format!(
            "    <wsdl:operation name=\"{root}\"><soap:operation soapAction=\"{ns}/{root}\"/>\
             <wsdl:input><soap:body use=\"literal\"/></wsdl:input><wsdl:output><soap:body use=\"literal\"/></wsdl:output></wsdl:operation>\n"
        ));
    }
    out.push_str(&format!(
        "  </wsdl:binding>\n  <wsdl:service name=\"Carehub\"><wsdl:port name=\"CarehubPort\" binding=\"tns:CarehubBinding\">\
         <soap:address location=\"{location}\"/></wsdl:port></wsdl:service>\n</wsdl:definitions>\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_round_trip_and_classify() {
        let f = fault(true, "INVALID_PERSONAL_IDENTITY_NUMBER", "check digit", Some(7));
        let parsed = parse_fault(f.as_bytes()).expect("a fault");
        assert_eq!(parsed, Fault { code: "Client".into(), message: "check digit".into() });
        assert!(!parsed.is_transient());
        let server = fault(false, "UNAVAILABLE", "later", None);
        assert!(parse_fault(server.as_bytes()).expect("fault").is_transient());
        assert!(parse_fault(b"<ok/>").is_none());
        assert!(f.contains("<code>INVALID_PERSONAL_IDENTITY_NUMBER</code>"), "{f}");
    }
}
