//! The HTTP endpoint every stele server exposes beside its gRPC API.
//!
//! | path         | answer                                                            |
//! |--------------|-------------------------------------------------------------------|
//! | `/metrics`   | the [`Metrics`] registry, OpenMetrics or Prometheus text by `Accept` |
//! | `/-/healthy` | 200 `OK` while the process runs (liveness); 503 once the async runtime has been stalled for a minute ([`Watchdog`]) |
//! | `/-/ready`   | 200 `OK` when [`Readiness`] says so, else 503 with the reason     |
//! | `/`          | a text page listing these                                         |
//!
//! [`HttpServer::bind`] and [`HttpServer::serve`] are separate so the caller learns the bound
//! address (port 0 in tests) and sees bind errors before anything starts serving.
//!
//! Components serve it with [`HttpServer::serve_on_own_thread`]: a runtime of its own on a
//! thread of its own, so probes and scrapes never queue behind query work on the main
//! runtime's workers, whatever those are doing. Every handler reads atomics or published
//! snapshots; none waits on a lock that query work may hold.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::{Readiness, ServerError, Shutdown, Watchdog};
use crate::metrics::{ExpositionFormat, Metrics};

/// How long [`HttpServer::serve`] waits for open connections after shutdown starts, by default.
/// Thanos' `--http-grace-period` default; the second signal or the orchestrator's kill cut it
/// short anyway.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(120);

/// What the handlers read. Cheap to clone: both handles share their state.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// Component name for the index page and logs ("store", "sidecar", ...).
    pub component: &'static str,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// The main runtime's watchdog, whose long stall fails `/-/healthy`.
    pub watchdog: Option<Watchdog>,
}

impl HttpState {
    pub fn new(component: &'static str, metrics: Metrics, readiness: Readiness) -> Self {
        HttpState {
            component,
            metrics,
            readiness,
            watchdog: None,
        }
    }

    pub fn with_watchdog(mut self, watchdog: Watchdog) -> Self {
        self.watchdog = Some(watchdog);
        self
    }
}

/// A bound, not yet serving, HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    state: HttpState,
    grace_period: Duration,
}

impl HttpServer {
    /// Binds `addr` (see [`super::parse_listen_addr`]). A taken port is a
    /// [`ServerError::Bind`] naming the address.
    /// Needs no runtime: the listener joins the one that serves it.
    pub fn bind(addr: SocketAddr, state: HttpState) -> Result<Self, ServerError> {
        let bind_err = |source| ServerError::Bind {
            what: "HTTP",
            addr,
            source,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        tracing::info!(component = state.component, address = %local_addr, "HTTP server listening");
        Ok(Self {
            listener,
            local_addr,
            state,
            grace_period: DEFAULT_GRACE_PERIOD,
        })
    }

    /// The bound address, with the real port when bound to port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sets how long to wait for open connections once shutdown starts.
    pub fn with_grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = grace_period;
        self
    }

    /// [`Self::serve`] on a thread of its own with a single-threaded runtime of its own;
    /// resolves when it has stopped.
    pub fn serve_on_own_thread(
        self,
        shutdown: Shutdown,
    ) -> Result<impl std::future::Future<Output = Result<(), ServerError>>, ServerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ServerError::Thread {
                what: "HTTP",
                source,
            })?;
        let (done, stopped) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("stele-http".into())
            .spawn(move || {
                let _ = done.send(runtime.block_on(self.serve(shutdown)));
            })
            .map_err(|source| ServerError::Thread {
                what: "HTTP",
                source,
            })?;
        Ok(async move {
            stopped.await.unwrap_or_else(|_| {
                Err(ServerError::Serve {
                    what: "HTTP",
                    source: std::io::Error::other("the HTTP thread panicked"),
                })
            })
        })
    }

    /// Serves until `shutdown` fires, then stops accepting, marks the readiness handle not
    /// ready, and waits up to the grace period for open connections to finish.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), ServerError> {
        let Self {
            listener,
            local_addr,
            state,
            grace_period,
        } = self;
        let listener = TcpListener::from_std(listener).map_err(|source| ServerError::Serve {
            what: "HTTP",
            source,
        })?;
        let readiness = state.readiness.clone();
        let drain = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.wait().await;
                // This listener is closed by now, but whatever else shares the handle (the
                // gRPC health service) must report the process as leaving while it drains.
                readiness.set_not_ready("shutting down");
                tracing::info!(address = %local_addr, "HTTP server draining");
            }
        };
        let server = axum::serve(listener, router(state))
            .with_graceful_shutdown(drain)
            .into_future();
        let deadline = async {
            shutdown.wait().await;
            tokio::time::sleep(grace_period).await;
        };
        tokio::select! {
            result = server => {
                result.map_err(|source| ServerError::Serve { what: "HTTP", source })?;
            }
            () = deadline => {
                // Dropping the server future leaves the remaining connection tasks to end with
                // the runtime, which the caller is about to shut down.
                tracing::warn!(address = %local_addr, ?grace_period,
                    "HTTP connections still open after the grace period; abandoning them");
            }
        }
        tracing::info!(address = %local_addr, "HTTP server stopped");
        Ok(())
    }
}

/// The routes, for embedding in another server or testing without a socket.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .fallback(not_found)
        .with_state(state)
}

async fn index(State(state): State<HttpState>) -> String {
    format!(
        "stele {component} {version}\n\n\
         /metrics     Prometheus metrics\n\
         /-/healthy   liveness: 200 while the process runs\n\
         /-/ready     readiness: 200 when serving, 503 and the reason before\n",
        component = state.component,
        version = env!("CARGO_PKG_VERSION"),
    )
}

async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = ExpositionFormat::negotiate(accept);
    match state.metrics.encode(format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
    }
}

async fn healthy(State(state): State<HttpState>) -> Response {
    match state.watchdog.as_ref().map(Watchdog::check_live) {
        Some(Err(reason)) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
        _ => "OK".into_response(),
    }
}

async fn ready(State(state): State<HttpState>) -> Response {
    match state.readiness.check() {
        Ok(()) => "OK".into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        )
            .into_response(),
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "404 page not found; / lists the endpoints\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    const TIMEOUT: Duration = Duration::from_secs(10);

    struct Running {
        addr: SocketAddr,
        shutdown: Shutdown,
        task: JoinHandle<Result<(), ServerError>>,
    }

    fn state() -> HttpState {
        HttpState::new("test", Metrics::new(), Readiness::new())
    }

    async fn start(state: HttpState, grace_period: Duration) -> Running {
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), state)
            .unwrap()
            .with_grace_period(grace_period);
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);
        let shutdown = Shutdown::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        Running {
            addr,
            shutdown,
            task,
        }
    }

    struct Reply {
        status: u16,
        /// Lower-cased status line and headers.
        head: String,
        body: String,
    }

    /// A one-shot HTTP/1.1 GET over a raw socket; `Connection: close` makes the body end at EOF.
    async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
        let exchange = async {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
            if let Some(accept) = accept {
                req.push_str(&format!("Accept: {accept}\r\n"));
            }
            req.push_str("\r\n");
            conn.write_all(req.as_bytes()).await.unwrap();
            let mut raw = Vec::new();
            conn.read_to_end(&mut raw).await.unwrap();
            String::from_utf8(raw).unwrap()
        };
        let text = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .expect("GET timed out");
        let (head, body) = text.split_once("\r\n\r\n").expect("no header end");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Reply {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    async fn stop(running: Running) {
        running.shutdown.trigger();
        tokio::time::timeout(TIMEOUT, running.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn metrics_show_registered_and_process_metrics() {
        let st = state();
        let hits: Counter = Counter::default();
        st.metrics
            .register("stele_test_hits", "Test hits", hits.clone())
            .unwrap();
        hits.inc_by(42);
        let running = start(st, DEFAULT_GRACE_PERIOD).await;

        let text = get(running.addr, "/metrics", None).await;
        assert_eq!(text.status, 200);
        assert!(
            text.head
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{}",
            text.head
        );
        assert!(
            text.body.contains("\nstele_test_hits_total 42\n"),
            "{}",
            text.body
        );
        assert!(text.body.contains("stele_build_info{version=\""));
        #[cfg(target_os = "linux")]
        for name in [
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "process_cpu_seconds_total ",
            "process_open_fds ",
        ] {
            assert!(text.body.contains(&format!("\n{name}")), "{name}");
        }

        // What Prometheus sends.
        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let om = get(running.addr, "/metrics", Some(accept)).await;
        assert_eq!(om.status, 200);
        assert!(
            om.head
                .contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{}",
            om.head
        );
        assert!(om.body.contains("\nstele_test_hits_total 42\n"));
        assert!(om.body.ends_with("# EOF\n"));

        // Updates after the first scrape show up in the next.
        hits.inc();
        let again = get(running.addr, "/metrics", None).await;
        assert!(again.body.contains("\nstele_test_hits_total 43\n"));
        stop(running).await;
    }

    #[tokio::test]
    async fn ready_flips_both_ways_and_healthy_stays_ok() {
        let st = state();
        let readiness = st.readiness.clone();
        let running = start(st, DEFAULT_GRACE_PERIOD).await;

        let r = get(running.addr, "/-/ready", None).await;
        assert_eq!((r.status, r.body.as_str()), (503, "not ready: starting"));
        let h = get(running.addr, "/-/healthy", None).await;
        assert_eq!((h.status, h.body.as_str()), (200, "OK"));

        readiness.set_ready();
        let r = get(running.addr, "/-/ready", None).await;
        assert_eq!((r.status, r.body.as_str()), (200, "OK"));

        readiness.set_not_ready("bucket sync failed");
        let r = get(running.addr, "/-/ready", None).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "not ready: bucket sync failed")
        );
        let h = get(running.addr, "/-/healthy", None).await;
        assert_eq!((h.status, h.body.as_str()), (200, "OK"));
        stop(running).await;
    }

    #[tokio::test]
    async fn index_lists_endpoints_and_unknown_paths_are_404() {
        let running = start(state(), DEFAULT_GRACE_PERIOD).await;
        let index = get(running.addr, "/", None).await;
        assert_eq!(index.status, 200);
        for path in ["/metrics", "/-/healthy", "/-/ready"] {
            assert!(index.body.contains(path), "{}", index.body);
        }
        assert_eq!(get(running.addr, "/nope", None).await.status, 404);
        stop(running).await;
    }

    #[tokio::test]
    async fn shutdown_stops_the_server_and_marks_it_not_ready() {
        let st = state();
        let readiness = st.readiness.clone();
        readiness.set_ready();
        let running = start(st, DEFAULT_GRACE_PERIOD).await;
        let addr = running.addr;
        assert_eq!(get(addr, "/-/healthy", None).await.status, 200);

        stop(running).await;
        assert_eq!(readiness.check(), Err("shutting down".into()));
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    /// A scraper that asks for `/metrics` and stops reading after the status line, like one
    /// that hangs mid-scrape: with a body far larger than the socket buffers, the response
    /// cannot finish, so the connection stays busy until the server gives up on it.
    async fn stuck_scrape(addr: SocketAddr) -> TcpStream {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "the scrape was answered");
        conn
    }

    /// A registry whose text exposition is about 40 MB.
    fn huge_metrics() -> HttpState {
        #[derive(
            Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet,
        )]
        struct Wide {
            series: String,
        }
        let st = state();
        let family = prometheus_client::metrics::family::Family::<Wide, Counter>::default();
        for i in 0..400_000 {
            family
                .get_or_create(&Wide {
                    series: format!("{i:0>60}"),
                })
                .inc();
        }
        st.metrics
            .register("test_wide", "Many series", family)
            .unwrap();
        st
    }

    // Paused time: the grace period elapses on tokio's clock, exactly, however busy the
    // machine is, and the assertions are on that clock.
    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_the_grace_period_for_a_stuck_client_and_no_longer() {
        let grace = Duration::from_secs(5);
        let running = start(huge_metrics(), grace).await;
        let _stuck = stuck_scrape(running.addr).await;
        let began = tokio::time::Instant::now();
        stop(running).await;
        let waited = began.elapsed();
        assert!(
            waited >= grace && waited < grace + Duration::from_millis(100),
            "stopped after {waited:?} with a client stuck, grace period {grace:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_without_open_requests_does_not_wait_for_the_grace_period() {
        let grace = Duration::from_secs(5);
        let running = start(state(), grace).await;
        assert_eq!(get(running.addr, "/-/healthy", None).await.status, 200);
        let began = tokio::time::Instant::now();
        stop(running).await;
        let waited = began.elapsed();
        assert!(
            waited < Duration::from_millis(100),
            "stopped after {waited:?}"
        );
    }

    #[tokio::test]
    async fn port_in_use_is_a_bind_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = HttpServer::bind(addr, state()).unwrap_err();
        match &err {
            ServerError::Bind { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
            }
            other => panic!("expected a bind error, got {other:?}"),
        }
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
