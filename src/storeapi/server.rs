//! The StoreAPI on the wire: tonic services adapting a store engine (the bucket store or the
//! sidecar, anything implementing [`StoreEngine`]) to Thanos' protocol.
//!
//! Thin by design: convert requests (matchers, hints, sharding) into engine queries, run them
//! on the blocking pool, and convert results back. Series frames are streamed through a
//! bounded channel, so a slow client slows the query instead of growing memory. A small Series
//! request the engine can answer from memory is answered in place instead, on the async
//! worker, in no-wait mode ([`crate::nowait`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, StreamExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Unit;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::convert::{
    hints, info_response, labels_query, labels_to_proto, series_hints, series_query,
    series_to_proto, status,
};
use super::{Component, SeriesEvent, SeriesQuery, StoreEngine, StoreError};
use crate::metrics::{latency_histograms, LatencyHistograms, Metrics, MetricsError};
use crate::proto::hintspb;
use crate::proto::thanos::{self, info};
use crate::server::{ServerError, Shutdown};

/// Thanos allows messages up to 2^31-1 bytes on both ends.
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;
/// Frames a Series reply gathers before it starts. A reply this small (a few series and the
/// hints) reaches the client in two writes, headers and frames then trailers, instead of a
/// write and a wake-up of the client per frame.
const HEAD_FRAMES: usize = 8;
/// After the head, frames go to the client in groups of this many, or fewer once they carry
/// [`BYTES_PER_SEND`] of chunk data: one channel send and one wake-up of the async side per
/// group rather than per frame, which for a reply of 100k series was a fifth of its CPU time.
const FRAMES_PER_SEND: usize = 64;
const BYTES_PER_SEND: usize = 256 << 10;
/// Groups buffered between the query thread and the client. A reply has these in flight, plus
/// the group the query thread is sending and the one being written to the client.
const STREAM_BUFFER: usize = 4;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InPlaceLabels {
    result: String,
}

/// `thanos.Store` and `thanos.info.Info` over one engine.
pub struct StoreApi<E> {
    store: Arc<E>,
    /// `--store.grpc.series-max-concurrency`: Series requests running at once.
    series_gate: Arc<Semaphore>,
    latency: LatencyHistograms<RequestLabels>,
    /// Series requests tried in place: answered there, and handed off to the blocking pool.
    in_place: [Counter; 2],
}

// Not derived: that would require `E: Clone`, and only the `Arc` is cloned.
impl<E> Clone for StoreApi<E> {
    fn clone(&self) -> Self {
        StoreApi {
            store: self.store.clone(),
            series_gate: self.series_gate.clone(),
            latency: self.latency.clone(),
            in_place: self.in_place.clone(),
        }
    }
}

impl<E: StoreEngine> StoreApi<E> {
    /// Registers the request-latency histograms in `metrics`.
    pub fn new(
        store: Arc<E>,
        series_max_concurrency: usize,
        metrics: &Metrics,
    ) -> Result<Self, MetricsError> {
        let latency = latency_histograms::<RequestLabels>();
        metrics.register_with_unit(
            "stele_grpc_server_handling",
            "Time to answer StoreAPI requests, by method and status code (Series: until the last frame)",
            Unit::Seconds,
            latency.clone(),
        )?;
        let in_place = Family::<InPlaceLabels, Counter>::default();
        metrics.register(
            "stele_grpc_series_in_place",
            "Series requests tried on the async worker without waiting, by result: answered there, or handed off to the blocking pool (something was not in memory, or the reply was large)",
            in_place.clone(),
        )?;
        // Both series exist from the start, so a rate of either is never missing.
        let in_place = ["answered", "handed_off"].map(|result| {
            in_place
                .get_or_create(&InPlaceLabels {
                    result: result.to_string(),
                })
                .clone()
        });
        Ok(StoreApi {
            store,
            series_gate: Arc::new(Semaphore::new(series_max_concurrency.max(1))),
            latency,
            in_place,
        })
    }

    /// Answers a Series request on this async worker thread when the engine can do so without
    /// waiting ([`crate::nowait`]: everything it needs in memory or the page cache) and the
    /// reply is small; `None` sends it to the blocking pool, at the cost of this attempt,
    /// which stops at the first wait. A request answered here saves the two thread wake-ups
    /// of the hand-off, about a quarter of the latency of a one-series query.
    fn series_in_place(
        &self,
        query: &SeriesQuery,
        batch_size: usize,
        started: Instant,
    ) -> Option<Vec<ReplyFrame>> {
        if !self.store.answers_without_waiting() {
            return None;
        }
        let attempt = crate::nowait::enter();
        let mut frames = Vec::new();
        let (mut bytes, mut too_large) = (0, false);
        let outcome = run_series(&*self.store, query, batch_size, started, &mut |f| {
            let frame = Ok(thanos::SeriesResponse { result: Some(f) });
            bytes += chunk_bytes(&frame);
            frames.push(frame);
            // Few series (the engine refuses more), but maybe long ones.
            too_large = bytes > BYTES_PER_SEND;
            !too_large
        });
        let answered = outcome.is_ok() && !attempt.refused() && !too_large;
        self.store.settle_in_place(answered);
        drop(attempt);
        self.in_place[usize::from(!answered)].inc();
        answered.then_some(frames)
    }

    fn observe<T>(&self, method: &str, started: Instant, result: &Result<T, Status>) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.latency
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                code: format!("{code:?}"),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    pub fn store_server(&self) -> thanos::store_server::StoreServer<StoreApi<E>> {
        thanos::store_server::StoreServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    pub fn info_server(&self) -> info::info_server::InfoServer<StoreApi<E>> {
        info::info_server::InfoServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Binds `addr` and serves `thanos.info.Info` and `thanos.Store` until `shutdown` fires
    /// (in-flight requests drain first); returns the bound address (the real port for port
    /// 0) and the task, which ends with the server.
    pub async fn serve(
        &self,
        addr: SocketAddr,
        shutdown: Shutdown,
    ) -> Result<(SocketAddr, JoinHandle<Result<(), tonic::transport::Error>>), ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "gRPC",
                addr,
                source,
            })?;
        let address = listener.local_addr().unwrap_or(addr);
        tracing::info!(%address, "serving the StoreAPI over gRPC");
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .add_service(self.info_server())
            .add_service(self.store_server())
            // TCP_NODELAY: a Series reply is several small writes (frames, then the hints);
            // with Nagle on, the last waits for the client's delayed ACK, ~40 ms per request.
            // `Server::tcp_nodelay` only applies to listeners tonic binds itself.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown.wait(),
            );
        Ok((address, tokio::spawn(server)))
    }
}

/// Where a component listens, and how many Series requests it runs at once.
#[derive(Debug, Clone)]
pub struct EndpointsConfig {
    /// For the index page and logs: `store`, `sidecar`, ...
    pub component: &'static str,
    pub grpc_address: SocketAddr,
    pub http_address: SocketAddr,
    /// `--store.grpc.series-max-concurrency`.
    pub series_max_concurrency: usize,
}

/// A component's two servers, running: the StoreAPI over gRPC and the HTTP endpoint
/// (`/metrics`, probes) on a thread of its own, with the runtime's watchdog. Both stop when
/// the shutdown fires; [`Endpoints::drained`] waits for them.
pub struct Endpoints {
    grpc_address: SocketAddr,
    http_address: SocketAddr,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: futures::future::BoxFuture<'static, Result<(), ServerError>>,
}

impl Endpoints {
    /// Binds both addresses and serves `engine` on the current runtime; the watchdog's and
    /// the gRPC server's metrics go to `metrics`.
    pub async fn start<E: StoreEngine>(
        engine: Arc<E>,
        config: &EndpointsConfig,
        metrics: &Metrics,
        readiness: &crate::server::Readiness,
        shutdown: &Shutdown,
    ) -> Result<Self, ServerError> {
        let watchdog = crate::server::Watchdog::start(&tokio::runtime::Handle::current(), metrics)?;
        let state =
            crate::server::HttpState::new(config.component, metrics.clone(), readiness.clone())
                .with_watchdog(watchdog);
        let http = crate::server::HttpServer::bind(config.http_address, state)?;
        let http_address = http.local_addr();
        let http = Box::pin(http.serve_on_own_thread(shutdown.clone())?);
        let api = StoreApi::new(engine, config.series_max_concurrency, metrics)?;
        let (grpc_address, grpc) = api.serve(config.grpc_address, shutdown.clone()).await?;
        Ok(Endpoints {
            grpc_address,
            http_address,
            grpc,
            http,
        })
    }

    /// The bound gRPC address (the real port when asked for port 0).
    pub fn grpc_address(&self) -> SocketAddr {
        self.grpc_address
    }

    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// Waits for both servers to stop (they drain once the shutdown fires).
    pub async fn drained(self) -> Result<(), ServerError> {
        let grpc = self.grpc.await;
        let http = self.http.await;
        match grpc {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ServerError::Serve {
                    what: "gRPC",
                    source: std::io::Error::other(e),
                })
            }
            Err(e) => {
                return Err(ServerError::Serve {
                    what: "gRPC",
                    source: std::io::Error::other(format!("the server task failed: {e}")),
                })
            }
        }
        http
    }
}

/// One frame of a Series reply, or the status that ends it.
type ReplyFrame = Result<thanos::SeriesResponse, Status>;

/// The query thread's end of a Series reply: the first [`HEAD_FRAMES`] frames are handed
/// over together (all of them when the query ends sooner) and start the reply, the rest go
/// through the bounded channel in groups.
struct ReplySender {
    group: Vec<ReplyFrame>,
    group_bytes: usize,
    start: Option<oneshot::Sender<Vec<ReplyFrame>>>,
    rest: mpsc::Sender<Vec<ReplyFrame>>,
}

impl ReplySender {
    fn new(start: oneshot::Sender<Vec<ReplyFrame>>, rest: mpsc::Sender<Vec<ReplyFrame>>) -> Self {
        ReplySender {
            group: Vec::new(),
            group_bytes: 0,
            start: Some(start),
            rest,
        }
    }

    /// False once the client has gone away.
    fn send(&mut self, frame: ReplyFrame) -> bool {
        self.group_bytes += chunk_bytes(&frame);
        self.group.push(frame);
        let size = if self.start.is_some() {
            HEAD_FRAMES
        } else {
            FRAMES_PER_SEND
        };
        if self.group.len() < size && self.group_bytes < BYTES_PER_SEND {
            return true;
        }
        let group = std::mem::take(&mut self.group);
        self.group_bytes = 0;
        match self.start.take() {
            Some(start) => start.send(group).is_ok(),
            None => self.rest.blocking_send(group).is_ok(),
        }
    }

    /// Ends the reply. A reply that is all head closes the channel before it starts, so it
    /// is complete when it starts.
    fn finish(self) {
        let ReplySender {
            group, start, rest, ..
        } = self;
        match start {
            Some(start) => {
                drop(rest);
                let _ = start.send(group);
            }
            None if !group.is_empty() => {
                let _ = rest.blocking_send(group);
            }
            None => {}
        }
    }
}

/// The chunk data a frame carries, which is what makes frames large.
fn chunk_bytes(frame: &ReplyFrame) -> usize {
    use thanos::series_response::Result as Frame;
    let series = |s: &thanos::Series| -> usize {
        s.chunks
            .iter()
            .filter_map(|c| c.raw.as_ref())
            .map(|raw| raw.data.len())
            .sum()
    };
    match frame {
        Ok(thanos::SeriesResponse {
            result: Some(Frame::Series(s)),
        }) => series(s),
        Ok(thanos::SeriesResponse {
            result: Some(Frame::Batch(b)),
        }) => b.series.iter().map(series).sum(),
        _ => 0,
    }
}

/// Runs a Series query, handing its frames to `send` (which returns false to stop): series one
/// per frame or in batches of `batch_size`, then the hints. The one piece of code behind both
/// ways a request runs: in place and on the blocking pool.
fn run_series<E: StoreEngine>(
    store: &E,
    query: &SeriesQuery,
    batch_size: usize,
    started: Instant,
    send: &mut dyn FnMut(thanos::series_response::Result) -> bool,
) -> Result<(), StoreError> {
    use thanos::series_response::Result as Frame;
    let mut pending: Vec<thanos::Series> = Vec::new();
    let summary = {
        let mut emit = |ev: SeriesEvent| match ev {
            SeriesEvent::Series(s) if batch_size <= 1 => send(Frame::Series(series_to_proto(s))),
            SeriesEvent::Series(s) => {
                pending.push(series_to_proto(s));
                pending.len() < batch_size
                    || send(Frame::Batch(thanos::SeriesBatch {
                        series: std::mem::take(&mut pending),
                    }))
            }
            SeriesEvent::Warning(w) => send(Frame::Warning(w)),
        };
        store.series(query, &mut emit)?
    };
    let st = &summary.stats;
    tracing::debug!(
        blocks = st.blocks_queried,
        series = st.merged_series_count,
        chunks = st.merged_chunks_count,
        postings_fetched_bytes = st.postings_fetched_size_sum,
        series_fetched_bytes = st.series_fetched_size_sum,
        chunks_fetched_bytes = st.chunks_fetched_size_sum,
        postings_ms = st.get_all_duration.as_secs_f64() * 1e3,
        series_and_chunks_ms = st.merge_duration.as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        in_place = crate::nowait::active(),
        "Series done"
    );
    if pending.is_empty() || send(Frame::Batch(thanos::SeriesBatch { series: pending })) {
        send(Frame::Hints(series_hints(&summary)));
    }
    Ok(())
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("query task failed: {e}")))?
        .map_err(status)
}

#[tonic::async_trait]
impl<E: StoreEngine> info::info_server::Info for StoreApi<E> {
    async fn info(
        &self,
        _: Request<info::InfoRequest>,
    ) -> Result<Response<info::InfoResponse>, Status> {
        let started = Instant::now();
        let r = self
            .store
            .info()
            .map_err(status)
            .map(|i| Response::new(info_response(self.store.component(), &i)));
        self.observe("Info", started, &r);
        r
    }
}

#[tonic::async_trait]
impl<E: StoreEngine> thanos::store_server::Store for StoreApi<E> {
    /// The legacy discovery call of queriers before v0.37.
    async fn info(
        &self,
        _: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        let i = self.store.info().map_err(status)?;
        Ok(Response::new(thanos::InfoResponse {
            labels: i
                .label_sets
                .first()
                .map(labels_to_proto)
                .unwrap_or_default(),
            min_time: i.min_time,
            max_time: i.max_time,
            store_type: match self.store.component() {
                Component::Store => thanos::StoreType::Store,
                Component::Sidecar => thanos::StoreType::Sidecar,
            } as i32,
            label_sets: i
                .label_sets
                .iter()
                .map(|l| thanos::LabelSet {
                    labels: labels_to_proto(l),
                })
                .collect(),
        }))
    }

    type SeriesStream = BoxStream<'static, ReplyFrame>;

    async fn series(
        &self,
        request: Request<thanos::SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        let query = series_query(&r);
        if query.is_err() {
            self.observe("Series", started, &query);
        }
        let query = query?;
        let batch_size = r.response_batch_size.max(1) as usize;
        let permit = self
            .series_gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("shutting down"))?;
        if let Some(frames) = self.series_in_place(&query, batch_size, started) {
            drop(permit);
            self.observe("Series", started, &Ok(()));
            return Ok(Response::new(stream::iter(frames).boxed()));
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (start, head) = oneshot::channel();
        let api = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut reply = ReplySender::new(start, tx);
            let outcome = run_series(&*api.store, &query, batch_size, started, &mut |f| {
                reply.send(Ok(thanos::SeriesResponse { result: Some(f) }))
            })
            .map_err(status);
            if let Err(st) = &outcome {
                reply.send(Err(st.clone()));
            }
            reply.finish();
            api.observe("Series", started, &outcome);
        });
        // A query thread that panicked dropped its sender before starting the reply.
        let head = head
            .await
            .map_err(|_| Status::internal("query task failed"))?;
        let rest = ReceiverStream::new(rx).flat_map(stream::iter);
        Ok(Response::new(stream::iter(head).chain(rest).boxed()))
    }

    async fn label_names(
        &self,
        request: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        let r = request.into_inner();
        let h: hintspb::LabelNamesRequestHints = hints(&r.hints, "hintspb.LabelNamesRequestHints")?;
        let q = labels_query(
            (r.start, r.end),
            &r.matchers,
            r.without_replica_labels,
            r.limit,
            &h.block_matchers,
            (r.partial_response_disabled, r.partial_response_strategy),
        )?;
        let store = self.store.clone();
        let started = Instant::now();
        let r = blocking(move || store.label_names(&q)).await;
        self.observe("LabelNames", started, &r);
        let (names, warnings) = r?;
        Ok(Response::new(thanos::LabelNamesResponse {
            names,
            warnings,
            hints: None,
        }))
    }

    async fn label_values(
        &self,
        request: Request<thanos::LabelValuesRequest>,
    ) -> Result<Response<thanos::LabelValuesResponse>, Status> {
        let r = request.into_inner();
        if r.label.is_empty() {
            return Err(Status::invalid_argument("label name is required"));
        }
        let h: hintspb::LabelValuesRequestHints =
            hints(&r.hints, "hintspb.LabelValuesRequestHints")?;
        let q = labels_query(
            (r.start, r.end),
            &r.matchers,
            r.without_replica_labels,
            r.limit,
            &h.block_matchers,
            (r.partial_response_disabled, r.partial_response_strategy),
        )?;
        let store = self.store.clone();
        let label = r.label;
        let started = Instant::now();
        let r = blocking(move || store.label_values(&label, &q)).await;
        self.observe("LabelValues", started, &r);
        let (values, warnings) = r?;
        Ok(Response::new(thanos::LabelValuesResponse {
            values,
            warnings,
            hints: None,
        }))
    }
}
