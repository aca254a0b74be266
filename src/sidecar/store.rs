//! The StoreAPI over the Prometheus next to the sidecar: Series through remote read (chunks
//! passed through as Prometheus stores them), labels through the HTTP API, external labels
//! added, and Info from what the last heartbeat learned.
//!
//! Queries block (on `Handle::block_on`), like the bucket store's, so `server::grpc` runs them
//! on the blocking pool. A Series response is collected before it is sent: adding external
//! labels and dropping replica labels can change the order of label sets, and the StoreAPI
//! promises sorted series. The request limits bound what is collected.

use std::sync::Arc;

use arc_swap::ArcSwap;

use tokio::runtime::Handle;

use crate::model::{Labels, Matcher};
use crate::prom::remote_read::label_pairs;
use crate::prom::{PrometheusClient, PrometheusError};
use crate::proto::prometheus::{chunk, read_request::ResponseType, ChunkedSeries};
use crate::storeapi::{
    check_range, labels, Component, LabelsQuery, Limits, SeriesEvent, SeriesOut, SeriesQuery,
    SeriesSummary, StoreEngine, StoreError, StoreInfo, StoredChunk,
};
use crate::tsdb::chunks::{ChunkEncoding, XorIter};

/// What the last successful heartbeat learned from Prometheus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusState {
    pub external_labels: Labels,
    /// The oldest sample Prometheus holds, in ms.
    pub min_time: i64,
}

/// Samples a chunk is assumed to hold when its header cannot tell (non-XOR encodings).
const SAMPLES_PER_CHUNK_ESTIMATE: u64 = 120;

pub struct PrometheusStore {
    client: PrometheusClient,
    runtime: Handle,
    /// `Err` holds why the last heartbeat failed; Info and queries fail fast on it.
    /// Published whole, so Info and `/metrics` never wait.
    state: ArcSwap<Result<PrometheusState, String>>,
    limits: Limits,
    /// Remote-read reply types, in order of preference.
    accepted: Vec<ResponseType>,
}

impl From<PrometheusError> for StoreError {
    fn from(e: PrometheusError) -> Self {
        match e {
            PrometheusError::Unavailable { .. } => StoreError::Unavailable(e.to_string()),
            PrometheusError::Rejected(_) => StoreError::InvalidArgument(e.to_string()),
            PrometheusError::BadReply { .. } | PrometheusError::RemoteRead(_) => {
                StoreError::Internal(e.to_string())
            }
        }
    }
}

impl PrometheusStore {
    /// `limits.downloaded_bytes` caps the chunk bytes one Series request collects.
    pub fn new(client: PrometheusClient, limits: Limits, runtime: Handle) -> Self {
        PrometheusStore {
            client,
            runtime,
            state: ArcSwap::from_pointee(Err("Prometheus not contacted yet".into())),
            limits,
            accepted: vec![ResponseType::StreamedXorChunks, ResponseType::Samples],
        }
    }

    /// Asks only for `accepted` reply types (tests use it to exercise the SAMPLES path).
    pub fn with_response_types(mut self, accepted: Vec<ResponseType>) -> Self {
        self.accepted = accepted;
        self
    }

    pub fn client(&self) -> &PrometheusClient {
        &self.client
    }

    /// The heartbeat: reads the external labels and the lowest timestamp; a failure makes
    /// Info and queries fail until the next success.
    pub async fn refresh(&self) -> Result<PrometheusState, PrometheusError> {
        let result: Result<PrometheusState, PrometheusError> = async {
            Ok(PrometheusState {
                external_labels: self.client.external_labels().await?,
                min_time: self.client.lowest_timestamp().await?,
            })
        }
        .await;
        self.state.store(Arc::new(match &result {
            Ok(s) => Ok(s.clone()),
            Err(e) => Err(e.to_string()),
        }));
        result
    }

    /// What the last heartbeat learned, or why it failed.
    pub fn state(&self) -> Result<PrometheusState, StoreError> {
        Result::clone(&self.state.load()).map_err(StoreError::Unavailable)
    }

    /// The external labels, and the request's matchers without those on external labels
    /// (settled here, as Prometheus' series do not carry them); `None` if they exclude this
    /// Prometheus.
    fn split_matchers(
        &self,
        matchers: &[Matcher],
        block_matchers: &[Matcher],
    ) -> Result<Option<(Labels, Vec<Matcher>)>, StoreError> {
        let ext = self.state()?.external_labels;
        if !labels::match_all(&ext, block_matchers) {
            return Ok(None);
        }
        Ok(labels::settle_external(&ext, matchers).map(|rest| (ext, rest)))
    }

    /// Collects the remote-read reply as series with external labels, checking the limits
    /// as it goes.
    fn read(
        &self,
        q: &SeriesQuery,
        ext: &Labels,
        matchers: &[Matcher],
    ) -> Result<Vec<SeriesOut>, StoreError> {
        let limits = self.limits;
        let mut out: Vec<SeriesOut> = Vec::new();
        let (mut samples, mut bytes) = (0u64, 0u64);
        let mut exceeded: Option<StoreError> = None;
        let mut on_series = |s: ChunkedSeries| {
            let series = to_series_out(s, ext);
            samples += series.chunks.iter().map(chunk_samples).sum::<u64>();
            bytes += series
                .chunks
                .iter()
                .map(|c| c.data.len() as u64)
                .sum::<u64>();
            out.push(series);
            exceeded = check_limits(&limits, out.len() as u64, samples, bytes).err();
            exceeded.is_none()
        };
        self.runtime.block_on(self.client.read(
            q.min_time,
            q.max_time,
            matchers,
            &self.accepted,
            &mut on_series,
        ))?;
        match exceeded {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

fn check_limits(limits: &Limits, series: u64, samples: u64, bytes: u64) -> Result<(), StoreError> {
    let over = |what: &str, n: u64, limit: u64| {
        Err(StoreError::ResourceExhausted(format!(
            "exceeded {what} limit: the request reads at least {n} {what}, the limit is {limit}"
        )))
    };
    if limits.series > 0 && series > limits.series {
        return over("series", series, limits.series);
    }
    if limits.samples > 0 && samples > limits.samples {
        return over("samples", samples, limits.samples);
    }
    if limits.downloaded_bytes > 0 && bytes > limits.downloaded_bytes {
        return over("bytes", bytes, limits.downloaded_bytes);
    }
    Ok(())
}

/// Samples in a chunk: XOR chunks say so in their header.
fn chunk_samples(c: &StoredChunk) -> u64 {
    match c.encoding {
        ChunkEncoding::Xor => XorIter::new(&c.data)
            .map(|it| u64::from(it.num_samples()))
            .unwrap_or(0),
        _ => SAMPLES_PER_CHUNK_ESTIMATE,
    }
}

fn to_series_out(s: ChunkedSeries, ext: &Labels) -> SeriesOut {
    let labels = Labels::from_pairs(label_pairs(&s.labels)).merge_missing(ext.as_pairs());
    let chunks = s
        .chunks
        .into_iter()
        .map(|c| StoredChunk {
            min_time: c.min_time_ms,
            max_time: c.max_time_ms,
            encoding: match chunk::Encoding::try_from(c.r#type) {
                Ok(chunk::Encoding::Xor) => ChunkEncoding::Xor,
                Ok(chunk::Encoding::Histogram) => ChunkEncoding::Histogram,
                Ok(chunk::Encoding::FloatHistogram) => ChunkEncoding::FloatHistogram,
                _ => ChunkEncoding::from_u8(c.r#type.clamp(0, 255) as u8),
            },
            hash: xxhash_rust::xxh64::xxh64(&c.data, 0),
            data: c.data,
        })
        .collect();
    SeriesOut { labels, chunks }
}

/// Drops replica labels and other shards' series, sorts by labels and merges series that
/// became equal (or that Prometheus split across frames), chunks sorted by time.
fn finish(mut series: Vec<SeriesOut>, q: &SeriesQuery) -> Vec<SeriesOut> {
    if !q.without_replica_labels.is_empty() {
        for s in &mut series {
            s.labels = labels::without(std::mem::take(&mut s.labels), &q.without_replica_labels);
        }
    }
    if let Some(shard) = &q.shard {
        series.retain(|s| shard.matches(&s.labels));
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    series.dedup_by(|later, kept| {
        let same = later.labels == kept.labels;
        if same {
            kept.chunks.append(&mut later.chunks);
        }
        same
    });
    for s in &mut series {
        s.chunks.sort_by_key(|c| (c.min_time, c.max_time, c.hash));
        s.chunks.dedup_by(|a, b| {
            (a.min_time, a.max_time, a.hash) == (b.min_time, b.max_time, b.hash) && a.data == b.data
        });
    }
    if q.limit > 0 {
        series.truncate(q.limit as usize);
    }
    series
}

fn no_matchers() -> StoreError {
    StoreError::InvalidArgument("no matchers specified (excluding external labels)".into())
}

/// Sorted, deduplicated, without replica labels, truncated to the limit.
fn finish_strings(mut all: Vec<String>, q: &LabelsQuery) -> Vec<String> {
    all.retain(|v| !q.without_replica_labels.contains(v));
    all.sort();
    all.dedup();
    if q.limit > 0 {
        all.truncate(q.limit as usize);
    }
    all
}

impl StoreEngine for PrometheusStore {
    fn component(&self) -> Component {
        Component::Sidecar
    }

    fn info(&self) -> Result<StoreInfo, StoreError> {
        let state = self.state()?;
        Ok(StoreInfo {
            label_sets: vec![state.external_labels.clone()],
            min_time: state.min_time,
            max_time: i64::MAX,
            tsdb_infos: vec![(state.external_labels, state.min_time, i64::MAX)],
        })
    }

    fn series(
        &self,
        q: &SeriesQuery,
        emit: &mut dyn FnMut(SeriesEvent) -> bool,
    ) -> Result<SeriesSummary, StoreError> {
        check_range(q.min_time, q.max_time)?;
        let Some((ext, matchers)) = self.split_matchers(&q.matchers, &q.block_matchers)? else {
            return Ok(SeriesSummary::default());
        };
        if matchers.is_empty() {
            return Err(no_matchers());
        }
        let series = if q.skip_chunks {
            let (sets, warnings) = self
                .runtime
                .block_on(self.client.series(&matchers, q.min_time, q.max_time))?;
            check_limits(&self.limits, sets.len() as u64, 0, 0)?;
            for w in warnings {
                emit(SeriesEvent::Warning(w));
            }
            sets.into_iter()
                .map(|l| SeriesOut {
                    labels: l.merge_missing(ext.as_pairs()),
                    chunks: Vec::new(),
                })
                .collect()
        } else {
            self.read(q, &ext, &matchers)?
        };
        let mut summary = SeriesSummary::default();
        let series = finish(series, q);
        summary.stats.merged_series_count = series.len() as i64;
        summary.stats.merged_chunks_count = series.iter().map(|s| s.chunks.len() as i64).sum();
        for s in series {
            if !emit(SeriesEvent::Series(s)) {
                break;
            }
        }
        Ok(summary)
    }

    fn label_names(&self, q: &LabelsQuery) -> Result<(Vec<String>, Vec<String>), StoreError> {
        check_range(q.min_time, q.max_time)?;
        let Some((ext, matchers)) = self.split_matchers(&q.matchers, &q.block_matchers)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (mut names, warnings) = self
            .runtime
            .block_on(self.client.label_names(&matchers, q.min_time, q.max_time))?;
        // Every series carries the external labels, so a request that found any has them.
        if !names.is_empty() || matchers.is_empty() {
            names.extend(ext.iter().map(|l| l.name.to_string()));
        }
        Ok((finish_strings(names, q), warnings))
    }

    fn label_values(
        &self,
        name: &str,
        q: &LabelsQuery,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        check_range(q.min_time, q.max_time)?;
        if q.without_replica_labels.iter().any(|r| r == name) {
            return Ok((Vec::new(), Vec::new()));
        }
        let Some((ext, matchers)) = self.split_matchers(&q.matchers, &q.block_matchers)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        if let Some(v) = ext.get(name) {
            return Ok((vec![v.to_string()], Vec::new()));
        }
        let (values, warnings) = self.runtime.block_on(
            self.client
                .label_values(name, &matchers, q.min_time, q.max_time),
        )?;
        Ok((finish_strings(values, q), warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn out(pairs: &[(&str, &str)], min_time: i64) -> SeriesOut {
        SeriesOut {
            labels: Labels::from_pairs(pairs.iter().copied()),
            chunks: vec![StoredChunk {
                min_time,
                max_time: min_time + 1,
                encoding: ChunkEncoding::Xor,
                data: Bytes::from_static(b"\x00\x00"),
                hash: min_time as u64,
            }],
        }
    }

    #[test]
    fn finish_sorts_merges_and_limits() {
        // With replica labels gone, r=1 and r=2 become one series; external labels can put a
        // prefix set after a longer one, so the order is restored.
        let q = SeriesQuery {
            without_replica_labels: vec!["r".into()],
            ..Default::default()
        };
        let got = finish(
            vec![
                out(&[("a", "1"), ("c", "x")], 5),
                out(&[("a", "1"), ("b", "2"), ("c", "x"), ("r", "1")], 3),
                out(&[("a", "1"), ("b", "2"), ("c", "x"), ("r", "2")], 1),
            ],
            &q,
        );
        let labels: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(
            labels,
            vec![r#"{a="1", b="2", c="x"}"#, r#"{a="1", c="x"}"#]
        );
        let times: Vec<i64> = got[0].chunks.iter().map(|c| c.min_time).collect();
        assert_eq!(times, vec![1, 3]);

        let q = SeriesQuery {
            limit: 1,
            ..Default::default()
        };
        assert_eq!(
            finish(vec![out(&[("a", "2")], 0), out(&[("a", "1")], 0)], &q).len(),
            1
        );
    }

    #[test]
    fn limits_are_errors() {
        let l = Limits {
            series: 2,
            samples: 100,
            downloaded_bytes: 0,
        };
        assert!(check_limits(&l, 2, 100, 1 << 40).is_ok());
        assert!(matches!(
            check_limits(&l, 3, 0, 0),
            Err(StoreError::ResourceExhausted(_))
        ));
        assert!(check_limits(&l, 1, 101, 0).is_err());
    }
}
