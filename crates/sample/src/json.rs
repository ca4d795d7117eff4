//! Minimal JSON writing into a reused byte buffer: the generator writes
//! millions of small objects, so it formats them by hand.

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

/// Appends `v / 100` with exactly two decimals, e.g. `-12.50`.
pub(crate) fn push_cents(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    let a = v.unsigned_abs();
    push_u64(buf, a / 100);
    buf.push(b'.');
    buf.push(b'0' + (a / 10 % 10) as u8);
    buf.push(b'0' + (a % 10) as u8);
}

/// Appends 16 lower-case hex digits of `v`.
pub(crate) fn push_hex16(buf: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        buf.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

/// Appends `s` as a JSON string literal, escaping what JSON requires.
pub(crate) fn push_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    push_escaped(buf, s.as_bytes());
    buf.push(b'"');
}

/// Appends the escaped body of a JSON string (no quotes).
pub(crate) fn push_escaped(buf: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..=0x1f => {
                buf.extend_from_slice(b"\\u00");
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.push(HEX[(b >> 4) as usize]);
                buf.push(HEX[(b & 0xf) as usize]);
            }
            _ => buf.push(b),
        }
    }
}

/// Writes one JSON object field by field.
pub(crate) struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    /// Opens an object at the end of `buf`.
    pub(crate) fn open(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        Self { buf, empty: true }
    }

    /// Writes `"key":` and returns the buffer for the value.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
    }

    /// A string field.
    pub(crate) fn str(&mut self, key: &str, value: &str) {
        push_str(self.key(key), value);
    }

    /// An unsigned integer field.
    pub(crate) fn u64(&mut self, key: &str, value: u64) {
        push_u64(self.key(key), value);
    }

    /// A `null` field.
    pub(crate) fn null(&mut self, key: &str) {
        self.key(key).extend_from_slice(b"null");
    }

    /// A boolean field.
    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        let v: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(v);
    }

    /// A number field with two decimals.
    pub(crate) fn cents(&mut self, key: &str, value: i64) {
        push_cents(self.key(key), value);
    }

    /// A nested object field.
    pub(crate) fn object(&mut self, key: &str) -> Obj<'_> {
        Obj::open(self.key(key))
    }

    /// Closes the object.
    pub(crate) fn close(self) {
        self.buf.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_objects() {
        let mut buf = Vec::new();
        let mut o = Obj::open(&mut buf);
        o.str("a", "x\"y\t");
        o.u64("n", 1_234_567);
        o.cents("r", -1205);
        o.null("z");
        let mut inner = o.object("p");
        inner.bool("b", true);
        inner.close();
        o.close();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            r#"{"a":"x\"y\t","n":1234567,"r":-12.05,"z":null,"p":{"b":true}}"#
        );
    }

    #[test]
    fn hex_and_small_cents() {
        let mut buf = Vec::new();
        push_hex16(&mut buf, 0xab);
        buf.push(b' ');
        push_cents(&mut buf, 7);
        assert_eq!(buf, b"00000000000000ab 0.07");
    }
}
