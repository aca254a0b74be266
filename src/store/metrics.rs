//! The store's figures in `/metrics`, read from its counters at scrape time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::BucketStore;
use crate::cache::remote::RemoteStats;
use crate::cache::{Cache, ItemKind, KindStats};
use crate::metrics::{const_counter as counter, const_gauge as gauge};
use crate::objstore::FetchCounters;

/// Registers with [`crate::metrics::Metrics::register_collector`].
#[derive(Debug)]
pub struct StoreCollector(pub Arc<BucketStore>);

fn bucket(encoder: &mut DescriptorEncoder, kind: &str, c: &FetchCounters) -> std::fmt::Result {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        encoder,
        &format!("stele_store_bucket_{kind}_requests"),
        &format!("Ranged GET requests to the bucket for {kind}"),
        None,
        load(&c.requests),
    )?;
    counter(
        encoder,
        &format!("stele_store_bucket_{kind}_request_failures"),
        &format!("Failed ranged GET requests to the bucket for {kind}"),
        None,
        load(&c.failures),
    )?;
    counter(
        encoder,
        &format!("stele_store_bucket_{kind}_fetched"),
        &format!("Bytes fetched from the bucket for {kind}"),
        Some(&Unit::Bytes),
        load(&c.bytes),
    )
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.0;
        let c = &s.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let blocks = s.blocks();
        gauge(
            &mut encoder,
            "stele_store_blocks_loaded",
            "Blocks being served",
            None,
            blocks.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "stele_store_index_header_size",
            "Bytes of index headers on local disk (memory-mapped on use)",
            Some(&Unit::Bytes),
            blocks.iter().map(|b| b.index.header_size() as i64).sum(),
        )?;
        gauge(
            &mut encoder,
            "stele_store_index_headers_open",
            "Blocks whose index is open (header mapped); the others open on their next query",
            None,
            blocks.iter().filter(|b| b.index.is_open()).count() as i64,
        )?;
        gauge(
            &mut encoder,
            "stele_store_ready",
            "1 once the first block sync has completed",
            None,
            i64::from(s.is_ready()),
        )?;
        counter(
            &mut encoder,
            "stele_store_syncs",
            "Block syncs run",
            None,
            load(&c.syncs),
        )?;
        counter(
            &mut encoder,
            "stele_store_sync_failures",
            "Block syncs that could not list the bucket",
            None,
            load(&c.sync_failures),
        )?;
        counter(
            &mut encoder,
            "stele_store_block_loads",
            "Blocks opened for serving",
            None,
            load(&c.block_loads),
        )?;
        counter(
            &mut encoder,
            "stele_store_block_load_failures",
            "Blocks that failed to open (corrupt or unreadable; retried at the next sync)",
            None,
            load(&c.block_load_failures),
        )?;
        counter(
            &mut encoder,
            "stele_store_block_drops",
            "Blocks no longer served (deleted, marked or filtered out)",
            None,
            load(&c.block_drops),
        )?;
        counter(
            &mut encoder,
            "stele_store_postings_filters",
            "Matchers the postings cost model applied to series labels instead of postings",
            None,
            load(&c.postings_filters),
        )?;
        counter(
            &mut encoder,
            "stele_store_series_filtered",
            "Series read and then dropped by matchers applied to their labels",
            None,
            load(&c.series_filtered),
        )?;
        let h = &s.headers;
        counter(
            &mut encoder,
            "stele_store_index_headers_built",
            "Index headers built from the bucket (not reused from disk)",
            None,
            load(&h.built),
        )?;
        counter(
            &mut encoder,
            "stele_store_index_header_loads",
            "Block indexes opened (on first use, after a restart, or when lazy loading is off)",
            None,
            load(&h.loads),
        )?;
        counter(
            &mut encoder,
            "stele_store_index_header_load_failures",
            "Block indexes that failed to open",
            None,
            load(&h.load_failures),
        )?;
        counter(
            &mut encoder,
            "stele_store_index_header_unloads",
            "Block indexes closed after being idle",
            None,
            load(&h.unloads),
        )?;
        let seconds = ConstCounter::new(load(&h.load_micros) as f64 / 1e6);
        seconds.encode(encoder.encode_descriptor(
            "stele_store_index_header_load_duration",
            "Time spent opening block indexes, building their headers included",
            Some(&Unit::Seconds),
            seconds.metric_type(),
        )?)?;
        gauge(
            &mut encoder,
            "stele_store_inflight_memory",
            "Bytes held by in-flight requests under --store.inflight-memory-limit",
            Some(&Unit::Bytes),
            s.budget.held() as i64,
        )?;
        gauge(
            &mut encoder,
            "stele_store_inflight_memory_limit",
            "--store.inflight-memory-limit (0: unlimited)",
            Some(&Unit::Bytes),
            s.budget.limit() as i64,
        )?;
        counter(
            &mut encoder,
            "stele_store_inflight_memory_waits",
            "Requests that waited for room under the in-flight memory limit",
            None,
            load(&s.budget.counters.waits),
        )?;
        counter(
            &mut encoder,
            "stele_store_inflight_memory_refusals",
            "Requests refused with ResourceExhausted by the in-flight memory limit",
            None,
            load(&s.budget.counters.refusals),
        )?;
        gauge(
            &mut encoder,
            "stele_store_bucket_requests_in_flight",
            "Ranged GETs to the bucket in flight now",
            None,
            s.gate.in_flight() as i64,
        )?;
        let mut limits = encoder.encode_descriptor(
            "stele_store_bucket_requests_limit",
            "Ranged GETs in flight allowed: for the store (--store.max-bucket-requests, 0: \
             unbounded) and per request (--store.max-bucket-requests-per-query)",
            None,
            MetricType::Gauge,
        )?;
        for (scope, limit) in [
            ("store", s.config().max_bucket_requests),
            ("request", s.config().bucket_requests_per_query),
        ] {
            ConstGauge::new(limit as i64).encode(limits.encode_family(&[("scope", scope)])?)?;
        }
        bucket(&mut encoder, "index", &s.fetched_index)?;
        bucket(&mut encoder, "chunks", &s.fetched_chunks)?;
        cache(&mut encoder, &s.cache, &INDEX_CACHE)?;
        match &s.chunk_cache {
            Some(chunks) => cache(&mut encoder, chunks, &CHUNK_CACHE),
            None => Ok(()),
        }
    }
}

/// Which cache [`cache`] describes, and how its families are named.
struct CacheNames {
    /// `stele_index_cache` or `stele_chunk_cache`.
    prefix: &'static str,
    /// `index cache` or `chunk cache`, for the help texts.
    what: &'static str,
    /// The flag bounding it, for the help text of `_max_size`.
    flag: &'static str,
    kinds: &'static [ItemKind],
}

const INDEX_CACHE: CacheNames = CacheNames {
    prefix: "stele_index_cache",
    what: "index cache",
    flag: "--index-cache-size",
    kinds: &ItemKind::INDEX,
};

const CHUNK_CACHE: CacheNames = CacheNames {
    prefix: "stele_chunk_cache",
    what: "chunk cache",
    flag: "--store.chunk-cache-size",
    kinds: &[ItemKind::Chunks],
};

/// A cache, one family per figure with an `item_type` label per kind.
fn cache(encoder: &mut DescriptorEncoder, cache: &Cache, names: &CacheNames) -> std::fmt::Result {
    let CacheNames {
        prefix,
        what,
        flag,
        kinds,
    } = names;
    gauge(
        encoder,
        &format!("{prefix}_max_size"),
        &format!("Configured bound of the {what} ({flag})"),
        Some(&Unit::Bytes),
        cache.max_bytes() as i64,
    )?;
    type Pick = fn(&KindStats) -> u64;
    let counters: [(&str, String, Pick); 5] = [
        ("requests", format!("Lookups in the {what}"), |k| k.requests),
        ("hits", format!("Lookups in the {what} that hit"), |k| {
            k.hits
        }),
        ("items_added", format!("Items put into the {what}"), |k| {
            k.added
        }),
        (
            "items_evicted",
            "Items evicted to stay within the byte bound".into(),
            |k| k.evicted,
        ),
        ("items_overflowed", "Items too large to cache".into(), |k| {
            k.too_large
        }),
    ];
    for (name, help, pick) in counters {
        let name = format!("{prefix}_{name}");
        let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
        for &kind in *kinds {
            let c = ConstCounter::new(pick(&cache.stats(kind)));
            c.encode(family.encode_family(&[("item_type", kind.name())])?)?;
        }
    }
    let gauges: [(&str, String, Option<&Unit>, Pick); 2] = [
        (
            "size",
            format!("Bytes held by the {what}, with bookkeeping"),
            Some(&Unit::Bytes),
            |k| k.bytes,
        ),
        ("items", format!("Items held by the {what}"), None, |k| {
            k.items
        }),
    ];
    for (name, help, unit, pick) in gauges {
        let name = format!("{prefix}_{name}");
        let mut family = encoder.encode_descriptor(&name, &help, unit, MetricType::Gauge)?;
        for &kind in *kinds {
            let g = ConstGauge::new(pick(&cache.stats(kind)) as i64);
            g.encode(family.encode_family(&[("item_type", kind.name())])?)?;
        }
    }
    match cache.second_level() {
        Some(second) => memcached(encoder, &second.stats, names),
        None => Ok(()),
    }
}

/// The second level's lookups, by item kind, and the items it refused.
fn memcached(
    encoder: &mut DescriptorEncoder,
    stats: &RemoteStats,
    names: &CacheNames,
) -> std::fmt::Result {
    let CacheNames {
        prefix,
        what,
        kinds,
        ..
    } = names;
    type Pick = fn(&RemoteStats, ItemKind) -> u64;
    let families: [(&str, String, Pick); 2] = [
        (
            "memcached_requests",
            format!("Lookups in the {what} that missed memory and went to memcached"),
            |s, k| s.requests(k),
        ),
        (
            "memcached_hits",
            format!("Lookups in the {what} answered by memcached"),
            |s, k| s.hits(k),
        ),
    ];
    for (name, help, pick) in families {
        let name = format!("{prefix}_{name}");
        let mut family = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
        for &kind in *kinds {
            let c = ConstCounter::new(pick(stats, kind));
            c.encode(family.encode_family(&[("item_type", kind.name())])?)?;
        }
    }
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        encoder,
        &format!("{prefix}_memcached_key_mismatches"),
        "memcached items found under a key's hash but written for another key (hash collisions), taken as misses",
        None,
        load(&stats.key_mismatches),
    )?;
    counter(
        encoder,
        &format!("{prefix}_memcached_malformed_items"),
        "memcached items that are not stele's, truncated or do not decompress, taken as misses",
        None,
        load(&stats.malformed),
    )
}
