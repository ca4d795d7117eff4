//! A serde deserializer over the located [`Node`] tree.
//!
//! It gives typed configuration structs their locations ([`Located`]), reports every unknown
//! key (with a "did you mean") without stopping, and attaches the line, column and field path
//! to every type error. Structs are deserialized with the field list serde provides, so unknown
//! keys are caught here rather than by `deny_unknown_fields`.

use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use crate::diagnostic::{Diagnostic, Loc, did_you_mean};
use crate::located::LOCATED_MARKER;
use crate::node::{Node, NodeKind};

/// The error of a typed pass: a message, and where it happened once known.
#[derive(Debug, Clone)]
pub struct DeError {
    message: String,
    help: Option<String>,
    loc: Option<Loc>,
    path: Option<String>,
    /// Caused by a problem reported already (a failed `${VAR}`): not reported again.
    suppressed: bool,
}

impl DeError {
    /// Whether this error repeats one reported already.
    pub fn is_suppressed(&self) -> bool {
        self.suppressed
    }

    fn at(mut self, loc: Loc, path: &str) -> Self {
        if self.loc.is_none() {
            self.loc = Some(loc);
            self.path = Some(path.to_string());
        }
        self
    }

    fn located(loc: Loc, path: &str, message: String, help: Option<String>) -> Self {
        Self {
            message,
            help,
            loc: Some(loc),
            path: Some(path.to_string()),
            suppressed: false,
        }
    }

    /// Converts into a diagnostic.
    pub fn into_diagnostic(self) -> Diagnostic {
        Diagnostic::error(
            self.loc.unwrap_or_default(),
            self.path.unwrap_or_default(),
            self.message,
        )
        .with_help_opt(self.help)
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            help: None,
            loc: None,
            path: None,
            suppressed: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing required field `{field}`"))
    }
}

/// Collects the problems that do not stop deserialization (unknown keys).
#[derive(Default)]
pub struct Sink {
    diagnostics: RefCell<Vec<Diagnostic>>,
}

impl Sink {
    fn push(&self, d: Diagnostic) {
        self.diagnostics.borrow_mut().push(d);
    }

    /// The collected diagnostics.
    pub fn into_inner(self) -> Vec<Diagnostic> {
        self.diagnostics.into_inner()
    }
}

/// Deserializes `T` from `node`, reporting unknown keys to `sink`.
pub fn from_node<'de, T: de::Deserialize<'de>>(
    node: &Node,
    path: &str,
    sink: &Sink,
) -> Result<T, DeError> {
    T::deserialize(NodeDeserializer {
        node,
        path: path.to_string(),
        sink,
    })
}

/// The deserializer for one node.
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    path: String,
    sink: &'a Sink,
}

impl<'a> NodeDeserializer<'a> {
    fn child(&self, node: &'a Node, segment: &str) -> Self {
        Self {
            node,
            path: join(&self.path, segment),
            sink: self.sink,
        }
    }

    fn mismatch(&self, expected: &dyn Expected) -> DeError {
        let mut e = DeError::located(
            self.node.loc,
            &self.path,
            format!(
                "expected {}, found {}",
                friendly(&expected.to_string()),
                self.node.kind.describe()
            ),
            None,
        );
        e.suppressed = self.node.poisoned;
        e
    }

    fn number_text(&self) -> Option<&str> {
        match &self.node.kind {
            NodeKind::Str(s) if self.node.interpolated => Some(s.trim()),
            _ => None,
        }
    }

    fn deserialize_number<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result: Result<V::Value, DeError> = match &self.node.kind {
            NodeKind::UInt(u) => visitor.visit_u64(*u),
            NodeKind::Int(i) => visitor.visit_i64(*i),
            NodeKind::Float(x) => visitor.visit_f64(*x),
            _ => {
                if let Some(text) = self.number_text() {
                    if let Ok(u) = text.parse::<u64>() {
                        visitor.visit_u64(u)
                    } else if let Ok(i) = text.parse::<i64>() {
                        visitor.visit_i64(i)
                    } else if let Ok(x) = text.parse::<f64>() {
                        visitor.visit_f64(x)
                    } else {
                        return Err(self.mismatch(&visitor));
                    }
                } else {
                    return Err(self.mismatch(&visitor));
                }
            }
        };
        result.map_err(|e| e.at(self.node.loc, &self.path))
    }
}

fn join(path: &str, segment: &str) -> String {
    if path.is_empty() {
        segment.to_string()
    } else {
        format!("{path}.{segment}")
    }
}

macro_rules! numbers {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_number(visitor)
        })*
    };
}

impl<'de> Deserializer<'de> for NodeDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (loc, path) = (self.node.loc, self.path.clone());
        let result: Result<V::Value, DeError> = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) => {
                return self.deserialize_number(visitor);
            }
            NodeKind::Str(s) => visitor.visit_str(s),
            NodeKind::Seq(_) => return self.deserialize_seq(visitor),
            NodeKind::Map(_) => return self.deserialize_map(visitor),
        };
        result.map_err(|e| e.at(loc, &path))
    }

    numbers!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
             deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
             deserialize_f32 deserialize_f64);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result: Result<V::Value, DeError> = match &self.node.kind {
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Str(s) if self.node.interpolated && matches!(s.trim(), "true" | "false") => {
                visitor.visit_bool(s.trim() == "true")
            }
            _ => return Err(self.mismatch(&visitor)),
        };
        result.map_err(|e| e.at(self.node.loc, &self.path))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Plain scalars such as `2024` or `true` are accepted where text is expected:
        // YAML types them, but the user meant the text.
        let result: Result<V::Value, DeError> = match &self.node.kind {
            NodeKind::Str(s) => visitor.visit_str(s),
            NodeKind::Bool(b) => visitor.visit_string(b.to_string()),
            NodeKind::Int(i) => visitor.visit_string(i.to_string()),
            NodeKind::UInt(u) => visitor.visit_string(u.to_string()),
            NodeKind::Float(x) => visitor.visit_string(x.to_string()),
            _ => return Err(self.mismatch(&visitor)),
        };
        result.map_err(|e| e.at(self.node.loc, &self.path))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (loc, path) = (self.node.loc, self.path.clone());
        match self.node.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(loc, &path))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (loc, path) = (self.node.loc, self.path.clone());
        if name == LOCATED_MARKER {
            visitor.visit_seq(LocatedAccess {
                step: 0,
                de: Some(self),
            })
        } else {
            visitor.visit_newtype_struct(self)
        }
        .map_err(|e| e.at(loc, &path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (loc, path) = (self.node.loc, self.path.clone());
        match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                parent: &self,
            }),
            NodeKind::Null => visitor.visit_seq(SeqDe {
                items: [].iter().enumerate(),
                parent: &self,
            }),
            // A single scalar where a list is expected is a list of one (`key: id`).
            NodeKind::Str(_) | NodeKind::UInt(_) | NodeKind::Int(_) => visitor.visit_seq(SeqDe {
                items: std::slice::from_ref(self.node).iter().enumerate(),
                parent: &self,
            }),
            _ => return Err(self.mismatch(&visitor)),
        }
        .map_err(|e| e.at(loc, &path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (loc, path) = (self.node.loc, self.path.clone());
        match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter().collect::<Vec<_>>().into_iter(),
                value: None,
                parent: &self,
            }),
            NodeKind::Null => visitor.visit_map(MapDe {
                entries: Vec::new().into_iter(),
                value: None,
                parent: &self,
            }),
            _ => return Err(self.mismatch(&visitor)),
        }
        .map_err(|e| e.at(loc, &path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (loc, path) = (self.node.loc, self.path.clone());
        let entries: Vec<&(Node, Node)> = match &self.node.kind {
            NodeKind::Map(entries) => entries.iter().collect(),
            NodeKind::Null => Vec::new(),
            _ => {
                let expected = format!("a mapping with the keys {}", list(fields));
                return Err(DeError::located(
                    loc,
                    &path,
                    format!("expected {expected}, found {}", self.node.kind.describe()),
                    None,
                ));
            }
        };
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            let (key, _) = entry;
            match key.as_str() {
                Some(k) if fields.contains(&k) => known.push(entry),
                // Credentials are reported by the credential scan, once.
                Some(k) if crate::node::is_credential_key(k) => {}
                Some(k) => self.sink.push(unknown_key(key.loc, &path, k, fields)),
                None => self.sink.push(Diagnostic::error(
                    key.loc,
                    path.clone(),
                    format!("expected a key name, found {}", key.kind.describe()),
                )),
            }
        }
        visitor
            .visit_map(MapDe {
                entries: known.into_iter(),
                value: None,
                parent: &self,
            })
            .map_err(|e| e.at(loc, &path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (loc, path) = (self.node.loc, self.path.clone());
        match &self.node.kind {
            NodeKind::Str(s) if variants.contains(&s.as_str()) => {
                visitor.visit_enum(s.as_str().into_deserializer())
            }
            NodeKind::Str(s) => Err(DeError::located(
                loc,
                &path,
                format!("unknown value `{s}`, expected one of {}", list(variants)),
                did_you_mean(s, variants.iter().copied()),
            )),
            _ => Err(DeError::located(
                loc,
                &path,
                format!(
                    "expected one of {}, found {}",
                    list(variants),
                    self.node.kind.describe()
                ),
                None,
            )),
        }
        .map_err(|e| e.at(loc, &path))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names a key that a struct does not have, with the likeliest intended one.
fn unknown_key(loc: Loc, path: &str, key: &str, fields: &[&str]) -> Diagnostic {
    let d = Diagnostic::error(loc, path, format!("unknown key `{key}`"));
    match did_you_mean(key, fields.iter().copied()) {
        Some(help) => d.with_help(help),
        None => d.with_help(format!("expected one of {}", list(fields))),
    }
}

/// Serde names primitive types the Rust way; people read YAML.
fn friendly(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "`true` or `false`",
        other => other,
    }
}

struct SeqDe<'p, 'a, I> {
    items: I,
    parent: &'p NodeDeserializer<'a>,
}

impl<'de, 'a, I> SeqAccess<'de> for SeqDe<'_, 'a, I>
where
    I: Iterator<Item = (usize, &'a Node)>,
{
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, node)) => seed
                .deserialize(self.parent.child(node, &i.to_string()))
                .map(Some),
            None => Ok(None),
        }
    }
}

struct MapDe<'p, 'a, I> {
    entries: I,
    value: Option<(&'a Node, String)>,
    parent: &'p NodeDeserializer<'a>,
}

impl<'de, 'a, I> MapAccess<'de> for MapDe<'_, 'a, I>
where
    I: Iterator<Item = &'a (Node, Node)>,
{
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                let segment = match &key.kind {
                    NodeKind::Str(s) => s.clone(),
                    other => other.describe(),
                };
                self.value = Some((value, segment));
                let key_de = NodeDeserializer {
                    node: key,
                    path: self.parent.path.clone(),
                    sink: self.parent.sink,
                };
                seed.deserialize(key_de).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, segment) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before key"))?;
        seed.deserialize(self.parent.child(node, &segment))
    }
}

/// Hands `(line, column, value)` to [`crate::Located`].
struct LocatedAccess<'a> {
    step: u8,
    de: Option<NodeDeserializer<'a>>,
}

impl<'de> SeqAccess<'de> for LocatedAccess<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.step += 1;
        match self.step {
            1 => {
                let line = self.de.as_ref().map_or(0, |d| d.node.loc.line);
                seed.deserialize(line.into_deserializer()).map(Some)
            }
            2 => {
                let column = self.de.as_ref().map_or(0, |d| d.node.loc.column);
                seed.deserialize(column.into_deserializer()).map(Some)
            }
            3 => match self.de.take() {
                Some(de) => seed.deserialize(de).map(Some),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }
}
