//! Command-line arguments. Global flags may come before or after the subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use medallion_config::Layer;

/// A medallion lakehouse ETL engine: raw files to Bronze, Silver and Gold Delta tables,
/// declared in one `layers.yaml`.
#[derive(Debug, Parser)]
#[command(name = "medallion", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The pipeline configuration.
    #[arg(
        long,
        global = true,
        default_value = "layers.yaml",
        env = "MEDALLION_CONFIG",
        value_name = "PATH"
    )]
    pub config: PathBuf,
    /// Lakehouse root (local path, file:// or s3:// URL); overrides `storage.root`.
    #[arg(long, global = true, value_name = "URL", env = "MEDALLION_ROOT")]
    pub root: Option<String>,
    /// Landing prefix (local path, file:// or s3:// URL); overrides `storage.landing`.
    #[arg(long, global = true, value_name = "URL", env = "MEDALLION_LANDING")]
    pub landing: Option<String>,
    /// Log format: human-readable text, or one JSON object per line for clusters.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MEDALLION_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace). `MEDALLION_LOG` takes a full filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output formats of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// Formats of query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Formats of the DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
    /// Graphviz dot.
    Dot,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check layers.yaml: syntax, keys, types, references, SQL, cycles. Exit code 2 on errors.
    Validate {
        /// Report format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Show the DAG and what a run would do.
    Plan {
        #[command(flatten)]
        select: Selection,
        /// Plan only shard I of N of the landed files (Bronze), as `run --shard I/N` would
        /// ingest them.
        #[arg(long, value_name = "I/N")]
        shard: Option<medallion_core::Shard>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Run the pipeline (all of it, one layer, or some tables) in dependency order.
    Run {
        #[command(flatten)]
        select: Selection,
        /// Summary format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Rebuild the selected Silver tables from all of Bronze and recompute the selected
        /// Gold tables whole (also after a changed definition).
        #[arg(long, conflicts_with = "forward_only")]
        full_refresh: bool,
        /// Accept a changed Silver or Gold definition for new data only; existing rows
        /// (Gold: dates not recomputed) stay as they are.
        #[arg(long)]
        forward_only: bool,
        /// Backfill: also recompute the dates from this one (YYYY-MM-DD) of the selected
        /// `incremental_by_date` Gold tables; `full` Gold tables are recomputed.
        #[arg(long, value_name = "DATE", requires = "to", value_parser = parse_date)]
        from: Option<i32>,
        /// Backfill: the last date (inclusive) to recompute.
        #[arg(long, value_name = "DATE", requires = "from", value_parser = parse_date)]
        to: Option<i32>,
        /// Ingest only shard I of N of the landed files (Bronze; e.g. a Kubernetes Indexed
        /// Job's `--shard $(JOB_COMPLETION_INDEX)/4`). Files are split by a hash of their
        /// path, so any layout of shards, run any number of times, ingests each file once.
        #[arg(long, value_name = "I/N")]
        shard: Option<medallion_core::Shard>,
        /// At the end of the run, push its metrics (rows read, written and quarantined per
        /// table, durations, bytes, success) in the Prometheus text format to this
        /// Pushgateway (`http://host:9091`; grouped under `job/medallion/layer/…`). A push
        /// that fails warns and never fails the run.
        #[arg(long, value_name = "URL", env = "MEDALLION_METRICS_PUSH")]
        metrics_push: Option<url::Url>,
    },
    /// Write realistic sample landing data (deterministic for a seed).
    Generate {
        /// Number of event lines to write (duplicates and malformed lines included).
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Random seed: the same seed writes the same bytes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory (the landing prefix layout: events/, ad_spend/, campaigns/, fx_rates/).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Event lines per file.
        #[arg(long, default_value_t = 250_000)]
        events_per_file: u64,
    },
    /// SQL (DataFusion dialect) over every table: `bronze.x`, `silver.x`, `gold.x`, and the
    /// quarantines as `bronze_quarantine.x`, `silver_quarantine.x`.
    Query {
        /// The query.
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// Read a table as of a version (time travel): `layer.table=VERSION`; repeatable.
        #[arg(long = "as-of", value_name = "LAYER.TABLE=VERSION")]
        versions: Vec<String>,
    },
    /// Runs from the run log and, for one table, its commits with the run that made each.
    History {
        /// Only this table (`layer.table`), with its Delta commits.
        table: Option<String>,
        /// Newest entries shown.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Rebuild the run log from the run records in every table's Delta history (runs that
        /// committed nothing are kept from the previous log), then show it.
        #[arg(long, conflicts_with = "table")]
        rebuild: bool,
    },
    /// The upstream graph of a table version down to the landed files, read from the runs'
    /// records in the Delta history (input versions, runs, files).
    #[command(
        disable_version_flag = true,
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true
    )]
    Lineage {
        /// Row-level lineage instead of the table graph.
        #[command(subcommand)]
        command: Option<LineageCommand>,
        /// The table (`layer.table`).
        #[arg(required = true)]
        table: Option<String>,
        /// The table version (default: the latest).
        #[arg(long)]
        version: Option<i64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Print the JSON Schema of layers.yaml.
    Schema,
}

/// `lineage` subcommands.
#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// For the Gold rows a predicate selects, the Silver rows behind them, the Bronze version
    /// that ingested each, and the raw landed lines (the inputs read at the versions the Gold
    /// version's run read).
    #[command(disable_version_flag = true)]
    Trace {
        /// The Gold table (`gold.table`).
        table: String,
        /// A SQL predicate over the table's columns selecting the rows to trace.
        #[arg(long = "where", value_name = "PREDICATE")]
        predicate: String,
        /// The Gold table version (default: the latest).
        #[arg(long)]
        version: Option<i64>,
        /// Most Gold rows traced; more matching rows is an error.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Most source rows listed per Gold row (all are counted).
        #[arg(long, default_value_t = 200)]
        max_sources: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

/// Which tables a command works on.
#[derive(Debug, Args)]
pub struct Selection {
    /// Only this layer.
    #[arg(long, value_parser = parse_layer)]
    pub layer: Option<Layer>,
    /// Only these tables (`layer.table`; repeatable).
    #[arg(long = "table", value_name = "LAYER.TABLE")]
    pub tables: Vec<String>,
}

/// `YYYY-MM-DD` as days since the epoch.
fn parse_date(s: &str) -> Result<i32, String> {
    medallion_gold::changes::parse_day(s).ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD)"))
}

fn parse_layer(s: &str) -> Result<Layer, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
