//! The sidecar: runs next to one Prometheus, ships the blocks it completes to the bucket and
//! serves its recent data over the StoreAPI. It talks to Prometheus through [`crate::prom`].
//!
//! - [`shipper`]: watches the TSDB directory and uploads each completed block once.
//! - [`metrics`]: the shipper and heartbeat figures for `/metrics`.
//! - [`store`]: [`PrometheusStore`], the StoreAPI engine over that Prometheus, which
//!   `server::grpc` serves like the bucket store.

pub mod metrics;
pub mod shipper;
pub mod store;

pub use shipper::{Shipper, ShipperConfig, ShipperError};
pub use store::{PrometheusState, PrometheusStore};
