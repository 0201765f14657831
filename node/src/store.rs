//! Object storage for blobs: a local directory (fsync'd) or an S3-compatible service.
//!
//! Blobs are content-addressed ([`Hash::blob_key`]) and written once: a conditional create,
//! so two writers of the same content never overwrite each other, and a blob that is already
//! there is skipped. Reads are verified against the hash before they are returned.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart};

use crate::bundle::Hash;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "store URL {url:?}: {why}. Use a directory path, file:///path, or s3://bucket?endpoint=http://host:port&region=us-east-1"
    )]
    BadUrl { url: String, why: String },
    #[error(
        "object store {url} does not answer: {message}. Check the endpoint, bucket and AWS_* credentials"
    )]
    Unreachable { url: String, message: String },
    #[error("object store {url}: {key}: {message}")]
    Io {
        url: String,
        key: String,
        message: String,
    },
    #[error("blob {key} in {url} is missing")]
    Missing { url: String, key: String },
    /// A stored blob whose content does not match its key. It was moved aside to
    /// `quarantine/<key>` and is never served; pushing the bundle again stores it afresh.
    #[error(
        "blob {key} in {url} is corrupt (its content hashes to {got}); it was moved to quarantine/{key}. Push or drop the bundle again to restore it"
    )]
    Corrupt { url: String, key: String, got: Hash },
    /// A write whose bytes do not hash to the key the caller gave: nothing was stored.
    #[error(
        "refused to store {key} in {url}: the bytes given hash to {got}, so the file changed or its hash is wrong"
    )]
    Mismatch { url: String, key: String, got: Hash },
}

impl crate::retry::Classify for StoreError {
    fn class(&self) -> crate::retry::ErrorClass {
        use crate::retry::ErrorClass::{Permanent, Transient};
        match self {
            StoreError::Unreachable { .. } | StoreError::Io { .. } => Transient,
            StoreError::BadUrl { .. }
            | StoreError::Missing { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Mismatch { .. } => Permanent,
        }
    }
}

/// Where blobs live.
#[derive(Clone, Debug)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    url: String,
    /// The root directory when the store is local: blobs can then be hard-linked in.
    local_root: Option<PathBuf>,
}

/// Where corrupt blobs are moved when a read finds them (`quarantine/<blob key>`).
pub const QUARANTINE: &str = "quarantine";
/// Files up to this size go up in one conditional put; larger ones in parts.
pub const MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
/// Size of one multipart part, and of each read from the file while uploading.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one file in flight at once (bounds memory to about this many parts).
const PART_CONCURRENCY: usize = 2;

/// Requests in flight at once when one call asks about many blobs of a remote store.
const HEAD_CONCURRENCY: usize = 32;
/// Uploads in flight at once when one call stores many blobs in a remote store.
const PUT_CONCURRENCY: usize = 8;

/// How long [`BlobStore::check`] waits for the store to answer at start-up.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

impl BlobStore {
    /// A local directory; every write is fsync'd.
    pub fn local(root: &Path) -> Result<Self, StoreError> {
        let url = format!("file://{}", root.display());
        std::fs::create_dir_all(root).map_err(|e| StoreError::BadUrl {
            url: url.clone(),
            why: e.to_string(),
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)
            .map_err(|e| StoreError::BadUrl {
                url: url.clone(),
                why: e.to_string(),
            })?
            .with_fsync(true);
        Ok(Self {
            inner: Arc::new(fs),
            url,
            local_root: Some(root.to_owned()),
        })
    }

    /// Opens `url`: a directory path, `file:///path`, or `s3://bucket?endpoint=…&region=…`
    /// (credentials from the usual `AWS_*` variables). Transient S3 errors are retried with
    /// backoff by the client.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        if let Some(path) = url.strip_prefix("file://") {
            return Self::local(Path::new(path));
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            if url.contains("://") {
                return Err(bad("unknown scheme"));
            }
            return Self::local(Path::new(url));
        };
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains('/') {
            return Err(bad("the bucket name is missing or contains '/'"));
        }
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(object_store::RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
                ..Default::default()
            });
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad("query parameters look like key=value"))?;
            builder = match k {
                "endpoint" => builder
                    .with_endpoint(v)
                    .with_allow_http(v.starts_with("http://"))
                    .with_virtual_hosted_style_request(false),
                "region" => builder.with_region(v),
                _ => {
                    return Err(bad(&format!(
                        "unknown parameter {k:?}; known: endpoint, region"
                    )));
                }
            };
        }
        let s3 = builder.build().map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            inner: Arc::new(s3),
            url: url.to_owned(),
            local_root: None,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks the store something once, so a wrong endpoint, bucket or credential is an error at
    /// start-up rather than at the first bundle.
    pub async fn check(&self) -> Result<(), StoreError> {
        let probe = ObjectPath::from("plotter2-store-check");
        let unreachable = |message: String| StoreError::Unreachable {
            url: self.url.clone(),
            message,
        };
        // A missing bucket answers a HEAD of a key like a missing key; a listing tells them
        // apart.
        let ask = async {
            match self.inner.head(&probe).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            self.inner
                .list_with_delimiter(Some(&ObjectPath::from("blobs")))
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(CHECK_TIMEOUT, ask).await {
            Err(_) => Err(unreachable(format!("no answer within {CHECK_TIMEOUT:?}"))),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
        }
    }

    pub async fn has_blob(&self, hash: &Hash) -> Result<bool, StoreError> {
        let key = hash.blob_key();
        match self.inner.head(&ObjectPath::from(key.as_str())).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.io(&key, e)),
        }
    }

    /// A [`BlobLinker`] into this store, when it is local.
    pub fn local_linker(&self) -> Option<BlobLinker> {
        self.local_root.clone().map(|root| BlobLinker { root })
    }

    /// [`BlobStore::has_blob`] of each of `hashes`, in their order. A local store answers from
    /// one blocking pass of `stat`s (a bundle may hold a million blobs); S3 with concurrent
    /// `HEAD`s.
    pub async fn has_blobs(&self, hashes: &[Hash]) -> Result<Vec<bool>, StoreError> {
        if let Some(root) = self.local_root.clone() {
            let keys: Vec<String> = hashes.iter().map(Hash::blob_key).collect();
            return tokio::task::spawn_blocking(move || {
                keys.iter()
                    .map(|k| match std::fs::symlink_metadata(root.join(k)) {
                        Ok(_) => Ok(true),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                        Err(e) => Err((k.clone(), e)),
                    })
                    .collect::<Result<Vec<bool>, _>>()
            })
            .await
            .map_err(|e| self.io("(has blobs)", e))?
            .map_err(|(k, e)| self.io(&k, e));
        }
        futures::stream::iter(hashes.to_vec())
            .map(|h| async move { self.has_blob(&h).await })
            .buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Writes many small blobs, each unless it exists; returns how many were written. Every
    /// blob is verified against its hash first: one that does not match refuses the whole
    /// batch ([`StoreError::Mismatch`]) and nothing is written. A local store writes them all
    /// without an fsync each: call [`BlobStore::sync`] (one `syncfs`, which may cover several
    /// batches) before relying on them.
    pub async fn put_blobs(&self, blobs: Vec<(Hash, Bytes)>) -> Result<usize, StoreError> {
        let (checked, blobs) = tokio::task::spawn_blocking(move || {
            let bad = blobs
                .iter()
                .map(|(h, b)| (*h, Hash::from(blake3::hash(b))))
                .find(|(want, got)| want != got);
            (bad, blobs)
        })
        .await
        .map_err(|e| self.io("(put blobs)", e))?;
        if let Some((want, got)) = checked {
            return Err(self.mismatch(&want, got));
        }
        let Some(root) = self.local_root.clone() else {
            let written: Vec<bool> = futures::stream::iter(blobs)
                .map(|(h, b)| async move { self.put_blob(&h, b).await })
                .buffer_unordered(HEAD_CONCURRENCY)
                .try_collect()
                .await?;
            return Ok(written.into_iter().filter(|w| *w).count());
        };
        tokio::task::spawn_blocking(move || -> Result<usize, (String, std::io::Error)> {
            let mut folders = std::collections::HashSet::new();
            let mut written = 0;
            for (hash, bytes) in &blobs {
                let key = hash.blob_key();
                let dest = root.join(&key);
                if let Some(dir) = dest.parent()
                    && folders.insert(dir.to_owned())
                {
                    std::fs::create_dir_all(dir).map_err(|e| (key.clone(), e))?;
                }
                let placed = place_new_blob(&dest, |f| f.write_all(bytes).map(|()| Ok(())));
                if let Ok(true) = placed.map_err(|e| (key, e))? {
                    written += 1;
                }
            }
            Ok(written)
        })
        .await
        .map_err(|e| self.io("(put blobs)", e))?
        .map_err(|(k, e)| self.io(&k, e))
    }

    /// Writes a blob unless it exists. `Ok(true)` when written, `Ok(false)` when it was there.
    /// Bytes that do not hash to `hash` are refused ([`StoreError::Mismatch`]): a wrong blob
    /// under a key would stay wrong, since existing keys are skipped.
    pub async fn put_blob(&self, hash: &Hash, bytes: Bytes) -> Result<bool, StoreError> {
        let key = hash.blob_key();
        let check = bytes.clone();
        let got = tokio::task::spawn_blocking(move || Hash::from(blake3::hash(&check)))
            .await
            .map_err(|e| self.io(&key, e))?;
        self.verify(hash, got)?;
        let path = ObjectPath::from(key.as_str());
        match self
            .inner
            .put_opts(&path, PutPayload::from(bytes), PutMode::Create.into())
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.io(&key, e)),
        }
    }

    /// Stores `index` as a blob under its bundle id (its canonical form is what the id hashes),
    /// unless it is there. A bundle's index can then travel by id instead of in a message.
    pub async fn put_index(&self, index: &crate::bundle::FileIndex) -> Result<Hash, StoreError> {
        // An index can hold a million lines: build and hash it off the runtime.
        let index = index.clone();
        let (id, text) = tokio::task::spawn_blocking(move || {
            let text = index.canonical();
            (Hash::of(text.as_bytes()), text)
        })
        .await
        .map_err(|e| self.io("(file index)", e))?;
        self.put_blob(&id, Bytes::from(text)).await?;
        Ok(id)
    }

    /// Reads the file index of bundle `id`, verified like any blob. Parsed as it is read and
    /// hashed on the way, so the index of a million files is not held as text as well.
    pub async fn get_index(&self, id: &Hash) -> Result<crate::bundle::FileIndex, StoreError> {
        let key = id.blob_key();
        let read = if let Some(root) = &self.local_root {
            let path = root.join(&key);
            tokio::task::spawn_blocking(move || {
                let mut file = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                let mut reading = IndexReading::default();
                let mut piece = vec![0u8; INDEX_PIECE];
                crate::bundle::read_pieces(&mut file, &mut piece, |p| reading.feed(p))?;
                Ok(Some(reading))
            })
            .await
            .map_err(|e| self.io(&key, e))?
            .map_err(|e| self.io(&key, e))?
        } else {
            match self.inner.get(&ObjectPath::from(key.as_str())).await {
                Ok(r) => Some(self.read_index_stream(&key, r.into_stream()).await?),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(self.io(&key, e)),
            }
        };
        let Some(reading) = read else {
            return Err(StoreError::Missing {
                url: self.url.clone(),
                key,
            });
        };
        let (got, parsed) = reading.finish();
        if got != *id {
            return Err(self.quarantine(key, got).await);
        }
        parsed.map_err(|e| self.io(&key, e))
    }

    /// Feeds a remote store's stream to an [`IndexReading`], a few MiB per blocking pass.
    async fn read_index_stream(
        &self,
        key: &str,
        mut stream: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    ) -> Result<IndexReading, StoreError> {
        let mut reading = IndexReading::default();
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_bytes = 0;
        loop {
            let next = stream.next().await;
            let done = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(|e| self.io(key, e))?;
                pending_bytes += chunk.len();
                pending.push(chunk);
            }
            if pending_bytes >= INDEX_PIECE || (done && !pending.is_empty()) {
                let chunks = std::mem::take(&mut pending);
                pending_bytes = 0;
                reading = tokio::task::spawn_blocking(move || {
                    for c in &chunks {
                        reading.feed(c);
                    }
                    reading
                })
                .await
                .map_err(|e| self.io(key, e))?;
            }
            if done {
                return Ok(reading);
            }
        }
    }

    /// Reads a whole blob and checks it against its hash.
    pub async fn get_blob(&self, hash: &Hash) -> Result<Bytes, StoreError> {
        let key = hash.blob_key();
        let bytes = match self.inner.get(&ObjectPath::from(key.as_str())).await {
            Ok(r) => r.bytes().await.map_err(|e| self.io(&key, e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::Missing {
                    url: self.url.clone(),
                    key,
                });
            }
            Err(e) => return Err(self.io(&key, e)),
        };
        let check = bytes.clone();
        let got = tokio::task::spawn_blocking(move || Hash::from(blake3::hash(&check)))
            .await
            .map_err(|e| self.io(&key, e))?;
        if got != *hash {
            return Err(self.quarantine(key, got).await);
        }
        Ok(bytes)
    }

    /// Stores the file at `file` (whose content hashes to `hash`) as a blob unless it exists.
    /// `Ok(true)` when written. With `may_link`, a local store takes the file by hard link
    /// (no copy): the caller promises the file is its own (one link) and never changes again,
    /// and must call [`BlobStore::sync`] before relying on the blob. Large files go up in parts.
    pub async fn put_file(
        &self,
        hash: &Hash,
        file: &Path,
        size: u64,
        may_link: bool,
    ) -> Result<bool, StoreError> {
        let key = hash.blob_key();
        if let (Some(root), true) = (&self.local_root, may_link) {
            let dest = root.join(&key);
            let src = file.to_owned();
            let want = *hash;
            // The link shares the caller's inode, so what is linked is what was hashed.
            let linked = tokio::task::spawn_blocking(move || {
                let got = std::fs::File::open(&src)
                    .and_then(crate::bundle::hash_reader)?
                    .0;
                if got != want {
                    return Ok(Err(got));
                }
                link_blob(&src, &dest).map(Ok)
            })
            .await
            .map_err(|e| self.io(&key, e))?
            .map_err(|e| self.io(&format!("{key} (reading {})", file.display()), e))?
            .map_err(|got| self.mismatch(hash, got))?;
            match linked {
                Linked::Yes => return Ok(true),
                Linked::Exists => return Ok(false),
                Linked::OtherDevice => {}
            }
        }
        if self.has_blob(hash).await? {
            return Ok(false);
        }
        if size <= MULTIPART_THRESHOLD {
            let src = file.to_owned();
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(src))
                .await
                .map_err(|e| self.io(&key, e))?
                .map_err(|e| self.io(&format!("{key} (reading {})", file.display()), e))?;
            return self.put_blob(hash, Bytes::from(bytes)).await;
        }
        self.put_multipart(hash, file).await?;
        Ok(true)
    }

    /// [`BlobStore::put_file`] of many files, each verified against its hash; returns how
    /// many blobs were written. A local store does the whole batch in one blocking pass: a
    /// file marked `may_link` that is a regular file of one link is taken by hard link, any
    /// other copied, none fsync'd: call [`BlobStore::sync`] before relying on them. A remote
    /// store uploads them several at a time.
    pub async fn put_files(&self, jobs: Vec<PutJob>) -> Result<usize, StoreError> {
        let Some(root) = self.local_root.clone() else {
            let written: Vec<bool> = futures::stream::iter(jobs)
                .map(
                    |job| async move { self.put_file(&job.blob, &job.path, job.size, false).await },
                )
                .buffer_unordered(PUT_CONCURRENCY)
                .try_collect()
                .await?;
            return Ok(written.into_iter().filter(|w| *w).count());
        };
        let done = tokio::task::spawn_blocking(move || {
            let mut written = 0;
            for job in &jobs {
                let key = job.blob.blob_key();
                let io = |e| LocalPut::Io(format!("{key} (from {})", job.path.display()), e);
                match put_local(&root, &key, job).map_err(io)? {
                    Ok(true) => written += 1,
                    Ok(false) => {}
                    Err(got) => return Err(LocalPut::Mismatch(job.blob, got)),
                }
            }
            Ok(written)
        })
        .await
        .map_err(|e| self.io("(put files)", e))?;
        match done {
            Ok(n) => Ok(n),
            Err(LocalPut::Mismatch(want, got)) => Err(self.mismatch(&want, got)),
            Err(LocalPut::Io(what, e)) => Err(self.io(&what, e)),
        }
    }

    /// Uploads in parts straight to the blob's key. Multipart has no create-only mode, but the
    /// key is the content's hash, so a concurrent upload writes the same bytes, and completion
    /// is atomic: readers see nothing or the whole blob.
    /// The parts are hashed as they are read, and the upload is completed only when they
    /// hash to `hash`: otherwise it is aborted and nothing is stored.
    async fn put_multipart(&self, hash: &Hash, file: &Path) -> Result<(), StoreError> {
        let key_owned = hash.blob_key();
        let key = key_owned.as_str();
        let path = ObjectPath::from(key);
        let upload = self
            .inner
            .put_multipart(&path)
            .await
            .map_err(|e| self.io(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        // The file and the running hash go to each blocking read and come back with its bytes.
        let mut state = (
            std::fs::File::open(file).map_err(|e| self.io(key, e))?,
            blake3::Hasher::new(),
        );
        let hasher = loop {
            let (mut f, mut h) = state;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; PART_BYTES];
                let mut n = 0;
                while n < buf.len() {
                    match f.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.truncate(n);
                h.update(&buf);
                Ok((f, h, buf))
            })
            .await
            .map_err(|e| self.io(key, e))?;
            let (f, h, buf) = match read {
                Ok(r) => r,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(self.io(key, e));
                }
            };
            if buf.is_empty() {
                break h;
            }
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                let _ = writer.abort().await;
                return Err(self.io(key, e));
            }
            writer.write(&buf);
            state = (f, h);
        };
        let got = Hash::from(hasher.finalize());
        if got != *hash {
            let _ = writer.abort().await;
            return Err(self.mismatch(hash, got));
        }
        writer.finish().await.map_err(|e| self.io(key, e))?;
        Ok(())
    }

    /// Makes blobs hard-linked in by [`BlobStore::put_file`] durable (one `syncfs`). Other
    /// writes are durable when they return.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let Some(root) = self.local_root.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || sync_filesystem(&root))
            .await
            .map_err(|e| self.io("(sync)", e))?
            .map_err(|e| self.io("(sync)", e))
    }

    /// Writes each job's blob to its file: beside it first (`.<name>.p2part`), verified
    /// against its hash as it is copied, given its mode, then renamed into place. The parent
    /// folders must exist. Returns the bytes written. A local store copies a whole batch in
    /// one blocking pass (a bundle may hold a million small files); a remote one streams
    /// each blob. A corrupt blob is quarantined and reported, and its file not left behind.
    pub async fn fetch_files(&self, jobs: Vec<FetchJob>) -> Result<u64, StoreError> {
        let Some(root) = self.local_root.clone() else {
            let mut bytes = 0;
            for job in jobs {
                let tmp = part_path(&job.dest);
                let dest = job.dest.clone();
                let created = tokio::task::spawn_blocking(move || {
                    std::fs::File::create(&tmp).map(|f| (f, tmp))
                })
                .await
                .map_err(|e| self.io(&job.blob.blob_key(), e))?
                .map_err(|e| {
                    self.io(&format!("{} → {}", job.blob.blob_key(), dest.display()), e)
                })?;
                let (file, tmp) = created;
                let outcome = self.fetch_into(&job.blob, file).await;
                let placed = tokio::task::spawn_blocking(move || match outcome {
                    Ok(n) => place_file(&tmp, &dest, job.mode).map(|()| Ok(n)),
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        Ok(Err(e))
                    }
                })
                .await
                .map_err(|e| self.io(&job.blob.blob_key(), e))?
                .map_err(|e| self.io(&job.dest.display().to_string(), e))?;
                bytes += placed?;
            }
            return Ok(bytes);
        };
        let copied = tokio::task::spawn_blocking(move || {
            let mut bytes = 0;
            for job in &jobs {
                let key = job.blob.blob_key();
                match copy_verified(&root.join(&key), job) {
                    Ok(Ok(n)) => bytes += n,
                    Ok(Err(got)) => return Err(LocalFetch::Corrupt(key, got)),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && !root.join(&key).exists() =>
                    {
                        return Err(LocalFetch::Missing(key));
                    }
                    Err(e) => {
                        return Err(LocalFetch::Io(format!("{key} → {}", job.dest.display()), e));
                    }
                }
            }
            Ok(bytes)
        })
        .await
        .map_err(|e| self.io("(fetch files)", e))?;
        match copied {
            Ok(bytes) => Ok(bytes),
            Err(LocalFetch::Corrupt(key, got)) => Err(self.quarantine(key, got).await),
            Err(LocalFetch::Missing(key)) => Err(StoreError::Missing {
                url: self.url.clone(),
                key,
            }),
            Err(LocalFetch::Io(what, e)) => Err(self.io(&what, e)),
        }
    }

    /// Streams a blob into `out` (writes run off the runtime), hashing as it goes. The bytes
    /// are written before the end is reached, so a corrupt blob is reported after `out` got
    /// them: callers writing files remove them, callers writing a pipe exit non-zero.
    pub async fn fetch_into<W: Write + Send + 'static>(
        &self,
        hash: &Hash,
        out: W,
    ) -> Result<u64, StoreError> {
        let key = hash.blob_key();
        let mut stream = match self.inner.get(&ObjectPath::from(key.as_str())).await {
            Ok(r) => r.into_stream(),
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::Missing {
                    url: self.url.clone(),
                    key,
                });
            }
            Err(e) => return Err(self.io(&key, e)),
        };
        let mut state = (out, blake3::Hasher::new(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.io(&key, e))?;
            let (mut w, mut h, n) = state;
            state = tokio::task::spawn_blocking(move || {
                h.update(&chunk);
                w.write_all(&chunk).map(|()| (w, h, n + chunk.len() as u64))
            })
            .await
            .map_err(|e| self.io(&key, e))?
            .map_err(|e| self.io(&format!("{key} (writing)"), e))?;
        }
        let (mut w, h, n) = state;
        tokio::task::spawn_blocking(move || w.flush())
            .await
            .map_err(|e| self.io(&key, e))?
            .map_err(|e| self.io(&format!("{key} (writing)"), e))?;
        let got = Hash::from(h.finalize());
        if got != *hash {
            return Err(self.quarantine(key, got).await);
        }
        Ok(n)
    }

    /// Moves the corrupt blob at `key` to `quarantine/<key>`, so it is never served again and
    /// the next write of that content stores a good copy, and returns the error to report.
    async fn quarantine(&self, key: String, got: Hash) -> StoreError {
        let aside = format!("{QUARANTINE}/{key}");
        let moved = self
            .inner
            .rename(
                &ObjectPath::from(key.as_str()),
                &ObjectPath::from(aside.as_str()),
            )
            .await;
        match moved {
            // The caller reports the error; the log keeps the store's side of it.
            Ok(()) => tracing::info!(%key, %got, url = %self.url, "corrupt blob quarantined"),
            // Another reader may have moved it first; either way it is no longer served.
            Err(e) => {
                tracing::error!(%key, %got, url = %self.url, error = %e, "corrupt blob could not be moved to quarantine")
            }
        }
        StoreError::Corrupt {
            url: self.url.clone(),
            key,
            got,
        }
    }

    fn verify(&self, want: &Hash, got: Hash) -> Result<(), StoreError> {
        if got == *want {
            Ok(())
        } else {
            Err(self.mismatch(want, got))
        }
    }

    fn mismatch(&self, want: &Hash, got: Hash) -> StoreError {
        StoreError::Mismatch {
            url: self.url.clone(),
            key: want.blob_key(),
            got,
        }
    }

    fn io(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            url: self.url.clone(),
            key: key.to_owned(),
            message: e.to_string(),
        }
    }
}

/// Bytes read of a file index at a time.
const INDEX_PIECE: usize = 4 << 20;

/// A stored file index being read: hashed and parsed a piece at a time. The hashing goes on
/// past a bad line, so a corrupt blob is told from a well-stored bad index.
#[derive(Default)]
struct IndexReading {
    hasher: blake3::Hasher,
    parser: crate::bundle::IndexParser,
}

impl IndexReading {
    fn feed(&mut self, piece: &[u8]) {
        self.hasher.update(piece);
        self.parser.feed(piece);
    }

    fn finish(
        self,
    ) -> (
        Hash,
        Result<crate::bundle::FileIndex, crate::bundle::BundleError>,
    ) {
        (self.hasher.finalize().into(), self.parser.finish())
    }
}

/// Takes files into a local store by hard link right where they are hashed (the stager's
/// scan of its spool), so each file is read once. Made by [`BlobStore::local_linker`].
#[derive(Debug, Clone)]
pub struct BlobLinker {
    root: PathBuf,
}

impl BlobLinker {
    /// Links `path`, whose open `file` was just read to the end and hashed to `hash`, as
    /// that blob, when it is a regular file of one link (the caller's own, which it promises
    /// never changes again). Verified as any write is: the link shares the inode that was
    /// hashed. Best effort: whatever is not linked here (another filesystem, an error) the
    /// upload stores and reports. Call [`BlobStore::sync`] before relying on it.
    pub fn link_own(&self, hash: &Hash, path: &Path, file: &std::fs::File) -> bool {
        use std::os::unix::fs::MetadataExt;
        match file.metadata() {
            Ok(m) if m.file_type().is_file() && m.nlink() == 1 => {}
            _ => return false,
        }
        matches!(
            link_blob(path, &self.root.join(hash.blob_key())),
            Ok(Linked::Yes | Linked::Exists)
        )
    }
}

/// One file for [`BlobStore::put_files`] to store.
#[derive(Debug, Clone)]
pub struct PutJob {
    pub blob: Hash,
    pub path: PathBuf,
    pub size: u64,
    /// The caller's own file, which never changes again: a local store may take it by hard
    /// link (when it has one link). Otherwise it is copied.
    pub may_link: bool,
}

enum LocalPut {
    Mismatch(Hash, Hash),
    Io(String, std::io::Error),
}

/// Stores `job` in the local store at `root` under `key`: by hard link when the file is the
/// caller's own, else by copy beside its key and a rename. `Ok(Err(got))` when
/// its content hashes to `got` instead; nothing is stored then.
fn put_local(root: &Path, key: &str, job: &PutJob) -> std::io::Result<Result<bool, Hash>> {
    use std::os::unix::fs::MetadataExt;
    let dest = root.join(key);
    if dest.exists() {
        return Ok(Ok(false));
    }
    let meta = std::fs::symlink_metadata(&job.path)?;
    if job.may_link && meta.file_type().is_file() && meta.nlink() == 1 {
        // The link shares the file's inode, so what is linked is what was hashed.
        let got = crate::bundle::hash_reader(std::fs::File::open(&job.path)?)?.0;
        if got != job.blob {
            return Ok(Err(got));
        }
        match link_blob(&job.path, &dest)? {
            Linked::Yes => return Ok(Ok(true)),
            Linked::Exists => return Ok(Ok(false)),
            Linked::OtherDevice => {}
        }
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut r = std::fs::File::open(&job.path)?;
    place_new_blob(&dest, |w| {
        let (got, _) = copy_hashing(&mut r, w)?;
        Ok(if got == job.blob { Ok(()) } else { Err(got) })
    })
}

/// Writes a new blob at `dest` (its folder exists) with what `fill` writes, under a name of
/// its own beside it, read-only, then renamed to `dest` without replacing: the key only ever
/// names a whole blob. `Ok(Ok(false))` when `dest` was there already; `fill` answering
/// `Err(got)` (the bytes hash to `got`, not to the key) stores nothing.
fn place_new_blob(
    dest: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<Result<(), Hash>>,
) -> std::io::Result<Result<bool, Hash>> {
    use std::os::unix::fs::PermissionsExt;
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("blob");
    let tmp = dest.with_file_name(format!(".{name}.{}.p2in", ulid::Ulid::new()));
    let put = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        if let Err(got) = fill(&mut f)? {
            return Ok(Err(got));
        }
        f.set_permissions(std::fs::Permissions::from_mode(0o444))?;
        drop(f);
        match crate::tree::rename_noreplace(&tmp, dest) {
            Ok(()) => Ok(Ok(true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Ok(false)),
            Err(e) => Err(e),
        }
    })();
    if !matches!(put, Ok(Ok(true))) {
        let _ = std::fs::remove_file(&tmp);
    }
    put
}

/// Copies `r` to `w` through blake3; the hash and the byte count.
fn copy_hashing(r: &mut impl Read, w: &mut impl Write) -> std::io::Result<(Hash, u64)> {
    thread_local! {
        // One buffer per thread: restoring a million small files copies a million times.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let mut h = blake3::Hasher::new();
        let mut n = 0u64;
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok((Hash::from(h.finalize()), n)),
                Ok(k) => {
                    h.update(&buf[..k]);
                    w.write_all(&buf[..k])?;
                    n += k as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    })
}

/// One file for [`BlobStore::fetch_files`] to write.
#[derive(Debug, Clone)]
pub struct FetchJob {
    pub blob: Hash,
    pub dest: PathBuf,
    /// Unix permission bits the file gets.
    pub mode: u32,
}

enum LocalFetch {
    Missing(String),
    Corrupt(String, Hash),
    Io(String, std::io::Error),
}

/// Where a file is written before it is renamed to `dest`.
fn part_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    dest.with_file_name(format!(".{name}.p2part"))
}

/// Gives the written file at `tmp` its mode and its final name.
fn place_file(tmp: &Path, dest: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(tmp, dest)
}

/// Copies the blob file `src` to `job.dest` by way of its part file, hashing as it goes.
/// `Ok(Err(got))`: the content hashes to `got`, not to the blob's key; nothing is left.
fn copy_verified(src: &Path, job: &FetchJob) -> std::io::Result<Result<u64, Hash>> {
    let mut r = std::fs::File::open(src)?;
    let tmp = part_path(&job.dest);
    let copied = std::fs::File::create(&tmp).and_then(|mut w| copy_hashing(&mut r, &mut w));
    match copied {
        Ok((got, n)) if got == job.blob => {
            place_file(&tmp, &job.dest, job.mode)?;
            Ok(Ok(n))
        }
        Ok((got, _)) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(Err(got))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

enum Linked {
    Yes,
    Exists,
    OtherDevice,
}

/// Hard-links `src` to `dest` (creating its directory) and makes it read-only.
fn link_blob(src: &Path, dest: &Path) -> std::io::Result<Linked> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::hard_link(src, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(Linked::Exists),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            return Ok(Linked::OtherDevice);
        }
        Err(e) => return Err(e),
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o444))?;
    Ok(Linked::Yes)
}

/// `syncfs(2)` on the filesystem holding `path`: every file and directory entry written there
/// so far is durable when it returns. One call instead of an fsync per file.
pub fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path)?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_blobs_are_written_once_and_verified() {
        let dir = std::env::temp_dir().join(format!("p2-store-test-{}", std::process::id()));
        let store = BlobStore::open(dir.to_str().unwrap()).unwrap();
        store.check().await.unwrap();
        let content = Bytes::from_static(b"weights 1 2 3");
        let h = Hash::of(&content);
        assert!(!store.has_blob(&h).await.unwrap());
        assert!(
            store.put_blob(&h, content.clone()).await.unwrap(),
            "first write"
        );
        assert!(
            !store.put_blob(&h, content.clone()).await.unwrap(),
            "second write skipped"
        );
        assert!(store.has_blob(&h).await.unwrap());
        assert_eq!(store.get_blob(&h).await.unwrap(), content);
        assert!(
            dir.join(h.blob_key()).is_file(),
            "blob at blobs/b3/<2 hex>/<hex>"
        );

        // Damage on disk is caught on read, and the blob is moved aside, never served.
        std::fs::write(dir.join(h.blob_key()), b"tampered").unwrap();
        assert!(matches!(
            store.get_blob(&h).await,
            Err(StoreError::Corrupt { .. })
        ));
        assert!(!store.has_blob(&h).await.unwrap());
        assert!(dir.join(QUARANTINE).join(h.blob_key()).is_file());
        assert!(store.put_blob(&h, content.clone()).await.unwrap(), "healed");
        assert_eq!(store.get_blob(&h).await.unwrap(), content);

        // A bundle's file index is a blob keyed by the bundle id.
        let index = crate::bundle::FileIndex::new(vec![crate::bundle::FileEntry {
            path: crate::bundle::BundlePath::parse("data/x y.csv").unwrap(),
            blob: h,
            size: content.len() as u64,
            mode: 0o644,
        }])
        .unwrap();
        assert_eq!(store.put_index(&index).await.unwrap(), index.id());
        assert_eq!(store.get_index(&index.id()).await.unwrap(), index);

        // A write whose bytes do not match the key is refused, by bytes and by link alike.
        let wrong = Hash::of(b"something else");
        assert!(matches!(
            store.put_blob(&wrong, content.clone()).await,
            Err(StoreError::Mismatch { .. })
        ));
        let file = dir.join("loose");
        std::fs::write(&file, b"loose bytes").unwrap();
        assert!(matches!(
            store.put_file(&wrong, &file, 11, true).await,
            Err(StoreError::Mismatch { .. })
        ));
        assert!(!store.has_blob(&wrong).await.unwrap());
        let missing = Hash::of(b"never written");
        assert!(matches!(
            store.get_blob(&missing).await,
            Err(StoreError::Missing { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn files_go_in_by_link_or_in_parts_and_come_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store").to_str().unwrap()).unwrap();
        // Small, taken by hard link: no copy, read-only in the store.
        let small = dir.path().join("small");
        std::fs::write(&small, b"linked").unwrap();
        let h = Hash::of(b"linked");
        assert!(store.put_file(&h, &small, 6, true).await.unwrap());
        assert!(!store.put_file(&h, &small, 6, true).await.unwrap(), "once");
        store.sync().await.unwrap();
        use std::os::unix::fs::MetadataExt;
        let blob = dir.path().join("store").join(h.blob_key());
        assert_eq!(
            std::fs::metadata(&blob).unwrap().ino(),
            std::fs::metadata(&small).unwrap().ino()
        );
        assert_eq!(std::fs::metadata(&blob).unwrap().mode() & 0o777, 0o444);
        // Large, not linkable: multipart through the object store.
        let big: Vec<u8> = (0..(MULTIPART_THRESHOLD as usize + 3 * PART_BYTES / 2))
            .map(|i| (i % 253) as u8)
            .collect();
        let path = dir.path().join("big");
        std::fs::write(&path, &big).unwrap();
        let hb = Hash::of(&big);
        assert!(
            store
                .put_file(&hb, &path, big.len() as u64, false)
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_file(&hb, &path, big.len() as u64, false)
                .await
                .unwrap()
        );
        let out = dir.path().join("out");
        let job = |blob, dest: &Path| FetchJob {
            blob,
            dest: dest.to_owned(),
            mode: 0o640,
        };
        assert_eq!(
            store.fetch_files(vec![job(hb, &out)]).await.unwrap(),
            big.len() as u64
        );
        assert_eq!(std::fs::read(&out).unwrap(), big);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        // A wrong hash is caught while streaming, and the file is removed.
        let wrong = Hash::of(b"other");
        std::fs::create_dir_all(
            dir.path()
                .join("store")
                .join(wrong.blob_key())
                .parent()
                .unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("store").join(wrong.blob_key()),
            b"not other",
        )
        .unwrap();
        let bad = dir.path().join("bad");
        assert!(matches!(
            store.fetch_files(vec![job(wrong, &bad)]).await,
            Err(StoreError::Corrupt { .. })
        ));
        assert!(!bad.exists() && !part_path(&bad).exists());
        // A missing blob is named as missing.
        assert!(matches!(
            store
                .fetch_files(vec![job(Hash::of(b"never stored"), &bad)])
                .await,
            Err(StoreError::Missing { .. })
        ));
    }

    #[tokio::test]
    async fn batches_link_own_files_copy_shared_ones_and_refuse_wrong_hashes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(&dir.path().join("store")).unwrap();
        let own = dir.path().join("own");
        let shared = dir.path().join("shared");
        std::fs::write(&own, b"own bytes").unwrap();
        std::fs::write(&shared, b"shared bytes").unwrap();
        std::fs::hard_link(&shared, dir.path().join("second-link")).unwrap();
        let job = |path: &Path, content: &[u8]| PutJob {
            blob: Hash::of(content),
            path: path.to_owned(),
            size: content.len() as u64,
            may_link: true,
        };
        let jobs = vec![job(&own, b"own bytes"), job(&shared, b"shared bytes")];
        assert_eq!(store.put_files(jobs.clone()).await.unwrap(), 2);
        assert_eq!(
            store.put_files(jobs).await.unwrap(),
            0,
            "second time: all there"
        );
        let stored = |c: &[u8]| dir.path().join("store").join(Hash::of(c).blob_key());
        assert_eq!(
            std::fs::metadata(&own).unwrap().nlink(),
            2,
            "own file linked"
        );
        assert_eq!(
            std::fs::metadata(stored(b"shared bytes")).unwrap().nlink(),
            1,
            "shared file copied"
        );
        assert_eq!(
            std::fs::read(stored(b"shared bytes")).unwrap(),
            b"shared bytes"
        );

        let liar = dir.path().join("liar");
        std::fs::write(&liar, b"not what it claims").unwrap();
        let err = store
            .put_files(vec![job(&liar, b"a claim")])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Mismatch { .. }), "{err}");
        assert!(!stored(b"a claim").exists());
    }

    #[tokio::test]
    async fn bad_urls_and_unreachable_stores_are_clear_errors() {
        for (url, why) in [
            ("s3://", "bucket"),
            ("s3://b?nope=1", "unknown parameter"),
            ("ftp://x", "unknown scheme"),
        ] {
            let e = BlobStore::open(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
        // Nothing listens on port 1: the start-up check says so instead of failing later.
        let store =
            BlobStore::open("s3://bucket?endpoint=http://127.0.0.1:1&region=us-east-1").unwrap();
        let e = store.check().await.unwrap_err().to_string();
        assert!(
            e.contains("does not answer") && e.contains("127.0.0.1:1"),
            "{e}"
        );
    }
}
