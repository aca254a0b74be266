//! Compatibility with real Prometheus, both ways:
//! - blocks made by `promtool tsdb create-blocks-from openmetrics` read by stele give back
//!   exactly the source samples, and `stele block dump` prints what `promtool tsdb dump` prints;
//! - blocks written by `stele gen` are accepted by `promtool` and by a running `prometheus`,
//!   which return exactly the samples stele wrote.

mod common;

use std::process::Command;

use common::*;
use stele::block::{list_blocks, verify_block, LocalBlock, MergedSeries};
use stele::gen::profile::parse_profile;
use stele::model::{MatchKind, Matcher};

fn all_series() -> Vec<Matcher> {
    vec![Matcher::new(MatchKind::Regex, "__name__", ".+").unwrap()]
}

/// Every sample of every series in the blocks under `dir`, values as bits.
fn read_with_stele(dir: &std::path::Path) -> SeriesMap {
    let blocks: Vec<LocalBlock> = list_blocks(dir)
        .unwrap()
        .iter()
        .map(|d| LocalBlock::open(d).unwrap())
        .collect();
    assert!(!blocks.is_empty(), "no blocks in {}", dir.display());
    MergedSeries::new(&blocks, &all_series(), i64::MIN, i64::MAX)
        .unwrap()
        .map(|s| {
            let (labels, samples) = s.unwrap();
            (
                labels,
                samples
                    .into_iter()
                    .map(|(t, v)| (t, canonical_bits(v)))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn stele_reads_promtool_blocks_exactly() {
    let promtool = promtool();
    let tmp = tempfile::tempdir().unwrap();
    let (text, expected) = openmetrics_fixture();
    let input = tmp.path().join("data.om");
    std::fs::write(&input, text).unwrap();
    let out = tmp.path().join("blocks");
    run(Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out));
    // promtool 2.42 opens a directory as a read-only TSDB, which wants a WAL directory.
    std::fs::create_dir_all(out.join("wal")).unwrap();

    let dirs = list_blocks(&out).unwrap();
    assert!(
        dirs.len() >= 3,
        "expected several 2h blocks, got {}",
        dirs.len()
    );
    for d in &dirs {
        verify_block(d)
            .unwrap_or_else(|e| panic!("promtool block {} fails verification: {e}", d.display()));
    }
    let got = read_with_stele(&out);
    assert_eq!(got.len(), expected.len());
    for (labels, samples) in &expected {
        assert_eq!(got.get(labels), Some(samples), "series {labels}");
    }

    // Text output identical to promtool's, line for line.
    let theirs = run(Command::new(&promtool).args(["tsdb", "dump"]).arg(&out));
    let ours = run(stele().args(["block", "dump"]).arg(&out));
    assert_eq!(ours.lines().count(), theirs.lines().count());
    for (a, b) in ours.lines().zip(theirs.lines()) {
        assert_eq!(a, b);
    }
    // And with a selector and a time range.
    let (min, max) = ("1767229200000", "1767236400000");
    let sel = r#"{__name__="requests_total",path=~"z.*|plain"}"#;
    let range_and_match = ["--min-time", min, "--max-time", max, "--match", sel];
    let theirs = run(Command::new(&promtool)
        .args(["tsdb", "dump"])
        .args(range_and_match)
        .arg(&out));
    let ours = run(stele()
        .args(["block", "dump"])
        .args(range_and_match)
        .arg(&out));
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs);
}

fn generate_tiny(dir: &std::path::Path) -> SeriesMap {
    let profile = parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    let metas = stele::gen::generate(&profile, dir, &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(metas.len(), 2);
    for m in &metas {
        assert_eq!(m.external_labels()["cluster"], "test");
    }
    read_with_stele(dir)
}

#[test]
fn promtool_reads_stele_blocks_exactly() {
    let promtool = promtool();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gen");
    let written = generate_tiny(&dir);
    assert!(
        written.len() > 100,
        "tiny profile has {} series",
        written.len()
    );
    for d in list_blocks(&dir).unwrap() {
        verify_block(&d).unwrap();
    }
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    // promtool opens the blocks as a TSDB (validating them) and prints every sample.
    let theirs = run(Command::new(&promtool).args(["tsdb", "dump"]).arg(&dir));
    let ours = run(stele().args(["block", "dump"]).arg(&dir));
    let samples: usize = written.values().map(Vec::len).sum();
    assert_eq!(theirs.lines().count(), samples);
    assert_eq!(ours, theirs);
    // `analyze` reads the newest block's index through Prometheus' own reader.
    let newest = list_blocks(&dir).unwrap().pop().unwrap();
    let series = LocalBlock::open(&newest).unwrap().meta.stats.num_series;
    let analyze = run(Command::new(&promtool).args(["tsdb", "analyze"]).arg(&dir));
    assert!(
        analyze.contains(&format!("\nSeries: {series}\n")),
        "{analyze}"
    );
}

#[test]
fn prometheus_server_serves_stele_blocks_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gen");
    let written = generate_tiny(&dir);
    let data = tmp.path().join("prometheus-data");
    copy_dir(&dir, &data);
    let server = PrometheusServer::start(&data);

    let (min, max) = written
        .values()
        .flatten()
        .fold((i64::MAX, i64::MIN), |(lo, hi), (t, _)| {
            (lo.min(*t), hi.max(*t))
        });
    let served = prometheus_samples(&server, r#"{__name__=~".+"}"#, min, max);
    assert_eq!(served.len(), written.len(), "series count");
    for (labels, samples) in &written {
        assert_eq!(served.get(labels), Some(samples), "series {labels}");
    }
}
