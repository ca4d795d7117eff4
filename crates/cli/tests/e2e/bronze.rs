//! Bronze end to end on the local filesystem: generated landing data, exactly-once
//! ingestion, accounting, drift columns, quarantine, re-runs.

use std::path::Path;

use crate::delta::{rows, scalar};
use crate::{decompressed, files, medallion, repo, stderr, stdout};

fn run_bronze(root: &Path, landing: &Path) -> serde_json::Value {
    run_bronze_in(&repo(), root, landing)
}

/// Runs the Bronze layer of the `layers.yaml` in `cwd`; returns its JSON report.
fn run_bronze_in(cwd: &Path, root: &Path, landing: &Path) -> serde_json::Value {
    let out = medallion(cwd)
        .args(["run", "--layer", "bronze", "--format", "json", "--root"])
        .arg(root)
        .arg("--landing")
        .arg(landing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// Every JSON object line of the files under `dir`, read independently of the engine.
fn raw_objects(dir: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    files(dir)
        .into_values()
        .flat_map(|bytes| {
            decompressed(bytes)
                .split(|&b| b == b'\n')
                .filter_map(|line| match serde_json::from_slice(line) {
                    Ok(serde_json::Value::Object(o)) => Some(o),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn table<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["bronze"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == name)
        .unwrap()
}

#[test]
fn generated_data_lands_exactly_once_with_every_line_accounted_for() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let root = tmp.path().join("lake");
    let generation = medallion(tmp.path())
        .args([
            "generate",
            "--events",
            "20000",
            "--events-per-file",
            "5000",
            "--seed",
            "11",
            "--out",
        ])
        .arg(&landing)
        .output()
        .unwrap();
    assert_eq!(generation.status.code(), Some(0), "{}", stderr(&generation));
    let generated: serde_json::Value = serde_json::from_str(&stdout(&generation)).unwrap();

    let first = run_bronze(&root, &landing);
    let events = table(&first, "bronze.events");
    assert_eq!(events["files"].as_array().unwrap().len(), 4);
    assert_eq!(events["lines"], 20000);
    let rows_written = events["rows"].as_i64().unwrap();
    let quarantined = events["quarantined"].as_i64().unwrap();
    assert_eq!(
        rows_written + quarantined,
        20000,
        "every line is a row or quarantined"
    );
    assert_eq!(
        quarantined,
        generated["malformed_lines"].as_i64().unwrap(),
        "exactly the malformed lines"
    );
    for file in events["files"].as_array().unwrap() {
        assert_eq!(
            file["rows"].as_i64().unwrap() + file["quarantined"].as_i64().unwrap(),
            file["lines"].as_i64().unwrap()
        );
    }
    assert_eq!(
        events["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["gzip"] == true)
            .count() as i64,
        generated["gzip_files"].as_i64().unwrap()
    );

    // The tables hold what the report says.
    let bronze_events = root.join("bronze/events");
    assert_eq!(
        scalar(&bronze_events, "SELECT count(*) FROM t"),
        rows_written
    );
    let q = root.join("bronze/_quarantine/events");
    assert_eq!(scalar(&q, "SELECT count(*) FROM t"), quarantined);
    assert_eq!(
        scalar(
            &bronze_events,
            "SELECT count(DISTINCT _source_file || ':' || CAST(_source_line AS VARCHAR)) FROM t"
        ),
        rows_written,
        "(file, line) identifies a row"
    );
    // Drift: fields of the later files became columns.
    let new_columns: Vec<&str> = events["new_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for drift in ["device", "consent", "app_version"] {
        assert!(
            new_columns.contains(&drift),
            "{drift} not in {new_columns:?}"
        );
    }
    // String revenues are kept in _rescued, not dropped: as many as the raw files hold.
    let string_revenues = raw_objects(&landing.join("events"))
        .iter()
        .filter(|o| o.get("revenue").is_some_and(serde_json::Value::is_string))
        .count() as i64;
    assert!(string_revenues > 0);
    assert_eq!(
        scalar(
            &bronze_events,
            "SELECT count(*) FROM t WHERE _rescued LIKE '%\"revenue\":\"%'"
        ),
        string_revenues
    );

    let ad_spend = table(&first, "bronze.ad_spend");
    assert_eq!(ad_spend["quarantined"], 0);
    assert_eq!(ad_spend["rows"], generated["ad_spend_rows"]);
    assert_eq!(
        table(&first, "bronze.campaigns")["rows"],
        generated["campaigns"]
    );
    assert_eq!(table(&first, "bronze.fx_rates")["rows"], 4);

    // `query` reads the same tables, now or as of an earlier version.
    let query = |args: &[&str]| {
        let out = medallion(&repo())
            .arg("query")
            .args(args)
            .arg("--root")
            .arg(&root)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let counted = query(&[
        "SELECT count(*) AS n FROM bronze.events",
        "--format",
        "json",
    ]);
    assert_eq!(counted.trim(), format!("{{\"n\":{rows_written}}}"));
    let at_creation = query(&[
        "SELECT count(*) AS n FROM bronze.events",
        "--format",
        "csv",
        "--as-of",
        "bronze.events=0",
    ]);
    assert_eq!(at_creation, "n\n0\n");
    let quarantined_csv = query(&[
        "SELECT count(*) AS q FROM bronze_quarantine.events",
        "--format",
        "csv",
    ]);
    assert_eq!(quarantined_csv, format!("q\n{quarantined}\n"));

    // A second run finds everything ingested.
    let second = run_bronze(&root, &landing);
    for t in second["bronze"].as_array().unwrap() {
        assert_eq!(t["rows"], 0, "{t}");
        assert_eq!(t["files"].as_array().unwrap().len(), 0);
    }
    assert_eq!(table(&second, "bronze.events")["already_ingested"], 4);

    // The run log has one row per table run, with the counts of the report.
    let runs = root.join("_system/runs");
    assert_eq!(
        scalar(&runs, "SELECT count(*) FROM t WHERE status = 'succeeded'"),
        8
    );
    assert_eq!(scalar(&runs, "SELECT count(DISTINCT run_id) FROM t"), 2);
    assert_eq!(
        scalar(
            &runs,
            "SELECT max(rows_written) FROM t WHERE \"table\" = 'bronze.events'"
        ),
        rows_written
    );
    assert_eq!(
        scalar(
            &runs,
            "SELECT sum(rows_written + rows_quarantined - rows_read) FROM t"
        ),
        0,
        "rows + quarantined = lines read, in every run"
    );

    // `history` shows both runs and the commit each made, with its run id.
    let history = medallion(&repo())
        .args(["history", "bronze.events", "--format", "json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(history.status.code(), Some(0), "{}", stderr(&history));
    let history: serde_json::Value = serde_json::from_str(&stdout(&history)).unwrap();
    let run_ids: Vec<&str> = history["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        run_ids,
        [
            second["run_id"].as_str().unwrap(),
            first["run_id"].as_str().unwrap()
        ]
    );
    let commits = history["commits"].as_array().unwrap();
    assert_eq!(
        commits[0]["run_id"], first["run_id"],
        "the newest commit was made by the first run"
    );
    assert_eq!(commits[0]["files"], 4);
    assert_eq!(commits.last().unwrap()["operation"], "CREATE TABLE");
    assert_eq!(
        scalar(&bronze_events, "SELECT count(*) FROM t"),
        rows_written
    );
}

#[test]
fn bad_input_is_quarantined_with_file_line_and_error() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let root = tmp.path().join("lake");
    std::fs::create_dir_all(landing.join("events")).unwrap();
    std::fs::write(landing.join("events/empty.ndjson"), b"").unwrap();
    std::fs::write(
        landing.join("events/dirty.ndjson"),
        b"{\"event_id\": \"a\", \"revenue\": \"12.50\"}\r\n[1,2]\n\n{\"event_id\": 7, \"x\"\n{\"event_id\": \"\xff\"}\n{\"event_id\": \"b\", \"revenue\": 3}",
    )
    .unwrap();
    let report = run_bronze(&root, &landing);
    let events = table(&report, "bronze.events");
    assert_eq!(events["lines"], 6);
    assert_eq!(events["rows"], 2);
    assert_eq!(events["quarantined"], 4);
    assert_eq!(
        rows(
            &root.join("bronze/_quarantine/events"),
            "SELECT _source_file, _source_line, _error FROM t ORDER BY _source_line"
        ),
        [
            "+---------------------+--------------+---------------------------------------------------------------------------+",
            "| _source_file        | _source_line | _error                                                                    |",
            "+---------------------+--------------+---------------------------------------------------------------------------+",
            "| events/dirty.ndjson | 2            | not a JSON object: the line is a JSON array (at byte 0)                   |",
            "| events/dirty.ndjson | 3            | empty line, not a JSON object (at byte 0)                                 |",
            "| events/dirty.ndjson | 4            | invalid JSON: the line ends early (truncated?), expected `:` (at byte 19) |",
            "| events/dirty.ndjson | 5            | invalid UTF-8 (at byte 14)                                                |",
            "+---------------------+--------------+---------------------------------------------------------------------------+",
        ]
    );
    assert_eq!(
        rows(
            &root.join("bronze/events"),
            "SELECT event_id, revenue, _rescued, _source_line FROM t ORDER BY _source_line"
        ),
        [
            "+----------+---------+---------------------+--------------+",
            "| event_id | revenue | _rescued            | _source_line |",
            "+----------+---------+---------------------+--------------+",
            "| a        |         | {\"revenue\":\"12.50\"} | 1            |",
            "| b        | 3.0     |                     | 6            |",
            "+----------+---------+---------------------+--------------+",
        ]
    );
}

const FIXTURE_CONFIG: &str = r#"
version: 1
pipeline: fixtures
sources:
  lines:
    format: ndjson
    columns: { id: string, n: long }
  records:
    format: csv
    columns: { id: string, amount: double }
  elements:
    format: json_array
    columns: { id: string }
  short:
    format: ndjson
    max_line_bytes: 16
bronze:
  lines: {}
  records: {}
  elements: {}
  short: {}
"#;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn every_bad_input_case_lands_or_is_quarantined_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let root = tmp.path().join("lake");
    std::fs::write(tmp.path().join("layers.yaml"), FIXTURE_CONFIG).unwrap();
    for dir in ["lines", "records", "elements", "short"] {
        std::fs::create_dir_all(landing.join(dir)).unwrap();
    }
    // NDJSON: an empty file, a 10 MB line, a truncated gzip (two complete lines and a tail),
    // a gzip file without a .gz name.
    std::fs::write(landing.join("lines/a_empty.ndjson"), b"").unwrap();
    let big = format!(
        "{{\"id\": \"big\", \"pad\": \"{}\"}}\n",
        "x".repeat(10 << 20)
    );
    std::fs::write(landing.join("lines/b_big.ndjson"), big.as_bytes()).unwrap();
    let full = gzip(
        b"{\"id\": \"g1\", \"n\": 1}\n{\"id\": \"g2\", \"n\": 2}\n{\"id\": \"g3\", \"n\": 3}\n",
    );
    std::fs::write(
        landing.join("lines/c_truncated.ndjson.gz"),
        &full[..full.len() - 12],
    )
    .unwrap();
    std::fs::write(
        landing.join("lines/d_gzip_no_suffix"),
        gzip(b"{\"id\": \"z\", \"n\": \"7\"}\n"),
    )
    .unwrap();
    // CSV: a ragged record, a quoted field with a comma and a newline, a value that does not fit.
    std::fs::write(
        landing.join("records/r.csv"),
        b"id,amount\nr1,1.5\nr2,2.5,extra\n\"r,3\",\"3\"\nr4,lots\n\"r\n5\",5\n",
    )
    .unwrap();
    // JSON array: objects, a scalar element, nested brackets in strings, and a truncated end.
    std::fs::write(
        landing.join("elements/e.json"),
        b"[ {\"id\": \"e1\"}, 42, {\"id\": \"e]3\", \"x\": [1, {\"y\": \"}\"}]}, {\"id\": \"e4\"",
    )
    .unwrap();

    // A line longer than `max_line_bytes` (16): quarantined with its first 16 bytes.
    std::fs::write(
        landing.join("short/s.ndjson"),
        b"{\"a\": 1}\n{\"a\": \"0123456789abcdef\"}\n",
    )
    .unwrap();

    let report = run_bronze_in(tmp.path(), &root, &landing);

    assert_eq!(
        rows(
            &root.join("bronze/_quarantine/short"),
            "SELECT _source_line, CAST(_raw AS VARCHAR) AS raw, _error FROM t"
        ),
        [
            "+--------------+------------------+----------------------------------------------------------------------------------+",
            "| _source_line | raw              | _error                                                                           |",
            "+--------------+------------------+----------------------------------------------------------------------------------+",
            "| 2            | {\"a\": \"012345678 | line of 25 bytes is longer than max_line_bytes (16); its first 16 bytes are kept |",
            "+--------------+------------------+----------------------------------------------------------------------------------+",
        ]
    );
    assert_eq!(table(&report, "bronze.short")["rows"], 1);

    let lines = table(&report, "bronze.lines");
    let files: Vec<(String, i64, i64, i64)> = lines["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["lines"].as_i64().unwrap(),
                f["rows"].as_i64().unwrap(),
                f["quarantined"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("lines/a_empty.ndjson".to_string(), 0, 0, 0),
            ("lines/b_big.ndjson".to_string(), 1, 1, 0),
            ("lines/c_truncated.ndjson.gz".to_string(), 3, 2, 1),
            ("lines/d_gzip_no_suffix".to_string(), 1, 1, 0),
        ]
    );
    let truncated = &lines["files"][2];
    assert!(
        truncated["error"].as_str().unwrap().contains("truncated"),
        "{truncated}"
    );
    assert_eq!(
        rows(
            &root.join("bronze/lines"),
            "SELECT id, n, _rescued, _source_file, _source_line FROM t WHERE id <> 'big' ORDER BY id"
        ),
        [
            "+----+---+-----------+-----------------------------+--------------+",
            "| id | n | _rescued  | _source_file                | _source_line |",
            "+----+---+-----------+-----------------------------+--------------+",
            "| g1 | 1 |           | lines/c_truncated.ndjson.gz | 1            |",
            "| g2 | 2 |           | lines/c_truncated.ndjson.gz | 2            |",
            "| z  |   | {\"n\":\"7\"} | lines/d_gzip_no_suffix      | 1            |",
            "+----+---+-----------+-----------------------------+--------------+",
        ]
    );
    assert_eq!(
        scalar(
            &root.join("bronze/lines"),
            "SELECT length(pad) FROM t WHERE id = 'big'"
        ),
        10 << 20
    );
    let q = rows(
        &root.join("bronze/_quarantine/lines"),
        "SELECT _source_file, _source_line, _error FROM t",
    );
    assert_eq!(q.len(), 5, "{q:#?}");
    assert!(
        q[3].contains("| lines/c_truncated.ndjson.gz | 3 ")
            && q[3].contains("incomplete last line: the compressed stream is truncated"),
        "{q:#?}"
    );

    assert_eq!(
        rows(
            &root.join("bronze/records"),
            "SELECT id, amount, _rescued, _source_line FROM t ORDER BY _source_line"
        ),
        [
            "+-----+--------+-------------------+--------------+",
            "| id  | amount | _rescued          | _source_line |",
            "+-----+--------+-------------------+--------------+",
            "| r1  | 1.5    |                   | 2            |",
            "| r,3 | 3.0    |                   | 4            |",
            "| r4  |        | {\"amount\":\"lots\"} | 5            |",
            "| r   | 5.0    |                   | 6            |",
            "| 5   |        |                   |              |",
            "+-----+--------+-------------------+--------------+",
        ]
    );
    assert_eq!(
        rows(
            &root.join("bronze/_quarantine/records"),
            "SELECT _source_line, CAST(_raw AS VARCHAR) AS raw, _error FROM t"
        ),
        [
            "+--------------+--------------+-------------------------------------------+",
            "| _source_line | raw          | _error                                    |",
            "+--------------+--------------+-------------------------------------------+",
            "| 3            | r2,2.5,extra | CSV record has 3 fields, the header has 2 |",
            "+--------------+--------------+-------------------------------------------+",
        ]
    );

    let elements = table(&report, "bronze.elements");
    assert_eq!(
        (
            elements["lines"].as_i64(),
            elements["rows"].as_i64(),
            elements["quarantined"].as_i64()
        ),
        (Some(4), Some(2), Some(2))
    );
    assert_eq!(
        rows(
            &root.join("bronze/elements"),
            "SELECT id, _rescued, _source_line FROM t ORDER BY _source_line"
        ),
        [
            "+-----+----------+--------------+",
            "| id  | _rescued | _source_line |",
            "+-----+----------+--------------+",
            "| e1  |          | 1            |",
            "| e]3 |          | 3            |",
            "+-----+----------+--------------+",
        ]
    );
    assert_eq!(
        rows(
            &root.join("bronze/_quarantine/elements"),
            "SELECT _source_line, CAST(_raw AS VARCHAR) AS raw, _error FROM t ORDER BY _source_line"
        ),
        [
            "+--------------+-------------+--------------------------------------------------------------------------------+",
            "| _source_line | raw         | _error                                                                         |",
            "+--------------+-------------+--------------------------------------------------------------------------------+",
            "| 2            | 42          | not a JSON object: the line is a JSON number (at byte 0)                       |",
            "| 4            | {\"id\": \"e4\" | incomplete last element: the file ends before the array is closed (truncated?) |",
            "+--------------+-------------+--------------------------------------------------------------------------------+",
        ]
    );
}

/// Everything of a Bronze events table except the run's own identity, in a fixed order.
fn content(root: &Path) -> Vec<String> {
    rows(
        &root.join("bronze/events"),
        "SELECT _source_file, _source_line, event_id, event_type, event_time, user_id, revenue, currency, _rescued \
         FROM t ORDER BY _source_file, _source_line",
    )
}

fn quarantine_content(root: &Path) -> Vec<String> {
    rows(
        &root.join("bronze/_quarantine/events"),
        "SELECT _source_file, _source_line, _raw, _error FROM t ORDER BY _source_file, _source_line",
    )
}

fn bronze_events(root: &Path, landing: &Path, crash_at: Option<&str>) -> std::process::Output {
    let mut cmd = medallion(&repo());
    cmd.args(["run", "--table", "bronze.events", "--root"])
        .arg(root)
        .arg("--landing")
        .arg(landing);
    if let Some(point) = crash_at {
        cmd.env("MEDALLION_CRASH_AT", point);
    }
    cmd.output().unwrap()
}

#[test]
fn a_crash_at_any_point_then_a_rerun_gives_the_rows_of_a_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let out = medallion(tmp.path())
        .args([
            "generate",
            "--events",
            "60000",
            "--events-per-file",
            "20000",
            "--seed",
            "3",
            "--out",
        ])
        .arg(&landing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let clean = tmp.path().join("clean");
    assert_eq!(bronze_events(&clean, &landing, None).status.code(), Some(0));
    let expected = content(&clean);
    let expected_q = quarantine_content(&clean);
    assert_eq!(
        expected.len(),
        60000 - 30 + 4,
        "header, separators and rows"
    );

    for point in [
        "bronze.before_commit",
        "bronze.after_quarantine_commit",
        "bronze.after_commit",
    ] {
        let root = tmp.path().join(point);
        let crashed = bronze_events(&root, &landing, Some(point));
        assert_ne!(
            crashed.status.code(),
            Some(0),
            "{point}: the crash point must stop the run"
        );
        assert!(stderr(&crashed).contains(&format!("crash point `{point}` reached")));
        let rerun = bronze_events(&root, &landing, None);
        assert_eq!(rerun.status.code(), Some(0), "{point}: {}", stderr(&rerun));
        assert_eq!(
            content(&root),
            expected,
            "{point}: Bronze rows after the re-run"
        );
        assert_eq!(
            quarantine_content(&root),
            expected_q,
            "{point}: quarantine after the re-run"
        );
    }

    // A real SIGKILL while the first file is being written.
    let root = tmp.path().join("killed");
    let mut child = medallion(&repo())
        .args(["run", "--table", "bronze.events", "--root"])
        .arg(&root)
        .arg("--landing")
        .arg(&landing)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let data = root.join("bronze/events");
    while std::time::Instant::now() < deadline
        && !std::fs::read_dir(&data)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            })
            .unwrap_or(false)
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let rerun = bronze_events(&root, &landing, None);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    assert_eq!(content(&root), expected, "after SIGKILL and a re-run");
    assert_eq!(quarantine_content(&root), expected_q);
}

#[test]
fn concurrent_jobs_ingest_every_file_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let root = tmp.path().join("lake");
    let out = medallion(tmp.path())
        .args([
            "generate",
            "--events",
            "40000",
            "--events-per-file",
            "4000",
            "--seed",
            "9",
            "--out",
        ])
        .arg(&landing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let jobs: Vec<_> = (0..4)
        .map(|_| {
            medallion(&repo())
                .args([
                    "run",
                    "--table",
                    "bronze.events",
                    "--format",
                    "json",
                    "--root",
                ])
                .arg(&root)
                .arg("--landing")
                .arg(&landing)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut rows_reported = 0;
    let mut files_reported = 0;
    for job in jobs {
        let out = job.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let events = table(&report, "bronze.events");
        rows_reported += events["rows"].as_i64().unwrap();
        files_reported += events["files"].as_array().unwrap().len();
    }
    let events = root.join("bronze/events");
    let rows = scalar(&events, "SELECT count(*) FROM t");
    assert_eq!(
        files_reported, 10,
        "each file reported once, by the job that committed it"
    );
    assert_eq!(rows_reported, rows);
    assert_eq!(
        scalar(
            &events,
            "SELECT count(DISTINCT _source_file || ':' || CAST(_source_line AS VARCHAR)) FROM t"
        ),
        rows
    );
    assert_eq!(
        rows + scalar(
            &root.join("bronze/_quarantine/events"),
            "SELECT count(*) FROM t"
        ),
        40000
    );
}

#[test]
fn parquet_sources_are_cast_to_declared_types_with_misfits_rescued() {
    use deltalake::arrow::array::{Int32Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let root = tmp.path().join("lake");
    std::fs::create_dir_all(landing.join("orders")).unwrap();
    std::fs::write(
        tmp.path().join("layers.yaml"),
        "version: 1\npipeline: p\nsources:\n  orders:\n    format: parquet\n    columns: { id: string, amount: double }\nbronze:\n  orders: {}\n",
    )
    .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("amount", DataType::Utf8, true),
        Field::new("qty", DataType::Int32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("o1"), Some("o2"), None])),
            Arc::new(StringArray::from(vec![Some("1.25"), Some("n/a"), None])),
            Arc::new(Int32Array::from(vec![Some(3), None, Some(5)])),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(landing.join("orders/part-0.parquet")).unwrap();
    let mut writer = deltalake::parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let report = run_bronze_in(tmp.path(), &root, &landing);
    let orders = table(&report, "bronze.orders");
    assert_eq!(
        (
            orders["lines"].as_i64(),
            orders["rows"].as_i64(),
            orders["rescued"].as_i64()
        ),
        (Some(3), Some(3), Some(1))
    );
    assert_eq!(
        rows(
            &root.join("bronze/orders"),
            "SELECT id, amount, qty, _rescued, _source_line FROM t ORDER BY _source_line"
        ),
        [
            "+----+--------+-----+------------------+--------------+",
            "| id | amount | qty | _rescued         | _source_line |",
            "+----+--------+-----+------------------+--------------+",
            "| o1 | 1.25   | 3   |                  | 1            |",
            "| o2 |        |     | {\"amount\":\"n/a\"} | 2            |",
            "|    |        | 5   |                  | 3            |",
            "+----+--------+-----+------------------+--------------+",
        ]
    );
}

#[test]
fn a_file_that_changes_after_ingestion_is_reported_not_ingested_again() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let root = tmp.path().join("lake");
    std::fs::create_dir_all(landing.join("lines")).unwrap();
    let config = |policy: &str| {
        format!(
            "version: 1\npipeline: p\nsources:\n  lines:\n    format: ndjson\n    on_changed_file: {policy}\nbronze:\n  lines: {{}}\n"
        )
    };
    std::fs::write(tmp.path().join("layers.yaml"), config("report")).unwrap();
    let file = landing.join("lines/a.ndjson");
    std::fs::write(&file, b"{\"k\": 1}\n{\"k\": 2}\n").unwrap();
    let run = || table(&run_bronze_in(tmp.path(), &root, &landing), "bronze.lines").clone();
    assert_eq!(run()["rows"], 2);
    std::fs::write(&file, b"{\"k\": 1}\n{\"k\": 2}\n{\"k\": 3}\n").unwrap();

    let plan = medallion(tmp.path())
        .args(["plan", "--root"])
        .arg(&root)
        .arg("--landing")
        .arg(&landing)
        .output()
        .unwrap();
    assert!(
        stdout(&plan).contains("! lines/a.ndjson changed after ingestion"),
        "{}",
        stdout(&plan)
    );

    let second = run();
    assert_eq!(second["rows"], 0);
    assert_eq!(
        second["changed_files"],
        serde_json::json!(["lines/a.ndjson"])
    );
    assert_eq!(
        scalar(&root.join("bronze/lines"), "SELECT count(*) FROM t"),
        2
    );

    std::fs::write(tmp.path().join("layers.yaml"), config("reingest")).unwrap();
    let third = run();
    assert_eq!(third["rows"], 3, "the new content is ingested again");
    assert_eq!(
        scalar(&root.join("bronze/lines"), "SELECT count(*) FROM t"),
        5
    );
    assert_eq!(run()["rows"], 0, "and only once");
}

#[test]
fn a_failed_table_run_is_in_the_run_log() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let root = tmp.path().join("lake");
    std::fs::create_dir_all(landing.join("orders")).unwrap();
    std::fs::write(landing.join("orders/o.parquet"), b"this is not parquet").unwrap();
    std::fs::write(
        tmp.path().join("layers.yaml"),
        "version: 1\npipeline: p\nsources:\n  orders:\n    format: parquet\nbronze:\n  orders: {}\n",
    )
    .unwrap();
    let out = medallion(tmp.path())
        .args(["run", "--layer", "bronze", "--root"])
        .arg(&root)
        .arg("--landing")
        .arg(&landing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a readable Parquet file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        scalar(
            &root.join("_system/runs"),
            "SELECT count(*) FROM t WHERE status = 'failed' AND \"table\" = 'bronze.orders' AND error LIKE '%orders/o.parquet%'"
        ),
        1
    );
    assert_eq!(
        scalar(&root.join("bronze/orders"), "SELECT count(*) FROM t"),
        0,
        "nothing committed"
    );
}

/// `--shard I/N` splits the landed files between Bronze jobs by a hash of their path: shards
/// of any layout, run in any order, again, or at the same time as other layouts, ingest every
/// file exactly once, and give the rows one unsharded job gives.
#[test]
fn shard_layouts_give_the_rows_of_one_job() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let out = medallion(tmp.path())
        .args([
            "generate",
            "--events",
            "24000",
            "--events-per-file",
            "2000",
            "--seed",
            "12",
            "--out",
        ])
        .arg(&landing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let job = |root: &Path, shard: Option<&str>| {
        let mut c = medallion(&repo());
        c.args(["run", "--layer", "bronze", "--format", "json", "--root"])
            .arg(root)
            .arg("--landing")
            .arg(&landing);
        if let Some(s) = shard {
            c.args(["--shard", s]);
        }
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    let finish = |child: std::process::Child| -> Vec<String> {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        report["bronze"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["files"].as_array().unwrap().iter())
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect()
    };
    // The content of every Bronze table and quarantine, without run metadata.
    let content = |root: &Path| -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for t in ["events", "ad_spend", "campaigns", "fx_rates"] {
            for dir in [
                root.join("bronze").join(t),
                root.join("bronze/_quarantine").join(t),
            ] {
                if !dir.join("_delta_log").exists() {
                    out.push(Vec::new());
                    continue;
                }
                let keep: Vec<String> = crate::delta::columns(&dir)
                    .into_iter()
                    .filter(|c| c != "_run_id" && c != "_ingested_at")
                    .map(|c| format!("\"{c}\""))
                    .collect();
                out.push(rows(
                    &dir,
                    &format!(
                        "SELECT {} FROM t ORDER BY _source_file, _source_line",
                        keep.join(", ")
                    ),
                ));
            }
        }
        out
    };

    let single = tmp.path().join("single");
    let all_files = finish(job(&single, None).spawn().unwrap());
    let expected = content(&single);
    assert!(all_files.len() >= 15, "{all_files:?}");

    // Three shards one after the other, out of order; each file in exactly one shard.
    let three = tmp.path().join("three");
    let mut seen: Vec<String> = Vec::new();
    for s in ["2/3", "0/3", "1/3"] {
        let files = finish(job(&three, Some(s)).spawn().unwrap());
        assert!(!files.is_empty(), "shard {s} got no file");
        // Sources with `sharding: whole` (restated ad spend, latest-wins dimensions) go to
        // one shard each, whole.
        for source in ["ad_spend/", "campaigns/", "fx_rates/"] {
            let here = files.iter().filter(|f| f.starts_with(source)).count();
            let landed = all_files.iter().filter(|f| f.starts_with(source)).count();
            assert!(
                here == 0 || here == landed,
                "{source}: {here} of {landed} in shard {s}"
            );
        }
        seen.extend(files);
    }
    seen.sort();
    let mut all = all_files.clone();
    all.sort();
    assert_eq!(seen, all, "the three shards split the files");
    // A shard run again ingests nothing.
    assert!(finish(job(&three, Some("1/3")).spawn().unwrap()).is_empty());
    assert_eq!(content(&three), expected, "three shards");
    // Silver after the out-of-order shards equals Silver after one job: the restated spend
    // and the latest dimension rows win as they do there.
    let silver = |root: &Path| -> Vec<Vec<String>> {
        let out = medallion(&repo())
            .args(["run", "--layer", "silver", "--root"])
            .arg(root)
            .arg("--landing")
            .arg(&landing)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        ["ad_spend", "campaigns", "fx_rates"]
            .iter()
            .map(|t| {
                let dir = root.join("silver").join(t);
                let keep: Vec<String> = crate::delta::columns(&dir)
                    .into_iter()
                    .filter(|c| !c.starts_with('_'))
                    .map(|c| format!("\"{c}\""))
                    .collect();
                rows(
                    &dir,
                    &format!("SELECT {0} FROM t ORDER BY {0}", keep.join(", ")),
                )
            })
            .collect()
    };
    assert_eq!(silver(&three), silver(&single), "Silver after three shards");

    // Four shards at once, then two more layouts over the same lake while it fills.
    let mixed = tmp.path().join("mixed");
    let children: Vec<_> = ["0/4", "1/4", "2/4", "3/4", "1/2"]
        .iter()
        .map(|s| job(&mixed, Some(s)).spawn().unwrap())
        .collect();
    let mut seen: Vec<String> = children.into_iter().flat_map(finish).collect();
    seen.extend(finish(job(&mixed, Some("0/2")).spawn().unwrap()));
    seen.sort();
    assert_eq!(
        seen, all,
        "every file reported once, by the job that committed it"
    );
    assert_eq!(content(&mixed), expected, "overlapping layouts at once");

    // Bad shards and shards outside Bronze are usage errors.
    for (args, message) in [
        (vec!["--shard", "3/3", "--layer", "bronze"], "not a shard"),
        (vec!["--shard", "0/2"], "not a Bronze table"),
    ] {
        let out = medallion(&repo())
            .arg("run")
            .args(&args)
            .arg("--root")
            .arg(&single)
            .arg("--landing")
            .arg(&landing)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}

/// A `gs://` or `az://` location in a build made without that store's feature is a usage
/// error that names the feature.
#[test]
fn stores_left_out_of_the_build_are_named() {
    for (root, feature) in [
        ("gs://bucket/lake", "gcs"),
        ("az://container/lake", "azure"),
    ] {
        if (feature == "gcs" && cfg!(feature = "gcs"))
            || (feature == "azure" && cfg!(feature = "azure"))
        {
            continue;
        }
        let out = medallion(&repo())
            .args(["run", "--layer", "bronze", "--root", root])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("needs the `{feature}` feature")),
            "{}",
            stderr(&out)
        );
    }
}
