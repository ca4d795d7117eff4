//! Names and types of the columns the engine adds to tables, and a stable hash for
//! fingerprints. One definition, used by the layers and by validation.

use deltalake::arrow::datatypes::{DataType, Field, TimeUnit};

/// `_rescued`: values that did not fit their column, as a JSON object keyed by field name.
pub const RESCUED: &str = "_rescued";
/// `_source_file`: the landed file, relative to the landing prefix.
pub const SOURCE_FILE: &str = "_source_file";
/// `_source_line`: 1-based line (NDJSON), record start line (CSV), element or row index.
pub const SOURCE_LINE: &str = "_source_line";
/// `_ingested_at`: when the run started (UTC).
pub const INGESTED_AT: &str = "_ingested_at";
/// `_run_id`: the run that ingested the row.
pub const RUN_ID: &str = "_run_id";

/// Metadata columns of every Bronze table, in table order.
pub const BRONZE_METADATA: [&str; 5] = [RESCUED, SOURCE_FILE, SOURCE_LINE, INGESTED_AT, RUN_ID];

/// UTC timestamps with microsecond precision, as every table stores them.
pub fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Bronze metadata columns as Arrow fields.
pub fn bronze_metadata_fields() -> Vec<Field> {
    vec![
        Field::new(RESCUED, DataType::Utf8, true),
        Field::new(SOURCE_FILE, DataType::Utf8, false),
        Field::new(SOURCE_LINE, DataType::Int64, false),
        Field::new(INGESTED_AT, utc_timestamp(), false),
        Field::new(RUN_ID, DataType::Utf8, false),
    ]
}

/// FNV-1a over `bytes`: a fixed hash, stable across builds and platforms (std's is not).
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
