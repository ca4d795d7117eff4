//! `medallion run`: the selected tables in dependency order.

use std::fmt::Write as _;

use futures::FutureExt;
use medallion_bronze::BronzeMetrics;
use medallion_config::Layer;
use medallion_core::runlog::{self, RunRecord};
use medallion_core::{Error, RunContext};
use medallion_gold::{GoldMetrics, GoldOptions};
use medallion_silver::{SilverMetrics, SilverOptions};
use tracing::Instrument;

use crate::cli::{Global, OutputFormat, Selection};

pub fn run(
    global: &Global,
    select: &Selection,
    format: OutputFormat,
    options: SilverOptions,
    gold_options: GoldOptions,
) -> Result<(), Error> {
    if let Some((from, to)) = gold_options.range
        && from > to
    {
        return Err(Error::Usage("--from is after --to".into()));
    }
    let pipeline = super::load(global)?;
    let tables = pipeline.select(select.layer, &select.tables)?;
    let ctx = RunContext::new(pipeline.config.storage.commit_retries);
    tracing::info!(run_id = %ctx.run_id, tables = tables.len(), "run started");
    let runtime = super::runtime()?;
    let mut bronze: Vec<BronzeMetrics> = Vec::new();
    let mut silver: Vec<SilverMetrics> = Vec::new();
    let mut gold: Vec<GoldMetrics> = Vec::new();
    let result = runtime.block_on(async {
        // Bronze tables depend on nothing but their sources: they run at the same time.
        let landing: Vec<_> = tables.iter().filter(|t| t.layer == Layer::Bronze).collect();
        let runs = landing.iter().map(|table| {
            let span = tracing::info_span!("table", run_id = %ctx.run_id, table = %table);
            let started = chrono::Utc::now();
            medallion_bronze::run(&pipeline, table, &ctx)
                .instrument(span)
                .map(move |outcome| (*table, started, outcome))
        });
        let mut records = Vec::new();
        let mut first_error = None;
        for (table, started, outcome) in futures::future::join_all(runs).await {
            records.push(bronze_record(&pipeline, &ctx, table, started, &outcome));
            match outcome {
                Ok(metrics) => bronze.push(metrics),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
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
            let started = chrono::Utc::now();
            let mut metrics = SilverMetrics::default();
            let outcome = medallion_silver::run(&pipeline, table, &ctx, options, &mut metrics)
                .instrument(span)
                .await;
            records.push(silver_record(
                &pipeline, &ctx, table, started, &metrics, &outcome,
            ));
            silver.push(metrics);
            if let Err(e) = outcome {
                failed = Some(e);
                break;
            }
        }
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
            let started = chrono::Utc::now();
            let mut metrics = GoldMetrics::default();
            let outcome = medallion_gold::run(&pipeline, table, &ctx, gold_options, &mut metrics)
                .instrument(span)
                .await;
            records.push(gold_record(
                &pipeline, &ctx, table, started, &metrics, &outcome,
            ));
            gold.push(metrics);
            if let Err(e) = outcome {
                failed = Some(e);
                break;
            }
        }
        if !records.is_empty() {
            let logged = medallion_core::runlog::append(&pipeline, &ctx, &records).await;
            if let Some(e) = failed {
                return Err(e);
            }
            logged?;
        }
        Ok(())
    });
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

/// The run-log row of one Bronze table run.
fn bronze_record(
    pipeline: &medallion_core::Pipeline,
    ctx: &RunContext,
    table: &medallion_config::TableRef,
    started: chrono::DateTime<chrono::Utc>,
    outcome: &Result<BronzeMetrics, Error>,
) -> RunRecord {
    let config = pipeline.config.bronze_table(&table.name);
    let source = pipeline
        .dag
        .source_of(table)
        .and_then(|s| pipeline.config.source(s));
    let (status, error, m) = match outcome {
        Ok(m) => ("succeeded", None, Some(m)),
        Err(e) => ("failed", Some(e.to_string()), None),
    };
    let count =
        |f: fn(&BronzeMetrics) -> u64| m.map_or(0, |m| i64::try_from(f(m)).unwrap_or(i64::MAX));
    RunRecord {
        run_id: ctx.run_id.clone(),
        layer: table.layer.to_string(),
        table: table.to_string(),
        status: status.to_string(),
        error,
        started_at: started,
        finished_at: chrono::Utc::now(),
        inputs: serde_json::json!({ "files": m.map(|m| m.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>()) }).to_string(),
        output_version: m.and_then(|m| m.version).and_then(|v| i64::try_from(v).ok()),
        rows_read: count(|m| m.lines),
        rows_written: count(|m| m.rows),
        rows_quarantined: count(|m| m.quarantined),
        rows_dropped: "{}".to_string(),
        duplicates_removed: 0,
        schema_changes: serde_json::json!(m.map(|m| m.new_columns.clone()).unwrap_or_default()).to_string(),
        config_fingerprint: runlog::fingerprint(&(source, config)),
        engine_version: medallion_core::run::ENGINE_VERSION.to_string(),
        host: runlog::host(),
    }
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

/// The run-log row of one Silver table run.
fn silver_record(
    pipeline: &medallion_core::Pipeline,
    ctx: &RunContext,
    table: &medallion_config::TableRef,
    started: chrono::DateTime<chrono::Utc>,
    m: &SilverMetrics,
    outcome: &Result<(), Error>,
) -> RunRecord {
    let config = pipeline.config.silver_table(&table.name);
    let (status, error) = match outcome {
        Ok(()) => ("succeeded", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    RunRecord {
        run_id: ctx.run_id.clone(),
        layer: table.layer.to_string(),
        table: table.to_string(),
        status: status.to_string(),
        error,
        started_at: started,
        finished_at: chrono::Utc::now(),
        inputs: serde_json::json!({ m.input.clone(): { "from_version": m.from_version, "to_version": m.to_version, "mode": m.mode } }).to_string(),
        output_version: m.version.and_then(|v| i64::try_from(v).ok()),
        rows_read: count(m.rows_read),
        rows_written: count(m.rows_written),
        rows_quarantined: count(m.rows_quarantined),
        rows_dropped: serde_json::json!(m.rules).to_string(),
        duplicates_removed: count(m.duplicates_removed),
        schema_changes: serde_json::json!(m
            .new_columns
            .iter()
            .map(|c| format!("added {c}"))
            .chain(m.widened_columns.iter().map(|c| format!("widened {c}")))
            .collect::<Vec<_>>())
        .to_string(),
        config_fingerprint: runlog::fingerprint(&config),
        engine_version: medallion_core::run::ENGINE_VERSION.to_string(),
        host: runlog::host(),
    }
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

/// The run-log row of one Gold table run.
fn gold_record(
    pipeline: &medallion_core::Pipeline,
    ctx: &RunContext,
    table: &medallion_config::TableRef,
    started: chrono::DateTime<chrono::Utc>,
    m: &GoldMetrics,
    outcome: &Result<(), Error>,
) -> RunRecord {
    let config = pipeline.config.gold_table(&table.name);
    let (status, error) = match outcome {
        Ok(()) => ("succeeded", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    RunRecord {
        run_id: ctx.run_id.clone(),
        layer: table.layer.to_string(),
        table: table.to_string(),
        status: status.to_string(),
        error,
        started_at: started,
        finished_at: chrono::Utc::now(),
        inputs: serde_json::json!(m
            .inputs
            .iter()
            .map(|(t, v)| (t.clone(), serde_json::json!({ "from_version": v.from, "to_version": v.to, "mode": m.mode, "dates_recomputed": m.dates_recomputed })))
            .collect::<std::collections::BTreeMap<_, _>>())
        .to_string(),
        output_version: m.version.and_then(|v| i64::try_from(v).ok()),
        rows_read: 0,
        rows_written: i64::try_from(m.rows_written).unwrap_or(i64::MAX),
        rows_quarantined: 0,
        rows_dropped: "{}".to_string(),
        duplicates_removed: 0,
        schema_changes: "[]".to_string(),
        config_fingerprint: runlog::fingerprint(&(config, &pipeline.config.attribution)),
        engine_version: medallion_core::run::ENGINE_VERSION.to_string(),
        host: runlog::host(),
    }
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
