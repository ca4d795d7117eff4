//! SQL functions the engine adds to DataFusion for `layers.yaml` expressions:
//!
//! - `parse_utc_timestamp(text)`: epoch milliseconds (digits only), RFC 3339 with `Z`/`z` or an
//!   offset (fractions beyond microseconds truncated), or `YYYY-MM-DD HH:MM:SS[.fff]` in UTC;
//!   anything else is NULL.
//! - `url_query_param(url, name)`: the first `name` parameter of the URL's query, decoded as a
//!   form-urlencoded query (`+` is a space); NULL when absent.
//! - `json_get_text(json, key)`: a top-level member of a JSON object as text (strings without
//!   quotes, other values as JSON); NULL when absent, null, or not an object.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::datafusion::common::{Result, ScalarValue};
use deltalake::datafusion::execution::FunctionRegistry;
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// Every engine function.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(ParseUtcTimestamp::new()),
        ScalarUDF::from(UrlQueryParam::new()),
        ScalarUDF::from(JsonGetText::new()),
    ]
}

/// Registers every engine function with a DataFusion session.
pub fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for udf in udfs() {
        registry.register_udf(Arc::new(udf))?;
    }
    Ok(())
}

/// The arguments as UTF-8 arrays of `rows` rows (scalars expanded, other string types cast).
fn string_args(args: &[ColumnarValue], rows: usize) -> Result<Vec<ArrayRef>> {
    args.iter()
        .map(|a| {
            let array = a.to_array(rows)?;
            Ok(match array.data_type() {
                DataType::Utf8 => array,
                _ => cast(&array, &DataType::Utf8)?,
            })
        })
        .collect()
}

/// The instants an event time may name: years 1 to 9999 (what a calendar date, and every
/// common reader, can hold).
const EARLIEST_US: i64 = -62_135_596_800_000_000;
const LATEST_US: i64 = 253_402_300_799_999_999;

/// Microseconds since the epoch of an event time, per the shipped pipeline's rules; an
/// instant outside years 1 to 9999 is not a valid event time.
pub fn parse_utc_timestamp(text: &str) -> Option<i64> {
    parse_micros(text).filter(|us| (EARLIEST_US..=LATEST_US).contains(us))
}

fn parse_micros(text: &str) -> Option<i64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok()?.checked_mul(1000);
    }
    let has_zone = text.ends_with(['Z', 'z'])
        || text.len() > 6 && {
            let tail = &text.as_bytes()[text.len() - 6..];
            matches!(tail[0], b'+' | b'-') && tail[3] == b':'
        };
    if has_zone {
        return DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros());
    }
    let b = text.as_bytes();
    let shaped = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':';
    if !shaped {
        return None;
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

/// The first value of query parameter `name` in `url`, form-urlencoded-decoded.
pub fn url_query_param(url: &str, name: &str) -> Option<String> {
    let bytes = url.as_bytes();
    // The WHATWG parser removes tabs and newlines and trims C0 controls and spaces; besides
    // that, the query it returns differs from the text between the first `?` and the next
    // `#` only by percent-encoding, which the form decoding undoes. So a URL without those
    // characters is read directly (a test checks this against the parser).
    let plain = !bytes.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r'))
        && bytes.first().is_none_or(|&b| b > b' ')
        && bytes.last().is_none_or(|&b| b > b' ');
    if plain {
        let start = bytes.iter().position(|&b| b == b'?' || b == b'#')?;
        if bytes[start] == b'#' {
            return None;
        }
        let query = &url[start + 1..];
        let query = query.split('#').next().unwrap_or_default();
        return url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned());
    }
    let query = match url::Url::parse(url) {
        Ok(parsed) => parsed.query().map(str::to_string),
        // Relative or malformed URLs: the part after `?`, up to a fragment.
        Err(_) => url
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or_default().to_string()),
    }?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A top-level member of a JSON object as text.
pub fn json_get_text(json: &str, key: &str) -> Option<String> {
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(map)) => match map.get(key)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        },
        Ok(_) => None,
        // Valid JSON that serde_json will not hold, such as a number beyond the double
        // range (`1e400`): the member's text as written.
        Err(_) => {
            let raw = raw_member(json, key)?;
            match raw.as_bytes()[0] {
                b'"' => serde_json::from_str(raw).ok(),
                _ if raw == "null" => None,
                _ => Some(raw.to_string()),
            }
        }
    }
}

/// The text of member `key` of the JSON object `json`, found by scanning its top level.
fn raw_member<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let b = json.as_bytes();
    let skip = |mut i: usize| {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    let string_end = |mut i: usize| {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    };
    let value_end = |mut i: usize| match b.get(i)? {
        b'"' => string_end(i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            Some(i)
        }
    };
    let mut i = skip(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip(i);
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(i)?;
        let name: String = serde_json::from_str(&json[i..key_end]).ok()?;
        i = skip(key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip(i + 1);
        let end = value_end(start)?;
        if name == key {
            return (end > start).then(|| &json[start..end]);
        }
        i = skip(end);
        match b.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

macro_rules! udf_struct {
    ($ty:ident, $name:literal, $arity:literal) => {
        #[derive(Debug, PartialEq, Eq, Hash)]
        struct $ty {
            signature: Signature,
        }

        impl $ty {
            fn new() -> Self {
                Self {
                    signature: Signature::string($arity, Volatility::Immutable),
                }
            }
        }
    };
}

udf_struct!(ParseUtcTimestamp, "parse_utc_timestamp", 1);
udf_struct!(UrlQueryParam, "url_query_param", 2);
udf_struct!(JsonGetText, "json_get_text", 2);

impl ScalarUDFImpl for ParseUtcTimestamp {
    fn name(&self) -> &str {
        "parse_utc_timestamp"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = string_args(&args.args, args.number_rows)?;
        let text = arrays[0].as_string::<i32>();
        let mut out = TimestampMicrosecondBuilder::with_capacity(text.len()).with_timezone("UTC");
        for value in text.iter() {
            out.append_option(value.and_then(parse_utc_timestamp));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Applies `f` to two string arguments row by row.
fn binary_text(
    args: ScalarFunctionArgs,
    f: impl Fn(&str, &str) -> Option<String>,
) -> Result<ColumnarValue> {
    let rows = args.number_rows;
    // A constant second argument (the usual case) is read once.
    if let ColumnarValue::Scalar(ScalarValue::Utf8(Some(key)) | ScalarValue::Utf8View(Some(key))) =
        &args.args[1]
    {
        let arrays = string_args(&args.args[..1], rows)?;
        let text = arrays[0].as_string::<i32>();
        let mut out = StringBuilder::with_capacity(text.len(), text.len() * 8);
        for value in text.iter() {
            out.append_option(value.and_then(|v| f(v, key)));
        }
        return Ok(ColumnarValue::Array(Arc::new(out.finish())));
    }
    let arrays = string_args(&args.args, rows)?;
    let (text, keys) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
    let mut out = StringBuilder::with_capacity(text.len(), text.len() * 8);
    for (value, key) in text.iter().zip(keys.iter()) {
        out.append_option(value.zip(key).and_then(|(v, k)| f(v, k)));
    }
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}

impl ScalarUDFImpl for UrlQueryParam {
    fn name(&self) -> &str {
        "url_query_param"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        binary_text(args, url_query_param)
    }
}

impl ScalarUDFImpl for JsonGetText {
    fn name(&self) -> &str {
        "json_get_text"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        binary_text(args, json_get_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::util::pretty::pretty_format_batches;
    use deltalake::datafusion::prelude::SessionContext;

    #[test]
    fn event_times_follow_the_pipeline_rules() {
        let us = |s: &str| parse_utc_timestamp(s);
        let expected = Some(1_756_720_800_000_000); // 2025-09-01T10:00:00Z
        assert_eq!(us("1756720800000"), expected);
        assert_eq!(us("2025-09-01T10:00:00Z"), expected);
        assert_eq!(us("2025-09-01t10:00:00z"), expected);
        assert_eq!(us("2025-09-01T12:00:00+02:00"), expected);
        assert_eq!(us("2025-09-01T06:30:00-03:30"), expected);
        assert_eq!(us("2025-09-01 10:00:00"), expected);
        assert_eq!(us("2025-09-01 10:00:00.123"), Some(1_756_720_800_123_000));
        assert_eq!(
            us("2025-09-01T10:00:00.1234567Z"),
            Some(1_756_720_800_123_456),
            "truncated to µs"
        );
        for bad in [
            "",
            "yesterday",
            "2025-09-01T10:00:00",
            "2025-13-45T99:00:00Z",
            "-1756720800000",
            "1.7e12",
            "2025-09-01",
        ] {
            assert_eq!(us(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn query_parameters_are_form_decoded_first_wins() {
        let url = "https://shop.example.com/l?utm_source=fb&utm_campaign=Autumn+Sale&utm_campaign=other&x=%20a%2Bb";
        assert_eq!(
            url_query_param(url, "utm_campaign").as_deref(),
            Some("Autumn Sale")
        );
        assert_eq!(url_query_param(url, "x").as_deref(), Some(" a+b"));
        assert_eq!(url_query_param(url, "utm_term"), None);
        assert_eq!(
            url_query_param("/landing?utm_campaign=Spring%20Sale#top", "utm_campaign").as_deref(),
            Some("Spring Sale")
        );
        assert_eq!(
            url_query_param("https://x.example/no-query", "utm_campaign"),
            None
        );
    }

    #[test]
    fn event_times_outside_years_1_to_9999_are_invalid() {
        assert_eq!(parse_utc_timestamp("9223372036854775"), None);
        assert_eq!(parse_utc_timestamp("0000-01-01T00:00:00Z"), None);
        assert_eq!(
            parse_utc_timestamp("0001-01-01T00:00:00Z"),
            Some(EARLIEST_US)
        );
        assert_eq!(
            parse_utc_timestamp("9999-12-31 23:59:59.999999"),
            Some(LATEST_US)
        );
        assert_eq!(parse_utc_timestamp("253402300800000"), None);
    }

    #[test]
    fn reading_the_query_directly_agrees_with_the_url_parser() {
        let urls = [
            "https://shop.example.com/l?utm_campaign=Autumn+Sale&utm_campaign=x",
            "https://shop.example.com/l?utm_campaign=caf\u{e9}%20bar&a=\"q\"#frag?utm_campaign=no",
            "https://shop.example.com/l#top?utm_campaign=no",
            "https://user:pw@host.example:8080/a/b?x=1&utm_campaign=%zz&utm_campaign=2",
            "mailto:someone@example.com?utm_campaign=mail",
            "https://shop.example.com/?utm_campaign=a b<c>'d'",
            "https://shop.example.com/?=x&utm_campaign",
            "https://shop.example.com/?utm_campaign=a%2Bb+c",
        ];
        for url in urls {
            let parsed = url::Url::parse(url).unwrap();
            let by_parser = parsed.query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "utm_campaign")
                    .map(|(_, v)| v.into_owned())
            });
            assert_eq!(url_query_param(url, "utm_campaign"), by_parser, "{url}");
        }
        // Tabs and surrounding spaces: the parser's reading.
        assert_eq!(
            url_query_param(" https://x.example/?utm_campaign=a\tb ", "utm_campaign").as_deref(),
            Some("ab")
        );
    }

    #[test]
    fn json_members_as_text() {
        let j = r#"{"revenue": "12.50", "n": 1.5, "o": {"a": [1]}, "z": null}"#;
        assert_eq!(json_get_text(j, "revenue").as_deref(), Some("12.50"));
        assert_eq!(json_get_text(j, "n").as_deref(), Some("1.5"));
        assert_eq!(json_get_text(j, "o").as_deref(), Some(r#"{"a":[1]}"#));
        assert_eq!(json_get_text(j, "z"), None);
        assert_eq!(json_get_text(j, "missing"), None);
        assert_eq!(json_get_text("[1]", "a"), None);
        assert_eq!(json_get_text("not json", "a"), None);
        // Numbers serde_json will not hold are read as written.
        let big = r#"{"a": {"x": "}"}, "s": "a\"b", "revenue": 1e400, "t": "x"}"#;
        assert_eq!(json_get_text(big, "revenue").as_deref(), Some("1e400"));
        assert_eq!(json_get_text(big, "s").as_deref(), Some("a\"b"));
        assert_eq!(json_get_text(big, "a").as_deref(), Some(r#"{"x": "}"}"#));
        assert_eq!(json_get_text(big, "t").as_deref(), Some("x"));
        assert_eq!(json_get_text(big, "missing"), None);
    }

    #[test]
    fn functions_run_in_sql() {
        let mut ctx = SessionContext::new();
        register(&mut ctx).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batches = runtime.block_on(async {
            ctx.sql(
                "SELECT parse_utc_timestamp(t) AS ts, url_query_param(u, 'utm_campaign') AS c, \
                 try_cast(json_get_text(r, 'revenue') AS DOUBLE) AS revenue \
                 FROM (VALUES ('1756720800000', 'https://a.example/?utm_campaign=A+B', '{\"revenue\":\"12.50\"}'), \
                              ('nope', NULL, NULL)) AS v(t, u, r)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
        });
        let text = pretty_format_batches(&batches).unwrap().to_string();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "+----------------------+-----+---------+",
                "| ts                   | c   | revenue |",
                "+----------------------+-----+---------+",
                "| 2025-09-01T10:00:00Z | A B | 12.5    |",
                "|                      |     |         |",
                "+----------------------+-----+---------+",
            ],
            "\n{text}"
        );
    }
}
