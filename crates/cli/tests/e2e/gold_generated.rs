//! Gold end to end on generated landing data (`medallion generate`), landed in waves: the
//! incrementally maintained Gold tables equal a full refresh and a fresh lake, every
//! attribution model credits each Silver purchase exactly once, `campaign_daily` agrees with
//! last-touch attribution and with Silver ad spend; backfills recompute exactly the dates
//! asked for; changed definitions are refused until rebuilt or accepted forward-only; an
//! incremental SQL model follows the dates of the new Silver files; re-runs commit nothing;
//! `query --as-of` reads old versions; `validate` points into a broken model's SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use deltalake::arrow::array::Array;
use deltalake::arrow::util::display::array_value_to_string;
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::Value;

use crate::{medallion, repo, stderr, stdout};

// ---------------------------------------------------------------------------------------
// Landing data.
// ---------------------------------------------------------------------------------------

/// Generated landing files, by path relative to the landing prefix.
type Landing = BTreeMap<String, Vec<u8>>;

/// `medallion generate` into `dir/generated`; its files.
fn generate(dir: &Path, events: u64, per_file: u64, seed: u64) -> Landing {
    let out = dir.join("generated");
    let g = medallion(dir)
        .args([
            "generate",
            "--events",
            &events.to_string(),
            "--events-per-file",
            &per_file.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(g.status.code(), Some(0), "{}", stderr(&g));
    crate::files(&out)
}

/// The generated files split into `n` waves: the dimensions in the first, the event files
/// (in name order: their folders are dated) in `n` consecutive chunks, the monthly ad spend
/// files one per wave from the first on.
fn waves(all: &Landing, n: usize) -> Vec<Vec<String>> {
    let under = |folder: &str| -> Vec<String> {
        all.keys()
            .filter(|k| k.starts_with(folder))
            .cloned()
            .collect()
    };
    let events = under("events/");
    assert!(
        events.len() >= n,
        "{} event files for {n} waves",
        events.len()
    );
    let mut out: Vec<Vec<String>> = vec![Vec::new(); n];
    out[0].extend(under("campaigns/"));
    out[0].extend(under("fx_rates/"));
    for (i, f) in under("ad_spend/").into_iter().enumerate() {
        out[i.min(n - 1)].push(f);
    }
    let per_wave = events.len().div_ceil(n);
    for (i, chunk) in events.chunks(per_wave).enumerate() {
        out[i].extend(chunk.iter().cloned());
    }
    out
}

/// Copies `names` of `all` into `landing`.
fn land(landing: &Path, all: &Landing, names: &[String]) {
    for n in names {
        let target = landing.join(n);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, &all[n]).unwrap();
    }
}

/// The event files among `names`, as SQL string literals for `_source_file IN (…)`.
fn event_files_sql(names: &[String]) -> String {
    let files: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with("events/"))
        .map(|n| format!("'{n}'"))
        .collect();
    assert!(!files.is_empty(), "no event file in {names:?}");
    files.join(", ")
}

// ---------------------------------------------------------------------------------------
// A lakehouse and the commands run against it.
// ---------------------------------------------------------------------------------------

struct Lake {
    root: PathBuf,
    landing: PathBuf,
    config: PathBuf,
}

impl Lake {
    /// A lake at `root` over `landing`, with the shipped `layers.yaml`.
    fn new(root: PathBuf, landing: &Path) -> Self {
        Self {
            root,
            landing: landing.to_path_buf(),
            config: repo().join("layers.yaml"),
        }
    }

    /// The same lake, read and written with another configuration.
    fn with_config(&self, config: &Path) -> Self {
        Self {
            root: self.root.clone(),
            landing: self.landing.clone(),
            config: config.to_path_buf(),
        }
    }

    fn command(&self, sub: &str) -> Command {
        let mut c = medallion(&repo());
        c.arg(sub)
            .arg("--config")
            .arg(&self.config)
            .arg("--root")
            .arg(&self.root)
            .arg("--landing")
            .arg(&self.landing);
        c
    }

    /// `medallion run ARGS --format json`, which must exit with `code`: the JSON summary
    /// (Null when there is none) and stderr.
    fn run(&self, args: &[&str], code: i32) -> (Value, String) {
        let out = self
            .command("run")
            .args(args)
            .args(["--format", "json"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(code),
            "medallion run {args:?} --config {}\nstderr (end):\n{}\nstdout:\n{}",
            self.config.display(),
            &err[err.len().saturating_sub(6000)..],
            stdout(&out)
        );
        (
            serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null),
            err,
        )
    }

    /// `medallion query SQL --format json [--as-of …]`: one object per row.
    fn query(&self, sql: &str, as_of: &[&str]) -> Vec<serde_json::Map<String, Value>> {
        let mut c = self.command("query");
        c.arg(sql).args(["--format", "json"]);
        for v in as_of {
            c.args(["--as-of", v]);
        }
        let out = c.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "medallion query {sql:?} {as_of:?}\nstderr:\n{}",
            stderr(&out)
        );
        stdout(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(m)) => m,
                other => panic!("query {sql:?}: not a JSON object: {l} ({other:?})"),
            })
            .collect()
    }

    /// SQL over the lake's Silver and Gold tables (`silver.x`, `gold.x`), run in this
    /// process (faster than `medallion query` for the many checks): one object per row.
    fn local(&self, sql: &str) -> Vec<serde_json::Map<String, Value>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let batches = runtime.block_on(async {
            let ctx = SessionContext::new();
            let catalog = ctx.catalog("datafusion").unwrap();
            for layer in ["silver", "gold"] {
                catalog
                    .register_schema(layer, Arc::new(MemorySchemaProvider::new()))
                    .unwrap();
                let Ok(entries) = std::fs::read_dir(self.root.join(layer)) else {
                    continue;
                };
                for entry in entries {
                    let dir = entry.unwrap().path();
                    if !dir.join("_delta_log").exists() {
                        continue;
                    }
                    let url = url::Url::from_directory_path(&dir).unwrap();
                    let table = deltalake::open_table(url).await.expect("open table");
                    table.update_datafusion_session(&ctx.state()).unwrap();
                    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
                    ctx.register_table(
                        format!("{layer}.{name}").as_str(),
                        table.table_provider().await.unwrap(),
                    )
                    .unwrap();
                }
            }
            ctx.sql(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        });
        let mut writer = deltalake::arrow::json::ArrayWriter::new(Vec::new());
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
        let bytes = writer.into_inner();
        if bytes.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Query rows as column `k` → the columns `names` as numbers (NULL and absent: 0).
    fn numbers(&self, sql: &str, names: &[&str]) -> BTreeMap<String, Vec<f64>> {
        let mut out = BTreeMap::new();
        for row in self.local(sql) {
            let key = match row.get("k") {
                Some(Value::String(s)) => s.clone(),
                other => panic!("query {sql:?}: key {other:?}"),
            };
            let numbers = names
                .iter()
                .map(|n| row.get(*n).and_then(Value::as_f64).unwrap_or(0.0))
                .collect();
            assert!(
                out.insert(key.clone(), numbers).is_none(),
                "query {sql:?}: {key} twice"
            );
        }
        out
    }

    /// `medallion plan --format json`: the Gold plans, by table.
    fn plans(&self) -> BTreeMap<String, Value> {
        let out = self
            .command("plan")
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "plan: {}", stderr(&out));
        let plan: Value = serde_json::from_str(&stdout(&out)).expect("plan JSON");
        plan["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["layer"] == "gold")
            .map(|t| (t["table"].as_str().unwrap().to_string(), t["gold"].clone()))
            .collect()
    }

    /// `medallion plan` as text.
    fn plan_text(&self) -> String {
        let out = self.command("plan").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "plan: {}", stderr(&out));
        stdout(&out)
    }

    fn table_dir(&self, table: &str) -> PathBuf {
        self.root.join("gold").join(table)
    }

    /// The latest Delta version of a Gold table.
    fn version(&self, table: &str) -> u64 {
        std::fs::read_dir(self.table_dir(table).join("_delta_log"))
            .unwrap()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or_else(|| panic!("gold.{table} has no commit"))
    }

    /// How many data files a Gold table (`gold.x`) has now; none before its first run.
    fn data_files(&self, table: &str) -> u64 {
        let dir = self.table_dir(table.trim_start_matches("gold."));
        if !dir.join("_delta_log").exists() {
            return 0;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let url = url::Url::from_directory_path(&dir).unwrap();
            let table = deltalake::open_table(url).await.expect("open table");
            table.snapshot().unwrap().log_data().iter().count() as u64
        })
    }

    fn versions(&self, tables: &[Table]) -> Vec<u64> {
        tables.iter().map(|t| self.version(t.name)).collect()
    }

    /// Every row of a Gold table.
    fn read(&self, table: &Table) -> Rows {
        read_rows(&self.table_dir(table.name))
    }

    fn snapshot(&self, tables: &[Table]) -> Vec<Rows> {
        tables.iter().map(|t| self.read(t)).collect()
    }

    /// The sorted distinct dates of gold.attribution.
    fn attribution_dates(&self) -> Vec<String> {
        self.local("SELECT DISTINCT CAST(date AS VARCHAR) AS d FROM gold.attribution ORDER BY d")
            .into_iter()
            .map(|r| r["d"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The report of one Gold table in a run's JSON summary.
fn gold_report<'a>(report: &'a Value, table: &str) -> &'a Value {
    report["gold"]
        .as_array()
        .unwrap_or_else(|| panic!("no gold reports in {report}"))
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("{table} not in {report}"))
}

// ---------------------------------------------------------------------------------------
// Gold tables, read and compared.
// ---------------------------------------------------------------------------------------

/// A Gold table and its key columns.
#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    key: &'static [&'static str],
}

const SHIPPED: [Table; 4] = [
    Table {
        name: "attribution",
        key: &["date", "model", "channel", "campaign_id"],
    },
    Table {
        name: "campaign_daily",
        key: &["date", "campaign_id"],
    },
    Table {
        name: "channel_cac",
        key: &["month", "channel"],
    },
    Table {
        name: "channel_daily",
        key: &["date", "channel"],
    },
];

const ATTRIBUTION: Table = SHIPPED[0];

const MODELS: [&str; 5] = [
    "first_touch",
    "last_touch",
    "linear",
    "position_based",
    "time_decay",
];

/// A table's column names and its rows as text (NULL spelled out).
#[derive(Debug, Clone, PartialEq)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn read_rows(dir: &Path) -> Rows {
    let batches = crate::delta::query(dir, "SELECT * FROM t");
    let columns: Vec<String> = crate::delta::columns(dir);
    let mut rows = Vec::new();
    for batch in &batches {
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| {
                        let array = batch.column(schema.index_of(c).unwrap());
                        if array.is_null(i) {
                            "NULL".to_string()
                        } else {
                            array_value_to_string(array, i).unwrap()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows.sort();
    Rows { columns, rows }
}

/// Equal text, or numbers equal within 1e-9 relative (1e-12 absolute near zero).
fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(a), Ok(b)) => close(a, b),
        _ => false,
    }
}

fn close(a: f64, b: f64) -> bool {
    let diff = (a - b).abs();
    diff <= 1e-12 || diff <= 1e-9 * a.abs().max(b.abs())
}

/// Asserts two versions of a Gold table hold the same rows: the same columns, the same
/// keys, and values equal (numbers within 1e-9 relative).
fn assert_same_rows(table: &Table, left: &Rows, right: &Rows, what: &str) {
    let what = format!("gold.{} ({what})", table.name);
    assert_eq!(left.columns, right.columns, "{what}: columns");
    let key_at: Vec<usize> = table
        .key
        .iter()
        .map(|k| {
            left.columns
                .iter()
                .position(|c| c == k)
                .unwrap_or_else(|| panic!("{what}: no key column {k} in {:?}", left.columns))
        })
        .collect();
    let by_key = |rows: &Rows, side: &str| {
        let mut out = BTreeMap::new();
        for row in &rows.rows {
            let key: Vec<String> = key_at.iter().map(|i| row[*i].clone()).collect();
            assert!(
                out.insert(key.clone(), row.clone()).is_none(),
                "{what}: key {key:?} twice on the {side} side"
            );
        }
        out
    };
    let (l, r) = (by_key(left, "left"), by_key(right, "right"));
    let mut problems = Vec::new();
    for (k, lrow) in &l {
        match r.get(k) {
            None => problems.push(format!("only left:  {}", lrow.join(" | "))),
            Some(rrow) if !lrow.iter().zip(rrow).all(|(a, b)| same_value(a, b)) => {
                problems.push(format!(
                    "left:  {}\n    right: {}",
                    lrow.join(" | "),
                    rrow.join(" | ")
                ))
            }
            Some(_) => {}
        }
    }
    for (k, rrow) in &r {
        if !l.contains_key(k) {
            problems.push(format!("only right: {}", rrow.join(" | ")));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} of {}/{} rows differ; columns {:?}; first ones:\n    {}",
        problems.len(),
        l.len(),
        r.len(),
        left.columns,
        problems[..problems.len().min(15)].join("\n    ")
    );
}

fn assert_same_tables(tables: &[Table], left: &[Rows], right: &[Rows], what: &str) {
    for ((t, l), r) in tables.iter().zip(left).zip(right) {
        assert_same_rows(t, l, r, what);
    }
}

/// Asserts two `key → numbers` maps agree; a key missing on one side counts as zeros.
fn assert_same_numbers(
    left: &BTreeMap<String, Vec<f64>>,
    right: &BTreeMap<String, Vec<f64>>,
    names: &[&str],
    what: &str,
) {
    let zeros = vec![0.0; names.len()];
    let mut problems = Vec::new();
    for key in left.keys().chain(right.keys()).collect::<BTreeSet<_>>() {
        let (l, r) = (
            left.get(key).unwrap_or(&zeros),
            right.get(key).unwrap_or(&zeros),
        );
        assert_eq!(l.len(), names.len(), "{what}: {key}: {l:?}");
        assert_eq!(r.len(), names.len(), "{what}: {key}: {r:?}");
        for ((name, a), b) in names.iter().zip(l).zip(r) {
            if !close(*a, *b) {
                problems.push(format!("{key} {name}: {a} vs {b}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} difference(s):\n  {}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// Invariants that hold whatever the data.
// ---------------------------------------------------------------------------------------

/// Each attribution model credits every Silver purchase exactly once, with its revenue
/// (none: 0), per date and in total.
fn assert_every_purchase_credited_once(lake: &Lake, what: &str) {
    let purchases = lake.numbers(
        "SELECT CAST(CAST(event_time AS DATE) AS VARCHAR) AS k, count(*) AS conversions, \
         sum(coalesce(revenue_usd, 0)) AS revenue_usd \
         FROM silver.events WHERE event_type = 'purchase' GROUP BY CAST(event_time AS DATE)",
        &["conversions", "revenue_usd"],
    );
    assert!(purchases.len() > 10, "{what}: purchase dates {purchases:?}");
    let credited = lake.local(
        "SELECT model, CAST(date AS VARCHAR) AS date, sum(conversions) AS conversions, \
         sum(revenue_usd) AS revenue_usd FROM gold.attribution GROUP BY model, date",
    );
    let mut per_model: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for row in credited {
        per_model
            .entry(row["model"].as_str().unwrap().to_string())
            .or_default()
            .insert(
                row["date"].as_str().unwrap().to_string(),
                vec![
                    row["conversions"].as_f64().unwrap_or(0.0),
                    row["revenue_usd"].as_f64().unwrap_or(0.0),
                ],
            );
    }
    assert_eq!(
        per_model.keys().map(String::as_str).collect::<Vec<_>>(),
        MODELS,
        "{what}: the attribution models"
    );
    let total = |m: &BTreeMap<String, Vec<f64>>| {
        m.values()
            .fold([0.0, 0.0], |acc, v| [acc[0] + v[0], acc[1] + v[1]])
            .to_vec()
    };
    for (model, dates) in &per_model {
        let missing: Vec<&String> = purchases
            .keys()
            .filter(|d| !dates.contains_key(*d))
            .collect();
        let extra: Vec<&String> = dates
            .keys()
            .filter(|d| !purchases.contains_key(*d))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what}: {model}: purchase dates without credit {missing:?}, credit without purchases {extra:?}"
        );
        assert_same_numbers(
            dates,
            &purchases,
            &["conversions", "revenue_usd"],
            &format!("{what}: {model} credit per date vs Silver purchases"),
        );
        assert_same_numbers(
            &BTreeMap::from([("all".to_string(), total(dates))]),
            &BTreeMap::from([("all".to_string(), total(&purchases))]),
            &["conversions", "revenue_usd"],
            &format!("{what}: {model} total credit vs Silver purchases"),
        );
    }
}

/// `campaign_daily` per date: its conversions and revenue are last-touch attribution's to a
/// campaign (not direct), its impressions, clicks and spend Silver ad spend's. `channel_cac`
/// per month: its new customers are the identities whose first purchase falls in it.
fn assert_campaign_daily_and_cac_agree(lake: &Lake, what: &str) {
    let campaign_daily = lake.numbers(
        "SELECT CAST(date AS VARCHAR) AS k, sum(conversions) AS conversions, \
         sum(revenue_usd) AS revenue_usd FROM gold.campaign_daily GROUP BY date",
        &["conversions", "revenue_usd"],
    );
    let last_touch = lake.numbers(
        "SELECT CAST(date AS VARCHAR) AS k, sum(conversions) AS conversions, \
         sum(revenue_usd) AS revenue_usd FROM gold.attribution \
         WHERE model = 'last_touch' AND channel <> 'direct' GROUP BY date",
        &["conversions", "revenue_usd"],
    );
    assert!(
        last_touch.values().map(|v| v[0]).sum::<f64>() > 10.0,
        "{what}: few campaign conversions: {last_touch:?}"
    );
    assert_same_numbers(
        &campaign_daily,
        &last_touch,
        &["conversions", "revenue_usd"],
        &format!("{what}: campaign_daily vs last-touch attribution to campaigns"),
    );
    let spend = |table: &str| {
        lake.numbers(
            &format!(
                "SELECT CAST(date AS VARCHAR) AS k, sum(impressions) AS impressions, \
             sum(clicks) AS clicks, sum(spend_usd) AS spend_usd FROM {table} GROUP BY date"
            ),
            &["impressions", "clicks", "spend_usd"],
        )
    };
    let silver_spend = spend("silver.ad_spend");
    assert!(silver_spend.len() > 10, "{what}: {silver_spend:?}");
    assert_same_numbers(
        &spend("gold.campaign_daily"),
        &silver_spend,
        &["impressions", "clicks", "spend_usd"],
        &format!("{what}: campaign_daily vs silver.ad_spend"),
    );
    let first_purchases = lake.numbers(
        "SELECT CAST(CAST(date_trunc('month', first_purchase) AS DATE) AS VARCHAR) AS k, \
         count(*) AS new_customers FROM (SELECT identity, min(event_time) AS first_purchase \
         FROM silver.events WHERE event_type = 'purchase' AND identity IS NOT NULL \
         GROUP BY identity) AS f GROUP BY CAST(date_trunc('month', first_purchase) AS DATE)",
        &["new_customers"],
    );
    let cac = lake.numbers(
        "SELECT CAST(month AS VARCHAR) AS k, sum(new_customers) AS new_customers \
         FROM gold.channel_cac GROUP BY month",
        &["new_customers"],
    );
    assert_same_numbers(
        &cac,
        &first_purchases,
        &["new_customers"],
        &format!("{what}: channel_cac new customers vs first purchases in Silver"),
    );
}

// ---------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------

#[test]
fn gold_generated_waves_equal_a_full_refresh_and_keep_the_invariants() {
    let tmp = tempfile::tempdir().unwrap();
    let all = generate(tmp.path(), 30_000, 5_000, 11);
    let landing = tmp.path().join("landing");
    let lake = Lake::new(tmp.path().join("incremental"), &landing);
    let waves = waves(&all, 3);

    for (i, wave) in waves.iter().enumerate() {
        let what = format!("wave {}", i + 1);
        land(&landing, &all, wave);
        let files_before: BTreeMap<&str, u64> = ["gold.attribution", "gold.campaign_daily"]
            .into_iter()
            .map(|t| (t, lake.data_files(t)))
            .collect();
        let (report, _) = lake.run(&[], 0);
        let attribution = gold_report(&report, "gold.attribution");
        if i == 0 {
            assert_eq!(attribution["mode"], "full", "{what}: {attribution}");
        } else {
            // The dates of the wave's new purchases: late ones reach back before the
            // dated folder of its first file.
            let new = lake.local(&format!(
                "SELECT CAST(min(CAST(event_time AS DATE)) AS VARCHAR) AS first, \
                     CAST(max(CAST(event_time AS DATE)) AS VARCHAR) AS last \
                     FROM silver.events WHERE event_type = 'purchase' \
                     AND _source_file IN ({})",
                event_files_sql(wave)
            ));
            let (first, last) = (
                new[0]["first"].as_str().unwrap().to_string(),
                new[0]["last"].as_str().unwrap().to_string(),
            );
            let folder = wave
                .iter()
                .find_map(|f| f.strip_prefix("events/"))
                .and_then(|f| f.split('/').next())
                .unwrap();
            assert!(
                first.as_str() < folder,
                "{what}: no late purchase: the first is dated {first}, the files {folder}"
            );
            // Not everything: the table's earliest dates are left as they were (from the
            // third wave on for campaign_daily, whose first dates are days later).
            let all_dates = lake.attribution_dates();
            for table in ["gold.attribution", "gold.campaign_daily"] {
                let r = gold_report(&report, table);
                assert_eq!(r["mode"], "incremental", "{what}: {r}");
                assert!(r["dates_recomputed"].as_u64().unwrap() > 0, "{what}: {r}");
                if table == "gold.attribution" || i >= 2 {
                    assert!(
                        r["files_removed"].as_u64().unwrap() < files_before[table],
                        "{what}: {table} replaced all its {} files: {r}",
                        files_before[table]
                    );
                }
            }
            let first_recomputed = attribution["dates"][0].as_str().unwrap();
            assert!(
                all_dates.iter().any(|d| d.as_str() < first_recomputed),
                "{what}: gold.attribution recomputed every date of {} .. {}: {attribution}",
                all_dates[0],
                all_dates[all_dates.len() - 1]
            );
            // The recomputed dates cover the new purchases'.
            let dates = &attribution["dates"];
            assert!(
                dates[0].as_str().unwrap() <= first.as_str()
                    && dates[1].as_str().unwrap() >= last.as_str(),
                "{what}: the new purchases are dated {first} .. {last}; recomputed {attribution}"
            );
            for table in ["gold.channel_cac", "gold.channel_daily"] {
                assert_eq!(gold_report(&report, table)["mode"], "full", "{what}");
            }
        }
        assert_every_purchase_credited_once(&lake, &what);
        assert_campaign_daily_and_cac_agree(&lake, &what);
    }
    let incremental = lake.snapshot(&SHIPPED);
    assert!(
        incremental[0].rows.len() > 1000,
        "{}",
        incremental[0].rows.len()
    );

    // A fresh lake over the same landing, in one run.
    let fresh = Lake::new(tmp.path().join("fresh"), &landing);
    let (report, _) = fresh.run(&[], 0);
    assert_eq!(gold_report(&report, "gold.attribution")["mode"], "full");
    assert_same_tables(
        &SHIPPED,
        &incremental,
        &fresh.snapshot(&SHIPPED),
        "incremental over 3 waves vs a fresh lake",
    );

    // A full refresh of Gold on the incremental lake.
    let (report, _) = lake.run(&["--layer", "gold", "--full-refresh"], 0);
    for t in SHIPPED {
        let r = gold_report(&report, &format!("gold.{}", t.name));
        assert_eq!(r["mode"], "full", "{r}");
    }
    assert_same_tables(
        &SHIPPED,
        &incremental,
        &lake.snapshot(&SHIPPED),
        "incremental over 3 waves vs --full-refresh",
    );
}

#[test]
fn gold_generated_backfill_recomputes_exactly_the_dates_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let all = generate(tmp.path(), 8_000, 4_000, 5);
    land(&landing, &all, &all.keys().cloned().collect::<Vec<_>>());
    let lake = Lake::new(tmp.path().join("lake"), &landing);
    lake.run(&[], 0);
    let before = lake.snapshot(&SHIPPED);
    let dates = lake.attribution_dates();
    let from = dates[dates.len() / 3].clone();
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let to = (day(&from) + chrono::Days::new(4)).to_string();
    let versions = lake.versions(&SHIPPED);

    let (report, _) = lake.run(&["--layer", "gold", "--from", &from, "--to", &to], 0);
    for (i, t) in SHIPPED.iter().enumerate() {
        let table = format!("gold.{}", t.name);
        let r = gold_report(&report, &table);
        if ["attribution", "campaign_daily"].contains(&t.name) {
            assert_eq!(r["mode"], "incremental", "{r}");
            assert_eq!(r["dates_recomputed"], 5, "{r}");
            assert_eq!(r["dates"], serde_json::json!([from, to]), "{r}");
        } else {
            // `full` tables are recomputed whole.
            assert_eq!(r["mode"], "full", "{r}");
        }
        assert_eq!(lake.version(t.name), versions[i] + 1, "{table}: one commit");
        // The commit replaces exactly the files of the dates asked for.
        if t.name == "attribution" || t.name == "campaign_daily" {
            let log = std::fs::read_to_string(
                lake.table_dir(t.name)
                    .join(format!("_delta_log/{:020}.json", versions[i] + 1)),
            )
            .unwrap();
            let (mut added, mut removed) = (BTreeSet::new(), BTreeSet::new());
            for line in log.lines() {
                let action: Value = serde_json::from_str(line).unwrap();
                for (kind, set) in [("add", &mut added), ("remove", &mut removed)] {
                    if let Some(date) = action[kind]["partitionValues"]["date"].as_str() {
                        set.insert(date.to_string());
                    }
                }
            }
            let in_range: BTreeSet<String> = (0..5)
                .map(|d| (day(&from) + chrono::Days::new(d)).to_string())
                .collect();
            let had: BTreeSet<String> = before[i]
                .rows
                .iter()
                .map(|r| {
                    let at = before[i].columns.iter().position(|c| c == "date").unwrap();
                    r[at].clone()
                })
                .filter(|d| in_range.contains(d))
                .collect();
            assert!(!had.is_empty(), "{table}: no rows in {from} .. {to}");
            assert_eq!(removed, had, "{table}: files removed by the backfill");
            assert_eq!(added, had, "{table}: files added by the backfill");
        }
    }
    assert_same_tables(
        &SHIPPED,
        &before,
        &lake.snapshot(&SHIPPED),
        "before vs after a backfill",
    );

    // A range that ends before it starts, or that has no end, is a usage error.
    let versions = lake.versions(&SHIPPED);
    let (_, err) = lake.run(&["--layer", "gold", "--from", &to, "--to", &from], 2);
    assert!(err.contains("--from is after --to"), "{err}");
    lake.run(&["--layer", "gold", "--from", &from], 2);
    lake.run(&["--layer", "gold", "--from", "2025-13-01", "--to", &to], 2);
    assert_eq!(
        lake.versions(&SHIPPED),
        versions,
        "a refused backfill commits nothing"
    );
}

/// `layers.yaml` with `from` replaced by `to` (which must be found), written to `path`.
fn changed_config(path: &Path, base: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(base).unwrap();
    assert!(text.contains(from), "`{from}` not in {}", base.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    path.to_path_buf()
}

#[test]
fn gold_generated_changed_definition_is_refused_until_rebuilt_or_accepted_forward_only() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let all = generate(tmp.path(), 8_000, 4_000, 7);
    land(&landing, &all, &all.keys().cloned().collect::<Vec<_>>());
    let shipped = Lake::new(tmp.path().join("lake"), &landing);
    shipped.run(&[], 0);
    let before = shipped.snapshot(&SHIPPED);
    let versions = shipped.versions(&SHIPPED);

    // A one-day attribution window: the built-in models' definitions change.
    let one_day = changed_config(
        &tmp.path().join("one_day.yaml"),
        &repo().join("layers.yaml"),
        "window_days: 7",
        "window_days: 1",
    );
    let lake = shipped.with_config(&one_day);
    let (_, err) = lake.run(&["--layer", "gold"], 2);
    assert!(
        err.contains("the definition of `gold.attribution` changed")
            && err.contains("--full-refresh")
            && err.contains("--forward-only"),
        "{err}"
    );
    let (_, err) = lake.run(&["--table", "gold.campaign_daily"], 2);
    assert!(
        err.contains("the definition of `gold.campaign_daily` changed")
            && err.contains("--full-refresh"),
        "{err}"
    );
    assert_eq!(
        lake.versions(&SHIPPED),
        versions,
        "a refused run commits nothing"
    );
    let plans = lake.plans();
    for table in [
        "gold.attribution",
        "gold.campaign_daily",
        "gold.channel_cac",
    ] {
        let plan = &plans[table];
        assert_eq!(plan["mode"], "refused", "{table}: {plan}");
        assert!(
            plan["reason"].as_str().unwrap().contains(table),
            "{table}: {plan}"
        );
    }
    assert_eq!(plans["gold.channel_daily"]["mode"], "up_to_date");
    let text = lake.plan_text();
    assert!(
        text.lines().any(|l| l.contains("would be refused")
            && l.contains("definition of `gold.attribution` changed")),
        "{text}"
    );

    // A full refresh applies the new window: fewer touches, more direct conversions, and
    // the same tables as a lake built with a one-day window from the start.
    let direct = |lake: &Lake| {
        lake.local(
            "SELECT sum(conversions) AS n FROM gold.attribution \
             WHERE model = 'first_touch' AND channel = 'direct'",
        )[0]["n"]
            .as_f64()
            .unwrap()
    };
    let direct_before = direct(&lake);
    let (report, _) = lake.run(&["--layer", "gold", "--full-refresh"], 0);
    assert_eq!(gold_report(&report, "gold.attribution")["mode"], "full");
    let after = lake.snapshot(&SHIPPED);
    assert_ne!(after[0], before[0], "a one-day window changes attribution");
    let direct_after = direct(&lake);
    assert!(
        direct_after > direct_before,
        "first-touch direct conversions: {direct_before} with 7 days, {direct_after} with 1 day"
    );
    assert_every_purchase_credited_once(&lake, "one-day window");
    let fresh = Lake::new(tmp.path().join("fresh"), &landing).with_config(&one_day);
    fresh.run(&[], 0);
    assert_same_tables(
        &SHIPPED,
        &after,
        &fresh.snapshot(&SHIPPED),
        "one-day window: full refresh vs a fresh lake",
    );
    // The new definition is now the tables': nothing to do.
    let (report, _) = lake.run(&["--layer", "gold"], 0);
    for t in SHIPPED {
        let r = gold_report(&report, &format!("gold.{}", t.name));
        assert_eq!(r["mode"], "up_to_date", "{r}");
    }

    // Back to seven days, accepted forward-only: no date is recomputed, the rows stay.
    let versions = shipped.versions(&SHIPPED);
    shipped.run(&["--table", "gold.attribution"], 2);
    let (report, _) = shipped.run(&["--table", "gold.attribution", "--forward-only"], 0);
    let r = gold_report(&report, "gold.attribution");
    assert_eq!(r["mode"], "incremental", "{r}");
    assert_eq!(r["dates_recomputed"], 0, "{r}");
    assert_same_rows(
        &ATTRIBUTION,
        &after[0],
        &shipped.read(&ATTRIBUTION),
        "forward-only keeps the existing rows",
    );
    assert_eq!(
        shipped.version("attribution"),
        versions[0] + 1,
        "forward-only records the accepted definition"
    );
    let (report, _) = shipped.run(&["--table", "gold.attribution"], 0);
    assert_eq!(
        gold_report(&report, "gold.attribution")["mode"],
        "up_to_date"
    );

    // A changed SQL model (first touch instead of last), accepted forward-only: a `full`
    // model is recomputed with it.
    let first_touch = changed_config(
        &tmp.path().join("first_touch.yaml"),
        &repo().join("layers.yaml"),
        "WHERE model = 'last_touch'",
        "WHERE model = 'first_touch'",
    );
    let lake = shipped.with_config(&first_touch);
    let (_, err) = lake.run(&["--table", "gold.channel_daily"], 2);
    assert!(
        err.contains("the definition of `gold.channel_daily` changed")
            && err.contains("--full-refresh"),
        "{err}"
    );
    assert_eq!(lake.plans()["gold.channel_daily"]["mode"], "refused");
    let (report, _) = lake.run(&["--table", "gold.channel_daily", "--forward-only"], 0);
    assert_eq!(gold_report(&report, "gold.channel_daily")["mode"], "full");
    let expected = lake.numbers(
        "SELECT CAST(date AS VARCHAR) || '|' || channel AS k, sum(conversions) AS conversions, \
         sum(revenue_usd) AS revenue_usd FROM gold.attribution WHERE model = 'first_touch' \
         GROUP BY date, channel",
        &["conversions", "revenue_usd"],
    );
    let actual = lake.numbers(
        "SELECT CAST(date AS VARCHAR) || '|' || channel AS k, conversions, revenue_usd \
         FROM gold.channel_daily",
        &["conversions", "revenue_usd"],
    );
    assert_same_numbers(
        &actual,
        &expected,
        &["conversions", "revenue_usd"],
        "channel_daily after the forward-only change",
    );
}

/// The shipped configuration plus an incremental SQL model of events per day and type.
fn with_events_daily(dir: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(repo().join("layers.yaml")).unwrap();
    text.push_str(
        r#"
  events_daily:
    description: Events per day and type.
    sql: |
      SELECT event_date AS date, event_type, count(*) AS events
      FROM silver.events
      GROUP BY event_date, event_type
    key: [date, event_type]
    materialized: incremental_by_date
    date_column: date
"#,
    );
    let path = dir.join("events_daily.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const EVENTS_DAILY: Table = Table {
    name: "events_daily",
    key: &["date", "event_type"],
};

#[test]
fn gold_generated_incremental_sql_model_follows_the_new_silver_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let all = generate(tmp.path(), 12_000, 2_000, 13);
    let landing = tmp.path().join("landing");
    let config = with_events_daily(tmp.path());
    let lake = Lake::new(tmp.path().join("lake"), &landing).with_config(&config);
    let check = medallion(&repo())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));

    let mut incremental_waves = 0;
    for (i, wave) in waves(&all, 3).iter().enumerate() {
        let what = format!("wave {}", i + 1);
        land(&landing, &all, wave);
        let (report, _) = lake.run(&[], 0);
        let r = gold_report(&report, "gold.events_daily");
        if i == 0 {
            assert_eq!(r["mode"], "full", "{what}: {r}");
        } else {
            // Exactly the event dates of the new Silver rows (late ones included).
            let new = lake.local(&format!(
                "SELECT count(DISTINCT event_date) AS n, \
                     CAST(min(event_date) AS VARCHAR) AS first, \
                     CAST(max(event_date) AS VARCHAR) AS last \
                     FROM silver.events WHERE _source_file IN ({})",
                event_files_sql(wave)
            ));
            assert_eq!(r["mode"], "incremental", "{what}: {r}");
            assert_eq!(r["dates_recomputed"], new[0]["n"], "{what}: {r} vs {new:?}");
            let mut range = vec![new[0]["first"].clone(), new[0]["last"].clone()];
            range.dedup();
            assert_eq!(r["dates"], Value::Array(range), "{what}: {r}");
            let total =
                lake.local("SELECT count(DISTINCT date) AS n FROM gold.events_daily")[0]["n"]
                    .as_u64()
                    .unwrap();
            assert!(
                r["dates_recomputed"].as_u64().unwrap() < total,
                "{what}: {r}, {total} dates"
            );
            incremental_waves += 1;
        }
        // The table equals the model's query over the whole of Silver.
        let expected = lake.numbers(
            "SELECT CAST(event_date AS VARCHAR) || '|' || event_type AS k, count(*) AS events \
             FROM silver.events GROUP BY event_date, event_type",
            &["events"],
        );
        let actual = lake.numbers(
            "SELECT CAST(date AS VARCHAR) || '|' || event_type AS k, events \
             FROM gold.events_daily",
            &["events"],
        );
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{what}: the (date, event_type) rows"
        );
        assert_same_numbers(&actual, &expected, &["events"], &what);
    }
    assert_eq!(incremental_waves, 2);
    let incremental = lake.read(&EVENTS_DAILY);
    let (report, _) = lake.run(&["--table", "gold.events_daily", "--full-refresh"], 0);
    assert_eq!(gold_report(&report, "gold.events_daily")["mode"], "full");
    assert_same_rows(
        &EVENTS_DAILY,
        &incremental,
        &lake.read(&EVENTS_DAILY),
        "incremental vs --full-refresh",
    );
}

/// Asserts a run with no new landing data commits nothing to any Gold table.
fn assert_rerun_commits_nothing(lake: &Lake, what: &str) {
    let (versions, rows) = (lake.versions(&SHIPPED), lake.snapshot(&SHIPPED));
    for args in [&[][..], &["--layer", "gold"][..]] {
        let (report, _) = lake.run(args, 0);
        for (t, v) in SHIPPED.iter().zip(&versions) {
            let r = gold_report(&report, &format!("gold.{}", t.name));
            assert_eq!(r["mode"], "up_to_date", "{what} {args:?}: {r}");
            assert_eq!(r["rows_written"], 0, "{what}: {r}");
            assert_eq!(r["version"], *v, "{what}: {r}");
        }
        assert_eq!(
            lake.versions(&SHIPPED),
            versions,
            "{what} {args:?}: a re-run committed to a Gold table"
        );
    }
    assert_eq!(lake.snapshot(&SHIPPED), rows, "{what}");
}

#[test]
fn gold_generated_rerun_commits_nothing_and_query_as_of_reads_version_1() {
    let tmp = tempfile::tempdir().unwrap();
    let all = generate(tmp.path(), 6_000, 2_000, 17);
    let landing = tmp.path().join("landing");
    let lake = Lake::new(tmp.path().join("lake"), &landing);
    let waves = waves(&all, 2);
    let sql = "SELECT CAST(date AS VARCHAR) AS date, model, channel, campaign_id, conversions, \
               revenue_usd FROM gold.attribution ORDER BY date, model, channel, campaign_id";
    land(&landing, &all, &waves[0]);
    lake.run(&[], 0);
    assert_rerun_commits_nothing(&lake, "wave 1");
    assert_eq!(lake.version("attribution"), 1);
    let version_1 = lake.query(sql, &[]);
    assert!(version_1.len() > 100, "{}", version_1.len());

    land(&landing, &all, &waves[1]);
    lake.run(&[], 0);
    assert_rerun_commits_nothing(&lake, "wave 2");
    let latest_version = lake.version("attribution");
    assert!(latest_version > 1);
    let latest = lake.query(sql, &[]);
    assert_ne!(
        latest, version_1,
        "the second wave changes gold.attribution"
    );
    // Time travel: version 1 as it was, the latest version as it is.
    assert_eq!(lake.query(sql, &["gold.attribution=1"]), version_1);
    assert_eq!(
        lake.query(sql, &[&format!("gold.attribution={latest_version}")]),
        latest
    );
    // Pinning one table leaves the others at their latest versions.
    let count = "SELECT count(*) AS n FROM gold.channel_daily";
    assert_eq!(
        lake.query(count, &["gold.attribution=1"]),
        lake.query(count, &[])
    );
}

// ---------------------------------------------------------------------------------------
// validate: a syntax error on the second line of a Gold model's SQL, at the end of the
// shipped configuration. The broken-config fixtures cover a `|` block with the error on its
// third line (`tests/configs/sql_syntax.yaml`); these cover the other ways YAML writes a
// multi-line string: a `|` block opening with a blank line, a folded `>-` block (the style
// layers.yaml uses for long expressions), a plain multi-line scalar and a quoted one, whose
// lines reach the SQL parser joined by spaces.
// ---------------------------------------------------------------------------------------

/// Asserts `medallion validate` of the shipped layers.yaml plus `model` (YAML under
/// `gold:`, a model `broken` whose SQL says `FROM FROM silver.events` on its second line)
/// exits 2 with that one error, located at the `.` after `FROM FROM silver` in the file.
fn assert_points_at_the_broken_line(model: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(repo().join("layers.yaml")).unwrap();
    text.push_str(model);
    std::fs::write(tmp.path().join("broken.yaml"), &text).unwrap();
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            let at = l.find("FROM FROM silver.")?;
            Some((i + 1, at + "FROM FROM silver".len() + 1))
        })
        .expect("the broken line");
    let out = medallion(tmp.path())
        .args(["validate", "--config", "broken.yaml"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SQL does not parse") && err.contains("(at `gold.broken.sql`)"),
        "{err}"
    );
    assert!(err.contains("\n1 error"), "{err}");
    let at = err.split(": error:").next().unwrap();
    assert_eq!(
        at,
        format!("broken.yaml:{line}:{column}"),
        "the error must point at line {line} (`FROM FROM silver.events`), column {column}; \
         validate said:\n{err}"
    );
}

#[test]
fn gold_generated_validate_block_sql_error_on_its_second_line() {
    assert_points_at_the_broken_line(
        "  broken:\n    sql: |\n      SELECT event_date AS date, count(*) AS n\n      \
         FROM FROM silver.events\n      GROUP BY event_date\n    key: [date]\n",
    );
}

#[test]
fn gold_generated_validate_block_sql_starting_with_a_blank_line() {
    assert_points_at_the_broken_line(
        "  broken:\n    sql: |\n\n      SELECT event_date AS date, count(*) AS n\n      \
         FROM FROM silver.events\n      GROUP BY event_date\n    key: [date]\n",
    );
}

#[test]
fn gold_generated_validate_folded_sql_error_on_its_second_line() {
    assert_points_at_the_broken_line(
        "  broken:\n    sql: >-\n      SELECT event_date AS date, count(*) AS n\n      \
         FROM FROM silver.events\n      GROUP BY event_date\n    key: [date]\n",
    );
}

#[test]
fn gold_generated_validate_plain_multiline_sql_error_on_its_second_line() {
    assert_points_at_the_broken_line(
        "  broken:\n    sql: SELECT event_date AS date, count(*) AS n\n      \
         FROM FROM silver.events\n      GROUP BY event_date\n    key: [date]\n",
    );
}

#[test]
fn gold_generated_validate_quoted_multiline_sql_error_on_its_second_line() {
    assert_points_at_the_broken_line(
        "  broken:\n    sql: \"SELECT event_date AS date, count(*) AS n\n      \
         FROM FROM silver.events\n      GROUP BY event_date\"\n    key: [date]\n",
    );
}

/// A campaign whose `utm_campaign` changes restates Silver events (rebuilt from Bronze): the
/// touchpoint store is rebuilt from the rewritten table, and Gold equals a fresh lake.
#[test]
fn gold_generated_restated_silver_rebuilds_the_touchpoints_and_equals_a_fresh_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let all = generate(tmp.path(), 20_000, 5_000, 5);
    let landing = tmp.path().join("landing");
    let names: Vec<String> = all.keys().cloned().collect();
    land(&landing, &all, &names);
    let lake = Lake::new(tmp.path().join("incremental"), &landing);
    lake.run(&[], 0);
    let before = lake.snapshot(&SHIPPED);

    // Campaign 1002 is re-sent with another utm_campaign: touches carrying the old value in
    // their URL no longer resolve to it.
    let campaigns = String::from_utf8(all["campaigns/campaigns.csv"].clone()).unwrap();
    let mut lines = campaigns.lines();
    let header = lines.next().unwrap();
    let row = lines
        .find(|l| l.starts_with("1002,"))
        .expect("campaign 1002");
    let changed = row.replace("back_to_school_ig", "back_to_school_ig_v2");
    assert_ne!(row, changed, "{row}");
    let restated = landing.join("campaigns/zz-restated.csv");
    std::fs::write(&restated, format!("{header}\n{changed}\n")).unwrap();

    let (report, _) = lake.run(&[], 0);
    let events = report["silver"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "silver.events")
        .unwrap();
    assert_eq!(events["mode"], "rebuild", "{events}");
    let after = lake.snapshot(&SHIPPED);
    assert_ne!(
        after[0], before[0],
        "the restatement changed no attribution row"
    );

    let fresh = Lake::new(tmp.path().join("fresh"), &landing);
    fresh.run(&[], 0);
    assert_same_tables(
        &SHIPPED,
        &after,
        &fresh.snapshot(&SHIPPED),
        "after a Silver restatement vs a fresh lake",
    );
}

/// After a first run of the whole pipeline, the run log has one row per table run, and its
/// versions and counts agree with the tables themselves: rows written with each table's row
/// count, quarantined rows with its quarantine, Silver's rows read with its Bronze input,
/// the output version with the table's latest commit, whose commit info names the run.
#[test]
fn gold_generated_run_log_agrees_with_the_tables_after_a_first_run() {
    let tmp = tempfile::tempdir().unwrap();
    let all = generate(tmp.path(), 20_000, 5_000, 3);
    let landing = tmp.path().join("landing");
    let names: Vec<String> = all.keys().cloned().collect();
    land(&landing, &all, &names);
    let lake = Lake::new(tmp.path().join("lake"), &landing);
    let (report, _) = lake.run(&[], 0);
    let run_id = report["run_id"].as_str().unwrap().to_string();

    // One query for every count the run log is checked against.
    let runs = lake.query(
        "SELECT run_id, layer, \"table\", status, output_version, rows_read, rows_written, \
         rows_quarantined, inputs FROM _system.runs ORDER BY \"table\"",
        &[],
    );
    let tables: Vec<String> = runs
        .iter()
        .map(|r| r["table"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tables.len(), 12, "one row per table run: {tables:?}");
    let mut counts = Vec::new();
    for t in &tables {
        counts.push(format!("SELECT '{t}' AS t, count(*) AS n FROM {t}"));
        let (layer, name) = t.split_once('.').unwrap();
        if layer != "gold"
            && lake
                .root
                .join(layer)
                .join("_quarantine")
                .join(name)
                .exists()
        {
            counts.push(format!(
                "SELECT '{t} quarantine' AS t, count(*) AS n FROM {layer}_quarantine.{name}"
            ));
        }
    }
    let counts: BTreeMap<String, i64> = lake
        .query(&counts.join(" UNION ALL "), &[])
        .into_iter()
        .map(|r| {
            (
                r["t"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    let count = |key: &str| counts.get(key).copied().unwrap_or(0);

    for r in &runs {
        let t = r["table"].as_str().unwrap();
        let (layer, name) = t.split_once('.').unwrap();
        assert_eq!(r["run_id"], run_id.as_str(), "{t}: {r:?}");
        assert_eq!(r["status"], "succeeded", "{t}: {r:?}");
        assert_eq!(r["layer"], layer, "{t}: {r:?}");
        assert_eq!(
            r["rows_written"].as_i64(),
            Some(count(t)),
            "{t}: rows written: {r:?}"
        );
        assert_eq!(
            r["rows_quarantined"].as_i64(),
            Some(count(&format!("{t} quarantine"))),
            "{t}: rows quarantined: {r:?}"
        );
        if layer == "silver" {
            let input = format!("bronze.{name}");
            let bronze_rows = count(&input);
            assert_eq!(
                r["rows_read"].as_i64(),
                Some(bronze_rows),
                "{t}: rows read: {r:?}"
            );
        }
        // The output version is the table's latest commit, and that commit names the run.
        let log = lake.root.join(layer).join(name).join("_delta_log");
        let latest = latest_commit(&log);
        assert_eq!(r["output_version"].as_i64(), Some(latest), "{t}: {r:?}");
        let commit = std::fs::read_to_string(log.join(format!("{latest:020}.json"))).unwrap();
        assert!(
            commit.contains(&format!("\"run_id\":\"{run_id}\"")),
            "{t}: commit {latest} does not name run {run_id}:\n{commit}"
        );
        // Gold runs name the versions of their inputs they read.
        if layer == "gold" {
            let inputs: Value = serde_json::from_str(r["inputs"].as_str().unwrap()).unwrap();
            for (input, v) in inputs.as_object().unwrap() {
                let (l, n) = input.split_once('.').unwrap();
                let input_log = lake.root.join(l).join(n).join("_delta_log");
                let input_latest = latest_commit(&input_log);
                assert_eq!(
                    v["to_version"].as_i64(),
                    Some(input_latest),
                    "{t} <- {input}: {v}"
                );
            }
        }
    }
}

/// The latest commit version in a `_delta_log` directory.
fn latest_commit(log: &Path) -> i64 {
    std::fs::read_dir(log)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".json")?
                .parse::<i64>()
                .ok()
        })
        .max()
        .unwrap_or_else(|| panic!("no commit in {}", log.display()))
}

/// The run log rebuilt from the Delta histories: with the old log present it comes back
/// exactly as written; with the log deleted, it holds exactly the runs that committed (each
/// run whose output version's commit names it), with every column as written.
#[test]
fn gold_generated_history_rebuild_gives_back_the_run_log() {
    let tmp = tempfile::tempdir().unwrap();
    let all = generate(tmp.path(), 12_000, 3_000, 5);
    let landing = tmp.path().join("landing");
    let names: Vec<String> = all.keys().cloned().collect();
    let waves = waves(&all, 2);
    land(&landing, &all, &waves[0]);
    let lake = Lake::new(tmp.path().join("lake"), &landing);
    lake.run(&[], 0);
    land(&landing, &all, &names);
    lake.run(&[], 0);
    // Nothing new: every table run is recorded, none commits.
    lake.run(&[], 0);

    let log = |lake: &Lake| {
        let mut rows = lake.query("SELECT * FROM _system.runs", &[]);
        rows.sort_by_key(|r| format!("{} {}", r["run_id"], r["table"]));
        rows
    };
    let written = log(&lake);
    assert_eq!(written.len(), 36, "three runs of twelve tables");
    let rebuild = |lake: &Lake| {
        let out = lake
            .command("history")
            .args(["--rebuild", "--limit", "1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stderr(&out)
    };

    // With the log in place: the same rows, none corrected.
    let said = rebuild(&lake);
    let committed: Vec<_> = written
        .iter()
        .filter(|r| {
            let (layer, name) = r["table"].as_str().unwrap().split_once('.').unwrap();
            let version = r["output_version"].as_i64().unwrap();
            let commit = lake
                .root
                .join(layer)
                .join(name)
                .join("_delta_log")
                .join(format!("{version:020}.json"));
            std::fs::read_to_string(commit)
                .unwrap()
                .contains(&format!("\"run_id\":\"{}\"", r["run_id"].as_str().unwrap()))
        })
        .cloned()
        .collect();
    assert!(
        committed.len() >= 12 + 4 && committed.len() < 36,
        "{} runs committed",
        committed.len()
    );
    assert!(
        said.contains(&format!(
            "{} table runs recovered from the Delta histories, {} kept from the previous log \
             (runs that committed nothing), 0 of the previous 36 corrected",
            committed.len(),
            36 - committed.len()
        )),
        "{said}"
    );
    assert_eq!(log(&lake), written, "rebuilt with the old log present");

    // Without it: exactly the runs that committed, column for column.
    std::fs::remove_dir_all(lake.root.join("_system/runs")).unwrap();
    let said = rebuild(&lake);
    assert!(
        said.contains(&format!(
            "{} table runs recovered from the Delta histories, 0 kept",
            committed.len()
        )),
        "{said}"
    );
    assert_eq!(log(&lake), committed, "rebuilt from the histories alone");
}
