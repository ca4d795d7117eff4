//! Dimension lookups: a Silver dimension read whole (dimensions are small), indexed by its
//! key expression, and joined to each batch as one struct column named after the lookup,
//! so that `fx.usd_per_unit` is a field of it and never clashes with the row's own columns.
//!
//! A key value that several dimension rows share is ambiguous: it resolves to no match and
//! is counted (a warning), or fails the run (`on_ambiguous: fail`). Each lookup has a
//! fingerprint of what every key value resolves to; when it changes, the rows that looked
//! the dimension up may resolve differently, and the Silver table is restated.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, StructArray, UInt32Array};
use deltalake::arrow::compute::{cast, concat_batches, take};
use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::logical_expr::simplify::SimplifyContext;
use deltalake::datafusion::optimizer::simplify_expressions::ExprSimplifier;
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::prelude::SessionContext;
use medallion_config::{Lookup, OnAmbiguous, TableRef};
use medallion_core::columns::{SOURCE_FILE, SOURCE_LINE};
use medallion_core::table::{open_existing, storage_error};
use medallion_core::{Error, Pipeline, Result};

use crate::input::BRONZE_VERSION;
use crate::transform::plain_type;

/// A dimension indexed by its key.
#[derive(Debug)]
pub struct Dimension {
    /// The lookup's name.
    pub name: String,
    /// The dimension's rows as one struct array (its written columns).
    rows: StructArray,
    /// Key value → row, or `None` when several rows share it.
    index: HashMap<String, Option<u32>>,
    /// What to do with an ambiguous key value.
    on_ambiguous: OnAmbiguous,
    /// Fingerprint of what every key value resolves to.
    pub fingerprint: u64,
    /// The dimension table and the version read.
    pub table: TableRef,
    pub version: i64,
}

impl Dimension {
    /// The struct type of the lookup's column.
    pub fn data_type(&self) -> DataType {
        self.rows.data_type().clone()
    }

    /// Reads the dimension of `spec` whole and indexes it by its key expression.
    pub async fn load(
        pipeline: &Pipeline,
        session: &SessionContext,
        name: &str,
        spec: &Lookup,
    ) -> Result<Self> {
        let table_ref = &spec.table.value;
        let url = pipeline.locations.table(table_ref);
        let table = open_existing(&url).await?.ok_or_else(|| {
            Error::Other(format!(
                "lookup `{name}` reads `{table_ref}`, which does not exist yet: run it first"
            ))
        })?;
        table
            .update_datafusion_session(&session.state())
            .map_err(|e| storage_error(&url, e))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| storage_error(&url, e))?;
        let frame = session
            .read_table(provider)
            .map_err(|e| Error::Other(e.to_string()))?;
        let schema: Schema = frame.schema().as_arrow().clone();
        let batches = frame
            .collect()
            .await
            .map_err(|e| Error::Other(format!("reading `{table_ref}`: {e}")))?;
        let all = concat_batches(&Arc::new(schema.clone()), &batches)
            .map_err(|e| Error::Other(e.to_string()))?;
        // The lookup column carries the dimension's own columns, not its lineage columns.
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| {
                ![SOURCE_FILE, SOURCE_LINE, BRONZE_VERSION]
                    .contains(&schema.field(i).name().as_str())
            })
            .collect();
        let all = all
            .project(&keep)
            .map_err(|e| Error::Other(e.to_string()))?;
        // Plain string types, as the rows that look the dimension up store them.
        let plain = Arc::new(Schema::new(
            all.schema()
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), plain_type(f.data_type()), true))
                .collect::<Vec<_>>(),
        ));
        let all = crate::input::conform(&all, &plain)?;
        let key = compile(session, &spec.key.value, all.schema().as_ref())
            .map_err(|e| Error::Other(format!("lookup `{name}` key: {e}")))?;
        let keys = evaluate_text(key.as_ref(), &all)
            .map_err(|e| Error::Other(format!("lookup `{name}` key: {e}")))?;
        let mut index: HashMap<String, Option<u32>> = HashMap::new();
        for (row, key) in keys.as_string::<i32>().iter().enumerate() {
            let Some(key) = key else { continue };
            index
                .entry(key.to_string())
                .and_modify(|slot| *slot = None)
                .or_insert(Some(row as u32));
        }
        let fields: Fields = all
            .schema()
            .fields()
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect();
        let rows = StructArray::new(fields, all.columns().to_vec(), None);
        let fingerprint = fingerprint(&index, &rows)?;
        Ok(Self {
            name: name.to_string(),
            rows,
            index,
            on_ambiguous: spec.on_ambiguous,
            fingerprint,
            table: table_ref.clone(),
            version: table.version().map_or(-1, |v| v as i64),
        })
    }

    /// The lookup column for a batch whose match values are `matches`; ambiguous values
    /// are counted in `ambiguous`.
    pub fn join(
        &self,
        matches: &ArrayRef,
        ambiguous: &mut BTreeMap<String, u64>,
    ) -> Result<ArrayRef> {
        let text = cast(matches, &DataType::Utf8).map_err(|e| Error::Other(e.to_string()))?;
        let mut indices = Vec::with_capacity(text.len());
        for value in text.as_string::<i32>().iter() {
            indices.push(match value.and_then(|v| self.index.get(v).map(|slot| (v, slot))) {
                None => None,
                Some((_, Some(row))) => Some(*row),
                Some((v, None)) => {
                    if self.on_ambiguous == OnAmbiguous::Fail {
                        return Err(Error::DataQuality(format!(
                            "lookup `{}`: the value `{v}` matches several rows (on_ambiguous: fail)",
                            self.name
                        )));
                    }
                    *ambiguous.entry(v.to_string()).or_default() += 1;
                    None
                }
            });
        }
        take(&self.rows, &UInt32Array::from(indices), None).map_err(|e| Error::Other(e.to_string()))
    }
}

/// Compiles a SQL expression over `schema` into a physical expression.
pub fn compile(
    session: &SessionContext,
    sql: &str,
    schema: &Schema,
) -> std::result::Result<Arc<dyn PhysicalExpr>, String> {
    let df = Arc::new(DFSchema::try_from(schema.clone()).map_err(|e| e.to_string())?);
    let expr = session
        .parse_sql_expr(sql, &df)
        .map_err(|e| e.to_string())?;
    // Coerced and simplified as a query's expressions would be (`coalesce` becomes a
    // `CASE`, constants fold), then made physical.
    let simplifier =
        ExprSimplifier::new(SimplifyContext::builder().with_schema(df.clone()).build());
    let expr = simplifier
        .coerce(expr, &df)
        .and_then(|e| simplifier.simplify(e))
        .map_err(|e| e.to_string())?;
    session
        .create_physical_expr(expr, &df)
        .map_err(|e| e.to_string())
}

/// Evaluates an expression over a batch, as text.
fn evaluate_text(
    expr: &dyn PhysicalExpr,
    batch: &RecordBatch,
) -> std::result::Result<ArrayRef, String> {
    let value = expr
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|e| e.to_string())?;
    cast(&value, &DataType::Utf8).map_err(|e| e.to_string())
}

/// FNV over the sorted key values and the text of the row each resolves to.
fn fingerprint(index: &HashMap<String, Option<u32>>, rows: &StructArray) -> Result<u64> {
    let options = FormatOptions::default().with_null("\u{0}");
    let formatters = rows
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut keys: Vec<(&String, &Option<u32>)> = index.iter().collect();
    keys.sort();
    let mut text = String::new();
    for (key, row) in keys {
        text.push_str(key);
        text.push('\u{1}');
        match row {
            Some(row) => {
                for f in &formatters {
                    text.push_str(&f.value(*row as usize).to_string());
                    text.push('\u{2}');
                }
            }
            None => text.push_str("\u{3}ambiguous"),
        }
        text.push('\n');
    }
    Ok(medallion_core::columns::fnv64(text.as_bytes()))
}
