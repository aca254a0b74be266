//! Helpers shared by the end-to-end tests: real binaries, loopback ports, temp dirs.
#![allow(dead_code)]

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

/// A real Prometheus server on loopback over a data directory; killed on drop.
pub struct PrometheusServer {
    child: Child,
    pub url: String,
    _config_dir: tempfile::TempDir,
}

impl PrometheusServer {
    pub fn start(data_dir: &Path) -> Self {
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
        let port = free_port();
        let child = Command::new(prometheus())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Test data is dated; without this Prometheus deletes it on start.
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        let server = PrometheusServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _config_dir: config_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http_get(&format!("{}/-/ready", server.url)).is_ok_and(|(status, _)| status == 200) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus did not become ready at {}", server.url);
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
