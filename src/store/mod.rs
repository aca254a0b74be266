//! The store engine: the blocks of a bucket, synced periodically, and the queries the
//! StoreAPI answers over them (Series, LabelNames, LabelValues, Info).
//!
//! This layer knows blocks, matchers and label sets, not gRPC: `server/` adapts it to the
//! wire. Queries are synchronous and may block on the bucket, so the server runs them on the
//! blocking pool; the sync is async (listings and meta.json) with block opening (index
//! headers) on the blocking pool too.

mod block;
mod budget;
mod fetch;
mod lazy;
mod merge;
mod metrics;
mod query;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::StreamExt;
use object_store::ObjectStore;
use tokio::runtime::Handle;
use ulid::Ulid;

pub use block::{BlockIo, BlockPostings, BucketBlock, BLOCK_ID_LABEL};
pub use budget::{BudgetCounters, MemoryBudget};
pub use fetch::{coalesce, FetchCost};
pub use lazy::{HeaderCounters, LazyIndex};
pub use merge::cursor_batch;
pub use metrics::StoreCollector;
pub use query::CHUNK_BATCHES_AHEAD;
pub use service::{RunningStore, StoreService, StoreServiceConfig};

use crate::bucket::discover::{block_files, discover, BlockFilters};
use crate::cache::Cache;
use crate::model::Labels;
use crate::objstore::{BucketGate, FetchCounters, LocalBucket};
use crate::storeapi::{
    Component, LabelsQuery, Limits, QueryStats, SeriesEvent, SeriesQuery, SeriesSummary,
    StoreEngine, StoreError, StoreInfo,
};
use crate::tsdb::TsdbError;

impl From<TsdbError> for StoreError {
    /// Reads that failed are the bucket's fault (transient); bad bytes are corruption. The
    /// message names the file, hence the block.
    fn from(e: TsdbError) -> Self {
        match e {
            TsdbError::Read {
                source: crate::tsdb::source::ReadError::WouldWait,
                ..
            } => StoreError::WouldWait,
            TsdbError::Read { .. } | TsdbError::Io { .. } => StoreError::Unavailable(e.to_string()),
            TsdbError::Corrupt { .. } | TsdbError::InvalidInput(_) => {
                StoreError::Internal(e.to_string())
            }
        }
    }
}

/// The state of one request: its statistics, what it may still download, the index cache, and
/// what it holds of the store's in-flight memory budget (given back when it is dropped).
#[derive(Debug, Default)]
pub struct QueryCtx {
    pub stats: QueryStats,
    /// Bytes the request may download in all; 0 means unlimited.
    pub bytes_limit: u64,
    pub cache: Option<Arc<Cache>>,
    /// The chunk cache, for chunks ending at or after `chunk_cache_min_time` (ms): it holds
    /// recent data only, so one long-range query cannot flush what dashboards keep reading.
    pub chunk_cache: Option<Arc<Cache>>,
    pub chunk_cache_min_time: i64,
    pub budget: Option<Arc<MemoryBudget>>,
    /// Leave expensive matchers out of the postings and filter series by them instead
    /// ([`crate::block::PostingsPlan::defer_expensive`]).
    pub postings_cost_model: bool,
    /// Bytes of `budget` this request holds.
    held: u64,
    /// The request's place in line for the budget.
    ticket: u64,
}

impl QueryCtx {
    /// Checks that downloading `bytes` more stays within the request's limit and takes them
    /// from the memory budget (waiting for room if needed), before downloading.
    pub fn reserve(&mut self, bytes: u64) -> Result<(), StoreError> {
        let done = self.stats.data_downloaded_size_sum as u64;
        if self.bytes_limit > 0 && done + bytes > self.bytes_limit {
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded bytes limit: the request would download {} bytes, the limit is {}",
                done + bytes,
                self.bytes_limit
            )));
        }
        self.hold(bytes)
    }

    /// Takes `bytes` from the memory budget for data the request keeps in memory (not a
    /// download), waiting for room if needed.
    pub fn hold(&mut self, bytes: u64) -> Result<(), StoreError> {
        if let Some(budget) = &self.budget {
            budget.acquire(self.ticket, bytes)?;
            self.held += bytes;
        }
        Ok(())
    }

    /// Gives back `bytes` of what [`Self::hold`] or [`Self::reserve`] took.
    pub fn release(&mut self, bytes: u64) {
        let bytes = bytes.min(self.held);
        self.held -= bytes;
        if let Some(budget) = &self.budget {
            budget.release(self.ticket, bytes);
        }
    }

    /// The budget and the request's place in line, for a task of the request that takes
    /// bytes without waiting ([`budget::Taken`]).
    pub(crate) fn budget_ticket(&self) -> Option<(Arc<MemoryBudget>, u64)> {
        self.budget.clone().map(|b| (b, self.ticket))
    }

    /// Counts `bytes` downloaded without [`Self::reserve`] (a task of the request took
    /// them from the budget itself), failing if that passes the request's bytes limit.
    pub(crate) fn count_download(&mut self, bytes: u64) -> Result<(), StoreError> {
        self.stats.data_downloaded_size_sum += bytes as i64;
        let done = self.stats.data_downloaded_size_sum as u64;
        if self.bytes_limit > 0 && done > self.bytes_limit {
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded bytes limit: the request downloaded {done} bytes, the limit is {}",
                self.bytes_limit
            )));
        }
        Ok(())
    }

    /// Takes over bytes a task of this request took from the budget.
    pub(crate) fn adopt(&mut self, taken: budget::Taken) {
        self.held += taken.hand_over();
    }

    /// Bytes of the memory budget held now: a mark for [`Self::release_to`].
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Gives back what was reserved since `mark`, once that data has been sent on.
    pub fn release_to(&mut self, mark: u64) {
        self.release(self.held.saturating_sub(mark));
    }

    /// A context for part of this request run on another thread: the same cache, budget and
    /// place in line, what remains of the bytes limit, and statistics and holdings of its
    /// own, handed back with [`Self::absorb`].
    pub fn fork(&self) -> QueryCtx {
        let downloaded = self.stats.data_downloaded_size_sum as u64;
        QueryCtx {
            stats: QueryStats::default(),
            bytes_limit: match self.bytes_limit {
                0 => 0,
                // At least one byte: 0 would mean unlimited.
                limit => limit.saturating_sub(downloaded).max(1),
            },
            cache: self.cache.clone(),
            chunk_cache: self.chunk_cache.clone(),
            chunk_cache_min_time: self.chunk_cache_min_time,
            budget: self.budget.clone(),
            postings_cost_model: self.postings_cost_model,
            held: 0,
            ticket: self.ticket,
        }
    }

    /// Takes over the statistics and holdings of a [`Self::fork`]. Forks run at once each
    /// check the bytes limit alone, so the total is checked here.
    pub fn absorb(&mut self, mut part: QueryCtx) -> Result<(), StoreError> {
        self.held += std::mem::take(&mut part.held);
        self.stats.add(&part.stats);
        let downloaded = self.stats.data_downloaded_size_sum as u64;
        if self.bytes_limit > 0 && downloaded > self.bytes_limit {
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded bytes limit: the request downloaded {downloaded} bytes, the limit is {}",
                self.bytes_limit
            )));
        }
        Ok(())
    }
}

impl Drop for QueryCtx {
    fn drop(&mut self) {
        self.release_to(0);
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Local state: one directory per block with its index header.
    pub data_dir: PathBuf,
    pub filters: BlockFilters,
    pub limits: Limits,
    /// Index headers built or loaded at once after a sync.
    pub block_sync_concurrency: usize,
    /// Open a block's index only when a query needs it, and close it after
    /// `index_header_idle_timeout` without use (zero: never). Otherwise every index stays open.
    pub lazy_index_headers: bool,
    pub index_header_idle_timeout: Duration,
    /// Bytes all in-flight requests may hold together (0: unlimited), and how long a request
    /// waits for room before it is refused.
    pub inflight_memory_limit: u64,
    pub inflight_memory_wait: Duration,
    /// The directory of a local file system bucket: its files are read directly, and ranges
    /// are not merged over gaps since reads are cheap.
    pub local_bucket: Option<PathBuf>,
    /// See [`QueryCtx::postings_cost_model`].
    pub postings_cost_model: bool,
    /// Chunks older than this (by their end, from now) skip the chunk cache; zero: any age.
    pub chunk_cache_max_age: Duration,
    /// GETs the store has in flight to the bucket at most (0: unbounded).
    pub max_bucket_requests: usize,
    /// GETs one request has in flight at most.
    pub bucket_requests_per_query: usize,
}

/// `--store.max-bucket-requests`' default: enough for a few large requests at full speed
/// over a bucket 40 ms away, few enough for one connection pool.
pub const DEFAULT_MAX_BUCKET_REQUESTS: usize = 256;
/// `--store.max-bucket-requests-per-query`'s default.
pub const DEFAULT_BUCKET_REQUESTS_PER_QUERY: usize = 64;

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

    fn answers_without_waiting(&self) -> bool {
        true
    }

    fn settle_in_place(&self, answered: bool) {
        let caches = std::iter::once(&*self.cache).chain(self.chunk_cache.as_deref());
        crate::cache::settle_no_wait_lookups(caches, answered);
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
    /// Matchers applied to series labels instead of postings, and the series they dropped.
    pub postings_filters: AtomicU64,
    pub series_filtered: AtomicU64,
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
    /// The served blocks, published whole: readers (queries, Info, `/metrics`) never wait;
    /// the sync and a failed header build replace it.
    blocks: ArcSwap<BTreeMap<Ulid, Arc<BucketBlock>>>,
    synced: AtomicBool,
    /// Blocks whose index was open when the last snapshot was written, so it is opened again
    /// during the first sync (before ready) instead of on the first query.
    open_at_start: BTreeSet<Ulid>,
    /// The set last written to the snapshot (locked only to read or replace it).
    snapshot: parking_lot::Mutex<BTreeSet<Ulid>>,
    /// Bounds the index headers being built or opened in the background.
    header_permits: Arc<tokio::sync::Semaphore>,
    pub headers: Arc<HeaderCounters>,
    /// Blocks whose index failed to open: they serve again only once it opens.
    unopenable: tokio::sync::Mutex<BTreeSet<Ulid>>,
    /// What was fetched from the bucket for index files, and for chunk segments.
    pub fetched_index: Arc<FetchCounters>,
    pub fetched_chunks: Arc<FetchCounters>,
    /// The bucket's files, read in place, when it is a local directory.
    local_bucket: Option<Arc<LocalBucket>>,
    /// Bounds the GETs in flight to the bucket (`--store.max-bucket-requests`).
    pub gate: Arc<BucketGate>,
    pub counters: StoreCounters,
    pub cache: Arc<Cache>,
    pub chunk_cache: Option<Arc<Cache>>,
    pub budget: Arc<MemoryBudget>,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStore")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl BucketStore {
    pub fn new(
        bucket: Arc<dyn ObjectStore>,
        config: StoreConfig,
        cache: Arc<Cache>,
        chunk_cache: Option<Arc<Cache>>,
        runtime: Handle,
    ) -> Self {
        let open_at_start = read_open_snapshot(&config.data_dir);
        // Reads the CPU quota now rather than in the first query.
        query::cores();
        let budget = Arc::new(MemoryBudget::new(
            config.inflight_memory_limit,
            config.inflight_memory_wait,
        ));
        let header_permits = Arc::new(tokio::sync::Semaphore::new(
            config.block_sync_concurrency.max(1),
        ));
        let local_bucket = config
            .local_bucket
            .clone()
            .map(|dir| Arc::new(LocalBucket::new(dir)));
        BucketStore {
            bucket,
            local_bucket,
            gate: Arc::new(BucketGate::new(config.max_bucket_requests)),
            config,
            runtime,
            blocks: ArcSwap::default(),
            synced: AtomicBool::new(false),
            snapshot: parking_lot::Mutex::new(open_at_start.clone()),
            open_at_start,
            header_permits,
            headers: Arc::new(HeaderCounters::default()),
            unopenable: tokio::sync::Mutex::new(BTreeSet::new()),
            budget,
            fetched_index: Arc::new(FetchCounters::default()),
            fetched_chunks: Arc::new(FetchCounters::default()),
            counters: StoreCounters::default(),
            cache,
            chunk_cache,
        }
    }

    /// A fresh request context with the store's limits and caches.
    pub fn query_ctx(&self) -> QueryCtx {
        let chunk_cache_min_time = match self.config.chunk_cache_max_age {
            age if age.is_zero() => i64::MIN,
            age => crate::model::time::now_ms().saturating_sub(age.as_millis() as i64),
        };
        QueryCtx {
            stats: QueryStats::default(),
            bytes_limit: self.config.limits.downloaded_bytes,
            cache: Some(self.cache.clone()),
            chunk_cache: self.chunk_cache.clone(),
            chunk_cache_min_time,
            budget: Some(self.budget.clone()),
            postings_cost_model: self.config.postings_cost_model,
            held: 0,
            ticket: self.budget.ticket(),
        }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// True once the first sync has completed.
    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The blocks being served, by ID. Never waits.
    pub fn blocks(&self) -> Vec<Arc<BucketBlock>> {
        self.served().values().cloned().collect()
    }

    /// The served set as last published. Never waits.
    pub fn served(&self) -> Arc<BTreeMap<Ulid, Arc<BucketBlock>>> {
        self.blocks.load_full()
    }

    /// Brings the served set in line with the bucket: adds new blocks, drops blocks that are
    /// gone, marked for deletion or filtered out, and removes their local state. New blocks
    /// serve at once; their index headers are built in the background (see
    /// [`Self::prepare_headers`]), and a query that needs one first waits for it; indexes open
    /// before the last shutdown are opened again before this returns. A block that
    /// fails to open is logged, left out and retried next time; the others keep serving.
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
        let current = self.served();
        self.unopenable
            .lock()
            .await
            .retain(|id| found.blocks.contains_key(id));
        // A block whose meta could not be fetched this time keeps serving if it did before.
        let keep_failed: Vec<Ulid> = found.failed.iter().map(|f| f.0).collect();
        for (id, e) in &found.failed {
            tracing::warn!(block = %id, error = %e, "fetching block metadata failed; retrying next sync");
            report.failed.push((*id, e.clone()));
        }

        let new: Vec<(Ulid, crate::tsdb::meta::BlockMeta)> = found
            .blocks
            .iter()
            .filter(|(id, _)| !current.contains_key(id))
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        let opened: Vec<(Ulid, Result<Arc<BucketBlock>, String>)> = futures::stream::iter(new)
            .map(|(id, meta)| {
                let this = self.clone();
                async move {
                    let block = match this.open_block(id, meta).await {
                        Ok(b) => Arc::new(b),
                        Err(e) => return (id, Err(e)),
                    };
                    // A block that could not be opened before must open before serving again,
                    // so a broken block does not come and go with every sync.
                    let unopenable = this.unopenable.lock().await.contains(&id);
                    if unopenable {
                        if let Err(e) = this.prepare_header(&block).await {
                            return (id, Err(e));
                        }
                    }
                    (id, Ok(block))
                }
            })
            .buffer_unordered(self.config.block_sync_concurrency.max(1))
            .collect()
            .await;

        let mut added = Vec::new();
        for (id, r) in opened {
            match r {
                Ok(b) => {
                    self.counters.block_loads.fetch_add(1, Ordering::Relaxed);
                    added.push(b);
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
        let keep = |id: &Ulid| found.blocks.contains_key(id) || keep_failed.contains(id);
        let before = self.blocks.rcu(|blocks| {
            let mut blocks: BTreeMap<Ulid, Arc<BucketBlock>> = blocks
                .iter()
                .filter(|(id, _)| keep(id))
                .map(|(id, b)| (*id, b.clone()))
                .collect();
            blocks.extend(added.iter().map(|b| (b.id, b.clone())));
            blocks
        });
        let dropped: Vec<Arc<BucketBlock>> = before
            .iter()
            .filter(|(id, _)| !keep(id))
            .map(|(_, b)| b.clone())
            .collect();
        report.served = self.blocks.load().len();
        for b in &dropped {
            self.counters.block_drops.fetch_add(1, Ordering::Relaxed);
            report.dropped.push(b.id);
            self.cache.remove_block(b.id);
            if let Some(chunks) = &self.chunk_cache {
                chunks.remove_block(b.id);
            }
            tracing::info!(block = %b.id, "block no longer served; removing its local state");
        }
        let dirs: Vec<PathBuf> = dropped.iter().map(|b| b.dir.clone()).collect();
        let this = self.clone();
        let served: BTreeSet<Ulid> = found.blocks.keys().copied().collect();
        let _ = tokio::task::spawn_blocking(move || {
            for dir in dirs {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing local block state");
                }
            }
            this.remove_stray_local_state(&served);
        })
        .await;
        // Indexes that were open before the last shutdown, with their header still on disk,
        // open again before the sync returns, so before the store reports ready: the first
        // queries after a restart find them as the last ones left them. Headers to build
        // (new blocks, a cold start) are left to the background.
        let (reopen, rest): (Vec<_>, Vec<_>) = added
            .into_iter()
            .partition(|b| self.open_at_start.contains(&b.id) && b.index.header_size() > 0);
        if !reopen.is_empty() {
            self.clone().prepare_headers(reopen).await;
        }
        if !rest.is_empty() {
            tokio::spawn(self.clone().prepare_headers(rest));
        }
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
        let io = BlockIo {
            bucket: self.bucket.clone(),
            runtime: self.runtime.clone(),
            index_counters: self.fetched_index.clone(),
            chunk_counters: self.fetched_chunks.clone(),
            headers: self.headers.clone(),
            local_bucket: self.local_bucket.clone(),
            gate: self.gate.clone(),
        };
        let dir = self.config.data_dir.join(id.to_string());
        // Looks for the block's header on the local disk.
        tokio::task::spawn_blocking(move || BucketBlock::open(meta, &files, &dir, &io))
            .await
            .map_err(|e| format!("opening the block: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// Builds the index headers of newly added blocks that do not have one on disk yet, and
    /// opens those that were open before the last restart (or all of them when lazy loading is
    /// off), `block_sync_concurrency` at a time. A block whose index cannot be opened stops
    /// being served; the next sync retries it.
    async fn prepare_headers(self: Arc<Self>, blocks: Vec<Arc<BucketBlock>>) {
        let started = Instant::now();
        let count = blocks.len();
        futures::stream::iter(blocks)
            .map(|block| {
                let this = self.clone();
                async move {
                    if this.prepare_header(&block).await.is_err() {
                        this.blocks.rcu(|blocks| {
                            let mut blocks = BTreeMap::clone(blocks);
                            if blocks
                                .get(&block.id)
                                .is_some_and(|b| Arc::ptr_eq(b, &block))
                            {
                                blocks.remove(&block.id);
                            }
                            blocks
                        });
                    }
                }
            })
            .buffer_unordered(usize::MAX)
            .collect::<()>()
            .await;
        tracing::info!(
            blocks = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index headers ready"
        );
    }

    /// Opens the block's index once (building its header if needed), leaving it open only when
    /// it should be; failures are counted, logged and remembered.
    async fn prepare_header(&self, block: &Arc<BucketBlock>) -> Result<(), String> {
        let _permit = self
            .header_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let keep_open = !self.config.lazy_index_headers || self.open_at_start.contains(&block.id);
        let b = block.clone();
        let opened = tokio::task::spawn_blocking(move || {
            if keep_open {
                b.index.get().map(drop)
            } else {
                b.index.ensure_header()
            }
        })
        .await;
        let error = match opened {
            Ok(Ok(())) => {
                self.unopenable.lock().await.remove(&block.id);
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("index header task failed: {e}"),
        };
        self.counters
            .block_load_failures
            .fetch_add(1, Ordering::Relaxed);
        self.unopenable.lock().await.insert(block.id);
        tracing::error!(block = %block.id, error = %error, "opening the block's index failed; not serving it, retrying next sync");
        Err(error)
    }

    /// Closes indexes idle for longer than the idle timeout and records which stay open, so a
    /// restart reopens them. Cheap; run it periodically (blocking: it writes a small file).
    pub fn maintain_index_headers(&self) {
        let idle = self.config.index_header_idle_timeout;
        let blocks = self.blocks();
        if self.config.lazy_index_headers && !idle.is_zero() {
            let closed = blocks
                .iter()
                .filter(|b| b.index.close_if_idle(idle))
                .count();
            if closed > 0 {
                tracing::debug!(closed, "closed idle block indexes");
            }
        }
        let open: BTreeSet<Ulid> = blocks
            .iter()
            .filter(|b| b.index.is_open())
            .map(|b| b.id)
            .collect();
        if *self.snapshot.lock() == open {
            return;
        }
        match write_open_snapshot(&self.config.data_dir, &open) {
            Ok(()) => *self.snapshot.lock() = open,
            Err(e) => tracing::warn!(error = %e, "writing the open-blocks snapshot"),
        }
    }

    /// Removes local block directories of blocks no longer in the bucket's served set.
    /// Blocking (file system).
    fn remove_stray_local_state(&self, served: &BTreeSet<Ulid>) {
        let Ok(entries) = std::fs::read_dir(&self.config.data_dir) else {
            return;
        };
        let loaded = self.served();
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| Ulid::from_string(n).ok())
            else {
                continue;
            };
            if !served.contains(&id) && !loaded.contains_key(&id) && entry.path().is_dir() {
                tracing::info!(block = %id, "removing local state of a block not served");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// What `Info` advertises; an error until the first sync completes.
    pub fn info(&self) -> Result<StoreInfo, StoreError> {
        if !self.is_ready() {
            return Err(not_ready());
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

/// What the store says before its first sync has completed.
fn not_ready() -> StoreError {
    StoreError::NotReady("the first block sync has not completed".into())
}

/// The file under the data dir listing the blocks whose index was open.
const OPEN_SNAPSHOT: &str = "open-blocks.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct OpenSnapshot {
    version: u32,
    blocks: BTreeSet<Ulid>,
}

fn read_open_snapshot(data_dir: &Path) -> BTreeSet<Ulid> {
    let path = data_dir.join(OPEN_SNAPSHOT);
    let Ok(text) = std::fs::read(&path) else {
        return BTreeSet::new();
    };
    match serde_json::from_slice::<OpenSnapshot>(&text) {
        Ok(s) if s.version == 1 => s.blocks,
        Ok(s) => {
            tracing::warn!(path = %path.display(), version = s.version, "unknown open-blocks snapshot version; ignoring it");
            BTreeSet::new()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable open-blocks snapshot; ignoring it");
            BTreeSet::new()
        }
    }
}

fn write_open_snapshot(data_dir: &Path, blocks: &BTreeSet<Ulid>) -> std::io::Result<()> {
    let snapshot = OpenSnapshot {
        version: 1,
        blocks: blocks.clone(),
    };
    let json = serde_json::to_vec_pretty(&snapshot).map_err(std::io::Error::other)?;
    crate::fs::write_atomically(&data_dir.join(OPEN_SNAPSHOT), &json)
}
