//! Compiles the protos in `proto/`: the StoreAPI with tonic, Prometheus remote read (messages
//! only). Uses the `protoc` from `protoc-bin-vendored` unless `PROTOC` is set, so no system
//! protobuf compiler is needed.

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
        .bytes(".prometheus.Chunk.data")
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
