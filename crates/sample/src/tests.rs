//! End-to-end checks: determinism, injected rates measured by an independent
//! reader, and the CSV dimensions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime};
use serde_json::Value;

use super::*;
use crate::events::{
    BAD_TIME_RATE, DUPLICATE_RATE, LATE_RATE, MALFORMED_RATE, MISSING_ID_RATE,
    TOUCH_WITHOUT_ID_RATE, UNKNOWN_TYPE_RATE,
};
use crate::time::{MS_PER_DAY, START_MS};

const KNOWN: [&str; 9] = [
    "impression",
    "click",
    "page_view",
    "email_open",
    "email_click",
    "add_to_cart",
    "signup",
    "purchase",
    "unsubscribe",
];

fn run(events: u64, seed: u64, per_file: u64, dir: &Path) -> GenerateReport {
    let mut opts = GenerateOptions::new(events, seed, dir);
    opts.events_per_file = per_file;
    let mut last = 0;
    let report = generate(&opts, &mut |n| {
        assert!(n >= last);
        last = n;
    })
    .unwrap();
    assert_eq!(last, events);
    report
}

/// Every file under `dir`, relative path → bytes, in byte-wise path order.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn decompress(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        bytes.to_vec()
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let ra = run(20_000, 42, 4_000, a.path());
    let rb = run(20_000, 42, 4_000, b.path());
    let rc = run(20_000, 43, 4_000, c.path());
    assert_eq!(ra, rb);
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (path, bytes) in &fa {
        assert!(bytes == &fb[path], "{path} differs between runs");
    }
    let events_a: Vec<_> = fa
        .iter()
        .filter(|(p, _)| p.starts_with("events/"))
        .collect();
    let events_c: Vec<_> = fc
        .iter()
        .filter(|(p, _)| p.starts_with("events/"))
        .collect();
    assert!(events_a.iter().zip(&events_c).all(|(x, y)| x.1 != y.1));
    assert_ne!(ra, rc);
    // Five files: 00002 is gzip'd without suffix.
    assert_eq!(ra.event_files.len(), 5);
    assert_eq!(ra.gzip_files, 1);
    assert_eq!(ra.gzip_files_without_suffix, 1);
    let plain_named_gzip = &fa[&ra.event_files[2].path];
    assert!(ra.event_files[2].path.ends_with(".ndjson"));
    assert!(plain_named_gzip.starts_with(&[0x1f, 0x8b]));
}

#[test]
fn gzip_files_by_name_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(900, 5, 100, dir.path());
    let on_disk = files(dir.path());
    for f in &report.event_files {
        let bytes = &on_disk[&f.path];
        assert_eq!(bytes.starts_with(&[0x1f, 0x8b]), f.gzip, "{}", f.path);
        assert_eq!(decompress(bytes).len() as u64, f.bytes);
    }
    let gz: Vec<_> = report
        .event_files
        .iter()
        .filter(|f| f.gzip)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(gz.len(), 3);
    assert!(gz[0].ends_with("events-00002.ndjson"));
    assert!(gz[1].ends_with("events-00005.ndjson.gz"));
}

#[test]
fn zero_events_and_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(0, 1, 10, dir.path());
    assert_eq!(report.lines, 0);
    assert!(report.event_files.is_empty());
    assert!(report.ad_spend_rows > 0);

    let mut opts = GenerateOptions::new(10, 1, dir.path());
    opts.events_per_file = 0;
    assert!(matches!(
        generate(&opts, &mut |_| {}),
        Err(Error::InvalidOptions(_))
    ));

    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let err = generate(&GenerateOptions::new(10, 1, &blocker), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

/// Counts measured by reading the files the way the engine does.
#[derive(Default, Debug)]
struct Measured {
    lines: u64,
    malformed: u64,
    duplicates: u64,
    originals: u64,
    clean: u64,
    missing_id: u64,
    unknown_types: u64,
    noisy_types: u64,
    purchases: u64,
    negative: u64,
    string_revenue: u64,
    non_numeric: u64,
    unknown_currency: u64,
    missing_currency: u64,
    touches: u64,
    touches_without_id: u64,
    late: u64,
    unparseable: u64,
    formats: TimeFormatCounts,
    drift: u64,
    anonymous: u64,
    no_identity: u64,
    types: BTreeMap<String, u64>,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn present(v: Option<&Value>) -> bool {
    text(v).is_some_and(|s| !s.trim().is_empty())
}

fn has_utm_campaign(url: Option<&Value>) -> bool {
    let Some(Value::String(url)) = url else {
        return false;
    };
    url.split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("utm_campaign=")))
}

/// `event_time` → (epoch ms, spelling) per SPEC 4b, or None when unparseable.
fn parse_time(v: Option<&Value>, f: &mut TimeFormatCounts) -> Option<i64> {
    match v? {
        Value::Number(n) => {
            f.epoch_millis_number += 1;
            n.as_i64()
        }
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            f.epoch_millis_string += 1;
            s.parse().ok()
        }
        Value::String(s) if s.ends_with(['Z', 'z']) => {
            let t = DateTime::parse_from_rfc3339(s).ok()?;
            f.rfc3339_utc += 1;
            Some(t.timestamp_millis())
        }
        Value::String(s)
            if s.len() > 6
                && s.as_bytes()[s.len() - 3] == b':'
                && s[..s.len() - 6].contains('T') =>
        {
            let t = DateTime::parse_from_rfc3339(s).ok()?;
            assert!(matches!(s.as_bytes()[s.len() - 6], b'+' | b'-'));
            f.rfc3339_offset += 1;
            Some(t.timestamp_millis())
        }
        Value::String(s) => {
            let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()?;
            f.space_utc += 1;
            Some(t.and_utc().timestamp_millis())
        }
        _ => None,
    }
}

fn measure(dir: &Path) -> Measured {
    let mut m = Measured::default();
    let mut seen: HashMap<String, bool> = HashMap::new();
    let mut latest = START_MS;
    for (path, bytes) in files(dir).iter().filter(|(p, _)| p.starts_with("events/")) {
        let content = decompress(bytes);
        assert!(content.ends_with(b"\n"), "{path}");
        for line in content[..content.len() - 1].split(|b| *b == b'\n') {
            m.lines += 1;
            let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(line) else {
                m.malformed += 1;
                continue;
            };
            let id = text(o.get("event_id")).filter(|s| !s.trim().is_empty());
            if let Some(first_clean) = id.as_ref().and_then(|id| seen.get(id)) {
                assert!(*first_clean, "only clean lines are re-sent");
                m.duplicates += 1;
                continue;
            }
            m.originals += 1;
            let mut clean = id.is_some();
            m.missing_id += u64::from(id.is_none());
            let raw_type = text(o.get("event_type")).unwrap_or_default();
            let ty = raw_type
                .trim_matches([' ', '\t', '\r', '\n'])
                .to_lowercase();
            if KNOWN.contains(&ty.as_str()) {
                *m.types.entry(ty.clone()).or_default() += 1;
                m.noisy_types += u64::from(raw_type != ty);
            } else {
                m.unknown_types += 1;
                clean = false;
            }
            match parse_time(o.get("event_time"), &mut m.formats) {
                Some(ms) if ms < latest - MS_PER_DAY => m.late += 1,
                Some(ms) => latest = latest.max(ms),
                None => {
                    m.unparseable += 1;
                    clean = false;
                }
            }
            if ty == "purchase" {
                clean &= measure_purchase(&mut m, &o);
            } else {
                assert!(o.get("revenue").is_none());
            }
            let campaign = present(o.get("campaign_id"));
            if ["click", "email_click", "page_view"].contains(&ty.as_str())
                && (campaign || has_utm_campaign(o.get("page_url")))
            {
                m.touches += 1;
                m.touches_without_id += u64::from(!campaign);
            }
            let props_drift = o
                .get("properties")
                .and_then(|p| p.get("experiment"))
                .is_some();
            let drift = ["device", "consent", "app_version"]
                .iter()
                .any(|k| o.contains_key(*k));
            m.drift += u64::from(drift || props_drift);
            m.anonymous += u64::from(o.get("user_id").is_none_or(Value::is_null));
            m.no_identity +=
                u64::from(!present(o.get("user_id")) && !present(o.get("anonymous_id")));
            m.clean += u64::from(clean);
            if let Some(id) = id {
                seen.insert(id, clean);
            }
        }
    }
    m
}

/// Counts a purchase's revenue and currency; returns whether it passes the expectations.
fn measure_purchase(m: &mut Measured, o: &serde_json::Map<String, Value>) -> bool {
    m.purchases += 1;
    let revenue = match o.get("revenue") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => {
            let v = s.parse::<f64>().ok();
            m.string_revenue += u64::from(v.is_some());
            v
        }
        _ => panic!("purchase without revenue"),
    };
    let mut ok = true;
    match revenue {
        None => {
            m.non_numeric += 1;
            ok = false;
        }
        Some(v) if v < 0.0 => {
            m.negative += 1;
            ok = false;
        }
        Some(_) => {}
    }
    match o.get("currency") {
        None => {
            m.missing_currency += 1;
            ok = false;
        }
        Some(c) => {
            let code = c.as_str().unwrap().trim().to_uppercase();
            if !FX_RATES.iter().any(|(k, _)| *k == code) {
                m.unknown_currency += 1;
                ok = false;
            }
        }
    }
    ok
}

fn assert_rate(name: &str, count: u64, total: u64, rate: f64) {
    let measured = count as f64 / total as f64;
    eprintln!(
        "{name:<28} {count:>7} / {total:<7} = {:.4}% (target {:.4}%)",
        measured * 100.0,
        rate * 100.0
    );
    assert!(
        (measured - rate).abs() <= 0.2 * rate,
        "{name}: {measured} not within 20% of {rate}"
    );
}

#[test]
fn rates_on_100k_events_match_spec_and_report() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let r = run(N, 2025, 30_000, dir.path());
    let m = measure(dir.path());

    let on_disk: Vec<String> = files(dir.path())
        .into_keys()
        .filter(|p| p.starts_with("events/"))
        .collect();
    let reported: Vec<String> = r.event_files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(on_disk, reported, "byte-wise file order is landing order");

    assert_eq!(m.lines, N);
    assert_eq!(r.lines, N);
    assert_eq!(r.event_files.iter().map(|f| f.lines).sum::<u64>(), N);
    assert_eq!(m.malformed, r.malformed_lines);
    assert_eq!(m.duplicates, r.duplicates);
    assert_eq!(m.originals, r.original_events);
    assert_eq!(
        m.lines,
        r.original_events + r.duplicates + r.malformed_lines
    );
    assert_eq!(m.clean, r.clean_events);
    assert_eq!(m.missing_id, r.missing_event_id);
    assert_eq!(m.unknown_types, r.unknown_event_types);
    assert_eq!(m.noisy_types, r.noisy_event_types);
    assert_eq!(m.types, r.event_types);
    assert_eq!(m.purchases, r.purchases);
    assert_eq!(m.negative, r.negative_revenues);
    assert_eq!(m.string_revenue, r.string_revenues);
    assert_eq!(m.non_numeric, r.non_numeric_revenues);
    assert_eq!(m.unknown_currency, r.unknown_currencies);
    assert_eq!(m.missing_currency, r.missing_currencies);
    assert_eq!(m.touches, r.campaign_touches);
    assert_eq!(m.touches_without_id, r.touches_without_campaign_id);
    assert_eq!(m.late, r.late_events);
    assert_eq!(m.unparseable, r.unparseable_times);
    assert_eq!(m.formats, r.time_formats);
    assert_eq!(m.drift, r.drift_lines);
    assert_eq!(m.anonymous, r.anonymous_events);
    assert_eq!(m.no_identity, r.events_without_identity);
    let m_kinds = &r.malformed;
    assert!(
        m_kinds.truncated
            * m_kinds.arrays
            * m_kinds.scalars
            * m_kinds.empty
            * m_kinds.non_utf8
            * m_kinds.garbage
            > 0
    );
    assert!(r.far_duplicates > 0 && r.ambiguous_utm_touches > 0 && r.unknown_utm_touches > 0);
    assert!(r.repeated_utm_parameters > 0 && r.many_decimal_revenues > 0 && r.numeric_user_ids > 0);
    assert!((N / 80..N / 20).contains(&r.identities), "{}", r.identities);

    assert_rate("duplicates", m.duplicates, N, DUPLICATE_RATE);
    assert_rate("malformed lines", m.malformed, N, MALFORMED_RATE);
    assert_rate("missing event_id", m.missing_id, N, MISSING_ID_RATE);
    assert_rate("unknown event types", m.unknown_types, N, UNKNOWN_TYPE_RATE);
    assert_rate("unparseable times", m.unparseable, N, BAD_TIME_RATE);
    assert_rate("late events", m.late, N, LATE_RATE);
    assert_rate("purchases", m.purchases, N, 0.02);
    assert_rate(
        "touches without campaign_id",
        m.touches_without_id,
        m.touches,
        TOUCH_WITHOUT_ID_RATE,
    );
    let f = &m.formats;
    assert_rate("time rfc3339 Z", f.rfc3339_utc, m.originals, 0.25);
    assert_rate("time rfc3339 offset", f.rfc3339_offset, m.originals, 0.25);
    assert_rate("time space utc", f.space_utc, m.originals, 0.25);
    assert_rate(
        "time epoch ms",
        f.epoch_millis_number + f.epoch_millis_string,
        m.originals,
        0.25,
    );
    assert_rate("anonymous (no user_id)", m.anonymous, m.originals, 0.4);
    eprintln!(
        "touches {} ({:.1}% of originals), purchases with campaign {}, drift lines {}",
        m.touches,
        100.0 * m.touches as f64 / m.originals as f64,
        r.purchases_with_campaign,
        m.drift
    );
}

/// Minimal RFC 4180 reader: records of fields, quotes and doubled quotes handled.
fn parse_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            _ => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "file ends with a newline"
    );
    rows
}

#[test]
fn csv_dimensions_and_ad_spend() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(30_000, 9, 10_000, dir.path());
    let all = files(dir.path());

    let campaigns = parse_csv(&all["campaigns/campaigns.csv"]);
    assert_eq!(campaigns[0].join(","), campaigns::CAMPAIGNS_HEADER);
    let rows = &campaigns[1..];
    assert_eq!(rows.len(), 40);
    assert_eq!(report.campaigns, 40);
    assert!(rows.iter().all(|r| r.len() == 9));
    assert!(rows.iter().any(|r| r[1].contains(',')) && rows.iter().any(|r| r[1].contains('"')));
    let mut utm: HashMap<String, usize> = HashMap::new();
    let mut platform_of: HashMap<String, String> = HashMap::new();
    let channels: HashSet<&str> = [
        "paid_social",
        "paid_search",
        "email",
        "display",
        "affiliate",
    ]
    .into_iter()
    .collect();
    for r in rows {
        *utm.entry(r[4].trim().to_lowercase()).or_default() += 1;
        assert!(
            channels.contains(r[2].trim().to_lowercase().as_str()),
            "{}",
            r[2]
        );
        assert!(r[5].as_str() >= "2025-09-01" && r[6].as_str() <= "2025-10-30" && r[5] <= r[6]);
        platform_of.insert(r[0].clone(), r[3].clone());
    }
    assert!(
        rows.iter().any(|r| r[2] != r[2].trim().to_lowercase()),
        "channel noise"
    );
    let shared: Vec<_> = utm.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(shared.len(), 1);
    assert_eq!(*shared[0].1, 2);
    assert_eq!(shared[0].0, &report.ambiguous_utm_campaign);

    let fx = parse_csv(&all["fx_rates/fx_rates.csv"]);
    assert_eq!(fx[0].join(","), campaigns::FX_HEADER);
    assert!((3..=4).contains(&(fx.len() - 1)));
    assert_eq!(fx[1], ["USD", "1.0"]);

    let mut keys: HashSet<(String, String, String)> = HashSet::new();
    let (mut data_rows, mut restated) = (0, 0);
    let spend_files: Vec<_> = all
        .iter()
        .filter(|(p, _)| p.starts_with("ad_spend/"))
        .collect();
    assert_eq!(
        spend_files
            .iter()
            .map(|(p, _)| (*p).clone())
            .collect::<Vec<_>>(),
        report.ad_spend_files
    );
    for (_, bytes) in spend_files {
        let rows = parse_csv(bytes);
        assert_eq!(rows[0].join(","), ad_spend::AD_SPEND_HEADER);
        let mut in_file = HashSet::new();
        for r in &rows[1..] {
            let key = (r[0].clone(), r[1].clone(), r[2].clone());
            assert!(in_file.insert(key.clone()), "no key twice in one file");
            restated += u64::from(!keys.insert(key));
            assert_eq!(platform_of[&r[2]], r[1]);
            let impressions: u64 = r[3].parse().unwrap();
            let clicks: u64 = r[4].parse().unwrap();
            let spend: f64 = r[5].parse().unwrap();
            assert!(clicks < impressions && spend > 0.0, "{r:?}");
            assert!(
                FX_RATES
                    .iter()
                    .any(|(c, _)| *c == r[6].trim().to_uppercase())
            );
            data_rows += 1;
        }
    }
    assert_eq!(data_rows, report.ad_spend_rows);
    assert_eq!(restated, report.restated_ad_spend_rows);
    assert!(restated > 0);
}

#[test]
fn report_serializes() {
    let json = serde_json::to_string(&GenerateReport::default()).unwrap();
    assert!(json.contains("\"time_formats\""));
}

#[test]
fn tiny_streams_have_exact_line_counts() {
    for n in [1, 2, 3, 17, 2_001] {
        let dir = tempfile::tempdir().unwrap();
        let report = run(n, n, 7, dir.path());
        let m = measure(dir.path());
        assert_eq!((m.lines, report.lines), (n, n));
        assert_eq!(m.duplicates, report.duplicates);
        assert_eq!(m.malformed, report.malformed_lines);
        assert_eq!(report.event_files.len() as u64, n.div_ceil(7));
    }
}
