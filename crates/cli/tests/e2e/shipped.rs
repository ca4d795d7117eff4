//! The shipped `layers.yaml` validates, and `plan` shows its DAG in dependency order.

use crate::{medallion, repo, stderr, stdout};

#[test]
fn shipped_pipeline_validates() {
    let out = medallion(&repo()).arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "layers.yaml: ok: pipeline `marketing` with 4 sources, 4 bronze, 4 silver and 4 gold tables"
    );
}

#[test]
fn plan_lists_tables_in_dependency_order() {
    let out = medallion(&repo())
        .args([
            "plan",
            "--format",
            "json",
            "--root",
            "s3://lake/prod",
            "--landing",
            "s3://landing/raw",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let tables: Vec<&str> = plan["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(
        tables,
        [
            "bronze.ad_spend",
            "bronze.campaigns",
            "bronze.events",
            "bronze.fx_rates",
            "silver.campaigns",
            "silver.fx_rates",
            "silver.ad_spend",
            "silver.events",
            "gold.attribution",
            "gold.campaign_daily",
            "gold.channel_cac",
            "gold.channel_daily",
        ]
    );
    assert_eq!(
        plan["tables"][0]["location"],
        "s3://lake/prod/bronze/ad_spend/"
    );
    assert_eq!(plan["tables"][0]["inputs"][0], "landing:ad_spend/");
    let daily = &plan["tables"][11];
    assert_eq!(daily["inputs"], serde_json::json!(["gold.attribution"]));
    let events = &plan["tables"][7];
    assert_eq!(
        events["inputs"],
        serde_json::json!(["bronze.events", "silver.campaigns", "silver.fx_rates"])
    );
}

#[test]
fn global_flags_go_before_or_after_the_subcommand_and_select_tables() {
    let before = medallion(&repo())
        .args(["--root", "/tmp/x", "plan", "--layer", "gold"])
        .output()
        .unwrap();
    let after = medallion(&repo())
        .args(["plan", "--layer", "gold", "--root", "/tmp/x"])
        .output()
        .unwrap();
    assert_eq!(before.status.code(), Some(0), "{}", stderr(&before));
    assert_eq!(stdout(&before), stdout(&after));
    assert!(
        stdout(&before).contains("run order (4 of 12 tables)"),
        "{}",
        stdout(&before)
    );

    let unknown = medallion(&repo())
        .args(["plan", "--table", "gold.campaign_dialy"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown)
            .contains("unknown table `gold.campaign_dialy` (did you mean `gold.campaign_daily`?)"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn usage_errors_exit_with_two() {
    let out = medallion(&repo())
        .args(["plan", "--layer", "platinum"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = medallion(&repo()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schema_on_disk_is_current() {
    let out = medallion(&repo()).arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let path = repo().join("docs/layers.schema.json");
    let generated = stdout(&out);
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/layers.schema.json is stale: regenerate it with `medallion schema > docs/layers.schema.json` (or UPDATE_SCHEMA=1)"
    );
}

#[test]
fn json_logs_are_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let out = medallion(&repo())
        .args(["--log-format", "json", "run", "--layer", "bronze", "--root"])
        .arg(tmp.path().join("lake"))
        .arg("--landing")
        .arg(tmp.path().join("landing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["message"], "run started");
    assert!(lines.iter().all(|l| l["timestamp"].is_string()));
}
