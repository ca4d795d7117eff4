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
use serde::{Deserialize, Serialize};
use serde_json::Value;

use medallion_config::TableRef;

use crate::error::{Error, Result};
use crate::table::{
    commit, commit_actions, open_existing, open_or_create, removals, storage_error,
    table_properties,
};
use crate::{Pipeline, RunContext};

/// What one table run did.
///
/// The record is also written, as it stands at that moment, into the commit info of every
/// commit the run makes to the table (`medallion.run`): the newest such commit of a run holds
/// the finished record, so the run log can be rebuilt from the Delta histories alone
/// ([`rebuild`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run (also `_run_id` in rows and in every commit's info).
    pub run_id: String,
    /// `bronze`, `silver` or `gold`.
    pub layer: String,
    /// `layer.table`.
    pub table: String,
    /// `succeeded` or `failed`; in a rebuilt log, `incomplete` for a run whose last commit
    /// was not its final one (the process stopped between two commits).
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

/// The key of the run record inside a commit's `medallion` info.
pub const COMMIT_INFO_KEY: &str = "run";

/// The current time, to the microsecond the run log stores, so a record read back from the
/// log equals the one written into commit infos.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

impl RunRecord {
    /// A successful run of `table` with nothing counted yet.
    pub fn new(
        ctx: &RunContext,
        table: &TableRef,
        started_at: DateTime<Utc>,
        config_fingerprint: String,
    ) -> Self {
        Self {
            run_id: ctx.run_id.clone(),
            layer: table.layer.to_string(),
            table: table.to_string(),
            status: "succeeded".to_string(),
            error: None,
            started_at,
            finished_at: started_at,
            inputs: "{}".to_string(),
            output_version: None,
            rows_read: 0,
            rows_written: 0,
            rows_quarantined: 0,
            rows_dropped: "{}".to_string(),
            duplicates_removed: 0,
            schema_changes: "[]".to_string(),
            config_fingerprint,
            engine_version: crate::run::ENGINE_VERSION.to_string(),
            host: host(),
        }
    }

    /// Marks the run failed with `error`.
    pub fn failed(mut self, error: &impl std::fmt::Display) -> Self {
        self.status = "failed".to_string();
        self.error = Some(error.to_string());
        self
    }

    /// The record as it goes into a commit's `medallion` info (under [`COMMIT_INFO_KEY`]);
    /// `last` is false for a commit the run follows with another one to the same table.
    pub fn commit_info(&self, last: bool) -> Value {
        let mut record = self.clone();
        if !last {
            record.status = "incomplete".to_string();
        }
        serde_json::to_value(record).unwrap_or(Value::Null)
    }
}

/// A count as the run log stores it.
pub fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
    write(pipeline, ctx, records, false).await
}

/// Writes `records` to the run log: appended, or replacing every row (`replace`).
async fn write(
    pipeline: &Pipeline,
    ctx: &RunContext,
    records: &[RunRecord],
    replace: bool,
) -> Result<()> {
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
        mode: if replace {
            SaveMode::Overwrite
        } else {
            SaveMode::Append
        },
        partition_by: None,
        predicate: None,
    };
    // Appends never conflict logically; a job that created the table at the same moment as
    // another may still see its first commit refused ("metadata changed"): read the table
    // again and retry.
    let adds: Vec<Action> = adds.into_iter().map(Action::Add).collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut actions = adds.clone();
        if replace {
            actions.extend(removals(&table, |_| true)?.into_iter().map(Action::Remove));
        }
        match commit(
            &table,
            actions,
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

/// The run records found in the Delta histories of every table of the pipeline: for each
/// (run, table), the record in the newest commit the run made to the table, with that
/// commit's version as the output version. Runs that committed nothing (up to date, or failed
/// before their commit) are not in any history.
pub async fn from_histories(pipeline: &Pipeline) -> Result<Vec<RunRecord>> {
    let mut found: Vec<RunRecord> = Vec::new();
    for table in pipeline.dag.order() {
        let url = pipeline.locations.table(table);
        let Some(delta) = open_existing(&url).await? else {
            continue;
        };
        let latest = delta.version().map_or(-1, |v| v as i64);
        let mut by_run: HashMap<String, RunRecord> = HashMap::new();
        for version in 0..=latest {
            for action in commit_actions(&delta, version).await?.unwrap_or_default() {
                let Some(run) = action
                    .get("commitInfo")
                    .and_then(|c| c.get("medallion"))
                    .and_then(|m| m.get(COMMIT_INFO_KEY))
                else {
                    continue;
                };
                let mut record: RunRecord = serde_json::from_value(run.clone()).map_err(|e| {
                    Error::Other(format!(
                        "commit {version} of {table}: unreadable run record: {e}"
                    ))
                })?;
                record.output_version = Some(version);
                by_run.insert(record.run_id.clone(), record);
            }
        }
        found.extend(by_run.into_values());
    }
    sort(&mut found);
    Ok(found)
}

fn sort(records: &mut [RunRecord]) {
    records.sort_by(|a, b| {
        (a.started_at, &a.run_id, &a.table).cmp(&(b.started_at, &b.run_id, &b.table))
    });
}

/// Every record of the run log, oldest first (empty when there is no log yet). The log holds
/// one small row per table run, so it is read whole.
pub async fn read(pipeline: &Pipeline) -> Result<Vec<RunRecord>> {
    let url = pipeline.locations.runs();
    if open_existing(&url).await?.is_none() {
        return Ok(Vec::new());
    }
    let session = crate::catalog::session(pipeline, &std::collections::BTreeMap::new()).await?;
    let batches = session
        .sql("SELECT * FROM _system.runs")
        .await
        .map_err(|e| Error::Other(format!("reading the run log: {e}")))?
        .collect()
        .await
        .map_err(|e| Error::Other(format!("reading the run log: {e}")))?;
    let mut writer = deltalake::arrow::json::ArrayWriter::new(Vec::new());
    for batch in &batches {
        writer
            .write(batch)
            .map_err(|e| Error::Other(format!("reading the run log: {e}")))?;
    }
    writer
        .finish()
        .map_err(|e| Error::Other(format!("reading the run log: {e}")))?;
    let bytes = writer.into_inner();
    let mut records: Vec<RunRecord> = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("reading the run log: {e}")))?
    };
    sort(&mut records);
    Ok(records)
}

/// What [`rebuild`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    /// Records recovered from the Delta histories.
    pub from_commits: usize,
    /// Records kept from the previous log: runs that committed nothing.
    pub kept: usize,
    /// Records of the previous log that the histories contradict (the histories win).
    pub corrected: usize,
    /// Records of the previous log.
    pub previous: usize,
}

/// Rebuilds the run log from the tables' Delta histories ([`from_histories`]), keeping from
/// the previous log (if any is readable) the runs no history records, and replaces the log's
/// rows in one commit.
pub async fn rebuild(pipeline: &Pipeline, ctx: &RunContext) -> Result<Rebuilt> {
    let recovered = from_histories(pipeline).await?;
    let previous = match read(pipeline).await {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(
                "the previous run log is unreadable ({e}); rebuilding from the tables alone"
            );
            Vec::new()
        }
    };
    let known: HashMap<(&str, &str), &RunRecord> = recovered
        .iter()
        .map(|r| ((r.run_id.as_str(), r.table.as_str()), r))
        .collect();
    let mut corrected = 0;
    let mut kept = Vec::new();
    for record in &previous {
        match known.get(&(record.run_id.as_str(), record.table.as_str())) {
            Some(found) => corrected += usize::from(*found != record),
            None => kept.push(record.clone()),
        }
    }
    let report = Rebuilt {
        from_commits: recovered.len(),
        kept: kept.len(),
        corrected,
        previous: previous.len(),
    };
    let mut all = recovered;
    all.extend(kept);
    sort(&mut all);
    write(pipeline, ctx, &all, true).await?;
    Ok(report)
}
