//! The store gateway end to end: `stele store` over a bucket of blocks made by promtool and
//! by `stele gen`, queried over gRPC, must return exactly what a real Prometheus returns for
//! the same blocks; plus external labels, replica merging, limits and faults.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::slow::stall_when_in_flight;
use common::store::*;
use common::storeapi::*;
use common::*;
use stele::bench::proxy::LatencyProxy;
use stele::model::Labels;
use stele::proto::thanos;

/// promtool-made blocks (awkward label values, special floats, 3 blocks) plus `stele gen`
/// blocks without external labels (Prometheus does not know them), in one directory.
fn mixed_blocks(dir: &Path) -> (i64, i64) {
    let tmp = tempfile::tempdir().unwrap();
    let (text, _) = openmetrics_fixture();
    let input = tmp.path().join("data.om");
    std::fs::write(&input, text).unwrap();
    run(Command::new(promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir));
    let profile_text = TINY_PROFILE.replace(
        "[external_labels]\ncluster = \"test\"\nreplica = \"0\"\n",
        "",
    );
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", &profile_text).unwrap();
    let metas = stele::gen::generate(&profile, dir, &indicatif::ProgressBar::hidden()).unwrap();
    assert!(metas.iter().all(|m| m.external_labels().is_empty()));
    (
        metas.iter().map(|m| m.min_time).min().unwrap(),
        metas.iter().map(|m| m.max_time).max().unwrap(),
    )
}

/// Runs the selector suite against `store` and Prometheus over the same blocks.
fn assert_same_as_prometheus(store: &StoreProcess, prom: &PrometheusServer, gen_span: (i64, i64)) {
    let rt = runtime();
    let mut client = store.client(&rt);
    let om_start = 1_767_225_600_000i64; // the openmetrics fixture: 2026-01-01, 5 hours
    let om_end = om_start + 5 * 3_600_000;
    let (g0, g1) = gen_span;
    let mid = g0 + (g1 - g0) / 2;
    let cases: Vec<(&str, i64, i64)> = vec![
        (r#"{__name__="requests_total"}"#, om_start, om_end),
        (
            r#"{__name__="requests_total",path="zürich"}"#,
            om_start,
            om_end,
        ),
        (
            r#"{__name__="requests_total",path!="plain"}"#,
            om_start,
            om_end,
        ),
        (
            r#"{__name__=~"requests_total|temperature"}"#,
            om_start,
            om_end,
        ),
        (r#"{path=~"z.*"}"#, om_start, om_end),
        // `.` matches a newline in stele and Thanos (Prometheus 3 semantics) but not in
        // Prometheus 2.42, the oracle here: keep the series whose value has one (idx 5) out.
        (
            r#"{__name__=~"temp.*|requests_total",path=~".*",idx!="5"}"#,
            om_start,
            om_end,
        ),
        (r#"{path=~".+",idx!="5"}"#, om_start, om_end),
        (r#"{__name__="temperature",room=""}"#, om_start, om_end),
        (r#"{__name__="requests_total",room=""}"#, om_start, om_end),
        (
            r#"{__name__=~".+",path!~"p.*|new\\nline"}"#,
            om_start,
            om_end,
        ),
        // Partial ranges across the 2h block boundaries.
        (
            r#"{__name__="requests_total",idx="3"}"#,
            om_start + 3_000_000,
            om_start + 9_000_000,
        ),
        (
            r#"{__name__="temperature"}"#,
            om_start + 7_200_000,
            om_start + 7_200_000,
        ),
        (r#"{__name__=~".+"}"#, g0, g1),
        (r#"{__name__="up"}"#, g0, g1),
        (r#"{__name__="http_requests_total",code="500"}"#, g0, mid),
        (r#"{__name__=~"container_.*",namespace!=""}"#, mid, g1),
        (r#"{__name__=~"node_cpu.*|up",mode=~"idle|user"}"#, g0, g1),
        (
            r#"{job=~"kube.*",pod!~".*-0"}"#,
            g0 + 1_000_000,
            g1 - 1_000_000,
        ),
        (r#"{__name__=~".+_bucket",le="+Inf"}"#, g0, g1),
        (r#"{__name__="no_such_metric"}"#, g0, g1),
        (r#"{__name__="up",nonexistent=""}"#, g0, g1),
    ];
    let mut nonempty = 0;
    for (sel, min, max) in &cases {
        let got = call_series(&rt, &mut client, series_request(sel, *min, *max))
            .unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert!(got.warnings.is_empty(), "{sel}: {:?}", got.warnings);
        let hints = got.hints.as_ref().expect("response hints");
        let ours = decode(&got.series, *min, *max);
        let theirs = prometheus_samples(prom, sel, *min, *max);
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>(),
            "series of {sel} in [{min}, {max}]"
        );
        for (labels, samples) in &theirs {
            assert_eq!(
                ours.get(labels),
                Some(samples),
                "samples of {labels} for {sel}"
            );
        }
        if !theirs.is_empty() {
            nonempty += 1;
            assert!(
                !hints.queried_blocks.is_empty(),
                "{sel}: queried blocks in hints"
            );
            let stats = hints.query_stats.as_ref().expect("query stats");
            assert!(
                stats.series_touched > 0 && stats.chunks_fetched > 0,
                "{sel}: {stats:?}"
            );
        }
        // The same selector without chunks names exactly the series sent with chunks: those
        // with a chunk overlapping the range (a superset of Prometheus', whose samples must
        // also fall inside it), in the same order, and none with chunks attached.
        let mut req = series_request(sel, *min, *max);
        req.skip_chunks = true;
        let skipped = call_series(&rt, &mut client, req).unwrap().series;
        assert!(
            skipped.iter().all(|s| s.chunks.is_empty()),
            "{sel}: skip_chunks sent chunks"
        );
        let names: Vec<Labels> = skipped.iter().map(labels_of).collect();
        let with_chunks: Vec<Labels> = got.series.iter().map(labels_of).collect();
        assert_eq!(names, with_chunks, "{sel}: skip_chunks names other series");
    }
    assert!(nonempty >= 15, "only {nonempty} selectors matched anything");

    // Regexes match newlines, as in Thanos and Prometheus 3 (anchored, `(?s)`).
    let got = call_series(
        &rt,
        &mut client,
        series_request(r#"{path=~"new.line"}"#, om_start, om_end),
    )
    .unwrap();
    let names: Vec<String> = got
        .series
        .iter()
        .map(|s| labels_of(s).to_string())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].contains("new\\nline"), "{names:?}");

    // Label names and values, with and without a time range, as Prometheus answers them.
    for (start, end) in [(om_start, om_end), (g0, g1), (om_start, g1)] {
        let q = format!(
            "start={}&end={}",
            start as f64 / 1000.0,
            end as f64 / 1000.0
        );
        let theirs = strings(&prometheus_json(prom, &format!("/api/v1/labels?{q}")));
        let ours = rt
            .block_on(client.store().label_names(thanos::LabelNamesRequest {
                start,
                end,
                ..Default::default()
            }))
            .unwrap()
            .into_inner();
        assert_eq!(ours.names, theirs, "label names in [{start}, {end}]");
        for name in ["__name__", "path", "namespace", "le", "missing"] {
            let theirs = strings(&prometheus_json(
                prom,
                &format!("/api/v1/label/{name}/values?{q}"),
            ));
            let ours = rt
                .block_on(client.store().label_values(thanos::LabelValuesRequest {
                    label: name.into(),
                    start,
                    end,
                    ..Default::default()
                }))
                .unwrap()
                .into_inner();
            assert_eq!(ours.values, theirs, "values of {name} in [{start}, {end}]");
        }
    }
    // With matchers.
    for (sel, name) in [
        (r#"{__name__="requests_total"}"#, "path"),
        (r#"{__name__="up"}"#, "job"),
    ] {
        let q = format!(
            "match[]={}&start={}&end={}",
            urlencode(sel),
            om_start / 1000,
            g1 / 1000
        );
        let theirs = strings(&prometheus_json(
            prom,
            &format!("/api/v1/label/{name}/values?{q}"),
        ));
        let ours = rt
            .block_on(client.store().label_values(thanos::LabelValuesRequest {
                label: name.into(),
                start: om_start,
                end: g1,
                matchers: wire_matchers(sel),
                ..Default::default()
            }))
            .unwrap()
            .into_inner();
        assert_eq!(ours.values, theirs, "values of {name} for {sel}");
        let theirs = strings(&prometheus_json(prom, &format!("/api/v1/labels?{q}")));
        let ours = rt
            .block_on(client.store().label_names(thanos::LabelNamesRequest {
                start: om_start,
                end: g1,
                matchers: wire_matchers(sel),
                ..Default::default()
            }))
            .unwrap()
            .into_inner();
        assert_eq!(ours.names, theirs, "names for {sel}");
    }
}

fn bucket_with_mixed_blocks() -> (tempfile::TempDir, PathBuf, (i64, i64)) {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let span = mixed_blocks(&bucket);
    (tmp, bucket, span)
}

#[test]
fn filesystem_bucket_serves_what_prometheus_serves() {
    let (tmp, bucket, span) = bucket_with_mixed_blocks();
    let prom_data = tmp.path().join("prometheus");
    copy_dir(&bucket, &prom_data);
    let prom = PrometheusServer::start(&prom_data);
    let store = StoreProcess::start(&filesystem_yaml(&bucket), &[]);
    assert_same_as_prometheus(&store, &prom, span);
    // Again, warm: the small requests are now answered in place, on the async worker, from
    // memory and the page cache, and Prometheus still agrees.
    let answered = r#"stele_grpc_series_in_place_total{result="answered"}"#;
    let before = store.metric(answered);
    assert_same_as_prometheus(&store, &prom, span);
    assert!(
        store.metric(answered) >= before + 5.0,
        "{}",
        store.metrics_text()
    );
}

/// `stele gen` blocks with external labels (cluster=test, replica=0), plus a copy of each
/// under a new ULID as replica 1: what two Prometheus replicas would upload.
fn replicated_bucket(bucket: &Path) -> Vec<String> {
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    let metas = stele::gen::generate(&profile, bucket, &indicatif::ProgressBar::hidden()).unwrap();
    let mut ids = Vec::new();
    for (i, m) in metas.iter().enumerate() {
        let from = bucket.join(&m.ulid);
        let new_id = ulid::Ulid::from_parts(
            ulid::Ulid::from_string(&m.ulid).unwrap().timestamp_ms(),
            0xabc0 + i as u128,
        )
        .to_string();
        let to = bucket.join(&new_id);
        copy_dir(&from, &to);
        let meta_path = to.join("meta.json");
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        meta["ulid"] = new_id.clone().into();
        meta["thanos"]["labels"]["replica"] = "1".into();
        std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
        ids.push(m.ulid.clone());
        ids.push(new_id);
    }
    ids.sort();
    ids
}

/// Over `stele gen` blocks uploaded by two (identical) replicas: Info lists a label set per
/// replica, each series comes once per replica with the external labels, and block matchers,
/// the index cache, sharding, limits and bad requests behave. Replica merging over replicas
/// that differ is `replicas_that_differ_merge_into_both_replicas_samples`.
#[test]
fn external_labels_replicas_sharding_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let ids = replicated_bucket(&bucket);
    let store = StoreProcess::start(&filesystem_yaml(&bucket), &[]);
    let rt = runtime();
    let mut client = store.client(&rt);

    // Info: one label set per replica, the blocks' span, the features we implement.
    let info = rt.block_on(client.info_raw()).unwrap();
    assert_eq!(info.component_type, "store");
    let sets: Vec<String> = info
        .label_sets
        .iter()
        .map(|s| {
            format!(
                "{:?}",
                s.labels
                    .iter()
                    .map(|l| (&l.name, &l.value))
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    assert_eq!(
        sets,
        vec![
            r#"[("cluster", "test"), ("replica", "0")]"#,
            r#"[("cluster", "test"), ("replica", "1")]"#
        ]
    );
    let si = info.store.unwrap();
    assert!(si.supports_sharding && si.supports_without_replica_labels);
    assert!(si.min_time < si.max_time);
    let (min, max) = (si.min_time, si.max_time);

    let up = |extra: &str| format!(r#"{{__name__="up"{extra}}}"#);
    let both = call_series(&rt, &mut client, series_request(&up(""), min, max)).unwrap();
    let one = call_series(
        &rt,
        &mut client,
        series_request(&up(r#",replica="1""#), min, max),
    )
    .unwrap();
    assert!(!one.series.is_empty());
    assert_eq!(
        both.series.len(),
        2 * one.series.len(),
        "each series once per replica"
    );
    for s in &both.series {
        assert_eq!(
            labels_of(s).get("cluster"),
            Some("test"),
            "external labels merged in"
        );
    }
    let none = call_series(
        &rt,
        &mut client,
        series_request(&up(r#",cluster="other""#), min, max),
    )
    .unwrap();
    assert!(none.series.is_empty() && none.hints.unwrap().queried_blocks.is_empty());

    // Replica merging: `replicas_that_differ_merge_into_both_replicas_samples`.

    // Block matchers in the request hints restrict the blocks read.
    let hints = stele::proto::hintspb::SeriesRequestHints {
        block_matchers: vec![matcher(0, "__block_id", &ids[0])],
        enable_query_stats: true,
    };
    let mut req = series_request(&up(""), min, max);
    req.hints = Some(prost_types::Any {
        type_url: "type.googleapis.com/hintspb.SeriesRequestHints".into(),
        value: prost::Message::encode_to_vec(&hints),
    });
    let got = call_series(&rt, &mut client, req).unwrap();
    let queried: Vec<String> = got
        .hints
        .unwrap()
        .queried_blocks
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(queried, vec![ids[0].clone()]);

    // The index cache: the same request again reads no postings or series from the bucket,
    // and finds its matching series in the expanded-postings cache without planning.
    let first = call_series(&rt, &mut client, series_request(&up(""), min, max)).unwrap();
    let again = call_series(&rt, &mut client, series_request(&up(""), min, max)).unwrap();
    assert_eq!(first.series, again.series);
    let s1 = first.hints.unwrap().query_stats.unwrap();
    let s2 = again.hints.unwrap().query_stats.unwrap();
    assert!(s1.chunks_fetched > 0 && s2.chunks_fetched == s1.chunks_fetched);
    assert_eq!(
        (s2.postings_fetched, s2.series_fetch_count),
        (0, 0),
        "{s2:?}"
    );
    assert_eq!(s2.postings_touched, 0, "no postings lists needed: {s2:?}");
    let (_, body) = http_get(&format!("{}/metrics", store.http)).unwrap();
    let text = String::from_utf8(body).unwrap();
    for kind in ["series", "expanded_postings"] {
        let hits = format!("stele_index_cache_hits_total{{item_type=\"{kind}\"}}");
        assert!(metric_value(&text, &hits) > 0.0, "{hits}");
    }

    // Sharding: the shards partition the series.
    let all = call_series(
        &rt,
        &mut client,
        series_request(r#"{__name__=~".+"}"#, min, max),
    )
    .unwrap();
    let mut union: Vec<Labels> = Vec::new();
    for shard in 0..3 {
        let mut req = series_request(r#"{__name__=~".+"}"#, min, max);
        req.shard_info = Some(thanos::ShardInfo {
            shard_index: shard,
            total_shards: 3,
            by: false,
            labels: vec![],
        });
        let part = call_series(&rt, &mut client, req).unwrap();
        assert!(!part.series.is_empty() && part.series.len() < all.series.len());
        union.extend(part.series.iter().map(labels_of));
    }
    union.sort();
    assert_eq!(union, all.series.iter().map(labels_of).collect::<Vec<_>>());

    // Limit, batching and skip_chunks.
    let mut req = series_request(r#"{__name__=~".+"}"#, min, max);
    req.limit = 5;
    assert_eq!(call_series(&rt, &mut client, req).unwrap().series.len(), 5);
    let mut req = series_request(r#"{__name__=~".+"}"#, min, max);
    req.response_batch_size = 64;
    let batched = call_series(&rt, &mut client, req).unwrap();
    assert_eq!(batched.series, all.series);

    // Bad requests.
    let bad_regex = thanos::SeriesRequest {
        min_time: min,
        max_time: max,
        matchers: vec![matcher(2, "job", "(unclosed")],
        ..Default::default()
    };
    assert_eq!(
        status_code(call_series(&rt, &mut client, bad_regex)),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        status_code(call_series(
            &rt,
            &mut client,
            series_request(&up(""), max, min)
        )),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        status_code(call_series(
            &rt,
            &mut client,
            series_request(&up(""), i64::MIN, i64::MAX)
        )),
        tonic::Code::Ok,
        "an unbounded range is fine"
    );
    drop(store);

    // Limits trigger with ResourceExhausted.
    for flag in [
        "--store.limits.request-series=10",
        "--store.limits.request-samples=1000",
        "--store.grpc.downloaded-bytes-limit=20000",
        "--store.inflight-memory-limit=20000",
    ] {
        let limited = StoreProcess::start(&filesystem_yaml(&bucket), &[flag]);
        let mut client = limited.client(&rt);
        let r = call_series(
            &rt,
            &mut client,
            series_request(r#"{__name__=~".+"}"#, min, max),
        );
        assert_eq!(status_code(r), tonic::Code::ResourceExhausted, "{flag}");
        let small = call_series(
            &rt,
            &mut client,
            series_request(
                r#"{__name__="up",replica="0",instance="10.0.0.1:9100"}"#,
                min,
                max,
            ),
        );
        assert_eq!(
            status_code(small),
            tonic::Code::Ok,
            "{flag}: a small request passes"
        );
    }
}

/// 2026-01-01T00:00:00Z, a 2h block boundary: the replica fixture spans 3 hours from here.
const REPLICAS_START_S: i64 = 1_767_225_600;
/// Scrapes of the replica fixture, every 30 s over 3 hours.
const REPLICA_SCRAPES: i64 = 360;
/// Replica B's restart: the scrapes it missed (115 to 125 minutes in, across the block
/// boundary at 2 h).
const RESTART_GAP: std::ops::Range<i64> = 230..250;

/// OpenMetrics text for one of two Prometheus replicas scraping the same targets, as they
/// differ in life: B scrapes 7.5 s after A (each target `host-N` N seconds into the interval,
/// as Prometheus spreads its targets), misses the scrapes of its restart
/// (`RESTART_GAP`), discovers the target `host-2` ten minutes after A, and alone saw `host-3`
/// (gone after half an hour). `node_temperature_celsius` is exposed with the target's own
/// timestamps, so both replicas hold the same times, and B's reading differs from A's at some
/// of them. No two targets' series are alike (chunks equal across series would be dropped as
/// copies of one another).
fn replica_openmetrics(replica: char) -> String {
    use std::fmt::Write;
    let b = replica == 'B';
    let offset_ms = if b { 7_500 } else { 0 };
    let scraped = |host: usize, k: i64| {
        let seen = match host {
            2 => k >= if b { 320 } else { 300 },
            3 => b && k < 60,
            _ => true,
        };
        seen && !(b && RESTART_GAP.contains(&k))
    };
    let at = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let mut text = String::new();
    text.push_str("# TYPE node_cpu_seconds counter\n");
    for host in 0..4 {
        for (m, mode) in ["idle", "user"].iter().enumerate() {
            for k in (0..REPLICA_SCRAPES).filter(|&k| scraped(host, k)) {
                let ms = (REPLICAS_START_S + k * 30 + host as i64) * 1000 + offset_ms;
                let rate = 1.0 + m as f64 * 0.25 + host as f64 * 0.125;
                let v = (ms - REPLICAS_START_S * 1000) as f64 / 1000.0 * rate;
                writeln!(
                    text,
                    "node_cpu_seconds_total{{job=\"node\",instance=\"host-{host}\",cpu=\"0\",mode=\"{mode}\"}} {v} {}",
                    at(ms)
                )
                .unwrap();
            }
        }
    }
    // The gauges: `up` at the replica's scrape times, the temperature at the target's own.
    let mut gauge = |name: &str, offset_ms: i64, value: &dyn Fn(usize, i64) -> f64| {
        writeln!(text, "# TYPE {name} gauge").unwrap();
        for host in 0..4 {
            for k in (0..REPLICA_SCRAPES).filter(|&k| scraped(host, k)) {
                let ms = (REPLICAS_START_S + k * 30 + host as i64) * 1000 + offset_ms;
                writeln!(
                    text,
                    "{name}{{job=\"node\",instance=\"host-{host}\"}} {} {}",
                    value(host, k),
                    at(ms)
                )
                .unwrap();
            }
        }
    };
    gauge("node_temperature_celsius", 0, &|host, k| {
        let v = 40.0 + host as f64 + (k % 13) as f64 * 0.5;
        if b && k % 10 == 3 {
            v + 0.25
        } else {
            v
        }
    });
    gauge("up", offset_ms, &|_, _| 1.0);
    text.push_str("# EOF\n");
    text
}

/// Replica `replica`'s blocks made by promtool into `dir`; returns their directories.
fn promtool_replica_blocks(dir: &Path, replica: char) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let input = dir.with_extension("om");
    std::fs::write(&input, replica_openmetrics(replica)).unwrap();
    run(Command::new(promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir));
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    blocks.sort();
    blocks
}

/// Copies `block` into `bucket` under `id` with the Thanos section a sidecar of replica
/// `replica` uploads.
fn upload_as_replica(block: &Path, bucket: &Path, id: &str, replica: char) {
    let to = bucket.join(id);
    copy_dir(block, &to);
    let meta_path = to.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["ulid"] = id.into();
    meta["thanos"] = serde_json::json!({
        "labels": {"cluster": "test", "replica": replica.to_string()},
        "downsample": {"resolution": 0},
        "source": "sidecar",
    });
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
}

/// What the store must answer with `without` dropped, from what each replica's Prometheus
/// serves: per label set (the external `cluster` added, `without` removed), the samples of
/// every series that became equal, each kept however many replicas hold it (the querier
/// deduplicates, not the store).
fn merged_answer(replicas: &[&SeriesMap], without: &[&str]) -> SeriesMap {
    let mut merged = SeriesMap::new();
    for replica in replicas {
        for (labels, samples) in *replica {
            let kept = labels
                .iter()
                .filter(|l| !without.contains(&l.name.as_str()))
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .chain([("cluster".to_string(), "test".to_string())]);
            merged
                .entry(Labels::from_pairs(kept))
                .or_default()
                .extend(samples);
        }
    }
    for samples in merged.values_mut() {
        samples.sort();
    }
    merged
}

/// Fails on the first difference between two answers, named in a few lines rather than
/// thousands of samples.
fn assert_same_samples(got: &SeriesMap, expected: &SeriesMap, what: &str) {
    let only = |x: &SeriesMap, y: &SeriesMap| -> Vec<String> {
        x.keys()
            .filter(|l| !y.contains_key(*l))
            .map(|l| l.to_string())
            .collect()
    };
    let few = |names: &[String]| format!("{} series, the first {:?}", names.len(), names.first());
    let (extra, missing) = (only(got, expected), only(expected, got));
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what}: not expected: {}; missing: {}",
        few(&extra),
        few(&missing)
    );
    for (labels, want) in expected {
        let have = &got[labels];
        if have != want {
            let at = have.iter().zip(want).position(|(h, w)| h != w);
            let at = at.unwrap_or(have.len().min(want.len()));
            panic!(
                "{what}: {labels} has {} samples, expected {}; first difference at sample {at}: {:?} against {:?}",
                have.len(),
                want.len(),
                have.get(at),
                want.get(at)
            );
        }
    }
}

/// Replica merging (`without_replica_labels`) over two replicas that differ (scrape phases, a
/// restart gap, targets seen by one only, different values at equal timestamps), each served
/// by its own Prometheus 2.42 as the oracle: every merged series holds exactly both replicas'
/// samples, equal timestamps included; dropping an own label too (`instance`) merges distinct
/// series the same way; a block uploaded twice adds nothing (its identical chunks are
/// dropped); and without merging each replica's series are its Prometheus' exactly.
#[test]
fn replicas_that_differ_merge_into_both_replicas_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let mut ids = Vec::new();
    let mut prom_dirs = Vec::new();
    for (r, replica) in ['A', 'B'].into_iter().enumerate() {
        let blocks =
            promtool_replica_blocks(&tmp.path().join(format!("promtool-{replica}")), replica);
        assert_eq!(blocks.len(), 2, "3 hours make two 2h blocks");
        let prom_dir = tmp.path().join(format!("prometheus-{replica}"));
        for (i, block) in blocks.iter().enumerate() {
            copy_dir(block, &prom_dir.join(block.file_name().unwrap()));
            let id = ulid::Ulid::from_parts(
                (REPLICAS_START_S as u64 + i as u64 * 7200) * 1000,
                0xa000 + r as u128,
            )
            .to_string();
            upload_as_replica(block, &bucket, &id, replica);
            ids.push(id);
        }
        if replica == 'A' {
            // A's first block uploaded a second time (a retried shipper, say), under a new ULID.
            let id = ulid::Ulid::from_parts(REPLICAS_START_S as u64 * 1000, 0xa0ff).to_string();
            upload_as_replica(&blocks[0], &bucket, &id, replica);
            ids.push(id);
        }
        prom_dirs.push(prom_dir);
    }
    let (proms, store) = std::thread::scope(|s| {
        let proms: Vec<_> = prom_dirs
            .iter()
            .map(|dir| {
                s.spawn(move || {
                    PrometheusServer::start_with_config(
                        dir,
                        "global:\n  scrape_interval: 1h\n",
                        &[
                            "--storage.tsdb.min-block-duration=2h",
                            "--storage.tsdb.max-block-duration=2h",
                        ],
                    )
                })
            })
            .collect();
        let store = StoreProcess::start(&filesystem_yaml(&bucket), &[]);
        (
            proms
                .into_iter()
                .map(|p| p.join().unwrap())
                .collect::<Vec<_>>(),
            store,
        )
    });
    let (prom_a, prom_b) = (&proms[0], &proms[1]);
    let rt = runtime();
    let mut client = store.client(&rt);
    let all = r#"{__name__=~".+"}"#;
    let (min, max) = (
        REPLICAS_START_S * 1000,
        (REPLICAS_START_S + REPLICA_SCRAPES * 30) * 1000,
    );
    let a = prometheus_samples(prom_a, all, min, max);
    let b = prometheus_samples(prom_b, all, min, max);

    // The fixture holds the cases the test is about, as Prometheus serves them.
    let cpu = |host: &str| {
        Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("instance", host),
            ("job", "node"),
            ("mode", "idle"),
        ])
    };
    let times = |m: &SeriesMap, l: &Labels| m[l].iter().map(|s| s.0).collect::<Vec<_>>();
    let gap = |t: &i64| {
        let k = (t / 1000 - REPLICAS_START_S) / 30;
        RESTART_GAP.contains(&k)
    };
    assert!(
        times(&a, &cpu("host-0")).iter().any(gap) && !times(&b, &cpu("host-0")).iter().any(gap)
    );
    assert!(
        times(&a, &cpu("host-0"))
            .iter()
            .all(|t| !times(&b, &cpu("host-0")).contains(t)),
        "the replicas scrape at different times"
    );
    assert!(!a.contains_key(&cpu("host-3")) && b.contains_key(&cpu("host-3")));
    assert_ne!(a[&cpu("host-2")][0].0, b[&cpu("host-2")][0].0);
    let temperature = Labels::from_pairs([
        ("__name__", "node_temperature_celsius"),
        ("instance", "host-0"),
        ("job", "node"),
    ]);
    let (ta, tb) = (&a[&temperature], &b[&temperature]);
    assert!(
        ta.iter()
            .any(|(t, v)| tb.iter().any(|(u, w)| t == u && v != w))
            && ta.iter().any(|s| tb.contains(s)),
        "the replicas hold equal timestamps with different and with equal values"
    );

    let mut series = |selector: &str, min: i64, max: i64, without: &[&str]| {
        let mut req = series_request(selector, min, max);
        req.without_replica_labels = without.iter().map(|n| n.to_string()).collect();
        call_series(&rt, &mut client, req).unwrap_or_else(|e| panic!("{selector}: {e}"))
    };

    // Merged: one series per label set, holding both replicas' samples.
    let merged = series(all, min, max, &["replica"]);
    assert!(merged.warnings.is_empty(), "{:?}", merged.warnings);
    let stats = merged.hints.as_ref().unwrap().query_stats.unwrap();
    assert_eq!(stats.blocks_queried, ids.len() as i64, "every block read");
    assert_same_samples(
        &decode_with_overlaps(&merged.series, min, max),
        &merged_answer(&[&a, &b], &[]),
        "replicas merged over the whole span",
    );
    // Over a window across the restart and the block boundary.
    let (wmin, wmax) = (min + 100 * 60_000, min + 130 * 60_000 + 7_500);
    let merged = series(all, wmin, wmax, &["replica"]);
    assert_same_samples(
        &decode_with_overlaps(&merged.series, wmin, wmax),
        &merged_answer(
            &[
                &prometheus_samples(prom_a, all, wmin, wmax),
                &prometheus_samples(prom_b, all, wmin, wmax),
            ],
            &[],
        ),
        &format!("replicas merged in [{wmin}, {wmax}]"),
    );

    // Dropping an own label as well makes the instances' series equal: each label set once
    // (`decode_with_overlaps` checks), with every sample of both replicas and all instances.
    let dropped = series(all, min, max, &["replica", "instance"]);
    let expected = merged_answer(&[&a, &b], &["instance"]);
    assert!(expected.len() < a.len(), "series merged across instances");
    assert_same_samples(
        &decode_with_overlaps(&dropped.series, min, max),
        &expected,
        "replicas and instances merged",
    );

    // Not merged: each replica's series as its Prometheus holds them, the block uploaded twice
    // sending no sample twice (`decode` checks).
    let apart = decode(&series(all, min, max, &[]).series, min, max);
    let mut expected = SeriesMap::new();
    for (replica, served) in [("A", &a), ("B", &b)] {
        for (labels, samples) in served {
            let mut pairs: Vec<(String, String)> = labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            pairs.push(("cluster".into(), "test".into()));
            pairs.push(("replica".into(), replica.into()));
            expected.insert(Labels::from_pairs(pairs), samples.clone());
        }
    }
    assert_same_samples(&apart, &expected, "each replica apart");
}

/// Copies block `id` under a new ULID (same time) with its meta.json rewritten.
fn clone_block(bucket: &Path, id: &str, n: u128) -> String {
    let new_id =
        ulid::Ulid::from_parts(ulid::Ulid::from_string(id).unwrap().timestamp_ms(), n).to_string();
    copy_dir(&bucket.join(id), &bucket.join(&new_id));
    let meta_path = bucket.join(&new_id).join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["ulid"] = new_id.clone().into();
    meta["thanos"]["labels"]["replica"] = format!("clone-{n}").into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    new_id
}

fn queried(r: &SeriesResult) -> Vec<String> {
    let mut ids: Vec<String> = r
        .hints
        .as_ref()
        .unwrap()
        .queried_blocks
        .iter()
        .map(|b| b.id.clone())
        .collect();
    ids.sort();
    ids
}

#[test]
fn bad_blocks_and_deletions_leave_the_rest_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    let metas = stele::gen::generate(&profile, &bucket, &indicatif::ProgressBar::hidden()).unwrap();
    let (a, b) = (metas[0].ulid.clone(), metas[1].ulid.clone());
    // Half-uploaded: no meta.json yet.
    let half = clone_block(&bucket, &a, 1);
    std::fs::remove_file(bucket.join(&half).join("meta.json")).unwrap();
    // Corrupt index: truncated, so its TOC is garbage.
    let broken_index = clone_block(&bucket, &a, 2);
    let index = bucket.join(&broken_index).join("index");
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
    // Corrupt chunks: the index is fine, every chunk fails its CRC.
    let broken_chunks = clone_block(&bucket, &b, 3);
    let seg = bucket.join(&broken_chunks).join("chunks").join("000001");
    let mut bytes = std::fs::read(&seg).unwrap();
    for byte in bytes.iter_mut().skip(8) {
        *byte ^= 0x5a;
    }
    std::fs::write(&seg, bytes).unwrap();

    let store = StoreProcess::start(&filesystem_yaml(&bucket), &["--sync-block-duration=1s"]);
    let rt = runtime();
    let mut client = store.client(&rt);
    let (min, max) = (i64::MIN, i64::MAX);
    let sel = r#"{__name__="up"}"#;
    // Blocks serve as soon as their metas are synced; the broken index is found when its
    // header is built in the background, and from then on that block is left out.
    wait_until("the broken index is found", || {
        store.metric("stele_store_block_load_failures_total") >= 1.0
    });

    // The half-uploaded and unreadable blocks are not served; the corrupt chunks give a
    // warning (partial response) or fail the request (abort); the rest is served.
    let got = call_series(&rt, &mut client, series_request(sel, min, max)).unwrap();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(
        queried(&got),
        want.iter()
            .cloned()
            .chain([broken_chunks.clone()])
            .collect::<Vec<_>>()
            .tap_sort()
    );
    assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
    assert!(
        got.warnings[0].contains(&broken_chunks),
        "{:?}",
        got.warnings
    );
    let served = got.series.len();
    assert!(served > 0);
    let mut abort = series_request(sel, min, max);
    abort.partial_response_strategy = thanos::PartialResponseStrategy::Abort as i32;
    let err = call_series(&rt, &mut client, abort).expect_err("abort fails");
    assert_eq!(err.code(), tonic::Code::Internal, "{err}");
    assert!(!store.data_dir.path().join(&half).exists());

    // Fixing the broken blocks' uploads: the next sync serves them.
    std::fs::remove_dir_all(bucket.join(&broken_chunks)).unwrap();
    std::fs::remove_dir_all(bucket.join(&broken_index)).unwrap();
    wait_until("the removed blocks are dropped", || {
        let r = call_series(&rt, &mut client, series_request(sel, min, max)).unwrap();
        r.warnings.is_empty() && queried(&r) == want
    });
    assert!(
        !store.data_dir.path().join(&broken_chunks).exists(),
        "local state removed"
    );

    // A block deleted between sync and query: a warning (or Unavailable), never a crash.
    std::fs::remove_dir_all(bucket.join(&b).join("chunks")).unwrap();
    let got = call_series(&rt, &mut client, series_request(sel, min, max)).unwrap();
    assert_eq!(got.warnings.len(), 1, "{:?}", got.warnings);
    let mut abort = series_request(sel, min, max);
    abort.partial_response_strategy = thanos::PartialResponseStrategy::Abort as i32;
    let err = call_series(&rt, &mut client, abort).expect_err("abort fails");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");

    // Marked for deletion long ago: dropped at the next sync.
    let mark = format!(
        r#"{{"id":"{a}","deletion_time":{},"version":1}}"#,
        stele::model::time::now_ms() / 1000 - 3 * 86_400
    );
    std::fs::write(bucket.join(&a).join("deletion-mark.json"), mark).unwrap();
    std::fs::remove_dir_all(bucket.join(&b)).unwrap();
    wait_until("every block is gone", || {
        let r = call_series(&rt, &mut client, series_request(sel, min, max)).unwrap();
        r.series.is_empty() && r.warnings.is_empty() && queried(&r).is_empty()
    });
}

#[test]
fn index_headers_open_on_use_close_when_idle_and_reopen_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    let metas = stele::gen::generate(&profile, &bucket, &indicatif::ProgressBar::hidden()).unwrap();
    assert_eq!(metas.len(), 2);
    let yaml = filesystem_yaml(&bucket);
    let rt = runtime();
    let sel = r#"{__name__="up"}"#;
    let first = &metas[0];
    let (min, max) = (first.min_time, first.max_time - 1);
    let headers_open = |store: &StoreProcess| store.metric("stele_store_index_headers_open");
    let built = |store: &StoreProcess| store.metric("stele_store_index_headers_built_total");

    // Headers are built in the background after the sync; none stays open without queries.
    let store = StoreProcess::start(&yaml, &["--store.index-header-lazy-reader-idle-timeout=3s"]);
    wait_until("both headers are built", || built(&store) == 2.0);
    assert_eq!(headers_open(&store), 0.0);
    let mut client = store.client(&rt);
    let got = call_series(&rt, &mut client, series_request(sel, min, max)).unwrap();
    assert_eq!(queried(&got), std::slice::from_ref(&first.ulid));
    let want = decode(&got.series, min, max);
    assert!(!want.is_empty());
    // Counted, not read off the gauge: the index may close again before the scrape.
    assert_eq!(
        store.metric("stele_store_index_header_loads_total"),
        1.0,
        "only the queried block opens"
    );
    wait_until("the idle index closes", || headers_open(&store) == 0.0);
    assert_eq!(store.metric("stele_store_index_header_unloads_total"), 1.0);
    let again = call_series(&rt, &mut client, series_request(sel, min, max)).unwrap();
    assert_eq!(decode(&again.series, min, max), want);
    assert_eq!(built(&store), 2.0, "reopened from the header on disk");
    drop(client);
    let data_dir = store.kill();

    // The open set survives a restart (even a kill): those indexes open before the store
    // reports ready.
    let store = StoreProcess::start_in(&yaml, &[], data_dir);
    let mut client = store.client(&rt);
    call_series(&rt, &mut client, series_request(sel, min, max)).unwrap();
    let snapshot = store.data_dir.path().join("open-blocks.json");
    wait_until("the snapshot lists the open block", || {
        std::fs::read_to_string(&snapshot).is_ok_and(|s| s.contains(&first.ulid))
    });
    drop(client);
    let data_dir = store.kill();
    let store = StoreProcess::start_in(&yaml, &[], data_dir);
    assert_eq!(
        headers_open(&store),
        1.0,
        "the snapshot's block is open once ready"
    );
    assert_eq!(built(&store), 0.0, "headers reused from disk");
    assert_eq!(store.metric("stele_store_index_header_loads_total"), 1.0);

    // A damaged header is rebuilt at the next start.
    let data_dir = store.kill();
    let header = data_dir.path().join(&metas[1].ulid).join("index-header");
    let mut bytes = std::fs::read(&header).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&header, bytes).unwrap();
    let store = StoreProcess::start_in(&yaml, &[], data_dir);
    wait_until("the damaged header is rebuilt", || built(&store) == 1.0);
    let mut client = store.client(&rt);
    let (all_min, all_max) = (i64::MIN, i64::MAX);
    let got = call_series(&rt, &mut client, series_request(sel, all_min, all_max)).unwrap();
    assert!(got.warnings.is_empty(), "{:?}", got.warnings);
    assert_eq!(queried(&got).len(), 2);
}

trait TapSort {
    fn tap_sort(self) -> Self;
}

impl TapSort for Vec<String> {
    fn tap_sort(mut self) -> Self {
        self.sort();
        self
    }
}

#[test]
fn s3_bucket_serves_what_prometheus_serves_and_rides_out_an_outage() {
    let (tmp, dir, span) = bucket_with_mixed_blocks();
    let prom_data = tmp.path().join("prometheus");
    copy_dir(&dir, &prom_data);
    let prom = PrometheusServer::start(&prom_data);
    let mut s3 = S3Server::start();
    let rt = runtime();
    let bucket = s3.store("tenant-a");
    let mut uploaded = 0;
    for block in stele::block::list_blocks(&dir).unwrap() {
        rt.block_on(upload_block(bucket.as_ref(), &block));
        uploaded += 1;
    }
    // The store reaches S3 through a proxy (no latency until the outage below), so the outage
    // can be seen to hit a request in flight.
    let proxy = LatencyProxy::start(s3.endpoint.parse().unwrap(), Duration::ZERO).unwrap();
    let store = StoreProcess::start(
        &s3.objstore_yaml_at(&proxy.addr().to_string(), "tenant-a"),
        &["--sync-block-duration=2s"],
    );
    assert_same_as_prometheus(&store, &prom, span);

    // The HTTP side: ready after the sync, and the store's figures in /metrics.
    let (status, body) = http_get(&format!("{}/-/ready", store.http)).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        http_get(&format!("{}/-/healthy", store.http)).unwrap().0,
        200
    );
    let (status, body) = http_get(&format!("{}/metrics", store.http)).unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(
        metric_value(&text, "stele_store_blocks_loaded"),
        uploaded as f64
    );
    assert!(metric_value(&text, "stele_store_bucket_chunks_fetched_bytes_total") > 0.0);
    assert!(metric_value(&text, "stele_store_index_header_size_bytes") > 0.0);
    assert!(
        text.contains("stele_grpc_server_handling_seconds_bucket{"),
        "{text}"
    );
    // A repeated small request is still not answered in place: its chunks are reads from S3,
    // which an async worker never makes.
    let small = r#"{__name__="requests_total",path="zürich"}"#;
    let om_start = 1_767_225_600_000i64;
    let mut client = store.client(&rt);
    let in_place = |result: &str| {
        store.metric(&format!(
            "stele_grpc_series_in_place_total{{result=\"{result}\"}}"
        ))
    };
    let before = (in_place("answered"), in_place("handed_off"));
    for _ in 0..3 {
        let got = call_series(
            &rt,
            &mut client,
            series_request(small, om_start, om_start + 5 * 3_600_000),
        );
        assert!(!got.unwrap().series.is_empty());
    }
    assert_eq!(in_place("answered"), before.0);
    assert_eq!(in_place("handed_off"), before.1 + 3.0);

    // The S3 server goes away in the middle of a large request and comes back: the request
    // completes with the same answer, every read it lost retried by the bucket client.
    let (g0, g1) = span;
    let sel = r#"{__name__=~".+"}"#;
    let mut client = store.client(&rt);
    let reference = call_series(&rt, &mut client, series_request(sel, g0, g1)).unwrap();
    let reference = decode(&reference.series, g0, g1);
    let grpc = store.grpc.clone();
    // Each bucket read now takes 20 ms, so one is caught in flight.
    proxy.set_latency(Duration::from_millis(20));
    let during = std::thread::spawn(move || {
        let rt = runtime();
        let mut client = store_client(&rt, &grpc);
        call_series(&rt, &mut client, series_request(sel, g0, g1))
    });
    stall_when_in_flight(&proxy);
    assert!(!during.is_finished(), "the request ended before the outage");
    let held = proxy.in_flight();
    s3.stop();
    proxy.set_latency(Duration::ZERO);
    proxy.resume();
    // The held reads fail and are retried against the dead server: new connections, refused.
    let connections = proxy.connections();
    wait_until("the store retries against the dead bucket", || {
        proxy.connections() >= connections + 2
    });
    assert!(!during.is_finished(), "the request ended during the outage");
    s3.start_again();
    let got = during
        .join()
        .unwrap()
        .expect("the request survives the outage");
    assert!(
        got.warnings.is_empty(),
        "{held} reads held at the outage; warnings {:?}",
        got.warnings
    );
    assert_eq!(decode(&got.series, g0, g1), reference);

    // Down for longer than the retries: warnings (or Unavailable), then back to normal.
    s3.stop();
    let down = call_series(&rt, &mut client, series_request(sel, g0, g1));
    match down {
        Ok(r) => assert!(!r.warnings.is_empty(), "missing blocks must be reported"),
        Err(e) => assert_eq!(e.code(), tonic::Code::Unavailable, "{e}"),
    }
    s3.start_again();
    let again = call_series(&rt, &mut client, series_request(sel, g0, g1)).unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(decode(&again.series, g0, g1), reference);
}

#[test]
fn a_foreign_grpc_client_speaks_to_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    let metas = stele::gen::generate(&profile, &bucket, &indicatif::ProgressBar::hidden()).unwrap();
    let store = StoreProcess::start(&filesystem_yaml(&bucket), &[]);
    let address = store.grpc.trim_start_matches("http://").to_string();
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let grpcurl = |proto: &str, data: Option<String>, method: &str| {
        let mut cmd = Command::new(grpcurl());
        // hints.proto lets grpcurl decode the response hints inside their `Any`.
        cmd.args(["-plaintext", "-import-path", proto_dir, "-proto", proto]);
        cmd.args(["-proto", "thanos/hints.proto"]);
        if let Some(d) = data {
            cmd.args(["-d", &d]);
        }
        run(cmd.args([address.as_str(), method]))
    };

    let info: serde_json::Value =
        serde_json::from_str(&grpcurl("thanos/info.proto", None, "thanos.info.Info/Info")).unwrap();
    assert_eq!(
        info["ComponentType"]
            .as_str()
            .or(info["componentType"].as_str()),
        Some("store"),
        "{info}"
    );
    assert_eq!(
        info["labelSets"][0]["labels"][0]["name"], "cluster",
        "{info}"
    );
    assert_eq!(info["store"]["supportsSharding"], true, "{info}");

    let (min, max) = (metas[0].min_time, metas[1].max_time);
    let request = format!(
        r#"{{"min_time":"{min}","max_time":"{max}","matchers":[{{"type":"EQ","name":"__name__","value":"up"}},{{"type":"RE","name":"job","value":"node.*"}}]}}"#
    );
    let out = grpcurl("thanos/rpc.proto", Some(request), "thanos.Store/Series");
    // grpcurl prints one JSON object per frame.
    let frames: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .map(|f| f.unwrap())
        .collect();
    let series: Vec<&serde_json::Value> = frames.iter().filter_map(|f| f.get("series")).collect();
    assert!(!series.is_empty(), "{out}");
    for s in &series {
        let labels = s["labels"].as_array().unwrap();
        assert!(
            labels
                .iter()
                .any(|l| l["name"] == "__name__" && l["value"] == "up"),
            "{s}"
        );
        let chunk = &s["chunks"][0]["raw"];
        assert!(chunk["data"].as_str().is_some_and(|d| !d.is_empty()), "{s}");
        assert!(chunk["hash"].as_str().is_some(), "chunk hash set: {s}");
    }
    let last = frames.last().unwrap();
    assert!(
        last["hints"]["@type"]
            .as_str()
            .unwrap()
            .ends_with("hintspb.SeriesResponseHints"),
        "{last}"
    );
    assert_eq!(
        last["hints"]["queriedBlocks"].as_array().unwrap().len(),
        2,
        "{last}"
    );
}
