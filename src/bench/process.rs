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
    pub fn spawn(
        objstore_yaml: &str,
        data_dir: &Path,
        extra: &[String],
        log: &Path,
    ) -> Result<Self, BenchError> {
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::Process(format!("finding the stele executable: {e}")))?;
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
