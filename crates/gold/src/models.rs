//! The built-in marketing models' SQL. The crediting itself (which touches a conversion
//! credits, and with what weight) is done in [`crate::credit`] over the touchpoint store;
//! its totals are registered as small tables (`wide`, `conv`, `customers`) and these queries
//! join them with ad spend and compute the ratios.
//!
//! The semantics (SPEC 4b): a conversion is an event of the conversion type (`purchase`),
//! with or without an identity, worth `coalesce(revenue_usd, 0)`; a touch is an event of a
//! touch type with a campaign and an identity, crediting a conversion of the same identity
//! when `conversion − window ≤ touch ≤ conversion` (exact microseconds), touches ordered by
//! `(event_time, event_id)`; a touch's channel is its campaign's, `unknown` when the campaign
//! is not in `campaigns`; a conversion without touches goes to the direct channel.

use std::collections::BTreeSet;

use medallion_config::{Attribution, AttributionModel};

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// The attribution settings a model runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub touch_types: Vec<String>,
    pub conversion_type: String,
    pub window_us: i64,
    pub half_life_days: f64,
    pub models: Vec<AttributionModel>,
    pub first_share: f64,
    pub last_share: f64,
    pub direct: String,
}

impl Settings {
    pub fn from_config(a: &Attribution) -> Self {
        Self {
            touch_types: a.touch_event_types.clone(),
            conversion_type: a.conversion_event_type.clone(),
            window_us: (a.window_days.value * DAY_US as f64).round() as i64,
            half_life_days: a.half_life_days.value,
            models: a.models.clone(),
            first_share: a.position_first_share.value,
            last_share: a.position_last_share.value,
            direct: a.direct_channel.clone(),
        }
    }
}

/// A SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A DATE literal from days since the epoch.
pub fn date_literal(day: i32) -> String {
    let date = chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map(|t| t.date_naive().to_string())
        .unwrap_or_else(|| "1970-01-01".into());
    format!("DATE '{date}'")
}

/// A float literal DataFusion reads as DOUBLE.
fn double(x: f64) -> String {
    let s = format!("{x:?}");
    format!("CAST({s} AS DOUBLE)")
}

/// `attribution` from its wide form (registered as `wide`): one row per model with credit.
pub fn attribution_long(s: &Settings) -> String {
    s.models
        .iter()
        .map(|m| {
            let m = model_name(*m);
            format!(
                "SELECT date, CAST('{m}' AS VARCHAR) AS model, channel, campaign_id, \
                 c_{m} AS conversions, r_{m} AS revenue_usd FROM wide WHERE c_{m} > 0"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// A model's name as in the `model` column.
pub fn model_name(m: AttributionModel) -> &'static str {
    match m {
        AttributionModel::FirstTouch => "first_touch",
        AttributionModel::LastTouch => "last_touch",
        AttributionModel::Linear => "linear",
        AttributionModel::TimeDecay => "time_decay",
        AttributionModel::PositionBased => "position_based",
    }
}

/// `x / y`, NULL when `y` is zero (or NULL).
fn ratio(x: &str, y: &str) -> String {
    format!(
        "CASE WHEN {y} = 0 THEN CAST(NULL AS DOUBLE) ELSE CAST({x} AS DOUBLE) / CAST({y} AS DOUBLE) END"
    )
}

/// `campaign_daily`: ad spend per (date, campaign) for `dates` (every date when `None`),
/// fully outer-joined with the last-touch conversions registered as `conv(date,
/// campaign_id, conversions, revenue_usd)`, and the ratios.
pub fn campaign_daily(dates: Option<&BTreeSet<i32>>) -> String {
    let spend_dates = dates.map_or(String::new(), |d| {
        let list: Vec<String> = d.iter().map(|d| date_literal(*d)).collect();
        format!(" AND date IN ({})", list.join(", "))
    });
    format!(
        "WITH spend AS ( \
           SELECT date, campaign_id, \
             coalesce(sum(CAST(impressions AS BIGINT)), 0) AS impressions, \
             coalesce(sum(CAST(clicks AS BIGINT)), 0) AS clicks, \
             coalesce(sum(CAST(spend_usd AS DOUBLE)), {zero}) AS spend_usd \
           FROM ad_spend WHERE date IS NOT NULL AND campaign_id IS NOT NULL{spend_dates} \
           GROUP BY date, campaign_id), \
         joined AS ( \
           SELECT coalesce(s.date, v.date) AS date, coalesce(s.campaign_id, v.campaign_id) AS campaign_id, \
             coalesce(s.impressions, 0) AS impressions, coalesce(s.clicks, 0) AS clicks, \
             coalesce(s.spend_usd, {zero}) AS spend_usd, \
             coalesce(v.conversions, 0) AS conversions, coalesce(v.revenue_usd, {zero}) AS revenue_usd \
           FROM spend s FULL OUTER JOIN conv v ON s.date = v.date AND s.campaign_id = v.campaign_id) \
         SELECT CAST(date AS DATE) AS date, CAST(campaign_id AS VARCHAR) AS campaign_id, \
           CAST(impressions AS BIGINT) AS impressions, CAST(clicks AS BIGINT) AS clicks, \
           spend_usd, CAST(conversions AS BIGINT) AS conversions, revenue_usd, \
           {ctr} AS ctr, {cpc} AS cpc, {cpm} AS cpm, {cr} AS conversion_rate, {cpa} AS cpa, \
           {roas} AS roas, {roi} AS roi \
         FROM joined",
        zero = double(0.0),
        ctr = ratio("clicks", "impressions"),
        cpc = ratio("spend_usd", "clicks"),
        cpm = ratio("1000 * spend_usd", "impressions"),
        cr = ratio("conversions", "clicks"),
        cpa = ratio("spend_usd", "conversions"),
        roas = ratio("revenue_usd", "spend_usd"),
        roi = ratio("revenue_usd - spend_usd", "spend_usd"),
    )
}

/// The channel of each campaign: `campaign_id, channel`.
pub const CHANNELS: &str = "SELECT campaign_id, max(channel) AS channel FROM campaigns WHERE campaign_id IS NOT NULL GROUP BY campaign_id";

/// `channel_cac`: the new customers registered as `customers(month, channel,
/// new_customers)`, fully outer-joined with spend per month and channel, and their ratio.
pub fn channel_cac() -> String {
    format!(
        "WITH spend AS ( \
           SELECT CAST(date_trunc('month', CAST(a.date AS TIMESTAMP)) AS DATE) AS month, \
             coalesce(k.channel, 'unknown') AS channel, \
             coalesce(sum(CAST(a.spend_usd AS DOUBLE)), {zero}) AS spend_usd \
           FROM ad_spend a LEFT JOIN ({channels}) k ON a.campaign_id = k.campaign_id \
           WHERE a.date IS NOT NULL AND a.campaign_id IS NOT NULL GROUP BY 1, 2), \
         joined AS ( \
           SELECT coalesce(u.month, s.month) AS month, coalesce(u.channel, s.channel) AS channel, \
             coalesce(u.new_customers, 0) AS new_customers, coalesce(s.spend_usd, {zero}) AS spend_usd \
           FROM customers u FULL OUTER JOIN spend s ON u.month = s.month AND u.channel = s.channel) \
         SELECT CAST(month AS DATE) AS month, CAST(channel AS VARCHAR) AS channel, \
           CAST(new_customers AS BIGINT) AS new_customers, spend_usd, {cac} AS cac \
         FROM joined",
        channels = CHANNELS,
        zero = double(0.0),
        cac = ratio("spend_usd", "new_customers"),
    )
}
