//! `stele plan`: inventory a bucket (or a directory of blocks) and size a store fleet.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use object_store::ObjectStore;

use crate::model::size::parse_size;
use crate::model::time::parse_duration;
use crate::plan::calibrate::from_bench_report;
use crate::plan::inventory::{inventory, InventoryOptions};
use crate::plan::model::{
    plan, relabel_snippet, what_ifs, Calibration, DataFacts, QueryProfile, Targets,
    DEFAULT_INFLIGHT_LIMIT,
};
use crate::plan::report::{render_markdown, render_svg, render_text, PlanReport};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Thanos objstore YAML file describing the bucket.
    #[arg(long = "objstore.config-file", value_name = "FILE", group = "data")]
    pub objstore_config_file: Option<PathBuf>,
    /// Thanos objstore YAML inline (instead of --objstore.config-file).
    #[arg(long = "objstore.config", value_name = "YAML", group = "data")]
    pub objstore_config: Option<String>,
    /// A local directory of blocks (`<ULID>/meta.json, index, chunks/`).
    #[arg(long = "blocks-dir", value_name = "DIR", group = "data")]
    pub blocks_dir: Option<PathBuf>,
    /// Blocks inventoried at once.
    #[arg(long = "inventory-concurrency", default_value_t = 8)]
    pub inventory_concurrency: usize,
    /// Entries per cardinality list (promtool's --limit).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Also stream every block's series section (bounded windows) for promtool's churn
    /// figures; reads the whole series sections, not just the header ranges.
    #[arg(long)]
    pub analyze: bool,
    /// Stop after the inventory.
    #[arg(long = "inventory-only")]
    pub inventory_only: bool,
    /// A `stele bench --output json` report: its measured costs are the query profile.
    #[arg(long = "bench-report", value_name = "FILE")]
    pub bench_report: Option<PathBuf>,
    /// Queries per second the fleet must serve.
    #[arg(long, default_value_t = 10.0)]
    pub qps: f64,
    /// Retention to plan for (e.g. 90d, 1y); default: the time the bucket covers.
    #[arg(long, value_parser = parse_duration)]
    pub retention: Option<Duration>,
    /// Growth of series per block to plan for: 50% or 0.5.
    #[arg(long = "series-growth", default_value = "0%", value_parser = parse_share)]
    pub series_growth: f64,
    /// Memory of one store pod.
    #[arg(long = "pod-memory", default_value = "8GB", value_parser = parse_size)]
    pub pod_memory: u64,
    /// CPU cores of one store pod.
    #[arg(long = "pod-cpu", default_value_t = 2.0)]
    pub pod_cpu: f64,
    /// Cache hit ratio to size the index (and chunk) cache for: 90% or 0.9.
    #[arg(long = "cache-hit-target", default_value = "90%", value_parser = parse_share)]
    pub cache_hit_target: f64,
    /// Count the chunk cache in pod memory (`--store.chunk-cache-size`); default: in memcached
    /// (`--store.caching-bucket.config`), sized but not counted.
    #[arg(long = "chunk-cache-in-pod")]
    pub chunk_cache_in_pod: bool,
    /// The stores' --store.inflight-memory-limit.
    #[arg(long = "store.inflight-memory-limit", default_value = "1GB", value_parser = parse_size)]
    pub inflight_limit: u64,
    /// Evaluate this many pods instead of choosing the count.
    #[arg(long)]
    pub pods: Option<u64>,
    /// Concurrent requests on the fleet (closed-loop clients) instead of QPS x latency;
    /// defaults to the bench report's client count when one is given.
    #[arg(long)]
    pub concurrency: Option<f64>,
    /// Calibration: process baseline RSS of a store (see docs/PLANNING.md).
    #[arg(long = "base-rss", value_parser = parse_size)]
    pub base_rss: Option<u64>,
    /// Calibration: bytes an in-flight request holds per series of its batch in each block
    /// (see docs/PLANNING.md).
    #[arg(long = "held-bytes-per-series")]
    pub held_bytes_per_series: Option<f64>,
    /// Calibration: resident bytes each concurrent request adds (see docs/PLANNING.md).
    #[arg(long = "rss-per-request", value_parser = parse_size)]
    pub rss_per_request: Option<u64>,
    /// Calibration: share of its peak that each request beyond the largest holds on
    /// average, 0 to 1 (see docs/PLANNING.md).
    #[arg(long = "concurrent-share")]
    pub concurrent_share: Option<f64>,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Also write the chart of series and bytes per block over time to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long = "no-progress")]
    pub no_progress: bool,
}

/// `50%` or `0.5`.
fn parse_share(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.parse::<f64>(),
    }
    .map_err(|_| {
        format!("invalid share {s:?}: expected a percentage like 50% or a fraction like 0.5")
    })?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("invalid share {s:?}"))
    }
}

/// The bucket to inventory, its name, and whether it is remote (what the store reads it as).
fn bucket(args: &PlanArgs) -> anyhow::Result<(Arc<dyn ObjectStore>, String, bool)> {
    if let Some(dir) = &args.blocks_dir {
        anyhow::ensure!(
            dir.is_dir(),
            "--blocks-dir {}: not a directory",
            dir.display()
        );
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening {}", dir.display()))?;
        return Ok((Arc::new(store), dir.display().to_string(), false));
    }
    let Some((yaml, _)) = super::store::yaml_flag(
        &args.objstore_config,
        &args.objstore_config_file,
        "objstore.config",
    )?
    else {
        anyhow::bail!(
            "say where the blocks are: --objstore.config-file, --objstore.config or --blocks-dir"
        );
    };
    let config = crate::objstore::BucketConfig::parse(&yaml)?;
    let name = format!("{:?} bucket", config.provider);
    let remote = config.local_directory().is_none();
    Ok((config.build()?, name, remote))
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    if let Some(share) = args.concurrent_share {
        anyhow::ensure!(
            (0.0..=1.0).contains(&share),
            "--concurrent-share must be within 0..1, got {share}"
        );
    }
    let (store, source, remote) = bucket(&args)?;
    let bench = args
        .bench_report
        .as_ref()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading --bench-report {}", p.display()))?;
            anyhow::Ok(from_bench_report(&text, &p.display().to_string())?)
        })
        .transpose()?;
    let targets = Targets {
        qps: args.qps,
        retention_ms: args.retention.map(|d| d.as_millis() as i64),
        series_growth: args.series_growth,
        pod_memory: args.pod_memory,
        pod_cpu: args.pod_cpu,
        cache_hit_target: args.cache_hit_target,
        chunk_cache_in_pod: args.chunk_cache_in_pod,
        inflight_limit: if args.inflight_limit == 0 {
            DEFAULT_INFLIGHT_LIMIT
        } else {
            args.inflight_limit
        },
        pods: args.pods,
        concurrency: args
            .concurrency
            .or(bench.as_ref().map(|(_, f)| f.concurrency)),
    };
    // Nonsense targets fail before the bucket is read.
    targets.validate()?;

    let bar = super::progress_bar(
        !args.no_progress,
        0,
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} blocks ({per_sec}, eta {eta})",
    );
    let opts = InventoryOptions {
        concurrency: args.inventory_concurrency.max(1),
        top: args.limit,
        analyze: args.analyze,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut inv = runtime
        .block_on(inventory(store, source, &opts, &bar))
        .context("taking the inventory")?;
    inv.remote = remote;
    bar.finish_and_clear();
    for b in inv.blocks.iter().filter(|b| b.error.is_some()) {
        eprintln!(
            "warning: block {} has a broken index: {}",
            b.ulid,
            b.error.as_deref().unwrap_or_default()
        );
    }

    let defaults = Calibration::default();
    let calibration = Calibration {
        base_rss: args.base_rss.unwrap_or(defaults.base_rss),
        held_bytes_per_series: args
            .held_bytes_per_series
            .unwrap_or(defaults.held_bytes_per_series),
        rss_per_request: args.rss_per_request.unwrap_or(defaults.rss_per_request),
        concurrent_share: args.concurrent_share.unwrap_or(defaults.concurrent_share),
        ..defaults
    };
    let (profile, bench) = match bench {
        Some((p, f)) => (p, Some(f)),
        None => (QueryProfile::default_mix(), None),
    };
    let (sized, what_if) = if args.inventory_only || inv.totals.blocks == 0 {
        (None, Vec::new())
    } else {
        let facts = DataFacts::from_inventory(&inv)?;
        (
            Some(plan(&facts, &profile, &targets, &calibration)?),
            what_ifs(&facts, &profile, &targets, &calibration)?,
        )
    };
    let report = PlanReport {
        relabel_config: sized.as_ref().map(|p| relabel_snippet(p.pods, "SHARD")),
        inventory: inv,
        profile,
        targets,
        calibration,
        plan: sized,
        what_if,
        bench,
    };
    if let Some(path) = &args.svg {
        std::fs::write(path, render_svg(&report.inventory))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let text = match args.output {
        Output::Text => render_text(&report),
        Output::Json => report.to_json(),
        Output::Markdown => render_markdown(&report),
    };
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares() {
        assert_eq!(parse_share("50%").unwrap(), 0.5);
        assert_eq!(parse_share("0.25").unwrap(), 0.25);
        assert_eq!(parse_share("-10%").unwrap(), -0.1);
        for bad in ["", "%", "half", "NaN", "inf"] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
    }
}
