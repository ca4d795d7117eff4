//! An event before it is written: what each field holds and how it is spelled.

use super::EventType;

#[derive(Clone, Copy)]
pub(super) enum IdField {
    Hex(u64),
    Uuid(u64),
    Number(u64),
    Absent,
    Null,
    Empty,
    Blank,
}

#[derive(Clone, Copy)]
pub(super) enum TypeNoise {
    None,
    Upper,
    Padded,
    Tab,
}

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Known(EventType, TypeNoise),
    Unknown(&'static str),
}

/// How `event_time` is spelled.
#[derive(Clone, Copy)]
pub(super) enum TimeField {
    Utc { millis: bool },
    Offset { minutes: i32, millis: bool },
    Space { millis: bool },
    EpochNumber,
    EpochString,
    Bad(&'static str),
}

#[derive(Clone, Copy)]
pub(super) enum UserField {
    Str,
    Num,
    Null,
    Absent,
}

#[derive(Clone, Copy)]
pub(super) enum AnonField {
    Id,
    Null,
    Blank,
    Absent,
}

#[derive(Clone, Copy)]
pub(super) enum Optional<T> {
    Absent,
    Null,
    Value(T),
}

#[derive(Clone, Copy)]
pub(super) enum ChannelField {
    /// The campaign's channel and platform; `true` spells the channel in upper case.
    Campaign(usize, bool),
    Other(&'static str),
}

#[derive(Clone, Copy)]
pub(super) enum CampaignIdField {
    Str(u32),
    Num(u32),
    Padded(u32),
    Empty,
}

#[derive(Clone, Copy)]
pub(super) enum UtmValue {
    Campaign(usize),
    Unknown(&'static str),
}

#[derive(Clone, Copy)]
pub(super) struct Utm {
    pub(super) campaign: usize,
    pub(super) value: UtmValue,
    /// 0 as configured, 1 lower case, 2 upper case.
    pub(super) case: u8,
    pub(super) plus: bool,
    pub(super) campaign_first: bool,
    pub(super) repeat: bool,
    pub(super) content: u8,
    pub(super) term: Option<usize>,
    pub(super) click_id: Option<u64>,
    pub(super) path: &'static str,
}

#[derive(Clone, Copy)]
pub(super) enum Page {
    Landing(&'static str),
    Organic(usize, u32),
    Product(u32),
    Signup,
    Checkout(u64),
    Unsubscribe,
    Utm(Utm),
}

#[derive(Clone, Copy)]
pub(super) enum Revenue {
    Cents(i64),
    Text(i64),
    Float(f64),
    NonNumeric(&'static str),
}

#[derive(Clone, Copy)]
pub(super) enum Currency {
    /// Index into [`FX_RATES`] and a spelling variant (0 = canonical).
    Known(usize, u8),
    Unknown(&'static str),
}

#[derive(Clone, Copy)]
pub(super) enum Props {
    Impression { slot: usize, creative: u8 },
    Click { creative: u8 },
    PageView { page_type: usize },
    Email { campaign: usize, link: bool },
    Cart { sku: u32, quantity: u8, price: i64 },
    Signup { method: usize },
    Purchase { order: u64, items: u8 },
    Unsubscribe { reason: usize },
    Unknown { duration: u32 },
}

#[derive(Clone, Copy, Default)]
pub(super) struct Drift {
    pub(super) device: Option<(usize, usize)>,
    pub(super) consent: Option<bool>,
    pub(super) app_version: Option<usize>,
    pub(super) experiment: Option<usize>,
}

impl Drift {
    pub(super) fn any(&self) -> bool {
        self.device.is_some()
            || self.consent.is_some()
            || self.app_version.is_some()
            || self.experiment.is_some()
    }
}

/// Counted facts about a touch.
#[derive(Clone, Copy, Default)]
pub(super) struct TouchFacts {
    pub(super) without_id: bool,
    pub(super) unknown_utm: bool,
    pub(super) ambiguous_utm: bool,
}

/// One event before it is written.
#[derive(Clone, Copy)]
pub(super) struct Draft {
    pub(super) id: IdField,
    pub(super) kind: Kind,
    /// The event's instant (epoch ms; 0 until set); `time` says how it is spelled.
    pub(super) ms: i64,
    pub(super) time: TimeField,
    pub(super) user: Option<u64>,
    pub(super) user_field: UserField,
    pub(super) anon_field: AnonField,
    pub(super) session: Optional<u64>,
    pub(super) channel: Optional<ChannelField>,
    pub(super) campaign_id: Optional<CampaignIdField>,
    pub(super) url: Optional<Page>,
    pub(super) revenue: Option<Revenue>,
    pub(super) currency: Option<Currency>,
    pub(super) props: Props,
    pub(super) drift: Drift,
    /// The campaign the event belongs to, when one resolves.
    pub(super) campaign: Option<usize>,
    pub(super) touch: Option<TouchFacts>,
    pub(super) purchase_with_campaign: bool,
    pub(super) many_decimals: bool,
    pub(super) late: bool,
    pub(super) clean: bool,
}

impl Draft {
    pub(super) fn new(kind: EventType, user: u64, props: Props) -> Self {
        Self {
            id: IdField::Absent,
            kind: Kind::Known(kind, TypeNoise::None),
            ms: 0,
            time: TimeField::EpochNumber,
            user: Some(user),
            user_field: UserField::Absent,
            anon_field: AnonField::Absent,
            session: Optional::Absent,
            channel: Optional::Absent,
            campaign_id: Optional::Absent,
            url: Optional::Absent,
            revenue: None,
            currency: None,
            props,
            drift: Drift::default(),
            campaign: None,
            touch: None,
            purchase_with_campaign: false,
            many_decimals: false,
            late: false,
            clean: true,
        }
    }

    pub(super) fn event_type(&self) -> Option<EventType> {
        match self.kind {
            Kind::Known(t, _) => Some(t),
            Kind::Unknown(_) => None,
        }
    }
}

/// SplitMix64 finalizer: a bijection on `u64`, so distinct inputs give distinct ids.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
