//! A DataFusion session over the lakehouse: every existing table registered as `bronze.x`,
//! `silver.x`, `gold.x` (quarantines as `bronze_quarantine.x`, `silver_quarantine.x`), with the
//! engine functions, and the run log as `_system.runs`; any table can be read as of an earlier
//! version.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::prelude::SessionContext;
use medallion_config::{Layer, TableRef};
use url::Url;

use crate::Pipeline;
use crate::error::{Error, Result};
use crate::table::{open_existing, storage_error};

/// Builds the session. `versions` pins tables (`layer.table`) to a version (time travel).
pub async fn session(
    pipeline: &Pipeline,
    versions: &BTreeMap<TableRef, u64>,
) -> Result<SessionContext> {
    let mut ctx = SessionContext::new();
    crate::functions::register(&mut ctx).map_err(|e| Error::Other(e.to_string()))?;
    let catalog = ctx
        .catalog("datafusion")
        .expect("the default catalog exists");
    for schema in [
        "bronze",
        "silver",
        "gold",
        "bronze_quarantine",
        "silver_quarantine",
        "_system",
    ] {
        catalog
            .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    for pinned in versions.keys() {
        if !pipeline.dag.contains(pinned) {
            return Err(Error::Usage(format!(
                "--as-of names `{pinned}`, which is not a table of the pipeline"
            )));
        }
    }
    let mut tables: Vec<(String, Url, Option<u64>)> = Vec::new();
    for table in pipeline.dag.order() {
        tables.push((
            table.to_string(),
            pipeline.locations.table(table),
            versions.get(table).copied(),
        ));
        if table.layer != Layer::Gold {
            tables.push((
                format!("{}_quarantine.{}", table.layer, table.name),
                pipeline.locations.quarantine(table),
                None,
            ));
        }
    }
    tables.push(("_system.runs".to_string(), pipeline.locations.runs(), None));
    for (name, url, version) in tables {
        let Some(mut table) = open_existing(&url).await? else {
            if version.is_some() {
                return Err(Error::Usage(format!(
                    "`{name}` does not exist yet, so it has no version to read"
                )));
            }
            continue;
        };
        if let Some(v) = version {
            table
                .load_version(v)
                .await
                .map_err(|e| Error::Usage(format!("`{name}` version {v}: {e}")))?;
        }
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| storage_error(&url, e))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| storage_error(&url, e))?;
        ctx.register_table(name.as_str(), provider)
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    Ok(ctx)
}
