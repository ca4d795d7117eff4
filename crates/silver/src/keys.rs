//! Deduplication keys and the key index.
//!
//! A key is fingerprinted to 128 bits (XXH3-128 over the key columns' text, with separators
//! and a NULL marker), so a set of keys costs 16 bytes each and two different keys collide
//! with probability about n²/2¹²⁹ (1e-24 at ten million keys).
//!
//! The key index `{root}/silver/_keys/{table}` is a Delta table of every key already in the
//! Silver table: `(_bucket, k_hi, k_lo, _silver_version)`, partitioned by `_bucket` (the top
//! bits of the fingerprint). An incremental run fingerprints its batch, then reads only the
//! buckets the batch touches (16 bytes per indexed key) and keeps the fingerprints that
//! match: the cost grows with the batch, not with the table (a batch of k keys touches at
//! most k buckets). `_silver_version` is the Silver version the writing run committed (or
//! was about to): entries above the table's version belong to a run that crashed before
//! its Silver commit and are ignored, then removed by the next commit.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use futures::StreamExt;
use medallion_core::{Error, Result};
use twox_hash::XxHash3_128;

/// Number of index buckets (a power of two).
pub const BUCKETS: u32 = 64;
/// `_bucket`.
pub const BUCKET: &str = "_bucket";
/// `_silver_version`: the Silver version the writing run committed.
pub const SILVER_VERSION: &str = "_silver_version";

/// Hashes fingerprints that are already uniform: the low 64 bits are the hash.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prehashed;

/// The hasher of [`Prehashed`].
#[derive(Debug, Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b) ^ (self.0 >> 56);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

impl BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

/// A set of key fingerprints.
pub type KeySet = HashSet<u128, Prehashed>;

/// The index bucket of a fingerprint.
pub fn bucket(key: u128) -> i32 {
    (key >> (128 - BUCKETS.trailing_zeros())) as i32
}

/// The key fingerprints of every row of `batch` (key columns at `key`).
pub fn fingerprints(batch: &RecordBatch, key: &[usize]) -> Result<Vec<u128>> {
    let texts = key
        .iter()
        .map(|&i| {
            let c = batch.column(i);
            if c.data_type() == &DataType::Utf8 {
                Ok(c.clone())
            } else {
                cast(c, &DataType::Utf8).map_err(|e| Error::Other(e.to_string()))
            }
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let texts: Vec<_> = texts.iter().map(|c| c.as_string::<i32>()).collect();
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut buffer = Vec::new();
    for row in 0..batch.num_rows() {
        if let [single] = texts.as_slice() {
            out.push(match single.is_null(row) {
                true => XxHash3_128::oneshot(b"\x00null\x00"),
                false => XxHash3_128::oneshot(single.value(row).as_bytes()),
            });
            continue;
        }
        buffer.clear();
        for t in &texts {
            if t.is_null(row) {
                buffer.extend_from_slice(b"\x00null\x00");
            } else {
                buffer.extend_from_slice(t.value(row).as_bytes());
            }
            buffer.push(0x1f);
        }
        out.push(XxHash3_128::oneshot(&buffer));
    }
    Ok(out)
}

/// The key index's schema.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(BUCKET, DataType::Int32, false),
        Field::new("k_hi", DataType::Int64, false),
        Field::new("k_lo", DataType::Int64, false),
        Field::new(SILVER_VERSION, DataType::Int64, false),
    ]))
}

/// Index rows for `keys`, written by the run committing Silver version `version`.
pub fn index_batch(keys: &[u128], version: i64) -> Result<RecordBatch> {
    let buckets: Int32Array = keys.iter().map(|&k| bucket(k)).collect();
    let hi: Int64Array = keys.iter().map(|&k| (k >> 64) as i64).collect();
    let lo: Int64Array = keys.iter().map(|&k| k as i64).collect();
    let versions = Int64Array::from_value(version, keys.len());
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(buckets),
            Arc::new(hi),
            Arc::new(lo),
            Arc::new(versions),
        ],
    )
    .map_err(|e| Error::Other(e.to_string()))
}

/// The fingerprints of `wanted` that the index holds for Silver versions up to `version`,
/// reading only the buckets `wanted` touches.
pub async fn probe(
    session: &SessionContext,
    index: &DeltaTable,
    wanted: &KeySet,
    version: i64,
) -> Result<KeySet> {
    let mut found = KeySet::default();
    if wanted.is_empty() {
        return Ok(found);
    }
    let mut buckets: Vec<i32> = wanted.iter().map(|&k| bucket(k)).collect();
    buckets.sort_unstable();
    buckets.dedup();
    index
        .update_datafusion_session(&session.state())
        .map_err(|e| Error::Storage(e.to_string()))?;
    let provider = index
        .table_provider()
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    let filter = col(BUCKET)
        .in_list(buckets.into_iter().map(lit).collect(), false)
        .and(col(SILVER_VERSION).lt_eq(lit(version)));
    let frame = session
        .read_table(provider)
        .and_then(|f| f.filter(filter))
        .and_then(|f| f.select_columns(&["k_hi", "k_lo"]))
        .map_err(|e| Error::Other(e.to_string()))?;
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Error::Storage(format!("reading the key index: {e}")))?;
        let hi = batch.column(0).as_primitive::<Int64Type>();
        let lo = batch.column(1).as_primitive::<Int64Type>();
        for (h, l) in hi.values().iter().zip(lo.values().iter()) {
            let key = (u128::from(*h as u64) << 64) | u128::from(*l as u64);
            if wanted.contains(&key) {
                found.insert(key);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::StringArray;

    #[test]
    fn equal_keys_have_equal_fingerprints_and_buckets_cover_the_range() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![
                    Some("x"),
                    Some("x"),
                    None,
                    Some("x"),
                ])),
                Arc::new(Int64Array::from(vec![Some(1), Some(1), Some(1), Some(2)])),
            ],
        )
        .unwrap();
        let both = fingerprints(&batch, &[0, 1]).unwrap();
        assert_eq!(both[0], both[1]);
        assert_ne!(both[0], both[2]);
        assert_ne!(both[0], both[3]);
        let one = fingerprints(&batch, &[0]).unwrap();
        assert_eq!(one[0], one[3]);
        assert!((0..BUCKETS as i32).contains(&bucket(u128::MAX)));
        assert_eq!(bucket(u128::MAX), BUCKETS as i32 - 1);
        assert_eq!(bucket(0), 0);
        let mut set = KeySet::default();
        assert!(set.insert(both[0]));
        assert!(!set.insert(both[1]));
    }
}
