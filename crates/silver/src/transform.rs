//! A Silver table's definition compiled into DataFusion physical expressions and evaluated
//! on Arrow batches: lookups (struct columns), then the columns in order (each sees the
//! Bronze columns, the lookups and the columns above it; a column named like an earlier one
//! replaces it), then the expectations over the computed row.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringBuilder};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::prelude::SessionContext;
use medallion_config::{Action, SchemaEvolution, SilverTable};
use medallion_core::columns::{RESCUED, SOURCE_FILE, SOURCE_LINE};
use medallion_core::{Error, Result};

use crate::input::BRONZE_VERSION;
use crate::lookup::{Dimension, compile};

/// The type a table stores for `data_type`: view and large string/binary types (which
/// DataFusion produces) as their plain forms, which is what Delta readers get back.
pub fn plain_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}

/// One computed column.
struct ColumnStep {
    expr: Arc<dyn PhysicalExpr>,
    /// Where the result goes in the working batch (replacing, or appended at the end).
    slot: usize,
    /// The working schema after this step.
    schema: SchemaRef,
}

/// One expectation.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Its action.
    pub action: Action,
    expr: Arc<dyn PhysicalExpr>,
}

/// A compiled Silver definition.
pub struct Transform {
    input: SchemaRef,
    lookups: Vec<(Arc<dyn PhysicalExpr>, Dimension, SchemaRef)>,
    columns: Vec<ColumnStep>,
    /// The expectations, in declared order.
    pub rules: Vec<Rule>,
    /// The working schema after every column.
    working: SchemaRef,
    /// Working-batch indices of the written columns, in output order (without `_rescued`).
    output: Vec<usize>,
    /// Working-batch indices of new Bronze columns rescued into `_rescued` (policy rescue).
    rescued: Vec<usize>,
    /// The schema of the rows Silver writes.
    pub output_schema: SchemaRef,
    /// Indices of the key columns in the output schema.
    pub key: Vec<usize>,
    /// Bronze columns that are not declared in the source (schema drift).
    pub drift: Vec<String>,
}

/// A batch after the transform: the rows to write (all of them, in input order), and per
/// row the failed rules.
pub struct Applied {
    /// The output rows (output schema).
    pub rows: RecordBatch,
    /// The computed working batch (every column, helpers included), for quarantine.
    pub working: RecordBatch,
    /// For each rule (declared order), which rows failed it (false or NULL).
    pub failed: Vec<BooleanArray>,
}

impl Transform {
    /// Compiles `def` for input batches of `input` (Bronze columns and `_bronze_version`).
    /// `declared` are the source's declared column names.
    pub fn compile(
        session: &SessionContext,
        def: &SilverTable,
        input: SchemaRef,
        declared: &[String],
        dimensions: Vec<Dimension>,
    ) -> Result<Self> {
        let located = |what: &str, e: String| Error::Other(format!("{what}: {e}"));
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut lookups = Vec::new();
        for ((name, spec), dimension) in def.lookups.iter().zip(dimensions) {
            let schema = Schema::new(fields.clone());
            let expr = compile(session, &spec.match_expr.value, &schema)
                .map_err(|e| located(&format!("lookups.{name}.match"), e))?;
            fields.push(Field::new(name.as_str(), dimension.data_type(), true));
            lookups.push((expr, dimension, Arc::new(Schema::new(fields.clone()))));
        }
        let mut columns = Vec::new();
        for (name, column) in def.columns.iter() {
            let schema = Schema::new(fields.clone());
            let expr = compile(session, &column.expr.value, &schema)
                .map_err(|e| located(&format!("columns.{name}"), e))?;
            let data_type = expr
                .data_type(&schema)
                .map_err(|e| located(&format!("columns.{name}"), e.to_string()))?;
            let field = Field::new(name.as_str(), data_type, true);
            let slot = match fields.iter().position(|f| f.name() == name.as_str()) {
                Some(i) => {
                    fields[i] = field;
                    i
                }
                None => {
                    fields.push(field);
                    fields.len() - 1
                }
            };
            columns.push(ColumnStep {
                expr,
                slot,
                schema: Arc::new(Schema::new(fields.clone())),
            });
        }
        let working = Arc::new(Schema::new(fields.clone()));
        let mut rules = Vec::new();
        for (name, expectation) in def.expectations.iter() {
            let expr = compile(session, &expectation.expr.value, &working)
                .map_err(|e| located(&format!("expectations.{name}"), e))?;
            rules.push(Rule {
                name: name.as_str().to_string(),
                action: expectation.action.value,
                expr,
            });
        }
        // Written columns: the kept definitions, then new Bronze columns (by policy),
        // then the lineage columns.
        let position = |name: &str| fields.iter().position(|f| f.name() == name);
        let mut output = Vec::new();
        for (name, column) in def.columns.iter() {
            if column.keep {
                let i =
                    position(name.as_str()).expect("a computed column is in the working schema");
                if !output.contains(&i) {
                    output.push(i);
                }
            }
        }
        let defined: Vec<&str> = def.columns.keys().map(|k| k.as_str()).collect();
        let drift: Vec<String> = input
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !n.starts_with('_') && !declared.contains(n))
            .collect();
        let mut rescued = Vec::new();
        match def.schema_evolution {
            SchemaEvolution::AddColumns => {
                for name in drift.iter().filter(|n| !defined.contains(&n.as_str())) {
                    output.push(position(name).expect("a Bronze column is in the working schema"));
                }
            }
            SchemaEvolution::Rescue => {
                rescued = drift
                    .iter()
                    .filter(|n| !defined.contains(&n.as_str()))
                    .map(|n| position(n).expect("a Bronze column is in the working schema"))
                    .collect();
            }
            SchemaEvolution::Fail => {}
        }
        let mut out_fields: Vec<Field> = output
            .iter()
            .map(|&i| {
                let f = &fields[i];
                Field::new(f.name(), plain_type(f.data_type()), true)
            })
            .collect();
        if def.schema_evolution == SchemaEvolution::Rescue {
            out_fields.push(Field::new(RESCUED, DataType::Utf8, true));
        }
        for lineage in [SOURCE_FILE, SOURCE_LINE, BRONZE_VERSION] {
            let i = position(lineage).ok_or_else(|| {
                Error::Other(format!("the Bronze input has no `{lineage}` column"))
            })?;
            output.push(i);
            out_fields.push(fields[i].clone().with_nullable(true));
        }
        let output_schema = Arc::new(Schema::new(out_fields));
        let key = def
            .key
            .iter()
            .map(|k| {
                output_schema
                    .index_of(k.as_str())
                    .map_err(|_| Error::Other(format!("key column `{k}` is not a written column")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            input,
            lookups,
            columns,
            rules,
            working,
            output,
            rescued,
            output_schema,
            key,
            drift,
        })
    }

    /// Each lookup's name and the fingerprint of its dimension.
    pub fn dimension_fingerprints(&self) -> Vec<(String, u64)> {
        self.lookups
            .iter()
            .map(|(_, d, _)| (d.name.clone(), d.fingerprint))
            .collect()
    }

    /// The full working schema (every column, helpers included).
    pub fn working_schema(&self) -> &SchemaRef {
        &self.working
    }

    /// Computes one batch of input rows.
    pub fn apply(
        &self,
        batch: &RecordBatch,
        ambiguous: &mut BTreeMap<String, BTreeMap<String, u64>>,
    ) -> Result<Applied> {
        let rows = batch.num_rows();
        let err = |e: &dyn std::fmt::Display| Error::Other(e.to_string());
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut current =
            RecordBatch::try_new(self.input.clone(), columns.clone()).map_err(|e| err(&e))?;
        for (expr, dimension, schema) in &self.lookups {
            let matches = expr
                .evaluate(&current)
                .and_then(|v| v.into_array(rows))
                .map_err(|e| err(&e))?;
            let counts = ambiguous.entry(dimension.name.clone()).or_default();
            columns.push(dimension.join(&matches, counts)?);
            current = RecordBatch::try_new(schema.clone(), columns.clone()).map_err(|e| err(&e))?;
        }
        for step in &self.columns {
            let value = step
                .expr
                .evaluate(&current)
                .and_then(|v| v.into_array(rows))
                .map_err(|e| err(&e))?;
            let want = step.schema.field(step.slot).data_type();
            let value = if value.data_type() == want {
                value
            } else {
                cast(&value, want).map_err(|e| err(&e))?
            };
            if step.slot < columns.len() {
                columns[step.slot] = value;
            } else {
                columns.push(value);
            }
            current =
                RecordBatch::try_new(step.schema.clone(), columns.clone()).map_err(|e| err(&e))?;
        }
        let mut failed = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let value = rule
                .expr
                .evaluate(&current)
                .and_then(|v| v.into_array(rows))
                .map_err(|e| err(&e))?;
            let value = cast(&value, &DataType::Boolean).map_err(|e| err(&e))?;
            let value = value.as_boolean();
            // Failed = false or NULL.
            let fails: BooleanArray = value.iter().map(|v| Some(v != Some(true))).collect();
            failed.push(fails);
        }
        let mut out: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        let lineage_at = self.output.len() - 3;
        for &i in &self.output[..lineage_at] {
            out.push(columns[i].clone());
        }
        if self.output_schema.field_with_name(RESCUED).is_ok() {
            out.push(self.rescue(&current)?);
        }
        for &i in &self.output[lineage_at..] {
            out.push(columns[i].clone());
        }
        let out = out
            .into_iter()
            .zip(self.output_schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type()).map_err(|e| err(&e))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Applied {
            rows: RecordBatch::try_new(self.output_schema.clone(), out).map_err(|e| err(&e))?,
            working: current,
            failed,
        })
    }

    /// `_rescued` for the rescue policy: the new Bronze columns' non-null values as a JSON
    /// object.
    fn rescue(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let options = FormatOptions::default();
        let columns: Vec<(&str, &ArrayRef, bool)> = self
            .rescued
            .iter()
            .map(|&i| {
                let c = batch.column(i);
                let raw = c.data_type().is_numeric() || matches!(c.data_type(), DataType::Boolean);
                (self.working.field(i).name().as_str(), c, raw)
            })
            .collect();
        let formatters = columns
            .iter()
            .map(|(_, c, _)| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Other(e.to_string()))?;
        let mut b = StringBuilder::new();
        for row in 0..batch.num_rows() {
            let mut object = serde_json::Map::new();
            for ((name, column, raw), f) in columns.iter().zip(&formatters) {
                if column.is_null(row) {
                    continue;
                }
                let text = f.value(row).to_string();
                let value = if *raw {
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                } else {
                    serde_json::Value::String(text)
                };
                object.insert((*name).to_string(), value);
            }
            if object.is_empty() {
                b.append_null();
            } else {
                b.append_value(serde_json::Value::Object(object).to_string());
            }
        }
        Ok(Arc::new(b.finish()))
    }
}
