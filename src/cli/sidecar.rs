//! `stele sidecar`: runs next to one Prometheus, ships its completed blocks to the bucket and
//! serves its recent data over the StoreAPI. Flags follow Thanos' `thanos sidecar`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::metrics::Metrics;
use crate::model::time::parse_duration;
use crate::prom::PrometheusClient;
use crate::server::{parse_listen_addr, Shutdown};
use crate::sidecar::shipper::DEFAULT_PART_SIZE;
use crate::sidecar::{
    PrometheusStore, Shipper, ShipperConfig, SidecarService, SidecarServiceConfig,
};
use crate::storeapi::server::EndpointsConfig;
use crate::storeapi::Limits;

#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// Base URL of the Prometheus server next to this sidecar.
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    pub prometheus_url: String,
    /// Prometheus' data directory (its --storage.tsdb.path); only read, except for the
    /// shipper's state file thanos.shipper.json.
    #[arg(long = "tsdb.path", default_value = "./data")]
    pub tsdb_path: PathBuf,
    /// Listen address of the gRPC StoreAPI.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: String,
    /// Listen address of the HTTP endpoints (/metrics, /-/ready, /-/healthy).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: String,
    /// Thanos objstore YAML file of the bucket blocks are shipped to; without a bucket the
    /// sidecar only serves the StoreAPI.
    #[arg(long = "objstore.config-file", value_name = "FILE")]
    pub objstore_config_file: Option<PathBuf>,
    /// Thanos objstore YAML inline (instead of --objstore.config-file).
    #[arg(
        long = "objstore.config",
        value_name = "YAML",
        conflicts_with = "objstore_config_file"
    )]
    pub objstore_config: Option<String>,
    /// Ship blocks Prometheus compacted (level > 1) too, not only the 2h blocks it cuts.
    #[arg(long = "shipper.upload-compacted")]
    pub upload_compacted: bool,
    /// How often the TSDB directory is checked for blocks to ship (stele-specific).
    #[arg(long = "shipper.sync-interval", default_value = "30s", value_parser = parse_duration)]
    pub shipper_sync_interval: Duration,
    /// How often Prometheus' external labels and lowest timestamp are read (the heartbeat
    /// that also decides readiness).
    #[arg(long = "prometheus.get_config_interval", default_value = "30s", value_parser = parse_duration)]
    pub get_config_interval: Duration,
    /// Time limit of each of those reads (and of the label and series API calls).
    #[arg(long = "prometheus.get_config_timeout", default_value = "5s", value_parser = parse_duration)]
    pub get_config_timeout: Duration,
    /// How long to wait at start for Prometheus to answer before giving up.
    #[arg(long = "prometheus.ready_timeout", default_value = "10m", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    /// Series a single Series request may return (0: unlimited).
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    pub request_series: u64,
    /// Samples a single Series request may return (0: unlimited).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    pub request_samples: u64,
    /// Series requests served at once; more wait.
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = 20)]
    pub series_max_concurrency: usize,
}

impl SidecarArgs {
    fn objstore_yaml(&self) -> anyhow::Result<Option<String>> {
        match (&self.objstore_config, &self.objstore_config_file) {
            (Some(y), _) => Ok(Some(y.clone())),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(Some)
                .with_context(|| format!("reading --objstore.config-file {}", f.display())),
            (None, None) => Ok(None),
        }
    }
}

pub fn run(args: SidecarArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stele-sidecar")
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: SidecarArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals()?;
    let grpc_addr = parse_listen_addr(&args.grpc_address)?;
    let http_addr = parse_listen_addr(&args.http_address)?;
    let shipper = match args.objstore_yaml()? {
        Some(yaml) => Some(Arc::new(Shipper::new(
            crate::objstore::from_yaml(&yaml)?,
            ShipperConfig {
                tsdb_dir: args.tsdb_path.clone(),
                upload_compacted: args.upload_compacted,
                part_size: DEFAULT_PART_SIZE,
            },
        ))),
        None => {
            tracing::info!(
                "no bucket configured: blocks are not shipped, only the StoreAPI is served"
            );
            None
        }
    };
    if shipper.is_some() {
        anyhow::ensure!(
            args.tsdb_path.is_dir(),
            "--tsdb.path {} is not a directory (it must be Prometheus' --storage.tsdb.path)",
            args.tsdb_path.display()
        );
    }
    let client = PrometheusClient::new(&args.prometheus_url, args.get_config_timeout)?;
    let store = Arc::new(PrometheusStore::new(
        client,
        Limits {
            series: args.request_series,
            samples: args.request_samples,
            downloaded_bytes: 0,
        },
        tokio::runtime::Handle::current(),
    ));

    let config = SidecarServiceConfig {
        store,
        shipper,
        endpoints: EndpointsConfig {
            component: "sidecar",
            grpc_address: grpc_addr,
            http_address: http_addr,
            series_max_concurrency: args.series_max_concurrency,
        },
        ready_timeout: args.ready_timeout,
        heartbeat_interval: args.get_config_interval,
        ship_interval: args.shipper_sync_interval,
        metrics: Metrics::new(),
    };
    SidecarService::start(config, shutdown)
        .await?
        .stopped()
        .await?;
    Ok(())
}
