//! Parquet sources: row groups streamed from the object store, columns cast to their
//! declared types. A value that does not survive the cast is kept in `_rescued` (as its text);
//! undeclared columns are added with the type their Parquet column maps to.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, Int64Array, StringArray, StringBuilder, TimestampMicrosecondArray,
    new_null_array,
};
use deltalake::arrow::compute::{CastOptions, cast_with_options};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};

use deltalake::ObjectStore;
use deltalake::parquet::arrow::ParquetRecordBatchStreamBuilder;
use futures::StreamExt;
use medallion_config::ColumnType;
use tokio::sync::mpsc;

use medallion_core::parquet::StoreReader;

use crate::ingest::Piece;
use crate::json::write_json_string;
use crate::rows::Stamp;
use crate::schema::{BronzeSchema, arrow_type};

/// The Bronze type an undeclared Parquet column gets.
fn infer(data_type: &DataType) -> ColumnType {
    match data_type {
        DataType::Boolean => ColumnType::Boolean,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnType::Long,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => ColumnType::Long,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Double,
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Timestamp(_, _) => ColumnType::Timestamp,
        _ => ColumnType::String,
    }
}

/// Streams a Parquet file's rows as Bronze batches; `_source_line` is the 1-based row index.
pub(crate) async fn read(
    store: Arc<dyn ObjectStore>,
    file: &crate::discover::LandingFile,
    schema: &mut BronzeSchema,
    infer_undeclared: bool,
    stamp: &Stamp,
    out: &mpsc::Sender<Piece>,
) -> Result<(u64, u64), String> {
    let reader = StoreReader {
        store,
        location: file.location.clone(),
        size: file.size,
    };
    let file = file.relative.as_str();
    let mut stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| format!("not a readable Parquet file: {e}"))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let (mut rows, mut rescued_rows) = (0u64, 0u64);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| format!("reading row {}: {e}", rows + 1))?;
        let (converted, rescued) = convert(&batch, schema, infer_undeclared, rows, file, stamp)?;
        rows += batch.num_rows() as u64;
        rescued_rows += rescued;
        out.send(Piece::Rows(converted))
            .await
            .map_err(|_| "the writer stopped".to_string())?;
    }
    Ok((rows, rescued_rows))
}

/// One source batch as a Bronze batch.
fn convert(
    batch: &RecordBatch,
    schema: &mut BronzeSchema,
    infer_undeclared: bool,
    first_row: u64,
    file: &str,
    stamp: &Stamp,
) -> Result<(RecordBatch, u64), String> {
    let n = batch.num_rows();
    let source = batch.schema();
    let mut rescue: Vec<String> = vec![String::new(); n];
    // Undeclared columns first, so the schema is complete before building.
    for field in source.fields() {
        if schema.position(field.name()).is_none()
            && infer_undeclared
            && schema.can_add(field.name())
        {
            schema.add(field.name(), infer(field.data_type()));
        }
    }
    let options = FormatOptions::default();
    let mut data: Vec<ArrayRef> = Vec::with_capacity(schema.columns().len());
    for column in schema.columns() {
        let target = arrow_type(column.kind);
        let Some((i, _)) = source.column_with_name(&column.name) else {
            data.push(new_null_array(&target, n));
            continue;
        };
        let values = batch.column(i);
        let cast = cast_with_options(
            values,
            &target,
            &CastOptions {
                safe: true,
                ..Default::default()
            },
        )
        .map_err(|e| format!("column `{}`: {e}", column.name))?;
        if cast.null_count() > values.null_count() {
            let text =
                ArrayFormatter::try_new(values.as_ref(), &options).map_err(|e| e.to_string())?;
            for (row, slot) in rescue.iter_mut().enumerate() {
                if cast.is_null(row) && !values.is_null(row) {
                    push_member(slot, &column.name, &text.value(row).to_string());
                }
            }
        }
        data.push(cast);
    }
    // Source columns that could not become columns are rescued whole.
    for (i, field) in source.fields().iter().enumerate() {
        if schema.position(field.name()).is_none() {
            let values = batch.column(i);
            let text =
                ArrayFormatter::try_new(values.as_ref(), &options).map_err(|e| e.to_string())?;
            for (row, slot) in rescue.iter_mut().enumerate() {
                if !values.is_null(row) {
                    push_member(slot, field.name(), &text.value(row).to_string());
                }
            }
        }
    }
    let mut rescued = StringBuilder::with_capacity(n, 0);
    let mut rescued_rows = 0;
    for mut slot in rescue {
        if slot.is_empty() {
            rescued.append_null();
        } else {
            slot.push('}');
            rescued.append_value(&slot);
            rescued_rows += 1;
        }
    }
    let at = schema.metadata_position();
    let mut arrays: Vec<ArrayRef> = data[..at].to_vec();
    arrays.push(Arc::new(rescued.finish()));
    arrays.push(Arc::new(StringArray::from(vec![file; n])));
    let first = i64::try_from(first_row).unwrap_or(i64::MAX);
    arrays.push(Arc::new(Int64Array::from_iter_values(
        (0..n as i64).map(|r| first + r + 1),
    )));
    arrays.push(Arc::new(
        TimestampMicrosecondArray::from(vec![stamp.ingested_at_us; n]).with_timezone("UTC"),
    ));
    arrays.push(Arc::new(StringArray::from(vec![&*stamp.run_id; n])));
    arrays.extend(data[at..].iter().cloned());
    let out = RecordBatch::try_new(schema.arrow(), arrays).map_err(|e| e.to_string())?;
    Ok((out, rescued_rows))
}

fn push_member(slot: &mut String, key: &str, text: &str) {
    slot.push(if slot.is_empty() { '{' } else { ',' });
    write_json_string(key, slot);
    slot.push(':');
    write_json_string(text, slot);
}
