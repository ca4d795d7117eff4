//! A strict, allocation-light reader of one JSON object per line.
//!
//! Bronze needs more than a JSON parser gives: the exact text of every number (ids are kept
//! as their JSON text), the raw text of nested objects and arrays (kept verbatim in `json`
//! columns and in `_rescued`), and field order, at hundreds of MB/s. This reader walks the
//! top-level object once, borrows strings without escapes, and hands each field to a
//! callback. Nested values are located by bracket matching and then validated in full by
//! `serde_json`, so anything that is not valid JSON is rejected with its byte offset.

use std::borrow::Cow;
use std::fmt;

/// One top-level value of the object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as written (validated against the JSON grammar).
    Number(&'a str),
    /// A string, unescaped.
    Str(Cow<'a, str>),
    /// An object or array, as written (validated).
    Nested(&'a str),
}

impl Value<'_> {
    /// Whether a number is an integer (no fraction, no exponent).
    pub fn is_integer_number(text: &str) -> bool {
        !text.contains(['.', 'e', 'E'])
    }

    /// The value as JSON text (strings re-escaped).
    pub fn to_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) | Value::Nested(n) => out.push_str(n),
            Value::Str(s) => write_json_string(s, out),
        }
    }
}

/// Why a line is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset in the line where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

type Result<T> = std::result::Result<T, JsonError>;

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T> {
    Err(JsonError {
        offset,
        message: message.into(),
    })
}

/// Reads `line` as one JSON object and calls `field` for each member, in order.
/// The line must be exactly one object (surrounding whitespace allowed).
pub fn parse_object<'a>(
    line: &'a [u8],
    mut field: impl FnMut(Cow<'a, str>, Value<'a>),
) -> Result<()> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => return err(e.valid_up_to(), "invalid UTF-8"),
    };
    let mut p = Parser {
        text,
        bytes: line,
        pos: 0,
    };
    p.skip_ws();
    match p.peek() {
        Some(b'{') => p.pos += 1,
        None => return err(0, "empty line, not a JSON object"),
        Some(b'[') => return p.not_an_object("a JSON array"),
        Some(b'"') => return p.not_an_object("a JSON string"),
        Some(b't' | b'f') => return p.not_an_object("a JSON boolean"),
        Some(b'n') => return p.not_an_object("JSON null"),
        Some(b'-' | b'0'..=b'9') => return p.not_an_object("a JSON number"),
        Some(_) => return err(p.pos, "invalid JSON: expected `{`"),
    }
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            if p.peek() != Some(b'"') {
                return p.unexpected("a member name in double quotes");
            }
            let key = p.string()?;
            p.skip_ws();
            if p.peek() != Some(b':') {
                return p.unexpected("`:`");
            }
            p.pos += 1;
            p.skip_ws();
            let value = p.value()?;
            field(key, value);
            p.skip_ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b'}') => {
                    p.pos += 1;
                    break;
                }
                _ => return p.unexpected("`,` or `}`"),
            }
        }
    }
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return err(
            p.pos,
            "invalid JSON: unexpected characters after the object",
        );
    }
    Ok(())
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn not_an_object<T>(&mut self, what: &str) -> Result<T> {
        // Say whether the value itself is valid, so the message is accurate.
        let valid = serde_json::from_str::<serde::de::IgnoredAny>(self.text).is_ok();
        if valid {
            err(self.pos, format!("not a JSON object: the line is {what}"))
        } else {
            err(
                self.pos,
                format!("invalid JSON: the line starts like {what} but does not parse"),
            )
        }
    }

    fn unexpected<T>(&self, expected: &str) -> Result<T> {
        match self.peek() {
            None => err(
                self.pos,
                format!("invalid JSON: the line ends early (truncated?), expected {expected}"),
            ),
            Some(b) => err(
                self.pos,
                format!(
                    "invalid JSON: expected {expected}, found `{}`",
                    char::from(b).escape_default()
                ),
            ),
        }
    }

    fn value(&mut self) -> Result<Value<'a>> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'{' | b'[') => self.nested(),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.unexpected("a value"),
        }
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Result<Value<'a>> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            err(self.pos, format!("invalid JSON: expected `{word}`"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value<'a>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return err(self.pos, "invalid JSON: malformed number"),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return err(
                    self.pos,
                    "invalid JSON: malformed number (no digit after `.`)",
                );
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return err(
                    self.pos,
                    "invalid JSON: malformed number (no digit in exponent)",
                );
            }
        }
        Ok(Value::Number(&self.text[start..self.pos]))
    }

    /// A string starting at the opening quote; borrowed when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        let rest = &self.bytes[self.pos..];
        let Some(i) = memchr::memchr2(b'"', b'\\', rest) else {
            return err(open, "invalid JSON: unterminated string (truncated line?)");
        };
        if let Some(c) = rest[..i].iter().position(|&b| b < 0x20) {
            return err(self.pos + c, "invalid JSON: control character in a string");
        }
        self.pos += i;
        if self.bytes[self.pos] == b'"' {
            let s = &self.text[start..self.pos];
            self.pos += 1;
            return Ok(Cow::Borrowed(s));
        }
        // An escape: decode the whole string into an owned buffer.
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(&self.text[start..self.pos]);
        self.escaped(open, out).map(Cow::Owned)
    }

    fn escaped(&mut self, open: usize, mut out: String) -> Result<String> {
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return err(open, "invalid JSON: unterminated string (truncated line?)");
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let Some(&e) = self.bytes.get(self.pos + 1) else {
                        return err(self.pos, "invalid JSON: unterminated escape");
                    };
                    self.pos += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let c = self.unicode_escape()?;
                            out.push(c);
                        }
                        _ => return err(self.pos - 1, "invalid JSON: unknown escape"),
                    }
                }
                0..=0x1f => return err(self.pos, "invalid JSON: control character in a string"),
                _ => {
                    let rest = &self.bytes[self.pos..];
                    let run = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                    if let Some(c) = rest[..run].iter().position(|&b| b < 0x20) {
                        return err(self.pos + c, "invalid JSON: control character in a string");
                    }
                    out.push_str(&self.text[self.pos..self.pos + run]);
                    self.pos += run;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u16> {
        let Some(hex) = self.text.get(self.pos..self.pos + 4) else {
            return err(self.pos, "invalid JSON: short \\u escape");
        };
        let v = u16::from_str_radix(hex, 16)
            .or_else(|_| err(self.pos, "invalid JSON: bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char> {
        let at = self.pos;
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.bytes[self.pos..].starts_with(b"\\u") {
                return err(at, "invalid JSON: unpaired surrogate in \\u escape");
            }
            self.pos += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return err(at, "invalid JSON: unpaired surrogate in \\u escape");
            }
            0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
        } else {
            u32::from(hi)
        };
        char::from_u32(code).ok_or(JsonError {
            offset: at,
            message: "invalid JSON: \\u escape is not a character".into(),
        })
    }

    /// An object or array: find its end (strings skipped), then validate it in full.
    fn nested(&mut self) -> Result<Value<'a>> {
        let start = self.pos;
        let mut depth = 0usize;
        loop {
            let rest = &self.bytes[self.pos..];
            let Some(i) = rest
                .iter()
                .position(|&b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))
            else {
                return err(
                    start,
                    "invalid JSON: unterminated object or array (truncated line?)",
                );
            };
            self.pos += i;
            match self.bytes[self.pos] {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                }
                _ => {
                    depth -= 1;
                    self.pos += 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
        }
        let raw = &self.text[start..self.pos];
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(raw) {
            return err(
                start + e.column().saturating_sub(1),
                format!("invalid JSON: {e}"),
            );
        }
        Ok(Value::Nested(raw))
    }
}

/// Writes `s` as a JSON string literal.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Result<Vec<(String, Value<'_>)>> {
        let mut out = Vec::new();
        parse_object(line.as_bytes(), |k, v| out.push((k.into_owned(), v)))?;
        Ok(out)
    }

    #[test]
    fn reads_members_in_order_with_exact_number_text() {
        let f = fields(r#" {"id": 123, "x": -1.50e3, "s": "a\"b\u00e9", "o": {"k": [1, "]"]}, "n": null, "t": true} "#)
            .unwrap();
        assert_eq!(f[0], ("id".into(), Value::Number("123")));
        assert_eq!(f[1], ("x".into(), Value::Number("-1.50e3")));
        assert_eq!(f[2], ("s".into(), Value::Str("a\"bé".into())));
        assert_eq!(f[3], ("o".into(), Value::Nested(r#"{"k": [1, "]"]}"#)));
        assert_eq!(f[4], ("n".into(), Value::Null));
        assert_eq!(f[5], ("t".into(), Value::Bool(true)));
        assert_eq!(fields("{}").unwrap(), []);
    }

    #[test]
    fn surrogate_pairs_decode() {
        let f = fields(r#"{"e": "\ud83d\ude00"}"#).unwrap();
        assert_eq!(f[0].1, Value::Str("😀".into()));
    }

    #[test]
    fn rejects_what_is_not_one_object() {
        let msg = |line: &[u8]| parse_object(line, |_, _| {}).unwrap_err().message;
        assert_eq!(msg(b""), "empty line, not a JSON object");
        assert_eq!(msg(b"[1,2]"), "not a JSON object: the line is a JSON array");
        assert_eq!(msg(b"42"), "not a JSON object: the line is a JSON number");
        assert_eq!(
            msg(b"\"x\""),
            "not a JSON object: the line is a JSON string"
        );
        assert_eq!(
            msg(br#"{"a": 1"#),
            "invalid JSON: the line ends early (truncated?), expected `,` or `}`"
        );
        assert_eq!(
            msg(br#"{"a": "x"#),
            "invalid JSON: unterminated string (truncated line?)"
        );
        assert_eq!(
            msg(br#"{"a": 1} x"#),
            "invalid JSON: unexpected characters after the object"
        );
        assert_eq!(
            msg(br#"{"a": 01}"#),
            "invalid JSON: expected `,` or `}`, found `1`"
        );
        assert_eq!(msg(br#"{"a": tru}"#), "invalid JSON: expected `true`");
        assert!(msg(br#"{"a": {"b": }}"#).starts_with("invalid JSON: expected value"));
        assert_eq!(msg(b"{\"a\": \"\xff\"}"), "invalid UTF-8");
        assert_eq!(
            msg(b"{\"a\": \"x\ty\"}"),
            "invalid JSON: control character in a string"
        );
    }

    #[test]
    fn strings_round_trip_through_json_text() {
        let mut out = String::new();
        Value::Str("a\"b\\\n\u{1}é".into()).to_json(&mut out);
        assert_eq!(out, r#""a\"b\\\n\u0001é""#);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\\n\u{1}é");
    }
}
