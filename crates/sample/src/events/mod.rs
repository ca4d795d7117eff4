//! The event stream: one NDJSON line per call, in landing order.
//!
//! Every line is one of: an original event (possibly carrying exactly one of the
//! faults the shipped expectations reject), a late original event, a byte-for-byte
//! re-send of an earlier clean line, or a malformed line. Rare kinds are placed by
//! [`Quota`] schedules so their counts match the target rates closely even on small
//! samples. Funnels (impression → click → cart → purchase, email open → click) are
//! built by drawing later steps from per-day samples of earlier contacts, so memory
//! stays bounded whatever the number of events.

use rand::Rng;
use rand_pcg::Pcg64Mcg;

use crate::ad_spend::AdCounts;
use crate::campaigns::Campaigns;
use crate::json::push_u64;
use crate::pools::{Contact, DaySamples, Quota, Reservoir, Ring};
use crate::report::GenerateReport;
use crate::time::{START_MS, day_index};

mod build;
mod draft;
mod vocab;
mod write;

use draft::{
    Currency, Draft, IdField, Kind, Optional, Page, Revenue, TimeField, TypeNoise, UserField, mix,
};

/// Field names of an event object.
pub(crate) mod field {
    pub(crate) const EVENT_ID: &str = "event_id";
    pub(crate) const EVENT_TYPE: &str = "event_type";
    pub(crate) const EVENT_TIME: &str = "event_time";
    pub(crate) const USER_ID: &str = "user_id";
    pub(crate) const ANONYMOUS_ID: &str = "anonymous_id";
    pub(crate) const SESSION_ID: &str = "session_id";
    pub(crate) const CHANNEL: &str = "channel";
    pub(crate) const PLATFORM: &str = "platform";
    pub(crate) const CAMPAIGN_ID: &str = "campaign_id";
    pub(crate) const PAGE_URL: &str = "page_url";
    pub(crate) const REVENUE: &str = "revenue";
    pub(crate) const CURRENCY: &str = "currency";
    pub(crate) const PROPERTIES: &str = "properties";
    /// Schema drift: appears in the last third of the stream.
    pub(crate) const DEVICE: &str = "device";
    /// Schema drift: appears in the last third of the stream.
    pub(crate) const CONSENT: &str = "consent";
    /// Schema drift: appears in the last third of the stream.
    pub(crate) const APP_VERSION: &str = "app_version";
    /// Schema drift inside `properties`.
    pub(crate) const EXPERIMENT: &str = "experiment";
}

/// Share of lines that re-send an earlier line.
pub(crate) const DUPLICATE_RATE: f64 = 0.03;
/// Share of lines that are not a JSON object.
pub(crate) const MALFORMED_RATE: f64 = 0.0005;
/// Share of lines without a usable `event_id`.
pub(crate) const MISSING_ID_RATE: f64 = 0.001;
/// Share of lines with an unknown `event_type`.
pub(crate) const UNKNOWN_TYPE_RATE: f64 = 0.002;
/// Share of lines with an unparseable `event_time`.
pub(crate) const BAD_TIME_RATE: f64 = 0.0005;
/// Share of lines that arrive days late.
pub(crate) const LATE_RATE: f64 = 0.01;
/// Share of campaign touches that carry only a `utm_campaign`, no `campaign_id`.
pub(crate) const TOUCH_WITHOUT_ID_RATE: f64 = 0.4;

/// Re-sends mostly come from the last lines written...
const RECENT_LINES: usize = 4096;
/// ...and sometimes from a sample of the whole history.
const OLD_LINES: usize = 256;
/// Share of re-sends drawn from the old-line sample.
const FAR_DUPLICATE_RATE: f64 = 0.06;
/// Contacts kept per day for funnels.
const CONTACTS_PER_DAY: usize = 512;
/// Days of touches kept: purchases follow touches by 0 to 10 days.
const TOUCH_DAYS: usize = 11;
/// One identity per this many events.
const EVENTS_PER_IDENTITY: u64 = 40;

/// The nine known event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Impression,
    Click,
    PageView,
    EmailOpen,
    EmailClick,
    AddToCart,
    Signup,
    Purchase,
    Unsubscribe,
}

impl EventType {
    /// All known types, in report order.
    pub(crate) const ALL: [EventType; 9] = [
        EventType::Impression,
        EventType::Click,
        EventType::PageView,
        EventType::EmailOpen,
        EventType::EmailClick,
        EventType::AddToCart,
        EventType::Signup,
        EventType::Purchase,
        EventType::Unsubscribe,
    ];

    /// The canonical spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventType::Impression => "impression",
            EventType::Click => "click",
            EventType::PageView => "page_view",
            EventType::EmailOpen => "email_open",
            EventType::EmailClick => "email_click",
            EventType::AddToCart => "add_to_cart",
            EventType::Signup => "signup",
            EventType::Purchase => "purchase",
            EventType::Unsubscribe => "unsubscribe",
        }
    }

    /// Share per 10 000 known-type events (purchases are ~2% of all lines).
    fn weight(self) -> u32 {
        match self {
            EventType::Impression => 4000,
            EventType::Click => 900,
            EventType::PageView => 3100,
            EventType::EmailOpen => 600,
            EventType::EmailClick => 250,
            EventType::AddToCart => 700,
            EventType::Signup => 200,
            EventType::Purchase => 207,
            EventType::Unsubscribe => 43,
        }
    }
}

/// A fault that makes an event fail the shipped expectations.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    MissingId,
    UnknownType,
    BadTime,
}

/// What a line will be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Malformed,
    Original { fault: Fault, late: bool },
    Duplicate,
}

/// Rare line kinds, in priority order when several are due at once.
const QUOTA_SLOTS: [(Slot, f64); 6] = [
    (Slot::Malformed, MALFORMED_RATE),
    (
        Slot::Original {
            fault: Fault::MissingId,
            late: false,
        },
        MISSING_ID_RATE,
    ),
    (
        Slot::Original {
            fault: Fault::UnknownType,
            late: false,
        },
        UNKNOWN_TYPE_RATE,
    ),
    (
        Slot::Original {
            fault: Fault::BadTime,
            late: false,
        },
        BAD_TIME_RATE,
    ),
    (
        Slot::Original {
            fault: Fault::None,
            late: true,
        },
        LATE_RATE,
    ),
    (Slot::Duplicate, DUPLICATE_RATE),
];

/// Generates the event lines.
pub(crate) struct EventStream<'a> {
    rng: Pcg64Mcg,
    campaigns: &'a Campaigns,
    users: u64,
    id_key: u64,
    user_key: u64,
    next_event: u64,
    quotas: Vec<Quota>,
    touches: DaySamples,
    impressions: DaySamples,
    opens: DaySamples,
    recent: Ring,
    old: Reservoir,
    seen_users: Vec<u64>,
    type_counts: [u64; 9],
    drift_start: u64,
    /// Landing time of the first line of the current file.
    file_start: i64,
    scratch: Vec<u8>,
    ad_counts: AdCounts,
    report: GenerateReport,
}

impl<'a> EventStream<'a> {
    /// A stream of `lines` lines; drift fields appear from line `drift_start` on.
    pub(crate) fn new(campaigns: &'a Campaigns, lines: u64, drift_start: u64, seed: u64) -> Self {
        let mut rng = <Pcg64Mcg as rand::SeedableRng>::seed_from_u64(seed);
        let users = (lines / EVENTS_PER_IDENTITY).max(20);
        let quotas = QUOTA_SLOTS
            .iter()
            .map(|(_, rate)| Quota::new(*rate, &mut rng))
            .collect();
        let report = GenerateReport {
            drift_start_line: drift_start,
            ..GenerateReport::default()
        };
        Self {
            id_key: mix(seed ^ 0x6576_656e_7473),
            user_key: mix(seed ^ 0x0075_7365_7273),
            rng,
            campaigns,
            users,
            next_event: 0,
            quotas,
            touches: DaySamples::new(TOUCH_DAYS, CONTACTS_PER_DAY),
            impressions: DaySamples::new(2, CONTACTS_PER_DAY),
            opens: DaySamples::new(2, CONTACTS_PER_DAY),
            recent: Ring::new(RECENT_LINES),
            old: Reservoir::new(OLD_LINES),
            seen_users: vec![0; users.div_ceil(64) as usize],
            type_counts: [0; 9],
            drift_start,
            file_start: START_MS,
            scratch: Vec::with_capacity(1024),
            ad_counts: AdCounts::new(campaigns.list.len()),
            report,
        }
    }

    /// Starts a new file whose first line lands at `ms`: late events are dated
    /// before that.
    pub(crate) fn start_file(&mut self, ms: i64) {
        self.file_start = ms;
    }

    /// Writes line `index` (landing at `now`, epoch ms) into `out`, without the newline.
    pub(crate) fn line(&mut self, index: u64, now: i64, out: &mut Vec<u8>) {
        self.report.lines += 1;
        match self.slot(index) {
            Slot::Malformed => self.malformed(now, out),
            Slot::Duplicate => {
                if !self.resend(out) {
                    self.original(index, now, Fault::None, false, out);
                }
            }
            Slot::Original { fault, late } => self.original(index, now, fault, late, out),
        }
    }

    fn original(&mut self, index: u64, now: i64, fault: Fault, late: bool, out: &mut Vec<u8>) {
        let mut d = self.draft(now, fault, late);
        if index >= self.drift_start {
            d.drift = self.drift();
        }
        self.write(&d, out);
        self.record(&d, out);
    }

    /// The counts so far and the per-campaign ad counters.
    pub(crate) fn finish(mut self) -> (GenerateReport, AdCounts) {
        for (t, n) in EventType::ALL.iter().zip(self.type_counts) {
            self.report.event_types.insert(t.name().to_string(), n);
        }
        self.report.identities = self
            .seen_users
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        (self.report, self.ad_counts)
    }

    fn slot(&mut self, index: u64) -> Slot {
        for (k, (slot, _)) in QUOTA_SLOTS.iter().enumerate() {
            if !self.quotas[k].due(index) || (*slot == Slot::Duplicate && self.recent.is_empty()) {
                continue;
            }
            self.quotas[k].fired(&mut self.rng);
            return *slot;
        }
        Slot::Original {
            fault: Fault::None,
            late: false,
        }
    }

    // ----- other line kinds -----

    /// Re-sends an earlier clean line; false when there is none yet.
    fn resend(&mut self, out: &mut Vec<u8>) -> bool {
        let far = self.rng.random_bool(FAR_DUPLICATE_RATE);
        let line = if far {
            self.old.pick(&mut self.rng)
        } else {
            None
        };
        let (line, far) = match line {
            Some(l) => (Some(l), true),
            None => (self.recent.pick(&mut self.rng), false),
        };
        let Some(line) = line else { return false };
        out.extend_from_slice(line);
        self.report.duplicates += 1;
        self.report.far_duplicates += u64::from(far);
        true
    }

    fn malformed(&mut self, now: i64, out: &mut Vec<u8>) {
        let n = self.report.malformed_lines;
        self.report.malformed_lines += 1;
        let m = &mut self.report.malformed;
        match n % 6 {
            0 => {
                m.truncated += 1;
                let d = self.draft(now, Fault::None, false);
                let mut full = std::mem::take(&mut self.scratch);
                full.clear();
                self.write(&d, &mut full);
                let cut = self.rng.random_range(1..full.len() - 1);
                out.extend_from_slice(&full[..cut]);
                self.scratch = full;
            }
            1 => {
                m.arrays += 1;
                out.extend_from_slice(b"[{\"event_id\":\"ev_batch\",\"event_type\":\"click\"},");
                push_u64(out, now as u64);
                out.push(b']');
            }
            2 => {
                m.scalars += 1;
                let scalars: [&[u8]; 5] = [b"null", b"42", b"\"retry\"", b"true", b"1.5e3"];
                out.extend_from_slice(scalars[(n / 6) as usize % scalars.len()]);
            }
            3 => m.empty += 1,
            4 => {
                m.non_utf8 += 1;
                out.extend_from_slice(b"{\"event_id\":\"ev_latin1\",\"event_type\":\"page_view\",");
                out.extend_from_slice(
                    b"\"page_url\":\"https://shop.example.com/caf\xe9-cr\xe8me\"}",
                );
            }
            _ => {
                m.garbage += 1;
                let garbage: [&[u8]; 3] = [
                    b"<html><body>502 Bad Gateway</body></html>",
                    b"{\"event_id\":\"ev_broken\",\"event_type\":\"click\",}",
                    b"event_id=ev_form&event_type=click",
                ];
                out.extend_from_slice(garbage[(n / 6) as usize % garbage.len()]);
            }
        }
    }

    // ----- counting -----

    fn record(&mut self, d: &Draft, line: &[u8]) {
        let r = &mut self.report;
        r.original_events += 1;
        r.clean_events += u64::from(d.clean);
        match d.id {
            IdField::Absent | IdField::Null | IdField::Empty | IdField::Blank => {
                r.missing_event_id += 1
            }
            IdField::Number(_) => r.numeric_event_ids += 1,
            IdField::Hex(_) | IdField::Uuid(_) => {}
        }
        match d.kind {
            Kind::Known(t, noise) => {
                self.type_counts[t as usize] += 1;
                r.noisy_event_types += u64::from(!matches!(noise, TypeNoise::None));
            }
            Kind::Unknown(_) => r.unknown_event_types += 1,
        }
        let f = &mut r.time_formats;
        match d.time {
            TimeField::Utc { .. } => f.rfc3339_utc += 1,
            TimeField::Offset { .. } => f.rfc3339_offset += 1,
            TimeField::Space { .. } => f.space_utc += 1,
            TimeField::EpochNumber => f.epoch_millis_number += 1,
            TimeField::EpochString => f.epoch_millis_string += 1,
            TimeField::Bad(_) => r.unparseable_times += 1,
        }
        r.anonymous_events +=
            u64::from(matches!(d.user_field, UserField::Absent | UserField::Null));
        r.numeric_user_ids += u64::from(matches!(d.user_field, UserField::Num));
        match d.user {
            Some(u) => self.seen_users[(u / 64) as usize] |= 1 << (u % 64),
            None => r.events_without_identity += 1,
        }
        r.late_events += u64::from(d.late);
        r.drift_lines += u64::from(d.drift.any());
        if let Optional::Value(Page::Utm(u)) = d.url {
            r.repeated_utm_parameters += u64::from(u.repeat);
        }
        if let Some(t) = d.touch {
            r.campaign_touches += 1;
            r.touches_without_campaign_id += u64::from(t.without_id);
            r.unknown_utm_touches += u64::from(t.unknown_utm);
            r.ambiguous_utm_touches += u64::from(t.ambiguous_utm);
        }
        if d.event_type() == Some(EventType::Purchase) {
            Self::record_purchase(r, d);
        }
        self.remember(d, line);
    }

    fn record_purchase(r: &mut GenerateReport, d: &Draft) {
        r.purchases += 1;
        r.purchases_with_campaign += u64::from(d.purchase_with_campaign);
        r.many_decimal_revenues += u64::from(d.many_decimals);
        match d.revenue {
            Some(Revenue::Text(_)) => r.string_revenues += 1,
            Some(Revenue::Cents(c)) if c < 0 => r.negative_revenues += 1,
            Some(Revenue::Float(v)) if v < 0.0 => r.negative_revenues += 1,
            Some(Revenue::NonNumeric(_)) => r.non_numeric_revenues += 1,
            _ => {}
        }
        match d.currency {
            None => r.missing_currencies += 1,
            Some(Currency::Unknown(_)) => r.unknown_currencies += 1,
            Some(Currency::Known(_, spelling)) => r.noisy_currencies += u64::from(spelling > 0),
        }
    }

    /// Feeds funnels, ad counters and the re-send pools.
    fn remember(&mut self, d: &Draft, line: &[u8]) {
        let day = day_index(d.ms);
        if let (Some(t), Some(c)) = (d.event_type(), d.campaign) {
            match t {
                EventType::Impression => self.ad_counts.impression(c, day),
                EventType::Click => self.ad_counts.click(c, day),
                _ => {}
            }
        }
        if !d.clean {
            return;
        }
        self.recent.push(line);
        self.old.offer(line, &mut self.rng);
        let (Some(t), Some(campaign), Some(user), false) =
            (d.event_type(), d.campaign, d.user, d.late)
        else {
            return;
        };
        let contact = Contact {
            user,
            campaign,
            time: d.ms,
        };
        match t {
            EventType::Impression => self.impressions.add(day, contact, &mut self.rng),
            EventType::EmailOpen => self.opens.add(day, contact, &mut self.rng),
            _ if d.touch.is_some() => self.touches.add(day, contact, &mut self.rng),
            _ => {}
        }
    }
}
