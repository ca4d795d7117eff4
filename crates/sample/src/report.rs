//! What `generate` wrote and injected, counted exactly as written.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts of everything written and every kind of dirt injected.
///
/// Event counts other than `lines`, `duplicates`, `far_duplicates` and
/// `malformed_lines` describe *original* events: lines that are JSON objects and
/// are not a re-send of an earlier line. Each original line carries at most one
/// of the faults the shipped `events` expectations reject (missing id, unknown
/// type, unparseable time, bad revenue, bad currency), and only clean originals
/// are re-sent, so `clean_events` is the number of rows a correct Silver
/// `events` table holds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GenerateReport {
    /// Seed the data was generated from.
    pub seed: u64,
    /// Event lines written, all files together (equals the requested count).
    pub lines: u64,
    /// Event files in landing order.
    pub event_files: Vec<EventFile>,
    /// Event files that are gzip-compressed.
    pub gzip_files: u64,
    /// Gzip-compressed event files whose name does not end in `.gz`.
    pub gzip_files_without_suffix: u64,
    /// Lines that are JSON objects and not re-sends.
    pub original_events: u64,
    /// Original events that pass every expectation of the shipped pipeline.
    pub clean_events: u64,
    /// Lines that re-send an earlier line byte for byte (same `event_id`).
    pub duplicates: u64,
    /// Re-sends of a line from far back in the stream (typically weeks).
    pub far_duplicates: u64,
    /// Lines that are not a JSON object.
    pub malformed_lines: u64,
    /// `malformed_lines` by kind.
    pub malformed: MalformedCounts,
    /// Events whose `event_id` is absent, null or blank.
    pub missing_event_id: u64,
    /// Events whose `event_id` is a JSON number.
    pub numeric_event_ids: u64,
    /// Events whose `event_type` is not one of the nine known types.
    pub unknown_event_types: u64,
    /// Events with a known type spelled with odd case or stray whitespace.
    pub noisy_event_types: u64,
    /// Events per known type (lower-cased, trimmed).
    pub event_types: BTreeMap<String, u64>,
    /// Purchase events.
    pub purchases: u64,
    /// Purchases whose revenue is a numeric string such as `"12.50"`.
    pub string_revenues: u64,
    /// Purchases whose revenue has many decimals.
    pub many_decimal_revenues: u64,
    /// Purchases with a negative revenue (rejected).
    pub negative_revenues: u64,
    /// Purchases whose revenue is not numeric, e.g. `"N/A"` (rejected).
    pub non_numeric_revenues: u64,
    /// Purchases in a currency missing from fx_rates (rejected).
    pub unknown_currencies: u64,
    /// Purchases without a currency (rejected).
    pub missing_currencies: u64,
    /// Currency codes written with odd case or whitespace.
    pub noisy_currencies: u64,
    /// Purchases that carry a campaign id or utm parameters.
    pub purchases_with_campaign: u64,
    /// Events whose time is 2 to 20 days before the landing window of their file.
    pub late_events: u64,
    /// Clicks, email clicks and page views that carry a campaign id or a `utm_campaign`.
    pub campaign_touches: u64,
    /// Touches without `campaign_id` (absent, null or empty), only a `utm_campaign` in `page_url`.
    pub touches_without_campaign_id: u64,
    /// Touches without `campaign_id` whose `utm_campaign` matches no campaign.
    pub unknown_utm_touches: u64,
    /// Touches without `campaign_id` whose `utm_campaign` is shared by two campaigns.
    pub ambiguous_utm_touches: u64,
    /// URLs that repeat the `utm_campaign` parameter (the first one counts).
    pub repeated_utm_parameters: u64,
    /// Events with `user_id` absent or null.
    pub anonymous_events: u64,
    /// Events whose `user_id` is a JSON number.
    pub numeric_user_ids: u64,
    /// Events with neither a usable `user_id` nor `anonymous_id`.
    pub events_without_identity: u64,
    /// Distinct identities that appear in original events.
    pub identities: u64,
    /// Events whose `event_time` cannot be parsed.
    pub unparseable_times: u64,
    /// Events per `event_time` spelling.
    pub time_formats: TimeFormatCounts,
    /// First line (0-based, over all files) that may carry schema-drift fields.
    pub drift_start_line: u64,
    /// Events carrying `device`, `consent`, `app_version` or `properties.experiment`.
    pub drift_lines: u64,
    /// ad_spend files, in landing order.
    pub ad_spend_files: Vec<String>,
    /// ad_spend data rows, restatements included.
    pub ad_spend_rows: u64,
    /// ad_spend rows that re-send an earlier (date, platform, campaign_id).
    pub restated_ad_spend_rows: u64,
    /// Rows of `campaigns.csv`.
    pub campaigns: u64,
    /// The `utm_campaign` value (lower-cased) that two campaigns share.
    pub ambiguous_utm_campaign: String,
    /// Rows of `fx_rates.csv`.
    pub currencies: u64,
    /// Bytes written before compression, all files.
    pub bytes_written: u64,
}

/// One event file.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EventFile {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// Lines in the file.
    pub lines: u64,
    /// Whether the content is gzip-compressed.
    pub gzip: bool,
    /// Uncompressed size.
    pub bytes: u64,
}

/// Malformed lines by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MalformedCounts {
    /// A JSON object cut short.
    pub truncated: u64,
    /// A JSON array.
    pub arrays: u64,
    /// A bare JSON scalar.
    pub scalars: u64,
    /// An empty line.
    pub empty: u64,
    /// Bytes that are not UTF-8.
    pub non_utf8: u64,
    /// Text that is not JSON at all.
    pub garbage: u64,
}

/// Events per `event_time` spelling.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TimeFormatCounts {
    /// RFC 3339 ending in `Z`.
    pub rfc3339_utc: u64,
    /// RFC 3339 with a `±HH:MM` offset.
    pub rfc3339_offset: u64,
    /// `YYYY-MM-DD HH:MM:SS[.fff]`, UTC.
    pub space_utc: u64,
    /// Epoch milliseconds as a JSON number.
    pub epoch_millis_number: u64,
    /// Epoch milliseconds as a string of digits.
    pub epoch_millis_string: u64,
}
