//! The campaigns dimension and the FX rates: ~40 campaigns over 60 days on
//! eight channel/platform pairs, written as `campaigns/campaigns.csv` and
//! `fx_rates/fx_rates.csv`.

use rand::Rng;
use rand_pcg::Pcg64Mcg;

use crate::time::{SPAN_DAYS, window_date};

/// Number of campaigns in the sample.
pub(crate) const CAMPAIGN_COUNT: usize = 40;
/// The first campaign id; ids are consecutive numbers (text in the CSV).
pub(crate) const FIRST_CAMPAIGN_ID: u32 = 1001;
/// Header of `campaigns.csv`.
pub(crate) const CAMPAIGNS_HEADER: &str =
    "campaign_id,name,channel,platform,utm_campaign,start_date,end_date,budget,currency";
/// Header of `fx_rates.csv`.
pub(crate) const FX_HEADER: &str = "currency,usd_per_unit";

/// Currencies with their USD rate as written to `fx_rates.csv`.
pub(crate) const FX_RATES: [(&str, &str); 4] = [
    ("USD", "1.0"),
    ("EUR", "1.08"),
    ("GBP", "1.27"),
    ("CAD", "0.73"),
];

/// One channel/platform pair and how its ads are priced.
pub(crate) struct Placement {
    pub(crate) channel: &'static str,
    pub(crate) platform: &'static str,
    /// Short code used in `utm_campaign` values.
    abbr: &'static str,
    /// Display name used in campaign names.
    display: &'static str,
    /// Typical cost per click, in cents of the campaign currency.
    cpc_cents: u32,
    /// Typical cost per thousand impressions, in cents.
    cpm_cents: u32,
}

/// The eight channel/platform pairs; campaign `j` runs on `PLACEMENTS[j % 8]`.
pub(crate) const PLACEMENTS: [Placement; 8] = [
    placement("paid_social", "facebook", "FB", "Facebook", 85, 750),
    placement("paid_social", "instagram", "IG", "Instagram", 110, 850),
    placement("paid_social", "tiktok", "TT", "TikTok", 60, 500),
    placement("paid_search", "google", "GG", "Google", 180, 0),
    placement("paid_search", "bing", "BG", "Bing", 120, 0),
    placement("email", "newsletter", "EM", "Newsletter", 0, 0),
    placement("display", "programmatic", "DSP", "Programmatic", 40, 300),
    placement("affiliate", "partners", "AFF", "Partners", 150, 0),
];

const fn placement(
    channel: &'static str,
    platform: &'static str,
    abbr: &'static str,
    display: &'static str,
    cpc_cents: u32,
    cpm_cents: u32,
) -> Placement {
    Placement {
        channel,
        platform,
        abbr,
        display,
        cpc_cents,
        cpm_cents,
    }
}

/// Campaign themes; campaign `j` uses `THEMES[j % 10]`, so (placement, theme) is unique.
const THEMES: [&str; 10] = [
    "Autumn Sale",
    "Back to School",
    "Brand Awareness",
    "Always-On Brand",
    "Halloween Deals",
    "New Arrivals",
    "Black Friday Early Access",
    "Fall & Winter Deals",
    "Loyalty Rewards",
    "Clearance",
];
/// The always-on theme: those campaigns run over the whole window.
const ALWAYS_ON_THEME: usize = 3;
/// Campaign whose `utm_campaign` is deliberately copied (in another case) from
/// [`AMBIGUOUS_SOURCE`], so that value resolves to no campaign.
pub(crate) const AMBIGUOUS_COPY: usize = 10;
/// Campaign whose `utm_campaign` is shared with [`AMBIGUOUS_COPY`].
pub(crate) const AMBIGUOUS_SOURCE: usize = 0;

/// One campaign.
pub(crate) struct Campaign {
    /// Numeric campaign id (written as text).
    pub(crate) id: u32,
    pub(crate) name: String,
    /// Index into [`PLACEMENTS`].
    pub(crate) placement: usize,
    pub(crate) utm: String,
    /// First and last active day (inclusive), as day indexes in the window.
    pub(crate) start_day: usize,
    pub(crate) end_day: usize,
    pub(crate) budget_cents: i64,
    /// Index into [`FX_RATES`].
    pub(crate) currency: usize,
    pub(crate) cpc_cents: u32,
    pub(crate) cpm_cents: u32,
}

impl Campaign {
    /// The campaign's channel/platform pair.
    pub(crate) fn placement(&self) -> &'static Placement {
        &PLACEMENTS[self.placement]
    }

    /// Whether this is an email campaign (no ad platform, no ad spend).
    pub(crate) fn is_email(&self) -> bool {
        self.placement().channel == "email"
    }
}

/// All campaigns plus, per day, which are active.
pub(crate) struct Campaigns {
    pub(crate) list: Vec<Campaign>,
    /// Per day: active campaigns with ad placements.
    pub(crate) ads_by_day: Vec<Vec<u8>>,
    /// Per day: active email campaigns.
    pub(crate) email_by_day: Vec<Vec<u8>>,
}

impl Campaigns {
    /// Builds the campaign table from a dedicated random stream.
    pub(crate) fn generate(rng: &mut Pcg64Mcg) -> Self {
        let mut list: Vec<Campaign> = (0..CAMPAIGN_COUNT).map(|j| campaign(j, rng)).collect();
        let shared = list[AMBIGUOUS_SOURCE].utm.to_ascii_uppercase();
        list[AMBIGUOUS_COPY].utm = shared;
        let mut ads_by_day = vec![Vec::new(); SPAN_DAYS];
        let mut email_by_day = vec![Vec::new(); SPAN_DAYS];
        for (j, c) in list.iter().enumerate() {
            for day in c.start_day..=c.end_day {
                let by_day = if c.is_email() {
                    &mut email_by_day
                } else {
                    &mut ads_by_day
                };
                by_day[day].push(j as u8);
            }
        }
        Self {
            list,
            ads_by_day,
            email_by_day,
        }
    }

    /// Whether touches carrying this campaign's utm value resolve to no campaign.
    pub(crate) fn is_ambiguous(&self, index: usize) -> bool {
        index == AMBIGUOUS_SOURCE || index == AMBIGUOUS_COPY
    }

    /// The `campaigns.csv` file contents.
    pub(crate) fn csv(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(CAMPAIGNS_HEADER.as_bytes());
        out.push(b'\n');
        for (j, c) in self.list.iter().enumerate() {
            let fields = [
                c.id.to_string(),
                c.name.clone(),
                noisy_channel(j, c.placement().channel),
                c.placement().platform.to_string(),
                c.utm.clone(),
                window_date(c.start_day as i64),
                window_date(c.end_day as i64),
                format!("{}.{:02}", c.budget_cents / 100, c.budget_cents % 100),
                FX_RATES[c.currency].0.to_string(),
            ];
            push_csv_row(&mut out, &fields);
        }
        out
    }
}

/// The `fx_rates.csv` file contents.
pub(crate) fn fx_csv() -> Vec<u8> {
    let mut out = format!("{FX_HEADER}\n").into_bytes();
    for (currency, rate) in FX_RATES {
        push_csv_row(&mut out, &[currency.to_string(), rate.to_string()]);
    }
    out
}

fn campaign(j: usize, rng: &mut Pcg64Mcg) -> Campaign {
    let placement = j % PLACEMENTS.len();
    let theme_index = j % THEMES.len();
    let p = &PLACEMENTS[placement];
    let (start_day, end_day) = if theme_index == ALWAYS_ON_THEME {
        (0, SPAN_DAYS - 1)
    } else {
        let start = rng.random_range(0..SPAN_DAYS - 10);
        let len = rng.random_range(7..=35);
        (start, (start + len - 1).min(SPAN_DAYS - 1))
    };
    let currency = match rng.random_range(0..100) {
        0..60 => 0,
        60..80 => 1,
        80..92 => 2,
        _ => 3,
    };
    let jitter = |rng: &mut Pcg64Mcg, v: u32| (f64::from(v) * rng.random_range(0.7..1.3)) as u32;
    Campaign {
        id: FIRST_CAMPAIGN_ID + j as u32,
        name: campaign_name(j, THEMES[theme_index], p.display),
        placement,
        utm: utm_value(j, THEMES[theme_index], p),
        start_day,
        end_day,
        budget_cents: rng.random_range(20..600) * 10_000,
        currency,
        cpc_cents: jitter(rng, p.cpc_cents),
        cpm_cents: jitter(rng, p.cpm_cents),
    }
}

/// Campaign names, some with commas and one with double quotes.
fn campaign_name(j: usize, theme: &str, display: &str) -> String {
    match j {
        6 => format!("{theme} \"{display}\" Test"),
        _ if j % 5 == 2 => format!("{theme}, {display} (prospecting)"),
        _ if j % 7 == 4 => format!("{theme}, {display}, retargeting"),
        _ => format!("{theme} - {display}"),
    }
}

/// `utm_campaign` values in four naming styles; unique per (theme, placement).
fn utm_value(j: usize, theme: &str, p: &Placement) -> String {
    let words: Vec<&str> = theme.split(' ').filter(|w| *w != "&").collect();
    match j % 4 {
        0 => format!("{theme} {}", p.abbr),
        1 => format!(
            "{}_{}",
            words.join("_").to_ascii_lowercase(),
            p.abbr.to_ascii_lowercase()
        ),
        2 => format!("{}-{}", theme.replace(' ', ""), p.display),
        _ => format!(
            "{} {} 2025",
            theme.to_ascii_lowercase(),
            p.abbr.to_ascii_lowercase()
        ),
    }
}

/// The channel as a careless operator typed it: the engine trims and lower-cases.
fn noisy_channel(j: usize, channel: &str) -> String {
    match j % 9 {
        1 => format!(" {}", capitalize_words(channel)),
        4 => channel.to_ascii_uppercase(),
        7 => format!("{channel} "),
        _ => channel.to_string(),
    }
}

fn capitalize_words(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// Appends one CSV record, quoting fields that need it.
pub(crate) fn push_csv_row(out: &mut Vec<u8>, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let needs_quotes = f.contains([',', '"', '\n', '\r'])
            || f.starts_with(char::is_whitespace)
            || f.ends_with(char::is_whitespace);
        if needs_quotes {
            out.push(b'"');
            out.extend_from_slice(f.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(f.as_bytes());
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashMap;

    #[test]
    fn exactly_one_ambiguous_utm_and_full_coverage() {
        let campaigns = Campaigns::generate(&mut Pcg64Mcg::seed_from_u64(7));
        let mut by_utm: HashMap<String, usize> = HashMap::new();
        for c in &campaigns.list {
            *by_utm.entry(c.utm.trim().to_lowercase()).or_default() += 1;
        }
        let shared: Vec<_> = by_utm.values().filter(|n| **n > 1).collect();
        assert_eq!(shared, [&2]);
        for day in 0..SPAN_DAYS {
            assert!(!campaigns.ads_by_day[day].is_empty());
            assert!(!campaigns.email_by_day[day].is_empty());
        }
    }

    #[test]
    fn csv_quotes_fields() {
        let mut out = Vec::new();
        push_csv_row(
            &mut out,
            &["a,b".into(), "say \"hi\"".into(), " x".into(), "y".into()],
        );
        assert_eq!(out, b"\"a,b\",\"say \"\"hi\"\"\",\" x\",y\n");
    }
}
