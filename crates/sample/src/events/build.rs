//! Choosing who does what, on which campaign, and when: one builder per event type.

use rand::Rng;

use super::draft::*;
use super::vocab::*;
use super::{EventStream, EventType, Fault, TOUCH_WITHOUT_ID_RATE};
use crate::pools::Contact;
use crate::time::{MS_PER_DAY, SPAN_DAYS, START_MS, day_index};

/// Late events are this many milliseconds older than the start of their file's landing window.
const LATE_MIN_MS: i64 = 2 * MS_PER_DAY;
const LATE_MAX_MS: i64 = 20 * MS_PER_DAY;
/// Collector delay: events are up to a minute older than their landing time.
const JITTER_MS: i64 = 60_000;
/// Sessions are bucketed by this many milliseconds.
const SESSION_MS: i64 = 30 * 60_000;
/// Share of identities that are signed-in users.
const REGISTERED_PERCENT: u64 = 55;

impl EventStream<'_> {
    fn window_day(now: i64) -> usize {
        day_index(now).clamp(0, SPAN_DAYS as i64 - 1) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn ad_campaign(&mut self, now: i64) -> usize {
        let list = &self.campaigns.ads_by_day[Self::window_day(now)];
        usize::from(list[self.rng.random_range(0..list.len())])
    }

    fn email_campaign(&mut self, now: i64) -> usize {
        let list = &self.campaigns.email_by_day[Self::window_day(now)];
        usize::from(list[self.rng.random_range(0..list.len())])
    }

    /// Users arrive steadily over the window; most events come from recent arrivals.
    fn pick_user(&mut self, now: i64) -> u64 {
        let span = (SPAN_DAYS as i64 * MS_PER_DAY) as f64;
        let frac = ((now - START_MS) as f64 / span).clamp(0.0, 1.0);
        let floor = (self.users / 30).max(1);
        let arrived = ((frac * self.users as f64) as u64).clamp(floor, self.users);
        if self.rng.random_bool(0.75) {
            let window = (self.users / 20).clamp(1, arrived);
            arrived - 1 - self.rng.random_range(0..window)
        } else {
            self.rng.random_range(0..arrived)
        }
    }

    fn registered(&self, user: u64) -> bool {
        mix(user ^ self.user_key) % 100 < REGISTERED_PERCENT
    }

    /// A signed-in user (emails only go to those).
    fn pick_registered(&mut self, now: i64) -> u64 {
        let mut u = self.pick_user(now);
        for _ in 0..32 {
            if self.registered(u) {
                break;
            }
            u = (u + 1) % self.users;
        }
        u
    }

    fn pick_type(&mut self) -> EventType {
        let mut r = self.rng.random_range(0..10_000);
        for t in EventType::ALL {
            if r < t.weight() {
                return t;
            }
            r -= t.weight();
        }
        EventType::PageView
    }

    fn jittered(&mut self, now: i64) -> i64 {
        now - self.rng.random_range(0..JITTER_MS)
    }

    /// A contact from the samples of `day` or the day before.
    fn recent_contact(&mut self, which: ContactKind, day: i64) -> Option<Contact> {
        let day = if self.rng.random_bool(0.7) {
            day
        } else {
            day - 1
        };
        let samples = match which {
            ContactKind::Impression => &self.impressions,
            ContactKind::Open => &self.opens,
        };
        samples.pick(day, &mut self.rng)
    }

    // ----- building events -----

    pub(super) fn draft(&mut self, now: i64, fault: Fault, late: bool) -> Draft {
        let mut d = match fault {
            Fault::UnknownType => self.unknown_event(now),
            _ => {
                let t = self.pick_type();
                self.known_event(t, now)
            }
        };
        d.late = late;
        if late {
            d.ms = now.min(self.file_start) - self.rng.random_range(LATE_MIN_MS..=LATE_MAX_MS);
        } else if d.ms == 0 {
            d.ms = self.jittered(now);
        }
        d.id = match fault {
            Fault::MissingId => self.missing_id(),
            _ => self.new_id(),
        };
        d.time = match fault {
            Fault::BadTime => {
                let n = self.report.unparseable_times as usize;
                TimeField::Bad(BAD_TIMES[n % BAD_TIMES.len()])
            }
            _ => self.time_field(),
        };
        if let Kind::Known(t, _) = d.kind
            && self.rng.random_bool(0.05)
        {
            d.kind = Kind::Known(
                t,
                self.pick(&[TypeNoise::Upper, TypeNoise::Padded, TypeNoise::Tab]),
            );
        }
        self.identity(&mut d);
        if fault == Fault::None && !late && d.event_type() == Some(EventType::Purchase) {
            self.purchase_fault(&mut d);
        }
        d.clean = d.clean && fault == Fault::None;
        d
    }

    fn known_event(&mut self, t: EventType, now: i64) -> Draft {
        match t {
            EventType::Impression => self.impression(now),
            EventType::Click => self.click(now),
            EventType::PageView => self.page_view(now),
            EventType::EmailOpen => self.email_open(now),
            EventType::EmailClick => self.email_click(now),
            EventType::AddToCart => self.add_to_cart(now),
            EventType::Signup => self.signup(now),
            EventType::Purchase => self.purchase(now),
            EventType::Unsubscribe => self.unsubscribe(now),
        }
    }

    fn new_id(&mut self) -> IdField {
        let n = self.next_event;
        self.next_event += 1;
        match self.rng.random_range(0..100) {
            0..70 => IdField::Hex(n),
            70..98 => IdField::Uuid(n),
            _ => IdField::Number(n),
        }
    }

    fn missing_id(&mut self) -> IdField {
        self.next_event += 1;
        match self.report.missing_event_id % 4 {
            0 => IdField::Absent,
            1 => IdField::Null,
            2 => IdField::Empty,
            _ => IdField::Blank,
        }
    }

    /// The four spellings roughly evenly; epoch strings are rare.
    fn time_field(&mut self) -> TimeField {
        let millis = self.rng.random_bool(0.5);
        match self.rng.random_range(0..1000) {
            0..250 => TimeField::Utc { millis },
            250..500 => TimeField::Offset {
                minutes: self.pick(&OFFSETS),
                millis,
            },
            500..750 => TimeField::Space {
                millis: self.rng.random_bool(0.3),
            },
            750..975 => TimeField::EpochNumber,
            _ => TimeField::EpochString,
        }
    }

    fn identity(&mut self, d: &mut Draft) {
        let Some(user) = d.user else { return };
        let session =
            mix(user.wrapping_mul(0x9e37_79b9) ^ (d.ms / SESSION_MS) as u64 ^ self.user_key);
        d.session = match self.rng.random_range(0..1000) {
            0..20 => Optional::Null,
            20..25 => Optional::Absent,
            _ => Optional::Value(session),
        };
        if self.rng.random_bool(0.001) {
            d.user = None;
            d.user_field = self.pick(&[UserField::Absent, UserField::Null]);
            d.anon_field = self.pick(&[AnonField::Absent, AnonField::Null, AnonField::Blank]);
        } else if self.registered(user) {
            d.user_field = if self.rng.random_bool(0.1) {
                UserField::Num
            } else {
                UserField::Str
            };
            d.anon_field = if self.rng.random_bool(0.95) {
                AnonField::Id
            } else {
                AnonField::Absent
            };
        } else {
            d.user_field = self.pick(&[UserField::Absent, UserField::Null]);
            d.anon_field = AnonField::Id;
        }
    }

    fn campaign_channel(&mut self, c: usize) -> Optional<ChannelField> {
        Optional::Value(ChannelField::Campaign(c, self.rng.random_bool(0.05)))
    }

    fn campaign_id(&mut self, c: usize) -> Optional<CampaignIdField> {
        let id = self.campaigns.list[c].id;
        Optional::Value(match self.rng.random_range(0..100) {
            0..85 => CampaignIdField::Str(id),
            85..95 => CampaignIdField::Num(id),
            _ => CampaignIdField::Padded(id),
        })
    }

    fn utm(&mut self, c: usize, value: UtmValue, path: &'static str) -> Utm {
        let platform = self.campaigns.list[c].placement().platform;
        Utm {
            campaign: c,
            value,
            case: self.pick(&[0, 0, 1, 2]),
            plus: self.rng.random_bool(0.5),
            campaign_first: self.rng.random_bool(0.15),
            repeat: self.rng.random_bool(0.02),
            content: self.rng.random_range(1..=6),
            term: (platform == "google" || platform == "bing")
                .then(|| self.rng.random_range(0..SEARCH_TERMS.len())),
            click_id: self.rng.random_bool(0.3).then(|| self.rng.random()),
            path,
        }
    }

    /// Makes `d` a campaign touch: with `campaign_id`, or only a `utm_campaign` in the URL.
    fn touch(&mut self, d: &mut Draft, c: usize) {
        let path = self.pick(&LANDING_PATHS);
        let mut facts = TouchFacts::default();
        if self.rng.random_bool(TOUCH_WITHOUT_ID_RATE) {
            facts.without_id = true;
            d.campaign_id = match self.rng.random_range(0..10) {
                0..6 => Optional::Absent,
                6..9 => Optional::Null,
                _ => Optional::Value(CampaignIdField::Empty),
            };
            let value = if self.rng.random_bool(0.06) {
                facts.unknown_utm = true;
                UtmValue::Unknown(self.pick(&UNKNOWN_UTMS))
            } else {
                facts.ambiguous_utm = self.campaigns.is_ambiguous(c);
                UtmValue::Campaign(c)
            };
            d.url = Optional::Value(Page::Utm(self.utm(c, value, path)));
            d.channel = match self.rng.random_range(0..10) {
                0..5 => Optional::Absent,
                5..8 => self.campaign_channel(c),
                _ => Optional::Null,
            };
            if !facts.unknown_utm && !facts.ambiguous_utm {
                d.campaign = Some(c);
            }
        } else {
            d.campaign_id = self.campaign_id(c);
            d.url = Optional::Value(if self.rng.random_bool(0.8) {
                Page::Utm(self.utm(c, UtmValue::Campaign(c), path))
            } else {
                Page::Landing(path)
            });
            d.channel = self.campaign_channel(c);
            d.campaign = Some(c);
        }
        d.touch = Some(facts);
    }

    fn impression(&mut self, now: i64) -> Draft {
        let c = self.ad_campaign(now);
        let user = self.pick_user(now);
        let props = Props::Impression {
            slot: self.rng.random_range(0..AD_SLOTS.len()),
            creative: self.rng.random_range(1..=12),
        };
        let mut d = Draft::new(EventType::Impression, user, props);
        d.campaign_id = self.campaign_id(c);
        d.channel = self.campaign_channel(c);
        d.campaign = Some(c);
        d
    }

    fn click(&mut self, now: i64) -> Draft {
        let seen = if self.rng.random_bool(0.6) {
            self.recent_contact(ContactKind::Impression, day_index(now))
        } else {
            None
        };
        let (user, c) = match seen {
            Some(s) => (s.user, s.campaign),
            None => (self.pick_user(now), self.ad_campaign(now)),
        };
        let props = Props::Click {
            creative: self.rng.random_range(1..=12),
        };
        let mut d = Draft::new(EventType::Click, user, props);
        self.touch(&mut d, c);
        d
    }

    fn page_view(&mut self, now: i64) -> Draft {
        if self.rng.random_bool(0.35) {
            let landed = if self.rng.random_bool(0.5) {
                self.touches.pick(day_index(now), &mut self.rng)
            } else {
                None
            };
            let (user, c) = match landed {
                Some(t) => (t.user, t.campaign),
                None if self.rng.random_bool(0.2) => {
                    (self.pick_user(now), self.email_campaign(now))
                }
                None => (self.pick_user(now), self.ad_campaign(now)),
            };
            let props = Props::PageView {
                page_type: LANDING_PAGE_TYPE,
            };
            let mut d = Draft::new(EventType::PageView, user, props);
            self.touch(&mut d, c);
            return d;
        }
        let user = self.pick_user(now);
        let page_type = self.rng.random_range(0..ORGANIC_PAGE_TYPES);
        let mut d = Draft::new(EventType::PageView, user, Props::PageView { page_type });
        d.url = Optional::Value(Page::Organic(page_type, self.rng.random_range(1..500)));
        d.channel = match self.rng.random_range(0..10) {
            0..4 => Optional::Absent,
            4..5 => Optional::Null,
            _ => Optional::Value(ChannelField::Other(self.pick(&ORGANIC_CHANNELS))),
        };
        if self.rng.random_bool(0.15) {
            d.campaign_id = Optional::Null;
        }
        d
    }

    fn email_open(&mut self, now: i64) -> Draft {
        let user = self.pick_registered(now);
        let c = self.email_campaign(now);
        let mut d = Draft::new(
            EventType::EmailOpen,
            user,
            Props::Email {
                campaign: c,
                link: false,
            },
        );
        d.campaign_id = self.campaign_id(c);
        d.channel = self.campaign_channel(c);
        d.campaign = Some(c);
        d
    }

    fn email_click(&mut self, now: i64) -> Draft {
        let opened = if self.rng.random_bool(0.7) {
            self.recent_contact(ContactKind::Open, day_index(now))
        } else {
            None
        };
        let (user, c) = match opened {
            Some(o) => (o.user, o.campaign),
            None => (self.pick_registered(now), self.email_campaign(now)),
        };
        let mut d = Draft::new(
            EventType::EmailClick,
            user,
            Props::Email {
                campaign: c,
                link: true,
            },
        );
        self.touch(&mut d, c);
        d
    }

    /// A user who touched a campaign recently, or anyone; with the time after the touch.
    fn follow_up(&mut self, now: i64, share: f64, day: i64) -> (u64, Option<Contact>, i64) {
        let contact = if self.rng.random_bool(share) {
            self.touches.pick(day, &mut self.rng)
        } else {
            None
        };
        let mut ms = self.jittered(now);
        if let Some(c) = contact
            && day == day_index(now)
        {
            ms = ms.max(c.time + self.rng.random_range(5_000..1_800_000));
        }
        let user = match contact {
            Some(c) => c.user,
            None => self.pick_user(now),
        };
        (user, contact, ms)
    }

    fn add_to_cart(&mut self, now: i64) -> Draft {
        let day = day_index(now) - self.rng.random_range(0..=1);
        let (user, _, ms) = self.follow_up(now, 0.6, day);
        let sku = self.rng.random_range(100..2000);
        let props = Props::Cart {
            sku,
            quantity: self.rng.random_range(1..=3),
            price: self.pick(&PRICES),
        };
        let mut d = Draft::new(EventType::AddToCart, user, props);
        d.url = Optional::Value(Page::Product(sku));
        d.ms = ms;
        d
    }

    fn signup(&mut self, now: i64) -> Draft {
        let (user, _, ms) = self.follow_up(now, 0.4, day_index(now));
        let props = Props::Signup {
            method: self.rng.random_range(0..SIGNUP_METHODS.len()),
        };
        let mut d = Draft::new(EventType::Signup, user, props);
        d.url = Optional::Value(Page::Signup);
        d.ms = ms;
        d
    }

    fn purchase(&mut self, now: i64) -> Draft {
        let delay = self.delay_days();
        let (user, contact, ms) = self.follow_up(now, 0.65, day_index(now) - delay);
        let order: u64 = self.rng.random();
        let props = Props::Purchase {
            order,
            items: self.rng.random_range(1..=4),
        };
        let mut d = Draft::new(EventType::Purchase, user, props);
        d.ms = ms;
        d.url = match self.rng.random_range(0..20) {
            0..17 => Optional::Value(Page::Checkout(order)),
            17..19 => Optional::Absent,
            _ => Optional::Null,
        };
        if self.rng.random_bool(0.08) {
            let c = match contact {
                Some(t) => t.campaign,
                None => self.ad_campaign(now),
            };
            d.purchase_with_campaign = true;
            if self.rng.random_bool(0.5) {
                d.campaign_id = self.campaign_id(c);
            } else {
                let utm = self.utm(c, UtmValue::Campaign(c), "/checkout/complete");
                d.url = Optional::Value(Page::Utm(utm));
            }
        }
        self.revenue(&mut d, props);
        d
    }

    fn delay_days(&mut self) -> i64 {
        let total: u32 = DELAY_WEIGHTS.iter().sum();
        let mut r = self.rng.random_range(0..total);
        for (days, w) in DELAY_WEIGHTS.iter().enumerate() {
            if r < *w {
                return days as i64;
            }
            r -= w;
        }
        0
    }

    fn revenue(&mut self, d: &mut Draft, props: Props) {
        let items = match props {
            Props::Purchase { items, .. } => items,
            _ => 1,
        };
        let cents: i64 = (0..items).map(|_| self.pick(&PRICES)).sum();
        d.revenue = Some(match self.rng.random_range(0..100) {
            0..80 => Revenue::Cents(cents),
            80..92 => Revenue::Text(cents),
            _ => {
                let v = cents as f64 / 100.0 / self.pick(&CONVERSIONS);
                d.many_decimals = v.to_string().split('.').nth(1).is_some_and(|f| f.len() > 2);
                Revenue::Float(v)
            }
        });
        let currency = match self.rng.random_range(0..100) {
            0..55 => 0,
            55..75 => 1,
            75..90 => 2,
            _ => 3,
        };
        let spelling = if self.rng.random_bool(0.08) {
            self.rng.random_range(1..=3)
        } else {
            0
        };
        d.currency = Some(Currency::Known(currency, spelling));
    }

    /// Rare refund noise and bad currencies on otherwise clean purchases.
    fn purchase_fault(&mut self, d: &mut Draft) {
        match self.rng.random_range(0..1000) {
            0..10 => {
                if let Some(Revenue::Cents(c) | Revenue::Text(c)) = d.revenue {
                    d.revenue = Some(Revenue::Cents(-c));
                } else if let Some(Revenue::Float(v)) = d.revenue {
                    d.revenue = Some(Revenue::Float(-v));
                }
            }
            10..15 => d.revenue = Some(Revenue::NonNumeric(self.pick(&NON_NUMERIC_REVENUES))),
            15..22 => d.currency = Some(Currency::Unknown(self.pick(&UNKNOWN_CURRENCIES))),
            22..25 => d.currency = None,
            _ => return,
        }
        d.many_decimals = false;
        d.clean = false;
    }

    fn unsubscribe(&mut self, now: i64) -> Draft {
        let user = self.pick_registered(now);
        let c = self.email_campaign(now);
        let props = Props::Unsubscribe {
            reason: self.rng.random_range(0..UNSUBSCRIBE_REASONS.len()),
        };
        let mut d = Draft::new(EventType::Unsubscribe, user, props);
        d.campaign_id = self.campaign_id(c);
        d.channel = self.campaign_channel(c);
        d.url = Optional::Value(Page::Unsubscribe);
        d.campaign = Some(c);
        d
    }

    fn unknown_event(&mut self, now: i64) -> Draft {
        let user = self.pick_user(now);
        let props = Props::Unknown {
            duration: self.rng.random_range(100..120_000),
        };
        let mut d = Draft::new(EventType::PageView, user, props);
        let n = self.report.unknown_event_types as usize;
        d.kind = Kind::Unknown(UNKNOWN_TYPES[n % UNKNOWN_TYPES.len()]);
        d.url = Optional::Value(Page::Organic(0, self.rng.random_range(1..500)));
        d
    }

    pub(super) fn drift(&mut self) -> Drift {
        Drift {
            device: self.rng.random_bool(0.6).then(|| {
                (
                    self.rng.random_range(0..DEVICE_OS.len()),
                    self.rng.random_range(0..BROWSERS.len()),
                )
            }),
            consent: self.rng.random_bool(0.9).then(|| self.rng.random_bool(0.8)),
            app_version: self
                .rng
                .random_bool(0.4)
                .then(|| self.rng.random_range(0..APP_VERSIONS.len())),
            experiment: self
                .rng
                .random_bool(0.3)
                .then(|| self.rng.random_range(0..EXPERIMENTS.len())),
        }
    }
}

#[derive(Clone, Copy)]
enum ContactKind {
    Impression,
    Open,
}
