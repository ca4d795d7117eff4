//! Table-level lineage read from the Delta history: every commit a run makes names, in its
//! commit info (`medallion`), the run and the versions of the inputs it read (Silver: the
//! Bronze version range; Gold: each input's version); a Bronze commit names the landed files
//! it ingested. From a table at a version, following those records down gives the exact
//! upstream versions and, at the bottom, the raw files.

use std::collections::{BTreeMap, BTreeSet};

use medallion_config::{Layer, TableRef};
use serde::Serialize;
use serde_json::Value;

use crate::Pipeline;
use crate::error::{Error, Result};
use crate::table::{commit_actions, open_existing};

/// One table at one version in the upstream graph.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Node {
    /// `layer.table`.
    pub table: String,
    /// The table version this node is about.
    pub version: i64,
    /// The commit at or before `version` that recorded where the data came from.
    pub recorded_at: Option<i64>,
    /// The run that made that commit.
    pub run_id: Option<String>,
    /// Inputs with the version read (`None`: the pipeline reads it, e.g. a lookup, but the
    /// commit does not record its version).
    pub inputs: Vec<(String, Option<i64>)>,
    /// Bronze: the landed files ingested up to `version`, with their lines.
    pub files: Vec<(String, u64)>,
}

/// The upstream graph of `table` at `version` (latest when `None`), the table first, then
/// its inputs breadth first; each (table, version) once.
pub async fn upstream(
    pipeline: &Pipeline,
    table: &TableRef,
    version: Option<i64>,
) -> Result<Vec<Node>> {
    let mut out: Vec<Node> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = vec![(table.clone(), version)];
    while !queue.is_empty() {
        let (t, v) = queue.remove(0);
        let node = node(pipeline, &t, v).await?;
        if !seen.insert((node.table.clone(), node.version)) {
            continue;
        }
        // Inputs whose version was recorded; the others are shown, not followed.
        for (input, version) in &node.inputs {
            if let (Ok(r), Some(v)) = (input.parse::<TableRef>(), version)
                && pipeline.dag.contains(&r)
            {
                queue.push((r, Some(*v)));
            }
        }
        out.push(node);
    }
    Ok(out)
}

async fn node(pipeline: &Pipeline, table: &TableRef, version: Option<i64>) -> Result<Node> {
    let url = pipeline.locations.table(table);
    let t = open_existing(&url)
        .await?
        .ok_or_else(|| Error::Usage(format!("`{table}` does not exist yet")))?;
    let latest = t.version().map_or(-1, |v| v as i64);
    let version = version.unwrap_or(latest);
    if version > latest || version < 0 {
        return Err(Error::Usage(format!(
            "`{table}` has versions 0 to {latest}, not {version}"
        )));
    }
    let mut node = Node {
        table: table.to_string(),
        version,
        recorded_at: None,
        run_id: None,
        inputs: Vec::new(),
        files: Vec::new(),
    };
    if table.layer == Layer::Bronze {
        // Every file ingested up to the version, from each commit's record.
        let mut files = BTreeMap::new();
        for v in 0..=version {
            for info in medallion_infos(&t, v).await? {
                for f in info["files"].as_array().into_iter().flatten() {
                    if let Some(path) = f["path"].as_str() {
                        files.insert(path.to_string(), f["lines"].as_u64().unwrap_or(0));
                    }
                }
                node.recorded_at = Some(v);
                node.run_id = info["run_id"].as_str().map(str::to_string);
            }
        }
        node.files = files.into_iter().collect();
        return Ok(node);
    }
    // The newest commit at or before the version that recorded its inputs.
    for v in (0..=version).rev() {
        let infos = medallion_infos(&t, v).await?;
        if let Some(info) = infos.iter().find(|i| i["inputs"].is_object()) {
            node.recorded_at = Some(v);
            node.run_id = info["run_id"].as_str().map(str::to_string);
            for (input, range) in info["inputs"].as_object().into_iter().flatten() {
                node.inputs.push((input.clone(), range["to"].as_i64()));
            }
            break;
        }
    }
    // Tables the pipeline reads that the commit does not record (Silver lookups).
    for up in pipeline.dag.upstream(table) {
        let name = up.to_string();
        if !node.inputs.iter().any(|(i, _)| *i == name) {
            node.inputs.push((name, None));
        }
    }
    node.inputs.sort();
    Ok(node)
}

/// The `medallion` commit-info objects of commit `version`.
async fn medallion_infos(table: &deltalake::DeltaTable, version: i64) -> Result<Vec<Value>> {
    Ok(commit_actions(table, version)
        .await?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| a.get("commitInfo")?.get("medallion").cloned())
        .collect())
}
