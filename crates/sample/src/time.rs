//! The sample's calendar: a fixed 60-day window, the mapping from a line's
//! position to its landing time, and the timestamp spellings events use.

/// Milliseconds in a day.
pub(crate) const MS_PER_DAY: i64 = 86_400_000;
/// Milliseconds in an hour.
const MS_PER_HOUR: i64 = 3_600_000;
/// 2025-09-01T00:00:00Z, the first instant of the sample window, in epoch milliseconds.
pub(crate) const START_MS: i64 = 1_756_684_800_000;
/// Days since 1970-01-01 of [`START_MS`].
pub(crate) const START_DAY: i64 = START_MS / MS_PER_DAY;
/// Length of the sample window in days (2025-09-01 to 2025-10-30 inclusive).
pub(crate) const SPAN_DAYS: usize = 60;

/// Relative traffic per UTC hour of the day (night trough, evening peak).
const HOUR_WEIGHTS: [f64; 24] = [
    3.0, 2.0, 1.5, 1.2, 1.2, 1.5, 2.5, 4.0, 5.5, 6.5, 7.0, 7.5, 8.0, 8.0, 7.5, 7.5, 7.5, 8.0, 9.0,
    10.0, 10.0, 9.0, 7.0, 5.0,
];
/// Extra traffic on Saturdays and Sundays.
const WEEKEND_FACTOR: f64 = 1.15;

/// Maps line positions `0..n` onto the window so that line density follows the
/// daily traffic curve. Positions must be asked in non-decreasing order.
pub(crate) struct Timeline {
    lines: f64,
    /// Cumulative share of traffic at the start of each hour; one more entry than hours.
    cumulative: Vec<f64>,
    hour: usize,
}

impl Timeline {
    /// A timeline for `lines` lines.
    pub(crate) fn new(lines: u64) -> Self {
        let hours = SPAN_DAYS * 24;
        let mut cumulative = Vec::with_capacity(hours + 1);
        let mut total = 0.0;
        cumulative.push(0.0);
        for h in 0..hours {
            // 2025-09-01 is a Monday: days 5 and 6 of each week are the weekend.
            let weekday = (h / 24) % 7;
            let factor = if weekday >= 5 { WEEKEND_FACTOR } else { 1.0 };
            total += HOUR_WEIGHTS[h % 24] * factor;
            cumulative.push(total);
        }
        for c in &mut cumulative {
            *c /= total;
        }
        Self {
            lines: lines.max(1) as f64,
            cumulative,
            hour: 0,
        }
    }

    /// The landing time (epoch ms) of line `index`.
    pub(crate) fn at(&mut self, index: u64) -> i64 {
        let f = (index as f64 + 0.5) / self.lines;
        let last = self.cumulative.len() - 2;
        while self.hour < last && self.cumulative[self.hour + 1] < f {
            self.hour += 1;
        }
        let lo = self.cumulative[self.hour];
        let hi = self.cumulative[self.hour + 1];
        let within = ((f - lo) / (hi - lo)).clamp(0.0, 1.0);
        START_MS + self.hour as i64 * MS_PER_HOUR + (within * MS_PER_HOUR as f64) as i64
    }
}

/// Day index within the window (may be negative or beyond the window for late events).
pub(crate) fn day_index(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_DAY) - START_DAY
}

/// Civil date (year, month, day) of a count of days since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push2(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + (v / 10 % 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

fn push3(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + (v / 100 % 10) as u8);
    push2(buf, v % 100);
}

/// Writes `YYYY-MM-DD` for a count of days since 1970-01-01.
pub(crate) fn push_date(buf: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    push2(buf, y / 100);
    push2(buf, y % 100);
    buf.push(b'-');
    push2(buf, m);
    buf.push(b'-');
    push2(buf, d);
}

/// `YYYY-MM-DD` of a day index within the window.
pub(crate) fn window_date(day: i64) -> String {
    let mut buf = Vec::with_capacity(10);
    push_date(&mut buf, START_DAY + day);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Writes `YYYY-MM-DD{sep}HH:MM:SS[.fff]` for an epoch-millisecond instant.
pub(crate) fn push_datetime(buf: &mut Vec<u8>, ms: i64, sep: u8, millis: bool) {
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    push_date(buf, days);
    buf.push(sep);
    let secs = (in_day / 1000) as u32;
    push2(buf, secs / 3600);
    buf.push(b':');
    push2(buf, secs / 60 % 60);
    buf.push(b':');
    push2(buf, secs % 60);
    if millis {
        buf.push(b'.');
        push3(buf, (in_day % 1000) as u32);
    }
}

/// Writes an RFC 3339 `±HH:MM` suffix for an offset in minutes.
pub(crate) fn push_offset(buf: &mut Vec<u8>, minutes: i32) {
    buf.push(if minutes < 0 { b'-' } else { b'+' });
    let m = minutes.unsigned_abs();
    push2(buf, m / 60);
    buf.push(b':');
    push2(buf, m % 60);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_2025_09_01() {
        assert_eq!(civil_from_days(START_DAY), (2025, 9, 1));
        assert_eq!(window_date(59), "2025-10-30");
        assert_eq!(window_date(-1), "2025-08-31");
    }

    #[test]
    fn datetime_spellings() {
        let mut buf = Vec::new();
        push_datetime(&mut buf, START_MS + 13 * MS_PER_HOUR + 61_007, b'T', true);
        push_offset(&mut buf, -330);
        assert_eq!(buf, b"2025-09-01T13:01:01.007-05:30");
    }

    #[test]
    fn timeline_is_monotone_and_inside_the_window() {
        let mut t = Timeline::new(10_000);
        let mut last = i64::MIN;
        for i in 0..10_000 {
            let ms = t.at(i);
            assert!(ms >= last);
            assert!((START_MS..START_MS + SPAN_DAYS as i64 * MS_PER_DAY).contains(&ms));
            last = ms;
        }
    }
}
