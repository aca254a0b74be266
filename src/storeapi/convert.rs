//! Conversions between the StoreAPI's wire messages and the model's types, written once for
//! the server, the client and the engines: matchers, labels, series and chunks, hints, query
//! stats, `Info`, and error statuses.

use prost::Message;
use tonic::Status;

use super::{
    Component, LabelsQuery, QueryStats, SeriesOut, SeriesQuery, SeriesSummary, ShardSpec,
    StoreError, StoreInfo,
};
use crate::model::{Labels, Matcher};
use crate::proto::hintspb;
use crate::proto::thanos::{self, info};
use crate::tsdb::chunks::ChunkEncoding;

const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// The gRPC status a client gets for an engine's error.
pub fn status(e: StoreError) -> Status {
    match e {
        StoreError::InvalidArgument(m) => Status::invalid_argument(m),
        StoreError::ResourceExhausted(m) => Status::resource_exhausted(m),
        StoreError::Unavailable(m) => Status::unavailable(m),
        StoreError::Internal(m) => Status::internal(m),
        e @ StoreError::NotReady(_) => Status::unavailable(e.to_string()),
        // Only in place, whose errors never reach a client.
        StoreError::WouldWait => Status::internal(StoreError::WouldWait.to_string()),
    }
}

/// Wire matchers as the model's; an unknown type or a bad regex is InvalidArgument.
pub fn matchers(ms: &[thanos::LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    ms.iter()
        .map(|m| {
            let kind = crate::proto::matcher_kind(m.r#type).ok_or_else(|| {
                Status::invalid_argument(format!("unknown matcher type {}", m.r#type))
            })?;
            Matcher::new(kind, &m.name, &m.value)
                .map_err(|e| Status::invalid_argument(e.to_string()))
        })
        .collect()
}

/// The model's matchers as wire matchers.
pub fn matchers_to_proto(ms: &[Matcher]) -> Vec<thanos::LabelMatcher> {
    ms.iter()
        .map(|m| thanos::LabelMatcher {
            r#type: crate::proto::matcher_type(m.kind),
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

/// Decodes a hints message of type `M` from an `Any`; absent hints are the default.
pub fn hints<M: Message + Default>(
    any: &Option<prost_types::Any>,
    name: &str,
) -> Result<M, Status> {
    match any {
        None => Ok(M::default()),
        Some(a) if a.type_url.ends_with(name) => M::decode(a.value.as_slice())
            .map_err(|e| Status::invalid_argument(format!("invalid {name}: {e}"))),
        Some(a) => Err(Status::invalid_argument(format!(
            "unexpected hints type {}, want {name}",
            a.type_url
        ))),
    }
}

pub(crate) fn any<M: Message>(name: &str, m: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("{TYPE_URL_PREFIX}{name}"),
        value: m.encode_to_vec(),
    }
}

pub(crate) fn partial_response(disabled: bool, strategy: i32) -> bool {
    !disabled && strategy != thanos::PartialResponseStrategy::Abort as i32
}

/// `thanos.Label` is the model's `Label` (see `proto::label`).
pub(crate) fn labels_to_proto(l: &Labels) -> Vec<thanos::Label> {
    l.iter().cloned().collect()
}

/// One series of a Series reply as its wire message.
pub fn series_to_proto(s: SeriesOut) -> thanos::Series {
    thanos::Series {
        // Moved, not copied: the labels go on the wire as resolved.
        labels: s.labels.into_vec(),
        chunks: s
            .chunks
            .into_iter()
            .map(|c| thanos::AggrChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                raw: Some(thanos::Chunk {
                    r#type: chunk_type(c.encoding) as i32,
                    data: c.data,
                    hash: c.hash,
                }),
                ..Default::default()
            })
            .collect(),
    }
}

/// Thanos numbers encodings from 0 (XOR); Prometheus from 1.
pub(crate) fn chunk_type(e: ChunkEncoding) -> thanos::chunk::Encoding {
    match e {
        ChunkEncoding::Histogram => thanos::chunk::Encoding::Histogram,
        ChunkEncoding::FloatHistogram => thanos::chunk::Encoding::FloatHistogram,
        _ => thanos::chunk::Encoding::Xor,
    }
}

pub(crate) fn stats_to_proto(s: &QueryStats) -> hintspb::QueryStats {
    let dur = |d: std::time::Duration| prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    };
    hintspb::QueryStats {
        blocks_queried: s.blocks_queried,
        merged_series_count: s.merged_series_count,
        merged_chunks_count: s.merged_chunks_count,
        postings_touched: s.postings_touched,
        postings_touched_size_sum: s.postings_touched_size_sum,
        postings_to_fetch: s.postings_to_fetch,
        postings_fetched: s.postings_fetched,
        postings_fetched_size_sum: s.postings_fetched_size_sum,
        postings_fetch_count: s.postings_fetch_count,
        series_touched: s.series_touched,
        series_touched_size_sum: s.series_touched_size_sum,
        series_fetched: s.series_fetched,
        series_fetched_size_sum: s.series_fetched_size_sum,
        series_fetch_count: s.series_fetch_count,
        chunks_touched: s.chunks_touched,
        chunks_touched_size_sum: s.chunks_touched_size_sum,
        chunks_fetched: s.chunks_fetched,
        chunks_fetched_size_sum: s.chunks_fetched_size_sum,
        chunks_fetch_count: s.chunks_fetch_count,
        data_downloaded_size_sum: s.data_downloaded_size_sum,
        get_all_duration: Some(dur(s.get_all_duration)),
        merge_duration: Some(dur(s.merge_duration)),
    }
}

pub(crate) fn series_hints(summary: &SeriesSummary) -> prost_types::Any {
    any(
        "hintspb.SeriesResponseHints",
        &hintspb::SeriesResponseHints {
            queried_blocks: summary
                .queried_blocks
                .iter()
                .map(|id| hintspb::Block { id: id.to_string() })
                .collect(),
            query_stats: Some(stats_to_proto(&summary.stats)),
        },
    )
}

pub fn series_query(r: &thanos::SeriesRequest) -> Result<SeriesQuery, Status> {
    let req_hints: hintspb::SeriesRequestHints = hints(&r.hints, "hintspb.SeriesRequestHints")?;
    let shard = r
        .shard_info
        .as_ref()
        .filter(|s| s.total_shards > 1)
        .map(|s| {
            if s.shard_index < 0 || s.shard_index >= s.total_shards {
                return Err(Status::invalid_argument(format!(
                    "shard index {} outside 0..{}",
                    s.shard_index, s.total_shards
                )));
            }
            Ok(ShardSpec {
                shard_index: s.shard_index as u64,
                total_shards: s.total_shards as u64,
                by: s.by,
                labels: s.labels.clone(),
            })
        })
        .transpose()?;
    Ok(SeriesQuery {
        min_time: r.min_time,
        max_time: r.max_time,
        matchers: matchers(&r.matchers)?,
        skip_chunks: r.skip_chunks,
        without_replica_labels: r.without_replica_labels.clone(),
        limit: r.limit.max(0) as u64,
        shard,
        block_matchers: matchers(&req_hints.block_matchers)?,
        partial_response: partial_response(
            r.partial_response_disabled,
            r.partial_response_strategy,
        ),
    })
}

/// The query of a LabelNames or LabelValues request (their fields are the same).
pub(crate) fn labels_query(
    (start, end): (i64, i64),
    label_matchers: &[thanos::LabelMatcher],
    without_replica_labels: Vec<String>,
    limit: i64,
    block_matchers: &[thanos::LabelMatcher],
    (partial_disabled, partial_strategy): (bool, i32),
) -> Result<LabelsQuery, Status> {
    Ok(LabelsQuery {
        min_time: start,
        max_time: end,
        matchers: matchers(label_matchers)?,
        without_replica_labels,
        limit: limit.max(0) as u64,
        block_matchers: matchers(block_matchers)?,
        partial_response: partial_response(partial_disabled, partial_strategy),
    })
}

pub(crate) fn info_response(component: Component, i: &StoreInfo) -> info::InfoResponse {
    info::InfoResponse {
        label_sets: i
            .label_sets
            .iter()
            .map(|l| thanos::ZLabelSet {
                labels: labels_to_proto(l),
            })
            .collect(),
        component_type: component.as_str().into(),
        store: Some(info::StoreInfo {
            min_time: i.min_time,
            max_time: i.max_time,
            supports_sharding: true,
            supports_without_replica_labels: true,
            tsdb_infos: i
                .tsdb_infos
                .iter()
                .map(|(l, min, max)| info::TsdbInfo {
                    labels: Some(thanos::ZLabelSet {
                        labels: labels_to_proto(l),
                    }),
                    min_time: *min,
                    max_time: *max,
                })
                .collect(),
            supports_projections: false,
        }),
        ..Default::default()
    }
}

/// The request a client sends for `q` (the inverse of [`series_query`]): hints ask for the
/// query stats and carry the block matchers.
pub fn series_request(q: &SeriesQuery) -> thanos::SeriesRequest {
    let hints = hintspb::SeriesRequestHints {
        block_matchers: matchers_to_proto(&q.block_matchers),
        enable_query_stats: true,
    };
    thanos::SeriesRequest {
        min_time: q.min_time,
        max_time: q.max_time,
        matchers: matchers_to_proto(&q.matchers),
        skip_chunks: q.skip_chunks,
        hints: Some(any("hintspb.SeriesRequestHints", &hints)),
        partial_response_strategy: partial_strategy(q.partial_response),
        without_replica_labels: q.without_replica_labels.clone(),
        limit: q.limit.min(i64::MAX as u64) as i64,
        shard_info: q.shard.as_ref().map(|s| thanos::ShardInfo {
            shard_index: s.shard_index as i64,
            total_shards: s.total_shards as i64,
            by: s.by,
            labels: s.labels.clone(),
        }),
        ..Default::default()
    }
}

fn partial_strategy(partial: bool) -> i32 {
    match partial {
        true => thanos::PartialResponseStrategy::Warn as i32,
        false => thanos::PartialResponseStrategy::Abort as i32,
    }
}

/// The LabelNames request a client sends for `q`.
pub fn label_names_request(q: &LabelsQuery) -> thanos::LabelNamesRequest {
    let hints = hintspb::LabelNamesRequestHints {
        block_matchers: matchers_to_proto(&q.block_matchers),
    };
    thanos::LabelNamesRequest {
        start: q.min_time,
        end: q.max_time,
        matchers: matchers_to_proto(&q.matchers),
        partial_response_strategy: partial_strategy(q.partial_response),
        hints: Some(any("hintspb.LabelNamesRequestHints", &hints)),
        without_replica_labels: q.without_replica_labels.clone(),
        limit: q.limit.min(i64::MAX as u64) as i64,
        ..Default::default()
    }
}

/// The LabelValues request a client sends for `name` and `q`.
pub fn label_values_request(name: &str, q: &LabelsQuery) -> thanos::LabelValuesRequest {
    let hints = hintspb::LabelValuesRequestHints {
        block_matchers: matchers_to_proto(&q.block_matchers),
    };
    thanos::LabelValuesRequest {
        label: name.to_string(),
        start: q.min_time,
        end: q.max_time,
        matchers: matchers_to_proto(&q.matchers),
        partial_response_strategy: partial_strategy(q.partial_response),
        hints: Some(any("hintspb.LabelValuesRequestHints", &hints)),
        without_replica_labels: q.without_replica_labels.clone(),
        limit: q.limit.min(i64::MAX as u64) as i64,
        ..Default::default()
    }
}

/// A wire series as the model's (the inverse of [`series_to_proto`]); chunks without a raw
/// chunk (downsampled aggregates) are left out.
pub fn series_from_proto(s: thanos::Series) -> SeriesOut {
    SeriesOut {
        labels: Labels::from_pairs(s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
        chunks: s
            .chunks
            .into_iter()
            .filter_map(|c| {
                let raw = c.raw?;
                Some(super::StoredChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: chunk_encoding(raw.r#type),
                    hash: raw.hash,
                    data: raw.data,
                })
            })
            .collect(),
    }
}

/// The inverse of [`chunk_type`].
fn chunk_encoding(wire: i32) -> ChunkEncoding {
    match thanos::chunk::Encoding::try_from(wire) {
        Ok(thanos::chunk::Encoding::Histogram) => ChunkEncoding::Histogram,
        Ok(thanos::chunk::Encoding::FloatHistogram) => ChunkEncoding::FloatHistogram,
        Ok(thanos::chunk::Encoding::Xor) => ChunkEncoding::Xor,
        Err(_) => ChunkEncoding::None,
    }
}

/// An Info reply in the model's terms (the inverse of [`info_response`]): the component, if
/// it is one stele knows, and what its StoreAPI serves.
pub fn info_from_proto(r: &info::InfoResponse) -> Result<(Option<Component>, StoreInfo), Status> {
    let store = r
        .store
        .as_ref()
        .ok_or_else(|| Status::unimplemented("the server offers no StoreAPI"))?;
    let labels = |l: &[thanos::Label]| {
        Labels::from_pairs(l.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    };
    let component = match r.component_type.as_str() {
        "store" => Some(Component::Store),
        "sidecar" => Some(Component::Sidecar),
        _ => None,
    };
    Ok((
        component,
        StoreInfo {
            label_sets: r.label_sets.iter().map(|s| labels(&s.labels)).collect(),
            min_time: store.min_time,
            max_time: store.max_time,
            tsdb_infos: store
                .tsdb_infos
                .iter()
                .map(|t| {
                    let l = t
                        .labels
                        .as_ref()
                        .map_or_else(Labels::default, |z| labels(&z.labels));
                    (l, t.min_time, t.max_time)
                })
                .collect(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_selector;

    /// What a client sends for a query is read back by the server as that query.
    #[test]
    fn queries_round_trip_through_the_wire() {
        let q = SeriesQuery {
            min_time: -5,
            max_time: 99,
            matchers: parse_selector(r#"{__name__=~"up|x",job!="a",i!~"b.*",z=""}"#).unwrap(),
            skip_chunks: true,
            without_replica_labels: vec!["replica".into()],
            limit: 7,
            shard: Some(ShardSpec {
                shard_index: 1,
                total_shards: 3,
                by: true,
                labels: vec!["job".into()],
            }),
            block_matchers: parse_selector(r#"{__block_id="01ARZ3NDEKTSV4RRFFQ69G5FAV"}"#).unwrap(),
            partial_response: true,
        };
        let back = series_query(&series_request(&q)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{q:?}"));
        let q = SeriesQuery {
            partial_response: false,
            shard: None,
            ..q
        };
        assert_eq!(
            format!("{:?}", series_query(&series_request(&q)).unwrap()),
            format!("{q:?}")
        );
    }

    #[test]
    fn series_and_info_round_trip() {
        let s = SeriesOut {
            labels: Labels::from_pairs([("__name__", "up"), ("a", "b")]),
            chunks: vec![super::super::StoredChunk {
                min_time: 1,
                max_time: 2,
                encoding: ChunkEncoding::Xor,
                data: bytes::Bytes::from_static(b"\x00\x01x"),
                hash: 42,
            }],
        };
        assert_eq!(series_from_proto(series_to_proto(s.clone())), s);
        let i = StoreInfo {
            label_sets: vec![Labels::from_pairs([("cluster", "eu")])],
            min_time: 3,
            max_time: 9,
            tsdb_infos: vec![(Labels::from_pairs([("cluster", "eu")]), 3, 9)],
        };
        let (component, back) = info_from_proto(&info_response(Component::Sidecar, &i)).unwrap();
        assert_eq!((component, back), (Some(Component::Sidecar), i));
    }
}
