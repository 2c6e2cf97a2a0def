//! Refused client certificates in the journal.
//!
//! Over HTTPS with mTLS (`[tls]` with `client_ca`), a client certificate the hub refuses
//! ends the TLS handshake before any request exists, so the journal's middleware never
//! sees it. The hub tells its observer ([`carehub_server::tls::Tls::on_refused`]) instead,
//! and the mock journals each refusal as an inbound exchange with no status (there was no
//! answer), target [`TARGET`], the peer's address as its one header, and a problem a vendor
//! can act on: `MOCK_CERT_EXPIRED`, `MOCK_CERT_FOREIGN`, `MOCK_CERT_BAD` or
//! `MOCK_TLS_HANDSHAKE`.

use std::sync::Arc;

use carehub_server::tls::{Refusal, RefusedHandshake, Tls};

use super::journal::Journal;
use crate::exchange::{Direction, Exchange, Problem, Wire};

/// The target of a refused handshake's exchange.
pub const TARGET: &str = "TLS handshake";

/// Journals every handshake `tls` refuses from now on.
pub(crate) fn journal_refusals(tls: &Tls, journal: Arc<Journal>, wire: Wire) {
    tls.on_refused(Arc::new(move |refused: &RefusedHandshake| {
        let x = exchange(refused, wire);
        let journal = journal.clone();
        // The observer runs on the connection's task: the write goes where blocking is fine.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = journal.record(&x) {
                tracing::warn!(error = %e, "a refused handshake could not be journaled");
            }
        });
    }));
}

/// The journal's exchange for a refused handshake.
pub fn exchange(refused: &RefusedHandshake, wire: Wire) -> Exchange {
    Exchange {
        id: 0,
        at: chrono::DateTime::UNIX_EPOCH,
        direction: Direction::Inbound,
        wire,
        message_type: None,
        key: None,
        target: TARGET.into(),
        headers: vec![("peer".into(), refused.peer.to_string())],
        body: Vec::new(),
        status: None,
        response: Vec::new(),
        millis: 0,
        problems: vec![problem(refused)],
    }
}

/// What the vendor is told: the code and a sentence on what to do.
pub fn problem(refused: &RefusedHandshake) -> Problem {
    let day = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%d %H:%M UTC").to_string();
    let (code, message) = match refused.reason {
        Refusal::CertExpired => {
            let when = match (refused.valid_until, refused.valid_from) {
                (Some(until), _) => format!("expired on {}", day(until)),
                (None, Some(from)) => format!("is not valid until {}", day(from)),
                (None, None) => "has expired or is not valid yet".to_owned(),
            };
            (
                "MOCK_CERT_EXPIRED",
                format!(
                    "the client certificate {when}, so the hub refused the TLS handshake: \
                     send with a certificate that is valid today, from the hub's client CA"
                ),
            )
        }
        Refusal::CertUnknownIssuer => (
            "MOCK_CERT_FOREIGN",
            format!(
                "the client certificate is not issued by the hub's client CA{}, so the hub refused the TLS \
                 handshake: send with the certificate the municipality issued for this system",
                refused.issuer.as_ref().map(|i| format!(" (issuer: {i})")).unwrap_or_default()
            ),
        ),
        Refusal::CertBad => (
            "MOCK_CERT_BAD",
            format!("the hub refused the client certificate ({}) and with it the TLS handshake", refused.detail),
        ),
        Refusal::TlsHandshake => ("MOCK_TLS_HANDSHAKE", format!("the TLS handshake failed: {}", refused.detail)),
    };
    Problem { code: code.into(), message, field: None, offset: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(reason: Refusal) -> RefusedHandshake {
        RefusedHandshake {
            peer: "127.0.0.1:4711".parse().expect("address"),
            reason,
            valid_until: chrono::DateTime::from_timestamp(978_307_200, 0),
            valid_from: None,
            issuer: Some("CN=foreign test CA".into()),
            detail: "d".into(),
        }
    }

    #[test]
    fn each_refusal_has_its_code_and_an_expiry_its_date() {
        let p = problem(&refused(Refusal::CertExpired));
        assert_eq!(p.code, "MOCK_CERT_EXPIRED");
        assert!(p.message.contains("expired on 2001-01-01 00:00 UTC"), "{}", p.message);
        let foreign = problem(&refused(Refusal::CertUnknownIssuer));
        assert_eq!(foreign.code, "MOCK_CERT_FOREIGN");
        assert!(foreign.message.contains("(issuer: CN=foreign test CA)"), "{}", foreign.message);
        assert_eq!(problem(&refused(Refusal::CertBad)).code, "MOCK_CERT_BAD");
        assert_eq!(problem(&refused(Refusal::TlsHandshake)).code, "MOCK_TLS_HANDSHAKE");
        let x = exchange(&refused(Refusal::CertExpired), Wire::Http);
        assert_eq!((x.direction, x.status, x.target.as_str()), (Direction::Inbound, None, TARGET));
        assert_eq!(x.headers, vec![("peer".to_owned(), "127.0.0.1:4711".to_owned())]);
    }
}
