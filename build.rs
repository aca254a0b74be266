//! Compiles the StoreAPI and Prometheus remote-read protos in `proto/` with tonic. Uses the
//! `protoc` from `protoc-bin-vendored` unless `PROTOC` is set, so no system protobuf compiler
//! is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let well_known = protoc_bin_vendored::include_path()?;
    let includes = [
        "proto",
        well_known.to_str().ok_or("non-UTF-8 include path")?,
    ];
    tonic_prost_build::configure()
        // Chunk bytes are slices of what was read from the bucket: no copy on the way out.
        .bytes(".thanos.Chunk.data")
        // Chunks read from Prometheus pass through to the client without a copy.
        .bytes(".prometheus.Chunk.data")
        // A label on the wire is the model's `Label` (src/proto/label.rs): no copy either.
        .extern_path(".thanos.Label", "crate::model::Label")
        .compile_protos(
            &[
                "proto/thanos/rpc.proto",
                "proto/thanos/info.proto",
                "proto/thanos/hints.proto",
                "proto/prometheus/remote.proto",
            ],
            &includes,
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
