//! The index and chunk caches end to end: `stele store` answers the same Series, LabelNames
//! and LabelValues requests identically with the index cache on (default), off, tiny
//! (constant eviction), compressing everything it can, and with a real memcached as a second
//! level; small warm requests are answered in place (on the async worker), identically; two
//! stores sharing one memcached: the second one's first queries are answered from it; and the
//! same with the chunk cache on, tiny, limited to recent data, and in memcached.

mod common;

use std::path::Path;

use common::store::*;
use common::storeapi::*;
use common::*;
use stele::proto::thanos;

/// Everything the queries returned, in order.
#[derive(Debug, PartialEq)]
enum Answer {
    Series(Vec<thanos::Series>),
    Names(Vec<String>),
    Values(Vec<String>),
}

const SELECTORS: [&str; 8] = [
    r#"{__name__=~".+"}"#,
    r#"{__name__="up"}"#,
    r#"{__name__="http_requests_total",code="500"}"#,
    r#"{__name__=~"container_.*",namespace!=""}"#,
    r#"{__name__=~"node_cpu.*|up",mode=~"idle|user"}"#,
    r#"{job=~"kube.*",pod!~".*-0"}"#,
    r#"{__name__=~".+_bucket",le="+Inf"}"#,
    r#"{__name__="no_such_metric"}"#,
];

fn generate(bucket: &Path) -> (i64, i64) {
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    let metas = stele::gen::generate(&profile, bucket, &indicatif::ProgressBar::hidden()).unwrap();
    (
        metas.iter().map(|m| m.min_time).min().unwrap(),
        metas.iter().map(|m| m.max_time).max().unwrap(),
    )
}

/// Runs the whole query set against `store`; the first Series response's query stats too.
fn ask(
    store: &StoreProcess,
    (min, max): (i64, i64),
) -> (Vec<Answer>, stele::proto::hintspb::QueryStats) {
    let rt = runtime();
    let mut client = store.client(&rt);
    let mut answers = Vec::new();
    let mut first_stats = None;
    for sel in SELECTORS {
        let got = call_series(&rt, &mut client, series_request(sel, min, max))
            .unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert!(got.warnings.is_empty(), "{sel}: {:?}", got.warnings);
        let stats = got.hints.and_then(|h| h.query_stats).expect("query stats");
        first_stats.get_or_insert(stats);
        answers.push(Answer::Series(got.series));
    }
    for matchers in ["", r#"{__name__="up"}"#] {
        let matchers = if matchers.is_empty() {
            Vec::new()
        } else {
            wire_matchers(matchers)
        };
        let names = rt
            .block_on(client.store().label_names(thanos::LabelNamesRequest {
                start: min,
                end: max,
                matchers: matchers.clone(),
                ..Default::default()
            }))
            .unwrap()
            .into_inner()
            .names;
        answers.push(Answer::Names(names));
        for label in ["__name__", "job", "pod", "le"] {
            let values = rt
                .block_on(client.store().label_values(thanos::LabelValuesRequest {
                    label: label.into(),
                    start: min,
                    end: max,
                    matchers: matchers.clone(),
                    ..Default::default()
                }))
                .unwrap()
                .into_inner()
                .values;
            answers.push(Answer::Values(values));
        }
    }
    (answers, first_stats.unwrap())
}

fn series_count(answers: &[Answer]) -> usize {
    answers
        .iter()
        .map(|a| match a {
            Answer::Series(s) => s.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn answers_are_the_same_with_the_cache_on_off_tiny_compressed_and_in_memcached() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let span = generate(&bucket);
    let yaml = filesystem_yaml(&bucket);

    let default = StoreProcess::start(&yaml, &[]);
    let (expected, _) = ask(&default, span);
    assert!(series_count(&expected) > 100, "the queries match little");
    let handed_off = r#"stele_grpc_series_in_place_total{result="handed_off"}"#;
    let answered = r#"stele_grpc_series_in_place_total{result="answered"}"#;
    // Cold, every request needs the bucket: all run on the blocking pool.
    assert_eq!(default.metric(handed_off), SELECTORS.len() as f64);
    assert_eq!(default.metric(answered), 0.0);
    let (warm, stats) = ask(&default, span);
    // Warm, the small ones are answered in place, from memory and the page cache, and the
    // answers are the same.
    assert_eq!(warm, expected, "default cache, warm");
    assert!(
        default.metric(answered) >= 2.0,
        "the empty and the smallest selectors are answered in place"
    );
    assert_eq!(
        (stats.postings_fetched, stats.series_fetch_count),
        (0, 0),
        "{stats:?}"
    );
    drop(default);

    for (what, flags) in [
        ("cache off", &["--index-cache-size=0"][..]),
        ("tiny cache", &["--index-cache-size=4KiB"][..]),
        (
            "everything compressed",
            &["--index-cache.compress-min-bytes=1"][..],
        ),
        (
            "compression off",
            &["--index-cache.compress-min-bytes=0"][..],
        ),
        (
            "IN-MEMORY config",
            &["--index-cache.config=type: IN-MEMORY\nconfig:\n  max_size: 8KiB\n"][..],
        ),
    ] {
        let store = StoreProcess::start(&yaml, flags);
        for round in ["cold", "warm"] {
            assert!(
                ask(&store, span).0 == expected,
                "{what}, {round}: answers differ"
            );
        }
        if what == "cache off" {
            // Postings are never in memory: every request runs on the blocking pool.
            assert_eq!(store.metric(answered), 0.0);
            assert_eq!(store.metric(handed_off), 2.0 * SELECTORS.len() as f64);
        }
        if what == "tiny cache" || what == "IN-MEMORY config" {
            let evictions: Vec<f64> = ["postings", "series", "expanded_postings"]
                .iter()
                .map(|kind| {
                    store.metric(&format!(
                        "stele_index_cache_items_evicted_total{{item_type=\"{kind}\"}}"
                    ))
                })
                .collect();
            assert!(
                evictions.iter().sum::<f64>() > 100.0 && evictions[1] > 10.0,
                "{what}: constant eviction expected, evicted {evictions:?}"
            );
        }
    }

    // Two stores sharing one memcached.
    let memcached = MemcachedServer::start();
    let config = format!(
        "--index-cache.config=type: MEMCACHED\nconfig:\n  addresses: [\"{}\"]\n  timeout: 2s\n  max_get_multi_batch_size: 50\n",
        memcached.address()
    );
    let first = StoreProcess::start(&yaml, &[&config]);
    let (answers, _) = ask(&first, span);
    assert_eq!(answers, expected, "memcached, first store");
    wait_until("the first store's memcached sets are done", || {
        first.metric("stele_memcached_async_queue_items") == 0.0
    });
    assert!(first.metric(r#"stele_memcached_operations_total{operation="set"}"#) > 10.0);

    let second = StoreProcess::start(&yaml, &[&config]);
    let (answers, stats) = ask(&second, span);
    assert_eq!(answers, expected, "memcached, second store");
    // Its very first Series request read no postings and no series from the bucket.
    assert_eq!(
        (stats.postings_fetched, stats.series_fetch_count),
        (0, 0),
        "{stats:?}"
    );
    for kind in ["series", "expanded_postings"] {
        let hits = format!("stele_index_cache_memcached_hits_total{{item_type=\"{kind}\"}}");
        assert!(second.metric(&hits) > 0.0, "{hits}");
    }
    let text = second.metrics_text();
    assert_eq!(
        metric_value(&text, "stele_index_cache_memcached_key_mismatches_total"),
        0.0
    );
    assert_eq!(
        metric_value(
            &text,
            r#"stele_memcached_operation_failures_total{operation="getmulti",reason="timeout"}"#
        ),
        0.0
    );
}

#[test]
fn chunks_come_from_the_chunk_cache_unchanged_in_memory_tiny_and_in_memcached() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let span = generate(&bucket);
    let yaml = filesystem_yaml(&bucket);
    let chunk_metric = |store: &StoreProcess, name: &str| {
        store.metric(&format!("stele_chunk_cache_{name}{{item_type=\"chunks\"}}"))
    };

    let reference = StoreProcess::start(&yaml, &[]);
    let (expected, cold) = ask(&reference, span);
    assert!(cold.chunks_fetched > 100, "{cold:?}");
    // No chunk cache by default, and then none in /metrics either.
    assert!(!reference.metrics_text().contains("stele_chunk_cache"));
    drop(reference);

    // In memory: the second round reads no chunk from the bucket.
    let store = StoreProcess::start(&yaml, &["--store.chunk-cache-size=64MB"]);
    assert_eq!(ask(&store, span).0, expected, "chunk cache, cold");
    let (answers, warm) = ask(&store, span);
    assert_eq!(answers, expected, "chunk cache, warm");
    assert_eq!(
        (warm.chunks_fetched, warm.chunks_fetch_count),
        (0, 0),
        "{warm:?}"
    );
    assert_eq!(warm.chunks_touched, cold.chunks_touched, "{warm:?}");
    assert_eq!(
        warm.chunks_touched_size_sum, cold.chunks_touched_size_sum,
        "{warm:?}"
    );
    assert!(chunk_metric(&store, "hits_total") >= warm.chunks_touched as f64);
    let held = chunk_metric(&store, "size_bytes");
    assert!(held > 0.0 && held <= (64 << 20) as f64, "{held}");
    assert_eq!(
        store.metric("stele_chunk_cache_max_size_bytes"),
        (64 << 20) as f64
    );
    drop(store);

    // Tiny (the Thanos caching-bucket YAML's size wins over the flag): constant eviction.
    let store = StoreProcess::start(
        &yaml,
        &[
            "--store.chunk-cache-size=64MB",
            "--store.caching-bucket.config=type: IN-MEMORY\nconfig:\n  max_size: 16KiB\nchunk_subrange_size: 16000\n",
        ],
    );
    for round in ["cold", "warm"] {
        assert!(
            ask(&store, span).0 == expected,
            "tiny chunk cache, {round}: answers differ"
        );
    }
    assert!(chunk_metric(&store, "items_evicted_total") > 100.0);
    assert!(chunk_metric(&store, "size_bytes") <= (16 << 10) as f64);
    drop(store);

    // Recent data only: these blocks are older than a day, so nothing is cached.
    let store = StoreProcess::start(
        &yaml,
        &[
            "--store.chunk-cache-size=64MB",
            "--store.chunk-cache.max-age=1d",
        ],
    );
    assert_eq!(ask(&store, span).0, expected, "chunk cache for recent data");
    assert_eq!(chunk_metric(&store, "requests_total"), 0.0);
    assert_eq!(chunk_metric(&store, "items"), 0.0);
    drop(store);

    // memcached alone, shared by two stores: the second reads no chunk from the bucket.
    let memcached = MemcachedServer::start();
    let config = format!(
        "--store.caching-bucket.config=type: MEMCACHED\nconfig:\n  addresses: [\"{}\"]\n  timeout: 2s\nchunk_subrange_ttl: 1h\n",
        memcached.address()
    );
    let first = StoreProcess::start(&yaml, &[&config]);
    assert_eq!(
        ask(&first, span).0,
        expected,
        "chunks in memcached, first store"
    );
    wait_until("the first store's memcached sets are done", || {
        first.metric("stele_chunk_cache_memcached_async_queue_items") == 0.0
    });
    let second = StoreProcess::start(&yaml, &[&config]);
    let (answers, stats) = ask(&second, span);
    assert_eq!(answers, expected, "chunks in memcached, second store");
    assert_eq!(stats.chunks_fetched, 0, "{stats:?}");
    assert!(
        second.metric(r#"stele_chunk_cache_memcached_hits_total{item_type="chunks"}"#)
            >= stats.chunks_touched as f64
    );
}

#[test]
fn a_restarted_store_answers_its_first_queries_from_the_cache_it_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let span = generate(&bucket);
    let yaml = filesystem_yaml(&bucket);
    let series_items = r#"stele_index_cache_items{item_type="series"}"#;

    let store = StoreProcess::start(&yaml, &[]);
    let (expected, _) = ask(&store, span);
    let held = store.metric(series_items);
    assert!(held > 0.0);
    let data_dir = store.stop();
    let snapshot = data_dir.path().join("index-cache.snapshot");
    assert!(snapshot.exists(), "no snapshot written at shutdown");

    let store = StoreProcess::start_in(&yaml, &[], data_dir);
    wait_until("the snapshot is read back", || {
        store.metric(series_items) == held
    });
    let (answers, stats) = ask(&store, span);
    assert_eq!(answers, expected, "after the restart");
    // Its very first Series request read no postings and no series from the bucket.
    assert_eq!(
        (stats.postings_fetched, stats.series_fetch_count),
        (0, 0),
        "{stats:?}"
    );

    // A damaged snapshot costs what follows the damage, never the start or the answers.
    let data_dir = store.stop();
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&snapshot, &bytes).unwrap();
    let store = StoreProcess::start_in(&yaml, &[], data_dir);
    assert_eq!(ask(&store, span).0, expected, "after a damaged snapshot");

    // Turned off: nothing is read back or written.
    let data_dir = store.stop();
    std::fs::remove_file(&snapshot).unwrap();
    let store = StoreProcess::start_in(&yaml, &["--index-cache.snapshot=false"], data_dir);
    assert_eq!(store.metric(series_items), 0.0);
    let data_dir = store.stop();
    assert!(!data_dir.path().join("index-cache.snapshot").exists());
}

#[test]
fn the_store_keeps_serving_while_memcached_is_down() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let span = generate(&bucket);
    let yaml = filesystem_yaml(&bucket);
    let mut memcached = MemcachedServer::start();
    let config = format!(
        "--index-cache.config=type: MEMCACHED\nconfig:\n  addresses: [\"{}\"]\n  timeout: 200ms\n",
        memcached.address()
    );
    let reference = StoreProcess::start(&yaml, &["--index-cache-size=0"]);
    let (expected, _) = ask(&reference, span);
    drop(reference);

    memcached.stop();
    // L1 off: every lookup would go to memcached, which is down.
    let store = StoreProcess::start(&yaml, &[&config, "--index-cache-size=0"]);
    assert_eq!(ask(&store, span).0, expected, "memcached down");
    let failed = store.metric(
        r#"stele_memcached_operation_failures_total{operation="getmulti",reason="network-error"}"#,
    );
    assert!(failed > 0.0);
    memcached.start_again();
    wait_until("the store finds memcached again", || {
        let _ = ask(&store, span);
        store.metric(r#"stele_index_cache_memcached_hits_total{item_type="series"}"#) > 0.0
    });
    assert_eq!(ask(&store, span).0, expected, "memcached back");
}

#[test]
fn a_bad_cache_config_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "--index-cache.config=type: REDIS",
            "\"REDIS\" is not supported",
        ),
        (
            "--index-cache.config=type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  timeout: soon",
            "field timeout",
        ),
        ("--index-cache.config=type: [", "invalid YAML"),
        (
            "--store.caching-bucket.config=type: REDIS",
            "\"REDIS\" is not supported",
        ),
        (
            "--store.caching-bucket.config=type: IN-MEMORY\nchunk_subrange_ttl: soon",
            "field chunk_subrange_ttl",
        ),
    ];
    for (flag, expected) in cases {
        let name = flag.split('=').next().unwrap();
        let out = stele()
            .arg("store")
            .arg(format!("--objstore.config={}", filesystem_yaml(dir.path())))
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg("--grpc-address=127.0.0.1:0")
            .arg("--http-address=127.0.0.1:0")
            .arg(flag)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name) && stderr.contains(expected),
            "{flag}: {stderr}"
        );
    }
    let missing = dir.path().join("nope.yaml");
    let out = stele()
        .arg("store")
        .arg(format!("--objstore.config={}", filesystem_yaml(dir.path())))
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--index-cache.config-file={}", missing.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.yaml"));
}
