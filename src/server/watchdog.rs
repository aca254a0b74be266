//! A watchdog over the async runtime: how late its workers get to a timer, and a warning
//! while they do not get to it at all.
//!
//! An async worker that blocks (a lock, a channel, a `block_on`, a page fault on a slow disk)
//! stops every task queued behind it, and can wedge the whole process: the task it holds up
//! may be the one the blocker waits for. The code keeps workers from blocking; this is the
//! check in production. A ticker task on the watched runtime wakes every
//! [`WatchdogOptions::period`] and records how late it woke
//! (`stele_async_worker_lateness_seconds`). A plain thread, outside the runtime, looks at the
//! ticker's last wake-up: when it is more than [`WatchdogOptions::stall_after`] old, it logs
//! a warning naming the workers that have not parked since (counted in
//! `stele_async_worker_stalls_total`), and `/-/healthy` fails once a stall has lasted
//! [`WatchdogOptions::unhealthy_after`], so an orchestrator restarts a wedged process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use tokio::runtime::Handle;

use super::ServerError;
use crate::metrics::Metrics;

/// How the watchdog looks.
#[derive(Debug, Clone, Copy)]
pub struct WatchdogOptions {
    /// How often the ticker wakes.
    pub period: Duration,
    /// How long without a tick is a stall, warned about.
    pub stall_after: Duration,
    /// How long a stall lasts before `/-/healthy` fails.
    pub unhealthy_after: Duration,
}

impl Default for WatchdogOptions {
    fn default() -> Self {
        WatchdogOptions {
            period: Duration::from_millis(100),
            stall_after: Duration::from_secs(1),
            unhealthy_after: Duration::from_secs(60),
        }
    }
}

/// Lateness buckets, in seconds: a healthy runtime is within a millisecond; a second or more
/// is a blocked worker.
const LATENESS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// What the ticker and the monitor share; readers (`/-/healthy`, `/metrics`) never wait.
#[derive(Debug)]
struct State {
    started: Instant,
    options: WatchdogOptions,
    /// Microseconds after `started` of the ticker's last wake-up.
    last_tick_us: AtomicU64,
    lateness: Histogram,
    stalls: Counter,
    stop: AtomicBool,
}

impl State {
    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// How long since the ticker last ran.
    fn tick_age(&self) -> Duration {
        Duration::from_micros(
            self.now_us()
                .saturating_sub(self.last_tick_us.load(Ordering::Relaxed)),
        )
    }
}

/// A running watchdog, until [`Watchdog::stop`]. Clones share it.
#[derive(Debug, Clone)]
pub struct Watchdog {
    state: Arc<State>,
}

impl Watchdog {
    /// Watches `runtime` with the default options.
    pub fn start(runtime: &Handle, metrics: &Metrics) -> Result<Self, ServerError> {
        Self::start_with(runtime, metrics, WatchdogOptions::default())
    }

    pub fn start_with(
        runtime: &Handle,
        metrics: &Metrics,
        options: WatchdogOptions,
    ) -> Result<Self, ServerError> {
        let state = Arc::new(State {
            started: Instant::now(),
            options,
            last_tick_us: AtomicU64::new(0),
            lateness: Histogram::new(LATENESS_BUCKETS),
            stalls: Counter::default(),
            stop: AtomicBool::new(false),
        });
        metrics.register_with_unit(
            "stele_async_worker_lateness",
            "How late the watchdog's timer task ran on the async runtime; late means workers \
             busy or blocked",
            Unit::Seconds,
            state.lateness.clone(),
        )?;
        metrics.register(
            "stele_async_worker_stalls",
            "Times the async runtime did not run the watchdog's timer task for over a second",
            state.stalls.clone(),
        )?;
        metrics.register_collector(TickAge(state.clone()));

        runtime.spawn(tick(state.clone()));
        let monitor = state.clone();
        let workers = runtime.metrics();
        std::thread::Builder::new()
            .name("stele-watchdog".into())
            .spawn(move || watch(&monitor, &workers))
            .map_err(|source| ServerError::Thread {
                what: "watchdog",
                source,
            })?;
        Ok(Watchdog { state })
    }

    /// How long the runtime has been stalled, if it is (its timer task late by more than
    /// `stall_after`). Never waits.
    pub fn stalled_for(&self) -> Option<Duration> {
        let age = self.state.tick_age();
        (age > self.state.options.stall_after).then_some(age)
    }

    /// `Err` with the reason once a stall has lasted `unhealthy_after`.
    pub fn check_live(&self) -> Result<(), String> {
        match self.stalled_for() {
            Some(age) if age >= self.state.options.unhealthy_after => Err(format!(
                "async workers stalled: the watchdog's timer task has not run for {:.1} s",
                age.as_secs_f64()
            )),
            _ => Ok(()),
        }
    }

    /// Stalls seen so far.
    pub fn stalls(&self) -> u64 {
        self.state.stalls.get()
    }

    /// Stops the ticker and the monitor (also when the last handle is dropped).
    pub fn stop(&self) {
        self.state.stop.store(true, Ordering::Relaxed);
    }
}

/// The ticker: records how late each wake-up came.
async fn tick(state: Arc<State>) {
    let period = state.options.period;
    let mut due = tokio::time::Instant::now() + period;
    while !state.stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(due).await;
        let now = tokio::time::Instant::now();
        state
            .lateness
            .observe(now.saturating_duration_since(due).as_secs_f64());
        state.last_tick_us.store(state.now_us(), Ordering::Relaxed);
        // The next tick is a period after this one, not after the missed ones.
        due = now + period;
    }
}

/// The monitor thread: warns once per stall while it lasts, and when it ends.
fn watch(state: &State, workers: &tokio::runtime::RuntimeMetrics) {
    let every = (state.options.stall_after / 4).max(Duration::from_millis(10));
    let mut stall_began: Option<(Instant, Vec<u64>)> = None;
    // The ticker and the monitor start together; the first tick is a period away.
    state.last_tick_us.store(state.now_us(), Ordering::Relaxed);
    while !state.stop.load(Ordering::Relaxed) {
        std::thread::sleep(every);
        let age = state.tick_age();
        let late = age > state.options.stall_after + state.options.period;
        match (&stall_began, late) {
            (None, true) => {
                let parks: Vec<u64> = (0..workers.num_workers())
                    .map(|w| workers.worker_park_unpark_count(w))
                    .collect();
                state.stalls.inc();
                tracing::warn!(
                    stalled_ms = age.as_millis() as u64,
                    busy_workers = ?busy_workers(&parks),
                    "an async worker is blocked: the watchdog's timer task has not run for over \
                     a second (a blocking call on a runtime thread); queries and gRPC may hang"
                );
                stall_began = Some((Instant::now() - age, parks));
            }
            (Some((began, parks)), false) => {
                let stuck: Vec<usize> = (0..parks.len())
                    .filter(|&w| workers.worker_park_unpark_count(w) == parks[w])
                    .filter(|&w| parks[w] % 2 == 0)
                    .collect();
                tracing::warn!(
                    stalled_ms = began.elapsed().as_millis() as u64,
                    still_busy_workers = ?stuck,
                    "async workers running again after a stall"
                );
                stall_began = None;
            }
            _ => {}
        }
    }
}

/// The workers not parked (their park/unpark count is even while they run).
fn busy_workers(park_unpark_counts: &[u64]) -> Vec<usize> {
    (0..park_unpark_counts.len())
        .filter(|&w| park_unpark_counts[w] % 2 == 0)
        .collect()
}

/// `stele_async_worker_tick_age_seconds`, read at scrape time: grows during a stall, which
/// the lateness histogram only records once it ends.
#[derive(Debug)]
struct TickAge(Arc<State>);

impl prometheus_client::collector::Collector for TickAge {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        let age =
            prometheus_client::metrics::gauge::ConstGauge::new(self.0.tick_age().as_secs_f64());
        age.encode(encoder.encode_descriptor(
            "stele_async_worker_tick_age",
            "Time since the watchdog's timer task last ran on the async runtime",
            Some(&Unit::Seconds),
            age.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker blocked on a channel (the class of bug this watches for) is reported while it
    /// is blocked, and the lateness is recorded once it runs again.
    #[test]
    fn a_blocked_worker_is_reported_while_blocked() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let metrics = Metrics::new();
        let options = WatchdogOptions {
            period: Duration::from_millis(10),
            stall_after: Duration::from_millis(200),
            unhealthy_after: Duration::from_millis(400),
        };
        let dog = Watchdog::start_with(runtime.handle(), &metrics, options).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let wait_for = |what: &str, done: &dyn Fn() -> bool| {
            while !done() {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for("a first tick", &|| {
            dog.state.last_tick_us.load(Ordering::Relaxed) > 0
        });
        assert!(dog.check_live().is_ok());

        let (release, blocked) = std::sync::mpsc::channel::<()>();
        runtime.spawn(async move { blocked.recv().unwrap() });
        wait_for("the stall to be seen", &|| dog.stalls() == 1);
        assert!(dog.stalled_for().is_some());
        wait_for("liveness to fail", &|| dog.check_live().is_err());
        let text = metrics
            .encode(crate::metrics::ExpositionFormat::PrometheusText)
            .unwrap();
        assert!(text.contains("stele_async_worker_stalls_total 1"), "{text}");

        release.send(()).unwrap();
        wait_for("the ticker to run again", &|| dog.stalled_for().is_none());
        assert!(dog.check_live().is_ok());
        let text = metrics
            .encode(crate::metrics::ExpositionFormat::PrometheusText)
            .unwrap();
        // The late tick landed in a bucket above the stall threshold.
        let under_quarter_second = text
            .lines()
            .find(|l| l.starts_with("stele_async_worker_lateness_seconds_bucket{le=\"0.25\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap();
        let count = text
            .lines()
            .find(|l| l.starts_with("stele_async_worker_lateness_seconds_count"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap();
        assert!(count > under_quarter_second, "{text}");
        assert_eq!(dog.stalls(), 1, "one stall, counted once");
        dog.stop();
    }
}
