//! Reading Delta tables back in tests, with DataFusion over `deltalake`.

use std::path::Path;

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;

/// Runs a future to completion on a fresh single-threaded runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Runs `sql` over the Delta table at `dir`, registered as `t`.
pub fn query(dir: &Path, sql: &str) -> Vec<RecordBatch> {
    block_on(async {
        let url = url::Url::from_directory_path(dir).unwrap();
        let table = deltalake::open_table(url).await.expect("open table");
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        ctx.sql(sql).await.unwrap().collect().await.unwrap()
    })
}

/// The single integer a query returns.
pub fn scalar(dir: &Path, sql: &str) -> i64 {
    let batches = query(dir, sql);
    let column = batches[0].column(0);
    let column =
        deltalake::arrow::compute::cast(column, &deltalake::arrow::datatypes::DataType::Int64)
            .unwrap();
    column
        .as_any()
        .downcast_ref::<deltalake::arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

/// Query results as sorted text lines, for exact comparisons.
pub fn rows(dir: &Path, sql: &str) -> Vec<String> {
    let text = deltalake::arrow::util::pretty::pretty_format_batches(&query(dir, sql))
        .unwrap()
        .to_string();
    text.lines().map(str::to_string).collect()
}

/// The column names of the Delta table at `dir`.
pub fn columns(dir: &Path) -> Vec<String> {
    block_on(async {
        let url = url::Url::from_directory_path(dir).unwrap();
        let table = deltalake::open_table(url).await.expect("open table");
        let schema = table.snapshot().unwrap().schema();
        schema.fields().map(|f| f.name().clone()).collect()
    })
}
