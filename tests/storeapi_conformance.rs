//! One conformance suite for every StoreAPI engine: the bucket store over a FILESYSTEM bucket,
//! the sidecar over a real Prometheus, and the in-memory engine, all serving the same
//! promtool-made block with the same external labels. The oracle is the fixture itself: the
//! suite knows every series and sample it wrote, and filters them by brute force.
//!
//! Covered: matcher semantics (equality, regexes anchored, negations, `l=""` for an absent
//! label), sort order, external labels (added to every series, matchers on them settled),
//! `without_replica_labels`, `limit`, `skip_chunks`, sharding, time ranges, the series limit,
//! label names and values, and the error statuses (bad range, not ready).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use stele::bucket::discover::BlockFilters;
use stele::cache::Cache;
use stele::model::{parse_selector, Labels, Matcher};
use stele::prom::PrometheusClient;
use stele::sidecar::PrometheusStore;
use stele::store::{BucketStore, StoreConfig};
use stele::storeapi::memory::MemoryStore;
use stele::storeapi::{
    LabelsQuery, Limits, SeriesEvent, SeriesOut, SeriesQuery, ShardSpec, StoreEngine, StoreError,
    StoredChunk,
};
use stele::tsdb::chunks::XorIter;

const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, a block boundary
/// 200 samples 30 s apart: two chunks per series.
const SAMPLES: i64 = 200;
const STEP: i64 = 30_000;
const END: i64 = START + (SAMPLES - 1) * STEP;

fn external() -> Labels {
    Labels::from_pairs([("cluster", "c1"), ("replica", "r1")])
}

/// The fixture's series (own labels) and samples.
fn fixture() -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut out = BTreeMap::new();
    let mut n = 0.0;
    for job in ["api", "web"] {
        for instance in ["i1", "i2"] {
            for path in ["/a", "/ab", "/b"] {
                let mut pairs = vec![
                    ("__name__", "req_total"),
                    ("job", job),
                    ("instance", instance),
                    ("path", path),
                ];
                // Some series have a zone, some do not.
                if instance == "i2" {
                    pairs.push(("zone", "z1"));
                }
                n += 1.0;
                let samples = (0..SAMPLES)
                    .map(|k| (START + k * STEP, n * 1000.0 + k as f64))
                    .collect();
                out.insert(Labels::from_pairs(pairs), samples);
            }
        }
    }
    for (room, zone) in [("lab", None), ("hall", Some("z2"))] {
        let mut pairs = vec![("__name__", "temp"), ("room", room)];
        if let Some(z) = zone {
            pairs.push(("zone", z));
        }
        let samples = (0..SAMPLES)
            .map(|k| (START + k * STEP, 20.0 + (k % 7) as f64 * 0.5))
            .collect();
        out.insert(Labels::from_pairs(pairs), samples);
    }
    out
}

/// The fixture as a promtool-made block in `dir`; its directory.
fn fixture_block(dir: &Path) -> std::path::PathBuf {
    use std::fmt::Write;
    let mut text = String::new();
    for (family, kind) in [("req", "counter"), ("temp", "gauge")] {
        writeln!(text, "# TYPE {family} {kind}").unwrap();
        for (labels, samples) in fixture() {
            let name = labels.get("__name__").unwrap();
            if !name.starts_with(family) {
                continue;
            }
            let pairs: Vec<String> = labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| format!("{}=\"{}\"", l.name, l.value))
                .collect();
            for (t, v) in samples {
                writeln!(text, "{name}{{{}}} {v} {}", pairs.join(","), t / 1000).unwrap();
            }
        }
    }
    text.push_str("# EOF\n");
    let input = dir.join("fixture.om");
    std::fs::write(&input, text).unwrap();
    let blocks = dir.join("blocks");
    run(std::process::Command::new(promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&blocks));
    let found = stele::block::list_blocks(&blocks).unwrap();
    assert_eq!(found.len(), 1, "the fixture is one 2h block");
    found[0].clone()
}

/// The block's series as stored (own labels, chunks as written), for the memory engine.
fn block_series(block: &Path) -> Vec<SeriesOut> {
    let b = stele::block::LocalBlock::open(block).unwrap();
    let all = b
        .select(&parse_selector(r#"{__name__=~".+"}"#).unwrap())
        .unwrap();
    all.into_iter()
        .map(|r| {
            let (labels, metas) = b.series(r).unwrap();
            let chunks = metas
                .iter()
                .map(|m| {
                    let c = b.chunks.chunk(m.chunk_ref).unwrap();
                    StoredChunk {
                        min_time: m.min_time,
                        max_time: m.max_time,
                        encoding: c.encoding,
                        hash: xxhash_rust::xxh64::xxh64(&c.data, 0),
                        data: c.data,
                    }
                })
                .collect();
            SeriesOut { labels, chunks }
        })
        .collect()
}

/// The fixture's series with external labels, as every engine must give them.
fn expected(
    matchers: &[Matcher],
    (min, max): (i64, i64),
    without: &[&str],
) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    let ext = external();
    fixture()
        .into_iter()
        .filter_map(|(own, samples)| {
            let full = Labels::from_pairs(
                own.iter()
                    .chain(ext.iter())
                    .filter(|l| !without.contains(&l.name.as_str()))
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            );
            let all = Labels::from_pairs(
                own.iter()
                    .chain(ext.iter())
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            );
            let matches = matchers
                .iter()
                .all(|m| m.matches(all.get(&m.name).unwrap_or("")));
            let in_range: Vec<(i64, u64)> = samples
                .into_iter()
                .filter(|(t, _)| *t >= min && *t <= max)
                .map(|(t, v)| (t, v.to_bits()))
                .collect();
            (matches && !in_range.is_empty()).then_some((full, in_range))
        })
        .collect()
}

/// Runs `q` and returns the series in order, or the error.
fn series(engine: &dyn StoreEngine, q: &SeriesQuery) -> Result<Vec<SeriesOut>, StoreError> {
    let mut out = Vec::new();
    engine.series(q, &mut |ev| {
        match ev {
            SeriesEvent::Series(s) => out.push(s),
            SeriesEvent::Warning(w) => panic!("a warning: {w}"),
        }
        true
    })?;
    Ok(out)
}

/// The samples of `series` in `[min, max]`; fails on series out of order or repeated.
fn decoded(series: &[SeriesOut], (min, max): (i64, i64)) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    let mut out = BTreeMap::new();
    for pair in series.windows(2) {
        assert!(
            pair[0].labels < pair[1].labels,
            "out of order or repeated: {} then {}",
            pair[0].labels,
            pair[1].labels
        );
    }
    for s in series {
        let mut samples = Vec::new();
        for c in &s.chunks {
            assert_eq!(c.hash, xxhash_rust::xxh64::xxh64(&c.data, 0), "chunk hash");
            let mut it = XorIter::new(&c.data).unwrap();
            for (t, v) in it.by_ref() {
                if t >= min && t <= max {
                    samples.push((t, v.to_bits()));
                }
            }
            assert!(it.err().is_none());
        }
        let before = samples.len();
        samples.sort_by_key(|s| s.0);
        samples.dedup();
        assert_eq!(samples.len(), before, "a sample sent twice in {}", s.labels);
        out.insert(s.labels.clone(), samples);
    }
    out
}

fn query(selector: &str, range: (i64, i64)) -> SeriesQuery {
    SeriesQuery {
        min_time: range.0,
        max_time: range.1,
        matchers: parse_selector(selector).unwrap(),
        partial_response: false,
        ..Default::default()
    }
}

fn labels_query(selector: &str) -> LabelsQuery {
    LabelsQuery {
        min_time: START,
        max_time: END,
        matchers: parse_selector(selector).unwrap(),
        ..Default::default()
    }
}

const SELECTORS: &[&str] = &[
    r#"{__name__="req_total"}"#,
    r#"req_total{job="api"}"#,
    r#"req_total{job!="api"}"#,
    r#"req_total{path=~"/a|/b"}"#,
    r#"req_total{path=~"/a.*"}"#,
    r#"req_total{path!~"/a.*"}"#,
    r#"req_total{path=~"/"}"#,
    r#"{__name__=~".+",zone=""}"#,
    r#"{__name__=~"req_total|temp",zone!=""}"#,
    r#"{__name__=~"temp",zone=~"z.*|"}"#,
    r#"{__name__="temp",cluster="c1"}"#,
    r#"{__name__="temp",cluster="c2"}"#,
    r#"{__name__="temp",replica=~"r.*",room!="lab"}"#,
    r#"{__name__="nothing"}"#,
];

/// The suite: `engine` serves the fixture with [`external`] labels; `limited` is the same
/// engine with a series limit of 3.
fn conformance(name: &str, engine: &dyn StoreEngine, limited: &dyn StoreEngine) {
    let all = (START, END);
    let late = (START + 150 * STEP, END); // the second chunk of each series only
    for selector in SELECTORS {
        for range in [all, late] {
            let q = query(selector, range);
            let got = decoded(&series(engine, &q).unwrap(), range);
            let want = expected(&q.matchers, range, &[]);
            assert!(
                got == want,
                "{name}: {selector} over {range:?}: got {:?}, want {:?}",
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>()
            );
        }
    }
    // Replica labels dropped: the same series, without it.
    let q = SeriesQuery {
        without_replica_labels: vec!["replica".into()],
        ..query(r#"{__name__=~".+"}"#, all)
    };
    let got = decoded(&series(engine, &q).unwrap(), all);
    assert!(
        got == expected(&q.matchers, all, &["replica"]),
        "{name}: without replica"
    );
    // The first `limit` series, in order.
    let full = series(engine, &query(r#"{__name__=~".+"}"#, all)).unwrap();
    let q = SeriesQuery {
        limit: 2,
        ..query(r#"{__name__=~".+"}"#, all)
    };
    let got: Vec<Labels> = series(engine, &q)
        .unwrap()
        .into_iter()
        .map(|s| s.labels)
        .collect();
    let first: Vec<Labels> = full.iter().take(2).map(|s| s.labels.clone()).collect();
    assert_eq!(got, first, "{name}: limit");
    // Labels only.
    let q = SeriesQuery {
        skip_chunks: true,
        ..query(r#"req_total{job="web"}"#, all)
    };
    let got = series(engine, &q).unwrap();
    assert!(
        got.iter().all(|s| s.chunks.is_empty()),
        "{name}: skip_chunks"
    );
    let labels: Vec<Labels> = got.into_iter().map(|s| s.labels).collect();
    let want: Vec<Labels> = expected(&q.matchers, all, &[]).into_keys().collect();
    assert_eq!(labels, want, "{name}: skip_chunks labels");
    // Shards: every series in exactly one of three.
    let mut seen: Vec<Labels> = Vec::new();
    for i in 0..3 {
        let q = SeriesQuery {
            shard: Some(ShardSpec {
                shard_index: i,
                total_shards: 3,
                by: false,
                labels: vec![],
            }),
            ..query(r#"{__name__=~".+"}"#, all)
        };
        seen.extend(series(engine, &q).unwrap().into_iter().map(|s| s.labels));
    }
    seen.sort();
    let full: Vec<Labels> = full.into_iter().map(|s| s.labels).collect();
    assert_eq!(seen, full, "{name}: shards");
    // Label names and values.
    let (names, _) = engine
        .label_names(&labels_query(r#"{__name__="temp"}"#))
        .unwrap();
    assert_eq!(
        names,
        ["__name__", "cluster", "replica", "room", "zone"],
        "{name}: label names"
    );
    let (values, _) = engine
        .label_values("path", &labels_query(r#"req_total{job="api",path!="/b"}"#))
        .unwrap();
    assert_eq!(values, ["/a", "/ab"], "{name}: label values");
    let (values, _) = engine
        .label_values("instance", &labels_query(r#"{__name__="req_total"}"#))
        .unwrap();
    assert_eq!(values, ["i1", "i2"], "{name}: label values of all");
    // Errors: a range ending before it starts; over the series limit.
    let bad = query(r#"{__name__="temp"}"#, (END, START));
    assert!(
        matches!(series(engine, &bad), Err(StoreError::InvalidArgument(_))),
        "{name}: bad range"
    );
    let e = series(limited, &query(r#"{__name__="req_total"}"#, all)).unwrap_err();
    assert!(matches!(e, StoreError::ResourceExhausted(_)), "{name}: {e}");
    // Under the limit: served.
    assert_eq!(
        series(limited, &query(r#"{__name__="temp"}"#, all))
            .unwrap()
            .len(),
        2
    );
    // Info: the external labels and the span.
    let info = engine.info().unwrap();
    assert_eq!(info.label_sets, vec![external()], "{name}: Info label sets");
    assert!(
        info.min_time <= START,
        "{name}: Info min time {}",
        info.min_time
    );
}

/// What every engine answers before it can serve: an error the server sends as Unavailable.
fn unavailable_before_ready(name: &str, engine: &dyn StoreEngine) {
    let status = |e: StoreError| stele::storeapi::convert::status(e).code();
    let e = series(engine, &query(r#"{__name__="temp"}"#, (START, END))).unwrap_err();
    assert_eq!(
        status(e),
        tonic::Code::Unavailable,
        "{name}: Series before ready"
    );
    let e = engine.info().unwrap_err();
    assert_eq!(
        status(e),
        tonic::Code::Unavailable,
        "{name}: Info before ready"
    );
}

const SERIES_LIMIT: Limits = Limits {
    series: 3,
    samples: 0,
    downloaded_bytes: 0,
};

#[test]
fn the_memory_engine_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let block = fixture_block(dir.path());
    let engine = MemoryStore::new(external(), block_series(&block));
    let limited = MemoryStore::new(external(), block_series(&block)).with_limits(SERIES_LIMIT);
    engine.set_not_ready(Some("loading"));
    unavailable_before_ready("memory", &engine);
    engine.set_not_ready(None);
    conformance("memory", &engine, &limited);
}

#[test]
fn the_bucket_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let block = fixture_block(dir.path());
    let meta_path = block.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["thanos"] = serde_json::json!({
        "labels": {"cluster": "c1", "replica": "r1"},
        "downsample": {"resolution": 0},
        "source": "sidecar",
    });
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let bucket = block.parent().unwrap().to_path_buf();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let open = |limits: Limits, data: &str| {
        let config = StoreConfig {
            data_dir: dir.path().join(data),
            filters: BlockFilters::default(),
            limits,
            block_sync_concurrency: 1,
            lazy_index_headers: true,
            index_header_idle_timeout: Duration::ZERO,
            inflight_memory_limit: 0,
            inflight_memory_wait: Duration::from_secs(30),
            local_bucket: Some(bucket.clone()),
            postings_cost_model: true,
            chunk_cache_max_age: Duration::ZERO,
            max_bucket_requests: stele::store::DEFAULT_MAX_BUCKET_REQUESTS,
            bucket_requests_per_query: stele::store::DEFAULT_BUCKET_REQUESTS_PER_QUERY,
        };
        let yaml = format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        );
        Arc::new(BucketStore::new(
            stele::objstore::from_yaml(&yaml).unwrap(),
            config,
            Arc::new(Cache::new(16 << 20)),
            None,
            runtime.handle().clone(),
        ))
    };
    let engine = open(Limits::default(), "data");
    unavailable_before_ready("bucket store", engine.as_ref());
    let limited = open(SERIES_LIMIT, "limited");
    runtime.block_on(engine.sync()).unwrap();
    runtime.block_on(limited.sync()).unwrap();
    // Queries block: off the runtime's workers, as the server runs them.
    let (engine, limited) = (engine.clone(), limited.clone());
    std::thread::spawn(move || conformance("bucket store", engine.as_ref(), limited.as_ref()))
        .join()
        .unwrap();
}

#[test]
fn the_sidecar_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let block = fixture_block(dir.path());
    let data = dir.path().join("prometheus");
    copy_dir(&block, &data.join(block.file_name().unwrap()));
    let prom = PrometheusServer::start_with_config(
        &data,
        "global:\n  external_labels:\n    cluster: c1\n    replica: r1\n",
        &[
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
        ],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = |limits: Limits| {
        let client = PrometheusClient::new(&prom.url, Duration::from_secs(10)).unwrap();
        PrometheusStore::new(client, limits, runtime.handle().clone())
    };
    let (sidecar, limited) = (engine(Limits::default()), engine(SERIES_LIMIT));
    unavailable_before_ready("sidecar", &sidecar);
    runtime.block_on(sidecar.refresh()).unwrap();
    runtime.block_on(limited.refresh()).unwrap();
    std::thread::spawn(move || conformance("sidecar", &sidecar, &limited))
        .join()
        .unwrap();
}
