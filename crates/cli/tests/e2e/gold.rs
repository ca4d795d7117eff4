//! Gold end to end: a hand-worked fixture (`tests/fixtures/gold`) with every row of the four
//! Gold tables of the shipped pipeline written out, for all five attribution models; late
//! data in a second wave (an incremental run), a full refresh that equals it, re-runs that
//! change nothing, and a campaign whose channel changes afterwards.
//!
//! The fixture (UTC times; "age" = days from touch to purchase; revenue in USD, EUR at 1.25):
//!
//! | purchase            | identity | at           | revenue      | touches in the window, oldest first (age)        |
//! |---------------------|----------|--------------|--------------|--------------------------------------------------|
//! | p-u7                | u7       | 02-09 09:00  | 10           | none (u7-old is 8 days before, u7-after 30 min after): direct |
//! | p-u1-a              | u1       | 02-10 12:00  | 100          | c1 (7: the edge), c3 (3.5), c1 (1), c3 and c2 (0, tied) |
//! | p-anon              | NULL     | 02-10 12:00  | 40           | none: no identity, direct                        |
//! | p-u2                | u2       | 02-12 18:00  | 80 EUR = 100 | c1 (4), c2 (0.5)                                 |
//! | p-a5                | a5       | 02-15 08:00  | 20           | c3, resolved from utm_campaign (1)               |
//! | p-u4                | u4       | 02-20 10:00  | 50           | none: direct; wave 2 lands u4-late, c4 (3)       |
//! | p-u3-early (wave 2) | u3       | 02-27 00:00  | 40 EUR = 50  | c2 (1)                                           |
//! | p-u3                | u3       | 03-04 00:00  | 60           | c2 (6), c3 (3), cx (0.5)                         |
//! | p-u1-b              | u1       | 03-05 09:00  | none: 0      | c3 (1)                                           |
//!
//! Campaigns: c1 paid_social, c2 paid_search, c3 email, c4 display (paid_social from wave 3);
//! cx is not in the catalogue (channel `unknown`). Events that are not touches: u1-edge-out
//! (7 days and 1 ms before p-u1-a), u1-after (1 ms after it), u1-nocamp (its utm resolves
//! nothing), u1-imp (an impression), anon-click (no identity).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::delta::rows;
use crate::{medallion, repo, stderr, stdout};

fn fixture(wave: &str) -> PathBuf {
    repo().join("tests/fixtures/gold").join(wave)
}

/// Copies a wave's files into the landing directory, keeping relative paths.
fn land(wave: &str, landing: &Path) {
    for (rel, bytes) in crate::files(&fixture(wave)) {
        let target = landing.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}

/// `medallion run` (every layer, unless `args` say otherwise), which must succeed.
fn run(root: &Path, landing: &Path, args: &[&str]) {
    let out = medallion(&repo())
        .arg("run")
        .args(args)
        .arg("--root")
        .arg(root)
        .arg("--landing")
        .arg(landing)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "medallion run {args:?}\nstderr:\n{}\nstdout:\n{}",
        stderr(&out),
        stdout(&out)
    );
}

/// A Gold table: its columns, how many of them are the key, and the Arrow types of the
/// columns that are not text.
struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    key: usize,
    types: &'static [(&'static str, &'static str)],
}

const ATTRIBUTION: Table = Table {
    name: "attribution",
    columns: &[
        "date",
        "model",
        "channel",
        "campaign_id",
        "conversions",
        "revenue_usd",
    ],
    key: 4,
    types: &[
        ("date", "Date32"),
        ("conversions", "Float64"),
        ("revenue_usd", "Float64"),
    ],
};

const CAMPAIGN_DAILY: Table = Table {
    name: "campaign_daily",
    columns: &[
        "date",
        "campaign_id",
        "impressions",
        "clicks",
        "spend_usd",
        "conversions",
        "revenue_usd",
        "ctr",
        "cpc",
        "cpm",
        "conversion_rate",
        "cpa",
        "roas",
        "roi",
    ],
    key: 2,
    types: &[
        ("date", "Date32"),
        ("impressions", "Int64"),
        ("clicks", "Int64"),
        ("spend_usd", "Float64"),
        ("conversions", "Int64"),
        ("revenue_usd", "Float64"),
        ("ctr", "Float64"),
        ("cpc", "Float64"),
        ("cpm", "Float64"),
        ("conversion_rate", "Float64"),
        ("cpa", "Float64"),
        ("roas", "Float64"),
        ("roi", "Float64"),
    ],
};

const CHANNEL_CAC: Table = Table {
    name: "channel_cac",
    columns: &["month", "channel", "new_customers", "spend_usd", "cac"],
    key: 2,
    types: &[
        ("month", "Date32"),
        ("new_customers", "Int64"),
        ("spend_usd", "Float64"),
        ("cac", "Float64"),
    ],
};

const CHANNEL_DAILY: Table = Table {
    name: "channel_daily",
    columns: &["date", "channel", "conversions", "revenue_usd"],
    key: 2,
    types: &[
        ("date", "Date32"),
        ("conversions", "Float64"),
        ("revenue_usd", "Float64"),
    ],
};

const TABLES: [&Table; 4] = [&ATTRIBUTION, &CAMPAIGN_DAILY, &CHANNEL_CAC, &CHANNEL_DAILY];

// ---------------------------------------------------------------------------------------
// Expected rows after wave 1.
// ---------------------------------------------------------------------------------------

/// gold.attribution after wave 1: date | model | channel | campaign_id | conversions | revenue_usd.
const ATTRIBUTION_1: &[&str] = &[
    // p-u7, $10. u7-old (c1, 02-01 09:00) is 8 days before, u7-after 30 minutes after: direct.
    "2026-02-09 | first_touch    | direct      | NULL | 1 | 10",
    "2026-02-09 | last_touch     | direct      | NULL | 1 | 10",
    "2026-02-09 | linear         | direct      | NULL | 1 | 10",
    "2026-02-09 | time_decay     | direct      | NULL | 1 | 10",
    "2026-02-09 | position_based | direct      | NULL | 1 | 10",
    // p-anon, $40, no identity: direct, although anon-click (c1, no identity either) and u1's
    // touches happen that day.
    "2026-02-10 | first_touch    | direct      | NULL | 1 | 40",
    "2026-02-10 | last_touch     | direct      | NULL | 1 | 40",
    "2026-02-10 | linear         | direct      | NULL | 1 | 40",
    "2026-02-10 | time_decay     | direct      | NULL | 1 | 40",
    "2026-02-10 | position_based | direct      | NULL | 1 | 40",
    // p-u1-a, 02-10 12:00, $100; its 5 touches in (event_time, event_id) order:
    //   1 u1-edge-in c1 paid_social  02-03 12:00  age 7   (u1-edge-out, 1 ms earlier, is out)
    //   2 u1-mid     c3 email        02-07 00:00  age 3.5
    //   3 u1-x       c1 paid_social  02-09 12:00  age 1
    //   4 u1-t10     c3 email        02-10 12:00  age 0   (tied with u1-t9; "u1-t10" < "u1-t9")
    //   5 u1-t9      c2 paid_search  02-10 12:00  age 0
    // first: c1. last: c2. linear 1/5 each: c1 2/5, c3 2/5, c2 1/5.
    // time_decay 2^(-age/7): 0.5, 2^-0.5 = 0.70710678, 2^(-1/7) = 0.90572366, 1, 1;
    //   sum 4.11283045: c1 (0.5 + 0.90572366) / 4.11283045 = 0.34178984,
    //   c3 (0.70710678 + 1) / 4.11283045 = 0.41506860, c2 1 / 4.11283045 = 0.24314156.
    // position_based: 0.4 first (c1), 0.4 last (c2), 0.2/3 to each of 2, 3, 4:
    //   c1 0.4 + 0.2/3 = 0.46666667, c3 2 × 0.2/3 = 0.13333333, c2 0.4.
    "2026-02-10 | first_touch    | paid_social | c1   | 1                   | 100",
    "2026-02-10 | last_touch     | paid_search | c2   | 1                   | 100",
    "2026-02-10 | linear         | paid_social | c1   | 0.4                 | 40",
    "2026-02-10 | linear         | email       | c3   | 0.4                 | 40",
    "2026-02-10 | linear         | paid_search | c2   | 0.2                 | 20",
    "2026-02-10 | time_decay     | paid_social | c1   | 0.341789841061621   | 34.1789841061621",
    "2026-02-10 | time_decay     | email       | c3   | 0.4150686014967919  | 41.50686014967919",
    "2026-02-10 | time_decay     | paid_search | c2   | 0.24314155744158714 | 24.314155744158714",
    "2026-02-10 | position_based | paid_social | c1   | 0.4666666666666667  | 46.66666666666667",
    "2026-02-10 | position_based | email       | c3   | 0.13333333333333333 | 13.333333333333333",
    "2026-02-10 | position_based | paid_search | c2   | 0.4                 | 40",
    // p-u2, 02-12 18:00, 80 EUR × 1.25 = $100; touches u2-a c1 (age 4), u2-b c2 (age 0.5).
    // time_decay: 2^(-4/7) : 2^(-0.5/7) = 1 : 2^(3.5/7) = 1 : √2, so
    //   c1 1/(1 + √2) = √2 - 1 = 0.41421356, c2 √2/(1 + √2) = 2 - √2 = 0.58578644.
    "2026-02-12 | first_touch    | paid_social | c1   | 1                   | 100",
    "2026-02-12 | last_touch     | paid_search | c2   | 1                   | 100",
    "2026-02-12 | linear         | paid_social | c1   | 0.5                 | 50",
    "2026-02-12 | linear         | paid_search | c2   | 0.5                 | 50",
    "2026-02-12 | time_decay     | paid_social | c1   | 0.4142135623730951  | 41.42135623730951",
    "2026-02-12 | time_decay     | paid_search | c2   | 0.5857864376269049  | 58.57864376269049",
    "2026-02-12 | position_based | paid_social | c1   | 0.5                 | 50",
    "2026-02-12 | position_based | paid_search | c2   | 0.5                 | 50",
    // p-a5, 02-14 23:00-09:00 = 02-15 08:00 UTC, $20 (anonymous identity a5); one touch,
    // a5-utm, whose campaign c3 comes from utm_campaign=NEWSLETTER_FEB.
    "2026-02-15 | first_touch    | email       | c3   | 1 | 20",
    "2026-02-15 | last_touch     | email       | c3   | 1 | 20",
    "2026-02-15 | linear         | email       | c3   | 1 | 20",
    "2026-02-15 | time_decay     | email       | c3   | 1 | 20",
    "2026-02-15 | position_based | email       | c3   | 1 | 20",
    // p-u4, $50: no touch at all (yet).
    "2026-02-20 | first_touch    | direct      | NULL | 1 | 50",
    "2026-02-20 | last_touch     | direct      | NULL | 1 | 50",
    "2026-02-20 | linear         | direct      | NULL | 1 | 50",
    "2026-02-20 | time_decay     | direct      | NULL | 1 | 50",
    "2026-02-20 | position_based | direct      | NULL | 1 | 50",
    // p-u3, 03-04 00:00, $60; touches u3-a c2 (age 6), u3-b c3 (age 3), u3-c cx (age 0.5,
    // not in campaigns: unknown).
    // time_decay: 2^(-6/7) = 0.55204476, 2^(-3/7) = 0.74299714, 2^(-1/14) = 0.95169515;
    //   sum 2.24673705: c2 0.24570955, c3 0.33070053, cx 0.42358991.
    // position_based: 0.4 c2, 0.2 c3 (the one middle touch), 0.4 cx.
    "2026-03-04 | first_touch    | paid_search | c2   | 1                   | 60",
    "2026-03-04 | last_touch     | unknown     | cx   | 1                   | 60",
    "2026-03-04 | linear         | paid_search | c2   | 0.3333333333333333  | 20",
    "2026-03-04 | linear         | email       | c3   | 0.3333333333333333  | 20",
    "2026-03-04 | linear         | unknown     | cx   | 0.3333333333333333  | 20",
    "2026-03-04 | time_decay     | paid_search | c2   | 0.24570955277203124 | 14.742573166321874",
    "2026-03-04 | time_decay     | email       | c3   | 0.33070053440748687 | 19.842032064449212",
    "2026-03-04 | time_decay     | unknown     | cx   | 0.4235899128204818  | 25.41539476922891",
    "2026-03-04 | position_based | paid_search | c2   | 0.4                 | 24",
    "2026-03-04 | position_based | email       | c3   | 0.2                 | 12",
    "2026-03-04 | position_based | unknown     | cx   | 0.4                 | 24",
    // p-u1-b, 03-05 09:00, no revenue ($0); one touch, u1-mar c3 (age 1).
    "2026-03-05 | first_touch    | email       | c3   | 1 | 0",
    "2026-03-05 | last_touch     | email       | c3   | 1 | 0",
    "2026-03-05 | linear         | email       | c3   | 1 | 0",
    "2026-03-05 | time_decay     | email       | c3   | 1 | 0",
    "2026-03-05 | position_based | email       | c3   | 1 | 0",
];

/// gold.campaign_daily after wave 1. Spend side: ad_spend summed per (date, campaign_id);
/// conversion side: last-touch, non-direct purchases per (purchase date, campaign_id).
/// ctr = clicks/impressions, cpc = spend/clicks, cpm = 1000·spend/impressions,
/// conversion_rate = conversions/clicks, cpa = spend/conversions, roas = revenue/spend,
/// roi = (revenue − spend)/spend; a zero denominator gives NULL.
const CAMPAIGN_DAILY_1: &[&str] = &[
    // date      | campaign | impr  | clicks | spend | conv | revenue | ctr         | cpc  | cpm | conv_rate | cpa  | roas | roi
    // c1: facebook 2000/40/$50 + instagram 1000/10/20 EUR ($25); no conversion.
    "2026-02-10 | c1 | 3000  | 50 | 75 | 0 | 0   | 0.016666666666666666 | 1.5  | 25 | 0     | NULL | 0    | -1",
    // c2: 1000/40/$80; p-u1-a last-touched c2 ($100).
    "2026-02-10 | c2 | 1000  | 40 | 80 | 1 | 100 | 0.04                 | 2    | 80 | 0.025 | 80   | 1.25 | 0.25",
    // p-u2 ($100) with no spend that day: only cpa = 0/1 has a denominator.
    "2026-02-12 | c2 | 0     | 0  | 0  | 1 | 100 | NULL                 | NULL | NULL | NULL | 0    | NULL | NULL",
    // c3 newsletter: $5 for 0 impressions and 0 clicks; p-a5 ($20).
    "2026-02-15 | c3 | 0     | 0  | 5  | 1 | 20  | NULL                 | NULL | NULL | NULL | 5    | 4    | 3",
    // c4: 10000/20/$30; p-u4 has no touch yet.
    "2026-02-20 | c4 | 10000 | 20 | 30 | 0 | 0   | 0.002                | 1.5  | 3  | 0     | NULL | 0    | -1",
    // cx is not in campaigns but is a campaign all the same: 400/4/$10.
    "2026-03-02 | cx | 400   | 4  | 10 | 0 | 0   | 0.01                 | 2.5  | 25 | 0     | NULL | 0    | -1",
    // A zero-spend day: 100/0/$0.
    "2026-03-03 | c2 | 100   | 0  | 0  | 0 | 0   | 0                    | NULL | 0  | NULL  | NULL | NULL | NULL",
    // p-u3 ($60) last-touched cx; no spend that day.
    "2026-03-04 | cx | 0     | 0  | 0  | 1 | 60  | NULL                 | NULL | NULL | NULL | 0    | NULL | NULL",
    // p-u1-b ($0) last-touched c3.
    "2026-03-05 | c3 | 0     | 0  | 0  | 1 | 0   | NULL                 | NULL | NULL | NULL | 0    | NULL | NULL",
];

/// gold.channel_cac after wave 1: month | channel | new_customers | spend_usd | cac.
/// First purchases: u7 p-u7 (Feb, direct), u1 p-u1-a (Feb, c2 paid_search; p-u1-b in March
/// is a second purchase), u2 p-u2 (Feb, paid_search), a5 p-a5 (Feb, email), u4 p-u4 (Feb,
/// direct), u3 p-u3 (Mar, cx unknown); p-anon has no identity. Spend per month through
/// campaigns.channel: Feb c1 75, c2 80, c3 5, c4 30; Mar cx 10 (unknown), c2 0.
const CHANNEL_CAC_1: &[&str] = &[
    "2026-02-01 | direct      | 2 | 0  | 0",
    "2026-02-01 | display     | 0 | 30 | NULL",
    "2026-02-01 | email       | 1 | 5  | 5",
    "2026-02-01 | paid_search | 2 | 80 | 40",
    "2026-02-01 | paid_social | 0 | 75 | NULL",
    "2026-03-01 | paid_search | 0 | 0  | NULL",
    "2026-03-01 | unknown     | 1 | 10 | 10",
];

/// gold.channel_daily after wave 1: the last_touch rows of attribution per date and channel.
const CHANNEL_DAILY_1: &[&str] = &[
    "2026-02-09 | direct      | 1 | 10",
    "2026-02-10 | direct      | 1 | 40",
    "2026-02-10 | paid_search | 1 | 100",
    "2026-02-12 | paid_search | 1 | 100",
    "2026-02-15 | email       | 1 | 20",
    "2026-02-20 | direct      | 1 | 50",
    "2026-03-04 | unknown     | 1 | 60",
    "2026-03-05 | email       | 1 | 0",
];

// ---------------------------------------------------------------------------------------
// Wave 2: u4-late, a click on c4 at 02-17 10:00, three days before p-u4; p-u3-early, a u3
// purchase (40 EUR = $50) at 02-27 00:00, before wave 1's p-u3; and the 2026-02-10 google
// c2 ad_spend row restated as 1200/50/$100.
// ---------------------------------------------------------------------------------------

/// The attribution rows of the dates wave 2 changes; every other date stays as in wave 1.
const ATTRIBUTION_2_CHANGED: &[&str] = &[
    // p-u4 now has one touch, u4-late (c4 display, age 3): full credit to it.
    "2026-02-20 | first_touch    | display     | c4 | 1 | 50",
    "2026-02-20 | last_touch     | display     | c4 | 1 | 50",
    "2026-02-20 | linear         | display     | c4 | 1 | 50",
    "2026-02-20 | time_decay     | display     | c4 | 1 | 50",
    "2026-02-20 | position_based | display     | c4 | 1 | 50",
    // p-u3-early: u3-a (c2, 02-26 00:00, age 1) is in its window; u3-b and u3-c come after.
    "2026-02-27 | first_touch    | paid_search | c2 | 1 | 50",
    "2026-02-27 | last_touch     | paid_search | c2 | 1 | 50",
    "2026-02-27 | linear         | paid_search | c2 | 1 | 50",
    "2026-02-27 | time_decay     | paid_search | c2 | 1 | 50",
    "2026-02-27 | position_based | paid_search | c2 | 1 | 50",
];

const CAMPAIGN_DAILY_2: &[&str] = &[
    // date      | campaign | impr  | clicks | spend | conv | revenue | ctr         | cpc  | cpm | conv_rate | cpa  | roas | roi
    "2026-02-10 | c1 | 3000  | 50 | 75  | 0 | 0   | 0.016666666666666666 | 1.5  | 25   | 0    | NULL | 0    | -1",
    // Restated: 1200/50/$100 replaces 1000/40/$80. ctr 50/1200, cpm 1000·100/1200.
    "2026-02-10 | c2 | 1200  | 50 | 100 | 1 | 100 | 0.041666666666666664 | 2    | 83.33333333333333 | 0.02 | 100 | 1 | 0",
    "2026-02-12 | c2 | 0     | 0  | 0   | 1 | 100 | NULL                 | NULL | NULL | NULL | 0    | NULL | NULL",
    "2026-02-15 | c3 | 0     | 0  | 5   | 1 | 20  | NULL                 | NULL | NULL | NULL | 5    | 4    | 3",
    // p-u4 ($50) now last-touched c4: conversion_rate 1/20, cpa 30/1, roas 50/30, roi 20/30.
    "2026-02-20 | c4 | 10000 | 20 | 30  | 1 | 50  | 0.002                | 1.5  | 3    | 0.05 | 30   | 1.6666666666666667 | 0.6666666666666666",
    // p-u3-early ($50), last-touched c2, no spend that day.
    "2026-02-27 | c2 | 0     | 0  | 0   | 1 | 50  | NULL                 | NULL | NULL | NULL | 0    | NULL | NULL",
    "2026-03-02 | cx | 400   | 4  | 10  | 0 | 0   | 0.01                 | 2.5  | 25   | 0    | NULL | 0    | -1",
    "2026-03-03 | c2 | 100   | 0  | 0   | 0 | 0   | 0                    | NULL | 0    | NULL | NULL | NULL | NULL",
    "2026-03-04 | cx | 0     | 0  | 0   | 1 | 60  | NULL                 | NULL | NULL | NULL | 0    | NULL | NULL",
    "2026-03-05 | c3 | 0     | 0  | 0   | 1 | 0   | NULL                 | NULL | NULL | NULL | 0    | NULL | NULL",
];

/// u4's first purchase moves from direct to display; u3's first purchase is now p-u3-early
/// (Feb, paid_search), so March's unknown keeps only its spend; Feb paid_search spend is 100.
const CHANNEL_CAC_2: &[&str] = &[
    "2026-02-01 | direct      | 1 | 0   | 0",
    "2026-02-01 | display     | 1 | 30  | 30",
    "2026-02-01 | email       | 1 | 5   | 5",
    // u1, u2, u3; 100/3.
    "2026-02-01 | paid_search | 3 | 100 | 33.333333333333336",
    "2026-02-01 | paid_social | 0 | 75  | NULL",
    "2026-03-01 | paid_search | 0 | 0   | NULL",
    "2026-03-01 | unknown     | 0 | 10  | NULL",
];

const CHANNEL_DAILY_2: &[&str] = &[
    "2026-02-09 | direct      | 1 | 10",
    "2026-02-10 | direct      | 1 | 40",
    "2026-02-10 | paid_search | 1 | 100",
    "2026-02-12 | paid_search | 1 | 100",
    "2026-02-15 | email       | 1 | 20",
    "2026-02-20 | display     | 1 | 50",
    "2026-02-27 | paid_search | 1 | 50",
    "2026-03-04 | unknown     | 1 | 60",
    "2026-03-05 | email       | 1 | 0",
];

// ---------------------------------------------------------------------------------------
// Wave 3: campaign c4 moves from display to paid_social (a new campaigns row; latest wins).
// ---------------------------------------------------------------------------------------

const ATTRIBUTION_3_CHANGED: &[&str] = &[
    "2026-02-20 | first_touch    | paid_social | c4 | 1 | 50",
    "2026-02-20 | last_touch     | paid_social | c4 | 1 | 50",
    "2026-02-20 | linear         | paid_social | c4 | 1 | 50",
    "2026-02-20 | time_decay     | paid_social | c4 | 1 | 50",
    "2026-02-20 | position_based | paid_social | c4 | 1 | 50",
];

/// display is gone: its customer (u4) and spend ($30) are paid_social's now.
const CHANNEL_CAC_3: &[&str] = &[
    "2026-02-01 | direct      | 1 | 0   | 0",
    "2026-02-01 | email       | 1 | 5   | 5",
    "2026-02-01 | paid_search | 3 | 100 | 33.333333333333336",
    // 75 + 30 = 105 for one new customer.
    "2026-02-01 | paid_social | 1 | 105 | 105",
    "2026-03-01 | paid_search | 0 | 0   | NULL",
    "2026-03-01 | unknown     | 0 | 10  | NULL",
];

const CHANNEL_DAILY_3: &[&str] = &[
    "2026-02-09 | direct      | 1 | 10",
    "2026-02-10 | direct      | 1 | 40",
    "2026-02-10 | paid_search | 1 | 100",
    "2026-02-12 | paid_search | 1 | 100",
    "2026-02-15 | email       | 1 | 20",
    "2026-02-20 | paid_social | 1 | 50",
    "2026-02-27 | paid_search | 1 | 50",
    "2026-03-04 | unknown     | 1 | 60",
    "2026-03-05 | email       | 1 | 0",
];

/// Every model credits each conversion exactly once, with its revenue: per date and model,
/// date | conversions | revenue_usd (wave 1; wave 2 adds 2026-02-27 | 1 | 50).
const CREDIT_PER_DAY_1: &[&str] = &[
    "2026-02-09 | 1 | 10",  // p-u7
    "2026-02-10 | 2 | 140", // p-u1-a 100 + p-anon 40
    "2026-02-12 | 1 | 100", // p-u2
    "2026-02-15 | 1 | 20",  // p-a5
    "2026-02-20 | 1 | 50",  // p-u4
    "2026-03-04 | 1 | 60",  // p-u3
    "2026-03-05 | 1 | 0",   // p-u1-b
];

/// `base` without the rows of the dates that `changed` has rows for, plus `changed`.
fn with_dates_replaced<'a>(base: &[&'a str], changed: &[&'a str]) -> Vec<&'a str> {
    let date = |row: &str| fields(row)[0].to_string();
    let dates: Vec<String> = changed.iter().map(|r| date(r)).collect();
    base.iter()
        .filter(|r| !dates.contains(&date(r)))
        .chain(changed)
        .copied()
        .collect()
}

/// The expected rows of the four tables, in `TABLES` order.
fn expected_after(wave: u32) -> [Vec<&'static str>; 4] {
    let attribution_2 = with_dates_replaced(ATTRIBUTION_1, ATTRIBUTION_2_CHANGED);
    match wave {
        1 => [
            ATTRIBUTION_1.to_vec(),
            CAMPAIGN_DAILY_1.to_vec(),
            CHANNEL_CAC_1.to_vec(),
            CHANNEL_DAILY_1.to_vec(),
        ],
        2 => [
            attribution_2,
            CAMPAIGN_DAILY_2.to_vec(),
            CHANNEL_CAC_2.to_vec(),
            CHANNEL_DAILY_2.to_vec(),
        ],
        // campaign_daily is keyed by campaign, not channel: unchanged.
        3 => [
            with_dates_replaced(&attribution_2, ATTRIBUTION_3_CHANGED),
            CAMPAIGN_DAILY_2.to_vec(),
            CHANNEL_CAC_3.to_vec(),
            CHANNEL_DAILY_3.to_vec(),
        ],
        _ => unreachable!(),
    }
}

// ---------------------------------------------------------------------------------------
// Reading and comparing.
// ---------------------------------------------------------------------------------------

/// The rows of a Delta table as `a|b|c` lines (NULL spelled out), in `order`.
fn lines(dir: &Path, columns: &[&str], order: &str) -> Vec<String> {
    let select = columns
        .iter()
        .map(|c| format!("coalesce(CAST({c} AS VARCHAR), 'NULL')"))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    rows(
        dir,
        &format!("SELECT {select} AS r FROM t ORDER BY {order}"),
    )
    .into_iter()
    .filter(|l| l.starts_with("| ") && !l.starts_with("| r "))
    .map(|l| l[2..].trim_end_matches('|').trim_end().to_string())
    .collect()
}

/// A row's fields, trimmed.
fn fields(row: &str) -> Vec<&str> {
    row.split('|').map(str::trim).collect()
}

/// Equal text, or numbers equal within 1e-9 relative (1e-12 absolute near zero).
fn same_value(actual: &str, expected: &str) -> bool {
    if actual == expected {
        return true;
    }
    match (actual.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(a), Ok(e)) => {
            let diff = (a - e).abs();
            diff <= 1e-12 || diff <= 1e-9 * a.abs().max(e.abs())
        }
        _ => false,
    }
}

/// Rows by key (the first `key` fields); a key seen twice is reported.
fn by_key<S: AsRef<str>>(rows: &[S], key: usize, what: &str) -> BTreeMap<Vec<String>, String> {
    let mut out = BTreeMap::new();
    for row in rows {
        let row = row.as_ref();
        let k: Vec<String> = fields(row)[..key].iter().map(|f| f.to_string()).collect();
        assert!(
            out.insert(k.clone(), row.to_string()).is_none(),
            "{what}: key {k:?} appears twice"
        );
    }
    out
}

/// Asserts `actual` has exactly the rows of `expected` (any order), numbers within 1e-9.
fn assert_rows<A: AsRef<str>, E: AsRef<str>>(
    table: &Table,
    actual: &[A],
    expected: &[E],
    what: &str,
) {
    let what = format!("gold.{} ({what})", table.name);
    let actual = by_key(actual, table.key, &what);
    let expected = by_key(expected, table.key, &format!("{what}, expected rows"));
    let mut problems = Vec::new();
    for (k, e) in &expected {
        match actual.get(k) {
            None => problems.push(format!("missing:    {e}")),
            Some(a) => {
                let (af, ef) = (fields(a), fields(e));
                if af.len() != ef.len() || af.iter().zip(&ef).any(|(a, e)| !same_value(a, e)) {
                    problems.push(format!("expected:   {e}\n  got:        {a}"));
                }
            }
        }
    }
    for (k, a) in &actual {
        if !expected.contains_key(k) {
            problems.push(format!("unexpected: {a}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n  {}\nall rows:\n  {}",
        problems.len(),
        problems.join("\n  "),
        actual.values().cloned().collect::<Vec<_>>().join("\n  ")
    );
}

fn table_dir(root: &Path, table: &Table) -> PathBuf {
    root.join("gold").join(table.name)
}

/// A Gold table's rows, all expected columns, ordered by its key.
fn read(root: &Path, table: &Table) -> Vec<String> {
    let order = table.columns[..table.key].join(", ");
    lines(&table_dir(root, table), table.columns, &order)
}

/// Every Gold table's rows, in `TABLES` order.
fn snapshot(root: &Path) -> Vec<Vec<String>> {
    TABLES.iter().map(|t| read(root, t)).collect()
}

/// Asserts every row of the four Gold tables, and the column types.
fn assert_gold(root: &Path, wave: u32, what: &str) {
    for (table, expected) in TABLES.iter().zip(expected_after(wave)) {
        let (names, types): (Vec<&str>, Vec<&str>) = table.types.iter().copied().unzip();
        let typeofs: Vec<String> = names.iter().map(|c| format!("arrow_typeof({c})")).collect();
        let typeofs: Vec<&str> = typeofs.iter().map(String::as_str).collect();
        let actual_types = lines(&table_dir(root, table), &typeofs, "1");
        assert_eq!(
            actual_types.first().map(String::as_str),
            Some(types.join("|").as_str()),
            "gold.{} column types of {names:?}",
            table.name
        );
        assert_rows(table, &read(root, table), &expected, what);
    }
}

/// Per date and model, Σ conversions and Σ revenue_usd of gold.attribution equal the day's
/// conversions and revenue, for each of the five models.
fn assert_credit_per_day(root: &Path, expected: &[&str]) {
    let dir = table_dir(root, &ATTRIBUTION);
    let models = lines(&dir, &["model"], "model")
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        models.into_iter().collect::<Vec<_>>(),
        [
            "first_touch",
            "last_touch",
            "linear",
            "position_based",
            "time_decay"
        ]
    );
    for model in [
        "first_touch",
        "last_touch",
        "linear",
        "time_decay",
        "position_based",
    ] {
        let per_day = rows(
            &dir,
            &format!(
                "SELECT CAST(date AS VARCHAR) || '|' || CAST(sum(conversions) AS VARCHAR) || '|' \
                 || CAST(sum(revenue_usd) AS VARCHAR) AS r FROM t WHERE model = '{model}' \
                 GROUP BY date ORDER BY date"
            ),
        )
        .into_iter()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| r "))
        .map(|l| l[2..].trim_end_matches('|').trim_end().to_string())
        .collect::<Vec<_>>();
        let day = Table {
            name: "attribution",
            columns: &[],
            key: 1,
            types: &[],
        };
        assert_rows(
            &day,
            &per_day,
            expected,
            &format!("credit per day, {model}"),
        );
    }
}

/// The latest Delta version of each Gold table.
fn versions(root: &Path) -> Vec<u64> {
    TABLES
        .iter()
        .map(|t| {
            std::fs::read_dir(table_dir(root, t).join("_delta_log"))
                .unwrap()
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".json")?
                        .parse()
                        .ok()
                })
                .max()
                .unwrap_or_else(|| panic!("gold.{} has no commit", t.name))
        })
        .collect()
}

/// A run with no new data commits nothing to any Gold table and leaves its rows as they were.
fn assert_rerun_changes_nothing(root: &Path, landing: &Path, what: &str) {
    let (before, rows_before) = (versions(root), snapshot(root));
    run(root, landing, &[]);
    assert_eq!(
        versions(root),
        before,
        "{what}: a re-run with no new data committed to a Gold table ({:?})",
        TABLES.map(|t| t.name)
    );
    assert_eq!(snapshot(root), rows_before, "{what}");
}

/// Asserts two lakes' Gold tables hold the same rows (numbers within 1e-9).
fn assert_same_gold(left: &[Vec<String>], right: &[Vec<String>], what: &str) {
    for ((table, l), r) in TABLES.iter().zip(left).zip(right) {
        assert_rows(table, l, r, what);
    }
}

#[test]
fn gold_hand_worked_fixture_incremental_then_full_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, landing) = (tmp.path().join("lake"), tmp.path().join("landing"));

    // Wave 1: the whole pipeline, Bronze to Gold.
    land("wave1", &landing);
    run(&root, &landing, &[]);
    assert_gold(&root, 1, "wave 1");
    assert_credit_per_day(&root, CREDIT_PER_DAY_1);
    assert_rerun_changes_nothing(&root, &landing, "after wave 1");

    // Wave 2: late data, an incremental run.
    land("wave2", &landing);
    run(&root, &landing, &[]);
    assert_gold(&root, 2, "wave 2, incremental");
    let mut credit_2 = CREDIT_PER_DAY_1.to_vec();
    credit_2.push("2026-02-27 | 1 | 50"); // p-u3-early
    assert_credit_per_day(&root, &credit_2);
    assert_rerun_changes_nothing(&root, &landing, "after wave 2");

    // A full refresh of Gold gives the same tables.
    let incremental = snapshot(&root);
    run(&root, &landing, &["--layer", "gold", "--full-refresh"]);
    assert_gold(&root, 2, "wave 2, full refresh");
    assert_same_gold(
        &snapshot(&root),
        &incremental,
        "full refresh vs incremental",
    );
    assert_rerun_changes_nothing(&root, &landing, "after the full refresh");
}

#[test]
fn gold_of_both_waves_landed_at_once_equals_gold_after_each() {
    // One lake that sees all the data at once, run layer by layer.
    let tmp = tempfile::tempdir().unwrap();
    let (root, landing) = (tmp.path().join("lake"), tmp.path().join("landing"));
    land("wave1", &landing);
    land("wave2", &landing);
    for layer in ["bronze", "silver", "gold"] {
        run(&root, &landing, &["--layer", layer]);
    }
    assert_gold(&root, 2, "both waves at once");
    assert_rerun_changes_nothing(&root, &landing, "both waves at once");
}

#[test]
fn gold_follows_a_campaign_that_changes_channel() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, landing) = (tmp.path().join("lake"), tmp.path().join("landing"));
    for wave in ["wave1", "wave2"] {
        land(wave, &landing);
        run(&root, &landing, &[]);
    }
    assert_gold(&root, 2, "wave 2");

    // Wave 3 changes no event, only the channel of c4: the credit p-u4 gives to c4 moves.
    land("wave3", &landing);
    run(&root, &landing, &[]);
    assert_gold(&root, 3, "wave 3, incremental");
    assert_rerun_changes_nothing(&root, &landing, "after wave 3");
    let incremental = snapshot(&root);
    run(&root, &landing, &["--layer", "gold", "--full-refresh"]);
    assert_gold(&root, 3, "wave 3, full refresh");
    assert_same_gold(
        &snapshot(&root),
        &incremental,
        "full refresh vs incremental",
    );
}

/// A run killed at each Gold commit point, then run again, ends with the same Gold tables
/// as a run that was never interrupted.
#[test]
fn gold_crash_at_each_commit_point_then_rerun_equals_a_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    for point in [
        "gold.before_commit",
        "gold.after_commit",
        "gold.attribution.before_commit",
        "gold.channel_daily.after_commit",
    ] {
        let dir = tmp.path().join(point);
        let (root, landing) = (dir.join("lake"), dir.join("landing"));
        land("wave1", &landing);
        run(&root, &landing, &[]);
        land("wave2", &landing);
        let out = medallion(&repo())
            .arg("run")
            .arg("--root")
            .arg(&root)
            .arg("--landing")
            .arg(&landing)
            .env("MEDALLION_CRASH_AT", point)
            .output()
            .unwrap();
        assert_ne!(
            out.status.code(),
            Some(0),
            "{point}: the run should have crashed"
        );
        assert!(
            stderr(&out).contains(&format!("crash point `{point}` reached")),
            "{point}: {}",
            stderr(&out)
        );
        run(&root, &landing, &[]);
        assert_gold(&root, 2, point);
        assert_rerun_changes_nothing(&root, &landing, point);
    }
}

/// `medallion lineage`: a Gold table version leads, through the input versions its run
/// recorded, down to exactly the landed event files behind it; an earlier version to the
/// files landed before it.
#[test]
fn gold_lineage_follows_recorded_versions_down_to_the_landed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, landing) = (tmp.path().join("lake"), tmp.path().join("landing"));
    land("wave1", &landing);
    run(&root, &landing, &[]);
    land("wave2", &landing);
    run(&root, &landing, &[]);
    let lineage = |args: &[&str]| -> serde_json::Value {
        let out = medallion(&repo())
            .arg("lineage")
            .args(args)
            .args(["--format", "json", "--root"])
            .arg(&root)
            .arg("--landing")
            .arg(&landing)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let node = |graph: &serde_json::Value, table: &str| -> serde_json::Value {
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["table"] == table)
            .unwrap_or_else(|| panic!("{table} not in {graph}"))
            .clone()
    };
    let files = |n: &serde_json::Value| -> Vec<(String, u64)> {
        n["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f[0].as_str().unwrap().to_string(), f[1].as_u64().unwrap()))
            .collect()
    };
    let owned = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(f, n)| (f.to_string(), *n)).collect()
    };

    let latest = lineage(&["gold.attribution"]);
    let gold = node(&latest, "gold.attribution");
    assert_eq!(gold["version"], 2, "{gold}");
    let inputs = gold["inputs"].as_array().unwrap();
    assert!(
        inputs.contains(&serde_json::json!(["silver.events", 2])),
        "{gold}"
    );
    assert_eq!(node(&latest, "silver.events")["version"], 2);
    // Every input of every node has its version recorded (Silver's lookups included).
    for n in latest["nodes"].as_array().unwrap() {
        for input in n["inputs"].as_array().unwrap() {
            assert!(input[1].is_i64(), "{} <- {input}", n["table"]);
        }
    }
    let events = node(&latest, "silver.events");
    let lookups: Vec<&str> = events["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[0].as_str().unwrap())
        .collect();
    assert_eq!(
        lookups,
        ["bronze.events", "silver.campaigns", "silver.fx_rates"]
    );
    assert_eq!(
        files(&node(&latest, "bronze.events")),
        owned(&[
            ("events/february.ndjson", 21),
            ("events/late.ndjson", 2),
            ("events/march.ndjson", 6),
        ])
    );

    let first = lineage(&["gold.attribution", "--version", "1"]);
    assert_eq!(node(&first, "silver.events")["version"], 1, "{first}");
    assert_eq!(
        files(&node(&first, "bronze.events")),
        owned(&[("events/february.ndjson", 21), ("events/march.ndjson", 6)])
    );
    let text_out = medallion(&repo())
        .args(["lineage", "gold.attribution", "--version", "9", "--root"])
        .arg(&root)
        .arg("--landing")
        .arg(&landing)
        .output()
        .unwrap();
    assert_eq!(text_out.status.code(), Some(2), "{}", stderr(&text_out));
    assert!(
        stderr(&text_out).contains("versions 0 to 2"),
        "{}",
        stderr(&text_out)
    );
}

/// `lineage trace` on the hand-worked fixture: the exact Silver rows, Bronze versions and raw
/// landed lines behind a `campaign_daily` row (now and as first computed, before wave 2
/// restated its spend), an `attribution` row (position-based credit of one campaign among
/// five touches) and its direct row, a SQL model over `attribution`, and a `channel_cac` row;
/// a model that is not row-traceable says so.
#[test]
fn gold_lineage_trace_reaches_the_raw_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, landing) = (tmp.path().join("lake"), tmp.path().join("landing"));
    land("wave1", &landing);
    run(&root, &landing, &[]);
    land("wave2", &landing);
    run(&root, &landing, &[]);
    let trace =
        |config: &Path, table: &str, predicate: &str, extra: &[&str]| -> serde_json::Value {
            let out = medallion(&repo())
                .args([
                    "lineage", "trace", table, "--where", predicate, "--format", "json",
                ])
                .args(extra)
                .arg("--config")
                .arg(config)
                .arg("--root")
                .arg(&root)
                .arg("--landing")
                .arg(&landing)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            serde_json::from_str(&stdout(&out)).unwrap()
        };
    let shipped = repo().join("layers.yaml");
    // (role, table, key, credit, Bronze version, file, line, raw)
    type Source = (
        String,
        String,
        String,
        Option<f64>,
        i64,
        String,
        i64,
        String,
    );
    let sources = |t: &serde_json::Value, row: usize| -> Vec<Source> {
        let r = &t["rows"][row];
        assert_eq!(
            r["total_sources"].as_u64().unwrap() as usize,
            r["sources"].as_array().unwrap().len()
        );
        r["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["role"].as_str().unwrap().to_string(),
                    s["table"].as_str().unwrap().to_string(),
                    s["key"].as_str().unwrap().to_string(),
                    s["credit"].as_f64().map(|c| (c * 1e9).round() / 1e9),
                    s["bronze_version"].as_i64().unwrap(),
                    s["file"].as_str().unwrap().to_string(),
                    s["line"].as_i64().unwrap(),
                    s["raw"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // A source landed in wave N, so ingested by Bronze version N; its raw line is read here
    // from the fixture itself.
    let src = |wave: i64,
               role: &str,
               table: &str,
               key: &str,
               credit: Option<f64>,
               file: &str,
               n: usize|
     -> Source {
        let text = std::fs::read_to_string(fixture(&format!("wave{wave}")).join(file)).unwrap();
        (
            role.to_string(),
            table.to_string(),
            key.to_string(),
            credit,
            wave,
            file.to_string(),
            n as i64,
            text.lines().nth(n - 1).unwrap().to_string(),
        )
    };
    let feb = "events/february.ndjson";
    let events = "silver.events";
    let equal_to_row = |t: &serde_json::Value| {
        let check = t["rows"][0]["check"].as_str().unwrap();
        assert!(check.ends_with("(equal to the row)"), "{check}");
    };

    // campaign_daily (02-10, c2): google's spend, restated by wave 2; p-u1-a, whose last
    // touch is u1-t9 (c2): u1-t9 and u1-t10 are tied at 12:00 and `u1-t10` < `u1-t9`.
    let spend_key = "date=2026-02-10, platform=google, campaign_id=c2";
    let row = "date = '2026-02-10' AND campaign_id = 'c2'";
    let t = trace(&shipped, "gold.campaign_daily", row, &[]);
    assert_eq!(t["version"], 2);
    assert_eq!(t["rows"].as_array().unwrap().len(), 1);
    assert_eq!(
        sources(&t, 0),
        vec![
            src(
                2,
                "spend",
                "silver.ad_spend",
                spend_key,
                None,
                "ad_spend/2026-03-10.csv",
                2
            ),
            src(1, "purchase", events, "event_id=p-u1-a", Some(1.0), feb, 14),
            src(
                1,
                "last touch",
                events,
                "event_id=u1-t9",
                Some(1.0),
                feb,
                12
            ),
        ]
    );
    equal_to_row(&t);
    // Version 1 was computed before the restatement, from silver.ad_spend@1: its trace reads
    // that version and shows the line as first landed.
    let t = trace(&shipped, "gold.campaign_daily", row, &["--version", "1"]);
    assert_eq!(t["version"], 1);
    assert_eq!(t["inputs"]["silver.ad_spend"], 1, "{t}");
    assert_eq!(
        sources(&t, 0),
        vec![
            src(
                1,
                "spend",
                "silver.ad_spend",
                spend_key,
                None,
                "ad_spend/2026-03-06.csv",
                4
            ),
            src(1, "purchase", events, "event_id=p-u1-a", Some(1.0), feb, 14),
            src(
                1,
                "last touch",
                events,
                "event_id=u1-t9",
                Some(1.0),
                feb,
                12
            ),
        ]
    );
    equal_to_row(&t);

    // attribution (02-10, position_based, c3): p-u1-a's five touches are u1-edge-in (c1,
    // first: 0.4), u1-mid (c3), u1-x (c1), u1-t10 (c3) (middle: 0.2/3 each), u1-t9 (c2, last):
    // c3 gets 2/15 of the purchase through u1-mid and u1-t10.
    let t = trace(
        &shipped,
        "gold.attribution",
        "date = '2026-02-10' AND model = 'position_based' AND campaign_id = 'c3'",
        &[],
    );
    let round = |x: f64| (x * 1e9).round() / 1e9;
    assert_eq!(
        sources(&t, 0),
        vec![
            src(
                1,
                "purchase",
                events,
                "event_id=p-u1-a",
                Some(round(0.4 / 3.0)),
                feb,
                14
            ),
            src(
                1,
                "touch",
                events,
                "event_id=u1-mid",
                Some(round(0.2 / 3.0)),
                feb,
                4
            ),
            src(
                1,
                "touch",
                events,
                "event_id=u1-t10",
                Some(round(0.2 / 3.0)),
                feb,
                13
            ),
        ]
    );
    equal_to_row(&t);
    // The direct row of the day: p-anon has no identity.
    let t = trace(
        &shipped,
        "gold.attribution",
        "date = '2026-02-10' AND model = 'linear' AND channel = 'direct'",
        &[],
    );
    assert_eq!(
        sources(&t, 0),
        vec![src(
            1,
            "purchase (direct)",
            events,
            "event_id=p-anon",
            Some(1.0),
            feb,
            15
        )]
    );
    equal_to_row(&t);

    // A SQL model over attribution: through the last-touch attribution row to the same lines.
    let t = trace(
        &shipped,
        "gold.channel_daily",
        "date = '2026-02-10' AND channel = 'paid_search'",
        &[],
    );
    assert_eq!(t["traceable"], true);
    let via =
        "gold.attribution campaign_id=c2, channel=paid_search, date=2026-02-10, model=last_touch";
    let got: Vec<(String, String, String)> = t["rows"][0]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap().to_string(),
                s["via"].as_str().unwrap().to_string(),
                format!("{}:{}", s["file"].as_str().unwrap(), s["line"]),
            )
        })
        .collect();
    let expected = |key: &str, at: &str| (key.to_string(), via.to_string(), at.to_string());
    assert_eq!(
        got,
        vec![
            expected("event_id=p-u1-a", "events/february.ndjson:14"),
            expected("event_id=u1-t9", "events/february.ndjson:12"),
        ]
    );

    // channel_cac (February, paid_search): three new customers, u1, u2 and u3 (whose first
    // purchase landed late, in wave 2), each first purchase with its last touch; and the
    // month's paid_search spend (as restated).
    let t = trace(
        &shipped,
        "gold.channel_cac",
        "month = '2026-02-01' AND channel = 'paid_search'",
        &[],
    );
    assert_eq!(
        sources(&t, 0),
        vec![
            src(
                1,
                "first purchase",
                events,
                "event_id=p-u1-a",
                Some(1.0),
                feb,
                14
            ),
            src(
                1,
                "last touch",
                events,
                "event_id=u1-t9",
                Some(1.0),
                feb,
                12
            ),
            src(
                1,
                "first purchase",
                events,
                "event_id=p-u2",
                Some(1.0),
                feb,
                18
            ),
            src(1, "last touch", events, "event_id=u2-b", Some(1.0), feb, 17),
            src(
                2,
                "first purchase",
                events,
                "event_id=p-u3-early",
                Some(1.0),
                "events/late.ndjson",
                2
            ),
            src(
                1,
                "last touch",
                events,
                "event_id=u3-a",
                Some(1.0),
                "events/march.ndjson",
                1
            ),
            src(
                2,
                "spend",
                "silver.ad_spend",
                spend_key,
                None,
                "ad_spend/2026-03-10.csv",
                2
            ),
        ]
    );
    equal_to_row(&t);

    // A window function is not row-traceable: said plainly, the rows still listed.
    let config = tmp.path().join("ranked.yaml");
    let text = std::fs::read_to_string(&shipped).unwrap()
        + "\n  ranked:\n    sql: \"SELECT date, channel, rank() OVER (PARTITION BY date ORDER BY conversions DESC) AS place FROM gold.channel_daily\"\n    key: [date, channel]\n    materialized: full\n  daily_purchases:\n    sql: \"SELECT CAST(event_time AS DATE) AS date, count(*) AS purchases FROM silver.events WHERE event_type = 'purchase' GROUP BY CAST(event_time AS DATE)\"\n    key: [date]\n    materialized: full\n  clicks_by_channel:\n    sql: \"SELECT e.event_date AS date, c.channel, count(*) AS clicks FROM silver.events e JOIN silver.campaigns c ON e.campaign_id = c.campaign_id WHERE e.event_type = 'click' GROUP BY e.event_date, c.channel\"\n    key: [date, channel]\n    materialized: full\n";
    std::fs::write(&config, text).unwrap();
    let out = medallion(&repo())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--root")
        .arg(&root)
        .arg("--landing")
        .arg(&landing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = trace(&config, "gold.ranked", "date = '2026-02-10'", &[]);
    assert_eq!(t["traceable"], false, "{t}");
    assert!(t["note"].as_str().unwrap().contains("Window"), "{t}");
    assert!(!t["rows"].as_array().unwrap().is_empty());
    // A SQL model over Silver, grouped by an expression: the Silver rows of the group.
    let t = trace(&config, "gold.daily_purchases", "date = '2026-02-10'", &[]);
    assert_eq!(t["traceable"], true, "{t}");
    assert_eq!(t["rows"][0]["row"]["purchases"], 2, "{t}");
    let mut got = sources(&t, 0);
    got.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        got,
        vec![
            src(1, "row", events, "event_id=p-anon", None, feb, 15),
            src(1, "row", events, "event_id=p-u1-a", None, feb, 14),
        ]
    );
    // A join: the clicks of the day on c2 and the campaign row they joined, listed once.
    let t = trace(
        &config,
        "gold.clicks_by_channel",
        "date = '2026-02-10' AND channel = 'paid_search'",
        &[],
    );
    assert_eq!(t["rows"][0]["row"]["clicks"], 1, "{t}");
    let mut got = sources(&t, 0);
    got.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        got,
        vec![
            src(
                1,
                "row",
                "silver.campaigns",
                "campaign_id=c2",
                None,
                "campaigns/campaigns.csv",
                3
            ),
            src(1, "row", events, "event_id=u1-t9", None, feb, 12),
        ]
    );
}
