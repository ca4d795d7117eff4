//! Deterministic, realistic sample landing data for the marketing pipeline.
//!
//! [`generate`] writes the landing layout `medallion generate` produces:
//!
//! - `events/YYYY-MM-DD/events-NNNNN.ndjson[.gz]`: newline-delimited JSON events in
//!   landing (chronological) order, carrying the dirt real collectors produce:
//!   re-sent duplicates, malformed lines, missing ids, unknown and oddly spelled event
//!   types, four timestamp spellings and unparseable ones, late events, numeric ids,
//!   campaign touches identified only by `utm_campaign`, bad revenues and currencies,
//!   and schema drift in the last third of the stream. Every third file is gzip'd;
//!   with four files or more one gzip'd file has no `.gz` suffix.
//! - `ad_spend/ad_spend_YYYY-MM.csv`: daily spend per campaign, with restatements.
//! - `campaigns/campaigns.csv`: ~40 campaigns over 60 days starting 2025-09-01,
//!   one `utm_campaign` value deliberately shared by two campaigns.
//! - `fx_rates/fx_rates.csv`: USD, EUR, GBP, CAD.
//!
//! The same options always produce byte-identical files. Memory stays bounded
//! whatever the number of events; the returned [`GenerateReport`] counts every
//! injected kind of dirt exactly as written.

mod ad_spend;
mod campaigns;
mod events;
mod json;
mod pools;
mod report;
mod sink;
mod time;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

pub use report::{EventFile, GenerateReport, MalformedCounts, TimeFormatCounts};

use campaigns::{Campaigns, FX_RATES};
use events::EventStream;
use sink::{Sink, write_file};
use time::{Timeline, day_index, window_date};

/// Event lines per file unless configured otherwise.
pub const DEFAULT_EVENTS_PER_FILE: u64 = 250_000;

/// The progress callback is called after this many lines (and once at the end).
const PROGRESS_EVERY: u64 = 65_536;
/// Distinct random streams derived from the seed.
const CAMPAIGN_STREAM: u64 = 0x6361_6d70_6169_676e;
const AD_SPEND_STREAM: u64 = 0x6164_5f73_7065_6e64;

/// What to generate and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Number of event lines to write, all files together.
    pub events: u64,
    /// Seed; the same options give byte-identical output.
    pub seed: u64,
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Event lines per file; at least 1.
    pub events_per_file: u64,
}

impl GenerateOptions {
    /// Options with [`DEFAULT_EVENTS_PER_FILE`] lines per file.
    pub fn new(events: u64, seed: u64, out: impl Into<PathBuf>) -> Self {
        Self {
            events,
            seed,
            out: out.into(),
            events_per_file: DEFAULT_EVENTS_PER_FILE,
        }
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file or directory failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The options cannot be satisfied.
    #[error("invalid generate options: {0}")]
    InvalidOptions(String),
}

/// Writes the sample landing data under `opts.out`, calling `progress` with the
/// number of event lines written so far, and returns what was written.
pub fn generate(
    opts: &GenerateOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<GenerateReport, Error> {
    if opts.events_per_file == 0 {
        return Err(Error::InvalidOptions(
            "events_per_file must be at least 1".into(),
        ));
    }
    let campaigns = Campaigns::generate(&mut Pcg64Mcg::seed_from_u64(opts.seed ^ CAMPAIGN_STREAM));
    let campaigns_csv = campaigns.csv();
    write_file(
        &opts.out.join("campaigns").join("campaigns.csv"),
        &campaigns_csv,
    )?;
    let fx_csv = campaigns::fx_csv();
    write_file(&opts.out.join("fx_rates").join("fx_rates.csv"), &fx_csv)?;

    let (mut report, ad_counts) = write_events(opts, &campaigns, progress)?;

    let mut rng = Pcg64Mcg::seed_from_u64(opts.seed ^ AD_SPEND_STREAM);
    for file in ad_spend::files(&campaigns, &ad_counts, &mut rng) {
        write_file(&opts.out.join("ad_spend").join(file.name), &file.contents)?;
        report
            .ad_spend_files
            .push(format!("ad_spend/{}", file.name));
        report.ad_spend_rows += file.rows;
        report.restated_ad_spend_rows += file.restated;
        report.bytes_written += file.contents.len() as u64;
    }
    report.seed = opts.seed;
    report.campaigns = campaigns.list.len() as u64;
    report.ambiguous_utm_campaign = campaigns.list[campaigns::AMBIGUOUS_SOURCE]
        .utm
        .to_lowercase();
    report.currencies = FX_RATES.len() as u64;
    report.bytes_written += (campaigns_csv.len() + fx_csv.len()) as u64;
    Ok(report)
}

/// Writes the event files and returns the event counts and ad counters.
fn write_events(
    opts: &GenerateOptions,
    campaigns: &Campaigns,
    progress: &mut dyn FnMut(u64),
) -> Result<(GenerateReport, ad_spend::AdCounts), Error> {
    let total = opts.events;
    let per_file = opts.events_per_file;
    let files = total.div_ceil(per_file);
    let mut stream = EventStream::new(campaigns, total, drift_start(total, per_file), opts.seed);
    let mut timeline = Timeline::new(total);
    let mut written = Vec::new();
    let mut line = Vec::with_capacity(4096);
    for k in 0..files {
        let first = k * per_file;
        let end = total.min(first + per_file);
        let first_ms = timeline.at(first);
        stream.start_file(first_ms);
        let (path, gzip) = event_file_name(k, files, window_date(day_index(first_ms)));
        let mut sink = Sink::create(opts.out.join(&path), gzip)?;
        let mut bytes = 0;
        for i in first..end {
            line.clear();
            stream.line(i, timeline.at(i), &mut line);
            line.push(b'\n');
            sink.write(&line)?;
            bytes += line.len() as u64;
            if (i + 1) % PROGRESS_EVERY == 0 {
                progress(i + 1);
            }
        }
        sink.finish()?;
        written.push(EventFile {
            path,
            lines: end - first,
            gzip,
            bytes,
        });
    }
    progress(total);
    let (mut report, counts) = stream.finish();
    report.gzip_files = written.iter().filter(|f| f.gzip).count() as u64;
    report.gzip_files_without_suffix = written
        .iter()
        .filter(|f| f.gzip && !f.path.ends_with(".gz"))
        .count() as u64;
    report.bytes_written = written.iter().map(|f| f.bytes).sum();
    report.event_files = written;
    Ok((report, counts))
}

/// Relative path of event file `k` of `files`, and whether it is gzip'd:
/// every third file is, and with four files or more the first of those keeps
/// the plain `.ndjson` name (readers must detect compression from content).
fn event_file_name(k: u64, files: u64, date: String) -> (String, bool) {
    let gzip = k % 3 == 2;
    let suffix = if gzip && !(files >= 4 && k == 2) {
        ".ndjson.gz"
    } else {
        ".ndjson"
    };
    (format!("events/{date}/events-{k:05}{suffix}"), gzip)
}

/// First line carrying schema-drift fields: the start of the last third of the
/// files, or two thirds into the stream when there are fewer than three files.
fn drift_start(total: u64, per_file: u64) -> u64 {
    let files = total.div_ceil(per_file);
    if files >= 3 {
        (files - files / 3) * per_file
    } else {
        total - total / 3
    }
}
