//! stele: a Thanos-compatible long-term storage layer for Prometheus.
//!
//! See `docs/ARCHITECTURE.md` for the map of modules.

pub mod bench;
pub mod block;
pub mod bucket;
pub mod cache;
pub mod cli;
pub mod fs;
pub mod gen;
pub mod index_header;
pub mod metrics;
pub mod model;
pub mod objstore;
pub mod prom;
pub mod proto;
pub mod server;
pub mod sidecar;
pub mod store;
pub mod tsdb;
