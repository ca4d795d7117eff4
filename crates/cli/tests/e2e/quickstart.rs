//! The README's main command (`scripts/quickstart.sh`) works from a clean directory.

use crate::{repo, stderr, stdout};

#[test]
fn quickstart_runs_from_a_clean_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let workdir = tmp.path().join("demo");
    let out = std::process::Command::new("bash")
        .arg(repo().join("scripts/quickstart.sh"))
        .arg(&workdir)
        .current_dir(tmp.path())
        .env("MEDALLION_BIN", env!("CARGO_BIN_EXE_medallion"))
        .env("EVENTS", "20000")
        .env_remove("MEDALLION_ROOT")
        .env_remove("MEDALLION_LANDING")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(workdir.join("landing/campaigns/campaigns.csv").is_file());
    assert!(workdir.join("layers.yaml").is_file());
    let text = stdout(&out);
    assert!(text.contains("<== validate layers.yaml: ok"), "{text}");
    assert!(text.contains("run order (12 of 12 tables)"), "{text}");
    assert!(text.contains("<== run the Bronze layer: ok"), "{text}");
    assert!(workdir.join("lakehouse/bronze/events/_delta_log").is_dir());
    assert!(text.contains("<== run the Gold layer: ok"), "{text}");
    assert!(
        workdir
            .join("lakehouse/gold/attribution/_delta_log")
            .is_dir()
    );
    assert!(text.contains("| channel"), "{text}");
}
