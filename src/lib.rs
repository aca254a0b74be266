//! stele: a Thanos-compatible long-term storage layer for Prometheus.
//!
//! See `docs/ARCHITECTURE.md` for the map of modules.

/// jemalloc rather than the C library's allocator, for every binary built on this crate (the
/// `stele` binary, tests, benchmarks). Query threads allocate frames that the async workers
/// free; glibc serves each thread from an arena of its own that grows one `mprotect` per page
/// and contends on the frees, jemalloc does neither: under 8 clients the large Series
/// requests took half the time (docs/PERFORMANCE.md). Its figures are in `/metrics`
/// (`stele_allocator_*`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
pub mod plan;
pub mod prom;
pub mod proto;
pub mod server;
pub mod sidecar;
pub mod store;
pub mod table;
pub mod tsdb;
