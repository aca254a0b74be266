//! `stele bench`: whole-system numbers for a store gateway. Starts `stele store` itself (or
//! targets a running StoreAPI server), drives a workload mix from concurrent clients, and
//! reports latency percentiles per request, throughput, over-fetch, cache hit ratios, the store
//! process' start-up and memory, and optionally the same Series selectors against a real
//! Prometheus' remote read, interleaved.
//!
//! - `workload`: the request mix file (pure).
//! - `latency`: HDR histograms and percentiles (pure).
//! - `scrape`: figures from a store's `/metrics` text (pure).
//! - `report`: the report and its text, JSON and HTML renderings (pure).
//! - `client`: sending one request (StoreAPI or remote read) and summing up the reply.
//! - `process`: the child processes (store, Prometheus) and their memory.
//! - `proxy`: `LatencyProxy`, a TCP proxy adding latency per request and stalls: a remote bucket
//!   on loopback, for the bench and the e2e tests.
//! - `run`: the phases of a run.

pub(crate) mod client;
pub(crate) mod latency;
pub(crate) mod process;
pub mod proxy;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod scrape;
pub(crate) mod workload;

use std::path::Path;

use thiserror::Error;

pub use report::{render_html, render_text, Report};
pub use run::{run, BenchConfig, Compare, Length, RemoteBucket, Target};
pub use workload::{default_workload_path, load_workload, parse_workload, Workload, WorkloadError};

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("connecting to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("{0}")]
    Process(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Request(String),
    #[error(transparent)]
    Prometheus(#[from] crate::prom::PrometheusError),
}

impl BenchError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
