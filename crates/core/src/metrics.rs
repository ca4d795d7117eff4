//! Metrics of a batch run for Prometheus: the text exposition format (version 0.0.4), pushed
//! to a Pushgateway at the end of the run.
//!
//! A batch job lives shorter than a scrape interval, so it pushes. The group a run pushes to is
//! `job/medallion/layer/<layer or all>` (and `shard/<I>/shards/<N>` for a sharded Bronze job,
//! so concurrent shards do not overwrite each other). A run that succeeded replaces its group
//! (`PUT`); a run that failed replaces only the metrics it pushes (`POST`), so the group keeps
//! `medallion_run_last_success_timestamp_seconds` of the last good run to alert on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

use crate::Shard;
use crate::runlog::RunRecord;

/// What a Bronze table run read from the landing prefix (the run log counts rows, not bytes).
#[derive(Debug, Clone, Default)]
pub struct BytesRead {
    /// `layer.table`.
    pub table: String,
    /// Landed files ingested.
    pub files: u64,
    /// Landed bytes read (compressed, as stored).
    pub bytes: u64,
    /// Bytes after decompression.
    pub uncompressed_bytes: u64,
}

/// One run, as pushed.
#[derive(Debug, Clone)]
pub struct RunMetrics<'a> {
    /// The run id (empty when the run failed before it got one).
    pub run_id: &'a str,
    /// When the command started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Whether the whole run succeeded.
    pub succeeded: bool,
    /// The run log records of every table run, failed ones included.
    pub records: &'a [RunRecord],
    /// Bytes read by Bronze table runs.
    pub bytes: &'a [BytesRead],
}

/// A metric family being written: `# HELP`, `# TYPE` and its samples, contiguous as the
/// format requires.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        Self { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// A label value with backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, others in Rust's shortest round-trip form.
fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// The run's metrics in the Prometheus text format.
pub fn exposition(run: &RunMetrics<'_>) -> String {
    let mut out = String::new();
    let table_metric =
        |out: &mut String, name: &str, help: &str, value: &dyn Fn(&RunRecord) -> Option<f64>| {
            if run.records.iter().all(|r| value(r).is_none()) {
                return;
            }
            let mut f = Family::new(out, name, help);
            for r in run.records {
                if let Some(v) = value(r) {
                    f.sample(name, &[("table", &r.table)], v);
                }
            }
        };

    Family::new(
        &mut out,
        "medallion_run_info",
        "The run and the engine version.",
    )
    .sample(
        "medallion_run_info",
        &[
            ("run_id", run.run_id),
            ("engine_version", crate::run::ENGINE_VERSION),
        ],
        1.0,
    );
    Family::new(
        &mut out,
        "medallion_run_success",
        "1 if every table of the run succeeded, else 0.",
    )
    .sample(
        "medallion_run_success",
        &[],
        if run.succeeded { 1.0 } else { 0.0 },
    );
    Family::new(
        &mut out,
        "medallion_run_started_timestamp_seconds",
        "When the run started (Unix time).",
    )
    .sample(
        "medallion_run_started_timestamp_seconds",
        &[],
        seconds(run.started_at),
    );
    Family::new(
        &mut out,
        "medallion_run_finished_timestamp_seconds",
        "When the run ended, successfully or not (Unix time).",
    )
    .sample(
        "medallion_run_finished_timestamp_seconds",
        &[],
        seconds(run.finished_at),
    );
    if run.succeeded {
        Family::new(
            &mut out,
            "medallion_run_last_success_timestamp_seconds",
            "When the last successful run ended (Unix time).",
        )
        .sample(
            "medallion_run_last_success_timestamp_seconds",
            &[],
            seconds(run.finished_at),
        );
    }
    Family::new(
        &mut out,
        "medallion_run_duration_seconds",
        "Wall time of the run.",
    )
    .sample(
        "medallion_run_duration_seconds",
        &[],
        (run.finished_at - run.started_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6,
    );
    Family::new(
        &mut out,
        "medallion_run_tables",
        "Table runs the run made, failed ones included.",
    )
    .sample("medallion_run_tables", &[], run.records.len() as f64);

    table_metric(
        &mut out,
        "medallion_table_success",
        "1 if the table run succeeded, else 0.",
        &|r| Some(if r.status == "succeeded" { 1.0 } else { 0.0 }),
    );
    table_metric(
        &mut out,
        "medallion_table_rows_read",
        "Rows read by the table run (Bronze: landed lines or records).",
        &|r| Some(r.rows_read as f64),
    );
    table_metric(
        &mut out,
        "medallion_table_rows_written",
        "Rows written to the table.",
        &|r| Some(r.rows_written as f64),
    );
    table_metric(
        &mut out,
        "medallion_table_rows_quarantined",
        "Rows written to the table's quarantine.",
        &|r| Some(r.rows_quarantined as f64),
    );
    table_metric(
        &mut out,
        "medallion_table_duplicates_removed",
        "Rows removed as duplicates.",
        &|r| Some(r.duplicates_removed as f64),
    );
    table_metric(
        &mut out,
        "medallion_table_duration_seconds",
        "Wall time of the table run.",
        &|r| {
            Some(
                (r.finished_at - r.started_at)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1e6,
            )
        },
    );
    table_metric(
        &mut out,
        "medallion_table_version",
        "Delta version of the table after the run.",
        &|r| r.output_version.map(|v| v as f64),
    );

    let failing: Vec<(&str, String, u64)> = run
        .records
        .iter()
        .flat_map(|r| {
            serde_json::from_str::<BTreeMap<String, u64>>(&r.rows_dropped)
                .unwrap_or_default()
                .into_iter()
                .map(move |(rule, n)| (r.table.as_str(), rule, n))
        })
        .collect();
    if !failing.is_empty() {
        let name = "medallion_table_expectation_failed_rows";
        let mut f = Family::new(
            &mut out,
            name,
            "Rows failing each expectation of the table (whatever its action).",
        );
        for (table, rule, n) in &failing {
            f.sample(name, &[("table", table), ("rule", rule)], *n as f64);
        }
    }

    let bytes_metric = |out: &mut String, name: &str, help: &str, value: fn(&BytesRead) -> u64| {
        if run.bytes.is_empty() {
            return;
        }
        let mut f = Family::new(out, name, help);
        for b in run.bytes {
            f.sample(name, &[("table", &b.table)], value(b) as f64);
        }
    };
    bytes_metric(
        &mut out,
        "medallion_table_files_read",
        "Landed files the Bronze table run ingested.",
        |b| b.files,
    );
    bytes_metric(
        &mut out,
        "medallion_table_bytes_read",
        "Landed bytes the Bronze table run read, as stored (compressed).",
        |b| b.bytes,
    );
    bytes_metric(
        &mut out,
        "medallion_table_uncompressed_bytes_read",
        "Landed bytes the Bronze table run read, after decompression.",
        |b| b.uncompressed_bytes,
    );
    out
}

/// The Pushgateway URL of a run's group: `url` itself when it already names a group
/// (`…/metrics/job/…`), else `url` + `/metrics/job/medallion/layer/<layer>` and, for a
/// sharded job, `/shard/<I>/shards/<N>`.
pub fn group_url(url: &Url, layer: &str, shard: Option<Shard>) -> Url {
    if url.path().contains("/metrics/job/") {
        return url.clone();
    }
    let mut group = url.clone();
    {
        let mut segments = match group.path_segments_mut() {
            Ok(s) => s,
            Err(()) => return url.clone(),
        };
        segments.pop_if_empty();
        segments.extend(["metrics", "job", "medallion", "layer", layer]);
        if let Some(s) = shard {
            segments.extend([
                "shard",
                &s.index.to_string(),
                "shards",
                &s.count.to_string(),
            ]);
        }
    }
    group
}

/// Pushes `body` to the group at `url`: `PUT` replaces the group, `POST` only the metrics
/// pushed. Gives up after `timeout`.
pub async fn push(url: &Url, body: String, replace: bool, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let request = if replace {
        client.put(url.clone())
    } else {
        client.post(url.clone())
    };
    let response = request
        .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| with_causes(&e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = response.text().await.unwrap_or_default();
        let text = text.trim();
        Err(if text.is_empty() {
            format!("HTTP {status}")
        } else {
            format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            )
        })
    }
}

/// An error with its chain of causes (`error sending request: … : Connection refused`).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(table: &str, status: &str) -> RunRecord {
        let ctx = crate::RunContext::new(0);
        let table: medallion_config::TableRef = table.parse().unwrap();
        let mut r = RunRecord::new(&ctx, &table, Utc::now(), String::new());
        r.status = status.into();
        r
    }

    #[test]
    fn groups_follow_the_layer_and_shard() {
        let base = Url::parse("http://pg:9091").unwrap();
        assert_eq!(
            group_url(&base, "bronze", Some("1/4".parse().unwrap())).as_str(),
            "http://pg:9091/metrics/job/medallion/layer/bronze/shard/1/shards/4"
        );
        let base = Url::parse("http://pg:9091/prefix/").unwrap();
        assert_eq!(
            group_url(&base, "all", None).as_str(),
            "http://pg:9091/prefix/metrics/job/medallion/layer/all"
        );
        let given = Url::parse("http://pg:9091/metrics/job/nightly/env/prod").unwrap();
        assert_eq!(group_url(&given, "gold", None), given);
    }

    #[test]
    fn exposition_escapes_labels_and_keeps_families_contiguous() {
        let mut a = record("silver.events", "succeeded");
        a.rows_read = 10;
        a.rows_dropped = r#"{"valid \"type\"": 2}"#.into();
        let b = record("gold.x", "failed");
        let records = [a, b];
        let t = Utc::now();
        let text = exposition(&RunMetrics {
            run_id: "r1",
            started_at: t,
            finished_at: t,
            succeeded: false,
            records: &records,
            bytes: &[],
        });
        assert!(text.contains("medallion_table_rows_read{table=\"silver.events\"} 10\n"));
        assert!(text.contains(
            "medallion_table_expectation_failed_rows{table=\"silver.events\",rule=\"valid \\\"type\\\"\"} 2\n"
        ));
        assert!(text.contains("medallion_table_success{table=\"gold.x\"} 0\n"));
        assert!(text.contains("medallion_run_success 0\n"));
        assert!(!text.contains("last_success"));
        // Each family's samples follow its TYPE line, once.
        let mut seen = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            if seen.last() != Some(&name) {
                assert!(!seen.contains(&name), "{name} is split");
                seen.push(name);
            }
        }
    }
}
