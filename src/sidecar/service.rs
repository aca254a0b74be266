//! The sidecar as a running component: what `stele sidecar` is, as a library entry point.
//!
//! [`SidecarService::start`] serves the StoreAPI over Prometheus and the HTTP endpoint, then
//! waits for Prometheus (its external labels are required: blocks shipped without them cannot
//! be told apart), reports ready, and keeps a heartbeat (readiness follows Prometheus) and the
//! shipper going. [`RunningSidecar::stopped`] waits for the shutdown, or for the wait for
//! Prometheus to fail, and drains both servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{PrometheusStore, Shipper};
use crate::metrics::Metrics;
use crate::prom::PrometheusError;
use crate::server::{Readiness, ServerError, Shutdown};
use crate::storeapi::server::{Endpoints, EndpointsConfig};

/// Everything a sidecar runs with; the CLI builds it from `stele sidecar`'s flags.
pub struct SidecarServiceConfig {
    pub store: Arc<PrometheusStore>,
    /// Without a bucket, nothing is shipped.
    pub shipper: Option<Arc<Shipper>>,
    pub endpoints: EndpointsConfig,
    /// `--prometheus.ready_timeout`, `--prometheus.get_config_interval`,
    /// `--shipper.sync-interval`.
    pub ready_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub ship_interval: Duration,
    pub metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(
        "Prometheus at {url} has no external labels: blocks uploaded without them cannot be \
         told apart from other Prometheus servers'; set global.external_labels in its \
         configuration"
    )]
    NoExternalLabels { url: String },
    #[error("Prometheus did not answer within --prometheus.ready_timeout {timeout}: {source}")]
    PrometheusNotReady {
        timeout: String,
        #[source]
        source: PrometheusError,
    },
}

/// A sidecar serving; see the module doc.
pub struct RunningSidecar {
    endpoints: Endpoints,
    shutdown: Shutdown,
    /// Waits for Prometheus, then runs the heartbeat and the shipper until the shutdown;
    /// ends with the wait's failure, if it failed.
    work: tokio::task::JoinHandle<Result<(), SidecarError>>,
}

pub struct SidecarService;

impl SidecarService {
    /// Starts the sidecar on the current runtime; it serves until `shutdown` fires, or until
    /// Prometheus does not answer within the ready timeout.
    pub async fn start(
        c: SidecarServiceConfig,
        shutdown: Shutdown,
    ) -> Result<RunningSidecar, SidecarError> {
        c.metrics
            .register_collector(super::metrics::SidecarCollector {
                store: c.store.clone(),
                shipper: c.shipper.clone(),
            });
        let readiness = Readiness::new();
        readiness.set_not_ready("Prometheus has not answered yet");
        let endpoints = Endpoints::start(
            c.store.clone(),
            &c.endpoints,
            &c.metrics,
            &readiness,
            &shutdown,
        )
        .await?;
        let work = tokio::spawn(work(c, readiness.clone(), shutdown.clone()));
        Ok(RunningSidecar {
            endpoints,
            shutdown,
            work,
        })
    }
}

impl RunningSidecar {
    pub fn grpc_address(&self) -> SocketAddr {
        self.endpoints.grpc_address()
    }

    pub fn http_address(&self) -> SocketAddr {
        self.endpoints.http_address()
    }

    /// Waits for the shutdown (or the failed wait for Prometheus), then drains the servers.
    pub async fn stopped(self) -> Result<(), SidecarError> {
        let failed = match self.work.await {
            Ok(result) => result.err(),
            Err(e) => Some(SidecarError::Server(ServerError::Io {
                what: "the sidecar's background work".into(),
                source: std::io::Error::other(e),
            })),
        };
        if failed.is_some() {
            self.shutdown.trigger();
        }
        tracing::info!("shutting down: draining requests");
        self.endpoints.drained().await?;
        tracing::info!("stopped");
        failed.map_or(Ok(()), Err)
    }
}

/// Waits for Prometheus, marks ready, then the heartbeat and the shipper until the shutdown.
async fn work(
    c: SidecarServiceConfig,
    readiness: Readiness,
    shutdown: Shutdown,
) -> Result<(), SidecarError> {
    tokio::select! {
        r = wait_for_prometheus(&c.store, c.ready_timeout) => r?,
        () = shutdown.wait() => return Ok(()),
    }
    readiness.set_ready();
    let heartbeat = heartbeat(c.store.clone(), readiness, c.heartbeat_interval);
    let ship = async {
        match c.shipper.clone() {
            Some(shipper) => ship(shipper, c.store.clone(), c.ship_interval).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = heartbeat => {}
        () = ship => {}
        () = shutdown.wait() => {}
    }
    Ok(())
}

/// Polls Prometheus until it answers; fails if it has no external labels or does not answer
/// within `timeout`.
async fn wait_for_prometheus(
    store: &PrometheusStore,
    timeout: Duration,
) -> Result<(), SidecarError> {
    let deadline = Instant::now() + timeout;
    loop {
        match store.refresh().await {
            Ok(state) if state.external_labels.is_empty() => {
                return Err(SidecarError::NoExternalLabels {
                    url: store.client().url().to_string(),
                })
            }
            Ok(state) => {
                tracing::info!(external_labels = %state.external_labels, min_time = state.min_time, "Prometheus answered");
                return Ok(());
            }
            Err(source) if Instant::now() >= deadline => {
                return Err(SidecarError::PrometheusNotReady {
                    timeout: humantime::format_duration(timeout).to_string(),
                    source,
                })
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
