//! SOAP 1.1 over HTTP: what differs from plain HTTP.
//!
//! The payload's envelope is the mapping engine's business (`envelope = "soap11"`); this
//! module has what the hub says in SOAP itself: the response to a SOAP call, the fault for
//! a refused one (faultcode `Client` when the message is at fault, `Server` when the hub
//! is, with the hub's error code in the detail), the classification of a partner's fault
//! (a `Server` fault is transient, a `Client` fault permanent; read whether the envelope
//! is prefixed or, as some stacks write it, the default namespace), and a WSDL generated
//! from the inbound SOAP mappings, request schemas and all, so the description never
//! drifts from what the hub accepts.

use carehub_core::mapping::xml::{self, Element};
use carehub_core::mapping::{soap_envelope, Direction, EnvelopeKind, Mapping, MappingSet, SOAP11};
use carehub_model::ErrorCode;

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
    /// Why a message taken changed nothing (`STALE_VERSION`).
    pub code: Option<&'a str>,
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
    if let Some(c) = r.code {
        leaf(&mut el, "Code", c);
    }
    xml::write(&soap_envelope(el), "UTF-8")
}

/// The prefix of the hub's own namespace in faults and the WSDL.
pub const HUB_PREFIX: &str = "hub";

/// A SOAP fault carrying the hub's error code (and the log entry, when logged), written the
/// way SOAP stacks read one: the envelope under the prefix `soap` with no default
/// namespace, so the unqualified `faultcode`, `faultstring` and `detail` stay unqualified;
/// `faultcode` a `soap:Client` or `soap:Server` QName; and in `detail` one
/// `hub:error` element (`code`, `message`, `message_id`) in [`HUB_NS`], as the WSDL
/// declares it.
pub fn fault(client_fault: bool, code: &str, message: &str, message_id: Option<i64>) -> String {
    // The writer declares a default namespace only where an element's namespace differs
    // from its parent's; every element here has none, and prefixes its name itself.
    let mut envelope = Element::new("soap:Envelope");
    envelope.attrs.push(("xmlns:soap".into(), SOAP11.into()));
    let f = envelope.push_child("soap:Body").push_child("soap:Fault");
    leaf(f, "faultcode", if client_fault { "soap:Client" } else { "soap:Server" });
    leaf(f, "faultstring", message);
    let error = f.push_child("detail").push_child(&format!("{HUB_PREFIX}:error"));
    error.attrs.push((format!("xmlns:{HUB_PREFIX}"), HUB_NS.into()));
    leaf(error, &format!("{HUB_PREFIX}:code"), code);
    leaf(error, &format!("{HUB_PREFIX}:message"), message);
    if let Some(id) = message_id {
        leaf(error, &format!("{HUB_PREFIX}:message_id"), &id.to_string());
    }
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

/// The schema of the hub's fault detail, `hub:error`: the code (one of [`ErrorCode`]), the
/// message, and the log entry when the refusal was logged.
fn fault_schema() -> String {
    let mut codes = String::new();
    for c in ErrorCode::ALL {
        codes.push_str(&format!("<xsd:enumeration value=\"{}\"/>", c.as_str()));
    }
    format!(
        "    <xsd:schema targetNamespace=\"{HUB_NS}\" elementFormDefault=\"qualified\">\n\
         \x20     <xsd:element name=\"error\"><xsd:complexType><xsd:sequence>\
         <xsd:element name=\"code\"><xsd:simpleType><xsd:restriction base=\"xsd:string\">{codes}</xsd:restriction></xsd:simpleType></xsd:element>\
         <xsd:element name=\"message\" type=\"xsd:string\"/>\
         <xsd:element name=\"message_id\" type=\"xsd:long\" minOccurs=\"0\"/>\
         </xsd:sequence></xsd:complexType></xsd:element>\n    </xsd:schema>\n"
    )
}

/// A WSDL 1.1 description of the SOAP operations a system offers the hub: one operation per
/// inbound SOAP mapping, named after its payload element, whose request schema is generated
/// from the mapping's fields ([`Mapping::xml_schema_element`]) and whose refusals are
/// declared as the fault `hub:error` of [`fault`].
pub fn wsdl(system: &str, location: &str, mappings: &MappingSet) -> String {
    let ops: Vec<(&Mapping, &str, &str)> = mappings
        .mappings
        .iter()
        .filter(|m| m.direction == Direction::In && m.envelope == Some(EnvelopeKind::Soap11))
        .filter_map(|m| Some((m, m.root.as_deref()?, m.namespace.as_deref().unwrap_or(""))))
        .collect();
    let tns = ops.first().map(|(_, _, ns)| *ns).unwrap_or(HUB_NS);
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<wsdl:definitions xmlns:wsdl=\"http://schemas.xmlsoap.org/wsdl/\" xmlns:soap=\"http://schemas.xmlsoap.org/wsdl/soap/\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:tns=\"{tns}\" xmlns:{HUB_PREFIX}=\"{HUB_NS}\" targetNamespace=\"{tns}\" name=\"carehub-{system}\">\n"
    ));
    out.push_str(&format!("  <wsdl:documentation>carehub: the SOAP endpoint for the system {system}. A refusal is a SOAP fault, faultcode soap:Client (the message) or soap:Server (the hub; send again), with the hub's error code in detail/{HUB_PREFIX}:error/{HUB_PREFIX}:code ({HUB_NS}).</wsdl:documentation>\n"));
    out.push_str("  <wsdl:types>\n");
    if tns != HUB_NS {
        out.push_str(&format!("    <xsd:schema targetNamespace=\"{tns}\" elementFormDefault=\"qualified\">\n"));
        for (m, root, _) in &ops {
            let request = m.xml_schema_element().unwrap_or_default();
            out.push_str(&format!(
                "      {request}\n\
                 \x20     <xsd:element name=\"{root}Response\"><xsd:complexType><xsd:sequence>\
                 <xsd:element name=\"MessageId\" type=\"xsd:long\"/><xsd:element name=\"Status\" type=\"xsd:string\"/>\
                 <xsd:element name=\"DecisionId\" type=\"xsd:string\" minOccurs=\"0\"/><xsd:element name=\"OrderId\" type=\"xsd:string\" minOccurs=\"0\"/>\
                 <xsd:element name=\"Code\" type=\"xsd:string\" minOccurs=\"0\"/>\
                 </xsd:sequence></xsd:complexType></xsd:element>\n"
            ));
        }
        out.push_str("    </xsd:schema>\n");
    }
    out.push_str(&fault_schema());
    out.push_str("  </wsdl:types>\n");
    out.push_str(&format!(
        "  <wsdl:message name=\"Fault\"><wsdl:part name=\"fault\" element=\"{HUB_PREFIX}:error\"/></wsdl:message>\n"
    ));
    for (_, root, _) in &ops {
        out.push_str(&format!(
            "  <wsdl:message name=\"{root}Request\"><wsdl:part name=\"body\" element=\"tns:{root}\"/></wsdl:message>\n\
             \x20 <wsdl:message name=\"{root}Response\"><wsdl:part name=\"body\" element=\"tns:{root}Response\"/></wsdl:message>\n"
        ));
    }
    out.push_str("  <wsdl:portType name=\"CarehubPortType\">\n");
    for (_, root, _) in &ops {
        out.push_str(&format!(
            "    <wsdl:operation name=\"{root}\"><wsdl:input message=\"tns:{root}Request\"/><wsdl:output message=\"tns:{root}Response\"/>\
             <wsdl:fault name=\"Fault\" message=\"tns:Fault\"/></wsdl:operation>\n"
        ));
    }
    out.push_str("  </wsdl:portType>\n  <wsdl:binding name=\"CarehubBinding\" type=\"tns:CarehubPortType\">\n");
    out.push_str("    <soap:binding style=\"document\" transport=\"http://schemas.xmlsoap.org/soap/http\"/>\n");
    for (_, root, ns) in &ops {
        out.push_str(&format!(
            "    <wsdl:operation name=\"{root}\"><soap:operation soapAction=\"{ns}/{root}\"/>\
             <wsdl:input><soap:body use=\"literal\"/></wsdl:input><wsdl:output><soap:body use=\"literal\"/></wsdl:output>\
             <wsdl:fault name=\"Fault\"><soap:fault name=\"Fault\" use=\"literal\"/></wsdl:fault></wsdl:operation>\n"
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
        assert!(f.contains("<hub:code>INVALID_PERSONAL_IDENTITY_NUMBER</hub:code>"), "{f}");
    }

    #[test]
    fn the_hubs_fault_has_a_prefixed_envelope_and_unqualified_fault_fields() {
        let f = fault(true, "UNKNOWN_PROVIDER", "no route for <5599000022> & co", Some(12));
        assert!(f.contains("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"), "{f}");
        assert!(!f.contains("xmlns=\""), "no default namespace anywhere: {f}");
        assert!(f.contains("<faultcode>soap:Client</faultcode>"), "{f}");
        assert!(f.contains("<faultstring>no route for &lt;5599000022&gt; &amp; co</faultstring>"), "{f}");
        let doc = xml::parse(&f).expect("well-formed");
        let fault = doc.child("Body").and_then(|b| b.child("Fault")).expect("Body/Fault");
        assert_eq!(fault.namespace.as_deref(), Some(SOAP11));
        let code = fault.child("faultcode").expect("faultcode");
        assert_eq!(code.namespace, None, "faultcode is unqualified");
        let error = fault.child("detail").and_then(|d| d.child("error")).expect("detail/error");
        assert_eq!(error.namespace.as_deref(), Some(HUB_NS));
        assert_eq!(error.child("code").map(|c| c.text.as_str()), Some("UNKNOWN_PROVIDER"));
        assert_eq!(error.child("message_id").map(|c| c.text.as_str()), Some("12"));
    }

    #[test]
    fn partner_faults_are_read_in_either_form() {
        // The form SOAP 1.1 gives: prefixed envelope, unqualified fault fields.
        let prefixed = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>Databasen är upptagen</faultstring></s:Fault></s:Body></s:Envelope>"#;
        assert_eq!(
            parse_fault(prefixed.as_bytes()),
            Some(Fault { code: "Server".into(), message: "Databasen är upptagen".into() })
        );
        // The form some stacks write: SOAP's namespace as the default one, so the fault
        // fields are (wrongly) in it too.
        let defaulted = r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/" xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><Body><Fault><faultcode>s:Client</faultcode><faultstring>Okänt uppdrag</faultstring></Fault></Body></Envelope>"#;
        assert_eq!(
            parse_fault(defaulted.as_bytes()),
            Some(Fault { code: "Client".into(), message: "Okänt uppdrag".into() })
        );
    }
}
