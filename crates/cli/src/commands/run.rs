//! `medallion run`: the selected tables in dependency order.

use std::fmt::Write as _;

use medallion_bronze::BronzeMetrics;
use medallion_config::Layer;
use medallion_core::{Error, RunContext};
use tracing::Instrument;

use crate::cli::{Global, OutputFormat, Selection};

pub fn run(global: &Global, select: &Selection, format: OutputFormat) -> Result<(), Error> {
    let pipeline = super::load(global)?;
    let tables = pipeline.select(select.layer, &select.tables)?;
    let ctx = RunContext::new(pipeline.config.storage.commit_retries);
    tracing::info!(run_id = %ctx.run_id, tables = tables.len(), "run started");
    let runtime = super::runtime()?;
    let mut bronze: Vec<BronzeMetrics> = Vec::new();
    let result = runtime.block_on(async {
        // Bronze tables depend on nothing but their sources: they run at the same time.
        let landing: Vec<_> = tables.iter().filter(|t| t.layer == Layer::Bronze).collect();
        let runs = landing.iter().map(|table| {
            let span = tracing::info_span!("table", run_id = %ctx.run_id, table = %table);
            medallion_bronze::run(&pipeline, table, &ctx).instrument(span)
        });
        for outcome in futures::future::join_all(runs).await {
            bronze.push(outcome?);
        }
        // Silver and Gold are not part of this build yet: say so at the first such table.
        match tables.iter().find(|t| t.layer != Layer::Bronze) {
            Some(table) => Err(Error::Other(format!(
                "`{table}`: the {} layer cannot run in this build yet; run `--layer bronze`",
                table.layer
            ))),
            None => Ok(()),
        }
    });
    match format {
        OutputFormat::Json => {
            let report = serde_json::json!({ "run_id": ctx.run_id, "bronze": bronze });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?
            );
        }
        OutputFormat::Text => print!("{}", summary(&ctx.run_id, &bronze)),
    }
    result
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
