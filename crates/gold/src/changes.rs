//! Which dates new input data touches: read from the input tables' commits after the
//! version a Gold table last consumed, never from a scan of the whole input.
//!
//! A commit that only adds files adds rows: each added row touches dates. A commit that
//! also removes files (a `keep: latest` table rewritten, a restated table) is compared row
//! for row: the rows in the removed files and the rows in the added files are matched as
//! multisets, and only rows present on one side touch dates. A rewrite too large to
//! compare (a rebuilt Silver table) touches every date.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, new_null_array};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use deltalake::{ObjectStore, Path};
use futures::StreamExt;
use medallion_core::parquet::StoreReader;
use medallion_core::table::{changes_data, commit_actions};
use medallion_core::{Error, Result};
use serde_json::Value;

use crate::models::DAY_US;

/// Removed bytes above which a rewrite is not compared row for row: every date is touched.
const DIFF_LIMIT_BYTES: u64 = 64 << 20;

/// The dates a change touches.
#[derive(Debug, Clone, PartialEq)]
pub enum Dates {
    /// Every date, and why.
    All(String),
    /// These days since the epoch.
    Some(BTreeSet<i32>),
}

impl Dates {
    pub fn none() -> Self {
        Dates::Some(BTreeSet::new())
    }

    pub fn merge(&mut self, other: Dates) {
        match (self, other) {
            (Dates::All(_), _) => {}
            (this, Dates::All(reason)) => *this = Dates::All(reason),
            (Dates::Some(a), Dates::Some(b)) => a.extend(b),
        }
    }
}

/// How rows of one input touch the dates of a Gold table.
#[derive(Debug, Clone)]
pub enum Impact {
    /// Changes to this input do not change the model's rows.
    None,
    /// Any change recomputes every date.
    All,
    /// Events: a conversion touches its date; a touch (a touch type, with a campaign and an
    /// identity) touches every date from its own to `window_us` later.
    Events {
        conversion: String,
        touches: Vec<String>,
        window_us: i64,
    },
    /// A row touches the date in `column` (a DATE or a timestamp) and the `after_days`
    /// following days.
    Column { column: String, after_days: i32 },
}

/// A data file added or removed by a commit.
#[derive(Debug, Clone)]
struct FileChange {
    path: String,
    size: u64,
    partition: HashMap<String, Option<String>>,
    added: bool,
}

/// The dates touched by the commits `after + 1 ..= upto` of `table`. The answer is kept
/// for the process: the Gold tables of one run reading the same input ask the same question.
pub async fn changed_dates(
    table: &DeltaTable,
    after: i64,
    upto: i64,
    impact: &Impact,
) -> Result<Dates> {
    if upto <= after || matches!(impact, Impact::None) {
        return Ok(Dates::none());
    }
    type Answers = std::sync::Mutex<Vec<(String, Dates)>>;
    static ANSWERS: Answers = std::sync::Mutex::new(Vec::new());
    let question = format!("{} {after} {upto} {impact:?}", table.table_url());
    if let Some((_, dates)) = ANSWERS
        .lock()
        .expect("the answers lock")
        .iter()
        .find(|(q, _)| *q == question)
    {
        return Ok(dates.clone());
    }
    let dates = read_changed_dates(table, after, upto, impact).await?;
    ANSWERS
        .lock()
        .expect("the answers lock")
        .push((question, dates.clone()));
    Ok(dates)
}

async fn read_changed_dates(
    table: &DeltaTable,
    after: i64,
    upto: i64,
    impact: &Impact,
) -> Result<Dates> {
    let mut files = Vec::new();
    for version in (after + 1).max(0)..=upto {
        let Some(actions) = commit_actions(table, version).await? else {
            return Ok(Dates::All(format!(
                "commit {version} of the input is no longer in its log"
            )));
        };
        for action in actions {
            for (kind, added) in [("add", true), ("remove", false)] {
                let Some(a) = action.get(kind).filter(|a| changes_data(a)) else {
                    continue;
                };
                let partition = a
                    .get("partitionValues")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                            .collect()
                    })
                    .unwrap_or_default();
                files.push(FileChange {
                    path: a["path"].as_str().unwrap_or_default().to_string(),
                    size: a["size"].as_u64().unwrap_or_default(),
                    partition,
                    added,
                });
            }
        }
    }
    if files.is_empty() {
        return Ok(Dates::none());
    }
    if matches!(impact, Impact::All) {
        return Ok(Dates::All("an input every date depends on changed".into()));
    }
    // Files added and removed by the same range cancel out (written then replaced).
    let removed: u64 = files.iter().filter(|f| !f.added).map(|f| f.size).sum();
    if removed > DIFF_LIMIT_BYTES {
        return Ok(Dates::All(format!(
            "the input was rewritten ({} MB removed)",
            removed >> 20
        )));
    }
    let schema = medallion_core::table::arrow_schema(table)?;
    let store = table.object_store();
    let partition_columns = table
        .snapshot()
        .map_err(|e| Error::Other(e.to_string()))?
        .metadata()
        .partition_columns()
        .to_vec();
    // A date partition column: the files' partition values are their dates.
    if let Impact::Column { column, after_days } = impact
        && partition_columns.contains(column)
    {
        let mut out = BTreeSet::new();
        for f in &files {
            match f.partition.get(column).cloned().flatten() {
                Some(v) => {
                    let day = parse_day(&v).ok_or_else(|| {
                        Error::Other(format!("partition value `{v}` of `{column}` is not a date"))
                    })?;
                    out.extend(day..=day + after_days);
                }
                None => return Ok(Dates::All(format!("rows with a NULL `{column}` changed"))),
            }
        }
        return Ok(Dates::Some(out));
    }
    let columns: Vec<String> = match impact {
        Impact::Events { .. } => [
            "event_id",
            "event_type",
            "event_time",
            "identity",
            "campaign_id",
            "revenue_usd",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        // Every column: any change of a row is a change.
        _ => schema
            .fields()
            .iter()
            .filter(|f| !partition_columns.contains(f.name()))
            .map(|f| f.name().clone())
            .collect(),
    };
    let wanted: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .map(|f| Field::new(c, f.data_type().clone(), true))
                    .map_err(|_| Error::Other(format!("the input has no column `{c}`")))
            })
            .collect::<Result<Vec<_>>>()?,
    ));
    let any_removed = files.iter().any(|f| !f.added);
    let mut out = BTreeSet::new();
    if !any_removed {
        for f in &files {
            let mut batches = read_file(store.clone(), &f.path, f.size, &wanted).await?;
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                let p = Prepared::new(&batch, impact)?;
                for row in 0..batch.num_rows() {
                    if let Some(range) = p.touched(row, impact) {
                        out.extend(range);
                    } else if p.null_date(row, impact) {
                        return Ok(Dates::All("rows without a date changed".into()));
                    }
                }
            }
        }
        return Ok(Dates::Some(out));
    }
    // Rows on one side only: a multiset difference of row fingerprints.
    let converter = RowConverter::new(
        wanted
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::Other(e.to_string()))?;
    let mut counts: HashMap<u128, (i64, Option<std::ops::RangeInclusive<i32>>, bool)> =
        HashMap::new();
    for f in &files {
        let mut batches = read_file(store.clone(), &f.path, f.size, &wanted).await?;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            let p = Prepared::new(&batch, impact)?;
            let rows = converter
                .convert_columns(batch.columns())
                .map_err(|e| Error::Other(e.to_string()))?;
            for row in 0..batch.num_rows() {
                let print = twox_hash::XxHash3_128::oneshot(rows.row(row).as_ref());
                let entry = counts
                    .entry(print)
                    .or_insert_with(|| (0, p.touched(row, impact), p.null_date(row, impact)));
                entry.0 += if f.added { 1 } else { -1 };
            }
        }
    }
    for (count, range, null) in counts.into_values() {
        if count == 0 {
            continue;
        }
        if null {
            return Ok(Dates::All("rows without a date changed".into()));
        }
        if let Some(range) = range {
            out.extend(range);
        }
    }
    Ok(Dates::Some(out))
}

/// `YYYY-MM-DD` as days since the epoch.
pub fn parse_day(s: &str) -> Option<i32> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((d - epoch).num_days()).ok()
}

/// Days since the epoch of a timestamp in microseconds (UTC).
fn day_of_us(us: i64) -> i32 {
    us.div_euclid(DAY_US) as i32
}

/// One batch's columns, cast once, for [`Prepared::touched`].
struct Prepared {
    time: Option<deltalake::arrow::array::Int64Array>,
    kind: Option<deltalake::arrow::array::StringArray>,
    campaign: Option<ArrayRef>,
    identity: Option<ArrayRef>,
    date: Option<deltalake::arrow::array::Date32Array>,
}

impl Prepared {
    fn new(batch: &RecordBatch, impact: &Impact) -> Result<Self> {
        let cast_to = |name: &str, to: &DataType| -> Result<Option<ArrayRef>> {
            batch
                .column_by_name(name)
                .map(|c| cast(c, to).map_err(|e| Error::Other(e.to_string())))
                .transpose()
        };
        let mut p = Prepared {
            time: None,
            kind: None,
            campaign: None,
            identity: None,
            date: None,
        };
        match impact {
            Impact::Events { .. } => {
                p.time = cast_to("event_time", &DataType::Int64)?.map(|c| {
                    c.as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                        .clone()
                });
                p.kind =
                    cast_to("event_type", &DataType::Utf8)?.map(|c| c.as_string::<i32>().clone());
                p.campaign = batch.column_by_name("campaign_id").cloned();
                p.identity = batch.column_by_name("identity").cloned();
            }
            Impact::Column { column, .. } => {
                p.date = cast_to(column, &DataType::Date32)?
                    .map(|c| c.as_primitive::<Date32Type>().clone());
            }
            Impact::None | Impact::All => {}
        }
        Ok(p)
    }

    /// The dates row `row` touches, if any.
    fn touched(&self, row: usize, impact: &Impact) -> Option<std::ops::RangeInclusive<i32>> {
        match impact {
            Impact::None | Impact::All => None,
            Impact::Events {
                conversion,
                touches,
                window_us,
            } => {
                let time = self.time.as_ref().filter(|c| c.is_valid(row))?.value(row);
                let kind = self.kind.as_ref().filter(|c| c.is_valid(row))?.value(row);
                if kind == conversion {
                    let d = day_of_us(time);
                    return Some(d..=d);
                }
                let present = |c: &Option<ArrayRef>| c.as_ref().is_some_and(|c| c.is_valid(row));
                if touches.iter().any(|t| t == kind)
                    && present(&self.campaign)
                    && present(&self.identity)
                {
                    return Some(day_of_us(time)..=day_of_us(time.saturating_add(*window_us)));
                }
                None
            }
            Impact::Column { after_days, .. } => {
                let d = self.date.as_ref().filter(|c| c.is_valid(row))?.value(row);
                Some(d..=d + after_days)
            }
        }
    }

    /// Whether the row has no date (for a date column impact).
    fn null_date(&self, row: usize, impact: &Impact) -> bool {
        matches!(impact, Impact::Column { .. }) && self.date.as_ref().is_none_or(|c| c.is_null(row))
    }
}

pub(crate) type Batches =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RecordBatch>> + Send>>;

/// The `wanted` columns of one data file of a table (`path` as in its log; missing
/// columns NULL).
pub(crate) async fn read_file(
    store: Arc<dyn ObjectStore>,
    path: &str,
    size: u64,
    wanted: &SchemaRef,
) -> Result<Batches> {
    let what = |e: &dyn std::fmt::Display| Error::Storage(format!("input file `{path}`: {e}"));
    let location = Path::from_url_path(path).map_err(|e| what(&e))?;
    let reader = StoreReader {
        store,
        location,
        size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| what(&e))?;
    let present: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted.field_with_name(f.name()).is_ok())
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), present);
    let stream = builder
        .with_projection(mask)
        .with_batch_size(32 * 1024)
        .build()
        .map_err(|e| what(&e))?;
    let wanted = wanted.clone();
    let path = path.to_string();
    Ok(Box::pin(stream.map(move |batch| {
        let batch = batch.map_err(|e| Error::Storage(format!("input file `{path}`: {e}")))?;
        let columns: Vec<ArrayRef> = wanted
            .fields()
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => cast(c, f.data_type()).map_err(|e| Error::Other(e.to_string())),
                None => Ok(new_null_array(f.data_type(), batch.num_rows())),
            })
            .collect::<Result<_>>()?;
        RecordBatch::try_new(wanted.clone(), columns).map_err(|e| Error::Other(e.to_string()))
    })))
}
