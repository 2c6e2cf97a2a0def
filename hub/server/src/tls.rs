//! HTTPS, and systems authenticated by client certificates (mutual TLS, SPEC §9).
//!
//! With `[hub.tls]` the hub serves HTTPS with rustls. With `client_ca` as well, a client
//! may present a certificate issued by that CA; a system whose `client_cert_name` the
//! certificate is valid for is then authenticated as that system, for its own message
//! endpoint only (`POST /v1/systems/{system}/messages`). Everything else (reading the log,
//! orders, replay) still needs a bearer token, because those are people's and roles'
//! actions, not a system's. A client without a certificate connects as usual.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
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
                builder.with_client_cert_verifier(verifier)
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
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(server)), clients })
    }

    /// The system a client certificate (already verified against the client CA) names.
    pub fn identify(&self, cert: &CertificateDer<'_>) -> Option<String> {
        let cert = webpki::EndEntityCert::try_from(cert).ok()?;
        self.clients
            .iter()
            .find(|(name, _)| cert.verify_is_valid_for_subject_name(name).is_ok())
            .map(|(_, s)| s.clone())
    }

    /// The TLS handshake on an accepted connection, and the system its client certificate
    /// names, if any. (The accept loop is [`crate::accept`], shared with plain HTTP.)
    pub async fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Option<String>)> {
        let stream = self.acceptor.accept(tcp).await?;
        let system = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| self.identify(c));
        Ok((stream, system))
    }
}
