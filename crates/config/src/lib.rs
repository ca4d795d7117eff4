//! `layers.yaml`: the configuration of a medallion pipeline.
//!
//! Loading happens in phases, and every phase reports all of its problems at once:
//! 1. YAML syntax ([`node::parse`]): the only phase that stops at the first problem.
//! 2. `${VAR}` interpolation ([`node::interpolate`]): every unset variable.
//! 3. Types and keys ([`de`]): every unknown key (with "did you mean"), and the first type
//!    error of each table or section.
//! 4. Semantics ([`compile`]): references, layer order, columns, SQL, cycles; the DAG.
//!
//! This crate has no I/O beyond reading the file, no async runtime and no query engine: the
//! engine passes in a [`SqlAnalyzer`] to read table references out of SQL.

pub mod compile;
pub mod de;
pub mod diagnostic;
pub mod located;
pub mod model;
pub mod names;
pub mod node;

use std::collections::BTreeMap;
use std::path::Path;

pub use compile::{Dag, SILVER_LINEAGE_COLUMNS, SqlAnalyzer, SqlError};
pub use diagnostic::{Diagnostic, Diagnostics, Loc, Severity};
pub use located::Located;
pub use model::*;
pub use names::{ColumnName, Layer, Name, TableRef};

use crate::de::{Sink, from_node};
use crate::node::{Node, NodeKind};

/// A configuration that passed every check, with its DAG and warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration, variables interpolated and defaults filled in.
    pub config: Config,
    /// The tables in dependency order.
    pub dag: Dag,
    /// Problems that do not stop a run.
    pub warnings: Vec<Diagnostic>,
}

/// Where variables come from when loading.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads and checks a configuration file.
pub fn load_file(
    path: &Path,
    env: EnvLookup<'_>,
    sql: &dyn SqlAnalyzer,
) -> Result<Loaded, Diagnostics> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &file, env, sql),
        Err(e) => {
            let mut d = Diagnostic::error(
                Loc::default(),
                "",
                format!("cannot read the configuration: {e}"),
            );
            d.file = file;
            if e.kind() == std::io::ErrorKind::NotFound {
                d.help = Some(
                    "pass `--config PATH`, or run from the directory that holds layers.yaml".into(),
                );
            }
            Err(Diagnostics(vec![d]))
        }
    }
}

/// Checks configuration text; `file` names it in diagnostics.
pub fn load_str(
    text: &str,
    file: &str,
    env: EnvLookup<'_>,
    sql: &dyn SqlAnalyzer,
) -> Result<Loaded, Diagnostics> {
    let finish = |mut diagnostics: Vec<Diagnostic>| {
        for d in &mut diagnostics {
            d.attach_source(file, text);
        }
        let mut all = Diagnostics(diagnostics);
        all.normalize();
        all
    };

    let mut root = match node::parse(text) {
        Ok(root) => root,
        Err(d) => return Err(finish(vec![*d])),
    };
    let mut diagnostics = Vec::new();
    node::credential_keys(&root, &mut Vec::new(), &mut diagnostics);
    node::interpolate(&mut root, &mut Vec::new(), env, &mut diagnostics);

    let sink = Sink::default();
    let config = typed(&root, &sink, &mut diagnostics);
    diagnostics.extend(sink.into_inner());
    let Some(config) = config.filter(|_| diagnostics.is_empty()) else {
        return Err(finish(diagnostics));
    };

    let (dag, found) = compile::compile(&config, sql, text);
    let all = finish(found);
    if all.has_errors() {
        return Err(all);
    }
    Ok(Loaded {
        config,
        dag,
        warnings: all.0,
    })
}

/// The top-level keys of `layers.yaml`.
const SECTIONS: [&str; 9] = [
    "version",
    "pipeline",
    "storage",
    "sources",
    "bronze",
    "silver",
    "gold",
    "attribution",
    "lineage",
];

/// Collects the results of the typed pass.
struct Collector<'a> {
    sink: &'a Sink,
    out: &'a mut Vec<Diagnostic>,
}

impl Collector<'_> {
    fn take<T>(&mut self, result: Result<T, de::DeError>) -> Option<T> {
        result
            .map_err(|e| {
                if !e.is_suppressed() {
                    self.out.push(e.into_diagnostic());
                }
            })
            .ok()
    }

    fn read<T: for<'de> serde::Deserialize<'de>>(&mut self, node: &Node, path: &str) -> Option<T> {
        let result = from_node::<T>(node, path, self.sink);
        self.take(result)
    }

    fn required<T: for<'de> serde::Deserialize<'de>>(
        &mut self,
        root: &Node,
        key: &str,
        help: &str,
    ) -> Option<T> {
        match root.get(key) {
            Some(node) => self.read(node, key),
            None => {
                self.out.push(
                    Diagnostic::error(root.loc, "", format!("missing required key `{key}`"))
                        .with_help(help),
                );
                None
            }
        }
    }

    fn optional<T: for<'de> serde::Deserialize<'de> + Default>(
        &mut self,
        root: &Node,
        key: &str,
    ) -> Option<T> {
        match root.get(key) {
            Some(node) => self.read(node, key),
            None => Some(T::default()),
        }
    }

    /// A section mapping names to definitions; each entry is read on its own.
    fn tables<T: for<'de> serde::Deserialize<'de>>(
        &mut self,
        root: &Node,
        key: &str,
    ) -> Option<BTreeMap<Located<Name>, T>> {
        let mut out = BTreeMap::new();
        let Some(node) = root.get(key) else {
            return Some(out);
        };
        let entries = match &node.kind {
            NodeKind::Map(entries) => entries,
            NodeKind::Null => return Some(out),
            other => {
                self.out.push(Diagnostic::error(
                    node.loc,
                    key,
                    format!(
                        "expected a mapping of names to definitions, found {}",
                        other.describe()
                    ),
                ));
                return None;
            }
        };
        let mut complete = true;
        for (name_node, value) in entries {
            let Some(name) = self.read::<Located<Name>>(name_node, key) else {
                complete = false;
                continue;
            };
            let path = format!("{key}.{}", name.value);
            match self.read::<T>(value, &path) {
                Some(v) => {
                    out.insert(name, v);
                }
                None => complete = false,
            }
        }
        complete.then_some(out)
    }
}

/// The typed pass. Each section, and each table within a section, is read on its own so
/// that one mistake does not hide the others.
fn typed(root: &Node, sink: &Sink, out: &mut Vec<Diagnostic>) -> Option<Config> {
    let entries = match &root.kind {
        NodeKind::Map(entries) => entries,
        other => {
            out.push(Diagnostic::error(
                root.loc,
                "",
                format!(
                    "expected a mapping of sections ({}), found {}",
                    SECTIONS.join(", "),
                    other.describe()
                ),
            ));
            return None;
        }
    };
    for (key, _) in entries {
        let name = key.as_str().unwrap_or_default();
        if !SECTIONS.contains(&name) {
            out.push(
                Diagnostic::error(key.loc, "", format!("unknown section `{name}`")).with_help(
                    diagnostic::did_you_mean(name, SECTIONS)
                        .unwrap_or_else(|| format!("expected one of {}", SECTIONS.join(", "))),
                ),
            );
        }
    }
    let mut c = Collector { sink, out };
    let version =
        c.required::<Located<u32>>(root, "version", "add `version: 1` at the top of the file");
    let pipeline = c.required::<Located<Name>>(
        root,
        "pipeline",
        "name the pipeline, e.g. `pipeline: marketing`",
    );
    let storage = c.optional::<Storage>(root, "storage");
    let sources = c.tables::<Source>(root, "sources");
    let bronze = c.tables::<BronzeTable>(root, "bronze");
    let silver = c.tables::<SilverTable>(root, "silver");
    let gold = c.tables::<GoldTable>(root, "gold");
    let attribution = c.optional::<Attribution>(root, "attribution");
    let lineage = c.optional::<Lineage>(root, "lineage");
    Some(Config {
        version: version?,
        pipeline: pipeline?,
        storage: storage?,
        sources: sources?,
        bronze: bronze?,
        silver: silver?,
        gold: gold?,
        attribution: attribution?,
        lineage: lineage?,
    })
}

/// The JSON Schema of `layers.yaml`, generated from the configuration types.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Config);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;
