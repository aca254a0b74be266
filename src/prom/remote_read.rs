//! A Prometheus remote-read client for the streamed-chunks reply (`STREAMED_XOR_CHUNKS`), the
//! path a Thanos sidecar uses: one snappy-compressed `ReadRequest` POSTed to `/api/v1/read`,
//! answered by frames of `uvarint(len) + be32 CRC32C(msg) + ChunkedReadResponse`.
//!
//! Frame decoding ([`decode_frame`]) is pure; [`ChunkedStream`] reads frames off the HTTP body
//! as they arrive and hands out whole series (a series larger than a frame is split across
//! consecutive frames by Prometheus and joined again here).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use thiserror::Error;

use crate::proto::prometheus::{
    read_request::ResponseType, ChunkedReadResponse, ChunkedSeries, Query, ReadRequest,
};
use crate::tsdb::encoding::{crc32c, read_uvarint, DecodeError};

/// What Prometheus names the streamed reply's content type.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Prometheus refuses frames above its `--storage.remote.read-max-bytes-in-frame` (1 MiB by
/// default); anything far beyond that is a broken stream, not a big series.
const MAX_FRAME_BYTES: u64 = 256 << 20;

#[derive(Debug, Error)]
pub enum RemoteReadError {
    #[error("remote read {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("remote read {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("remote read {url}: expected a streamed reply, got content type {content_type:?}")]
    NotStreamed { url: String, content_type: String },
    #[error("remote read frame: {0}")]
    Frame(String),
    #[error("remote read request: {0}")]
    Encode(String),
}

/// A remote-read endpoint: `<base>/api/v1/read`.
#[derive(Debug, Clone)]
pub struct RemoteReadClient {
    http: reqwest::Client,
    url: String,
}

impl RemoteReadClient {
    /// `base_url` is Prometheus' web address, e.g. `http://127.0.0.1:9090`.
    pub fn new(base_url: &str) -> Self {
        RemoteReadClient {
            http: reqwest::Client::new(),
            url: format!("{}/api/v1/read", base_url.trim_end_matches('/')),
        }
    }

    /// Sends one query asking for streamed XOR chunks only, and returns the reply's series
    /// as they arrive.
    pub async fn read_streamed(&self, query: Query) -> Result<ChunkedStream, RemoteReadError> {
        let body = encode_request(ReadRequest {
            queries: vec![query],
            accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
        })?;
        let http_err = |source| RemoteReadError::Http {
            url: self.url.clone(),
            source,
        };
        let response = self
            .http
            .post(&self.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .map_err(http_err)?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            return Err(RemoteReadError::Status {
                url: self.url.clone(),
                status,
                body: body.trim().to_string(),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !content_type.starts_with("application/x-streamed-protobuf") {
            return Err(RemoteReadError::NotStreamed {
                url: self.url.clone(),
                content_type,
            });
        }
        Ok(ChunkedStream {
            response,
            url: self.url.clone(),
            buf: BytesMut::new(),
            pending: VecDeque::new(),
            done: false,
        })
    }
}

/// The snappy (block format) body of a `ReadRequest`.
pub fn encode_request(request: ReadRequest) -> Result<Vec<u8>, RemoteReadError> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .map_err(|e| RemoteReadError::Encode(e.to_string()))
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when `buf` holds only part of it,
/// otherwise the message and the bytes the frame took.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(ChunkedReadResponse, usize)>, RemoteReadError> {
    let (len, varint_len) = match read_uvarint(buf) {
        Ok(v) => v,
        // A varint cut short by the end of what has arrived so far.
        Err(DecodeError::ShortRead { .. }) => return Ok(None),
        Err(e) => return Err(RemoteReadError::Frame(format!("frame length: {e}"))),
    };
    if len > MAX_FRAME_BYTES {
        return Err(RemoteReadError::Frame(format!(
            "frame of {len} bytes exceeds {MAX_FRAME_BYTES}"
        )));
    }
    let total = varint_len + 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let stored = u32::from_be_bytes(buf[varint_len..varint_len + 4].try_into().expect("4 bytes"));
    let msg = &buf[varint_len + 4..total];
    let computed = crc32c(msg);
    if computed != stored {
        return Err(RemoteReadError::Frame(format!(
            "CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let response = ChunkedReadResponse::decode(msg)
        .map_err(|e| RemoteReadError::Frame(format!("decoding ChunkedReadResponse: {e}")))?;
    Ok(Some((response, total)))
}

/// The series of one streamed reply, in the order Prometheus sends them (sorted by labels).
#[derive(Debug)]
pub struct ChunkedStream {
    response: reqwest::Response,
    url: String,
    buf: BytesMut,
    /// Series of frames read but not handed out; the last may continue in the next frame.
    pending: VecDeque<ChunkedSeries>,
    done: bool,
}

impl ChunkedStream {
    /// The next whole series, or `None` at the end of the reply.
    pub async fn next_series(&mut self) -> Result<Option<ChunkedSeries>, RemoteReadError> {
        loop {
            if self.pending.len() > 1 || (self.done && !self.pending.is_empty()) {
                return Ok(self.pending.pop_front());
            }
            if self.done {
                return Ok(None);
            }
            match self.next_frame().await? {
                Some(frame) => join_frame(&mut self.pending, frame),
                None => self.done = true,
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Option<ChunkedReadResponse>, RemoteReadError> {
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf)? {
                self.buf.advance(used);
                return Ok(Some(frame));
            }
            let chunk: Option<Bytes> =
                self.response
                    .chunk()
                    .await
                    .map_err(|source| RemoteReadError::Http {
                        url: self.url.clone(),
                        source,
                    })?;
            match chunk {
                Some(c) => self.buf.extend_from_slice(&c),
                None if self.buf.is_empty() => return Ok(None),
                None => {
                    return Err(RemoteReadError::Frame(format!(
                        "stream ended inside a frame ({} bytes left over)",
                        self.buf.len()
                    )))
                }
            }
        }
    }
}

/// Appends a frame's series to `pending`, joining a series split across frames (same labels
/// as the last pending one) into one.
fn join_frame(pending: &mut VecDeque<ChunkedSeries>, frame: ChunkedReadResponse) {
    for series in frame.chunked_series {
        match pending.back_mut() {
            Some(last) if last.labels == series.labels => last.chunks.extend(series.chunks),
            _ => pending.push_back(series),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::prometheus::{Chunk, Label};
    use crate::tsdb::encoding::Encbuf;

    fn series(name: &str, chunks: usize) -> ChunkedSeries {
        ChunkedSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            chunks: (0..chunks)
                .map(|i| Chunk {
                    min_time_ms: i as i64,
                    max_time_ms: i as i64,
                    r#type: 1,
                    data: Bytes::from_static(b"\x00\x01"),
                })
                .collect(),
        }
    }

    fn frame(series: Vec<ChunkedSeries>) -> Vec<u8> {
        let msg = ChunkedReadResponse {
            chunked_series: series,
            query_index: 0,
        }
        .encode_to_vec();
        let mut e = Encbuf::new();
        e.put_uvarint(msg.len() as u64);
        e.put_be32(crc32c(&msg));
        e.put_bytes(&msg);
        e.as_slice().to_vec()
    }

    #[test]
    fn frames_decode_whole_and_wait_when_partial() {
        let bytes = frame(vec![series("a", 2)]);
        for cut in 0..bytes.len() {
            assert!(decode_frame(&bytes[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let (msg, used) = decode_frame(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(msg.chunked_series, vec![series("a", 2)]);
    }

    #[test]
    fn bad_crc_is_an_error() {
        let mut bytes = frame(vec![series("a", 1)]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let err = decode_frame(&bytes).unwrap_err().to_string();
        assert!(err.contains("CRC32C mismatch"), "{err}");
    }

    #[test]
    fn split_series_are_joined() {
        let mut pending = VecDeque::new();
        let frame = |s| ChunkedReadResponse {
            chunked_series: s,
            query_index: 0,
        };
        join_frame(&mut pending, frame(vec![series("a", 1), series("b", 2)]));
        join_frame(&mut pending, frame(vec![series("b", 3)]));
        join_frame(&mut pending, frame(vec![series("c", 1)]));
        let names: Vec<(String, usize)> = pending
            .iter()
            .map(|s| (s.labels[0].value.clone(), s.chunks.len()))
            .collect();
        assert_eq!(names, [("a".into(), 1), ("b".into(), 5), ("c".into(), 1)]);
    }

    #[test]
    fn requests_are_snappy_block_compressed() {
        let request = ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                ..Default::default()
            }],
            accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
        };
        let body = encode_request(request.clone()).unwrap();
        let plain = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(ReadRequest::decode(plain.as_slice()).unwrap(), request);
    }
}
