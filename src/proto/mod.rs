//! Generated StoreAPI types and services, and Prometheus remote-read messages (from `proto/`).
//! Only the gRPC adapters in `server/` and the clients (tests, tools, `prom/`) use these; the
//! engine has its own types.

#![allow(clippy::all, missing_docs)]

/// Package `thanos`: the Store service and its messages.
pub mod thanos {
    tonic::include_proto!("thanos");

    /// Package `thanos.info`.
    pub mod info {
        tonic::include_proto!("thanos.info");
    }
}

/// Package `hintspb`: request/response hints carried in `google.protobuf.Any`.
pub mod hintspb {
    tonic::include_proto!("hintspb");
}

/// Package `prometheus`: remote-read messages (HTTP + snappy, no gRPC service).
pub mod prometheus {
    tonic::include_proto!("prometheus");
}
