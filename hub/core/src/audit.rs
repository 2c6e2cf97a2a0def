//! Proving the message log to someone who does not trust the hub (SPEC §9): signed
//! checkpoints of its Merkle tree, inclusion and consistency proofs, and the export bundle.
//!
//! The pure parts (the tree, the note format, the bundle and its verification) are in
//! [`crate::log`]; this module joins them to a [`Store`]: it reads the leaf hashes, signs
//! and stores checkpoints, and writes bundles. Both `carehub serve` (the background
//! checkpointer, the API) and the `carehub audit` commands use it.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use carehub_model::Clock;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use tokio::sync::{watch, Mutex};

use crate::log::bundle::{BundleEntry, Earlier, Header, FORMAT};
use crate::log::checkpoint::{public_key_text, Checkpoint};
use crate::log::merkle::{leaf_hash, Frontier, Hash, ProofError, Tree};
use crate::store::{CheckpointRecord, LogFilter, Op, Store, StoreError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Leaf hashes read per page.
const PAGE: usize = 100_000;

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// A stored hash that is not 32 bytes of hex, or entries that are not numbered 1, 2, ...
    #[error("the log cannot be read as a tree: {0}")]
    Corrupt(String),
    #[error("no checkpoint yet: {0}")]
    NoCheckpoint(String),
    #[error("cannot write the bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// The Merkle leaf of a chain hash (hex).
fn leaf(seq: i64, hash: &str) -> Result<Hash, AuditError> {
    let raw = hex::decode(hash).map_err(|_| AuditError::Corrupt(format!("entry {seq}'s hash is not hex")))?;
    Ok(leaf_hash(&raw))
}

/// Reads the leaves after `from` (a sequence number) up to `to`, calling `each` on them in
/// order; refuses a gap in the numbering (leaf `i` must be entry `i + 1`).
async fn leaves(store: &dyn Store, from: i64, to: i64, mut each: impl FnMut(Hash)) -> Result<(), AuditError> {
    let mut after = from;
    while after < to {
        let page = store.log_hashes(after, PAGE.min((to - after) as usize)).await?;
        if page.is_empty() {
            break;
        }
        for (seq, hash) in page {
            if seq != after + 1 {
                return Err(AuditError::Corrupt(format!("entry {} is missing", after + 1)));
            }
            each(leaf(seq, &hash)?);
            after = seq;
        }
    }
    if after != to {
        return Err(AuditError::Corrupt(format!("the log ends at {after}, not {to}")));
    }
    Ok(())
}

/// The tree over the first `size` entries.
pub async fn tree(store: &dyn Store, size: i64) -> Result<Tree, AuditError> {
    let mut hashes = Vec::with_capacity(size.max(0) as usize);
    leaves(store, 0, size, |h| hashes.push(h)).await?;
    Ok(Tree::from_leaf_hashes(hashes))
}

/// Signs checkpoints of one log with one key, following the log with a [`Frontier`] so a
/// checkpoint after new entries reads only the new entries' hashes.
pub struct Checkpointer {
    store: Arc<dyn Store>,
    key: SigningKey,
    origin: String,
    clock: Clock,
    frontier: Mutex<Frontier>,
}

impl Checkpointer {
    pub fn new(store: Arc<dyn Store>, key: SigningKey, origin: String, clock: Clock) -> Checkpointer {
        Checkpointer { store, key, origin, clock, frontier: Mutex::new(Frontier::default()) }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn public_key(&self) -> String {
        public_key_text(&self.key.verifying_key())
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Signs and stores a checkpoint of the log as it stands, unless the latest stored one
    /// already covers it; returns the latest checkpoint.
    pub async fn checkpoint(&self) -> Result<Option<CheckpointRecord>, AuditError> {
        let mut frontier = self.frontier.lock().await;
        let size = self.store.log_size().await?;
        let latest = self.store.latest_checkpoint().await?;
        if size == 0 || latest.as_ref().is_some_and(|c| c.size >= size) {
            return Ok(latest);
        }
        let mut grown = frontier.clone();
        leaves(self.store.as_ref(), grown.size() as i64, size, |h| grown.push(h)).await?;
        let cp = Checkpoint { origin: self.origin.clone(), size: size as u64, root: grown.root() };
        let record =
            CheckpointRecord { size, root: hex::encode(cp.root), at: self.clock.now(), note: cp.sign(&self.key) };
        self.store.commit(vec![Op::StoreCheckpoint(record.clone())]).await?;
        *frontier = grown;
        Ok(Some(record))
    }

    /// Checkpoints every `every` while the log grows, until `shutdown` says stop. A failed
    /// round is logged and tried again at the next.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: watch::Receiver<bool>) {
        let lease = crate::delivery::lease::Lease::always(CHECKPOINTER_LEASE);
        self.run_leased(every, lease, shutdown).await;
    }

    /// [`run`](Self::run), checkpointing only while this node holds `lease`
    /// ([`CHECKPOINTER_LEASE`]): one node at a time signs the log's growth. (A checkpoint
    /// made on demand, for a proof, needs no lease: one of a size already stored is kept as
    /// it was.)
    pub async fn run_leased(
        self: Arc<Self>,
        every: Duration,
        mut lease: crate::delivery::lease::Lease,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !lease.wait(&mut shutdown).await {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.checkpoint().await {
                        tracing::warn!(error = %e, "writing a checkpoint failed; trying again");
                    }
                }
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }

    /// The latest checkpoint, made now when there is none that covers entry `seq`.
    pub async fn covering(&self, seq: i64) -> Result<CheckpointRecord, AuditError> {
        match self.store.latest_checkpoint().await? {
            Some(c) if c.size >= seq => Ok(c),
            _ => self
                .checkpoint()
                .await?
                .filter(|c| c.size >= seq)
                .ok_or_else(|| AuditError::NoCheckpoint(format!("the log has no entry {seq}"))),
        }
    }
}

/// The name of the lease the background checkpointer runs under.
pub const CHECKPOINTER_LEASE: &str = "checkpointer";

/// An inclusion proof against a checkpoint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InclusionProof {
    pub seq: i64,
    /// The leaf's index in the tree (`seq - 1`).
    pub leaf_index: u64,
    /// The entry's chain hash (hex): the leaf's data.
    pub hash: String,
    pub tree_size: i64,
    /// Base64 hashes from the leaf's sibling up.
    pub proof: Vec<String>,
    pub checkpoint: String,
}

/// A consistency proof between two checkpoints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsistencyProof {
    pub from_size: i64,
    pub to_size: i64,
    pub from_checkpoint: String,
    pub to_checkpoint: String,
    pub proof: Vec<String>,
}

fn b64(hashes: Vec<Hash>) -> Vec<String> {
    hashes.into_iter().map(|h| B64.encode(h)).collect()
}

/// The proof that entry `seq` is in `checkpoint`.
pub async fn prove_inclusion(
    store: &dyn Store,
    seq: i64,
    checkpoint: &CheckpointRecord,
) -> Result<InclusionProof, AuditError> {
    let tree = tree(store, checkpoint.size).await?;
    let index = (seq.max(1) - 1) as u64;
    let proof = tree.inclusion_proof(index, checkpoint.size as u64)?;
    let hash = store
        .log_hashes(seq - 1, 1)
        .await?
        .into_iter()
        .next()
        .filter(|(s, _)| *s == seq)
        .map(|(_, h)| h)
        .ok_or(ProofError::NoSuchLeaf { index, size: checkpoint.size as u64 })?;
    Ok(InclusionProof {
        seq,
        leaf_index: index,
        hash,
        tree_size: checkpoint.size,
        proof: b64(proof),
        checkpoint: checkpoint.note.clone(),
    })
}

/// The proof that the checkpoint of size `from` is a prefix of `to`.
pub async fn prove_consistency(
    store: &dyn Store,
    from: i64,
    to: &CheckpointRecord,
) -> Result<ConsistencyProof, AuditError> {
    let old = store
        .checkpoint_covering(from)
        .await?
        .filter(|c| c.size == from)
        .ok_or_else(|| AuditError::NoCheckpoint(format!("no checkpoint of size {from} was written")))?;
    let tree = tree(store, to.size).await?;
    let proof = tree.consistency_proof(from as u64, to.size as u64)?;
    Ok(ConsistencyProof {
        from_size: from,
        to_size: to.size,
        from_checkpoint: old.note,
        to_checkpoint: to.note.clone(),
        proof: b64(proof),
    })
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub entries: u64,
    pub tree_size: i64,
}

/// Writes the bundle of the entries appended in `[from, to)` to `out`: the header with the
/// checkpoint (made now when the latest does not cover the log) and the checkpoint that
/// covered the range's last entry first with its consistency proof, then the entries with
/// their payloads and proofs.
pub async fn export(
    checkpointer: &Checkpointer,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    out: &mut (dyn Write + Send),
) -> Result<ExportReport, AuditError> {
    let store = checkpointer.store.as_ref();
    let size = store.log_size().await?;
    let cp = checkpointer.covering(size.max(1)).await?;
    let tree = tree(store, cp.size).await?;
    let mut entries = Vec::new();
    let mut after = 0;
    // Entries are appended in time order, so the range is a run of sequence numbers.
    loop {
        let page = store
            .log_entries(LogFilter {
                since: Some(from),
                until: Some(to),
                after_seq: Some(after),
                limit: 10_000,
                with_payload: false,
                ..LogFilter::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        entries.extend(page.iter().map(|e| e.seq).filter(|s| *s <= cp.size));
    }
    let mut earlier = Vec::new();
    if let Some(&last) = entries.last() {
        if let Some(first_cover) = store.checkpoint_covering(last).await? {
            if first_cover.size < cp.size {
                let proof = tree.consistency_proof(first_cover.size as u64, cp.size as u64)?;
                earlier.push(Earlier { checkpoint: first_cover.note, consistency: b64(proof) });
            }
        }
    }
    let header = Header {
        format: FORMAT.into(),
        public_key: checkpointer.public_key(),
        checkpoint: cp.note.clone(),
        earlier,
        from: crate::log::time::ts(from),
        to: crate::log::time::ts(to),
    };
    let json = |e: serde_json::Error| AuditError::Io(e.into());
    serde_json::to_writer(&mut *out, &header).map_err(json)?;
    out.write_all(b"\n")?;
    let mut written = 0;
    for chunk in entries.chunks(1000) {
        let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
        let page = store
            .log_entries(LogFilter {
                after_seq: Some(first - 1),
                limit: (last - first + 1) as usize,
                with_payload: true,
                ..LogFilter::default()
            })
            .await?;
        for e in page.iter().filter(|e| chunk.binary_search(&e.seq).is_ok()) {
            let proof = tree.inclusion_proof((e.seq - 1) as u64, cp.size as u64)?;
            serde_json::to_writer(&mut *out, &BundleEntry::new(e, &proof)).map_err(json)?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(ExportReport { entries: written, tree_size: cp.size })
}
