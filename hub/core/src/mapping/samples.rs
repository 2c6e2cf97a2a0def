//! The samples a mapping file carries, run: each inbound sample translated to its typed
//! message and compared with its canonical JSON (or refused with its code), each outbound
//! one rendered and compared with its payload. One test runs every file's samples.

use std::fmt;

use carehub_model::{ErrorCode, ValidationError};
use serde_json::Value;

use super::{text, xml, Direction, Format, Mapping, MappingSet, Sample};

/// A sample that did not translate as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleFailure {
    pub mapping: String,
    pub sample: String,
    pub reason: String,
}

impl fmt::Display for SampleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {}: {}", self.mapping, self.sample, self.reason)
    }
}

impl MappingSet {
    /// Runs every sample of every mapping; returns what failed (nothing, when all is well).
    pub fn run_samples(&self) -> (usize, Vec<SampleFailure>) {
        let mut count = 0;
        let mut failures = Vec::new();
        for m in &self.mappings {
            for s in &m.samples {
                count += 1;
                if let Err(reason) = self.run_sample(m, s) {
                    failures.push(SampleFailure { mapping: m.name.to_string(), sample: s.name.clone(), reason });
                }
            }
        }
        (count, failures)
    }

    fn run_sample(&self, m: &Mapping, s: &Sample) -> Result<(), String> {
        match m.direction {
            Direction::In => {
                // The path messages take, to the typed message; compared as the typed
                // message's own JSON: the canonical form after normalisation (12-digit
                // personal identity numbers and so on).
                let result = self.translate(&s.vendor).map_err(|(_, e)| e).and_then(|t| {
                    if t.mapping != m.name {
                        return Err(ValidationError::new(
                            ErrorCode::UnknownMessageType,
                            format!("recognised as {} instead", t.mapping),
                        ));
                    }
                    Ok(serde_json::to_value(&t.message).unwrap_or(Value::Null))
                });
                match (result, &s.error, &s.canonical) {
                    (Ok(got), None, Some(want)) => {
                        let want: Value =
                            serde_json::from_str(want).map_err(|e| format!("its canonical is not JSON: {e}"))?;
                        if got == want {
                            Ok(())
                        } else {
                            Err(format!("canonical differs:\n  got  {got}\n  want {want}"))
                        }
                    }
                    (Ok(got), Some(code), _) => Err(format!("expected {code}, got canonical {got}")),
                    (Err(e), Some(code), _) if e.code.as_str() == code => Ok(()),
                    (Err(e), _, _) => Err(format!("refused: {e}")),
                    (Ok(_), None, None) => Err("a sample needs `canonical` or `error`".into()),
                }
            }
            Direction::Out => {
                let want = s.canonical.as_deref().ok_or("an outbound sample needs `canonical`")?;
                let context: Value =
                    serde_json::from_str(want).map_err(|e| format!("its canonical is not JSON: {e}"))?;
                let rendered = self.encode(m.message, &context).map_err(|e| format!("cannot render: {e}"))?;
                let enc = m.encoding.as_deref().and_then(text::encoding).unwrap_or(encoding_rs::UTF_8);
                let got = text::decode(&rendered.body, enc).map_err(|e| format!("rendered text: {e}"))?.into_owned();
                let same = match m.format {
                    Format::Xml => {
                        let a = xml::parse(&got).map_err(|e| format!("rendered XML does not parse: {e}"))?;
                        let b = xml::parse(&s.vendor).map_err(|e| format!("sample XML does not parse: {e}"))?;
                        a.same_as(&b)
                    }
                    Format::Json => {
                        let a: Value = serde_json::from_str(&got).map_err(|e| e.to_string())?;
                        let b: Value =
                            serde_json::from_str(&s.vendor).map_err(|e| format!("sample JSON does not parse: {e}"))?;
                        a == b
                    }
                    // The text itself is the contract (column order, quoting); only line
                    // endings differ, as a sample is written with LF and the file has CRLF.
                    Format::Csv => {
                        let normal = |t: &str| t.replace("\r\n", "\n").trim_end_matches('\n').to_owned();
                        normal(&got) == normal(&s.vendor)
                    }
                };
                if same {
                    Ok(())
                } else {
                    Err(format!("rendered payload differs:\n  got  {got}\n  want {}", s.vendor.trim()))
                }
            }
        }
    }
}
