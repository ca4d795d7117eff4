//! `medallion generate`: realistic sample landing data, deterministic for a seed.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use medallion_core::Error;
use medallion_sample::{GenerateOptions, generate};

pub fn run(events: u64, seed: u64, out: &Path, events_per_file: u64) -> Result<(), Error> {
    if events_per_file == 0 {
        return Err(Error::Usage("--events-per-file must be at least 1".into()));
    }
    let mut options = GenerateOptions::new(events, seed, out);
    options.events_per_file = events_per_file;
    let bar = ProgressBar::new(events);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} generating {human_pos}/{human_len} events [{bar:30}] {per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let report = generate(&options, &mut |written| bar.set_position(written))
        .map_err(|e| Error::Other(format!("generate: {e}")))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        events,
        seed,
        out = %out.display(),
        seconds = format!("{secs:.2}"),
        "sample landing data written"
    );
    let summary = serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?;
    println!("{summary}");
    Ok(())
}
