//! A small synchronous memcached client (text protocol over `std::net`), made for the index
//! cache's second level: multi-get in one round trip per server and batch, sets from a bounded
//! background queue, a timeout on every socket operation, and failures that become misses.
//!
//! Callers run on blocking threads (never on async workers): every call may wait on the
//! network for up to the configured timeout.
//!
//! Keys go to servers by jump consistent hashing, as in Thanos, so adding a server moves few
//! keys; a multi-get asks the servers concerned in parallel. A server that failed with a network error or a timeout is skipped for
//! [`MemcachedConfig::down_backoff`] (a second), so an unreachable memcached costs each query at most one timeout a second
//! rather than one per lookup.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use super::config::MemcachedConfig;
use crate::metrics::{Metrics, MetricsError};

/// memcached's own limit on key length.
pub const MAX_KEY_LEN: usize = 250;
/// Relative expiry times beyond this are taken by memcached as absolute Unix times.
const MAX_RELATIVE_EXPIRY: u64 = 30 * 24 * 3600;
/// At most one warning per this long per client; the others are counted in the next one.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub const OP_GET_MULTI: &str = "getmulti";
pub const OP_SET: &str = "set";

#[derive(Debug, thiserror::Error)]
pub enum MemcachedError {
    #[error("timed out")]
    Timeout,
    #[error("network error: {0}")]
    Network(std::io::Error),
    #[error("server error: {0}")]
    Server(String),
    #[error("malformed key {0:?}")]
    MalformedKey(String),
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

impl From<std::io::Error> for MemcachedError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                MemcachedError::Timeout
            }
            _ => MemcachedError::Network(e),
        }
    }
}

impl MemcachedError {
    /// The `reason` label of the failure counter (Thanos' reasons).
    pub fn reason(&self) -> &'static str {
        match self {
            MemcachedError::Timeout => "timeout",
            MemcachedError::Network(_) => "network-error",
            MemcachedError::Server(_) => "server-error",
            MemcachedError::MalformedKey(_) => "malformed-key",
            MemcachedError::Protocol(_) => "other",
        }
    }

    /// Whether the server should be skipped for a while.
    fn server_unreachable(&self) -> bool {
        matches!(self, MemcachedError::Timeout | MemcachedError::Network(_))
    }
}

/// A key memcached accepts: 1 to 250 bytes, no spaces or control characters.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b > b' ' && b != 0x7f)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    operation: &'static str,
    reason: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0,
    ])
}

/// The client's figures (`stele_memcached_*` for the index cache), registered with
/// [`MemcachedMetrics::register`].
#[derive(Debug, Clone)]
pub struct MemcachedMetrics {
    operations: Family<OpLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    skipped: Family<ReasonLabels, Counter>,
    duration: Family<OpLabels, Histogram, fn() -> Histogram>,
    queued: Gauge,
}

impl Default for MemcachedMetrics {
    fn default() -> Self {
        let m = MemcachedMetrics {
            operations: Family::default(),
            failures: Family::default(),
            skipped: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            queued: Gauge::default(),
        };
        // Every series exists from the start, so rates work from the first scrape.
        for operation in [OP_GET_MULTI, OP_SET] {
            let _ = m.operations.get_or_create(&OpLabels { operation });
            let _ = m.duration.get_or_create(&OpLabels { operation });
            for reason in [
                "timeout",
                "network-error",
                "server-error",
                "malformed-key",
                "other",
            ] {
                let _ = m
                    .failures
                    .get_or_create(&ReasonLabels { operation, reason });
            }
        }
        for (operation, reason) in [
            (OP_GET_MULTI, "server-down"),
            (OP_SET, "max-item-size"),
            (OP_SET, "async-buffer-full"),
            (OP_SET, "server-down"),
        ] {
            let _ = m.skipped.get_or_create(&ReasonLabels { operation, reason });
        }
        m
    }
}

impl MemcachedMetrics {
    /// Registers the figures as `<prefix>_operations`, ...: `stele_memcached` for the index
    /// cache's client, `stele_chunk_cache_memcached` for the chunk cache's.
    pub fn register(&self, metrics: &Metrics, prefix: &str) -> Result<(), MetricsError> {
        metrics.register(
            &format!("{prefix}_operations"),
            "Operations sent to memcached",
            self.operations.clone(),
        )?;
        metrics.register(
            &format!("{prefix}_operation_failures"),
            "Operations against memcached that failed, by reason",
            self.failures.clone(),
        )?;
        metrics.register(
            &format!("{prefix}_operation_skipped"),
            "Operations not sent to memcached: item too large, async queue full, server down",
            self.skipped.clone(),
        )?;
        metrics.register_with_unit(
            &format!("{prefix}_operation_duration"),
            "Duration of operations against memcached",
            Unit::Seconds,
            self.duration.clone(),
        )?;
        metrics.register(
            &format!("{prefix}_async_queue_items"),
            "Items waiting in the queue of background sets",
            self.queued.clone(),
        )
    }

    pub fn operations(&self, operation: &'static str) -> u64 {
        self.operations.get_or_create(&OpLabels { operation }).get()
    }

    pub fn failures(&self, operation: &'static str, reason: &'static str) -> u64 {
        self.failures
            .get_or_create(&ReasonLabels { operation, reason })
            .get()
    }

    pub fn skipped(&self, operation: &'static str, reason: &'static str) -> u64 {
        self.skipped
            .get_or_create(&ReasonLabels { operation, reason })
            .get()
    }

    /// Sets queued and not yet done.
    pub fn queued(&self) -> i64 {
        self.queued.get()
    }

    fn skip(&self, operation: &'static str, reason: &'static str) {
        self.skipped
            .get_or_create(&ReasonLabels { operation, reason })
            .inc();
    }
}

/// Warnings at most every [`LOG_EVERY`], with how many were held back.
#[derive(Debug, Default)]
struct LogLimiter {
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl LogLimiter {
    fn warn(&self, operation: &str, server: &str, e: &MemcachedError) {
        let mut last = self.last.lock();
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        drop(last);
        let held_back = self.held_back.swap(0, Ordering::Relaxed);
        tracing::warn!(operation, server, error = %e, similar_warnings_held_back = held_back,
            "memcached operation failed; treating it as a cache miss");
    }
}

/// An open connection to one server.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    fn connect(addr: &str, timeout: Duration) -> Result<Conn, MemcachedError> {
        let host_port = addr.strip_prefix("dns+").unwrap_or(addr);
        let mut last_err = None;
        for sa in host_port.to_socket_addrs()? {
            match TcpStream::connect_timeout(&sa, timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    s.set_nodelay(true)?;
                    return Ok(Conn {
                        stream: BufReader::with_capacity(64 * 1024, s),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| std::io::Error::other(format!("{host_port} resolves to nothing")))
            .into())
    }

    fn line(&mut self) -> Result<String, MemcachedError> {
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(MemcachedError::Network(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            )));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        for prefix in ["SERVER_ERROR", "CLIENT_ERROR", "ERROR"] {
            if line.starts_with(prefix) {
                return Err(MemcachedError::Server(line));
            }
        }
        Ok(line)
    }

    /// One `get` with all `keys`: the values found, by key.
    fn get(&mut self, keys: &[&str]) -> Result<HashMap<String, Bytes>, MemcachedError> {
        let mut cmd = Vec::with_capacity(4 + keys.iter().map(|k| k.len() + 1).sum::<usize>() + 2);
        cmd.extend_from_slice(b"get");
        for k in keys {
            cmd.push(b' ');
            cmd.extend_from_slice(k.as_bytes());
        }
        cmd.extend_from_slice(b"\r\n");
        self.stream.get_mut().write_all(&cmd)?;
        let mut found = HashMap::with_capacity(keys.len());
        loop {
            let line = self.line()?;
            if line == "END" {
                return Ok(found);
            }
            // VALUE <key> <flags> <bytes>
            let mut parts = line.split(' ');
            let (Some("VALUE"), Some(key), Some(_flags), Some(len)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(MemcachedError::Protocol(line));
            };
            let len: usize = len
                .parse()
                .map_err(|_| MemcachedError::Protocol(line.clone()))?;
            let mut data = vec![0u8; len + 2];
            self.stream.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(MemcachedError::Protocol(format!(
                    "{line}: no CRLF after the data"
                )));
            }
            data.truncate(len);
            found.insert(key.to_string(), Bytes::from(data));
        }
    }

    fn set(&mut self, key: &str, value: &[u8], expiry: u64) -> Result<(), MemcachedError> {
        let mut cmd = format!("set {key} 0 {expiry} {}\r\n", value.len()).into_bytes();
        cmd.reserve(value.len() + 2);
        cmd.extend_from_slice(value);
        cmd.extend_from_slice(b"\r\n");
        self.stream.get_mut().write_all(&cmd)?;
        match self.line()?.as_str() {
            "STORED" => Ok(()),
            other => Err(MemcachedError::Protocol(other.to_string())),
        }
    }
}

struct Server {
    addr: String,
    idle: Mutex<Vec<Conn>>,
    down_until: Mutex<Option<Instant>>,
}

impl Server {
    fn is_down(&self) -> bool {
        let mut d = self.down_until.lock();
        match *d {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *d = None;
                false
            }
            None => false,
        }
    }
}

/// Bounds concurrent multi-gets (`max_get_multi_concurrency`; 0: unbounded).
struct Gate {
    limit: usize,
    in_use: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    fn enter(&self) -> GatePass<'_> {
        if self.limit > 0 {
            let mut n = self.in_use.lock();
            while *n >= self.limit {
                self.freed.wait(&mut n);
            }
            *n += 1;
        }
        GatePass(self)
    }
}

struct GatePass<'a>(&'a Gate);

impl Drop for GatePass<'_> {
    fn drop(&mut self) {
        if self.0.limit > 0 {
            *self.0.in_use.lock() -= 1;
            self.0.freed.notify_one();
        }
    }
}

struct Inner {
    config: MemcachedConfig,
    servers: Vec<Server>,
    gate: Gate,
    metrics: MemcachedMetrics,
    log: LogLimiter,
    pending: Mutex<HashMap<String, PendingSet>>,
}

/// A background set not yet acknowledged by memcached. Gets see it first, so this process
/// reads what it wrote even before memcached has it: a read-modify-write (a series page filled
/// by successive requests) never starts from an older value and drops entries, and two sets of
/// one key never land out of order (one job per key, always writing the newest value).
struct PendingSet {
    value: Bytes,
    expiry: Duration,
    version: u64,
}

/// The client. Dropping it stops the background setters once their queue is drained.
pub struct MemcachedClient {
    inner: Arc<Inner>,
    /// Keys with a [`PendingSet`] and no setter on them yet.
    queue: Sender<String>,
}

impl std::fmt::Debug for MemcachedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedClient")
            .field("addresses", &self.inner.config.addresses)
            .finish_non_exhaustive()
    }
}

impl MemcachedClient {
    /// A client of the servers in `config`. Connections open on first use, so a memcached
    /// that is down at start does not stop the store from starting.
    pub fn new(config: MemcachedConfig, metrics: MemcachedMetrics) -> MemcachedClient {
        let inner = Arc::new(Inner {
            servers: config
                .addresses
                .iter()
                .map(|addr| Server {
                    addr: addr.clone(),
                    idle: Mutex::new(Vec::new()),
                    down_until: Mutex::new(None),
                })
                .collect(),
            gate: Gate {
                limit: config.max_get_multi_concurrency,
                in_use: Mutex::new(0),
                freed: Condvar::new(),
            },
            metrics,
            log: LogLimiter::default(),
            pending: Mutex::new(HashMap::new()),
            config,
        });
        let (queue, jobs) = bounded(inner.config.max_async_buffer_size);
        for i in 0..inner.config.max_async_concurrency.max(1) {
            let inner = inner.clone();
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("memcached-set-{i}"))
                .spawn(move || inner.run_setter(&jobs))
                .expect("spawning a memcached setter thread");
        }
        MemcachedClient { inner, queue }
    }

    pub fn metrics(&self) -> &MemcachedMetrics {
        &self.inner.metrics
    }

    pub fn config(&self) -> &MemcachedConfig {
        &self.inner.config
    }

    /// The values of `keys`, in order; `None` for misses and for keys whose server failed
    /// (counted and logged, never an error to the caller).
    pub fn get_multi(&self, keys: &[&str]) -> Vec<Option<Bytes>> {
        let mut out: Vec<Option<Bytes>> = {
            let pending = self.inner.pending.lock();
            keys.iter()
                .map(|k| pending.get(*k).map(|p| p.value.clone()))
                .collect()
        };
        let asked: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if asked.len() == keys.len() {
            return self.inner.get_multi(keys);
        }
        let rest: Vec<&str> = asked.iter().map(|&i| keys[i]).collect();
        for (i, value) in asked.into_iter().zip(self.inner.get_multi(&rest)) {
            out[i] = value;
        }
        out
    }

    /// Stores `value` under `key` in the background. Dropped (and counted) when it is larger
    /// than `max_item_size` or the queue is full: a put never waits.
    pub fn set_async(&self, key: String, value: Bytes, expiry: Duration) {
        let m = &self.inner.metrics;
        let max = self.inner.config.max_item_size;
        if max > 0 && value.len() as u64 > max {
            m.skip(OP_SET, "max-item-size");
            return;
        }
        let mut pending = self.inner.pending.lock();
        if let Some(p) = pending.get_mut(&key) {
            // Its setter has not written it yet, or will write again: it takes the newest.
            *p = PendingSet {
                value,
                expiry,
                version: p.version + 1,
            };
            return;
        }
        if pending.len() >= self.inner.config.max_async_buffer_size {
            m.skip(OP_SET, "async-buffer-full");
            return;
        }
        match self.queue.try_send(key.clone()) {
            Ok(()) => {
                let version = 0;
                pending.insert(
                    key,
                    PendingSet {
                        value,
                        expiry,
                        version,
                    },
                );
                m.queued.inc();
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                m.skip(OP_SET, "async-buffer-full");
            }
        }
    }

    /// Stores `value` under `key` now.
    pub fn set(&self, key: &str, value: &[u8], expiry: Duration) -> Result<(), MemcachedError> {
        self.inner.set(key, value, expiry)
    }
}

impl Inner {
    fn server_of(&self, key: &str) -> usize {
        jump_hash(
            xxhash_rust::xxh64::xxh64(key.as_bytes(), 0),
            self.servers.len(),
        )
    }

    /// Runs `op` on an idle connection to `server` (or a new one). A pooled connection that
    /// fails with a network error may have been closed by a restarted server: the operation is
    /// tried once more on a fresh connection.
    fn with_conn<T>(
        &self,
        server: &Server,
        mut op: impl FnMut(&mut Conn) -> Result<T, MemcachedError>,
    ) -> Result<T, MemcachedError> {
        let pooled = server.idle.lock().pop();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn::connect(&server.addr, self.config.timeout)?,
        };
        let mut result = op(&mut conn);
        if reused && matches!(result, Err(MemcachedError::Network(_))) {
            conn = Conn::connect(&server.addr, self.config.timeout)?;
            result = op(&mut conn);
        }
        // After any error the connection's state is unknown: it is closed.
        if result.is_ok() {
            let mut idle = server.idle.lock();
            if idle.len() < self.config.max_idle_connections {
                idle.push(conn);
            }
        }
        result
    }

    fn failed(&self, operation: &'static str, server: &Server, e: &MemcachedError) {
        self.metrics
            .failures
            .get_or_create(&ReasonLabels {
                operation,
                reason: e.reason(),
            })
            .inc();
        if e.server_unreachable() {
            *server.down_until.lock() = Some(Instant::now() + self.config.down_backoff);
            server.idle.lock().clear();
        }
        self.log.warn(operation, &server.addr, e);
    }

    /// Asks each server for its keys, the servers in parallel when there are several.
    fn get_multi(&self, keys: &[&str]) -> Vec<Option<Bytes>> {
        let mut out = vec![None; keys.len()];
        if keys.is_empty() || self.servers.is_empty() {
            return out;
        }
        let _pass = self.gate.enter();
        let mut by_server: Vec<Vec<usize>> = vec![Vec::new(); self.servers.len()];
        for (i, k) in keys.iter().enumerate() {
            by_server[self.server_of(k)].push(i);
        }
        let jobs: Vec<(&Server, Vec<usize>)> = self
            .servers
            .iter()
            .zip(by_server)
            .filter(|(_, wanted)| !wanted.is_empty())
            .collect();
        let found: Vec<Vec<(usize, Bytes)>> = if jobs.len() == 1 {
            vec![self.get_from(jobs[0].0, &jobs[0].1, keys)]
        } else {
            std::thread::scope(|scope| {
                let running: Vec<_> = jobs
                    .iter()
                    .map(|(server, wanted)| scope.spawn(|| self.get_from(server, wanted, keys)))
                    .collect();
                running
                    .into_iter()
                    .map(|r| r.join().unwrap_or_default())
                    .collect()
            })
        };
        for (i, value) in found.into_iter().flatten() {
            out[i] = Some(value);
        }
        out
    }

    /// The values of `keys[i]` for the `wanted` indexes that `server` has, a batch of
    /// `max_get_multi_batch_size` keys per round trip.
    fn get_from(&self, server: &Server, wanted: &[usize], keys: &[&str]) -> Vec<(usize, Bytes)> {
        let mut out = Vec::new();
        if server.is_down() {
            self.metrics.skip(OP_GET_MULTI, "server-down");
            return out;
        }
        let batch = match self.config.max_get_multi_batch_size {
            0 => usize::MAX,
            n => n,
        };
        let op = OpLabels {
            operation: OP_GET_MULTI,
        };
        for chunk in wanted.chunks(batch) {
            let chunk_keys: Vec<&str> = chunk.iter().map(|&i| keys[i]).collect();
            if let Some(bad) = chunk_keys.iter().find(|k| !is_valid_key(k)) {
                let e = MemcachedError::MalformedKey(bad.to_string());
                self.failed(OP_GET_MULTI, server, &e);
                continue;
            }
            let start = Instant::now();
            self.metrics.operations.get_or_create(&op).inc();
            match self.with_conn(server, |c| c.get(&chunk_keys)) {
                Ok(mut found) => {
                    let seconds = start.elapsed().as_secs_f64();
                    self.metrics.duration.get_or_create(&op).observe(seconds);
                    out.extend(
                        chunk
                            .iter()
                            .filter_map(|&i| found.remove(keys[i]).map(|v| (i, v))),
                    );
                }
                Err(e) => {
                    self.failed(OP_GET_MULTI, server, &e);
                    if e.server_unreachable() {
                        break;
                    }
                }
            }
        }
        out
    }

    fn set(&self, key: &str, value: &[u8], expiry: Duration) -> Result<(), MemcachedError> {
        let server = &self.servers[self.server_of(key)];
        let result = if !is_valid_key(key) {
            Err(MemcachedError::MalformedKey(key.to_string()))
        } else if server.is_down() {
            self.metrics.skip(OP_SET, "server-down");
            return Ok(());
        } else {
            let start = Instant::now();
            self.metrics
                .operations
                .get_or_create(&OpLabels { operation: OP_SET })
                .inc();
            let expiry = memcached_expiry(expiry);
            let r = self.with_conn(server, |c| c.set(key, value, expiry));
            if r.is_ok() {
                self.metrics
                    .duration
                    .get_or_create(&OpLabels { operation: OP_SET })
                    .observe(start.elapsed().as_secs_f64());
            }
            r
        };
        if let Err(e) = &result {
            self.failed(OP_SET, server, e);
        }
        result
    }

    /// A setter thread: takes jobs until the client is dropped (the queue is then drained).
    /// A key's pending set is removed once memcached has its newest value.
    fn run_setter(&self, jobs: &Receiver<String>) {
        for key in jobs {
            loop {
                let Some((value, expiry, version)) = self
                    .pending
                    .lock()
                    .get(&key)
                    .map(|p| (p.value.clone(), p.expiry, p.version))
                else {
                    break;
                };
                let _ = self.set(&key, &value, expiry);
                let mut pending = self.pending.lock();
                if pending.get(&key).is_some_and(|p| p.version == version) {
                    pending.remove(&key);
                    self.metrics.queued.dec();
                    break;
                }
            }
        }
    }
}

/// memcached's expiry field: seconds from now up to 30 days, a Unix time beyond.
fn memcached_expiry(ttl: Duration) -> u64 {
    let secs = ttl.as_secs().max(1);
    if secs <= MAX_RELATIVE_EXPIRY {
        return secs;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now + secs
}

/// Jump consistent hash (Lamping and Veach, 2014): the bucket in `0..buckets` of `key`.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_memcached_accepts() {
        assert!(is_valid_key("stele2:S:01ARZ3NDEKTSV4RRFFQ69G5FAV:42"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("a b"));
        assert!(!is_valid_key("a\nb"));
        assert!(!is_valid_key(&"k".repeat(251)));
        assert!(is_valid_key(&"k".repeat(250)));
    }

    #[test]
    fn jump_hash_spreads_and_moves_few_keys() {
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for k in 0..30_000u64 {
            let h = xxhash_rust::xxh64::xxh64(&k.to_le_bytes(), 0);
            let b3 = jump_hash(h, 3);
            counts[b3] += 1;
            let b4 = jump_hash(h, 4);
            if b4 != b3 {
                assert_eq!(b4, 3, "keys only move to the new server");
                moved += 1;
            }
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        assert!((6_500..8_500).contains(&moved), "{moved}");
        assert_eq!(jump_hash(123, 1), 0);
    }

    #[test]
    fn expiry_is_relative_up_to_30_days() {
        assert_eq!(memcached_expiry(Duration::from_secs(3600)), 3600);
        assert_eq!(memcached_expiry(Duration::ZERO), 1);
        assert!(memcached_expiry(Duration::from_secs(60 * 24 * 3600)) > 1_700_000_000);
    }
}
