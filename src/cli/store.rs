//! `stele store`: the store gateway. Flags follow Thanos' `thanos store` where one exists, so
//! a deployment switches by changing the image.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::bucket::discover::BlockFilters;
use crate::bucket::relabel::parse_rules;
use crate::cache::config::{Backend, ChunkCacheConfig, IndexCacheConfig};
use crate::cache::memcached::{MemcachedClient, MemcachedMetrics};
use crate::cache::{Cache, CacheOptions, SecondLevel};
use crate::metrics::Metrics;
use crate::model::size::parse_size;
use crate::model::time::{parse_duration, TimeBound};
use crate::server::{parse_listen_addr, Shutdown};
use crate::store::{StoreConfig, StoreService, StoreServiceConfig};
use crate::storeapi::server::EndpointsConfig;
use crate::storeapi::Limits;

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Listen address of the gRPC StoreAPI.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: String,
    /// Listen address of the HTTP endpoints (/metrics, /-/ready, /-/healthy).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: String,
    /// Local state: index headers, one directory per block.
    #[arg(long = "data-dir", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Thanos objstore YAML file describing the bucket.
    #[arg(long = "objstore.config-file", value_name = "FILE")]
    pub objstore_config_file: Option<PathBuf>,
    /// Thanos objstore YAML inline (instead of --objstore.config-file).
    #[arg(
        long = "objstore.config",
        value_name = "YAML",
        conflicts_with = "objstore_config_file"
    )]
    pub objstore_config: Option<String>,
    /// How often the bucket is synced for new and deleted blocks.
    #[arg(long = "sync-block-duration", default_value = "15m", value_parser = parse_duration)]
    pub sync_block_duration: Duration,
    /// Blocks whose index headers are built (or opened) at once after a sync.
    #[arg(long = "block-sync-concurrency", default_value_t = 20)]
    pub block_sync_concurrency: usize,
    /// Open a block's index header on the first query that needs it and close it when idle
    /// (default). With false, every block's index stays open.
    #[arg(
        long = "store.enable-index-header-lazy-reader",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub lazy_index_headers: bool,
    /// Let the postings cost model leave matchers whose postings cost more than they narrow
    /// (like `pod!=""` next to a selective matcher) out of the postings and apply them to the
    /// series' labels instead (Thanos' flag name; on by default here).
    #[arg(
        long = "store.enable-lazy-expanded-postings",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub lazy_expanded_postings: bool,
    /// Close a block's index after this long without queries (0s: never). The blocks open at
    /// shutdown are reopened at the next start.
    #[arg(
        long = "store.index-header-lazy-reader-idle-timeout",
        default_value = "5m",
        value_parser = parse_duration
    )]
    pub index_header_idle_timeout: Duration,
    /// meta.json files fetched at once during a sync.
    #[arg(long = "block-meta-fetch-concurrency", default_value_t = 32)]
    pub block_meta_fetch_concurrency: usize,
    /// Blocks younger than this are not served yet (eventually consistent buckets).
    #[arg(long = "consistency-delay", default_value = "0s", value_parser = parse_duration)]
    pub consistency_delay: Duration,
    /// Blocks marked for deletion longer ago than this are no longer served.
    #[arg(long = "ignore-deletion-marks-delay", default_value = "24h", value_parser = parse_duration)]
    pub ignore_deletion_marks_delay: Duration,
    /// Serve only blocks ending after this time: RFC 3339 or relative like -2w.
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", value_parser = parse_time)]
    pub min_time: TimeBound,
    /// Serve only blocks starting before this time: RFC 3339 or relative like -1d.
    #[arg(long = "max-time", default_value = "9999-12-31T23:59:59Z", value_parser = parse_time)]
    pub max_time: TimeBound,
    /// Relabel rules (YAML) over external labels and __block_id selecting the blocks served.
    #[arg(long = "selector.relabel-config", value_name = "YAML")]
    pub relabel_config: Option<String>,
    /// File with the relabel rules.
    #[arg(
        long = "selector.relabel-config-file",
        value_name = "FILE",
        conflicts_with = "relabel_config"
    )]
    pub relabel_config_file: Option<PathBuf>,
    /// Series a single Series request may touch (0: unlimited).
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    pub request_series: u64,
    /// Samples a single Series request may return (0: unlimited).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    pub request_samples: u64,
    /// Bytes a single request may download from the bucket (0: unlimited).
    #[arg(long = "store.grpc.downloaded-bytes-limit", default_value_t = 0)]
    pub downloaded_bytes_limit: u64,
    /// Bytes of the in-memory index cache (postings lists and series entries), e.g. 250MB,
    /// 1GB (base 2 as in Thanos); 0 disables it.
    #[arg(long = "index-cache-size", default_value = "250MB", value_parser = parse_size)]
    pub index_cache_size: u64,
    /// Thanos index-cache YAML file: `type: IN-MEMORY` (its config.max_size overrides
    /// --index-cache-size) or `type: MEMCACHED` (memcached as a second level shared by several
    /// stores, under an in-memory first level of --index-cache-size).
    #[arg(long = "index-cache.config-file", value_name = "FILE")]
    pub index_cache_config_file: Option<PathBuf>,
    /// Thanos index-cache YAML inline (instead of --index-cache.config-file).
    #[arg(
        long = "index-cache.config",
        value_name = "YAML",
        conflicts_with = "index_cache_config_file"
    )]
    pub index_cache_config: Option<String>,
    /// Index cache series-entry pages at least this long are held zstd-compressed, in memory and
    /// in memcached, when that saves a quarter of their bytes; 0 never compresses. (Postings
    /// are cached as roaring bitmaps, already compact, and never compressed.)
    #[arg(long = "index-cache.compress-min-bytes", default_value = "4KiB", value_parser = parse_size)]
    pub index_cache_compress_min_bytes: u64,
    /// Write the in-memory index cache to the data dir at shutdown and read it back after the
    /// first block sync, so the first queries after a restart are served from memory.
    #[arg(
        long = "index-cache.snapshot",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub index_cache_snapshot: bool,
    /// Bytes of the in-memory chunk cache (chunk records, apart from the index cache), e.g.
    /// 256MB; 0: no chunk cache unless --store.caching-bucket.config sets one. Off by
    /// default, so a pod switched from Thanos keeps its memory; stores that serve dashboards
    /// over an object-store bucket want it on (docs/PERFORMANCE.md, "the chunk cache").
    #[arg(long = "store.chunk-cache-size", default_value = "0", value_parser = parse_size)]
    pub chunk_cache_size: u64,
    /// Chunks whose data ended longer ago than this skip the chunk cache (so one long-range
    /// query cannot flush the recent data dashboards keep reading), e.g. 7d; 0s: any age.
    #[arg(long = "store.chunk-cache.max-age", default_value = "0s", value_parser = parse_duration)]
    pub chunk_cache_max_age: Duration,
    /// Thanos caching-bucket YAML file, read as the chunk cache's configuration: `type:
    /// IN-MEMORY` (config.max_size overrides --store.chunk-cache-size) or `type: MEMCACHED`
    /// (memcached as a second level under an in-memory level of --store.chunk-cache-size;
    /// chunk_subrange_ttl is the expiry). Subrange and metadata fields are accepted and
    /// ignored: stele caches whole chunk records.
    #[arg(long = "store.caching-bucket.config-file", value_name = "FILE")]
    pub caching_bucket_config_file: Option<PathBuf>,
    /// Thanos caching-bucket YAML inline (instead of --store.caching-bucket.config-file).
    #[arg(
        long = "store.caching-bucket.config",
        value_name = "YAML",
        conflicts_with = "caching_bucket_config_file"
    )]
    pub caching_bucket_config: Option<String>,
    /// Bytes all in-flight requests may hold at once (what they download, given back as it is
    /// sent), e.g. 1GB; a request that does not fit waits, then fails with ResourceExhausted.
    /// 0: unlimited.
    #[arg(long = "store.inflight-memory-limit", default_value = "1GB", value_parser = parse_size)]
    pub inflight_memory_limit: u64,
    /// How long a request waits for room under --store.inflight-memory-limit.
    #[arg(long = "store.inflight-memory-wait", default_value = "10s", value_parser = parse_duration)]
    pub inflight_memory_wait: Duration,
    /// Series requests served at once; more wait.
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = 20)]
    pub series_max_concurrency: usize,
    /// Ranged GETs the store has in flight to the bucket at most, all requests together
    /// (0: unbounded).
    #[arg(long = "store.max-bucket-requests", default_value_t = crate::store::DEFAULT_MAX_BUCKET_REQUESTS)]
    pub max_bucket_requests: usize,
    /// Ranged GETs one request has in flight at most: a large request keeps this many
    /// going, so its time approaches its round trips x the latency plus its bytes over
    /// the bandwidth.
    #[arg(
        long = "store.max-bucket-requests-per-query",
        default_value_t = crate::store::DEFAULT_BUCKET_REQUESTS_PER_QUERY,
        value_parser = at_least_one
    )]
    pub bucket_requests_per_query: usize,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The YAML of a flag pair `--NAME` (inline) / `--NAME-file`, with which flag gave it (to
/// name in errors).
pub(crate) fn yaml_flag(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    name: &str,
) -> anyhow::Result<Option<(String, String)>> {
    match (inline, file) {
        (Some(y), _) => Ok(Some((y.clone(), format!("--{name}")))),
        (None, Some(f)) => {
            let source = format!("--{name}-file {}", f.display());
            let yaml = std::fs::read_to_string(f).with_context(|| format!("reading {source}"))?;
            Ok(Some((yaml, source)))
        }
        (None, None) => Ok(None),
    }
}

fn parse_time(s: &str) -> Result<TimeBound, String> {
    match s {
        "0000-01-01T00:00:00Z" => Ok(TimeBound::MIN),
        "9999-12-31T23:59:59Z" => Ok(TimeBound::MAX),
        _ => TimeBound::parse(s),
    }
}

impl StoreArgs {
    /// The defaults of every flag, for a bucket given inline.
    pub fn for_bucket(
        objstore_yaml: String,
        data_dir: PathBuf,
        grpc_address: String,
        http_address: String,
    ) -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: StoreArgs,
        }
        let mut args = <Defaults as clap::Parser>::parse_from(["stele"]).args;
        args.objstore_config = Some(objstore_yaml);
        args.data_dir = data_dir;
        args.grpc_address = grpc_address;
        args.http_address = http_address;
        args
    }

    fn objstore_yaml(&self) -> anyhow::Result<String> {
        match yaml_flag(&self.objstore_config, &self.objstore_config_file, "objstore.config")? {
            Some((yaml, _)) => Ok(yaml),
            None => anyhow::bail!(
                "no bucket configured: pass --objstore.config-file or --objstore.config (Thanos objstore YAML)"
            ),
        }
    }

    /// The index cache the flags and the index-cache YAML describe; its memcached figures are
    /// registered in `metrics`.
    fn index_cache(&self, metrics: &Metrics) -> anyhow::Result<Cache> {
        let mut options = CacheOptions {
            compress_min_bytes: self.index_cache_compress_min_bytes as usize,
            ..CacheOptions::in_memory(self.index_cache_size)
        };
        let Some((yaml, source)) = yaml_flag(
            &self.index_cache_config,
            &self.index_cache_config_file,
            "index-cache.config",
        )?
        else {
            return Ok(Cache::with_options(options, None));
        };
        let config = IndexCacheConfig::parse(&yaml).with_context(|| format!("invalid {source}"))?;
        log_ignored(&source, &config.ignored);
        options.enabled = config.enabled_items.clone();
        cache_on(
            options,
            config.backend,
            config.ttl,
            metrics,
            "stele_memcached",
        )
    }

    /// The chunk cache the flags and the caching-bucket YAML describe, if any; its memcached
    /// figures are registered in `metrics`.
    fn chunk_cache(&self, metrics: &Metrics) -> anyhow::Result<Option<Cache>> {
        let options = CacheOptions::chunks(self.chunk_cache_size);
        let cache = match yaml_flag(
            &self.caching_bucket_config,
            &self.caching_bucket_config_file,
            "store.caching-bucket.config",
        )? {
            None => Cache::with_options(options, None),
            Some((yaml, source)) => {
                let config =
                    ChunkCacheConfig::parse(&yaml).with_context(|| format!("invalid {source}"))?;
                log_ignored(&source, &config.ignored);
                let prefix = "stele_chunk_cache_memcached";
                cache_on(options, config.backend, config.ttl, metrics, prefix)?
            }
        };
        Ok((cache.max_bytes() > 0 || cache.second_level().is_some()).then_some(cache))
    }

    fn filters(&self) -> anyhow::Result<BlockFilters> {
        let relabel = match yaml_flag(
            &self.relabel_config,
            &self.relabel_config_file,
            "selector.relabel-config",
        )? {
            Some((y, source)) => parse_rules(&y).with_context(|| format!("invalid {source}"))?,
            None => Vec::new(),
        };
        Ok(BlockFilters {
            consistency_delay: self.consistency_delay,
            ignore_deletion_marks_delay: self.ignore_deletion_marks_delay,
            min_time: self.min_time,
            max_time: self.max_time,
            relabel,
            concurrency: self.block_meta_fetch_concurrency,
        })
    }
}

fn log_ignored(source: &str, ignored: &[(String, &'static str)]) {
    for (field, why) in ignored {
        tracing::warn!(%source, field, why, "cache configuration field ignored");
    }
}

/// A cache of `options` on the backend its YAML chose: IN-MEMORY sets the memory level's
/// bounds; MEMCACHED puts memcached under it, the client's figures registered as
/// `<metrics_prefix>_*`.
fn cache_on(
    mut options: CacheOptions,
    backend: Backend,
    ttl: Duration,
    metrics: &Metrics,
    metrics_prefix: &str,
) -> anyhow::Result<Cache> {
    let second = match backend {
        Backend::InMemory {
            max_size,
            max_item_size,
        } => {
            options.max_bytes = max_size.unwrap_or(options.max_bytes);
            options.max_item_bytes = max_item_size.unwrap_or(0);
            None
        }
        Backend::Memcached(memcached) => {
            tracing::info!(addresses = ?memcached.addresses, memory_bytes = options.max_bytes,
                kinds = ?options.enabled, "cache: in memory, then memcached");
            let m = MemcachedMetrics::default();
            m.register(metrics, metrics_prefix)?;
            Some(SecondLevel::new(MemcachedClient::new(memcached, m), ttl))
        }
    };
    Ok(Cache::with_options(options, second))
}

pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stele-store")
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: StoreArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals()?;
    let bucket_config = crate::objstore::BucketConfig::parse(&args.objstore_yaml()?)?;
    let bucket = bucket_config.build()?;
    let metrics = Metrics::new();
    let index_cache = Arc::new(args.index_cache(&metrics)?);
    let chunk_cache = args.chunk_cache(&metrics)?.map(Arc::new);
    if let Some(c) = &chunk_cache {
        tracing::info!(
            memory_bytes = c.max_bytes(),
            max_age_seconds = args.chunk_cache_max_age.as_secs(),
            "chunk cache on"
        );
    }
    let config = StoreServiceConfig {
        bucket,
        store: StoreConfig {
            data_dir: args.data_dir.clone(),
            filters: args.filters()?,
            limits: Limits {
                series: args.request_series,
                samples: args.request_samples,
                downloaded_bytes: args.downloaded_bytes_limit,
            },
            block_sync_concurrency: args.block_sync_concurrency,
            lazy_index_headers: args.lazy_index_headers,
            index_header_idle_timeout: args.index_header_idle_timeout,
            inflight_memory_limit: args.inflight_memory_limit,
            inflight_memory_wait: args.inflight_memory_wait,
            local_bucket: bucket_config.local_directory(),
            postings_cost_model: args.lazy_expanded_postings,
            chunk_cache_max_age: args.chunk_cache_max_age,
            max_bucket_requests: args.max_bucket_requests,
            bucket_requests_per_query: args.bucket_requests_per_query,
        },
        index_cache,
        chunk_cache,
        endpoints: EndpointsConfig {
            component: "store",
            grpc_address: parse_listen_addr(&args.grpc_address)?,
            http_address: parse_listen_addr(&args.http_address)?,
            series_max_concurrency: args.series_max_concurrency,
        },
        sync_interval: args.sync_block_duration,
        index_cache_snapshot: args.index_cache_snapshot,
        metrics,
    };
    StoreService::start(config, shutdown)
        .await?
        .stopped()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let a = StoreArgs::for_bucket(
            "type: FILESYSTEM".into(),
            "d".into(),
            ":1".into(),
            ":2".into(),
        );
        assert_eq!(a.index_cache_size, 250 << 20);
        assert_eq!(a.min_time, TimeBound::MIN);
        assert_eq!(a.sync_block_duration, Duration::from_secs(900));
    }
}
