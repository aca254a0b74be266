//! The series of a Series request, streamed in label order: one cursor per block reads the
//! block's series a batch at a time, and a k-way merge joins the cursors, so a request holds
//! a few batches of series in memory however many series it returns.
//!
//! A block's series come in reference order, which is the order of their own labels. The
//! response is sorted by full label sets, and adding the block's external labels can move a
//! series: `{a="1"}` sorts before `{a="1", b="2"}`, but with the external label `c="x"` the
//! first becomes `{a="1", c="x"}`, which sorts after `{a="1", b="2", c="x"}`. Only a series
//! whose own labels are a prefix of a later series' own labels can move, and only past the
//! series that extend it, which follow it directly. So a cursor holds a series back until
//! a series that does not extend it arrives ([`HeldBack`]). When series' own labels are
//! rewritten (an own label named like an external label, or a dropped replica label that is
//! not external), anything can move: such a block is read whole and sorted.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use compact_str::CompactString;
use ulid::Ulid;

use super::block::{BlockPostings, BlockSeries, BucketBlock, WantedChunk};
use super::QueryCtx;
use crate::model::{Labels, Matcher};
use crate::storeapi::{SeriesQuery, StoreError};

/// Series a request holds decoded at most across its cursors (the batch of each cursor is
/// this divided by the number of blocks, within the bounds below).
const SERIES_IN_FLIGHT: usize = 2048;
const MIN_BATCH: usize = 32;
const MAX_BATCH: usize = 512;
/// The same over a remote bucket, where each batch a cursor reads after its first costs a
/// round trip on the request's critical path: larger batches, for a few MiB more held.
const REMOTE_SERIES_IN_FLIGHT: usize = 16384;
const REMOTE_MAX_BATCH: usize = 8192;

/// Series a block's cursor reads at a time when a request reads `blocks` blocks, from a
/// `remote` bucket or not (also what `stele plan` sizes in-flight memory by).
pub fn cursor_batch(blocks: usize, remote: bool) -> usize {
    match remote {
        true => (REMOTE_SERIES_IN_FLIGHT / blocks.max(1)).clamp(MIN_BATCH, REMOTE_MAX_BATCH),
        false => (SERIES_IN_FLIGHT / blocks.max(1)).clamp(MIN_BATCH, MAX_BATCH),
    }
}

/// One block's series matching the request, in label order, read a batch at a time.
pub struct BlockCursor {
    pub block: Arc<BucketBlock>,
    refs: Vec<u64>,
    /// Matchers the postings left to the series' labels.
    filters: Vec<Matcher>,
    next_ref: usize,
    batch: usize,
    /// Read whole and sorted (see the module doc).
    whole: bool,
    ready: VecDeque<BlockSeries>,
    held_back: HeldBack,
    /// Memory budget taken for the series read and not yet merged.
    held_bytes: u64,
}

impl BlockCursor {
    pub fn new(
        block: Arc<BucketBlock>,
        postings: BlockPostings,
        blocks: usize,
        q: &SeriesQuery,
    ) -> Result<Self, StoreError> {
        let whole = block.own_labels_rewritten(&q.without_replica_labels)?;
        let batch = cursor_batch(blocks, block.reads_chunks_remotely());
        let ext_names = block.ext_labels.iter().map(|l| l.name.clone()).collect();
        Ok(BlockCursor {
            block,
            refs: postings.refs,
            filters: postings.filters,
            next_ref: 0,
            batch,
            whole,
            ready: VecDeque::new(),
            held_back: HeldBack {
                ext_names,
                series: Vec::new(),
            },
            held_bytes: 0,
        })
    }

    /// The next series in label order, reading the next batch when needed.
    pub fn next(
        &mut self,
        q: &SeriesQuery,
        ctx: &mut QueryCtx,
    ) -> Result<Option<BlockSeries>, StoreError> {
        while self.ready.is_empty() {
            if self.next_ref == self.refs.len() {
                self.ready.extend(self.held_back.series.drain(..));
                break;
            }
            self.read_batch(q, ctx)?;
        }
        let next = self.ready.pop_front();
        if self.ready.is_empty() && self.held_back.series.is_empty() {
            ctx.release(std::mem::take(&mut self.held_bytes));
        }
        Ok(next)
    }

    /// Reads the first batch now, if nothing is read yet (so that blocks can be read on
    /// several threads before the merge asks for them one by one).
    pub fn prime(&mut self, q: &SeriesQuery, ctx: &mut QueryCtx) -> Result<(), StoreError> {
        if self.ready.is_empty() && self.next_ref == 0 && !self.refs.is_empty() {
            self.read_batch(q, ctx)?;
        }
        Ok(())
    }

    /// Gives back the budget of the series handed out: before a batch is read, only the
    /// held-back ones are still here.
    fn release_handed_out(&mut self, ctx: &mut QueryCtx) {
        let kept: u64 = self
            .held_back
            .series
            .iter()
            .chain(&self.ready)
            .map(BlockSeries::memory_estimate)
            .sum();
        ctx.release(self.held_bytes.saturating_sub(kept));
        self.held_bytes = self.held_bytes.min(kept);
    }

    /// Drops what is left, after a failure.
    pub fn abandon(&mut self, ctx: &mut QueryCtx) {
        self.next_ref = self.refs.len();
        self.ready.clear();
        self.held_back.series.clear();
        ctx.release(std::mem::take(&mut self.held_bytes));
    }

    fn read_batch(&mut self, q: &SeriesQuery, ctx: &mut QueryCtx) -> Result<(), StoreError> {
        let end = if self.whole {
            self.refs.len()
        } else {
            (self.next_ref + self.batch).min(self.refs.len())
        };
        self.release_handed_out(ctx);
        // The entries' download is given back once decoded; the series are held instead.
        let mark = ctx.held();
        let mut series = self.block.series(
            &self.refs[self.next_ref..end],
            &self.filters,
            q.min_time,
            q.max_time,
            ctx,
        )?;
        ctx.release_to(mark);
        self.next_ref = end;
        drop_replica_labels(&mut series, &q.without_replica_labels);
        if let Some(shard) = &q.shard {
            series.retain(|s| shard.matches(&s.labels));
        }
        let bytes: u64 = series.iter().map(BlockSeries::memory_estimate).sum();
        ctx.hold(bytes)?;
        self.held_bytes += bytes;
        if self.whole {
            sort_and_join(&mut series);
            self.ready.extend(series);
        } else {
            for s in series {
                self.held_back.push(s, &mut self.ready);
            }
        }
        Ok(())
    }
}

/// Series of a block read but possibly not in order yet, sorted by labels. A series is
/// released once the latest series read does not extend its own labels: only extensions can
/// still sort before it, and they come right after it (see the module doc).
struct HeldBack {
    ext_names: Vec<CompactString>,
    series: Vec<BlockSeries>,
}

impl HeldBack {
    fn push(&mut self, s: BlockSeries, ready: &mut VecDeque<BlockSeries>) {
        let released = self
            .series
            .iter()
            .take_while(|held| !self.extends(&s.labels, &held.labels))
            .count();
        ready.extend(self.series.drain(..released));
        let at = self.series.partition_point(|held| held.labels < s.labels);
        self.series.insert(at, s);
    }

    /// Whether the own labels (those that are not external) of `later` start with all the
    /// own labels of `earlier`.
    fn extends(&self, later: &Labels, earlier: &Labels) -> bool {
        let own = |l: &&crate::model::labels::Label| !self.ext_names.contains(&l.name);
        let mut later = later.iter().filter(own);
        earlier.iter().filter(own).all(|e| later.next() == Some(e))
    }
}

/// Removes `names` from every series; with external replica labels this keeps the order.
fn drop_replica_labels(series: &mut [BlockSeries], names: &[String]) {
    for s in series {
        s.labels = crate::storeapi::labels::without(std::mem::take(&mut s.labels), names);
    }
}

/// Sorts by labels and joins series that became equal.
fn sort_and_join(series: &mut Vec<BlockSeries>) {
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    series.dedup_by(|later, kept| {
        if later.labels == kept.labels {
            kept.chunks.append(&mut later.chunks);
            true
        } else {
            false
        }
    });
}

/// A block's current series in the merge heap, smallest labels first.
struct Front {
    series: BlockSeries,
    cursor: usize,
}

impl PartialEq for Front {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Front {}
impl PartialOrd for Front {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Front {
    // Reversed: `BinaryHeap` is a max-heap.
    fn cmp(&self, other: &Self) -> Ordering {
        (&other.series.labels, other.cursor).cmp(&(&self.series.labels, self.cursor))
    }
}

/// The k-way merge of the cursors: series with the same labels in several blocks come out
/// as one, with each chunk tagged by the index of its block's cursor.
pub struct MergedSeries {
    pub cursors: Vec<BlockCursor>,
    heap: BinaryHeap<Front>,
    started: bool,
}

/// A series after the merge: its labels and its chunks, each with its cursor's index.
pub struct Merged {
    pub labels: Labels,
    pub chunks: Vec<(usize, WantedChunk)>,
}

impl MergedSeries {
    pub fn new(cursors: Vec<BlockCursor>) -> Self {
        MergedSeries {
            cursors,
            heap: BinaryHeap::new(),
            started: false,
        }
    }

    /// The next merged series. A block that fails goes to `on_error` (which may accept it
    /// as a warning) and is left out from then on; `failed` marks it for the chunk phase.
    pub fn next(
        &mut self,
        q: &SeriesQuery,
        ctx: &mut QueryCtx,
        failed: &mut [bool],
        on_error: &mut dyn FnMut(Ulid, StoreError) -> Result<(), StoreError>,
    ) -> Result<Option<Merged>, StoreError> {
        if !self.started {
            self.started = true;
            for c in 0..self.cursors.len() {
                self.advance(c, q, ctx, failed, on_error)?;
            }
        }
        let Some(first) = self.heap.pop() else {
            return Ok(None);
        };
        self.advance(first.cursor, q, ctx, failed, on_error)?;
        let BlockSeries { labels, chunks } = first.series;
        let mut chunks: Vec<_> = chunks.into_iter().map(|c| (first.cursor, c)).collect();
        while self.heap.peek().is_some_and(|f| f.series.labels == labels) {
            let same = self.heap.pop().expect("peeked");
            self.advance(same.cursor, q, ctx, failed, on_error)?;
            chunks.extend(same.series.chunks.into_iter().map(|c| (same.cursor, c)));
        }
        Ok(Some(Merged { labels, chunks }))
    }

    fn advance(
        &mut self,
        c: usize,
        q: &SeriesQuery,
        ctx: &mut QueryCtx,
        failed: &mut [bool],
        on_error: &mut dyn FnMut(Ulid, StoreError) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if failed[c] {
            return Ok(());
        }
        match self.cursors[c].next(q, ctx) {
            Ok(Some(series)) => self.heap.push(Front { series, cursor: c }),
            Ok(None) => {}
            Err(e) => {
                failed[c] = true;
                self.cursors[c].abandon(ctx);
                on_error(self.cursors[c].block.id, e)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series(labels: Labels) -> BlockSeries {
        BlockSeries {
            labels,
            chunks: Vec::new(),
        }
    }

    /// `own` sorted and unique, as a block's series come; returns what `HeldBack` releases.
    fn through_held_back(own: &[Labels], ext: &Labels) -> Vec<Labels> {
        let mut held = HeldBack {
            ext_names: ext.iter().map(|l| l.name.clone()).collect(),
            series: Vec::new(),
        };
        let mut ready = VecDeque::new();
        for o in own {
            let full = Labels::from_pairs(
                o.iter()
                    .chain(ext.iter())
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            );
            held.push(series(full), &mut ready);
        }
        ready.extend(held.series.drain(..));
        ready.into_iter().map(|s| s.labels).collect()
    }

    #[test]
    fn a_prefix_moves_past_its_extensions() {
        let own = [
            Labels::from_pairs([("a", "1")]),
            Labels::from_pairs([("a", "1"), ("b", "2")]),
            Labels::from_pairs([("a", "2")]),
        ];
        let ext = Labels::from_pairs([("c", "x")]);
        let out = through_held_back(&own, &ext);
        let expected = [
            Labels::from_pairs([("a", "1"), ("b", "2"), ("c", "x")]),
            Labels::from_pairs([("a", "1"), ("c", "x")]),
            Labels::from_pairs([("a", "2"), ("c", "x")]),
        ];
        assert_eq!(out, expected);
    }

    proptest! {
        #[test]
        fn released_in_full_label_order(
            sets in proptest::collection::btree_set(
                proptest::collection::btree_map("[abdfh]", "[12]", 0..5), 0..60),
            ext in proptest::collection::btree_map("[0cegz]", "[xy]", 0..3),
        ) {
            let mut own: Vec<Labels> = sets.into_iter().map(Labels::from_pairs).collect();
            own.sort();
            own.dedup();
            let ext = Labels::from_pairs(ext);
            let out = through_held_back(&own, &ext);
            let mut expected = out.clone();
            expected.sort();
            prop_assert_eq!(out.len(), own.len());
            prop_assert_eq!(out, expected);
        }
    }
}
