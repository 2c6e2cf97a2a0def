//! Bytes to text and back, in the encodings vendors use.
//!
//! Older systems write ISO-8859-1 or Windows-1252 (Procapita's XML, ParaGå's CSV); newer
//! ones UTF-8, sometimes with a byte order mark. Inbound, what the bytes say about
//! themselves wins: a byte order mark, then an XML encoding declaration; otherwise the
//! mapping's declared encoding. Outbound, text is written in the mapping's encoding, and a
//! character that encoding cannot hold is an error rather than a silent `?`.
//!
//! What a payload may say about itself is bounded by its vendor's profile
//! ([`detect_accepted`]): an encoding the hub does not know, one the profile does not
//! accept, or a declaration its bytes contradict (ISO-8859-1 declared over UTF-8 bytes,
//! which would otherwise be stored as `hÃ¥l`) is refused as
//! [`ErrorCode::UnsupportedEncoding`], never guessed at.

use std::borrow::Cow;

use carehub_model::{ErrorCode, ValidationError};
use encoding_rs::Encoding;

/// The encoding for a label such as `utf-8`, `iso-8859-1` or `windows-1252`.
pub fn encoding(label: &str) -> Option<&'static Encoding> {
    encoding_of(label.as_bytes())
}

/// [`encoding`] of a label as bytes (an XML declaration's, read without decoding).
fn encoding_of(label: &[u8]) -> Option<&'static Encoding> {
    let label = label.trim_ascii();
    // The labels vendors write, without the search through every label (this runs for
    // every XML payload with a declaration). ISO-8859-1 is read as Windows-1252, as the
    // WHATWG Encoding Standard does.
    if label.eq_ignore_ascii_case(b"utf-8") {
        return Some(encoding_rs::UTF_8);
    }
    if label.eq_ignore_ascii_case(b"iso-8859-1") || label.eq_ignore_ascii_case(b"windows-1252") {
        return Some(encoding_rs::WINDOWS_1252);
    }
    Encoding::for_label(label)
}

/// A single-byte encoding as a table: what each byte from 0x80 on is (`None` for a byte
/// the encoding leaves undefined); the bytes below are ASCII.
#[derive(Debug, Clone)]
pub struct SingleByte {
    pub encoding: &'static Encoding,
    high: [Option<char>; 128],
}

impl SingleByte {
    /// `None` unless `encoding` is single-byte.
    pub fn new(encoding: &'static Encoding) -> Option<SingleByte> {
        if !encoding.is_single_byte() {
            return None;
        }
        let mut high = [None; 128];
        for (b, slot) in (0x80..=0xffu8).zip(high.iter_mut()) {
            *slot = encoding.decode_without_bom_handling_and_without_replacement(&[b]).and_then(|s| s.chars().next());
        }
        Some(SingleByte { encoding, high })
    }

    /// Decodes `bytes`; `None` when one is undefined in the encoding.
    pub fn decode(&self, bytes: &[u8]) -> Option<String> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for &b in bytes {
            match b.checked_sub(0x80) {
                None => out.push(char::from(b)),
                Some(i) => out.push(self.high[usize::from(i)]?),
            }
        }
        Some(out)
    }
}

/// The encoding named by an XML declaration at the start of `bytes`, if any and known.
#[cfg(test)]
fn xml_declared(bytes: &[u8]) -> Option<&'static Encoding> {
    xml_declaration(bytes).and_then(|d| d.ok())
}

/// The label of an XML declaration's encoding at the start of `bytes`, if it has one:
/// `Ok` with the encoding when the hub knows the label, `Err` with the label when it does
/// not. Read on the bytes: the declaration is ASCII in every encoding the hub reads, and
/// this runs for every XML payload.
fn xml_declaration(bytes: &[u8]) -> Option<Result<&'static Encoding, &[u8]>> {
    let head = &bytes[..bytes.len().min(200)];
    // What nearly every producer writes, told without searching: the value up to its quote,
    // and the declaration's end somewhere after it. The same answer as the general reading
    // (a test holds them together).
    if let Some(rest) = head.strip_prefix(b"<?xml version=\"1.0\" encoding=\"") {
        let len = rest.iter().position(|&b| b == b'"')?;
        find(&rest[len..], b"?>")?;
        return Some(encoding_of(&rest[..len]).ok_or(&rest[..len]));
    }
    declared(head)
}

/// [`xml_declaration`] in general: any white space, either quote, other pseudo-attributes.
fn declared(head: &[u8]) -> Option<Result<&'static Encoding, &[u8]>> {
    let decl = head.trim_ascii_start().strip_prefix(b"<?xml")?;
    let decl = &decl[..find(decl, b"?>")?];
    let at = find(decl, b"encoding")?;
    let rest = decl[at + b"encoding".len()..].trim_ascii_start().strip_prefix(b"=")?.trim_ascii_start();
    let (&quote, rest) = rest.split_first().filter(|(q, _)| **q == b'"' || **q == b'\'')?;
    let value = &rest[..rest.iter().position(|&b| b == quote)?];
    Some(encoding_of(value).ok_or(value))
}

/// Where `needle` first starts in `hay`: each occurrence of its first byte tried, which in a
/// declaration is a few.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let mut from = 0;
    while let Some(at) = hay.get(from..)?.iter().position(|&b| b == first) {
        if hay[from + at..].starts_with(needle) {
            return Some(from + at);
        }
        from += at + 1;
    }
    None
}

/// What an inbound payload's bytes are: text already (valid UTF-8 that says nothing else
/// about itself), or bytes in an encoding, after any byte order mark.
pub enum Detected<'a> {
    Text(&'a str),
    Encoded(&'static Encoding, &'a [u8]),
}

/// Finds a payload's encoding by the rules of [`decode`], without decoding it. An XML
/// declaration of an encoding the hub does not know is passed over here; a vendor's
/// payloads go through [`detect_accepted`], which refuses it.
pub fn detect<'a>(bytes: &'a [u8], fallback: &'static Encoding) -> Detected<'a> {
    if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        return Detected::Encoded(enc, &bytes[bom..]);
    }
    if let Some(Ok(enc)) = xml_declaration(bytes) {
        return Detected::Encoded(enc, bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Detected::Text(s),
        Err(_) => Detected::Encoded(fallback, bytes),
    }
}

fn unsupported(reason: String) -> ValidationError {
    ValidationError::new(ErrorCode::UnsupportedEncoding, reason)
}

fn names(accepted: &[&'static Encoding]) -> String {
    accepted.iter().map(|e| label_of(e_static(e))).collect::<Vec<_>>().join(", ")
}

/// An encoding's name in errors (ISO-8859-1 is read as Windows-1252, as the WHATWG
/// Encoding Standard does, and named so).
fn label_of(enc: &'static Encoding) -> &'static str {
    enc.name()
}

fn e_static(e: &&'static Encoding) -> &'static Encoding {
    e
}

/// [`detect`] for a payload of a vendor whose profile accepts the encodings `accepted`:
/// refuses a byte order mark or declaration of an encoding outside them, a declaration of
/// an encoding the hub does not know, and a single-byte declaration over bytes that are
/// UTF-8 (a producer that wrote UTF-8 and declared ISO-8859-1). Bytes that say nothing
/// about themselves are read as [`detect`] reads them.
pub fn detect_accepted<'a>(
    bytes: &'a [u8],
    fallback: &'static Encoding,
    accepted: &[&'static Encoding],
) -> Result<Detected<'a>, ValidationError> {
    if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        if !accepted.contains(&enc) {
            return Err(unsupported(format!(
                "a {} byte order mark: this system's profile accepts {}",
                label_of(enc),
                names(accepted)
            )));
        }
        return Ok(Detected::Encoded(enc, &bytes[bom..]));
    }
    match xml_declaration(bytes) {
        Some(Err(label)) => Err(unsupported(format!(
            "the XML declaration names the encoding '{}', which the hub does not know; this system's profile accepts {}",
            String::from_utf8_lossy(&label[..label.len().min(40)]),
            names(accepted)
        ))),
        Some(Ok(enc)) if !accepted.contains(&enc) => Err(unsupported(format!(
            "the XML declaration names {}: this system's profile accepts {}",
            label_of(enc),
            names(accepted)
        ))),
        // A single-byte declaration over bytes that are UTF-8 with more than ASCII in them
        // is a lie: read as declared, every å would be stored as two characters. Real
        // Latin-1 text fails the UTF-8 check at its first letter past ASCII (in the root
        // element's name, for Procapita), so this costs a scan of the first few dozen bytes.
        Some(Ok(enc)) if enc != encoding_rs::UTF_8 && std::str::from_utf8(bytes).is_ok() && !bytes.is_ascii() => {
            Err(unsupported(format!(
                "the XML declaration names {} but the bytes are UTF-8: declare UTF-8, or write {}",
                label_of(enc),
                label_of(enc)
            )))
        }
        Some(Ok(enc)) => Ok(Detected::Encoded(enc, bytes)),
        None => Ok(match std::str::from_utf8(bytes) {
            Ok(s) => Detected::Text(s),
            Err(_) => Detected::Encoded(fallback, bytes),
        }),
    }
}

/// Whether the bytes start, after whitespace, with `<` (XML, not JSON or CSV).
pub fn starts_like_xml(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// Decodes an inbound payload. `fallback` is the mapping's declared encoding, used when the
/// bytes carry neither a byte order mark nor an XML declaration, and are not valid UTF-8.
pub fn decode<'a>(bytes: &'a [u8], fallback: &'static Encoding) -> Result<Cow<'a, str>, ValidationError> {
    detect(bytes, fallback).decode()
}

impl<'a> Detected<'a> {
    /// The text, decoded strictly in its encoding.
    pub fn decode(self) -> Result<Cow<'a, str>, ValidationError> {
        match self {
            Detected::Text(s) => Ok(Cow::Borrowed(s)),
            Detected::Encoded(enc, bytes) => strict(enc, bytes),
        }
    }
}

fn strict<'a>(enc: &'static Encoding, bytes: &'a [u8]) -> Result<Cow<'a, str>, ValidationError> {
    enc.decode_without_bom_handling_and_without_replacement(bytes).ok_or_else(|| {
        ValidationError::new(ErrorCode::MalformedPayload, format!("the payload is not valid {} text", enc.name()))
    })
}

/// Encodes outbound text; refuses characters the encoding cannot hold.
pub fn encode(text: &str, enc: &'static Encoding) -> Result<Vec<u8>, ValidationError> {
    if enc == encoding_rs::UTF_8 {
        return Ok(text.as_bytes().to_vec());
    }
    let (bytes, _, unmappable) = enc.encode(text);
    if unmappable {
        return Err(ValidationError::new(
            ErrorCode::InvalidValue,
            format!("the message has characters that {} cannot hold", enc.name()),
        ));
    }
    Ok(bytes.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_and_boms_win_over_the_fallback() {
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>\xe5\xe4\xf6\xe9</a>";
        assert_eq!(
            decode(latin1, encoding_rs::UTF_8).expect("latin1"),
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>åäöé</a>"
        );
        let bom = "\u{feff}<a>åäö</a>".as_bytes();
        assert_eq!(decode(bom, encoding_rs::WINDOWS_1252).expect("bom"), "<a>åäö</a>");
        let bare = b"Namn;Ort\r\n\xc5sa;G\xe4vle\r\n";
        assert_eq!(decode(bare, encoding_rs::WINDOWS_1252).expect("cp1252"), "Namn;Ort\r\nÅsa;Gävle\r\n");
        assert_eq!(decode(bare, encoding_rs::UTF_8).expect_err("not utf-8").code, ErrorCode::MalformedPayload);
    }

    #[test]
    fn the_declaration_is_read_in_its_variants() {
        let enc = |head: &str| xml_declared(head.as_bytes()).map(Encoding::name);
        assert_eq!(enc("<?xml version='1.0' encoding='windows-1252'?><a/>"), Some("windows-1252"));
        assert_eq!(enc(" \r\n<?xml version=\"1.0\" encoding = \"UTF-8\" ?><a/>"), Some("UTF-8"));
        assert_eq!(enc("<?xml version=\"1.0\"?><a encoding=\"iso-8859-1\"/>"), None, "outside the declaration");
        assert_eq!(enc("<?xml version=\"1.0\" encoding=\"nonsense\"?><a/>"), None);
        assert_eq!(enc("<?xml version=\"1.0\" encoding=\"utf-8"), None, "unterminated");
        assert_eq!(enc("<a/>"), None);
        // The common form, read without searching, answers as the general reading does.
        for head in [
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
            "<?xml version=\"1.0\" encoding=\"windows-1252\" standalone=\"yes\"?><a/>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>",
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"",
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1?>\"",
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"><a/>",
            "<?xml version=\"1.0\" encoding=\"\"?>",
            "<?xml version=\"1.0\" encoding=\"nonsense\"?>",
            "<?xml version=\"1.0\" encoding=\"latin1\"?>",
        ] {
            assert_eq!(xml_declaration(head.as_bytes()), declared(head.as_bytes()), "{head}");
        }
        assert_eq!(enc("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>"), Some("windows-1252"));
    }

    #[test]
    fn the_profile_bounds_what_a_payload_may_say_about_itself() {
        let latin1 = encoding("iso-8859-1").expect("known");
        let profile = [latin1];
        let code = |bytes: &[u8], accepted: &[&'static Encoding]| {
            detect_accepted(bytes, accepted[0], accepted).err().map(|e| e.code)
        };
        let honest = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>h\xe5l</a>";
        assert_eq!(code(honest, &profile), None);
        let text = detect_accepted(honest, latin1, &profile).expect("accepted").decode().expect("decodes");
        assert!(text.ends_with("<a>hål</a>"), "{text}");
        let lying = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>hål</a>".as_bytes();
        assert_eq!(code(lying, &profile), Some(ErrorCode::UnsupportedEncoding));
        // Plain ASCII under a single-byte declaration is the same text either way.
        assert_eq!(code(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>hal</a>", &profile), None);
        let evil = b"<?xml version='1.0' encoding='X-EVIL-42'?><a/>";
        assert_eq!(code(evil, &profile), Some(ErrorCode::UnsupportedEncoding));
        assert_eq!(code(evil, &[encoding_rs::UTF_8]), Some(ErrorCode::UnsupportedEncoding));
        let utf8_decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>hål</a>".as_bytes();
        assert_eq!(code(utf8_decl, &profile), Some(ErrorCode::UnsupportedEncoding), "not this profile's");
        assert_eq!(code(utf8_decl, &[encoding_rs::UTF_8]), None);
        let utf16 = [0xff, 0xfe, b'<', 0, b'a', 0, b'/', 0, b'>', 0];
        assert_eq!(code(&utf16, &[encoding_rs::UTF_8]), Some(ErrorCode::UnsupportedEncoding));
        // No declaration: read as before (UTF-8 when it is, else the profile's own).
        assert_eq!(code(b"Namn;Ort\r\n\xc5sa;G\xe4vle\r\n", &profile), None);
    }

    #[test]
    fn the_table_decodes_every_byte_as_the_encoding_does() {
        for label in ["iso-8859-1", "windows-1252", "iso-8859-15", "windows-1251", "koi8-r", "ibm866", "iso-8859-8"] {
            let enc = encoding(label).expect("known");
            let table = SingleByte::new(enc).expect("single-byte");
            for b in 0..=0xffu8 {
                let want = enc.decode_without_bom_handling_and_without_replacement(&[b]).map(|s| s.into_owned());
                assert_eq!(table.decode(&[b]), want, "{label} byte {b:#x}");
            }
            let all: Vec<u8> = (0..=0xffu8).filter(|&b| table.decode(&[b]).is_some()).collect();
            let want = enc.decode_without_bom_handling_and_without_replacement(&all).map(|s| s.into_owned());
            assert_eq!(table.decode(&all), want, "{label}: every defined byte in one text");
        }
    }

    #[test]
    fn swedish_characters_round_trip_byte_for_byte() {
        for label in ["iso-8859-1", "windows-1252"] {
            let enc = encoding(label).expect("known");
            let bytes = encode("Åsa Öberg, Gärdet, café", enc).expect("encodable");
            assert_eq!(bytes, b"\xc5sa \xd6berg, G\xe4rdet, caf\xe9");
            assert_eq!(decode(&bytes, enc).expect("decodes"), "Åsa Öberg, Gärdet, café");
        }
        assert!(encode("€ is fine in 1252", encoding("windows-1252").expect("known")).is_ok());
        assert_eq!(
            encode("Ωmega", encoding("iso-8859-1").expect("known")).expect_err("greek").code,
            ErrorCode::InvalidValue
        );
    }
}
