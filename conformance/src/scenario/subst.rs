//! `${name}` in a step's texts: the values earlier steps captured.
//!
//! Deliberately small: a name is letters, digits and `_`; there are no defaults,
//! expressions or nesting, so a case reads the same to a vendor as to the engine. `$${`
//! writes a literal `${`; a `$` not followed by `{` is itself.

use std::collections::BTreeMap;

/// The text with each `${name}` replaced by its value; an unknown name is an error that
/// lists the known ones.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    walk(text, |piece| {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Name(n) => match vars.get(n) {
                Some(v) => out.push_str(v),
                None => {
                    let known: Vec<&str> = vars.keys().map(String::as_str).collect();
                    return Err(format!("${{{n}}} has no value (known: {})", known.join(", ")));
                }
            },
        }
        Ok(())
    })?;
    Ok(out)
}

/// The text with the `${name}`s that have a value replaced, and the rest kept as written:
/// for describing a step, where a value not yet captured is still worth showing.
pub(crate) fn substitute_known(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let walked = walk(text, |piece| {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Name(n) => match vars.get(n) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("${");
                    out.push_str(n);
                    out.push('}');
                }
            },
        }
        Ok(())
    });
    match walked {
        Ok(()) => out,
        Err(_) => text.to_owned(),
    }
}

/// Every string of a JSON value substituted.
pub(crate) fn substitute_json(
    v: &serde_json::Value,
    vars: &BTreeMap<String, String>,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => Value::String(substitute(s, vars)?),
        Value::Array(a) => Value::Array(a.iter().map(|v| substitute_json(v, vars)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter().map(|(k, v)| Ok((k.clone(), substitute_json(v, vars)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// The names a text uses, in order; an error for `${` without a valid name and `}`.
pub(crate) fn names(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    walk(text, |piece| {
        if let Piece::Name(n) = piece {
            out.push(n.to_owned());
        }
        Ok(())
    })?;
    Ok(out)
}

enum Piece<'a> {
    Text(&'a str),
    Name(&'a str),
}

fn walk<'a>(text: &'a str, mut f: impl FnMut(Piece<'a>) -> Result<(), String>) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        f(Piece::Text(&rest[..at]))?;
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            f(Piece::Text("${"))?;
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| format!("'{text}': `${{` without its `}}`"))?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("'{text}': `${{{name}}}` is not a name (letters, digits and _)"));
            }
            f(Piece::Name(name))?;
            rest = &tail[end + 1..];
        } else {
            f(Piece::Text("$"))?;
            rest = &after[1..];
        }
    }
    f(Piece::Text(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("order_id", "O-1"), ("case", "CONF-X-Y-001")].into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn names_are_replaced_and_the_rest_kept() {
        assert_eq!(substitute("ack ${order_id} in ${case}", &vars()).as_deref(), Ok("ack O-1 in CONF-X-Y-001"));
        assert_eq!(substitute("$5 and $${order_id} and $", &vars()).as_deref(), Ok("$5 and ${order_id} and $"));
        assert_eq!(substitute("åäö ${order_id}ö", &vars()).as_deref(), Ok("åäö O-1ö"));
    }

    #[test]
    fn unknown_or_broken_names_are_errors() {
        let e = substitute("${nope}", &vars()).expect_err("unknown");
        assert!(e.contains("nope") && e.contains("order_id"), "{e}");
        assert!(names("${a b}").is_err());
        assert!(names("${open").is_err());
        assert!(names("${}").is_err());
        assert_eq!(names("${a}-${b_2}-$${c}"), Ok(vec!["a".to_owned(), "b_2".to_owned()]));
    }

    #[test]
    fn a_description_keeps_what_has_no_value_yet() {
        assert_eq!(substitute_known("${order_id} and ${later}", &vars()), "O-1 and ${later}");
        assert_eq!(substitute_known("${broken", &vars()), "${broken");
    }

    #[test]
    fn json_strings_are_substituted_at_any_depth() {
        let v = serde_json::json!({"a": ["${order_id}", 3], "b": {"c": "x${case}"}});
        let out = substitute_json(&v, &vars()).expect("substituted");
        assert_eq!(out, serde_json::json!({"a": ["O-1", 3], "b": {"c": "xCONF-X-Y-001"}}));
    }
}
