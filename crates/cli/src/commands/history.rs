//! `medallion history [TABLE]`: runs from the run log and, for one table, its Delta commits
//! with the run that made each, newest first.

use std::collections::BTreeMap;

use deltalake::arrow::json::ArrayWriter;
use deltalake::arrow::util::pretty::pretty_format_batches;
use futures::StreamExt;
use medallion_config::TableRef;
use medallion_core::Error;
use medallion_core::table::open_existing;
use serde_json::{Value, json};

use crate::cli::{Global, OutputFormat};

/// `history --rebuild`: replaces the run log by the one the Delta histories record.
pub fn rebuild(global: &Global, format: OutputFormat) -> Result<(), Error> {
    let pipeline = super::load(global)?;
    let runtime = super::runtime()?;
    let ctx = medallion_core::RunContext::new(pipeline.config.storage.commit_retries);
    let report = runtime.block_on(medallion_core::runlog::rebuild(&pipeline, &ctx))?;
    match format {
        OutputFormat::Json => eprintln!(
            "{}",
            serde_json::to_string(&report).map_err(|e| Error::Other(e.to_string()))?
        ),
        OutputFormat::Text => eprintln!(
            "run log rebuilt: {} table runs recovered from the Delta histories, {} kept from the \
             previous log (runs that committed nothing), {} of the previous {} corrected",
            report.from_commits, report.kept, report.corrected, report.previous
        ),
    }
    Ok(())
}

pub fn run(
    global: &Global,
    table: Option<&str>,
    limit: usize,
    format: OutputFormat,
) -> Result<(), Error> {
    let pipeline = super::load(global)?;
    let table: Option<TableRef> = match table {
        Some(t) => {
            let r: TableRef = t.parse().map_err(Error::Usage)?;
            if !pipeline.dag.contains(&r) {
                return Err(Error::Usage(format!("unknown table `{t}`")));
            }
            Some(r)
        }
        None => None,
    };
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let ctx = medallion_core::catalog::session(&pipeline, &BTreeMap::new()).await?;
        let filter = table.as_ref().map(|t| format!("WHERE \"table\" = '{t}'")).unwrap_or_default();
        let sql = format!(
            "SELECT run_id, \"table\", status, started_at, finished_at, output_version, rows_read, rows_written, \
             rows_quarantined, schema_changes, error FROM _system.runs {filter} ORDER BY started_at DESC, \"table\" LIMIT {limit}"
        );
        let runs = match ctx.sql(&sql).await {
            Ok(frame) => frame.collect().await.map_err(|e| Error::Other(e.to_string()))?,
            // No run log yet: nothing has run.
            Err(_) => Vec::new(),
        };
        let mut commits: Vec<Value> = Vec::new();
        if let Some(t) = &table
            && let Some(delta) = open_existing(&pipeline.locations.table(t)).await?
        {
            let latest = delta.version().unwrap_or(0);
            let mut stream = delta.history(Some(limit));
            let mut i = 0u64;
            while let Some(info) = stream.next().await {
                let info = info.map_err(|e| Error::Storage(e.to_string()))?;
                let medallion = info.info.get("medallion").cloned().unwrap_or(Value::Null);
                commits.push(json!({
                    "version": latest.saturating_sub(i),
                    "timestamp_ms": info.timestamp,
                    "operation": info.operation,
                    "run_id": medallion.get("run_id"),
                    "part": medallion.get("part"),
                    "files": medallion.get("files").and_then(Value::as_array).map(Vec::len),
                }));
                i += 1;
            }
        }
        match format {
            OutputFormat::Json => {
                let mut writer = ArrayWriter::new(Vec::new());
                for batch in &runs {
                    writer.write(batch).map_err(|e| Error::Other(e.to_string()))?;
                }
                writer.finish().map_err(|e| Error::Other(e.to_string()))?;
                let bytes = writer.into_inner();
                let runs: Value = if bytes.is_empty() { json!([]) } else { serde_json::from_slice(&bytes).unwrap_or(json!([])) };
                let report = json!({ "runs": runs, "commits": commits });
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?);
            }
            OutputFormat::Text => {
                println!("runs (newest first):");
                if runs.iter().all(|b| b.num_rows() == 0) {
                    println!("  none yet");
                } else {
                    println!("{}", pretty_format_batches(&runs).map_err(|e| Error::Other(e.to_string()))?);
                }
                if let Some(t) = &table {
                    println!("\ncommits of {t} (newest first):");
                    for c in &commits {
                        println!(
                            "  v{:<5} {:<8} run {} {}{}",
                            c["version"],
                            c["operation"].as_str().unwrap_or("?"),
                            c["run_id"].as_str().unwrap_or("-"),
                            c["part"].as_str().map(|p| format!("({p}) ")).unwrap_or_default(),
                            c["files"].as_u64().map(|n| format!("{n} file(s)")).unwrap_or_default(),
                        );
                    }
                }
            }
        }
        Ok(())
    })
}
