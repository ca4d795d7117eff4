//! `medallion lineage TABLE [--version N]`: the upstream graph of a table version, down to
//! the landed files, from the runs' records in the Delta history.

use std::fmt::Write as _;

use medallion_config::TableRef;
use medallion_core::Error;
use medallion_core::column_lineage::{Origins, Transform};
use medallion_core::expressions::column_lineage;
use medallion_core::lineage::{Node, upstream};
use medallion_gold::trace::{Trace, TraceRequest};

use crate::cli::{Global, LineageCommand, OutputFormat, PlanFormat};

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
    let lineage = column_lineage(&pipeline.config, &pipeline.dag);
    let columns = lineage.get(&table.to_string()).cloned().unwrap_or_default();
    let out = match format {
        PlanFormat::Text => text(&nodes, &columns),
        PlanFormat::Json => {
            let columns: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .map(|(c, origins)| {
                    let from: Vec<_> = origins
                        .iter()
                        .map(|((t, col), how)| serde_json::json!({ "table": t, "column": col, "transform": how }))
                        .collect();
                    (c.clone(), serde_json::Value::Array(from))
                })
                .collect();
            serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes, "columns": columns }))
                .map_err(|e| Error::Other(e.to_string()))?
        }
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

fn text(nodes: &[Node], columns: &[(String, Origins)]) -> String {
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
    if let (Some(first), false) = (nodes.first(), columns.is_empty()) {
        let _ = writeln!(out, "\ncolumns of {}:", first.table);
        let width = columns.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
        for (column, origins) in columns {
            let from: Vec<String> = origins
                .iter()
                .map(|((t, c), how)| match how {
                    Transform::Identity => format!("{t}.{c}"),
                    Transform::Transformation => format!("f({t}.{c})"),
                    Transform::Aggregation => format!("agg({t}.{c})"),
                })
                .collect();
            let from = if from.is_empty() {
                "(computed, no input column)".to_string()
            } else {
                from.join(", ")
            };
            let _ = writeln!(out, "  {column:<width$} <- {from}");
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

/// `lineage trace TABLE --where PREDICATE`.
pub fn trace(global: &Global, command: LineageCommand) -> Result<(), Error> {
    let LineageCommand::Trace {
        table,
        predicate,
        version,
        limit,
        max_sources,
        format,
    } = command;
    let pipeline = super::load(global)?;
    let table: TableRef = table.parse().map_err(Error::Usage)?;
    if !pipeline.dag.contains(&table) {
        return Err(Error::Usage(format!(
            "`{table}` is not a table of the pipeline"
        )));
    }
    if table.layer != medallion_config::Layer::Gold {
        return Err(Error::Usage(format!(
            "`lineage trace` starts from a Gold table; `{table}` rows carry their own \
             `_source_file` and `_source_line` (Silver) or are the landed lines (Bronze)"
        )));
    }
    let request = TraceRequest {
        predicate,
        version,
        limit,
        max_sources,
    };
    let runtime = super::runtime()?;
    let trace = runtime.block_on(medallion_gold::trace::trace(&pipeline, &table, &request))?;
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&trace).map_err(|e| Error::Other(e.to_string()))?
        ),
        OutputFormat::Text => print!("{}", trace_text(&trace)),
    }
    Ok(())
}

fn trace_text(trace: &Trace) -> String {
    let mut out = String::new();
    let inputs: Vec<String> = trace.inputs.iter().map(|(t, v)| label(t, *v)).collect();
    let _ = writeln!(
        out,
        "{}@{} (read {})",
        trace.table,
        trace.version,
        inputs.join(", ")
    );
    if let Some(note) = &trace.note {
        let _ = writeln!(
            out,
            "not row-traceable: {note}; its table-level lineage is `medallion lineage {}`",
            trace.table
        );
    }
    if trace.rows.is_empty() {
        let _ = writeln!(out, "no row matches");
    }
    for (i, r) in trace.rows.iter().enumerate() {
        let cells: Vec<String> = r
            .row
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                )
            })
            .collect();
        let _ = writeln!(out, "\nrow {}: {}", i + 1, cells.join(" "));
        if !trace.traceable {
            continue;
        }
        for s in &r.sources {
            let credit = s.credit.map(|c| format!(" credit {c}")).unwrap_or_default();
            let via = s
                .via
                .as_ref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default();
            let bronze = s
                .bronze_version
                .map(|v| format!(" bronze@{v}"))
                .unwrap_or_default();
            let at = match (&s.file, s.line) {
                (Some(f), Some(l)) => format!(" {f}:{l}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {} {} {}{credit}{via}{bronze}{at}",
                s.role, s.table, s.key
            );
            if let Some(raw) = &s.raw {
                let _ = writeln!(out, "      {raw}");
            }
        }
        if r.total_sources > r.sources.len() {
            let _ = writeln!(
                out,
                "  … {} more source rows (--max-sources)",
                r.total_sources - r.sources.len()
            );
        }
        if let Some(check) = &r.check {
            let _ = writeln!(out, "  {check}");
        }
    }
    out
}
