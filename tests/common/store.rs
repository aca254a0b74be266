//! `stele store` as a child process, for the end-to-end suites.

use std::path::Path;
use std::process::{Child, Stdio};

use stele::storeapi::client::StoreApiClient;

use super::storeapi::{metric_value, store_client, wait_info_ready};
use super::{free_port, http_get, stele};

/// A `stele store` process on loopback ports; killed on drop.
pub struct StoreProcess {
    child: Child,
    pub grpc: String,
    pub http: String,
    pub data_dir: tempfile::TempDir,
}

impl StoreProcess {
    pub fn start(objstore_yaml: &str, extra: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        Self::start_in(objstore_yaml, extra, data_dir)
    }

    pub fn start_in(objstore_yaml: &str, extra: &[&str], data_dir: tempfile::TempDir) -> Self {
        let p = Self::spawn_in(objstore_yaml, extra, data_dir);
        p.wait_ready();
        p
    }

    /// Starts the store without waiting for it to be ready (to probe it from its start).
    pub fn spawn_in(objstore_yaml: &str, extra: &[&str], data_dir: tempfile::TempDir) -> Self {
        let (grpc_port, http_port) = (free_port(), free_port());
        let child = stele()
            .arg("store")
            .arg(format!("--objstore.config={objstore_yaml}"))
            .arg(format!("--data-dir={}", data_dir.path().display()))
            .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
            .arg(format!("--http-address=127.0.0.1:{http_port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stele store");
        let p = StoreProcess {
            child,
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            http: format!("http://127.0.0.1:{http_port}"),
            data_dir,
        };
        p
    }

    pub fn wait_ready(&self) {
        wait_info_ready(&self.grpc);
    }

    /// Kills the store (no clean shutdown) and hands back its data dir, to restart on it.
    pub fn kill(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap())
    }

    /// Stops the store as Kubernetes does (SIGTERM, then waiting for it to exit) and hands
    /// back its data dir, to restart on it.
    pub fn stop(mut self) -> tempfile::TempDir {
        let pid = self.child.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the store did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap())
    }

    /// The store's /metrics.
    pub fn metrics_text(&self) -> String {
        let (status, body) = http_get(&format!("{}/metrics", self.http)).unwrap();
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }

    /// The value of a sample (name with its labels, if any) in the store's /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics_text(), name)
    }

    pub fn client(&self, rt: &tokio::runtime::Runtime) -> StoreApiClient {
        store_client(rt, &self.grpc)
    }
}

impl Drop for StoreProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn filesystem_yaml(dir: &Path) -> String {
    format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    )
}
