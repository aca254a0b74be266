//! `stele bench`: the benchmark harness (see `crate::bench`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::bench::{self, BenchConfig, Compare, Length, Target};
use crate::block::list_blocks;
use crate::gen::load_profile;
use crate::model::time::parse_duration;

/// Where the store started by the bench reads the local blocks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBucket {
    /// A FILESYSTEM bucket over the blocks' directory.
    Filesystem,
    /// The S3 test server (s3s-fs) over the blocks, behind `--bucket-latency` per request: a
    /// remote bucket on loopback.
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Data profile (bench-data/<name>.toml), generated into bench-data/generated/ if missing.
    #[arg(long, default_value = "small")]
    pub profile: String,
    /// Override the profile's number of blocks (generated apart from the profile's default).
    #[arg(long)]
    pub blocks: Option<u32>,
    /// A local directory of blocks to serve instead of a profile.
    #[arg(long, value_name = "DIR")]
    pub blocks_dir: Option<PathBuf>,
    /// How the local blocks (a profile's or --blocks-dir) reach the store.
    #[arg(long, value_enum, default_value = "filesystem")]
    pub bucket: BenchBucket,
    /// With --bucket=s3: the latency added to every request to the S3 server.
    #[arg(long, default_value = "40ms", value_parser = parse_duration)]
    pub bucket_latency: Duration,
    /// Thanos objstore YAML of an existing bucket to serve instead of local blocks.
    #[arg(long = "objstore.config-file", value_name = "FILE")]
    pub objstore_config_file: Option<PathBuf>,
    /// Benchmark a running StoreAPI server (ours or any other) instead of starting one.
    #[arg(long = "grpc-address", value_name = "ADDR")]
    pub grpc_address: Option<String>,
    /// HTTP address of that server, for /metrics (cache and bucket figures of a stele store).
    #[arg(long = "http-address", value_name = "ADDR", requires = "grpc_address")]
    pub http_address: Option<String>,
    /// The request mix [default: bench-data/workload.toml].
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Length of the measured phase.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Measure this many requests instead of a duration.
    #[arg(long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Rounds of the whole mix sent before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup_rounds: u32,
    /// The request timed after a cold start and a warm restart [default: the first series
    /// request of the workload].
    #[arg(long)]
    pub probe: Option<String>,
    /// Sequential runs of the probe on the warm store; their median is the warm latency.
    #[arg(long, default_value_t = 5)]
    pub probe_runs: u32,
    /// Idle time before each probe timed after a start, the first one and the warm ones it is
    /// compared with. CPUs run slower for the first milliseconds of work after being idle
    /// (2.3x in the first one after 100 ms idle, on the VMs of docs/PERFORMANCE.md), and a first
    /// query always follows the restart's idle time; pausing before both leaves the restart as
    /// the only difference. 0 times the warm ones back to back.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub probe_pause: Duration,
    /// Cold starts, and warm restarts, whose first probe is timed; each figure is the median
    /// (one start is one sample, and a single sample on a busy host says little).
    #[arg(long, default_value_t = 3)]
    pub start_runs: u32,
    /// --index-cache-size of the store started (base 2, like Thanos).
    #[arg(long = "index-cache-size", default_value = "250MB")]
    pub index_cache_size: String,
    /// The stele binary to start as the store [default: this one]: another build measured on
    /// the same harness, for side-by-side runs.
    #[arg(long, value_name = "FILE")]
    pub store_exe: Option<PathBuf>,
    /// More flags for the store started, e.g. --store-arg=--store.grpc.series-max-concurrency=64.
    #[arg(long = "store-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub store_args: Vec<String>,
    /// Keep the store's data dir (index headers) from the previous run: a warm first start.
    #[arg(long)]
    pub keep_data_dir: bool,
    /// Also run the Series selectors against a real Prometheus on the same blocks.
    #[arg(long)]
    pub compare_prometheus: bool,
    /// Interleaved rounds per selector in the comparison.
    #[arg(long, default_value_t = 5)]
    pub compare_rounds: u32,
    /// Scratch space: store data dir, logs, Prometheus data dir [default:
    /// bench-data/generated/bench-work].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Also write a self-contained HTML report with latency charts to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// How often the store's RSS is sampled.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub rss_interval: Duration,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

fn filesystem_yaml(dir: &std::path::Path) -> anyhow::Result<String> {
    let dir = std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    Ok(format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        serde_json::to_string(&dir.display().to_string())?
    ))
}

/// The local blocks of the profile, generated first when missing.
fn profile_blocks(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    let mut profile = load_profile(&args.profile)?;
    let mut dir = super::gen::default_output(&profile);
    if let Some(blocks) = args.blocks {
        anyhow::ensure!(blocks > 0, "--blocks must be at least 1");
        profile.profile.blocks = blocks;
        dir = dir.with_file_name(format!("{}-{blocks}blocks", profile.name));
    }
    let have = dir.is_dir() && list_blocks(&dir)?.len() == profile.profile.blocks as usize;
    if !have {
        eprintln!(
            "generating profile {} into {} (once; later runs reuse it)",
            profile.name,
            dir.display()
        );
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        // stdout carries the report (JSON with --output json): the summary goes to stderr.
        eprintln!(
            "{}",
            super::gen::generate_with_progress(&profile, &dir, !args.no_progress)?
        );
    }
    Ok(dir)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let workload_path = args
        .workload
        .clone()
        .unwrap_or_else(bench::default_workload_path);
    let workload = bench::load_workload(&workload_path)?;
    let index_cache_size = crate::model::size::parse_size(&args.index_cache_size)
        .map_err(|e| anyhow::anyhow!("--index-cache-size: {e}"))?;

    // Local blocks: the ones served (unless a bucket or a server is given) and compared.
    let local_blocks = match (
        &args.blocks_dir,
        &args.objstore_config_file,
        &args.grpc_address,
    ) {
        (Some(dir), _, _) => Some(dir.clone()),
        (None, None, None) => Some(profile_blocks(&args)?),
        _ => None,
    };
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        crate::gen::profile::profiles_dir()
            .join("generated")
            .join("bench-work")
    });
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating the work dir {}", work_dir.display()))?;
    // Kept until the run ends: the S3 server and its proxy.
    let s3 = match (args.bucket, &local_blocks, &args.objstore_config_file) {
        (BenchBucket::S3, Some(dir), None) if args.grpc_address.is_none() => {
            Some(bench::process::S3TestBucket::start(
                &list_blocks(dir)?,
                &work_dir,
                args.bucket_latency,
            )?)
        }
        (BenchBucket::S3, _, _) => {
            anyhow::bail!("--bucket=s3 serves local blocks (a profile or --blocks-dir) through a store it starts")
        }
        (BenchBucket::Filesystem, _, _) => None,
    };
    let target = match &args.grpc_address {
        Some(grpc) => Target::Running {
            grpc: grpc.clone(),
            http: args
                .http_address
                .as_deref()
                .map(crate::storeapi::client::with_scheme),
        },
        None => {
            let (objstore_yaml, data) = match (&args.objstore_config_file, &local_blocks) {
                (None, Some(dir)) if s3.is_some() => (
                    s3.as_ref()
                        .map(|s| s.objstore_yaml.clone())
                        .unwrap_or_default(),
                    format!(
                        "{} through s3s-fs, {:?} per request",
                        dir.display(),
                        args.bucket_latency
                    ),
                ),
                (Some(file), _) => (
                    std::fs::read_to_string(file).with_context(|| {
                        format!("reading --objstore.config-file {}", file.display())
                    })?,
                    format!("bucket {}", file.display()),
                ),
                (None, Some(dir)) => (filesystem_yaml(dir)?, dir.display().to_string()),
                (None, None) => unreachable!("local blocks exist without a bucket"),
            };
            let mut store_args = vec![format!("--index-cache-size={}", args.index_cache_size)];
            store_args.extend(args.store_args.iter().cloned());
            Target::Start {
                objstore_yaml,
                data,
                store_args,
                index_cache_size: Some(index_cache_size),
                keep_data_dir: args.keep_data_dir,
            }
        }
    };
    let compare = if args.compare_prometheus {
        let dir = local_blocks.as_ref().context(
            "--compare-prometheus needs the blocks on local disk: pass --blocks-dir (or use a profile)",
        )?;
        Some(Compare {
            blocks: list_blocks(dir)?,
            rounds: args.compare_rounds,
        })
    } else {
        None
    };
    let config = BenchConfig {
        target,
        workload,
        workload_name: workload_path.display().to_string(),
        concurrency: args.concurrency.max(1),
        length: match args.requests {
            Some(n) => Length::Requests(n),
            None => Length::Duration(args.duration),
        },
        warmup_rounds: args.warmup_rounds,
        probe: args.probe.clone(),
        probe_runs: args.probe_runs,
        probe_pause: args.probe_pause,
        start_runs: args.start_runs,
        compare,
        work_dir,
        rss_interval: args.rss_interval,
        store_exe: args.store_exe.clone(),
        remote: s3.as_ref().map(|s| bench::RemoteBucket {
            proxy: s.proxy.clone(),
            latency: args.bucket_latency,
            bandwidth: s.bandwidth,
        }),
    };

    let bar = super::progress_bar(
        !args.no_progress,
        0,
        "{spinner} [{elapsed_precise}] {msg:24} {wide_bar} {pos}/{len}",
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stele-bench")
        .build()
        .context("starting the async runtime")?
        .block_on(bench::run(&config, &bar));
    bar.finish_and_clear();
    drop(s3);
    let report = report?;

    match args.output {
        OutputFormat::Table => print!("{}", bench::render_text(&report)),
        OutputFormat::Json => println!("{}", report.to_json()),
    }
    if let Some(path) = &args.report {
        std::fs::write(path, bench::render_html(&report))
            .with_context(|| format!("writing --report {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
