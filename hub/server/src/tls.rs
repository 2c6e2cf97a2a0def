//! HTTPS, and systems authenticated by client certificates (mutual TLS, SPEC §9).
//!
//! With `[hub.tls]` the hub serves HTTPS with rustls. With `client_ca` as well, a client
//! may present a certificate issued by that CA; a system whose `client_cert_name` the
//! certificate is valid for is then authenticated as that system, for its own message
//! endpoint only (`POST /v1/systems/{system}/messages`). Everything else (reading the log,
//! orders, replay) still needs a bearer token, because those are people's and roles'
//! actions, not a system's. A client without a certificate connects as usual.
//!
//! A client certificate the hub refuses (expired, from another CA, malformed) ends the
//! handshake; the hub logs it (the peer's address and a code, nothing about the person
//! behind it) and tells an optional observer ([`Tls::on_refused`]). The observer exists
//! for the mock hub (`carehub mock`), which journals each refusal so that a vendor's
//! conformance run can show its system met an expired or a foreign certificate; a
//! production hub sets none.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use chrono::{DateTime, Utc};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsSection};

/// The system a connection's verified client certificate belongs to, if any. Added to
/// every request of the connection.
#[derive(Debug, Clone, Default)]
pub struct PeerSystem(pub Option<String>);

/// TLS settings loaded from their files.
pub struct Tls {
    acceptor: TlsAcceptor,
    /// (DNS name in the client certificate, system name)
    clients: Vec<(ServerName<'static>, String)>,
    /// Told of every handshake the hub refuses; see [`Tls::on_refused`].
    refused: OnceLock<RefusalObserver>,
}

/// Told of each refused handshake.
pub type RefusalObserver = Arc<dyn Fn(&RefusedHandshake) + Send + Sync>;

/// Why the hub refused a TLS handshake, from the rustls error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client certificate has expired, or is not valid yet.
    CertExpired,
    /// The client certificate is not from the configured client CA.
    CertUnknownIssuer,
    /// Anything else about the client certificate (malformed, wrong usage, revoked, ...).
    CertBad,
    /// Anything else about the handshake (not TLS at all, no common protocol, an alert).
    TlsHandshake,
}

impl Refusal {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::CertExpired => "CERT_EXPIRED",
            Refusal::CertUnknownIssuer => "CERT_UNKNOWN_ISSUER",
            Refusal::CertBad => "CERT_BAD",
            Refusal::TlsHandshake => "TLS_HANDSHAKE",
        }
    }
}

/// A handshake the hub refused.
#[derive(Debug, Clone)]
pub struct RefusedHandshake {
    pub peer: SocketAddr,
    pub reason: Refusal,
    /// For [`Refusal::CertExpired`], when the certificate's validity ended (or, for one
    /// not valid yet, began), when rustls says.
    pub valid_until: Option<DateTime<Utc>>,
    pub valid_from: Option<DateTime<Utc>>,
    /// For [`Refusal::CertUnknownIssuer`], the issuer the certificate names (`CN=..., O=...`),
    /// when it could be read.
    pub issuer: Option<String>,
    /// rustls's words for it (no names from the certificate).
    pub detail: String,
}

impl RefusedHandshake {
    /// The refusal an error of a TLS handshake stands for; `None` for an error that is not
    /// the hub refusing (the client went away, the socket failed).
    pub fn from_error(peer: SocketAddr, error: &std::io::Error) -> Option<RefusedHandshake> {
        let tls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
        let at = |t: &UnixTime| DateTime::<Utc>::from_timestamp(i64::try_from(t.as_secs()).ok()?, 0);
        let (mut valid_from, mut valid_until) = (None, None);
        let reason = match tls {
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::Expired | CertificateError::NotValidYet => Refusal::CertExpired,
                CertificateError::ExpiredContext { not_after, .. } => {
                    valid_until = at(not_after);
                    Refusal::CertExpired
                }
                CertificateError::NotValidYetContext { not_before, .. } => {
                    valid_from = at(not_before);
                    Refusal::CertExpired
                }
                CertificateError::UnknownIssuer => Refusal::CertUnknownIssuer,
                _ => Refusal::CertBad,
            },
            rustls::Error::NoCertificatesPresented => Refusal::CertBad,
            _ => Refusal::TlsHandshake,
        };
        Some(RefusedHandshake { peer, reason, valid_until, valid_from, issuer: None, detail: tls.to_string() })
    }
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

impl Tls {
    /// Loads the hub's certificate, key and client CA.
    pub fn load(section: &TlsSection, config: &Config) -> anyhow::Result<Tls> {
        let chain = certs(&section.cert)?;
        let key = match (&section.key_pem, &section.key) {
            (Some(pem), _) => PrivateKeyDer::from_pem_slice(pem.expose().as_bytes())
                .context("cannot read a private key from [hub.tls] key_pem")?,
            (None, Some(file)) => PrivateKeyDer::from_pem_file(file)
                .with_context(|| format!("cannot read a private key from {}", file.display()))?,
            (None, None) => anyhow::bail!("[hub.tls] names no private key"),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &section.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).with_context(|| format!("{} holds an unusable CA certificate", ca.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .allow_unauthenticated()
                    .build()
                    .context("cannot build the client certificate verifier")?;
                builder.with_client_cert_verifier(Arc::new(Remembering(verifier)))
            }
        };
        let mut server =
            builder.with_single_cert(chain, key).context("the hub's certificate and key do not fit together")?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let clients = config
            .systems
            .iter()
            .filter_map(|s| {
                let name = ServerName::try_from(s.client_cert_name.clone()?).ok()?;
                Some((name, s.name.clone()))
            })
            .collect();
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(server)), clients, refused: OnceLock::new() })
    }

    /// Sets the one observer of refused handshakes (the mock hub's journal); false when
    /// one was set already. The hub refuses and logs as before; the observer only hears
    /// of it, on the connection's task, so it should not block.
    pub fn on_refused(&self, observer: RefusalObserver) -> bool {
        self.refused.set(observer).is_ok()
    }

    /// The system a client certificate (already verified against the client CA) names.
    pub fn identify(&self, cert: &CertificateDer<'_>) -> Option<String> {
        let cert = webpki::EndEntityCert::try_from(cert).ok()?;
        self.clients
            .iter()
            .find(|(name, _)| cert.verify_is_valid_for_subject_name(name).is_ok())
            .map(|(_, s)| s.clone())
    }

    /// The TLS handshake on an accepted connection from `peer`, and the system its client
    /// certificate names, if any. A handshake the hub refuses is logged and told to the
    /// observer. (The accept loop is [`crate::accept`], shared with plain HTTP.)
    pub async fn accept(
        &self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Option<String>)> {
        let (accepted, presented) = PRESENTED
            .scope(std::cell::RefCell::new(None), async {
                let accepted = self.acceptor.accept(tcp).await;
                (accepted, PRESENTED.with(|p| p.borrow_mut().take()))
            })
            .await;
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                if let Some(mut refused) = RefusedHandshake::from_error(peer, &e) {
                    if refused.reason == Refusal::CertUnknownIssuer {
                        refused.issuer = presented.as_deref().and_then(issuer_of);
                    }
                    let code = refused.reason.code();
                    if refused.reason == Refusal::TlsHandshake {
                        tracing::debug!(%peer, code, detail = %refused.detail, "TLS handshake refused");
                    } else {
                        tracing::info!(%peer, code, detail = %refused.detail, "client certificate refused");
                    }
                    if let Some(observer) = self.refused.get() {
                        observer(&refused);
                    }
                }
                return Err(e);
            }
        };
        let system = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| self.identify(c));
        Ok((stream, system))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(e: rustls::Error) -> Option<RefusedHandshake> {
        let peer = "127.0.0.1:4711".parse().expect("address");
        RefusedHandshake::from_error(peer, &std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn a_refusal_is_coded_from_the_rustls_error() {
        let expired = refused(rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(978_307_200)),
        }))
        .expect("a refusal");
        assert_eq!(expired.reason.code(), "CERT_EXPIRED");
        assert_eq!(expired.valid_until.map(|t| t.to_rfc3339()).as_deref(), Some("2001-01-01T00:00:00+00:00"));
        assert_eq!(expired.peer.to_string(), "127.0.0.1:4711");
        let code = |e| refused(e).map(|r| r.reason.code());
        use rustls::Error::InvalidCertificate as Invalid;
        assert_eq!(code(Invalid(CertificateError::NotValidYet)), Some("CERT_EXPIRED"));
        assert_eq!(code(Invalid(CertificateError::UnknownIssuer)), Some("CERT_UNKNOWN_ISSUER"));
        assert_eq!(code(Invalid(CertificateError::BadEncoding)), Some("CERT_BAD"));
        assert_eq!(code(rustls::Error::NoCertificatesPresented), Some("CERT_BAD"));
        assert_eq!(code(rustls::Error::HandshakeNotComplete), Some("TLS_HANDSHAKE"));
        let foreign = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../certs/phoniro-ekero-foreign.pem"))
            .expect("the foreign test certificate");
        let der = CertificateDer::from_pem_slice(&foreign).expect("a certificate");
        assert_eq!(issuer_of(&der).as_deref(), Some("CN=foreign test CA, O=somewhere else"));
        assert_eq!(issuer_of(b"not a certificate"), None);
        // The client going away is not the hub refusing.
        let gone = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert!(RefusedHandshake::from_error("127.0.0.1:1".parse().expect("address"), &gone).is_none());
    }
}

tokio::task_local! {
    /// The end-entity certificate a client presented in the handshake on this task, kept
    /// by [`Remembering`] so that a refusal can name the certificate's issuer.
    static PRESENTED: std::cell::RefCell<Option<CertificateDer<'static>>>;
}

/// The client certificate verifier, remembering the certificate it was shown (in
/// [`PRESENTED`], when the handshake runs inside its scope). Verifies exactly as the inner.
#[derive(Debug)]
struct Remembering(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Remembering {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let _ = PRESENTED.try_with(|p| *p.borrow_mut() = Some(end_entity.clone().into_owned()));
        self.0.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// One DER element at the start of `der`: its tag, its contents, and what follows it.
/// Definite lengths up to four bytes, which is all a certificate uses.
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The issuer a certificate names, as `CN=..., O=...` (its common name and organisation,
/// which is what a person recognises a CA by); `None` when it cannot be read.
fn issuer_of(cert: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    let (_, certificate, _) = der_element(cert).filter(|e| e.0 == SEQUENCE)?;
    let (_, tbs, _) = der_element(certificate).filter(|e| e.0 == SEQUENCE)?;
    let mut rest = tbs;
    // version [0] (optional), serialNumber, signature algorithm, then the issuer.
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    let (_, _, rest) = der_element(rest)?;
    let (_, _, rest) = der_element(rest)?;
    let (_, mut name, _) = der_element(rest).filter(|e| e.0 == SEQUENCE)?;
    let mut parts = Vec::new();
    while let Some((_, set, more)) = der_element(name) {
        name = more;
        let Some((_, attribute, _)) = der_element(set) else { continue };
        let Some((0x06, oid, value)) = der_element(attribute) else { continue };
        let label = match oid {
            [0x55, 0x04, 0x03] => "CN",
            [0x55, 0x04, 0x0a] => "O",
            _ => continue,
        };
        if let Some((_, text, _)) = der_element(value) {
            parts.push(format!("{label}={}", String::from_utf8_lossy(text)));
        }
    }
    parts.sort_by_key(|p| !p.starts_with("CN="));
    (!parts.is_empty()).then(|| parts.join(", "))
}
