//! Crediting conversions to touches, one bucket of the touchpoint store at a time.
//!
//! Within a bucket the touchpoints are ordered by (identity, time, event id); each identity's
//! touches are then a sorted run, and a conversion's touches in the window are found by two
//! binary searches. Every model's weights are computed per conversion and added to small
//! totals: per (date, campaign) for `attribution`, last touches per (date, campaign) for
//! `campaign_daily`, first purchases per (month, campaign) for `channel_cac`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use deltalake::arrow::array::Array;

use crate::models::{DAY_US, Settings};
use crate::touchpoints::Bucket;

/// Models in the order of the weights: first_touch, last_touch, linear, time_decay,
/// position_based.
pub const MODELS: usize = 5;

/// A multiply-rotate hasher for the small keys of the totals (numbers and short strings):
/// the standard SipHash costs more than the crediting around it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_i32(&mut self, i: i32) {
        self.write_u64(i as u32 as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
}

/// Maps keyed with [`Mix`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Mix>>;

/// Credited conversions and revenue per model (`[c0, r0, c1, r1, …]`).
pub type Credit = [f64; 2 * MODELS];

/// The totals the Gold tables are made of. Campaigns are numbered (see
/// [`Totals::campaign`]); a campaign of `None` is the direct channel.
#[derive(Debug, Default)]
pub struct Totals {
    /// `attribution`: per (conversion date, campaign).
    pub wide: FastMap<(i32, Option<u32>), Credit>,
    /// `campaign_daily`: last-touch conversions and revenue per (conversion date, campaign).
    pub last_touch: FastMap<(i32, u32), (i64, f64)>,
    /// `channel_cac`: identities by the month of their first purchase (first day, days since
    /// the epoch) and its last-touch campaign.
    pub first_purchases: FastMap<(i32, Option<u32>), i64>,
    campaigns: Vec<String>,
    numbers: FastMap<String, u32>,
}

impl Totals {
    /// The campaign numbered `n`.
    pub fn campaign(&self, n: u32) -> &str {
        &self.campaigns[n as usize]
    }

    /// Adds another bucket's totals (its campaigns renumbered).
    pub fn merge(&mut self, other: Totals) {
        let map: Vec<u32> = other.campaigns.iter().map(|c| self.number(c)).collect();
        let re = |c: Option<u32>| c.map(|c| map[c as usize]);
        for ((day, c), credit) in other.wide {
            let e = self.wide.entry((day, re(c))).or_insert([0.0; 2 * MODELS]);
            for (t, x) in e.iter_mut().zip(credit) {
                *t += x;
            }
        }
        for ((day, c), (n, r)) in other.last_touch {
            let e = self.last_touch.entry((day, map[c as usize])).or_default();
            e.0 += n;
            e.1 += r;
        }
        for ((month, c), n) in other.first_purchases {
            *self.first_purchases.entry((month, re(c))).or_default() += n;
        }
    }

    fn number(&mut self, campaign: &str) -> u32 {
        if let Some(n) = self.numbers.get(campaign) {
            return *n;
        }
        let n = self.campaigns.len() as u32;
        self.campaigns.push(campaign.to_string());
        self.numbers.insert(campaign.to_string(), n);
        n
    }
}

/// The first day of the month of `day` (days since the epoch).
pub fn month_of(day: i32) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
    let date = epoch + chrono::Duration::days(i64::from(day));
    let first = chrono::Datelike::with_day(&date, 1).expect("day 1 exists");
    (first - epoch).num_days() as i32
}

/// The time-decay weight of a touch at `touch_us` for a conversion at `us`, before
/// normalising: halves every `half_life_us`.
pub fn decay(touch_us: i64, us: i64, half_life_us: f64) -> f64 {
    2f64.powf((touch_us - us) as f64 / half_life_us)
}

/// Each model's share of a conversion for the touch at `pos` (time order) of the `count`
/// touches in its window, given the touch's normalised time-decay weight.
pub fn model_weights(pos: usize, count: usize, decay_share: f64, s: &Settings) -> [f64; MODELS] {
    let first = if pos == 0 { 1.0 } else { 0.0 };
    let last = if pos + 1 == count { 1.0 } else { 0.0 };
    let linear = 1.0 / count as f64;
    let position = match count {
        1 => 1.0,
        2 => 0.5,
        _ if pos == 0 => s.first_share,
        _ if pos + 1 == count => s.last_share,
        _ => (1.0 - s.first_share - s.last_share) / (count - 2) as f64,
    };
    [first, last, linear, decay_share, position]
}

/// Credits every conversion of one bucket into `totals`.
pub fn credit_bucket(b: &Bucket, s: &Settings, totals: &mut Totals) {
    let n = b.event_us.len();
    let event_id = |i: usize| b.event_id.is_valid(i).then(|| b.event_id.value(i));
    // Identities numbered in order of appearance (0: none) by their 128-bit fingerprint;
    // campaigns (of touches) numbered once per distinct value.
    let mut identities: FastMap<u128, u32> = FastMap::default();
    let person: Vec<u32> = (0..n)
        .map(|i| {
            if b.identity.is_null(i) {
                return 0;
            }
            let next = identities.len() as u32 + 1;
            let print = twox_hash::XxHash3_128::oneshot(b.identity.value(i).as_bytes());
            *identities.entry(print).or_insert(next)
        })
        .collect();
    let mut local: FastMap<&str, u32> = FastMap::default();
    let campaign_of: Vec<u32> = (0..n)
        .map(|i| {
            if b.conversion.value(i) || b.campaign_id.is_null(i) {
                return u32::MAX;
            }
            let c = b.campaign_id.value(i);
            *local.entry(c).or_insert_with(|| totals.number(c))
        })
        .collect();
    // Rows grouped by identity with a counting sort, then each (small) group ordered by
    // (time, event id).
    let people = identities.len() + 1;
    let mut starts = vec![0usize; people + 1];
    for &p in &person {
        starts[p as usize + 1] += 1;
    }
    for p in 0..people {
        starts[p + 1] += starts[p];
    }
    let mut next = starts.clone();
    let mut order = vec![0usize; n];
    for (i, &p) in person.iter().enumerate() {
        order[next[p as usize]] = i;
        next[p as usize] += 1;
    }
    for p in 0..people {
        order[starts[p]..starts[p + 1]].sort_unstable_by(|&x, &y| {
            b.event_us
                .value(x)
                .cmp(&b.event_us.value(y))
                .then_with(|| event_id(x).cmp(&event_id(y)))
        });
    }
    let half_life_us = s.half_life_days * DAY_US as f64;
    let mut touches: Vec<usize> = Vec::new();
    let mut touch_us: Vec<i64> = Vec::new();
    let mut conversions: Vec<usize> = Vec::new();
    let mut weights: Vec<Credit> = Vec::new();
    let mut start = 0;
    while start < n {
        let who = person[order[start]];
        let mut end = start + 1;
        while end < n && person[order[end]] == who {
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
            } else if who != 0 {
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
            let (lo, hi) = if who != 0 {
                (
                    touch_us.partition_point(|&t| t < us.saturating_sub(s.window_us)),
                    touch_us.partition_point(|&t| t <= us),
                )
            } else {
                (0, 0)
            };
            let campaign = |j: usize| campaign_of[touches[j]];
            if k == 0 && who != 0 {
                let last = (hi > lo).then(|| campaign(hi - 1));
                *totals
                    .first_purchases
                    .entry((month_of(day), last))
                    .or_default() += 1;
            }
            if hi > lo {
                let e = totals
                    .last_touch
                    .entry((day, campaign(hi - 1)))
                    .or_default();
                e.0 += 1;
                e.1 += revenue;
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
            let decays: Vec<f64> = (lo..hi)
                .map(|j| decay(touch_us[j], us, half_life_us))
                .collect();
            let decay_total: f64 = decays.iter().sum();
            weights.clear();
            for (pos, j) in (lo..hi).enumerate() {
                let w = model_weights(pos, count, decays[j - lo] / decay_total, s);
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
