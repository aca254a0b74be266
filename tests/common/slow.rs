//! The slow bucket every e2e test can use, and the prober that checks a server's probes
//! answer in time whatever the server is doing.
//!
//! - [`SlowS3`]: the real S3 test server (s3s-fs) behind `stele::bench::proxy::LatencyProxy`,
//!   which delays each request and can stall all traffic (and counts requests in flight, so a
//!   test can prove its stall hit one).
//! - [`Prober`]: from a server's start, scrapes `/metrics`, `/-/healthy` and `/-/ready` and
//!   calls gRPC Info every few milliseconds, timing each answer.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele::bench::proxy::LatencyProxy;

use super::{promtool, run, S3Server};

/// s3s-fs behind a latency proxy: objects are uploaded straight to the server (fast), the
/// component under test reads them through the proxy (slow).
pub struct SlowS3 {
    pub s3: S3Server,
    pub proxy: LatencyProxy,
}

impl SlowS3 {
    pub fn start(latency: Duration) -> Self {
        let s3 = S3Server::start();
        let upstream: SocketAddr = s3.endpoint.parse().unwrap();
        let proxy = LatencyProxy::start(upstream, latency).expect("starting the latency proxy");
        SlowS3 { s3, proxy }
    }

    /// Thanos objstore YAML for the bucket seen through the proxy.
    pub fn objstore_yaml(&self) -> String {
        self.s3.objstore_yaml_at(&self.proxy.addr().to_string(), "")
    }

    /// Stalls the bucket once a request is in flight through the proxy (so the stall is seen
    /// to hit one), keeps it stalled for `hold`, and resumes it; returns how many requests
    /// were held.
    pub fn stall_one_in_flight(&self, hold: Duration) -> u64 {
        stall_when_in_flight(&self.proxy);
        let started = Instant::now();
        while started.elapsed() < hold {
            std::thread::sleep(Duration::from_millis(10));
        }
        let held = self.proxy.in_flight();
        assert!(
            held > 0,
            "the stalled requests were answered during the stall"
        );
        self.proxy.resume();
        held
    }
}

/// Stalls `proxy` at a moment a request is in flight through it (the stall is then seen to
/// hold one), waiting up to a minute for one to go through; it stays stalled.
pub fn stall_when_in_flight(proxy: &LatencyProxy) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proxy.stall();
        if proxy.in_flight() > 0 {
            return;
        }
        proxy.resume();
        assert!(
            Instant::now() < deadline,
            "no request went through the proxy to be stalled"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Blocks made by promtool: `instances` node-exporter-like hosts (`job="node"`: CPU seconds
/// per cpu and mode, filesystem bytes) and API counters (`job="api"`), over `hours` hours at
/// one sample a minute, so `hours / 2` two-hour blocks.
pub fn promtool_blocks(dir: &Path, instances: usize, hours: i64) -> usize {
    use std::fmt::Write;
    let start_s: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z, a block boundary
    let mut series = Vec::new();
    for i in 0..instances {
        for cpu in 0..4 {
            for mode in [
                "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
            ] {
                series.push(format!(
                    "node_cpu_seconds_total{{job=\"node\",instance=\"host-{i}\",cpu=\"{cpu}\",mode=\"{mode}\"}}"
                ));
            }
        }
        for handler in 0..30 {
            for code in ["200", "500"] {
                series.push(format!(
                    "http_requests_total{{job=\"api\",instance=\"host-{i}\",handler=\"/api/v1/h{handler}\",code=\"{code}\"}}"
                ));
            }
        }
    }
    let mut text = String::from("# TYPE node_cpu_seconds counter\n");
    let (cpu, http): (Vec<_>, Vec<_>) = series.iter().partition(|s| s.starts_with("node_cpu"));
    for (family, lines) in [("node_cpu_seconds", cpu), ("http_requests", http)] {
        if family == "http_requests" {
            text.push_str("# TYPE http_requests counter\n");
        }
        for (n, s) in lines.iter().enumerate() {
            for k in 0..hours * 60 {
                let v = (k as f64) * (1.0 + (n % 7) as f64 * 0.25);
                writeln!(text, "{s} {v} {}", start_s + k * 60).unwrap();
            }
        }
    }
    text.push_str("# EOF\n");
    let input = dir.with_extension("om");
    std::fs::write(&input, text).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    run(Command::new(promtool())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir));
    std::fs::remove_file(&input).unwrap();
    series.len()
}

/// One timed probe.
#[derive(Debug, Clone)]
pub struct Probe {
    pub target: &'static str,
    /// When it was sent, after the prober started.
    pub at: Duration,
    pub took: Duration,
    /// The HTTP status (or 0 for a gRPC answer, whatever its status), or why none came.
    pub outcome: Result<u16, String>,
}

/// Probes a server from its start until [`Prober::finish`].
pub struct Prober {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Probe>>>,
}

/// No probe waits longer than this for its answer (a hang is a failure, not a stuck test).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl Prober {
    /// Starts probing `http` (`http://host:port`) and `grpc` every `every`.
    pub fn start(http: &str, grpc: &str, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut threads = Vec::new();
        for (target, path) in [
            ("/metrics", "/metrics"),
            ("/-/healthy", "/-/healthy"),
            ("/-/ready", "/-/ready"),
        ] {
            let (stop, host) = (stop.clone(), http.trim_start_matches("http://").to_string());
            threads.push(std::thread::spawn(move || {
                let mut log = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = started.elapsed();
                    let t = Instant::now();
                    let outcome = http_status(&host, path);
                    log.push(Probe {
                        target,
                        at,
                        took: t.elapsed(),
                        outcome,
                    });
                    std::thread::sleep(every);
                }
                log
            }));
        }
        let (stop_grpc, grpc) = (stop.clone(), grpc.to_string());
        threads.push(std::thread::spawn(move || {
            let rt = super::storeapi::runtime();
            let mut log = Vec::new();
            let _guard = rt.enter();
            let channel = tonic::transport::Channel::from_shared(grpc)
                .unwrap()
                .timeout(PROBE_TIMEOUT)
                .connect_lazy();
            let mut client = stele::storeapi::client::StoreApiClient::from_channel(channel);
            while !stop_grpc.load(Ordering::Relaxed) {
                let at = started.elapsed();
                let t = Instant::now();
                let answer = rt.block_on(client.info_raw());
                let outcome = match answer {
                    Ok(_) => Ok(0),
                    // Not ready yet is an answer; no connection is not.
                    Err(s) if s.message().contains("not ready") => Ok(0),
                    Err(s) => Err(format!("{:?}: {}", s.code(), s.message())),
                };
                log.push(Probe {
                    target: "Info",
                    at,
                    took: t.elapsed(),
                    outcome,
                });
                std::thread::sleep(every);
            }
            log
        }));
        Prober { stop, threads }
    }

    pub fn finish(mut self) -> ProbeLog {
        self.stop.store(true, Ordering::Relaxed);
        ProbeLog(
            std::mem::take(&mut self.threads)
                .into_iter()
                .flat_map(|t| t.join().expect("a probe thread panicked"))
                .collect(),
        )
    }
}

/// A test that fails before [`Prober::finish`] stops the probes too.
impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every probe a [`Prober`] made.
pub struct ProbeLog(pub Vec<Probe>);

impl ProbeLog {
    /// Asserts that, from each target's first answer on (before it, the server was not
    /// listening yet), every probe was answered within `limit`; returns the slowest answer.
    pub fn assert_answered_within(&self, limit: Duration) -> Duration {
        let mut slowest = Duration::ZERO;
        let mut bad = Vec::new();
        for target in ["/metrics", "/-/healthy", "/-/ready", "Info"] {
            let probes: Vec<&Probe> = self.0.iter().filter(|p| p.target == target).collect();
            let first = probes
                .iter()
                .position(|p| p.outcome.is_ok())
                .unwrap_or_else(|| panic!("{target} never answered ({} probes)", probes.len()));
            let answered = &probes[first..];
            assert!(
                answered.len() >= 10,
                "{target}: only {} probes after the first answer",
                answered.len()
            );
            for p in answered {
                slowest = slowest.max(p.took);
                if p.outcome.is_err() || p.took > limit {
                    bad.push((*p).clone());
                }
            }
        }
        assert!(
            bad.is_empty(),
            "{} of {} probes failed or took over {limit:?}; the first ones: {:#?}",
            bad.len(),
            self.0.len(),
            &bad[..bad.len().min(10)]
        );
        slowest
    }

    /// The probes of `target` that got HTTP `status`.
    pub fn count(&self, target: &str, status: u16) -> usize {
        self.0
            .iter()
            .filter(|p| p.target == target && p.outcome == Ok(status))
            .count()
    }
}

/// One GET on a fresh connection, as a scraper without keep-alive sends it; the status.
fn http_status(host: &str, path: &str) -> Result<u16, String> {
    use std::io::{Read, Write};
    let addr: SocketAddr = host.parse().map_err(|e| format!("{host}: {e}"))?;
    // A process whose workers never accept fills its backlog: connecting then hangs too.
    let mut conn =
        std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&reply[..reply.len().min(64)]).to_string();
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))
}
