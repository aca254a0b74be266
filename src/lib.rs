//! stele: a Thanos-compatible long-term storage layer for Prometheus.
//!
//! See `docs/ARCHITECTURE.md` for the map of modules.

/// jemalloc rather than the C library's allocator, for every binary built on this crate (the
/// `stele` binary, tests, benchmarks). glibc grows each query thread's arena one `mprotect`
/// per page, and query threads allocate frames that the async workers free; with jemalloc
/// the large Series requests under 8 clients took half the time (docs/PERFORMANCE.md). Its
/// figures are in `/metrics` (`stele_allocator_*`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (`man jemalloc`), read when it starts. Freed pages go back to the system
/// after a second (not ten) and at once rather than lazily (`MADV_FREE` pages still count in
/// the RSS), by jemalloc's background threads, so an idle store shrinks too: under 32 clients
/// the peak RSS was 258 MiB instead of 303 MiB, at the same throughput.
#[used]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_OPTIONS: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

pub mod bench;
pub mod block;
pub mod bucket;
pub mod cache;
pub mod cli;
pub(crate) mod fs;
pub mod gen;
pub mod index_header;
pub mod metrics;
pub mod model;
pub mod nowait;
pub mod objstore;
pub mod plan;
pub mod prom;
pub mod proto;
pub mod server;
pub mod sidecar;
pub mod store;
pub mod storeapi;
pub(crate) mod table;
pub mod tsdb;
