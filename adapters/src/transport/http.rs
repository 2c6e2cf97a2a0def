//! Plain HTTP(S) delivery: `POST` the rendered payload to the system's address.
//!
//! Status classes decide retries: 2xx is delivered; 408, 425, 429 and 5xx are transient;
//! other statuses are a permanent refusal (the receiver read the message and will not take
//! it, so sending it again cannot help). Connection failures and timeouts are transient.

use std::sync::Arc;

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
    /// Bearer tokens from an OAuth 2.0 token endpoint (instead of `authorization`).
    tokens: Option<Arc<super::oauth::TokenSource>>,
    /// SOAP 1.1: send `SOAPAction`, and classify failures by the fault's code.
    soap: bool,
}

impl HttpTransport {
    pub fn new(client: reqwest::Client, base_url: &str, authorization: Option<String>) -> Self {
        HttpTransport {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization,
            tokens: None,
            soap: false,
        }
    }

    /// The same, authenticating with bearer tokens from `tokens`.
    pub fn with_tokens(mut self, tokens: super::oauth::TokenSource) -> Self {
        self.tokens = Some(Arc::new(tokens));
        self
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

/// A feed read with `GET {base_url}/{path}?cursor=...&limit=...`.
#[derive(Debug, Clone)]
pub struct HttpFeed {
    pub transport: HttpTransport,
    pub path: &'static str,
    pub page_size: u32,
}

#[async_trait]
impl carehub_core::adapter::Feed for HttpFeed {
    /// The base URL, path and query as sent; the credential travels in a header, never here.
    fn shown_url(&self, cursor: Option<&str>) -> Option<String> {
        let limit = self.page_size.to_string();
        let mut query: Vec<(&str, &str)> = vec![("limit", &limit)];
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        reqwest::Url::parse_with_params(&self.transport.url(Some(self.path)), &query).ok().map(String::from)
    }

    async fn page(&self, cursor: Option<&str>) -> Result<Vec<u8>, DeliveryError> {
        let t = &self.transport;
        let limit = self.page_size.to_string();
        let mut query: Vec<(&str, &str)> = vec![("limit", &limit)];
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        let send = |token: Option<&str>| {
            let mut request = t.client.get(t.url(Some(self.path))).query(&query);
            match (token, &t.authorization) {
                (Some(tok), _) => request = request.bearer_auth(tok),
                (None, Some(auth)) => request = request.header(AUTHORIZATION, auth),
                (None, None) => {}
            }
            request.send()
        };
        let token = match &t.tokens {
            Some(tokens) => Some(tokens.token().await?),
            None => None,
        };
        let response = send(token.as_deref()).await.map_err(|e| DeliveryError::transient(describe(&e)))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| DeliveryError::transient(describe(&e)))?.to_vec();
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let mut answer = body;
        answer.truncate(MAX_ANSWER);
        Err(DeliveryError {
            transient: is_transient_status(status),
            status: Some(status),
            message: format!("{} answered {status} to GET {}", t.base_url, self.path),
            body: answer,
        })
    }
}

/// Whether an HTTP status means "try again later".
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || (500..600).contains(&status)
}

#[async_trait]
impl Transport for HttpTransport {
    async fn deliver(&self, env: &Envelope<'_>) -> Result<DeliveryReceipt, DeliveryError> {
        let send = |token: Option<&str>| {
            let mut request = self
                .client
                .post(self.url(env.endpoint))
                .header(CONTENT_TYPE, env.content_type)
                .header(IDEMPOTENCY_HEADER, env.idempotency_key)
                .body(env.body.to_vec());
            match (token, &self.authorization) {
                (Some(t), _) => request = request.bearer_auth(t),
                (None, Some(auth)) => request = request.header(AUTHORIZATION, auth),
                (None, None) => {}
            }
            if self.soap {
                request = request.header("SOAPAction", format!("\"{}\"", env.action.unwrap_or("")));
            }
            request.send()
        };
        let response = match &self.tokens {
            None => send(None).await.map_err(|e| DeliveryError::transient(describe(&e)))?,
            Some(tokens) => {
                let token = tokens.token().await?;
                let first = send(Some(&token)).await.map_err(|e| DeliveryError::transient(describe(&e)))?;
                if first.status() == reqwest::StatusCode::UNAUTHORIZED {
                    // Revoked or expired early: one new token, one more try, same attempt.
                    tokens.invalidate(&token).await;
                    let fresh = tokens.token().await?;
                    send(Some(&fresh)).await.map_err(|e| DeliveryError::transient(describe(&e)))?
                } else {
                    first
                }
            }
        };
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
