//! Shared runtime of the medallion engine: configuration loading with SQL analysis, storage
//! locations, errors. The layer crates (bronze, silver, gold) build on it.

pub mod catalog;
pub mod column_lineage;
pub mod columns;
pub mod error;
pub mod expressions;
pub mod faults;
pub mod functions;
pub mod lineage;
pub mod metrics;
pub mod openlineage;
pub mod parquet;
pub mod pipeline;
pub mod run;
pub mod runlog;
pub mod sql;
pub mod storage;
pub mod table;

pub use error::{Error, Result};
pub use pipeline::Pipeline;
pub use run::{RunContext, Shard};
