//! Opening, creating and committing to Delta tables: plain Delta that every reader opens
//! (no deletion vectors, no column mapping), with the configured checkpoint and retention
//! settings, and commits that carry the run's identity.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::Schema as ArrowSchema;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use medallion_config::Storage;
use serde_json::Value;
use url::Url;

use crate::error::{Error, Result};
use crate::storage::redacted;

/// Delta table properties from the storage settings.
pub fn table_properties(storage: &Storage) -> HashMap<String, Option<String>> {
    HashMap::from([
        (
            "delta.checkpointInterval".to_string(),
            Some(storage.checkpoint_interval.to_string()),
        ),
        (
            "delta.logRetentionDuration".to_string(),
            Some(format!("interval {} days", storage.log_retention_days)),
        ),
        (
            "delta.deletedFileRetentionDuration".to_string(),
            Some(format!(
                "interval {} days",
                storage.deleted_file_retention_days
            )),
        ),
    ])
}

/// The object-store options of `storage.options` (region, endpoint, …), set once when the
/// pipeline loads and used for every table the process opens.
static STORAGE_OPTIONS: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();

/// Sets the options every table is opened with (the first call wins).
pub fn set_storage_options(options: HashMap<String, String>) {
    let _ = STORAGE_OPTIONS.set(options);
}

/// The options of [`set_storage_options`] (empty before).
pub fn storage_options() -> HashMap<String, String> {
    STORAGE_OPTIONS.get().cloned().unwrap_or_default()
}

/// The object store rooted at `url` (a landing prefix, the lakehouse root), with the
/// options of `storage.options`.
pub fn store_for(url: &Url) -> Result<std::sync::Arc<dyn deltalake::ObjectStore>> {
    deltalake::logstore::store_for(url, storage_options()).map_err(|e| storage_error(url, e))
}

/// A storage error with the table it concerns.
pub fn storage_error(url: &Url, e: impl std::fmt::Display) -> Error {
    let detail = e.to_string();
    match explain(url, &detail) {
        Some(plain) => Error::Storage(format!("{plain} ({}: {detail})", redacted(url))),
        None => Error::Storage(format!("{}: {detail}", redacted(url))),
    }
}

/// Whether a commit failed because another writer committed first in a way that conflicts.
pub fn is_conflict(e: &deltalake::DeltaTableError) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    matches!(
        e,
        deltalake::DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
        }
    )
}

/// The error of a failed commit to `url`: a conflict with another job, or a storage failure;
/// `after` says what state the failure leaves.
pub fn commit_error(url: &Url, e: &deltalake::DeltaTableError, after: &str) -> Error {
    if is_conflict(e) {
        Error::Conflict(format!(
            "another job committed to {} at the same time ({e}); {after}",
            redacted(url)
        ))
    } else {
        Error::Storage(format!("commit to {} failed: {e}; {after}", redacted(url)))
    }
}

/// A plain statement of the usual object-store failures, from the store's error text.
fn explain(url: &Url, detail: &str) -> Option<String> {
    let bucket = url.host_str().unwrap_or_default();
    let has = |needle: &str| detail.contains(needle);
    if has("NoSuchBucket") {
        Some(format!("the bucket `{bucket}` does not exist"))
    } else if has("InvalidAccessKeyId") || has("SignatureDoesNotMatch") || has("InvalidToken") {
        Some(format!(
            "the credentials were refused by the store of `{bucket}` (check AWS_ACCESS_KEY_ID, \
             AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or the pod/instance role)"
        ))
    } else if has("AccessDenied") || has("403 Forbidden") {
        Some(format!(
            "access to `{bucket}` was denied: the credentials lack a permission on this prefix"
        ))
    } else if has("Connection refused")
        || has("error sending request")
        || has("dns error")
        || has("error trying to connect")
        || has("client error (Connect)")
    {
        Some(format!(
            "the object store of `{bucket}` cannot be reached (check AWS_ENDPOINT_URL, the network \
             and the region)"
        ))
    } else {
        None
    }
}

/// Opens the table at `url`, creating it with `schema` when it does not exist yet. A
/// concurrent creator winning the race is fine: the table is then loaded.
pub async fn open_or_create(
    url: &Url,
    schema: &ArrowSchema,
    partition_by: &[String],
    properties: &HashMap<String, Option<String>>,
    name: &str,
) -> Result<DeltaTable> {
    if let Some(table) = open_existing(url).await? {
        return Ok(table);
    }
    if url.scheme() == "file"
        && let Ok(dir) = url.to_file_path()
    {
        std::fs::create_dir_all(&dir).map_err(|e| storage_error(url, e))?;
    }
    let table = DeltaTable::try_from_url_with_storage_options(url.clone(), storage_options())
        .await
        .map_err(|e| storage_error(url, e))?;
    if table.version().is_some() {
        return Ok(table);
    }
    let kernel: StructType = schema
        .try_into_kernel()
        .map_err(|e| Error::Other(format!("schema of {name}: {e}")))?;
    let created = table
        .create()
        .with_table_name(name)
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(partition_by.to_vec())
        .with_configuration(properties.clone())
        .with_save_mode(SaveMode::Ignore)
        .await;
    match created {
        Ok(table) => Ok(table),
        Err(first) => {
            // Another job may have created it between our check and our commit.
            let mut table =
                DeltaTable::try_from_url_with_storage_options(url.clone(), storage_options())
                    .await
                    .map_err(|e| storage_error(url, e))?;
            match table.load().await {
                Ok(()) if table.version().is_some() => Ok(table),
                _ => Err(storage_error(url, first)),
            }
        }
    }
}

/// Opens the table at `url` if it exists.
pub async fn open_existing(url: &Url) -> Result<Option<DeltaTable>> {
    if url.scheme() == "file"
        && url
            .to_file_path()
            .is_ok_and(|p| !p.join("_delta_log").exists())
    {
        return Ok(None);
    }
    let table = DeltaTable::try_from_url_with_storage_options(url.clone(), storage_options())
        .await
        .map_err(|e| storage_error(url, e))?;
    Ok(table.version().is_some().then_some(table))
}

/// The version of application transaction `app_id` in the table, if any.
pub async fn transaction_version(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let snapshot = table.snapshot().map_err(|e| Error::Other(e.to_string()))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| storage_error(table.table_url(), e))
}

/// Commits `actions` with application transactions and commit-info metadata; returns the
/// new version. Conflicts are retried by deltalake up to `retries` times.
pub async fn commit(
    table: &DeltaTable,
    actions: Vec<Action>,
    transactions: Vec<Transaction>,
    metadata: HashMap<String, Value>,
    operation: DeltaOperation,
    retries: usize,
) -> std::result::Result<u64, DeltaTableError> {
    let properties = CommitProperties::default()
        .with_application_transactions(transactions)
        .with_metadata(metadata)
        .with_max_retries(retries);
    let snapshot = table.snapshot()?;
    let finalized = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await?;
    Ok(finalized.version())
}

/// An Arrow schema as the kernel's, for metadata actions.
pub fn kernel_schema(schema: &Arc<ArrowSchema>) -> Result<StructType> {
    schema
        .as_ref()
        .try_into_kernel()
        .map_err(|e| Error::Other(format!("schema: {e}")))
}

/// The table's schema as Arrow's.
pub fn arrow_schema(table: &DeltaTable) -> Result<ArrowSchema> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
    let snapshot = table.snapshot().map_err(|e| Error::Other(e.to_string()))?;
    snapshot
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e| Error::Other(format!("schema of {}: {e}", redacted(table.table_url()))))
}

/// The actions of commit `version` of `table`, each a JSON object as written in the log
/// (`{"add": {...}}`, `{"remove": {...}}`, …), or `None` when the commit is no longer in the
/// log (log retention).
pub async fn commit_actions(table: &DeltaTable, version: i64) -> Result<Option<Vec<Value>>> {
    let Some(bytes) = table
        .log_store()
        .read_commit_entry(version as u64)
        .await
        .map_err(|e| storage_error(table.table_url(), e))?
    else {
        return Ok(None);
    };
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| {
                Error::Other(format!(
                    "commit {version} of {}: {e}",
                    redacted(table.table_url())
                ))
            })
        })
        .collect::<Result<Vec<Value>>>()
        .map(Some)
}

/// Whether a log action changes data (`dataChange` absent or true).
pub fn changes_data(action: &Value) -> bool {
    action.get("dataChange").and_then(Value::as_bool) != Some(false)
}

/// What [`removals`] knows of a data file.
#[derive(Debug)]
pub struct FileFacts {
    /// The file's statistics (JSON), if written.
    pub stats: Option<String>,
    /// Its partition values.
    pub partition: HashMap<String, Option<String>>,
}

/// Removal actions for the table's current files that `keep` selects.
pub fn removals(
    table: &DeltaTable,
    keep: impl Fn(&FileFacts) -> bool,
) -> Result<Vec<deltalake::kernel::Remove>> {
    let snapshot = table.snapshot().map_err(|e| Error::Other(e.to_string()))?;
    let now = chrono::Utc::now().timestamp_millis();
    Ok(snapshot
        .log_data()
        .iter()
        .filter_map(|f| {
            let partition: HashMap<String, Option<String>> =
                f.partition_values_map().into_iter().collect();
            let facts = FileFacts {
                stats: f.stats(),
                partition,
            };
            keep(&facts).then(|| deltalake::kernel::Remove {
                path: f.path().to_string(),
                data_change: true,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(f.partition_values_map()),
                size: Some(f.size()),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            })
        })
        .collect())
}
