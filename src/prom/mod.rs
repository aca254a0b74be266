//! Talking to a running Prometheus: its HTTP API and remote read. Used by the sidecar (which
//! serves that Prometheus over the StoreAPI) and by `stele bench --compare-prometheus`.
//!
//! - [`client`]: the HTTP client (remote read, label and series APIs, running config, lowest
//!   timestamp).
//! - [`remote_read`]: the remote-read wire format, pure (request, streamed frames, SAMPLES).

pub(crate) mod client;
pub(crate) mod remote_read;

pub use client::{PrometheusClient, PrometheusError};
pub use remote_read::RemoteReadError;
