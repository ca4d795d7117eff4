//! Bounded memory the event stream keeps: recently written lines (for re-sends),
//! a small sample of old lines, per-day samples of recent touches (for funnels),
//! and the quota schedules that place rare injections at exact rates.

use rand::Rng;
use rand_pcg::Pcg64Mcg;

/// Places injections at an exact rate with random positions: the stream is cut
/// into blocks of `1 / rate` lines and each block gets one injection at a random
/// offset. An injection that cannot happen at its line stays due for the next.
pub(crate) struct Quota {
    period: f64,
    block: u64,
    next_at: u64,
}

impl Quota {
    /// A schedule firing on average once per `1 / rate` lines.
    pub(crate) fn new(rate: f64, rng: &mut Pcg64Mcg) -> Self {
        let mut q = Self {
            period: 1.0 / rate,
            block: 0,
            next_at: 0,
        };
        q.schedule(rng);
        q
    }

    /// Whether an injection is due at line `index`.
    pub(crate) fn due(&self, index: u64) -> bool {
        self.next_at <= index
    }

    /// Marks the due injection as done and schedules the next block's.
    pub(crate) fn fired(&mut self, rng: &mut Pcg64Mcg) {
        self.schedule(rng);
    }

    fn schedule(&mut self, rng: &mut Pcg64Mcg) {
        let start = (self.block as f64 * self.period) as u64;
        let end = ((self.block + 1) as f64 * self.period) as u64;
        self.block += 1;
        self.next_at = start + rng.random_range(0..(end - start).max(1));
    }
}

/// The last `capacity` lines, kept in reused buffers.
pub(crate) struct Ring {
    slots: Vec<Vec<u8>>,
    next: usize,
    capacity: usize,
}

impl Ring {
    /// An empty ring of `capacity` lines.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Vec::with_capacity(capacity),
            next: 0,
            capacity,
        }
    }

    /// Stores a copy of `line`, evicting the oldest when full.
    pub(crate) fn push(&mut self, line: &[u8]) {
        if self.slots.len() < self.capacity {
            self.slots.push(line.to_vec());
        } else {
            let slot = &mut self.slots[self.next];
            slot.clear();
            slot.extend_from_slice(line);
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// Whether no line was stored yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A uniformly chosen stored line.
    pub(crate) fn pick(&self, rng: &mut Pcg64Mcg) -> Option<&[u8]> {
        if self.slots.is_empty() {
            return None;
        }
        Some(&self.slots[rng.random_range(0..self.slots.len())])
    }
}

/// A uniform sample of every line offered so far (reservoir sampling).
pub(crate) struct Reservoir {
    lines: Vec<Vec<u8>>,
    seen: u64,
    capacity: usize,
}

impl Reservoir {
    /// An empty sample holding at most `capacity` lines.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            lines: Vec::with_capacity(capacity),
            seen: 0,
            capacity,
        }
    }

    /// Offers a line to the sample.
    pub(crate) fn offer(&mut self, line: &[u8], rng: &mut Pcg64Mcg) {
        self.seen += 1;
        if self.lines.len() < self.capacity {
            self.lines.push(line.to_vec());
        } else {
            let j = rng.random_range(0..self.seen);
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.lines.get_mut(j)) {
                slot.clear();
                slot.extend_from_slice(line);
            }
        }
    }

    /// A uniformly chosen sampled line.
    pub(crate) fn pick(&self, rng: &mut Pcg64Mcg) -> Option<&[u8]> {
        if self.lines.is_empty() {
            return None;
        }
        Some(&self.lines[rng.random_range(0..self.lines.len())])
    }
}

/// Someone who interacted with a campaign at some time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Contact {
    pub(crate) user: u64,
    pub(crate) campaign: usize,
    pub(crate) time: i64,
}

struct DaySample {
    day: i64,
    seen: u64,
    items: Vec<Contact>,
}

/// Per-day uniform samples of contacts for the last `days` days.
pub(crate) struct DaySamples {
    days: Vec<DaySample>,
    capacity: usize,
}

impl DaySamples {
    /// Samples of `capacity` contacts for each of the last `days` days.
    pub(crate) fn new(days: usize, capacity: usize) -> Self {
        Self {
            days: (0..days)
                .map(|_| DaySample {
                    day: i64::MIN,
                    seen: 0,
                    items: Vec::with_capacity(capacity),
                })
                .collect(),
            capacity,
        }
    }

    fn slot(&self, day: i64) -> usize {
        day.rem_euclid(self.days.len() as i64) as usize
    }

    /// Records a contact made on `day`.
    pub(crate) fn add(&mut self, day: i64, contact: Contact, rng: &mut Pcg64Mcg) {
        let at = self.slot(day);
        let capacity = self.capacity;
        let s = &mut self.days[at];
        if s.day != day {
            s.day = day;
            s.seen = 0;
            s.items.clear();
        }
        s.seen += 1;
        if s.items.len() < capacity {
            s.items.push(contact);
        } else {
            let j = rng.random_range(0..s.seen);
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| s.items.get_mut(j)) {
                *slot = contact;
            }
        }
    }

    /// A contact made on `day`, if any was recorded.
    pub(crate) fn pick(&self, day: i64, rng: &mut Pcg64Mcg) -> Option<Contact> {
        let s = &self.days[self.slot(day)];
        if s.day != day || s.items.is_empty() {
            return None;
        }
        Some(s.items[rng.random_range(0..s.items.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn quota_hits_its_rate_exactly() {
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        let mut q = Quota::new(0.0005, &mut rng);
        let mut fired = 0;
        for i in 0..100_000 {
            if q.due(i) {
                q.fired(&mut rng);
                fired += 1;
            }
        }
        assert!((49..=51).contains(&fired), "{fired}");
    }

    #[test]
    fn ring_keeps_the_last_lines() {
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        let mut ring = Ring::new(2);
        for line in [b"a", b"b", b"c"] {
            ring.push(line);
        }
        for _ in 0..20 {
            assert_ne!(ring.pick(&mut rng), Some(&b"a"[..]));
        }
    }
}
