//! The sidecar: runs next to one Prometheus, ships the blocks it completes to the bucket and
//! serves its recent data over the StoreAPI. It talks to Prometheus through [`crate::prom`].
//!
//! - [`shipper`]: watches the TSDB directory and uploads each completed block once.
//! - [`metrics`]: the shipper and heartbeat figures for `/metrics`.
//! - [`store`]: [`PrometheusStore`], the StoreAPI engine over that Prometheus, which
//!   `storeapi::server` serves like the bucket store.
//! - [`service`]: the sidecar as a running component (`stele sidecar`, in-process in tests).

pub(crate) mod metrics;
pub(crate) mod service;
pub(crate) mod shipper;
pub(crate) mod store;

pub use service::{RunningSidecar, SidecarError, SidecarService, SidecarServiceConfig};
pub use shipper::{Shipper, ShipperConfig, ShipperError};
pub use store::{PrometheusState, PrometheusStore};
