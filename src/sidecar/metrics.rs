//! The sidecar's figures in `/metrics`, read from its counters at scrape time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::{PrometheusStore, Shipper};
use crate::metrics::{const_counter as counter, const_gauge as gauge};

/// Registers with [`crate::metrics::Metrics::register_collector`]; `shipper` is `None` when
/// no bucket is configured.
#[derive(Clone)]
pub struct SidecarCollector {
    pub store: Arc<PrometheusStore>,
    pub shipper: Option<Arc<Shipper>>,
}

impl std::fmt::Debug for SidecarCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarCollector").finish_non_exhaustive()
    }
}

impl Collector for SidecarCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        gauge(
            &mut encoder,
            "stele_sidecar_prometheus_up",
            "Whether the last heartbeat reached Prometheus (1) or not (0)",
            None,
            i64::from(self.store.state().is_ok()),
        )?;
        let Some(shipper) = &self.shipper else {
            return Ok(());
        };
        let c = &shipper.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut encoder,
            "stele_shipper_dir_syncs",
            "Scans of the TSDB directory for blocks to upload",
            None,
            load(&c.syncs),
        )?;
        counter(
            &mut encoder,
            "stele_shipper_dir_sync_failures",
            "Scans of the TSDB directory that failed as a whole",
            None,
            load(&c.sync_failures),
        )?;
        counter(
            &mut encoder,
            "stele_shipper_uploads",
            "Blocks uploaded to the bucket",
            None,
            load(&c.uploads),
        )?;
        counter(
            &mut encoder,
            "stele_shipper_upload_failures",
            "Block uploads that failed (retried at the next sync)",
            None,
            load(&c.upload_failures),
        )?;
        counter(
            &mut encoder,
            "stele_shipper_uploaded",
            "Bytes uploaded to the bucket",
            Some(&Unit::Bytes),
            load(&c.uploaded_bytes),
        )?;
        gauge(
            &mut encoder,
            "stele_shipper_last_successful_upload_time",
            "Unix time of the last completed block upload (0: none yet)",
            Some(&Unit::Seconds),
            c.last_upload_ms.load(Ordering::Relaxed) / 1000,
        )
    }
}
