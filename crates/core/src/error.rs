//! Errors of the engine, by whose they are: the user's (config, usage, data quality),
//! the environment's (storage, retryable), or ours.

/// Result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration has errors (each located in the file).
    #[error("{0}")]
    Config(#[from] medallion_config::Diagnostics),
    /// A command was used wrongly (bad flag value, unknown table name, …).
    #[error("{0}")]
    Usage(String),
    /// A data-quality rule with `action: fail` failed.
    #[error("data quality: {0}")]
    DataQuality(String),
    /// Reading or writing storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Another job committed to the same table first, in a way this run's commit conflicts
    /// with; running the table again from its new state completes it.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The process exit code for this error: 2 bad config or usage, 3 data quality, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            Error::DataQuality(_) => 3,
            Error::Storage(_) | Error::Conflict(_) | Error::Other(_) => 1,
        }
    }
}
