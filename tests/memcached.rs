//! The memcached client and the index cache's second level against a real memcached (Debian
//! package `memcached`): multi-get in batches, long keys, hash collisions, item limits, and a
//! server that dies, freezes and comes back.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::storeapi::wait_until;
use common::MemcachedServer;
use stele::cache::config::MemcachedConfig;
use stele::cache::memcached::{MemcachedClient, MemcachedMetrics, OP_GET_MULTI, OP_SET};
use stele::cache::{Cache, CacheKey, CacheOptions, ItemKind, SecondLevel};
use ulid::Ulid;

const TTL: Duration = Duration::from_secs(3600);

fn config(server: &MemcachedServer) -> MemcachedConfig {
    MemcachedConfig {
        addresses: vec![server.address()],
        timeout: Duration::from_millis(300),
        ..Default::default()
    }
}

fn client(config: MemcachedConfig) -> MemcachedClient {
    MemcachedClient::new(config, MemcachedMetrics::default())
}

/// Waits until every queued background set is done.
fn drained(client: &MemcachedClient) {
    wait_until("the memcached set queue drains", || {
        client.metrics().queued() == 0
    });
}

fn series(page: u64) -> CacheKey {
    CacheKey::SeriesPage {
        block: Ulid(7),
        page,
    }
}

/// A key whose text is too long for memcached, so it goes by its hash.
fn long_key(tag: &str) -> CacheKey {
    CacheKey::ExpandedPostings {
        block: Ulid(7),
        matchers: format!("{tag}{}", "x=\"a very long value\",".repeat(20)),
    }
}

/// Memory holds nothing, so every lookup goes to memcached.
fn memcached_only(second: SecondLevel) -> Cache {
    Cache::with_options(CacheOptions::in_memory(0), Some(second))
}

#[test]
fn set_get_and_multi_get_in_batches() {
    let server = MemcachedServer::start();
    let c = client(MemcachedConfig {
        max_get_multi_batch_size: 10,
        ..config(&server)
    });
    // Binary values with CRLFs inside survive.
    let values: Vec<Vec<u8>> = (0..35u8)
        .map(|i| [b"\r\nEND\r\n".as_slice(), &[i; 100]].concat())
        .collect();
    for (i, v) in values.iter().enumerate() {
        c.set(&format!("k{i}"), v, TTL).unwrap();
    }
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = c.get_multi(&refs);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.as_deref(), values.get(i).map(Vec::as_slice), "k{i}");
    }
    // 40 keys in batches of 10: four round trips.
    assert_eq!(c.metrics().operations(OP_GET_MULTI), 4);

    // Without a batch size, all of a server's keys go in one round trip, however many.
    let unbatched = client(config(&server));
    let many: Vec<String> = (0..2000)
        .map(|i| format!("stele1:S:01ARZ3NDEKTSV4RRFFQ69G5FAV:{i:012}"))
        .collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    unbatched.set(many_refs[1234], b"v", TTL).unwrap();
    let got = unbatched.get_multi(&many_refs);
    assert_eq!(got.iter().filter(|g| g.is_some()).count(), 1);
    assert_eq!(got[1234].as_deref(), Some(b"v".as_slice()));
    assert_eq!(unbatched.metrics().operations(OP_GET_MULTI), 1);
    assert_eq!(unbatched.metrics().failures(OP_GET_MULTI, "other"), 0);
}

#[test]
fn the_index_cache_fills_memory_from_memcached_and_keys_are_exact() {
    let server = MemcachedServer::start();
    let writer = memcached_only(SecondLevel::new(client(config(&server)), TTL));
    let big = Bytes::from(
        (0..50_000u32)
            .flat_map(|i| (i * 3).to_be_bytes())
            .collect::<Vec<u8>>(),
    );
    writer.put(series(1), Bytes::from_static(b"series one"));
    writer.put(long_key("a"), Bytes::from_static(b"long a"));
    writer.put(long_key("b"), Bytes::from_static(b"long b"));
    writer.put(
        CacheKey::Postings {
            block: Ulid(7),
            name: "path".into(),
            value: "with space\nand newline".into(),
        },
        big.clone(),
    );
    drained(writer.second_level().unwrap().client());

    // Another store: memory first (empty), then memcached, then memory again.
    let reader = Cache::with_options(
        CacheOptions::in_memory(1 << 20),
        Some(SecondLevel::new(client(config(&server)), TTL)),
    );
    let keys = [
        series(1),
        series(2),
        long_key("a"),
        long_key("b"),
        CacheKey::Postings {
            block: Ulid(7),
            name: "path".into(),
            value: "with space\nand newline".into(),
        },
    ];
    let got = reader.get_many(&keys);
    assert_eq!(got[0].as_deref(), Some(b"series one".as_slice()));
    assert_eq!(got[1], None);
    assert_eq!(got[2].as_deref(), Some(b"long a".as_slice()));
    assert_eq!(got[3].as_deref(), Some(b"long b".as_slice()));
    assert_eq!(got[4].as_ref(), Some(&big));
    let second = reader.second_level().unwrap();
    assert_eq!(second.client().metrics().operations(OP_GET_MULTI), 1);
    assert_eq!(second.stats.hits(ItemKind::Series), 1);
    assert_eq!(second.stats.requests(ItemKind::Series), 2);
    // The hits are in memory now: no second round trip.
    assert_eq!(
        reader.get(&long_key("a")).as_deref(),
        Some(b"long a".as_slice())
    );
    assert_eq!(second.client().metrics().operations(OP_GET_MULTI), 1);
    assert_eq!(reader.stats(ItemKind::ExpandedPostings).hits, 1);
}

#[test]
fn a_hash_collision_is_a_miss_not_a_wrong_answer() {
    let server = MemcachedServer::start();
    // Every long key hashes to the same memcached key.
    let same_hash: stele::cache::remote::KeyHash = |_| [0xab; 32];
    let cache = memcached_only(SecondLevel::with_key_hash(
        client(config(&server)),
        TTL,
        same_hash,
    ));
    cache.put(long_key("a"), Bytes::from_static(b"postings of a"));
    drained(cache.second_level().unwrap().client());
    assert_eq!(
        cache.get(&long_key("a")).as_deref(),
        Some(b"postings of a".as_slice())
    );
    // b's memcached key holds a's item: b misses.
    assert_eq!(cache.get(&long_key("b")), None);
    let stats = &cache.second_level().unwrap().stats;
    assert_eq!(
        stats
            .key_mismatches
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Short keys are not hashed, so they do not collide.
    cache.put(series(1), Bytes::from_static(b"one"));
    cache.put(series(2), Bytes::from_static(b"two"));
    drained(cache.second_level().unwrap().client());
    assert_eq!(cache.get(&series(2)).as_deref(), Some(b"two".as_slice()));
}

#[test]
fn items_over_the_size_limits_are_not_sent_or_are_refused() {
    // memcached's own limit is 1 MiB here; the client's is set above it.
    let server = MemcachedServer::start_with(&["-I", "1m"]);
    let c = client(MemcachedConfig {
        max_item_size: 4 << 20,
        ..config(&server)
    });
    let cache = memcached_only(SecondLevel::new(
        client(MemcachedConfig {
            max_item_size: 1000,
            ..config(&server)
        }),
        TTL,
    ));
    cache.put(series(1), Bytes::from(vec![1u8; 2000]));
    cache.put(series(2), Bytes::from(vec![2u8; 500]));
    let second = cache.second_level().unwrap();
    drained(second.client());
    assert_eq!(
        second.client().metrics().skipped(OP_SET, "max-item-size"),
        1
    );
    assert_eq!(second.client().metrics().operations(OP_SET), 1);
    assert_eq!(cache.get(&series(1)), None);
    assert!(cache.get(&series(2)).is_some());

    // Over memcached's limit: a server error, counted, and the connection still works.
    let err = c.set("huge", &vec![0u8; 2 << 20], TTL).unwrap_err();
    assert_eq!(err.reason(), "server-error", "{err}");
    assert_eq!(c.metrics().failures(OP_SET, "server-error"), 1);
    c.set("small", b"ok", TTL).unwrap();
    assert_eq!(
        c.get_multi(&["small"])[0].as_deref(),
        Some(b"ok".as_slice())
    );
}

#[test]
fn a_dead_or_frozen_server_means_misses_and_the_cache_recovers() {
    let mut server = MemcachedServer::start();
    let cache = memcached_only(SecondLevel::new(client(config(&server)), TTL));
    let second = cache.second_level().unwrap();
    let m = second.client().metrics();
    cache.put(series(1), Bytes::from_static(b"one"));
    drained(second.client());
    assert!(cache.get(&series(1)).is_some());

    // Killed: misses, a network failure counted, then the server is skipped for a while (by
    // a client that skips it for an hour, so the skip is certain however slow the machine).
    server.stop();
    assert_eq!(cache.get_many(&[series(1), series(2)]), vec![None, None]);
    assert_eq!(m.failures(OP_GET_MULTI, "network-error"), 1);
    let skipping = client(MemcachedConfig {
        down_backoff: Duration::from_secs(3600),
        ..config(&server)
    });
    assert_eq!(skipping.get_multi(&["a", "b"]), vec![None, None]);
    assert_eq!(
        skipping.metrics().failures(OP_GET_MULTI, "network-error"),
        1
    );
    assert_eq!(skipping.get_multi(&["a"]), vec![None]);
    assert_eq!(skipping.metrics().skipped(OP_GET_MULTI, "server-down"), 1);
    assert_eq!(
        skipping.metrics().failures(OP_GET_MULTI, "network-error"),
        1
    );
    cache.put(series(3), Bytes::from_static(b"three"));
    drained(second.client());

    // Back (empty): new items are stored and found again.
    server.start_again();
    wait_until("memcached answers again", || {
        cache.put(series(4), Bytes::from_static(b"four"));
        drained(second.client());
        cache.get(&series(4)).is_some()
    });
    assert_eq!(
        cache.get(&series(1)),
        None,
        "a restarted memcached is empty"
    );

    // Frozen: connections hang, so lookups time out (after `timeout`) and miss.
    server.pause();
    let timeouts = m.failures(OP_GET_MULTI, "timeout");
    assert_eq!(cache.get(&series(4)), None);
    assert_eq!(m.failures(OP_GET_MULTI, "timeout"), timeouts + 1);
    server.resume();
    wait_until("memcached answers after the freeze", || {
        cache.get(&series(4)).is_some()
    });
}

#[test]
fn a_pending_set_is_read_back_and_only_the_newest_value_lands() {
    let server = MemcachedServer::start();
    let c = client(MemcachedConfig {
        max_async_concurrency: 4,
        timeout: Duration::from_secs(10),
        ..config(&server)
    });
    // Frozen: the sets cannot land, so both are pending when the get runs.
    server.pause();
    c.set_async("page".into(), Bytes::from_static(b"first"), TTL);
    c.set_async("page".into(), Bytes::from_static(b"second"), TTL);
    assert_eq!(c.metrics().queued(), 1, "one pending set per key");
    // Read back from the pending sets: no round trip to the frozen server.
    assert_eq!(
        c.get_multi(&["page"]),
        vec![Some(Bytes::from_static(b"second"))]
    );
    assert_eq!(c.metrics().operations(OP_GET_MULTI), 0);
    server.resume();
    drained(&c);
    // Memcached holds the newest value, whichever order the setters ran in.
    let fresh = client(config(&server));
    assert_eq!(
        fresh.get_multi(&["page"]),
        vec![Some(Bytes::from_static(b"second"))]
    );
    // Once landed, gets go to memcached again.
    assert_eq!(
        c.get_multi(&["page"]),
        vec![Some(Bytes::from_static(b"second"))]
    );
    assert_eq!(c.metrics().operations(OP_GET_MULTI), 1);
}

#[test]
fn puts_never_wait_when_the_queue_is_full() {
    let server = MemcachedServer::start();
    let cache = memcached_only(SecondLevel::new(
        client(MemcachedConfig {
            max_async_concurrency: 1,
            max_async_buffer_size: 2,
            timeout: Duration::from_secs(5),
            ..config(&server)
        }),
        TTL,
    ));
    let m = cache.second_level().unwrap().client().metrics().clone();
    // Frozen server: the one setter hangs on its first item, two wait, the rest are dropped.
    server.pause();
    for r in 0..10 {
        cache.put(series(r), Bytes::from_static(b"v"));
    }
    assert!(
        m.skipped(OP_SET, "async-buffer-full") >= 7,
        "{}",
        m.skipped(OP_SET, "async-buffer-full")
    );
    server.resume();
    drained(cache.second_level().unwrap().client());
    assert_eq!(
        m.operations(OP_SET) + m.skipped(OP_SET, "async-buffer-full"),
        10
    );
}

#[test]
fn keys_spread_over_servers_and_one_down_costs_only_its_keys() {
    let a = MemcachedServer::start();
    let mut b = MemcachedServer::start();
    let c = client(MemcachedConfig {
        addresses: vec![a.address(), b.address()],
        timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for k in &refs {
        c.set(k, k.as_bytes(), TTL).unwrap();
    }
    let got = c.get_multi(&refs);
    assert!(got
        .iter()
        .zip(&refs)
        .all(|(g, k)| g.as_deref() == Some(k.as_bytes())));
    // One round trip per server.
    assert_eq!(c.metrics().operations(OP_GET_MULTI), 2);

    b.stop();
    let found = c.get_multi(&refs).iter().filter(|g| g.is_some()).count();
    assert!(
        (50..150).contains(&found),
        "{found} of 200 found with one of two servers"
    );
    assert_eq!(c.metrics().failures(OP_GET_MULTI, "network-error"), 1);
}
