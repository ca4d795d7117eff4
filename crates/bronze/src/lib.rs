//! Bronze: land raw, lose nothing.
//!
//! Each Bronze table ingests every file under its source's folder of the landing prefix,
//! exactly once: the Delta log records one application transaction per landed file (in the
//! Bronze table and in its quarantine table), committed together with the file's rows. A
//! crash before the commit leaves only unreferenced Parquet files, and the next run ingests
//! the file again; a crash after it finds the file recorded and skips it.
//!
//! Rows keep the source's fields with the declared types; fields that appear later become
//! new nullable columns typed from the first file that carries them; a value that does not
//! fit its column is kept in `_rescued`. Lines that are not records go to the quarantine
//! table with their bytes and the error. Per file, rows + quarantined = lines read.

pub mod discover;
pub mod ingest;
pub mod json;
pub mod lines;
mod parquet_source;
pub mod rows;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use deltalake::kernel::{Action, MetadataExt, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, ObjectStore, Path};
use futures::StreamExt;
use medallion_config::{Layer, OnChangedFile, Source, TableRef};
use medallion_core::faults::crash_point;
use medallion_core::runlog::{self, RunRecord};
use medallion_core::table::{
    arrow_schema, commit, is_conflict, kernel_schema, open_existing, open_or_create, storage_error,
    table_properties,
};
use medallion_core::{Error, Pipeline, Result, RunContext, Shard};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

pub use discover::{FileState, LandingFile};
pub use ingest::FileReport;

use crate::ingest::{Ingested, ingest_file};
use crate::rows::Stamp;
use crate::schema::{BronzeSchema, quarantine_schema};

/// Landed bytes per commit: files are committed in groups of about this size, so a crash
/// loses at most one group's work and the log does not grow a commit per small file.
const GROUP_BYTES: u64 = 1 << 30;

/// Landed files read at the same time (each uses a parser thread and an encoder).
const PARALLEL_FILES: usize = 2;

/// Splits the files to ingest into commit groups of about [`GROUP_BYTES`], in order.
fn groups(files: Vec<(LandingFile, bool)>) -> Vec<Vec<(LandingFile, bool)>> {
    let mut out: Vec<Vec<(LandingFile, bool)>> = Vec::new();
    let mut bytes = 0u64;
    for file in files {
        if out.is_empty() || bytes >= GROUP_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += file.0.size;
        out.last_mut().expect("a group was pushed").push(file);
    }
    out
}

/// What a Bronze run would do for one table.
#[derive(Debug, Clone, Serialize)]
pub struct SourcePlan {
    /// The Bronze table.
    pub table: String,
    /// The source it ingests.
    pub source: String,
    /// The landing folder.
    pub folder: String,
    /// Files not ingested yet, in the order they would be.
    pub new: Vec<LandingFile>,
    /// Files ingested earlier that changed since (reported, not ingested again unless
    /// the source says `on_changed_file: reingest`).
    pub changed: Vec<LandingFile>,
    /// Files already ingested.
    pub ingested: usize,
    /// The shard of the landed files planned for (`I/N`), if the files are split.
    pub shard: Option<String>,
    /// Landed files left to the other shards.
    pub other_shards: usize,
}

/// What a Bronze run did for one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BronzeMetrics {
    /// The Bronze table.
    pub table: String,
    /// The run.
    pub run_id: String,
    /// Files read, in order.
    pub files: Vec<FileReport>,
    /// Files that changed after they were ingested and were left alone.
    pub changed_files: Vec<String>,
    /// Files skipped because they were ingested before.
    pub already_ingested: usize,
    /// Lines (records) read, all files.
    pub lines: u64,
    /// Rows written.
    pub rows: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Rows with a value kept in `_rescued`.
    pub rescued: u64,
    /// Landed bytes read.
    pub bytes: u64,
    /// Uncompressed bytes read.
    pub uncompressed_bytes: u64,
    /// Columns added to the table by this run.
    pub new_columns: Vec<String>,
    /// Bronze table version after the run.
    pub version: Option<u64>,
    /// Quarantine table version after the run.
    pub quarantine_version: Option<u64>,
    /// When the run started.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When its last commit was made.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The shard of the landed files this job ingested (`I/N`), if the files were split.
    pub shard: Option<String>,
    /// Wall time.
    pub seconds: f64,
}

impl BronzeMetrics {
    /// Adds what one committed file read.
    fn add_file(&mut self, r: FileReport) {
        self.lines += r.lines;
        self.rows += r.rows;
        self.quarantined += r.quarantined;
        self.rescued += r.rescued;
        self.bytes += r.bytes;
        self.uncompressed_bytes += r.uncompressed_bytes;
        self.files.push(r);
    }
}

/// The run-log record of a Bronze table run: `metrics` of a run that got that far, `error`
/// of one that failed.
pub fn record(
    pipeline: &Pipeline,
    ctx: &RunContext,
    table: &TableRef,
    started: chrono::DateTime<chrono::Utc>,
    metrics: Option<&BronzeMetrics>,
    error: Option<&Error>,
) -> RunRecord {
    let config = pipeline.config.bronze_table(&table.name);
    let source = pipeline
        .dag
        .source_of(table)
        .and_then(|s| pipeline.config.source(s));
    let mut r = RunRecord::new(
        ctx,
        table,
        metrics.and_then(|m| m.started_at).unwrap_or(started),
        runlog::fingerprint(&(source, config)),
    );
    if let Some(m) = metrics {
        r.finished_at = m.finished_at.unwrap_or_else(runlog::now);
        let files: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        r.inputs = match &m.shard {
            Some(shard) => json!({ "files": files, "shard": shard }),
            None => json!({ "files": files }),
        }
        .to_string();
        r.output_version = m.version.and_then(|v| i64::try_from(v).ok());
        r.rows_read = runlog::count(m.lines);
        r.rows_written = runlog::count(m.rows);
        r.rows_quarantined = runlog::count(m.quarantined);
        r.schema_changes = json!(m.new_columns).to_string();
    } else {
        r.finished_at = runlog::now();
        r.inputs = json!({ "files": null }).to_string();
    }
    match error {
        Some(e) => r.failed(e),
        None => r,
    }
}

/// The landing store and the paths of a source's folder and of the landing prefix.
fn landing(
    pipeline: &Pipeline,
    source_name: &str,
    source: &Source,
) -> Result<(Arc<dyn ObjectStore>, Path, Path)> {
    let folder = source
        .path
        .as_ref()
        .map_or_else(|| format!("{source_name}/"), |p| p.value.clone());
    // The store is rooted at the landing prefix: paths in it are relative to the prefix.
    let landing_url = pipeline.locations.landing();
    let store = medallion_core::table::store_for(landing_url)?;
    let prefix = Path::parse(folder.trim_matches('/'))
        .map_err(|e| Error::Usage(format!("source folder `{folder}` of `{source_name}`: {e}")))?;
    Ok((store, prefix, Path::default()))
}

/// The source of a Bronze table.
fn source_of<'a>(pipeline: &'a Pipeline, table: &TableRef) -> Result<(String, &'a Source)> {
    if table.layer != Layer::Bronze {
        return Err(Error::Usage(format!("`{table}` is not a Bronze table")));
    }
    let name = pipeline
        .dag
        .source_of(table)
        .ok_or_else(|| Error::Usage(format!("`{table}` has no source")))?;
    let source = pipeline
        .config
        .source(name)
        .ok_or_else(|| Error::Usage(format!("source `{name}` of `{table}` is not declared")))?;
    Ok((name.as_str().to_string(), source))
}

/// Lists the source's landed files and where each stands (only the shard's files, when
/// `shard` splits them between jobs).
pub async fn plan(
    pipeline: &Pipeline,
    table: &TableRef,
    shard: Option<Shard>,
) -> Result<SourcePlan> {
    let (source_name, source) = source_of(pipeline, table)?;
    let (store, prefix, root) = landing(pipeline, &source_name, source)?;
    let mut files = discover::list(store.as_ref(), &prefix, &root).await?;
    let listed = files.len();
    if let Some(shard) = shard {
        files.retain(|f| shard.owns_file_of(&source_name, source.sharding, &f.relative));
    }
    let bronze = open_existing(&pipeline.locations.table(table)).await?;
    let mut plan = SourcePlan {
        table: table.to_string(),
        source: source_name,
        folder: prefix.to_string(),
        new: Vec::new(),
        changed: Vec::new(),
        ingested: 0,
        shard: shard.map(|s| s.to_string()),
        other_shards: listed - files.len(),
    };
    for file in files {
        match discover::state(bronze.as_ref(), &file).await? {
            FileState::New => plan.new.push(file),
            FileState::Changed => plan.changed.push(file),
            FileState::Ingested => plan.ingested += 1,
        }
    }
    Ok(plan)
}

/// Ingests every new landed file of the table's source.
pub async fn run(pipeline: &Pipeline, table: &TableRef, ctx: &RunContext) -> Result<BronzeMetrics> {
    let started = Instant::now();
    let (source_name, source) = source_of(pipeline, table)?;
    let (store, prefix, root) = landing(pipeline, &source_name, source)?;
    let properties = table_properties(&pipeline.config.storage);
    let bronze_url = pipeline.locations.table(table);
    let quarantine_url = pipeline.locations.quarantine(table);
    let declared = BronzeSchema::declared(source);
    let mut bronze = open_or_create(
        &bronze_url,
        &declared.arrow(),
        &[],
        &properties,
        table.name.as_str(),
    )
    .await?;
    let mut quarantine = open_or_create(
        &quarantine_url,
        &quarantine_schema(),
        &[],
        &properties,
        &format!("{}_quarantine", table.name),
    )
    .await?;

    let mut metrics = BronzeMetrics {
        table: table.to_string(),
        run_id: ctx.run_id.clone(),
        started_at: Some(runlog::now()),
        ..BronzeMetrics::default()
    };
    let mut files = discover::list(store.as_ref(), &prefix, &root).await?;
    if let Some(shard) = ctx.shard {
        files.retain(|f| shard.owns_file_of(&source_name, source.sharding, &f.relative));
        metrics.shard = Some(shard.to_string());
    }
    let mut todo: Vec<(LandingFile, bool)> = Vec::new();
    for file in files {
        match discover::state(Some(&bronze), &file).await? {
            FileState::Ingested => metrics.already_ingested += 1,
            FileState::Changed if source.on_changed_file == OnChangedFile::Report => {
                warn!(table = %table, file = %file.relative, "file changed after it was ingested; not ingested again (on_changed_file: report)");
                metrics.changed_files.push(file.relative.clone());
            }
            FileState::New | FileState::Changed => {
                // A crash between the quarantine commit and the Bronze commit leaves the
                // quarantine done: do not write its records twice.
                let q_state = discover::state(Some(&quarantine), &file).await?;
                todo.push((file, q_state != FileState::Ingested));
            }
        }
    }
    info!(table = %table, new = todo.len(), ingested = metrics.already_ingested, changed = metrics.changed_files.len(), "landed files");

    let stamp = Stamp {
        ingested_at_us: ctx.started_at.timestamp_micros(),
        run_id: Arc::from(ctx.run_id.as_str()),
    };
    let mut schema = BronzeSchema::from_arrow(&arrow_schema(&bronze)?);
    let source = Arc::new(source.clone());
    let groups = groups(todo);
    let last_group = groups.len().saturating_sub(1);
    for (group_no, group_files) in groups.into_iter().enumerate() {
        // Files of a group are read concurrently, each starting from the schema as it
        // was before the group; their new columns are then merged in file order, exactly
        // as reading them one after the other would have. A file that inferred a column
        // differently from an earlier file of the group is read again after it.
        let start = schema.clone();
        let spawn = |file: LandingFile, write_q: bool, schema: BronzeSchema| {
            tokio::spawn(ingest_file(
                store.clone(),
                file,
                source.clone(),
                schema,
                stamp.clone(),
                bronze.clone(),
                quarantine.clone(),
                write_q,
            ))
        };
        let results: Vec<_> = futures::stream::iter(group_files.iter().cloned())
            .map(|(file, write_q)| spawn(file, write_q, start.clone()))
            .buffered(PARALLEL_FILES)
            .collect()
            .await;
        let mut group = Vec::with_capacity(group_files.len());
        for ((file, write_q), joined) in group_files.into_iter().zip(results) {
            let mut ingested = joined
                .map_err(|e| Error::Other(format!("reading `{}` stopped: {e}", file.relative)))??;
            if let Err(conflict) = schema.merge(&ingested.schema) {
                info!(table = %table, file = %file.relative, "{conflict}; reading the file again with the columns inferred before it");
                ingested = spawn(file.clone(), write_q, schema.clone())
                    .await
                    .map_err(|e| {
                        Error::Other(format!("reading `{}` stopped: {e}", file.relative))
                    })??;
                schema.merge(&ingested.schema).map_err(Error::Other)?;
            }
            let r = &ingested.report;
            info!(table = %table, file = %r.path, lines = r.lines, rows = r.rows, quarantined = r.quarantined, "read");
            if let Some(error) = &r.error {
                warn!(table = %table, file = %r.path, "{error}; the complete lines before it are ingested");
            }
            group.push((file, write_q, ingested));
        }
        let run = Run {
            pipeline,
            ctx,
            table,
            last: group_no == last_group,
        };
        commit_group(
            &mut bronze,
            &mut quarantine,
            &schema,
            group,
            &run,
            &mut metrics,
        )
        .await?;
    }
    metrics.version = bronze.version();
    metrics.quarantine_version = quarantine.version();
    metrics.seconds = started.elapsed().as_secs_f64();
    Ok(metrics)
}

/// Attempts at committing a group when other jobs commit to the same tables meanwhile.
const CONFLICT_ATTEMPTS: usize = 8;

/// A group of read files waiting to be committed.
struct Pending {
    file: LandingFile,
    write_quarantine: bool,
    ingested: Ingested,
}

/// Commits one group of ingested files: the quarantine table first, then Bronze, each
/// with one application transaction per file. When another job commits to the same tables
/// meanwhile (a conflict), both tables are read again: files that job ingested are dropped
/// from the group (their Parquet files stay unreferenced), the rest is committed again.
async fn commit_group(
    bronze: &mut DeltaTable,
    quarantine: &mut DeltaTable,
    schema: &BronzeSchema,
    group: Vec<(LandingFile, bool, Ingested)>,
    run: &Run<'_>,
    metrics: &mut BronzeMetrics,
) -> Result<()> {
    let table = run.table;
    let mut pending: Vec<Pending> = group
        .into_iter()
        .map(|(file, write_quarantine, ingested)| Pending {
            file,
            write_quarantine,
            ingested,
        })
        .collect();
    crash_point("bronze.before_commit");
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_commit(bronze, quarantine, schema, &pending, run, metrics).await {
            Ok((added, finished_at)) => {
                metrics.new_columns.extend(added);
                metrics.finished_at = Some(finished_at);
                break;
            }
            Err(e) if is_conflict(&e) && attempt < CONFLICT_ATTEMPTS => {
                warn!(table = %table, attempt, "another job committed to this table meanwhile ({e}); checking which files are still to commit");
                bronze
                    .load()
                    .await
                    .map_err(|e| storage_error(bronze.table_url(), e))?;
                quarantine
                    .load()
                    .await
                    .map_err(|e| storage_error(quarantine.table_url(), e))?;
                let mut still = Vec::with_capacity(pending.len());
                for mut p in pending {
                    if discover::state(Some(bronze), &p.file).await? == FileState::Ingested {
                        info!(table = %table, file = %p.file.relative, "ingested by another job meanwhile");
                        metrics.already_ingested += 1;
                        continue;
                    }
                    if discover::state(Some(quarantine), &p.file).await? == FileState::Ingested {
                        p.write_quarantine = false;
                    }
                    still.push(p);
                }
                pending = still;
                if pending.is_empty() {
                    return Ok(());
                }
            }
            Err(e) => {
                return Err(Error::Storage(format!(
                    "commit to {} failed: {e}; nothing of this group was committed, a re-run ingests it",
                    medallion_core::storage::redacted(bronze.table_url())
                )));
            }
        }
    }
    crash_point("bronze.after_commit");
    for p in pending {
        metrics.add_file(p.ingested.report);
    }
    Ok(())
}

/// The run a group is committed for.
struct Run<'a> {
    pipeline: &'a Pipeline,
    ctx: &'a RunContext,
    table: &'a TableRef,
    /// Whether this is the run's last group.
    last: bool,
}

/// One attempt at committing `pending`; returns the columns it added to the table and the
/// time recorded as the run's end if this was its last commit.
async fn try_commit(
    bronze: &mut DeltaTable,
    quarantine: &mut DeltaTable,
    schema: &BronzeSchema,
    pending: &[Pending],
    run: &Run<'_>,
    metrics: &BronzeMetrics,
) -> std::result::Result<(Vec<String>, chrono::DateTime<chrono::Utc>), deltalake::DeltaTableError> {
    let (ctx, table) = (run.ctx, run.table);
    let operation = || DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let files_info: Vec<_> = pending
        .iter()
        .map(|p| {
            let r = &p.ingested.report;
            json!({
                "path": p.file.relative, "size": p.file.size, "lines": r.lines, "rows": r.rows,
                "quarantined": r.quarantined, "error": r.error,
            })
        })
        .collect();
    let info = |what: &str, record: Option<serde_json::Value>| {
        let mut info = json!({
            "run_id": ctx.run_id, "layer": "bronze", "table": table.to_string(), "part": what,
            "engine_version": medallion_core::run::ENGINE_VERSION, "files": files_info,
        });
        if let Some(record) = record {
            info[runlog::COMMIT_INFO_KEY] = record;
        }
        HashMap::from([("medallion".to_string(), info)])
    };
    let txn = |p: &Pending| Transaction::new(p.file.app_id(), p.file.fingerprint());

    // Quarantine first: if we crash after it, the re-run finds it done and writes only Bronze.
    let q: Vec<&Pending> = pending.iter().filter(|p| p.write_quarantine).collect();
    if !q.is_empty() {
        let actions = q
            .iter()
            .flat_map(|p| p.ingested.quarantine.iter().cloned().map(Action::Add))
            .collect();
        let txns = q.iter().map(|p| txn(p)).collect();
        commit(
            quarantine,
            actions,
            txns,
            info("quarantine", None),
            operation(),
            ctx.commit_retries,
        )
        .await?;
        quarantine.load().await?;
        crash_point("bronze.after_quarantine_commit");
    }

    let mut actions: Vec<Action> = pending
        .iter()
        .flat_map(|p| p.ingested.rows.iter().cloned().map(Action::Add))
        .collect();
    // The table's schema now (another job may have added columns too), plus ours.
    let current =
        arrow_schema(bronze).map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
    let mut target = BronzeSchema::from_arrow(&current);
    target.merge(schema).map_err(|conflict| {
        deltalake::DeltaTableError::Generic(format!(
            "{conflict} (another job added it meanwhile); re-run to read these files again"
        ))
    })?;
    let evolved = target.arrow();
    let mut added = Vec::new();
    if evolved.fields().len() != current.fields().len() {
        added = evolved
            .fields()
            .iter()
            .filter(|f| current.field_with_name(f.name()).is_err())
            .map(|f| f.name().clone())
            .collect();
        info!(table = %table, columns = %added.join(", "), "new columns");
        let kernel = kernel_schema(&evolved)
            .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
        let metadata = bronze.snapshot()?.metadata().clone().with_schema(&kernel)?;
        actions.push(Action::Metadata(metadata));
    }
    let txns = pending.iter().map(txn).collect();
    // The run as it stands once this group is in: the record the run log gets.
    let mut so_far = metrics.clone();
    for p in pending {
        so_far.add_file(p.ingested.report.clone());
    }
    so_far.new_columns.extend(added.iter().cloned());
    let finished_at = runlog::now();
    so_far.finished_at = Some(finished_at);
    let record = record(run.pipeline, ctx, table, finished_at, Some(&so_far), None);
    commit(
        bronze,
        actions,
        txns,
        info("rows", Some(record.commit_info(run.last))),
        operation(),
        ctx.commit_retries,
    )
    .await?;
    bronze.load().await?;
    Ok((added, finished_at))
}
