//! The object store side: opening `storage.url`, and where each object lives in it.
//!
//! Objects of record data are named `<prefix>/data/<uuid>`, by an id the broker picks before
//! writing; PostgreSQL learns of an object only in the transaction that makes its batches
//! visible, so an object written by a broker that died before that commit is never read, and
//! is removed by the orphan sweep.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use uuid::Uuid;

use crate::error::ClusterError;

/// How long one object store request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The object store named by `storage.url`.
pub(crate) struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl Objects {
    /// Opens the store named by `url`, reading credentials from the environment as the
    /// cloud's own tools do (`AWS_*` for S3, `GOOGLE_*` for GCS, `AZURE_*` for Azure), then
    /// writes, reads and deletes a probe object so that a wrong bucket, endpoint or key is
    /// found now rather than at the first produce.
    pub(crate) async fn open(url: &str) -> Result<Objects, ClusterError> {
        let (store, prefix) = build(url).map_err(|reason| {
            ClusterError::Startup(format!("storage.url {url} cannot be used: {reason}"))
        })?;
        let objects = Objects { store, prefix };
        objects.probe().await.map_err(|reason| {
            ClusterError::Startup(format!(
                "cannot write to the object store at {url} (storage.url): {reason}"
            ))
        })?;
        Ok(objects)
    }

    async fn probe(&self) -> Result<(), String> {
        // A listing finds a missing bucket even on servers that make one on the first write.
        timed(self.store.list_with_delimiter(Some(&self.prefix)))
            .await
            .map_err(|e| e.to_string())?;
        let path = self
            .prefix
            .clone()
            .join("_partita")
            .join(format!("probe-{}", Uuid::new_v4()));
        let body = Bytes::from_static(b"partita");
        timed(self.store.put(&path, PutPayload::from(body.clone())))
            .await
            .map_err(|e| e.to_string())?;
        let read = timed(self.store.get_range(&path, 0..body.len() as u64))
            .await
            .map_err(|e| e.to_string())?;
        if read != body {
            return Err("an object read back differs from what was written".into());
        }
        timed(self.store.delete(&path))
            .await
            .map_err(|e| e.to_string())
    }

    /// Where the object of record data `id` lives.
    pub(crate) fn data_path(&self, id: Uuid) -> Path {
        self.prefix.clone().join("data").join(id.to_string())
    }

    /// Writes a whole object.
    pub(crate) async fn put(&self, id: Uuid, body: Bytes) -> Result<(), ClusterError> {
        timed(self.store.put(&self.data_path(id), PutPayload::from(body))).await?;
        Ok(())
    }

    /// Reads `len` bytes of an object from `position`.
    pub(crate) async fn read(
        &self,
        id: Uuid,
        position: u64,
        len: u64,
    ) -> Result<Bytes, ClusterError> {
        Ok(timed(
            self.store
                .get_range(&self.data_path(id), position..position + len),
        )
        .await?)
    }

    /// Reads a whole object.
    pub(crate) async fn get(&self, id: Uuid) -> Result<Bytes, ClusterError> {
        let path = self.data_path(id);
        let result = timed(self.store.get(&path)).await?;
        Ok(timed(result.bytes()).await?)
    }

    /// Deletes an object; one already gone counts as deleted.
    pub(crate) async fn delete(&self, id: Uuid) -> Result<(), ClusterError> {
        match timed(self.store.delete(&self.data_path(id))).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Every object of record data: its id and when it was written (ms since the epoch).
    pub(crate) async fn list_data(&self) -> Result<Vec<(Uuid, i64)>, ClusterError> {
        use futures_util::StreamExt;
        let prefix = self.prefix.clone().join("data");
        let mut listing = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = tokio::time::timeout(REQUEST_TIMEOUT, listing.next())
            .await
            .map_err(|_| ClusterError::Objects("listing timed out".into()))?
        {
            let meta = meta?;
            let Some(id) = meta
                .location
                .filename()
                .and_then(|name| Uuid::parse_str(name).ok())
            else {
                continue;
            };
            out.push((id, meta.last_modified.timestamp_millis()));
        }
        Ok(out)
    }
}

/// A request bounded by [`REQUEST_TIMEOUT`], so that an unreachable store fails instead of
/// hanging.
async fn timed<T>(
    request: impl std::future::Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result,
        Err(_) => Err(object_store::Error::Generic {
            store: "storage.url",
            source: "request timed out".into(),
        }),
    }
}

/// The store and the prefix within it that `url` names.
fn build(url: &str) -> Result<(Arc<dyn ObjectStore>, Path), String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let prefix_of = |path: &str| {
        Path::parse(path.trim_matches('/')).map_err(|e| format!("bad path in the URL: {e}"))
    };
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "az" | "azure" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(|e| e.to_string())?,
        ),
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|_| "not a local path".to_string())?;
            if !dir.is_dir() {
                return Err(format!("the directory {} does not exist", dir.display()));
            }
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| e.to_string())?;
            return Ok((Arc::new(store), Path::default()));
        }
        other => {
            return Err(format!(
                "unknown scheme '{other}' (s3://, gs://, az:// or file://)"
            ))
        }
    };
    Ok((store, prefix_of(parsed.path())?))
}
