//! A byte-level diff of an expected and an actual body, small enough to read in a report.
//!
//! Why by hand: what a vendor needs is where the bytes first part (an `ö` written as one
//! Latin-1 byte instead of two UTF-8 bytes, a `\r\n` for a `\n`) and which lines differ;
//! a line diff by longest common subsequence over at most a few hundred lines does that
//! in fifty lines, where a diff crate would bring more than it gives.

/// Lines beyond this on either side are not diffed line by line (only the first
/// difference is shown): the table is quadratic.
const MAX_LINES: usize = 400;
/// Changed lines shown at most.
const MAX_SHOWN: usize = 40;

/// `None` when the bytes are equal; else where they first differ, and the lines that
/// differ (`-` expected, `+` actual), each line shown with escapes for what is not
/// printable ASCII or valid UTF-8.
pub fn byte_diff(expected: &[u8], actual: &[u8]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let at = expected.iter().zip(actual).take_while(|(a, b)| a == b).count();
    let line = expected[..at].iter().filter(|b| **b == b'\n').count() + 1;
    let column = at - expected[..at].iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0) + 1;
    let byte = |bytes: &[u8]| match bytes.get(at) {
        Some(b) => format!("0x{b:02X} {}", show(&bytes[at..bytes.len().min(at + 4)], 4)),
        None => "the end".to_owned(),
    };
    let mut out = format!(
        "expected {} bytes, got {}; first difference at byte {at} (line {line}, column {column}): expected {}, got {}\n",
        expected.len(),
        actual.len(),
        byte(expected),
        byte(actual)
    );
    let a: Vec<&[u8]> = expected.split_inclusive(|b| *b == b'\n').collect();
    let b: Vec<&[u8]> = actual.split_inclusive(|b| *b == b'\n').collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        out.push_str("(too many lines for a line diff)\n");
        return Some(out);
    }
    let mut shown = 0;
    for op in lcs(&a, &b) {
        let (sign, text) = match op {
            Op::Same => continue,
            Op::Del(l) => ('-', l),
            Op::Add(l) => ('+', l),
        };
        if shown == MAX_SHOWN {
            out.push_str("...\n");
            break;
        }
        shown += 1;
        out.push(sign);
        out.push(' ');
        out.push_str(&show(text, 200));
        out.push('\n');
    }
    Some(out)
}

enum Op<'a> {
    Same,
    Del(&'a [u8]),
    Add(&'a [u8]),
}

/// The edit script from `a` to `b` by longest common subsequence.
fn lcs<'a>(a: &[&'a [u8]], b: &[&'a [u8]]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    // table[i][j]: the LCS length of a[i..] and b[j..].
    let mut table = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i][j] = if a[i] == b[j] { table[i + 1][j + 1] + 1 } else { table[i + 1][j].max(table[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same);
            i += 1;
            j += 1;
        } else if i < n && (j == m || table[i + 1][j] >= table[i][j + 1]) {
            ops.push(Op::Del(a[i]));
            i += 1;
        } else {
            ops.push(Op::Add(b[j]));
            j += 1;
        }
    }
    ops
}

/// Bytes as readable text: valid UTF-8 kept (control characters escaped), other bytes as
/// `\xNN`; at most `max` characters.
fn show(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if count == max {
                out.push('…');
                return out;
            }
            count += 1;
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            if count == max {
                out.push('…');
                return out;
            }
            count += 1;
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bytes_have_no_diff() {
        assert_eq!(byte_diff(b"same", b"same"), None);
    }

    #[test]
    fn a_latin1_byte_for_utf8_is_shown_where_it_is() {
        let expected = "{\"a\": 1,\n \"name\": \"Sjöberg\"}\n".as_bytes();
        let actual = b"{\"a\": 1,\n \"name\": \"Sj\xF6berg\"}\n";
        let d = byte_diff(expected, actual).expect("a diff");
        assert!(d.contains("first difference at byte 21 (line 2, column 13)"), "{d}");
        assert!(d.contains("expected 0xC3 ö") && d.contains("got 0xF6 \\xF6"), "{d}");
        let minus = d.find("-  \"name\": \"Sjöberg\"}\\n").expect("the expected line");
        let plus = d.find("+  \"name\": \"Sj\\xF6berg\"}\\n").expect("the actual line");
        assert!(minus < plus, "expected before actual: {d}");
        assert!(!d.contains("{\"a\": 1"), "unchanged lines are not shown: {d}");
    }

    #[test]
    fn a_shorter_body_and_line_endings_are_named() {
        let d = byte_diff(b"a\nb\n", b"a\r\nb\n").expect("a diff");
        assert!(d.contains("byte 1 (line 1, column 2)") && d.contains("got 0x0D"), "{d}");
        let d = byte_diff(b"abc", b"ab").expect("a diff");
        assert!(d.contains("got the end"), "{d}");
    }
}
