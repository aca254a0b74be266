//! A TCP proxy that makes a bucket on loopback behave like a remote one: every request waits
//! a set latency before it goes on, and a switch stalls all traffic until it is flipped back.
//!
//! `stele bench` puts it in front of the S3 test server (`--bucket-latency`), and the e2e
//! tests use it as their slow bucket. It knows no HTTP: on each connection, the first bytes
//! the client sends after the server last answered (or after connecting) start a request,
//! which is held for the latency; the first bytes back end it. HTTP/1.1 clients (object_store
//! among them) send one request at a time per connection, so that is one latency per request,
//! whatever its size, as with a real round trip to a far bucket.
//!
//! It runs on a runtime and a thread of its own, so it answers whatever the process under test
//! is doing, and counts what it sees: requests started, answered, and in flight, which is how
//! a fault test proves its fault hit a request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy saw, and its switches.
#[derive(Debug)]
struct Control {
    latency_us: AtomicU64,
    /// Stalled: nothing moves in either direction.
    stalled: watch::Sender<bool>,
    requests: AtomicU64,
    answered: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU64,
    /// Requests in flight now, all and by [`ObjectKind`].
    in_flight: AtomicU64,
    in_flight_by_kind: [AtomicU64; 3],
    /// Round trips: the times the bucket went from no request in flight to one, all and by
    /// kind (an index round trip is one where an index request started with none in flight).
    round_trips: AtomicU64,
    round_trips_by_kind: [AtomicU64; 3],
    stop: AtomicBool,
}

/// What a request asks for, from its request line: a block's index, its chunk segments, or
/// anything else (meta.json, listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Index = 0,
    Chunks = 1,
    Other = 2,
}

impl ObjectKind {
    /// The kind of the request whose first bytes are `head`.
    fn of_request(head: &[u8]) -> Self {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        let path = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
        let path = path.split(|&b| b == b'?').next().unwrap_or_default();
        if path.ends_with(b"/index") {
            ObjectKind::Index
        } else if path.windows(8).any(|w| w == b"/chunks/") {
            ObjectKind::Chunks
        } else {
            ObjectKind::Other
        }
    }
}

/// Round trips to the bucket counted by the proxy (see [`LatencyProxy::round_trips`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoundTrips {
    pub all: u64,
    pub index: u64,
    pub chunks: u64,
    pub other: u64,
}

impl std::ops::Sub for RoundTrips {
    type Output = RoundTrips;
    fn sub(self, o: RoundTrips) -> RoundTrips {
        RoundTrips {
            all: self.all - o.all,
            index: self.index - o.index,
            chunks: self.chunks - o.chunks,
            other: self.other - o.other,
        }
    }
}

impl Control {
    fn started(&self, kind: ObjectKind) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.round_trips.fetch_add(1, Ordering::Relaxed);
        }
        if self.in_flight_by_kind[kind as usize].fetch_add(1, Ordering::SeqCst) == 0 {
            self.round_trips_by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn answered(&self, kind: ObjectKind) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.in_flight_by_kind[kind as usize].fetch_sub(1, Ordering::SeqCst);
    }
}

impl Control {
    async fn until_flowing(&self) {
        let mut rx = self.stalled.subscribe();
        let _ = rx.wait_for(|stalled| !*stalled).await;
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct LatencyProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: Arc<Control>,
    /// Dropping it ends the proxy's runtime, and every connection with it.
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LatencyProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream`, each request `latency` late.
    pub fn start(upstream: SocketAddr, latency: Duration) -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0".parse().expect("a valid address"),
            upstream,
            latency,
        )
    }

    /// As [`Self::start`], listening on `listen`.
    pub fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        latency: Duration,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control {
            latency_us: AtomicU64::new(latency.as_micros() as u64),
            stalled: watch::channel(false).0,
            requests: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            in_flight_by_kind: Default::default(),
            round_trips: AtomicU64::new(0),
            round_trips_by_kind: Default::default(),
            stop: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let c = control.clone();
        std::thread::Builder::new()
            .name("latency-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept(listener, upstream, c) => {}
                        _ = stopped => {}
                    }
                })
            })?;
        Ok(LatencyProxy {
            addr,
            upstream,
            control,
            _stop: Some(stop),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn set_latency(&self, latency: Duration) {
        self.control
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.control.latency_us.load(Ordering::Relaxed))
    }

    /// Holds every byte in both directions (connections stay open) until
    /// [`Self::resume`]: a bucket that stops answering.
    pub fn stall(&self) {
        self.control.stalled.send_replace(true);
    }

    pub fn resume(&self) {
        self.control.stalled.send_replace(false);
    }

    pub fn is_stalled(&self) -> bool {
        *self.control.stalled.borrow()
    }

    /// Requests started (their first bytes reached the proxy).
    pub fn requests(&self) -> u64 {
        self.control.requests.load(Ordering::Relaxed)
    }

    /// Requests whose answer began.
    pub fn answered(&self) -> u64 {
        self.control.answered.load(Ordering::Relaxed)
    }

    /// Requests started and not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.requests().saturating_sub(self.answered())
    }

    /// Bytes client to server, and back.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.control.bytes_up.load(Ordering::Relaxed),
            self.control.bytes_down.load(Ordering::Relaxed),
        )
    }

    pub fn connections(&self) -> u64 {
        self.control.connections.load(Ordering::Relaxed)
    }

    /// Round trips so far: each time a request started while none was in flight (a
    /// request's answer counts from its first byte). Between two readings around one
    /// request, with nothing else running, that is the round trips on its critical path:
    /// requests sent together, or while others are in flight, overlap and count once.
    pub fn round_trips(&self) -> RoundTrips {
        let c = &self.control;
        let kind = |k: ObjectKind| c.round_trips_by_kind[k as usize].load(Ordering::Relaxed);
        RoundTrips {
            all: c.round_trips.load(Ordering::Relaxed),
            index: kind(ObjectKind::Index),
            chunks: kind(ObjectKind::Chunks),
            other: kind(ObjectKind::Other),
        }
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        self.resume();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, control: Arc<Control>) {
    while !control.stop.load(Ordering::Relaxed) {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        control.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay(client, upstream, control.clone()));
    }
}

/// One connection, both ways. `awaiting` is true from a request's first byte to its answer's.
async fn relay(client: TcpStream, upstream: SocketAddr, control: Arc<Control>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // the client sees its connection closed, as with a bucket that is down
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let awaiting = Arc::new(AtomicBool::new(false));
    // The kind of the request awaiting its answer.
    let kind = Arc::new(std::sync::atomic::AtomicU8::new(ObjectKind::Other as u8));
    let up = {
        let (control, awaiting, kind) = (control.clone(), awaiting.clone(), kind.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match client_r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let starts_request = !awaiting.swap(true, Ordering::Relaxed);
                if starts_request {
                    let k = ObjectKind::of_request(&buf[..n]);
                    kind.store(k as u8, Ordering::Relaxed);
                    control.started(k);
                }
                control.until_flowing().await;
                if starts_request {
                    let latency = control.latency_us.load(Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_micros(latency)).await;
                    control.until_flowing().await;
                }
                control.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
                if server_w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = server_w.shutdown().await;
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            quick_ack(server_r.as_ref());
            let n = match server_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            control.until_flowing().await;
            if awaiting.swap(false, Ordering::Relaxed) {
                control.answered(match kind.load(Ordering::Relaxed) {
                    0 => ObjectKind::Index,
                    1 => ObjectKind::Chunks,
                    _ => ObjectKind::Other,
                });
            }
            control.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
            if client_w.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_w.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Acknowledges what the server sends at once instead of up to 40 ms later: a server that
/// writes its headers and its body apart (s3s-fs does) would otherwise wait for that delayed
/// ACK before sending the body (Nagle's algorithm), adding latency the proxy does not intend.
/// Linux resets the flag as it goes, so it is set before every read.
fn quick_ack(socket: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on an open socket with a valid pointer to an int of its size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// An echo server answering each line with the line.
    fn echo() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn exchange(conn: &mut std::net::TcpStream, msg: &[u8]) -> Vec<u8> {
        conn.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        conn.read_exact(&mut got).unwrap();
        got
    }

    #[test]
    fn tells_objects_apart_by_request_line() {
        let kind = |line: &str| ObjectKind::of_request(line.as_bytes());
        assert_eq!(
            kind("GET /b/01ARZ/index HTTP/1.1\r\nRange: x"),
            ObjectKind::Index
        );
        assert_eq!(
            kind("GET /b/01ARZ/chunks/000001 HTTP/1.1\r\n"),
            ObjectKind::Chunks
        );
        assert_eq!(
            kind("GET /b/01ARZ/meta.json HTTP/1.1\r\n"),
            ObjectKind::Other
        );
        assert_eq!(
            kind("GET /b?list-type=2&prefix=x/index HTTP/1.1\r\n"),
            ObjectKind::Other
        );
        assert_eq!(kind(""), ObjectKind::Other);
    }

    #[test]
    fn counts_requests_and_holds_traffic_while_stalled() {
        let proxy = LatencyProxy::start(echo(), Duration::from_millis(1)).unwrap();
        let mut conn = std::net::TcpStream::connect(proxy.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        for _ in 0..3 {
            assert_eq!(exchange(&mut conn, b"ping\n"), b"ping\n");
        }
        assert_eq!((proxy.requests(), proxy.answered()), (3, 3));
        assert_eq!(
            proxy.round_trips().all,
            3,
            "one after another: three round trips"
        );
        assert_eq!(proxy.bytes(), (15, 15));

        // Stalled: a request goes in, nothing comes back, and it shows as in flight...
        proxy.stall();
        conn.write_all(b"held\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while proxy.requests() < 4 {
            assert!(
                Instant::now() < deadline,
                "the request never reached the proxy"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(proxy.in_flight(), 1);
        conn.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            conn.read(&mut buf).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "nothing passes a stalled proxy"
        );
        conn.set_nonblocking(false).unwrap();
        // ... until it flows again.
        proxy.resume();
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"held\n");
        assert_eq!(proxy.in_flight(), 0);
    }
}
