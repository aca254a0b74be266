//! The queries of the StoreAPI over the served blocks.
//!
//! A Series request runs in three steps:
//! 1. per block: external-label and block matchers, postings. The series limit is checked
//!    on postings, before any series is read;
//! 2. the blocks' series entries (labels and chunk metas) read a batch at a time and merged
//!    by label set across blocks, as a stream ([`super::merge`]);
//! 3. chunks fetched for a batch of merged series and emitted, so memory holds a few batches
//!    of series and one batch of chunk bytes, however large the response.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ulid::Ulid;

use std::collections::VecDeque;

use super::block::{
    BlockSeries, BucketBlock, ChunkPlan, SegmentRecords, WantedChunk, NO_WAIT_MAX_SERIES,
};
use super::merge::{BlockCursor, Merged, MergedSeries};
use super::{not_ready, BucketStore, QueryCtx};
use crate::model::Matcher;
use crate::storeapi::{
    check_range, labels, LabelsQuery, QueryStats, SeriesEvent, SeriesOut, SeriesQuery,
    SeriesSummary, StoreError, StoredChunk,
};

/// Series whose chunks are fetched together, at most, and chunks at most: a batch of long
/// series over many blocks stays as small in memory as one of short ones.
const SERIES_PER_FETCH: usize = 1000;
const CHUNKS_PER_FETCH: usize = 4096;
/// Batches whose chunks a request fetches ahead over a remote bucket: enough to keep the
/// bucket busy over a round trip of tens of milliseconds, each within the memory budget.
pub const CHUNK_BATCHES_AHEAD: usize = 8;
/// Blocks a request may have to run in no-wait mode (see [`NO_WAIT_MAX_SERIES`]).
const NO_WAIT_MAX_BLOCKS: usize = 16;

impl BucketStore {
    fn check_ready(&self) -> Result<(), StoreError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(not_ready())
        }
    }

    /// The blocks a request reads, with the matchers left for each block's index.
    fn select_blocks(
        &self,
        min_time: i64,
        max_time: i64,
        matchers: &[Matcher],
        block_matchers: &[Matcher],
    ) -> Vec<(Arc<BucketBlock>, Vec<Matcher>)> {
        self.blocks()
            .into_iter()
            .filter(|b| b.overlaps(min_time, max_time))
            .filter(|b| labels::match_all(&b.block_labels(), block_matchers))
            .filter_map(|b| b.index_matchers(matchers).map(|m| (b, m)))
            .collect()
    }

    /// Streams the series matching `q` to `emit` (which returns false to stop early, e.g.
    /// when the client went away) and returns what was queried. Blocking.
    pub fn series(
        &self,
        q: &SeriesQuery,
        emit: &mut dyn FnMut(SeriesEvent) -> bool,
    ) -> Result<SeriesSummary, StoreError> {
        self.check_ready()?;
        check_range(q.min_time, q.max_time)?;
        let limits = self.config.limits;
        let mut ctx = self.query_ctx();
        let mut summary = SeriesSummary::default();
        let started = Instant::now();

        let selected = self.select_blocks(q.min_time, q.max_time, &q.matchers, &q.block_matchers);
        let count = selected.len();
        if count > NO_WAIT_MAX_BLOCKS && crate::nowait::refuse() {
            return Err(StoreError::WouldWait);
        }
        // The blocks' postings (opening their indexes if closed) are read on several threads,
        // then the series limit is checked before any series is read.
        // Over a remote bucket every block's reads wait a round trip: start them together.
        let at_once = selected
            .iter()
            .filter(|(b, _)| b.reads_chunks_remotely())
            .count()
            .min(MAX_REMOTE_BLOCK_THREADS);
        let postings = per_block(&selected, &mut ctx, at_once, |(block, matchers), ctx| {
            block.postings(matchers, ctx)
        })?;
        let mut postings_total = 0u64;
        let mut cursors = Vec::with_capacity(count);
        for ((block, _), postings) in selected.into_iter().zip(postings) {
            let cursor = postings.and_then(|postings| {
                postings_total += postings.refs.len() as u64;
                if postings_total > NO_WAIT_MAX_SERIES && crate::nowait::refuse() {
                    return Err(StoreError::WouldWait);
                }
                limits.check_series(postings_total)?;
                BlockCursor::new(block.clone(), postings, count, q)
            });
            match cursor {
                Ok(c) => {
                    summary.queried_blocks.push(block.id);
                    cursors.push(parking_lot::Mutex::new(c));
                }
                Err(e) => block_failed(block.id, e, q.partial_response, emit)?,
            }
        }
        // Each cursor's first batch of series, on several threads too: for most requests that
        // is all their series.
        let primed = per_block(&cursors, &mut ctx, at_once, |cursor, ctx| {
            cursor.lock().prime(q, ctx)
        })?;
        let mut cursors: Vec<BlockCursor> = cursors.into_iter().map(|c| c.into_inner()).collect();
        for (i, outcome) in primed.into_iter().enumerate().rev() {
            if let Err(e) = outcome {
                let mut cursor = cursors.remove(i);
                cursor.abandon(&mut ctx);
                summary.queried_blocks.retain(|id| *id != cursor.block.id);
                block_failed(cursor.block.id, e, q.partial_response, emit)?;
            }
        }
        ctx.stats.blocks_queried = summary.queried_blocks.len() as i64;
        ctx.stats.get_all_duration = started.elapsed();

        let merge_started = Instant::now();
        let blocks: Vec<Arc<BucketBlock>> = cursors.iter().map(|c| c.block.clone()).collect();
        let mut merged = MergedSeries::new(cursors);
        // Blocks that failed: left out of the rest of the response.
        let mut failed = vec![false; blocks.len()];
        // Over a remote bucket, the chunks of the next batches are fetched while this one is
        // sent: up to CHUNK_BATCHES_AHEAD in flight, each within the memory budget.
        let depth = if !q.skip_chunks
            && !crate::nowait::active()
            && blocks.iter().any(|b| b.reads_chunks_remotely())
        {
            CHUNK_BATCHES_AHEAD
        } else {
            1
        };
        let fetch = ChunkFetcher {
            runtime: &self.runtime,
            blocks: &blocks,
            permits: Arc::new(tokio::sync::Semaphore::new(
                self.config.bucket_requests_per_query.max(1),
            )),
        };
        let mut queue: VecDeque<InFlight> = VecDeque::new();
        let (mut sent, mut pending, mut chunk_count) = (0u64, 0u64, 0u64);
        let mut exhausted = false;
        loop {
            while !exhausted && queue.len() < depth && (q.limit == 0 || sent + pending < q.limit) {
                let mut batch: Vec<Merged> = Vec::with_capacity(SERIES_PER_FETCH);
                let mut batch_chunks = 0usize;
                while batch.len() < SERIES_PER_FETCH && batch_chunks < CHUNKS_PER_FETCH {
                    if q.limit > 0 && sent + pending + batch.len() as u64 >= q.limit {
                        break;
                    }
                    let Some(m) = merged.next(q, &mut ctx, &mut failed, &mut |id, e| {
                        block_failed(id, e, q.partial_response, emit)
                    })?
                    else {
                        exhausted = true;
                        break;
                    };
                    chunk_count += m.chunks.len() as u64;
                    limits.check_samples(chunk_count)?;
                    batch_chunks += m.chunks.len();
                    batch.push(m);
                }
                if batch.is_empty() {
                    break;
                }
                pending += batch.len() as u64;
                let inflight =
                    fetch.start(batch, q.skip_chunks, &mut failed, &mut ctx, &mut |id, e| {
                        block_failed(id, e, q.partial_response, emit)
                    })?;
                queue.push_back(inflight);
            }
            let Some(inflight) = queue.pop_front() else {
                break;
            };
            pending -= inflight.batch.len() as u64;
            let reserved = inflight.reserved;
            let mark = ctx.held();
            let (batch, chunks) = fetch.finish(
                inflight,
                q.skip_chunks,
                &mut failed,
                &mut ctx,
                &mut |id, e| block_failed(id, e, q.partial_response, emit),
            )?;
            for (m, chunks) in batch.into_iter().zip(chunks) {
                if chunks.is_empty() && !q.skip_chunks {
                    continue; // all its chunks were in failed blocks
                }
                ctx.stats.merged_series_count += 1;
                ctx.stats.merged_chunks_count += chunks.len() as i64;
                sent += 1;
                let out = SeriesOut {
                    labels: m.labels,
                    chunks,
                };
                if !emit(SeriesEvent::Series(out)) {
                    summary.stats = std::mem::take(&mut ctx.stats);
                    self.count_filters(&summary.stats);
                    return Ok(summary);
                }
            }
            // The batch's chunk bytes go back to the memory budget once it is sent.
            ctx.release_to(mark);
            ctx.release(reserved);
        }
        ctx.stats.merge_duration = merge_started.elapsed();
        summary.stats = std::mem::take(&mut ctx.stats);
        self.count_filters(&summary.stats);
        Ok(summary)
    }

    /// Adds what a request's postings cost model did to the store's counters.
    fn count_filters(&self, stats: &QueryStats) {
        let c = &self.counters;
        c.postings_filters
            .fetch_add(stats.postings_filters as u64, Ordering::Relaxed);
        c.series_filtered
            .fetch_add(stats.series_filtered as u64, Ordering::Relaxed);
    }

    /// Label names of the series matching the query (all names of the blocks without
    /// matchers), sorted. Blocking.
    pub fn label_names(&self, q: &LabelsQuery) -> Result<(Vec<String>, Vec<String>), StoreError> {
        self.labels_query(q, |block, series| match series {
            None => block.label_names(),
            Some(series) => {
                let mut names: Vec<String> = series
                    .iter()
                    .flat_map(|s| s.labels.iter().map(|l| l.name.to_string()))
                    .collect();
                names.sort();
                names.dedup();
                Ok(names)
            }
        })
    }

    /// Values of `name` over the series matching the query, sorted. Blocking.
    pub fn label_values(
        &self,
        name: &str,
        q: &LabelsQuery,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        if q.without_replica_labels.iter().any(|r| r == name) {
            return Ok((Vec::new(), Vec::new()));
        }
        self.labels_query(q, |block, series| match series {
            None => block.label_values(name),
            Some(series) => {
                let mut values: Vec<String> = series
                    .iter()
                    .filter_map(|s| s.labels.get(name).map(String::from))
                    .collect();
                values.sort();
                values.dedup();
                Ok(values)
            }
        })
    }

    /// Runs `per_block` over the selected blocks (with the matching series when there are
    /// matchers) and merges the sorted results; returns them with the warnings.
    fn labels_query(
        &self,
        q: &LabelsQuery,
        per_block: impl Fn(&BucketBlock, Option<&[BlockSeries]>) -> Result<Vec<String>, StoreError>,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        self.check_ready()?;
        check_range(q.min_time, q.max_time)?;
        let mut ctx = self.query_ctx();
        let mut all: Vec<String> = Vec::new();
        let mut warnings = Vec::new();
        for (block, matchers) in
            self.select_blocks(q.min_time, q.max_time, &q.matchers, &q.block_matchers)
        {
            let result = if matchers.is_empty() {
                per_block(&block, None)
            } else {
                block
                    .postings(&matchers, &mut ctx)
                    .and_then(|p| {
                        block.series(&p.refs, &p.filters, q.min_time, q.max_time, &mut ctx)
                    })
                    .and_then(|series| per_block(&block, Some(&series)))
            };
            match result {
                Ok(v) => all.extend(v),
                Err(e) => {
                    let mut warn = |ev: SeriesEvent| {
                        if let SeriesEvent::Warning(w) = ev {
                            warnings.push(w);
                        }
                        true
                    };
                    block_failed(block.id, e, q.partial_response, &mut warn)?
                }
            }
        }
        self.count_filters(&ctx.stats);
        all.retain(|v| !q.without_replica_labels.contains(v));
        all.sort();
        all.dedup();
        if q.limit > 0 {
            all.truncate(q.limit as usize);
        }
        Ok((all, warnings))
    }
}

/// The cores queries may use. The first call reads the cgroup's CPU quota (a few files), so
/// the store makes it when it starts rather than in its first query.
pub(super) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Per-block work shorter than this is not worth starting a thread for (tens of µs).
const WORTH_A_THREAD: std::time::Duration = std::time::Duration::from_micros(200);

/// Threads a request starts at most to read remote blocks at once.
const MAX_REMOTE_BLOCK_THREADS: usize = 32;

/// Runs `work` for every item, each with its own fork of `ctx`, merged back in item order;
/// results come in item order. With `at_once` above 1 (blocks whose reads wait on a remote
/// bucket), that many threads start right away. Otherwise this thread takes the first item;
/// if it took longer than [`WORTH_A_THREAD`], the rest run on up to as many threads as there
/// are cores (this one among them). Threads are scoped to the call, not pooled: a thread
/// waiting for the memory budget must not hold up another request's work.
fn per_block<I: Sync, T: Send>(
    items: &[I],
    ctx: &mut QueryCtx,
    at_once: usize,
    work: impl Fn(&I, &mut QueryCtx) -> T + Sync,
) -> Result<Vec<T>, StoreError> {
    let cores = cores();
    let slots: Vec<parking_lot::Mutex<(Option<T>, QueryCtx)>> = items
        .iter()
        .map(|_| parking_lot::Mutex::new((None, ctx.fork())))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let run_one = || {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (Some(item), Some(slot)) = (items.get(i), slots.get(i)) else {
            return false;
        };
        let mut slot = slot.lock();
        let out = work(item, &mut slot.1);
        slot.0 = Some(out);
        true
    };
    let run = || while run_one() {};
    let started = Instant::now();
    let at_once = at_once.min(items.len());
    let threads = if at_once > 1 {
        at_once
    } else {
        run_one();
        cores.min(items.len().saturating_sub(1))
    };
    // No-wait mode is this thread's: the items it would share run here.
    if threads <= 1
        || (at_once <= 1 && started.elapsed() < WORTH_A_THREAD)
        || crate::nowait::active()
    {
        run();
    } else {
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(run);
            }
            run();
        });
    }
    let mut out = Vec::with_capacity(items.len());
    let mut failed = Ok(());
    for slot in slots {
        let (result, part) = slot.into_inner();
        if let Err(e) = ctx.absorb(part) {
            failed = Err(e);
        }
        out.extend(result);
    }
    failed.map(|()| out)
}

/// A block failed: a warning if the request allows partial responses and the failure is
/// the block's (not a limit), else the request's error.
fn block_failed(
    id: Ulid,
    e: StoreError,
    partial: bool,
    emit: &mut dyn FnMut(SeriesEvent) -> bool,
) -> Result<(), StoreError> {
    if matches!(e, StoreError::WouldWait) || crate::nowait::active() {
        // Not the block's failure: the request runs again where it may wait.
        return Err(e);
    }
    let partial_ok = matches!(e, StoreError::Unavailable(_) | StoreError::Internal(_));
    tracing::warn!(block = %id, error = %e, partial = partial && partial_ok, "block query failed");
    if partial && partial_ok {
        emit(SeriesEvent::Warning(format!("block {id}: {e}")));
        Ok(())
    } else {
        Err(e)
    }
}

/// What the fetch of one block's plan gave.
type BlockRecords = Result<Vec<SegmentRecords>, StoreError>;

/// A batch of merged series whose chunks are being fetched.
struct InFlight {
    batch: Vec<Merged>,
    /// Per block with chunks in the batch: the plan, and which series each wanted chunk is of.
    plans: Vec<(usize, ChunkPlan, Vec<WantedChunk>, Vec<usize>)>,
    /// The remote reads, running on the runtime; per plan, in order.
    reads: Option<tokio::task::JoinHandle<Vec<BlockRecords>>>,
    /// Budget reserved by the plans, given back once the batch is sent.
    reserved: u64,
}

impl Drop for InFlight {
    /// A request that ends early (an error, the client gone) stops its fetches.
    fn drop(&mut self) {
        if let Some(reads) = &self.reads {
            reads.abort();
        }
    }
}

/// Fetches the chunks of batches of merged series: every block's records of a batch at once,
/// on the runtime, so several batches can be in flight while the request goes on.
struct ChunkFetcher<'a> {
    runtime: &'a tokio::runtime::Handle,
    blocks: &'a [Arc<BucketBlock>],
    /// The request's bound on GETs in flight (`--store.max-bucket-requests-per-query`).
    permits: Arc<tokio::sync::Semaphore>,
}

impl ChunkFetcher<'_> {
    /// Plans the batch's chunks per block (cache hits, ranges, budget) and starts the remote
    /// reads. A block that fails goes to `on_error` (which may accept it as a warning) and is
    /// marked in `failed`.
    fn start(
        &self,
        batch: Vec<Merged>,
        skip_chunks: bool,
        failed: &mut [bool],
        ctx: &mut QueryCtx,
        on_error: &mut dyn FnMut(Ulid, StoreError) -> Result<(), StoreError>,
    ) -> Result<InFlight, StoreError> {
        let before = ctx.held();
        let mut plans = Vec::new();
        if !skip_chunks {
            for (b, block) in self.blocks.iter().enumerate() {
                if failed[b] {
                    continue;
                }
                let mut metas = Vec::new();
                let mut owners = Vec::new();
                for (s, m) in batch.iter().enumerate() {
                    for (cb, meta) in &m.chunks {
                        if *cb == b {
                            metas.push(*meta);
                            owners.push(s);
                        }
                    }
                }
                if metas.is_empty() {
                    continue;
                }
                match block.plan_chunks(&metas, ctx) {
                    Ok(plan) => plans.push((b, plan, metas, owners)),
                    Err(e) => {
                        failed[b] = true;
                        on_error(block.id, e)?;
                    }
                }
            }
        }
        let reads: Vec<_> = plans
            .iter()
            .filter(|(_, plan, ..)| plan.needs_fetch())
            .map(|(b, plan, ..)| {
                self.blocks[*b].fetch_planned(plan, &self.permits, ctx.budget_ticket())
            })
            .collect();
        let reads =
            (!reads.is_empty()).then(|| self.runtime.spawn(futures::future::join_all(reads)));
        Ok(InFlight {
            batch,
            plans,
            reads,
            reserved: ctx.held().saturating_sub(before),
        })
    }

    /// Waits for the batch's reads and returns it with, per series, its chunks sorted by time
    /// with identical ones (from overlapping blocks) dropped.
    #[allow(clippy::type_complexity)]
    fn finish(
        &self,
        mut inflight: InFlight,
        skip_chunks: bool,
        failed: &mut [bool],
        ctx: &mut QueryCtx,
        on_error: &mut dyn FnMut(Ulid, StoreError) -> Result<(), StoreError>,
    ) -> Result<(Vec<Merged>, Vec<Vec<StoredChunk>>), StoreError> {
        let batch = std::mem::take(&mut inflight.batch);
        let mut out: Vec<Vec<StoredChunk>> = batch
            .iter()
            .map(|m| Vec::with_capacity(if skip_chunks { 0 } else { m.chunks.len() }))
            .collect();
        let mut reads = match inflight.reads.take() {
            Some(handle) => self
                .runtime
                .block_on(handle)
                .map_err(|e| StoreError::Internal(format!("chunk fetch task failed: {e}")))?
                .into_iter(),
            None => Vec::new().into_iter(),
        };
        for (b, mut plan, metas, owners) in std::mem::take(&mut inflight.plans) {
            let block = &self.blocks[b];
            let chunks = match plan.needs_fetch() {
                true => reads
                    .next()
                    .expect("a read per plan that needed one")
                    .map(|records| plan.fetched(records))
                    .and_then(|()| block.finish_chunks(plan, &metas, ctx)),
                false => block.finish_chunks(plan, &metas, ctx),
            };
            if failed[b] {
                continue; // failed in a later batch's planning: left out from here on
            }
            match chunks {
                Ok(chunks) => {
                    for (s, c) in owners.into_iter().zip(chunks) {
                        out[s].push(c);
                    }
                }
                Err(e) => {
                    failed[b] = true;
                    on_error(block.id, e)?;
                }
            }
        }
        for chunks in &mut out {
            chunks.sort_by(|a, b| {
                (a.min_time, a.max_time, a.hash).cmp(&(b.min_time, b.max_time, b.hash))
            });
            chunks.dedup_by(|a, b| {
                a.min_time == b.min_time
                    && a.max_time == b.max_time
                    && a.hash == b.hash
                    && a.data == b.data
            });
        }
        Ok((batch, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::budget::MemoryBudget;

    #[test]
    fn per_block_keeps_item_order_and_hands_back_stats_and_holdings() {
        let budget = Arc::new(MemoryBudget::new(0, std::time::Duration::ZERO));
        let mut ctx = QueryCtx::default();
        ctx.budget = Some(budget.clone());
        ctx.ticket = budget.ticket();
        ctx.bytes_limit = 1000;
        let items: Vec<u64> = (1..=6).collect();
        let threads = parking_lot::Mutex::new(std::collections::HashSet::new());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let out = per_block(&items, &mut ctx, 0, |&i, ctx| {
            threads.lock().insert(std::thread::current().id());
            if i == 1 {
                // The first item takes longer than a thread start: the rest are shared...
                std::thread::sleep(WORTH_A_THREAD * 2);
            } else if cores > 1 {
                // ... so a second thread turns up, however busy the host.
                let deadline = Instant::now() + std::time::Duration::from_secs(10);
                while threads.lock().len() < 2 && Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            ctx.reserve(i * 10)?;
            ctx.stats.data_downloaded_size_sum += (i * 10) as i64;
            ctx.stats.postings_fetched += 1;
            Ok::<u64, StoreError>(i * 2)
        })
        .unwrap();
        let out: Vec<u64> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(out, vec![2, 4, 6, 8, 10, 12]);
        assert_eq!(ctx.stats.postings_fetched, 6);
        assert_eq!(ctx.held(), 210);
        assert_eq!(budget.held(), 210);
        assert_eq!(threads.lock().len() > 1, cores > 1);

        // Together over the request's bytes limit: refused when merged back.
        let e = per_block(&items, &mut ctx, 0, |&i, ctx| {
            ctx.stats.data_downloaded_size_sum += (i * 50) as i64;
        })
        .unwrap_err();
        assert!(matches!(e, StoreError::ResourceExhausted(_)), "{e}");
        drop(ctx);
        assert_eq!(budget.held(), 0, "everything given back");
    }
}
