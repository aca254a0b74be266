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
    /// Blocks whose index headers are built at once during a sync.
    #[arg(long = "block-sync-concurrency", default_value_t = 20)]
    pub block_sync_concurrency: usize,
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
    let bucket = crate::objstore::from_yaml(&args.objstore_yaml()?)?;
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
        index_cache_bytes: args.index_cache_size,
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
    let http = HttpServer::bind(
        http_addr,
        HttpState {
            component: "store",
            metrics: metrics.clone(),
            readiness: readiness.clone(),
        },
    )
    .await?;
    tracing::info!(address = %http.local_addr(), "serving /metrics, /-/ready and /-/healthy over HTTP");
    let http = tokio::spawn(http.serve(shutdown.clone()));

    // Serve gRPC right away (Info says "not ready" until the first sync is done), then sync.
    let api = StoreApi::new(store.clone(), args.series_max_concurrency, &metrics)?;
    let listener = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("binding --grpc-address {grpc_addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving the StoreAPI over gRPC");
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(api.info_server())
        .add_service(api.store_server())
        // TCP_NODELAY: a Series reply is several small writes (frames, then the hints); with
        // Nagle on, the second waits for the client's delayed ACK, ~40 ms per request.
        // `Server::tcp_nodelay` only applies to listeners tonic binds itself.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.wait(),
        );
    let grpc = tokio::spawn(grpc);

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

    shutdown.wait().await;
    tracing::info!("shutting down: draining requests");
    syncer.abort();
    grpc.await
        .context("gRPC server task")?
        .context("gRPC server")?;
    http.await.context("HTTP server task")??;
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
