//! `stele block ls | dump | verify`: promtool's `tsdb list` and `tsdb dump`, plus a verifier.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::block::{list_blocks, verify_block, LocalBlock, MergedSeries};
use crate::model::format::format_go_float;
use crate::model::{parse_selector, Matcher};
use crate::tsdb::meta::META_FILENAME;

#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// List the blocks in a directory (like `promtool tsdb list`).
    Ls(LsArgs),
    /// Print every sample, one line each (like `promtool tsdb dump`).
    Dump(DumpArgs),
    /// Check every checksum and invariant; exits non-zero at the first problem.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// A directory of blocks, or a single block directory.
    pub dir: PathBuf,
    /// Print times as RFC 3339 and sizes with units.
    #[arg(short = 'r', long)]
    pub human_readable: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// A directory of blocks, or a single block directory.
    pub dir: PathBuf,
    /// Series selector; repeat to print the union.
    #[arg(long = "match", default_value = r#"{__name__=~'(?s:.*)'}"#)]
    pub matchers: Vec<String>,
    /// Minimum timestamp to dump, in milliseconds (inclusive).
    #[arg(long, default_value_t = i64::MIN, allow_hyphen_values = true)]
    pub min_time: i64,
    /// Maximum timestamp to dump, in milliseconds (inclusive).
    #[arg(long, default_value_t = i64::MAX, allow_hyphen_values = true)]
    pub max_time: i64,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A directory of blocks, or a single block directory.
    pub dir: PathBuf,
}

pub fn run(cmd: BlockCommand) -> anyhow::Result<()> {
    match cmd {
        BlockCommand::Ls(args) => ls(&args),
        BlockCommand::Dump(args) => dump(&args),
        BlockCommand::Verify(args) => verify(&args),
    }
}

/// The block directories `dir` stands for: itself if it is a block, else its child blocks.
pub fn block_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.join(META_FILENAME).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let blocks = list_blocks(dir)?;
    anyhow::ensure!(
        !blocks.is_empty(),
        "no blocks (directories with a meta.json) in {}",
        dir.display()
    );
    Ok(blocks)
}

fn open_all(dir: &Path) -> anyhow::Result<Vec<LocalBlock>> {
    block_dirs(dir)?
        .iter()
        .map(|d| LocalBlock::open(d).with_context(|| format!("opening block {}", d.display())))
        .collect()
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn ls(args: &LsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "BLOCK ULID\tMIN TIME\tMAX TIME\tDURATION\tNUM SAMPLES\tNUM CHUNKS\tNUM SERIES\tSIZE\tEXTERNAL LABELS")?;
    for dir in block_dirs(&args.dir)? {
        let meta_path = dir.join(META_FILENAME);
        let bytes = std::fs::read(&meta_path)
            .with_context(|| format!("reading {}", meta_path.display()))?;
        let meta = crate::tsdb::meta::BlockMeta::parse(&meta_path.display().to_string(), &bytes)?;
        let duration =
            std::time::Duration::from_millis((meta.max_time - meta.min_time).max(0) as u64);
        let size = dir_size(&dir);
        let (min, max, size) = if args.human_readable {
            (
                rfc3339(meta.min_time),
                rfc3339(meta.max_time),
                format!("{:.1}MiB", size as f64 / (1 << 20) as f64),
            )
        } else {
            (
                meta.min_time.to_string(),
                meta.max_time.to_string(),
                size.to_string(),
            )
        };
        let labels: Vec<String> = meta
            .external_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{{{}}}",
            meta.ulid,
            min,
            max,
            humantime::format_duration(duration),
            meta.stats.num_samples,
            meta.stats.num_chunks,
            meta.stats.num_series,
            size,
            labels.join(",")
        )?;
    }
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn dump(args: &DumpArgs) -> anyhow::Result<()> {
    let selectors: Vec<Vec<Matcher>> = args
        .matchers
        .iter()
        .map(|s| parse_selector(s).with_context(|| format!("--match {s}")))
        .collect::<anyhow::Result<_>>()?;
    let blocks = open_all(&args.dir)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Several selectors: union, printed in label order without repeating a series.
    let mut all = Vec::new();
    for matchers in &selectors {
        for series in MergedSeries::new(&blocks, matchers, args.min_time, args.max_time)? {
            let (labels, samples) = series?;
            if selectors.len() == 1 {
                write_samples(&mut out, &labels, &samples)?;
            } else {
                all.push((labels, samples));
            }
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    for (labels, samples) in &all {
        write_samples(&mut out, labels, samples)?;
    }
    out.flush()?;
    Ok(())
}

fn write_samples(
    out: &mut impl Write,
    labels: &crate::model::Labels,
    samples: &[(i64, f64)],
) -> std::io::Result<()> {
    let labels = labels.to_string();
    for (t, v) in samples {
        writeln!(out, "{labels} {} {t}", format_go_float(*v))?;
    }
    Ok(())
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let dirs = block_dirs(&args.dir)?;
    for dir in &dirs {
        let report =
            verify_block(dir).with_context(|| format!("block {} is corrupt", dir.display()))?;
        println!(
            "{}: ok ({} series, {} chunks, {} samples)",
            dir.display(),
            report.series,
            report.chunks,
            report.samples
        );
    }
    println!("{} blocks verified", dirs.len());
    Ok(())
}
