//! Gold: business KPIs, as SQL models declared in `layers.yaml` or as the built-in
//! marketing models (`campaign_daily`, `channel_cac`, `attribution`).
//!
//! A Gold run reads its inputs (Silver or Gold tables) as of their current versions and
//! records those versions in its commit as application transactions
//! (`medallion.gold:<input>`), with the model's fingerprint (`medallion.gold.definition`).
//! A table is up to date when none of its inputs moved and its definition is unchanged.
//!
//! - `full` models are recomputed whole and replace the table in one commit.
//! - `incremental_by_date` models recompute only the dates the new input data touches (see
//!   [`changes`]): the table is partitioned by its date column, and the files of exactly
//!   those dates are replaced by the recomputed rows in one commit, so readers see either
//!   the old or the new figures of a date, never a mix. The result equals a full refresh.
//!
//! A changed definition is refused unless the run is told `--full-refresh` (recompute
//! everything) or `--forward-only` (use it for the dates recomputed from now on).

pub mod changes;
pub mod credit;
pub mod models;
pub mod touchpoints;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use deltalake::DeltaTable;
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, StringArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::kernel::{Action, MetadataExt, Transaction};
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::StreamExt;
use medallion_config::{Builtin, GoldTable, Layer, Materialized, TableRef};
use medallion_core::faults::crash_point;
use medallion_core::runlog::{self, RunRecord};
use medallion_core::table::{
    arrow_schema, commit, kernel_schema, open_existing, open_or_create, removals, storage_error,
    table_properties, transaction_version,
};
use medallion_core::{Error, Pipeline, Result, RunContext};
use serde::Serialize;
use serde_json::json;
use tracing::info;

use crate::changes::{Dates, Impact};
use crate::credit::Totals;
use crate::models::Settings;

/// How a run treats the table's history.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoldOptions {
    /// Recompute the whole table.
    pub full_refresh: bool,
    /// Accept a changed definition for the dates recomputed from now on.
    pub forward_only: bool,
    /// Recompute these dates (days since the epoch, inclusive) of an `incremental_by_date`
    /// table, besides those new input touches: a backfill. A `full` table is recomputed.
    pub range: Option<(i32, i32)>,
}

/// One input of a Gold run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InputVersions {
    /// The last version consumed before this run (none: never read).
    pub from: Option<i64>,
    /// The version this run read.
    pub to: i64,
}

/// What a Gold run did (or, for `plan`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GoldMetrics {
    /// The Gold table.
    pub table: String,
    /// The run.
    pub run_id: String,
    /// `full`, `incremental`, `up_to_date`; `refused` (plan only) when the definition changed.
    pub mode: String,
    /// Why everything was recomputed, or why the run is refused.
    pub reason: Option<String>,
    /// Each input with the versions read.
    pub inputs: BTreeMap<String, InputVersions>,
    /// Dates recomputed (`incremental`), first and last.
    pub dates: Vec<String>,
    /// How many dates were recomputed (`incremental`).
    pub dates_recomputed: usize,
    /// Rows written.
    pub rows_written: u64,
    /// Files replaced.
    pub files_removed: usize,
    /// Fingerprint of the model.
    pub definition: String,
    /// Table version after the run.
    pub version: Option<u64>,
    /// When the run started.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When its commit was made.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Wall time.
    pub seconds: f64,
}

/// The run-log record of a Gold table run (`error`: it failed).
pub fn record(
    pipeline: &Pipeline,
    ctx: &RunContext,
    table: &TableRef,
    started: chrono::DateTime<chrono::Utc>,
    m: &GoldMetrics,
    error: Option<&Error>,
) -> RunRecord {
    let config = pipeline.config.gold_table(&table.name);
    let mut r = RunRecord::new(
        ctx,
        table,
        m.started_at.unwrap_or(started),
        runlog::fingerprint(&(config, &pipeline.config.attribution)),
    );
    r.finished_at = m.finished_at.unwrap_or_else(runlog::now);
    r.inputs = json!(
        m.inputs
            .iter()
            .map(|(t, v)| (
                t.clone(),
                json!({ "from_version": v.from, "to_version": v.to, "mode": m.mode, "dates_recomputed": m.dates_recomputed })
            ))
            .collect::<BTreeMap<_, _>>()
    )
    .to_string();
    r.output_version = m.version.and_then(|v| i64::try_from(v).ok());
    r.rows_written = runlog::count(m.rows_written);
    match error {
        Some(e) => r.failed(e),
        None => r,
    }
}

/// What `plan` reports for a Gold table.
pub type GoldPlan = GoldMetrics;

const DEFINITION_APP_ID: &str = "medallion.gold.definition";
fn input_app_id(input: &TableRef) -> String {
    format!("medallion.gold:{input}")
}

/// The Gold table's definition.
fn definition<'a>(pipeline: &'a Pipeline, table: &TableRef) -> Result<&'a GoldTable> {
    if table.layer != Layer::Gold {
        return Err(Error::Usage(format!("`{table}` is not a Gold table")));
    }
    pipeline
        .config
        .gold_table(&table.name)
        .ok_or_else(|| Error::Usage(format!("`{table}` is not declared")))
}

/// A model ready to run: what it reads and how.
struct Model {
    /// (name the query uses, table).
    inputs: Vec<(String, TableRef)>,
    /// How each input's changes touch dates.
    impacts: Vec<Impact>,
    builtin: Option<Builtin>,
    sql: Option<String>,
    settings: Settings,
    date_column: Option<String>,
    partition_by: Vec<String>,
    key: Vec<String>,
    fingerprint: u64,
}

impl Model {
    fn new(pipeline: &Pipeline, table: &TableRef, def: &GoldTable) -> Result<Self> {
        let settings = Settings::from_config(&pipeline.config.attribution);
        let incremental = def.materialized == Materialized::IncrementalByDate;
        let date_column = def.date_column.as_ref().map(|c| c.as_str().to_string());
        if incremental && date_column.is_none() {
            return Err(Error::Usage(format!(
                "`{table}` is incremental_by_date but has no date_column"
            )));
        }
        let mut partition_by: Vec<String> = def
            .partition_by
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        if let Some(d) = date_column.as_ref().filter(|_| incremental)
            && !partition_by.contains(d)
        {
            partition_by.insert(0, d.clone());
        }
        let mut inputs = Vec::new();
        let mut impacts = Vec::new();
        let events_impact = Impact::Events {
            conversion: settings.conversion_type.clone(),
            touches: settings.touch_types.clone(),
            window_us: settings.window_us,
        };
        if let Some(b) = &def.builtin {
            for name in b.value.inputs() {
                let bound = def
                    .inputs
                    .iter()
                    .find(|(k, _)| k.as_str() == *name)
                    .map(|(_, v)| v.value.clone())
                    .ok_or_else(|| {
                        Error::Usage(format!("`{table}`: input `{name}` is not bound"))
                    })?;
                let impact = match (b.value, *name) {
                    (_, "events") => events_impact.clone(),
                    (Builtin::CampaignDaily, "ad_spend") => Impact::Column {
                        column: "date".into(),
                        after_days: 0,
                    },
                    // campaign_daily credits campaigns, never channels.
                    (Builtin::CampaignDaily, "campaigns") => Impact::None,
                    _ => Impact::All,
                };
                inputs.push(((*name).to_string(), bound));
                impacts.push(impact);
            }
        } else {
            for input in pipeline.dag.upstream(table) {
                let impact = match &date_column {
                    Some(d) => Impact::Column {
                        column: input_date_column(pipeline, input, d),
                        after_days: def.lookback_days as i32,
                    },
                    None => Impact::All,
                };
                inputs.push((input.to_string(), input.clone()));
                impacts.push(impact);
            }
        }
        let fingerprint = {
            let text = serde_json::to_string(&json!({
                "builtin": def.builtin.as_ref().map(|b| b.value.as_str()),
                "sql": def.sql.as_ref().map(|s| s.value.trim().to_string()),
                "inputs": inputs.iter().map(|(n, t)| format!("{n}={t}")).collect::<Vec<_>>(),
                "key": def.key.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                "partition_by": partition_by,
                "materialized": format!("{:?}", def.materialized),
                "date_column": date_column,
                "lookback_days": def.lookback_days,
                "attribution": def.builtin.is_some().then(|| serde_json::to_value(&pipeline.config.attribution).ok()),
            }))
            .unwrap_or_default();
            twox_hash::XxHash3_128::oneshot(text.as_bytes()) as u64
        };
        Ok(Self {
            inputs,
            impacts,
            builtin: def.builtin.as_ref().map(|b| b.value),
            sql: def.sql.as_ref().map(|s| s.value.clone()),
            settings,
            date_column: date_column.filter(|_| incremental),
            partition_by,
            key: def.key.iter().map(|k| k.as_str().to_string()).collect(),
            fingerprint,
        })
    }
}

/// The column of `input` holding the dates of a SQL model's `date_column`: the Gold
/// input's own date column, else a column of the same name, else its DATE partition
/// column; the model's date column name when none is known (reported when reading).
fn input_date_column(pipeline: &Pipeline, input: &TableRef, date_column: &str) -> String {
    match input.layer {
        Layer::Gold => pipeline
            .config
            .gold_table(&input.name)
            .and_then(|d| d.date_column.as_ref())
            .map_or(date_column.to_string(), |c| c.as_str().to_string()),
        Layer::Silver => pipeline
            .config
            .silver_table(&input.name)
            .and_then(|d| {
                if d.columns.iter().any(|(n, _)| n.as_str() == date_column) {
                    Some(date_column.to_string())
                } else {
                    d.partition_by.first().map(|c| c.as_str().to_string())
                }
            })
            .unwrap_or_else(|| date_column.to_string()),
        Layer::Bronze => date_column.to_string(),
    }
}

/// What a run must do.
#[derive(Debug)]
enum Work {
    UpToDate,
    Full(String),
    Dates(BTreeSet<i32>),
}

struct Opened {
    inputs: Vec<(String, TableRef, DeltaTable)>,
    existing: Option<DeltaTable>,
}

async fn open(pipeline: &Pipeline, table: &TableRef, model: &Model) -> Result<Opened> {
    let mut inputs = Vec::new();
    for (name, input) in &model.inputs {
        let t = open_existing(&pipeline.locations.table(input))
            .await?
            .ok_or_else(|| {
                Error::Other(format!(
                    "`{input}`, read by `{table}`, does not exist yet: run `--layer {}` first",
                    input.layer
                ))
            })?;
        inputs.push((name.clone(), input.clone(), t));
    }
    let existing = open_existing(&pipeline.locations.table(table)).await?;
    Ok(Opened { inputs, existing })
}

/// Decides the work, filling `metrics.inputs`, `mode` and `reason`.
async fn decide(
    table: &TableRef,
    model: &Model,
    opened: &Opened,
    options: GoldOptions,
    metrics: &mut GoldMetrics,
) -> Result<Work> {
    let mut consumed = Vec::new();
    for (_, input, t) in &opened.inputs {
        let to = t.version().map_or(-1, |v| v as i64);
        let from = match &opened.existing {
            Some(g) => transaction_version(g, &input_app_id(input)).await?,
            None => None,
        };
        metrics
            .inputs
            .insert(input.to_string(), InputVersions { from, to });
        consumed.push((from, to));
    }
    let Some(existing) = &opened.existing else {
        return Ok(Work::Full("first run".into()));
    };
    if options.full_refresh {
        return Ok(Work::Full("--full-refresh".into()));
    }
    let recorded = transaction_version(existing, DEFINITION_APP_ID).await?;
    let changed_definition = recorded.is_some_and(|r| r != (model.fingerprint >> 1) as i64);
    if changed_definition && !options.forward_only {
        return Err(Error::Usage(format!(
            "the definition of `{table}` changed since the table was written; run with \
             --full-refresh to recompute it, or --forward-only to use the new definition \
             for the dates recomputed from now on"
        )));
    }
    let moved = consumed.iter().any(|(from, to)| *from != Some(*to));
    let Some(_) = &model.date_column else {
        return Ok(if moved || options.range.is_some() {
            Work::Full("a `full` model is recomputed whole".into())
        } else if changed_definition {
            Work::Full("new definition".into())
        } else {
            Work::UpToDate
        });
    };
    let mut dates = Dates::none();
    for (((_, input, t), impact), (from, to)) in
        opened.inputs.iter().zip(&model.impacts).zip(&consumed)
    {
        match from {
            Some(from) => {
                let touched = changes::changed_dates(t, *from, *to, impact).await?;
                if let Dates::All(reason) = &touched {
                    info!(table = %table, input = %input, "every date is recomputed: {reason}");
                }
                dates.merge(touched);
            }
            None if *to >= 0 => dates.merge(Dates::All(format!("`{input}` was never read"))),
            None => {}
        }
    }
    if let Some((a, b)) = options.range {
        dates.merge(Dates::Some((a..=b).collect()));
    }
    Ok(match dates {
        Dates::All(reason) => Work::Full(reason),
        Dates::Some(d) if d.is_empty() && !moved && !changed_definition => Work::UpToDate,
        Dates::Some(d) => Work::Dates(d),
    })
}

/// What a run of `table` would do, without writing anything.
pub async fn plan(pipeline: &Pipeline, table: &TableRef, options: GoldOptions) -> Result<GoldPlan> {
    let def = definition(pipeline, table)?;
    let model = Model::new(pipeline, table, def)?;
    let mut plan = GoldMetrics {
        table: table.to_string(),
        definition: format!("{:016x}", model.fingerprint),
        ..GoldMetrics::default()
    };
    let opened = match open(pipeline, table, &model).await {
        Ok(o) => o,
        Err(Error::Other(m)) => {
            plan.mode = "waiting for its inputs".into();
            plan.reason = Some(m);
            return Ok(plan);
        }
        Err(e) => return Err(e),
    };
    match decide(table, &model, &opened, options, &mut plan).await {
        Ok(work) => describe(&work, &mut plan),
        Err(e @ Error::Usage(_)) => {
            plan.mode = "refused".into();
            plan.reason = Some(e.to_string());
        }
        Err(e) => return Err(e),
    }
    Ok(plan)
}

fn describe(work: &Work, m: &mut GoldMetrics) {
    match work {
        Work::UpToDate => m.mode = "up_to_date".into(),
        Work::Full(reason) => {
            m.mode = "full".into();
            m.reason = Some(reason.clone());
        }
        Work::Dates(d) => {
            m.mode = "incremental".into();
            m.dates_recomputed = d.len();
            m.dates = [d.first(), d.last()]
                .into_iter()
                .flatten()
                .map(|d| {
                    models::date_literal(*d)
                        .trim_start_matches("DATE ")
                        .trim_matches('\'')
                        .to_string()
                })
                .collect();
            m.dates.dedup();
        }
    }
}

/// A DataFusion session for a model: engine functions, `silver`/`gold` schemas, and the
/// model's inputs registered as of the versions the run read.
async fn session(opened: &Opened) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
        // Decode the filter columns first, and the others only for the rows that pass:
        // touches and conversions are a fifth of the events.
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true);
    let mut ctx = SessionContext::new_with_config(config);
    medallion_core::functions::register(&mut ctx).map_err(|e| Error::Other(e.to_string()))?;
    let catalog = ctx
        .catalog("datafusion")
        .expect("the default catalog exists");
    for schema in ["silver", "gold"] {
        catalog
            .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    for (name, _, table) in &opened.inputs {
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| storage_error(table.table_url(), e))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| storage_error(table.table_url(), e))?;
        ctx.register_table(name.as_str(), provider)
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    Ok(ctx)
}

type Stream = deltalake::datafusion::physical_plan::SendableRecordBatchStream;

fn df_error(table: &TableRef) -> impl Fn(deltalake::datafusion::error::DataFusionError) -> Error {
    let table = table.clone();
    move |e| Error::Other(format!("computing `{table}`: {e}"))
}

/// The model's rows, for `dates` or for every date.
async fn compute(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    run: &RunContext,
    opened: &Opened,
    table: &TableRef,
    model: &Model,
    dates: Option<&BTreeSet<i32>>,
) -> Result<Stream> {
    let err = df_error(table);
    // No date touched (the inputs moved without changing the model's rows): no rows, but
    // the model's columns.
    let nothing = dates.is_some_and(BTreeSet::is_empty);
    let dates = dates.filter(|_| !nothing);
    let sql = match (model.builtin, &model.sql) {
        (Some(builtin), _) => {
            let totals = if nothing {
                Arc::new(Totals::default())
            } else {
                credited(ctx, pipeline, run, opened, model).await?
            };
            let in_dates = |day: i32| dates.is_none_or(|d| d.contains(&day)) && !nothing;
            let channels = if builtin == Builtin::CampaignDaily {
                HashMap::new()
            } else {
                channels(ctx, table).await?
            };
            let (name, batch) = match builtin {
                Builtin::Attribution => (
                    "wide",
                    wide_batch(&totals, &channels, &model.settings, in_dates)?,
                ),
                Builtin::CampaignDaily => ("conv", conv_batch(&totals, in_dates)?),
                Builtin::ChannelCac => (
                    "customers",
                    customers_batch(&totals, &channels, &model.settings)?,
                ),
            };
            let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(&err)?;
            ctx.register_table(name, Arc::new(mem)).map_err(&err)?;
            match builtin {
                Builtin::Attribution => models::attribution_long(&model.settings),
                Builtin::CampaignDaily => models::campaign_daily(dates),
                Builtin::ChannelCac => models::channel_cac(),
            }
        }
        (None, Some(sql)) => match (dates, &model.date_column) {
            (Some(dates), Some(column)) => {
                let list: Vec<String> = dates.iter().map(|d| models::date_literal(*d)).collect();
                format!(
                    "SELECT * FROM ({sql}) AS model WHERE \"{column}\" IN ({})",
                    list.join(", ")
                )
            }
            _ => sql.clone(),
        },
        (None, None) => {
            return Err(Error::Usage(format!(
                "`{table}` has neither sql nor builtin"
            )));
        }
    };
    let sql = if nothing {
        format!("SELECT * FROM ({sql}) AS model LIMIT 0")
    } else {
        sql
    };
    tracing::debug!(table = %table, sql = %sql, "model query");
    let frame = ctx.sql(&sql).await.map_err(&err)?;
    frame.execute_stream().await.map_err(&err)
}

/// Runs one Gold table. `metrics` is filled as the run goes.
pub async fn run(
    pipeline: &Pipeline,
    table: &TableRef,
    ctx: &RunContext,
    options: GoldOptions,
    metrics: &mut GoldMetrics,
) -> Result<()> {
    let started = Instant::now();
    let def = definition(pipeline, table)?;
    let model = Model::new(pipeline, table, def)?;
    *metrics = GoldMetrics {
        table: table.to_string(),
        run_id: ctx.run_id.clone(),
        definition: format!("{:016x}", model.fingerprint),
        started_at: Some(runlog::now()),
        ..GoldMetrics::default()
    };
    let opened = open(pipeline, table, &model).await?;
    let work = match decide(table, &model, &opened, options, metrics).await {
        Ok(work) => work,
        Err(e @ Error::Usage(_)) => {
            metrics.mode = "refused".into();
            metrics.reason = Some(e.to_string());
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    describe(&work, metrics);
    if let Work::UpToDate = work {
        metrics.version = opened.existing.as_ref().and_then(DeltaTable::version);
        metrics.seconds = started.elapsed().as_secs_f64();
        info!(table = %table, "up to date");
        return Ok(());
    }
    let dates = match &work {
        Work::Dates(d) => Some(d),
        _ => None,
    };
    if let Work::Full(reason) = &work {
        info!(table = %table, "recomputing every row: {reason}");
    } else if let Some(d) = dates {
        info!(table = %table, dates = d.len(), "recomputing the dates new input touches");
    }
    let session = session(&opened).await?;
    let mut stream = compute(&session, pipeline, ctx, &opened, table, &model, dates).await?;
    let output: SchemaRef = Arc::new(Schema::new(
        stream
            .schema()
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), plain_type(f.data_type()), true))
            .collect::<Vec<_>>(),
    ));
    if let Some(d) = &model.date_column
        && output.field_with_name(d).is_err()
    {
        return Err(Error::Usage(format!(
            "`{table}`: date_column `{d}` is not a column of the model"
        )));
    }

    let url = pipeline.locations.table(table);
    let properties = table_properties(&pipeline.config.storage);
    let gold = match opened.existing {
        Some(t) => t,
        None => {
            open_or_create(
                &url,
                &output,
                &model.partition_by,
                &properties,
                table.name.as_str(),
            )
            .await?
        }
    };
    let current = arrow_schema(&gold)?;
    let current_partitions = gold
        .snapshot()
        .map_err(|e| Error::Other(e.to_string()))?
        .metadata()
        .partition_columns()
        .to_vec();
    let same_schema = current.fields().len() == output.fields().len()
        && current
            .fields()
            .iter()
            .zip(output.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
        && current_partitions == model.partition_by;
    if !same_schema && dates.is_some() {
        return Err(Error::Usage(format!(
            "the columns or partitioning of `{table}` changed; run with --full-refresh \
             (table: {}, partitioned by {current_partitions:?}; model: {}, partitioned by {:?})",
            describe_schema(&current),
            describe_schema(&output),
            model.partition_by
        )));
    }

    // Write the rows, checking the key.
    let writer_properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = RecordBatchWriter::try_new(
        gold.table_url().clone(),
        output.clone(),
        Some(model.partition_by.clone()).filter(|p| !p.is_empty()),
        Some(medallion_core::table::storage_options()),
    )
    .map_err(|e| storage_error(&url, e))?
    .with_writer_properties(writer_properties);
    let mut keys = KeyCheck::new(&output, &model.key, table)?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(df_error(table))?;
        let columns = batch
            .columns()
            .iter()
            .zip(output.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    deltalake::arrow::compute::cast(c, f.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Other(e.to_string()))?;
        let batch = RecordBatch::try_new(output.clone(), columns)
            .map_err(|e| Error::Other(e.to_string()))?;
        if batch.num_rows() == 0 {
            continue;
        }
        keys.check(&batch)?;
        metrics.rows_written += batch.num_rows() as u64;
        writer
            .write(batch)
            .await
            .map_err(|e| storage_error(&url, e))?;
    }
    let adds = writer.flush().await.map_err(|e| storage_error(&url, e))?;

    // One commit: the replaced files out, the new ones in, the inputs' versions recorded.
    let removes = match dates {
        None => removals(&gold, |_| true)?,
        Some(d) => {
            let column = model.date_column.clone().unwrap_or_default();
            removals(&gold, |file| {
                file.partition
                    .get(&column)
                    .cloned()
                    .flatten()
                    .and_then(|v| changes::parse_day(&v))
                    .is_some_and(|day| d.contains(&day))
            })?
        }
    };
    metrics.files_removed = removes.len();
    let mut actions: Vec<Action> = removes.into_iter().map(Action::Remove).collect();
    actions.extend(adds.into_iter().map(Action::Add));
    if !same_schema {
        let kernel = kernel_schema(&output)?;
        let snapshot = gold.snapshot().map_err(|e| Error::Other(e.to_string()))?;
        let m = snapshot
            .metadata()
            .clone()
            .with_schema(&kernel)
            .map_err(|e| Error::Other(e.to_string()))?;
        if current_partitions != model.partition_by {
            return Err(Error::Usage(format!(
                "the partitioning of `{table}` changed ({current_partitions:?} → {:?}): \
                 drop the table's directory and run again",
                model.partition_by
            )));
        }
        actions.push(Action::Metadata(m));
    }
    let mut txns = vec![Transaction::new(
        DEFINITION_APP_ID,
        (model.fingerprint >> 1) as i64,
    )];
    for (_, input, t) in &opened.inputs {
        let read = t.version().map_or(-1, |v| v as i64);
        txns.push(Transaction::new(input_app_id(input), read));
    }
    let finished_at = runlog::now();
    let mut so_far = metrics.clone();
    so_far.finished_at = Some(finished_at);
    let run_record = record(pipeline, ctx, table, finished_at, &so_far, None);
    let info = HashMap::from([(
        "medallion".to_string(),
        json!({
            "run_id": ctx.run_id, "layer": "gold", "table": table.to_string(),
            "engine_version": medallion_core::run::ENGINE_VERSION,
            "inputs": metrics.inputs, "mode": metrics.mode, "reason": metrics.reason,
            "dates_recomputed": metrics.dates_recomputed, "dates": metrics.dates,
            "rows_written": metrics.rows_written, "definition": metrics.definition,
            runlog::COMMIT_INFO_KEY: run_record.commit_info(true),
        }),
    )]);
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: Some(model.partition_by.clone()).filter(|p| !p.is_empty()),
        predicate: dates.filter(|d| !d.is_empty()).map(|d| {
            let list: Vec<String> = d.iter().map(|x| models::date_literal(*x)).collect();
            format!(
                "{} IN ({})",
                model.date_column.clone().unwrap_or_default(),
                list.join(", ")
            )
        }),
    };
    crash_point("gold.before_commit");
    crash_point(&format!("{table}.before_commit"));
    let version = commit(&gold, actions, txns, info, operation, ctx.commit_retries)
        .await
        .map_err(|e| {
            medallion_core::table::commit_error(
                &url,
                &e,
                "nothing was changed, a re-run completes it",
            )
        })?;
    crash_point("gold.after_commit");
    crash_point(&format!("{table}.after_commit"));
    metrics.version = Some(version);
    metrics.finished_at = Some(finished_at);
    metrics.seconds = started.elapsed().as_secs_f64();
    info!(table = %table, version, rows = metrics.rows_written, mode = %metrics.mode, "committed");
    Ok(())
}

/// Checks that no two written rows share a key.
struct KeyCheck {
    columns: Vec<usize>,
    converter: Option<RowConverter>,
    seen: HashSet<u128>,
    table: TableRef,
    names: Vec<String>,
}

impl KeyCheck {
    fn new(schema: &SchemaRef, key: &[String], table: &TableRef) -> Result<Self> {
        let mut columns = Vec::new();
        for k in key {
            columns.push(schema.index_of(k).map_err(|_| {
                Error::Usage(format!(
                    "`{table}`: key column `{k}` is not a column of the model"
                ))
            })?);
        }
        let converter = if columns.is_empty() {
            None
        } else {
            Some(
                RowConverter::new(
                    columns
                        .iter()
                        .map(|i| SortField::new(schema.field(*i).data_type().clone()))
                        .collect(),
                )
                .map_err(|e| Error::Other(e.to_string()))?,
            )
        };
        Ok(Self {
            columns,
            converter,
            seen: HashSet::new(),
            table: table.clone(),
            names: key.to_vec(),
        })
    }

    fn check(&mut self, batch: &RecordBatch) -> Result<()> {
        let Some(converter) = &self.converter else {
            return Ok(());
        };
        let arrays: Vec<_> = self
            .columns
            .iter()
            .map(|i| batch.column(*i).clone())
            .collect();
        let rows = converter
            .convert_columns(&arrays)
            .map_err(|e| Error::Other(e.to_string()))?;
        for (i, row) in rows.iter().enumerate() {
            if !self
                .seen
                .insert(twox_hash::XxHash3_128::oneshot(row.as_ref()))
            {
                let shown: Vec<String> = self
                    .columns
                    .iter()
                    .map(|c| {
                        deltalake::arrow::util::display::array_value_to_string(batch.column(*c), i)
                            .unwrap_or_default()
                    })
                    .collect();
                return Err(Error::DataQuality(format!(
                    "`{}`: key ({}) = ({}) appears more than once; nothing was committed",
                    self.table,
                    self.names.join(", "),
                    shown.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// `name type, ...` for messages.
fn describe_schema(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The type a Gold column is stored with: view types as their plain forms, which every
/// Delta reader understands.
fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}

/// The credited totals of the built-in models: the touchpoint store brought up to date with
/// the events input, then credited bucket by bucket, two buckets at a time. Every built-in
/// model of a run reads the same totals (all dates, all three kinds), computed once per
/// store version and settings.
async fn credited(
    session: &SessionContext,
    pipeline: &Pipeline,
    run: &RunContext,
    opened: &Opened,
    model: &Model,
) -> Result<Arc<Totals>> {
    type Cached = Option<(String, Arc<Totals>)>;
    static CACHE: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
    let (name, events_ref, events) = opened
        .inputs
        .iter()
        .find(|(name, _, _)| name == "events")
        .ok_or_else(|| Error::Usage("the model has no `events` input".into()))?;
    let store = touchpoints::sync(
        pipeline,
        events_ref,
        events,
        session,
        name,
        &model.settings,
        run,
    )
    .await?;
    let key = format!(
        "{} {:?} {:?}",
        store.table_url(),
        store.version(),
        model.settings
    );
    if let Some((k, totals)) = CACHE.lock().expect("the cache lock").as_ref()
        && *k == key
    {
        return Ok(totals.clone());
    }
    let started = Instant::now();
    let mut parts = futures::stream::iter(0..touchpoints::BUCKETS)
        .map(|bucket| {
            let store = &store;
            let settings = model.settings.clone();
            async move {
                let t = Instant::now();
                let data = touchpoints::read_bucket(store, bucket).await?;
                let read = t.elapsed().as_secs_f64();
                tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    let mut totals = Totals::default();
                    credit::credit_bucket(&data, &settings, &mut totals);
                    tracing::trace!(
                        bucket,
                        read,
                        credit = t.elapsed().as_secs_f64(),
                        "bucket credited"
                    );
                    totals
                })
                .await
                .map_err(|e| Error::Other(format!("crediting bucket {bucket}: {e}")))
            }
        })
        .buffer_unordered(2);
    let mut totals = Totals::default();
    while let Some(part) = parts.next().await {
        totals.merge(part?);
    }
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "touchpoints credited"
    );
    let totals = Arc::new(totals);
    *CACHE.lock().expect("the cache lock") = Some((key, totals.clone()));
    Ok(totals)
}

/// Each campaign's channel, from the `campaigns` input.
async fn channels(session: &SessionContext, table: &TableRef) -> Result<HashMap<String, String>> {
    let err = df_error(table);
    let batches = session
        .sql(models::CHANNELS)
        .await
        .map_err(&err)?
        .collect()
        .await
        .map_err(&err)?;
    let mut out = HashMap::new();
    for batch in batches {
        let id = deltalake::arrow::compute::cast(batch.column(0), &DataType::Utf8)
            .map_err(|e| Error::Other(e.to_string()))?;
        let channel = deltalake::arrow::compute::cast(batch.column(1), &DataType::Utf8)
            .map_err(|e| Error::Other(e.to_string()))?;
        let (id, channel) = (id.as_string::<i32>(), channel.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if channel.is_valid(row) {
                out.insert(id.value(row).to_string(), channel.value(row).to_string());
            }
        }
    }
    Ok(out)
}

/// The channel of a credited campaign (`None`: the direct channel).
fn channel_of<'a>(
    campaign: Option<u32>,
    totals: &Totals,
    channels: &'a HashMap<String, String>,
    s: &'a Settings,
) -> &'a str {
    match campaign {
        None => &s.direct,
        Some(c) => channels
            .get(totals.campaign(c))
            .map_or("unknown", String::as_str),
    }
}

fn batch_of(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::Other(e.to_string()))
}

/// `wide(date, channel, campaign_id, c_<model>, r_<model>…)`.
fn wide_batch(
    totals: &Totals,
    channels: &HashMap<String, String>,
    s: &Settings,
    in_dates: impl Fn(i32) -> bool,
) -> Result<RecordBatch> {
    let mut keys: Vec<_> = totals.wide.keys().filter(|k| in_dates(k.0)).collect();
    keys.sort();
    let mut fields = vec![
        Field::new("date", DataType::Date32, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from_iter_values(keys.iter().map(|k| k.0))),
        Arc::new(StringArray::from_iter_values(
            keys.iter().map(|k| channel_of(k.1, totals, channels, s)),
        )),
        Arc::new(StringArray::from_iter(
            keys.iter().map(|k| k.1.map(|c| totals.campaign(c))),
        )),
    ];
    for (m, model) in medallion_config::AttributionModel::ALL.iter().enumerate() {
        let name = models::model_name(*model);
        for (k, prefix) in ["c", "r"].iter().enumerate() {
            fields.push(Field::new(
                format!("{prefix}_{name}"),
                DataType::Float64,
                true,
            ));
            columns.push(Arc::new(Float64Array::from_iter_values(
                keys.iter().map(|key| totals.wide[*key][2 * m + k]),
            )));
        }
    }
    batch_of(fields, columns)
}

/// `conv(date, campaign_id, conversions, revenue_usd)`: last-touch conversions.
fn conv_batch(totals: &Totals, in_dates: impl Fn(i32) -> bool) -> Result<RecordBatch> {
    let mut keys: Vec<_> = totals.last_touch.keys().filter(|k| in_dates(k.0)).collect();
    keys.sort();
    batch_of(
        vec![
            Field::new("date", DataType::Date32, true),
            Field::new("campaign_id", DataType::Utf8, true),
            Field::new("conversions", DataType::Int64, true),
            Field::new("revenue_usd", DataType::Float64, true),
        ],
        vec![
            Arc::new(Date32Array::from_iter_values(keys.iter().map(|k| k.0))),
            Arc::new(StringArray::from_iter_values(
                keys.iter().map(|k| totals.campaign(k.1)),
            )),
            Arc::new(Int64Array::from_iter_values(
                keys.iter().map(|k| totals.last_touch[*k].0),
            )),
            Arc::new(Float64Array::from_iter_values(
                keys.iter().map(|k| totals.last_touch[*k].1),
            )),
        ],
    )
}

/// `customers(month, channel, new_customers)`.
fn customers_batch(
    totals: &Totals,
    channels: &HashMap<String, String>,
    s: &Settings,
) -> Result<RecordBatch> {
    let mut per_channel: BTreeMap<(i32, String), i64> = BTreeMap::new();
    for ((month, campaign), n) in &totals.first_purchases {
        *per_channel
            .entry((
                *month,
                channel_of(*campaign, totals, channels, s).to_string(),
            ))
            .or_default() += n;
    }
    batch_of(
        vec![
            Field::new("month", DataType::Date32, true),
            Field::new("channel", DataType::Utf8, true),
            Field::new("new_customers", DataType::Int64, true),
        ],
        vec![
            Arc::new(Date32Array::from_iter_values(
                per_channel.keys().map(|k| k.0),
            )),
            Arc::new(StringArray::from_iter_values(
                per_channel.keys().map(|k| k.1.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(per_channel.values().copied())),
        ],
    )
}
