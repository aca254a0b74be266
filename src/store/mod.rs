//! The store engine: the blocks of a bucket, synced periodically, and the queries the
//! StoreAPI answers over them (Series, LabelNames, LabelValues, Info).
//!
//! This layer knows blocks, matchers and label sets, not gRPC: `server/` adapts it to the
//! wire. Queries are synchronous and may block on the bucket, so the server runs them on the
//! blocking pool; the sync is async (listings and meta.json) with block opening (index
//! headers) on the blocking pool too.

mod block;
mod fetch;
mod metrics;
mod query;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use futures::StreamExt;
use object_store::ObjectStore;
use thiserror::Error;
use tokio::runtime::Handle;
use ulid::Ulid;

pub use block::{BucketBlock, StoredChunk, BLOCK_ID_LABEL};
pub use fetch::{coalesce, FetchCost, MAX_GAP};
pub use metrics::StoreCollector;
pub use query::{LabelsQuery, SeriesEvent, SeriesOut, SeriesQuery, SeriesSummary, ShardSpec};

use crate::bucket::discover::{block_files, discover, BlockFilters};
use crate::cache::IndexCache;
use crate::model::Labels;
use crate::objstore::FetchCounters;
use crate::tsdb::TsdbError;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The bucket failed (or a block vanished from it): usually transient.
    #[error("{0}")]
    Unavailable(String),
    /// Stored data is corrupt.
    #[error("{0}")]
    Internal(String),
    #[error("not ready: the first block sync has not completed")]
    NotReady,
}

impl From<TsdbError> for StoreError {
    /// Reads that failed are the bucket's fault (transient); bad bytes are corruption. The
    /// message names the file, hence the block.
    fn from(e: TsdbError) -> Self {
        match e {
            TsdbError::Read { .. } | TsdbError::Io { .. } => StoreError::Unavailable(e.to_string()),
            TsdbError::Corrupt { .. } | TsdbError::InvalidInput(_) => {
                StoreError::Internal(e.to_string())
            }
        }
    }
}

/// The state of one request: its statistics, what it may still download, the index cache.
#[derive(Debug, Default)]
pub struct QueryCtx {
    pub stats: QueryStats,
    /// Bytes the request may download in all; 0 means unlimited.
    pub bytes_limit: u64,
    pub cache: Option<Arc<IndexCache>>,
}

impl QueryCtx {
    /// Checks that downloading `bytes` more stays within the limit, before downloading.
    pub fn reserve(&self, bytes: u64) -> Result<(), StoreError> {
        let done = self.stats.data_downloaded_size_sum as u64;
        if self.bytes_limit > 0 && done + bytes > self.bytes_limit {
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded bytes limit: the request would download {} bytes, the limit is {}",
                done + bytes,
                self.bytes_limit
            )));
        }
        Ok(())
    }
}

/// Per-request limits; 0 means unlimited. They are checked before the work they guard.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Series a Series request may touch (counted on postings, before reading series).
    pub series: u64,
    /// Samples a request may return, estimated as chunks x 120 before fetching chunks.
    pub samples: u64,
    /// Bytes a request may download from the bucket.
    pub downloaded_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Local state: one directory per block with its index header.
    pub data_dir: PathBuf,
    pub filters: BlockFilters,
    pub limits: Limits,
    /// Blocks opened (index headers built) at once during a sync.
    pub block_sync_concurrency: usize,
    /// Bytes of the index cache (postings and series entries); 0 disables it.
    pub index_cache_bytes: u64,
}

/// Per-request statistics, returned to the querier in the response hints (QueryStats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub blocks_queried: i64,
    pub merged_series_count: i64,
    pub merged_chunks_count: i64,
    pub postings_touched: i64,
    pub postings_touched_size_sum: i64,
    pub postings_to_fetch: i64,
    pub postings_fetched: i64,
    pub postings_fetched_size_sum: i64,
    pub postings_fetch_count: i64,
    pub series_touched: i64,
    pub series_touched_size_sum: i64,
    pub series_fetched: i64,
    pub series_fetched_size_sum: i64,
    pub series_fetch_count: i64,
    pub chunks_touched: i64,
    pub chunks_touched_size_sum: i64,
    pub chunks_fetched: i64,
    pub chunks_fetched_size_sum: i64,
    pub chunks_fetch_count: i64,
    pub data_downloaded_size_sum: i64,
    pub get_all_duration: std::time::Duration,
    pub merge_duration: std::time::Duration,
}

/// What `Info` advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// The distinct external-label sets of the served blocks, sorted.
    pub label_sets: Vec<Labels>,
    pub min_time: i64,
    pub max_time: i64,
    /// Per external-label set: its time span.
    pub tsdb_infos: Vec<(Labels, i64, i64)>,
}

/// Which component serves the StoreAPI, as `Info` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Store,
    Sidecar,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Store => "store",
            Component::Sidecar => "sidecar",
        }
    }
}

/// An engine behind the StoreAPI: the bucket store here, the sidecar over a Prometheus in
/// `sidecar/`. `server::grpc` adapts any of them to the wire, so request parsing, status
/// codes, hints and request metrics are one piece of code. Queries may block (on the bucket,
/// on Prometheus), so the server runs them on the blocking pool; `info` must be cheap.
pub trait StoreEngine: Send + Sync + 'static {
    fn component(&self) -> Component;

    /// What `Info` advertises; an error while the engine cannot serve.
    fn info(&self) -> Result<StoreInfo, StoreError>;

    /// Streams the series matching `q`, sorted by labels, to `emit` (which returns false to
    /// stop early). Blocking.
    fn series(
        &self,
        q: &SeriesQuery,
        emit: &mut dyn FnMut(SeriesEvent) -> bool,
    ) -> Result<SeriesSummary, StoreError>;

    /// Sorted label names and the warnings. Blocking.
    fn label_names(&self, q: &LabelsQuery) -> Result<(Vec<String>, Vec<String>), StoreError>;

    /// Sorted values of label `name` and the warnings. Blocking.
    fn label_values(
        &self,
        name: &str,
        q: &LabelsQuery,
    ) -> Result<(Vec<String>, Vec<String>), StoreError>;
}

impl StoreEngine for BucketStore {
    fn component(&self) -> Component {
        Component::Store
    }

    fn info(&self) -> Result<StoreInfo, StoreError> {
        BucketStore::info(self)
    }

    fn series(
        &self,
        q: &SeriesQuery,
        emit: &mut dyn FnMut(SeriesEvent) -> bool,
    ) -> Result<SeriesSummary, StoreError> {
        BucketStore::series(self, q, emit)
    }

    fn label_names(&self, q: &LabelsQuery) -> Result<(Vec<String>, Vec<String>), StoreError> {
        BucketStore::label_names(self, q)
    }

    fn label_values(
        &self,
        name: &str,
        q: &LabelsQuery,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        BucketStore::label_values(self, name, q)
    }
}

/// Counters of the store's life, for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub syncs: AtomicU64,
    pub sync_failures: AtomicU64,
    pub block_loads: AtomicU64,
    pub block_load_failures: AtomicU64,
    pub block_drops: AtomicU64,
    pub headers_built: AtomicU64,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub loaded: Vec<Ulid>,
    pub dropped: Vec<Ulid>,
    pub failed: Vec<(Ulid, String)>,
    pub skipped: Vec<(Ulid, String)>,
    pub served: usize,
}

pub struct BucketStore {
    bucket: Arc<dyn ObjectStore>,
    config: StoreConfig,
    runtime: Handle,
    blocks: RwLock<BTreeMap<Ulid, Arc<BucketBlock>>>,
    synced: AtomicBool,
    /// What was fetched from the bucket for index files, and for chunk segments.
    pub fetched_index: Arc<FetchCounters>,
    pub fetched_chunks: Arc<FetchCounters>,
    pub counters: StoreCounters,
    pub cache: Arc<IndexCache>,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStore")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl BucketStore {
    pub fn new(bucket: Arc<dyn ObjectStore>, config: StoreConfig, runtime: Handle) -> Self {
        let cache = Arc::new(IndexCache::new(config.index_cache_bytes));
        BucketStore {
            bucket,
            config,
            runtime,
            blocks: RwLock::new(BTreeMap::new()),
            synced: AtomicBool::new(false),
            fetched_index: Arc::new(FetchCounters::default()),
            fetched_chunks: Arc::new(FetchCounters::default()),
            counters: StoreCounters::default(),
            cache,
        }
    }

    /// A fresh request context with the store's limits and cache.
    pub fn query_ctx(&self) -> QueryCtx {
        QueryCtx {
            stats: QueryStats::default(),
            bytes_limit: self.config.limits.downloaded_bytes,
            cache: Some(self.cache.clone()),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// True once the first sync has completed.
    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The blocks being served, by ID.
    pub fn blocks(&self) -> Vec<Arc<BucketBlock>> {
        self.blocks
            .read()
            .expect("blocks lock")
            .values()
            .cloned()
            .collect()
    }

    /// Brings the served set in line with the bucket: opens new blocks (building their index
    /// headers), drops blocks that are gone, marked for deletion or filtered out, and removes
    /// their local state. A block that fails to open is logged and retried next time; the
    /// others keep serving.
    pub async fn sync(self: &Arc<Self>) -> Result<SyncReport, StoreError> {
        let started = Instant::now();
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        let found = match discover(
            &self.bucket,
            &self.config.filters,
            crate::model::time::now_ms(),
        )
        .await
        {
            Ok(f) => f,
            Err(e) => {
                self.counters.sync_failures.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Unavailable(e.to_string()));
            }
        };
        let mut report = SyncReport {
            skipped: found
                .skipped
                .iter()
                .map(|(id, s)| (*id, s.to_string()))
                .collect(),
            ..Default::default()
        };
        for (id, s) in &found.skipped {
            tracing::debug!(block = %id, reason = %s, "block not served");
        }
        let current: Vec<Ulid> = self
            .blocks
            .read()
            .expect("blocks lock")
            .keys()
            .copied()
            .collect();
        // A block whose meta could not be fetched this time keeps serving if it did before.
        let keep_failed: Vec<Ulid> = found.failed.iter().map(|f| f.0).collect();
        for (id, e) in &found.failed {
            tracing::warn!(block = %id, error = %e, "fetching block metadata failed; retrying next sync");
            report.failed.push((*id, e.clone()));
        }

        let new: Vec<(Ulid, crate::tsdb::meta::BlockMeta)> = found
            .blocks
            .iter()
            .filter(|(id, _)| !current.contains(id))
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        let opened: Vec<(Ulid, Result<BucketBlock, String>)> = futures::stream::iter(new)
            .map(|(id, meta)| {
                let this = self.clone();
                async move { (id, this.open_block(id, meta).await) }
            })
            .buffer_unordered(self.config.block_sync_concurrency.max(1))
            .collect()
            .await;

        let mut dropped = Vec::new();
        {
            let mut blocks = self.blocks.write().expect("blocks lock");
            for (id, r) in opened {
                match r {
                    Ok(b) => {
                        self.counters.block_loads.fetch_add(1, Ordering::Relaxed);
                        if b.header_built {
                            self.counters.headers_built.fetch_add(1, Ordering::Relaxed);
                        }
                        blocks.insert(id, Arc::new(b));
                        report.loaded.push(id);
                    }
                    Err(e) => {
                        self.counters
                            .block_load_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(block = %id, error = %e, "loading block failed; retrying next sync");
                        report.failed.push((id, e));
                    }
                }
            }
            blocks.retain(|id, b| {
                let keep = found.blocks.contains_key(id) || keep_failed.contains(id);
                if !keep {
                    dropped.push(b.clone());
                }
                keep
            });
            report.served = blocks.len();
        }
        for b in &dropped {
            self.counters.block_drops.fetch_add(1, Ordering::Relaxed);
            report.dropped.push(b.id);
            self.cache.remove_block(b.id);
            tracing::info!(block = %b.id, "block no longer served; removing its local state");
            if let Err(e) = std::fs::remove_dir_all(&b.dir) {
                tracing::warn!(block = %b.id, error = %e, "removing local block state");
            }
        }
        self.remove_stray_local_state(&found.blocks);
        self.synced.store(true, Ordering::Release);
        tracing::info!(
            served = report.served,
            loaded = report.loaded.len(),
            dropped = report.dropped.len(),
            failed = report.failed.len(),
            skipped = report.skipped.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "block sync done"
        );
        Ok(report)
    }

    async fn open_block(
        &self,
        id: Ulid,
        meta: crate::tsdb::meta::BlockMeta,
    ) -> Result<BucketBlock, String> {
        let files = block_files(&self.bucket, id)
            .await
            .map_err(|e| format!("listing block files: {e}"))?;
        let bucket = self.bucket.clone();
        let dir = self.config.data_dir.join(id.to_string());
        let runtime = self.runtime.clone();
        let counters = (self.fetched_index.clone(), self.fetched_chunks.clone());
        tokio::task::spawn_blocking(move || {
            BucketBlock::open(bucket, meta, &files, &dir, runtime, counters)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("block loader panicked: {e}"))?
    }

    /// Removes local block directories of blocks no longer in the bucket's served set.
    fn remove_stray_local_state(&self, served: &BTreeMap<Ulid, crate::tsdb::meta::BlockMeta>) {
        let Ok(entries) = std::fs::read_dir(&self.config.data_dir) else {
            return;
        };
        let loaded = self.blocks.read().expect("blocks lock");
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| Ulid::from_string(n).ok())
            else {
                continue;
            };
            if !served.contains_key(&id) && !loaded.contains_key(&id) {
                tracing::info!(block = %id, "removing local state of a block not served");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// What `Info` advertises; an error until the first sync completes.
    pub fn info(&self) -> Result<StoreInfo, StoreError> {
        if !self.is_ready() {
            return Err(StoreError::NotReady);
        }
        let blocks = self.blocks();
        let mut spans: BTreeMap<Labels, (i64, i64)> = BTreeMap::new();
        for b in &blocks {
            let e = spans
                .entry(b.ext_labels.clone())
                .or_insert((i64::MAX, i64::MIN));
            e.0 = e.0.min(b.meta.min_time);
            e.1 = e.1.max(b.meta.max_time);
        }
        let now = crate::model::time::now_ms();
        let (lo, hi) = (
            self.config.filters.min_time.resolve(now),
            self.config.filters.max_time.resolve(now),
        );
        let clip = |(min, max): (i64, i64)| (min.max(lo), max.min(hi));
        let tsdb_infos: Vec<(Labels, i64, i64)> = spans
            .iter()
            .map(|(l, &span)| {
                let (min, max) = clip(span);
                (l.clone(), min, max)
            })
            .collect();
        let (min_time, max_time) = if blocks.is_empty() {
            (i64::MAX, i64::MIN)
        } else {
            clip((
                tsdb_infos.iter().map(|t| t.1).min().unwrap_or(i64::MAX),
                tsdb_infos.iter().map(|t| t.2).max().unwrap_or(i64::MIN),
            ))
        };
        Ok(StoreInfo {
            label_sets: spans.into_keys().collect(),
            min_time,
            max_time,
            tsdb_infos,
        })
    }
}
