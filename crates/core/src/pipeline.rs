//! A loaded pipeline: the checked configuration, its DAG and its storage locations.

use std::path::Path;

use medallion_config::{Config, Dag, Diagnostic, Layer, Loaded, TableRef};

use crate::error::{Error, Result};
use crate::sql::DataFusionSql;
use crate::storage::Locations;

/// Everything a command needs to know about the pipeline it works on.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The checked configuration.
    pub config: Config,
    /// Tables in dependency order.
    pub dag: Dag,
    /// Where everything lives.
    pub locations: Locations,
    /// Configuration warnings.
    pub warnings: Vec<Diagnostic>,
}

impl Pipeline {
    /// Loads and checks `layers.yaml`, reading `${VAR}` from the process environment.
    pub fn load(path: &Path, root: Option<&str>, landing: Option<&str>) -> Result<Self> {
        let env = |name: &str| std::env::var(name).ok();
        let Loaded {
            config,
            dag,
            warnings,
        } = medallion_config::load_file(path, &env, &DataFusionSql)?;
        let locations = Locations::resolve(&config.storage, root, landing)?;
        crate::table::set_storage_options(
            config
                .storage
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        );
        Ok(Self {
            config,
            dag,
            locations,
            warnings,
        })
    }

    /// The tables a run selects, in dependency order: all, one layer, or named tables.
    pub fn select(&self, layer: Option<Layer>, tables: &[String]) -> Result<Vec<TableRef>> {
        let mut wanted = Vec::new();
        for t in tables {
            let r: TableRef = t.parse().map_err(Error::Usage)?;
            if !self.dag.contains(&r) {
                let names: Vec<String> = self.dag.order().iter().map(ToString::to_string).collect();
                let hint =
                    medallion_config::diagnostic::did_you_mean(t, names.iter().map(String::as_str))
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                return Err(Error::Usage(format!("unknown table `{t}`{hint}")));
            }
            wanted.push(r);
        }
        Ok(self
            .dag
            .order()
            .iter()
            .filter(|t| layer.is_none_or(|l| t.layer == l))
            .filter(|t| wanted.is_empty() || wanted.contains(t))
            .cloned()
            .collect())
    }
}
