//! The Bronze rows a Silver run consumes: the files added by the Bronze commits after the
//! last one consumed, read from the commit files themselves (never a scan of the whole
//! Bronze table), in ingestion order (Bronze version, source file, source line).

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, Int64Array, new_null_array};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use deltalake::{DeltaTable, ObjectStore, Path};
use futures::{Stream, StreamExt, TryStreamExt};
use medallion_core::columns::{SOURCE_FILE, SOURCE_LINE};
use medallion_core::parquet::StoreReader;
use medallion_core::table::{changes_data, commit_actions};
use medallion_core::{Error, Result};
use serde_json::Value;

/// `_bronze_version`: the Bronze commit that added the row.
pub const BRONZE_VERSION: &str = "_bronze_version";

/// Rows per batch read from Bronze.
const BATCH_ROWS: usize = 32 * 1024;

/// A Parquet file added to Bronze by one commit.
#[derive(Debug, Clone)]
pub struct BronzeFile {
    /// Path relative to the table root, as in the log (URL-encoded).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The Bronze version that added it.
    pub version: i64,
    /// The smallest `_source_file` in it (one landed file per Bronze file).
    pub source_file: String,
    /// The smallest `_source_line` in it.
    pub first_line: i64,
    /// Rows in it, from its statistics.
    pub rows: u64,
}

/// The files added by Bronze commits `after + 1 ..= upto`, in ingestion order. Files a
/// commit adds without changing data (a compaction) are not new rows and are skipped.
pub async fn files(table: &DeltaTable, after: i64, upto: i64) -> Result<Vec<BronzeFile>> {
    let mut out = Vec::new();
    for version in (after + 1).max(0)..=upto {
        let actions = commit_actions(table, version).await?.ok_or_else(|| {
            Error::Other(format!(
                "commit {version} of {} is no longer in its Delta log (log retention): \
                 run with --full-refresh to rebuild from the table as it is",
                table.table_url()
            ))
        })?;
        for action in actions {
            let Some(add) = action.get("add").filter(|a| changes_data(a)) else {
                continue;
            };
            let stats: Value = add
                .get("stats")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            let min = &stats["minValues"];
            out.push(BronzeFile {
                path: add["path"].as_str().unwrap_or_default().to_string(),
                size: add["size"].as_u64().unwrap_or_default(),
                version,
                source_file: min[SOURCE_FILE].as_str().unwrap_or_default().to_string(),
                first_line: min[SOURCE_LINE].as_i64().unwrap_or_default(),
                rows: stats["numRecords"].as_u64().unwrap_or_default(),
            });
        }
    }
    // Parquet truncates string statistics to 64 bytes: a long `_source_file` is read from the
    // file itself, so that two landed files sharing a long prefix still sort exactly.
    for file in out.iter_mut().filter(|f| f.source_file.len() >= 60) {
        if let Some(name) = first_source_file(table.object_store(), file).await? {
            file.source_file = name;
        }
    }
    out.sort_by(|a, b| {
        (a.version, &a.source_file, a.first_line, &a.path).cmp(&(
            b.version,
            &b.source_file,
            b.first_line,
            &b.path,
        ))
    });
    Ok(out)
}

/// The `_source_file` of a Bronze file's first row.
async fn first_source_file(
    store: Arc<dyn ObjectStore>,
    file: &BronzeFile,
) -> Result<Option<String>> {
    let what =
        |e: &dyn std::fmt::Display| Error::Storage(format!("Bronze file `{}`: {e}", file.path));
    let location = Path::from_url_path(&file.path).map_err(|e| what(&e))?;
    let reader = StoreReader {
        store,
        location,
        size: file.size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| what(&e))?;
    let Some(column) = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == SOURCE_FILE)
    else {
        return Ok(None);
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(1)
        .with_limit(1)
        .build()
        .map_err(|e| what(&e))?;
    let Some(batch) = stream.next().await else {
        return Ok(None);
    };
    let batch = batch.map_err(|e| what(&e))?;
    let column = cast(batch.column(0), &DataType::Utf8).map_err(|e| what(&e))?;
    let column = column.as_string::<i32>();
    Ok((!column.is_empty() && column.is_valid(0)).then(|| column.value(0).to_string()))
}

/// The schema Silver reads Bronze with: the Bronze table's schema plus `_bronze_version`.
pub fn input_schema(bronze: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = bronze
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(BRONZE_VERSION, DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// Conforms a batch to `schema` by column name: missing columns are NULL (older files lack
/// columns added later), others are cast when their type differs.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => Ok(c.clone()),
            Some(c) => cast(c, field.data_type())
                .map_err(|e| Error::Other(format!("column `{}`: {e}", field.name()))),
            None => Ok(new_null_array(field.data_type(), rows)),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Other(e.to_string()))
}

/// Streams the rows of `files`, in order, as batches of `schema` (the last column being
/// `_bronze_version`).
pub fn rows(
    store: Arc<dyn ObjectStore>,
    files: Vec<BronzeFile>,
    schema: SchemaRef,
) -> impl Stream<Item = Result<RecordBatch>> {
    futures::stream::iter(files)
        .then(move |file| {
            let store = store.clone();
            let schema = schema.clone();
            async move {
                let location = Path::from_url_path(&file.path)
                    .map_err(|e| Error::Other(format!("Bronze file `{}`: {e}", file.path)))?;
                let reader = StoreReader {
                    store,
                    location,
                    size: file.size,
                };
                let what = format!("Bronze file `{}`", file.path);
                let stream = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| Error::Storage(format!("{what}: {e}")))?
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| Error::Storage(format!("{what}: {e}")))?;
                let version = file.version;
                Ok::<_, Error>(stream.map(move |batch| {
                    let batch = batch.map_err(|e| Error::Storage(format!("{what}: {e}")))?;
                    let mut with_version = batch.columns().to_vec();
                    let mut fields: Vec<Field> = batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone())
                        .collect();
                    with_version.push(Arc::new(Int64Array::from_value(version, batch.num_rows())));
                    fields.push(Field::new(BRONZE_VERSION, DataType::Int64, true));
                    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), with_version)
                        .map_err(|e| Error::Other(e.to_string()))?;
                    conform(&batch, &schema)
                }))
            }
        })
        .try_flatten()
}
