//! Prometheus remote read on the wire, pure: the snappy-compressed request, the frames of a
//! streamed (STREAMED_XOR_CHUNKS) reply, the SAMPLES reply, and samples re-encoded as XOR
//! chunks. No I/O: the HTTP client in `client.rs` feeds bytes in.
//!
//! ```text
//! streamed reply: frame*
//! frame: uvarint(len) | CRC32C(message) (be32) | message (len bytes, a ChunkedReadResponse)
//! ```

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;

use crate::model::Matcher;
use crate::proto::prometheus::{
    chunk, read_request::ResponseType, ChunkedReadResponse, ChunkedSeries, Label, LabelMatcher,
    Query, ReadRequest, ReadResponse, TimeSeries,
};
use crate::tsdb::chunks::XorEncoder;
use crate::tsdb::encoding::{crc32c, read_uvarint, DecodeError};

/// The content type of a streamed reply; anything else is a SAMPLES reply.
pub const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf";
/// Samples per re-encoded chunk, as Prometheus cuts its own.
pub const SAMPLES_PER_CHUNK: usize = 120;
/// Prometheus sends frames of about 1 MiB (`--storage.remote.read-max-bytes-in-frame`); a frame
/// far larger than that is a broken stream, not data to buffer.
pub const MAX_FRAME_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RemoteReadError {
    #[error("remote-read frame of {0} bytes exceeds the {max}-byte limit", max = MAX_FRAME_BYTES)]
    FrameTooLarge(u64),
    #[error("remote-read frame: {0}")]
    Frame(DecodeError),
    #[error("remote-read frame CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("remote-read stream ends inside a frame ({0} bytes left over)")]
    Truncated(usize),
    #[error("decoding remote-read message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("decompressing remote-read reply: {0}")]
    Snappy(#[from] snap::Error),
    #[error("remote-read reply has {0} results for one query")]
    Results(usize),
}

/// The request body: one query, snappy block-compressed.
pub fn encode_request(query: Query, accepted: &[ResponseType]) -> Vec<u8> {
    let request = ReadRequest {
        queries: vec![query],
        accepted_response_types: accepted.iter().map(|t| *t as i32).collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compresses any buffer that fits in memory")
}

pub fn query(min_time: i64, max_time: i64, matchers: &[Matcher]) -> Query {
    Query {
        start_timestamp_ms: min_time,
        end_timestamp_ms: max_time,
        matchers: matchers.iter().map(matcher_to_proto).collect(),
        hints: None,
    }
}

fn matcher_to_proto(m: &Matcher) -> LabelMatcher {
    LabelMatcher {
        r#type: crate::proto::matcher_type(m.kind),
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

/// Splits a streamed reply into messages as its bytes arrive, checking every frame's CRC.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame's message, or `None` until more bytes are pushed.
    pub fn next_frame(&mut self) -> Result<Option<ChunkedReadResponse>, RemoteReadError> {
        let (len, varint_len) = match read_uvarint(&self.buf) {
            Ok(v) => v,
            Err(DecodeError::ShortRead { .. }) => return Ok(None),
            Err(e) => return Err(RemoteReadError::Frame(e)),
        };
        if len > MAX_FRAME_BYTES {
            return Err(RemoteReadError::FrameTooLarge(len));
        }
        let total = varint_len + 4 + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.advance(varint_len);
        let stored = self.buf.get_u32();
        // A frozen slice: the chunk bytes in the decoded message point into it, uncopied.
        let message: Bytes = self.buf.split_to(len as usize).freeze();
        let computed = crc32c(&message);
        if computed != stored {
            return Err(RemoteReadError::Checksum { stored, computed });
        }
        Ok(Some(ChunkedReadResponse::decode(message)?))
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), RemoteReadError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(RemoteReadError::Truncated(n)),
        }
    }
}

/// Decodes a SAMPLES reply into the shape of a streamed one: each series' samples re-encoded
/// as XOR chunks of at most [`SAMPLES_PER_CHUNK`] samples.
pub fn decode_samples_reply(body: &[u8]) -> Result<Vec<ChunkedSeries>, RemoteReadError> {
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    let mut reply = ReadResponse::decode(raw.as_slice())?;
    if reply.results.len() > 1 {
        return Err(RemoteReadError::Results(reply.results.len()));
    }
    Ok(reply
        .results
        .pop()
        .map(|r| r.timeseries.into_iter().map(series_to_chunks).collect())
        .unwrap_or_default())
}

fn series_to_chunks(ts: TimeSeries) -> ChunkedSeries {
    ChunkedSeries {
        chunks: ts
            .samples
            .chunks(SAMPLES_PER_CHUNK)
            .map(|samples| {
                let mut enc = XorEncoder::new();
                for s in samples {
                    enc.append(s.timestamp, s.value);
                }
                crate::proto::prometheus::Chunk {
                    min_time_ms: samples[0].timestamp,
                    max_time_ms: samples[samples.len() - 1].timestamp,
                    r#type: chunk::Encoding::Xor as i32,
                    data: Bytes::from(enc.into_bytes()),
                }
            })
            .collect(),
        labels: ts.labels,
    }
}

/// Label pairs of a reply.
pub fn label_pairs(labels: &[Label]) -> impl Iterator<Item = (&str, &str)> {
    labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::prometheus::{QueryResult, Sample};
    use crate::tsdb::chunks::decode_xor;
    use crate::tsdb::encoding::Encbuf;

    fn frame(msg: &ChunkedReadResponse) -> Vec<u8> {
        let body = msg.encode_to_vec();
        let mut out = Encbuf::new();
        out.put_uvarint(body.len() as u64);
        out.put_be32(crc32c(&body));
        out.put_bytes(&body);
        out.as_slice().to_vec()
    }

    fn series(name: &str, data: &'static [u8]) -> ChunkedReadResponse {
        ChunkedReadResponse {
            chunked_series: vec![ChunkedSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: name.into(),
                }],
                chunks: vec![crate::proto::prometheus::Chunk {
                    min_time_ms: 1,
                    max_time_ms: 2,
                    r#type: 1,
                    data: Bytes::from_static(data),
                }],
            }],
            query_index: 0,
        }
    }

    #[test]
    fn frames_arrive_in_any_pieces() {
        let (a, b) = (series("a", b"\x00\x01xyz"), series("b", b"\x00\x02"));
        let stream = [frame(&a), frame(&b)].concat();
        for cut in 0..stream.len() {
            let mut d = FrameDecoder::default();
            let mut got = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                d.push(piece);
                while let Some(m) = d.next_frame().unwrap() {
                    got.push(m);
                }
            }
            d.finish().unwrap();
            assert_eq!(got, vec![a.clone(), b.clone()], "cut at {cut}");
        }
    }

    #[test]
    fn damaged_streams_are_errors() {
        let good = frame(&series("a", b"\x00\x01"));
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let mut d = FrameDecoder::default();
        d.push(&flipped);
        assert!(matches!(
            d.next_frame(),
            Err(RemoteReadError::Checksum { .. })
        ));

        let mut d = FrameDecoder::default();
        d.push(&good[..good.len() - 1]);
        assert!(d.next_frame().unwrap().is_none());
        assert!(matches!(d.finish(), Err(RemoteReadError::Truncated(_))));

        let mut d = FrameDecoder::default();
        d.push(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            d.next_frame(),
            Err(RemoteReadError::FrameTooLarge(_))
        ));
    }

    #[test]
    fn samples_become_chunks_of_at_most_120() {
        let samples: Vec<Sample> = (0..250)
            .map(|i| Sample {
                value: if i == 7 {
                    f64::from_bits(0x7ff0_0000_0000_0002) // stale marker
                } else {
                    i as f64 * 0.5
                },
                timestamp: 1000 + i * 15_000,
            })
            .collect();
        let reply = ReadResponse {
            results: vec![QueryResult {
                timeseries: vec![TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    }],
                    samples: samples.clone(),
                }],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&reply.encode_to_vec())
            .unwrap();
        let got = decode_samples_reply(&body).unwrap();
        assert_eq!(got.len(), 1);
        let sizes: Vec<usize> = got[0]
            .chunks
            .iter()
            .map(|c| decode_xor(&c.data).unwrap().len())
            .collect();
        assert_eq!(sizes, vec![120, 120, 10]);
        let decoded: Vec<(i64, u64)> = got[0]
            .chunks
            .iter()
            .flat_map(|c| decode_xor(&c.data).unwrap())
            .map(|(t, v)| (t, v.to_bits()))
            .collect();
        let want: Vec<(i64, u64)> = samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        assert_eq!(decoded, want);
        assert_eq!(got[0].chunks[1].min_time_ms, samples[120].timestamp);
        assert_eq!(got[0].chunks[1].max_time_ms, samples[239].timestamp);
        assert!(decode_samples_reply(b"not snappy").is_err());
    }
}
