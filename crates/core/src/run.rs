//! The context of one run: its id, start time, and settings every table run shares.

use chrono::{DateTime, Utc};

/// What every table run of one `medallion run` shares.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run id, also written as `_run_id` and into every commit's info.
    pub run_id: String,
    /// When the run started (also `_ingested_at`).
    pub started_at: DateTime<Utc>,
    /// Commit attempts after an optimistic-concurrency conflict.
    pub commit_retries: usize,
}

impl RunContext {
    /// A new run: the id is the start time and a random suffix, so ids sort by time.
    pub fn new(commit_retries: u32) -> Self {
        let started_at = Utc::now();
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            run_id: format!("{}-{}", started_at.format("%Y%m%dT%H%M%SZ"), &random[..8]),
            started_at,
            commit_retries: commit_retries as usize,
        }
    }
}

/// The engine's version, recorded in commits.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
