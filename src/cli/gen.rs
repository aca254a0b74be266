//! `stele gen`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::gen::{generate, load_profile, ResolvedProfile};

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Profile name (bench-data/<name>.toml) or path to a profile file.
    #[arg(long, default_value = "small")]
    pub profile: String,
    /// Output directory for the blocks [default: bench-data/generated/<profile>].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Override the profile's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the profile's number of blocks.
    #[arg(long)]
    pub blocks: Option<u32>,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run(args: GenArgs) -> anyhow::Result<()> {
    let mut profile = load_profile(&args.profile)?;
    if let Some(seed) = args.seed {
        profile.profile.seed = seed;
    }
    if let Some(blocks) = args.blocks {
        anyhow::ensure!(blocks > 0, "--blocks must be at least 1");
        profile.profile.blocks = blocks;
    }
    let output = args.output.unwrap_or_else(|| default_output(&profile));
    println!(
        "{}",
        generate_with_progress(&profile, &output, !args.no_progress)?
    );
    Ok(())
}

pub fn default_output(profile: &ResolvedProfile) -> PathBuf {
    crate::gen::profile::profiles_dir()
        .join("generated")
        .join(&profile.name)
}

/// Generates with a progress bar on stderr; returns a summary line for the caller to print.
pub fn generate_with_progress(
    profile: &ResolvedProfile,
    output: &std::path::Path,
    show_progress: bool,
) -> anyhow::Result<String> {
    let total = profile.total_samples();
    let bar = if show_progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} samples ({per_sec}, eta {eta})")
            .expect("valid template"),
    );
    let started = Instant::now();
    let metas = generate(profile, output, &bar)
        .with_context(|| format!("generating profile {:?}", profile.name))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let samples: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    let series: u64 = metas.iter().map(|m| m.stats.num_series).sum();
    Ok(format!(
        "wrote {} blocks ({} series, {} samples) to {} in {:.1}s ({:.1}M samples/s)",
        metas.len(),
        series,
        samples,
        output.display(),
        secs,
        samples as f64 / secs / 1e6
    ))
}
