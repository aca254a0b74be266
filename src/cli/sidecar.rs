//! `stele sidecar`: runs next to one Prometheus, ships its completed blocks to the bucket and
//! serves its recent data over the StoreAPI. Flags follow Thanos' `thanos sidecar`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::metrics::Metrics;
use crate::model::time::parse_duration;
use crate::prom::PrometheusClient;
use crate::server::grpc::StoreApi;
use crate::server::{parse_listen_addr, HttpServer, HttpState, Readiness, Shutdown, Watchdog};
use crate::sidecar::metrics::SidecarCollector;
use crate::sidecar::shipper::DEFAULT_PART_SIZE;
use crate::sidecar::{PrometheusStore, Shipper, ShipperConfig};
use crate::store::Limits;

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

    let metrics = Metrics::new();
    metrics.register_collector(SidecarCollector {
        store: store.clone(),
        shipper: shipper.clone(),
    });
    let readiness = Readiness::new();
    readiness.set_not_ready("Prometheus has not answered yet");
    let watchdog = Watchdog::start(&tokio::runtime::Handle::current(), &metrics)?;
    let state =
        HttpState::new("sidecar", metrics.clone(), readiness.clone()).with_watchdog(watchdog);
    // Probes and scrapes on a thread of their own: they never queue behind query work.
    let http = HttpServer::bind(http_addr, state)?.serve_on_own_thread(shutdown.clone())?;

    let api = StoreApi::new(store.clone(), args.series_max_concurrency, &metrics)?;
    let grpc = api.serve(grpc_addr, shutdown.clone()).await?;

    let started = tokio::select! {
        r = wait_for_prometheus(&store, args.ready_timeout) => Some(r),
        _ = shutdown.wait() => None,
    };
    let mut tasks = Vec::new();
    if let Some(r) = started {
        if let Err(e) = r {
            shutdown.trigger();
            let _ = grpc.await;
            let _ = http.await;
            return Err(e);
        }
        readiness.set_ready();
        tasks.push(tokio::spawn(heartbeat(
            store.clone(),
            readiness.clone(),
            args.get_config_interval,
        )));
        if let Some(shipper) = shipper {
            tasks.push(tokio::spawn(ship(
                shipper,
                store.clone(),
                args.shipper_sync_interval,
            )));
        }
    }

    shutdown.wait().await;
    tracing::info!("shutting down: draining requests");
    for t in tasks {
        t.abort();
    }
    grpc.await
        .context("gRPC server task")?
        .context("gRPC server")?;
    http.await.context("HTTP server")?;
    tracing::info!("stopped");
    Ok(())
}

/// Polls Prometheus until it answers; fails if it has no external labels or does not answer
/// within `timeout`.
async fn wait_for_prometheus(store: &PrometheusStore, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match store.refresh().await {
            Ok(state) if state.external_labels.is_empty() => anyhow::bail!(
                "Prometheus at {} has no external labels: blocks uploaded without them cannot be told apart from other Prometheus servers'; set global.external_labels in its configuration",
                store.client().url()
            ),
            Ok(state) => {
                tracing::info!(external_labels = %state.external_labels, min_time = state.min_time, "Prometheus answered");
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(e).context(format!(
                    "Prometheus did not answer within --prometheus.ready_timeout {}",
                    humantime::format_duration(timeout)
                ))
            }
            Err(e) => tracing::warn!(error = %e, "waiting for Prometheus"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Keeps the external labels and min time current; readiness follows whether Prometheus
/// answers.
async fn heartbeat(store: Arc<PrometheusStore>, readiness: Readiness, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match store.refresh().await {
            Ok(s) if s.external_labels.is_empty() => {
                tracing::error!(
                    "Prometheus no longer has external labels; shipping with the last known ones"
                );
                readiness.set_not_ready("Prometheus has no external labels");
            }
            Ok(_) => readiness.set_ready(),
            Err(e) => {
                tracing::warn!(error = %e, "Prometheus heartbeat failed");
                readiness.set_not_ready(format!("Prometheus is unreachable: {e}"));
            }
        }
    }
}

/// Ships due blocks every `every`, with the external labels Prometheus last reported.
async fn ship(shipper: Arc<Shipper>, store: Arc<PrometheusStore>, every: Duration) {
    let mut labels = store.state().map(|s| s.external_labels).unwrap_or_default();
    loop {
        if let Ok(s) = store.state() {
            if !s.external_labels.is_empty() {
                labels = s.external_labels;
            }
        }
        match shipper.sync(&labels).await {
            Ok(r) if !r.uploaded.is_empty() || !r.failed.is_empty() => tracing::info!(
                uploaded = r.uploaded.len(),
                failed = r.failed.len(),
                "shipper sync done"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "shipper sync failed; retrying at the next interval")
            }
        }
        tokio::time::sleep(every).await;
    }
}
