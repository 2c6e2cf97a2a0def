//! The Merkle tree over the message log, hashed as RFC 9162 (Certificate Transparency 2.0)
//! §2.1 says, so that an auditor can check one entry's place in a signed checkpoint, or that
//! a later checkpoint extends an earlier one, without the rest of the log.
//!
//! - A leaf is `SHA-256(0x00 || data)`; a node is `SHA-256(0x01 || left || right)`.
//! - The leaf data of the entry with sequence number `seq` is its chain hash (the stored
//!   `hash` column, 32 bytes, not its hex text) at leaf index `seq - 1`. The chain hash
//!   already covers every field of the entry and its predecessor, so the tree is computed
//!   from that column alone, and a proof for an entry checks the entry's fields too once the
//!   verifier recomputes the chain hash from them.
//! - A tree of `n` leaves splits at `k`, the largest power of two below `n`: the root is
//!   `node(MTH(leaves[0..k]), MTH(leaves[k..n]))`.
//!
//! [`Tree`] keeps every level of the tree (built bottom-up, a lone rightmost node carried up
//! unchanged, which gives the same hashes as the RFC's recursive split), so the root of any
//! aligned subtree is one look-up and a proof costs `O(log² n)` hashes at most. The proofs
//! are the RFC's `PATH` (inclusion, §2.1.3.1) and `PROOF`/`SUBPROOF` (consistency,
//! §2.1.4.1); the verifiers are the RFC's §2.1.3.2 and §2.1.4.2 algorithms.

use sha2::{Digest, Sha256};

/// A hash in the tree.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof was not produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    NoSuchLeaf { index: u64, size: u64 },
    #[error("a tree of {old} leaves cannot be proved consistent with one of {new}")]
    BadSizes { old: u64, new: u64 },
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A whole tree over its leaf hashes.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// `levels[0]` are the leaf hashes; `levels[h][i]` covers leaves `i*2^h .. (i+1)*2^h`
    /// (fewer at the right edge).
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over leaves whose hashes (already [`leaf_hash`]ed) are given in order.
    pub fn from_leaf_hashes(leaves: Vec<Hash>) -> Tree {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up: Vec<Hash> = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [lone] => *lone,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(up);
        }
        Tree { levels }
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The root hash (`MTH` of all the leaves).
    pub fn root(&self) -> Hash {
        self.subtree(0, self.size())
    }

    /// The root of the first `size` leaves (an earlier tree's root).
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        (size <= self.size()).then(|| self.subtree(0, size))
    }

    /// `MTH(leaves[start..end])` for a range the RFC's recursion visits: `start` is a
    /// multiple of the largest power of two not above `end - start`.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() {
            let h = n.trailing_zeros() as usize;
            return self.levels[h][(start >> h) as usize];
        }
        let k = split(n);
        node_hash(&self.subtree(start, start + k), &self.subtree(start + k, end))
    }

    /// The inclusion proof of leaf `index` in the first `size` leaves (RFC 9162 `PATH`), from
    /// the leaf's sibling up.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if index >= size || size > self.size() {
            return Err(ProofError::NoSuchLeaf { index, size });
        }
        let mut path = Vec::new();
        self.path(index, 0, size, &mut path);
        Ok(path)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// The consistency proof between the first `old` leaves and the first `new` leaves
    /// (RFC 9162 `PROOF(m, D[n])`).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        if old == 0 || old > new || new > self.size() {
            return Err(ProofError::BadSizes { old, new });
        }
        let mut out = Vec::new();
        if old < new {
            self.subproof(old, 0, new, true, &mut out);
        }
        Ok(out)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): `leaf` (a [`leaf_hash`]) at `index` in a
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Checks many inclusion proofs in one tree, remembering the path of the last proof it
/// accepted, so the proofs of neighbouring leaves (an export's run of entries) stop hashing
/// where they meet that path: a run of `k` leaves costs about `2k` hashes instead of
/// `k log n`. Where a proof meets a node already shown to lead to the root, the rest of the
/// proof must be the siblings that path used above it (compared, not hashed), so the answers
/// are exactly [`verify_inclusion`]'s (tested below).
#[derive(Debug, Clone)]
pub struct InclusionVerifier {
    size: u64,
    root: Hash,
    /// Per level above the leaves, on the last accepted path: the node (its index and
    /// hash) and the sibling hashed into it (none where a lone node was carried up).
    known: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    index: u64,
    node: Hash,
    sibling: Option<Hash>,
}

impl InclusionVerifier {
    pub fn new(size: u64, root: Hash) -> InclusionVerifier {
        InclusionVerifier { size, root, known: Vec::new() }
    }

    /// Whether `proof` shows `leaf` at `index` in the tree.
    pub fn verify(&mut self, leaf: &Hash, index: u64, proof: &[Hash]) -> bool {
        if index >= self.size {
            return false;
        }
        // The tree bottom-up: at each level a node pairs with its sibling when it has one
        // and is carried up unchanged when it is the lone rightmost node (RFC 9162's split).
        let (mut idx, mut width, mut r) = (index, self.size, *leaf);
        let mut rest = proof;
        let mut path: Vec<Step> = Vec::new();
        while width > 1 {
            let sibling = if idx & 1 == 1 || idx + 1 < width {
                let Some((p, more)) = rest.split_first() else { return false };
                rest = more;
                r = if idx & 1 == 1 { node_hash(p, &r) } else { node_hash(&r, p) };
                Some(*p)
            } else {
                None
            };
            idx >>= 1;
            width = width.div_ceil(2);
            let step = Step { index: idx, node: r, sibling };
            let level = path.len();
            path.push(step);
            if self.known.get(level).is_some_and(|k| k.index == step.index && k.node == step.node) {
                // Met the last accepted path: above here the proof must be its siblings.
                let above = self.known[level + 1..].iter().filter_map(|k| k.sibling);
                if !above.eq(rest.iter().copied()) {
                    return false;
                }
                self.known[..=level].copy_from_slice(&path);
                return true;
            }
        }
        if !rest.is_empty() || r != self.root {
            return false;
        }
        self.known = path;
        true
    }
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2) that the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *old_root && sr == *new_root
}

/// The root of a growing tree, kept as the roots of its perfect subtrees (the "frontier"):
/// appending a leaf costs `O(log n)` and memory is `O(log n)`, so the hub's checkpointer
/// follows the log without keeping it.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// (height, root) of the perfect subtrees, largest (leftmost) first.
    peaks: Vec<(u32, Hash)>,
    size: u64,
}

impl Frontier {
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, left)) = self.peaks.last() {
            if h != node.0 {
                break;
            }
            self.peaks.pop();
            node = (h + 1, node_hash(&left, &node.1));
        }
        self.peaks.push(node);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root: the peaks folded from the right (smaller subtrees hang to the right).
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(&(_, mut acc)) = it.next() else { return empty_root() };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162's definitions, written as plainly as the RFC states them.
    mod reference {
        use super::super::{empty_root, leaf_hash, node_hash, split, Hash};

        pub fn mth(d: &[Vec<u8>]) -> Hash {
            match d.len() {
                0 => empty_root(),
                1 => leaf_hash(&d[0]),
                n => {
                    let k = split(n as u64) as usize;
                    node_hash(&mth(&d[..k]), &mth(&d[k..]))
                }
            }
        }

        pub fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
            let n = d.len();
            if n <= 1 {
                return vec![];
            }
            let k = split(n as u64) as usize;
            if m < k {
                let mut p = path(m, &d[..k]);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = path(m - k, &d[k..]);
                p.push(mth(&d[..k]));
                p
            }
        }

        pub fn proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
            subproof(m, d, true)
        }

        fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = split(n as u64) as usize;
            if m <= k {
                let mut p = subproof(m, &d[..k], b);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = subproof(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
                p
            }
        }
    }

    fn data(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    fn tree(d: &[Vec<u8>]) -> Tree {
        Tree::from_leaf_hashes(d.iter().map(|x| leaf_hash(x)).collect())
    }

    #[test]
    fn roots_and_proofs_match_the_rfcs_recursive_definitions_for_every_size_up_to_70() {
        for n in 1..=70 {
            let d = data(n);
            let t = tree(&d);
            assert_eq!(t.root(), reference::mth(&d), "root of {n}");
            let mut f = Frontier::default();
            for x in &d {
                f.push(leaf_hash(x));
            }
            assert_eq!(f.root(), t.root(), "frontier root of {n}");
            for m in 0..n {
                let p = t.inclusion_proof(m as u64, n as u64).expect("proof");
                assert_eq!(p, reference::path(m, &d), "path {m} of {n}");
                assert!(verify_inclusion(&leaf_hash(&d[m]), m as u64, n as u64, &p, &t.root()), "{m} in {n}");
                assert!(!verify_inclusion(&leaf_hash(b"other"), m as u64, n as u64, &p, &t.root()));
                if n > 1 {
                    assert!(!verify_inclusion(&leaf_hash(&d[m]), ((m + 1) % n) as u64, n as u64, &p, &t.root()));
                }
            }
            for m in 1..=n {
                let p = t.consistency_proof(m as u64, n as u64).expect("proof");
                assert_eq!(p, reference::proof(m, &d), "consistency {m} -> {n}");
                let old_root = reference::mth(&d[..m]);
                assert_eq!(t.root_at(m as u64), Some(old_root));
                assert!(verify_consistency(m as u64, n as u64, &old_root, &t.root(), &p), "{m} -> {n}");
                let forged = reference::mth(&data(m + 1)[1..]);
                assert!(!verify_consistency(m as u64, n as u64, &forged, &t.root(), &p), "forged {m} -> {n}");
            }
        }
    }

    /// The remembering verifier answers as the RFC's algorithm does, for good proofs, proofs
    /// of another leaf, and proofs with a hash changed, in order and out of order.
    #[test]
    fn the_remembering_verifier_agrees_with_the_rfcs_algorithm() {
        for n in 1..=40usize {
            let d = data(n);
            let t = tree(&d);
            let mut v = InclusionVerifier::new(n as u64, t.root());
            let order: Vec<usize> = (0..n).chain((0..n).rev()).chain((0..n).step_by(3)).collect();
            for m in order {
                let p = t.inclusion_proof(m as u64, n as u64).expect("proof");
                let leaf = leaf_hash(&d[m]);
                assert!(v.verify(&leaf, m as u64, &p), "{m} of {n}");
                assert!(!v.verify(&leaf_hash(b"changed"), m as u64, &p), "a changed leaf {m} of {n}");
                for i in 0..p.len() {
                    let mut bad = p.clone();
                    bad[i][0] ^= 1;
                    assert_eq!(
                        v.verify(&leaf, m as u64, &bad),
                        verify_inclusion(&leaf, m as u64, n as u64, &bad, &t.root()),
                        "hash {i} of the proof of {m} in {n} changed"
                    );
                }
                assert!(!v.verify(&leaf, n as u64, &p));
            }
            let mut fresh = InclusionVerifier::new(n as u64, [0; 32]);
            assert!(!fresh.verify(&leaf_hash(&d[0]), 0, &t.inclusion_proof(0, n as u64).expect("proof")), "{n}");
        }
    }

    #[test]
    fn proofs_within_a_larger_tree_are_those_of_its_prefix() {
        let d = data(100);
        let t = tree(&d);
        for n in [1usize, 2, 7, 64, 65, 99] {
            let prefix = tree(&d[..n]);
            assert_eq!(t.root_at(n as u64), Some(prefix.root()));
            for m in [0, n / 2, n - 1] {
                assert_eq!(t.inclusion_proof(m as u64, n as u64), prefix.inclusion_proof(m as u64, n as u64));
            }
            assert_eq!(t.consistency_proof(1, n as u64), prefix.consistency_proof(1, n as u64));
        }
    }

    /// Vectors derived by hand from the definitions: the empty tree is SHA-256 of nothing
    /// (the RFC's MTH({})), one leaf is its leaf hash, and three leaves are
    /// node(node(l0, l1), l2), whose path for leaf 2 is [node(l0, l1)].
    #[test]
    fn known_vectors() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "SHA-256 of the single byte 0x00"
        );
        let d = data(3);
        let l: Vec<Hash> = d.iter().map(|x| leaf_hash(x)).collect();
        let t = tree(&d);
        assert_eq!(t.root(), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(t.inclusion_proof(2, 3), Ok(vec![node_hash(&l[0], &l[1])]));
        assert_eq!(t.consistency_proof(2, 3), Ok(vec![l[2]]));
    }

    #[test]
    fn impossible_proofs_are_refused() {
        let t = tree(&data(5));
        assert_eq!(t.inclusion_proof(5, 5), Err(ProofError::NoSuchLeaf { index: 5, size: 5 }));
        assert_eq!(t.inclusion_proof(0, 6), Err(ProofError::NoSuchLeaf { index: 0, size: 6 }));
        assert_eq!(t.consistency_proof(0, 5), Err(ProofError::BadSizes { old: 0, new: 5 }));
        assert_eq!(t.consistency_proof(4, 6), Err(ProofError::BadSizes { old: 4, new: 6 }));
        assert_eq!(Tree::default().root(), empty_root());
    }
}
