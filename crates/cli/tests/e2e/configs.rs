//! Broken configurations in `tests/configs/`: each must fail `validate` with exit code 2 and
//! exactly the diagnostics in its snapshot (`tests/configs/snapshots/`).

use crate::{medallion, repo, stderr, stdout};

#[test]
fn every_broken_config_gives_its_exact_errors() {
    let dir = repo().join("tests/configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/configs")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the broken-config fixtures, found {}",
        files.len()
    );
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let out = medallion(&dir)
            .args(["validate", "--config"])
            .arg(file.file_name().unwrap())
            .env_remove("LAKE_BUCKET")
            .env_remove("LANDING_PREFIX")
            .env_remove("COMMIT_RETRIES")
            .output()
            .expect("run medallion");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: exit code; stderr:\n{}",
            stderr(&out)
        );
        assert!(stdout(&out).is_empty(), "{name}: nothing on stdout");
        insta::with_settings!({
            snapshot_path => dir.join("snapshots"),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("medallion validate --config {name}.yaml"),
        }, {
            insta::assert_snapshot!(name, stderr(&out));
        });
    }
}

#[test]
fn validate_json_reports_locations() {
    let dir = repo().join("tests/configs");
    let out = medallion(&dir)
        .args(["validate", "--format", "json", "--config", "typo_keys.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(report["valid"], false);
    let first = &report["diagnostics"][0];
    assert_eq!(first["loc"]["line"], 5);
    assert_eq!(first["loc"]["column"], 3);
    assert_eq!(first["message"], "unknown key `roott`");
    assert_eq!(first["help"], "did you mean `root`?");
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = medallion(tmp.path()).arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("layers.yaml: error: cannot read the configuration"),
        "{err}"
    );
    assert!(err.contains("--config PATH"), "{err}");
}
