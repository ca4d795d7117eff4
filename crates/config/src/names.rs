//! Validated names: table, source and rule names, column names, and `layer.table` references.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The layers of the lakehouse, in dependency order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Raw data as landed.
    Bronze,
    /// Cleaned, conformed, deduplicated.
    Silver,
    /// Business KPIs.
    Gold,
}

impl Layer {
    /// Every layer, in dependency order.
    pub const ALL: [Layer; 3] = [Layer::Bronze, Layer::Silver, Layer::Gold];

    /// The layer's name as written in configs and table references.
    pub const fn as_str(self) -> &'static str {
        match self {
            Layer::Bronze => "bronze",
            Layer::Silver => "silver",
            Layer::Gold => "gold",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bronze" => Ok(Layer::Bronze),
            "silver" => Ok(Layer::Silver),
            "gold" => Ok(Layer::Gold),
            other => Err(format!(
                "unknown layer `{other}`, expected `bronze`, `silver` or `gold`"
            )),
        }
    }
}

/// A table, source, lookup or rule name: lowercase letters, digits and `_`, starting with
/// a letter, at most 64 characters. These names become directory names and SQL identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates a name.
    pub fn new(s: &str) -> Result<Self, String> {
        let mut chars = s.chars();
        let ok = matches!(chars.next(), Some('a'..='z'))
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
            && s.len() <= 64;
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "invalid name `{s}`: use lowercase letters, digits and `_`, starting with a letter (at most 64 characters)"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A column name: letters, digits and `_`, not starting with a digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnName(String);

impl ColumnName {
    /// Validates a column name.
    pub fn new(s: &str) -> Result<Self, String> {
        let mut chars = s.chars();
        let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && s.len() <= 128;
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "invalid column name `{s}`: use letters, digits and `_`, not starting with a digit"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A reference to a table: `layer.table`, e.g. `silver.events`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// The layer.
    pub layer: Layer,
    /// The table's name within the layer.
    pub name: Name,
}

impl TableRef {
    /// A reference to `layer.name`.
    pub fn new(layer: Layer, name: Name) -> Self {
        Self { layer, name }
    }
}

impl FromStr for TableRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((layer, name)) = s.split_once('.') else {
            return Err(format!(
                "invalid table reference `{s}`: write `layer.table`, e.g. `silver.events`"
            ));
        };
        Ok(Self {
            layer: layer.parse()?,
            name: Name::new(name)?,
        })
    }
}

macro_rules! string_newtype {
    ($ty:ident, $ctor:expr, $schema:expr) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.to_string_repr(), f)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = Cow::<str>::deserialize(d)?;
                $ctor(&s).map_err(serde::de::Error::custom)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

trait Repr {
    fn to_string_repr(&self) -> Cow<'_, str>;
}
impl Repr for Name {
    fn to_string_repr(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}
impl Repr for ColumnName {
    fn to_string_repr(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}
impl Repr for TableRef {
    fn to_string_repr(&self) -> Cow<'_, str> {
        Cow::Owned(format!("{}.{}", self.layer, self.name.0))
    }
}

string_newtype!(
    Name,
    Name::new,
    json_schema!({"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"})
);
string_newtype!(
    ColumnName,
    ColumnName::new,
    json_schema!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"})
);
string_newtype!(
    TableRef,
    str::parse::<TableRef>,
    json_schema!({"type": "string", "pattern": "^(bronze|silver|gold)\\.[a-z][a-z0-9_]*$"})
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(Name::new("campaign_daily").is_ok());
        assert!(Name::new("Events").is_err());
        assert!(Name::new("1x").is_err());
        assert!(Name::new("a-b").is_err());
        assert!(ColumnName::new("_source_file").is_ok());
        assert!(ColumnName::new("utm campaign").is_err());
    }

    #[test]
    fn table_refs_parse_and_print() {
        let r: TableRef = "silver.events".parse().unwrap();
        assert_eq!(r.layer, Layer::Silver);
        assert_eq!(r.to_string(), "silver.events");
        assert!("events".parse::<TableRef>().is_err());
        assert!("platinum.events".parse::<TableRef>().is_err());
    }
}
