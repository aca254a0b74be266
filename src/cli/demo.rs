//! `stele demo`: generate the small profile if missing, then show what stele sees in it.

use std::path::PathBuf;

use clap::Args;

use crate::block::{list_blocks, verify_block, LocalBlock, MergedSeries};
use crate::gen::load_profile;
use crate::model::parse_selector;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo blocks live [default: bench-data/generated/small].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
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
        super::gen::generate_with_progress(&profile, &dir, true)?;
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
    let blocks: Vec<LocalBlock> = dirs
        .iter()
        .map(|d| LocalBlock::open(d))
        .collect::<Result<_, _>>()?;
    let selector = r#"http_requests_total{handler="/api/v1/users/{id}", code="500", method="GET"}"#;
    println!("\n== {selector}");
    let matchers = parse_selector(selector)?;
    for series in MergedSeries::new(&blocks, &matchers, i64::MIN, i64::MAX)?.take(5) {
        let (labels, samples) = series?;
        let first = samples.first().map(|s| s.1).unwrap_or_default();
        let last = samples.last().map(|s| s.1).unwrap_or_default();
        println!("{labels}: {} samples, {first} .. {last}", samples.len());
    }
    println!(
        "\nNext: `stele block dump {} --match 'up'` prints samples like promtool tsdb dump.",
        dir.display()
    );
    Ok(())
}
