//! Silver: clean, conformed, deduplicated.
//!
//! A Silver run reads only the Bronze commits it has not consumed yet (their added files,
//! in ingestion order), computes the table's columns with its lookups, checks the
//! expectations, drops the keys already seen (the first ingested row wins, against
//! everything already in the table, through the key index), and commits. Each table's
//! three commits, quarantine, key index and Silver, carry the same application transaction
//! (`medallion.silver:<bronze table>` = the last Bronze version consumed), and the rows
//! written to the quarantine and the key index carry the Silver version they belong to, so
//! that a crash between the commits can neither skip nor repeat data: the next run ignores
//! and removes whatever a crashed run left above the table's version.
//!
//! A changed dimension (a lookup resolves differently) restates the table: it is rebuilt
//! from Bronze, so Silver always equals a full refresh against the current dimensions. A
//! changed definition is refused unless the run is told `--full-refresh` (rebuild) or
//! `--forward-only` (apply it to new data only).

pub mod input;
pub mod keys;
pub mod lookup;
pub mod transform;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanArray, Int64Array, StringBuilder,
    TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::compute::{filter_record_batch, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::{Action, MetadataExt, Remove, Transaction};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::StreamExt;
use medallion_config::{Action as RuleAction, Keep, Layer, SchemaEvolution, SilverTable, TableRef};
use medallion_core::columns::{INGESTED_AT, RUN_ID, SOURCE_FILE, SOURCE_LINE, utc_timestamp};
use medallion_core::faults::crash_point;
use medallion_core::runlog::{self, RunRecord};
use medallion_core::table::{
    arrow_schema, commit, kernel_schema, open_existing, open_or_create, removals, storage_error,
    table_properties, transaction_version,
};
use medallion_core::{Error, Pipeline, Result, RunContext};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::keys::{KeySet, SILVER_VERSION};
use crate::lookup::Dimension;
use crate::transform::{Applied, Transform};

/// How a run treats the table's history.
#[derive(Debug, Clone, Copy, Default)]
pub struct SilverOptions {
    /// Rebuild the table from all of Bronze.
    pub full_refresh: bool,
    /// Accept a changed definition for new data only, leaving existing rows as they are.
    pub forward_only: bool,
}

/// What a Silver run did (or, for `plan`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SilverMetrics {
    /// The Silver table.
    pub table: String,
    /// The run.
    pub run_id: String,
    /// The Bronze table it reads.
    pub input: String,
    /// The last Bronze version consumed before this run (none: never run).
    pub from_version: Option<i64>,
    /// The last Bronze version consumed by this run.
    pub to_version: Option<i64>,
    /// `incremental`, `rebuild` or `up_to_date`.
    pub mode: String,
    /// Why the table was rebuilt.
    pub rebuild_reason: Option<String>,
    /// Bronze files read.
    pub bronze_files: usize,
    /// Bronze rows read.
    pub rows_read: u64,
    /// Rows written to Silver.
    pub rows_written: u64,
    /// Rows moved to the quarantine.
    pub rows_quarantined: u64,
    /// Rows dropped by `drop` rules.
    pub rows_dropped: u64,
    /// Rows kept despite failing `warn` rules.
    pub rows_warned: u64,
    /// Rows removed as duplicates of a key already seen (or, for `keep: latest`, replaced).
    pub duplicates_removed: u64,
    /// Rows failing each rule (a row failing several rules counts for each).
    pub rules: BTreeMap<String, u64>,
    /// Per lookup, the ambiguous key values met and how often (resolved to no match).
    pub ambiguous: BTreeMap<String, BTreeMap<String, u64>>,
    /// Columns added to the table by this run.
    pub new_columns: Vec<String>,
    /// Columns whose type this run widened (`name (from → to)`), rewriting the table.
    pub widened_columns: Vec<String>,
    /// Fingerprint of the table's definition.
    pub definition: String,
    /// Silver table version after the run.
    pub version: Option<u64>,
    /// Quarantine table version after the run.
    pub quarantine_version: Option<u64>,
    /// The dimension tables looked up, with the version read.
    pub lookups: BTreeMap<String, i64>,
    /// When the run started.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When its Silver commit was made.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Wall time.
    pub seconds: f64,
}

/// The run-log record of a Silver table run (`error`: it failed).
pub fn record(
    pipeline: &Pipeline,
    ctx: &RunContext,
    table: &TableRef,
    started: chrono::DateTime<chrono::Utc>,
    m: &SilverMetrics,
    error: Option<&Error>,
) -> RunRecord {
    let config = pipeline.config.silver_table(&table.name);
    let mut r = RunRecord::new(
        ctx,
        table,
        m.started_at.unwrap_or(started),
        runlog::fingerprint(&config),
    );
    r.finished_at = m.finished_at.unwrap_or_else(runlog::now);
    let mut inputs = serde_json::Map::new();
    if !m.input.is_empty() {
        inputs.insert(
            m.input.clone(),
            json!({ "from_version": m.from_version, "to_version": m.to_version, "mode": m.mode }),
        );
    }
    for (dimension, version) in &m.lookups {
        inputs.insert(
            dimension.clone(),
            json!({ "to_version": version, "mode": "lookup" }),
        );
    }
    r.inputs = serde_json::Value::Object(inputs).to_string();
    r.output_version = m.version.and_then(|v| i64::try_from(v).ok());
    r.rows_read = runlog::count(m.rows_read);
    r.rows_written = runlog::count(m.rows_written);
    r.rows_quarantined = runlog::count(m.rows_quarantined);
    r.rows_dropped = json!(m.rules).to_string();
    r.duplicates_removed = runlog::count(m.duplicates_removed);
    r.schema_changes = json!(
        m.new_columns
            .iter()
            .map(|c| format!("added {c}"))
            .chain(m.widened_columns.iter().map(|c| format!("widened {c}")))
            .collect::<Vec<_>>()
    )
    .to_string();
    match error {
        Some(e) => r.failed(e),
        None => r,
    }
}

/// The application id of the Bronze versions a Silver table consumed.
fn input_app_id(bronze: &TableRef) -> String {
    format!("medallion.silver:{bronze}")
}
/// The application id carrying the definition's fingerprint.
const DEFINITION_APP_ID: &str = "medallion.silver.definition";
/// The application id carrying a lookup's fingerprint.
fn lookup_app_id(name: &str) -> String {
    format!("medallion.silver.lookup:{name}")
}

/// The Silver table's definition.
fn definition<'a>(pipeline: &'a Pipeline, table: &TableRef) -> Result<&'a SilverTable> {
    if table.layer != Layer::Silver {
        return Err(Error::Usage(format!("`{table}` is not a Silver table")));
    }
    pipeline
        .config
        .silver_table(&table.name)
        .ok_or_else(|| Error::Usage(format!("`{table}` is not declared")))
}

/// A fingerprint of everything in the definition that decides the rows (not descriptions).
pub fn definition_fingerprint(def: &SilverTable) -> u64 {
    let columns: Vec<_> = def
        .columns
        .iter()
        .map(|(n, c)| (n.as_str(), c.expr.value.as_str(), c.keep))
        .collect();
    let lookups: Vec<_> = def
        .lookups
        .iter()
        .map(|(n, l)| {
            (
                n.as_str(),
                l.table.value.to_string(),
                l.key.value.as_str(),
                l.match_expr.value.as_str(),
                format!("{:?}", l.on_ambiguous),
            )
        })
        .collect();
    let rules: Vec<_> = def
        .expectations
        .iter()
        .map(|(n, e)| {
            (
                n.as_str(),
                e.expr.value.as_str(),
                format!("{:?}", e.action.value),
            )
        })
        .collect();
    let text = json!({
        "from": def.from.value.to_string(),
        "key": def.key.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "keep": format!("{:?}", def.keep),
        "partition_by": def.partition_by.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "schema_evolution": format!("{:?}", def.schema_evolution),
        "lookups": lookups, "columns": columns, "rules": rules,
    })
    .to_string();
    // Kept to 63 bits: it is stored as a Delta application-transaction version.
    medallion_core::columns::fnv64(text.as_bytes()) >> 1
}

/// The engine's SQL session for Silver expressions.
fn session() -> Result<SessionContext> {
    let mut session = SessionContext::new();
    medallion_core::functions::register(&mut session).map_err(|e| Error::Other(e.to_string()))?;
    Ok(session)
}

/// The source's declared column names.
fn declared_columns(pipeline: &Pipeline, bronze: &TableRef) -> Vec<String> {
    pipeline
        .dag
        .source_of(bronze)
        .and_then(|s| pipeline.config.source(s))
        .map(|s| s.columns.keys().map(|k| k.as_str().to_string()).collect())
        .unwrap_or_default()
}

fn partition_columns(table: &DeltaTable) -> Result<Vec<String>> {
    let snapshot = table.snapshot().map_err(|e| Error::Other(e.to_string()))?;
    Ok(snapshot.metadata().partition_columns().to_vec())
}

/// What the run has to do, decided before reading anything.
struct Decision {
    /// Last Bronze version consumed (-1: none).
    from: i64,
    /// Bronze version to consume up to.
    to: i64,
    /// Rebuild reason, when rebuilding.
    rebuild: Option<String>,
    /// The definition changed and was accepted forward-only.
    forward_only: bool,
}

impl Decision {
    /// `up_to_date`, `rebuild` or `incremental`.
    fn mode(&self) -> &'static str {
        if self.rebuild.is_some() {
            "rebuild"
        } else if self.from >= self.to && !self.forward_only {
            "up_to_date"
        } else {
            "incremental"
        }
    }

    /// The last Bronze version before the ones this run reads (-1: all of them).
    fn read_after(&self) -> i64 {
        if self.rebuild.is_some() {
            -1
        } else {
            self.from
        }
    }
}

async fn decide(
    def_fp: u64,
    silver: Option<&DeltaTable>,
    bronze: &TableRef,
    to: i64,
    dimensions: &[Dimension],
    options: SilverOptions,
    table: &TableRef,
) -> Result<Decision> {
    let Some(silver) = silver else {
        return Ok(Decision {
            from: -1,
            to,
            rebuild: Some("first run".into()),
            forward_only: false,
        });
    };
    let from = transaction_version(silver, &input_app_id(bronze)).await?;
    let recorded = transaction_version(silver, DEFINITION_APP_ID).await?;
    let changed = from.is_some() && recorded.is_some_and(|r| r as u64 != def_fp);
    if changed && !options.full_refresh && !options.forward_only {
        return Err(Error::Usage(format!(
            "the definition of `{table}` changed since the table was built (fingerprint {:016x} → {def_fp:016x}): \
             run with --full-refresh to rebuild it from Bronze, or --forward-only to apply it to new data only",
            recorded.unwrap_or_default()
        )));
    }
    let mut rebuild = None;
    if options.full_refresh {
        rebuild = Some("--full-refresh".to_string());
    } else if from.is_none() {
        rebuild = Some("first run".to_string());
    } else {
        for d in dimensions {
            let recorded = transaction_version(silver, &lookup_app_id(&d.name)).await?;
            if recorded.is_some_and(|r| r as u64 != d.fingerprint >> 1) {
                rebuild = Some(format!(
                    "the dimension of lookup `{}` changed: every row is restated",
                    d.name
                ));
                break;
            }
        }
    }
    Ok(Decision {
        from: from.unwrap_or(-1),
        to,
        rebuild,
        forward_only: changed && !options.full_refresh,
    })
}

/// A table writer that closes its open files whenever they hold about [`FLUSH_BYTES`] of
/// encoded data, so that memory stays bounded however many partitions a batch spreads
/// over (each open file holds its row group in progress).
struct Sink {
    writer: RecordBatchWriter,
    adds: Vec<deltalake::kernel::Add>,
    url: url::Url,
}

/// Encoded bytes after which a [`Sink`] closes its files.
const FLUSH_BYTES: usize = 32 << 20;

impl Sink {
    fn new(writer: RecordBatchWriter, url: &url::Url) -> Self {
        Self {
            writer,
            adds: Vec::new(),
            url: url.clone(),
        }
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .await
            .map_err(|e| storage_error(&self.url, e))?;
        if self.writer.buffer_len() > FLUSH_BYTES {
            let adds = self
                .writer
                .flush()
                .await
                .map_err(|e| storage_error(&self.url, e))?;
            self.adds.extend(adds);
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<deltalake::kernel::Add>> {
        let adds = self
            .writer
            .flush()
            .await
            .map_err(|e| storage_error(&self.url, e))?;
        self.adds.extend(adds);
        Ok(self.adds)
    }
}

/// A [`Sink`] running as its own task, so that Parquet encoding overlaps with the work
/// that feeds it.
struct SpawnedSink {
    tx: tokio::sync::mpsc::Sender<RecordBatch>,
    handle: tokio::task::JoinHandle<Result<Vec<deltalake::kernel::Add>>>,
}

impl Sink {
    fn spawn(mut self) -> SpawnedSink {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let handle = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                self.write(batch).await?;
            }
            self.finish().await
        });
        SpawnedSink { tx, handle }
    }
}

impl SpawnedSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.tx.send(batch).await.is_err() {
            // The writer stopped: its error is the one to report.
            return Err(self.stopped().await);
        }
        Ok(())
    }

    async fn stopped(&mut self) -> Error {
        match (&mut self.handle).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => Error::Other("the table writer stopped early".into()),
            Err(e) => Error::Other(format!("the table writer stopped: {e}")),
        }
    }

    async fn finish(self) -> Result<Vec<deltalake::kernel::Add>> {
        drop(self.tx);
        self.handle
            .await
            .map_err(|e| Error::Other(format!("the table writer stopped: {e}")))?
    }
}

/// Writer settings of Silver tables.
fn writer_for(
    table: &DeltaTable,
    row_group_rows: usize,
    unique: &[&str],
) -> Result<RecordBatchWriter> {
    let properties = writer_properties(row_group_rows, unique);
    RecordBatchWriter::for_table(table)
        .map(|w| {
            w.with_writer_properties(properties)
                .with_target_file_size(256 << 20)
        })
        .map_err(|e| Error::Storage(e.to_string()))
}

/// Parquet settings: Snappy, bounded row groups, and no dictionary encoding for `unique`
/// columns (a key is unique per row, so a dictionary of it only costs time).
fn writer_properties(row_group_rows: usize, unique: &[&str]) -> WriterProperties {
    unique
        .iter()
        .fold(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(row_group_rows)),
            |b, c| b.set_column_dictionary_enabled(ColumnPath::from(*c), false),
        )
        .build()
}

/// The quarantine's schema: the row's Silver columns, the failed rules, the error, the
/// Bronze row as JSON, and the run's stamp.
fn quarantine_schema(output: &Schema) -> SchemaRef {
    // `_silver_version` first: it must be among the columns Delta keeps statistics for
    // (the first 32), since a run finds a crashed run's leftovers by it.
    let mut fields = vec![
        Field::new(SILVER_VERSION, DataType::Int64, false),
        Field::new("_rules", DataType::Utf8, false),
        Field::new("_error", DataType::Utf8, false),
    ];
    fields.extend(output.fields().iter().map(|f| f.as_ref().clone()));
    fields.extend([
        Field::new("_raw", DataType::Binary, true),
        Field::new(RUN_ID, DataType::Utf8, false),
        Field::new(INGESTED_AT, utc_timestamp(), false),
    ]);
    Arc::new(Schema::new(fields))
}

/// What a Silver run of one table would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SilverPlan {
    /// The Silver table.
    pub table: String,
    /// The Bronze table it reads.
    pub input: String,
    /// The last Bronze version consumed (none: never run).
    pub from_version: Option<i64>,
    /// The Bronze version a run would consume up to (none: Bronze does not exist yet).
    pub to_version: Option<i64>,
    /// `incremental`, `rebuild` or `up_to_date`; `refused` when the definition changed.
    pub mode: String,
    /// Why it would rebuild, or why it would refuse.
    pub reason: Option<String>,
    /// Bronze files it would read.
    pub bronze_files: usize,
    /// Bronze rows it would read (from the files' statistics).
    pub bronze_rows: u64,
    /// Fingerprint of the definition.
    pub definition: String,
}

/// What a run of `table` would do, without writing anything. Dimensions that do not exist
/// yet are taken as unchanged.
pub async fn plan(
    pipeline: &Pipeline,
    table: &TableRef,
    options: SilverOptions,
) -> Result<SilverPlan> {
    let def = definition(pipeline, table)?;
    let bronze_ref = def.from.value.clone();
    let def_fp = definition_fingerprint(def);
    let mut plan = SilverPlan {
        table: table.to_string(),
        input: bronze_ref.to_string(),
        definition: format!("{def_fp:016x}"),
        ..SilverPlan::default()
    };
    let Some(bronze) = open_existing(&pipeline.locations.table(&bronze_ref)).await? else {
        plan.mode = "waiting for Bronze".into();
        return Ok(plan);
    };
    let to = bronze.version().map_or(-1, |v| v as i64);
    let session = session()?;
    let mut dimensions = Vec::new();
    for (name, spec) in def.lookups.iter() {
        if let Ok(d) = Dimension::load(pipeline, &session, name.as_str(), spec).await {
            dimensions.push(d);
        }
    }
    let existing = open_existing(&pipeline.locations.table(table)).await?;
    plan.to_version = Some(to);
    let decision = match decide(
        def_fp,
        existing.as_ref(),
        &bronze_ref,
        to,
        &dimensions,
        options,
        table,
    )
    .await
    {
        Ok(d) => d,
        Err(e @ Error::Usage(_)) => {
            plan.mode = "refused".into();
            plan.reason = Some(e.to_string());
            return Ok(plan);
        }
        Err(e) => return Err(e),
    };
    plan.from_version = (decision.from >= 0).then_some(decision.from);
    plan.mode = decision.mode().into();
    if plan.mode == "up_to_date" {
        return Ok(plan);
    }
    plan.reason = decision.rebuild.clone();
    let from = decision.read_after();
    let files = input::files(&bronze, from, to).await?;
    plan.bronze_files = files.len();
    plan.bronze_rows = files.iter().map(|f| f.rows).sum();
    Ok(plan)
}

/// Runs one Silver table. `metrics` is filled as the run goes, so that a failed run still
/// reports what it counted.
pub async fn run(
    pipeline: &Pipeline,
    table: &TableRef,
    ctx: &RunContext,
    options: SilverOptions,
    metrics: &mut SilverMetrics,
) -> Result<()> {
    let started = Instant::now();
    let def = definition(pipeline, table)?;
    let bronze_ref = def.from.value.clone();
    let def_fp = definition_fingerprint(def);
    *metrics = SilverMetrics {
        table: table.to_string(),
        run_id: ctx.run_id.clone(),
        input: bronze_ref.to_string(),
        definition: format!("{def_fp:016x}"),
        started_at: Some(runlog::now()),
        ..SilverMetrics::default()
    };
    let bronze_url = pipeline.locations.table(&bronze_ref);
    let bronze = open_existing(&bronze_url).await?.ok_or_else(|| {
        Error::Other(format!(
            "`{bronze_ref}` does not exist yet: run `--layer bronze` first"
        ))
    })?;
    let to = bronze.version().map_or(-1, |v| v as i64);
    let session = session()?;
    let mut dimensions = Vec::new();
    for (name, spec) in def.lookups.iter() {
        dimensions.push(Dimension::load(pipeline, &session, name.as_str(), spec).await?);
    }
    let silver_url = pipeline.locations.table(table);
    let existing = open_existing(&silver_url).await?;
    let decision = decide(
        def_fp,
        existing.as_ref(),
        &bronze_ref,
        to,
        &dimensions,
        options,
        table,
    )
    .await?;
    metrics.from_version = (decision.from >= 0).then_some(decision.from);
    metrics.to_version = Some(decision.to);
    metrics.rebuild_reason = decision.rebuild.clone();
    metrics.mode = decision.mode().into();
    if metrics.mode == "up_to_date" {
        metrics.version = existing.as_ref().and_then(DeltaTable::version);
        metrics.seconds = started.elapsed().as_secs_f64();
        info!(table = %table, bronze_version = to, "up to date");
        return Ok(());
    }
    let rebuild = decision.rebuild.is_some();
    if let Some(reason) = &decision.rebuild {
        info!(table = %table, "rebuilding from Bronze: {reason}");
    }
    let from = decision.read_after();

    // The Bronze input and the compiled definition.
    let bronze_schema = arrow_schema(&bronze)?;
    let input_schema = input::input_schema(&bronze_schema);
    let declared = declared_columns(pipeline, &bronze_ref);
    // The dimension versions read, recorded with the Bronze range in the commit info.
    let mut inputs = serde_json::Map::new();
    inputs.insert(
        bronze_ref.to_string(),
        json!({ "from": from, "to": decision.to }),
    );
    for d in &dimensions {
        inputs.insert(
            d.table.to_string(),
            json!({ "to": d.version, "lookup": d.name }),
        );
        metrics.lookups.insert(d.table.to_string(), d.version);
    }
    let transform = Arc::new(Transform::compile(
        &session,
        def,
        input_schema.clone(),
        &declared,
        dimensions,
    )?);
    let files = input::files(&bronze, from, decision.to).await?;
    metrics.bronze_files = files.len();

    // The Silver table, its quarantine and its key index.
    let properties = table_properties(&pipeline.config.storage);
    let partition_by: Vec<String> = def
        .partition_by
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    let output = transform.output_schema.clone();
    let mut silver = match existing {
        Some(t) => t,
        None => {
            open_or_create(
                &silver_url,
                &output,
                &partition_by,
                &properties,
                table.name.as_str(),
            )
            .await?
        }
    };
    let silver_version = silver.version().map_or(0, |v| v as i64);
    let next_version = silver_version + 1;
    let metadata_change = schema_change(&silver, &output, &partition_by, rebuild, table)?;
    metrics.new_columns = metadata_change.added.clone();
    metrics.widened_columns = metadata_change.widened.clone();
    let q_schema = quarantine_schema(&output);
    let q_url = pipeline.locations.quarantine(table);
    let mut quarantine = open_or_create(
        &q_url,
        &q_schema,
        &[],
        &properties,
        &format!("{}_quarantine", table.name),
    )
    .await?;
    let dedup_first = def.keep == Keep::First && !transform.key.is_empty();
    let keys_url = pipeline
        .locations
        .root()
        .join(&format!("silver/_keys/{}/", table.name))
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut index = if dedup_first {
        Some(
            open_or_create(
                &keys_url,
                &keys::schema(),
                &[keys::BUCKET.to_string()],
                &properties,
                &format!("{}_keys", table.name),
            )
            .await?,
        )
    } else {
        None
    };

    // Keys already in Silver: only those the batch carries, from the buckets it touches.
    let store = bronze.object_store();
    let mut seen = KeySet::default();
    // A small batch's computed rows are kept from the first pass for the second, instead of
    // being computed again.
    let mut kept: Option<Vec<(RecordBatch, Applied, Ambiguous)>> = None;
    if let (Some(index), false) = (index.as_ref(), rebuild) {
        let mut wanted = KeySet::default();
        let mut stream = computed(
            store.clone(),
            files.clone(),
            input_schema.clone(),
            transform.clone(),
        );
        let mut keeping = Some(Vec::new());
        let mut kept_bytes = 0usize;
        while let Some(next) = stream.next().await {
            let (batch, applied, ambiguous) = next?;
            let keep = kept_rows(&transform, &applied);
            let rows = filter_record_batch(&applied.rows, &keep)
                .map_err(|e| Error::Other(e.to_string()))?;
            wanted.extend(keys::fingerprints(&rows, &transform.key)?);
            if let Some(items) = keeping.as_mut() {
                kept_bytes += batch.get_array_memory_size() + applied.rows.get_array_memory_size();
                if kept_bytes > KEEP_COMPUTED_BYTES {
                    keeping = None;
                } else {
                    items.push((batch, applied, ambiguous));
                }
            }
        }
        kept = keeping;
        seen = keys::probe(&session, index, &wanted, silver_version).await?;
        info!(table = %table, batch_keys = wanted.len(), already_in_silver = seen.len(), "key index probed");
    }

    // The pass that writes.
    let row_group = 32 * 1024;
    // Keys of `keep` tables are unique per row.
    let unique: Vec<&str> = if transform.key.len() == 1 {
        def.key.iter().map(|k| k.as_str()).collect()
    } else {
        Vec::new()
    };
    let mut silver_writer = writer_for(&silver, row_group, &unique)?;
    if metadata_change.metadata.is_some() {
        // The writer must encode with the new schema.
        silver_writer = RecordBatchWriter::try_new(
            silver.table_url().clone(),
            output.clone(),
            Some(partition_by.clone()),
            Some(medallion_core::table::storage_options()),
        )
        .map_err(|e| Error::Storage(e.to_string()))?
        .with_writer_properties(writer_properties(row_group, &unique))
        .with_target_file_size(256 << 20);
    }
    let mut silver_writer = Sink::new(silver_writer, &silver_url).spawn();
    let mut q_writer = Sink::new(
        RecordBatchWriter::try_new(
            quarantine.table_url().clone(),
            q_schema.clone(),
            None,
            Some(medallion_core::table::storage_options()),
        )
        .map_err(|e| Error::Storage(e.to_string()))?,
        &q_url,
    );
    let mut k_writer = match &index {
        Some(i) => Some(Sink::new(
            writer_for(i, 16 * 1024, &["k_hi", "k_lo"])?,
            &keys_url,
        )),
        None => None,
    };
    let mut latest: Vec<RecordBatch> = Vec::new();
    let mut failure: Option<String> = None;
    let stamp = (
        ctx.run_id.as_str(),
        ctx.started_at.timestamp_micros(),
        next_version,
    );
    let mut stream: Computed = match kept {
        Some(items) => Box::pin(futures::stream::iter(items.into_iter().map(Ok))),
        None => computed(
            store.clone(),
            files.clone(),
            input_schema.clone(),
            transform.clone(),
        ),
    };
    let drift_fail = def.schema_evolution == SchemaEvolution::Fail;
    while let Some(next) = stream.next().await {
        let (batch, applied, ambiguous) = next?;
        metrics.rows_read += batch.num_rows() as u64;
        for (lookup, values) in ambiguous {
            let counts = metrics.ambiguous.entry(lookup).or_default();
            for (value, n) in values {
                *counts.entry(value).or_default() += n;
            }
        }
        if drift_fail {
            check_no_drift(&batch, &transform.drift, table)?;
        }
        let verdict = judge(&transform, &applied, metrics);
        if let Some((rule, at)) = verdict.fail {
            let file = applied
                .rows
                .column_by_name(SOURCE_FILE)
                .map(|c| text_at(c, at))
                .unwrap_or_default();
            let line = applied
                .rows
                .column_by_name(SOURCE_LINE)
                .map(|c| text_at(c, at))
                .unwrap_or_default();
            failure.get_or_insert(format!(
                "expectation `{rule}` (action: fail) failed, first at {file} line {line}"
            ));
        }
        if failure.is_some() {
            continue;
        }
        if let Some(q) = &verdict.quarantine {
            let rows = quarantine_rows(&batch, &applied, q, &transform, &q_schema, stamp)?;
            metrics.rows_quarantined += rows.num_rows() as u64;
            q_writer.write(rows).await?;
        }
        let kept = filter_record_batch(&applied.rows, &verdict.keep)
            .map_err(|e| Error::Other(e.to_string()))?;
        if kept.num_rows() == 0 {
            continue;
        }
        if dedup_first {
            let prints = keys::fingerprints(&kept, &transform.key)?;
            let mut fresh = Vec::with_capacity(prints.len());
            let mut new_keys = Vec::with_capacity(prints.len());
            for (row, key) in prints.into_iter().enumerate() {
                if seen.insert(key) {
                    fresh.push(row as u32);
                    new_keys.push(key);
                }
            }
            metrics.duplicates_removed += (kept.num_rows() - fresh.len()) as u64;
            if fresh.is_empty() {
                continue;
            }
            let rows = take_record_batch(&kept, &UInt32Array::from(fresh))
                .map_err(|e| Error::Other(e.to_string()))?;
            metrics.rows_written += rows.num_rows() as u64;
            silver_writer.write(rows).await?;
            if let Some(w) = k_writer.as_mut() {
                w.write(keys::index_batch(&new_keys, next_version)?).await?;
            }
        } else if def.keep == Keep::Latest && !transform.key.is_empty() {
            latest.push(kept);
        } else {
            metrics.rows_written += kept.num_rows() as u64;
            silver_writer.write(kept).await?;
        }
    }
    if let Some(failure) = failure {
        metrics.seconds = started.elapsed().as_secs_f64();
        return Err(Error::DataQuality(format!(
            "`{table}`: {failure}; nothing of this batch was committed (rules: {})",
            serde_json::to_string(&metrics.rules).unwrap_or_default()
        )));
    }
    for (lookup, values) in &metrics.ambiguous {
        if !values.is_empty() {
            let list: Vec<String> = values
                .iter()
                .take(5)
                .map(|(v, n)| format!("`{v}` ({n} rows)"))
                .collect();
            warn!(table = %table, lookup = %lookup, "ambiguous lookup values resolved to no match: {}{}", list.join(", "), if values.len() > 5 { format!(" and {} more", values.len() - 5) } else { String::new() });
        }
    }

    // keep: latest: the table is small (a dimension, restated figures): rewrite it whole
    // with the last row of each key.
    let mut replace_all = rebuild;
    let latest_rewrite = def.keep == Keep::Latest && !transform.key.is_empty();
    if !metadata_change.widened.is_empty() && !rebuild && !latest_rewrite {
        // A widened column: the existing rows are rewritten with the wider type, in the
        // same commit as the new rows (Delta readers all understand the result; no
        // type-widening table feature is needed).
        let provider = {
            silver
                .update_datafusion_session(&session.state())
                .map_err(|e| Error::Storage(e.to_string()))?;
            silver
                .table_provider()
                .await
                .map_err(|e| Error::Storage(e.to_string()))?
        };
        let mut existing = session
            .read_table(provider)
            .map_err(|e| Error::Other(e.to_string()))?
            .execute_stream()
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        while let Some(batch) = existing.next().await {
            let batch = batch.map_err(|e| Error::Storage(format!("rewriting {table}: {e}")))?;
            silver_writer
                .write(input::conform(&batch, &output)?)
                .await?;
        }
        replace_all = true;
    }
    if latest_rewrite {
        let mut all = Vec::new();
        if !rebuild {
            all.extend(
                read_table(&session, &silver)
                    .await?
                    .into_iter()
                    .map(|b| input::conform(&b, &output))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        all.extend(latest);
        let (rows, replaced) = last_per_key(&output, &all, &transform.key)?;
        metrics.duplicates_removed += replaced;
        metrics.rows_written = rows.num_rows() as u64;
        silver_writer.write(rows).await?;
        replace_all = true;
    }

    // Commits: quarantine, then key index, then Silver.
    let info = |part: &str, record: Option<serde_json::Value>| {
        let mut info = json!({
            "run_id": ctx.run_id, "layer": "silver", "table": table.to_string(), "part": part,
            "engine_version": medallion_core::run::ENGINE_VERSION,
            "inputs": inputs,
            "rows_read": metrics.rows_read, "rows_written": metrics.rows_written,
            "rows_quarantined": metrics.rows_quarantined, "rows_dropped": metrics.rows_dropped,
            "duplicates_removed": metrics.duplicates_removed, "rules": metrics.rules,
            "definition": format!("{def_fp:016x}"), "mode": metrics.mode,
        });
        if let Some(record) = record {
            info[runlog::COMMIT_INFO_KEY] = record;
        }
        HashMap::from([("medallion".to_string(), info)])
    };
    let input_txn = Transaction::new(input_app_id(&bronze_ref), decision.to);
    crash_points(table, "before_commit");
    let q_adds = q_writer.finish().await?;
    let q_removes = leftovers(&quarantine, silver_version, rebuild)?;
    if !q_adds.is_empty() || !q_removes.is_empty() {
        let mut actions: Vec<Action> = q_removes.into_iter().map(Action::Remove).collect();
        actions.extend(q_adds.into_iter().map(Action::Add));
        if let Some(m) = metadata_for(&quarantine, &q_schema)? {
            actions.push(m);
        }
        commit(
            &quarantine,
            actions,
            vec![input_txn.clone()],
            info("quarantine", None),
            append(),
            ctx.commit_retries,
        )
        .await
        .map_err(|e| commit_error(&q_url, e))?;
        quarantine
            .load()
            .await
            .map_err(|e| storage_error(&q_url, e))?;
        crash_points(table, "after_quarantine_commit");
    }
    if let (Some(index), Some(w)) = (index.as_mut(), k_writer) {
        let adds = w.finish().await?;
        let removes = leftovers(index, silver_version, rebuild)?;
        if !adds.is_empty() || !removes.is_empty() {
            let mut actions: Vec<Action> = removes.into_iter().map(Action::Remove).collect();
            actions.extend(adds.into_iter().map(Action::Add));
            commit(
                index,
                actions,
                vec![input_txn.clone()],
                info("key_index", None),
                append(),
                ctx.commit_retries,
            )
            .await
            .map_err(|e| commit_error(&keys_url, e))?;
            index
                .load()
                .await
                .map_err(|e| storage_error(&keys_url, e))?;
            crash_points(table, "after_index_commit");
        }
    }
    let adds = silver_writer.finish().await?;
    let mut actions: Vec<Action> = Vec::new();
    if replace_all {
        actions.extend(all_files(&silver)?.into_iter().map(Action::Remove));
    }
    actions.extend(adds.into_iter().map(Action::Add));
    if let Some(m) = metadata_change.metadata {
        actions.push(m);
    }
    let mut txns = vec![
        input_txn,
        Transaction::new(DEFINITION_APP_ID, def_fp as i64),
    ];
    for (expr_dim, fp) in transform_fingerprints(&transform) {
        txns.push(Transaction::new(lookup_app_id(&expr_dim), fp as i64));
    }
    let operation = if replace_all {
        DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(partition_by.clone()),
            predicate: None,
        }
    } else {
        append()
    };
    // The run's record, in the commit that completes it.
    let finished_at = runlog::now();
    let mut so_far = metrics.clone();
    so_far.finished_at = Some(finished_at);
    let run_record = record(pipeline, ctx, table, finished_at, &so_far, None);
    let version = commit(
        &silver,
        actions,
        txns,
        info("rows", Some(run_record.commit_info(true))),
        operation,
        ctx.commit_retries,
    )
    .await
    .map_err(|e| commit_error(&silver_url, e))?;
    crash_points(table, "after_commit");
    silver
        .load()
        .await
        .map_err(|e| storage_error(&silver_url, e))?;
    metrics.version = Some(version);
    metrics.finished_at = Some(finished_at);
    metrics.quarantine_version = quarantine.version();
    metrics.seconds = started.elapsed().as_secs_f64();
    info!(table = %table, version, rows = metrics.rows_written, quarantined = metrics.rows_quarantined, duplicates = metrics.duplicates_removed, "committed");
    Ok(())
}

/// Crash points for fault-injection tests: `silver.<point>` for any table, and
/// `silver.<table>.<point>` for one.
fn crash_points(table: &TableRef, point: &str) {
    crash_point(&format!("silver.{point}"));
    crash_point(&format!("{table}.{point}"));
}

fn append() -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    }
}

fn commit_error(url: &url::Url, e: deltalake::DeltaTableError) -> Error {
    medallion_core::table::commit_error(
        url,
        &e,
        "nothing of the uncommitted part was kept, a re-run completes it",
    )
}

/// The lookup fingerprints to record, by lookup name.
fn transform_fingerprints(transform: &Transform) -> Vec<(String, u64)> {
    transform
        .dimension_fingerprints()
        .into_iter()
        .map(|(n, f)| (n, f >> 1))
        .collect()
}

/// A schema change to commit with the rows.
struct MetadataChange {
    metadata: Option<Action>,
    added: Vec<String>,
    /// Columns whose type widens: existing files are rewritten with the wider type.
    widened: Vec<String>,
}

/// Compares the table's schema with the one this run writes: new columns are added, a
/// widened type (int → long, float → double) or changed partitioning needs a rebuild,
/// anything else is refused naming the column.
fn schema_change(
    silver: &DeltaTable,
    output: &SchemaRef,
    partition_by: &[String],
    rebuild: bool,
    table: &TableRef,
) -> Result<MetadataChange> {
    let current = arrow_schema(silver)?;
    let current_partitions = partition_columns(silver)?;
    if rebuild {
        let same = current.fields().len() == output.fields().len()
            && current
                .fields()
                .iter()
                .zip(output.fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
            && current_partitions == partition_by;
        let metadata = if same {
            None
        } else {
            let kernel = kernel_schema(output)?;
            let snapshot = silver.snapshot().map_err(|e| Error::Other(e.to_string()))?;
            let m = if current_partitions == partition_by {
                snapshot
                    .metadata()
                    .clone()
                    .with_schema(&kernel)
                    .map_err(|e| Error::Other(e.to_string()))?
            } else {
                deltalake::kernel::new_metadata(
                    &kernel,
                    partition_by.to_vec(),
                    snapshot.metadata().configuration().clone(),
                )
                .map_err(|e| Error::Other(e.to_string()))?
            };
            Some(Action::Metadata(m))
        };
        let added = output
            .fields()
            .iter()
            .filter(|f| current.field_with_name(f.name()).is_err())
            .map(|f| f.name().clone())
            .collect();
        return Ok(MetadataChange {
            metadata,
            added,
            widened: Vec::new(),
        });
    }
    if current_partitions != partition_by {
        return Err(Error::Usage(format!(
            "`{table}` is partitioned by [{}] but its definition says [{}]: run with --full-refresh to rebuild it",
            current_partitions.join(", "),
            partition_by.join(", ")
        )));
    }
    let mut added = Vec::new();
    let mut widened = Vec::new();
    for field in output.fields() {
        match current.field_with_name(field.name()) {
            Err(_) => added.push(field.name().clone()),
            Ok(existing) if existing.data_type() == field.data_type() => {}
            Ok(existing) => {
                let widening = matches!(
                    (existing.data_type(), field.data_type()),
                    (
                        DataType::Int8 | DataType::Int16 | DataType::Int32,
                        DataType::Int64
                    ) | (DataType::Float16 | DataType::Float32, DataType::Float64)
                );
                if !widening {
                    return Err(Error::Usage(format!(
                        "column `{}` of `{table}` would change from {} to {}, which existing rows cannot take: \
                         fix the column's expression, or run with --full-refresh to rebuild the table",
                        field.name(),
                        existing.data_type(),
                        field.data_type()
                    )));
                }
                info!(table = %table, column = %field.name(), "type widens from {} to {}: the table is rewritten", existing.data_type(), field.data_type());
                widened.push(format!(
                    "{} ({} → {})",
                    field.name(),
                    existing.data_type(),
                    field.data_type()
                ));
            }
        }
    }
    let metadata = if added.is_empty() && widened.is_empty() {
        None
    } else {
        info!(table = %table, columns = %added.join(", "), "new columns");
        // Existing columns keep their place; new ones go where this run writes them.
        let kernel = kernel_schema(output)?;
        let snapshot = silver.snapshot().map_err(|e| Error::Other(e.to_string()))?;
        let m = snapshot
            .metadata()
            .clone()
            .with_schema(&kernel)
            .map_err(|e| Error::Other(e.to_string()))?;
        Some(Action::Metadata(m))
    };
    Ok(MetadataChange {
        metadata,
        added,
        widened,
    })
}

/// A metadata action when the table's schema differs from `schema`.
fn metadata_for(table: &DeltaTable, schema: &SchemaRef) -> Result<Option<Action>> {
    let current = arrow_schema(table)?;
    let same = current.fields().len() == schema.fields().len()
        && current
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if same {
        return Ok(None);
    }
    let kernel = kernel_schema(schema)?;
    let snapshot = table.snapshot().map_err(|e| Error::Other(e.to_string()))?;
    let m = snapshot
        .metadata()
        .clone()
        .with_schema(&kernel)
        .map_err(|e| Error::Other(e.to_string()))?;
    Ok(Some(Action::Metadata(m)))
}

/// Remove actions for every file of the table.
fn all_files(table: &DeltaTable) -> Result<Vec<Remove>> {
    removals(table, |_| true)
}

/// Files of a quarantine or key index written by a run that did not commit Silver (their
/// `_silver_version` is above the table's), or every file when rebuilding.
fn leftovers(table: &DeltaTable, silver_version: i64, rebuild: bool) -> Result<Vec<Remove>> {
    removals(table, |file| {
        rebuild
            || file
                .stats
                .as_deref()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .and_then(|s| s["maxValues"][SILVER_VERSION].as_i64())
                .is_some_and(|v| v > silver_version)
    })
}

/// Computed rows (with their Bronze batches) kept from the key pass for the writing pass, at
/// most: an incremental batch of about 200k events.
const KEEP_COMPUTED_BYTES: usize = 256 << 20;

/// A lookup's ambiguous values and how often each was met.
type Ambiguous = BTreeMap<String, BTreeMap<String, u64>>;

/// Bronze batches with their computed rows.
type Computed = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<(RecordBatch, Applied, Ambiguous)>> + Send>,
>;

/// Batches computed ahead of use: the Bronze rows of `files`, each batch's transform run on
/// the blocking pool, two at a time, in order; so reading and computing overlap with the
/// caller's deduplication and Parquet encoding.
fn computed(
    store: Arc<dyn deltalake::ObjectStore>,
    files: Vec<input::BronzeFile>,
    schema: SchemaRef,
    transform: Arc<Transform>,
) -> Computed {
    Box::pin(
        input::rows(store, files, schema)
            .map(move |batch| {
                let transform = transform.clone();
                tokio::task::spawn_blocking(move || {
                    let batch = batch?;
                    let mut ambiguous = Ambiguous::new();
                    let applied = transform.apply(&batch, &mut ambiguous)?;
                    Ok((batch, applied, ambiguous))
                })
            })
            .buffered(2)
            .map(|joined| {
                joined.map_err(|e| Error::Other(format!("computing a batch stopped: {e}")))?
            }),
    )
}

/// What happens to each row of a batch.
struct Verdict {
    /// Rows kept (passed, or failed only `warn` rules).
    keep: BooleanArray,
    /// Rows quarantined, with the indices of the rules each failed.
    quarantine: Option<Vec<(u32, Vec<usize>)>>,
    /// A `fail` rule that failed, and the first row that failed it.
    fail: Option<(String, usize)>,
}

/// Which rows a batch keeps (for the key probe): those whose strongest failed action is
/// at most `warn`.
fn kept_rows(transform: &Transform, applied: &Applied) -> BooleanArray {
    (0..applied.rows.num_rows())
        .map(|row| {
            Some(
                transform
                    .rules
                    .iter()
                    .zip(&applied.failed)
                    .all(|(r, f)| !f.value(row) || r.action == RuleAction::Warn),
            )
        })
        .collect()
}

/// Applies the expectations' actions: the strongest failed action wins; every rule counts
/// every row that failed it.
fn judge(transform: &Transform, applied: &Applied, metrics: &mut SilverMetrics) -> Verdict {
    let rows = applied.rows.num_rows();
    let mut keep = Vec::with_capacity(rows);
    let mut quarantine = Vec::new();
    let mut fail = None;
    for (rule, failed) in transform.rules.iter().zip(&applied.failed) {
        let n = failed.true_count() as u64;
        *metrics.rules.entry(rule.name.clone()).or_default() += n;
    }
    let mut failed_rules = Vec::new();
    for row in 0..rows {
        failed_rules.clear();
        let mut strongest: Option<RuleAction> = None;
        for (i, (rule, failed)) in transform.rules.iter().zip(&applied.failed).enumerate() {
            if failed.value(row) {
                failed_rules.push(i);
                strongest = Some(strongest.map_or(rule.action, |s| s.max(rule.action)));
                if rule.action == RuleAction::Fail && fail.is_none() {
                    fail = Some((rule.name.clone(), row));
                }
            }
        }
        match strongest {
            None => keep.push(true),
            Some(RuleAction::Warn) => {
                metrics.rows_warned += 1;
                keep.push(true);
            }
            Some(RuleAction::Drop) => {
                metrics.rows_dropped += 1;
                keep.push(false);
            }
            Some(RuleAction::Quarantine) | Some(RuleAction::Fail) => {
                quarantine.push((row as u32, failed_rules.clone()));
                keep.push(false);
            }
        }
    }
    Verdict {
        keep: BooleanArray::from(keep),
        quarantine: (!quarantine.is_empty()).then_some(quarantine),
        fail,
    }
}

/// The quarantine rows of a batch.
fn quarantine_rows(
    bronze: &RecordBatch,
    applied: &Applied,
    rows: &[(u32, Vec<usize>)],
    transform: &Transform,
    schema: &SchemaRef,
    (run_id, ingested_at, silver_version): (&str, i64, i64),
) -> Result<RecordBatch> {
    let err = |e: &dyn std::fmt::Display| Error::Other(e.to_string());
    let indices = UInt32Array::from(rows.iter().map(|(r, _)| *r).collect::<Vec<_>>());
    let silver = take_record_batch(&applied.rows, &indices).map_err(|e| err(&e))?;
    let raw_rows = take_record_batch(bronze, &indices).map_err(|e| err(&e))?;
    // The Bronze row's fields as JSON (its values, `_rescued` included; not the columns
    // that say where and when it was ingested, which the quarantine row has anyway).
    let fields: Vec<usize> = raw_rows
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            ![
                SOURCE_FILE,
                SOURCE_LINE,
                INGESTED_AT,
                RUN_ID,
                input::BRONZE_VERSION,
            ]
            .contains(&f.name().as_str())
        })
        .map(|(i, _)| i)
        .collect();
    let raw_rows = raw_rows.project(&fields).map_err(|e| err(&e))?;
    let mut json_lines = Vec::new();
    {
        let mut writer = deltalake::arrow::json::LineDelimitedWriter::new(&mut json_lines);
        writer.write(&raw_rows).map_err(|e| err(&e))?;
        writer.finish().map_err(|e| err(&e))?;
    }
    let mut raw = BinaryBuilder::new();
    for line in json_lines.split(|&b| b == b'\n').take(rows.len()) {
        raw.append_value(line);
    }
    let mut names = StringBuilder::new();
    let mut errors = StringBuilder::new();
    for (_, failed) in rows {
        let list: Vec<&str> = failed
            .iter()
            .map(|&i| transform.rules[i].name.as_str())
            .collect();
        names.append_value(list.join(","));
        errors.append_value(format!("failed expectations: {}", list.join(", ")));
    }
    let n = rows.len();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_value(silver_version, n)),
        Arc::new(names.finish()),
        Arc::new(errors.finish()),
    ];
    columns.extend(silver.columns().iter().cloned());
    columns.push(Arc::new(raw.finish()));
    columns.push(Arc::new(deltalake::arrow::array::StringArray::from(
        vec![run_id; n],
    )));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(vec![ingested_at; n]).with_timezone("UTC"),
    ));
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(&e))
}

/// Fails the run when a Bronze column the source does not declare carries a value
/// (`schema_evolution: fail`), naming the column and the file it came from.
fn check_no_drift(batch: &RecordBatch, drift: &[String], table: &TableRef) -> Result<()> {
    for name in drift {
        let Some(column) = batch.column_by_name(name) else {
            continue;
        };
        if column.null_count() == column.len() {
            continue;
        }
        let row = (0..column.len())
            .find(|&r| column.is_valid(r))
            .unwrap_or_default();
        let file = batch
            .column_by_name(SOURCE_FILE)
            .map(|c| text_at(c, row))
            .unwrap_or_default();
        let line = batch
            .column_by_name(SOURCE_LINE)
            .map(|c| text_at(c, row))
            .unwrap_or_default();
        return Err(Error::DataQuality(format!(
            "`{table}`: new column `{name}` in Bronze (first value in {file} line {line}) and the table's schema_evolution is `fail`; \
             declare it in the source, or choose add_columns or rescue"
        )));
    }
    Ok(())
}

fn text_at(column: &ArrayRef, row: usize) -> String {
    deltalake::arrow::util::display::array_value_to_string(column, row).unwrap_or_default()
}

/// Reads a (small) table whole.
async fn read_table(session: &SessionContext, table: &DeltaTable) -> Result<Vec<RecordBatch>> {
    table
        .update_datafusion_session(&session.state())
        .map_err(|e| Error::Storage(e.to_string()))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    session
        .read_table(provider)
        .map_err(|e| Error::Other(e.to_string()))?
        .collect()
        .await
        .map_err(|e| Error::Storage(format!("reading {}: {e}", table.table_url())))
}

/// The last row of each key, in first-appearance order of the key; and how many rows were
/// replaced.
fn last_per_key(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    key: &[usize],
) -> Result<(RecordBatch, u64)> {
    let all = deltalake::arrow::compute::concat_batches(schema, batches)
        .map_err(|e| Error::Other(e.to_string()))?;
    let prints = keys::fingerprints(&all, key)?;
    let mut last: HashMap<u128, usize> = HashMap::with_capacity(prints.len());
    let mut order = Vec::new();
    for (row, k) in prints.iter().enumerate() {
        if last.insert(*k, row).is_none() {
            order.push(*k);
        }
    }
    let replaced = (prints.len() - order.len()) as u64;
    let indices = UInt32Array::from(order.iter().map(|k| last[k] as u32).collect::<Vec<_>>());
    let rows = take_record_batch(&all, &indices).map_err(|e| Error::Other(e.to_string()))?;
    Ok((rows, replaced))
}
