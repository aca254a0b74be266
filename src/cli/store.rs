//! `stele store`: the store gateway. Flags follow Thanos' `thanos store` where one exists, so
//! a deployment switches by changing the image.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::bucket::discover::BlockFilters;
use crate::bucket::relabel::parse_rules;
use crate::metrics::Metrics;
use crate::model::time::{parse_duration, TimeBound};
use crate::server::grpc::StoreApi;
use crate::server::{parse_listen_addr, HttpServer, HttpState, Readiness, Shutdown};
use crate::store::{BucketStore, Limits, StoreCollector, StoreConfig};

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
}

/// A size like Thanos writes it: `250MB`, `1GiB`, `512KB`, `1024` (bytes); base 2 throughout.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number and a unit like 250MB"))?;
    let shift = match s[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "KB" | "KIB" | "K" => 10,
        "MB" | "MIB" | "M" => 20,
        "GB" | "GIB" | "G" => 30,
        "TB" | "TIB" | "T" => 40,
        u => return Err(format!("invalid size {s:?}: unknown unit {u:?}")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
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
        match (&self.objstore_config, &self.objstore_config_file) {
            (Some(y), _) => Ok(y.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .with_context(|| format!("reading --objstore.config-file {}", f.display())),
            (None, None) => anyhow::bail!(
                "no bucket configured: pass --objstore.config-file or --objstore.config (Thanos objstore YAML)"
            ),
        }
    }

    fn filters(&self) -> anyhow::Result<BlockFilters> {
        let relabel_yaml = match (&self.relabel_config, &self.relabel_config_file) {
            (Some(y), _) => Some(y.clone()),
            (None, Some(f)) => Some(std::fs::read_to_string(f).with_context(|| {
                format!("reading --selector.relabel-config-file {}", f.display())
            })?),
            (None, None) => None,
        };
        let relabel = match relabel_yaml {
            Some(y) => parse_rules(&y).context("invalid --selector.relabel-config")?,
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
    let grpc_addr = parse_listen_addr(&args.grpc_address)?;
    let http_addr = parse_listen_addr(&args.http_address)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating --data-dir {}", args.data_dir.display()))?;
    let config = StoreConfig {
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
        index_cache_bytes: args.index_cache_size,
        inflight_memory_limit: args.inflight_memory_limit,
        inflight_memory_wait: args.inflight_memory_wait,
        local_bucket: bucket_config.provider == crate::objstore::Provider::Filesystem,
    };
    let store = Arc::new(BucketStore::new(
        bucket,
        config,
        tokio::runtime::Handle::current(),
    ));

    let metrics = Metrics::new();
    metrics.register_collector(StoreCollector(store.clone()));
    let readiness = Readiness::new();
    readiness.set_not_ready("the first block sync has not completed");
    let state = HttpState {
        component: "store",
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let http = tokio::spawn(
        HttpServer::bind(http_addr, state)
            .await?
            .serve(shutdown.clone()),
    );

    // Serve gRPC right away (Info says "not ready" until the first sync is done), then sync.
    let api = StoreApi::new(store.clone(), args.series_max_concurrency, &metrics)?;
    let grpc = api.serve(grpc_addr, shutdown.clone()).await?;

    let syncer = {
        let store = store.clone();
        let every = args.sync_block_duration;
        tokio::spawn(async move {
            loop {
                match store.sync().await {
                    Ok(_) => readiness.set_ready(),
                    Err(e) => {
                        tracing::error!(error = %e, "block sync failed; retrying at the next interval")
                    }
                }
                tokio::time::sleep(every).await;
            }
        })
    };

    let header_keeper = {
        let store = store.clone();
        // Often enough that an index closes within ~10% of its idle timeout; without one, only
        // the open-set snapshot needs refreshing.
        let idle = args.index_header_idle_timeout;
        let every = if idle.is_zero() || !args.lazy_index_headers {
            Duration::from_secs(30)
        } else {
            (idle / 10).clamp(Duration::from_millis(100), Duration::from_secs(30))
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.maintain_index_headers()).await;
            }
        })
    };

    shutdown.wait().await;
    tracing::info!("shutting down: draining requests");
    syncer.abort();
    header_keeper.abort();
    grpc.await
        .context("gRPC server task")?
        .context("gRPC server")?;
    http.await.context("HTTP server task")??;
    // Record which indexes are open, so the next start reopens them before the first query.
    let _ = tokio::task::spawn_blocking(move || store.maintain_index_headers()).await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_thanos() {
        assert_eq!(parse_size("250MB"), Ok(250 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert!(parse_size("MB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999TB").is_err());
    }

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
