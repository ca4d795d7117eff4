//! Output files: plain or deterministic gzip, with I/O errors naming the path.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::Error;

/// Write buffer per output file.
const BUFFER_BYTES: usize = 1 << 20;
/// Gzip header OS byte for "unknown", fixed so output is the same on every platform.
const GZIP_OS_UNKNOWN: u8 = 255;

/// Attaches the path to an I/O error.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the parent directories of `path`.
pub(crate) fn create_parent(path: &Path) -> Result<(), Error> {
    match path.parent() {
        Some(dir) => fs::create_dir_all(dir).map_err(io_error(dir)),
        None => Ok(()),
    }
}

/// Writes a whole small file.
pub(crate) fn write_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    create_parent(path)?;
    fs::write(path, contents).map_err(io_error(path))
}

enum Inner {
    Plain(BufWriter<File>),
    Gzip(Box<BufWriter<GzEncoder<File>>>),
}

/// A file being written line by line.
pub(crate) struct Sink {
    path: PathBuf,
    inner: Inner,
}

impl Sink {
    /// Creates `path` (and its directories); `gzip` compresses the content
    /// with a fixed header (no name, mtime 0), so equal input gives equal bytes.
    pub(crate) fn create(path: PathBuf, gzip: bool) -> Result<Self, Error> {
        create_parent(&path)?;
        let file = File::create(&path).map_err(io_error(&path))?;
        let inner = if gzip {
            let encoder = GzBuilder::new()
                .mtime(0)
                .operating_system(GZIP_OS_UNKNOWN)
                .write(file, Compression::fast());
            Inner::Gzip(Box::new(BufWriter::with_capacity(BUFFER_BYTES, encoder)))
        } else {
            Inner::Plain(BufWriter::with_capacity(BUFFER_BYTES, file))
        };
        Ok(Self { path, inner })
    }

    /// Appends bytes.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let result = match &mut self.inner {
            Inner::Plain(w) => w.write_all(bytes),
            Inner::Gzip(w) => w.write_all(bytes),
        };
        result.map_err(io_error(&self.path))
    }

    /// Flushes and closes the file (writing the gzip trailer).
    pub(crate) fn finish(self) -> Result<(), Error> {
        let path = self.path;
        match self.inner {
            Inner::Plain(w) => {
                let file = w
                    .into_inner()
                    .map_err(|e| io_error(&path)(e.into_error()))?;
                drop(file);
            }
            Inner::Gzip(w) => {
                let encoder = w
                    .into_inner()
                    .map_err(|e| io_error(&path)(e.into_error()))?;
                encoder.finish().map_err(io_error(&path))?;
            }
        }
        Ok(())
    }
}
