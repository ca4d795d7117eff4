//! End-to-end tests of the `medallion` binary: one test binary, one module per area.

mod bronze;
mod configs;
mod delta;
mod generate;
mod gold;
mod gold_generated;
mod quickstart;
mod shipped;
mod silver;

use std::collections::BTreeMap;
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

/// A landed file's bytes, gunzipped when they start with the gzip magic bytes.
pub fn decompressed(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut out)
            .expect("valid gzip");
        out
    } else {
        bytes
    }
}

/// Every file under `dir`, by path relative to it.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}
