//! The store gateway as a running component: what `stele store` is, as a library entry
//! point a test (or another binary) can start in-process, on port 0.
//!
//! [`StoreService::start`] creates the data directory, opens the store, serves the StoreAPI
//! and the HTTP endpoint, and keeps the store in line with the bucket: the first sync (and
//! the index cache saved at the last shutdown, read back) before `/-/ready` turns 200, then a
//! sync every `sync_interval` and the index-header upkeep (idle indexes closed, the open set
//! remembered). [`RunningStore::stopped`] waits for the shutdown, drains both servers, stops
//! the background work, and saves what the next start reads: the open-index set and the
//! index cache.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;

use super::{BucketStore, StoreCollector, StoreConfig};
use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::server::{Readiness, ServerError, Shutdown};
use crate::storeapi::server::{Endpoints, EndpointsConfig};

/// Everything a store gateway runs with; the CLI builds it from `stele store`'s flags.
pub struct StoreServiceConfig {
    pub bucket: Arc<dyn ObjectStore>,
    pub store: StoreConfig,
    /// The index cache and the optional chunk cache, their memcached figures (if any)
    /// registered in `metrics` already.
    pub index_cache: Arc<Cache>,
    pub chunk_cache: Option<Arc<Cache>>,
    pub endpoints: EndpointsConfig,
    /// How often the bucket is synced again (`--sync-block-duration`).
    pub sync_interval: Duration,
    /// Save the index cache at shutdown and read it back before ready
    /// (`--index-cache.snapshot`).
    pub index_cache_snapshot: bool,
    pub metrics: Metrics,
}

/// A store gateway serving; see the module doc.
pub struct RunningStore {
    store: Arc<BucketStore>,
    endpoints: Endpoints,
    shutdown: Shutdown,
    syncer: tokio::task::JoinHandle<()>,
    header_keeper: tokio::task::JoinHandle<()>,
    index_cache: Arc<Cache>,
    cache_snapshot: Option<PathBuf>,
}

pub struct StoreService;

impl StoreService {
    /// Starts the store on the current runtime; it serves until `shutdown` fires.
    pub async fn start(
        c: StoreServiceConfig,
        shutdown: Shutdown,
    ) -> Result<RunningStore, ServerError> {
        let data_dir = c.store.data_dir.clone();
        let dir = data_dir.clone();
        tokio::task::spawn_blocking(move || std::fs::create_dir_all(&dir))
            .await
            .map_err(|e| ServerError::Io {
                what: "creating the data dir".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| ServerError::Io {
                what: format!("creating --data-dir {}", data_dir.display()),
                source,
            })?;
        let cache_snapshot = (c.index_cache_snapshot && c.index_cache.max_bytes() > 0)
            .then(|| data_dir.join(crate::cache::snapshot::FILE_NAME));
        let runtime = tokio::runtime::Handle::current();
        let store = {
            let (bucket, config, cache, chunks) =
                (c.bucket, c.store, c.index_cache.clone(), c.chunk_cache);
            // Reads the open-index snapshot and the CPU quota: a few small files.
            tokio::task::spawn_blocking(move || {
                Arc::new(BucketStore::new(bucket, config, cache, chunks, runtime))
            })
            .await
            .map_err(|e| ServerError::Io {
                what: "opening the store".into(),
                source: std::io::Error::other(e),
            })?
        };
        c.metrics.register_collector(StoreCollector(store.clone()));
        let readiness = Readiness::new();
        readiness.set_not_ready("the first block sync has not completed");
        // Serve gRPC right away (Info says "not ready" until the first sync is done).
        let endpoints = Endpoints::start(
            store.clone(),
            &c.endpoints,
            &c.metrics,
            &readiness,
            &shutdown,
        )
        .await?;
        let syncer = tokio::spawn(sync_loop(
            store.clone(),
            readiness,
            c.sync_interval,
            c.index_cache.clone(),
            cache_snapshot.clone(),
        ));
        let header_keeper = tokio::spawn(keep_headers(store.clone(), shutdown.clone()));
        Ok(RunningStore {
            store,
            endpoints,
            shutdown,
            syncer,
            header_keeper,
            index_cache: c.index_cache,
            cache_snapshot,
        })
    }
}

impl RunningStore {
    pub fn grpc_address(&self) -> SocketAddr {
        self.endpoints.grpc_address()
    }

    pub fn http_address(&self) -> SocketAddr {
        self.endpoints.http_address()
    }

    pub fn store(&self) -> &Arc<BucketStore> {
        &self.store
    }

    /// Waits for the shutdown, then drains the servers, stops the sync and the header upkeep
    /// and saves the state the next start reads.
    pub async fn stopped(self) -> Result<(), ServerError> {
        self.shutdown.wait().await;
        tracing::info!("shutting down: draining requests");
        self.syncer.abort();
        let drained = self.endpoints.drained().await;
        // The upkeep stops at the shutdown, after the round it may be in (writing the
        // open-set snapshot on the blocking pool): the final snapshot is written after it.
        let _ = self.header_keeper.await;
        let store = self.store.clone();
        // Record which indexes are open, so the next start reopens them before the first query.
        let _ = tokio::task::spawn_blocking(move || store.maintain_index_headers()).await;
        if let Some(path) = self.cache_snapshot {
            let cache = self.index_cache.clone();
            let _ = tokio::task::spawn_blocking(move || save_cache_snapshot(&cache, &path)).await;
        }
        tracing::info!("stopped");
        drained
    }
}

/// The first sync, the saved cache read back, ready; then a sync every `every`.
async fn sync_loop(
    store: Arc<BucketStore>,
    readiness: Readiness,
    every: Duration,
    cache: Arc<Cache>,
    mut snapshot: Option<PathBuf>,
) {
    loop {
        match store.sync().await {
            Ok(_) => {
                // Once, before the store reports ready: a rollout sends it traffic only when
                // its cache is warm again.
                if let Some(path) = snapshot.take() {
                    let served = store.blocks().iter().map(|b| b.id).collect();
                    let cache = cache.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        load_cache_snapshot(&cache, &path, &served)
                    })
                    .await;
                }
                readiness.set_ready();
            }
            Err(e) => {
                tracing::error!(error = %e, "block sync failed; retrying at the next interval")
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Closes idle indexes and records the open set, often enough that an index closes within
/// ~10% of its idle timeout; without one, only the snapshot needs refreshing.
async fn keep_headers(store: Arc<BucketStore>, shutdown: Shutdown) {
    let config = store.config();
    let idle = config.index_header_idle_timeout;
    let every = if idle.is_zero() || !config.lazy_index_headers {
        Duration::from_secs(30)
    } else {
        (idle / 10).clamp(Duration::from_millis(100), Duration::from_secs(30))
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.wait() => return,
        }
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || store.maintain_index_headers()).await;
    }
}

fn save_cache_snapshot(cache: &Cache, path: &std::path::Path) {
    let started = std::time::Instant::now();
    match crate::cache::snapshot::save(cache, path) {
        Ok(r) => tracing::info!(
            path = %path.display(), items = r.items, bytes = r.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index cache written for the next start"
        ),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "writing the index cache snapshot")
        }
    }
}

fn load_cache_snapshot(
    cache: &Cache,
    path: &std::path::Path,
    served: &std::collections::HashSet<ulid::Ulid>,
) {
    let started = std::time::Instant::now();
    match crate::cache::snapshot::load(cache, path, served) {
        Ok(r) => tracing::info!(
            path = %path.display(), items = r.items, bytes = r.bytes,
            skipped_gone_blocks = r.skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index cache read back from the last shutdown"
        ),
        Err(crate::cache::snapshot::SnapshotError::Io(e))
            if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            path = %path.display(), error = %e,
            "index cache snapshot unusable; starting with what it gave"
        ),
    }
}
