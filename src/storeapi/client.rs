//! The StoreAPI client: one for the bench, the tests and the querier. Async, and Series
//! streams its frames as they arrive (a reply of millions of series is never collected by
//! the client unless its caller does).
//!
//! It speaks to any StoreAPI server (stele's, Thanos' store, sidecar or querier): Thanos'
//! message limits (2 GiB), `thanos.info.Info` for discovery, raw requests for callers that
//! need every field, and [`convert`](super::convert) for those that start from the model's
//! queries.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::Status;

use super::convert;
use super::{Component, LabelsQuery, SeriesQuery, StoreInfo};
use crate::proto::hintspb;
use crate::proto::thanos::{self, info, store_client::StoreClient};

/// How long connecting may take before it fails (the server is down or unreachable).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors before any request: the address, or the connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid StoreAPI address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("connecting to the StoreAPI at {address}: {reason}")]
    Connect { address: String, reason: String },
}

/// A connection to one StoreAPI server. Cheap to clone (the channel is shared).
#[derive(Debug, Clone)]
pub struct StoreApiClient {
    store: StoreClient<Channel>,
    info: info::info_client::InfoClient<Channel>,
}

/// One frame of a Series reply; batches come apart into their series.
#[derive(Debug)]
pub enum SeriesFrame {
    Series(thanos::Series),
    Warning(String),
    /// The response hints, last.
    Hints(hintspb::SeriesResponseHints),
}

/// The frames of a Series reply as they arrive.
pub struct SeriesStream {
    frames: tonic::Streaming<thanos::SeriesResponse>,
    /// Series of the batch frame being handed out.
    batch: std::vec::IntoIter<thanos::Series>,
}

impl SeriesStream {
    /// The next frame; `None` once the reply ended.
    pub async fn next(&mut self) -> Option<Result<SeriesFrame, Status>> {
        use thanos::series_response::Result as Frame;
        loop {
            if let Some(s) = self.batch.next() {
                return Some(Ok(SeriesFrame::Series(s)));
            }
            let frame = match self.frames.message().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(status) => return Some(Err(status)),
            };
            match frame.result {
                Some(Frame::Series(s)) => return Some(Ok(SeriesFrame::Series(s))),
                Some(Frame::Batch(b)) => self.batch = b.series.into_iter(),
                Some(Frame::Warning(w)) => return Some(Ok(SeriesFrame::Warning(w))),
                Some(Frame::Hints(any)) => {
                    let hints = convert::hints(&Some(any), "hintspb.SeriesResponseHints");
                    return Some(hints.map(SeriesFrame::Hints));
                }
                None => return Some(Err(Status::internal("a Series frame with no result"))),
            }
        }
    }

    /// The whole reply: its series in order, warnings, and the hints if any.
    pub async fn collect(mut self) -> Result<SeriesReply, Status> {
        let mut reply = SeriesReply::default();
        while let Some(frame) = self.next().await {
            let frame = frame?;
            if reply.hints.is_some() {
                return Err(Status::internal(format!(
                    "a frame after the hints, which end a reply: {frame:?}"
                )));
            }
            match frame {
                SeriesFrame::Series(s) => reply.series.push(s),
                SeriesFrame::Warning(w) => reply.warnings.push(w),
                SeriesFrame::Hints(h) => reply.hints = Some(h),
            }
        }
        Ok(reply)
    }
}

/// A Series reply read to the end.
#[derive(Debug, Default)]
pub struct SeriesReply {
    pub series: Vec<thanos::Series>,
    pub warnings: Vec<String>,
    pub hints: Option<hintspb::SeriesResponseHints>,
}

/// `127.0.0.1:10901` → `http://127.0.0.1:10901`; URLs pass through.
pub fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

impl StoreApiClient {
    /// Connects to `address` (`host:port` or a URL), within [`CONNECT_TIMEOUT`]. Requests
    /// have no deadline of their own: a Series reply may stream for minutes.
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        let url = with_scheme(address);
        let endpoint = Channel::from_shared(url).map_err(|e| ClientError::Address {
            address: address.to_string(),
            reason: e.to_string(),
        })?;
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| ClientError::Connect {
                address: address.to_string(),
                reason: format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
                ),
            })?;
        Ok(Self::from_channel(channel))
    }

    /// Over a channel made elsewhere (lazily connecting, with TLS, a timeout).
    pub fn from_channel(channel: Channel) -> Self {
        let max = super::server::MAX_MESSAGE_SIZE;
        StoreApiClient {
            store: StoreClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            info: info::info_client::InfoClient::new(channel).max_decoding_message_size(max),
        }
    }

    /// `thanos.info.Info`, as sent.
    pub async fn info_raw(&mut self) -> Result<info::InfoResponse, Status> {
        Ok(self.info.info(info::InfoRequest {}).await?.into_inner())
    }

    /// `thanos.info.Info` in the model's terms: the component and what its StoreAPI serves
    /// (an error when it offers none).
    pub async fn info(&mut self) -> Result<(Option<Component>, StoreInfo), Status> {
        convert::info_from_proto(&self.info_raw().await?)
    }

    /// Series for a request built from the model's query.
    pub async fn series(&mut self, q: &SeriesQuery) -> Result<SeriesStream, Status> {
        self.series_raw(convert::series_request(q)).await
    }

    /// Series for a request as given (every field a caller may set, hints included).
    pub async fn series_raw(&mut self, r: thanos::SeriesRequest) -> Result<SeriesStream, Status> {
        Ok(SeriesStream {
            frames: self.store.series(r).await?.into_inner(),
            batch: Vec::new().into_iter(),
        })
    }

    /// Label names and the warnings.
    pub async fn label_names(
        &mut self,
        q: &LabelsQuery,
    ) -> Result<(Vec<String>, Vec<String>), Status> {
        let r = self
            .store
            .label_names(convert::label_names_request(q))
            .await?
            .into_inner();
        Ok((r.names, r.warnings))
    }

    /// Values of `name` and the warnings.
    pub async fn label_values(
        &mut self,
        name: &str,
        q: &LabelsQuery,
    ) -> Result<(Vec<String>, Vec<String>), Status> {
        let r = self
            .store
            .label_values(convert::label_values_request(name, q))
            .await?
            .into_inner();
        Ok((r.values, r.warnings))
    }

    /// The raw `thanos.Store` client, for requests this one does not cover.
    pub fn store(&mut self) -> &mut StoreClient<Channel> {
        &mut self.store
    }
}
