//! `medallion lineage TABLE [--version N]`: the upstream graph of a table version, down to
//! the landed files, from the runs' records in the Delta history.

use std::fmt::Write as _;

use medallion_config::TableRef;
use medallion_core::Error;
use medallion_core::lineage::{Node, upstream};

use crate::cli::{Global, PlanFormat};

pub fn run(
    global: &Global,
    table: &str,
    version: Option<i64>,
    format: PlanFormat,
) -> Result<(), Error> {
    let pipeline = super::load(global)?;
    let table: TableRef = table.parse().map_err(Error::Usage)?;
    if !pipeline.dag.contains(&table) {
        return Err(Error::Usage(format!(
            "`{table}` is not a table of the pipeline"
        )));
    }
    let runtime = super::runtime()?;
    let nodes = runtime.block_on(upstream(&pipeline, &table, version))?;
    let out = match format {
        PlanFormat::Text => text(&nodes),
        PlanFormat::Json => serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes }))
            .map_err(|e| Error::Other(e.to_string()))?,
        PlanFormat::Dot => dot(&nodes),
    };
    println!("{out}");
    Ok(())
}

fn label(table: &str, version: Option<i64>) -> String {
    match version {
        Some(v) => format!("{table}@{v}"),
        None => format!("{table} (version not recorded)"),
    }
}

fn text(nodes: &[Node]) -> String {
    let mut out = String::new();
    for n in nodes {
        let _ = write!(out, "{}", label(&n.table, Some(n.version)));
        match (&n.run_id, n.recorded_at) {
            (Some(run), Some(at)) => {
                let _ = writeln!(out, "  (run {run}, recorded in commit {at})");
            }
            _ => {
                let _ = writeln!(out, "  (no run recorded)");
            }
        }
        for (input, version) in &n.inputs {
            let _ = writeln!(out, "  <- {}", label(input, *version));
        }
        for (file, lines) in &n.files {
            let _ = writeln!(out, "  <- file {file} ({lines} lines)");
        }
    }
    out.truncate(out.trim_end().len());
    out
}

fn dot(nodes: &[Node]) -> String {
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n");
    for n in nodes {
        let to = label(&n.table, Some(n.version));
        for (input, version) in &n.inputs {
            let _ = writeln!(out, "  \"{}\" -> \"{to}\";", label(input, *version));
        }
        for (file, _) in &n.files {
            let _ = writeln!(out, "  \"{file}\" [shape=note];\n  \"{file}\" -> \"{to}\";");
        }
    }
    out.push('}');
    out
}
