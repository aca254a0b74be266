//! The network face of stele: gRPC services (thin adapters over the engines) and the HTTP
//! endpoints every component serves.

pub mod grpc;
