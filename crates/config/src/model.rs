//! The typed contents of `layers.yaml`. Every field's doc comment is its reference text
//! (it is also the description in the generated JSON Schema, `docs/layers.schema.json`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::located::Located;
use crate::names::{ColumnName, Name, TableRef};

/// The whole of `layers.yaml`: where data lives, the sources, and the three layers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Version of the configuration format. Only `1` exists.
    pub version: Located<u32>,
    /// Name of the pipeline; used as the OpenLineage namespace and in the run log.
    pub pipeline: Located<Name>,
    /// Where the lakehouse and the landing zone live.
    #[serde(default)]
    pub storage: Storage,
    /// Raw inputs: each reads every file under its folder of the landing prefix.
    #[serde(default)]
    pub sources: BTreeMap<Located<Name>, Source>,
    /// Bronze tables: append-only, one per source, nothing lost.
    #[serde(default)]
    pub bronze: BTreeMap<Located<Name>, BronzeTable>,
    /// Silver tables: cleaned, conformed, deduplicated, checked by expectations.
    #[serde(default)]
    pub silver: BTreeMap<Located<Name>, SilverTable>,
    /// Gold tables: business KPIs, as SQL or built-in models.
    #[serde(default)]
    pub gold: BTreeMap<Located<Name>, GoldTable>,
    /// Marketing attribution settings shared by the built-in Gold models, so that
    /// `campaign_daily`, `channel_cac` and `attribution` agree on what a touch is.
    #[serde(default)]
    pub attribution: Attribution,
    /// Where lineage events go.
    #[serde(default)]
    pub lineage: Lineage,
}

impl Config {
    /// The source named `name`.
    pub fn source(&self, name: &Name) -> Option<&Source> {
        find(&self.sources, name)
    }

    /// The Bronze table named `name`.
    pub fn bronze_table(&self, name: &Name) -> Option<&BronzeTable> {
        find(&self.bronze, name)
    }

    /// The Silver table named `name`.
    pub fn silver_table(&self, name: &Name) -> Option<&SilverTable> {
        find(&self.silver, name)
    }

    /// The Gold table named `name`.
    pub fn gold_table(&self, name: &Name) -> Option<&GoldTable> {
        find(&self.gold, name)
    }
}

fn find<'a, T>(map: &'a BTreeMap<Located<Name>, T>, name: &Name) -> Option<&'a T> {
    map.iter().find(|(k, _)| k.value == *name).map(|(_, v)| v)
}

/// Storage locations and Delta table settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Lakehouse root: a local path, a `file://` URL or `s3://bucket/prefix`. Tables live at
    /// `{root}/{layer}/{table}`. The `--root` flag overrides it.
    #[serde(default = "default_root")]
    pub root: Located<String>,
    /// Landing prefix where raw files arrive: a local path, `file://` or `s3://` URL. Source
    /// folders are relative to it. The `--landing` flag overrides it.
    #[serde(default = "default_landing")]
    pub landing: Located<String>,
    /// How many times a Delta commit that lost an optimistic-concurrency race to another job
    /// is retried from a fresh snapshot before the run fails.
    #[serde(default = "default_commit_retries")]
    pub commit_retries: u32,
    /// A Delta checkpoint is written every this many commits (`delta.checkpointInterval`).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u32,
    /// Days of Delta log history kept (`delta.logRetentionDuration`).
    #[serde(default = "default_log_retention_days")]
    pub log_retention_days: u32,
    /// Days a file removed from a table is kept for time travel before `vacuum` deletes it
    /// (`delta.deletedFileRetentionDuration`). This is also the erasure deadline: erased
    /// rows disappear from old versions after this many days.
    #[serde(default = "default_deleted_file_retention_days")]
    pub deleted_file_retention_days: u32,
    /// Object-store options passed through to the store (e.g. `region`, `endpoint`,
    /// `allow_http`). Credentials are refused here: they come from the environment or the
    /// instance/pod role.
    #[serde(default)]
    pub options: BTreeMap<String, Located<String>>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            root: default_root(),
            landing: default_landing(),
            commit_retries: default_commit_retries(),
            checkpoint_interval: default_checkpoint_interval(),
            log_retention_days: default_log_retention_days(),
            deleted_file_retention_days: default_deleted_file_retention_days(),
            options: BTreeMap::new(),
        }
    }
}

fn default_root() -> Located<String> {
    Located::unlocated("./lakehouse".into())
}
fn default_landing() -> Located<String> {
    Located::unlocated("./landing".into())
}
const fn default_commit_retries() -> u32 {
    15
}
const fn default_checkpoint_interval() -> u32 {
    10
}
const fn default_log_retention_days() -> u32 {
    30
}
const fn default_deleted_file_retention_days() -> u32 {
    7
}
const fn default_true() -> bool {
    true
}
const fn default_max_line_bytes() -> u64 {
    64 * 1024 * 1024
}

/// A raw input: the files under one folder of the landing prefix.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// What the files contain. Compression (gzip) is detected from the content, not the name.
    pub format: Located<Format>,
    /// Folder under the landing prefix; every file below it is read, whatever its name.
    /// Default: `<source name>/`.
    #[serde(default)]
    pub path: Option<Located<String>>,
    /// Declared columns, in order, with their types. A value that does not fit its declared
    /// type is kept in `_rescued`, never dropped.
    #[serde(default)]
    pub columns: OrderedMap<Located<ColumnName>, Located<ColumnType>>,
    /// Undeclared fields become new nullable columns, typed from the first file that
    /// carries them (schema evolution). When false they are kept in `_rescued` instead.
    #[serde(default = "default_true")]
    pub infer_undeclared: bool,
    /// What to do when a file that was already ingested changes (size or ETag).
    #[serde(default)]
    pub on_changed_file: OnChangedFile,
    /// How `run --shard I/N` splits the source between Bronze jobs: `files` (each file to the
    /// shard its path hashes to) or `whole` (all its files to one shard, which ingests them in
    /// landing order: for sources where a later file restates rows of an earlier one, whose
    /// order must not depend on which shard commits first).
    #[serde(default)]
    pub sharding: Sharding,
    /// Longest line (record) accepted, in bytes; a longer one is quarantined with its
    /// first bytes.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: u64,
    /// CSV dialect, for `format: csv`.
    #[serde(default)]
    pub csv: CsvOptions,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// File formats a source can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Newline-delimited JSON, one object per line.
    Ndjson,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON array of objects per file.
    JsonArray,
    /// Apache Parquet.
    Parquet,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::JsonArray => "json_array",
            Format::Parquet => "parquet",
        })
    }
}

/// Types a declared column can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// UTF-8 text. A JSON number or boolean is kept as its JSON text (`123` → `"123"`).
    String,
    /// true / false.
    Boolean,
    /// 32-bit signed integer.
    Int,
    /// 64-bit signed integer.
    Long,
    /// 64-bit floating point.
    Double,
    /// Calendar date (`YYYY-MM-DD`).
    Date,
    /// Instant in UTC, microsecond precision.
    Timestamp,
    /// Any JSON value, kept as its JSON text.
    Json,
}

/// What happens to a landed file that changed after it was ingested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnChangedFile {
    /// Report it in the run log and leave it alone.
    #[default]
    Report,
    /// Ingest the new content again (its rows are added; nothing is removed).
    Reingest,
}

/// How `run --shard I/N` splits a source's landed files between Bronze jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sharding {
    /// Each file goes to the shard its path hashes to.
    #[default]
    Files,
    /// Every file goes to the one shard the source's name hashes to.
    Whole,
}

/// CSV dialect.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// Field separator, one character.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Quote character, one character.
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Whether the first line is a header naming the columns.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Field values read as NULL.
    #[serde(default = "default_null_values")]
    pub null_values: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: default_delimiter(),
            quote: default_quote(),
            header: true,
            null_values: default_null_values(),
        }
    }
}

const fn default_delimiter() -> char {
    ','
}
const fn default_quote() -> char {
    '"'
}
fn default_null_values() -> Vec<String> {
    vec![String::new()]
}

/// A Bronze table: the raw rows of one source plus `_source_file`, `_source_line`,
/// `_ingested_at`, `_run_id` and `_rescued`; unparseable records go to its quarantine table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BronzeTable {
    /// The source it ingests. Default: the source with the table's name.
    #[serde(default)]
    pub source: Option<Located<Name>>,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// A Silver table, built incrementally from one Bronze table.
///
/// Columns are computed in the order written, like a chain of `withColumn`: an expression
/// sees the Bronze columns, the lookups (`lookup.column`), and the columns defined above it;
/// a column named like a Bronze column replaces it for the expressions below. Expectations
/// are then checked on the computed row, and the key deduplicates.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SilverTable {
    /// The Bronze table it reads (`bronze.<name>`).
    pub from: Located<TableRef>,
    /// Columns identifying a row. Rows with the same key are deduplicated, in ingestion
    /// order (Bronze version, source file, source line), against everything already in
    /// the table. Empty: no deduplication.
    #[serde(default)]
    pub key: Vec<Located<ColumnName>>,
    /// Which row of a key survives.
    #[serde(default)]
    pub keep: Keep,
    /// Partition columns (each must be a written column), e.g. the event date.
    #[serde(default)]
    pub partition_by: Vec<Located<ColumnName>>,
    /// What happens to Bronze columns that appear later and are not declared in the source.
    #[serde(default)]
    pub schema_evolution: SchemaEvolution,
    /// Dimension lookups, joined on an expression of the row; their columns are visible
    /// to column expressions as `lookup.column`. When a dimension row changes, the rows
    /// that looked it up are restated.
    #[serde(default)]
    pub lookups: OrderedMap<Located<Name>, Lookup>,
    /// The table's columns, in order: `name: SQL expression` or `name: {expr, keep, description}`.
    pub columns: OrderedMap<Located<ColumnName>, ColumnDef>,
    /// Data-quality rules: `name: {expr, action}`. A rule whose predicate is false or NULL
    /// fails; when several fail, the strongest action wins (fail > quarantine > drop > warn).
    #[serde(default)]
    pub expectations: OrderedMap<Located<Name>, Expectation>,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// Which row of a key survives deduplication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The first ingested row wins; later ones are removed and counted (re-sent events).
    #[default]
    First,
    /// The latest ingested row replaces earlier ones (dimensions, restated figures).
    Latest,
}

/// Policy for Bronze columns that were not declared in the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEvolution {
    /// New Bronze columns flow into Silver as new nullable columns.
    #[default]
    AddColumns,
    /// New Bronze columns are collected into the `_rescued` JSON column.
    Rescue,
    /// A new Bronze column fails the run, naming the column and the file it came from.
    Fail,
}

/// A dimension lookup: a left join of the row to a Silver dimension on one expression.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The dimension table (`silver.<name>`).
    pub table: Located<TableRef>,
    /// SQL expression over the dimension's columns: its join key.
    pub key: Located<String>,
    /// SQL expression over this table's row (Bronze columns and columns defined so far):
    /// the value looked up.
    #[serde(rename = "match")]
    pub match_expr: Located<String>,
    /// When several dimension rows share a key value.
    #[serde(default)]
    pub on_ambiguous: OnAmbiguous,
}

/// What an ambiguous lookup resolves to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnAmbiguous {
    /// No match (the lookup's columns are NULL), with a warning naming the key value.
    #[default]
    NoMatch,
    /// Fail the run.
    Fail,
}

/// A computed column: a bare SQL expression, or a mapping with `expr`, `keep` and
/// `description`.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnDef {
    /// SQL expression (DataFusion dialect) computing the column.
    pub expr: Located<String>,
    /// Whether the column is written; `false` makes a helper visible to later expressions
    /// and expectations only.
    pub keep: bool,
    /// Free text for people.
    pub description: Option<String>,
}

/// The mapping spelling of a [`ColumnDef`].
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FullColumnDef {
    /// SQL expression (DataFusion dialect) computing the column.
    expr: Located<String>,
    /// Whether the column is written; `false` makes a helper visible to later expressions
    /// and expectations only.
    #[serde(default = "default_true")]
    keep: bool,
    /// Free text for people.
    #[serde(default)]
    description: Option<String>,
}

/// The two spellings of a column definition, told apart by the node's kind.
enum ColumnDefRepr {
    Expr(String),
    Full(FullColumnDef),
}

impl<'de> Deserialize<'de> for ColumnDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `Located` first, so that the bare-expression spelling keeps its position.
        let located = Located::<ColumnDefRepr>::deserialize(d)?;
        Ok(match located.value {
            ColumnDefRepr::Expr(expr) => ColumnDef {
                expr: Located::new(expr, located.loc),
                keep: true,
                description: None,
            },
            ColumnDefRepr::Full(full) => ColumnDef {
                expr: full.expr,
                keep: full.keep,
                description: full.description,
            },
        })
    }
}

impl<'de> Deserialize<'de> for ColumnDefRepr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ReprVisitor;
        impl<'de> Visitor<'de> for ReprVisitor {
            type Value = ColumnDefRepr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a SQL expression, or a mapping with `expr`, `keep` and `description`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ColumnDefRepr::Expr(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                FullColumnDef::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ColumnDefRepr::Full)
            }
        }
        d.deserialize_any(ReprVisitor)
    }
}

impl JsonSchema for ColumnDef {
    fn schema_name() -> Cow<'static, str> {
        "ColumnDef".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let full = generator.subschema_for::<FullColumnDef>();
        json_schema!({
            "description": "A computed column: a bare SQL expression, or a mapping with `expr`, `keep` and `description`.",
            "anyOf": [
                {"type": "string", "description": "SQL expression (DataFusion dialect) computing the column."},
                full
            ]
        })
    }
}

/// A data-quality rule on the computed row.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// SQL predicate (DataFusion dialect). NULL counts as failed: write `x IS NULL OR …`
    /// to allow NULLs.
    pub expr: Located<String>,
    /// What happens to a row that fails.
    pub action: Located<Action>,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// What happens to a row that fails an expectation, weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the row, count the failure.
    Warn,
    /// Drop the row, count it.
    Drop,
    /// Move the row to the table's quarantine with the failed rule names, count it.
    Quarantine,
    /// Stop the run (exit code 3); nothing of the batch is committed.
    Fail,
}

/// A Gold table: either `sql` or `builtin`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GoldTable {
    /// A query (DataFusion SQL dialect) over `silver.*` and `gold.*` tables. Its
    /// dependencies are read from the query.
    #[serde(default)]
    pub sql: Option<Located<String>>,
    /// A built-in marketing model.
    #[serde(default)]
    pub builtin: Option<Located<Builtin>>,
    /// For a built-in model: the table bound to each of its inputs
    /// (`events`, `ad_spend`, `campaigns`).
    #[serde(default)]
    pub inputs: BTreeMap<Located<Name>, Located<TableRef>>,
    /// Columns identifying a row; checked unique on every write.
    #[serde(default)]
    pub key: Vec<Located<ColumnName>>,
    /// Partition columns.
    #[serde(default)]
    pub partition_by: Vec<Located<ColumnName>>,
    /// How the table is maintained.
    #[serde(default)]
    pub materialized: Materialized,
    /// For `incremental_by_date`: the DATE column whose values are recomputed.
    #[serde(default)]
    pub date_column: Option<Located<ColumnName>>,
    /// For an `incremental_by_date` SQL model: how many days back each output date reads
    /// its inputs (a 7-day rolling sum reads 6). Input rows of date `d` then recompute the
    /// dates `d ..= d + lookback_days`. Built-in models know their own reach (the
    /// attribution window).
    #[serde(default)]
    pub lookback_days: u32,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// The built-in Gold models of the marketing domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    /// Per (date, campaign_id): spend, clicks, impressions, last-touch conversions and
    /// revenue, and their ratios (ctr, cpc, cpm, conversion_rate, cpa, roas, roi).
    CampaignDaily,
    /// Per (month, channel): new customers by first purchase, spend, cac.
    ChannelCac,
    /// Per (date, model, channel, campaign_id): credited conversions and revenue under
    /// every configured attribution model.
    Attribution,
}

impl Builtin {
    /// The inputs the model reads, each of which must be bound in `inputs`.
    pub const fn inputs(self) -> &'static [&'static str] {
        match self {
            Builtin::CampaignDaily | Builtin::ChannelCac => &["events", "ad_spend", "campaigns"],
            Builtin::Attribution => &["events", "campaigns"],
        }
    }

    /// The model's name as written in configs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Builtin::CampaignDaily => "campaign_daily",
            Builtin::ChannelCac => "channel_cac",
            Builtin::Attribution => "attribution",
        }
    }
}

/// How a Gold table is maintained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Materialized {
    /// Recomputed whole on every run that has new input.
    #[default]
    Full,
    /// Only the dates touched by new input (plus `lookback_days`, and for attribution the
    /// window) are recomputed and replaced in one commit. The table is partitioned by its
    /// `date_column`.
    IncrementalByDate,
}

/// Attribution settings shared by the built-in models.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    /// Event types (after trimming and lower-casing) that are touches when they carry a
    /// campaign and an identity.
    #[serde(default = "default_touch_types")]
    pub touch_event_types: Vec<String>,
    /// Event type of a conversion.
    #[serde(default = "default_conversion_type")]
    pub conversion_event_type: String,
    /// Touches count up to this many days before the conversion (inclusive).
    #[serde(default = "default_window_days")]
    pub window_days: Located<f64>,
    /// Half-life of the `time_decay` model, in days.
    #[serde(default = "default_half_life_days")]
    pub half_life_days: Located<f64>,
    /// Models computed by the `attribution` built-in.
    #[serde(default = "default_models")]
    pub models: Vec<AttributionModel>,
    /// `position_based`: share of the first touch when there are three or more.
    #[serde(default = "default_position_share")]
    pub position_first_share: Located<f64>,
    /// `position_based`: share of the last touch when there are three or more.
    #[serde(default = "default_position_share")]
    pub position_last_share: Located<f64>,
    /// Channel credited with conversions that have no touch.
    #[serde(default = "default_direct_channel")]
    pub direct_channel: String,
}

impl Default for Attribution {
    fn default() -> Self {
        Self {
            touch_event_types: default_touch_types(),
            conversion_event_type: default_conversion_type(),
            window_days: default_window_days(),
            half_life_days: default_half_life_days(),
            models: default_models(),
            position_first_share: default_position_share(),
            position_last_share: default_position_share(),
            direct_channel: default_direct_channel(),
        }
    }
}

fn default_touch_types() -> Vec<String> {
    ["click", "email_click", "page_view"]
        .map(String::from)
        .to_vec()
}
fn default_conversion_type() -> String {
    "purchase".into()
}
fn default_window_days() -> Located<f64> {
    Located::unlocated(7.0)
}
fn default_half_life_days() -> Located<f64> {
    Located::unlocated(7.0)
}
fn default_models() -> Vec<AttributionModel> {
    AttributionModel::ALL.to_vec()
}
fn default_position_share() -> Located<f64> {
    Located::unlocated(0.4)
}
fn default_direct_channel() -> String {
    "direct".into()
}

/// Attribution models.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AttributionModel {
    /// All credit to the earliest touch in the window.
    FirstTouch,
    /// All credit to the latest touch in the window.
    LastTouch,
    /// Equal credit to every touch in the window.
    Linear,
    /// Credit weighted by 2^(−age / half-life), normalised per conversion.
    TimeDecay,
    /// First and last touch get their shares, the middle touches split the rest.
    PositionBased,
}

impl AttributionModel {
    /// Every model.
    pub const ALL: [AttributionModel; 5] = [
        AttributionModel::FirstTouch,
        AttributionModel::LastTouch,
        AttributionModel::Linear,
        AttributionModel::TimeDecay,
        AttributionModel::PositionBased,
    ];
}

/// Where lineage goes besides the run log.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    /// OpenLineage run events.
    #[serde(default)]
    pub openlineage: Option<OpenLineage>,
}

/// OpenLineage run events (START / COMPLETE / FAIL) for each table run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenLineage {
    /// Namespace of the jobs. Default: the pipeline name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A file the events are appended to as NDJSON (local path or URL).
    #[serde(default)]
    pub file: Option<Located<String>>,
    /// An HTTP endpoint the events are POSTed to (e.g. `${OPENLINEAGE_URL}`). A failed POST
    /// never fails the data run: the event stays in the file and a warning is logged.
    #[serde(default)]
    pub url: Option<Located<String>>,
    /// Timeout of one POST, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u32,
}

const fn default_timeout_secs() -> u32 {
    5
}

/// A mapping that keeps the order it was written in (columns, rules, lookups).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for OrderedMap<K, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<K: PartialEq, V> OrderedMap<K, V> {
    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Serialize, V: Serialize> Serialize for OrderedMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for MapVisitor<K, V> {
            type Value = OrderedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    entries.push((k, v));
                }
                Ok(OrderedMap(entries))
            }
        }
        d.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

impl<K, V: JsonSchema> JsonSchema for OrderedMap<K, V> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("OrderedMap_of_{}", V::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<V>();
        json_schema!({
            "type": "object",
            "additionalProperties": value,
        })
    }
}
