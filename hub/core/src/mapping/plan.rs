//! The compiled plan of an inbound XML mapping: its fields' paths as a tree of element names,
//! which the XML reader (`stream`) follows. The type lives apart from the reader so the
//! file schema (`spec`), which keeps each mapping's plan, and the reader both import it
//! without importing each other; the plan is built, from a mapping's fields, by the reader
//! (`Plan::new` in `stream`), when the file loads.

use encoding_rs::Encoding;

/// An inbound XML mapping's fields as the reader follows them: one tree of element names
/// per frame (the payload element, or an item of a list field), rooted at the frame's own
/// element, with what is read at each node. Built once, when the mapping file loads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Frame 0 is the payload's.
    pub(super) frames: Vec<Vec<Node>>,
    /// The payload element's name, compared as the document holds it.
    pub(super) root: Option<Name>,
    /// The single-byte encoding names are also held in (the vendor's), if any.
    pub(super) single_byte: Option<&'static Encoding>,
}

/// An element or attribute name, as UTF-8 and in the vendor's single-byte encoding (`None`
/// when that cannot write it).
#[derive(Debug, Clone)]
pub(super) struct Name {
    /// As UTF-8, then in the single-byte encoding (empty when that cannot write it: no
    /// name in a document is empty).
    pub(super) forms: [Box<[u8]>; 2],
}

impl Name {
    /// Whether `local`, a name in a document read as `single_byte` or not, is this one.
    /// Lengths and first bytes are compared before the bytes, as most names differ there.
    pub(super) fn is(&self, local: &[u8], single_byte: bool) -> bool {
        let name = &self.forms[usize::from(single_byte)];
        name.len() == local.len() && name.first() == local.first() && same_bytes(name, local)
    }

    pub(super) fn utf8(&self) -> &[u8] {
        &self.forms[0]
    }
}

/// Whether two byte strings of the same length are equal. Names are short: up to sixteen
/// bytes are compared as two overlapping words (or half-words) from each end, in line; a
/// call to `memcmp`, which first sorts out the length, cost more than the comparison (a
/// few percent of a decision file's time, `perf`).
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| s.get(at..at + 8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()));
    let half = |s: &[u8], at: usize| s.get(at..at + 4).map(|w| u32::from_le_bytes(w.try_into().unwrap_or_default()));
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// One element of a frame's tree.
#[derive(Debug, Clone, Default)]
pub(super) struct Node {
    /// Child elements a path continues to: (local name, node).
    pub(super) children: Vec<(Name, usize)>,
    /// Attributes read here: (local name, field).
    pub(super) attrs: Vec<(Name, usize)>,
    /// Fields that take this element's text.
    pub(super) texts: Vec<usize>,
    /// List fields whose items are these elements: (field, the items' frame).
    pub(super) lists: Vec<(usize, usize)>,
}
