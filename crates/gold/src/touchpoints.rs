//! The touchpoint store: the events the built-in models read (touches and conversions
//! only, six columns), kept beside the Gold tables at `{root}/gold/_touchpoints/{events}`
//! and partitioned into identity buckets, so that every event of one identity is in one
//! bucket and the models can be computed one bucket at a time in bounded memory.
//!
//! The store follows its events table incrementally: it records the last events version it
//! holds (application transaction `medallion.gold.touchpoints:<events>`) and appends the
//! touches and conversions of the files added since. When the events table was rewritten
//! (a Silver rebuild) or the touch and conversion types changed, it is rebuilt from the
//! whole table in one commit. A touch is an event of a touch type with a campaign and an
//! identity; a conversion is an event of the conversion type (an event type that is both is
//! a conversion).

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
};
use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::{Action, Transaction};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::StreamExt;
use medallion_config::TableRef;
use medallion_core::table::{
    changes_data, commit, commit_actions, open_existing, open_or_create, storage_error,
    table_properties, transaction_version,
};
use medallion_core::{Error, Pipeline, Result, RunContext};
use serde_json::json;
use tracing::info;

use crate::models::{Settings, literal};

/// Identity buckets: a bucket holds about 1/16 of the touchpoints.
pub const BUCKETS: i32 = 16;

pub const BUCKET: &str = "_bucket";
pub const IDENTITY: &str = "identity";
pub const EVENT_ID: &str = "event_id";
pub const EVENT_US: &str = "event_us";
pub const CONVERSION: &str = "conversion";
pub const CAMPAIGN_ID: &str = "campaign_id";
pub const REVENUE_USD: &str = "revenue_usd";

/// Encoded bytes after which the writer closes its files.
const FLUSH_BYTES: usize = 128 << 20;

/// The store's columns.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(BUCKET, DataType::Int32, false),
        Field::new(IDENTITY, DataType::Utf8, true),
        Field::new(EVENT_ID, DataType::Utf8, true),
        Field::new(EVENT_US, DataType::Int64, false),
        Field::new(CONVERSION, DataType::Boolean, false),
        Field::new(CAMPAIGN_ID, DataType::Utf8, true),
        Field::new(REVENUE_USD, DataType::Float64, true),
    ]))
}

/// The events columns the store is made of.
fn source_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("identity", DataType::Utf8, true),
        Field::new("event_id", DataType::Utf8, true),
        Field::new("event_time", DataType::Int64, true),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("revenue_usd", DataType::Float64, true),
    ]))
}

/// The bucket of an identity (NULL: bucket 0).
pub fn bucket_of(identity: Option<&str>) -> i32 {
    identity.map_or(0, |i| {
        (twox_hash::XxHash3_128::oneshot(i.as_bytes()) as u64 % BUCKETS as u64) as i32
    })
}

fn app_id(events: &TableRef) -> String {
    format!("medallion.gold.touchpoints:{events}")
}
const DEFINITION_APP_ID: &str = "medallion.gold.touchpoints.definition";

fn fingerprint(s: &Settings) -> i64 {
    let text = serde_json::to_string(&(&s.touch_types, &s.conversion_type)).unwrap_or_default();
    (twox_hash::XxHash3_128::oneshot(text.as_bytes()) as u64 >> 1) as i64
}

/// Brings the store of `events` (opened at the version the run reads) up to date and
/// returns it.
pub async fn sync(
    pipeline: &Pipeline,
    events_ref: &TableRef,
    events: &DeltaTable,
    session: &SessionContext,
    events_name: &str,
    settings: &Settings,
    ctx: &RunContext,
) -> Result<DeltaTable> {
    let url = pipeline
        .locations
        .root()
        .join(&format!("gold/_touchpoints/{}/", events_ref.name))
        .map_err(|e| Error::Other(e.to_string()))?;
    let to = events.version().map_or(-1, |v| v as i64);
    let fp = fingerprint(settings);
    let existing = open_existing(&url).await?;
    let (from, same_definition) = match &existing {
        Some(t) => (
            transaction_version(t, &app_id(events_ref)).await?,
            transaction_version(t, DEFINITION_APP_ID).await? == Some(fp),
        ),
        None => (None, false),
    };
    if let (Some(t), Some(from), true) = (&existing, from, same_definition)
        && from == to
    {
        return Ok(t.clone());
    }
    let added = match (from, same_definition) {
        (Some(from), true) if from < to => added_files(events, from, to).await?,
        _ => None,
    };
    let rebuild = added.is_none();
    let store = match existing {
        Some(t) => t,
        None => {
            open_or_create(
                &url,
                &schema(),
                &[BUCKET.to_string()],
                &table_properties(&pipeline.config.storage),
                "touchpoints",
            )
            .await?
        }
    };
    // Event ids are unique: no dictionary for them. A rebuild writes one file per bucket.
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_column_dictionary_enabled(ColumnPath::from(EVENT_ID), false)
        .build();
    let mut writer = RecordBatchWriter::for_table(&store)
        .map_err(|e| storage_error(&url, e))?
        .with_writer_properties(properties);
    let mut adds = Vec::new();
    let mut rows = 0u64;
    let mut write = async |batch: RecordBatch, writer: &mut RecordBatchWriter| -> Result<()> {
        if let Some(batch) = touchpoints(&batch, settings)? {
            rows += batch.num_rows() as u64;
            writer
                .write(batch)
                .await
                .map_err(|e| storage_error(&url, e))?;
            if writer.buffer_len() > FLUSH_BYTES {
                adds.extend(writer.flush().await.map_err(|e| storage_error(&url, e))?);
            }
        }
        Ok(())
    };
    match &added {
        Some(files) => {
            let store_of_events = events.object_store();
            for (path, size) in files {
                let mut batches = crate::changes::read_file(
                    store_of_events.clone(),
                    path,
                    *size,
                    &source_schema(),
                )
                .await?;
                while let Some(batch) = batches.next().await {
                    write(batch?, &mut writer).await?;
                }
            }
        }
        None => {
            let mut types: Vec<String> = settings.touch_types.iter().map(|t| literal(t)).collect();
            types.push(literal(&settings.conversion_type));
            let sql = format!(
                "SELECT identity, event_id, CAST(event_time AS BIGINT) AS event_time, event_type, \
                 campaign_id, CAST(revenue_usd AS DOUBLE) AS revenue_usd \
                 FROM {events_name} WHERE event_type IN ({})",
                types.join(", ")
            );
            let err = |e: deltalake::datafusion::error::DataFusionError| {
                Error::Other(format!(
                    "reading `{events_ref}` for the touchpoint store: {e}"
                ))
            };
            let mut stream = session
                .sql(&sql)
                .await
                .map_err(err)?
                .execute_stream()
                .await
                .map_err(err)?;
            while let Some(batch) = stream.next().await {
                write(batch.map_err(err)?, &mut writer).await?;
            }
        }
    }
    adds.extend(writer.flush().await.map_err(|e| storage_error(&url, e))?);
    let mut actions: Vec<Action> = Vec::new();
    if rebuild {
        actions.extend(
            medallion_core::table::removals(&store, |_| true)?
                .into_iter()
                .map(Action::Remove),
        );
    }
    actions.extend(adds.into_iter().map(Action::Add));
    let info = HashMap::from([(
        "medallion".to_string(),
        json!({
            "run_id": ctx.run_id, "layer": "gold", "table": format!("_touchpoints.{}", events_ref.name),
            "inputs": { events_ref.to_string(): { "from": from, "to": to } },
            "rows_written": rows, "mode": if rebuild { "rebuild" } else { "incremental" },
        }),
    )]);
    let operation = DeltaOperation::Write {
        mode: if rebuild {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        },
        partition_by: Some(vec![BUCKET.to_string()]),
        predicate: None,
    };
    commit(
        &store,
        actions,
        vec![
            Transaction::new(app_id(events_ref), to),
            Transaction::new(DEFINITION_APP_ID, fp),
        ],
        info,
        operation,
        ctx.commit_retries,
    )
    .await
    .map_err(|e| {
        Error::Storage(format!(
            "commit to the touchpoint store failed: {e}; a re-run completes it"
        ))
    })?;
    info!(events = %events_ref, rows, rebuild, "touchpoint store updated");
    let mut store = store;
    store.load().await.map_err(|e| storage_error(&url, e))?;
    Ok(store)
}

/// The data files added by commits `after + 1 ..= upto`, or `None` when a commit also
/// removed data (the table was rewritten) or is no longer in the log.
async fn added_files(
    table: &DeltaTable,
    after: i64,
    upto: i64,
) -> Result<Option<Vec<(String, u64)>>> {
    let mut out = Vec::new();
    for version in (after + 1).max(0)..=upto {
        let Some(actions) = commit_actions(table, version).await? else {
            return Ok(None);
        };
        for action in actions {
            if action.get("remove").is_some_and(changes_data) {
                return Ok(None);
            }
            if let Some(add) = action.get("add").filter(|a| changes_data(a)) {
                out.push((
                    add["path"].as_str().unwrap_or_default().to_string(),
                    add["size"].as_u64().unwrap_or_default(),
                ));
            }
        }
    }
    Ok(Some(out))
}

/// The touches and conversions of a batch of events, as store rows.
fn touchpoints(batch: &RecordBatch, s: &Settings) -> Result<Option<RecordBatch>> {
    let column = |name: &str, to: &DataType| -> Result<ArrayRef> {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| Error::Other(format!("the events table has no column `{name}`")))?;
        cast(c, to).map_err(|e| Error::Other(e.to_string()))
    };
    let identity = column("identity", &DataType::Utf8)?;
    let identity = identity.as_string::<i32>();
    let kind = column("event_type", &DataType::Utf8)?;
    let kind = kind.as_string::<i32>();
    let time = column("event_time", &DataType::Int64)?;
    let time = time.as_primitive::<Int64Type>();
    let campaign = column("campaign_id", &DataType::Utf8)?;
    let revenue = column("revenue_usd", &DataType::Float64)?;
    let event_id = column("event_id", &DataType::Utf8)?;
    let mut keep = Vec::with_capacity(batch.num_rows());
    let mut conversion = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let k = kind.is_valid(row).then(|| kind.value(row));
        let is_conversion = k == Some(s.conversion_type.as_str());
        let is_touch = !is_conversion
            && k.is_some_and(|k| s.touch_types.iter().any(|t| t == k))
            && campaign.is_valid(row)
            && identity.is_valid(row);
        keep.push(time.is_valid(row) && (is_conversion || is_touch));
        conversion.push(is_conversion);
    }
    let keep = BooleanArray::from(keep);
    if keep.true_count() == 0 {
        return Ok(None);
    }
    let buckets: Int32Array = (0..batch.num_rows())
        .map(|row| {
            Some(bucket_of(
                identity.is_valid(row).then(|| identity.value(row)),
            ))
        })
        .collect();
    let full = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(buckets),
            Arc::new(identity.clone()) as ArrayRef,
            event_id,
            Arc::new(time.clone()) as ArrayRef,
            Arc::new(BooleanArray::from(conversion)),
            campaign,
            revenue,
        ],
    )
    .map_err(|e| Error::Other(e.to_string()))?;
    filter_record_batch(&full, &keep)
        .map(Some)
        .map_err(|e| Error::Other(e.to_string()))
}

/// One bucket's touchpoints.
pub struct Bucket {
    pub identity: StringArray,
    pub event_id: StringArray,
    pub event_us: Int64Array,
    pub conversion: BooleanArray,
    pub campaign_id: StringArray,
    pub revenue_usd: Float64Array,
}

/// Reads bucket `bucket` of the store.
pub async fn read_bucket(store: &DeltaTable, bucket: i32) -> Result<Bucket> {
    let snapshot = store.snapshot().map_err(|e| Error::Other(e.to_string()))?;
    let wanted = schema();
    let wanted: SchemaRef = Arc::new(Schema::new(
        wanted.fields().iter().skip(1).cloned().collect::<Vec<_>>(),
    ));
    let value = bucket.to_string();
    let files: Vec<(String, u64)> = snapshot
        .log_data()
        .iter()
        .filter(|f| {
            f.partition_values_map()
                .get(BUCKET)
                .is_some_and(|v| v.as_deref() == Some(value.as_str()))
        })
        .map(|f| (f.path().to_string(), f.size() as u64))
        .collect();
    let mut batches = Vec::new();
    for (path, size) in files {
        let mut stream =
            crate::changes::read_file(store.object_store(), &path, size, &wanted).await?;
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
    }
    let all = deltalake::arrow::compute::concat_batches(&wanted, &batches)
        .map_err(|e| Error::Other(e.to_string()))?;
    let col = |name: &str| {
        all.column_by_name(name)
            .expect("the store's column")
            .clone()
    };
    Ok(Bucket {
        identity: col(IDENTITY).as_string::<i32>().clone(),
        event_id: col(EVENT_ID).as_string::<i32>().clone(),
        event_us: col(EVENT_US).as_primitive::<Int64Type>().clone(),
        conversion: col(CONVERSION).as_boolean().clone(),
        campaign_id: col(CAMPAIGN_ID).as_string::<i32>().clone(),
        revenue_usd: col(REVENUE_USD)
            .as_primitive::<deltalake::arrow::datatypes::Float64Type>()
            .clone(),
    })
}
