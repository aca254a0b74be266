//! Components started by the library, in this process, on port 0: the store gateway as
//! `stele store` runs it (`store::StoreService`), and an in-memory engine behind the same
//! servers (`storeapi::server::Endpoints`), both queried with stele's StoreAPI client.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::storeapi::wait_until;
use common::*;
use stele::bucket::discover::BlockFilters;
use stele::cache::Cache;
use stele::metrics::Metrics;
use stele::model::{parse_selector, Labels};
use stele::server::{Readiness, Shutdown};
use stele::store::{StoreConfig, StoreService, StoreServiceConfig};
use stele::storeapi::client::StoreApiClient;
use stele::storeapi::memory::MemoryStore;
use stele::storeapi::server::{Endpoints, EndpointsConfig};
use stele::storeapi::{Limits, SeriesOut, SeriesQuery};

fn endpoints(component: &'static str) -> EndpointsConfig {
    EndpointsConfig {
        component,
        grpc_address: "127.0.0.1:0".parse().unwrap(),
        http_address: "127.0.0.1:0".parse().unwrap(),
        series_max_concurrency: 4,
    }
}

#[test]
fn a_store_runs_in_process_and_saves_its_state_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    stele::gen::generate(&profile, &bucket, &indicatif::ProgressBar::hidden()).unwrap();
    let data_dir = dir.path().join("data");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shutdown = Shutdown::new();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let config = StoreServiceConfig {
        bucket: stele::objstore::from_yaml(&yaml).unwrap(),
        store: StoreConfig {
            data_dir: data_dir.clone(),
            filters: BlockFilters::default(),
            limits: Limits::default(),
            block_sync_concurrency: 2,
            lazy_index_headers: true,
            index_header_idle_timeout: Duration::from_secs(300),
            inflight_memory_limit: 0,
            inflight_memory_wait: Duration::from_secs(10),
            local_bucket: Some(bucket.clone()),
            postings_cost_model: true,
            chunk_cache_max_age: Duration::ZERO,
            max_bucket_requests: stele::store::DEFAULT_MAX_BUCKET_REQUESTS,
            bucket_requests_per_query: stele::store::DEFAULT_BUCKET_REQUESTS_PER_QUERY,
        },
        index_cache: Arc::new(Cache::new(16 << 20)),
        chunk_cache: None,
        endpoints: endpoints("store"),
        sync_interval: Duration::from_secs(3600),
        index_cache_snapshot: true,
        metrics: Metrics::new(),
    };
    let running = runtime
        .block_on(StoreService::start(config, shutdown.clone()))
        .unwrap();
    let (grpc, http) = (running.grpc_address(), running.http_address());
    assert_ne!(grpc.port(), 0);
    wait_until("the store is ready", || {
        http_get(&format!("http://{http}/-/ready")).is_ok_and(|(s, _)| s == 200)
    });
    let got = runtime.block_on(async {
        let mut client = StoreApiClient::connect(&grpc.to_string()).await.unwrap();
        let q = SeriesQuery {
            min_time: i64::MIN,
            max_time: i64::MAX,
            matchers: parse_selector(r#"{__name__="up"}"#).unwrap(),
            ..Default::default()
        };
        client.series(&q).await.unwrap().collect().await.unwrap()
    });
    assert!(!got.series.is_empty());
    assert!(got.warnings.is_empty());
    let (status, body) = http_get(&format!("http://{http}/metrics")).unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("stele_store_blocks_loaded 2\n"));

    shutdown.trigger();
    runtime.block_on(running.stopped()).unwrap();
    // What the next start reads: the open indexes and the index cache.
    let open: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("open-blocks.json")).unwrap()).unwrap();
    assert_eq!(open["blocks"].as_array().unwrap().len(), 2, "{open}");
    assert!(data_dir.join("index-cache.snapshot").exists());
    assert!(
        std::net::TcpStream::connect(grpc).is_err(),
        "the gRPC server stopped"
    );
}

#[test]
fn any_engine_serves_behind_the_same_servers() {
    let chunk = |t: i64| {
        let mut enc = stele::tsdb::chunks::XorEncoder::new();
        enc.append(t, 1.0);
        let data = enc.into_bytes();
        stele::storeapi::StoredChunk {
            min_time: t,
            max_time: t,
            encoding: stele::tsdb::chunks::ChunkEncoding::Xor,
            hash: xxhash_rust::xxh64::xxh64(&data, 0),
            data: data.into(),
        }
    };
    let series = ["b", "a"].map(|v| SeriesOut {
        labels: Labels::from_pairs([("__name__", "up"), ("job", v)]),
        chunks: vec![chunk(10)],
    });
    let engine = Arc::new(MemoryStore::new(
        Labels::from_pairs([("zone", "z")]),
        series,
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shutdown = Shutdown::new();
    let readiness = Readiness::new();
    readiness.set_ready();
    let got = runtime.block_on(async {
        let servers = Endpoints::start(
            engine,
            &endpoints("memory"),
            &Metrics::new(),
            &readiness,
            &shutdown,
        )
        .await
        .unwrap();
        let mut client = StoreApiClient::connect(&servers.grpc_address().to_string())
            .await
            .unwrap();
        let (_, info) = client.info().await.unwrap();
        let q = SeriesQuery {
            min_time: 0,
            max_time: 100,
            matchers: parse_selector(r#"{__name__="up"}"#).unwrap(),
            ..Default::default()
        };
        let reply = client.series(&q).await.unwrap().collect().await.unwrap();
        shutdown.trigger();
        servers.drained().await.unwrap();
        (info, reply)
    });
    assert_eq!(got.0.label_sets, vec![Labels::from_pairs([("zone", "z")])]);
    let labels: Vec<String> = got
        .1
        .series
        .iter()
        .map(|s| common::storeapi::labels_of(s).to_string())
        .collect();
    assert_eq!(
        labels,
        [
            r#"{__name__="up", job="a", zone="z"}"#,
            r#"{__name__="up", job="b", zone="z"}"#
        ]
    );
}
