//! `medallion query`: SQL over every table of the lakehouse, as a table, CSV or JSON lines.

use std::collections::BTreeMap;
use std::io::Write;

use deltalake::arrow::util::pretty::pretty_format_batches;
use futures::StreamExt;
use medallion_config::TableRef;
use medallion_core::Error;

use crate::cli::{Global, QueryFormat};

pub fn run(
    global: &Global,
    sql: &str,
    format: QueryFormat,
    versions: &[String],
) -> Result<(), Error> {
    let pipeline = super::load(global)?;
    let mut pinned = BTreeMap::new();
    for v in versions {
        let (table, version) = v
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--as-of `{v}`: write `layer.table=VERSION`")))?;
        let table: TableRef = table.parse().map_err(Error::Usage)?;
        let version: u64 = version
            .parse()
            .map_err(|_| Error::Usage(format!("--as-of `{v}`: the version must be a number")))?;
        pinned.insert(table, version);
    }
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let ctx = medallion_core::catalog::session(&pipeline, &pinned).await?;
        let frame = ctx.sql(sql).await.map_err(|e| {
            let hint = if e.to_string().contains("not found") {
                " (a table exists once a run has written it; `medallion plan` lists the pipeline's tables)"
            } else {
                ""
            };
            Error::Usage(format!("query: {e}{hint}"))
        })?;
        let mut stream = frame
            .execute_stream()
            .await
            .map_err(|e| Error::Usage(format!("query: {e}")))?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let io = |e: std::io::Error| Error::Other(format!("writing the result: {e}"));
        match format {
            // A table needs every row to size its columns; CSV and JSON stream batch by batch.
            QueryFormat::Table => {
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    batches.push(batch.map_err(|e| Error::Other(format!("query: {e}")))?);
                }
                let text = pretty_format_batches(&batches).map_err(|e| Error::Other(e.to_string()))?;
                writeln!(out, "{text}").map_err(io)?;
            }
            QueryFormat::Csv => {
                let mut writer = deltalake::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| Error::Other(format!("query: {e}")))?;
                    writer.write(&batch).map_err(|e| Error::Other(e.to_string()))?;
                }
            }
            QueryFormat::Json => {
                let mut writer = deltalake::arrow::json::LineDelimitedWriter::new(&mut out);
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| Error::Other(format!("query: {e}")))?;
                    writer.write(&batch).map_err(|e| Error::Other(e.to_string()))?;
                }
                writer.finish().map_err(|e| Error::Other(e.to_string()))?;
            }
        }
        out.flush().map_err(io)?;
        Ok(())
    })
}
