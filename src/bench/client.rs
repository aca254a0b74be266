//! The requests of a workload sent to a StoreAPI server (ours or any other) and to a
//! Prometheus' remote read, each read to the end and summed up.

use std::time::{Duration, Instant};

use super::workload::{RequestKind, RequestSpec};
use super::BenchError;
use crate::prom::{PrometheusClient, PrometheusError};
use crate::proto::hintspb;
use crate::proto::prometheus::{chunk, read_request::ResponseType, ChunkedSeries};
use crate::proto::thanos;
use crate::storeapi::client::{SeriesFrame, StoreApiClient};
use crate::storeapi::{LabelsQuery, SeriesQuery};
use crate::tsdb::chunks::xor::XorIter;

/// What one request returned and how long it took, from sending it to the last frame.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub latency: Duration,
    /// Series, or label names/values for the label requests.
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    pub chunk_bytes: u64,
    /// From the response hints, when the server sends them (Series only).
    pub stats: Option<hintspb::QueryStats>,
}

/// Connects to the StoreAPI at `address`.
pub async fn connect(address: &str) -> Result<StoreApiClient, BenchError> {
    StoreApiClient::connect(address)
        .await
        .map_err(|e| BenchError::Connect {
            address: address.to_string(),
            reason: e.to_string(),
        })
}

/// The served span `[min, max]` in ms, from `thanos.info.Info`.
pub async fn served_span(address: &str) -> Result<(i64, i64), BenchError> {
    let failed = |reason: String| BenchError::Connect {
        address: address.to_string(),
        reason,
    };
    let (_, info) = connect(address)
        .await?
        .info()
        .await
        .map_err(|e| failed(format!("Info: {}", e.message())))?;
    if info.min_time > info.max_time {
        return Err(failed("the server serves no data".into()));
    }
    Ok((info.min_time, info.max_time))
}

/// The number of samples a chunk holds: TSDB chunks (XOR and histograms) start with it as a
/// big-endian u16.
pub fn chunk_samples(data: &[u8]) -> u64 {
    match data {
        [a, b, ..] => u64::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

/// The samples of a chunk spanning `[chunk_min, chunk_max]` that fall in `[min, max]`.
///
/// A StoreAPI server sends whole chunks (the querier trims them), Prometheus' remote read
/// sends them cut to the range: counting only the samples in range makes the two agree.
/// Only chunks crossing a range edge are decoded; non-XOR ones count whole.
pub fn samples_in_range(
    data: &[u8],
    xor: bool,
    (chunk_min, chunk_max): (i64, i64),
    (min, max): (i64, i64),
) -> u64 {
    if !xor || (min <= chunk_min && chunk_max <= max) {
        return chunk_samples(data);
    }
    match XorIter::new(data) {
        Ok(samples) => samples.filter(|(t, _)| (min..=max).contains(t)).count() as u64,
        Err(_) => chunk_samples(data),
    }
}

/// Sends `spec` over `[min, max]` and reads the whole reply.
pub async fn store_request(
    client: &mut StoreApiClient,
    spec: &RequestSpec,
    min: i64,
    max: i64,
) -> Result<Outcome, tonic::Status> {
    let started = Instant::now();
    let mut out = Outcome::default();
    match spec.kind {
        RequestKind::Series => {
            let q = SeriesQuery {
                min_time: min,
                max_time: max,
                matchers: spec.matchers.clone(),
                skip_chunks: spec.skip_chunks,
                partial_response: true,
                ..Default::default()
            };
            let mut stream = client.series(&q).await?;
            while let Some(frame) = stream.next().await {
                match frame? {
                    SeriesFrame::Series(s) => count_series(&mut out, &s, (min, max)),
                    SeriesFrame::Hints(h) => out.stats = h.query_stats,
                    SeriesFrame::Warning(_) => {}
                }
            }
        }
        RequestKind::LabelNames | RequestKind::LabelValues => {
            let q = LabelsQuery {
                min_time: min,
                max_time: max,
                matchers: spec.matchers.clone(),
                partial_response: true,
                ..Default::default()
            };
            let (found, _) = match spec.kind {
                RequestKind::LabelNames => client.label_names(&q).await?,
                _ => {
                    let name = spec.label.as_deref().unwrap_or_default();
                    client.label_values(name, &q).await?
                }
            };
            out.series = found.len() as u64;
        }
    }
    out.latency = started.elapsed();
    Ok(out)
}

fn count_series(out: &mut Outcome, s: &thanos::Series, range: (i64, i64)) {
    out.series += 1;
    for c in &s.chunks {
        if let Some(raw) = &c.raw {
            out.chunks += 1;
            let xor = raw.r#type == thanos::chunk::Encoding::Xor as i32;
            out.samples += samples_in_range(&raw.data, xor, (c.min_time, c.max_time), range);
            out.chunk_bytes += raw.data.len() as u64;
        }
    }
}

/// Sends a Series `spec` to Prometheus' remote read (streamed XOR chunks) and reads it all.
pub async fn remote_read_request(
    client: &PrometheusClient,
    spec: &RequestSpec,
    min: i64,
    max: i64,
) -> Result<Outcome, PrometheusError> {
    let started = Instant::now();
    let mut out = Outcome::default();
    // Prometheus splits a long series over frames: a series counts once.
    let mut last_labels = Vec::new();
    let mut on_series = |series: ChunkedSeries| {
        if series.labels != last_labels {
            out.series += 1;
        }
        for c in &series.chunks {
            out.chunks += 1;
            let xor = c.r#type == chunk::Encoding::Xor as i32;
            let span = (c.min_time_ms, c.max_time_ms);
            out.samples += samples_in_range(&c.data, xor, span, (min, max));
            out.chunk_bytes += c.data.len() as u64;
        }
        last_labels = series.labels;
        true
    };
    let accepted = [ResponseType::StreamedXorChunks];
    client
        .read(min, max, &spec.matchers, &accepted, &mut on_series)
        .await?;
    out.latency = started.elapsed();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_come_from_the_chunk_header() {
        assert_eq!(chunk_samples(&[0x00, 0x78, 0xff]), 120);
        assert_eq!(chunk_samples(&[0x01, 0x00]), 256);
        assert_eq!(chunk_samples(&[7]), 0);
    }

    #[test]
    fn only_samples_in_range_count() {
        let mut enc = crate::tsdb::chunks::XorEncoder::new();
        for t in (0..120).map(|i| i * 15_000) {
            enc.append(t, 1.0);
        }
        let data = enc.into_bytes();
        let span = (0, 119 * 15_000);
        // Inside the range: the header's count, no decoding.
        assert_eq!(samples_in_range(&data, true, span, (-1, i64::MAX)), 120);
        // Crossing an edge: the last sample alone, the first ten (edges inclusive).
        assert_eq!(
            samples_in_range(&data, true, span, (119 * 15_000, i64::MAX)),
            1
        );
        assert_eq!(samples_in_range(&data, true, span, (-5, 9 * 15_000)), 10);
        // Not XOR: counted whole.
        assert_eq!(
            samples_in_range(&data, false, span, (119 * 15_000, i64::MAX)),
            120
        );
    }
}
