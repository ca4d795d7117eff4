//! Serializing a [`Draft`] as one JSON line.

use super::draft::*;
use super::vocab::*;
use super::{EventStream, field};
use crate::campaigns::FX_RATES;
use crate::json::{Obj, push_cents, push_escaped, push_hex16, push_str, push_u64};
use crate::time::{push_datetime, push_offset};

/// User ids are numbers from here on (written as text or as JSON numbers).
const USER_ID_BASE: u64 = 10_000_000;
/// Numeric event ids start here, so they never look like a user id.
const NUMERIC_EVENT_ID_BASE: u64 = 1_000_000_000_000;
/// The shop every URL points to.
const SITE: &str = "https://shop.example.com";

impl EventStream<'_> {
    pub(super) fn write(&self, d: &Draft, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        self.write_id(&mut o, d.id);
        write_type(&mut o, d.kind);
        write_time(&mut o, d.ms, d.time);
        self.write_identity(&mut o, d);
        match d.session {
            Optional::Absent => {}
            Optional::Null => o.null(field::SESSION_ID),
            Optional::Value(s) => {
                let b = o.key(field::SESSION_ID);
                b.extend_from_slice(b"\"s_");
                push_hex16(b, s);
                b.push(b'"');
            }
        }
        self.write_channel(&mut o, d.channel);
        write_campaign_id(&mut o, d.campaign_id);
        match d.url {
            Optional::Absent => {}
            Optional::Null => o.null(field::PAGE_URL),
            Optional::Value(p) => {
                let b = o.key(field::PAGE_URL);
                b.push(b'"');
                self.write_url(b, p);
                b.push(b'"');
            }
        }
        if let Some(r) = d.revenue {
            write_revenue(&mut o, r);
        }
        if let Some(c) = d.currency {
            write_currency(&mut o, c);
        }
        self.write_props(&mut o, d.props, d.drift.experiment);
        write_drift(&mut o, &d.drift);
        o.close();
    }

    fn write_id(&self, o: &mut Obj<'_>, id: IdField) {
        match id {
            IdField::Absent => {}
            IdField::Null => o.null(field::EVENT_ID),
            IdField::Empty => o.str(field::EVENT_ID, ""),
            IdField::Blank => o.str(field::EVENT_ID, "  "),
            IdField::Number(n) => o.u64(field::EVENT_ID, NUMERIC_EVENT_ID_BASE + n),
            IdField::Hex(n) => {
                let b = o.key(field::EVENT_ID);
                b.extend_from_slice(b"\"ev_");
                push_hex16(b, mix(n ^ self.id_key));
                b.push(b'"');
            }
            IdField::Uuid(n) => {
                let hi = mix(n ^ self.id_key);
                let lo = mix(hi ^ self.user_key);
                let mut hex = Vec::with_capacity(32);
                push_hex16(&mut hex, hi);
                push_hex16(&mut hex, lo);
                let b = o.key(field::EVENT_ID);
                b.push(b'"');
                for (i, part) in [0..8, 8..12, 12..16, 16..20, 20..32]
                    .into_iter()
                    .enumerate()
                {
                    if i > 0 {
                        b.push(b'-');
                    }
                    b.extend_from_slice(&hex[part]);
                }
                b.push(b'"');
            }
        }
    }

    fn write_identity(&self, o: &mut Obj<'_>, d: &Draft) {
        let user = d.user.unwrap_or(0);
        match d.user_field {
            UserField::Absent => {}
            UserField::Null => o.null(field::USER_ID),
            UserField::Num => o.u64(field::USER_ID, USER_ID_BASE + user),
            UserField::Str => {
                let b = o.key(field::USER_ID);
                b.push(b'"');
                push_u64(b, USER_ID_BASE + user);
                b.push(b'"');
            }
        }
        match d.anon_field {
            AnonField::Absent => {}
            AnonField::Null => o.null(field::ANONYMOUS_ID),
            AnonField::Blank => o.str(field::ANONYMOUS_ID, " "),
            AnonField::Id => {
                let b = o.key(field::ANONYMOUS_ID);
                b.extend_from_slice(b"\"a_");
                push_hex16(b, mix(user ^ self.user_key ^ 0xa0a0));
                b.push(b'"');
            }
        }
    }

    fn write_channel(&self, o: &mut Obj<'_>, channel: Optional<ChannelField>) {
        match channel {
            Optional::Absent => {}
            Optional::Null => {
                o.null(field::CHANNEL);
                o.null(field::PLATFORM);
            }
            Optional::Value(ChannelField::Other(name)) => o.str(field::CHANNEL, name),
            Optional::Value(ChannelField::Campaign(c, upper)) => {
                let p = self.campaigns.list[c].placement();
                if upper {
                    o.str(field::CHANNEL, &p.channel.to_ascii_uppercase());
                } else {
                    o.str(field::CHANNEL, p.channel);
                }
                o.str(field::PLATFORM, p.platform);
            }
        }
    }

    fn write_url(&self, b: &mut Vec<u8>, page: Page) {
        b.extend_from_slice(SITE.as_bytes());
        match page {
            Page::Landing(path) => b.extend_from_slice(path.as_bytes()),
            Page::Organic(kind, n) => {
                let path: &[u8] = match kind {
                    0 => b"/",
                    1 => b"/products/sku-",
                    2 => b"/collections/c",
                    3 => b"/blog/post-",
                    _ => b"/search?q=item+",
                };
                b.extend_from_slice(path);
                if kind != 0 {
                    push_u64(b, u64::from(n));
                }
            }
            Page::Product(sku) => {
                b.extend_from_slice(b"/products/sku-");
                push_u64(b, u64::from(sku));
            }
            Page::Signup => b.extend_from_slice(b"/account/signup"),
            Page::Unsubscribe => b.extend_from_slice(b"/email/unsubscribe"),
            Page::Checkout(order) => {
                b.extend_from_slice(b"/checkout/complete?order=o_");
                push_hex16(b, order);
            }
            Page::Utm(u) => self.write_utm_url(b, &u),
        }
    }

    fn write_utm_url(&self, b: &mut Vec<u8>, u: &Utm) {
        let p = self.campaigns.list[u.campaign].placement();
        b.extend_from_slice(u.path.as_bytes());
        b.push(b'?');
        if u.campaign_first {
            self.write_utm_campaign(b, u, u.value);
            b.push(b'&');
        }
        b.extend_from_slice(b"utm_source=");
        b.extend_from_slice(p.platform.as_bytes());
        b.extend_from_slice(b"&utm_medium=");
        b.extend_from_slice(p.channel.as_bytes());
        if !u.campaign_first {
            b.push(b'&');
            self.write_utm_campaign(b, u, u.value);
        }
        b.extend_from_slice(b"&utm_content=ad");
        push_u64(b, u64::from(u.content));
        if let Some(t) = u.term {
            b.extend_from_slice(b"&utm_term=");
            push_encoded(b, SEARCH_TERMS[t], u.plus);
        }
        if u.repeat {
            b.push(b'&');
            self.write_utm_campaign(b, u, UtmValue::Unknown("duplicate param"));
        }
        if let (Some(id), Some(key)) = (u.click_id, click_id_key(p.platform)) {
            b.extend_from_slice(key);
            push_hex16(b, id);
        }
    }

    fn write_utm_campaign(&self, b: &mut Vec<u8>, u: &Utm, value: UtmValue) {
        b.extend_from_slice(b"utm_campaign=");
        let text = match value {
            UtmValue::Campaign(c) => self.campaigns.list[c].utm.as_str(),
            UtmValue::Unknown(s) => s,
        };
        match u.case {
            1 => push_encoded(b, &text.to_ascii_lowercase(), u.plus),
            2 => push_encoded(b, &text.to_ascii_uppercase(), u.plus),
            _ => push_encoded(b, text, u.plus),
        }
    }

    fn write_props(&self, o: &mut Obj<'_>, props: Props, experiment: Option<usize>) {
        let mut p = o.object(field::PROPERTIES);
        match props {
            Props::Impression { slot, creative } => {
                p.str("placement", AD_SLOTS[slot]);
                p.u64("creative_id", u64::from(creative));
            }
            Props::Click { creative } => p.u64("creative_id", u64::from(creative)),
            Props::PageView { page_type } => p.str("page_type", PAGE_TYPES[page_type]),
            Props::Email { campaign, link } => {
                let b = p.key("email_id");
                b.extend_from_slice(b"\"nl_");
                push_u64(b, u64::from(self.campaigns.list[campaign].id));
                b.push(b'"');
                if link {
                    p.str("link", "cta");
                }
            }
            Props::Cart {
                sku,
                quantity,
                price,
            } => {
                p.u64("sku", u64::from(sku));
                p.u64("quantity", u64::from(quantity));
                p.cents("price", price);
            }
            Props::Signup { method } => p.str("method", SIGNUP_METHODS[method]),
            Props::Purchase { order, items } => {
                let b = p.key("order_id");
                b.extend_from_slice(b"\"o_");
                push_hex16(b, order);
                b.push(b'"');
                p.u64("items", u64::from(items));
            }
            Props::Unsubscribe { reason } => p.str("reason", UNSUBSCRIBE_REASONS[reason]),
            Props::Unknown { duration } => p.u64("duration_ms", u64::from(duration)),
        }
        if let Some(e) = experiment {
            p.str(field::EXPERIMENT, EXPERIMENTS[e]);
        }
        p.close();
    }
}

fn write_type(o: &mut Obj<'_>, kind: Kind) {
    let b = o.key(field::EVENT_TYPE);
    b.push(b'"');
    match kind {
        Kind::Unknown(name) => push_escaped(b, name.as_bytes()),
        Kind::Known(t, noise) => {
            let name = t.name().as_bytes();
            match noise {
                TypeNoise::None => b.extend_from_slice(name),
                TypeNoise::Upper => b.extend(name.iter().map(u8::to_ascii_uppercase)),
                TypeNoise::Padded => {
                    b.push(b' ');
                    b.push(name[0].to_ascii_uppercase());
                    b.extend_from_slice(&name[1..]);
                    b.push(b' ');
                }
                TypeNoise::Tab => {
                    b.extend_from_slice(b"\\t");
                    b.extend_from_slice(name);
                }
            }
        }
    }
    b.push(b'"');
}

fn write_time(o: &mut Obj<'_>, ms: i64, time: TimeField) {
    let b = o.key(field::EVENT_TIME);
    match time {
        TimeField::Utc { millis } => {
            b.push(b'"');
            push_datetime(b, ms, b'T', millis);
            b.extend_from_slice(b"Z\"");
        }
        TimeField::Offset { minutes, millis } => {
            b.push(b'"');
            push_datetime(b, ms + i64::from(minutes) * 60_000, b'T', millis);
            push_offset(b, minutes);
            b.push(b'"');
        }
        TimeField::Space { millis } => {
            b.push(b'"');
            push_datetime(b, ms, b' ', millis);
            b.push(b'"');
        }
        TimeField::EpochNumber => push_u64(b, ms as u64),
        TimeField::EpochString => {
            b.push(b'"');
            push_u64(b, ms as u64);
            b.push(b'"');
        }
        TimeField::Bad(text) => push_str(b, text),
    }
}

fn write_campaign_id(o: &mut Obj<'_>, id: Optional<CampaignIdField>) {
    match id {
        Optional::Absent => {}
        Optional::Null => o.null(field::CAMPAIGN_ID),
        Optional::Value(CampaignIdField::Empty) => o.str(field::CAMPAIGN_ID, ""),
        Optional::Value(CampaignIdField::Num(id)) => o.u64(field::CAMPAIGN_ID, u64::from(id)),
        Optional::Value(CampaignIdField::Str(id)) => {
            let b = o.key(field::CAMPAIGN_ID);
            b.push(b'"');
            push_u64(b, u64::from(id));
            b.push(b'"');
        }
        Optional::Value(CampaignIdField::Padded(id)) => {
            let b = o.key(field::CAMPAIGN_ID);
            b.extend_from_slice(b"\" ");
            push_u64(b, u64::from(id));
            b.extend_from_slice(b" \"");
        }
    }
}

fn write_revenue(o: &mut Obj<'_>, r: Revenue) {
    match r {
        Revenue::Cents(c) => o.cents(field::REVENUE, c),
        Revenue::Text(c) => {
            let b = o.key(field::REVENUE);
            b.push(b'"');
            push_cents(b, c);
            b.push(b'"');
        }
        Revenue::Float(v) => {
            use std::io::Write as _;
            let b = o.key(field::REVENUE);
            // Writing into a Vec cannot fail.
            let _ = write!(b, "{v}");
        }
        Revenue::NonNumeric(text) => o.str(field::REVENUE, text),
    }
}

fn write_currency(o: &mut Obj<'_>, c: Currency) {
    match c {
        Currency::Unknown(code) => o.str(field::CURRENCY, code),
        Currency::Known(k, spelling) => {
            let code = FX_RATES[k].0;
            match spelling {
                0 => o.str(field::CURRENCY, code),
                1 => o.str(field::CURRENCY, &code.to_ascii_lowercase()),
                2 => o.str(field::CURRENCY, &format!(" {code}")),
                _ => {
                    let mut s = code[..1].to_string();
                    s.push_str(&code[1..].to_ascii_lowercase());
                    s.push(' ');
                    o.str(field::CURRENCY, &s);
                }
            }
        }
    }
}

fn write_drift(o: &mut Obj<'_>, drift: &Drift) {
    if let Some((os, browser)) = drift.device {
        let mut d = o.object(field::DEVICE);
        d.str("os", DEVICE_OS[os]);
        d.str("browser", BROWSERS[browser]);
        d.close();
    }
    if let Some(consent) = drift.consent {
        o.bool(field::CONSENT, consent);
    }
    if let Some(v) = drift.app_version {
        o.str(field::APP_VERSION, APP_VERSIONS[v]);
    }
}

/// The click-id parameter an ad platform appends to landing URLs.
fn click_id_key(platform: &str) -> Option<&'static [u8]> {
    match platform {
        "facebook" | "instagram" => Some(b"&fbclid="),
        "google" => Some(b"&gclid="),
        "bing" => Some(b"&msclkid="),
        "tiktok" => Some(b"&ttclid="),
        _ => None,
    }
}

/// Form-urlencodes `text`: unreserved bytes as they are, space as `+` or `%20`.
fn push_encoded(b: &mut Vec<u8>, text: &str, plus: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in text.as_bytes() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => b.push(c),
            b' ' if plus => b.push(b'+'),
            _ => {
                b.push(b'%');
                b.push(HEX[usize::from(c >> 4)]);
                b.push(HEX[usize::from(c & 0xf)]);
            }
        }
    }
}
