//! The sidecar: runs next to one Prometheus, ships the blocks it completes to the bucket and
//! serves its recent data over the StoreAPI.
//!
//! - [`shipper`]: watches the TSDB directory and uploads each completed block once.
//! - [`prometheus`]: the HTTP client of that Prometheus (remote read, label and series APIs,
//!   running config, lowest timestamp).
//! - [`remote_read`]: the remote-read wire format, pure (request, streamed frames, SAMPLES).
//! - [`metrics`]: the shipper and heartbeat figures for `/metrics`.
//! - [`store`]: [`PrometheusStore`], the StoreAPI engine over that Prometheus, which
//!   `server::grpc` serves like the bucket store.

pub mod metrics;
pub mod prometheus;
pub mod remote_read;
pub mod shipper;
pub mod store;

pub use prometheus::{PrometheusClient, PrometheusError};
pub use shipper::{Shipper, ShipperConfig, ShipperError};
pub use store::{PrometheusState, PrometheusStore};
