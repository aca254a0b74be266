//! The sizing model: data facts + query profile + targets -> pods, memory, disk, CPU and
//! object-store traffic. Pure arithmetic; every constant is named and documented, and
//! docs/PLANNING.md compares the predictions with what `stele bench` measures.
//!
//! Per pod, memory is the sum of
//! - the process baseline (runtime, thread stacks, allocator arenas: [`Calibration::base_rss`]);
//! - the index headers of the pod's blocks, resident (the mapping and the sampled tables);
//! - the index cache, sized to hold the profile's index working set at the hit target;
//! - the chunk cache when it lives in the pod (`--store.chunk-cache-size`), not when it is
//!   memcached;
//! - in-flight requests: concurrent requests times what one holds at its peak (a batch of
//!   series per block it reads, sized as the store sizes them, and one batch of chunks),
//!   capped by `--store.inflight-memory-limit`.
//!
//! The pod count is the smallest that fits both memory and CPU under the pod shape with
//! [`HEADROOM`] to spare, and at least what the in-flight limit needs.

use serde::Serialize;

use super::inventory::Inventory;
use super::PlanError;
use crate::store::{cursor_batch, CHUNK_BATCHES_AHEAD};

/// Share of a pod's memory and CPU the plan may fill; the rest absorbs spikes.
pub const HEADROOM: f64 = 0.8;
/// stele fetches a query's series entries and chunks this many series at a time
/// (`SERIES_PER_FETCH` in store/query.rs); over a remote bucket up to
/// `store::CHUNK_BATCHES_AHEAD` batches of chunks are in flight per request.
pub const SERIES_PER_BATCH: f64 = 1000.0;
/// Postings bytes a query reads per matched series: about two matchers' lists of 4-byte refs.
pub const POSTINGS_BYTES_PER_SERIES: f64 = 8.0;
/// Index-cache bytes beyond the item itself (key, LRU links), as the cache accounts them.
pub const CACHE_ITEM_OVERHEAD: f64 = 96.0;
/// Seconds in the month of the monthly figures (30 days).
pub const MONTH_S: f64 = 30.0 * 86_400.0;
/// Default `--store.inflight-memory-limit` of `stele store` (1GB, sizes being base 2).
pub const DEFAULT_INFLIGHT_LIMIT: u64 = 1 << 30;
/// Default `--store.grpc.series-max-concurrency`: requests beyond wait, holding nothing.
pub const SERIES_MAX_CONCURRENCY: f64 = 20.0;

/// What the inventory says about the served blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataFacts {
    pub blocks: u64,
    /// From the first block's start to the last block's end.
    pub span_ms: i64,
    /// The median block length.
    pub block_duration_ms: i64,
    pub series: u64,
    pub samples: u64,
    pub chunk_bytes: u64,
    pub index_bytes: u64,
    pub series_section_bytes: u64,
    pub header_disk_bytes: u64,
    pub header_resident_bytes: u64,
    /// Read from a remote bucket: larger cursor batches, chunks fetched batches ahead.
    pub remote: bool,
}

impl DataFacts {
    pub fn from_inventory(inv: &Inventory) -> Result<DataFacts, PlanError> {
        let t = &inv.totals;
        let (Some(min), Some(max)) = (t.min_time, t.max_time) else {
            return Err(PlanError::Input(
                "the bucket holds no blocks to plan for".into(),
            ));
        };
        let mut durations: Vec<i64> = inv.served().map(|b| b.max_time - b.min_time).collect();
        durations.sort_unstable();
        Ok(DataFacts {
            blocks: t.blocks,
            span_ms: max - min,
            block_duration_ms: durations[durations.len() / 2].max(1),
            series: t.series,
            samples: t.samples,
            chunk_bytes: t.chunk_bytes,
            index_bytes: t.index_bytes,
            series_section_bytes: t.series_section_bytes,
            header_disk_bytes: t.header_disk_bytes,
            header_resident_bytes: t.header_resident_bytes,
            remote: inv.remote,
        })
    }

    fn series_per_block(&self) -> f64 {
        self.series as f64 / self.blocks.max(1) as f64
    }

    /// Samples of one series over one millisecond.
    fn samples_per_series_ms(&self) -> f64 {
        self.samples as f64 / self.series.max(1) as f64 / self.block_duration_ms as f64
    }

    fn entry_bytes(&self) -> f64 {
        self.series_section_bytes as f64 / self.series.max(1) as f64
    }

    /// Chunk bytes of one series over one millisecond.
    fn chunk_bytes_per_series_ms(&self) -> f64 {
        self.chunk_bytes as f64 / self.series.max(1) as f64 / self.block_duration_ms as f64
    }
}

/// One kind of request of the query profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryClass {
    pub name: String,
    /// The selector, when known (bench reports): classes sharing one match the same series.
    pub selector: String,
    pub weight: f64,
    /// Series matched, as a share of a block's series (the default profile) ...
    pub series_share: f64,
    /// ... or as measured by `stele bench` (takes precedence).
    pub series: Option<f64>,
    /// Queried range; `None` is the whole retention.
    pub range_ms: Option<i64>,
    /// Labels only (`skip_chunks`, label names/values): no chunks fetched.
    pub skip_chunks: bool,
    /// Chunk bytes a request returned, as measured by `stele bench`.
    pub measured_chunk_bytes: Option<f64>,
    /// Samples a request returned, as measured by `stele bench`: with the samples per
    /// series of a block they tell how many series each block matched.
    pub measured_samples: Option<f64>,
    /// Mean latency measured by `stele bench`, seconds.
    pub measured_latency_s: Option<f64>,
}

/// The request mix and what calibrates it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryProfile {
    pub source: String,
    pub classes: Vec<QueryClass>,
    /// Chunk bytes fetched per chunk byte needed (coalescing reads neighbours too).
    pub chunk_over_fetch: f64,
}

impl QueryProfile {
    /// The shape of `stele bench`'s default mix (bench-data/workload.toml), with each
    /// selector's series as a share of the `medium` profile's 1.14M series per block.
    pub fn default_mix() -> QueryProfile {
        const MEDIUM_SERIES: f64 = 1_140_000.0;
        let class = |name: &str, weight, series: f64, range_ms: Option<i64>, skip| QueryClass {
            name: name.into(),
            selector: String::new(),
            weight,
            series_share: series / MEDIUM_SERIES,
            series: None,
            range_ms,
            skip_chunks: skip,
            measured_chunk_bytes: None,
            measured_samples: None,
            measured_latency_s: None,
        };
        const MIN30: Option<i64> = Some(30 * 60_000);
        QueryProfile {
            source: "default mix (stele bench's workload.toml)".into(),
            classes: vec![
                class("series-100-all", 4.0, 100.0, None, false),
                class("series-1-all", 4.0, 1.0, None, false),
                class("series-1-30m", 4.0, 1.0, MIN30, false),
                class("series-10k-regex-2h", 2.0, 9_600.0, Some(7_200_000), false),
                class("series-15k-nregex-30m", 2.0, 15_000.0, MIN30, false),
                class("series-120k-neg-30m", 1.0, 120_000.0, MIN30, false),
                class("series-120k-neg-skip-chunks", 1.0, 139_000.0, None, true),
                class("label-names", 2.0, 0.0, None, true),
                class("label-values", 2.0, 0.0, None, true),
            ],
            // Measured by stele bench on medium (docs/PERFORMANCE.md).
            chunk_over_fetch: 1.9,
        }
    }
}

/// Constants measured once per stele version (docs/PLANNING.md says how).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// RSS of a store serving next to nothing: runtime, threads, allocator arenas.
    pub base_rss: u64,
    /// Bytes a request holds per series of its current batch in each block it reads (the
    /// per-block cursors of the k-way merge): fetched entry buffers, decoded labels and
    /// chunk metas, beyond the entry bytes themselves.
    pub held_bytes_per_series: f64,
    /// Resident bytes each concurrent request adds whatever it reads: its blocking-pool
    /// thread's stack and allocator arena, gRPC buffers.
    pub rss_per_request: u64,
    /// Share of its peak that each concurrent request beyond the largest holds on average:
    /// requests in flight together are rarely all at their peak, and memory one frees
    /// serves the next.
    pub concurrent_share: f64,
    /// Request latency when the bench gives none, seconds per MiB fetched, plus a floor.
    pub latency_floor_s: f64,
    pub latency_s_per_mib: f64,
    /// CPU-seconds per MiB of chunks and index entries decoded and re-encoded.
    pub cpu_s_per_mib: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        // Fitted by scripts/plan-calibrate.py on small (1 and 8 clients) and small-200blocks
        // (1 and 4 clients); docs/PLANNING.md has the runs and the validation.
        Calibration {
            base_rss: 16_117_457,
            held_bytes_per_series: 3495.0,
            rss_per_request: 348_366,
            concurrent_share: 0.4,
            latency_floor_s: 0.002,
            latency_s_per_mib: 0.05,
            cpu_s_per_mib: 0.02,
        }
    }
}

/// What the operator asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Targets {
    pub qps: f64,
    /// Retention to plan for; `None` keeps what the bucket holds.
    pub retention_ms: Option<i64>,
    /// Expected growth of series per block, as a fraction (0.5 = +50%).
    pub series_growth: f64,
    pub pod_memory: u64,
    pub pod_cpu: f64,
    /// Index (and chunk) cache hit ratio to size for, 0..=1.
    pub cache_hit_target: f64,
    /// Count the chunk cache in pod memory (an in-process cache) or not (external).
    pub chunk_cache_in_pod: bool,
    pub inflight_limit: u64,
    /// Evaluate this many pods instead of choosing.
    pub pods: Option<u64>,
    /// Concurrent requests on the fleet instead of QPS x latency (closed-loop clients).
    pub concurrency: Option<f64>,
}

impl Targets {
    /// The data as it is: no retention change, no growth.
    fn neutral() -> Targets {
        Targets {
            qps: 1.0,
            retention_ms: None,
            series_growth: 0.0,
            pod_memory: 1,
            pod_cpu: 1.0,
            cache_hit_target: 1.0,
            chunk_cache_in_pod: false,
            inflight_limit: DEFAULT_INFLIGHT_LIMIT,
            pods: None,
            concurrency: None,
        }
    }

    pub fn validate(&self) -> Result<(), PlanError> {
        let bad = |m: String| Err(PlanError::Input(m));
        if !(self.qps.is_finite() && self.qps > 0.0) {
            return bad(format!("--qps must be a positive number, got {}", self.qps));
        }
        if self.retention_ms.is_some_and(|r| r <= 0) {
            return bad("--retention must be longer than zero".into());
        }
        if !(self.series_growth.is_finite() && self.series_growth > -1.0) {
            return bad(format!(
                "--series-growth must be above -100%, got {:.0}%",
                self.series_growth * 100.0
            ));
        }
        if self.pod_memory == 0 {
            return bad("--pod-memory must be more than zero".into());
        }
        if !(self.pod_cpu.is_finite() && self.pod_cpu > 0.0) {
            return bad(format!("--pod-cpu must be positive, got {}", self.pod_cpu));
        }
        if !(0.0..=1.0).contains(&self.cache_hit_target) {
            return bad(format!(
                "--cache-hit-target must be within 0..1, got {}",
                self.cache_hit_target
            ));
        }
        if self.pods == Some(0) {
            return bad("--pods must be at least 1".into());
        }
        if self
            .concurrency
            .is_some_and(|c| !(c.is_finite() && c > 0.0))
        {
            return bad("--concurrency must be positive".into());
        }
        Ok(())
    }
}

/// Cost of one request of a class, on the planned data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassCost {
    pub name: String,
    pub weight: f64,
    pub series: f64,
    pub blocks: f64,
    /// Postings and series entries needed.
    pub index_bytes: f64,
    /// Chunk bytes needed (before over-fetch).
    pub chunk_bytes: f64,
    /// Bucket GETs and bytes with empty caches.
    pub requests: f64,
    pub fetched_bytes: f64,
    /// Bytes one request holds at its peak (on one pod serving every block it reads).
    pub peak_bytes: f64,
    /// Bytes held per decoded series: its entry, postings and what decoding it allocates.
    pub held_bytes_per_series: f64,
    /// Chunk bytes of one fetch batch, per block read.
    pub chunk_batch_per_block: f64,
    /// Whether the blocks are read from a remote bucket (see [`DataFacts::remote`]).
    #[serde(skip)]
    pub remote: bool,
    pub latency_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemorySplit {
    pub base: u64,
    pub index_headers: u64,
    pub index_cache: u64,
    pub chunk_cache: u64,
    pub inflight: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Traffic {
    pub requests: f64,
    pub bytes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub pods: u64,
    /// Blocks per pod (the fleet's blocks spread by hashmod over `__block_id`).
    pub blocks_per_pod: f64,
    pub memory: MemorySplit,
    /// Local disk for the pod's index headers.
    pub disk_bytes: u64,
    pub cpu_cores: f64,
    /// Per pod: the index-cache size to configure (`--index-cache-size`) and the chunk cache
    /// to provision.
    pub index_cache_size: u64,
    pub chunk_cache_size: u64,
    /// Concurrent requests per pod.
    pub concurrency: f64,
    /// Mean per query (after the cache hit target) and per month at the target QPS.
    pub per_query: Traffic,
    pub per_month: Traffic,
    pub classes: Vec<ClassCost>,
    /// What limited the pod count: "memory", "cpu", "in-flight limit" or "fixed".
    pub bound_by: String,
}

/// The scaled data the plan is for.
#[derive(Debug, Clone, Copy)]
struct Scaled {
    blocks: f64,
    series_per_block: f64,
    header_disk: f64,
    header_resident: f64,
}

fn scale(facts: &DataFacts, targets: &Targets) -> Scaled {
    let time = targets
        .retention_ms
        .map_or(1.0, |r| r as f64 / facts.span_ms.max(1) as f64);
    let growth = 1.0 + targets.series_growth;
    Scaled {
        blocks: facts.blocks as f64 * time,
        series_per_block: facts.series_per_block() * growth,
        header_disk: facts.header_disk_bytes as f64 * time * growth,
        header_resident: facts.header_resident_bytes as f64 * time * growth,
    }
}

/// Blocks a class reads: all of them, or as many as its range spans.
fn blocks_read(c: &QueryClass, facts: &DataFacts, data: Scaled) -> f64 {
    match c.range_ms {
        None => data.blocks,
        Some(r) => ((r as f64 / facts.block_duration_ms as f64).ceil()).clamp(1.0, data.blocks),
    }
}

/// For measured classes: the share of a request's distinct series each block matches. Over
/// many blocks a churning selector returns more distinct series than any block holds; the
/// samples returned (series-milliseconds) tell the per-block count. Labels-only requests
/// return no samples: a class with the same selector over one block gives the count, else
/// the series-weighted share of the chunk-carrying requests over as many blocks.
fn block_share(c: &QueryClass, facts: &DataFacts, profile: &QueryProfile) -> f64 {
    let range_ms = |c: &QueryClass| {
        c.range_ms
            .map_or(facts.span_ms as f64, |r| r as f64)
            .min(facts.span_ms as f64)
    };
    let blocks = |c: &QueryClass| blocks_read(c, facts, scale(facts, &Targets::neutral()));
    let share = |c: &QueryClass| -> Option<f64> {
        let (Some(series), Some(samples)) = (c.series, c.measured_samples) else {
            return None;
        };
        if series <= 0.0 || samples <= 0.0 {
            return None;
        }
        // Series-milliseconds returned over (distinct series x range) is the share.
        let per_series = samples / facts.samples_per_series_ms() / range_ms(c);
        Some((per_series / series).clamp(1.0 / blocks(c).max(1.0), 1.0))
    };
    if let Some(s) = share(c) {
        return s;
    }
    let series = c.series.unwrap_or(0.0);
    let same_selector = profile.classes.iter().find(|o| {
        !c.selector.is_empty()
            && o.selector == c.selector
            && blocks(o) <= 1.0
            && o.series > Some(0.0)
    });
    if let Some(one_block) = same_selector.and_then(|o| o.series) {
        if series > 0.0 {
            return (one_block / series).clamp(1.0 / blocks(c).max(1.0), 1.0);
        }
    }
    let (mut weighted, mut weights) = (0.0, 0.0);
    for o in profile.classes.iter().filter(|o| blocks(o) == blocks(c)) {
        if let (Some(s), Some(n)) = (share(o), o.series) {
            weighted += s * n;
            weights += n;
        }
    }
    if weights > 0.0 {
        weighted / weights
    } else {
        1.0
    }
}

fn class_cost(
    c: &QueryClass,
    facts: &DataFacts,
    data: Scaled,
    profile: &QueryProfile,
    cal: &Calibration,
    growth: f64,
) -> ClassCost {
    let blocks = blocks_read(c, facts, data);
    // A selector that matches anything matches at least one series.
    let series = c
        .series
        .map_or(c.series_share * data.series_per_block, |s| {
            s * block_share(c, facts, profile) * growth
        })
        .min(data.series_per_block);
    let series = if series > 0.0 { series.max(1.0) } else { 0.0 };
    let index_bytes = series * blocks * (facts.entry_bytes() + POSTINGS_BYTES_PER_SERIES);
    let chunk_bytes = if c.skip_chunks {
        0.0
    } else if let Some(m) = c.measured_chunk_bytes {
        m * growth
    } else {
        let ms = c
            .range_ms
            .map_or(blocks * facts.block_duration_ms as f64, |r| r as f64);
        series * ms * facts.chunk_bytes_per_series_ms()
    };
    let fetched_chunks = chunk_bytes * profile.chunk_over_fetch;
    let batches = (series / SERIES_PER_BATCH).ceil().max(1.0);
    // Per block: the postings lists (about two), then per batch one coalesced range of
    // series entries and, unless labels only, one of chunks.
    let per_block = if series > 0.0 {
        2.0 + batches * if c.skip_chunks { 1.0 } else { 2.0 }
    } else {
        0.0
    };
    let batch_share = (SERIES_PER_BATCH / series.max(1.0)).min(1.0);
    let batches_ahead = if facts.remote {
        CHUNK_BATCHES_AHEAD as f64
    } else {
        1.0
    };
    let mib = (index_bytes + fetched_chunks) / f64::from(1 << 20);
    let mut cost = ClassCost {
        name: c.name.clone(),
        weight: c.weight,
        series,
        blocks,
        index_bytes,
        chunk_bytes,
        requests: per_block * blocks,
        fetched_bytes: index_bytes + fetched_chunks,
        peak_bytes: 0.0,
        held_bytes_per_series: facts.entry_bytes()
            + POSTINGS_BYTES_PER_SERIES
            + cal.held_bytes_per_series,
        chunk_batch_per_block: fetched_chunks * (batches_ahead * batch_share).min(1.0)
            / blocks.max(1.0),
        remote: facts.remote,
        latency_s: c
            .measured_latency_s
            .unwrap_or(cal.latency_floor_s + mib * cal.latency_s_per_mib),
    };
    cost.peak_bytes = cost.peak_on(blocks);
    cost
}

impl ClassCost {
    /// Bytes one request holds at its peak on a pod where it reads `blocks` blocks: each
    /// block's cursor holds one batch of series (the store sizes batches by the number of
    /// blocks, `store::cursor_batch`), plus the batches of chunks fetched ahead.
    pub fn peak_on(&self, blocks: f64) -> f64 {
        let batch = cursor_batch(blocks.round().max(1.0) as usize, self.remote) as f64;
        blocks * (self.series.min(batch) * self.held_bytes_per_series + self.chunk_batch_per_block)
    }
}

/// Weighted mean of `f` over the classes.
fn mean(classes: &[ClassCost], f: impl Fn(&ClassCost) -> f64) -> f64 {
    let w: f64 = classes.iter().map(|c| c.weight).sum();
    if w <= 0.0 {
        return 0.0;
    }
    classes.iter().map(|c| c.weight * f(c)).sum::<f64>() / w
}

/// Sizes the fleet.
pub fn plan(
    facts: &DataFacts,
    profile: &QueryProfile,
    targets: &Targets,
    cal: &Calibration,
) -> Result<Plan, PlanError> {
    targets.validate()?;
    if profile.classes.iter().all(|c| c.weight <= 0.0) {
        return Err(PlanError::Input(
            "the query profile has no weighted requests".into(),
        ));
    }
    let data = scale(facts, targets);
    let growth = 1.0 + targets.series_growth;
    let classes: Vec<ClassCost> = profile
        .classes
        .iter()
        .map(|c| class_cost(c, facts, data, profile, cal, growth))
        .collect();

    // Working sets: every class keeps asking for the same series (dashboards, rules).
    let index_working_set: f64 = classes
        .iter()
        .map(|c| c.index_bytes + c.series * c.blocks * CACHE_ITEM_OVERHEAD)
        .sum();
    let chunk_working_set: f64 = classes.iter().map(|c| c.chunk_bytes).sum();
    let hit = targets.cache_hit_target;
    let index_cache = (index_working_set * hit).ceil();
    let chunk_cache = (chunk_working_set * hit).ceil();

    let latency = mean(&classes, |c| c.latency_s);
    // At least one request is in flight whenever any is.
    let fleet_concurrency = targets
        .concurrency
        .unwrap_or(targets.qps * latency)
        .max(1.0);
    let cpu_per_query =
        mean(&classes, |c| c.fetched_bytes) / f64::from(1 << 20) * cal.cpu_s_per_mib;
    // Classes weighted by how often they are sent and how long they stay in flight (Little's
    // law), so slow heavy requests count for more.
    let in_flight_weight = |c: &ClassCost| c.weight * c.latency_s.max(f64::MIN_POSITIVE);

    let memory_for = |pods: f64| {
        // Blocks are spread over the pods by hashmod: a request reaches the pods holding
        // the blocks it reads (all of them for a long range) and each reads its share.
        let reach = |c: &ClassCost| (c.blocks / pods).min(1.0);
        let peak_in_pod =
            |c: &ClassCost| c.peak_on((c.blocks / pods).clamp(1.0, c.blocks.max(1.0)));
        let total_weight: f64 = classes.iter().map(in_flight_weight).sum();
        let pod_weight: f64 = classes.iter().map(|c| in_flight_weight(c) * reach(c)).sum();
        let concurrency = if total_weight > 0.0 {
            fleet_concurrency * pod_weight / total_weight
        } else {
            fleet_concurrency
        }
        .clamp(1.0, SERIES_MAX_CONCURRENCY);
        let peak = classes
            .iter()
            .filter(|c| c.weight > 0.0)
            .map(peak_in_pod)
            .fold(0.0, f64::max);
        let mean_peak = if pod_weight > 0.0 {
            classes
                .iter()
                .map(|c| in_flight_weight(c) * reach(c) * peak_in_pod(c))
                .sum::<f64>()
                / pod_weight
        } else {
            0.0
        };
        // The biggest request plus the mean share for the others, capped by the in-flight limit,
        // and each request's fixed cost.
        let inflight = (peak + (concurrency - 1.0).max(0.0) * cal.concurrent_share * mean_peak)
            .min(targets.inflight_limit as f64)
            + concurrency * cal.rss_per_request as f64;
        let split = MemorySplit {
            base: cal.base_rss,
            index_headers: (data.header_resident / pods).ceil() as u64,
            // Each pod caches the entries of its own blocks.
            index_cache: (index_cache / pods).ceil() as u64,
            chunk_cache: if targets.chunk_cache_in_pod {
                (chunk_cache / pods).ceil() as u64
            } else {
                0
            },
            inflight: inflight.ceil() as u64,
            total: 0,
        };
        (
            MemorySplit {
                total: split.base
                    + split.index_headers
                    + split.index_cache
                    + split.chunk_cache
                    + split.inflight,
                ..split
            },
            concurrency,
        )
    };
    let cpu_for = |pods: f64| targets.qps * cpu_per_query / pods;

    let (pods, bound_by) = match targets.pods {
        Some(p) => (p, "fixed".to_string()),
        None => {
            let fits =
                |pods: f64| memory_for(pods).0.total as f64 <= targets.pod_memory as f64 * HEADROOM;
            let by_cpu = (targets.qps * cpu_per_query / (targets.pod_cpu * HEADROOM))
                .ceil()
                .max(1.0);
            // Doubling, then bisection: memory per pod falls as pods grow, down to one
            // block's worth per pod.
            let most = data.blocks.ceil().max(1.0);
            if !fits(most) && !fits(most * 2.0) {
                let (one, _) = memory_for(most);
                return Err(PlanError::Input(format!(
                    "a pod of {} MiB cannot serve even one block's share ({} MiB at {:.0}% use); give pods more memory, lower --cache-hit-target or --store.inflight-memory-limit",
                    targets.pod_memory >> 20,
                    one.total >> 20,
                    HEADROOM * 100.0
                )));
            }
            let (mut low, mut high) = (0.0, 1.0);
            while !fits(high) {
                low = high;
                high *= 2.0;
            }
            while high - low > 1.0 {
                let mid = ((low + high) / 2.0).floor();
                if fits(mid) {
                    high = mid;
                } else {
                    low = mid;
                }
            }
            let by_memory = high;
            let bound = if by_cpu > by_memory { "cpu" } else { "memory" };
            (by_memory.max(by_cpu) as u64, bound.to_string())
        }
    };
    let p = pods as f64;
    let (memory, concurrency) = memory_for(p);
    let per_query = Traffic {
        requests: mean(&classes, |c| c.requests),
        bytes: mean(&classes, |c| {
            c.index_bytes * (1.0 - hit)
                + c.chunk_bytes
                    * profile.chunk_over_fetch
                    * if targets.chunk_cache_in_pod {
                        1.0 - hit
                    } else {
                        1.0
                    }
        }),
    };
    let per_month = Traffic {
        requests: per_query.requests * targets.qps * MONTH_S,
        bytes: per_query.bytes * targets.qps * MONTH_S,
    };
    Ok(Plan {
        pods,
        blocks_per_pod: data.blocks / p,
        memory,
        disk_bytes: (data.header_disk / p).ceil() as u64,
        cpu_cores: cpu_for(p),
        index_cache_size: (index_cache / p).ceil() as u64,
        chunk_cache_size: (chunk_cache / p).ceil() as u64,
        concurrency,
        per_query,
        per_month,
        classes,
        bound_by,
    })
}

/// The relabel rules that give pod `shard` of `pods` its share of the blocks, as
/// `--selector.relabel-config` takes them (hashmod over the block ID spreads blocks evenly).
pub fn relabel_snippet(pods: u64, shard: &str) -> String {
    format!(
        "- action: hashmod\n  source_labels: [\"__block_id\"]\n  target_label: shard\n  modulus: {pods}\n- action: keep\n  source_labels: [\"shard\"]\n  regex: \"{shard}\"\n"
    )
}

/// A what-if: the same plan with retention or series scaled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhatIf {
    pub change: String,
    pub plan: Plan,
}

/// Plans again with retention doubled and with series doubled.
pub fn what_ifs(
    facts: &DataFacts,
    profile: &QueryProfile,
    targets: &Targets,
    cal: &Calibration,
) -> Result<Vec<WhatIf>, PlanError> {
    let retention = targets.retention_ms.unwrap_or(facts.span_ms);
    let longer = Targets {
        retention_ms: Some(retention * 2),
        pods: None,
        ..targets.clone()
    };
    let more = Targets {
        series_growth: (1.0 + targets.series_growth) * 2.0 - 1.0,
        pods: None,
        ..targets.clone()
    };
    Ok(vec![
        WhatIf {
            change: "retention doubles".into(),
            plan: plan(facts, profile, &longer, cal)?,
        },
        WhatIf {
            change: "series double".into(),
            plan: plan(facts, profile, &more, cal)?,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// 10 blocks of 2h, 100k series each, 1 GiB of chunks and 100 MiB of series entries
    /// in all, headers of 2 MiB (3 MiB resident) each.
    fn facts() -> DataFacts {
        DataFacts {
            blocks: 10,
            span_ms: 20 * 3_600_000,
            block_duration_ms: 7_200_000,
            series: 1_000_000,
            samples: 480_000_000,
            chunk_bytes: 1 << 30,
            index_bytes: 200 * MIB,
            series_section_bytes: 100 * MIB,
            header_disk_bytes: 20 * MIB,
            header_resident_bytes: 30 * MIB,
            remote: false,
        }
    }

    fn one_class(series: f64, range_ms: Option<i64>) -> QueryProfile {
        QueryProfile {
            source: "test".into(),
            classes: vec![QueryClass {
                name: "q".into(),
                selector: "q".into(),
                weight: 1.0,
                series_share: 0.0,
                series: Some(series),
                range_ms,
                skip_chunks: false,
                measured_chunk_bytes: None,
                measured_samples: None,
                measured_latency_s: Some(0.5),
            }],
            chunk_over_fetch: 2.0,
        }
    }

    fn targets() -> Targets {
        Targets {
            qps: 10.0,
            retention_ms: None,
            series_growth: 0.0,
            pod_memory: 1 << 30,
            pod_cpu: 2.0,
            cache_hit_target: 0.5,
            chunk_cache_in_pod: false,
            inflight_limit: DEFAULT_INFLIGHT_LIMIT,
            pods: Some(2),
            concurrency: None,
        }
    }

    fn cal() -> Calibration {
        Calibration {
            base_rss: 40 * MIB,
            held_bytes_per_series: 100.0,
            rss_per_request: MIB,
            concurrent_share: 1.0,
            latency_floor_s: 0.0,
            latency_s_per_mib: 0.0,
            cpu_s_per_mib: 0.01,
        }
    }

    #[test]
    fn known_inputs_give_known_figures() {
        // 1,000 series over the last 2h (one block): entries 104.8576 B + 8 B postings each.
        let p = plan(
            &facts(),
            &one_class(1000.0, Some(7_200_000)),
            &targets(),
            &cal(),
        )
        .unwrap();
        let c = &p.classes[0];
        assert_eq!(c.blocks, 1.0);
        let index = 1000.0 * (100.0 * MIB as f64 / 1e6 + 8.0);
        assert!((c.index_bytes - index).abs() < 1e-6);
        // Chunks: 1 GiB / 1M series / 2h per series-ms, times 1,000 series over 2h.
        let chunks = (1u64 << 30) as f64 / 1e6 * 1000.0;
        assert!((c.chunk_bytes - chunks).abs() < 1e-3);
        assert_eq!(c.requests, 4.0, "2 postings + 1 series + 1 chunk range");
        assert!((c.fetched_bytes - (index + 2.0 * chunks)).abs() < 1e-3);

        // Memory on 2 pods: headers halve; concurrency 10 qps x 0.5 s / 2 pods = 2.5.
        assert_eq!(p.memory.base, 40 * MIB);
        assert_eq!(p.memory.index_headers, 15 * MIB);
        let working_set = index + 1000.0 * CACHE_ITEM_OVERHEAD;
        assert_eq!(
            p.memory.index_cache,
            (working_set * 0.5 / 2.0).ceil() as u64
        );
        assert_eq!(p.memory.chunk_cache, 0, "external chunk cache");
        assert_eq!(p.chunk_cache_size, (chunks * 0.5 / 2.0).ceil() as u64);
        assert!((p.concurrency - 2.5).abs() < 1e-9);
        // Peak: the one block's cursor holds a batch of 512 of the 1,000 series (the store's
        // largest), and the request one batch of chunks: all of them.
        let peak = 512.0 * (100.0 * MIB as f64 / 1e6 + 8.0 + 100.0) + 2.0 * chunks;
        assert!((c.peak_bytes - peak).abs() < 1e-3);
        let inflight = peak * 2.5 + 2.5 * MIB as f64;
        assert_eq!(p.memory.inflight, inflight.ceil() as u64);
        assert_eq!(
            p.memory.total,
            p.memory.base + p.memory.index_headers + p.memory.index_cache + p.memory.inflight
        );
        assert_eq!(p.disk_bytes, 10 * MIB);
        assert_eq!(p.blocks_per_pod, 5.0);
        // Traffic: half the index from the cache, all chunks from the bucket.
        let bytes = index * 0.5 + chunks * 2.0;
        assert!((p.per_query.bytes - bytes).abs() < 1e-3);
        assert!((p.per_month.bytes - bytes * 10.0 * MONTH_S).abs() < 1.0);
        assert!((p.per_month.requests - 4.0 * 10.0 * MONTH_S).abs() < 1e-6);
        // CPU: 10 qps x fetched MiB x 0.01 s / 2 pods.
        let cpu = 10.0 * (index + 2.0 * chunks) / MIB as f64 * 0.01 / 2.0;
        assert!((p.cpu_cores - cpu).abs() < 1e-9);
    }

    #[test]
    fn whole_range_queries_touch_every_block_and_batch_by_1000() {
        let p = plan(&facts(), &one_class(2500.0, None), &targets(), &cal()).unwrap();
        let c = &p.classes[0];
        assert_eq!(c.blocks, 10.0);
        assert_eq!(c.requests, 10.0 * (2.0 + 3.0 * 2.0));
        // Over 10 blocks each cursor holds 2048 / 10 = 204 series, and the request one
        // batch of 1,000 series' chunks.
        let chunks = c.chunk_bytes * 2.0;
        let held = 10.0 * 204.0 * (100.0 * MIB as f64 / 1e6 + 8.0 + 100.0);
        assert!((c.peak_bytes - (held + chunks * 0.4)).abs() < 1e-3);
        // Over 200 blocks the store's smallest batch, 32 series per block.
        assert!(
            (c.peak_on(200.0) - 200.0 * (32.0 * c.held_bytes_per_series + chunks * 0.04)).abs()
                < 1e-3
        );
        // From a remote bucket: cursors of 16384 / 10 = 1,638 series, and the chunks of up
        // to 8 batches ahead: all three.
        let remote = DataFacts {
            remote: true,
            ..facts()
        };
        let p = plan(&remote, &one_class(2500.0, None), &targets(), &cal()).unwrap();
        let c = &p.classes[0];
        let held = 10.0 * 1638.0 * (100.0 * MIB as f64 / 1e6 + 8.0 + 100.0);
        assert!((c.peak_bytes - (held + chunks)).abs() < 1e-3);
    }

    #[test]
    fn measured_samples_give_series_per_block() {
        // 100 distinct series over all 10 blocks that returned the samples of 10 series over
        // the whole 20h (480 samples per series per 2h): 10 series per block.
        let mut profile = one_class(100.0, None);
        profile.classes[0].measured_samples = Some(10.0 * 480.0 * 10.0);
        // Labels only over every block: 12 series per block as the 30-minute class shows.
        let labels = QueryClass {
            name: "labels".into(),
            selector: "up".into(),
            series: Some(100.0),
            skip_chunks: true,
            measured_samples: Some(0.0),
            ..profile.classes[0].clone()
        };
        let recent = QueryClass {
            name: "recent".into(),
            selector: "up".into(),
            series: Some(12.0),
            range_ms: Some(1_800_000),
            measured_samples: Some(12.0 * 120.0),
            ..profile.classes[0].clone()
        };
        profile.classes.extend([labels, recent]);
        let p = plan(&facts(), &profile, &targets(), &cal()).unwrap();
        let series: Vec<f64> = p.classes.iter().map(|c| c.series).collect();
        assert!((series[0] - 10.0).abs() < 1e-9, "{series:?}");
        assert!((series[1] - 12.0).abs() < 1e-9, "{series:?}");
        assert!((series[2] - 12.0).abs() < 1e-9, "{series:?}");
    }

    #[test]
    fn pods_share_blocks_caches_and_long_range_requests() {
        // Every request reads all 10 blocks: on 5 pods each reads 2 and every pod sees every
        // request; caches split by five.
        let one = Targets {
            pods: Some(1),
            ..targets()
        };
        let five = Targets {
            pods: Some(5),
            ..targets()
        };
        let profile = one_class(100.0, None);
        let p1 = plan(&facts(), &profile, &one, &cal()).unwrap();
        let p5 = plan(&facts(), &profile, &five, &cal()).unwrap();
        assert!(
            (p5.concurrency - p1.concurrency).abs() < 1e-9,
            "every pod sees every request"
        );
        assert_eq!(p5.memory.index_cache, p1.memory.index_cache.div_ceil(5));
        let c = &p1.classes[0];
        let held = |blocks: f64| c.peak_on(blocks) * 5.0 + 5.0 * MIB as f64;
        assert_eq!(p1.memory.inflight, held(10.0).ceil() as u64);
        assert_eq!(p5.memory.inflight, held(2.0).ceil() as u64);
    }

    #[test]
    fn retention_and_growth_scale_headers_and_blocks() {
        let t = Targets {
            retention_ms: Some(40 * 3_600_000),
            series_growth: 0.5,
            ..targets()
        };
        let p = plan(&facts(), &one_class(10.0, None), &t, &cal()).unwrap();
        assert_eq!(p.blocks_per_pod, 10.0, "20 blocks on 2 pods");
        assert_eq!(p.disk_bytes, 30 * MIB, "20 MiB x 2 x 1.5 / 2");
        let w = what_ifs(&facts(), &one_class(10.0, None), &targets(), &cal()).unwrap();
        assert_eq!(w[0].plan.blocks_per_pod * w[0].plan.pods as f64, 20.0);
        assert!(
            w[1].plan.classes[0].series == 20.0,
            "measured series scale with growth"
        );
    }

    #[test]
    fn pods_are_chosen_by_memory_or_cpu() {
        // Headers of 30 MiB resident, 100 MiB pods: 80 MiB usable, 40 base + cache + in-flight.
        let t = Targets {
            pods: None,
            pod_memory: 100 * MIB,
            qps: 1.0,
            ..targets()
        };
        let p = plan(&facts(), &one_class(10.0, Some(1)), &t, &cal()).unwrap();
        assert_eq!(p.bound_by, "memory");
        assert!(p.memory.total as f64 <= 100.0 * MIB as f64 * HEADROOM);
        let fewer = memory_total_with(&t, p.pods - 1);
        assert!(p.pods == 1 || fewer > 100.0 * MIB as f64 * HEADROOM);

        let busy = Targets {
            qps: 10_000.0,
            pod_memory: 64 << 30,
            ..t
        };
        let p = plan(&facts(), &one_class(1000.0, None), &busy, &cal()).unwrap();
        assert_eq!(p.bound_by, "cpu");
        assert!(p.cpu_cores <= 2.0 * HEADROOM + 1e-9);
    }

    fn memory_total_with(t: &Targets, pods: u64) -> f64 {
        if pods == 0 {
            return f64::INFINITY;
        }
        let fixed = Targets {
            pods: Some(pods),
            ..t.clone()
        };
        plan(&facts(), &one_class(10.0, Some(1)), &fixed, &cal())
            .unwrap()
            .memory
            .total as f64
    }

    #[test]
    fn nonsense_inputs_are_errors() {
        let profile = one_class(1.0, None);
        for t in [
            Targets {
                qps: 0.0,
                ..targets()
            },
            Targets {
                qps: f64::NAN,
                ..targets()
            },
            Targets {
                retention_ms: Some(0),
                ..targets()
            },
            Targets {
                series_growth: -1.0,
                ..targets()
            },
            Targets {
                pod_memory: 0,
                ..targets()
            },
            Targets {
                pod_cpu: -1.0,
                ..targets()
            },
            Targets {
                cache_hit_target: 1.5,
                ..targets()
            },
            Targets {
                pods: Some(0),
                ..targets()
            },
        ] {
            let e = plan(&facts(), &profile, &t, &cal()).unwrap_err();
            assert!(matches!(e, PlanError::Input(_)), "{t:?}: {e}");
        }
        let tiny = Targets {
            pods: None,
            pod_memory: 10 * MIB,
            ..targets()
        };
        let e = plan(&facts(), &profile, &tiny, &cal()).unwrap_err();
        assert!(e.to_string().contains("cannot serve"), "{e}");
    }

    #[test]
    fn the_relabel_snippet_is_valid_for_the_store() {
        let rules = crate::bucket::relabel::parse_rules(&relabel_snippet(3, "1")).unwrap();
        let mut kept = 0;
        for i in 0..300 {
            let labels = std::collections::BTreeMap::from([(
                "__block_id".to_string(),
                ulid::Ulid::from_parts(i, u128::from(i) * 7919).to_string(),
            )]);
            if crate::bucket::relabel::relabel(&labels, &rules).is_some() {
                kept += 1;
            }
        }
        assert!(
            (70..130).contains(&kept),
            "about a third of 300 blocks: {kept}"
        );
    }
}
