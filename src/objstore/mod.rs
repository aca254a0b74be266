//! Object storage: Thanos objstore YAML turned into an `object_store::ObjectStore`.
//!
//! Operators keep the bucket config file they already give Thanos (`--objstore.config-file`);
//! `FILESYSTEM`, `S3`, `GCS` and `AZURE` are supported, with the optional top-level `prefix`.

mod config;
mod file;

use std::sync::Arc;

use object_store::ObjectStore;
use thiserror::Error;

pub use config::{BucketConfig, Provider};
pub use file::{BucketFile, BucketGate, FetchCounters, LocalBucket};

#[derive(Debug, Error)]
pub enum ObjstoreError {
    #[error("invalid objstore config: {0}")]
    Config(String),
    #[error("building {provider} client: {source}")]
    Build {
        provider: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Builds the bucket described by a Thanos objstore YAML document.
pub fn from_yaml(yaml: &str) -> Result<Arc<dyn ObjectStore>, ObjstoreError> {
    BucketConfig::parse(yaml)?.build()
}
