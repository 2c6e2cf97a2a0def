//! Inbound XML without a tree: the mapping's paths, compiled into a tree of element names
//! when the file loads (`plan`), followed by the reader's events as they come.
//!
//! This is the hot path of every XML message the hub receives (a decision file from
//! Procapita, a SOAP call from Treserva), so it builds nothing it does not keep: an element
//! costs a look-up among the names the mapping expects below the elements open around it,
//! only the attributes and text a field asks for are read, and values stay borrowed from
//! the payload until they are written into the canonical JSON. It keeps the rules of
//! [`super::xml::parse`]: a DTD is refused, nesting is capped, the whole document must be
//! well-formed (a problem anywhere wins over a mapping error), entity references must be
//! known, attributes are not repeated where they are read, the payload's namespace must be
//! the mapping's (any prefix), a SOAP 1.1 envelope holds exactly one payload element, and a
//! field takes the first match in document order.
//!
//! A document in a single-byte encoding (Procapita's ISO-8859-1) is read as it is, not
//! converted to UTF-8 first: the plan holds its names in that encoding as well, and only the
//! values a field takes are decoded. Besides the copy it saves, the reader is markedly
//! faster on single-byte text than on the same text with two-byte characters
//! (BENCHMARKS.md).

use std::borrow::Cow;

use carehub_model::{ErrorCode, ValidationError};
use encoding_rs::Encoding;
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use quick_xml::utils::is_whitespace;

use super::text::SingleByte;

use super::canonical::Canon;
use super::decode::{put_field, Found};
use super::plan::{Name, Node, Plan};
use super::xml::MAX_DEPTH;
use super::{Direction, EnvelopeKind, Field, Format, Mapping, MappingSet, SOAP11};

fn malformed(reason: impl Into<String>) -> ValidationError {
    ValidationError::new(ErrorCode::MalformedPayload, reason)
}

/// `part` as a slice of `doc` when it lies inside it: the reader hands out names, text and
/// attribute values borrowed from the document (an attribute's through the element that
/// holds it, so with a shorter lifetime); found in the document, they are kept without a
/// copy.
fn in_doc(doc: &[u8], part: &[u8]) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(doc.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= doc.len()).then_some(start..end)
}

/// The document being read: UTF-8 text, or bytes in a single-byte encoding.
#[derive(Clone, Copy)]
pub(crate) enum Doc<'a> {
    Text(&'a str),
    /// ASCII-compatible and single-byte (`Encoding::is_single_byte`), so markup is the
    /// same bytes as in UTF-8 and a value is decoded on its own.
    SingleByte(&'a [u8], &'a SingleByte),
}

impl<'a> Doc<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            Doc::Text(s) => s.as_bytes(),
            Doc::SingleByte(b, _) => b,
        }
    }

    /// Text the document holds (a name, an attribute value, text) as UTF-8, borrowed
    /// where it can be: UTF-8 as it is, a single-byte text that is ASCII as it is.
    fn decode(self, raw: &[u8]) -> Result<Cow<'a, str>, ValidationError> {
        let range = in_doc(self.bytes(), raw);
        match self {
            Doc::Text(s) => match range.and_then(|r| s.get(r)) {
                Some(t) => Ok(Cow::Borrowed(t)),
                None => std::str::from_utf8(raw)
                    .map(|t| Cow::Owned(t.to_owned()))
                    .map_err(|_| malformed("text that is not UTF-8")),
            },
            Doc::SingleByte(bytes, table) => {
                if let Some(t) = range.and_then(|r| ascii_str(&bytes[r])) {
                    return Ok(Cow::Borrowed(t));
                }
                table
                    .decode(raw)
                    .map(Cow::Owned)
                    .ok_or_else(|| malformed(format!("text that is not {}", table.encoding.name())))
            }
        }
    }

    /// [`Doc::decode`], with entity references replaced.
    fn text(self, raw: &[u8]) -> Result<Cow<'a, str>, ValidationError> {
        if plain_ascii(raw) {
            return Ok(self.ascii(raw));
        }
        let decoded = self.decode(raw)?;
        // `&` is the same byte in every encoding read here.
        if !raw.contains(&b'&') {
            return Ok(decoded);
        }
        let unescaped = quick_xml::escape::unescape(&decoded)
            .map_err(|e| malformed(format!("bad text or entity reference: {e}")))?
            .into_owned();
        Ok(Cow::Owned(unescaped))
    }

    /// [`Doc::text`], trimmed; `None` when nothing is left. The common value, ASCII without
    /// an entity reference, takes one pass over its bytes and stays borrowed.
    fn value(self, raw: &[u8]) -> Result<Option<Cow<'a, str>>, ValidationError> {
        if !plain_ascii(raw) {
            return Ok(trimmed(self.text(raw)?));
        }
        // What `str::trim` removes from ASCII text; mostly the ends tell there is none.
        let space = |b: &u8| matches!(b, b' ' | b'\t'..=b'\r');
        let raw = match (raw.first(), raw.last()) {
            (Some(first), Some(last)) if !space(first) && !space(last) => raw,
            _ => {
                let start = raw.iter().position(|b| !space(b)).unwrap_or(raw.len());
                let end = raw.iter().rposition(|b| !space(b)).map_or(start, |e| e + 1);
                &raw[start..end]
            }
        };
        if raw.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.ascii(raw)))
    }

    /// ASCII text (the caller checked), borrowed from the document where it lies in it.
    fn ascii(self, raw: &[u8]) -> Cow<'a, str> {
        let borrowed = match (self, in_doc(self.bytes(), raw)) {
            (Doc::Text(s), Some(r)) => s.get(r),
            (Doc::SingleByte(bytes, _), Some(r)) => ascii_str(&bytes[r]),
            (_, None) => None,
        };
        match borrowed {
            Some(t) => Cow::Borrowed(t),
            // ASCII, so nothing is lost.
            None => Cow::Owned(String::from_utf8_lossy(raw).into_owned()),
        }
    }
}

/// ASCII bytes as text, without the UTF-8 validation `str::from_utf8` would run again on
/// them: a value of a single-byte document is mostly ASCII, and is checked as such (eight
/// bytes at a time) before it is borrowed. This is the workspace's one `unsafe` block; the
/// check it relies on is the line above it.
#[allow(unsafe_code)]
fn ascii_str(bytes: &[u8]) -> Option<&str> {
    if !bytes.is_ascii() {
        return None;
    }
    // SAFETY: every byte is below 0x80, and a sequence of such bytes is valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// Whether `bytes` are ASCII without `&` (no character to decode, no entity reference to
/// replace): eight bytes at a time, with the word tricks of the JSON writer's escape check.
fn plain_ascii(bytes: &[u8]) -> bool {
    let (words, rest) = bytes.as_chunks::<8>();
    let mut bad = 0;
    for word in words {
        let w = u64::from_le_bytes(*word);
        let amp = w ^ (ONES * u64::from(b'&'));
        bad |= w | (amp.wrapping_sub(ONES) & !amp);
    }
    bad & HIGHS == 0 && rest.iter().all(|&b| b.is_ascii() && b != b'&')
}

/// The local part of a (possibly prefixed) name.
fn local_part(name: &[u8]) -> &[u8] {
    match find_first(name, 0, |w| eq_mask(w, b':'), |b| b == b':') {
        at if at < name.len() => &name[at + 1..],
        _ => name,
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `word` equal to `b`, as their high bits. A byte after the first such one
/// may be marked too (a borrow carries into it), which a search for the first ignores.
#[inline(always)]
fn eq_mask(word: u64, b: u8) -> u64 {
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The first position from `at` in `buf` of a byte `hit` takes (`buf.len()` if none):
/// eight bytes at a time while there are eight, `hits` marking a word's bytes as
/// [`eq_mask`] does, then byte by byte. Names and values in tags are searched this way.
#[inline(always)]
fn find_first(buf: &[u8], mut at: usize, hits: impl Fn(u64) -> u64, hit: impl Fn(u8) -> bool) -> usize {
    while let Some(word) = buf.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
        let marked = hits(u64::from_le_bytes(word));
        if marked != 0 {
            return at + (marked.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while buf.get(at).is_some_and(|&b| !hit(b)) {
        at += 1;
    }
    at.min(buf.len())
}

/// An element's attributes as the reader's own iterator reads them (quick-xml's
/// `Attributes` in XML mode, without its check for repeated names): the same pairs, and the
/// same first error at the same offset. Its iterator, general over HTML forms, error
/// recovery and owned values, took more time than the rest of an attribute's handling;
/// this is a loop over the tag's bytes. Held to the reader's behaviour by a test that runs
/// both over every short tag of the bytes that matter.
/// One attribute read: its name and raw value, or the reader's error.
type AttrRead<'e> = Result<(&'e [u8], &'e [u8]), AttrError>;

struct AttrScan<'e> {
    /// The tag's content: the name, then the attributes.
    buf: &'e [u8],
    /// Where the next attribute is looked for.
    at: usize,
}

impl<'e> AttrScan<'e> {
    fn new(e: &'e BytesStart<'_>) -> Self {
        AttrScan { buf: e, at: e.name().as_ref().len() }
    }

    /// The first position from `i` that is not XML white space (as the reader tells it).
    fn skip_space(&self, mut i: usize) -> usize {
        while self.buf.get(i).is_some_and(|&b| is_whitespace(b)) {
            i += 1;
        }
        i
    }

    fn stop(&mut self, e: AttrError) -> Option<AttrRead<'e>> {
        self.at = self.buf.len();
        Some(Err(e))
    }
}

impl<'e> Iterator for AttrScan<'e> {
    /// The name and the raw value (between its quotes).
    type Item = AttrRead<'e>;

    fn next(&mut self) -> Option<Self::Item> {
        let buf = self.buf;
        let start = self.skip_space(self.at);
        if start >= buf.len() {
            self.at = buf.len();
            return None;
        }
        // A name is at least its first byte, whatever that is (as the reader has it).
        let end = find_first(
            buf,
            start + 1,
            |w| eq_mask(w, b'=') | eq_mask(w, b' ') | eq_mask(w, b'\t') | eq_mask(w, b'\n') | eq_mask(w, b'\r'),
            |b| b == b'=' || is_whitespace(b),
        );
        let eq = match buf.get(end) {
            Some(b'=') => end,
            _ => match self.skip_space(end) {
                at if buf.get(at) == Some(&b'=') => at,
                at => return self.stop(AttrError::ExpectedEq(at.min(buf.len()))),
            },
        };
        let open = self.skip_space(eq + 1);
        let quote = match buf.get(open) {
            Some(&q @ (b'"' | b'\'')) => q,
            Some(_) => return self.stop(AttrError::UnquotedValue(open)),
            None => return self.stop(AttrError::ExpectedValue(buf.len())),
        };
        let from = open + 1;
        match find_first(buf, from, |w| eq_mask(w, quote), |b| b == quote) {
            close if close < buf.len() => {
                self.at = close + 1;
                Some(Ok((&buf[start..end], &buf[from..close])))
            }
            _ => self.stop(AttrError::ExpectedQuote(buf.len(), quote)),
        }
    }
}

/// Calls `f` with each of an element's attributes, name and raw value (entity references
/// not yet replaced), checked. Repeated attributes make a document ill-formed; an element
/// has a few, so each name is compared with those before it, without the set the reader's
/// own check allocates per element. An element with more is checked by the reader.
fn each_attribute<'e>(
    e: &'e BytesStart<'_>,
    mut f: impl FnMut(&'e [u8], &'e [u8]) -> Result<(), ValidationError>,
) -> Result<(), ValidationError> {
    let mut seen: [&[u8]; 8] = [b""; 8];
    for (n, attr) in AttrScan::new(e).enumerate() {
        let (key, value) = attr.map_err(|err| malformed(format!("bad attribute: {err}")))?;
        if n < seen.len() {
            if seen[..n].contains(&key) {
                return Err(malformed(format!("bad attribute: the attribute at position {} is repeated", n + 1)));
            }
            seen[n] = key;
        } else if n == seen.len() {
            for a in e.attributes() {
                a.map_err(|err| malformed(format!("bad attribute: {err}")))?;
            }
        }
        f(key, value)?;
    }
    Ok(())
}

/// Whether an attribute name declares a namespace (`xmlns`, `xmlns:p`).
fn declares_namespace(key: &[u8]) -> bool {
    key.strip_prefix(b"xmlns").is_some_and(|rest| rest.is_empty() || rest[0] == b':')
}

// ---------------------------------------------------------------------------------------
// Building the plan (the type is `plan`'s)

impl Plan {
    /// `single_byte`: the encoding the vendor's documents are in, when it is a single-byte
    /// one.
    pub(crate) fn new(root: Option<&str>, fields: &[Field], single_byte: Option<&'static Encoding>) -> Plan {
        let mut plan = Plan { frames: Vec::new(), root: None, single_byte };
        plan.root = root.map(|r| plan.name(r));
        plan.add_frame(fields);
        plan
    }

    fn name(&self, name: &str) -> Name {
        let single_byte = self.single_byte.and_then(|enc| {
            let (bytes, _, unmappable) = enc.encode(name);
            (!unmappable).then(|| bytes.into_owned().into_boxed_slice())
        });
        Name { forms: [name.as_bytes().into(), single_byte.unwrap_or_default()] }
    }

    fn add_frame(&mut self, fields: &[Field]) -> usize {
        let frame = self.frames.len();
        self.frames.push(vec![Node::default()]);
        for (k, f) in fields.iter().enumerate() {
            if f.canonical.is_none() {
                continue;
            }
            if !f.fields.is_empty() {
                // A list's items are elements below the frame's, never the element itself.
                if !f.compiled.elems.is_empty() {
                    let node = self.node(frame, &f.compiled.elems);
                    let items = self.add_frame(&f.fields);
                    self.frames[frame][node].lists.push((k, items));
                }
            } else if f.vendor.is_some() {
                let node = self.node(frame, &f.compiled.elems);
                match &f.compiled.attr {
                    Some(a) => {
                        let name = self.name(a);
                        self.frames[frame][node].attrs.push((name, k));
                    }
                    None => self.frames[frame][node].texts.push(k),
                }
            }
        }
        frame
    }

    /// The node at `names` below the frame's element, made as needed.
    fn node(&mut self, frame: usize, names: &[String]) -> usize {
        let mut at = 0;
        for name in names {
            let found = self.frames[frame][at].children.iter().find(|(n, _)| n.utf8() == name.as_bytes());
            at = match found {
                Some((_, child)) => *child,
                None => {
                    let name = self.name(name);
                    let nodes = &mut self.frames[frame];
                    nodes.push(Node::default());
                    let child = nodes.len() - 1;
                    nodes[at].children.push((name, child));
                    child
                }
            };
        }
        at
    }
}

// ---------------------------------------------------------------------------------------
// The walk

/// A walk's stacks, kept per thread from one document to the next: emptied, they hold no
/// borrowed value, and the next walk takes them over with their capacity, so a document
/// costs no allocation for them and finds their memory warm.
struct Scratch {
    decls: Vec<(usize, Cow<'static, str>, Cow<'static, str>)>,
    frames: Vec<Frame<'static>>,
    slots: Vec<Option<Cow<'static, str>>>,
    cursors: Vec<(usize, usize)>,
    marks: Vec<usize>,
    wanted: Vec<(usize, usize, usize)>,
    texts: Vec<(usize, Text<'static>)>,
    items: Vec<(usize, Canon<'static>)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Scratch>> = const { std::cell::Cell::new(None) };
}

/// An emptied vector as one of another element type of the same size and alignment,
/// keeping its allocation (std collects such a mapping in place).
fn recycled<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

fn emptied<T>(mut v: Vec<T>) -> Vec<T> {
    v.clear();
    v
}

impl Scratch {
    /// Room for a typical message, so the stacks do not grow on the way.
    fn new() -> Scratch {
        Scratch {
            decls: Vec::with_capacity(4),
            frames: Vec::with_capacity(8),
            slots: Vec::with_capacity(64),
            cursors: Vec::with_capacity(32),
            marks: Vec::with_capacity(32),
            wanted: Vec::with_capacity(8),
            texts: Vec::with_capacity(8),
            items: Vec::with_capacity(16),
        }
    }

    /// The stacks of indices borrow nothing and move as they are; those that may hold
    /// borrowed values are emptied into their walk's lifetime.
    fn lend<'a>(self, w: &mut Walker<'a>) {
        w.decls = recycled(self.decls);
        w.frames = recycled(self.frames);
        w.slots = recycled(self.slots);
        w.cursors = self.cursors;
        w.marks = self.marks;
        w.wanted = self.wanted;
        w.texts = recycled(self.texts);
        w.items = recycled(self.items);
    }

    /// Whether the stacks are of a size worth keeping: a document nested far deeper than
    /// messages are leaves them to be freed rather than held by the thread.
    fn modest(&self) -> bool {
        self.frames.capacity() <= 256
            && self.slots.capacity() <= 4096
            && self.cursors.capacity() <= 4096
            && self.items.capacity() <= 4096
    }

    fn keep(w: &mut Walker<'_>) -> Scratch {
        Scratch {
            decls: recycled(std::mem::take(&mut w.decls)),
            frames: recycled(std::mem::take(&mut w.frames)),
            slots: recycled(std::mem::take(&mut w.slots)),
            cursors: emptied(std::mem::take(&mut w.cursors)),
            marks: emptied(std::mem::take(&mut w.marks)),
            wanted: emptied(std::mem::take(&mut w.wanted)),
            texts: recycled(std::mem::take(&mut w.texts)),
            items: recycled(std::mem::take(&mut w.items)),
        }
    }
}

/// The fields being filled for one element: the payload, or one item of a list.
struct Frame<'a> {
    fields: &'a [Field],
    /// Its tree in the plan.
    nodes: &'a [Node],
    /// Depth of the frame's element.
    depth: usize,
    /// Where its fields' values start in [`Walker::slots`].
    slots: usize,
    /// Where its list fields' items start in [`Walker::items`].
    items: usize,
    /// For an item: the field of its list, in the frame below it.
    list: Option<usize>,
}

/// Where the reader is in the document.
enum Phase<'a> {
    /// Before the document's root element.
    Start,
    /// Inside a SOAP envelope (depth 1), before or after its Body.
    Envelope { body_seen: bool },
    /// Inside the SOAP Body (depth 2), before its payload element.
    Body { payload_seen: bool },
    /// Inside the payload, filling frames.
    Payload { mapping: &'a Mapping, enveloped: bool, root_depth: usize },
    /// After the payload (or while skipping a document no mapping reads).
    Done,
}

/// The text of an element a field wants, as it comes: usually one piece, kept borrowed;
/// a piece after the first is appended to an owned copy. (One `Option`, which a push onto
/// the stack writes whole: an enum with an empty case was written in part and read back
/// in wider loads, which stalls.)
struct Text<'a>(Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    fn push(&mut self, piece: Cow<'a, str>) {
        self.0 = Some(match self.0.take() {
            None => piece,
            Some(first) => {
                let mut all = first.into_owned();
                all.push_str(&piece);
                Cow::Owned(all)
            }
        });
    }

    /// Trimmed; `None` when empty.
    fn value(self) -> Option<Cow<'a, str>> {
        self.0.and_then(trimmed)
    }
}

/// A value trimmed, still borrowed if it was; `None` when nothing is left.
fn trimmed(value: Cow<'_, str>) -> Option<Cow<'_, str>> {
    // Mostly there is nothing to trim, which the first and last bytes tell (a byte from
    // 0x80 on may begin or end a white space character beyond ASCII).
    let kept = |b: &u8| b.is_ascii_graphic();
    if value.as_bytes().first().is_some_and(kept) && value.as_bytes().last().is_some_and(kept) {
        return Some(value);
    }
    let value = match value {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
    };
    (!value.is_empty()).then_some(value)
}

struct Walker<'a> {
    doc: Doc<'a>,
    /// The document is in the plans' single-byte encoding.
    single_byte: bool,
    set: &'a MappingSet,
    depth: usize,
    root_done: bool,
    phase: Phase<'a>,
    /// The plan of the mapping reading the payload, once it is known: its frames' trees.
    plan: &'a [Vec<Node>],
    /// xmlns declarations in scope before the payload: (depth, prefix, uri).
    decls: Vec<(usize, Cow<'a, str>, Cow<'a, str>)>,
    frames: Vec<Frame<'a>>,
    /// The fields' values, frame after frame.
    slots: Vec<Option<Cow<'a, str>>>,
    /// Per open element (from the payload on), the plan nodes it is at: `marks[i]` is
    /// where the cursors of the element at depth `i + 1` start.
    cursors: Vec<(usize, usize)>, // (frame, node)
    marks: Vec<usize>,
    /// Text wanted by fields: (depth, frame, field), and per depth the text so far.
    wanted: Vec<(usize, usize, usize)>,
    texts: Vec<(usize, Text<'a>)>,
    /// Finished items of list fields, (field, item), for the frames still open: a frame's
    /// own are those above its mark when it closes (an item's own items were taken when
    /// it closed), so each list is made once, at its final size.
    items: Vec<(usize, Canon<'a>)>,
    /// The first mapping problem; a well-formedness problem found later wins over it.
    problem: Option<ValidationError>,
    result: Option<(&'a Mapping, Canon<'a>)>,
}

/// Reads an XML payload with `set`'s mappings: the mapping that read it, and the canonical
/// tree. A single-byte document must be in the encoding the set's plans hold names in
/// ([`MappingSet::inbound_encoding`]).
pub(crate) fn read<'a>(set: &'a MappingSet, doc: Doc<'a>) -> Result<(&'a Mapping, Canon<'a>), ValidationError> {
    let doc = match doc {
        Doc::Text(text) => Doc::Text(text.strip_prefix('\u{feff}').unwrap_or(text)),
        other => other,
    };
    let mut reader = Reader::from_reader(doc.bytes());
    reader.config_mut().check_end_names = true;
    reader.config_mut().trim_text(true);
    let mut w = Walker {
        doc,
        single_byte: matches!(doc, Doc::SingleByte(..)),
        set,
        depth: 0,
        root_done: false,
        phase: Phase::Start,
        plan: &[],
        decls: Vec::new(),
        frames: Vec::new(),
        slots: Vec::new(),
        cursors: Vec::new(),
        marks: Vec::new(),
        wanted: Vec::new(),
        texts: Vec::new(),
        items: Vec::new(),
        problem: None,
        result: None,
    };
    SCRATCH.with(|s| s.take().unwrap_or_else(Scratch::new).lend(&mut w));
    loop {
        // The event is read where the reader left it, not moved out of its `Result` first:
        // the move copied it in loads wider than the reader's stores, which stalled
        // (`perf annotate`: a fifth of this loop's and of `start`'s time).
        let read = reader.read_event();
        let event = match &read {
            Ok(event) => event,
            Err(e) => return Err(malformed(format!("not well-formed XML: {e}"))),
        };
        match event {
            Event::Start(e) => w.start(e, false)?,
            Event::Empty(e) => w.start(e, true)?,
            Event::End(_) => w.end()?,
            Event::Text(t) => {
                if w.depth == 0 {
                    return Err(malformed("text outside the root element"));
                }
                let wanted = w.texts.last().is_some_and(|(d, _)| *d == w.depth);
                // Entity references are checked everywhere, read only where wanted.
                if wanted || t.contains(&b'&') {
                    let s = doc.text(t)?;
                    if wanted {
                        w.push_text(s);
                    }
                }
            }
            Event::CData(c) => {
                if w.depth == 0 {
                    return Err(malformed("CDATA outside the root element"));
                }
                if w.texts.last().is_some_and(|(d, _)| *d == w.depth) {
                    // CDATA holds no entity references: `&` is itself.
                    let s = doc.decode(c)?;
                    w.push_text(s);
                }
            }
            Event::DocType(_) => {
                return Err(ValidationError::new(
                    ErrorCode::DtdForbidden,
                    "XML with a document type declaration (DTD) or entity declarations is refused",
                ))
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    w.finish()
}

impl<'a> Walker<'a> {
    fn push_text(&mut self, piece: Cow<'a, str>) {
        if let Some((_, text)) = self.texts.last_mut() {
            text.push(piece);
        }
    }

    fn start(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<(), ValidationError> {
        if self.depth >= MAX_DEPTH {
            return Err(malformed(format!("elements nest deeper than {MAX_DEPTH}")));
        }
        if self.depth == 0 && self.root_done {
            return Err(malformed("more than one root element"));
        }
        self.depth += 1;
        let depth = self.depth;
        let local = local_part(e.name().into_inner());
        match self.phase {
            Phase::Start => {
                self.declare(e)?;
                let ns = self.namespace_of(e)?;
                if local == b"Envelope" && ns.as_deref() == Some(SOAP11) {
                    self.phase = Phase::Envelope { body_seen: false };
                } else {
                    self.enter_payload(local, ns.as_deref(), false, e)?;
                }
            }
            Phase::Envelope { body_seen } if depth == 2 => {
                self.declare(e)?;
                if local == b"Body" && self.namespace_of(e)?.as_deref() == Some(SOAP11) {
                    if body_seen {
                        return Err(malformed("a SOAP envelope with two Bodies"));
                    }
                    self.phase = Phase::Body { payload_seen: false };
                }
            }
            Phase::Envelope { .. } => self.declare(e)?,
            Phase::Body { payload_seen } if depth == 3 => {
                if payload_seen {
                    return Err(malformed("a SOAP Body with more than one element"));
                }
                self.declare(e)?;
                let ns = self.namespace_of(e)?;
                self.enter_payload(local, ns.as_deref(), true, e)?;
            }
            Phase::Body { .. } => self.declare(e)?,
            Phase::Payload { .. } => {
                let mark = self.cursors.len();
                if self.problem.is_none() {
                    let parent = self.marks.last().copied().unwrap_or(mark);
                    for i in parent..mark {
                        let (frame, node) = self.cursors[i];
                        let plan = self.plan_of(frame);
                        if let Some((_, child)) =
                            plan[node].children.iter().find(|(n, _)| n.is(local, self.single_byte))
                        {
                            self.cursors.push((frame, *child));
                        }
                    }
                }
                self.marks.push(mark);
                self.visit(mark, e)?;
            }
            Phase::Done => {}
        }
        if empty {
            self.end()?;
        }
        Ok(())
    }

    /// The plan of the mapping being read, by frame.
    fn plan_of(&self, frame: usize) -> &'a [Node] {
        self.frames[frame].nodes
    }

    /// The payload root: picks the mapping and opens the payload's frame.
    fn enter_payload(
        &mut self,
        local: &[u8],
        ns: Option<&str>,
        enveloped: bool,
        e: &BytesStart<'a>,
    ) -> Result<(), ValidationError> {
        let set = self.set;
        let mapping = set.mappings.iter().find(|m| {
            m.direction == Direction::In
                && m.format == Format::Xml
                && m.xml_plan.root.as_ref().is_some_and(|root| root.is(local, self.single_byte))
                && (m.namespace.is_none() || m.namespace.as_deref() == ns)
                && (m.envelope == Some(EnvelopeKind::Soap11)) == enveloped
        });
        let Some(mapping) = mapping else {
            let local = self.doc.text(local)?;
            self.problem.get_or_insert(ValidationError::new(
                ErrorCode::UnknownMessageType,
                format!(
                    "no {} mapping reads {}<{local}>{}",
                    set.vendor,
                    if enveloped { "a SOAP envelope holding " } else { "an XML " },
                    ns.map(|n| format!(" in namespace {n}")).unwrap_or_default()
                ),
            ));
            self.phase = Phase::Done;
            return Ok(());
        };
        self.phase = Phase::Payload { mapping, enveloped, root_depth: self.depth };
        self.plan = &mapping.xml_plan.frames;
        self.open_frame(&mapping.fields, 0, None);
        let mark = self.cursors.len();
        self.marks.push(mark);
        self.cursors.push((0, 0));
        self.visit(mark, e)
    }

    fn open_frame(&mut self, fields: &'a [Field], plan: usize, list: Option<usize>) -> usize {
        let nodes = &self.plan[plan];
        let slots = self.slots.len();
        self.slots.resize(slots + fields.len(), None);
        self.frames.push(Frame { fields, nodes, depth: self.depth, slots, items: self.items.len(), list });
        self.frames.len() - 1
    }

    /// Reads what the plan wants at the element just opened, whose nodes are the cursors
    /// from `mark` on; items of lists open their frames (and read their own element).
    fn visit(&mut self, mark: usize, e: &BytesStart<'a>) -> Result<(), ValidationError> {
        let mut i = mark;
        while i < self.cursors.len() {
            let (frame, node) = self.cursors[i];
            let here = &self.plan_of(frame)[node];
            let frame_fields: &'a [Field] = self.frames[frame].fields;
            for &(k, items) in &here.lists {
                let fields = &frame_fields[k].fields;
                let item = self.open_frame(fields, items, Some(k));
                self.cursors.push((item, 0));
            }
            if !here.attrs.is_empty() {
                self.attributes(frame, &here.attrs, e)?;
            }
            for &k in &here.texts {
                if self.slots[self.frames[frame].slots + k].is_none() {
                    if self.texts.last().is_none_or(|(d, _)| *d != self.depth) {
                        self.texts.push((self.depth, Text(None)));
                    }
                    self.wanted.push((self.depth, frame, k));
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// The element's attributes, each checked once, the wanted ones kept (the first match
    /// wins).
    fn attributes(
        &mut self,
        frame: usize,
        wanted: &[(Name, usize)],
        e: &BytesStart<'a>,
    ) -> Result<(), ValidationError> {
        let base = self.frames[frame].slots;
        each_attribute(e, |key, raw| {
            if declares_namespace(key) {
                return Ok(());
            }
            let local = local_part(key);
            // Decoded once, however many fields read it (a code and its category), and
            // moved into the last: a decoded value is copied only for a field before it.
            let mut value: Option<Option<Cow<'a, str>>> = None;
            let mut last = None;
            for (name, k) in wanted {
                if name.is(local, self.single_byte) && self.slots[base + k].is_none() {
                    if value.is_none() {
                        value = Some(self.doc.value(raw)?);
                    }
                    if let Some(before) = last.replace(base + k) {
                        self.slots[before] = value.clone().flatten();
                    }
                }
            }
            if let Some(slot) = last {
                self.slots[slot] = value.flatten();
            }
            Ok(())
        })
    }

    fn end(&mut self) -> Result<(), ValidationError> {
        let depth = self.depth;
        if depth == 0 {
            return Err(malformed("unbalanced end tag"));
        }
        // The text the closing element's fields wanted.
        if self.texts.last().is_some_and(|(d, _)| *d == depth) {
            let value = self.texts.pop().and_then(|(_, t)| t.value());
            while let Some(&(d, frame, k)) = self.wanted.last() {
                if d != depth {
                    break;
                }
                self.wanted.pop();
                let slot = &mut self.slots[self.frames[frame].slots + k];
                if slot.is_none() {
                    slot.clone_from(&value);
                }
            }
        }
        if let Phase::Payload { mapping, enveloped, root_depth } = self.phase {
            while self.frames.last().is_some_and(|f| f.depth == depth) {
                self.close_frame(mapping);
            }
            if let Some(mark) = self.marks.pop() {
                self.cursors.truncate(mark);
            }
            if depth == root_depth {
                self.phase = if enveloped { Phase::Body { payload_seen: true } } else { Phase::Done };
            }
        }
        // Declarations are pushed in document order: those of this element are last.
        while self.decls.last().is_some_and(|(d, _, _)| *d >= depth) {
            self.decls.pop();
        }
        self.depth -= 1;
        if self.depth == 0 {
            self.root_done = true;
        }
        Ok(())
    }

    /// The innermost frame, finished: its canonical object goes to its list, or is the
    /// result.
    fn close_frame(&mut self, mapping: &'a Mapping) {
        let Some(frame) = self.frames.pop() else { return };
        if self.problem.is_some() {
            self.slots.truncate(frame.slots);
            self.items.truncate(frame.items);
            return;
        }
        let mut out = Canon::object(frame.fields.len());
        let mut outcome = Ok(());
        for (k, f) in frame.fields.iter().enumerate() {
            let value = self.slots[frame.slots + k].take();
            if f.canonical.is_none() || outcome.is_err() {
                continue;
            }
            let found = if f.fields.is_empty() {
                Found::Scalar(value)
            } else {
                let mine = &mut self.items[frame.items..];
                let mut items = Vec::with_capacity(mine.iter().filter(|(field, _)| *field == k).count());
                // Taken in document order; what is left in their place is dropped below.
                items.extend(
                    mine.iter_mut()
                        .filter(|(field, _)| *field == k)
                        .map(|(_, item)| std::mem::replace(item, Canon::Int(0))),
                );
                Found::List(items)
            };
            outcome = put_field(&mut out, f, found);
        }
        self.slots.truncate(frame.slots);
        self.items.truncate(frame.items);
        match (outcome, frame.list) {
            (Err(e), _) => self.problem = Some(e),
            (Ok(()), Some(k)) => self.items.push((k, out)),
            (Ok(()), None) => self.result = Some((mapping, out)),
        }
    }

    fn declare(&mut self, e: &BytesStart<'a>) -> Result<(), ValidationError> {
        each_attribute(e, |key, raw| {
            let prefix = if key == b"xmlns" {
                Cow::Borrowed("")
            } else if let Some(p) = key.strip_prefix(b"xmlns:") {
                self.doc.text(p)?
            } else {
                return Ok(());
            };
            let uri = self.doc.text(raw)?;
            self.decls.push((self.depth, prefix, uri));
            Ok(())
        })
    }

    fn namespace_of(&self, e: &BytesStart<'_>) -> Result<Option<Cow<'a, str>>, ValidationError> {
        let name = e.name();
        let prefix = match name.prefix() {
            Some(p) => self.doc.text(p.into_inner())?,
            None => Cow::Borrowed(""),
        };
        // Mostly the default namespace: an empty prefix is told by its length.
        match self.decls.iter().rev().find(|(_, p, _)| p.len() == prefix.len() && (p.is_empty() || *p == prefix)) {
            Some((_, _, uri)) if uri.is_empty() => Ok(None),
            Some((_, _, uri)) => Ok(Some(uri.clone())),
            None if prefix.is_empty() => Ok(None),
            None => Err(malformed(format!("undeclared namespace prefix '{prefix}'"))),
        }
    }

    fn finish(mut self) -> Result<(&'a Mapping, Canon<'a>), ValidationError> {
        let back = Scratch::keep(&mut self);
        if back.modest() {
            SCRATCH.with(|s| s.set(Some(back)));
        }
        if self.depth > 0 {
            return Err(malformed("document ends inside an element"));
        }
        match self.phase {
            Phase::Start => Err(malformed("no root element")),
            Phase::Envelope { body_seen: false } => Err(malformed("a SOAP envelope without a Body")),
            Phase::Body { payload_seen: false } | Phase::Envelope { .. }
                if self.result.is_none() && self.problem.is_none() =>
            {
                Err(malformed("an empty SOAP Body"))
            }
            _ => match (self.problem, self.result) {
                (Some(p), _) => Err(p),
                (None, Some(read)) => Ok(read),
                (None, None) => Err(malformed("an empty SOAP Body")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carehub_model::Message;

    const MAPPING: &str = r#"
message = "plan_notice"
direction = "in"
format = "xml"
root = "Plan"
namespace = "urn:x"

[[fields]]
vendor = "Order/@id"
canonical = "order_id"

[[fields]]
vendor = "On"
canonical = "established_on"
type = "date"
"#;

    fn set(text: &str) -> MappingSet {
        MappingSet::from_sources("t", [("m.toml", text)]).expect("loads")
    }

    #[test]
    fn a_walk_leaves_nothing_behind_for_the_next_on_its_thread() {
        let docs = [
            r#"<Plan xmlns="urn:x"><Order id="A-1"/><On>2026-11-10</On></Plan>"#,
            r#"<Plan xmlns="urn:x"><Order id="B-1"/><On>2026-11-11</On><Deep><Deeper><Deepest>"#,
            r#"<Plan xmlns="urn:x"><On>2026-11-12</On></Plan>"#,
            r#"<x:Plan xmlns:x="urn:x"><x:On>2026-11-13</x:On><x:Order id="C-1"/></x:Plan>"#,
            r#"<Plan xmlns="urn:x"><Order id="A-1"/><On>2026-11-10</On></Plan>"#,
        ];
        let outcome = |doc: &str| match set(MAPPING).decode(doc) {
            Ok(d) => Ok(d.canonical),
            Err(e) => Err(e.code),
        };
        // One after another on this thread, each against a thread of its own.
        let in_turn: Vec<_> = docs.iter().map(|d| outcome(d)).collect();
        let alone: Vec<_> =
            docs.iter().map(|d| std::thread::scope(|s| s.spawn(|| outcome(d)).join().expect("no panic"))).collect();
        assert_eq!(in_turn, alone);
        assert_eq!(in_turn[0], Ok(r#"{"order_id":"A-1","established_on":"2026-11-10"}"#.to_owned()));
        assert_eq!(in_turn[1], Err(ErrorCode::MalformedPayload));
        assert_eq!(in_turn[2], Err(ErrorCode::MissingField));
        assert_eq!(in_turn[4], in_turn[0]);
    }

    #[test]
    fn the_first_match_wins_and_prefixes_do_not_matter() {
        let d = set(MAPPING)
            .decode(r#"<x:Plan xmlns:x="urn:x"><x:Order id=" O-1 "/><x:Order id="O-2"/><x:On>2026-11-10</x:On><x:On>2027-01-01</x:On></x:Plan>"#)
            .expect("decodes");
        assert_eq!(d.value(), serde_json::json!({"order_id": "O-1", "established_on": "2026-11-10"}));
    }

    #[test]
    fn items_of_two_lists_in_one_frame_keep_to_their_lists_in_document_order() {
        let two = r#"
message = "plan_notice"
direction = "in"
format = "xml"
root = "Plan"

[[fields]]
vendor = "A"
canonical = "as"
  [[fields.fields]]
  vendor = "@v"
  canonical = "v"

[[fields]]
vendor = "On"
canonical = "on"

[[fields]]
vendor = "B"
canonical = "bs"
optional = true
  [[fields.fields]]
  vendor = "@v"
  canonical = "v"
"#;
        let d = set(two)
            .decode(r#"<Plan><B v="x"/><A v="1"/><On>d</On><A v="2"/><B v="y"/><A v="3"/></Plan>"#)
            .expect("decodes");
        assert_eq!(
            d.value(),
            serde_json::json!({"as": [{"v": "1"}, {"v": "2"}, {"v": "3"}], "on": "d", "bs": [{"v": "x"}, {"v": "y"}]})
        );
        let d = set(two).decode(r#"<Plan><On>d</On><A v="1"/></Plan>"#).expect("decodes");
        assert_eq!(
            d.value(),
            serde_json::json!({"as": [{"v": "1"}], "on": "d", "bs": []}),
            "an optional list without items is empty"
        );
    }

    #[test]
    fn a_broken_document_is_malformed_even_when_a_field_is_missing_first() {
        let e = set(MAPPING).decode(r#"<Plan xmlns="urn:x"><On>2026-11-10</On><Extra>"#).expect_err("truncated");
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        let e = set(MAPPING).decode(r#"<Plan xmlns="urn:x"><On>2026-11-10</On></Plan>"#).expect_err("missing");
        assert_eq!(e.code, ErrorCode::MissingField);
        let e =
            set(MAPPING).decode(r#"<Plan xmlns="urn:x"><Order id="1"/><On>&nope;</On></Plan>"#).expect_err("entity");
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        let e = set(MAPPING).decode(r#"<p:Plan xmlns:q="urn:x"/>"#).expect_err("prefix");
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        let e = set(MAPPING)
            .decode(r#"<Plan xmlns="urn:y"><Order id="1"/><On>2026-11-10</On></Plan>"#)
            .expect_err("namespace");
        assert_eq!(e.code, ErrorCode::UnknownMessageType);
    }

    #[test]
    fn a_soap_body_holds_exactly_one_payload_and_headers_are_ignored() {
        let soap = MAPPING.replace("format = \"xml\"", "format = \"xml\"\nenvelope = \"soap11\"");
        let s = set(&soap);
        let env = |body: &str| {
            format!(
                r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><Plan xmlns="urn:x"/></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
            )
        };
        let plan = r#"<Plan xmlns="urn:x"><Order id="O-9"/><On>2026-11-10</On></Plan>"#;
        let d = s.decode(&env(plan)).expect("decodes");
        assert_eq!(d.value()["order_id"], "O-9");
        assert_eq!(s.decode(&env("")).expect_err("empty").code, ErrorCode::MalformedPayload);
        assert_eq!(s.decode(&env(&format!("{plan}{plan}"))).expect_err("two").code, ErrorCode::MalformedPayload);
        assert_eq!(s.decode(plan).expect_err("bare").code, ErrorCode::UnknownMessageType);
        let no_body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"></s:Envelope>"#;
        assert_eq!(s.decode(no_body).expect_err("no body").code, ErrorCode::MalformedPayload);
    }
    const LATIN: &str = r#"
message = "plan_notice"
direction = "in"
format = "xml"
encoding = "iso-8859-1"
root = "Planförslag"
namespace = "urn:x"

[[fields]]
vendor = "Beställning/@nummer"
canonical = "order_id"

[[fields]]
vendor = "Fastställd"
canonical = "established_on"
type = "date"
"#;

    /// A document, as UTF-8 text and as ISO-8859-1 bytes with its declaration.
    fn both(body: &str) -> (String, Vec<u8>) {
        let text = format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n{body}");
        let bytes = crate::mapping::text::encode(&text, encoding_rs::WINDOWS_1252).expect("latin-1");
        (text, bytes)
    }

    #[test]
    fn a_single_byte_document_is_read_as_it_is_and_reads_as_its_utf8_twin() {
        let s = set(LATIN);
        let (text, bytes) = both(
            "<p:Planförslag xmlns:p=\"urn:x\">\r\n <p:Beställning nummer=\" Å-1 &amp; Ö \"/>\r\n \
             <p:Fastställd><![CDATA[2026-11-10]]></p:Fastställd><p:Fastställd>2027-01-01</p:Fastställd></p:Planförslag>",
        );
        assert!(bytes.contains(&0xC5) && !bytes.contains(&0xC3), "the bytes are ISO-8859-1");
        let table = crate::mapping::text::SingleByte::new(encoding_rs::WINDOWS_1252).expect("single-byte");
        let body = &bytes[bytes.iter().position(|b| *b == b'<').expect("xml")..];
        let (_, from_bytes) = read(&s, Doc::SingleByte(body, &table)).expect("reads the bytes");
        let (_, from_text) = read(&s, Doc::Text(&text)).expect("reads the text");
        assert_eq!(from_bytes.to_json(), r#"{"order_id":"Å-1 & Ö","established_on":"2026-11-10"}"#);
        assert_eq!(from_bytes.to_json(), from_text.to_json());
        // The whole path: the typed message, the same both ways.
        let t = s.translate_bytes(&bytes).expect("translates");
        assert_eq!(t.message, s.translate(&text).expect("translates").message);
        let Message::PlanNotice(p) = t.message else { panic!("a plan notice: {:?}", t.message) };
        assert_eq!(p.order_id, "Å-1 & Ö");
    }

    /// The tag `<e` + `tail`: our scanner's pairs and first error, and quick-xml's, must be
    /// the same.
    fn same_attributes_as_the_reader(tail: &[u8]) {
        let content = [b"e".as_slice(), tail].concat();
        let e = BytesStart::from_content(String::from_utf8_lossy(&content).into_owned(), 1);
        let ours: Vec<_> = AttrScan::new(&e)
            .map(|a| a.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .scan(false, |failed, a| (!std::mem::replace(failed, a.is_err())).then_some(a))
            .collect();
        let mut theirs = e.attributes();
        theirs.with_checks(false);
        let theirs: Vec<_> = theirs
            .map(|a| a.map(|a| (a.key.into_inner().to_vec(), a.value.to_vec())))
            .scan(false, |failed, a| (!std::mem::replace(failed, a.is_err())).then_some(a))
            .collect();
        assert_eq!(ours, theirs, "<{}>", String::from_utf8_lossy(&content));
    }

    #[test]
    fn attributes_are_read_as_the_reader_reads_them_errors_and_all() {
        // Every tag `<e` + up to six of these bytes: names, values, both quotes, `=`,
        // white space of each kind, and markup characters inside values.
        const BYTES: &[u8] = b" \t\na=\"'<";
        let mut tags = vec![Vec::new()];
        let mut checked = 0;
        for _ in 0..6 {
            tags =
                tags.iter().flat_map(|t: &Vec<u8>| BYTES.iter().map(move |&b| [t.as_slice(), &[b]].concat())).collect();
            for tail in &tags {
                same_attributes_as_the_reader(tail);
                checked += 1;
            }
        }
        assert_eq!(checked, (1..=6).map(|n| BYTES.len().pow(n)).sum::<usize>());
    }

    /// Attribute names and values are searched eight bytes at a time, which tags of six
    /// bytes do not reach: long tags, drawn from the same bytes and letters, each read
    /// as the reader reads it.
    #[test]
    fn long_attributes_are_read_as_the_reader_reads_them() {
        const BYTES: &[u8] = b" \t\r\na=\"'<:bcdefghAB09";
        // A fixed xorshift sequence, so a failure names a tag that fails again.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let word = |next: &mut dyn FnMut() -> u64, len: usize| -> Vec<u8> {
            (0..len).map(|_| BYTES[(next() % BYTES.len() as u64) as usize]).collect()
        };
        let letters = |next: &mut dyn FnMut() -> u64, len: usize| -> Vec<u8> {
            (0..len).map(|_| b"abcdefghijklmnopqrstuvwxyz"[(next() % 26) as usize]).collect()
        };
        for _ in 0..200_000 {
            // Mostly well-formed attributes of every length up to 24 around the word
            // size, with a random piece anywhere to break them.
            let mut tail = Vec::new();
            for _ in 0..1 + next() % 3 {
                tail.extend(if next() % 2 == 0 { &b" "[..] } else { &b"\n\t"[..] });
                let name = (next() % 24 + 1) as usize;
                tail.extend(letters(&mut next, name));
                tail.extend(if next() % 4 == 0 { &b" = "[..] } else { &b"="[..] });
                let quote = if next() % 2 == 0 { b'"' } else { b'\'' };
                tail.push(quote);
                let value = (next() % 24) as usize;
                tail.extend(letters(&mut next, value));
                if next() % 3 != 0 {
                    tail.push(quote);
                }
                if next() % 5 == 0 {
                    let len = (next() % 12) as usize;
                    let at = (next() % (tail.len() as u64 + 1)) as usize;
                    let piece = word(&mut next, len);
                    tail.splice(at..at, piece);
                }
            }
            same_attributes_as_the_reader(&tail);
        }
    }

    #[test]
    fn local_part_drops_any_prefix() {
        for (name, local) in [
            (&b"a"[..], &b"a"[..]),
            (b"p:a", b"a"),
            (b"prefix:Personnummer", b"Personnummer"),
            (b"Organisationsnummer", b"Organisationsnummer"),
            (b"abcdefgh:i", b"i"),
            (b"abcdefghijklmnop:q", b"q"),
            (b"a:b:c", b"b:c"),
            (b"abc:", b""),
            (b"", b""),
        ] {
            assert_eq!(local_part(name), local, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn only_ascii_is_borrowed_as_text_unchecked() {
        assert_eq!(ascii_str(b"PC-2026-118"), Some("PC-2026-118"));
        assert_eq!(ascii_str(b""), Some(""));
        // ISO-8859-1 "Å", and the first byte of UTF-8 "Å": neither is text on its own.
        assert_eq!(ascii_str(b"\xc5sa"), None);
        assert_eq!(ascii_str("Åsa".as_bytes()), None);
    }

    #[test]
    fn plain_values_are_told_a_word_at_a_time_and_trimmed_as_str_trims() {
        for (bytes, plain) in [
            (&b""[..], true),
            (b"20261101", true),
            (b"PC-BENCH-123456789", true),
            (b"0123456&", false),
            (b"01234567&", false),
            (b"&0123456789abcdef", false),
            (b"abcdefgh\xe5", false),
            (b"\xe5bcdefghijkl", false),
            (b"Service", true),
        ] {
            assert_eq!(plain_ascii(bytes), plain, "{}", String::from_utf8_lossy(bytes));
            let slow = bytes.iter().all(|&b| b.is_ascii() && b != b'&');
            assert_eq!(plain_ascii(bytes), slow);
        }
        for (name, local) in [
            ("Beslutsnummer", "Beslutsnummer"),
            ("p:Id", "Id"),
            ("procapita:Organisationsnummer", "Organisationsnummer"),
            ("abcdefghij:k", "k"),
            ("a:b:c", "b:c"),
            ("", ""),
        ] {
            assert_eq!(local_part(name.as_bytes()), local.as_bytes(), "{name}");
        }
        let doc = Doc::Text("x");
        for raw in ["  a b ", "a", "\t\r\n", "", " x\u{b}"] {
            let want = Some(raw.trim()).filter(|t| !t.is_empty());
            assert_eq!(doc.value(raw.as_bytes()).expect("a value").as_deref(), want, "{raw:?}");
        }
        for text in ["\u{a0}Åsa\u{a0}", "Åsa", " Åsa", "Ö"] {
            let want = Some(text.trim()).filter(|t| !t.is_empty());
            assert_eq!(trimmed(Cow::Borrowed(text)).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn a_single_byte_document_keeps_the_rules_of_well_formed_xml() {
        let s = set(LATIN);
        for (body, code) in [
            (
                "<Planförslag xmlns=\"urn:x\"><Beställning nummer=\"&nope;\"/></Planförslag>",
                ErrorCode::MalformedPayload,
            ),
            (
                "<Planförslag xmlns=\"urn:x\"><Beställning nummer=\"1\" nummer=\"2\"/></Planförslag>",
                ErrorCode::MalformedPayload,
            ),
            (
                "<Planförslag xmlns=\"urn:x\"><Fastställd>2026-11-10</Fastställd><Other>&bad;</Other></Planförslag>",
                ErrorCode::MalformedPayload,
            ),
            ("<Planförslag xmlns=\"urn:x\"><Fastställd>2026-11-10</Fastställd></Planförslag>", ErrorCode::MissingField),
            (
                "<Planförslag xmlns=\"urn:x\"><Beställning nummer=\"1\"/><Fastställd>2026-11-10</Fastställd>",
                ErrorCode::MalformedPayload,
            ),
        ] {
            let (text, bytes) = both(body);
            let (_, by_bytes) = s.translate_bytes(&bytes).expect_err(body);
            let (_, by_text) = s.translate(&text).expect_err(body);
            assert_eq!((by_bytes.code, by_text.code), (code, code), "{body}");
        }
    }

    #[test]
    fn another_single_byte_encoding_is_decoded_whole_first() {
        // ISO-8859-15 differs from the mapping's ISO-8859-1 (0xA4 is the euro sign there):
        // not the plans' encoding, so the document is decoded whole and read as text, when
        // the profile accepts it; when it does not, the payload is refused.
        let strict = set(LATIN);
        let s = set(&LATIN
            .replace("encoding = \"iso-8859-1\"", "encoding = \"iso-8859-1\"\naccept_encodings = [\"iso-8859-15\"]"));
        let text = "<?xml version=\"1.0\" encoding=\"ISO-8859-15\"?><Planförslag xmlns=\"urn:x\">\
                    <Beställning nummer=\"€-1\"/><Fastställd>2026-11-10</Fastställd></Planförslag>";
        let enc = crate::mapping::text::encoding("iso-8859-15").expect("known");
        let bytes = crate::mapping::text::encode(text, enc).expect("encodable");
        assert!(bytes.contains(&0xA4));
        let refused = strict.translate_bytes(&bytes).err().map(|(_, e)| e.code);
        assert_eq!(refused, Some(ErrorCode::UnsupportedEncoding));
        let Message::PlanNotice(p) = s.translate_bytes(&bytes).expect("translates").message else {
            panic!("a plan notice")
        };
        assert_eq!(p.order_id, "€-1");
    }

    #[test]
    fn the_model_reads_the_tree_as_it_reads_the_json_text() {
        let s = set(r#"
message = "order_ack"
direction = "in"
format = "xml"
root = "Kvitto"

[[fields]]
vendor = "Order"
canonical = "order_id"

[[fields]]
vendor = "Status"
canonical = "status"
table = "status"

[[fields]]
vendor = "Orsak"
canonical = "reason"
optional = true

[[fields]]
vendor = "Tid"
canonical = "at"
type = "datetime"
format = "%Y-%m-%d %H:%M"

[tables.status]
JA = "accepted"
NEJ = "rejected"
"OKÄND" = "maybe"
"#);
        let doc = |status: &str, reason: &str| {
            format!("<Kvitto><Order>O-1</Order><Status>{status}</Status>{reason}<Tid>2026-11-02 09:15</Tid></Kvitto>")
        };
        for payload in [doc("JA", ""), doc("NEJ", "<Orsak>Full</Orsak>"), doc("OKÄND", "")] {
            let by_text = s.decode(&payload).map(|d| d.message());
            let by_tree = s.translate(&payload).map(|t| t.message).map_err(|(_, e)| e);
            match (by_text, by_tree) {
                (Ok(Ok(a)), Ok(b)) => assert_eq!(a, b, "{payload}"),
                (Ok(Err(a)), Err(b)) => {
                    assert_eq!((a.code, &a.reason), (b.code, &b.reason), "{payload}");
                    assert!(a.reason.contains("maybe"), "{}", a.reason);
                }
                (a, b) => panic!("{payload}: text {a:?}, tree {b:?}"),
            }
        }
        let Message::OrderAck(ack) = s.translate(&doc("NEJ", "<Orsak>Full</Orsak>")).expect("ack").message else {
            panic!("an acknowledgement")
        };
        assert_eq!(ack.reason.as_deref(), Some("Full"));
        assert_eq!(ack.at.to_rfc3339(), "2026-11-02T08:15:00+00:00");
    }
}
