//! Plain HTTP(S) delivery: `POST` the rendered payload to the system's address.
//!
//! Status classes decide retries: 2xx is delivered; 408, 425, 429 and 5xx are transient;
//! other statuses are a permanent refusal (the receiver read the message and will not take
//! it, so sending it again cannot help). Connection failures and timeouts are transient.

use async_trait::async_trait;
use carehub_core::adapter::{DeliveryError, DeliveryReceipt, Envelope, Transport};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

/// The header that carries the idempotency key on every attempt.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Most bytes of a receiver's answer kept in the message log.
const MAX_ANSWER: usize = 64 * 1024;

/// POSTs payloads to `base_url` (joined with the mapping's endpoint, if any).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base_url: String,
    /// The `Authorization` header value, if the system wants one.
    authorization: Option<String>,
    /// SOAP 1.1: send `SOAPAction`, and classify failures by the fault's code.
    soap: bool,
}

impl HttpTransport {
    pub fn new(client: reqwest::Client, base_url: &str, authorization: Option<String>) -> Self {
        HttpTransport { client, base_url: base_url.trim_end_matches('/').to_owned(), authorization, soap: false }
    }

    /// The same, speaking SOAP 1.1.
    pub fn soap(mut self) -> Self {
        self.soap = true;
        self
    }

    /// The address for an endpoint.
    pub fn url(&self, endpoint: Option<&str>) -> String {
        match endpoint {
            Some(e) if !e.is_empty() => format!("{}/{}", self.base_url, e.trim_start_matches('/')),
            _ => self.base_url.clone(),
        }
    }
}

/// Whether an HTTP status means "try again later".
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || (500..600).contains(&status)
}

#[async_trait]
impl Transport for HttpTransport {
    async fn deliver(&self, env: &Envelope<'_>) -> Result<DeliveryReceipt, DeliveryError> {
        let mut request = self
            .client
            .post(self.url(env.endpoint))
            .header(CONTENT_TYPE, env.content_type)
            .header(IDEMPOTENCY_HEADER, env.idempotency_key)
            .body(env.body.to_vec());
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        if self.soap {
            request = request.header("SOAPAction", format!("\"{}\"", env.action.unwrap_or("")));
        }
        let response = request.send().await.map_err(|e| DeliveryError::transient(describe(&e)))?;
        let status = response.status().as_u16();
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        body.truncate(MAX_ANSWER);
        if (200..300).contains(&status) {
            return Ok(DeliveryReceipt { status: Some(status), content_type, body });
        }
        // SOAP 1.1 answers every fault with 500: the fault's code says who is at fault.
        if let Some(fault) = self.soap.then(|| super::soap::parse_fault(&body)).flatten() {
            return Err(DeliveryError {
                transient: fault.is_transient(),
                status: Some(status),
                message: format!("{} answered a SOAP {} fault: {}", self.base_url, fault.code, fault.message),
                body,
            });
        }
        Err(DeliveryError {
            transient: is_transient_status(status),
            status: Some(status),
            message: format!("{} answered {status}", self.base_url),
            body,
        })
    }

    async fn check(&self) -> Result<String, DeliveryError> {
        let response =
            self.client.get(&self.base_url).send().await.map_err(|e| DeliveryError::transient(describe(&e)))?;
        Ok(format!("reachable, answered {} to GET {}", response.status().as_u16(), self.base_url))
    }
}

/// A reqwest error in words, without the URL's query (which could carry secrets).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    }
}
