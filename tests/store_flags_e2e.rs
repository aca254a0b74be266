//! The store's block-selection flags end to end: real `stele store` processes over a
//! FILESYSTEM bucket of small `stele gen` blocks, each flag checked by which blocks a Series
//! call reads (the response hints), what it returns and what Info advertises.
//! `--selector.relabel-config` (hashmod over `__block_id`, with Prometheus' own relabelling
//! as the oracle of which shard a block belongs to), `--min-time`/`--max-time`,
//! `--consistency-delay` and `--ignore-deletion-marks-delay`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::store::*;
use common::storeapi::*;
use common::*;
use stele::model::Labels;
use stele::proto::thanos;
use stele::tsdb::meta::BlockMeta;
use ulid::Ulid;

const EVERY_SERIES: &str = r#"{__name__=~".+"}"#;
const HOUR_MS: i64 = 3_600_000;

/// A block as written into the test bucket.
#[derive(Debug, Clone)]
struct Block {
    id: String,
    min_time: i64,
    max_time: i64,
    external_labels: Labels,
}

impl Block {
    fn from_meta(meta: &BlockMeta) -> Self {
        Block {
            id: meta.ulid.clone(),
            min_time: meta.min_time,
            max_time: meta.max_time,
            external_labels: Labels::from_pairs(meta.external_labels()),
        }
    }
}

/// `blocks` consecutive 2h blocks of the tiny profile (cluster=test, replica=0) from
/// 2026-11-01T00:00Z, written into `dir`.
fn tiny_blocks(dir: &Path, blocks: u32) -> Vec<Block> {
    assert!(
        TINY_PROFILE.contains("\nblocks = 2\n"),
        "the tiny profile's block count moved"
    );
    let text = TINY_PROFILE.replace("\nblocks = 2\n", &format!("\nblocks = {blocks}\n"));
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", &text).unwrap();
    let metas = stele::gen::generate(&profile, dir, &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(metas.len(), blocks as usize);
    metas.iter().map(Block::from_meta).collect()
}

/// Copies the block `from` of `source` into `bucket` as block `id`, its meta.json rewritten
/// with `edit` (the ULID is set already): the same series and samples under another identity.
fn copy_block(
    source: &Path,
    from: &Block,
    bucket: &Path,
    id: Ulid,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Block {
    let to = bucket.join(id.to_string());
    copy_dir(&source.join(&from.id), &to);
    let meta_path = to.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["ulid"] = id.to_string().into();
    edit(&mut meta);
    let bytes = serde_json::to_vec(&meta).unwrap();
    std::fs::write(&meta_path, &bytes).unwrap();
    Block::from_meta(&BlockMeta::parse("meta.json", &bytes).unwrap())
}

fn set_replica(replica: &str) -> impl FnOnce(&mut serde_json::Value) + '_ {
    move |meta| meta["thanos"]["labels"]["replica"] = replica.into()
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// Starts stores over `bucket`, one per flag list, all at once (their startups overlap).
fn start_stores(bucket: &Path, flag_lists: &[&[&str]]) -> Vec<StoreProcess> {
    let yaml = filesystem_yaml(bucket);
    let stores: Vec<StoreProcess> = flag_lists
        .iter()
        .map(|flags| StoreProcess::spawn_in(&yaml, flags, tempfile::tempdir().unwrap()))
        .collect();
    for s in &stores {
        s.wait_ready();
    }
    stores
}

/// Every series over all time, answered in full (Abort: a failing block fails the test).
fn everything(rt: &tokio::runtime::Runtime, store: &StoreProcess) -> SeriesResult {
    let mut req = series_request(EVERY_SERIES, i64::MIN, i64::MAX);
    req.partial_response_strategy = thanos::PartialResponseStrategy::Abort as i32;
    let reply = call_series(rt, &mut store.client(rt), req)
        .unwrap_or_else(|e| panic!("Series at {}: {e}", store.grpc));
    assert!(
        reply.warnings.is_empty(),
        "{}: {:?}",
        store.grpc,
        reply.warnings
    );
    reply
}

/// The blocks a Series call read, from its response hints.
fn queried_ids(reply: &SeriesResult) -> BTreeSet<String> {
    reply
        .hints
        .as_ref()
        .expect("response hints")
        .queried_blocks
        .iter()
        .map(|b| b.id.clone())
        .collect()
}

fn ids<'a>(blocks: impl IntoIterator<Item = &'a Block>) -> BTreeSet<String> {
    blocks.into_iter().map(|b| b.id.clone()).collect()
}

/// What Info says: the label sets, the time range, and the range per label set.
#[derive(Debug, PartialEq)]
struct Advertised {
    label_sets: Vec<Labels>,
    min_time: i64,
    max_time: i64,
    per_label_set: Vec<(Labels, i64, i64)>,
}

fn zlabels(set: &thanos::ZLabelSet) -> Labels {
    Labels::from_pairs(
        set.labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string())),
    )
}

fn advertised(rt: &tokio::runtime::Runtime, store: &StoreProcess) -> Advertised {
    let info = call_info(rt, &store.grpc).unwrap();
    let si = info.store.expect("Info has a store section");
    let mut label_sets: Vec<Labels> = info.label_sets.iter().map(zlabels).collect();
    label_sets.sort();
    let mut per_label_set: Vec<(Labels, i64, i64)> = si
        .tsdb_infos
        .iter()
        .map(|t| {
            (
                zlabels(t.labels.as_ref().expect("TSDBInfo labels")),
                t.min_time,
                t.max_time,
            )
        })
        .collect();
    per_label_set.sort();
    Advertised {
        label_sets,
        min_time: si.min_time,
        max_time: si.max_time,
        per_label_set,
    }
}

/// What Info must say for exactly `blocks` served (Thanos: every external-label set with the
/// span of its blocks), clipped to `[lo, hi]` as `--min-time`/`--max-time` clip it.
fn advertised_for<'a>(blocks: impl IntoIterator<Item = &'a Block>, lo: i64, hi: i64) -> Advertised {
    let mut spans: BTreeMap<Labels, (i64, i64)> = BTreeMap::new();
    for b in blocks {
        let span = spans
            .entry(b.external_labels.clone())
            .or_insert((i64::MAX, i64::MIN));
        span.0 = span.0.min(b.min_time);
        span.1 = span.1.max(b.max_time);
    }
    assert!(!spans.is_empty(), "no blocks to advertise");
    let per_label_set: Vec<(Labels, i64, i64)> = spans
        .iter()
        .map(|(l, &(min, max))| (l.clone(), min.max(lo), max.min(hi)))
        .collect();
    Advertised {
        label_sets: spans.keys().cloned().collect(),
        min_time: per_label_set.iter().map(|s| s.1).min().unwrap(),
        max_time: per_label_set.iter().map(|s| s.2).max().unwrap(),
        per_label_set,
    }
}

/// The relabel rules of shard `shard` of 2, as Thanos documents them for sharding store
/// gateways; flow-style YAML, so the same text goes into Prometheus' scrape config.
fn shard_rules(shard: u32) -> String {
    format!(
        "[{{action: hashmod, source_labels: [__block_id], target_label: shard, modulus: 2}}, \
         {{action: keep, source_labels: [shard], regex: '{shard}'}}]"
    )
}

/// Which blocks Prometheus' relabelling keeps for each shard: a scrape job per shard with
/// the shard's rules as `relabel_configs`, over one target per block carrying `__block_id`;
/// the targets it keeps are the blocks of the shard.
fn prometheus_shards(blocks: &[Block]) -> [BTreeSet<String>; 2] {
    let mut config = String::from("global:\n  scrape_interval: 1h\nscrape_configs:\n");
    for shard in 0..2 {
        config.push_str(&format!(
            "- job_name: shard-{shard}\n  relabel_configs: {}\n  static_configs:\n",
            shard_rules(shard)
        ));
        for (i, b) in blocks.iter().enumerate() {
            // Addresses nothing listens on: the targets only need to exist.
            config.push_str(&format!(
                "  - targets: ['127.0.0.1:{}']\n    labels: {{__block_id: '{}'}}\n",
                i + 1,
                b.id
            ));
        }
    }
    let data = tempfile::tempdir().unwrap();
    let prom = PrometheusServer::start_with_config(data.path(), &config, &[]);
    let mut shards = [BTreeSet::new(), BTreeSet::new()];
    // Discovered targets reach the scrape manager some seconds after the start.
    wait_until("Prometheus has relabelled every block's target", || {
        let data = prometheus_json(&prom, "/api/v1/targets?state=any");
        let active = data["activeTargets"].as_array().unwrap();
        let dropped = data["droppedTargets"].as_array().unwrap();
        if active.len() + dropped.len() < 2 * blocks.len() {
            return false;
        }
        for t in active {
            let pool = t["scrapePool"].as_str().unwrap();
            let shard: usize = pool.strip_prefix("shard-").unwrap().parse().unwrap();
            let id = t["discoveredLabels"]["__block_id"].as_str().unwrap();
            shards[shard].insert(id.to_string());
        }
        true
    });
    shards
}

/// `--selector.relabel-config` with hashmod over `__block_id`: two stores, shard 0 and shard 1
/// of 2, each read exactly the blocks Prometheus' relabelling assigns to its shard (both
/// non-empty), together return every sample of an unsharded store once (none in both, none
/// missing), and each advertises only its own blocks' label sets and time ranges.
#[test]
fn hashmod_relabelling_splits_the_blocks_between_two_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let (generated, bucket) = (tmp.path().join("gen"), tmp.path().join("bucket"));
    let templates = tiny_blocks(&generated, 2);
    // Four replicas of the two time blocks, each block under its own ULID: series differ per
    // replica, so a block served twice shows as a sample sent twice.
    let mut blocks = Vec::new();
    for replica in 0..4u128 {
        for (i, t) in templates.iter().enumerate() {
            let at = Ulid::from_string(&t.id).unwrap().timestamp_ms();
            let id = Ulid::from_parts(at, 0x5a4d_0000 + replica * 16 + i as u128);
            let name = format!("r{replica}");
            blocks.push(copy_block(&generated, t, &bucket, id, set_replica(&name)));
        }
    }
    let (r0, r1) = (shard_rules(0), shard_rules(1));
    let stores = start_stores(
        &bucket,
        &[
            &[],
            &[&format!("--selector.relabel-config={r0}")],
            &[&format!("--selector.relabel-config={r1}")],
        ],
    );
    let expected = prometheus_shards(&blocks);
    assert_eq!(
        &expected[0] | &expected[1],
        ids(&blocks),
        "Prometheus kept every block in one shard or the other"
    );
    assert!(expected[0].is_disjoint(&expected[1]));
    assert!(
        !expected[0].is_empty() && !expected[1].is_empty(),
        "the test needs blocks in both shards: {expected:?}"
    );

    let rt = runtime();
    let unsharded = everything(&rt, &stores[0]);
    assert_eq!(queried_ids(&unsharded), ids(&blocks));
    let all_samples = decode(&unsharded.series, i64::MIN, i64::MAX);
    assert!(!all_samples.is_empty());
    let mut union = SeriesMap::new();
    for (shard, store) in stores[1..].iter().enumerate() {
        let reply = everything(&rt, store);
        assert_eq!(
            queried_ids(&reply),
            expected[shard],
            "shard {shard} read other blocks than Prometheus' relabelling gives it"
        );
        let samples = decode(&reply.series, i64::MIN, i64::MAX);
        assert!(!samples.is_empty(), "shard {shard} served nothing");
        for (labels, s) in samples {
            union.entry(labels).or_default().extend(s);
        }
        let own: Vec<&Block> = blocks
            .iter()
            .filter(|b| expected[shard].contains(&b.id))
            .collect();
        assert_eq!(
            advertised(&rt, store),
            advertised_for(own, i64::MIN, i64::MAX),
            "Info of shard {shard}"
        );
    }
    for samples in union.values_mut() {
        samples.sort();
    }
    // Sorted with duplicates kept: a sample both shards sent appears twice here.
    assert!(
        union == all_samples,
        "the shards together are not the unsharded answer: {} vs {} series",
        union.len(),
        all_samples.len()
    );
}

/// `--min-time`/`--max-time`, absolute (RFC 3339) and relative to now: only blocks
/// overlapping the window are read, the window's samples are all there, Info's range is
/// clipped to the window; a block touching the window at one end counts as overlapping
/// (Thanos' inclusive comparison).
#[test]
fn min_and_max_time_serve_only_the_blocks_overlapping_the_window() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    // 00-02h, 02-04h, 04-06h, 06-08h.
    let blocks = tiny_blocks(&bucket, 4);
    let t0 = blocks[0].min_time;
    let at = |hours: f64| t0 + (hours * HOUR_MS as f64) as i64;
    let rfc3339 = |ms: i64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
        )
        .to_string()
    };
    // The window 03:00-05:00 cuts the middle blocks and misses the outer ones.
    let (lo, hi) = (at(3.0), at(5.0));
    let now = stele::model::time::now_ms();
    // Seconds back from now, rounded down so the bound lies just after lo and hi.
    let back = |t: i64| (now - t) / 1000;
    let absolute = [
        format!("--min-time={}", rfc3339(lo)),
        format!("--max-time={}", rfc3339(hi)),
    ];
    let relative = [
        format!("--min-time=-{}s", back(lo)),
        format!("--max-time=-{}s", back(hi)),
    ];
    // The first block ends where this window starts, the last starts where it ends.
    let touching = [
        format!("--min-time={}", rfc3339(blocks[0].max_time)),
        format!("--max-time={}", rfc3339(blocks[3].min_time)),
    ];
    let stores = start_stores(
        &bucket,
        &[&[], &strs(&absolute), &strs(&relative), &strs(&touching)],
    );
    let rt = runtime();
    let unfiltered = everything(&rt, &stores[0]);
    assert_eq!(
        queried_ids(&unfiltered),
        ids(&blocks),
        "without time flags every block is served"
    );
    let middle = ids(&blocks[1..3]);

    // Absolute window.
    let reply = everything(&rt, &stores[1]);
    assert_eq!(queried_ids(&reply), middle, "{absolute:?}");
    let in_window = decode(&unfiltered.series, lo, hi);
    assert!(!in_window.is_empty());
    assert!(
        decode(&reply.series, lo, hi) == in_window,
        "{absolute:?}: the window's samples differ from the unfiltered store's"
    );
    assert_eq!(
        advertised(&rt, &stores[1]),
        advertised_for(&blocks[1..3], lo, hi),
        "{absolute:?}"
    );

    // Relative window: the same blocks; its ends are resolved against the clock when used.
    let reply = everything(&rt, &stores[2]);
    assert_eq!(queried_ids(&reply), middle, "{relative:?}");
    let (inner_lo, inner_hi) = (lo + 10 * 60_000, hi - 10 * 60_000);
    assert!(
        decode(&reply.series, inner_lo, inner_hi) == decode(&unfiltered.series, inner_lo, inner_hi),
        "{relative:?}: the window's samples differ from the unfiltered store's"
    );
    let before = stele::model::time::now_ms();
    let info = advertised(&rt, &stores[2]);
    let after = stele::model::time::now_ms();
    let (min_back, max_back) = (back(lo) * 1000, back(hi) * 1000);
    assert!(
        (before - min_back..=after - min_back).contains(&info.min_time)
            && (before - max_back..=after - max_back).contains(&info.max_time),
        "{relative:?}: Info's range {}..{} is not now minus the flags",
        info.min_time,
        info.max_time
    );
    let expected = advertised_for(&blocks[1..3], info.min_time, info.max_time);
    assert_eq!(info, expected, "{relative:?}");

    // Touching ends.
    let reply = everything(&rt, &stores[3]);
    assert_eq!(queried_ids(&reply), ids(&blocks), "{touching:?}");
}

/// Where the blocks of the single-purpose buckets below come from: the first tiny block.
fn template(tmp: &Path) -> (PathBuf, Block) {
    let generated = tmp.join("gen");
    let first = tiny_blocks(&generated, 1).remove(0);
    (generated, first)
}

/// A ULID made `ago_ms` before now, as an uploader would name a block it made then.
fn ulid_made_ago(ago_ms: i64, n: u128) -> Ulid {
    Ulid::from_parts((stele::model::time::now_ms() - ago_ms) as u64, n)
}

/// `--consistency-delay`: a block whose ULID is younger than the delay is not served, an
/// older one is, and so is a young one a compactor made (Thanos trusts those at once); with
/// no delay the young block is served too.
#[test]
fn consistency_delay_holds_back_blocks_younger_than_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (generated, t) = template(tmp.path());
    let bucket = tmp.path().join("bucket");
    let old = copy_block(
        &generated,
        &t,
        &bucket,
        ulid_made_ago(2 * HOUR_MS, 1),
        set_replica("old"),
    );
    let young = copy_block(
        &generated,
        &t,
        &bucket,
        ulid_made_ago(60_000, 2),
        set_replica("young"),
    );
    let young_compacted = copy_block(&generated, &t, &bucket, ulid_made_ago(60_000, 3), |m| {
        m["thanos"]["labels"]["replica"] = "compacted".into();
        m["thanos"]["source"] = "compactor".into();
    });
    let stores = start_stores(
        &bucket,
        &[&["--consistency-delay=30m"], &["--consistency-delay=0s"]],
    );
    let rt = runtime();

    let delayed = everything(&rt, &stores[0]);
    assert_eq!(
        queried_ids(&delayed),
        ids([&old, &young_compacted]),
        "with a 30m delay, the block made a minute ago ({}) waits",
        young.id
    );
    assert_eq!(
        advertised(&rt, &stores[0]),
        advertised_for([&old, &young_compacted], i64::MIN, i64::MAX)
    );

    let undelayed = everything(&rt, &stores[1]);
    assert_eq!(
        queried_ids(&undelayed),
        ids([&old, &young, &young_compacted])
    );
    assert_eq!(
        advertised(&rt, &stores[1]),
        advertised_for([&old, &young, &young_compacted], i64::MIN, i64::MAX)
    );
}

/// `--ignore-deletion-marks-delay`: a block marked for deletion just now is still served (a
/// querier may be reading it), one marked longer ago than the delay is dropped, and an
/// unreadable mark counts as none (as in Thanos). Marks in Thanos' format.
#[test]
fn deletion_marks_drop_a_block_only_after_the_delay() {
    let tmp = tempfile::tempdir().unwrap();
    let (generated, t) = template(tmp.path());
    let bucket = tmp.path().join("bucket");
    let at = Ulid::from_string(&t.id).unwrap().timestamp_ms();
    let block = |n: u128, replica: &str| {
        copy_block(
            &generated,
            &t,
            &bucket,
            Ulid::from_parts(at, n),
            set_replica(replica),
        )
    };
    let (unmarked, just_marked, marked_long_ago, badly_marked) = (
        block(1, "unmarked"),
        block(2, "just-marked"),
        block(3, "marked-long-ago"),
        block(4, "badly-marked"),
    );
    let now_s = stele::model::time::now_ms() / 1000;
    for (b, deletion_time) in [(&just_marked, now_s), (&marked_long_ago, now_s - 7200)] {
        let mark = format!(
            r#"{{"id":"{}","deletion_time":{deletion_time},"version":1}}"#,
            b.id
        );
        std::fs::write(bucket.join(&b.id).join("deletion-mark.json"), mark).unwrap();
    }
    std::fs::write(
        bucket.join(&badly_marked.id).join("deletion-mark.json"),
        "{not json",
    )
    .unwrap();
    let stores = start_stores(&bucket, &[&["--ignore-deletion-marks-delay=1h"]]);
    let rt = runtime();

    let reply = everything(&rt, &stores[0]);
    assert_eq!(
        queried_ids(&reply),
        ids([&unmarked, &just_marked, &badly_marked]),
        "with a 1h delay, only the block marked 2h ago ({}) is dropped",
        marked_long_ago.id
    );
    assert_eq!(
        advertised(&rt, &stores[0]),
        advertised_for([&unmarked, &just_marked, &badly_marked], i64::MIN, i64::MAX)
    );
}
