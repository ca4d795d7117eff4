//! Finding landed files and telling which are new, already ingested, or changed since.
//!
//! A file is identified by its path relative to the landing prefix. What was ingested is
//! recorded in the Delta log itself: one application transaction per file, whose app id
//! names the file and whose version is a fingerprint of its size and ETag.

use deltalake::{DeltaTable, ObjectMeta, ObjectStore, Path};
use futures::TryStreamExt;
use medallion_core::table::transaction_version;
use medallion_core::{Error, Result};
use serde::Serialize;

/// A landed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LandingFile {
    /// Location in the landing store.
    #[serde(skip)]
    pub location: Path,
    /// Path relative to the landing prefix: the file's identity (`events/2025-09-01/a.ndjson`).
    pub relative: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag, when the store has one.
    pub e_tag: Option<String>,
}

impl LandingFile {
    /// The application transaction id that records this file's ingestion.
    pub fn app_id(&self) -> String {
        format!("medallion.bronze:{}", self.relative)
    }

    /// A fingerprint of the file's content identity (size and ETag), as a Delta
    /// transaction version (non-negative).
    pub fn fingerprint(&self) -> i64 {
        let mut bytes = self.size.to_le_bytes().to_vec();
        if let Some(e_tag) = &self.e_tag {
            bytes.push(b'/');
            bytes.extend_from_slice(e_tag.as_bytes());
        }
        (medallion_core::columns::fnv64(&bytes) >> 1) as i64
    }
}

/// Every file under `prefix` in the landing store, in byte-wise order of relative path.
pub async fn list(
    store: &dyn ObjectStore,
    prefix: &Path,
    landing: &Path,
) -> Result<Vec<LandingFile>> {
    let metas: Vec<ObjectMeta> = store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| Error::Storage(format!("listing landing folder `{prefix}`: {e}")))?;
    let landing_prefix = landing.as_ref();
    let mut files: Vec<LandingFile> = metas
        .into_iter()
        .map(|m| {
            let full = m.location.as_ref();
            let relative = full
                .strip_prefix(landing_prefix)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string();
            LandingFile {
                location: m.location,
                relative,
                size: m.size,
                e_tag: m.e_tag,
            }
        })
        .collect();
    files.sort_by(|a, b| a.relative.as_bytes().cmp(b.relative.as_bytes()));
    Ok(files)
}

/// Where a landed file stands with respect to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Not ingested yet.
    New,
    /// Ingested, unchanged since.
    Ingested,
    /// Ingested, but its size or ETag differs now.
    Changed,
}

/// The state of `file` in `table` (which may not exist yet).
pub async fn state(table: Option<&DeltaTable>, file: &LandingFile) -> Result<FileState> {
    let Some(table) = table else {
        return Ok(FileState::New);
    };
    Ok(match transaction_version(table, &file.app_id()).await? {
        None => FileState::New,
        Some(v) if v == file.fingerprint() => FileState::Ingested,
        Some(_) => FileState::Changed,
    })
}
