//! Talking to a running Prometheus: remote read (streamed XOR chunks).

pub mod remote_read;

pub use remote_read::{ChunkedStream, RemoteReadClient, RemoteReadError};
