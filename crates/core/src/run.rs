//! The context of one run: its id, start time, and settings every table run shares.

use chrono::{DateTime, Utc};
use medallion_config::Sharding;

/// What every table run of one `medallion run` shares.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run id, also written as `_run_id` and into every commit's info.
    pub run_id: String,
    /// When the run started (also `_ingested_at`).
    pub started_at: DateTime<Utc>,
    /// Commit attempts after an optimistic-concurrency conflict.
    pub commit_retries: usize,
    /// The part of the landed files this job ingests (Bronze), when jobs split them.
    pub shard: Option<Shard>,
}

/// Shard `index` of `count`: a landed file belongs to the shard its path hashes to, so any
/// number of jobs with the same `count` split the files the same way, whatever each lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This job's shard, from 0.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

impl Shard {
    /// Whether the landed file at `relative` (path under the landing prefix) is this shard's.
    pub fn owns(&self, relative: &str) -> bool {
        crate::columns::fnv64(relative.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }

    /// Whether the landed file at `relative`, of `source`, is this shard's: by the file's path,
    /// or for a source with `sharding: whole`, by the source's name (all its files to one shard).
    pub fn owns_file_of(&self, source: &str, sharding: Sharding, relative: &str) -> bool {
        match sharding {
            Sharding::Files => self.owns(relative),
            Sharding::Whole => self.owns(source),
        }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `I/N` with 0 ≤ I < N.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: use I/N with 0 <= I < N (e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
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
            shard: None,
        }
    }
}

/// The engine's version, recorded in commits.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
