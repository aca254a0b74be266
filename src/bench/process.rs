//! The processes a bench run starts: `stele store` (this very binary) and a real Prometheus,
//! on loopback ports, with their output in log files; plus reading a process' memory from
//! `/proc`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;

/// A child process killed on drop; [`Managed::stop`] asks it to finish first.
#[derive(Debug)]
pub struct Managed {
    child: Child,
    name: &'static str,
    log: PathBuf,
    /// Base URL of its HTTP endpoints.
    pub http: String,
}

impl Managed {
    fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: &Path,
        http: String,
    ) -> Result<Self, BenchError> {
        let file = std::fs::File::create(log).map_err(|e| BenchError::io(log, e))?;
        let stderr = file.try_clone().map_err(|e| BenchError::io(log, e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| BenchError::Process(format!("starting {name} ({cmd:?}): {e}")))?;
        Ok(Managed {
            child,
            name,
            log: log.to_path_buf(),
            http,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/-/ready` until it answers 200; the time since `since`.
    pub async fn wait_ready(
        &mut self,
        since: Instant,
        timeout: Duration,
    ) -> Result<Duration, BenchError> {
        let http = reqwest::Client::new();
        let url = format!("{}/-/ready", self.http);
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status().as_u16() == 200 {
                    return Ok(since.elapsed());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failed(&format!("exited with {status} before becoming ready")));
            }
            if since.elapsed() > timeout {
                return Err(self.failed(&format!("not ready after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn failed(&self, what: &str) -> BenchError {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        BenchError::Process(format!(
            "{} {what}; last lines of {}:\n{}",
            self.name,
            self.log.display(),
            tail.join("\n")
        ))
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(mut self, grace: Duration) {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills it.
    }

    /// `VmRSS` or `VmHWM` of the process, in bytes.
    pub fn memory(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status_bytes(&status, field)
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/<pid>/status` in bytes.
pub fn status_bytes(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

pub fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::Process(format!("finding a free loopback port: {e}")))
}

/// A `stele store` started from this executable.
#[derive(Debug)]
pub struct StoreProcess {
    pub process: Managed,
    pub grpc: String,
}

impl StoreProcess {
    /// Starts `stele store` over the bucket; `extra` are more `stele store` flags.
    /// `exe` is the stele binary to run (default: this one).
    pub fn spawn(
        exe: Option<&Path>,
        objstore_yaml: &str,
        data_dir: &Path,
        extra: &[String],
        log: &Path,
    ) -> Result<Self, BenchError> {
        let exe = match exe {
            Some(exe) => exe.to_path_buf(),
            None => std::env::current_exe()
                .map_err(|e| BenchError::Process(format!("finding the stele executable: {e}")))?,
        };
        let (grpc, http) = (free_port()?, free_port()?);
        let mut cmd = Command::new(exe);
        cmd.arg("store")
            .arg(format!("--objstore.config={objstore_yaml}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .args(extra);
        let process = Managed::spawn("stele store", cmd, log, format!("http://127.0.0.1:{http}"))?;
        Ok(StoreProcess {
            process,
            grpc: format!("http://127.0.0.1:{grpc}"),
        })
    }
}

/// How to get Prometheus when it is missing.
pub const PROMETHEUS_HINT: &str = "apt-get install -y --no-install-recommends prometheus";

/// A real Prometheus serving the blocks in `data_dir`, with compaction off (it must not
/// rewrite the blocks under the benchmark) and retention wide enough for dated test data.
pub fn spawn_prometheus(data_dir: &Path, log: &Path) -> Result<Managed, BenchError> {
    let binary = find_on_path("prometheus").ok_or_else(|| {
        BenchError::Process(format!(
            "--compare-prometheus needs the `prometheus` binary on PATH; install it with: {PROMETHEUS_HINT}"
        ))
    })?;
    let config = data_dir.join("bench-prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n")
        .map_err(|e| BenchError::io(&config, e))?;
    let port = free_port()?;
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data_dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .arg("--storage.tsdb.min-block-duration=2h")
        .arg("--storage.tsdb.max-block-duration=2h")
        .arg("--log.level=warn");
    Managed::spawn("prometheus", cmd, log, format!("http://127.0.0.1:{port}"))
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Makes `to` a Prometheus data directory holding the blocks of `from`: files hard-linked
/// (copied across file systems), the block directories themselves new.
pub fn link_blocks(blocks: &[PathBuf], to: &Path) -> Result<(), BenchError> {
    for block in blocks {
        let name = block
            .file_name()
            .ok_or_else(|| BenchError::Process(format!("{} has no name", block.display())))?;
        link_tree(block, &to.join(name))?;
    }
    Ok(())
}

fn link_tree(from: &Path, to: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(to).map_err(|e| BenchError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| BenchError::io(from, e))? {
        let entry = entry.map_err(|e| BenchError::io(from, e))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| BenchError::io(&entry.path(), e))?;
        if kind.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else if !target.exists() && std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target).map_err(|e| BenchError::io(&target, e))?;
        }
    }
    Ok(())
}

/// How to get s3s-fs when it is missing (what `scripts/test.sh` runs).
pub const S3S_FS_HINT: &str = "cargo install --locked s3s-fs --version 0.14.1 --features binary";

/// The S3 test server (s3s-fs) serving `blocks` (hard-linked into its data directory under
/// `work/s3`), behind a [`LatencyProxy`] adding `latency` to every request: a remote bucket on
/// loopback. Kept running while this lives.
pub struct S3TestBucket {
    _server: Managed,
    pub proxy: std::sync::Arc<super::proxy::LatencyProxy>,
    /// Bytes per second through the proxy, many GETs at once, measured at start.
    pub bandwidth: f64,
    /// Thanos objstore YAML of the bucket, through the proxy.
    pub objstore_yaml: String,
}

impl S3TestBucket {
    pub fn start(blocks: &[PathBuf], work: &Path, latency: Duration) -> Result<Self, BenchError> {
        const BUCKET: &str = "stele-bench";
        let binary = find_on_path("s3s-fs").ok_or_else(|| {
            BenchError::Process(format!(
                "--bucket=s3 needs the S3 test server `s3s-fs` on PATH; install it with: {S3S_FS_HINT}"
            ))
        })?;
        let data = work.join("s3");
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(|e| BenchError::io(&data, e))?;
        }
        let bucket_dir = data.join(BUCKET);
        std::fs::create_dir_all(&bucket_dir).map_err(|e| BenchError::io(&bucket_dir, e))?;
        let port = free_port()?;
        let mut cmd = Command::new(binary);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "bench", "--secret-key", "benchsecret"])
            .arg(&data)
            .env("RUST_LOG", "warn");
        let mut server = Managed::spawn(
            "s3s-fs",
            cmd,
            &work.join("s3s-fs.log"),
            format!("http://127.0.0.1:{port}"),
        )?;
        let upstream: std::net::SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .expect("a loopback address");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(upstream).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(server.failed(&format!("exited with {status}")));
            }
            if Instant::now() > deadline {
                return Err(server.failed("did not listen within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let yaml = |endpoint: &str| {
            format!(
                "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: {endpoint}\n  region: us-east-1\n  \
                 access_key: bench\n  secret_key: benchsecret\n  insecure: true\n"
            )
        };
        // Uploaded, not linked into its directory: s3s-fs keeps the ETag of an object it
        // was sent beside it, and hashes the whole file on every GET of one it was not
        // (tens of milliseconds per chunk read, which would be measured as the bucket's).
        let direct = crate::objstore::from_yaml(&yaml(&upstream.to_string()))
            .map_err(|e| BenchError::Process(format!("the S3 test bucket: {e}")))?;
        upload_blocks(direct, blocks)?;
        let proxy = super::proxy::LatencyProxy::start(upstream, Duration::ZERO)
            .map_err(|e| BenchError::Process(format!("starting the latency proxy: {e}")))?;
        let objstore_yaml = yaml(&proxy.addr().to_string());
        let bandwidth = measure_bandwidth(&objstore_yaml, blocks)?;
        proxy.set_latency(latency);
        Ok(S3TestBucket {
            _server: server,
            proxy: std::sync::Arc::new(proxy),
            bandwidth,
            objstore_yaml,
        })
    }
}

/// Bytes per second from the bucket of `yaml` for 16 GETs of 1 MiB at once from the
/// largest chunk segment of `blocks` (or what there is of it): the bandwidth term of the
/// bench's bucket model.
fn measure_bandwidth(yaml: &str, blocks: &[PathBuf]) -> Result<f64, BenchError> {
    let Some((key, len)) = blocks
        .iter()
        .filter_map(|b| {
            let id = b.file_name()?.to_str()?.to_string();
            let len = std::fs::metadata(b.join("chunks/000001")).ok()?.len();
            Some((format!("{id}/chunks/000001"), len))
        })
        .max_by_key(|(_, len)| *len)
    else {
        return Ok(f64::INFINITY);
    };
    let bucket = crate::objstore::from_yaml(yaml)
        .map_err(|e| BenchError::Process(format!("the S3 test bucket: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Process(format!("starting a runtime: {e}")))?;
    runtime.block_on(async {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(key);
        let part = (1u64 << 20).min(len);
        let ranges: Vec<std::ops::Range<u64>> = (0..16)
            .map(|i| {
                let start = (i * part) % (len - part + 1);
                start..start + part
            })
            .collect();
        let started = Instant::now();
        let got = futures::future::try_join_all(
            ranges.iter().map(|r| bucket.get_range(&path, r.clone())),
        )
        .await
        .map_err(|e| BenchError::Process(format!("measuring the bucket's bandwidth: {e}")))?;
        let bytes: usize = got.iter().map(|b| b.len()).sum();
        Ok(bytes as f64 / started.elapsed().as_secs_f64())
    })
}

/// Uploads each block as Thanos does: every other file first, `meta.json` last; files
/// stream up in parts, never read whole.
fn upload_blocks(
    bucket: std::sync::Arc<dyn object_store::ObjectStore>,
    blocks: &[PathBuf],
) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Process(format!("starting a runtime: {e}")))?;
    runtime.block_on(async {
        for block in blocks {
            let id = block
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| BenchError::Process(format!("{} has no name", block.display())))?;
            let mut files = Vec::new();
            for rel in ["chunks", ""] {
                let dir = block.join(rel);
                for entry in std::fs::read_dir(&dir).map_err(|e| BenchError::io(&dir, e))? {
                    let entry = entry.map_err(|e| BenchError::io(&dir, e))?;
                    let name = entry.file_name().to_string_lossy().to_string();
                    if entry.path().is_file() && name != "meta.json" {
                        files.push(if rel.is_empty() {
                            name
                        } else {
                            format!("{rel}/{name}")
                        });
                    }
                }
            }
            files.push("meta.json".into());
            for rel in files {
                let path = block.join(&rel);
                let mut file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| BenchError::io(&path, e))?;
                let key = object_store::path::Path::from(format!("{id}/{rel}"));
                let mut writer = object_store::buffered::BufWriter::new(bucket.clone(), key);
                tokio::io::copy(&mut file, &mut writer)
                    .await
                    .map_err(|e| BenchError::io(&path, e))?;
                tokio::io::AsyncWriteExt::shutdown(&mut writer)
                    .await
                    .map_err(|e| BenchError::io(&path, e))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kb_fields_of_proc_status() {
        let status = "Name:\tstele\nVmHWM:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(status_bytes(status, "VmHWM"), Some(123456 * 1024));
        assert_eq!(status_bytes(status, "VmRSS"), Some(2048 * 1024));
        assert_eq!(status_bytes(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let rss = status_bytes(&status, "VmRSS").unwrap();
        let hwm = status_bytes(&status, "VmHWM").unwrap();
        assert!(rss > 0 && hwm >= rss, "{rss} {hwm}");
    }
}
