//! Bearer tokens from an OAuth 2.0 token endpoint (client credentials), kept until they
//! are about to expire and fetched again when they do, or when the API answers 401.

use std::time::{Duration, Instant};

use carehub_core::adapter::DeliveryError;
use serde::Deserialize;
use tokio::sync::Mutex;

/// Renew a token this long before the expiry its endpoint announced.
const MARGIN: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A cached token and where a new one comes from.
pub struct TokenSource {
    client: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: String,
    current: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("token_url", &self.token_url).field("client_id", &self.client_id).finish()
    }
}

impl TokenSource {
    pub fn new(client: reqwest::Client, token_url: &str, client_id: &str, client_secret: &str) -> Self {
        TokenSource {
            client,
            token_url: token_url.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            current: Mutex::new(None),
        }
    }

    /// A valid token: the cached one, or a new one if it is missing or about to expire.
    pub async fn token(&self) -> Result<String, DeliveryError> {
        let mut current = self.current.lock().await;
        if let Some((token, until)) = current.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let (token, until) = self.fetch().await?;
        *current = Some((token.clone(), until));
        Ok(token)
    }

    /// Forgets `stale` (the API refused it), so the next [`TokenSource::token`] fetches anew.
    pub async fn invalidate(&self, stale: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(t, _)| t == stale) {
            *current = None;
        }
    }

    async fn fetch(&self) -> Result<(String, Instant), DeliveryError> {
        let response = self
            .client
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(|e| DeliveryError::transient(format!("token endpoint: {e}")))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let message = format!("token endpoint answered {status}");
            // Wrong credentials will not fix themselves; anything else may.
            return Err(if matches!(status, 400 | 401 | 403) {
                DeliveryError::permanent(message)
            } else {
                DeliveryError::transient(message)
            });
        }
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|e| DeliveryError::transient(format!("token endpoint: unreadable answer: {e}")))?;
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(300));
        let until = Instant::now() + lifetime.saturating_sub(MARGIN.min(lifetime / 2));
        Ok((body.access_token, until))
    }
}
