//! Reading one landed file into Bronze rows and quarantined records, streaming.
//!
//! Three stages run at once with bounded channels between them, so memory stays bounded
//! whatever the file size: an async task fetches the object's bytes; a blocking thread
//! decompresses, splits and parses them into Arrow batches; the async side encodes the
//! batches into Parquet files (one set of files per landed file).

use std::io::{self, BufRead};
use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::object_store::ObjectStoreExt as _;
use deltalake::kernel::Add;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, ObjectStore};
use futures::StreamExt;
use medallion_config::{CsvOptions, Format, Source};
use medallion_core::{Error, Result};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::discover::LandingFile;
use crate::lines::{ChannelReader, Line, LineReader, decompressed};
use crate::rows::{QuarantineBuilder, RowsBuilder, Stamp};
use crate::schema::BronzeSchema;

/// Rows per Arrow batch handed to the Parquet writer.
const BATCH_ROWS: usize = 64 * 1024;
/// Input bytes per Arrow batch (whichever limit comes first).
const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Bytes per ranged read of a landed file.
const FETCH_BYTES: u64 = 8 * 1024 * 1024;
/// Ranged reads in flight per file.
const FETCH_AHEAD: usize = 3;
/// Quarantined records per batch.
const QUARANTINE_ROWS: usize = 4 * 1024;

/// What reading one landed file found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FileReport {
    /// Path relative to the landing prefix.
    pub path: String,
    /// Size in bytes as landed.
    pub bytes: u64,
    /// Whether the content was gzip.
    pub gzip: bool,
    /// Lines (NDJSON) or records (CSV) read.
    pub lines: u64,
    /// Rows written to Bronze.
    pub rows: u64,
    /// Records written to the quarantine table.
    pub quarantined: u64,
    /// Rows that kept a value in `_rescued`.
    pub rescued: u64,
    /// Uncompressed bytes read.
    pub uncompressed_bytes: u64,
    /// A problem that ended reading early (a truncated gzip stream, an I/O error): the
    /// lines before it are ingested, the incomplete tail is quarantined.
    pub error: Option<String>,
}

/// What the parser sends to the writer.
pub(crate) enum Piece {
    Rows(RecordBatch),
    Quarantine(RecordBatch),
    Done(Box<(FileReport, BronzeSchema)>),
    Failed(String),
}

/// The result of ingesting one file, ready to commit.
pub struct Ingested {
    /// What was read.
    pub report: FileReport,
    /// The schema after this file (new columns inferred).
    pub schema: BronzeSchema,
    /// Parquet files for the Bronze table.
    pub rows: Vec<Add>,
    /// Parquet files for the quarantine table.
    pub quarantine: Vec<Add>,
}

/// Reads `file` and writes its rows (when `write_rows`) and quarantined records (when
/// `write_quarantine`) as Parquet files of the two tables; nothing is committed here.
#[allow(clippy::too_many_arguments)]
pub async fn ingest_file(
    landing: Arc<dyn ObjectStore>,
    file: LandingFile,
    source: Arc<Source>,
    schema: BronzeSchema,
    stamp: Stamp,
    bronze: DeltaTable,
    quarantine: DeltaTable,
    write_quarantine: bool,
) -> Result<Ingested> {
    if source.format.value == Format::Parquet {
        return ingest_parquet(
            landing,
            file,
            source,
            schema,
            stamp,
            bronze,
            quarantine,
            write_quarantine,
        )
        .await;
    }
    // Stage 1: fetch.
    let (bytes_tx, bytes_rx) = mpsc::channel::<io::Result<Bytes>>(2);
    let location = file.location.clone();
    let size = file.size;
    let fetch = tokio::spawn(async move {
        // Ranged reads of a few MiB, a few in flight: few hand-offs to the parser, and
        // on object stores the next ranges download while the current one is parsed.
        let ranges = (0..size)
            .step_by(FETCH_BYTES as usize)
            .map(|start| start..(start + FETCH_BYTES).min(size));
        let mut chunks = futures::stream::iter(ranges)
            .map(|range| {
                let landing = landing.clone();
                let location = location.clone();
                async move { landing.get_range(&location, range).await }
            })
            .buffered(FETCH_AHEAD);
        while let Some(chunk) = chunks.next().await {
            let failed = chunk.is_err();
            if bytes_tx
                .send(chunk.map_err(io::Error::other))
                .await
                .is_err()
                || failed
            {
                return;
            }
        }
    });

    // Stage 2: parse.
    let (piece_tx, piece_rx) = mpsc::channel::<Piece>(2);
    let relative = file.relative.clone();
    let format = source.format.value;
    let csv = source.csv.clone();
    let max_line = usize::try_from(source.max_line_bytes).unwrap_or(usize::MAX);
    let infer = source.infer_undeclared;
    let parse = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader::new(bytes_rx);
        let mut rows = RowsBuilder::new(schema, infer, stamp.clone());
        rows.set_file(&relative);
        let mut q = QuarantineBuilder::new(stamp);
        let mut report = FileReport {
            path: relative.clone(),
            bytes: size,
            ..FileReport::default()
        };
        let outcome = match decompressed(reader) {
            Ok((input, gzip)) => {
                report.gzip = gzip;
                let mut out = Out {
                    tx: &piece_tx,
                    rows: &mut rows,
                    q: &mut q,
                    report: &mut report,
                    file: &relative,
                };
                match format {
                    Format::Csv => read_csv(input, &csv, &mut out),
                    Format::Ndjson => read_ndjson(input, max_line, &mut out),
                    Format::JsonArray => read_json_array(input, max_line, &mut out),
                    Format::Parquet => Err(
                        "Parquet sources are not supported by this version of the engine"
                            .to_string(),
                    ),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let flushed = match outcome {
            Ok(()) => flush(&piece_tx, &mut rows, &mut q, true),
            Err(e) => Err(e),
        };
        match flushed {
            Ok(()) => {
                report.rescued = rows.rescued_rows();
                let schema = rows.schema().clone();
                let _ = piece_tx.blocking_send(Piece::Done(Box::new((report, schema))));
            }
            Err(e) => {
                let _ = piece_tx.blocking_send(Piece::Failed(e));
            }
        }
    });

    let ingested = write_pieces(piece_rx, &file, &bronze, &quarantine, write_quarantine).await;
    let _ = fetch.await;
    parse
        .await
        .map_err(|e| Error::Other(format!("reading `{}` stopped: {e}", file.relative)))?;
    ingested
}

/// Stage 3: encodes the pieces into Parquet files of the two tables and uploads them.
async fn write_pieces(
    mut piece_rx: mpsc::Receiver<Piece>,
    file: &LandingFile,
    bronze: &DeltaTable,
    quarantine: &DeltaTable,
    write_quarantine: bool,
) -> Result<Ingested> {
    let mut rows_writer: Option<RecordBatchWriter> = None;
    let mut q_writer: Option<RecordBatchWriter> = None;
    let mut done = None;
    while let Some(piece) = piece_rx.recv().await {
        match piece {
            Piece::Rows(batch) => {
                let w = match rows_writer.as_mut() {
                    Some(w) => w,
                    None => rows_writer.insert(writer_for(bronze)?),
                };
                w.write_with_mode(batch, WriteMode::MergeSchema)
                    .await
                    .map_err(|e| {
                        Error::Storage(format!("writing Bronze rows of `{}`: {e}", file.relative))
                    })?;
            }
            Piece::Quarantine(batch) => {
                if write_quarantine {
                    let w = match q_writer.as_mut() {
                        Some(w) => w,
                        None => q_writer.insert(writer_for(quarantine)?),
                    };
                    w.write(batch).await.map_err(|e| {
                        Error::Storage(format!("writing quarantine of `{}`: {e}", file.relative))
                    })?;
                }
            }
            Piece::Done(result) => done = Some(*result),
            Piece::Failed(e) => {
                return Err(Error::Other(format!("reading `{}`: {e}", file.relative)));
            }
        }
    }
    let Some((report, schema)) = done else {
        return Err(Error::Other(format!(
            "reading `{}` stopped before its end",
            file.relative
        )));
    };
    let rows = match rows_writer.as_mut() {
        Some(w) => w.flush().await.map_err(|e| Error::Storage(e.to_string()))?,
        None => Vec::new(),
    };
    let quarantine = match q_writer.as_mut() {
        Some(w) => w.flush().await.map_err(|e| Error::Storage(e.to_string()))?,
        None => Vec::new(),
    };
    Ok(Ingested {
        report,
        schema,
        rows,
        quarantine,
    })
}

/// A Parquet source file: row groups are streamed and converted on the async side.
#[allow(clippy::too_many_arguments)]
async fn ingest_parquet(
    landing: Arc<dyn ObjectStore>,
    file: LandingFile,
    source: Arc<Source>,
    mut schema: BronzeSchema,
    stamp: Stamp,
    bronze: DeltaTable,
    quarantine: DeltaTable,
    write_quarantine: bool,
) -> Result<Ingested> {
    let (piece_tx, piece_rx) = mpsc::channel::<Piece>(2);
    let landed = file.clone();
    let (size, relative) = (file.size, file.relative.clone());
    let infer = source.infer_undeclared;
    let producer = tokio::spawn(async move {
        let mut report = FileReport {
            path: relative.clone(),
            bytes: size,
            ..FileReport::default()
        };
        let read =
            crate::parquet_source::read(landing, &landed, &mut schema, infer, &stamp, &piece_tx)
                .await;
        let piece = match read {
            Ok((rows, rescued)) => {
                report.lines = rows;
                report.rows = rows;
                report.rescued = rescued;
                Piece::Done(Box::new((report, schema)))
            }
            Err(e) => Piece::Failed(e),
        };
        let _ = piece_tx.send(piece).await;
    });
    let ingested = write_pieces(piece_rx, &file, &bronze, &quarantine, write_quarantine).await;
    producer
        .await
        .map_err(|e| Error::Other(format!("reading `{}` stopped: {e}", file.relative)))?;
    ingested
}

/// Rows per Parquet row group: small enough that a writer's buffered row group stays a
/// few tens of MB, large enough for good compression and statistics.
const ROW_GROUP_ROWS: usize = 128 * 1024;

fn writer_for(table: &DeltaTable) -> Result<RecordBatchWriter> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    RecordBatchWriter::for_table(table)
        .map(|w| w.with_writer_properties(properties))
        .map_err(|e| Error::Storage(e.to_string()))
}

/// Where the parser puts what it reads.
struct Out<'a> {
    tx: &'a mpsc::Sender<Piece>,
    rows: &'a mut RowsBuilder,
    q: &'a mut QuarantineBuilder,
    report: &'a mut FileReport,
    file: &'a str,
}

impl Out<'_> {
    fn quarantine(&mut self, line: i64, raw: &[u8], error: &str) {
        self.q.add(self.file, line, raw, error);
        self.report.quarantined += 1;
    }

    /// Ends reading early: the incomplete record read so far (if any) is quarantined with
    /// the reason, which also becomes the file's error.
    fn incomplete(&mut self, tail: &[u8], line: i64, what: &str, message: String) {
        if !tail.is_empty() {
            self.report.lines += 1;
            self.quarantine(line, tail, &format!("incomplete last {what}: {message}"));
        }
        self.report.error = Some(message);
    }

    fn maybe_flush(&mut self) -> Result<(), String> {
        if self.rows.len() >= BATCH_ROWS
            || self.rows.buffered_bytes() >= BATCH_BYTES
            || self.q.len() >= QUARANTINE_ROWS
        {
            flush(self.tx, self.rows, self.q, false)?;
        }
        Ok(())
    }
}

fn flush(
    tx: &mpsc::Sender<Piece>,
    rows: &mut RowsBuilder,
    q: &mut QuarantineBuilder,
    all: bool,
) -> Result<(), String> {
    let gone = || "the writer stopped".to_string();
    if !rows.is_empty() && (all || rows.len() >= BATCH_ROWS || rows.buffered_bytes() >= BATCH_BYTES)
    {
        let batch = rows.finish().map_err(|e| e.to_string())?;
        tx.blocking_send(Piece::Rows(batch)).map_err(|_| gone())?;
    }
    if !q.is_empty() && (all || q.len() >= QUARANTINE_ROWS) {
        let batch = q.finish().map_err(|e| e.to_string())?;
        tx.blocking_send(Piece::Quarantine(batch))
            .map_err(|_| gone())?;
    }
    Ok(())
}

/// NDJSON: one JSON object per line; anything else is quarantined.
fn read_ndjson(
    input: Box<dyn BufRead + Send>,
    max_line: usize,
    out: &mut Out<'_>,
) -> Result<(), String> {
    let mut lines = LineReader::new(input, max_line);
    let mut line_no: i64 = 0;
    loop {
        match lines.next_line() {
            Ok(None) => return Ok(()),
            Ok(Some(Line::Complete(bytes))) => {
                line_no += 1;
                out.report.lines += 1;
                out.report.uncompressed_bytes += bytes.len() as u64 + 1;
                match out.rows.add_json_line(bytes, line_no) {
                    Ok(()) => out.report.rows += 1,
                    Err(e) => out.quarantine(line_no, bytes, &e.to_string()),
                }
            }
            Ok(Some(Line::TooLong(prefix, len))) => {
                line_no += 1;
                out.report.lines += 1;
                out.report.uncompressed_bytes += len as u64 + 1;
                out.quarantine(
                    line_no,
                    prefix,
                    &format!("line of {len} bytes is longer than max_line_bytes ({max_line}); its first {max_line} bytes are kept"),
                );
            }
            Err(e) => {
                let (tail, tail_line) = lines.partial();
                out.incomplete(tail, tail_line, "line", read_error(&e));
                return Ok(());
            }
        }
        out.maybe_flush()?;
    }
}

/// A JSON array of objects: each element is a record, numbered from 1. Elements are
/// split while streaming (strings and nesting tracked), so the file is never held whole.
fn read_json_array(
    mut input: Box<dyn BufRead + Send>,
    max: usize,
    out: &mut Out<'_>,
) -> Result<(), String> {
    #[derive(PartialEq)]
    enum State {
        Start,
        BeforeElement,
        InElement,
        Done,
    }
    let mut state = State::Start;
    let mut element: Vec<u8> = Vec::new();
    let mut element_len = 0usize;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut index: i64 = 0;
    let emit = |element: &mut Vec<u8>,
                element_len: &mut usize,
                index: &mut i64,
                out: &mut Out<'_>| {
        *index += 1;
        while element.last().is_some_and(u8::is_ascii_whitespace) {
            element.pop();
        }
        out.report.lines += 1;
        out.report.uncompressed_bytes += *element_len as u64;
        if *element_len > max {
            out.quarantine(*index, element, &format!("array element of {element_len} bytes is longer than max_line_bytes ({max}); its first {max} bytes are kept"));
        } else {
            match out.rows.add_json_line(element, *index) {
                Ok(()) => out.report.rows += 1,
                Err(e) => out.quarantine(*index, element, &e.to_string()),
            }
        }
        element.clear();
        *element_len = 0;
    };
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) => {
                out.incomplete(&element, index + 1, "element", read_error(&e));
                return Ok(());
            }
        };
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        for (at, &b) in chunk.iter().enumerate() {
            match state {
                State::Start | State::Done if b.is_ascii_whitespace() => {}
                State::Start if b == b'[' => state = State::BeforeElement,
                State::Start | State::Done => {
                    let what = if state == State::Start {
                        "does not start with `[`"
                    } else {
                        "has data after the closing `]`"
                    };
                    out.report.lines += 1;
                    out.quarantine(
                        index + 1,
                        &chunk[at..chunk.len().min(at + max)],
                        &format!("not a JSON array: the file {what}"),
                    );
                    out.report.error = Some(format!("not a JSON array: the file {what}"));
                    return Ok(());
                }
                State::BeforeElement if b.is_ascii_whitespace() => {}
                State::BeforeElement if b == b']' => state = State::Done,
                State::BeforeElement | State::InElement => {
                    state = State::InElement;
                    if in_string {
                        if escaped {
                            escaped = false;
                        } else if b == b'\\' {
                            escaped = true;
                        } else if b == b'"' {
                            in_string = false;
                        }
                    } else {
                        match b {
                            b'"' => in_string = true,
                            b'{' | b'[' => depth += 1,
                            b'}' | b']' if depth > 0 => depth -= 1,
                            b']' => {
                                emit(&mut element, &mut element_len, &mut index, out);
                                state = State::Done;
                                continue;
                            }
                            b',' if depth == 0 => {
                                emit(&mut element, &mut element_len, &mut index, out);
                                state = State::BeforeElement;
                                continue;
                            }
                            _ => {}
                        }
                    }
                    element_len += 1;
                    if element.len() < max {
                        element.push(b);
                    }
                }
            }
        }
        input.consume(n);
        out.maybe_flush()?;
    }
    // An empty file holds no records; anything else must close its array.
    if state != State::Done && state != State::Start {
        let message = "the file ends before the array is closed (truncated?)".to_string();
        out.incomplete(&element, index + 1, "element", message);
    }
    Ok(())
}

fn read_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => format!("the compressed stream is truncated ({e})"),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            format!("the compressed stream is corrupt ({e})")
        }
        _ => format!("read failed: {e}"),
    }
}

/// CSV with a header line; records that cannot be read are quarantined.
fn read_csv(
    input: Box<dyn BufRead + Send>,
    options: &CsvOptions,
    out: &mut Out<'_>,
) -> Result<(), String> {
    let delimiter = u8::try_from(options.delimiter)
        .map_err(|_| "the CSV delimiter must be one ASCII character".to_string())?;
    let quote = u8::try_from(options.quote)
        .map_err(|_| "the CSV quote must be one ASCII character".to_string())?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quote(quote)
        .from_reader(input);
    let mut header: Option<Vec<String>> = None;
    let mut record = csv::ByteRecord::new();
    loop {
        let line_no = i64::try_from(reader.position().line()).unwrap_or(i64::MAX);
        // Every byte the reader consumed, quotes, blank lines and line ends included.
        let before = reader.position().byte();
        let read = reader.read_byte_record(&mut record);
        out.report.uncompressed_bytes += reader.position().byte().saturating_sub(before);
        match read {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                let message = match e.kind() {
                    csv::ErrorKind::Io(io) => read_error(io),
                    _ => e.to_string(),
                };
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    out.report.error = Some(message);
                    return Ok(());
                }
                out.report.lines += 1;
                out.quarantine(line_no, &[], &format!("unreadable CSV record: {message}"));
                continue;
            }
        }
        let start_line = record
            .position()
            .map_or(line_no, |p| i64::try_from(p.line()).unwrap_or(i64::MAX));
        let raw_len = record.as_slice().len() + record.len();
        let Some(names) = header.as_ref() else {
            if options.header {
                header = Some(
                    record
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).trim().to_string())
                        .collect(),
                );
                continue;
            }
            header = Some((1..=record.len()).map(|i| format!("column_{i}")).collect());
            continue;
        };
        out.report.lines += 1;
        if record.len() != names.len() {
            let raw = reencode(&record, delimiter);
            out.quarantine(
                start_line,
                &raw,
                &format!(
                    "CSV record has {} fields, the header has {}",
                    record.len(),
                    names.len()
                ),
            );
            out.maybe_flush()?;
            continue;
        }
        let mut fields: Vec<(&str, Option<&str>)> = Vec::with_capacity(names.len());
        let mut bad = None;
        for (i, (name, value)) in names.iter().zip(record.iter()).enumerate() {
            match std::str::from_utf8(value) {
                Ok(text) if options.null_values.iter().any(|n| n == text) => {
                    fields.push((name, None))
                }
                Ok(text) => fields.push((name, Some(text))),
                Err(_) => {
                    bad = Some(format!("field {} (`{name}`) is not valid UTF-8", i + 1));
                    break;
                }
            }
        }
        if let Some(error) = bad {
            let raw = reencode(&record, delimiter);
            out.quarantine(start_line, &raw, &error);
        } else {
            out.rows.add_text_record(&fields, start_line, raw_len);
            out.report.rows += 1;
        }
        out.maybe_flush()?;
    }
}

/// A record's bytes as CSV again (the closest thing to its raw line that a streaming CSV
/// reader keeps).
fn reencode(record: &csv::ByteRecord, delimiter: u8) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(Vec::new());
    let _ = w.write_byte_record(record);
    let mut bytes = w.into_inner().unwrap_or_default();
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}
