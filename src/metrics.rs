//! The process-wide metrics registry every stele component registers into, and its text
//! exposition for `/metrics`.
//!
//! [`Metrics`] wraps a `prometheus_client` [`Registry`] behind a lock so a cheap clone can be
//! handed to each component at startup. Components create their own counters, gauges and
//! histograms (usually `Family`s with a derived `EncodeLabelSet` label struct), register a clone
//! here, and keep the original to update; updates never touch the registry lock.
//!
//! ```
//! use prometheus_client::encoding::EncodeLabelSet;
//! use prometheus_client::metrics::{counter::Counter, family::Family};
//! use prometheus_client::registry::Unit;
//! use stele::metrics::{latency_histograms, Metrics};
//!
//! #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
//! struct MethodLabels {
//!     method: &'static str,
//! }
//!
//! let metrics = Metrics::new();
//! let series = Family::<MethodLabels, Counter>::default();
//! metrics.register("stele_store_series_sent", "Series sent to clients", series.clone())?;
//! let latency = latency_histograms::<MethodLabels>();
//! metrics.register_with_unit("stele_grpc_server_handling", "gRPC handling time", Unit::Seconds, latency.clone())?;
//!
//! series.get_or_create(&MethodLabels { method: "Series" }).inc_by(3);
//! latency.get_or_create(&MethodLabels { method: "Series" }).observe(0.012);
//! # Ok::<(), stele::metrics::MetricsError>(())
//! ```
//!
//! Besides what components register, every [`Metrics`] exports the process metrics operators
//! expect from any Prometheus target (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, ... read from `/proc/self` at scrape
//! time, Linux only), the allocator's figures (`stele_allocator_memory_bytes{state="..."}`) and
//! `stele_build_info{version="..."} 1`.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, text, DescriptorEncoder, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Metric, Registry, Unit};

/// Errors from registering or encoding metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Two families with one name make Prometheus reject the whole scrape, so the second
    /// registration is refused instead.
    #[error("metric family {0:?} is already registered")]
    Duplicate(String),
    #[error("invalid metric name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("encoding metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// The text formats `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// OpenMetrics 1.0 text; what Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4; what curl, older scrapers and `promtool check
    /// metrics` get.
    PrometheusText,
}

impl ExpositionFormat {
    /// Picks the format from a request's `Accept` header. Only clients that name OpenMetrics get
    /// it, as Go's `promhttp` does; q-values are not weighed because every scraper that lists
    /// OpenMetrics prefers it.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::PrometheusText,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Bucket upper bounds, in seconds, for request latencies: 1 ms to 2 min. Dense below a second,
/// where healthy requests fall, and reaching the longest query timeouts operators configure.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A family of latency histograms with [`LATENCY_BUCKETS`], keyed by the label set `L`.
pub type LatencyHistograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// One latency histogram with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// An empty latency-histogram family; register it with `Unit::Seconds` and observe
/// `Duration::as_secs_f64()` values.
pub fn latency_histograms<L>() -> LatencyHistograms<L>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet,
{
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

/// Shared handle to the process's metrics registry. Clones share one registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    /// Exposed family names (name plus unit suffix) already taken, including those of the
    /// built-in collectors.
    names: HashSet<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding the process metrics and `stele_build_info`.
    pub fn new() -> Self {
        let mut inner = Inner {
            registry: Registry::default(),
            names: HashSet::new(),
        };
        let build = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        inner.registry.register(
            "stele_build",
            "Build information about the running stele binary",
            build,
        );
        inner.names.insert("stele_build".to_owned());
        #[cfg(target_os = "linux")]
        {
            inner
                .names
                .extend(process::FAMILIES.iter().map(|n| (*n).to_owned()));
            inner
                .registry
                .register_collector(Box::new(process::ProcessCollector::new()));
        }
        inner.names.insert(ALLOCATOR_FAMILY.to_owned());
        inner
            .registry
            .register_collector(Box::new(AllocatorCollector));
        Self {
            inner: Arc::new(RwLock::new(inner)),
        }
    }

    /// Registers `metric` under `name`. `help` gets a full stop appended. Counters are named
    /// without `_total`; the encoder adds it.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl Metric,
    ) -> Result<(), MetricsError> {
        self.register_inner(name, help, None, metric)
    }

    /// As [`Metrics::register`], with a unit that the encoder appends to the name (`Seconds`
    /// turns `stele_grpc_server_handling` into `stele_grpc_server_handling_seconds`).
    pub fn register_with_unit(
        &self,
        name: &str,
        help: &str,
        unit: Unit,
        metric: impl Metric,
    ) -> Result<(), MetricsError> {
        self.register_inner(name, help, Some(unit), metric)
    }

    /// Registers a collector, which encodes its metrics itself at each scrape (for values that
    /// are cheaper to read on demand than to keep updated). Its names are not checked for
    /// duplicates.
    pub fn register_collector(&self, collector: impl Collector) {
        self.write()
            .registry
            .register_collector(Box::new(collector));
    }

    /// Renders every registered metric in `format`.
    pub fn encode(&self, format: ExpositionFormat) -> Result<String, MetricsError> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(16 * 1024);
        match format {
            ExpositionFormat::OpenMetrics => text::encode(&mut out, &inner.registry)?,
            ExpositionFormat::PrometheusText => prometheus_text::encode(&mut out, &inner.registry)?,
        }
        Ok(out)
    }

    fn register_inner(
        &self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        metric: impl Metric,
    ) -> Result<(), MetricsError> {
        validate_name(name)?;
        if metric.metric_type() == MetricType::Counter && name.ends_with("_total") {
            return Err(MetricsError::InvalidName {
                name: name.to_owned(),
                reason: "counter names must not end in _total; the encoder appends it",
            });
        }
        let family = match &unit {
            Some(u) => format!("{name}_{}", u.as_str()),
            None => name.to_owned(),
        };
        let mut inner = self.write();
        if !inner.names.insert(family.clone()) {
            return Err(MetricsError::Duplicate(family));
        }
        match unit {
            Some(u) => inner.registry.register_with_unit(name, help, u, metric),
            None => inner.registry.register(name, help, metric),
        }
        Ok(())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // Registration only appends, so a panic elsewhere while holding the lock cannot leave
        // the registry half-updated; keep serving it.
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Prometheus metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn validate_name(name: &str) -> Result<(), MetricsError> {
    let invalid = |reason| MetricsError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(invalid("empty")),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_' || c == ':') => {
            return Err(invalid("must start with a letter, '_' or ':'"))
        }
        Some(_) => {}
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        return Err(invalid("may only hold letters, digits, '_' and ':'"));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod process {
    //! `process_*` metrics from procfs, read at each scrape.

    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::registry::Unit;

    /// Family names this collector exposes, reserved in the registry.
    pub(super) const FAMILIES: [&str; 6] = [
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "process_max_fds",
    ];

    #[derive(Debug)]
    pub(super) struct ProcessCollector {
        ticks_per_second: f64,
        page_size: f64,
        /// Fixed for the life of the process, so read once.
        start_time_seconds: Option<f64>,
    }

    impl ProcessCollector {
        pub(super) fn new() -> Self {
            // SAFETY: sysconf reads a configuration value; it has no preconditions.
            let (ticks, page) = unsafe {
                (
                    libc::sysconf(libc::_SC_CLK_TCK),
                    libc::sysconf(libc::_SC_PAGESIZE),
                )
            };
            // Fallbacks are the values on every mainstream Linux architecture.
            let ticks_per_second = if ticks > 0 { ticks as f64 } else { 100.0 };
            let page_size = if page > 0 { page as f64 } else { 4096.0 };
            let start_time_seconds = (|| {
                let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
                let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
                Some(boot as f64 + stat.start_ticks as f64 / ticks_per_second)
            })();
            Self {
                ticks_per_second,
                page_size,
                start_time_seconds,
            }
        }
    }

    impl Collector for ProcessCollector {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let (seconds, bytes) = (Unit::Seconds, Unit::Bytes);
            // A value procfs cannot give is left out rather than failing the whole scrape.
            if let Some(stat) = std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                let cpu = ConstCounter::new(
                    (stat.utime_ticks + stat.stime_ticks) as f64 / self.ticks_per_second,
                );
                cpu.encode(encoder.encode_descriptor(
                    "process_cpu",
                    "Total user and system CPU time spent in seconds.",
                    Some(&seconds),
                    cpu.metric_type(),
                )?)?;
                let rss = ConstGauge::new(stat.rss_pages as f64 * self.page_size);
                rss.encode(encoder.encode_descriptor(
                    "process_resident_memory",
                    "Resident memory size in bytes.",
                    Some(&bytes),
                    rss.metric_type(),
                )?)?;
                let vsize = ConstGauge::new(stat.vsize_bytes as f64);
                vsize.encode(encoder.encode_descriptor(
                    "process_virtual_memory",
                    "Virtual memory size in bytes.",
                    Some(&bytes),
                    vsize.metric_type(),
                )?)?;
            }
            if let Some(start) = self.start_time_seconds {
                let start = ConstGauge::new(start);
                start.encode(encoder.encode_descriptor(
                    "process_start_time",
                    "Start time of the process since unix epoch in seconds.",
                    Some(&seconds),
                    start.metric_type(),
                )?)?;
            }
            // The count includes the descriptor used to list the directory.
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                let open = ConstGauge::new(dir.count() as i64);
                open.encode(encoder.encode_descriptor(
                    "process_open_fds",
                    "Number of open file descriptors.",
                    None,
                    open.metric_type(),
                )?)?;
            }
            if let Some(max) = std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| parse_max_open_files(&s))
            {
                let max = ConstGauge::new(max as f64);
                max.encode(encoder.encode_descriptor(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    None,
                    max.metric_type(),
                )?)?;
            }
            Ok(())
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct ProcStat {
        pub utime_ticks: u64,
        pub stime_ticks: u64,
        pub start_ticks: u64,
        pub vsize_bytes: u64,
        pub rss_pages: u64,
    }

    /// Parses `/proc/<pid>/stat` (proc(5)). The command name in field 2 is in parentheses and
    /// may itself hold spaces and parentheses, so fields are counted from the last `)`.
    pub(super) fn parse_stat(s: &str) -> Option<ProcStat> {
        let rest = &s[s.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state), so field n of proc(5) is fields[n - 3].
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(ProcStat {
            utime_ticks: field(14)?,
            stime_ticks: field(15)?,
            start_ticks: field(22)?,
            vsize_bytes: field(23)?,
            rss_pages: field(24)?,
        })
    }

    /// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
    pub(super) fn parse_boot_time(s: &str) -> Option<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The soft limit on the `Max open files` line of `/proc/<pid>/limits`; `None` when it is
    /// `unlimited`.
    pub(super) fn parse_max_open_files(s: &str) -> Option<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|soft| soft.parse().ok())
    }
}

const ALLOCATOR_FAMILY: &str = "stele_allocator_memory";

/// jemalloc's totals (the crate's global allocator), read at scrape time: what the process
/// holds beyond its caches' byte bounds shows here, before it shows in the RSS.
#[derive(Debug)]
struct AllocatorCollector;

impl Collector for AllocatorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The totals are a snapshot taken when the epoch advances.
        if epoch::advance().is_err() {
            return Ok(());
        }
        let states = [
            ("allocated", stats::allocated::read()),
            ("active", stats::active::read()),
            ("resident", stats::resident::read()),
            ("mapped", stats::mapped::read()),
            ("retained", stats::retained::read()),
        ];
        let mut family = encoder.encode_descriptor(
            ALLOCATOR_FAMILY,
            "Memory of the allocator (jemalloc) by state: allocated (in use by stele), active (in pages with allocations), resident (physically resident, allocator metadata included), mapped, retained (unmapped but kept for reuse)",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        for (state, read) in states {
            // A figure jemalloc cannot give is left out rather than failing the scrape.
            if let Ok(bytes) = read {
                ConstGauge::new(bytes as i64).encode(family.encode_family(&[("state", state)])?)?;
            }
        }
        Ok(())
    }
}

/// Encodes one counter with `value` (for collectors that read their figures at scrape time).
pub fn const_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, unit, c.metric_type())?)
}

/// Encodes one gauge with `value` (for collectors that read their figures at scrape time).
pub fn const_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: i64,
) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, unit, g.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        method: String,
    }

    #[test]
    fn registered_metrics_render_in_both_formats() {
        let m = Metrics::new();
        let c: Counter = Counter::default();
        m.register("stele_test_requests", "Requests seen", c.clone())
            .unwrap();
        c.inc_by(7);
        let h = latency_histograms::<Labels>();
        m.register_with_unit("stele_test_latency", "Latency", Unit::Seconds, h.clone())
            .unwrap();
        h.get_or_create(&Labels {
            method: "Series".into(),
        })
        .observe(0.003);

        let om = m.encode(ExpositionFormat::OpenMetrics).unwrap();
        assert!(om.contains("stele_test_requests_total 7\n"), "{om}");
        assert!(
            om.contains("stele_test_latency_seconds_bucket{le=\"0.005\",method=\"Series\"} 1\n")
                || om.contains(
                    "stele_test_latency_seconds_bucket{method=\"Series\",le=\"0.005\"} 1\n"
                ),
            "{om}"
        );
        assert!(om.contains("stele_build_info{version=\""), "{om}");
        assert!(om.ends_with("# EOF\n"));

        let text = m.encode(ExpositionFormat::PrometheusText).unwrap();
        assert!(
            text.contains("# TYPE stele_test_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("stele_test_requests_total 7\n"));
        assert!(text.contains("# TYPE stele_build_info gauge\n"), "{text}");
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn duplicate_and_invalid_names_are_refused() {
        let m = Metrics::new();
        m.register("stele_x", "x", Gauge::<i64>::default()).unwrap();
        assert!(matches!(
            m.register("stele_x", "x", Gauge::<i64>::default()),
            Err(MetricsError::Duplicate(n)) if n == "stele_x"
        ));
        // Same exposed name through a unit.
        m.register_with_unit("stele_y", "y", Unit::Bytes, Gauge::<i64>::default())
            .unwrap();
        assert!(matches!(
            m.register("stele_y_bytes", "y", Gauge::<i64>::default()),
            Err(MetricsError::Duplicate(_))
        ));
        assert!(matches!(
            m.register("stele_build", "clash", Gauge::<i64>::default()),
            Err(MetricsError::Duplicate(_))
        ));
        for bad in ["", "1abc", "a-b", "a b"] {
            assert!(
                matches!(
                    m.register(bad, "h", Gauge::<i64>::default()),
                    Err(MetricsError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            m.register("stele_ops_total", "h", Counter::<u64>::default()),
            Err(MetricsError::InvalidName { .. })
        ));
    }

    #[test]
    fn format_negotiation() {
        use ExpositionFormat::*;
        assert_eq!(ExpositionFormat::negotiate(None), PrometheusText);
        assert_eq!(ExpositionFormat::negotiate(Some("*/*")), PrometheusText);
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(ExpositionFormat::negotiate(Some(prometheus)), OpenMetrics);
    }

    #[test]
    fn latency_buckets_are_increasing_and_span_1ms_to_2min() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LATENCY_BUCKETS[0], 0.001);
        assert_eq!(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1], 120.0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exported() {
        let text = Metrics::new()
            .encode(ExpositionFormat::PrometheusText)
            .unwrap();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(
                text.contains(&format!("\n{name}")),
                "{name} missing:\n{text}"
            );
        }
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            line[name.len()..].trim().parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes ") > 1e5);
        assert!(value("process_open_fds ") >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds ");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
    }

    #[test]
    fn allocator_memory_is_exported_and_follows_allocations() {
        let metrics = Metrics::new();
        let allocated = || -> f64 {
            let text = metrics.encode(ExpositionFormat::PrometheusText).unwrap();
            for state in ["allocated", "active", "resident", "mapped", "retained"] {
                let line = format!("\nstele_allocator_memory_bytes{{state=\"{state}\"}} ");
                assert!(text.contains(&line), "{state} missing:\n{text}");
            }
            let line = text
                .lines()
                .find(|l| l.starts_with("stele_allocator_memory_bytes{state=\"allocated\"}"))
                .unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        // 64 MiB written, so it is allocated for real whatever the optimiser does. Other tests
        // allocate and free meanwhile, so only a lower bound holds.
        let held = std::hint::black_box(vec![1u8; 64 << 20]);
        let during = allocated();
        drop(held);
        assert!(during >= (64 << 20) as f64, "{during}");
    }

    #[test]
    fn allocator_runs_with_the_crates_options() {
        // `JEMALLOC_OPTIONS` in lib.rs, read by jemalloc when it starts.
        assert!(tikv_jemalloc_ctl::opt::background_thread::read().unwrap());
        // SAFETY: both are `ssize_t` options, read as such.
        let (dirty, muzzy) = unsafe {
            (
                tikv_jemalloc_ctl::raw::read::<isize>(b"opt.dirty_decay_ms\0").unwrap(),
                tikv_jemalloc_ctl::raw::read::<isize>(b"opt.muzzy_decay_ms\0").unwrap(),
            )
        };
        assert_eq!((dirty, muzzy), (1000, 0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn procfs_parsing() {
        use process::*;
        // A command name with a space and a parenthesis.
        let stat = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    8 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        assert_eq!(
            parse_stat(stat),
            Some(ProcStat {
                utime_ticks: 250,
                stime_ticks: 50,
                start_ticks: 98765,
                vsize_bytes: 123456789,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(
            parse_max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
    }
}
