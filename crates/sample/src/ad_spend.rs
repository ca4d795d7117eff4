//! Daily ad spend per campaign as the ad platforms report it: one CSV per
//! month, and each month's file re-sends (restates) the last days of the month
//! before with changed clicks and spend.

use rand::Rng;
use rand_pcg::Pcg64Mcg;

use crate::campaigns::{Campaigns, FX_RATES, push_csv_row};
use crate::time::{SPAN_DAYS, window_date};

/// Header of the ad_spend files.
pub(crate) const AD_SPEND_HEADER: &str =
    "date,platform,campaign_id,impressions,clicks,spend,currency";
/// Days at the end of a month that platforms restate in the next month's file.
const RESTATED_DAYS: usize = 3;
/// Share of those rows that are actually restated.
const RESTATE_PROBABILITY: f64 = 0.5;
/// Files: (name, first day, last day inclusive) of the days reported fresh in it.
/// The November file holds only restatements of late October.
const FILES: [(&str, usize, usize); 3] = [
    ("ad_spend_2025-09.csv", 0, 29),
    ("ad_spend_2025-10.csv", 30, 59),
    ("ad_spend_2025-11.csv", 60, 59),
];

/// Impressions and clicks per (campaign, day) as the events saw them.
pub(crate) struct AdCounts {
    counts: Vec<(u32, u32)>,
}

impl AdCounts {
    /// Zeroed counters for every campaign and day.
    pub(crate) fn new(campaigns: usize) -> Self {
        Self {
            counts: vec![(0, 0); campaigns * SPAN_DAYS],
        }
    }

    fn slot(&mut self, campaign: usize, day: i64) -> Option<&mut (u32, u32)> {
        let day = usize::try_from(day).ok().filter(|d| *d < SPAN_DAYS)?;
        self.counts.get_mut(campaign * SPAN_DAYS + day)
    }

    /// Counts an impression event.
    pub(crate) fn impression(&mut self, campaign: usize, day: i64) {
        if let Some(s) = self.slot(campaign, day) {
            s.0 += 1;
        }
    }

    /// Counts a click event.
    pub(crate) fn click(&mut self, campaign: usize, day: i64) {
        if let Some(s) = self.slot(campaign, day) {
            s.1 += 1;
        }
    }

    fn get(&self, campaign: usize, day: usize) -> (u32, u32) {
        self.counts[campaign * SPAN_DAYS + day]
    }
}

/// One ad_spend row.
#[derive(Clone, Copy)]
struct Row {
    day: usize,
    campaign: usize,
    impressions: u64,
    clicks: u64,
    spend_cents: i64,
    lower_currency: bool,
}

/// A written ad_spend file.
pub(crate) struct SpendFile {
    pub(crate) name: &'static str,
    pub(crate) contents: Vec<u8>,
    pub(crate) rows: u64,
    pub(crate) restated: u64,
}

/// Builds the ad_spend files.
pub(crate) fn files(
    campaigns: &Campaigns,
    counts: &AdCounts,
    rng: &mut Pcg64Mcg,
) -> Vec<SpendFile> {
    let mut rows: Vec<Row> = Vec::new();
    for day in 0..SPAN_DAYS {
        for &j in &campaigns.ads_by_day[day] {
            rows.push(base_row(campaigns, counts, usize::from(j), day, rng));
        }
    }
    FILES
        .iter()
        .enumerate()
        .map(|(k, &(name, first, last))| {
            let mut restated = Vec::new();
            if k > 0 {
                let (_, prev_first, prev_last) = FILES[k - 1];
                let from = (prev_last + 1)
                    .saturating_sub(RESTATED_DAYS)
                    .max(prev_first);
                for r in rows.iter().filter(|r| (from..=prev_last).contains(&r.day)) {
                    if rng.random_bool(RESTATE_PROBABILITY) {
                        restated.push(restate(*r, rng));
                    }
                }
            }
            let fresh = rows.iter().filter(|r| (first..=last).contains(&r.day));
            let mut contents = format!("{AD_SPEND_HEADER}\n").into_bytes();
            let mut n = 0;
            for r in restated.iter().chain(fresh) {
                push_row(&mut contents, campaigns, r);
                n += 1;
            }
            SpendFile {
                name,
                contents,
                rows: n,
                restated: restated.len() as u64,
            }
        })
        .collect()
}

fn base_row(
    campaigns: &Campaigns,
    counts: &AdCounts,
    j: usize,
    day: usize,
    rng: &mut Pcg64Mcg,
) -> Row {
    let c = &campaigns.list[j];
    let (seen_impressions, seen_clicks) = counts.get(j, day);
    // The site pixel sees only part of the impressions an ad platform serves.
    let impressions = (f64::from(seen_impressions) * rng.random_range(2.5..4.0)) as u64
        + rng.random_range(40..400);
    let clicks =
        ((f64::from(seen_clicks) * rng.random_range(1.0..1.2)) as u64).min(impressions - 1);
    let spend =
        clicks as i64 * i64::from(c.cpc_cents) + impressions as i64 * i64::from(c.cpm_cents) / 1000;
    Row {
        day,
        campaign: j,
        impressions,
        clicks,
        spend_cents: spend.max(rng.random_range(50..500)),
        lower_currency: rng.random_bool(0.03),
    }
}

/// The same key re-sent with corrected (different) impressions, clicks and spend.
fn restate(r: Row, rng: &mut Pcg64Mcg) -> Row {
    let impressions = r.impressions + rng.random_range(1..=r.impressions / 20 + 1);
    let clicks = (r.clicks + rng.random_range(1..=r.clicks / 10 + 1)).min(impressions - 1);
    let mut spend = ((r.spend_cents as f64 * rng.random_range(0.85..1.15)) as i64).max(1);
    if spend == r.spend_cents {
        spend += 1;
    }
    Row {
        impressions,
        clicks,
        spend_cents: spend,
        ..r
    }
}

fn push_row(out: &mut Vec<u8>, campaigns: &Campaigns, r: &Row) {
    let c = &campaigns.list[r.campaign];
    let currency = FX_RATES[c.currency].0;
    let currency = if r.lower_currency {
        currency.to_ascii_lowercase()
    } else {
        currency.to_string()
    };
    push_csv_row(
        out,
        &[
            window_date(r.day as i64),
            c.placement().platform.to_string(),
            c.id.to_string(),
            r.impressions.to_string(),
            r.clicks.to_string(),
            format!("{}.{:02}", r.spend_cents / 100, r.spend_cents % 100),
            currency,
        ],
    );
}
