//! Signing in with OpenID Connect (authorization code flow with PKCE): the provider's
//! discovery document and keys (fetched once and kept; the keys fetched again when a token
//! names one the hub has not seen), the authorization request, the code exchanged for
//! tokens, and the ID token verified: signature (RS256 or ES256) by a key of the provider's
//! JWKS, `iss`, `aud`, `exp` and `iat` against the hub's clock, and `nonce`.
//!
//! Nothing here knows HTTP routes or sessions; [`super`] keeps the pending sign-ins and
//! the sessions.

use base64::Engine as _;
use carehub_model::Clock;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

/// How far apart the clocks of the identity provider and the hub may be, in seconds.
pub const LEEWAY_SECS: i64 = 30;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a sign-in failed. Each has a stable code the console shows.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The identity provider could not be reached or answered nonsense.
    #[error("the identity provider did not answer as expected: {0}")]
    Provider(String),
    /// The ID token is not signed by the provider's key, or is not for this hub.
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
    /// The ID token's `exp` is in the past by the hub's clock.
    #[error("the ID token has expired")]
    Expired,
    /// The person has no role the console knows (`auditor`, `admin`, `provider` with an
    /// organisation number).
    #[error("{0}")]
    NoRole(String),
}

impl SignInError {
    pub fn code(&self) -> &'static str {
        match self {
            SignInError::Provider(_) => "IDENTITY_PROVIDER_UNAVAILABLE",
            SignInError::InvalidToken(_) => "ID_TOKEN_INVALID",
            SignInError::Expired => "ID_TOKEN_EXPIRED",
            SignInError::NoRole(_) => "NO_CONSOLE_ROLE",
        }
    }
}

/// The parts of the discovery document the hub uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// Random bytes as URL-safe base64: state, nonce, PKCE verifier, session ids.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // getrandom fails only where the OS has no randomness; then nothing here is safe.
    getrandom::getrandom(&mut bytes).unwrap_or_else(|e| panic!("the OS gives no random bytes: {e}"));
    B64URL.encode(bytes)
}

/// The PKCE S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

/// What a verified ID token says of the person.
#[derive(Debug, Clone)]
pub struct IdClaims {
    pub subject: String,
    /// A name to show (`name`, else `preferred_username`, else the subject).
    pub name: String,
    /// The values of the role claim.
    pub roles: Vec<String>,
    /// The provider claim, as the token has it.
    pub provider: Option<String>,
    /// The token's expiry (seconds since the epoch).
    pub exp: i64,
}

/// One identity provider, as the hub's client.
pub struct Provider {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    role_claim: String,
    provider_claim: String,
    http: reqwest::Client,
    clock: Clock,
    discovery: RwLock<Option<Discovery>>,
    keys: RwLock<Option<JwkSet>>,
}

impl Provider {
    pub fn new(
        issuer: String,
        client_id: String,
        client_secret: Option<String>,
        role_claim: String,
        provider_claim: String,
        clock: Clock,
    ) -> Provider {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Provider {
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id,
            client_secret,
            role_claim,
            provider_claim,
            http,
            clock,
            discovery: RwLock::new(None),
            keys: RwLock::new(None),
        }
    }

    /// The discovery document, fetched the first time and kept.
    pub async fn discovery(&self) -> Result<Discovery, SignInError> {
        if let Some(d) = self.discovery.read().await.clone() {
            return Ok(d);
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let d: Discovery = self.get_json(&url).await?;
        if d.issuer.trim_end_matches('/') != self.issuer {
            return Err(SignInError::Provider(format!(
                "the discovery document names issuer '{}', not the configured one",
                d.issuer
            )));
        }
        *self.discovery.write().await = Some(d.clone());
        Ok(d)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, SignInError> {
        let resp = self.http.get(url).send().await.map_err(|e| SignInError::Provider(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(SignInError::Provider(format!("GET {url}: status {}", resp.status())));
        }
        resp.json().await.map_err(|e| SignInError::Provider(format!("GET {url}: {e}")))
    }

    /// The URL to send the browser to.
    pub async fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, SignInError> {
        let d = self.discovery().await?;
        let mut url = reqwest::Url::parse(&d.authorization_endpoint)
            .map_err(|e| SignInError::Provider(format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid profile")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Exchanges the code for tokens and verifies the ID token.
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<IdClaims, SignInError> {
        let d = self.discovery().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", self.client_id.as_str()),
            ("code_verifier", verifier),
        ];
        let mut req = self.http.post(&d.token_endpoint).form(&form);
        if let Some(secret) = &self.client_secret {
            // client_secret_basic: both parts form-encoded (RFC 6749 §2.3.1).
            let enc = |s: &str| form_urlencoded(s);
            req = req.basic_auth(enc(&self.client_id), Some(enc(secret)));
        }
        let resp = req.send().await.map_err(|e| SignInError::Provider(format!("token endpoint: {e}")))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| SignInError::Provider(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            let why = body["error"].as_str().unwrap_or("no error given");
            return Err(SignInError::Provider(format!("the token endpoint refused the code ({status}, {why})")));
        }
        let id_token = body["id_token"]
            .as_str()
            .ok_or_else(|| SignInError::Provider("the token endpoint sent no id_token".into()))?;
        self.verify(id_token, nonce).await
    }

    /// The key the token's header names, from the provider's JWKS; fetched again once
    /// when the kept set lacks it (the provider rotated its keys).
    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, SignInError> {
        for refresh in [false, true] {
            if refresh || self.keys.read().await.is_none() {
                let d = self.discovery().await?;
                let set: JwkSet = self.get_json(&d.jwks_uri).await?;
                *self.keys.write().await = Some(set);
            }
            let keys = self.keys.read().await;
            let set = keys.as_ref().map(|s| s.keys.as_slice()).unwrap_or_default();
            let found = match kid {
                Some(kid) => set.iter().find(|k| k.common.key_id.as_deref() == Some(kid)),
                None if set.len() == 1 => set.first(),
                None => None,
            };
            if let Some(jwk) = found {
                return DecodingKey::from_jwk(jwk).map_err(|e| SignInError::InvalidToken(format!("the key: {e}")));
            }
        }
        Err(SignInError::InvalidToken("no key of the provider's JWKS signed it".into()))
    }

    /// Verifies an ID token: signature, issuer, audience, times by the hub's clock, nonce.
    pub async fn verify(&self, token: &str, nonce: &str) -> Result<IdClaims, SignInError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| SignInError::InvalidToken(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(SignInError::InvalidToken(format!(
                "algorithm {:?} is not accepted (RS256, ES256)",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.issuer.as_str(), &format!("{}/", self.issuer)]);
        validation.set_audience(&[self.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Times are read against the hub's clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| SignInError::InvalidToken(e.to_string()))?
            .claims;
        let now = self.clock.now().timestamp();
        let exp = claims["exp"].as_i64().ok_or_else(|| SignInError::InvalidToken("exp is not a number".into()))?;
        if exp + LEEWAY_SECS < now {
            return Err(SignInError::Expired);
        }
        if claims["iat"].as_i64().is_some_and(|iat| iat > now + LEEWAY_SECS) {
            return Err(SignInError::InvalidToken("issued in the future".into()));
        }
        if claims["nonce"].as_str() != Some(nonce) {
            return Err(SignInError::InvalidToken("the nonce is not this sign-in's".into()));
        }
        if claims["aud"].is_array() && claims["azp"].as_str().is_some_and(|azp| azp != self.client_id) {
            return Err(SignInError::InvalidToken("azp names another client".into()));
        }
        let text = |v: &Value| v.as_str().map(str::to_owned).filter(|s| !s.is_empty());
        let subject = text(&claims["sub"]).ok_or_else(|| SignInError::InvalidToken("no sub".into()))?;
        let roles = match &claims[self.role_claim.as_str()] {
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        Ok(IdClaims {
            name: text(&claims["name"]).or_else(|| text(&claims["preferred_username"])).unwrap_or(subject.clone()),
            subject,
            roles,
            provider: text(&claims[self.provider_claim.as_str()]),
            exp,
        })
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_urlencoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(random_token().len(), 43);
        assert_ne!(random_token(), random_token());
        assert_eq!(form_urlencoded("a b:c"), "a+b%3Ac");
    }
}
