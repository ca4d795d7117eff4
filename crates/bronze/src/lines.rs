//! Reading landed bytes: a blocking `Read` over an async byte stream, gzip detected from
//! the content, and lines split exactly as the spec says (on `\n`, a trailing `\r`
//! stripped, no line after a final `\n`), with a bound on line length so that one huge
//! line cannot take the memory.

use std::io::{self, BufRead, BufReader, Read};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use tokio::sync::mpsc;

/// A blocking reader over chunks sent by an async task (use from a blocking thread only).
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    /// Reads the chunks `rx` delivers, in order, until the sender is dropped.
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Wraps `input` in a gzip decoder when it starts with the gzip magic bytes; says which.
pub fn decompressed(
    input: impl Read + Send + 'static,
) -> io::Result<(Box<dyn BufRead + Send>, bool)> {
    let mut buffered = BufReader::with_capacity(1 << 20, input);
    let head = buffered.fill_buf()?;
    let gzip = head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b;
    if gzip {
        Ok((
            Box::new(BufReader::with_capacity(
                1 << 20,
                MultiGzDecoder::new(buffered),
            )),
            true,
        ))
    } else {
        Ok((Box::new(buffered), false))
    }
}

/// One line as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes, without the `\n` (and a `\r` before it).
    Complete(&'a [u8]),
    /// A line longer than the limit: its first `limit` bytes, and its full length.
    TooLong(&'a [u8], usize),
}

/// Splits a byte stream into lines, numbering them from 1. A line that lies whole in the
/// reader's buffer is returned without copying.
pub struct LineReader<R> {
    input: R,
    buf: Vec<u8>,
    max: usize,
    line_no: i64,
    /// Bytes of the input buffer to consume before reading on (the line returned last).
    pending: usize,
    done: bool,
}

impl<R: BufRead> LineReader<R> {
    /// Lines of `input`, each at most `max` bytes kept.
    pub fn new(input: R, max: usize) -> Self {
        Self {
            input,
            buf: Vec::new(),
            max,
            line_no: 0,
            pending: 0,
            done: false,
        }
    }

    /// The bytes of the line being read when an error stopped reading (a truncated tail).
    pub fn partial(&self) -> (&[u8], i64) {
        (&self.buf, self.line_no + 1)
    }

    /// The next line, `None` at the end. An I/O or decompression error leaves the bytes
    /// read so far of the current line in [`Self::partial`].
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        if self.pending > 0 {
            self.input.consume(self.pending);
            self.pending = 0;
        }
        if self.done {
            return Ok(None);
        }
        self.buf.clear();
        // Fast path: the whole line is in the buffer.
        let whole = {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                self.done = true;
                return Ok(None);
            }
            memchr::memchr(b'\n', chunk).filter(|&i| i <= self.max)
        };
        if let Some(i) = whole {
            self.line_no += 1;
            self.pending = i + 1;
            // Buffered data is returned again without reading.
            let chunk = self.input.fill_buf()?;
            let line = &chunk[..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Ok(Some(Line::Complete(line)));
        }
        // Slow path: the line spans buffer refills (or is too long): copy it.
        let mut total = 0usize;
        loop {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                self.done = true;
                break;
            }
            let (take, found) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let room = self.max.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&chunk[..take.min(room)]);
            total += take;
            self.input.consume(take + usize::from(found));
            if found {
                break;
            }
        }
        self.line_no += 1;
        if total > self.max {
            return Ok(Some(Line::TooLong(&self.buf, total)));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line::Complete(&self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(BufReader::new(input), max);
        let mut out = Vec::new();
        while let Some(line) = r.next_line().unwrap() {
            out.push(match line {
                Line::Complete(b) => String::from_utf8_lossy(b).into_owned(),
                Line::TooLong(b, n) => format!("TOO LONG {n}: {}", String::from_utf8_lossy(b)),
            });
        }
        out
    }

    #[test]
    fn splits_like_the_spec() {
        assert_eq!(lines(b"a\nb\r\n\nc", 100), ["a", "b", "", "c"]);
        assert_eq!(lines(b"a\n", 100), ["a"]);
        assert_eq!(lines(b"", 100), Vec::<String>::new());
        assert_eq!(lines(b"\n", 100), [""]);
        assert_eq!(lines(b"abcdef\nxy\n", 3), ["TOO LONG 6: abc", "xy"]);
    }

    #[test]
    fn truncated_gzip_keeps_complete_lines_and_the_tail() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3").unwrap();
        let bytes = gz.finish().unwrap();
        let cut = bytes[..bytes.len() - 6].to_vec();
        let (input, gzip) = decompressed(io::Cursor::new(cut)).unwrap();
        assert!(gzip);
        let mut r = LineReader::new(input, 1 << 20);
        let mut got = Vec::new();
        let err = loop {
            match r.next_line() {
                Ok(Some(Line::Complete(b))) => got.push(b.to_vec()),
                Ok(Some(Line::TooLong(..))) => unreachable!(),
                Ok(None) => panic!("a truncated stream must fail"),
                Err(e) => break e,
            }
        };
        assert_eq!(got, [b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]);
        let (tail, line) = r.partial();
        assert_eq!(line, 3);
        assert!(b"{\"a\":3".starts_with(tail), "{tail:?}");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }
}
