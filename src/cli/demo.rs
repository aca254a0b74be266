//! `stele demo`: generate the small profile if missing, verify it, and serve it with the store
//! gateway: a running StoreAPI with no configuration.

use std::path::PathBuf;

use clap::Args;

use crate::block::{list_blocks, verify_block};
use crate::gen::load_profile;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo blocks live [default: bench-data/generated/small].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The store's local state (index headers).
    #[arg(long, default_value = "data/demo-store")]
    pub store_data_dir: PathBuf,
    /// Listen address of the StoreAPI.
    #[arg(long, default_value = "127.0.0.1:10901")]
    pub grpc_address: String,
    /// Listen address of /metrics, /-/ready and /-/healthy.
    #[arg(long, default_value = "127.0.0.1:10902")]
    pub http_address: String,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let profile = load_profile("small")?;
    let dir = args
        .data_dir
        .unwrap_or_else(|| super::gen::default_output(&profile));
    let have = dir.is_dir() && list_blocks(&dir)?.len() == profile.profile.blocks as usize;
    if !have {
        println!(
            "generating demo blocks (profile small) into {}",
            dir.display()
        );
        println!(
            "{}",
            super::gen::generate_with_progress(&profile, &dir, true)?
        );
    }
    println!("\n== blocks in {}", dir.display());
    super::block::run(super::block::BlockCommand::Ls(super::block::LsArgs {
        dir: dir.clone(),
        human_readable: true,
    }))?;
    println!("\n== verification");
    let dirs = list_blocks(&dir)?;
    for d in &dirs {
        let r = verify_block(d)?;
        println!(
            "{}: ok, {} series, {} samples, every CRC checked",
            d.display(),
            r.series,
            r.samples
        );
    }

    // The directory of blocks is the bucket: a FILESYSTEM objstore config, as Thanos has.
    let bucket = std::fs::canonicalize(&dir)?;
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    println!(
        "\n== serving the StoreAPI over {} on {} (HTTP {})",
        bucket.display(),
        args.grpc_address,
        args.http_address
    );
    println!("Query it with any StoreAPI client, e.g. grpcurl from the repository root:");
    println!(
        "  grpcurl -plaintext -import-path proto -proto thanos/rpc.proto -proto thanos/hints.proto -d '{{\"matchers\":[{{\"name\":\"__name__\",\"value\":\"up\"}}],\"min_time\":0,\"max_time\":9999999999999,\"skip_chunks\":true}}' {} thanos.Store/Series",
        args.grpc_address
    );
    println!(
        "or point a Thanos querier at it: thanos query --endpoint={}",
        args.grpc_address
    );
    println!("Ctrl-C stops it.\n");
    let store = super::store::StoreArgs::for_bucket(
        yaml,
        args.store_data_dir,
        args.grpc_address,
        args.http_address,
    );
    super::store::run(store)
}
