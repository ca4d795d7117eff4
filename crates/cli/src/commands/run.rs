//! `medallion run`: the selected tables in dependency order.

use std::fmt::Write as _;

use futures::FutureExt;
use medallion_bronze::BronzeMetrics;
use medallion_config::Layer;
use medallion_core::openlineage::{self, Emitter, Outcome};
use medallion_core::table::{arrow_schema, open_existing};
use medallion_core::{Error, RunContext};
use medallion_core::{metrics, runlog};
use medallion_gold::{GoldMetrics, GoldOptions};
use medallion_silver::{SilverMetrics, SilverOptions};
use tracing::Instrument;

use crate::cli::{Global, OutputFormat, Selection};

/// Runs of a Silver or Gold table when another job's commit conflicts with its own: each
/// starts again from the table's new state (commits are idempotent, so that is exactly a
/// re-run; usually the other job did the work and the table is up to date).
const CONFLICT_RERUNS: u32 = 4;

/// Awaits a table run (an expression giving a new future each time), again from the table's
/// new state when it ends in a conflict, up to [`CONFLICT_RERUNS`] runs.
macro_rules! rerun_on_conflict {
    ($table:expr, $run:expr) => {{
        let mut attempt = 1;
        loop {
            match $run.await {
                Err(Error::Conflict(why)) if attempt < CONFLICT_RERUNS => {
                    tracing::warn!(table = %$table, attempt, "{why}: running the table again from its new state");
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

/// What a run did, for its metrics: kept whether it succeeded or not.
#[derive(Default)]
struct Done {
    run_id: String,
    records: Vec<runlog::RunRecord>,
    bytes: Vec<metrics::BytesRead>,
}

/// How long a metrics push may take before the run gives up on it.
const METRICS_PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The options of `medallion run`.
pub struct RunOptions {
    pub shard: Option<medallion_core::Shard>,
    pub format: OutputFormat,
    pub silver: SilverOptions,
    pub gold: GoldOptions,
    pub metrics_push: Option<url::Url>,
}

pub fn run(global: &Global, select: &Selection, options: RunOptions) -> Result<(), Error> {
    let started_at = runlog::now();
    let mut done = Done::default();
    let result = run_tables(global, select, &options, &mut done);
    if let Some(url) = &options.metrics_push {
        push_metrics(
            url,
            select,
            options.shard,
            started_at,
            &done,
            result.is_ok(),
        );
    }
    result
}

/// Pushes the run's metrics to a Pushgateway; a failure is a warning, never the run's.
fn push_metrics(
    url: &url::Url,
    select: &Selection,
    shard: Option<medallion_core::Shard>,
    started_at: chrono::DateTime<chrono::Utc>,
    done: &Done,
    succeeded: bool,
) {
    let layer = select.layer.map_or("all", |l| l.as_str());
    let group = metrics::group_url(url, layer, shard);
    let body = metrics::exposition(&metrics::RunMetrics {
        run_id: &done.run_id,
        started_at,
        finished_at: runlog::now(),
        succeeded,
        records: &done.records,
        bytes: &done.bytes,
    });
    let pushed = super::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(metrics::push(&group, body, succeeded, METRICS_PUSH_TIMEOUT)));
    let shown = medallion_core::storage::redacted(&group);
    match pushed {
        Ok(()) => tracing::info!(url = %shown, "run metrics pushed"),
        Err(e) => {
            tracing::warn!(url = %shown, "run metrics not pushed ({e}); the run's result stands")
        }
    }
}

fn run_tables(
    global: &Global,
    select: &Selection,
    options: &RunOptions,
    done: &mut Done,
) -> Result<(), Error> {
    let RunOptions {
        shard,
        format,
        silver: silver_options,
        gold: gold_options,
        ..
    } = *options;
    if let Some((from, to)) = gold_options.range
        && from > to
    {
        return Err(Error::Usage("--from is after --to".into()));
    }
    let pipeline = super::load(global)?;
    let tables = pipeline.select(select.layer, &select.tables)?;
    super::only_bronze_with_shard(shard, &tables)?;
    let mut ctx = RunContext::new(pipeline.config.storage.commit_retries);
    ctx.shard = shard;
    done.run_id = ctx.run_id.clone();
    tracing::info!(run_id = %ctx.run_id, tables = tables.len(), "run started");
    let runtime = super::runtime()?;
    let mut bronze: Vec<BronzeMetrics> = Vec::new();
    let mut silver: Vec<SilverMetrics> = Vec::new();
    let mut gold: Vec<GoldMetrics> = Vec::new();
    let mut lineage = Emitter::new(&pipeline);
    let result = runtime.block_on(async {
        // Bronze tables depend on nothing but their sources: they run at the same time.
        let landing: Vec<_> = tables.iter().filter(|t| t.layer == Layer::Bronze).collect();
        if let Some(l) = lineage.as_mut() {
            for table in &landing {
                l.start(&pipeline, &ctx, table).await;
            }
        }
        let runs = landing.iter().map(|table| {
            let span = tracing::info_span!("table", run_id = %ctx.run_id, table = %table);
            let started = runlog::now();
            medallion_bronze::run(&pipeline, table, &ctx)
                .instrument(span)
                .map(move |outcome| (*table, started, outcome))
        });
        let mut records = Vec::new();
        let mut first_error = None;
        for (table, started, outcome) in futures::future::join_all(runs).await {
            records.push(medallion_bronze::record(
                &pipeline,
                &ctx,
                table,
                started,
                outcome.as_ref().ok(),
                outcome.as_ref().err(),
            ));
            finish(&mut lineage, &pipeline, &ctx, table, &records, None).await;
            match outcome {
                Ok(m) => {
                    done.bytes.push(metrics::BytesRead {
                        table: m.table.clone(),
                        files: m.files.len() as u64,
                        bytes: m.bytes,
                        uncompressed_bytes: m.uncompressed_bytes,
                    });
                    bronze.push(m);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        done.records.extend_from_slice(&records);
        // The run log records failures too; a failure to write it is reported, after the
        // table errors.
        let logged = medallion_core::runlog::append(&pipeline, &ctx, &records).await;
        if let Some(e) = first_error {
            return Err(e);
        }
        logged?;
        // Silver tables in dependency order (dimensions before the tables that look them
        // up); the first failure stops the run, and is recorded.
        // The run log gets one commit per layer, failures included.
        let mut records = Vec::new();
        let mut failed = None;
        for table in tables.iter().filter(|t| t.layer == Layer::Silver) {
            let span = tracing::info_span!("table", run_id = %ctx.run_id, table = %table);
            let started = runlog::now();
            let mut metrics = SilverMetrics::default();
            if let Some(l) = lineage.as_mut() {
                l.start(&pipeline, &ctx, table).await;
            }
            let outcome = rerun_on_conflict!(
                table,
                medallion_silver::run(&pipeline, table, &ctx, silver_options, &mut metrics)
                    .instrument(span.clone())
            );
            records.push(medallion_silver::record(
                &pipeline,
                &ctx,
                table,
                started,
                &metrics,
                outcome.as_ref().err(),
            ));
            let rules = Some(&metrics.rules);
            finish(&mut lineage, &pipeline, &ctx, table, &records, rules).await;
            silver.push(metrics);
            if let Err(e) = outcome {
                failed = Some(e);
                break;
            }
        }
        done.records.extend_from_slice(&records);
        if !records.is_empty() {
            let logged = medallion_core::runlog::append(&pipeline, &ctx, &records).await;
            if let Some(e) = failed {
                return Err(e);
            }
            logged?;
        }
        // Gold tables in dependency order (a model reading another after it).
        let mut records = Vec::new();
        let mut failed = None;
        for table in tables.iter().filter(|t| t.layer == Layer::Gold) {
            let span = tracing::info_span!("table", run_id = %ctx.run_id, table = %table);
            let started = runlog::now();
            let mut metrics = GoldMetrics::default();
            if let Some(l) = lineage.as_mut() {
                l.start(&pipeline, &ctx, table).await;
            }
            let outcome = rerun_on_conflict!(
                table,
                medallion_gold::run(&pipeline, table, &ctx, gold_options, &mut metrics)
                    .instrument(span.clone())
            );
            records.push(medallion_gold::record(
                &pipeline,
                &ctx,
                table,
                started,
                &metrics,
                outcome.as_ref().err(),
            ));
            finish(&mut lineage, &pipeline, &ctx, table, &records, None).await;
            gold.push(metrics);
            if let Err(e) = outcome {
                failed = Some(e);
                break;
            }
        }
        done.records.extend_from_slice(&records);
        if !records.is_empty() {
            let logged = medallion_core::runlog::append(&pipeline, &ctx, &records).await;
            if let Some(e) = failed {
                return Err(e);
            }
            logged?;
        }
        Ok(())
    });
    // The run's OpenLineage events, kept in the lakehouse whatever happened to the run.
    if let Some(l) = lineage
        && let Err(e) = runtime.block_on(l.close(&pipeline, &ctx))
    {
        tracing::warn!("OpenLineage events of the run not kept in the lakehouse: {e}");
    }
    match format {
        OutputFormat::Json => {
            let report = serde_json::json!({ "run_id": ctx.run_id, "bronze": bronze, "silver": silver, "gold": gold });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?
            );
        }
        OutputFormat::Text => {
            if bronze.is_empty() {
                println!("run {}", ctx.run_id);
            } else {
                print!("{}", summary(&ctx.run_id, &bronze));
            }
            print!("{}", silver_summary(&silver));
            print!("{}", gold_summary(&gold));
        }
    }
    result
}

/// The COMPLETE or FAIL event of the table run whose record is the last of `records`.
async fn finish(
    lineage: &mut Option<Emitter>,
    pipeline: &medallion_core::Pipeline,
    ctx: &RunContext,
    table: &medallion_config::TableRef,
    records: &[runlog::RunRecord],
    rules: Option<&std::collections::BTreeMap<String, u64>>,
) {
    let (Some(l), Some(record)) = (lineage.as_mut(), records.last()) else {
        return;
    };
    let schema = match open_existing(&pipeline.locations.table(table)).await {
        Ok(Some(t)) => arrow_schema(&t)
            .map(|s| {
                s.fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let expectations = rules
        .map(|r| openlineage::expectations(&pipeline.config, table, r))
        .unwrap_or_default();
    let outcome = Outcome {
        schema,
        expectations,
    };
    l.finish(pipeline, ctx, table, record, &outcome).await;
}

fn summary(run_id: &str, bronze: &[BronzeMetrics]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run {run_id}");
    let _ = writeln!(
        out,
        "{:<22} {:>6} {:>11} {:>11} {:>11} {:>9} {:>10} {:>8} {:>8}",
        "table", "files", "lines", "rows", "quarantined", "rescued", "MB", "seconds", "MB/s"
    );
    for m in bronze {
        let mb = m.uncompressed_bytes as f64 / 1e6;
        let _ = writeln!(
            out,
            "{:<22} {:>6} {:>11} {:>11} {:>11} {:>9} {:>10.1} {:>8.2} {:>8.1}",
            m.table,
            m.files.len(),
            m.lines,
            m.rows,
            m.quarantined,
            m.rescued,
            mb,
            m.seconds,
            if m.seconds > 0.0 { mb / m.seconds } else { 0.0 }
        );
        for f in &m.changed_files {
            let _ = writeln!(out, "  changed after ingestion, not ingested again: {f}");
        }
        for f in m.files.iter().filter(|f| f.error.is_some()) {
            let _ = writeln!(
                out,
                "  {}: {}",
                f.path,
                f.error.as_deref().unwrap_or_default()
            );
        }
        if !m.new_columns.is_empty() {
            let _ = writeln!(out, "  new columns: {}", m.new_columns.join(", "));
        }
    }
    out
}

fn silver_summary(silver: &[SilverMetrics]) -> String {
    let mut out = String::new();
    if silver.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{:<22} {:>11} {:>11} {:>11} {:>11} {:>8} {:>11} {:>8} {:>11}",
        "table",
        "bronze v.",
        "read",
        "written",
        "quarantined",
        "dropped",
        "duplicates",
        "seconds",
        "rows/s"
    );
    for m in silver {
        let versions = match (m.from_version, m.to_version) {
            (Some(a), Some(b)) if m.mode != "rebuild" => format!("{}..{b}", a + 1),
            (_, Some(b)) => format!("0..{b}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<22} {:>11} {:>11} {:>11} {:>11} {:>8} {:>11} {:>8.2} {:>11.0}",
            m.table,
            versions,
            m.rows_read,
            m.rows_written,
            m.rows_quarantined,
            m.rows_dropped,
            m.duplicates_removed,
            m.seconds,
            if m.seconds > 0.0 {
                m.rows_read as f64 / m.seconds
            } else {
                0.0
            }
        );
        if m.mode == "up_to_date" {
            let _ = writeln!(out, "  up to date");
        }
        if let Some(reason) = &m.rebuild_reason {
            let _ = writeln!(out, "  rebuilt from Bronze: {reason}");
        }
        for (rule, n) in m.rules.iter().filter(|(_, n)| **n > 0) {
            let _ = writeln!(out, "  expectation {rule}: {n} rows failed");
        }
        for (lookup, values) in &m.ambiguous {
            if !values.is_empty() {
                let _ = writeln!(
                    out,
                    "  lookup {lookup}: {} ambiguous values resolved to no match",
                    values.len()
                );
            }
        }
        if !m.new_columns.is_empty() {
            let _ = writeln!(out, "  new columns: {}", m.new_columns.join(", "));
        }
    }
    out
}

fn gold_summary(gold: &[GoldMetrics]) -> String {
    let mut out = String::new();
    if gold.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{:<22} {:<12} {:>7} {:>11} {:>8} {:>8}",
        "table", "mode", "dates", "rows", "version", "seconds"
    );
    for m in gold {
        let _ = writeln!(
            out,
            "{:<22} {:<12} {:>7} {:>11} {:>8} {:>8.2}",
            m.table,
            m.mode,
            if m.mode == "incremental" {
                m.dates_recomputed.to_string()
            } else {
                String::new()
            },
            m.rows_written,
            m.version.map(|v| v.to_string()).unwrap_or_default(),
            m.seconds,
        );
        if m.mode == "incremental" && !m.dates.is_empty() {
            let _ = writeln!(out, "  dates {}", m.dates.join(" .. "));
        }
        if let Some(reason) = m.reason.as_ref().filter(|_| m.mode == "full") {
            let _ = writeln!(out, "  recomputed whole: {reason}");
        }
    }
    out
}
