//! `medallion validate`: every configuration problem at once, located; exit code 2 on errors.

use medallion_config::Diagnostics;
use medallion_core::{Error, Pipeline};

use crate::cli::{Global, OutputFormat};

pub fn run(global: &Global, format: OutputFormat) -> Result<(), Error> {
    let loaded = Pipeline::load(
        &global.config,
        global.root.as_deref(),
        global.landing.as_deref(),
    );
    match format {
        OutputFormat::Json => {
            let (valid, diagnostics) = match &loaded {
                Ok(p) => (true, Diagnostics(p.warnings.clone())),
                Err(Error::Config(d)) => (false, d.clone()),
                Err(other) => return Err(Error::Usage(other.to_string())),
            };
            let report = serde_json::json!({
                "file": global.config.display().to_string(),
                "valid": valid,
                "diagnostics": diagnostics.0,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?
            );
            // The JSON report is on stdout; the error (exit code 2) repeats it for people on stderr.
            match loaded {
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        }
        OutputFormat::Text => {
            let pipeline = loaded?;
            for w in &pipeline.warnings {
                eprintln!("{w}");
            }
            let c = &pipeline.config;
            println!(
                "{}: ok: pipeline `{}` with {} sources, {} bronze, {} silver and {} gold tables{}",
                global.config.display(),
                c.pipeline.value,
                c.sources.len(),
                c.bronze.len(),
                c.silver.len(),
                c.gold.len(),
                match pipeline.warnings.len() {
                    0 => String::new(),
                    n => format!(" ({n} warning{})", if n == 1 { "" } else { "s" }),
                }
            );
            Ok(())
        }
    }
}
