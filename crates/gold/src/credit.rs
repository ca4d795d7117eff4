//! Crediting conversions to touches, one bucket of the touchpoint store at a time.
//!
//! Within a bucket the touchpoints are ordered by (identity, time, event id); each identity's
//! touches are then a sorted run, and a conversion's touches in the window are found by two
//! binary searches. Every model's weights are computed per conversion and added to small
//! totals: per (date, campaign) for `attribution`, last touches per (date, campaign) for
//! `campaign_daily`, first purchases per (month, campaign) for `channel_cac`.

use std::collections::{BTreeSet, HashMap};

use deltalake::arrow::array::Array;

use crate::models::{DAY_US, Settings};
use crate::touchpoints::Bucket;

/// Models in the order of the weights: first_touch, last_touch, linear, time_decay,
/// position_based.
pub const MODELS: usize = 5;

/// What the models need from the crediting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    pub attribution: bool,
    pub last_touch: bool,
    pub first_purchases: bool,
}

/// Credited conversions and revenue per model (`[c0, r0, c1, r1, …]`).
pub type Credit = [f64; 2 * MODELS];

/// The totals the Gold tables are made of. A campaign of `None` is the direct channel.
#[derive(Debug, Default)]
pub struct Totals {
    /// `attribution`: per (conversion date, campaign).
    pub wide: HashMap<(i32, Option<String>), Credit>,
    /// `campaign_daily`: last-touch conversions and revenue per (conversion date, campaign).
    pub last_touch: HashMap<(i32, String), (i64, f64)>,
    /// `channel_cac`: identities by the month of their first purchase (first day, days since
    /// the epoch) and its last-touch campaign.
    pub first_purchases: HashMap<(i32, Option<String>), i64>,
}

/// The first day of the month of `day` (days since the epoch).
pub fn month_of(day: i32) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
    let date = epoch + chrono::Duration::days(i64::from(day));
    let first = chrono::Datelike::with_day(&date, 1).expect("day 1 exists");
    (first - epoch).num_days() as i32
}

/// Credits the conversions of one bucket (only those dated in `dates`, when given, for
/// `attribution` and `campaign_daily`; every identity's first purchase for `channel_cac`).
pub fn credit_bucket(
    b: &Bucket,
    s: &Settings,
    dates: Option<&BTreeSet<i32>>,
    wanted: Wanted,
    totals: &mut Totals,
) {
    let n = b.event_us.len();
    let identity = |i: usize| b.identity.is_valid(i).then(|| b.identity.value(i));
    let event_id = |i: usize| b.event_id.is_valid(i).then(|| b.event_id.value(i));
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&x, &y| {
        (identity(x), b.event_us.value(x), event_id(x)).cmp(&(
            identity(y),
            b.event_us.value(y),
            event_id(y),
        ))
    });
    let half_life_us = s.half_life_days * DAY_US as f64;
    let mut touches: Vec<usize> = Vec::new();
    let mut touch_us: Vec<i64> = Vec::new();
    let mut conversions: Vec<usize> = Vec::new();
    let mut weights: Vec<Credit> = Vec::new();
    let mut start = 0;
    while start < n {
        let who = identity(order[start]);
        let mut end = start + 1;
        while end < n && identity(order[end]) == who {
            end += 1;
        }
        touches.clear();
        touch_us.clear();
        conversions.clear();
        let mut previous: Option<(i64, Option<&str>)> = None;
        for &i in &order[start..end] {
            // The same event twice (a store written twice by racing jobs) counts once.
            let this = (b.event_us.value(i), event_id(i));
            if previous == Some(this) {
                continue;
            }
            previous = Some(this);
            if b.conversion.value(i) {
                conversions.push(i);
            } else if who.is_some() {
                touches.push(i);
                touch_us.push(b.event_us.value(i));
            }
        }
        start = end;
        for (k, &c) in conversions.iter().enumerate() {
            let us = b.event_us.value(c);
            let day = us.div_euclid(DAY_US) as i32;
            let revenue = if b.revenue_usd.is_valid(c) {
                b.revenue_usd.value(c)
            } else {
                0.0
            };
            // Touches in [us − window, us]; none without an identity.
            let (lo, hi) = if who.is_some() {
                (
                    touch_us.partition_point(|&t| t < us.saturating_sub(s.window_us)),
                    touch_us.partition_point(|&t| t <= us),
                )
            } else {
                (0, 0)
            };
            let campaign = |j: usize| b.campaign_id.value(touches[j]).to_string();
            if wanted.first_purchases && k == 0 && who.is_some() {
                let last = (hi > lo).then(|| campaign(hi - 1));
                *totals
                    .first_purchases
                    .entry((month_of(day), last))
                    .or_default() += 1;
            }
            if dates.is_some_and(|d| !d.contains(&day)) {
                continue;
            }
            if wanted.last_touch && hi > lo {
                let e = totals
                    .last_touch
                    .entry((day, campaign(hi - 1)))
                    .or_default();
                e.0 += 1;
                e.1 += revenue;
            }
            if !wanted.attribution {
                continue;
            }
            if hi == lo {
                let e = totals.wide.entry((day, None)).or_insert([0.0; 2 * MODELS]);
                for m in 0..MODELS {
                    e[2 * m] += 1.0;
                    e[2 * m + 1] += revenue;
                }
                continue;
            }
            let count = hi - lo;
            let decay: Vec<f64> = (lo..hi)
                .map(|j| 2f64.powf((touch_us[j] - us) as f64 / half_life_us))
                .collect();
            let decay_total: f64 = decay.iter().sum();
            weights.clear();
            for (pos, j) in (lo..hi).enumerate() {
                let first = if pos == 0 { 1.0 } else { 0.0 };
                let last = if pos + 1 == count { 1.0 } else { 0.0 };
                let linear = 1.0 / count as f64;
                let time_decay = decay[j - lo] / decay_total;
                let position = match count {
                    1 => 1.0,
                    2 => 0.5,
                    _ if pos == 0 => s.first_share,
                    _ if pos + 1 == count => s.last_share,
                    _ => (1.0 - s.first_share - s.last_share) / (count - 2) as f64,
                };
                let w = [first, last, linear, time_decay, position];
                let mut credit = [0.0; 2 * MODELS];
                for m in 0..MODELS {
                    credit[2 * m] = w[m];
                    credit[2 * m + 1] = w[m] * revenue;
                }
                weights.push(credit);
            }
            for (credit, j) in weights.iter().zip(lo..hi) {
                let e = totals
                    .wide
                    .entry((day, Some(campaign(j))))
                    .or_insert([0.0; 2 * MODELS]);
                for (total, x) in e.iter_mut().zip(credit) {
                    *total += x;
                }
            }
        }
    }
}
