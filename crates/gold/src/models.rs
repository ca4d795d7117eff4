//! The built-in marketing models as DataFusion SQL over their inputs, registered under the
//! names of the model's inputs (`events`, `ad_spend`, `campaigns`).
//!
//! All three share one definition of a touch and a conversion (SPEC 4b):
//! - a conversion is an event of the conversion type (`purchase`), with or without an
//!   identity; its revenue is `coalesce(revenue_usd, 0)`;
//! - a touch is an event of a touch type with a campaign and an identity; it credits the
//!   conversion of the same identity when `conversion − window ≤ touch ≤ conversion`
//!   (microseconds, both ends inclusive); touches are ordered by `(event_time, event_id)`;
//! - a touch's channel is its campaign's channel, `unknown` when the campaign is not in
//!   `campaigns`; a conversion without touches goes to the direct channel, campaign NULL.
//!
//! Times are compared as integer microseconds so that the window edges are exact.

use std::collections::BTreeSet;
use std::fmt::Write as _;

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

/// Conversions, restricted to `dates` (days since the epoch) when given.
fn conversions(s: &Settings, dates: Option<&BTreeSet<i32>>, with_identity: bool) -> String {
    let mut sql = format!(
        "SELECT event_id AS conv_id, identity AS conv_identity, event_time AS conv_time, \
         CAST(event_time AS BIGINT) AS conv_us, CAST(event_time AS DATE) AS conv_date, \
         coalesce(CAST(revenue_usd AS DOUBLE), CAST(0 AS DOUBLE)) AS revenue \
         FROM events WHERE event_type = {}",
        literal(&s.conversion_type)
    );
    if with_identity {
        sql.push_str(" AND identity IS NOT NULL");
    }
    if let Some(dates) = dates {
        push_time_range(&mut sql, dates, 0);
        let list: Vec<String> = dates.iter().map(|d| date_literal(*d)).collect();
        let _ = write!(
            sql,
            " AND CAST(event_time AS DATE) IN ({})",
            list.join(", ")
        );
    }
    sql
}

/// `AND event_time` within the days of `dates`, widened `before_us` earlier: lets the scan
/// skip files by their statistics.
fn push_time_range(sql: &mut String, dates: &BTreeSet<i32>, before_us: i64) {
    let (Some(first), Some(last)) = (dates.first(), dates.last()) else {
        return;
    };
    let from = i64::from(*first) * DAY_US - before_us;
    let to = (i64::from(*last) + 1) * DAY_US;
    let _ = write!(
        sql,
        " AND event_time >= {} AND event_time < {}",
        timestamp_literal(from),
        timestamp_literal(to)
    );
}

fn timestamp_literal(us: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(us).unwrap_or_default();
    format!(
        "arrow_cast('{}', 'Timestamp(Microsecond, Some(\"UTC\"))')",
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ")
    )
}

/// Touches (with their channel when `channel`), restricted to those that can credit a
/// conversion on `dates` when given.
fn touches(s: &Settings, dates: Option<&BTreeSet<i32>>, channel: bool) -> String {
    let types: Vec<String> = s.touch_types.iter().map(|t| literal(t)).collect();
    let mut sql = String::from(
        "SELECT e.event_id AS touch_id, e.identity AS touch_identity, \
         CAST(e.event_time AS BIGINT) AS touch_us, e.campaign_id AS campaign_id",
    );
    if channel {
        sql.push_str(", coalesce(k.channel, 'unknown') AS channel FROM events e LEFT JOIN (SELECT campaign_id AS k_id, max(channel) AS channel FROM campaigns GROUP BY campaign_id) k ON e.campaign_id = k.k_id");
    } else {
        sql.push_str(" FROM events e");
    }
    let _ = write!(
        sql,
        " WHERE e.event_type IN ({}) AND e.campaign_id IS NOT NULL AND e.identity IS NOT NULL",
        types.join(", ")
    );
    if let Some(dates) = dates {
        let mut range = String::new();
        push_time_range(&mut range, dates, s.window_us);
        sql.push_str(&range.replace("event_time", "e.event_time"));
    }
    sql
}

/// The join condition of a touch crediting a conversion.
fn in_window(s: &Settings) -> String {
    format!(
        "t.touch_identity = c.conv_identity AND t.touch_us <= c.conv_us AND t.touch_us >= c.conv_us - {}",
        s.window_us
    )
}

/// `attribution`, before unpivoting: one row per (date, channel, campaign_id) with the
/// credited conversions `c_<model>` and revenue `r_<model>` of every model.
pub fn attribution_wide(s: &Settings, dates: Option<&BTreeSet<i32>>) -> String {
    let half_life_us = s.half_life_days * DAY_US as f64;
    let (f, l) = (s.first_share, s.last_share);
    let middle = 1.0 - f - l;
    format!(
        "WITH c AS ({conv}), t AS ({touch}), \
         pairs AS ( \
           SELECT c.conv_id, c.conv_date, c.revenue, t.touch_id, t.campaign_id, t.channel, \
             CAST(c.conv_us - t.touch_us AS DOUBLE) AS age_us, \
             count(t.touch_id) OVER (PARTITION BY c.conv_id) AS n, \
             row_number() OVER (PARTITION BY c.conv_id ORDER BY t.touch_us, t.touch_id) AS pos, \
             sum(power({two}, CAST(t.touch_us - c.conv_us AS DOUBLE) / {hl})) OVER (PARTITION BY c.conv_id) AS decay_total \
           FROM c LEFT JOIN t ON {window}), \
         weighted AS ( \
           SELECT conv_date, revenue, \
             CASE WHEN n = 0 THEN {direct} ELSE channel END AS channel, \
             CASE WHEN n = 0 THEN CAST(NULL AS VARCHAR) ELSE campaign_id END AS campaign_id, \
             CASE WHEN n = 0 OR pos = 1 THEN {one} ELSE {zero} END AS w_first_touch, \
             CASE WHEN n = 0 OR pos = n THEN {one} ELSE {zero} END AS w_last_touch, \
             CASE WHEN n = 0 THEN {one} ELSE {one} / CAST(n AS DOUBLE) END AS w_linear, \
             CASE WHEN n = 0 THEN {one} ELSE power({two}, -age_us / {hl}) / decay_total END AS w_time_decay, \
             CASE WHEN n <= 1 THEN {one} WHEN n = 2 THEN {half} WHEN pos = 1 THEN {f} WHEN pos = n THEN {l} \
                  ELSE {middle} / CAST(n - 2 AS DOUBLE) END AS w_position_based \
           FROM pairs) \
         SELECT conv_date AS date, channel, campaign_id, \
           {sums} \
         FROM weighted GROUP BY conv_date, channel, campaign_id",
        conv = conversions(s, dates, false),
        touch = touches(s, dates, true),
        window = in_window(s),
        two = double(2.0),
        hl = double(half_life_us),
        direct = literal(&s.direct),
        one = double(1.0),
        zero = double(0.0),
        half = double(0.5),
        f = double(f),
        l = double(l),
        middle = double(middle),
        sums = AttributionModel::ALL
            .iter()
            .map(|m| {
                let m = model_name(*m);
                format!("sum(w_{m}) AS c_{m}, sum(w_{m} * revenue) AS r_{m}")
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
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

/// `campaign_daily`: spend and last-touch conversions per (date, campaign_id).
pub fn campaign_daily(s: &Settings, dates: Option<&BTreeSet<i32>>) -> String {
    let spend_dates = dates.map_or(String::new(), |d| {
        let list: Vec<String> = d.iter().map(|d| date_literal(*d)).collect();
        format!(" AND date IN ({})", list.join(", "))
    });
    format!(
        "WITH c AS ({conv}), t AS ({touch}), \
         last AS ( \
           SELECT c.conv_date, c.revenue, t.campaign_id, \
             row_number() OVER (PARTITION BY c.conv_id ORDER BY t.touch_us DESC, t.touch_id DESC) AS rk \
           FROM c JOIN t ON {window}), \
         conv AS ( \
           SELECT conv_date AS date, campaign_id, count(*) AS conversions, sum(revenue) AS revenue_usd \
           FROM last WHERE rk = 1 GROUP BY conv_date, campaign_id), \
         spend AS ( \
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
        conv = conversions(s, dates, false),
        touch = touches(s, dates, false),
        window = in_window(s),
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

/// `channel_cac`: new customers per month of their first purchase and its last-touch
/// channel, spend per month and channel, and their ratio.
pub fn channel_cac(s: &Settings) -> String {
    let month = |x: &str| format!("CAST(date_trunc('month', CAST({x} AS TIMESTAMP)) AS DATE)");
    format!(
        "WITH p AS ({conv}), \
         c AS (SELECT * FROM ( \
           SELECT p.*, row_number() OVER (PARTITION BY conv_identity ORDER BY conv_us, conv_id) AS first_rk FROM p \
         ) WHERE first_rk = 1), \
         t AS ({touch}), \
         last AS ( \
           SELECT c.conv_date, t.touch_id, t.channel, \
             row_number() OVER (PARTITION BY c.conv_id ORDER BY t.touch_us DESC, t.touch_id DESC) AS rk \
           FROM c LEFT JOIN t ON {window}), \
         customers AS ( \
           SELECT {conv_month} AS month, CASE WHEN touch_id IS NULL THEN {direct} ELSE channel END AS channel, \
             count(*) AS new_customers \
           FROM last WHERE rk = 1 GROUP BY 1, 2), \
         spend AS ( \
           SELECT {spend_month} AS month, coalesce(k.channel, 'unknown') AS channel, \
             coalesce(sum(CAST(a.spend_usd AS DOUBLE)), {zero}) AS spend_usd \
           FROM ad_spend a LEFT JOIN (SELECT campaign_id AS k_id, max(channel) AS channel FROM campaigns GROUP BY campaign_id) k \
             ON a.campaign_id = k.k_id \
           WHERE a.date IS NOT NULL AND a.campaign_id IS NOT NULL GROUP BY 1, 2), \
         joined AS ( \
           SELECT coalesce(u.month, s.month) AS month, coalesce(u.channel, s.channel) AS channel, \
             coalesce(u.new_customers, 0) AS new_customers, coalesce(s.spend_usd, {zero}) AS spend_usd \
           FROM customers u FULL OUTER JOIN spend s ON u.month = s.month AND u.channel = s.channel) \
         SELECT CAST(month AS DATE) AS month, CAST(channel AS VARCHAR) AS channel, \
           CAST(new_customers AS BIGINT) AS new_customers, spend_usd, {cac} AS cac \
         FROM joined",
        conv = conversions(s, None, true),
        touch = touches(s, None, true),
        window = in_window(s),
        conv_month = month("conv_date"),
        spend_month = month("a.date"),
        direct = literal(&s.direct),
        zero = double(0.0),
        cac = ratio("spend_usd", "new_customers"),
    )
}
