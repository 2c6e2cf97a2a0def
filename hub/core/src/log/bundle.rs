//! The export bundle (docs/audit-log.md): a range of the message log with each entry's
//! payload, its inclusion proof and a signed checkpoint, which an auditor verifies with no
//! database and no network.
//!
//! JSON lines: the first line is the [`Header`] (the public key, the signed checkpoint the
//! proofs are against, and earlier checkpoints with consistency proofs to it), every further
//! line one [`BundleEntry`]. [`verify`] checks, streaming:
//! 1. every checkpoint's signature by the public key, and that no two checkpoints of one
//!    size have different roots and every earlier one is consistent with the latest (a fork);
//! 2. every entry's chain hash, recomputed from its fields and payload (or, for an entry
//!    whose payload retention removed, its payload's hash);
//! 3. the chain links between consecutive entries (an entry removed from the middle of the
//!    range breaks them);
//! 4. every entry's inclusion proof (leaf index `seq - 1`, leaf data the 32 bytes of its
//!    chain hash) against the checkpoint's root.

use std::io::BufRead;

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::checkpoint::{verifying_key_from_text, Checkpoint};
use super::merkle::{leaf_hash, verify_consistency, Hash, InclusionVerifier};
use super::{entry_hash, LogEntry};

/// The format's name and version, the header's `format`.
pub const FORMAT: &str = "carehub-audit-bundle/1";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The bundle's first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    /// The hub's Ed25519 public key, base64 (32 bytes).
    pub public_key: String,
    /// The signed checkpoint every entry's proof is against.
    pub checkpoint: String,
    /// Earlier signed checkpoints, each with its consistency proof to `checkpoint`.
    #[serde(default)]
    pub earlier: Vec<Earlier>,
    /// The range asked for (`at` from, to), for the reader.
    pub from: String,
    pub to: String,
}

/// An earlier checkpoint and the proof that the latest extends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Earlier {
    pub checkpoint: String,
    /// Base64 hashes (RFC 9162 `PROOF(m, D[n])`).
    pub consistency: Vec<String>,
}

/// One message-log entry: every field its chain hash covers, as stored, with the payload
/// in base64, and its inclusion proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleEntry {
    pub seq: i64,
    pub at: String,
    pub system: String,
    pub vendor: String,
    pub direction: String,
    pub message_type: String,
    pub content_type: String,
    /// Base64; null once retention removed it.
    pub payload: Option<String>,
    /// The payload's SHA-256, hex, for entries hashed over it (null for older entries).
    #[serde(default)]
    pub payload_sha256: Option<String>,
    pub canonical: Option<String>,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub decision_id: Option<String>,
    pub order_id: Option<String>,
    pub client: Option<String>,
    pub provider: Option<String>,
    pub delivery_key: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// Base64 hashes from the leaf's sibling up (RFC 9162 `PATH`).
    pub proof: Vec<String>,
}

impl BundleEntry {
    pub fn new(e: &LogEntry, proof: &[Hash]) -> BundleEntry {
        BundleEntry {
            seq: e.seq,
            at: super::time::ts(e.at),
            system: e.system.clone(),
            vendor: e.vendor.clone(),
            direction: e.direction.clone(),
            message_type: e.message_type.clone(),
            content_type: e.content_type.clone(),
            payload: (!e.payload_removed).then(|| B64.encode(&e.payload)),
            payload_sha256: e.payload_hash.clone(),
            canonical: e.canonical.clone(),
            status: e.status.as_str().to_owned(),
            error_code: e.error_code.clone(),
            error_message: e.error_message.clone(),
            decision_id: e.decision_id.clone(),
            order_id: e.order_id.clone(),
            client: e.client.clone(),
            provider: e.provider.clone(),
            delivery_key: e.delivery_key.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
            proof: proof.iter().map(|h| B64.encode(h)).collect(),
        }
    }

    /// The entry as the log keeps it; `None` when a field is not in its stored form (or the
    /// payload is gone with no hash in its place).
    fn entry(&self) -> Option<LogEntry> {
        let at = super::time::parse_store_ts(&self.at).filter(|at| super::time::ts(*at) == self.at)?;
        if self.payload.is_none() && self.payload_sha256.is_none() {
            return None;
        }
        Some(LogEntry {
            seq: self.seq,
            at,
            system: self.system.clone(),
            vendor: self.vendor.clone(),
            direction: self.direction.clone(),
            message_type: self.message_type.clone(),
            content_type: self.content_type.clone(),
            payload: match &self.payload {
                Some(p) => B64.decode(p).ok()?,
                None => Vec::new(),
            },
            canonical: self.canonical.clone(),
            status: self.status.parse().ok()?,
            error_code: self.error_code.clone(),
            error_message: self.error_message.clone(),
            decision_id: self.decision_id.clone(),
            order_id: self.order_id.clone(),
            client: self.client.clone(),
            provider: self.provider.clone(),
            delivery_key: self.delivery_key.clone(),
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
            payload_hash: self.payload_sha256.clone(),
            payload_removed: self.payload.is_none(),
        })
    }
}

/// What a bundle that verifies holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    pub entries: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// The checkpoint's tree size and root (base64).
    pub tree_size: u64,
    pub root: String,
    pub earlier: usize,
}

/// Why a bundle does not verify; the message names the line or entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BundleError(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, BundleError> {
    Err(BundleError(msg.into()))
}

fn hashes(list: &[String]) -> Option<Vec<Hash>> {
    list.iter().map(|h| B64.decode(h).ok().and_then(|b| b.try_into().ok())).collect()
}

/// Verifies the checkpoints: each signed by `key`, no two of one size with different
/// roots, each earlier one consistent with the latest.
fn verify_checkpoints(header: &Header, key: &VerifyingKey, known: &[String]) -> Result<Checkpoint, BundleError> {
    let latest = Checkpoint::verify(&header.checkpoint, key).or_else(|e| fail(format!("the checkpoint: {e}")))?;
    let mut seen: Vec<Checkpoint> = vec![latest.clone()];
    let earlier = header.earlier.iter().map(|e| (e.checkpoint.as_str(), Some(&e.consistency)));
    for (i, (note, proof)) in earlier.chain(known.iter().map(|k| (k.as_str(), None))).enumerate() {
        let cp = Checkpoint::verify(note, key).or_else(|e| fail(format!("earlier checkpoint {}: {e}", i + 1)))?;
        if cp.origin != latest.origin {
            return fail(format!("earlier checkpoint {} is of another log ({})", i + 1, cp.origin));
        }
        if let Some(other) = seen.iter().find(|s| s.size == cp.size && s.root != cp.root) {
            return fail(format!(
                "the log forked: two checkpoints of size {} with different roots ({} and {})",
                cp.size,
                B64.encode(other.root),
                B64.encode(cp.root)
            ));
        }
        if cp.size > latest.size {
            return fail(format!("earlier checkpoint {} is larger than the latest", i + 1));
        }
        if let Some(proof) = proof {
            let proof =
                hashes(proof).ok_or_else(|| BundleError(format!("earlier checkpoint {}: a bad proof", i + 1)))?;
            if !verify_consistency(cp.size, latest.size, &cp.root, &latest.root, &proof) {
                return fail(format!(
                    "the log forked: the checkpoint of size {} is not consistent with the latest (size {})",
                    cp.size, latest.size
                ));
            }
        }
        seen.push(cp);
    }
    Ok(latest)
}

/// Verifies a bundle read line by line; `known` are further signed checkpoints the auditor
/// kept (a checkpoint of the same size with another root is a fork).
pub fn verify(reader: impl BufRead, known: &[String]) -> Result<BundleReport, BundleError> {
    let mut lines = reader.lines();
    let header = match lines.next() {
        Some(Ok(l)) => {
            serde_json::from_str::<Header>(&l).or_else(|e| fail(format!("line 1: not a bundle header: {e}")))?
        }
        Some(Err(e)) => return fail(format!("cannot read the bundle: {e}")),
        None => return fail("the bundle is empty"),
    };
    if header.format != FORMAT {
        return fail(format!("line 1: format '{}' is not {FORMAT}", header.format));
    }
    let key = verifying_key_from_text(&header.public_key).or_else(|e| fail(format!("line 1: {e}")))?;
    let cp = verify_checkpoints(&header, &key, known)?;
    let mut report = BundleReport {
        entries: 0,
        first_seq: None,
        last_seq: None,
        tree_size: cp.size,
        root: B64.encode(cp.root),
        earlier: header.earlier.len() + known.len(),
    };
    let mut proofs = InclusionVerifier::new(cp.size, cp.root);
    let mut prev: Option<(i64, String)> = None;
    for (n, line) in lines.enumerate() {
        let line_no = n + 2;
        let line = line.or_else(|e| fail(format!("cannot read line {line_no}: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let b: BundleEntry =
            serde_json::from_str(&line).or_else(|e| fail(format!("line {line_no}: not an entry: {e}")))?;
        let seq = b.seq;
        let Some(entry) = b.entry() else { return fail(format!("entry {seq}: a field is not in its stored form")) };
        if let Some((p_seq, p_hash)) = &prev {
            if seq != p_seq + 1 {
                return fail(format!("entry {seq}: follows entry {p_seq} (an entry between them is missing)"));
            }
            if &entry.prev_hash != p_hash {
                return fail(format!("entry {seq}: its prev_hash is not entry {p_seq}'s hash"));
            }
        }
        if entry_hash(&entry.prev_hash, &entry) != entry.hash {
            return fail(format!("entry {seq}: its content does not match its hash"));
        }
        if !entry.payload_removed
            && entry.payload_hash.as_ref().is_some_and(|h| *h != super::payload_hash(&entry.payload))
        {
            return fail(format!("entry {seq}: its payload does not match its payload hash"));
        }
        let (Ok(raw), Some(proof)) = (hex::decode(&entry.hash), hashes(&b.proof)) else {
            return fail(format!("entry {seq}: a hash is not hex, or a proof is not base64"));
        };
        if seq < 1 || !proofs.verify(&leaf_hash(&raw), (seq - 1) as u64, &proof) {
            return fail(format!("entry {seq}: its inclusion proof does not lead to the checkpoint's root"));
        }
        report.entries += 1;
        report.first_seq.get_or_insert(seq);
        report.last_seq = Some(seq);
        prev = Some((seq, entry.hash));
    }
    Ok(report)
}
