//! The bucket store in no-wait mode (`stele::nowait`), as the gRPC server runs a Series request
//! in place on an async worker: it answers only what it can without waiting, exactly as it
//! answers on the blocking pool, and refuses everything else at once, never as a warning.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::storeapi::wait_until;
use common::*;
use stele::bucket::discover::BlockFilters;
use stele::cache::{Cache, ItemKind};
use stele::model::parse_selector;
use stele::store::{BucketStore, StoreConfig};
use stele::storeapi::{Limits, SeriesEvent, SeriesOut, SeriesQuery, StoreEngine, StoreError};

struct Fixture {
    _dirs: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    store: Arc<BucketStore>,
}

/// Two `stele gen` blocks in a FILESYSTEM bucket, served by a store whose indexes close when
/// idle for `idle` (zero: never).
fn fixture(idle: Duration, memory_limit: u64) -> Fixture {
    let dirs = tempfile::tempdir().unwrap();
    let bucket = dirs.path().join("bucket");
    let profile = stele::gen::profile::parse_profile("tiny", "tiny", TINY_PROFILE).unwrap();
    stele::gen::generate(&profile, &bucket, &indicatif::ProgressBar::hidden()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = StoreConfig {
        data_dir: dirs.path().join("data"),
        filters: BlockFilters::default(),
        limits: Limits::default(),
        block_sync_concurrency: 1,
        lazy_index_headers: !idle.is_zero(),
        index_header_idle_timeout: idle,
        inflight_memory_limit: memory_limit,
        inflight_memory_wait: Duration::from_secs(30),
        local_bucket: Some(bucket.clone()),
        postings_cost_model: true,
        chunk_cache_max_age: Duration::ZERO,
        max_bucket_requests: stele::store::DEFAULT_MAX_BUCKET_REQUESTS,
        bucket_requests_per_query: stele::store::DEFAULT_BUCKET_REQUESTS_PER_QUERY,
    };
    let store = Arc::new(BucketStore::new(
        stele::objstore::from_yaml(&filesystem_yaml(&bucket)).unwrap(),
        config,
        Arc::new(Cache::new(64 << 20)),
        None,
        runtime.handle().clone(),
    ));
    runtime.block_on(store.sync()).unwrap();
    Fixture {
        _dirs: dirs,
        runtime,
        store,
    }
}

fn filesystem_yaml(dir: &Path) -> String {
    format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    )
}

fn query(selector: &str) -> SeriesQuery {
    SeriesQuery {
        min_time: i64::MIN,
        max_time: i64::MAX,
        matchers: parse_selector(selector).unwrap(),
        partial_response: true,
        ..Default::default()
    }
}

/// What a request returned: its series, or its error; and whether it was refused.
type Outcome = (Result<Vec<SeriesOut>, String>, bool);

/// The series `store` answers `q` with, or its error; a warning fails the test.
fn collect(store: &BucketStore, q: &SeriesQuery) -> Result<Vec<SeriesOut>, String> {
    let mut series = Vec::new();
    let result = store.series(q, &mut |ev| {
        match ev {
            SeriesEvent::Series(s) => series.push(s),
            SeriesEvent::Warning(w) => panic!("a warning: {w}"),
        }
        true
    });
    result.map(|_| series).map_err(|e| e.to_string())
}

/// Runs `q` on the blocking pool, or in no-wait mode on an async worker, as the server does
/// (settling the attempt as answered unless refused).
fn run(f: &Fixture, q: &SeriesQuery, in_place: bool) -> Outcome {
    let (store, q) = (f.store.clone(), q.clone());
    f.runtime.block_on(async move {
        if in_place {
            let attempt = stele::nowait::enter();
            let got = collect(&store, &q);
            store.settle_in_place(got.is_ok() && !attempt.refused());
            (got, attempt.refused())
        } else {
            let got = tokio::task::spawn_blocking(move || collect(&store, &q));
            (got.await.unwrap(), false)
        }
    })
}

fn refused(outcome: &Outcome) -> bool {
    matches!(outcome, (Err(e), true) if e == &StoreError::WouldWait.to_string())
}

#[test]
fn answers_what_is_in_memory_exactly_as_the_blocking_pool_and_refuses_the_rest() {
    let f = fixture(Duration::ZERO, 0);
    let small = query(r#"{__name__="up"}"#);
    let large = query(r#"{__name__="http_requests_total",code="500"}"#);

    // Cold: the postings are not in memory, so it refuses, without waiting. (The bucket's read
    // counters are no witness here: the index headers are built in the background meanwhile.)
    assert!(refused(&run(&f, &small, true)));
    assert_eq!(f.store.budget.counters.waits.load(Ordering::Relaxed), 0);
    // Once the blocking pool has answered it, the same answer in place.
    let expected = run(&f, &small, false).0.unwrap();
    assert!(
        (1..=16).contains(&expected.len()),
        "a small selector: {} series",
        expected.len()
    );
    let lookups = || f.store.cache.stats(ItemKind::ExpandedPostings).requests;
    let before = lookups();
    let (got, was_refused) = run(&f, &small, true);
    assert!(!was_refused);
    assert_eq!(got.unwrap(), expected);
    assert_eq!(
        lookups(),
        before + 2,
        "one lookup per block, counted once answered"
    );

    // Large, even warm: refused, and answered on the blocking pool.
    let all = run(&f, &large, false).0.unwrap();
    assert!(all.len() > 16);
    let before = lookups();
    assert!(refused(&run(&f, &large, true)));
    assert_eq!(
        lookups(),
        before,
        "a refused attempt's lookups are not counted"
    );

    // No match at all (cached as empty): answered in place, empty.
    let none = query(r#"{__name__="no_such_metric"}"#);
    assert!(run(&f, &none, false).0.unwrap().is_empty());
    let (got, was_refused) = run(&f, &none, true);
    assert!(!was_refused && got.unwrap().is_empty());
}

#[test]
fn refuses_a_closed_index_and_a_full_memory_budget() {
    let f = fixture(Duration::from_millis(1), 0);
    let small = query(r#"{__name__="up"}"#);
    let expected = run(&f, &small, false).0.unwrap();
    // The indexes close once idle: opening one reads the disk.
    wait_until("the idle indexes close", || {
        f.store.maintain_index_headers();
        f.store.blocks().iter().all(|b| !b.index.is_open())
    });
    assert!(refused(&run(&f, &small, true)));
    assert_eq!(run(&f, &small, false).0.unwrap(), expected);

    // A budget held by another request: in place, no wait, a refusal.
    let f = fixture(Duration::ZERO, 1 << 20);
    let expected = run(&f, &small, false).0.unwrap();
    let mut other = f.store.query_ctx();
    other.hold(1 << 20).unwrap();
    assert!(refused(&run(&f, &small, true)));
    assert_eq!(
        f.store.budget.counters.waits.load(Ordering::Relaxed),
        0,
        "refused without waiting"
    );
    drop(other);
    assert_eq!(run(&f, &small, true).0.unwrap(), expected);
}
