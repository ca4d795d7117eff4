//! Silver end to end: a hand-worked fixture with every Silver row written out, expectation
//! actions and their precedence, schema evolution, definition changes, incremental runs
//! that equal one run, and crashes at every commit point.

use std::path::{Path, PathBuf};

use crate::delta::{rows, scalar};
use crate::{medallion, repo, stderr, stdout};

fn fixture(wave: &str) -> PathBuf {
    repo().join("tests/fixtures/silver").join(wave)
}

/// Copies every file under `from` into `to`, keeping relative paths.
fn land(from: &Path, to: &Path) {
    for (rel, bytes) in crate::files(from) {
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}

/// Runs `medallion run` with `args`; returns the JSON report, asserting the exit code.
fn run_with(
    cwd: &Path,
    root: &Path,
    landing: &Path,
    args: &[&str],
    code: i32,
) -> (serde_json::Value, String) {
    let out = medallion(cwd)
        .arg("run")
        .args(args)
        .args(["--format", "json", "--root"])
        .arg(root)
        .arg("--landing")
        .arg(landing)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr:\n{}\nstdout:\n{}",
        stderr(&out),
        stdout(&out)
    );
    (
        serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null),
        stderr(&out),
    )
}

/// Bronze, then Silver, of the shipped pipeline; returns the Silver reports.
fn bronze_and_silver(root: &Path, landing: &Path) -> serde_json::Value {
    run_with(&repo(), root, landing, &["--layer", "bronze"], 0);
    run_with(&repo(), root, landing, &["--layer", "silver"], 0).0
}

fn silver_report<'a>(report: &'a serde_json::Value, table: &str) -> &'a serde_json::Value {
    report["silver"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("{table} in {report}"))
}

/// The rows of a table as `a|b|c` lines (NULL spelled out), in `order`.
fn lines(dir: &Path, columns: &[&str], order: &str) -> Vec<String> {
    let select = columns
        .iter()
        .map(|c| format!("coalesce(CAST({c} AS VARCHAR), 'NULL')"))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    rows(
        dir,
        &format!("SELECT {select} AS r FROM t ORDER BY {order}"),
    )
    .into_iter()
    .filter(|l| l.starts_with("| ") && !l.starts_with("| r "))
    .map(|l| l[2..].trim_end_matches('|').trim_end().to_string())
    .collect()
}

const EVENT_COLUMNS: [&str; 17] = [
    "event_id",
    "event_type",
    "event_time",
    "event_date",
    "identity",
    "user_id",
    "anonymous_id",
    "session_id",
    "channel",
    "platform",
    "campaign_id",
    "utm_source",
    "utm_campaign",
    "utm_term",
    "revenue_usd",
    "_source_file",
    "_source_line",
];

#[test]
fn hand_worked_fixture_gives_exactly_the_expected_silver_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, landing) = (tmp.path().join("lake"), tmp.path().join("landing"));
    land(&fixture("wave1"), &landing);
    let report = bronze_and_silver(&root, &landing);
    let events = silver_report(&report, "silver.events");
    assert_eq!(events["mode"], "rebuild", "{events}");
    assert_eq!(events["rows_read"], 17, "{events}");
    assert_eq!(events["rows_written"], 9);
    assert_eq!(events["rows_quarantined"], 7);
    assert_eq!(events["duplicates_removed"], 1);
    assert_eq!(
        events["rules"],
        serde_json::json!({"event_id_present": 2, "event_type_known": 1, "event_time_parseable": 2, "revenue_valid": 2, "currency_known": 1})
    );
    assert_eq!(events["ambiguous"]["campaign_by_utm"]["dup"], 1);

    let silver = root.join("silver/events");
    assert_eq!(
        lines(&silver, &EVENT_COLUMNS, "_source_line"),
        [
            "e1|purchase|2026-02-01T10:00:00Z|2026-02-01|u1|u1|a1|NULL|NULL|NULL|c1|NULL|NULL|NULL|13.750000000000002|events/a.ndjson|1",
            "e2|click|2026-02-01T10:00:00Z|2026-02-01|a2|NULL|a2|NULL|NULL|NULL|c1|fb|Spring_Sale|NULL|NULL|events/a.ndjson|2",
            "123|page_view|2026-02-01T10:00:00Z|2026-02-01|456|456|NULL|NULL|NULL|NULL|c2|NULL|brand search|a b|NULL|events/a.ndjson|3",
            "e4|page_view|2026-02-01T10:00:00.123Z|2026-02-01|a4|NULL|a4|NULL|NULL|NULL|NULL|NULL|dup|NULL|NULL|events/a.ndjson|4",
            "e5|email_click|2026-02-01T10:00:00.123456Z|2026-02-01|u5|u5|NULL|NULL|NULL|NULL|NULL|NULL|nope|NULL|NULL|events/a.ndjson|5",
            "e6|purchase|2026-02-02T01:30:00Z|2026-02-02|u1|u1|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|20.0|events/a.ndjson|6",
            " e13 |signup|2026-02-01T10:00:00Z|2026-02-01|a13|NULL|a13|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|events/a.ndjson|13",
            "e14|purchase|2026-02-01T10:00:00Z|2026-02-01|u14|u14|NULL|NULL|NULL|NULL|7|NULL|NULL|NULL|12.5|events/a.ndjson|14",
            "e18|add_to_cart|2026-01-31T23:59:59.999999Z|2026-01-31|u18|u18|a18|s1|email|newsletter|NULL|NULL|NULL|NULL|NULL|events/a.ndjson|18",
        ]
    );
    let quarantine = root.join("silver/_quarantine/events");
    assert_eq!(
        lines(
            &quarantine,
            &["_source_line", "event_id", "_rules", "_error"],
            "_source_line"
        ),
        [
            "7|e7|event_type_known|failed expectations: event_type_known",
            "8|NULL|event_id_present|failed expectations: event_id_present",
            "9|e9|event_time_parseable|failed expectations: event_time_parseable",
            "10|e10|revenue_valid,currency_known|failed expectations: revenue_valid, currency_known",
            "12|e12|revenue_valid|failed expectations: revenue_valid",
            "15||event_id_present|failed expectations: event_id_present",
            "17|e17|event_time_parseable|failed expectations: event_time_parseable",
        ]
    );
    // The quarantine keeps the Bronze row as it was.
    let raw = lines(&quarantine, &["CAST(_raw AS VARCHAR)"], "_source_line");
    assert!(
        raw[3].contains(r#""event_id":"e10""#) && raw[3].contains(r#""currency":"XYZ""#),
        "{}",
        raw[3]
    );

    // Dimensions: latest row per key, conformed.
    assert_eq!(
        lines(
            &root.join("silver/campaigns"),
            &["campaign_id", "name", "channel", "utm_campaign", "currency"],
            "campaign_id"
        ),
        [
            "c1|Spring Sale|paid_social|spring_sale|USD",
            "c2|Brand|paid_search|Brand Search|EUR",
            "c3|Dup A|email|dup|USD",
            "c4|Dup B|email|DUP|USD"
        ]
    );
    let spend = silver_report(&report, "silver.ad_spend");
    assert_eq!(
        spend["duplicates_removed"], 1,
        "a restated day replaces the earlier row"
    );
    assert_eq!(
        lines(
            &root.join("silver/ad_spend"),
            &[
                "date",
                "platform",
                "campaign_id",
                "impressions",
                "clicks",
                "spend_usd"
            ],
            "campaign_id"
        ),
        [
            "2026-02-01|facebook|c1|1100|11|55.0",
            "2026-02-01|google|c2|2000|20|44.0"
        ]
    );

    // A re-run has nothing to do.
    let again = run_with(&repo(), &root, &landing, &["--layer", "silver"], 0).0;
    for t in again["silver"].as_array().unwrap() {
        assert_eq!(t["mode"], "up_to_date", "{t}");
    }

    // Wave 2: a duplicate of a wave-1 event weeks later, a new event and its own duplicate.
    land(&fixture("wave2"), &landing);
    let report = bronze_and_silver(&root, &landing);
    let events = silver_report(&report, "silver.events");
    assert_eq!(events["mode"], "incremental");
    assert_eq!(
        (
            events["rows_read"].as_i64(),
            events["rows_written"].as_i64(),
            events["duplicates_removed"].as_i64()
        ),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(
        lines(
            &silver,
            &["event_id", "identity", "campaign_id", "_source_file"],
            "_source_file, _source_line"
        )[9..],
        ["e20|u20|c2|events/b.ndjson"]
    );

    // Wave 3: campaign c3 no longer claims utm `dup`, so e4 now resolves to c4: restated.
    land(&fixture("wave3"), &landing);
    let report = bronze_and_silver(&root, &landing);
    let events = silver_report(&report, "silver.events");
    assert_eq!(events["mode"], "rebuild", "{events}");
    assert!(
        events["rebuild_reason"]
            .as_str()
            .unwrap()
            .contains("campaign_by_utm"),
        "{events}"
    );
    assert_eq!(
        lines(
            &silver,
            &["event_id", "campaign_id"],
            "_source_file, _source_line"
        )[3],
        "e4|c4"
    );
    // Silver equals a full refresh against the current dimensions (one run on all waves).
    let fresh_root = tmp.path().join("fresh");
    let fresh_landing = tmp.path().join("fresh_landing");
    land(&fixture("wave1"), &fresh_landing);
    land(&fixture("wave2"), &fresh_landing);
    land(&fixture("wave3"), &fresh_landing);
    bronze_and_silver(&fresh_root, &fresh_landing);
    let all: Vec<&str> = EVENT_COLUMNS.to_vec();
    assert_eq!(
        lines(&silver, &all, "_source_file, _source_line"),
        lines(
            &fresh_root.join("silver/events"),
            &all,
            "_source_file, _source_line"
        )
    );
    assert_eq!(
        scalar(
            &root.join("silver/_quarantine/events"),
            "SELECT count(*) FROM t"
        ),
        7,
        "a rebuild replaces the quarantine rather than adding to it"
    );
    // The run log has one row per Silver table run.
    let runs = lines(&root.join("_system/runs"), &["status"], "started_at");
    assert!(runs.iter().all(|s| s == "succeeded"));
    assert_eq!(
        scalar(
            &root.join("_system/runs"),
            "SELECT count(*) FROM t WHERE layer = 'silver'"
        ),
        16
    );
}

/// A small pipeline over one NDJSON source, for the policy tests.
fn small_config(dir: &Path, silver_extra: &str, evolution: &str) -> PathBuf {
    let config = format!(
        r#"version: 1
pipeline: small
sources:
  items:
    format: ndjson
    columns:
      id: string
      qty: long
bronze:
  items: {{}}
silver:
  items:
    from: bronze.items
    key: [id]
    schema_evolution: {evolution}
    columns:
      id: id
      qty: qty
{silver_extra}"#
    );
    let path = dir.join("layers.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn run_small(dir: &Path, code: i32) -> (serde_json::Value, String) {
    let (root, landing) = (dir.join("lake"), dir.join("landing"));
    run_with(dir, &root, &landing, &["--layer", "bronze"], 0);
    run_with(dir, &root, &landing, &["--layer", "silver"], code)
}

#[test]
fn expectation_actions_follow_their_precedence_and_fail_commits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rules = r#"    expectations:
      small_n:
        expr: "qty < 100"
        action: warn
      not_negative:
        expr: "qty >= 0"
        action: drop
      not_seven:
        expr: "qty <> 7"
        action: quarantine
      odd_ids:
        expr: "id <> 'bad'"
        action: fail
"#;
    small_config(dir, rules, "add_columns");
    write(
        &dir.join("landing/items/1.ndjson"),
        concat!(
            r#"{"id":"a","qty":1}"#,
            "\n",
            r#"{"id":"b","qty":500}"#,
            "\n", // warn only: kept
            r#"{"id":"c","qty":-1}"#,
            "\n", // drop
            r#"{"id":"d","qty":7}"#,
            "\n", // quarantine
            r#"{"id":"e","qty":-700}"#,
            "\n", // drop only (warn passes: NULL? no, -700 < 100)
            r#"{"id":"f"}"#,
            "\n", // qty NULL: warn, drop and quarantine fail → quarantine
            r#"{"id":"a","qty":2}"#,
            "\n", // duplicate of a
        ),
    );
    let (report, _) = run_small(dir, 0);
    let items = silver_report(&report, "silver.items");
    assert_eq!(items["rows_written"], 2, "{items}");
    assert_eq!(items["rows_dropped"], 2);
    assert_eq!(items["rows_quarantined"], 2);
    assert_eq!(items["rows_warned"], 1);
    assert_eq!(items["duplicates_removed"], 1);
    assert_eq!(
        items["rules"],
        serde_json::json!({"small_n": 2, "not_negative": 3, "not_seven": 2, "odd_ids": 0})
    );
    let root = dir.join("lake");
    assert_eq!(
        lines(&root.join("silver/items"), &["id", "qty"], "id"),
        ["a|1", "b|500"]
    );
    assert_eq!(
        lines(
            &root.join("silver/_quarantine/items"),
            &["id", "_rules"],
            "id"
        ),
        ["d|not_seven", "f|small_n,not_negative,not_seven"]
    );

    // A `fail` rule: exit 3, nothing committed; the run log records the failure and counts.
    write(
        &dir.join("landing/items/2.ndjson"),
        concat!(
            r#"{"id":"bad","qty":1}"#,
            "\n",
            r#"{"id":"g","qty":3}"#,
            "\n"
        ),
    );
    let silver_version = scalar(&root.join("silver/items"), "SELECT count(*) FROM t");
    let (_, err) = run_small(dir, 3);
    assert!(
        err.contains("odd_ids") && err.contains("items/2.ndjson line 1"),
        "{err}"
    );
    assert_eq!(
        scalar(&root.join("silver/items"), "SELECT count(*) FROM t"),
        silver_version
    );
    assert_eq!(
        lines(
            &root.join("_system/runs"),
            &["status", "rows_dropped"],
            "started_at"
        )
        .last()
        .unwrap(),
        r#"failed|{"not_negative":0,"not_seven":0,"odd_ids":1,"small_n":0}"#
    );
    // Fixing the rule lets a re-run process the batch.
    small_config(
        dir,
        &rules.replace("action: fail", "action: drop"),
        "add_columns",
    );
    let (report, _) = run_with(
        dir,
        &root,
        &dir.join("landing"),
        &["--layer", "silver", "--forward-only"],
        0,
    );
    assert_eq!(silver_report(&report, "silver.items")["rows_written"], 1);
    assert_eq!(
        lines(&root.join("silver/items"), &["id"], "id"),
        ["a", "b", "g"]
    );
}

#[test]
fn schema_evolution_policies() {
    for policy in ["add_columns", "rescue", "fail"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        small_config(dir, "", policy);
        write(
            &dir.join("landing/items/1.ndjson"),
            concat!(r#"{"id":"a","qty":1}"#, "\n"),
        );
        run_small(dir, 0);
        write(
            &dir.join("landing/items/2.ndjson"),
            concat!(
                r#"{"id":"b","qty":2,"color":"red"}"#,
                "\n",
                r#"{"id":"c","qty":3}"#,
                "\n"
            ),
        );
        let root = dir.join("lake");
        match policy {
            "add_columns" => {
                let (report, _) = run_small(dir, 0);
                assert_eq!(
                    silver_report(&report, "silver.items")["new_columns"],
                    serde_json::json!(["color"])
                );
                assert_eq!(
                    lines(&root.join("silver/items"), &["id", "color"], "id"),
                    ["a|NULL", "b|red", "c|NULL"]
                );
            }
            "rescue" => {
                run_small(dir, 0);
                assert_eq!(
                    lines(&root.join("silver/items"), &["id", "_rescued"], "id"),
                    ["a|NULL", r#"b|{"color":"red"}"#, "c|NULL"]
                );
            }
            _ => {
                let (_, err) = run_small(dir, 3);
                assert!(
                    err.contains("`color`") && err.contains("items/2.ndjson line 1"),
                    "{err}"
                );
                assert_eq!(
                    scalar(&root.join("silver/items"), "SELECT count(*) FROM t"),
                    1
                );
            }
        }
    }
}

#[test]
fn a_changed_definition_is_refused_unless_rebuilt_or_accepted_forward_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("lake");
    small_config(dir, "", "add_columns");
    write(
        &dir.join("landing/items/1.ndjson"),
        concat!(r#"{"id":"a","qty":1}"#, "\n"),
    );
    run_small(dir, 0);
    // qty doubled: existing rows would change.
    let config = std::fs::read_to_string(dir.join("layers.yaml"))
        .unwrap()
        .replace("      qty: qty\n", "      qty: \"qty * 2\"\n");
    std::fs::write(dir.join("layers.yaml"), config).unwrap();
    write(
        &dir.join("landing/items/2.ndjson"),
        concat!(r#"{"id":"b","qty":5}"#, "\n"),
    );
    // `plan` says what a run would do: refuse the changed definition.
    run_with(dir, &root, &dir.join("landing"), &["--layer", "bronze"], 0);
    let plan = medallion(dir)
        .args(["plan", "--format", "json", "--root"])
        .arg(&root)
        .arg("--landing")
        .arg(dir.join("landing"))
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_str(&stdout(&plan)).unwrap();
    let items = plan["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "silver.items")
        .unwrap();
    assert_eq!(items["silver"]["mode"], "refused", "{items}");
    assert_eq!(items["silver"]["to_version"], 2, "{items}");
    let (_, err) = run_small(dir, 2);
    assert!(
        err.contains("definition of `silver.items` changed") && err.contains("--full-refresh"),
        "{err}"
    );
    let landing = dir.join("landing");
    run_with(
        dir,
        &root,
        &landing,
        &["--layer", "silver", "--forward-only"],
        0,
    );
    assert_eq!(
        lines(&root.join("silver/items"), &["id", "qty"], "id"),
        ["a|1", "b|10"]
    );
    // Once accepted, the new definition is the table's: no more refusals.
    run_with(dir, &root, &landing, &["--layer", "silver"], 0);
    run_with(
        dir,
        &root,
        &landing,
        &["--layer", "silver", "--full-refresh"],
        0,
    );
    assert_eq!(
        lines(&root.join("silver/items"), &["id", "qty"], "id"),
        ["a|2", "b|10"]
    );
    // A type change that existing rows cannot take is refused, naming the column.
    let config = std::fs::read_to_string(dir.join("layers.yaml"))
        .unwrap()
        .replace("\"qty * 2\"", "\"CAST(qty AS VARCHAR)\"");
    std::fs::write(dir.join("layers.yaml"), config).unwrap();
    let out = run_with(
        dir,
        &root,
        &landing,
        &["--layer", "silver", "--forward-only"],
        2,
    )
    .1;
    assert!(out.contains("column `qty`"), "{out}");
}

/// Asserts two snapshots are equal, showing the first differing rows of each table.
fn assert_same(left: &[Vec<String>], right: &[Vec<String>], what: &str) {
    for (i, (l, r)) in left.iter().zip(right).enumerate() {
        if l != r {
            let at = l
                .iter()
                .zip(r)
                .position(|(a, b)| a != b)
                .unwrap_or(l.len().min(r.len()));
            panic!(
                "{what}: table {i} differs ({} vs {} rows) at row {at}:\n  {:?}\n  {:?}",
                l.len(),
                r.len(),
                l.get(at),
                r.get(at)
            );
        }
    }
    assert_eq!(left.len(), right.len());
}

/// Every Silver table as sorted lines (all columns).
fn snapshot(root: &Path) -> Vec<Vec<String>> {
    [
        "events",
        "ad_spend",
        "campaigns",
        "fx_rates",
        "_quarantine/events",
    ]
    .iter()
    .map(|t| {
        let dir = root.join("silver").join(t);
        let columns: Vec<String> = crate::delta::columns(&dir)
            .into_iter()
            .filter(|f| !["_run_id", "_ingested_at", "_silver_version"].contains(&f.as_str()))
            .map(|f| format!("\"{f}\""))
            .collect();
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        lines(&dir, &columns, "_source_file, _source_line")
    })
    .collect()
}

fn generate(out: &Path, events: u64, per_file: u64) {
    let g = medallion(out.parent().unwrap())
        .args([
            "generate",
            "--events",
            &events.to_string(),
            "--events-per-file",
            &per_file.to_string(),
            "--seed",
            "3",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert_eq!(g.status.code(), Some(0), "{}", stderr(&g));
}

#[test]
fn silver_after_every_batch_equals_silver_once_after_all() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("generated");
    generate(&generated, 24_000, 4_000);
    let all = crate::files(&generated);
    let (events, dims): (Vec<_>, Vec<_>) =
        all.keys().cloned().partition(|k| k.starts_with("events/"));
    let (step_root, once_root, landing) = (
        tmp.path().join("step"),
        tmp.path().join("once"),
        tmp.path().join("landing"),
    );
    let place = |names: &[String]| {
        for n in names {
            let target = landing.join(n);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, &all[n]).unwrap();
        }
    };
    place(&dims);
    for batch in events.chunks(1) {
        place(batch);
        run_with(&repo(), &step_root, &landing, &["--layer", "bronze"], 0);
        run_with(&repo(), &step_root, &landing, &["--layer", "silver"], 0);
        run_with(&repo(), &once_root, &landing, &["--layer", "bronze"], 0);
    }
    run_with(&repo(), &once_root, &landing, &["--layer", "silver"], 0);
    let (step, once) = (snapshot(&step_root), snapshot(&once_root));
    assert!(step[0].len() > 20_000, "{}", step[0].len());
    assert_same(&step, &once, "after every batch vs once");
    // No key twice, and every Bronze row accounted for.
    let silver = step_root.join("silver/events");
    assert_eq!(
        scalar(&silver, "SELECT count(*) - count(DISTINCT event_id) FROM t"),
        0
    );
}

#[test]
fn a_crash_at_any_commit_point_then_a_rerun_equals_a_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("generated");
    generate(&generated, 6_000, 2_000);
    let all = crate::files(&generated);
    // Two waves: the crash happens in an incremental run, with a key index to probe.
    let (first, second): (Vec<_>, Vec<_>) = all.keys().cloned().partition(|k| {
        !k.starts_with("events/") || k.ends_with("00000.ndjson") || k.contains("-00000")
    });
    assert!(
        !second.is_empty() && first.iter().any(|k| k.starts_with("events/")),
        "{first:?}"
    );
    let place = |landing: &Path, names: &[String]| {
        for n in names {
            let target = landing.join(n);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(target, &all[n]).unwrap();
        }
    };
    let waves = |name: &str, crash: Option<&str>| {
        let (root, landing) = (
            tmp.path().join(name),
            tmp.path().join(format!("{name}-landing")),
        );
        place(&landing, &first);
        bronze_and_silver(&root, &landing);
        place(&landing, &second);
        run_with(&repo(), &root, &landing, &["--layer", "bronze"], 0);
        if let Some(delay) = crash.and_then(|c| c.strip_prefix("kill after ")) {
            // A real SIGKILL at some moment of the Silver run.
            let ms: u64 = delay.trim_end_matches(" ms").parse().unwrap();
            let mut child = medallion(&repo())
                .args(["run", "--layer", "silver", "-q", "--root"])
                .arg(&root)
                .arg("--landing")
                .arg(&landing)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(ms));
            let _ = child.kill();
            let _ = child.wait();
        } else if let Some(point) = crash {
            let out = medallion(&repo())
                .args(["run", "--layer", "silver", "--root"])
                .arg(&root)
                .arg("--landing")
                .arg(&landing)
                .env("MEDALLION_CRASH_AT", point)
                .output()
                .unwrap();
            assert_ne!(
                out.status.code(),
                Some(0),
                "{point}: the crash point was reached"
            );
            assert!(stderr(&out).contains(point), "{}", stderr(&out));
        }
        run_with(&repo(), &root, &landing, &["--layer", "silver"], 0);
        snapshot(&root)
    };
    let expected = waves("clean", None);
    for point in [
        "silver.events.before_commit",
        "silver.events.after_quarantine_commit",
        "silver.events.after_index_commit",
        "silver.events.after_commit",
    ] {
        assert_same(&waves(point, Some(point)), &expected, point);
    }
    for kill in ["kill after 60 ms", "kill after 200 ms", "kill after 400 ms"] {
        assert_same(&waves(kill, Some(kill)), &expected, kill);
    }
}

#[test]
fn first_ingested_wins_across_files_with_long_names_sharing_a_prefix() {
    // Parquet keeps 64 bytes of a string's statistics: files whose names share a longer
    // prefix must still be read in name order.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    small_config(dir, "", "add_columns");
    let prefix = "a-landing-folder-with-a-rather-long-name/and-a-long-file-name-prefix-too";
    for k in 1..=6 {
        write(
            &dir.join(format!("landing/items/{prefix}-{k}.ndjson")),
            &format!("{{\"id\":\"dup\",\"qty\":{k}}}\n"),
        );
    }
    let (report, _) = run_small(dir, 0);
    assert_eq!(
        silver_report(&report, "silver.items")["duplicates_removed"],
        5
    );
    assert_eq!(
        lines(
            &dir.join("lake/silver/items"),
            &["id", "qty", "_source_file"],
            "id"
        ),
        [format!("dup|1|items/{prefix}-1.ndjson")]
    );
}

#[test]
fn a_widened_column_rewrites_the_table_with_the_wider_type() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("lake");
    let landing = dir.join("landing");
    let config = small_config(dir, "", "add_columns");
    let narrow = std::fs::read_to_string(&config)
        .unwrap()
        .replace("      qty: qty\n", "      qty: \"CAST(qty AS INT)\"\n");
    std::fs::write(&config, &narrow).unwrap();
    write(
        &landing.join("items/1.ndjson"),
        concat!(r#"{"id":"a","qty":1}"#, "\n", r#"{"id":"b","qty":2}"#, "\n"),
    );
    run_small(dir, 0);
    let typed = |dir: &Path| lines(dir, &["id", "qty", "arrow_typeof(qty)"], "id");
    assert_eq!(
        typed(&root.join("silver/items")),
        ["a|1|Int32", "b|2|Int32"]
    );
    // INT → BIGINT, accepted forward-only: existing rows keep their values, now as BIGINT.
    std::fs::write(&config, narrow.replace("\"CAST(qty AS INT)\"", "qty")).unwrap();
    write(
        &landing.join("items/2.ndjson"),
        concat!(r#"{"id":"c","qty":3000000000}"#, "\n"),
    );
    run_with(dir, &root, &landing, &["--layer", "bronze"], 0);
    let (report, _) = run_with(
        dir,
        &root,
        &landing,
        &["--layer", "silver", "--forward-only"],
        0,
    );
    assert_eq!(
        silver_report(&report, "silver.items")["widened_columns"],
        serde_json::json!(["qty (Int32 → Int64)"])
    );
    assert_eq!(
        typed(&root.join("silver/items")),
        ["a|1|Int64", "b|2|Int64", "c|3000000000|Int64"]
    );
}

#[test]
fn two_concurrent_silver_jobs_then_a_rerun_equal_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("generated");
    generate(&landing, 8_000, 2_000);
    let clean = tmp.path().join("clean");
    bronze_and_silver(&clean, &landing);
    let root = tmp.path().join("concurrent");
    run_with(&repo(), &root, &landing, &["--layer", "bronze"], 0);
    let jobs: Vec<_> = (0..2)
        .map(|_| {
            medallion(&repo())
                .args(["run", "--layer", "silver", "-q", "--root"])
                .arg(&root)
                .arg("--landing")
                .arg(&landing)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for job in jobs {
        let out = job.wait_with_output().unwrap();
        // Each job succeeds, or loses a commit race with a clear message.
        match out.status.code() {
            Some(0) => {}
            Some(1) => assert!(
                stderr(&out).contains("commit to") || stderr(&out).contains("storage:"),
                "{}",
                stderr(&out)
            ),
            other => panic!("exit {other:?}: {}", stderr(&out)),
        }
    }
    run_with(&repo(), &root, &landing, &["--layer", "silver"], 0);
    assert_same(&snapshot(&root), &snapshot(&clean), "two concurrent jobs");
}
