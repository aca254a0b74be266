//! Command-line entry points, one module per subcommand. Thin: parse flags, call the library,
//! print. The only layer that uses `anyhow`.

pub(crate) mod bench;
pub(crate) mod block;
pub(crate) mod demo;
pub(crate) mod gen;
pub mod logging;
pub(crate) mod plan;
pub(crate) mod sidecar;
pub(crate) mod store;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Parser)]
#[command(
    name = "stele",
    version,
    about = "Thanos-compatible long-term storage for Prometheus"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: logging::LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Thanos StoreAPI over the blocks of a bucket (the store gateway).
    Store(Box<store::StoreArgs>),
    /// Run next to a Prometheus: ship its blocks to the bucket, serve its recent data over
    /// the StoreAPI.
    Sidecar(Box<sidecar::SidecarArgs>),
    /// Generate demo data and inspect it: the zero-configuration tour.
    Demo(demo::DemoArgs),
    /// Generate realistic Prometheus TSDB blocks from a profile in bench-data/.
    Gen(gen::GenArgs),
    /// Benchmark a store gateway (started here or running) and compare it with Prometheus.
    Bench(Box<bench::BenchArgs>),
    /// Inspect TSDB blocks: list, dump samples, verify every checksum.
    #[command(subcommand)]
    Block(block::BlockCommand),
    /// Size a store-gateway fleet from a bucket's blocks: inventory, cardinality, pods,
    /// memory, disk, cache and object-store traffic.
    Plan(Box<plan::PlanArgs>),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Store(args) => store::run(*args),
        Command::Sidecar(args) => sidecar::run(*args),
        Command::Demo(args) => demo::run(args),
        Command::Gen(args) => gen::run(args),
        Command::Block(cmd) => block::run(cmd),
        Command::Plan(args) => plan::run(*args),
        Command::Bench(args) => bench::run(*args),
    }
}

/// A progress bar on stderr drawn with `template` (indicatif syntax), or a hidden one.
pub fn progress_bar(show: bool, len: u64, template: &str) -> ProgressBar {
    let bar = if show {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
    bar
}
