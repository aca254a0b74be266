//! The StoreAPI contract: what every component that speaks Thanos' StoreAPI implements —
//! the bucket store (`store/`), the sidecar over a Prometheus (`sidecar/`), the querier's
//! proxy over many endpoints, and an in-memory engine for tests ([`memory`]) — apart from any
//! one implementation, with the pieces all of them share:
//!
//! - [`StoreEngine`] and its types (queries, the streamed series, errors, `Info`);
//! - [`server`]: the gRPC services over any engine (request parsing, status codes, hints,
//!   request metrics, the in-place fast path);
//! - [`client`]: the one StoreAPI client (async, streaming), for the bench, the tests and the
//!   querier;
//! - [`convert`]: proto <-> model conversions, written once;
//! - [`labels`]: external labels settled on matchers, replica labels dropped.
//!
//! ## Why a blocking callback, not an async stream
//!
//! [`StoreEngine::series`] runs on a blocking thread and hands each series to a callback
//! that returns false to stop. The bucket store's query is synchronous code over `ReadAt`
//! (page faults of mapped headers, positional reads, CPU-bound decoding), and its fastest
//! path runs the same code on an async worker in no-wait mode ([`crate::nowait`]): an async
//! stream would cost a boxed future per poll and an await per series on the path where
//! stele is faster than Prometheus, and could not run in place. A callback gives the
//! backpressure a stream would: the server's callback blocks on a bounded channel, so a slow
//! client slows the query instead of growing memory. An engine that is async inside (the
//! sidecar's remote read, the querier's fan-out over many endpoints) drives its futures
//! with `Handle::block_on` from that blocking thread and calls the callback as its merged
//! stream yields; a consumer that wants to pull (the PromQL engine) runs the engine on the
//! blocking pool and reads a bounded channel the callback fills.

pub mod client;
pub mod convert;
pub(crate) mod labels;
pub mod memory;
pub mod server;

use bytes::Bytes;
use thiserror::Error;
use ulid::Ulid;

use crate::model::labels::METRIC_NAME;
use crate::model::{Labels, Matcher};
use crate::tsdb::chunks::ChunkEncoding;

pub use server::StoreApi;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The bucket failed (or a block vanished from it): usually transient.
    #[error("{0}")]
    Unavailable(String),
    /// Stored data is corrupt.
    #[error("{0}")]
    Internal(String),
    /// The engine cannot serve yet (or for now); the reason is the engine's own.
    #[error("not ready: {0}")]
    NotReady(String),
    /// The request would have waited on a thread that may not ([`crate::nowait`]); it runs
    /// again on the blocking pool, so clients never see this.
    #[error("the request would wait")]
    WouldWait,
}

/// Per-request statistics, returned to the querier in the response hints (QueryStats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub blocks_queried: i64,
    pub merged_series_count: i64,
    pub merged_chunks_count: i64,
    pub postings_touched: i64,
    pub postings_touched_size_sum: i64,
    pub postings_to_fetch: i64,
    pub postings_fetched: i64,
    pub postings_fetched_size_sum: i64,
    pub postings_fetch_count: i64,
    /// Matchers the postings cost model applied to series labels instead of postings.
    pub postings_filters: i64,
    /// Series read and then dropped by those filters.
    pub series_filtered: i64,
    pub series_touched: i64,
    pub series_touched_size_sum: i64,
    pub series_fetched: i64,
    pub series_fetched_size_sum: i64,
    pub series_fetch_count: i64,
    pub chunks_touched: i64,
    pub chunks_touched_size_sum: i64,
    pub chunks_fetched: i64,
    pub chunks_fetched_size_sum: i64,
    pub chunks_fetch_count: i64,
    pub data_downloaded_size_sum: i64,
    pub get_all_duration: std::time::Duration,
    pub merge_duration: std::time::Duration,
}

impl QueryStats {
    /// Adds the counts of `o`; durations are the caller's to measure.
    pub fn add(&mut self, o: &QueryStats) {
        self.blocks_queried += o.blocks_queried;
        self.merged_series_count += o.merged_series_count;
        self.merged_chunks_count += o.merged_chunks_count;
        self.postings_touched += o.postings_touched;
        self.postings_touched_size_sum += o.postings_touched_size_sum;
        self.postings_to_fetch += o.postings_to_fetch;
        self.postings_fetched += o.postings_fetched;
        self.postings_fetched_size_sum += o.postings_fetched_size_sum;
        self.postings_fetch_count += o.postings_fetch_count;
        self.postings_filters += o.postings_filters;
        self.series_filtered += o.series_filtered;
        self.series_touched += o.series_touched;
        self.series_touched_size_sum += o.series_touched_size_sum;
        self.series_fetched += o.series_fetched;
        self.series_fetched_size_sum += o.series_fetched_size_sum;
        self.series_fetch_count += o.series_fetch_count;
        self.chunks_touched += o.chunks_touched;
        self.chunks_touched_size_sum += o.chunks_touched_size_sum;
        self.chunks_fetched += o.chunks_fetched;
        self.chunks_fetched_size_sum += o.chunks_fetched_size_sum;
        self.chunks_fetch_count += o.chunks_fetch_count;
        self.data_downloaded_size_sum += o.data_downloaded_size_sum;
    }
}

/// What `Info` advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// The distinct external-label sets of the served blocks, sorted.
    pub label_sets: Vec<Labels>,
    pub min_time: i64,
    pub max_time: i64,
    /// Per external-label set: its time span.
    pub tsdb_infos: Vec<(Labels, i64, i64)>,
}

/// Which component serves the StoreAPI, as `Info` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Store,
    Sidecar,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Store => "store",
            Component::Sidecar => "sidecar",
        }
    }
}

/// An engine behind the StoreAPI: the bucket store here, the sidecar over a Prometheus in
/// `sidecar/`. `server::grpc` adapts any of them to the wire, so request parsing, status
/// codes, hints and request metrics are one piece of code. Queries may block (on the bucket,
/// on Prometheus), so the server runs them on the blocking pool; `info` must be cheap.
pub trait StoreEngine: Send + Sync + 'static {
    fn component(&self) -> Component;

    /// What `Info` advertises; an error while the engine cannot serve.
    fn info(&self) -> Result<StoreInfo, StoreError>;

    /// Streams the series matching `q`, sorted by labels, to `emit` (which returns false to
    /// stop early). Blocking.
    fn series(
        &self,
        q: &SeriesQuery,
        emit: &mut dyn FnMut(SeriesEvent) -> bool,
    ) -> Result<SeriesSummary, StoreError>;

    /// Whether [`Self::series`] honours no-wait mode ([`crate::nowait`]): every wait refused
    /// rather than made, so the server may try a request on an async worker first.
    fn answers_without_waiting(&self) -> bool {
        false
    }

    /// Ends a no-wait attempt on this thread: `answered` when its reply is the one sent,
    /// false when the request runs again on the blocking pool (so what the attempt counted,
    /// cache lookups, is not counted twice).
    fn settle_in_place(&self, _answered: bool) {}

    /// Sorted label names and the warnings. Blocking.
    fn label_names(&self, q: &LabelsQuery) -> Result<(Vec<String>, Vec<String>), StoreError>;

    /// Sorted values of label `name` and the warnings. Blocking.
    fn label_values(
        &self,
        name: &str,
        q: &LabelsQuery,
    ) -> Result<(Vec<String>, Vec<String>), StoreError>;
}

/// Per-request limits; 0 means unlimited. They are checked before the work they guard.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Series a Series request may touch (counted on postings, before reading series).
    pub series: u64,
    /// Samples a request may return, estimated as chunks x 120 before fetching chunks.
    pub samples: u64,
    /// Bytes a request may download from the bucket.
    pub downloaded_bytes: u64,
}

/// Samples a chunk is assumed to hold for the samples limit (Prometheus cuts chunks at 120).
pub const SAMPLES_PER_CHUNK_ESTIMATE: u64 = 120;

impl Limits {
    /// ResourceExhausted once a request has touched more than the series limit.
    pub fn check_series(&self, touched: u64) -> Result<(), StoreError> {
        if self.series > 0 && touched > self.series {
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded series limit: the request touches at least {touched} series, the limit is {}",
                self.series
            )));
        }
        Ok(())
    }

    /// ResourceExhausted once `chunks` chunks may hold more samples than the samples limit.
    pub fn check_samples(&self, chunks: u64) -> Result<(), StoreError> {
        let samples = chunks * SAMPLES_PER_CHUNK_ESTIMATE;
        if self.samples > 0 && samples > self.samples {
            return Err(StoreError::ResourceExhausted(format!(
                "exceeded samples limit: {chunks} chunks hold up to {samples} samples, the limit is {}",
                self.samples
            )));
        }
        Ok(())
    }
}

/// Checks a request's time range (inclusive bounds, ms): InvalidArgument when it ends
/// before it starts.
pub fn check_range(min_time: i64, max_time: i64) -> Result<(), StoreError> {
    if min_time > max_time {
        return Err(StoreError::InvalidArgument(format!(
            "invalid time range: min_time {min_time} is after max_time {max_time}"
        )));
    }
    Ok(())
}

/// A chunk as stored, with its time range and xxhash64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: ChunkEncoding,
    pub data: Bytes,
    pub hash: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SeriesQuery {
    /// Inclusive bounds, in milliseconds.
    pub min_time: i64,
    pub max_time: i64,
    pub matchers: Vec<Matcher>,
    pub skip_chunks: bool,
    /// Labels removed from every series (replica labels; the querier deduplicates).
    pub without_replica_labels: Vec<String>,
    /// Series to return at most; 0 means all.
    pub limit: u64,
    pub shard: Option<ShardSpec>,
    /// Request hints: only blocks whose labels (external + `__block_id`) match.
    pub block_matchers: Vec<Matcher>,
    /// Whether a failing block becomes a warning (true) or fails the request.
    pub partial_response: bool,
}

/// Hash-mod sharding of series, as the Thanos querier asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec {
    pub shard_index: u64,
    pub total_shards: u64,
    /// Hash only `labels` (true) or all labels but `labels` and the metric name (false).
    pub by: bool,
    pub labels: Vec<String>,
}

impl ShardSpec {
    /// Prometheus' `HashForLabels` / `HashWithoutLabels`: xxhash64 of `name 0xff value 0xff`
    /// over the chosen labels, so stele shards exactly like a Thanos store.
    pub fn matches(&self, labels: &Labels) -> bool {
        if self.total_shards <= 1 {
            return true;
        }
        let mut buf = Vec::with_capacity(256);
        for l in labels.iter() {
            let listed = self.labels.iter().any(|n| *n == l.name);
            let take = if self.by {
                listed
            } else {
                !listed && l.name != METRIC_NAME
            };
            if take {
                buf.extend_from_slice(l.name.as_bytes());
                buf.push(0xff);
                buf.extend_from_slice(l.value.as_bytes());
                buf.push(0xff);
            }
        }
        xxhash_rust::xxh64::xxh64(&buf, 0) % self.total_shards == self.shard_index
    }
}

/// One series of the response.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesOut {
    pub labels: Labels,
    /// Sorted by min time; empty with `skip_chunks`.
    pub chunks: Vec<StoredChunk>,
}

#[derive(Debug)]
pub enum SeriesEvent {
    Series(SeriesOut),
    /// A block could not be read and the request allows partial responses.
    Warning(String),
}

#[derive(Debug, Default)]
pub struct SeriesSummary {
    pub queried_blocks: Vec<Ulid>,
    pub stats: QueryStats,
}

/// LabelNames / LabelValues.
#[derive(Debug, Clone, Default)]
pub struct LabelsQuery {
    pub min_time: i64,
    pub max_time: i64,
    pub matchers: Vec<Matcher>,
    pub without_replica_labels: Vec<String>,
    pub limit: u64,
    pub block_matchers: Vec<Matcher>,
    pub partial_response: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharding_matches_prometheus_hashing() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a"), ("instance", "x")]);
        // Every series lands in exactly one shard.
        for total in 1..6u64 {
            let hits = (0..total)
                .filter(|&i| {
                    ShardSpec {
                        shard_index: i,
                        total_shards: total,
                        by: false,
                        labels: vec![],
                    }
                    .matches(&labels)
                })
                .count();
            assert_eq!(hits, 1);
        }
        // `by` hashes only the listed labels; `without` ignores the metric name.
        let by_job = |l: &Labels, i| {
            ShardSpec {
                shard_index: i,
                total_shards: 7,
                by: true,
                labels: vec!["job".into()],
            }
            .matches(l)
        };
        let other = Labels::from_pairs([("__name__", "down"), ("job", "a"), ("instance", "y")]);
        for i in 0..7 {
            assert_eq!(by_job(&labels, i), by_job(&other, i));
        }
        // The empty label set hashes to xxhash64's published value for empty input.
        assert_eq!(xxhash_rust::xxh64::xxh64(b"", 0), 0xef46_db37_51d8_e999);
    }

    /// The cases of Thanos' own `TestShardInfo_MatchesSeries` (pkg/store/storepb), taken as
    /// facts: which shard a Thanos store puts this series in, computed by Thanos.
    #[test]
    fn sharding_puts_series_where_thanos_does() {
        let series =
            Labels::from_pairs([("pod", "nginx"), ("node", "node-1"), ("container", "nginx")]);
        let shard = |index, total, by, labels: &[&str]| ShardSpec {
            shard_index: index,
            total_shards: total,
            by,
            labels: labels.iter().map(|l| l.to_string()).collect(),
        };
        for (name, spec, matches) in [
            ("one shard only", shard(0, 1, true, &[]), true),
            ("by empty sharding labels", shard(0, 2, true, &[]), false),
            (
                "without empty sharding labels",
                shard(0, 2, false, &[]),
                true,
            ),
            (
                "by labels, shard 0",
                shard(0, 2, true, &["pod", "node"]),
                false,
            ),
            (
                "by labels, shard 1",
                shard(1, 2, true, &["pod", "node"]),
                true,
            ),
            (
                "without labels, shard 0",
                shard(0, 2, false, &["node"]),
                true,
            ),
            (
                "without labels, shard 1",
                shard(1, 2, false, &["node"]),
                false,
            ),
        ] {
            assert_eq!(spec.matches(&series), matches, "{name}");
        }
    }
}
