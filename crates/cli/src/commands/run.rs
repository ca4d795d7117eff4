//! `medallion run`: the selected tables in dependency order.

use medallion_core::{Error, Pipeline};

use crate::cli::{Global, Selection};

pub fn run(global: &Global, select: &Selection) -> Result<(), Error> {
    let pipeline: Pipeline = super::load(global)?;
    let tables = pipeline.select(select.layer, &select.tables)?;
    let names: Vec<String> = tables.iter().map(ToString::to_string).collect();
    tracing::info!(tables = %names.join(", "), "run selected");
    Err(Error::Other(format!(
        "this build can validate and plan the pipeline but cannot execute its layers yet: {} table(s) selected, none run",
        tables.len()
    )))
}
