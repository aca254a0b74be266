//! Errors of the server plumbing.

use std::net::SocketAddr;

/// Errors from parsing listen addresses, binding, serving and installing signal handlers.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid listen address {addr:?}: {reason}")]
    InvalidListenAddr { addr: String, reason: String },
    /// Usually the port is taken by another process or needs privileges.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} server failed: {source}")]
    Serve {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// Local state (the data directory) could not be set up.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
