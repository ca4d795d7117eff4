//! The run log: one row per table run in the Delta table `{root}/_system/runs`, readable as
//! `_system.runs` in `medallion query`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{ArrayRef, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Action;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::table::{commit, open_or_create, storage_error, table_properties};
use crate::{Pipeline, RunContext};

/// What one table run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The run (also `_run_id` in rows and in every commit's info).
    pub run_id: String,
    /// `bronze`, `silver` or `gold`.
    pub layer: String,
    /// `layer.table`.
    pub table: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: DateTime<Utc>,
    /// Inputs with the versions read (JSON): files for Bronze, table versions above it.
    pub inputs: String,
    /// Version of the table after the run.
    pub output_version: Option<i64>,
    /// Rows (lines, records) read.
    pub rows_read: i64,
    /// Rows written.
    pub rows_written: i64,
    /// Rows quarantined.
    pub rows_quarantined: i64,
    /// Rows dropped, per expectation (JSON object).
    pub rows_dropped: String,
    /// Rows removed as duplicates.
    pub duplicates_removed: i64,
    /// Schema changes applied (JSON list).
    pub schema_changes: String,
    /// Fingerprint of the table's configuration.
    pub config_fingerprint: String,
    /// Engine version.
    pub engine_version: String,
    /// Host or pod that ran it (`HOSTNAME`).
    pub host: String,
}

/// The run log's schema.
pub fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("layer", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("started_at", ts.clone(), false),
        Field::new("finished_at", ts, false),
        Field::new("inputs", DataType::Utf8, false),
        Field::new("output_version", DataType::Int64, true),
        Field::new("rows_read", DataType::Int64, false),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("rows_quarantined", DataType::Int64, false),
        Field::new("rows_dropped", DataType::Utf8, false),
        Field::new("duplicates_removed", DataType::Int64, false),
        Field::new("schema_changes", DataType::Utf8, false),
        Field::new("config_fingerprint", DataType::Utf8, false),
        Field::new("engine_version", DataType::Utf8, false),
        Field::new("host", DataType::Utf8, false),
    ]))
}

/// A stable fingerprint (FNV-1a, hex) of any serializable configuration fragment.
pub fn fingerprint(value: &impl Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    let h = crate::columns::fnv64(text.as_bytes());
    format!("{h:016x}")
}

/// The host or pod name.
pub fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}

fn batch(records: &[RunRecord]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&RunRecord) -> Option<&str>| {
        let mut b = StringBuilder::new();
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let int = |f: &dyn Fn(&RunRecord) -> Option<i64>| {
        let mut b = Int64Builder::new();
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let time = |f: &dyn Fn(&RunRecord) -> i64| {
        let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        for r in records {
            b.append_value(f(r));
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let columns = vec![
        text(&|r| Some(&r.run_id)),
        text(&|r| Some(&r.layer)),
        text(&|r| Some(&r.table)),
        text(&|r| Some(&r.status)),
        text(&|r| r.error.as_deref()),
        time(&|r| r.started_at.timestamp_micros()),
        time(&|r| r.finished_at.timestamp_micros()),
        text(&|r| Some(&r.inputs)),
        int(&|r| r.output_version),
        int(&|r| Some(r.rows_read)),
        int(&|r| Some(r.rows_written)),
        int(&|r| Some(r.rows_quarantined)),
        text(&|r| Some(&r.rows_dropped)),
        int(&|r| Some(r.duplicates_removed)),
        text(&|r| Some(&r.schema_changes)),
        text(&|r| Some(&r.config_fingerprint)),
        text(&|r| Some(&r.engine_version)),
        text(&|r| Some(&r.host)),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::Other(format!("run log: {e}")))
}

/// Appends the records of one run to the run log, in one commit.
pub async fn append(pipeline: &Pipeline, ctx: &RunContext, records: &[RunRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let url = pipeline.locations.runs();
    let properties = table_properties(&pipeline.config.storage);
    let mut table = open_or_create(&url, &schema(), &[], &properties, "runs").await?;
    let mut writer = RecordBatchWriter::for_table(&table).map_err(|e| storage_error(&url, e))?;
    writer
        .write(batch(records)?)
        .await
        .map_err(|e| storage_error(&url, e))?;
    let adds = writer.flush().await.map_err(|e| storage_error(&url, e))?;
    let info = HashMap::from([(
        "medallion".to_string(),
        serde_json::json!({ "run_id": ctx.run_id, "layer": "system", "table": "_system.runs" }),
    )]);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    // Appends never conflict logically; a job that created the table at the same moment as
    // another may still see its first commit refused ("metadata changed"): read the table
    // again and retry.
    let actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match commit(
            &table,
            actions.clone(),
            Vec::new(),
            info.clone(),
            operation.clone(),
            ctx.commit_retries,
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 5 => {
                tracing::debug!("run log commit retried: {e}");
                table.load().await.map_err(|e| storage_error(&url, e))?;
            }
            Err(e) => return Err(storage_error(&url, e)),
        }
    }
}
