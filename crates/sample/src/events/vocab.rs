//! The words events are made of: types, paths, products, spellings of dirt.

/// Event types no pipeline knows.
pub(super) const UNKNOWN_TYPES: [&str; 6] = [
    "video_play",
    "hover",
    "scroll_depth",
    "Video_Play",
    "form_start",
    " HOVER",
];
/// `event_time` values that parse as nothing.
pub(super) const BAD_TIMES: [&str; 7] = [
    "yesterday",
    "2025-13-45T99:00:00Z",
    "",
    "N/A",
    "31/09/2025 10:00",
    "1 Oct 2025 10:00:00",
    "2025-10-01T10:00:00",
];
/// Offsets (minutes) used for RFC 3339 times with an offset.
pub(super) const OFFSETS: [i32; 8] = [120, -300, 330, -210, 0, 60, -420, 540];
/// `utm_campaign` values no campaign uses.
pub(super) const UNKNOWN_UTMS: [&str; 5] = [
    "Summer Sale 2024",
    "test-campaign",
    "spring_promo",
    "Influencer Drop",
    "retarget_old",
];
/// Item prices in cents.
pub(super) const PRICES: [i64; 12] = [
    999, 1450, 1999, 2400, 2999, 3999, 4900, 5999, 7999, 9900, 12_900, 19_999,
];
/// Divisors that turn a price into a converted amount with many decimals.
pub(super) const CONVERSIONS: [f64; 4] = [0.92, 1.17, 0.79, 1.36];
pub(super) const NON_NUMERIC_REVENUES: [&str; 2] = ["N/A", "refund pending"];
pub(super) const UNKNOWN_CURRENCIES: [&str; 3] = ["JPY", "BRL", "XYZ"];
pub(super) const LANDING_PATHS: [&str; 5] = [
    "/landing",
    "/",
    "/collections/new",
    "/lp/offer",
    "/landing/autumn",
];
/// Page types of organic page views; campaign landings use [`LANDING_PAGE_TYPE`].
pub(super) const PAGE_TYPES: [&str; 6] =
    ["home", "product", "category", "blog", "search", "landing"];
pub(super) const ORGANIC_PAGE_TYPES: usize = 5;
pub(super) const LANDING_PAGE_TYPE: usize = 5;
pub(super) const AD_SLOTS: [&str; 5] = ["feed", "stories", "search", "banner", "reels"];
pub(super) const SEARCH_TERMS: [&str; 4] =
    ["running shoes", "winter jacket", "gift ideas", "wool socks"];
pub(super) const SIGNUP_METHODS: [&str; 3] = ["email", "google", "apple"];
pub(super) const UNSUBSCRIBE_REASONS: [&str; 3] = ["too_frequent", "not_relevant", "other"];
pub(super) const ORGANIC_CHANNELS: [&str; 3] = ["direct", "organic_search", "referral"];
pub(super) const DEVICE_OS: [&str; 4] = ["ios", "android", "windows", "macos"];
pub(super) const BROWSERS: [&str; 4] = ["safari", "chrome", "firefox", "edge"];
pub(super) const APP_VERSIONS: [&str; 3] = ["4.2.0", "4.3.1", "5.0.0-beta"];
pub(super) const EXPERIMENTS: [&str; 3] =
    ["checkout_v2_a", "checkout_v2_b", "free_shipping_banner"];
/// Purchase delay after a touch, in days: weight per delay 0..=10.
pub(super) const DELAY_WEIGHTS: [u32; 11] = [45, 18, 10, 7, 5, 4, 3, 3, 2, 2, 1];
