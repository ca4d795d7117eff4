//! End-to-end tests of the `medallion` binary: one test binary, one module per area.

mod bronze;
mod configs;
mod delta;
mod generate;
mod quickstart;
mod shipped;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// A `medallion` command with a clean, predictable environment.
pub fn medallion(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medallion"));
    cmd.current_dir(cwd)
        .env_remove("MEDALLION_CONFIG")
        .env_remove("MEDALLION_ROOT")
        .env_remove("MEDALLION_LANDING")
        .env_remove("MEDALLION_LOG")
        .env_remove("MEDALLION_LOG_FORMAT")
        .env("NO_COLOR", "1");
    cmd
}

/// Stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
