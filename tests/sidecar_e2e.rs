//! The sidecar end to end, next to a real Prometheus (Debian's 2.42) with external labels that
//! holds promtool-made blocks and scrapes itself, shipping to a real S3 server (s3s-fs):
//! the bucket ends with exactly Prometheus' blocks, byte for byte, with the Thanos meta;
//! `stele store` on that bucket and the sidecar itself serve what Prometheus serves; crashes
//! and outages end with each block uploaded once; Prometheus going away makes the sidecar
//! unready and Unavailable until it returns.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::slow::stall_when_in_flight;
use common::storeapi::*;
use common::*;
use stele::bench::proxy::LatencyProxy;
use stele::model::Labels;
use stele::proto::thanos;
use stele::storeapi::{SeriesEvent, SeriesQuery, StoreEngine};
use stele::tsdb::meta::BlockMeta;

const OM_START: i64 = 1_767_225_600_000; // the openmetrics fixture: 2026-01-01, 5 hours
const OM_END: i64 = OM_START + 5 * 3_600_000;

fn external_labels() -> Labels {
    Labels::from_pairs([("cluster", "eu-1"), ("replica", "a")])
}

/// Prometheus scraping itself every second, with external labels, cutting only 2h blocks
/// (as Thanos asks of the Prometheus next to a sidecar).
fn prometheus_config(with_external_labels: bool) -> String {
    let mut c = String::from("global:\n  scrape_interval: 1s\n");
    if with_external_labels {
        c.push_str("  external_labels:\n    cluster: eu-1\n    replica: a\n");
    }
    c.push_str("scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['PROM']\n");
    c
}

fn start_prometheus(data: &Path, with_external_labels: bool) -> PrometheusServer {
    // The scrape target is the server itself; its port is known only once it is started, so
    // it scrapes a placeholder that `up` reports as down. Self-scraping is not what is
    // compared: it only keeps the head busy, as in production.
    PrometheusServer::start_with_config(
        data,
        &prometheus_config(with_external_labels).replace("PROM", "127.0.0.1:1"),
        &[
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
        ],
    )
}

/// The promtool-made fixture blocks (three 2h blocks) in a fresh Prometheus data directory.
fn prometheus_data(dir: &Path) -> Vec<String> {
    let (text, _) = openmetrics_fixture();
    let input = dir.join("data.om");
    std::fs::write(&input, text).unwrap();
    let data = dir.join("prometheus");
    run(Command::new(promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data));
    block_ids(&data)
}

fn block_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| ulid::Ulid::from_string(n).is_ok())
        .collect();
    ids.sort();
    ids
}

/// A `stele sidecar` process on loopback ports; killed on drop.
struct SidecarProcess {
    child: Child,
    grpc: String,
    http: String,
}

impl SidecarProcess {
    fn command(
        prom: &PrometheusServer,
        tsdb: &Path,
        objstore_yaml: Option<&str>,
        (grpc_port, http_port): (u16, u16),
    ) -> Command {
        let mut cmd = stele();
        cmd.arg("sidecar")
            .arg(format!("--prometheus.url={}", prom.url))
            .arg(format!("--tsdb.path={}", tsdb.display()))
            .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
            .arg(format!("--http-address=127.0.0.1:{http_port}"))
            .args([
                "--shipper.sync-interval=500ms",
                "--prometheus.get_config_interval=500ms",
            ])
            .args(["--prometheus.ready_timeout=20s"]);
        if let Some(yaml) = objstore_yaml {
            cmd.arg(format!("--objstore.config={yaml}"));
        }
        cmd
    }

    fn start(prom: &PrometheusServer, tsdb: &Path, objstore_yaml: Option<&str>) -> Self {
        let ports = (free_port(), free_port());
        let child = Self::command(prom, tsdb, objstore_yaml, ports)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stele sidecar");
        let p = SidecarProcess {
            child,
            grpc: format!("http://127.0.0.1:{}", ports.0),
            http: format!("http://127.0.0.1:{}", ports.1),
        };
        wait_info_ready(&p.grpc);
        p
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn ready(&self) -> bool {
        http_get(&format!("{}/-/ready", self.http)).is_ok_and(|(s, _)| s == 200)
    }

    fn metrics(&self) -> String {
        let (status, body) = http_get(&format!("{}/metrics", self.http)).unwrap();
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Block ids in the bucket directory that have a meta.json.
fn shipped(s3: &S3Server) -> Vec<String> {
    block_ids(&s3.root())
        .into_iter()
        .filter(|id| s3.root().join(id).join("meta.json").is_file())
        .collect()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    relative_files(dir, "", &mut out);
    out.sort();
    out
}

/// Chunk segments, index and meta.json: what a shipped block consists of.
fn is_block_file(f: &str) -> bool {
    let segment = f
        .strip_prefix("chunks/")
        .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()));
    segment || f == "index" || f == "meta.json"
}

/// The bucket holds exactly `ids`, each complete: chunks and index identical to Prometheus'
/// files, meta.json with the Thanos section.
fn assert_bucket_holds(s3: &S3Server, tsdb: &Path, ids: &[String]) {
    assert_eq!(block_ids(&s3.root()), ids, "blocks in the bucket");
    for id in ids {
        let local = tsdb.join(id);
        let remote = s3.root().join(id);
        // s3s-fs keeps side files next to objects; only the objects count.
        let objects: Vec<String> = files(&remote)
            .into_iter()
            .filter(|f| is_block_file(f))
            .collect();
        let expected: Vec<String> = files(&local)
            .into_iter()
            .filter(|f| is_block_file(f))
            .collect();
        assert_eq!(objects, expected, "objects of block {id}");
        for f in expected.iter().filter(|f| *f != "meta.json") {
            assert!(
                std::fs::read(remote.join(f)).unwrap() == std::fs::read(local.join(f)).unwrap(),
                "{id}/{f} differs from Prometheus' file"
            );
        }
        let meta = BlockMeta::parse(
            "meta.json",
            &std::fs::read(remote.join("meta.json")).unwrap(),
        )
        .unwrap();
        let local_meta = BlockMeta::parse(
            "meta.json",
            &std::fs::read(local.join("meta.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta.ulid, *id);
        assert_eq!(
            (meta.min_time, meta.max_time),
            (local_meta.min_time, local_meta.max_time)
        );
        assert_eq!(meta.stats, local_meta.stats);
        let thanos = meta.thanos.expect("thanos section");
        assert_eq!(thanos.source, "sidecar");
        assert_eq!(thanos.downsample.resolution, 0);
        let labels: BTreeMap<String, String> = external_labels()
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        assert_eq!(thanos.labels, labels);
        let listed: Vec<(String, Option<u64>)> = thanos
            .files
            .iter()
            .map(|f| (f.rel_path.clone(), f.size_bytes))
            .collect();
        let want: Vec<(String, Option<u64>)> = expected
            .iter()
            .map(|f| {
                let size =
                    (f != "meta.json").then(|| std::fs::metadata(local.join(f)).unwrap().len());
                (f.clone(), size)
            })
            .collect();
        assert_eq!(listed, want, "thanos.files of {id}");
    }
}

/// Selectors over the fixture, compared sample for sample with Prometheus.
const SELECTORS: &[(&str, i64, i64)] = &[
    (r#"{__name__="requests_total"}"#, OM_START, OM_END),
    (
        r#"{__name__="requests_total",path="zürich"}"#,
        OM_START,
        OM_END,
    ),
    (
        r#"{__name__=~"requests_total|temperature",idx!="5"}"#,
        OM_START,
        OM_END,
    ),
    (r#"{path=~"z.*|plain"}"#, OM_START, OM_END),
    (r#"{__name__="requests_total",room=""}"#, OM_START, OM_END),
    (
        r#"{__name__="requests_total",idx="3"}"#,
        OM_START + 3_000_000,
        OM_START + 9_000_000,
    ),
    (
        r#"{__name__="temperature"}"#,
        OM_START + 7_200_000,
        OM_START + 7_200_000,
    ),
];

/// Prometheus' samples for a selector, with the external labels a StoreAPI adds.
fn expected(prom: &PrometheusServer, selector: &str, min: i64, max: i64) -> SeriesMap {
    let ext = external_labels();
    prometheus_samples(prom, selector, min, max)
        .into_iter()
        .map(|(l, s)| (l.merge_missing(ext.as_pairs()), s))
        .collect()
}

fn assert_serves_what_prometheus_serves(grpc: &str, prom: &PrometheusServer) {
    let rt = runtime();
    let mut client = store_client(&rt, grpc);
    for &(selector, min, max) in SELECTORS {
        let want = expected(prom, selector, min, max);
        assert!(!want.is_empty(), "{selector}: Prometheus has no data");
        let got = call_series(&rt, &mut client, series_request(selector, min, max))
            .unwrap_or_else(|e| panic!("{selector} at {grpc}: {e}"));
        assert!(got.warnings.is_empty(), "{selector}: {:?}", got.warnings);
        assert_eq!(decode(&got.series, min, max), want, "{selector} at {grpc}");
    }
}

#[test]
fn ships_every_block_once_and_serves_what_prometheus_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = prometheus_data(tmp.path());
    assert_eq!(ids.len(), 3, "the fixture spans three 2h blocks");
    let tsdb = tmp.path().join("prometheus");
    let prom = start_prometheus(&tsdb, true);
    let s3 = S3Server::start();
    let sidecar = SidecarProcess::start(&prom, &tsdb, Some(&s3.objstore_yaml("")));

    wait_until("the sidecar shipped every block", || shipped(&s3) == ids);
    assert_bucket_holds(&s3, &tsdb, &ids);
    // The state file follows each upload (meta.json lands first).
    let state_file = tsdb.join("thanos.shipper.json");
    let read_state = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&state_file).unwrap_or_default()).unwrap_or_default()
    };
    wait_until("the state file lists every block", || {
        read_state()["uploaded"] == serde_json::json!(ids)
    });
    assert_eq!(read_state()["version"], 1);
    let metrics = sidecar.metrics();
    assert_eq!(metric_value(&metrics, "stele_shipper_uploads_total"), 3.0);
    assert_eq!(
        metric_value(&metrics, "stele_shipper_upload_failures_total"),
        0.0
    );
    assert!(
        metric_value(
            &metrics,
            "stele_shipper_last_successful_upload_time_seconds"
        ) > 0.0
    );
    assert_eq!(metric_value(&metrics, "stele_sidecar_prometheus_up"), 1.0);
    assert!(sidecar.ready());

    // The sidecar's own StoreAPI.
    let rt = runtime();
    let info = call_info(&rt, &sidecar.grpc).unwrap();
    assert_eq!(info.component_type, "sidecar");
    let sets: Vec<Labels> = info
        .label_sets
        .iter()
        .map(|s| Labels::from_pairs(s.labels.iter().map(|l| (l.name.clone(), l.value.clone()))))
        .collect();
    assert_eq!(sets, vec![external_labels()]);
    let store_info = info.store.unwrap();
    assert!(store_info.min_time <= OM_START && store_info.min_time > OM_START - 1000);
    assert_eq!(store_info.max_time, i64::MAX);
    assert_serves_what_prometheus_serves(&sidecar.grpc, &prom);

    let mut client = store_client(&rt, &sidecar.grpc);
    // Matchers on external labels are settled by the sidecar.
    let selector = r#"{__name__="temperature",cluster="eu-1"}"#;
    let got = call_series(&rt, &mut client, series_request(selector, OM_START, OM_END)).unwrap();
    assert_eq!(got.series.len(), 1);
    let selector = r#"{__name__="temperature",cluster=~"us.*"}"#;
    let got = call_series(&rt, &mut client, series_request(selector, OM_START, OM_END)).unwrap();
    assert!(got.series.is_empty());
    // Only external labels: Prometheus has nothing to select by.
    let err = call_series(
        &rt,
        &mut client,
        series_request(r#"{cluster="eu-1"}"#, OM_START, OM_END),
    )
    .expect_err("no matchers left");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // Replica labels dropped, label sets only, and the limit.
    let mut req = series_request(r#"{__name__="requests_total"}"#, OM_START, OM_END);
    req.without_replica_labels = vec!["replica".into()];
    req.skip_chunks = true;
    let got = call_series(&rt, &mut client, req.clone()).unwrap();
    let mut want: Vec<Labels> =
        prometheus_samples(&prom, r#"{__name__="requests_total"}"#, OM_START, OM_END)
            .into_keys()
            .map(|l| l.merge_missing([("cluster", "eu-1")]))
            .collect();
    want.sort();
    assert_eq!(got.series.iter().map(labels_of).collect::<Vec<_>>(), want);
    assert!(got.series.iter().all(|s| s.chunks.is_empty()));
    req.limit = 2;
    assert_eq!(call_series(&rt, &mut client, req).unwrap().series.len(), 2);

    // Label APIs: Prometheus' answers plus the external labels.
    let names = rt
        .block_on(client.store().label_names(thanos::LabelNamesRequest {
            start: OM_START,
            end: OM_END,
            matchers: wire_matchers(r#"{__name__="temperature"}"#),
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, vec!["__name__", "cluster", "replica", "room"]);
    let mut label_values = |name: &str| {
        rt.block_on(client.store().label_values(thanos::LabelValuesRequest {
            label: name.into(),
            start: OM_START,
            end: OM_END,
            ..Default::default()
        }))
        .unwrap()
        .into_inner()
        .values
    };
    let values = label_values("idx");
    let theirs = strings(&prometheus_json(
        &prom,
        &format!(
            "/api/v1/label/idx/values?start={}&end={}",
            OM_START / 1000,
            OM_END / 1000
        ),
    ));
    assert_eq!(values, theirs);
    let values = label_values("cluster");
    assert_eq!(values, vec!["eu-1"]);

    // The bucket the sidecar filled, served by the store gateway: the same samples.
    let store_data = tempfile::tempdir().unwrap();
    let (grpc_port, http_port) = (free_port(), free_port());
    let mut store = stele()
        .arg("store")
        .arg(format!("--objstore.config={}", s3.objstore_yaml("")))
        .arg(format!("--data-dir={}", store_data.path().display()))
        .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
        .arg(format!("--http-address=127.0.0.1:{http_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start stele store");
    let store_grpc = format!("http://127.0.0.1:{grpc_port}");
    wait_info_ready(&store_grpc);
    assert_serves_what_prometheus_serves(&store_grpc, &prom);
    let _ = store.kill();
    let _ = store.wait();
}

/// Remote read's SAMPLES replies (older Prometheus) re-encoded into chunks give the same
/// samples as the streamed chunks, through the engine directly.
#[test]
fn samples_fallback_matches_streamed_chunks() {
    use stele::prom::PrometheusClient;
    use stele::proto::prometheus::read_request::ResponseType;
    use stele::sidecar::PrometheusStore;

    let tmp = tempfile::tempdir().unwrap();
    prometheus_data(tmp.path());
    let prom = start_prometheus(&tmp.path().join("prometheus"), true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = |types: Vec<ResponseType>| {
        let client = PrometheusClient::new(&prom.url, Duration::from_secs(10)).unwrap();
        let store = PrometheusStore::new(client, Default::default(), rt.handle().clone())
            .with_response_types(types);
        let state = rt.block_on(store.refresh()).unwrap();
        assert_eq!(state.external_labels, external_labels());
        store
    };
    let streamed = engine(vec![ResponseType::StreamedXorChunks]);
    let samples = engine(vec![ResponseType::Samples]);
    for &(selector, min, max) in SELECTORS {
        let query = SeriesQuery {
            min_time: min,
            max_time: max,
            matchers: stele::model::parse_selector(selector).unwrap(),
            ..Default::default()
        };
        let collect = |store: &PrometheusStore| {
            let mut series = Vec::new();
            store
                .series(&query, &mut |ev| {
                    if let SeriesEvent::Series(s) = ev {
                        series.push(s);
                    }
                    true
                })
                .unwrap();
            series
        };
        let (a, b) = (collect(&streamed), collect(&samples));
        let decoded = |series: &[stele::storeapi::SeriesOut]| -> SeriesMap {
            series
                .iter()
                .map(|s| {
                    let mut samples: Vec<(i64, u64)> = s
                        .chunks
                        .iter()
                        .flat_map(|c| stele::tsdb::chunks::decode_xor(&c.data).unwrap())
                        .filter(|&(t, v)| t >= min && t <= max && v.to_bits() != STALE_NAN)
                        .map(|(t, v)| (t, canonical_bits(v)))
                        .collect();
                    samples.dedup_by_key(|s| s.0);
                    (s.labels.clone(), samples)
                })
                .collect()
        };
        assert!(b.iter().all(|s| s
            .chunks
            .iter()
            .all(|c| { stele::tsdb::chunks::decode_xor(&c.data).unwrap().len() <= 120 })));
        assert_eq!(
            decoded(&a),
            expected(&prom, selector, min, max),
            "{selector}"
        );
        assert_eq!(decoded(&b), decoded(&a), "{selector}: SAMPLES vs streamed");
    }
}

#[test]
fn crashes_and_outages_end_with_each_block_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = prometheus_data(tmp.path());
    let tsdb = tmp.path().join("prometheus");
    let prom = start_prometheus(&tsdb, true);
    let mut s3 = S3Server::start();
    let yaml = s3.objstore_yaml("");

    // A crashed upload left half of block 1's chunks and no index or meta.json.
    let bucket = s3.store("");
    let chunk = std::fs::read(tsdb.join(&ids[1]).join("chunks/000001")).unwrap();
    let rt = runtime();
    rt.block_on(object_store::ObjectStoreExt::put(
        bucket.as_ref(),
        &object_store::path::Path::from(format!("{}/chunks/000001", ids[1])),
        chunk[..chunk.len() / 2].to_vec().into(),
    ))
    .unwrap();

    // The S3 server is down when the sidecar starts: uploads fail, are counted, and are
    // retried; the sidecar stays ready. It reaches S3 through a proxy, so that the kill below
    // is seen to cut an upload off.
    s3.stop();
    let proxy = LatencyProxy::start(s3.endpoint.parse().unwrap(), Duration::ZERO).unwrap();
    let proxied = s3.objstore_yaml_at(&proxy.addr().to_string(), "");
    let mut sidecar = SidecarProcess::start(&prom, &tsdb, Some(&proxied));
    wait_until("an upload fails while S3 is down", || {
        metric_value(&sidecar.metrics(), "stele_shipper_upload_failures_total") >= 1.0
    });
    assert!(
        sidecar.ready(),
        "a bucket outage does not make the sidecar unready"
    );

    // S3 is back, and the sidecar is killed with an upload request held in flight: that
    // upload is cut off wherever it was.
    proxy.set_latency(Duration::from_millis(20));
    s3.start_again();
    stall_when_in_flight(&proxy);
    let before_kill = shipped(&s3);
    assert!(
        before_kill.len() < ids.len(),
        "every block was shipped before the kill"
    );
    sidecar.kill();
    assert!(proxy.in_flight() > 0, "no upload was in flight at the kill");
    proxy.resume();
    drop(proxy);

    let sidecar = SidecarProcess::start(&prom, &tsdb, Some(&yaml));
    wait_until("every block is shipped", || shipped(&s3) == ids);
    assert_bucket_holds(&s3, &tsdb, &ids);
    drop(sidecar);

    // State lost: the bucket says what was shipped; nothing is uploaded again.
    // (The killed sidecar may not have written it since its last upload.)
    let _ = std::fs::remove_file(tsdb.join("thanos.shipper.json"));
    let sidecar = SidecarProcess::start(&prom, &tsdb, Some(&yaml));
    wait_until("the state file is rebuilt", || {
        std::fs::read(tsdb.join("thanos.shipper.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .is_some_and(|s| s["uploaded"] == serde_json::json!(ids))
    });
    assert_eq!(
        metric_value(&sidecar.metrics(), "stele_shipper_uploads_total"),
        0.0
    );
    assert_bucket_holds(&s3, &tsdb, &ids);
}

/// Files larger than a part go up as multipart uploads, part by part, to the real S3 server
/// (which, like S3, refuses parts under 5 MiB but the last).
#[test]
fn multipart_uploads_to_s3() {
    use stele::sidecar::{Shipper, ShipperConfig};

    let tmp = tempfile::tempdir().unwrap();
    // Values with noisy low bits compress badly: about 9 bytes a sample, 7 MB of chunks.
    let mut series: Vec<(Labels, Vec<(i64, f64)>)> = (0..200)
        .map(|i| {
            let labels = Labels::from_pairs([("__name__", "noise"), ("i", &i.to_string())]);
            let samples = (0..4000i64)
                .map(|t| {
                    let x = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
                    (t * 1000, f64::from_bits(0x3ff0_0000_0000_0000 | (x >> 12)))
                })
                .collect();
            (labels, samples)
        })
        .collect();
    let id = ulid::Ulid::new();
    stele::block::write_block(tmp.path(), id, 0, 4_000_000, &mut series, None).unwrap();
    let ids = vec![id.to_string()];
    let part_size = 5 << 20;
    let segment = std::fs::metadata(tmp.path().join(&ids[0]).join("chunks/000001"))
        .unwrap()
        .len();
    assert!(
        segment > part_size as u64,
        "the chunks ({segment} bytes) span several parts"
    );

    let s3 = S3Server::start();
    let shipper = Shipper::new(
        s3.store(""),
        ShipperConfig {
            tsdb_dir: tmp.path().to_path_buf(),
            upload_compacted: false,
            part_size,
        },
    );
    let report = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(shipper.sync(&external_labels()))
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_bucket_holds(&s3, tmp.path(), &ids);
}

#[test]
fn prometheus_down_means_unready_and_unavailable_until_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    prometheus_data(tmp.path());
    let tsdb = tmp.path().join("prometheus");
    let mut prom = start_prometheus(&tsdb, true);
    let sidecar = SidecarProcess::start(&prom, &tsdb, None);
    let rt = runtime();
    let mut client = store_client(&rt, &sidecar.grpc);
    let req = series_request(r#"{__name__="temperature"}"#, OM_START, OM_END);
    assert_eq!(
        call_series(&rt, &mut client, req.clone())
            .unwrap()
            .series
            .len(),
        1
    );

    prom.stop();
    wait_until("the sidecar is not ready", || !sidecar.ready());
    let err = call_series(&rt, &mut client, req.clone()).expect_err("Prometheus is down");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    let info = call_info(&rt, &sidecar.grpc);
    assert!(info.is_err(), "Info while Prometheus is down");
    assert_eq!(
        metric_value(&sidecar.metrics(), "stele_sidecar_prometheus_up"),
        0.0
    );

    prom.start_again();
    wait_until("the sidecar is ready again", || sidecar.ready());
    assert_eq!(call_series(&rt, &mut client, req).unwrap().series.len(), 1);
}

#[test]
fn refuses_to_start_without_external_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let tsdb = tmp.path().join("prometheus");
    std::fs::create_dir(&tsdb).unwrap();
    let prom = start_prometheus(&tsdb, false);
    let s3 = S3Server::start();
    let out = SidecarProcess::command(
        &prom,
        &tsdb,
        Some(&s3.objstore_yaml("")),
        (free_port(), free_port()),
    )
    .output()
    .expect("run stele sidecar");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no external labels"), "{stderr}");
    assert!(block_ids(&s3.root()).is_empty());
}
