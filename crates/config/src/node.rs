//! The YAML document as a tree of located nodes, and `${VAR}` interpolation over it.
//!
//! Parsing first into this tree (rather than straight into the typed configuration) is what
//! lets validation report every problem at once, each with its line and column: the typed pass
//! in [`crate::de`] walks the tree, and a syntax error is the only thing that stops early.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::diagnostic::{Diagnostic, Loc};

/// A YAML node with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub kind: NodeKind,
    /// Where the node starts.
    pub loc: Loc,
    /// Whether `${VAR}` interpolation changed this scalar (then a numeric or boolean
    /// target accepts its text, since the variable's value could not be typed in YAML).
    pub interpolated: bool,
    /// Whether interpolation failed here (already reported; type errors on it are not).
    pub poisoned: bool,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(Node, Node)>),
}

impl NodeKind {
    /// How the value is described in messages ("a mapping", "the string \"x\"").
    pub fn describe(&self) -> String {
        match self {
            Self::Null => "nothing (null)".into(),
            Self::Bool(b) => format!("the boolean `{b}`"),
            Self::Int(i) => format!("the number `{i}`"),
            Self::UInt(u) => format!("the number `{u}`"),
            Self::Float(x) => format!("the number `{x}`"),
            Self::Str(s) if s.chars().count() > 40 => "a string".into(),
            Self::Str(s) => format!("the string {s:?}"),
            Self::Seq(_) => "a list".into(),
            Self::Map(_) => "a mapping".into(),
        }
    }
}

impl Node {
    /// The string value of a scalar key.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parses YAML text into a located tree. A syntax error (bad indentation, unclosed
/// bracket, duplicate key, …) stops parsing and is returned as one diagnostic.
pub fn parse(text: &str) -> Result<Node, Box<Diagnostic>> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    match serde_saphyr::from_str_with_options::<Node>(text, options) {
        Ok(node) => Ok(node),
        Err(e) => {
            let loc = e
                .location()
                .map(|l| Loc::new(l.line(), l.column()))
                .unwrap_or_default();
            Err(Box::new(Diagnostic::error(loc, "", syntax_message(&e))))
        }
    }
}

/// The parser's message without its own location prefix and snippet (we render those).
fn syntax_message(e: &serde_saphyr::Error) -> String {
    let rendered = e.without_snippet().to_string();
    let mut msg = rendered.lines().next().unwrap_or_default().trim();
    msg = msg.strip_prefix("error:").unwrap_or(msg).trim();
    if let Some(rest) = msg.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(':')
    {
        msg = after.trim();
    }
    let mut msg = msg
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(msg)
        .to_string();
    // The position is rendered separately.
    if let Some(at) = msg.rfind(" at line ") {
        msg.truncate(at);
    }
    if let Some(key) = msg.strip_prefix("duplicate mapping key: ") {
        return format!("duplicate key `{key}`: each key may appear once in a mapping");
    }
    if msg.is_empty() {
        "invalid YAML".into()
    } else {
        format!("invalid YAML: {msg}")
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<NodeKind>::deserialize(d)?;
        Ok(Node {
            kind: spanned.value,
            loc: Loc::new(spanned.referenced.line(), spanned.referenced.column()),
            interpolated: false,
            poisoned: false,
        })
    }
}

impl<'de> Deserialize<'de> for NodeKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl<'de> Visitor<'de> for KindVisitor {
            type Value = NodeKind;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<NodeKind, E> {
                Ok(NodeKind::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<NodeKind, E> {
                Ok(if v >= 0 {
                    NodeKind::UInt(v.unsigned_abs())
                } else {
                    NodeKind::Int(v)
                })
            }
            fn visit_u64<E>(self, v: u64) -> Result<NodeKind, E> {
                Ok(NodeKind::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<NodeKind, E> {
                Ok(NodeKind::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<NodeKind, E> {
                Ok(NodeKind::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<NodeKind, E> {
                Ok(NodeKind::Str(v))
            }
            fn visit_unit<E>(self) -> Result<NodeKind, E> {
                Ok(NodeKind::Null)
            }
            fn visit_none<E>(self) -> Result<NodeKind, E> {
                Ok(NodeKind::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeKind, D::Error> {
                NodeKind::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeKind, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(NodeKind::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeKind, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Node>()? {
                    let value = map.next_value::<Node>()?;
                    entries.push((key, value));
                }
                Ok(NodeKind::Map(entries))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeKind, E> {
                Ok(NodeKind::Str(String::from_utf8_lossy(v).into_owned()))
            }
        }
        d.deserialize_any(KindVisitor)
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` in every string value (not in keys) with the
/// variable's value; `$${` stands for a literal `${`. An unset variable without a default
/// is an error naming it; every such error is reported.
pub fn interpolate(
    node: &mut Node,
    path: &mut Vec<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<Diagnostic>,
) {
    match &mut node.kind {
        NodeKind::Str(s) if s.contains('$') => match expand(s, lookup) {
            Ok(Some(expanded)) => {
                *s = expanded;
                node.interpolated = true;
            }
            Ok(None) => {}
            Err(problems) => {
                node.poisoned = true;
                for problem in problems {
                    out.push(
                        Diagnostic::error(node.loc, path.join("."), problem.0)
                            .with_help_opt(problem.1),
                    );
                }
            }
        },
        NodeKind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                interpolate(item, path, lookup, out);
                path.pop();
            }
        }
        NodeKind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.as_str().unwrap_or("?").to_string());
                interpolate(v, path, lookup, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Words that mark a key as a credential.
const CREDENTIAL_WORDS: [&str; 6] = [
    "secret",
    "password",
    "access_key",
    "token",
    "credential",
    "session_key",
];

/// Whether a key names a credential.
pub fn is_credential_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    CREDENTIAL_WORDS.iter().any(|w| lower.contains(w))
}

/// Reports every key anywhere in the document that names a credential: credentials come
/// from the environment or the instance/pod role, never from the configuration file.
pub fn credential_keys(node: &Node, path: &mut Vec<String>, out: &mut Vec<Diagnostic>) {
    match &node.kind {
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                let key = k.as_str().unwrap_or_default();
                if is_credential_key(key) {
                    out.push(
                        Diagnostic::error(k.loc, path.join("."), format!("`{key}` is a credential"))
                            .with_help("credentials are never read from layers.yaml: set them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, …) or use the instance/pod role"),
                    );
                }
                path.push(key.to_string());
                credential_keys(v, path, out);
                path.pop();
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                credential_keys(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

type Problem = (String, Option<String>);

/// Expands variables in `s`; `Ok(None)` when nothing was expanded.
fn expand(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, Vec<Problem>> {
    let mut out = String::with_capacity(s.len());
    let mut problems = Vec::new();
    let mut changed = false;
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            changed = true;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                problems.push((
                    "unterminated `${` in a value".to_string(),
                    Some("write `${NAME}`, or `$${` for a literal `${`".to_string()),
                ));
                break;
            };
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                problems.push((
                    format!("invalid variable name `{name}` in `${{{inner}}}`"),
                    Some(
                        "variable names use letters, digits and `_`, and do not start with a digit"
                            .into(),
                    ),
                ));
            } else {
                match (lookup(name), default) {
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(default)) => out.push_str(default),
                    (None, None) => problems.push((
                        format!("environment variable `{name}` is not set"),
                        Some(format!(
                            "set `{name}`, or give a default: `${{{name}:-value}}`"
                        )),
                    )),
                }
            }
            changed = true;
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if !problems.is_empty() {
        Err(problems)
    } else if changed {
        Ok(Some(out))
    } else {
        Ok(None)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BUCKET" => Some("lake".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(
            expand("s3://${BUCKET}/x", &env).unwrap().as_deref(),
            Some("s3://lake/x")
        );
        assert_eq!(
            expand("${NOPE:-./lake}", &env).unwrap().as_deref(),
            Some("./lake")
        );
        assert_eq!(expand("a${EMPTY}b", &env).unwrap().as_deref(), Some("ab"));
        assert_eq!(
            expand("$${BUCKET}", &env).unwrap().as_deref(),
            Some("${BUCKET}")
        );
        assert_eq!(expand("price > $5", &env).unwrap(), None);
    }

    #[test]
    fn reports_every_unset_variable() {
        let problems = expand("${A}/${B:-x}/${C}", &env).unwrap_err();
        let messages: Vec<_> = problems.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            messages,
            [
                "environment variable `A` is not set",
                "environment variable `C` is not set"
            ]
        );
        assert!(expand("${oops", &env).is_err());
        assert!(expand("${1X}", &env).is_err());
    }

    #[test]
    fn parses_with_locations() {
        let node = parse("a: 1\nb:\n  c: \"x\"\n").unwrap();
        let c = node.get("b").and_then(|b| b.get("c")).unwrap();
        assert_eq!(c.kind, NodeKind::Str("x".into()));
        assert_eq!(c.loc, Loc::new(3, 6));
    }

    #[test]
    fn duplicate_keys_are_rejected_with_location() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.loc, Loc::new(3, 1));
        assert_eq!(
            err.message,
            "duplicate key `a`: each key may appear once in a mapping"
        );
    }
}
