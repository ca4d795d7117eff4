//! Builds Arrow record batches of Bronze rows (and of quarantined records) from parsed
//! records, with type coercion, rescue of misfits, and schema evolution mid-stream.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::record_batch::RecordBatch;
use medallion_config::ColumnType;

use crate::json::{self, Value, write_json_string};
use crate::schema::{BronzeSchema, infer_json, quarantine_schema};

/// Per-run constants stamped on every row.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// `_ingested_at`, microseconds since the epoch (UTC).
    pub ingested_at_us: i64,
    /// `_run_id`.
    pub run_id: Arc<str>,
}

/// One column's builder.
enum ColumnBuilder {
    Utf8(StringBuilder),
    Bool(BooleanBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(kind: ColumnType, capacity: usize) -> Self {
        match kind {
            ColumnType::String | ColumnType::Json => {
                Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            ColumnType::Boolean => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Int => Self::I32(Int32Builder::with_capacity(capacity)),
            ColumnType::Long => Self::I64(Int64Builder::with_capacity(capacity)),
            ColumnType::Double => Self::F64(Float64Builder::with_capacity(capacity)),
            ColumnType::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::Timestamp => {
                Self::Ts(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Utf8(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Ts(b) => b.append_null(),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        for _ in 0..n {
            self.append_null();
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Ts(b) => Arc::new(b.finish()),
        }
    }

    /// Appends a JSON value if it fits the column; `false` when it does not (nothing appended).
    fn append_json(&mut self, kind: ColumnType, value: &Value<'_>, scratch: &mut String) -> bool {
        match (self, value) {
            (b, Value::Null) => {
                b.append_null();
                true
            }
            (Self::Utf8(b), v) if kind == ColumnType::Json => {
                scratch.clear();
                v.to_json(scratch);
                b.append_value(scratch.as_str());
                true
            }
            (Self::Utf8(b), Value::Str(s)) => {
                b.append_value(s);
                true
            }
            (Self::Utf8(b), Value::Number(n)) => {
                b.append_value(n);
                true
            }
            (Self::Utf8(b), Value::Bool(x)) => {
                b.append_value(if *x { "true" } else { "false" });
                true
            }
            (Self::Bool(b), Value::Bool(x)) => {
                b.append_value(*x);
                true
            }
            (Self::I64(b), Value::Number(n)) => n.parse::<i64>().map(|v| b.append_value(v)).is_ok(),
            (Self::I32(b), Value::Number(n)) => n.parse::<i32>().map(|v| b.append_value(v)).is_ok(),
            (Self::F64(b), Value::Number(n)) => match n.parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    b.append_value(v);
                    true
                }
                _ => false,
            },
            (Self::Date(b), Value::Str(s)) => parse_date(s).map(|d| b.append_value(d)).is_some(),
            (Self::Ts(b), Value::Str(s)) => parse_timestamp(s).map(|t| b.append_value(t)).is_some(),
            _ => false,
        }
    }

    /// Appends a text value (CSV) if it parses as the column's type.
    fn append_text(&mut self, kind: ColumnType, text: &str) -> bool {
        match self {
            Self::Utf8(b) if kind == ColumnType::Json => {
                let mut s = String::with_capacity(text.len() + 2);
                write_json_string(text, &mut s);
                b.append_value(s);
                true
            }
            Self::Utf8(b) => {
                b.append_value(text);
                true
            }
            Self::Bool(b) => match text.trim().to_ascii_lowercase().as_str() {
                "true" => {
                    b.append_value(true);
                    true
                }
                "false" => {
                    b.append_value(false);
                    true
                }
                _ => false,
            },
            Self::I64(b) => text
                .trim()
                .parse::<i64>()
                .map(|v| b.append_value(v))
                .is_ok(),
            Self::I32(b) => text
                .trim()
                .parse::<i32>()
                .map(|v| b.append_value(v))
                .is_ok(),
            Self::F64(b) => match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => {
                    b.append_value(v);
                    true
                }
                _ => false,
            },
            Self::Date(b) => parse_date(text.trim()).map(|d| b.append_value(d)).is_some(),
            Self::Ts(b) => parse_timestamp(text.trim())
                .map(|t| b.append_value(t))
                .is_some(),
        }
    }
}

/// Days since the epoch of a `YYYY-MM-DD` date.
fn parse_date(s: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    (d - NaiveDate::from_ymd_opt(1970, 1, 1)?)
        .num_days()
        .try_into()
        .ok()
}

/// Microseconds since the epoch of an RFC 3339 instant or a `YYYY-MM-DD HH:MM:SS[.f]` UTC time.
fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

/// What a source file's rows turn into: a batch of Bronze rows.
pub struct RowsBuilder {
    schema: BronzeSchema,
    infer: bool,
    columns: Vec<ColumnBuilder>,
    /// Row generation at which each column was last set, to find unset columns and
    /// repeated keys.
    set_in: Vec<u64>,
    generation: u64,
    rescued: StringBuilder,
    rescue: String,
    source_file: StringBuilder,
    source_line: Int64Builder,
    ingested_at: TimestampMicrosecondBuilder,
    run_id: StringBuilder,
    stamp: Stamp,
    file: Arc<str>,
    rows: usize,
    bytes: usize,
    rescued_rows: u64,
    scratch: String,
    /// Column index of each member position in the previous row: most feeds write their
    /// fields in the same order, so this usually avoids hashing the key.
    predicted: Vec<usize>,
}

impl RowsBuilder {
    /// A builder for rows of `schema`; `infer` adds undeclared fields as new columns.
    pub fn new(schema: BronzeSchema, infer: bool, stamp: Stamp) -> Self {
        let columns = schema
            .columns()
            .iter()
            .map(|c| ColumnBuilder::new(c.kind, 1024))
            .collect::<Vec<_>>();
        let n = columns.len();
        Self {
            schema,
            infer,
            columns,
            set_in: vec![0; n],
            generation: 0,
            rescued: StringBuilder::new(),
            rescue: String::new(),
            source_file: StringBuilder::new(),
            source_line: Int64Builder::new(),
            ingested_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            run_id: StringBuilder::new(),
            stamp,
            file: Arc::from(""),
            rows: 0,
            bytes: 0,
            rescued_rows: 0,
            scratch: String::new(),
            predicted: Vec::new(),
        }
    }

    /// Sets the landed file the next rows come from.
    pub fn set_file(&mut self, file: &str) {
        self.file = Arc::from(file);
    }

    /// The schema so far (grows when fields are inferred).
    pub fn schema(&self) -> &BronzeSchema {
        &self.schema
    }

    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Rows so far that kept a value in `_rescued`.
    pub fn rescued_rows(&self) -> u64 {
        self.rescued_rows
    }

    /// Approximate bytes of input buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    fn column_for(&mut self, position: usize, key: &str, value: &Value<'_>) -> Option<usize> {
        if let Some(&i) = self.predicted.get(position)
            && self.schema.columns()[i].name == key
        {
            return Some(i);
        }
        let found = self.schema.position(key).or_else(|| {
            if !self.infer || !self.schema.can_add(key) {
                return None;
            }
            let kind = infer_json(value)?;
            let i = self.schema.add(key, kind);
            let mut b = ColumnBuilder::new(kind, 1024);
            b.append_nulls(self.rows);
            self.columns.push(b);
            self.set_in.push(0);
            Some(i)
        })?;
        if self.predicted.len() <= position {
            self.predicted.resize(position + 1, usize::MAX);
        }
        self.predicted[position] = found;
        Some(found)
    }

    fn rescue_value(&mut self, key: &str, value: &Value<'_>) {
        self.rescue
            .push(if self.rescue.is_empty() { '{' } else { ',' });
        write_json_string(key, &mut self.rescue);
        self.rescue.push(':');
        value.to_json(&mut self.rescue);
    }

    fn rescue_text(&mut self, key: &str, text: &str) {
        self.rescue
            .push(if self.rescue.is_empty() { '{' } else { ',' });
        write_json_string(key, &mut self.rescue);
        self.rescue.push(':');
        write_json_string(text, &mut self.rescue);
    }

    /// Adds one NDJSON line as a row; a line that is not one JSON object is returned as an
    /// error and adds nothing.
    pub fn add_json_line(&mut self, line: &[u8], line_no: i64) -> Result<(), json::JsonError> {
        let mut members: Vec<(Cow<'_, str>, Value<'_>)> =
            Vec::with_capacity(self.predicted.len().max(8));
        json::parse_object(line, |k, v| members.push((k, v)))?;
        self.generation += 1;
        let generation = self.generation;
        for (position, (key, value)) in members.iter().enumerate() {
            let Some(i) = self.column_for(position, key, value) else {
                if !matches!(value, Value::Null) {
                    self.rescue_value(key, value);
                }
                continue;
            };
            if self.set_in[i] == generation {
                // The same key twice in one object: the first is the column's value.
                self.rescue_value(key, value);
                continue;
            }
            let kind = self.schema.columns()[i].kind;
            if self.columns[i].append_json(kind, value, &mut self.scratch) {
                self.set_in[i] = generation;
            } else {
                self.rescue_value(key, value);
            }
        }
        self.finish_row(line_no, line.len());
        Ok(())
    }

    /// Adds one CSV record: `(column name, field)` pairs in header order; `None` is NULL.
    pub fn add_text_record(&mut self, fields: &[(&str, Option<&str>)], line_no: i64, bytes: usize) {
        self.generation += 1;
        let generation = self.generation;
        for (position, (key, text)) in fields.iter().enumerate() {
            let as_value = Value::Str(Cow::Borrowed(text.unwrap_or("")));
            let Some(i) = self.column_for(position, key, &as_value) else {
                if let Some(t) = text {
                    self.rescue_text(key, t);
                }
                continue;
            };
            if self.set_in[i] == generation {
                if let Some(t) = text {
                    self.rescue_text(key, t);
                }
                continue;
            }
            let kind = self.schema.columns()[i].kind;
            let fits = match text {
                None => {
                    self.columns[i].append_null();
                    true
                }
                Some(t) => self.columns[i].append_text(kind, t),
            };
            if fits {
                self.set_in[i] = generation;
            } else if let Some(t) = text {
                self.rescue_text(key, t);
            }
        }
        self.finish_row(line_no, bytes);
    }

    fn finish_row(&mut self, line_no: i64, bytes: usize) {
        let generation = self.generation;
        for (b, set) in self.columns.iter_mut().zip(&self.set_in) {
            if *set != generation {
                b.append_null();
            }
        }
        if self.rescue.is_empty() {
            self.rescued.append_null();
        } else {
            self.rescue.push('}');
            self.rescued.append_value(&self.rescue);
            self.rescued_rows += 1;
            self.rescue.clear();
        }
        self.source_file.append_value(&*self.file);
        self.source_line.append_value(line_no);
        self.ingested_at.append_value(self.stamp.ingested_at_us);
        self.run_id.append_value(&*self.stamp.run_id);
        self.rows += 1;
        self.bytes += bytes;
    }

    /// The buffered rows as a batch (the schema as it is now); the builder is emptied.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let data: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        let at = self.schema.metadata_position();
        let mut arrays: Vec<ArrayRef> = data[..at].to_vec();
        arrays.push(Arc::new(self.rescued.finish()));
        arrays.push(Arc::new(self.source_file.finish()));
        arrays.push(Arc::new(self.source_line.finish()));
        arrays.push(Arc::new(self.ingested_at.finish()));
        arrays.push(Arc::new(self.run_id.finish()));
        arrays.extend(data[at..].iter().cloned());
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(self.schema.arrow(), arrays)
    }
}

/// Quarantined records of one batch.
pub struct QuarantineBuilder {
    source_file: StringBuilder,
    source_line: Int64Builder,
    raw: BinaryBuilder,
    error: StringBuilder,
    ingested_at: TimestampMicrosecondBuilder,
    run_id: StringBuilder,
    stamp: Stamp,
    rows: usize,
}

impl QuarantineBuilder {
    /// An empty builder.
    pub fn new(stamp: Stamp) -> Self {
        Self {
            source_file: StringBuilder::new(),
            source_line: Int64Builder::new(),
            raw: BinaryBuilder::new(),
            error: StringBuilder::new(),
            ingested_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            run_id: StringBuilder::new(),
            stamp,
            rows: 0,
        }
    }

    /// Adds a record that could not be read.
    pub fn add(&mut self, file: &str, line_no: i64, raw: &[u8], error: &str) {
        self.source_file.append_value(file);
        self.source_line.append_value(line_no);
        self.raw.append_value(raw);
        self.error.append_value(error);
        self.ingested_at.append_value(self.stamp.ingested_at_us);
        self.run_id.append_value(&*self.stamp.run_id);
        self.rows += 1;
    }

    /// Records buffered.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The buffered records as a batch; the builder is emptied.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        RecordBatch::try_new(
            quarantine_schema(),
            vec![
                Arc::new(self.source_file.finish()),
                Arc::new(self.source_line.finish()),
                Arc::new(self.raw.finish()),
                Arc::new(self.error.finish()),
                Arc::new(self.ingested_at.finish()),
                Arc::new(self.run_id.finish()),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::util::pretty::pretty_format_batches;
    use medallion_config::{Format, Located, OrderedMap, Source};

    fn source(columns: &[(&str, ColumnType)]) -> Source {
        let columns = OrderedMap(
            columns
                .iter()
                .map(|(n, t)| {
                    (
                        Located::unlocated(medallion_config::ColumnName::new(n).unwrap()),
                        Located::unlocated(*t),
                    )
                })
                .collect(),
        );
        Source {
            format: Located::unlocated(Format::Ndjson),
            path: None,
            columns,
            infer_undeclared: true,
            on_changed_file: Default::default(),
            sharding: Default::default(),
            max_line_bytes: 1 << 20,
            csv: Default::default(),
            description: None,
        }
    }

    fn stamp() -> Stamp {
        Stamp {
            ingested_at_us: 0,
            run_id: Arc::from("r1"),
        }
    }

    #[test]
    fn coerces_rescues_and_infers() {
        let s = source(&[
            ("id", ColumnType::String),
            ("revenue", ColumnType::Double),
            ("n", ColumnType::Long),
            ("props", ColumnType::Json),
        ]);
        let mut b = RowsBuilder::new(BronzeSchema::declared(&s), true, stamp());
        b.set_file("events/a.ndjson");
        b.add_json_line(
            br#"{"id": 123, "revenue": "12.50", "n": 1.5, "props": {"a": [1]}}"#,
            1,
        )
        .unwrap();
        b.add_json_line(
            br#"{"id": "x", "revenue": 3, "device": {"os": "ios"}, "id": "dup", "new": 7}"#,
            2,
        )
        .unwrap();
        assert!(b.add_json_line(b"[1]", 3).is_err());
        b.add_json_line(br#"{"Revenue": 1, "_x": null, "ok": true}"#, 4)
            .unwrap();
        let batch = b.finish().unwrap();
        let text =
            pretty_format_batches(&[batch.project(&[0, 1, 2, 3, 4, 5, 6, 9, 10, 11]).unwrap()])
                .unwrap()
                .to_string();
        let expected = [
            "+-----+---------+---+------------+-----------------------------+-----------------+--------------+---------------+-----+------+",
            "| id  | revenue | n | props      | _rescued                    | _source_file    | _source_line | device        | new | ok   |",
            "+-----+---------+---+------------+-----------------------------+-----------------+--------------+---------------+-----+------+",
            "| 123 |         |   | {\"a\": [1]} | {\"revenue\":\"12.50\",\"n\":1.5} | events/a.ndjson | 1            |               |     |      |",
            "| x   | 3.0     |   |            | {\"id\":\"dup\"}                | events/a.ndjson | 2            | {\"os\": \"ios\"} | 7   |      |",
            "|     |         |   |            | {\"Revenue\":1}               | events/a.ndjson | 4            |               |     | true |",
            "+-----+---------+---+------------+-----------------------------+-----------------+--------------+---------------+-----+------+",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "\n{text}");
    }

    #[test]
    fn csv_text_is_typed_or_rescued() {
        let s = source(&[
            ("date", ColumnType::Date),
            ("spend", ColumnType::Double),
            ("name", ColumnType::String),
        ]);
        let mut b = RowsBuilder::new(BronzeSchema::declared(&s), true, stamp());
        b.add_text_record(
            &[
                ("date", Some("2025-09-01")),
                ("spend", Some("1.5")),
                ("name", Some("A, B")),
            ],
            2,
            20,
        );
        b.add_text_record(
            &[
                ("date", Some("09/01/2025")),
                ("spend", None),
                ("name", Some("")),
            ],
            3,
            20,
        );
        let batch = b.finish().unwrap();
        let text = pretty_format_batches(&[batch.project(&[0, 1, 2, 3]).unwrap()])
            .unwrap()
            .to_string();
        let expected = [
            "+------------+-------+------+-----------------------+",
            "| date       | spend | name | _rescued              |",
            "+------------+-------+------+-----------------------+",
            "| 2025-09-01 | 1.5   | A, B |                       |",
            "|            |       |      | {\"date\":\"09/01/2025\"} |",
            "+------------+-------+------+-----------------------+",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "\n{text}");
    }
}
