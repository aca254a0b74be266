//! The shipper: uploads every block Prometheus completes to the bucket, once.
//!
//! A sync lists the ULID directories of the TSDB directory and uploads, oldest first, each
//! block that is complete (has a meta.json), holds samples, is of compaction level 1 (higher
//! levels only with `upload_compacted`) and is not yet shipped. Files go up in the order
//! Thanos uses, chunk segments, then the index, then meta.json (with the `thanos` section)
//! last, so a reader never sees a half-uploaded block: without meta.json a block does not
//! exist. Files larger than one part go up as multipart uploads, read one part at a time.
//!
//! Prometheus' files are only read: all of a block's files are opened before the first byte
//! goes up, so a block Prometheus deletes meanwhile (compaction, retention) still uploads
//! whole from the open descriptors. What was shipped is remembered in
//! `<tsdb>/thanos.shipper.json` (Thanos' format, so either can take over), written after each
//! block. A crash between the last file and that write is caught by checking the bucket for
//! the block's meta.json; a crash mid-upload leaves objects without meta.json, which the next
//! attempt overwrites with the same keys.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::model::Labels;
use crate::tsdb::meta::{BlockMeta, FileMeta, META_FILENAME};
use crate::tsdb::TsdbError;

/// The state file, named as Thanos names it.
pub const STATE_FILENAME: &str = "thanos.shipper.json";
const STATE_VERSION: u32 = 1;
/// Parts of a multipart upload; also the size up to which a file goes up in one request.
pub const DEFAULT_PART_SIZE: usize = 16 << 20;
/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error(
        "Prometheus has no external labels: blocks uploaded without them cannot be told apart \
         from other Prometheus servers' (set global.external_labels in its configuration)"
    )]
    NoExternalLabels,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] TsdbError),
    #[error("bucket: {0}")]
    Bucket(#[from] object_store::Error),
    #[error("upload task failed: {0}")]
    Task(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShipperError + '_ {
    move |source| ShipperError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Prometheus' data directory (`--tsdb.path`).
    pub tsdb_dir: PathBuf,
    /// Ship blocks of compaction level > 1 too (`--shipper.upload-compacted`).
    pub upload_compacted: bool,
    /// Bytes per multipart part; S3 wants at least 5 MiB for every part but the last.
    pub part_size: usize,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ShipperCounters {
    pub syncs: AtomicU64,
    pub sync_failures: AtomicU64,
    pub uploads: AtomicU64,
    pub upload_failures: AtomicU64,
    pub uploaded_bytes: AtomicU64,
    /// Unix ms of the last completed block upload; 0 before the first.
    pub last_upload_ms: AtomicI64,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct ShipReport {
    pub uploaded: Vec<Ulid>,
    /// Found complete in the bucket (an earlier run crashed before noting them).
    pub already_in_bucket: Vec<Ulid>,
    pub failed: Vec<(Ulid, String)>,
}

/// `thanos.shipper.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ShipperState {
    version: u32,
    #[serde(default)]
    uploaded: Vec<String>,
}

pub struct Shipper {
    bucket: Arc<dyn ObjectStore>,
    config: ShipperConfig,
    pub counters: ShipperCounters,
}

/// A local block ready to go: its meta and its files, opened.
struct OpenBlock {
    meta: BlockMeta,
    /// Relative path, open file, size; in upload order.
    files: Vec<(String, File, u64)>,
}

impl Shipper {
    pub fn new(bucket: Arc<dyn ObjectStore>, config: ShipperConfig) -> Self {
        Shipper {
            bucket,
            config,
            counters: ShipperCounters::default(),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.config.tsdb_dir.join(STATE_FILENAME)
    }

    /// The blocks noted as shipped (see [`read_shipped`]). Blocking.
    pub fn shipped(&self) -> BTreeSet<Ulid> {
        read_shipped(&self.state_path())
    }

    /// Writes the state atomically (temporary file, fsync, rename), off the async threads.
    async fn save(&self, shipped: &BTreeSet<Ulid>) -> Result<(), ShipperError> {
        let state = ShipperState {
            version: STATE_VERSION,
            uploaded: shipped.iter().map(Ulid::to_string).collect(),
        };
        let path = self.state_path();
        let mut data = serde_json::to_vec_pretty(&state).expect("state serialises");
        data.push(b'\n');
        tokio::task::spawn_blocking(move || {
            crate::fs::write_atomically(&path, &data).map_err(io_err(&path))
        })
        .await
        .map_err(|e| ShipperError::Task(e.to_string()))?
    }

    /// Uploads every block that is due; a block that fails is retried at the next sync.
    pub async fn sync(&self, external_labels: &Labels) -> Result<ShipReport, ShipperError> {
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        let result = self.sync_inner(external_labels).await;
        if result.is_err() {
            self.counters.sync_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn sync_inner(&self, external_labels: &Labels) -> Result<ShipReport, ShipperError> {
        if external_labels.is_empty() {
            return Err(ShipperError::NoExternalLabels);
        }
        let dir = self.config.tsdb_dir.clone();
        let state_path = self.state_path();
        let upload_compacted = self.config.upload_compacted;
        let (mut shipped, local) = tokio::task::spawn_blocking(move || {
            due_blocks(&dir, upload_compacted).map(|due| (read_shipped(&state_path), due))
        })
        .await
        .map_err(|e| ShipperError::Task(e.to_string()))??;
        let mut report = ShipReport::default();
        // Forget blocks Prometheus has deleted, so the state stays small.
        let before = shipped.len();
        shipped.retain(|id| local.contains_key(id));
        let mut changed = shipped.len() != before;
        for (&id, meta) in &local {
            if shipped.contains(&id) {
                continue;
            }
            match self.ship(id, meta, external_labels).await {
                Ok(true) => report.uploaded.push(id),
                Ok(false) => report.already_in_bucket.push(id),
                Err(e) => {
                    self.counters
                        .upload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(block = %id, error = %e, "uploading block failed; retrying at the next sync");
                    report.failed.push((id, e.to_string()));
                    continue;
                }
            }
            shipped.insert(id);
            self.save(&shipped).await?;
            changed = false;
        }
        if changed {
            self.save(&shipped).await?;
        }
        Ok(report)
    }

    /// Uploads one block unless it is complete in the bucket already; true if uploaded.
    async fn ship(
        &self,
        id: Ulid,
        meta: &BlockMeta,
        external_labels: &Labels,
    ) -> Result<bool, ShipperError> {
        let meta_key = ObjectPath::from(format!("{id}/{META_FILENAME}"));
        match self.bucket.head(&meta_key).await {
            Ok(_) => {
                tracing::info!(block = %id, "block is complete in the bucket already; noting it as shipped");
                return Ok(false);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = self.config.tsdb_dir.join(id.to_string());
        let block = tokio::task::spawn_blocking(move || open_block(&dir, id))
            .await
            .map_err(|e| ShipperError::Task(e.to_string()))??;
        // The meta read now, from the open block; the listing's copy only chose the block.
        debug_assert_eq!(block.meta.ulid, meta.ulid);
        tracing::info!(block = %id, files = block.files.len(), "uploading block");
        let mut files = Vec::with_capacity(block.files.len() + 1);
        for (rel, file, size) in block.files {
            let key = ObjectPath::from(format!("{id}/{rel}"));
            self.upload_file(&key, file, size).await?;
            self.counters
                .uploaded_bytes
                .fetch_add(size, Ordering::Relaxed);
            files.push(FileMeta {
                rel_path: rel,
                size_bytes: Some(size),
                extra: Default::default(),
            });
        }
        files.push(FileMeta {
            rel_path: META_FILENAME.into(),
            size_bytes: None,
            extra: Default::default(),
        });
        let meta_json = with_thanos_section(block.meta, external_labels, files).to_json();
        self.counters
            .uploaded_bytes
            .fetch_add(meta_json.len() as u64, Ordering::Relaxed);
        self.bucket.put(&meta_key, meta_json.into()).await?;
        self.counters.uploads.fetch_add(1, Ordering::Relaxed);
        self.counters
            .last_upload_ms
            .store(crate::model::time::now_ms(), Ordering::Relaxed);
        tracing::info!(block = %id, "block uploaded");
        Ok(true)
    }

    /// One request for a file up to a part; a multipart upload, a part at a time, above.
    async fn upload_file(
        &self,
        key: &ObjectPath,
        file: File,
        size: u64,
    ) -> Result<(), ShipperError> {
        let part = self.config.part_size.max(1);
        let mut reader = PartReader {
            file: Some(file),
            key: key.to_string(),
        };
        if size <= part as u64 {
            let data = reader.next(size as usize).await?;
            self.bucket.put(key, data.into()).await?;
            return Ok(());
        }
        let mut upload =
            WriteMultipart::new_with_chunk_size(self.bucket.put_multipart(key).await?, part);
        let result = async {
            let mut left = size;
            while left > 0 {
                let n = left.min(part as u64);
                let data = reader.next(n as usize).await?;
                upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                upload.write(&data);
                left -= n;
            }
            Ok::<_, ShipperError>(())
        }
        .await;
        match result {
            Ok(()) => {
                upload.finish().await?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(key = %key, error = %abort, "aborting the multipart upload");
                }
                Err(e)
            }
        }
    }
}

/// Reads a file in consecutive pieces on the blocking pool.
struct PartReader {
    file: Option<File>,
    key: String,
}

impl PartReader {
    async fn next(&mut self, n: usize) -> Result<Vec<u8>, ShipperError> {
        let mut file = self.file.take().expect("one read at a time");
        let (file, result) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; n];
            let r = file.read_exact(&mut buf).map(|()| buf);
            (file, r)
        })
        .await
        .map_err(|e| ShipperError::Task(e.to_string()))?;
        self.file = Some(file);
        result.map_err(io_err(Path::new(&self.key)))
    }
}

/// The meta.json to upload: Prometheus' own, with the `thanos` section filled in (fields a
/// newer writer put there are kept).
fn with_thanos_section(mut meta: BlockMeta, labels: &Labels, files: Vec<FileMeta>) -> BlockMeta {
    let mut thanos = meta.thanos.take().unwrap_or_default();
    thanos.labels = labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    thanos.downsample.resolution = 0;
    thanos.source = "sidecar".into();
    thanos.files = files;
    meta.thanos = Some(thanos);
    meta
}

/// The blocks noted as shipped in the state file at `path`; a missing or unreadable state
/// file is an empty one (the bucket check keeps that from uploading a block twice). Blocking.
fn read_shipped(path: &std::path::Path) -> BTreeSet<Ulid> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeSet::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "reading the shipper state; starting from an empty one");
            return BTreeSet::new();
        }
    };
    match serde_json::from_slice::<ShipperState>(&data) {
        Ok(s) => s.uploaded.iter().filter_map(|u| u.parse().ok()).collect(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "invalid shipper state; starting from an empty one");
            BTreeSet::new()
        }
    }
}

/// The blocks in `dir` that are due for shipping (complete, with samples, level 1 unless
/// `upload_compacted`), by ULID, so oldest first.
fn due_blocks(
    dir: &Path,
    upload_compacted: bool,
) -> Result<std::collections::BTreeMap<Ulid, BlockMeta>, ShipperError> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| Ulid::from_string(n).ok())
        else {
            continue;
        };
        let meta_path = entry.path().join(META_FILENAME);
        let data = match std::fs::read(&meta_path) {
            Ok(d) => d,
            // Being written, or being deleted: not a block to ship now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&meta_path)(e)),
        };
        let meta = BlockMeta::parse(&meta_path.display().to_string(), &data)?;
        if meta.stats.num_samples == 0 {
            tracing::debug!(block = %id, "not shipping an empty block");
            continue;
        }
        if meta.compaction.level > 1 && !upload_compacted {
            tracing::debug!(block = %id, level = meta.compaction.level, "not shipping a compacted block (see --shipper.upload-compacted)");
            continue;
        }
        out.insert(id, meta);
    }
    Ok(out)
}

/// Opens a block's meta.json, chunk segments and index; files in upload order.
fn open_block(dir: &Path, id: Ulid) -> Result<OpenBlock, ShipperError> {
    let open = |p: &Path| -> Result<(File, u64), ShipperError> {
        let f = File::open(p).map_err(io_err(p))?;
        let size = f.metadata().map_err(io_err(p))?.len();
        Ok((f, size))
    };
    let meta_path = dir.join(META_FILENAME);
    let (mut meta_file, _) = open(&meta_path)?;
    let mut data = Vec::new();
    meta_file
        .read_to_end(&mut data)
        .map_err(io_err(&meta_path))?;
    let meta = BlockMeta::parse(&meta_path.display().to_string(), &data)?;
    if meta.ulid != id.to_string() {
        return Err(TsdbError::invalid(
            &meta_path.display().to_string(),
            crate::tsdb::Section::Meta,
            0,
            format!("meta.json names block {}", meta.ulid),
        )
        .into());
    }
    let chunks_dir = dir.join("chunks");
    let mut segments: Vec<String> = std::fs::read_dir(&chunks_dir)
        .map_err(io_err(&chunks_dir))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    segments.sort();
    let mut files = Vec::with_capacity(segments.len() + 1);
    for name in segments {
        let (f, size) = open(&chunks_dir.join(&name))?;
        files.push((format!("chunks/{name}"), f, size));
    }
    let (f, size) = open(&dir.join("index"))?;
    files.push(("index".into(), f, size));
    Ok(OpenBlock { meta, files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::write_block;
    use futures::StreamExt;
    use object_store::memory::InMemory;

    fn block(dir: &Path, id: u128, series: usize) -> Ulid {
        let id = Ulid(id);
        let mut data: Vec<(Labels, Vec<(i64, f64)>)> = (0..series)
            .map(|i| {
                let l = Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]);
                (
                    l,
                    (0..500)
                        .map(|t| (t * 1000, (t * i as i64) as f64))
                        .collect(),
                )
            })
            .collect();
        write_block(dir, id, 0, 500_000, &mut data, None).unwrap();
        id
    }

    async fn object(bucket: &InMemory, key: &str) -> Vec<u8> {
        bucket
            .get(&ObjectPath::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    #[test]
    fn thanos_section_is_filled_and_extra_fields_kept() {
        let meta: BlockMeta = serde_json::from_str(
            r#"{"ulid":"01HQ3Z1Y5K8N0C2V9W4XG6T7BR","minTime":0,"maxTime":1,"version":1,
                "thanos":{"labels":{"old":"x"},"future":1}}"#,
        )
        .unwrap();
        let labels = Labels::from_pairs([("cluster", "eu"), ("replica", "a")]);
        let m = with_thanos_section(meta, &labels, vec![]);
        let t = m.thanos.unwrap();
        assert_eq!(t.source, "sidecar");
        assert_eq!(t.labels.len(), 2);
        assert_eq!(t.labels["cluster"], "eu");
        assert_eq!(t.extra["future"], 1);
    }

    #[tokio::test]
    async fn ships_each_block_once_byte_for_byte() {
        let tsdb = tempfile::tempdir().unwrap();
        let big = block(tsdb.path(), 1 << 80, 300);
        let small = block(tsdb.path(), 2 << 80, 3);
        // Not shipped: empty, compacted, and a directory without meta.json (being written).
        let empty = Ulid(3 << 80);
        write_block(tsdb.path(), empty, 0, 1, &mut [], None).unwrap();
        let compacted = block(tsdb.path(), 4 << 80, 2);
        let meta_path = tsdb.path().join(compacted.to_string()).join(META_FILENAME);
        let mut m = BlockMeta::parse("m", &std::fs::read(&meta_path).unwrap()).unwrap();
        m.compaction.level = 2;
        std::fs::write(&meta_path, m.to_json()).unwrap();
        std::fs::create_dir(tsdb.path().join(Ulid(5 << 80).to_string())).unwrap();

        let bucket = Arc::new(InMemory::new());
        let shipper = Shipper::new(
            bucket.clone(),
            ShipperConfig {
                tsdb_dir: tsdb.path().to_path_buf(),
                upload_compacted: false,
                part_size: 4096, // the big block's files go up as multipart uploads
            },
        );
        let labels = Labels::from_pairs([("cluster", "c1")]);
        assert!(matches!(
            shipper.sync(&Labels::default()).await,
            Err(ShipperError::NoExternalLabels)
        ));
        let report = shipper.sync(&labels).await.unwrap();
        assert_eq!(report.uploaded, vec![big, small]);
        assert!(report.failed.is_empty());
        assert_eq!(shipper.shipped(), BTreeSet::from([big, small]));

        for id in [big, small] {
            let dir = tsdb.path().join(id.to_string());
            let meta =
                BlockMeta::parse("m", &object(&bucket, &format!("{id}/meta.json")).await).unwrap();
            let thanos = meta.thanos.unwrap();
            assert_eq!(thanos.source, "sidecar");
            assert_eq!(thanos.labels["cluster"], "c1");
            let mut rels = Vec::new();
            for f in &thanos.files {
                rels.push(f.rel_path.clone());
                if f.rel_path == META_FILENAME {
                    continue;
                }
                let local = std::fs::read(dir.join(&f.rel_path)).unwrap();
                assert_eq!(f.size_bytes, Some(local.len() as u64));
                assert!(object(&bucket, &format!("{id}/{}", f.rel_path)).await == local);
            }
            assert_eq!(rels, vec!["chunks/000001", "index", "meta.json"]);
        }
        let keys: Vec<String> = bucket
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        assert_eq!(keys.len(), 6, "{keys:?}");

        // Nothing new: nothing uploaded. A lost state file: the bucket check finds both.
        let again = shipper.sync(&labels).await.unwrap();
        assert!(again.uploaded.is_empty() && again.already_in_bucket.is_empty());
        std::fs::remove_file(tsdb.path().join(STATE_FILENAME)).unwrap();
        let again = shipper.sync(&labels).await.unwrap();
        assert!(again.uploaded.is_empty());
        assert_eq!(again.already_in_bucket, vec![big, small]);
        assert_eq!(shipper.counters.uploads.load(Ordering::Relaxed), 2);
    }
}
