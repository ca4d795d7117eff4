//! The schema of a Bronze table: the source's declared columns with their types, the
//! engine's metadata columns, and columns inferred from fields that appeared later.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use medallion_config::{ColumnType, Source};

pub use medallion_core::columns::{INGESTED_AT, RESCUED, RUN_ID, SOURCE_FILE, SOURCE_LINE};
/// Quarantine: the record's bytes.
pub const RAW: &str = "_raw";
/// Quarantine: why the record could not be read.
pub const ERROR: &str = "_error";

/// Metadata columns of every Bronze table, after the declared columns.
pub use medallion_core::columns::BRONZE_METADATA as METADATA_COLUMNS;

/// Arrow field metadata key recording a column's Bronze type where Arrow alone is ambiguous
/// (`json` and `string` are both UTF-8).
pub const TYPE_METADATA_KEY: &str = "medallion.type";

/// A data column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name as it appears in the data.
    pub name: String,
    /// Type.
    pub kind: ColumnType,
}

/// The columns of a Bronze table.
#[derive(Debug, Clone)]
pub struct BronzeSchema {
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    lowercase: HashMap<String, usize>,
    /// Number of data columns before the metadata columns in the table's field order
    /// (columns added later come after the metadata columns).
    meta_at: usize,
}

impl BronzeSchema {
    /// The schema of a new table for `source`: its declared columns.
    pub fn declared(source: &Source) -> Self {
        let columns = source
            .columns
            .iter()
            .map(|(name, kind)| Column {
                name: name.as_str().to_string(),
                kind: kind.value,
            })
            .collect();
        Self::from_columns(columns, usize::MAX)
    }

    /// The schema of an existing table (its Arrow schema), with the declared columns' types
    /// taken from the source.
    pub fn from_arrow(schema: &Schema) -> Self {
        let meta_at = schema
            .fields()
            .iter()
            .position(|f| METADATA_COLUMNS.contains(&f.name().as_str()))
            .unwrap_or(usize::MAX);
        let columns = schema
            .fields()
            .iter()
            .filter(|f| !METADATA_COLUMNS.contains(&f.name().as_str()))
            .map(|f| Column {
                name: f.name().clone(),
                kind: kind_of(f),
            })
            .collect();
        Self::from_columns(columns, meta_at)
    }

    fn from_columns(columns: Vec<Column>, meta_at: usize) -> Self {
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let lowercase = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.to_ascii_lowercase(), i))
            .collect();
        let meta_at = meta_at.min(columns.len());
        Self {
            columns,
            index,
            lowercase,
            meta_at,
        }
    }

    /// The data columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Index of a column by exact name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Whether a new column named `name` may be added: a valid Delta column name that does
    /// not collide (case-insensitively) with an existing or metadata column.
    pub fn can_add(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        !name.is_empty()
            && name.len() <= 255
            && !name.starts_with('_')
            && !name
                .chars()
                .any(|c| " ,;{}()\n\t=".contains(c) || c.is_control())
            && !self.lowercase.contains_key(&lower)
    }

    /// Adds an inferred column, returning its index.
    pub fn add(&mut self, name: &str, kind: ColumnType) -> usize {
        let i = self.columns.len();
        self.columns.push(Column {
            name: name.to_string(),
            kind,
        });
        self.index.insert(name.to_string(), i);
        self.lowercase.insert(name.to_ascii_lowercase(), i);
        i
    }

    /// Adds the columns `other` has and this schema lacks, in `other`'s order. Both must
    /// descend from the same schema; a column both added with different types (or names
    /// differing only in case) is a conflict and nothing is added.
    pub fn merge(&mut self, other: &BronzeSchema) -> Result<(), String> {
        let mut added = Vec::new();
        for column in &other.columns {
            match self.position(&column.name) {
                Some(i) if self.columns[i].kind == column.kind => {}
                Some(i) => {
                    return Err(format!(
                        "column `{}` was inferred as {:?} in an earlier file and as {:?} here",
                        column.name, self.columns[i].kind, column.kind
                    ));
                }
                None if !self.can_add(&column.name) => {
                    return Err(format!(
                        "column `{}` collides with an existing column",
                        column.name
                    ));
                }
                None => added.push(column.clone()),
            }
        }
        for column in added {
            self.add(&column.name, column.kind);
        }
        Ok(())
    }

    /// The Arrow schema of the Bronze table in the table's field order: the declared
    /// columns, the metadata columns, then columns added later.
    pub fn arrow(&self) -> SchemaRef {
        let data = |c: &Column| data_field(&c.name, c.kind);
        let mut fields: Vec<Field> = self.columns[..self.meta_at].iter().map(data).collect();
        fields.extend(metadata_fields());
        fields.extend(self.columns[self.meta_at..].iter().map(data));
        Arc::new(Schema::new(fields))
    }

    /// Where the metadata columns start in [`Self::arrow`].
    pub fn metadata_position(&self) -> usize {
        self.meta_at
    }
}

pub use medallion_core::expressions::arrow_type;

fn data_field(name: &str, kind: ColumnType) -> Field {
    let field = Field::new(name, arrow_type(kind), true);
    if kind == ColumnType::Json {
        field.with_metadata(HashMap::from([(
            TYPE_METADATA_KEY.to_string(),
            "json".to_string(),
        )]))
    } else {
        field
    }
}

/// The Bronze type of an existing Arrow column.
fn kind_of(field: &Field) -> ColumnType {
    if field
        .metadata()
        .get(TYPE_METADATA_KEY)
        .is_some_and(|t| t == "json")
    {
        return ColumnType::Json;
    }
    match field.data_type() {
        DataType::Boolean => ColumnType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 => ColumnType::Int,
        DataType::Int64 => ColumnType::Long,
        DataType::Float32 | DataType::Float64 => ColumnType::Double,
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Timestamp(_, _) => ColumnType::Timestamp,
        _ => ColumnType::String,
    }
}

/// The metadata columns, in order.
pub fn metadata_fields() -> Vec<Field> {
    medallion_core::columns::bronze_metadata_fields()
}

/// The schema of a Bronze quarantine table.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(SOURCE_FILE, DataType::Utf8, false),
        Field::new(SOURCE_LINE, DataType::Int64, false),
        Field::new(RAW, DataType::Binary, false),
        Field::new(ERROR, DataType::Utf8, false),
        Field::new(
            INGESTED_AT,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(RUN_ID, DataType::Utf8, false),
    ]))
}

/// The type a new field gets from its first non-null JSON value.
pub fn infer_json(value: &crate::json::Value<'_>) -> Option<ColumnType> {
    use crate::json::Value;
    match value {
        Value::Null => None,
        Value::Bool(_) => Some(ColumnType::Boolean),
        Value::Number(n) if Value::is_integer_number(n) && n.parse::<i64>().is_ok() => {
            Some(ColumnType::Long)
        }
        Value::Number(_) => Some(ColumnType::Double),
        Value::Str(_) => Some(ColumnType::String),
        Value::Nested(_) => Some(ColumnType::Json),
    }
}
