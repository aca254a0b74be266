//! Generated StoreAPI types and services, and Prometheus' remote-read messages (from
//! `proto/`). Only the gRPC adapters in `server/`, the sidecar's Prometheus client and the
//! clients in tests and tools use these; the engines have their own types.

#![allow(clippy::all, missing_docs)]

mod label;

/// Package `thanos`: the Store service and its messages.
pub mod thanos {
    tonic::include_proto!("thanos");
    pub use crate::model::Label;

    /// Package `thanos.info`.
    pub mod info {
        tonic::include_proto!("thanos.info");
    }
}

/// Package `hintspb`: request/response hints carried in `google.protobuf.Any`.
pub mod hintspb {
    tonic::include_proto!("hintspb");
}

/// Package `prometheus`: remote read, as the sidecar calls it.
pub mod prometheus {
    tonic::include_proto!("prometheus");
}
