//! Signed checkpoints: the hub's word, signed with its Ed25519 key, that its message log had
//! `size` entries whose Merkle tree ([`super::merkle`]) has `root`.
//!
//! The text is a C2SP signed note (<https://c2sp.org/signed-note>) whose body is a C2SP
//! checkpoint (<https://c2sp.org/tlog-checkpoint>):
//!
//! ```text
//! <origin>\n
//! <size, decimal>\n
//! <root hash, standard base64>\n
//! \n
//! — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>\n
//! ```
//!
//! The signature is over the body (the first three lines, each ending in `\n`). The key name
//! is the origin; the key id is the first four bytes of
//! `SHA-256(key name || "\n" || 0x01 || public key)` (0x01: Ed25519), as the signed-note spec
//! says. The line starts with U+2014 (em dash) and a space.

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A checkpoint's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a checkpoint note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the checkpoint is malformed: {0}")]
    Malformed(String),
    #[error("the checkpoint has no signature by key '{0}' with this public key")]
    NoSignature(String),
    #[error("the checkpoint's signature does not verify")]
    BadSignature,
}

impl Checkpoint {
    /// The signed body: origin, size and root, a line each.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// The signed note.
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let sig = key.sign(body.as_bytes());
        let mut blob = key_id(&self.origin, &key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.origin, B64.encode(blob))
    }

    /// Parses a signed note and checks its signature by `key` (the key name is the origin).
    pub fn verify(note: &str, key: &VerifyingKey) -> Result<Checkpoint, NoteError> {
        let bad = |why: &str| NoteError::Malformed(why.to_owned());
        let (body, sigs) = note.split_once("\n\n").ok_or_else(|| bad("no blank line before the signatures"))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("no origin line"))?.to_owned();
        let size = lines.next().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| bad("the size is not a number"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("the root is not 32 bytes in base64"))?;
        let id = key_id(&origin, key);
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(bad("a signature line without its dash"));
            };
            let Some((name, blob)) = rest.split_once(' ') else { return Err(bad("a signature line without a name")) };
            let blob = B64.decode(blob).map_err(|_| bad("a signature that is not base64"))?;
            if name != origin || blob.len() != 68 || blob[..4] != id {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature)?;
            key.verify(body.as_bytes(), &sig).map_err(|_| NoteError::BadSignature)?;
            return Ok(Checkpoint { origin, size, root });
        }
        Err(NoteError::NoSignature(origin))
    }
}

/// The signed-note key id of an Ed25519 key named `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n\x01");
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A signing key from its text form: the 32-byte seed in standard base64 (what
/// `carehub audit keygen` writes).
pub fn signing_key_from_text(text: &str) -> Result<SigningKey, String> {
    let seed: [u8; 32] = B64
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the signing key is not 32 bytes in base64 (write one with carehub audit keygen)")?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A public key from base64.
pub fn verifying_key_from_text(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = B64
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the public key is not 32 bytes in base64")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "the public key is not an Ed25519 point".to_owned())
}

/// A public key's base64 text.
pub fn public_key_text(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_checkpoint_reads_back_and_a_changed_one_does_not() {
        let cp = Checkpoint { origin: "carehub.example/log".into(), size: 42, root: [7; 32] };
        let note = cp.sign(&key(1));
        assert!(note.starts_with(
            "carehub.example/log\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} carehub.example/log "
        ));
        assert_eq!(Checkpoint::verify(&note, &key(1).verifying_key()), Ok(cp));
        assert_eq!(
            Checkpoint::verify(&note.replace("\n42\n", "\n43\n"), &key(1).verifying_key()),
            Err(NoteError::BadSignature)
        );
        assert_eq!(
            Checkpoint::verify(&note, &key(2).verifying_key()),
            Err(NoteError::NoSignature("carehub.example/log".into()))
        );
        assert!(matches!(Checkpoint::verify("nonsense", &key(1).verifying_key()), Err(NoteError::Malformed(_))));
    }

    #[test]
    fn keys_read_from_their_text() {
        let text = B64.encode([9u8; 32]);
        let k = signing_key_from_text(&format!("{text}\n")).expect("key");
        assert_eq!(verifying_key_from_text(&public_key_text(&k.verifying_key())), Ok(k.verifying_key()));
        assert!(signing_key_from_text("c2hvcnQ=").is_err());
    }
}
