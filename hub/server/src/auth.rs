//! Bearer tokens (JWT, HS256) and the roles of SPEC §9.
//!
//! A token names a role. A system's token (`case_management`, `provider_system`) also names
//! its system (`sys`): it may send only to that system's endpoint, so one leaked token
//! cannot speak as every system of its kind. A `provider_system` token carries the
//! provider's organisation number too and sees only that provider's orders and messages.
//! Tokens are issued by `carehub token` from the configured key, with `iss` "carehub" and
//! `aud` "carehub-api", both checked. Times (`exp`, `nbf`, `iat`) are read against the
//! hub's clock with [`LEEWAY_SECS`] of skew. Failures never say more than "missing",
//! "malformed or not ours", "not yet valid" or "expired".

use std::time::Duration;

use carehub_model::{Clock, ErrorCode, OrgNumber};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "carehub";

/// The audience of the tokens: the hub's API.
pub const AUDIENCE: &str = "carehub-api";

/// How far apart the clocks of the issuer and the hub may be, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Who a caller is to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum Role {
    /// A case-management system: sends decisions, reads orders.
    CaseManagement,
    /// A provider's system: sends acks, plans and visits for its own organisation only.
    ProviderSystem,
    /// Reads the message log and verifies it; sends nothing.
    Auditor,
    /// Everything, including replaying dead letters.
    Admin,
}

impl Role {
    /// Whether a token of this role names its system (and may send only as it).
    pub fn is_system(self) -> bool {
        matches!(self, Role::CaseManagement | Role::ProviderSystem)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::CaseManagement => "case_management",
            Role::ProviderSystem => "provider_system",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// The claims of a carehub token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    /// The configured system a system's token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
}

impl Claims {
    /// The provider a `provider_system` token is bound to.
    pub fn provider(&self) -> Option<&str> {
        match self.role {
            Role::ProviderSystem => self.org.as_deref(),
            _ => None,
        }
    }

    /// The system a system's token speaks for.
    pub fn system(&self) -> Option<&str> {
        self.sys.as_deref()
    }
}

/// Issues and verifies tokens with one key.
#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Lifetimes are read against the hub's clock, not the system's.
    clock: Clock,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(**REDACTED**)")
    }
}

/// Why a token was refused: always `UNAUTHENTICATED` to the caller, with a reason that
/// never says more than the module docs allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Refused {
    /// The code the API answers a refused token with.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Unauthenticated
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a provider_system token needs --org (the provider's organisation number)")]
    ProviderNeedsOrg,
    #[error("only provider_system tokens carry an organisation number")]
    OrgNotAllowed,
    #[error("a {0} token needs --system (the configured system it speaks for)")]
    NeedsSystem(&'static str),
    #[error("{0} tokens name no system; leave out --system")]
    SystemNotAllowed(&'static str),
    #[error("{0}")]
    InvalidOrg(String),
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl Auth {
    pub fn new(secret: &str, clock: Clock) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Times are checked in `verify` against the hub's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = LEEWAY_SECS;
        Auth {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            clock,
        }
    }

    fn now_secs(&self) -> u64 {
        u64::try_from(self.clock.now().timestamp()).unwrap_or(0)
    }

    /// Issues a token for `role`; a system's token names its `system` (which the caller
    /// has checked is configured), a provider's system's token also its `org`.
    pub fn issue(
        &self,
        subject: &str,
        role: Role,
        system: Option<&str>,
        org: Option<&str>,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        let sys = match (role.is_system(), system) {
            (true, None) => return Err(TokenError::NeedsSystem(role.as_str())),
            (false, Some(_)) => return Err(TokenError::SystemNotAllowed(role.as_str())),
            (_, s) => s.map(str::to_owned),
        };
        let org = match (role, org) {
            (Role::ProviderSystem, None) => return Err(TokenError::ProviderNeedsOrg),
            (Role::ProviderSystem, Some(o)) => {
                Some(OrgNumber::parse(o).map_err(|e| TokenError::InvalidOrg(e.to_string()))?.as_str().to_owned())
            }
            (_, Some(_)) => return Err(TokenError::OrgNotAllowed),
            (_, None) => None,
        };
        let iat = self.now_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            sys,
            org,
            iat,
            nbf: iat,
            exp: iat + ttl.as_secs(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        Ok(encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, Refused> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            let why = match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                _ => "the token is malformed or not signed by this hub",
            };
            Refused(why.to_owned())
        })?;
        let claims = data.claims;
        let now = self.now_secs();
        if claims.exp.saturating_add(LEEWAY_SECS) < now {
            return Err(Refused("the token has expired".into()));
        }
        if claims.nbf > now.saturating_add(LEEWAY_SECS) || claims.iat > now.saturating_add(LEEWAY_SECS) {
            return Err(Refused("the token is not yet valid".into()));
        }
        if claims.role.is_system() && claims.sys.as_deref().is_none_or(str::is_empty) {
            return Err(Refused(format!("a {} token must name its system (sys)", claims.role.as_str())));
        }
        if claims.role == Role::ProviderSystem && claims.org.is_none() {
            return Err(Refused("a provider_system token must carry org".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let a = Auth::new("0123456789abcdef0123456789abcdef", Clock::system());
        let t = a
            .issue("p", Role::ProviderSystem, Some("phoniro"), Some("559900-0014"), Duration::from_secs(60))
            .expect("issue");
        let c = a.verify(&t).expect("verify");
        assert_eq!((c.provider(), c.system()), (Some("5599000014"), Some("phoniro")));
        assert_eq!((c.iss.as_str(), c.aud.as_str()), (ISSUER, AUDIENCE));
        let other = Auth::new("another-secret-another-secret-xx", Clock::system());
        assert_eq!(other.verify(&t).expect_err("forged").code(), ErrorCode::Unauthenticated);
        assert!(matches!(
            a.issue("p", Role::ProviderSystem, Some("phoniro"), None, Duration::from_secs(1)),
            Err(TokenError::ProviderNeedsOrg)
        ));
        assert!(matches!(
            a.issue("p", Role::Auditor, None, Some("5599000014"), Duration::from_secs(1)),
            Err(TokenError::OrgNotAllowed)
        ));
        assert!(matches!(
            a.issue("c", Role::CaseManagement, None, None, Duration::from_secs(1)),
            Err(TokenError::NeedsSystem("case_management"))
        ));
        assert!(matches!(
            a.issue("a", Role::Admin, Some("combine"), None, Duration::from_secs(1)),
            Err(TokenError::SystemNotAllowed("admin"))
        ));
    }

    /// Signs `claims` as they are, with the right key, for the tests of what `verify` refuses.
    fn forge(claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(KEY.as_bytes())).expect("sign")
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn claims(now: i64) -> serde_json::Value {
        serde_json::json!({
            "sub": "t", "role": "case_management", "sys": "combine", "iat": now, "nbf": now,
            "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE
        })
    }

    #[test]
    fn times_issuer_and_audience_are_checked_against_the_hubs_clock() {
        let clock = Clock::frozen(chrono::DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z").expect("t").into());
        let a = Auth::new(KEY, clock.clone());
        let now = clock.now().timestamp();
        assert!(a.verify(&forge(claims(now))).is_ok());
        // Within the leeway the issuer's clock may run ahead.
        let mut c = claims(now);
        c["iat"] = (now + 20).into();
        c["nbf"] = (now + 20).into();
        assert!(a.verify(&forge(c)).is_ok());
        for (key, value) in [
            ("nbf", serde_json::json!(now + 3600)),
            ("iat", serde_json::json!(now + 3600)),
            ("exp", serde_json::json!(now - 3600)),
            ("aud", serde_json::json!("another-api")),
            ("iss", serde_json::json!("someone-else")),
            ("sys", serde_json::Value::Null),
        ] {
            let mut c = claims(now);
            c[key] = value;
            let e = a.verify(&forge(c)).expect_err(key);
            assert_eq!(e.code(), ErrorCode::Unauthenticated, "{key}");
        }
        for missing in ["aud", "nbf"] {
            let mut c = claims(now);
            c.as_object_mut().expect("object").remove(missing);
            assert!(a.verify(&forge(c)).is_err(), "without {missing}");
        }
    }
}
