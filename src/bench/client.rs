//! The requests of a workload sent to a StoreAPI server (ours or any other) and to a
//! Prometheus' remote read, each read to the end and summed up.

use std::time::{Duration, Instant};

use prost::Message;
use tonic::transport::Channel;

use super::workload::{RequestKind, RequestSpec};
use super::BenchError;
use crate::model::{MatchKind, Matcher};
use crate::prom::{PrometheusClient, PrometheusError};
use crate::proto::hintspb;
use crate::proto::prometheus::{chunk, read_request::ResponseType, ChunkedSeries};
use crate::proto::thanos;
use crate::proto::thanos::store_client::StoreClient;
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

/// Connects with Thanos' message limits (2 GiB; tonic's default is 4 MiB).
pub async fn connect(address: &str) -> Result<StoreClient<Channel>, BenchError> {
    Ok(StoreClient::new(channel(address).await?)
        .max_decoding_message_size(i32::MAX as usize)
        .max_encoding_message_size(i32::MAX as usize))
}

async fn channel(address: &str) -> Result<Channel, BenchError> {
    let failed = |reason: String| BenchError::Connect {
        address: address.to_string(),
        reason,
    };
    Channel::from_shared(with_scheme(address))
        .map_err(|e| failed(e.to_string()))?
        .connect()
        .await
        .map_err(|e| failed(e.to_string()))
}

/// The served span `[min, max]` in ms, from `thanos.info.Info`.
pub async fn served_span(address: &str) -> Result<(i64, i64), BenchError> {
    let failed = |reason: String| BenchError::Connect {
        address: address.to_string(),
        reason,
    };
    let info = thanos::info::info_client::InfoClient::new(channel(address).await?)
        .info(thanos::info::InfoRequest {})
        .await
        .map_err(|e| failed(format!("Info: {}", e.message())))?
        .into_inner();
    let store = info
        .store
        .ok_or_else(|| failed("the server offers no StoreAPI".into()))?;
    if store.min_time > store.max_time {
        return Err(failed("the server serves no data".into()));
    }
    Ok((store.min_time, store.max_time))
}

/// `127.0.0.1:10901` → `http://127.0.0.1:10901`; URLs pass through.
pub fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

fn to_thanos(m: &Matcher) -> thanos::LabelMatcher {
    use thanos::label_matcher::Type;
    let t = match m.kind {
        MatchKind::Equal => Type::Eq,
        MatchKind::NotEqual => Type::Neq,
        MatchKind::Regex => Type::Re,
        MatchKind::NotRegex => Type::Nre,
    };
    thanos::LabelMatcher {
        r#type: t as i32,
        name: m.name.clone(),
        value: m.value.clone(),
    }
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
    client: &mut StoreClient<Channel>,
    spec: &RequestSpec,
    min: i64,
    max: i64,
) -> Result<Outcome, tonic::Status> {
    let matchers: Vec<thanos::LabelMatcher> = spec.matchers.iter().map(to_thanos).collect();
    let started = Instant::now();
    let mut out = Outcome::default();
    match spec.kind {
        RequestKind::Series => {
            let hints = hintspb::SeriesRequestHints {
                block_matchers: Vec::new(),
                enable_query_stats: true,
            };
            let request = thanos::SeriesRequest {
                min_time: min,
                max_time: max,
                matchers,
                skip_chunks: spec.skip_chunks,
                hints: Some(prost_types::Any {
                    type_url: "type.googleapis.com/hintspb.SeriesRequestHints".into(),
                    value: hints.encode_to_vec(),
                }),
                ..Default::default()
            };
            let mut stream = client.series(request).await?.into_inner();
            while let Some(frame) = stream.message().await? {
                use thanos::series_response::Result as Frame;
                match frame.result {
                    Some(Frame::Series(s)) => count_series(&mut out, &s, (min, max)),
                    Some(Frame::Batch(b)) => b
                        .series
                        .iter()
                        .for_each(|s| count_series(&mut out, s, (min, max))),
                    Some(Frame::Hints(any)) => {
                        out.stats = hintspb::SeriesResponseHints::decode(any.value.as_slice())
                            .ok()
                            .and_then(|h| h.query_stats);
                    }
                    Some(Frame::Warning(_)) | None => {}
                }
            }
        }
        RequestKind::LabelNames => {
            let response = client
                .label_names(thanos::LabelNamesRequest {
                    start: min,
                    end: max,
                    matchers,
                    ..Default::default()
                })
                .await?
                .into_inner();
            out.series = response.names.len() as u64;
        }
        RequestKind::LabelValues => {
            let response = client
                .label_values(thanos::LabelValuesRequest {
                    label: spec.label.clone().unwrap_or_default(),
                    start: min,
                    end: max,
                    matchers,
                    ..Default::default()
                })
                .await?
                .into_inner();
            out.series = response.values.len() as u64;
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

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(with_scheme("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(with_scheme("https://h:1"), "https://h:1");
    }
}
