//! Row-level lineage (`medallion lineage trace`): for selected Gold rows, the Silver rows
//! behind them, the Bronze version that ingested each, and the raw landed line.
//!
//! The Gold table is read at the requested version and its inputs at the versions that
//! version's run read (from the commit info), so the trace shows the data the number was
//! computed from, not today's. Built-in models are traced by their definition (SPEC 4b):
//! `attribution` rows by the purchases of the date and the touches each model credited to the
//! row's campaign; `campaign_daily` rows by the ad spend rows of the date and campaign and
//! the purchases whose last touch was the campaign; `channel_cac` rows by the first purchases
//! of the month whose last touch was the channel and the spend rows of the channel. SQL
//! models made of select, filter, join and aggregate are traced through their logical plan:
//! the input rows whose group keys (or selected columns) equal the row's, followed into Gold
//! inputs recursively. Anything else is reported as not row-traceable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};

use deltalake::datafusion::object_store::ObjectStoreExt as _;

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, lit};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use medallion_config::{AttributionModel, Builtin, GoldTable, Layer, TableRef};
use medallion_core::{Error, Pipeline, Result};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::credit::{MODELS, decay, model_weights};
use crate::models::{CHANNELS, DAY_US, Settings, model_name};

/// What to trace.
#[derive(Debug, Clone)]
pub struct TraceRequest {
    /// A SQL predicate over the Gold table's columns.
    pub predicate: String,
    /// The Gold table's version (latest when `None`).
    pub version: Option<i64>,
    /// Most Gold rows traced.
    pub limit: usize,
    /// Most source rows listed per Gold row (all are counted).
    pub max_sources: usize,
}

/// The trace of a selection of Gold rows.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// `layer.table` traced.
    pub table: String,
    /// Its version.
    pub version: i64,
    /// The input versions read (those the version's run recorded).
    pub inputs: BTreeMap<String, Option<i64>>,
    /// Whether rows could be traced; when not, why.
    pub traceable: bool,
    /// Why the model is not row-traceable.
    pub note: Option<String>,
    /// Each selected row and what is behind it.
    pub rows: Vec<TracedRow>,
}

/// One Gold row and the rows behind it.
#[derive(Debug, Clone, Serialize)]
pub struct TracedRow {
    /// The Gold row, column by column.
    pub row: Map<String, Value>,
    /// The source rows behind it (at most `max_sources` listed).
    pub sources: Vec<SourceRow>,
    /// Source rows found in all.
    pub total_sources: usize,
    /// The row's figures recomputed from the sources, when the model allows it.
    pub check: Option<String>,
}

/// A Silver row behind a Gold row, down to its raw line.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRow {
    /// `layer.table` of the row.
    pub table: String,
    /// What the row is to the Gold row (`purchase`, `touch`, `spend`, `row`).
    pub role: String,
    /// The row's key (`event_id=…`).
    pub key: String,
    /// The share of a conversion it carries (attribution, conversions).
    pub credit: Option<f64>,
    /// The Gold rows of an input Gold table this was found through (SQL models over Gold).
    pub via: Option<String>,
    /// The Bronze version that ingested it.
    pub bronze_version: Option<i64>,
    /// The landed file.
    pub file: Option<String>,
    /// Its line (record) in the file.
    pub line: Option<i64>,
    /// The raw line as landed.
    pub raw: Option<String>,
}

/// Traces the Gold rows of `table` the predicate selects.
pub async fn trace(pipeline: &Pipeline, table: &TableRef, request: &TraceRequest) -> Result<Trace> {
    let def = crate::definition(pipeline, table)?;
    let nodes = medallion_core::lineage::upstream(pipeline, table, request.version).await?;
    let node = nodes
        .first()
        .ok_or_else(|| Error::Other(format!("no lineage recorded for `{table}`")))?;
    let mut pinned: BTreeMap<TableRef, u64> = BTreeMap::new();
    pinned.insert(table.clone(), node.version as u64);
    // Every table upstream at the version that was read (the nearest records first).
    for n in &nodes {
        if let Ok(t) = n.table.parse::<TableRef>() {
            pinned.entry(t).or_insert(n.version as u64);
        }
    }
    let session = medallion_core::catalog::session(pipeline, &pinned).await?;
    let mut out = Trace {
        table: table.to_string(),
        version: node.version,
        inputs: node.inputs.iter().cloned().collect(),
        traceable: true,
        note: None,
        rows: Vec::new(),
    };
    let selected = select(&session, table, &request.predicate, request.limit).await?;
    let settings = Settings::from_config(&pipeline.config.attribution);
    let mut tracer = Tracer {
        pipeline,
        session: &session,
        settings,
        max_sources: request.max_sources,
    };
    match (&def.builtin, &def.sql) {
        (Some(b), _) => {
            for row in selected {
                out.rows.push(tracer.builtin(def, b.value, row).await?);
            }
        }
        (None, Some(sql)) => match tracer.sql_model(&sql.value, &selected).await {
            Ok(rows) => out.rows = rows,
            Err(Untraceable(why)) => {
                out.traceable = false;
                out.note = Some(why);
                out.rows = selected
                    .into_iter()
                    .map(|row| TracedRow {
                        row,
                        sources: Vec::new(),
                        total_sources: 0,
                        check: None,
                    })
                    .collect();
            }
        },
        (None, None) => {
            out.traceable = false;
            out.note = Some("the table has neither SQL nor a built-in model".into());
        }
    }
    tracer.fill_raw(&mut out.rows).await?;
    Ok(out)
}

/// Why a SQL model cannot be traced row by row.
struct Untraceable(String);

impl From<Error> for Untraceable {
    fn from(e: Error) -> Self {
        Untraceable(e.to_string())
    }
}

/// The selected rows of `table` (at most `limit`), column by column.
async fn select(
    session: &SessionContext,
    table: &TableRef,
    predicate: &str,
    limit: usize,
) -> Result<Vec<Map<String, Value>>> {
    let sql = format!("SELECT * FROM {table} WHERE {predicate}");
    let rows = query(session, &sql)
        .await
        .map_err(|e| Error::Usage(format!("--where `{predicate}` on `{table}`: {e}")))?;
    if rows.len() > limit {
        return Err(Error::Usage(format!(
            "{} rows of `{table}` match `{predicate}`; a trace covers at most {limit} \
             (narrow --where or raise --limit)",
            rows.len()
        )));
    }
    Ok(rows)
}

/// Runs a query and returns its rows as JSON objects.
async fn query(session: &SessionContext, sql: &str) -> Result<Vec<Map<String, Value>>> {
    let batches = session
        .sql(sql)
        .await
        .map_err(|e| Error::Other(e.to_string()))?
        .collect()
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    to_json(&batches)
}

fn to_json(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>> {
    let mut writer = deltalake::arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        writer
            .write(b)
            .map_err(|e| Error::Other(format!("trace: {e}")))?;
    }
    writer
        .finish()
        .map_err(|e| Error::Other(format!("trace: {e}")))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Other(format!("trace: {e}")))
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// An event of the events table as the trace needs it.
#[derive(Debug, Clone)]
struct Event {
    event_id: Option<String>,
    identity: Option<String>,
    us: i64,
    campaign: Option<String>,
    revenue: f64,
    origin: Origin,
}

/// Where a Silver row came from.
#[derive(Debug, Clone, Default)]
struct Origin {
    bronze_version: Option<i64>,
    file: Option<String>,
    line: Option<i64>,
}

impl Origin {
    fn of(row: &Map<String, Value>) -> Self {
        Self {
            bronze_version: row.get("_bronze_version").and_then(Value::as_i64),
            file: row
                .get("_source_file")
                .and_then(Value::as_str)
                .map(str::to_string),
            line: row.get("_source_line").and_then(Value::as_i64),
        }
    }
}

fn text(row: &Map<String, Value>, column: &str) -> Option<String> {
    match row.get(column)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn event(row: &Map<String, Value>) -> Event {
    Event {
        event_id: text(row, "event_id"),
        identity: text(row, "identity"),
        us: row.get("us").and_then(Value::as_i64).unwrap_or_default(),
        campaign: text(row, "campaign_id"),
        revenue: row
            .get("revenue_usd")
            .and_then(Value::as_f64)
            .unwrap_or_default(),
        origin: Origin::of(row),
    }
}

/// Days since the epoch of a `YYYY-MM-DD` value.
fn day_of(value: Option<&Value>) -> Option<i32> {
    let d = chrono::NaiveDate::parse_from_str(value?.as_str()?, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some((d - epoch).num_days() as i32)
}

/// A purchase and each model's credit to each of its touches (in time order).
struct Credited {
    purchase: Event,
    touches: Vec<Event>,
    /// `weights[j][m]`: model `m`'s share for touch `j`.
    weights: Vec<[f64; MODELS]>,
}

struct Tracer<'a> {
    pipeline: &'a Pipeline,
    session: &'a SessionContext,
    settings: Settings,
    max_sources: usize,
}

impl Tracer<'_> {
    fn input(&self, def: &GoldTable, name: &str) -> String {
        def.inputs
            .iter()
            .find(|(k, _)| k.value.as_str() == name)
            .map_or_else(|| format!("silver.{name}"), |(_, t)| t.value.to_string())
    }

    /// The campaign → channel map of the campaigns input.
    async fn channels(&self, campaigns: &str) -> Result<HashMap<String, String>> {
        let sql = CHANNELS.replace("FROM campaigns", &format!("FROM {campaigns}"));
        Ok(query(self.session, &sql)
            .await?
            .iter()
            .filter_map(|r| Some((text(r, "campaign_id")?, text(r, "channel")?)))
            .collect())
    }

    /// The purchases `filter` selects, each with its touches in the window and the models'
    /// credits (SPEC 4b), from the events table.
    async fn credited(&self, events: &str, filter: &str) -> Result<Vec<Credited>> {
        let s = &self.settings;
        let lineage = "_source_file, _source_line, _bronze_version";
        let purchases: Vec<Event> = query(
            self.session,
            &format!(
                "SELECT event_id, identity, CAST(event_time AS BIGINT) AS us, revenue_usd, {lineage} \
                 FROM {events} WHERE event_type = {} AND event_time IS NOT NULL AND ({filter})",
                quote(&s.conversion_type)
            ),
        )
        .await?
        .iter()
        .map(event)
        .collect();
        let identities: BTreeSet<&str> = purchases
            .iter()
            .filter_map(|p| p.identity.as_deref())
            .collect();
        let mut touches: HashMap<String, Vec<Event>> = HashMap::new();
        if !identities.is_empty() {
            let lo = purchases.iter().map(|p| p.us).min().unwrap_or(0) - s.window_us;
            let hi = purchases.iter().map(|p| p.us).max().unwrap_or(0);
            let types: Vec<String> = s.touch_types.iter().map(|t| quote(t)).collect();
            let ids: Vec<String> = identities.iter().map(|i| quote(i)).collect();
            let rows = query(
                self.session,
                &format!(
                    "SELECT event_id, identity, CAST(event_time AS BIGINT) AS us, campaign_id, {lineage} \
                     FROM {events} WHERE event_type IN ({}) AND campaign_id IS NOT NULL \
                     AND identity IN ({}) AND CAST(event_time AS BIGINT) BETWEEN {lo} AND {hi}",
                    types.join(", "),
                    ids.join(", ")
                ),
            )
            .await?;
            for r in &rows {
                let e = event(r);
                if let Some(who) = e.identity.clone() {
                    touches.entry(who).or_default().push(e);
                }
            }
            for list in touches.values_mut() {
                list.sort_by(|a, b| (a.us, &a.event_id).cmp(&(b.us, &b.event_id)));
                list.dedup_by(|a, b| (a.us, &a.event_id) == (b.us, &b.event_id));
            }
        }
        let half_life_us = s.half_life_days * DAY_US as f64;
        let mut out: Vec<Credited> = purchases
            .into_iter()
            .map(|p| {
                let window: Vec<Event> = p
                    .identity
                    .as_ref()
                    .and_then(|who| touches.get(who))
                    .map(|list| {
                        list.iter()
                            .filter(|t| t.us >= p.us.saturating_sub(s.window_us) && t.us <= p.us)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                let decays: Vec<f64> = window
                    .iter()
                    .map(|t| decay(t.us, p.us, half_life_us))
                    .collect();
                let total: f64 = decays.iter().sum();
                let weights = (0..window.len())
                    .map(|j| model_weights(j, window.len(), decays[j] / total, s))
                    .collect();
                Credited {
                    purchase: p,
                    touches: window,
                    weights,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (a.purchase.us, &a.purchase.event_id).cmp(&(b.purchase.us, &b.purchase.event_id))
        });
        Ok(out)
    }

    fn event_row(&self, events: &str, role: &str, e: &Event, credit: Option<f64>) -> SourceRow {
        SourceRow {
            table: events.to_string(),
            role: role.to_string(),
            key: format!("event_id={}", e.event_id.as_deref().unwrap_or("NULL")),
            credit,
            via: None,
            bronze_version: e.origin.bronze_version,
            file: e.origin.file.clone(),
            line: e.origin.line,
            raw: None,
        }
    }

    async fn builtin(
        &mut self,
        def: &GoldTable,
        builtin: Builtin,
        row: Map<String, Value>,
    ) -> Result<TracedRow> {
        let events = self.input(def, "events");
        let channels = self.channels(&self.input(def, "campaigns")).await?;
        let channel_of = |c: &Option<String>| match c {
            None => self.settings.direct.clone(),
            Some(c) => channels.get(c).cloned().unwrap_or_else(|| "unknown".into()),
        };
        let campaign = text(&row, "campaign_id");
        let mut sources = Vec::new();
        let check;
        match builtin {
            Builtin::Attribution => {
                let day = day_of(row.get("date"))
                    .ok_or_else(|| Error::Other("attribution row without a date".into()))?;
                let model = text(&row, "model").unwrap_or_default();
                // The order of the weights (see `credit::model_weights`).
                let m = [
                    AttributionModel::FirstTouch,
                    AttributionModel::LastTouch,
                    AttributionModel::Linear,
                    AttributionModel::TimeDecay,
                    AttributionModel::PositionBased,
                ]
                .iter()
                .position(|m| model_name(*m) == model)
                .ok_or_else(|| Error::Other(format!("unknown model `{model}`")))?;
                let filter = format!(
                    "CAST(event_time AS DATE) = {}",
                    crate::models::date_literal(day)
                );
                let (mut conversions, mut revenue) = (0.0, 0.0);
                for c in self.credited(&events, &filter).await? {
                    if c.touches.is_empty() {
                        if campaign.is_none() {
                            conversions += 1.0;
                            revenue += c.purchase.revenue;
                            sources.push(self.event_row(
                                &events,
                                "purchase (direct)",
                                &c.purchase,
                                Some(1.0),
                            ));
                        }
                        continue;
                    }
                    let credited: Vec<(usize, f64)> = (0..c.touches.len())
                        .map(|j| (j, c.weights[j][m]))
                        .filter(|&(j, w)| w > 0.0 && c.touches[j].campaign == campaign)
                        .collect();
                    if credited.is_empty() {
                        continue;
                    }
                    let share: f64 = credited.iter().map(|(_, w)| w).sum();
                    conversions += share;
                    revenue += share * c.purchase.revenue;
                    sources.push(self.event_row(&events, "purchase", &c.purchase, Some(share)));
                    for (j, w) in credited {
                        sources.push(self.event_row(&events, "touch", &c.touches[j], Some(w)));
                    }
                }
                let channel = text(&row, "channel").unwrap_or_default();
                if channel != channel_of(&campaign) {
                    return Err(Error::Other(format!(
                        "the row's channel `{channel}` is not its campaign's (`{}`)",
                        channel_of(&campaign)
                    )));
                }
                check = Some(agreement(
                    &row,
                    &[("conversions", conversions), ("revenue_usd", revenue)],
                ));
            }
            Builtin::CampaignDaily => {
                let day = day_of(row.get("date"))
                    .ok_or_else(|| Error::Other("campaign_daily row without a date".into()))?;
                let date = crate::models::date_literal(day);
                let spend = self.input(def, "ad_spend");
                let campaign_filter = campaign.as_deref().map_or_else(
                    || "campaign_id IS NULL".to_string(),
                    |c| format!("campaign_id = {}", quote(c)),
                );
                let rows = query(
                    self.session,
                    &format!(
                        "SELECT date, platform, campaign_id, CAST(spend_usd AS DOUBLE) AS spend_usd, \
                         _source_file, _source_line, _bronze_version FROM {spend} \
                         WHERE date = {date} AND {campaign_filter} ORDER BY platform"
                    ),
                )
                .await?;
                let spent = spend_sources(&spend, &rows, &mut sources);
                let filter = format!("CAST(event_time AS DATE) = {date}");
                let (mut conversions, mut revenue) = (0i64, 0.0);
                for c in self.credited(&events, &filter).await? {
                    let Some(last) = c.touches.last() else {
                        continue;
                    };
                    if last.campaign != campaign {
                        continue;
                    }
                    conversions += 1;
                    revenue += c.purchase.revenue;
                    sources.push(self.event_row(&events, "purchase", &c.purchase, Some(1.0)));
                    sources.push(self.event_row(&events, "last touch", last, Some(1.0)));
                }
                check = Some(agreement(
                    &row,
                    &[
                        ("spend_usd", spent),
                        ("conversions", conversions as f64),
                        ("revenue_usd", revenue),
                    ],
                ));
            }
            Builtin::ChannelCac => {
                let month = day_of(row.get("month"))
                    .ok_or_else(|| Error::Other("channel_cac row without a month".into()))?;
                let next = crate::credit::month_of(month + 31);
                let channel = text(&row, "channel").unwrap_or_default();
                let (from, to) = (
                    crate::models::date_literal(month),
                    crate::models::date_literal(next),
                );
                // Purchases of the month; a customer is new when it is the identity's first.
                let filter = format!(
                    "identity IS NOT NULL AND CAST(event_time AS DATE) >= {from} AND CAST(event_time AS DATE) < {to}"
                );
                let credited = self.credited(&events, &filter).await?;
                let ids: BTreeSet<String> = credited
                    .iter()
                    .filter_map(|c| c.purchase.identity.as_ref().map(|i| quote(i)))
                    .collect();
                let mut earlier: BTreeSet<String> = BTreeSet::new();
                if !ids.is_empty() {
                    let list: Vec<String> = ids.into_iter().collect();
                    for r in query(
                        self.session,
                        &format!(
                            "SELECT DISTINCT identity FROM {events} WHERE event_type = {} \
                             AND identity IN ({}) AND CAST(event_time AS DATE) < {from}",
                            quote(&self.settings.conversion_type),
                            list.join(", ")
                        ),
                    )
                    .await?
                    {
                        if let Some(i) = text(&r, "identity") {
                            earlier.insert(i);
                        }
                    }
                }
                let mut seen: BTreeSet<String> = BTreeSet::new();
                let mut customers = 0i64;
                for c in &credited {
                    let Some(who) = c.purchase.identity.clone() else {
                        continue;
                    };
                    if earlier.contains(&who) || !seen.insert(who) {
                        continue;
                    }
                    let last = c.touches.last();
                    if channel_of(&last.and_then(|t| t.campaign.clone())) != channel {
                        continue;
                    }
                    customers += 1;
                    sources.push(self.event_row(&events, "first purchase", &c.purchase, Some(1.0)));
                    if let Some(t) = last {
                        sources.push(self.event_row(&events, "last touch", t, Some(1.0)));
                    }
                }
                let spend = self.input(def, "ad_spend");
                let campaigns = self.input(def, "campaigns");
                let rows = query(
                    self.session,
                    &format!(
                        "SELECT a.date, a.platform, a.campaign_id, CAST(a.spend_usd AS DOUBLE) AS spend_usd, \
                         a._source_file, a._source_line, a._bronze_version \
                         FROM {spend} a LEFT JOIN ({channels}) k ON a.campaign_id = k.campaign_id \
                         WHERE a.date >= {from} AND a.date < {to} AND a.campaign_id IS NOT NULL \
                         AND coalesce(k.channel, 'unknown') = {ch} ORDER BY a.date, a.platform, a.campaign_id",
                        channels = CHANNELS.replace("FROM campaigns", &format!("FROM {campaigns}")),
                        ch = quote(&channel),
                    ),
                )
                .await?;
                let spent = spend_sources(&spend, &rows, &mut sources);
                check = Some(agreement(
                    &row,
                    &[("new_customers", customers as f64), ("spend_usd", spent)],
                ));
            }
        }
        let total = sources.len();
        sources.truncate(self.max_sources);
        Ok(TracedRow {
            row,
            sources,
            total_sources: total,
            check,
        })
    }

    /// Traces the selected rows of a SQL model through its logical plan.
    async fn sql_model(
        &mut self,
        sql: &str,
        selected: &[Map<String, Value>],
    ) -> std::result::Result<Vec<TracedRow>, Untraceable> {
        let plan = self
            .session
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(|e| Untraceable(e.to_string()))?;
        let shape = Shape::of(&plan)?;
        let mut out = Vec::new();
        for row in selected {
            // The input rows behind this output row: those whose keys equal the row's.
            let mut predicate: Option<Expr> = None;
            for (output, input) in &shape.keys {
                let value = row.get(output).cloned().unwrap_or(Value::Null);
                let term = match scalar(&value) {
                    None => input.clone().is_null(),
                    Some(v) => input.clone().eq(lit(v)),
                };
                predicate = Some(match predicate {
                    None => term,
                    Some(p) => p.and(term),
                });
            }
            let mut builder = LogicalPlanBuilder::from(shape.input.clone());
            if let Some(p) = predicate {
                builder = builder.filter(p).map_err(|e| Untraceable(e.to_string()))?;
            }
            let plan = builder.build().map_err(|e| Untraceable(e.to_string()))?;
            let frame = DataFrame::new(self.session.state(), plan);
            let batches = frame
                .collect()
                .await
                .map_err(|e| Untraceable(e.to_string()))?;
            let schema = shape.input.schema().clone();
            let mut sources = Vec::new();
            // A joined row of a dimension shows up with every row it joined: listed once.
            let mut seen = std::collections::HashSet::new();
            for batch in &batches {
                let rows = to_json_qualified(batch, &schema)?;
                for r in rows {
                    for scan in &shape.scans {
                        for source in self.scan_sources(scan, &r).await? {
                            let identity = format!(
                                "{}|{}|{:?}|{:?}|{:?}|{}",
                                source.table,
                                source.key,
                                source.file,
                                source.line,
                                source.via,
                                source.role
                            );
                            if seen.insert(identity) {
                                sources.push(source);
                            }
                        }
                    }
                }
            }
            let total = sources.len();
            sources.truncate(self.max_sources);
            out.push(TracedRow {
                row: row.clone(),
                sources,
                total_sources: total,
                check: None,
            });
        }
        Ok(out)
    }

    /// The sources of one input row through one scanned table: the row itself for Silver,
    /// the Gold row's own trace for Gold.
    async fn scan_sources(
        &mut self,
        scan: &Scan,
        row: &Map<String, Value>,
    ) -> std::result::Result<Vec<SourceRow>, Untraceable> {
        let get = |c: &str| row.get(&format!("{}.{c}", scan.qualifier)).cloned();
        match scan.table.layer {
            Layer::Silver => {
                let o = Origin {
                    bronze_version: get("_bronze_version").and_then(|v| v.as_i64()),
                    file: get("_source_file").and_then(|v| v.as_str().map(str::to_string)),
                    line: get("_source_line").and_then(|v| v.as_i64()),
                };
                let key = self
                    .pipeline
                    .config
                    .silver_table(&scan.table.name)
                    .map(|d| {
                        d.key
                            .iter()
                            .map(|k| {
                                let v = get(k.as_str()).unwrap_or(Value::Null);
                                format!(
                                    "{k}={}",
                                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                Ok(vec![SourceRow {
                    table: scan.table.to_string(),
                    role: "row".into(),
                    key,
                    credit: None,
                    via: None,
                    bronze_version: o.bronze_version,
                    file: o.file,
                    line: o.line,
                    raw: None,
                }])
            }
            Layer::Gold => {
                let def = crate::definition(self.pipeline, &scan.table)?;
                let mut row_of = Map::new();
                for k in &def.key {
                    row_of.insert(
                        k.as_str().to_string(),
                        get(k.as_str()).unwrap_or(Value::Null),
                    );
                }
                let via = row_of
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.as_str().map_or_else(|| v.to_string(), str::to_string)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut full = Map::new();
                for (k, v) in row {
                    if let Some(c) = k.strip_prefix(&format!("{}.", scan.qualifier)) {
                        full.insert(c.to_string(), v.clone());
                    }
                }
                let traced = match (&def.builtin, &def.sql) {
                    (Some(b), _) => Box::pin(self.builtin(def, b.value, full)).await?,
                    _ => {
                        return Err(Untraceable(format!(
                            "it reads `{}`, a SQL model; traces follow one SQL model into built-in models only",
                            scan.table
                        )));
                    }
                };
                Ok(traced
                    .sources
                    .into_iter()
                    .map(|mut s| {
                        s.via = Some(format!("{} {via}", scan.table));
                        s
                    })
                    .collect())
            }
            Layer::Bronze => Err(Untraceable(format!(
                "it reads the Bronze table `{}` directly",
                scan.table
            ))),
        }
    }

    /// Reads each source row's raw line from its landed file (each file once).
    async fn fill_raw(&self, rows: &mut [TracedRow]) -> Result<()> {
        let mut wanted: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        for r in rows.iter() {
            for s in &r.sources {
                if let (Some(f), Some(l)) = (&s.file, s.line) {
                    wanted.entry(f.clone()).or_default().insert(l);
                }
            }
        }
        let landing = self.pipeline.locations.landing();
        let store = medallion_core::table::store_for(landing)?;
        let mut found: HashMap<(String, i64), String> = HashMap::new();
        for (file, lines) in wanted {
            let path = deltalake::Path::from(file.as_str());
            let bytes = match store.get(&path).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            };
            let bytes = match bytes {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(file = %file, "landed file not readable: {e}");
                    continue;
                }
            };
            for (line, text) in raw_lines(&bytes, &lines) {
                found.insert((file.clone(), line), text);
            }
        }
        for r in rows.iter_mut() {
            for s in &mut r.sources {
                if let (Some(f), Some(l)) = (&s.file, s.line) {
                    s.raw = found.get(&(f.clone(), l)).cloned();
                }
            }
        }
        Ok(())
    }
}

/// The wanted lines (1-based physical lines, gunzipped when the bytes are gzip) of a file;
/// a Parquet file has rows, not lines, and gives none.
fn raw_lines(bytes: &[u8], wanted: &BTreeSet<i64>) -> Vec<(i64, String)> {
    if bytes.starts_with(b"PAR1") {
        return Vec::new();
    }
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut reader = BufReader::new(reader);
    let last = wanted.iter().next_back().copied().unwrap_or(0);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0i64;
    while n < last {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        n += 1;
        if wanted.contains(&n) {
            let mut line = buf.as_slice();
            line = line.strip_suffix(b"\n").unwrap_or(line);
            line = line.strip_suffix(b"\r").unwrap_or(line);
            out.push((n, String::from_utf8_lossy(line).into_owned()));
        }
    }
    out
}

/// Ad-spend rows as sources; returns their total spend.
fn spend_sources(table: &str, rows: &[Map<String, Value>], out: &mut Vec<SourceRow>) -> f64 {
    let mut spent = 0.0;
    for r in rows {
        spent += r
            .get("spend_usd")
            .and_then(Value::as_f64)
            .unwrap_or_default();
        let o = Origin::of(r);
        out.push(SourceRow {
            table: table.to_string(),
            role: "spend".into(),
            key: format!(
                "date={}, platform={}, campaign_id={}",
                text(r, "date").unwrap_or_default(),
                text(r, "platform").unwrap_or_default(),
                text(r, "campaign_id").unwrap_or_default()
            ),
            credit: None,
            via: None,
            bronze_version: o.bronze_version,
            file: o.file,
            line: o.line,
            raw: None,
        });
    }
    spent
}

/// The row's figures recomputed from its sources, and whether they agree with the row
/// (1e-9 relative).
fn agreement(row: &Map<String, Value>, figures: &[(&str, f64)]) -> String {
    let mut agree = true;
    let parts: Vec<String> = figures
        .iter()
        .map(|(column, x)| {
            let y = row.get(*column).and_then(Value::as_f64).unwrap_or(0.0);
            agree &= (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
            format!("{column} {x}")
        })
        .collect();
    let verdict = if agree {
        "equal to the row"
    } else {
        "DIFFERENT from the row"
    };
    format!(
        "recomputed from these rows: {} ({verdict})",
        parts.join(", ")
    )
}

/// A JSON scalar as a literal for comparison.
fn scalar(value: &Value) -> Option<ScalarValue> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(ScalarValue::Boolean(Some(*b))),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        }),
        Value::String(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
        other => Some(ScalarValue::Utf8(Some(other.to_string()))),
    }
}

/// Rows of a batch as objects keyed by `qualifier.column` (the plan's schema qualifies each
/// column by the table or alias it comes from).
fn to_json_qualified(
    batch: &RecordBatch,
    schema: &deltalake::datafusion::common::DFSchemaRef,
) -> std::result::Result<Vec<Map<String, Value>>, Untraceable> {
    let names: Vec<String> = schema
        .iter()
        .map(|(q, f)| match q {
            Some(q) => format!("{q}.{}", f.name()),
            None => f.name().clone(),
        })
        .collect();
    let renamed = deltalake::arrow::datatypes::Schema::new(
        batch
            .schema()
            .fields()
            .iter()
            .zip(&names)
            .map(|(f, n)| f.as_ref().clone().with_name(n))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(std::sync::Arc::new(renamed), batch.columns().to_vec())
        .map_err(|e| Untraceable(e.to_string()))?;
    to_json(&[batch]).map_err(Untraceable::from)
}

/// A scanned table in a model's input and the qualifier its columns carry.
#[derive(Debug, Clone)]
struct Scan {
    table: TableRef,
    qualifier: String,
}

/// What tracing a SQL model needs from its plan: the plan under the output (the aggregate's
/// input, or the projection's), each output key column with the input expression it equals,
/// and the tables scanned.
struct Shape {
    input: LogicalPlan,
    keys: Vec<(String, Expr)>,
    scans: Vec<Scan>,
}

impl Shape {
    fn of(plan: &LogicalPlan) -> std::result::Result<Self, Untraceable> {
        // Sorts and limits on top do not change which input rows make an output row.
        let mut top = plan;
        while let LogicalPlan::Sort(_) | LogicalPlan::Limit(_) = top {
            top = top.inputs()[0];
        }
        let LogicalPlan::Projection(projection) = top else {
            return Err(Untraceable(format!(
                "its plan ends in {}, not a projection",
                top.display()
            )));
        };
        // Under the projection: an aggregate (behind an optional HAVING filter), or rows.
        let mut below = projection.input.as_ref();
        if let LogicalPlan::Filter(f) = below
            && matches!(f.input.as_ref(), LogicalPlan::Aggregate(_))
        {
            below = f.input.as_ref();
        }
        let mut keys = Vec::new();
        let input = match below {
            LogicalPlan::Aggregate(aggregate) => {
                let groups = aggregate.group_expr.len();
                let schema = aggregate.schema.clone();
                for (expr, field) in projection.expr.iter().zip(plan.schema().fields()) {
                    let inner = match expr {
                        Expr::Alias(a) => a.expr.as_ref(),
                        e => e,
                    };
                    if let Expr::Column(c) = inner
                        && let Ok(i) = schema.index_of_column(c)
                        && i < groups
                    {
                        keys.push((field.name().clone(), aggregate.group_expr[i].clone()));
                    }
                }
                if keys.len() < groups {
                    return Err(Untraceable(
                        "not every GROUP BY expression is an output column".into(),
                    ));
                }
                aggregate.input.as_ref().clone()
            }
            rows => {
                for (expr, field) in projection.expr.iter().zip(plan.schema().fields()) {
                    let inner = match expr {
                        Expr::Alias(a) => a.expr.as_ref(),
                        e => e,
                    };
                    if matches!(inner, Expr::Column(_)) {
                        keys.push((field.name().clone(), inner.clone()));
                    }
                }
                if keys.is_empty() {
                    return Err(Untraceable("no output column is an input column".into()));
                }
                rows.clone()
            }
        };
        let mut scans = Vec::new();
        collect_scans(&input, &mut scans)?;
        Ok(Self { input, keys, scans })
    }
}

/// The tables an input plan scans, through filters, joins, aliases and projections that
/// keep the scanned columns.
fn collect_scans(plan: &LogicalPlan, out: &mut Vec<Scan>) -> std::result::Result<(), Untraceable> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let name = scan.table_name.to_string();
            let table: TableRef = name.parse().map_err(|_| {
                Untraceable(format!("it reads `{name}`, not a table of the pipeline"))
            })?;
            out.push(Scan {
                table,
                qualifier: name,
            });
            Ok(())
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let mut inner = Vec::new();
            collect_scans(&alias.input, &mut inner)?;
            if inner.len() != 1 {
                return Err(Untraceable(format!(
                    "the subquery `{}` reads several tables",
                    alias.alias
                )));
            }
            out.extend(inner.into_iter().map(|s| Scan {
                table: s.table,
                qualifier: alias.alias.to_string(),
            }));
            Ok(())
        }
        LogicalPlan::Filter(_) | LogicalPlan::Join(_) => {
            for input in plan.inputs() {
                collect_scans(input, out)?;
            }
            Ok(())
        }
        other => Err(Untraceable(format!(
            "its input contains a {} step",
            other.display()
        ))),
    }
}
