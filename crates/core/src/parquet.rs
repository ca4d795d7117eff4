//! Reading Parquet files through `object_store` with ranged reads: the footer first, then
//! only the column chunks a reader asks for. Used for Parquet sources (Bronze) and for the
//! Bronze files a Silver run consumes.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::datafusion::object_store::ObjectStoreExt as _;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderOptions;
use deltalake::parquet::arrow::async_reader::AsyncFileReader;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use deltalake::{ObjectStore, Path};
use futures::FutureExt;
use futures::future::BoxFuture;

/// A Parquet file in an object store, read by range.
#[derive(Debug, Clone)]
pub struct StoreReader {
    /// The store holding the file.
    pub store: Arc<dyn ObjectStore>,
    /// The file's path in the store.
    pub location: Path,
    /// The file's size in bytes.
    pub size: u64,
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, deltalake::parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.location, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, deltalake::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
