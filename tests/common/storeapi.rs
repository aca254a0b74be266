//! StoreAPI clients for the end-to-end tests: connecting, calling Series, decoding chunks into
//! samples, and Prometheus' JSON API for comparison.

use std::time::{Duration, Instant};

use stele::model::Labels;
use stele::proto::thanos;
use stele::storeapi::client::StoreApiClient;
use stele::tsdb::chunks::XorIter;

use super::{canonical_bits, http_get, PrometheusServer, SeriesMap};

/// Waits until the StoreAPI at `grpc` (`http://host:port`) answers Info.
pub fn wait_info_ready(grpc: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let rt = runtime();
    while Instant::now() < deadline {
        if call_info(&rt, grpc).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the StoreAPI at {grpc} did not become ready");
}

/// `thanos.info.Info/Info` at `grpc`; a failed connection is `Unavailable`.
pub fn call_info(
    rt: &tokio::runtime::Runtime,
    grpc: &str,
) -> Result<thanos::info::InfoResponse, tonic::Status> {
    rt.block_on(async {
        // Bounded, so a wedged server fails the test instead of hanging it.
        let mut client = StoreApiClient::connect(grpc)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        tokio::time::timeout(Duration::from_secs(30), client.info_raw())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("Info took over 30 s"))?
    })
}

/// stele's StoreAPI client, connected to `grpc`.
pub fn store_client(rt: &tokio::runtime::Runtime, grpc: &str) -> StoreApiClient {
    rt.block_on(StoreApiClient::connect(grpc)).unwrap()
}

pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn matcher(kind: i32, name: &str, value: &str) -> thanos::LabelMatcher {
    thanos::LabelMatcher {
        r#type: kind,
        name: name.into(),
        value: value.into(),
    }
}

/// Parses a PromQL-style selector into wire matchers (via stele's own parser).
pub fn wire_matchers(selector: &str) -> Vec<thanos::LabelMatcher> {
    stele::model::parse_selector(selector)
        .unwrap()
        .into_iter()
        .map(|m| {
            let kind = match m.kind {
                stele::model::MatchKind::Equal => 0,
                stele::model::MatchKind::NotEqual => 1,
                stele::model::MatchKind::Regex => 2,
                stele::model::MatchKind::NotRegex => 3,
            };
            matcher(kind, &m.name, &m.value)
        })
        .collect()
}

/// Every frame of a Series call: series (batches flattened), warnings, and the response
/// hints (which must come last).
pub type SeriesResult = stele::storeapi::client::SeriesReply;

pub fn call_series(
    rt: &tokio::runtime::Runtime,
    client: &mut StoreApiClient,
    req: thanos::SeriesRequest,
) -> Result<SeriesResult, tonic::Status> {
    rt.block_on(async { client.series_raw(req).await?.collect().await })
}

pub fn series_request(selector: &str, min: i64, max: i64) -> thanos::SeriesRequest {
    thanos::SeriesRequest {
        min_time: min,
        max_time: max,
        matchers: wire_matchers(selector),
        ..Default::default()
    }
}

pub fn labels_of(s: &thanos::Series) -> Labels {
    Labels::from_pairs(s.labels.iter().map(|l| (l.name.clone(), l.value.clone())))
}

/// Decodes the response into samples in `[min, max]` without stale markers (which
/// Prometheus' query API does not return), checking the StoreAPI's contract: series sorted
/// and each once, each with chunks, sorted by time and with hashes that match. A sample sent
/// twice (a chunk repeated, overlapping chunks of one series) fails. A series whose chunks
/// hold no sample in the range is left out: the StoreAPI sends whole chunks that overlap the
/// range, and Prometheus, the oracle, returns only the samples inside it.
pub fn decode(series: &[thanos::Series], min: i64, max: i64) -> SeriesMap {
    let out = decode_with_overlaps(series, min, max);
    for (labels, samples) in &out {
        if let Some(w) = samples.windows(2).find(|w| w[0].0 == w[1].0) {
            panic!("{labels}: the sample at {} was sent twice", w[0].0);
        }
    }
    out
}

/// [`decode`] for answers where one label set may legitimately hold a timestamp more than
/// once (series made equal by dropping labels): every sample is kept, sorted by time.
pub fn decode_with_overlaps(series: &[thanos::Series], min: i64, max: i64) -> SeriesMap {
    let mut out = SeriesMap::new();
    let mut previous: Option<Labels> = None;
    for s in series {
        let labels = labels_of(s);
        if let Some(p) = &previous {
            assert!(
                p < &labels,
                "series out of order or repeated: {p} then {labels}"
            );
        }
        previous = Some(labels.clone());
        assert!(!s.chunks.is_empty(), "{labels} was sent without chunks");
        let mut samples = Vec::new();
        let mut last_min = i64::MIN;
        for c in &s.chunks {
            assert!(
                c.min_time >= last_min,
                "chunks sorted by min_time in {labels}"
            );
            last_min = c.min_time;
            let raw = c.raw.as_ref().expect("raw chunk");
            assert_eq!(
                raw.hash,
                xxhash_rust::xxh64::xxh64(&raw.data, 0),
                "chunk hash"
            );
            let mut it = XorIter::new(&raw.data).unwrap();
            for (t, v) in it.by_ref() {
                if t >= min && t <= max && v.to_bits() != STALE_NAN {
                    samples.push((t, canonical_bits(v)));
                }
            }
            assert!(it.err().is_none());
        }
        samples.sort();
        if !samples.is_empty() {
            out.insert(labels, samples);
        }
    }
    out
}

pub fn prometheus_json(server: &PrometheusServer, path_and_query: &str) -> serde_json::Value {
    let (status, body) = http_get(&format!("{}{path_and_query}", server.url)).unwrap();
    assert_eq!(
        status,
        200,
        "{path_and_query}: {}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["data"].clone()
}

pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

pub fn status_code(r: Result<SeriesResult, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting until {what}");
}

/// The value of an unlabelled sample in Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}
