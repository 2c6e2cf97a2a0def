//! Secrets in the configuration (API keys, OAuth client secrets, SOAP passwords, the token
//! key): held as [`Secret`], whose `Debug` and `Display` print `**REDACTED**` like a
//! personal identity number's, so a configuration printed in a log or a panic message never
//! carries them. [`Secret::expose`] is the one way to the value.

use serde::{Deserialize, Serialize};

/// A secret value from the configuration.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("**REDACTED**")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("**REDACTED**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s: Secret = serde_json::from_str("\"hunter2-hunter2\"").expect("a string");
        assert_eq!(s.expose(), "hunter2-hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
