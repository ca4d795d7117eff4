//! `medallion generate` through the binary: deterministic bytes, the landing layout.

use crate::{decompressed, files, medallion, stderr, stdout};

#[test]
fn same_seed_same_bytes_and_the_landing_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let out = medallion(tmp.path())
            .args([
                "generate",
                "--events",
                "30000",
                "--events-per-file",
                "10000",
                "--seed",
                seed,
                "--out",
                name,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("a JSON report");
        (files(&tmp.path().join(name)), report)
    };
    let (a, report) = run("a", "7");
    let (b, _) = run("b", "7");
    let (c, _) = run("c", "8");
    assert_eq!(a, b, "same seed must give byte-identical files");
    assert_ne!(a, c, "another seed gives other data");
    for folder in ["events/", "ad_spend/", "campaigns/", "fx_rates/"] {
        assert!(
            a.keys().any(|k| k.starts_with(folder)),
            "no files under {folder}"
        );
    }
    let lines: usize = a
        .iter()
        .filter(|(k, _)| k.starts_with("events/"))
        .map(|(_, bytes)| {
            decompressed(bytes.clone())
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        })
        .sum();
    assert_eq!(lines, 30000, "--events is the number of lines written");
    assert_eq!(report["lines"], 30000, "{report}");
}

#[test]
fn generate_needs_an_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = medallion(tmp.path())
        .args(["generate", "--events", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--out"), "{}", stderr(&out));
}
