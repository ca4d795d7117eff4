//! `medallion plan`: the DAG in run order, and what a run of the selection would do.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use medallion_bronze::SourcePlan;
use medallion_config::{Layer, Materialized, TableRef};
use medallion_core::storage::redacted;
use medallion_core::{Error, Pipeline, Shard};
use medallion_gold::{GoldOptions, GoldPlan};
use medallion_silver::{SilverOptions, SilverPlan};
use serde_json::json;

use crate::cli::{Global, PlanFormat, Selection};

pub fn run(
    global: &Global,
    select: &Selection,
    shard: Option<Shard>,
    format: PlanFormat,
) -> Result<(), Error> {
    let pipeline = super::load(global)?;
    let tables = pipeline.select(select.layer, &select.tables)?;
    super::only_bronze_with_shard(shard, &tables)?;
    let (files, silver, gold) = if format == PlanFormat::Dot {
        (Files::new(), SilverPlans::new(), GoldPlans::new())
    } else {
        (
            landed_files(&pipeline, &tables, shard)?,
            silver_plans(&pipeline, &tables)?,
            gold_plans(&pipeline, &tables)?,
        )
    };
    let out = match format {
        PlanFormat::Text => text(&pipeline, &tables, &files, &silver, &gold),
        PlanFormat::Json => {
            serde_json::to_string_pretty(&as_json(&pipeline, &tables, &files, &silver, &gold))
                .map_err(|e| Error::Other(e.to_string()))?
        }
        PlanFormat::Dot => dot(&pipeline, &tables),
    };
    println!("{out}");
    Ok(())
}

/// For each Bronze table, its source's landed files (or why they could not be listed).
type Files = BTreeMap<TableRef, Result<SourcePlan, String>>;

fn landed_files(
    pipeline: &Pipeline,
    tables: &[TableRef],
    shard: Option<Shard>,
) -> Result<Files, Error> {
    let runtime = super::runtime()?;
    Ok(runtime.block_on(async {
        let mut out = Files::new();
        for t in tables.iter().filter(|t| t.layer == Layer::Bronze) {
            out.insert(
                t.clone(),
                medallion_bronze::plan(pipeline, t, shard)
                    .await
                    .map_err(|e| e.to_string()),
            );
        }
        out
    }))
}

/// For each Silver table, what a run would do (or why that cannot be told).
type SilverPlans = BTreeMap<TableRef, Result<SilverPlan, String>>;

fn silver_plans(pipeline: &Pipeline, tables: &[TableRef]) -> Result<SilverPlans, Error> {
    let runtime = super::runtime()?;
    Ok(runtime.block_on(async {
        let mut out = SilverPlans::new();
        for t in tables.iter().filter(|t| t.layer == Layer::Silver) {
            let plan = medallion_silver::plan(pipeline, t, SilverOptions::default()).await;
            out.insert(t.clone(), plan.map_err(|e| e.to_string()));
        }
        out
    }))
}

/// For each Gold table, what a run would do given its inputs as they are now.
type GoldPlans = BTreeMap<TableRef, Result<GoldPlan, String>>;

fn gold_plans(pipeline: &Pipeline, tables: &[TableRef]) -> Result<GoldPlans, Error> {
    let runtime = super::runtime()?;
    Ok(runtime.block_on(async {
        let mut out = GoldPlans::new();
        for t in tables.iter().filter(|t| t.layer == Layer::Gold) {
            let plan = medallion_gold::plan(pipeline, t, GoldOptions::default()).await;
            out.insert(t.clone(), plan.map_err(|e| e.to_string()));
        }
        out
    }))
}

/// A Gold plan in words.
fn gold_would_do(plans: &GoldPlans, table: &TableRef) -> Option<String> {
    let versions = |p: &GoldPlan| {
        p.inputs
            .iter()
            .map(|(t, v)| match v.from {
                Some(f) if f != v.to => format!("{t} {}..{}", f + 1, v.to),
                _ => format!("{t} {}", v.to),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(match plans.get(table)? {
        Err(e) => format!("cannot tell: {e}"),
        Ok(p) => match p.mode.as_str() {
            "up_to_date" => format!("up to date with {}", versions(p)),
            "incremental" => format!(
                "would recompute {} date(s) ({}) from {}",
                p.dates_recomputed,
                p.dates.join(" .. "),
                versions(p)
            ),
            "full" => format!(
                "would recompute every row from {}: {}",
                versions(p),
                p.reason.as_deref().unwrap_or_default()
            ),
            "refused" => format!(
                "would be refused: {}",
                p.reason.as_deref().unwrap_or_default()
            ),
            other => format!("{other}: {}", p.reason.as_deref().unwrap_or_default()),
        },
    })
}

/// A Silver plan in words.
fn silver_would_do(plans: &SilverPlans, table: &TableRef) -> Option<String> {
    Some(match plans.get(table)? {
        Err(e) => format!("cannot tell: {e}"),
        Ok(p) => match p.mode.as_str() {
            "up_to_date" => format!(
                "up to date with {} version {}",
                p.input,
                p.to_version.unwrap_or_default()
            ),
            "incremental" => format!(
                "would read {} versions {}..{}: {} file(s), {} rows",
                p.input,
                p.from_version.unwrap_or(-1) + 1,
                p.to_version.unwrap_or_default(),
                p.bronze_files,
                p.bronze_rows
            ),
            "rebuild" => format!(
                "would rebuild from {} versions 0..{} ({} file(s), {} rows): {}",
                p.input,
                p.to_version.unwrap_or_default(),
                p.bronze_files,
                p.bronze_rows,
                p.reason.as_deref().unwrap_or_default()
            ),
            "refused" => format!(
                "would be refused: {}",
                p.reason.as_deref().unwrap_or_default()
            ),
            other => other.to_string(),
        },
    })
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// What a run would do, in words.
fn would_do(files: &Files, table: &TableRef) -> Option<String> {
    let plan = files.get(table)?;
    Some(match plan {
        Err(e) => format!("landing not readable: {e}"),
        Ok(p) => {
            let bytes: u64 = p.new.iter().map(|f| f.size).sum();
            let mut s = format!(
                "would ingest {} new file(s){}, {} ({} already ingested{}{})",
                p.new.len(),
                p.shard
                    .as_ref()
                    .map(|s| format!(" of shard {s}"))
                    .unwrap_or_default(),
                mb(bytes),
                p.ingested,
                if p.changed.is_empty() {
                    String::new()
                } else {
                    format!(", {} changed since ingestion", p.changed.len())
                },
                if p.shard.is_some() {
                    format!(", {} left to the other shards", p.other_shards)
                } else {
                    String::new()
                }
            );
            for f in p.new.iter().take(10) {
                let _ = write!(s, "\n        + {} ({})", f.relative, mb(f.size));
            }
            if p.new.len() > 10 {
                let _ = write!(s, "\n        + … {} more", p.new.len() - 10);
            }
            for f in &p.changed {
                let _ = write!(
                    s,
                    "\n        ! {} changed after ingestion (size or ETag)",
                    f.relative
                );
            }
            s
        }
    })
}

/// What feeds a table, in words: a landing folder or upstream tables.
fn inputs(pipeline: &Pipeline, table: &TableRef) -> Vec<String> {
    if table.layer == Layer::Bronze {
        return pipeline
            .dag
            .source_of(table)
            .map(|s| format!("landing:{}", source_folder(pipeline, s.as_str())))
            .into_iter()
            .collect();
    }
    pipeline
        .dag
        .upstream(table)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn source_folder(pipeline: &Pipeline, source: &str) -> String {
    pipeline
        .config
        .sources
        .iter()
        .find(|(k, _)| k.as_str() == source)
        .and_then(|(_, s)| s.path.as_ref().map(|p| p.value.clone()))
        .unwrap_or_else(|| format!("{source}/"))
}

/// How a table is built, in a few words.
fn kind(pipeline: &Pipeline, table: &TableRef) -> String {
    let c = &pipeline.config;
    let find = |name: &str| name == table.name.as_str();
    match table.layer {
        Layer::Bronze => {
            let source = pipeline
                .dag
                .source_of(table)
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let format = c
                .sources
                .iter()
                .find(|(k, _)| k.as_str() == source)
                .map(|(_, s)| s.format.value.to_string())
                .unwrap_or_default();
            format!("append-only ingest ({format})")
        }
        Layer::Silver => c
            .silver
            .iter()
            .find(|(k, _)| find(k.as_str()))
            .map(|(_, t)| {
                let key: Vec<_> = t.key.iter().map(|k| k.as_str()).collect();
                format!(
                    "incremental, key ({}) keep {:?}, {} expectations",
                    key.join(", "),
                    t.keep,
                    t.expectations.len()
                )
                .to_lowercase()
            })
            .unwrap_or_default(),
        Layer::Gold => c
            .gold
            .iter()
            .find(|(k, _)| find(k.as_str()))
            .map(|(_, t)| {
                let model = match &t.builtin {
                    Some(b) => format!("builtin {}", b.as_str()),
                    None => "sql".to_string(),
                };
                let how = match (t.materialized, &t.date_column) {
                    (Materialized::IncrementalByDate, Some(d)) => {
                        format!("incremental by date ({d})")
                    }
                    _ => "full".to_string(),
                };
                format!("{model}, {how}")
            })
            .unwrap_or_default(),
    }
}

fn text(
    pipeline: &Pipeline,
    tables: &[TableRef],
    files: &Files,
    silver: &SilverPlans,
    gold: &GoldPlans,
) -> String {
    let mut out = String::new();
    let l = &pipeline.locations;
    let _ = writeln!(out, "pipeline {}", pipeline.config.pipeline.value);
    let _ = writeln!(out, "  root     {}", redacted(l.root()));
    let _ = writeln!(out, "  landing  {}", redacted(l.landing()));
    let _ = writeln!(
        out,
        "\nrun order ({} of {} tables):",
        tables.len(),
        pipeline.dag.order().len()
    );
    let width = tables
        .iter()
        .map(|t| t.to_string().len())
        .max()
        .unwrap_or(0);
    for (i, t) in tables.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>2}  {:<width$}  <- {}",
            i + 1,
            t.to_string(),
            inputs(pipeline, t).join(", "),
        );
        let _ = writeln!(out, "      {:<width$}     {}", "", kind(pipeline, t));
        if let Some(plan) = would_do(files, t)
            .or_else(|| silver_would_do(silver, t))
            .or_else(|| gold_would_do(gold, t))
        {
            let _ = writeln!(out, "      {:<width$}     {plan}", "");
        }
    }
    out.truncate(out.trim_end().len());
    out
}

fn as_json(
    pipeline: &Pipeline,
    tables: &[TableRef],
    files: &Files,
    silver: &SilverPlans,
    gold: &GoldPlans,
) -> serde_json::Value {
    json!({
        "pipeline": pipeline.config.pipeline.value.as_str(),
        "root": redacted(pipeline.locations.root()),
        "landing": redacted(pipeline.locations.landing()),
        "tables": tables.iter().map(|t| json!({
            "table": t.to_string(),
            "layer": t.layer.as_str(),
            "location": redacted(&pipeline.locations.table(t)),
            "inputs": inputs(pipeline, t),
            "kind": kind(pipeline, t),
            "landing": files.get(t).map(|p| match p {
                Ok(plan) => json!(plan),
                Err(e) => json!({ "error": e }),
            }),
            "silver": silver.get(t).map(|p| match p {
                Ok(plan) => json!(plan),
                Err(e) => json!({ "error": e }),
            }),
            "gold": gold.get(t).map(|p| match p {
                Ok(plan) => json!(plan),
                Err(e) => json!({ "error": e }),
            }),
        })).collect::<Vec<_>>(),
    })
}

fn dot(pipeline: &Pipeline, tables: &[TableRef]) -> String {
    let mut out = String::from("digraph medallion {\n  rankdir=LR;\n  node [shape=box];\n");
    for t in tables {
        for input in inputs(pipeline, t) {
            let _ = writeln!(out, "  \"{input}\" -> \"{t}\";");
        }
        if inputs(pipeline, t).is_empty() {
            let _ = writeln!(out, "  \"{t}\";");
        }
    }
    out.push('}');
    out
}
