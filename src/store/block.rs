//! One block of the bucket, as the store reads it: a local index header, the remote index
//! for postings and series, and the remote chunk segments.
//!
//! Everything here is synchronous and may block on the bucket: call it from the blocking
//! pool, never from an async task, except in no-wait mode ([`crate::nowait`]), where it reads
//! only from memory and the page cache and refuses every wait.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use roaring::RoaringBitmap;
use tokio::runtime::Handle;
use ulid::Ulid;

use super::fetch::{coalesce, plan_cost, read_coalesced, slice_coalesced, FetchCost};
use super::lazy::{HeaderCounters, LazyIndex};
use super::QueryCtx;
use crate::block::{matchers_key, matches_filters, PostingsKey, PostingsPlan};
use crate::cache::CacheKey;
use crate::model::{Labels, Matcher};
use crate::objstore::{BucketFile, BucketGate, FetchCounters, LocalBucket};
use crate::storeapi::{StoreError, StoredChunk};
use crate::tsdb::chunks::{decode_chunk_record, split_chunk_ref, ChunkEncoding};
use crate::tsdb::encoding::{read_uvarint, uvarint_len};
use crate::tsdb::index::{decode_postings_bitmap, ChunkMeta, IndexReader, SeriesEntryRefs};
use crate::tsdb::meta::BlockMeta;
use crate::tsdb::source::ReadAt;
use crate::tsdb::{Section, TsdbError};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Series (summed over blocks) a request may have to run in no-wait mode, on an async worker
/// ([`crate::nowait`]): a block's series costs about 5 µs here, so a request this size stays
/// within the ~100 µs a task should run between yields.
pub(super) const NO_WAIT_MAX_SERIES: u64 = 16;
/// First guess of a series entry's length when the next wanted entry does not bound it.
const SERIES_GUESS: u64 = 512;
/// First guess of a chunk record's length when its series tells nothing (an XOR chunk of 120
/// samples is usually smaller).
const CHUNK_GUESS: u64 = 1024;
/// The file name of the label the relabelling and block matchers see the block ID as.
pub const BLOCK_ID_LABEL: &str = "__block_id";

pub struct BucketBlock {
    pub id: Ulid,
    pub meta: BlockMeta,
    /// The block's external labels (`thanos.labels` in meta.json).
    pub ext_labels: Labels,
    /// Opened on first use, closed when idle.
    pub index: LazyIndex,
    segments: Vec<Arc<BucketFile>>,
    /// Local state (the index header), removed when the block goes away.
    pub dir: PathBuf,
}

/// The series of a block that may match a request: `refs` (sorted) answer every matcher but
/// `filters`, which [`BucketBlock::series`] applies to each series' own labels.
#[derive(Debug, Default)]
pub struct BlockPostings {
    pub refs: Vec<u64>,
    pub filters: Vec<Matcher>,
}

/// What the postings cost model needs to know of an index: its series count (estimated from
/// the all-postings list) and the mean bytes of a series entry.
fn index_shape(index: &IndexReader) -> Result<(u64, u64)> {
    let all = index.postings_range("", "")?.map_or(0, |r| r.end - r.start);
    let series = (all.saturating_sub(8) / 4).max(1);
    let section = index.series_section();
    Ok((series, (section.end - section.start) / series))
}

/// A series of one block that matched: its full label set and its chunks in the range.
pub struct BlockSeries {
    pub labels: Labels,
    pub chunks: Vec<WantedChunk>,
}

/// A chunk to read, with the length of its record as far as its series tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedChunk {
    pub meta: ChunkMeta,
    /// Bytes of the record: exact when the series has a next chunk in the same segment (a
    /// block writes a series' chunks one after another), else the longest of the series'
    /// exact ones as a guess (0: nothing known).
    pub len: u32,
    pub exact: bool,
}

/// The chunks of one series entry overlapping `[min_time, max_time]`, with their lengths.
fn wanted_chunks(chunks: &[ChunkMeta], min_time: i64, max_time: i64) -> Vec<WantedChunk> {
    let exact: Vec<Option<u32>> = chunks
        .iter()
        .zip(chunks.iter().skip(1).map(Some).chain([None]))
        .map(|(c, next)| {
            let (segment, offset) = split_chunk_ref(c.chunk_ref);
            let (next_segment, next_offset) = split_chunk_ref(next?.chunk_ref);
            (next_segment == segment && next_offset > offset).then(|| next_offset - offset)
        })
        .collect();
    let guess = exact.iter().flatten().copied().max().unwrap_or(0);
    chunks
        .iter()
        .zip(exact)
        .filter(|(c, _)| c.max_time >= min_time && c.min_time <= max_time)
        .map(|(&meta, len)| WantedChunk {
            meta,
            len: len.unwrap_or(guess),
            exact: len.is_some(),
        })
        .collect()
}

impl BlockSeries {
    /// Heap bytes this series holds, for the memory budget: the label strings with their
    /// headers and the allocator's cost per allocation, and the chunk metas.
    pub fn memory_estimate(&self) -> u64 {
        const PER_STRING: u64 = 24 + 16;
        let labels: u64 = self
            .labels
            .iter()
            .map(|l| (l.name.len() + l.value.len()) as u64 + 2 * PER_STRING)
            .sum();
        let metas = (self.chunks.len() * std::mem::size_of::<WantedChunk>()) as u64;
        std::mem::size_of::<Self>() as u64 + labels + metas + 32
    }
}

/// A bitmap as the cache holds it (roaring's portable format: compact, and read back
/// without decoding a list).
fn serialize(bitmap: &RoaringBitmap) -> Bytes {
    let mut bytes = Vec::with_capacity(bitmap.serialized_size());
    bitmap
        .serialize_into(&mut bytes)
        .expect("serializing into memory");
    Bytes::from(bytes)
}

/// The chunks of one block a batch wants, planned by [`BucketBlock::plan_chunks`]: the cache
/// hits, and the records to read as coalesced ranges per segment (their bytes reserved).
pub struct ChunkPlan {
    /// Per wanted chunk, the cache's copy.
    cached: Vec<Option<StoredChunk>>,
    /// Wanted chunks recent enough for the chunk cache that missed it.
    cacheable: Vec<usize>,
    segments: Vec<SegmentPlan>,
    /// The reads per segment, once done (on the planning thread, or by a fetch).
    records: Option<Vec<SegmentRecords>>,
}

/// What was read for one segment of a [`ChunkPlan`].
pub struct SegmentRecords {
    /// The coalesced reads.
    merged: Vec<Bytes>,
    /// Records longer than their first read, read again whole by the fetch: by position
    /// in the segment's plan. Those it could not (no room in the budget without waiting)
    /// are read when the plan is finished.
    longer: Vec<(usize, Bytes)>,
    /// The budget taken for `longer`.
    taken: Option<super::budget::Taken>,
}

impl ChunkPlan {
    /// Whether its records still have to be fetched ([`BucketBlock::fetch_planned`]).
    pub fn needs_fetch(&self) -> bool {
        self.records.is_none()
    }

    /// Hands the fetched records over.
    pub fn fetched(&mut self, records: Vec<SegmentRecords>) {
        self.records = Some(records);
    }
}

/// The records one segment is asked for.
struct SegmentPlan {
    segment: u32,
    /// Indexes into the wanted chunks, by reference.
    order: Vec<usize>,
    offsets: Vec<u64>,
    /// Each record's first guess of a range.
    ranges: Vec<Range<u64>>,
    /// `ranges` coalesced: what is read.
    merged: Vec<Range<u64>>,
}

/// The records of `records` (first reads at `offsets` of a segment of `seg_len` bytes)
/// longer than what was read, with their whole range; by position. Records that do not
/// decode, or run past the segment, are left for [`BucketBlock::finish_chunks`] to report.
fn longer_records(offsets: &[u64], records: &[Bytes], seg_len: u64) -> Vec<(usize, Range<u64>)> {
    offsets
        .iter()
        .zip(records)
        .enumerate()
        .filter_map(|(k, (&off, b))| {
            let (len, n) = read_uvarint(b).ok()?;
            let total = len.saturating_add(n as u64 + 1 + 4);
            (total > b.len() as u64 && off.saturating_add(total) <= seg_len)
                .then(|| (k, off..off + total))
        })
        .collect()
}

/// A chunk from its chunk-cache value (encoding byte, then data); `None` for a value that is
/// not one (a foreign or damaged memcached item), which is then read from the bucket.
fn cached_chunk(wanted: &WantedChunk, value: Bytes) -> Option<StoredChunk> {
    let (&encoding, data) = value.split_first()?;
    let encoding = ChunkEncoding::from_u8(encoding);
    if matches!(encoding, ChunkEncoding::None) || data.is_empty() {
        return None;
    }
    let data = value.slice(1..);
    Some(StoredChunk {
        min_time: wanted.meta.min_time,
        max_time: wanted.meta.max_time,
        encoding,
        hash: xxhash_rust::xxh64::xxh64(&data, 0),
        data,
    })
}

/// Bytes of `chunk`'s record in its segment: data length, encoding, data, CRC.
fn chunk_record_len(chunk: &StoredChunk) -> usize {
    uvarint_len(chunk.data.len() as u64) + 1 + chunk.data.len() + 4
}

/// What the blocks of a store share for their I/O.
#[derive(Clone)]
pub struct BlockIo {
    pub bucket: Arc<dyn ObjectStore>,
    /// The runtime the bucket's futures run on (blocks are read from the blocking pool).
    pub runtime: Handle,
    pub index_counters: Arc<FetchCounters>,
    pub chunk_counters: Arc<FetchCounters>,
    pub headers: Arc<HeaderCounters>,
    /// A local file system bucket (see [`BucketFile::with_local_reads`]).
    pub local_bucket: Option<Arc<LocalBucket>>,
    /// The bound on GETs in flight, shared by every file.
    pub gate: Arc<BucketGate>,
}

impl BlockIo {
    /// A local directory as the bucket, with counters of its own (tools, tests, benchmarks).
    pub fn local(dir: &Path, runtime: Handle) -> Result<Self> {
        let bucket = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| StoreError::Unavailable(format!("bucket {}: {e}", dir.display())))?;
        Ok(BlockIo {
            bucket: Arc::new(bucket),
            runtime,
            index_counters: Arc::default(),
            chunk_counters: Arc::default(),
            headers: Arc::default(),
            local_bucket: Some(Arc::new(LocalBucket::new(dir.to_path_buf()))),
            gate: Arc::default(),
        })
    }
}

impl BucketBlock {
    /// Opens block `id` of the bucket as a sync does (files listed, meta.json read), with
    /// its local state under `dir`. Blocking: runs the bucket's futures on `io.runtime`.
    pub fn open_from_bucket(id: Ulid, dir: &Path, io: &BlockIo) -> Result<Self> {
        let unavailable =
            |e: object_store::Error| StoreError::Unavailable(format!("block {id}: {e}"));
        let (files, meta) = io.runtime.block_on(async {
            let files = crate::bucket::discover::block_files(&io.bucket, id)
                .await
                .map_err(unavailable)?;
            let path = object_store::path::Path::from(format!("{id}/meta.json"));
            let meta = io.bucket.get(&path).await.map_err(unavailable)?;
            Ok::<_, StoreError>((files, meta.bytes().await.map_err(unavailable)?))
        })?;
        let meta = BlockMeta::parse(&format!("{id}/meta.json"), &meta)?;
        Self::open(meta, &files, dir, io)
    }

    /// A block from its file listing (`index`, `chunks/000001`, ... with sizes). Reads
    /// nothing: the index opens (and its header is built under `dir`) on first use.
    pub fn open(
        meta: BlockMeta,
        files: &BTreeMap<String, u64>,
        dir: &Path,
        io: &BlockIo,
    ) -> Result<Self> {
        let id = Ulid::from_string(&meta.ulid)
            .map_err(|e| TsdbError::invalid(&meta.ulid, Section::Meta, 0, e.to_string()))?;
        let file = |rel: &str, len: u64, counters: &Arc<FetchCounters>| {
            Arc::new(
                BucketFile::new(
                    io.bucket.clone(),
                    object_store::path::Path::from(format!("{id}/{rel}")),
                    len,
                    io.runtime.clone(),
                    counters.clone(),
                )
                .with_gate(io.gate.clone())
                .with_local_reads(io.local_bucket.as_ref()),
            )
        };
        let missing = |what: &str| {
            TsdbError::invalid(
                &format!("bucket:{id}"),
                Section::IndexHeader,
                0,
                format!("block has no {what}"),
            )
        };
        let index_len = *files.get("index").ok_or_else(|| missing("index file"))?;
        let mut segments = Vec::new();
        for (rel, &len) in files.range("chunks/".to_string()..) {
            let Some(name) = rel.strip_prefix("chunks/") else {
                break;
            };
            let expected = crate::tsdb::chunks::segment_file_name(segments.len() as u32);
            if name != expected {
                return Err(TsdbError::invalid(
                    &format!("bucket:{id}/{rel}"),
                    Section::ChunkSegmentHeader,
                    0,
                    format!("chunk segments are not numbered 000001.. without gaps (expected {expected})"),
                ).into());
            }
            segments.push(file(rel, len, &io.chunk_counters));
        }
        if segments.is_empty() && meta.stats.num_chunks > 0 {
            return Err(missing("chunk segments").into());
        }
        let index = LazyIndex::new(
            file("index", index_len, &io.index_counters),
            dir,
            io.headers.clone(),
        );
        let ext_labels = Labels::from_pairs(
            meta.thanos
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default(),
        );
        Ok(BucketBlock {
            id,
            meta,
            ext_labels,
            index,
            segments,
            dir: dir.to_path_buf(),
        })
    }

    /// The block's index, opened if it is not open yet. A thread that may not wait gets it
    /// only when it is open and its header's mapping is in RAM.
    fn open_index(&self) -> Result<Arc<IndexReader>> {
        if !crate::nowait::active() {
            return Ok(self.index.get()?);
        }
        match self.index.get_open() {
            Some(index) if index.source().resident() => Ok(index),
            _ => {
                crate::nowait::refuse();
                Err(StoreError::WouldWait)
            }
        }
    }

    /// Whether its chunks come from a remote bucket (a round trip per read).
    pub fn reads_chunks_remotely(&self) -> bool {
        self.segments.iter().any(|f| !f.is_local())
    }

    /// The labels block matchers and relabelling see: external labels and `__block_id`.
    pub fn block_labels(&self) -> Labels {
        let id = self.id.to_string();
        Labels::from_pairs(
            self.ext_labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .chain([(BLOCK_ID_LABEL, id.as_str())]),
        )
    }

    pub fn overlaps(&self, min_time: i64, max_time: i64) -> bool {
        // meta.max_time is exclusive.
        self.meta.min_time <= max_time && self.meta.max_time > min_time
    }

    /// The matchers left for the index once those on external labels are applied to the
    /// block as a whole; `None` when an external label contradicts one.
    pub fn index_matchers(&self, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
        crate::storeapi::labels::settle_external(&self.ext_labels, matchers)
    }

    /// Series references matching `matchers` (none on external labels), sorted, and the
    /// matchers the cost model left to [`Self::series`] as filters. The combined postings are
    /// cached per matcher set they answer (empty ones too), so a repeated query skips the
    /// postings altogether.
    pub fn postings(&self, matchers: &[Matcher], ctx: &mut QueryCtx) -> Result<BlockPostings> {
        // A set cached under the full matcher set answers every matcher: no planning needed.
        if let Some(refs) = self.cached_postings(matchers, ctx) {
            return Ok(BlockPostings {
                refs,
                filters: Vec::new(),
            });
        }
        // Planning reads the postings offset table and usually the bucket: not without waiting.
        if crate::nowait::refuse() {
            return Err(StoreError::WouldWait);
        }
        let index = self.open_index()?;
        let mut plan = PostingsPlan::new(&index, matchers)?;
        if ctx.postings_cost_model {
            let (series, entry_bytes) = index_shape(&index)?;
            plan.defer_expensive(series, entry_bytes);
        }
        let filters = plan.filters().to_vec();
        ctx.stats.postings_filters += filters.len() as i64;
        let fetched = plan.fetched_matchers();
        if !filters.is_empty() {
            if let Some(refs) = self.cached_postings(&fetched, ctx) {
                return Ok(BlockPostings { refs, filters });
            }
        }
        let refs = self.expand_postings(&index, &plan, ctx)?;
        if let Some(cache) = &ctx.cache {
            cache.put(self.expanded_postings_key(&fetched), serialize(&refs));
        }
        Ok(BlockPostings {
            refs: refs.iter().map(u64::from).collect(),
            filters,
        })
    }

    fn expanded_postings_key(&self, matchers: &[Matcher]) -> CacheKey {
        CacheKey::ExpandedPostings {
            block: self.id,
            matchers: matchers_key(matchers),
        }
    }

    fn cached_postings(&self, matchers: &[Matcher], ctx: &QueryCtx) -> Option<Vec<u64>> {
        let cached = ctx
            .cache
            .as_ref()?
            .get(&self.expanded_postings_key(matchers))?;
        // In no-wait mode a large set is refused before it is decoded: the request is too
        // large to run there anyway. A roaring set of n values takes at most ~10n + 8 bytes.
        let too_large = |bytes: usize| bytes > NO_WAIT_MAX_SERIES as usize * 16;
        if crate::nowait::active() && too_large(cached.len()) {
            return None;
        }
        let bitmap = RoaringBitmap::deserialize_from(&cached[..]).ok()?;
        if crate::nowait::active() && bitmap.len() > NO_WAIT_MAX_SERIES {
            return None;
        }
        Some(bitmap.iter().map(u64::from).collect())
    }

    /// Fetches (or takes from the cache) and combines the postings lists of a plan.
    fn expand_postings(
        &self,
        index: &IndexReader,
        plan: &PostingsPlan,
        ctx: &mut QueryCtx,
    ) -> Result<RoaringBitmap> {
        if plan.is_empty() {
            return Ok(RoaringBitmap::new());
        }
        let mut lists = vec![RoaringBitmap::new(); plan.keys().len()];
        let present: Vec<(usize, Range<u64>)> = plan
            .keys()
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((i, k.range.clone()?)))
            .collect();
        let touched_bytes: u64 = present.iter().map(|(_, r)| r.end - r.start).sum();
        let cached = match &ctx.cache {
            Some(cache) => {
                let keys: Vec<CacheKey> = present
                    .iter()
                    .map(|(i, _)| self.postings_key(&plan.keys()[*i]))
                    .collect();
                cache.get_many(&keys)
            }
            None => vec![None; present.len()],
        };
        let mut wanted: Vec<(usize, Range<u64>)> = Vec::new();
        for ((i, r), hit) in present.into_iter().zip(cached) {
            // Cached lists are serialized bitmaps; one that does not read back is a miss.
            match hit.and_then(|b| RoaringBitmap::deserialize_from(&b[..]).ok()) {
                Some(bitmap) => lists[i] = bitmap,
                None => wanted.push((i, r)),
            }
        }
        wanted.sort_by_key(|w| w.1.start);
        let ranges: Vec<Range<u64>> = wanted.iter().map(|w| w.1.clone()).collect();
        let (bytes, cost) = self.read_index(index, Section::Postings, &ranges, ctx)?;
        ctx.stats.postings_touched += plan.keys().len() as i64;
        ctx.stats.postings_touched_size_sum += touched_bytes as i64;
        ctx.stats.postings_to_fetch += ranges.len() as i64;
        ctx.stats.postings_fetched += ranges.len() as i64;
        ctx.stats.postings_fetched_size_sum += cost.bytes as i64;
        ctx.stats.postings_fetch_count += cost.requests as i64;

        for ((i, range), b) in wanted.iter().zip(bytes) {
            lists[*i] = self.decode_postings(&b, range.start)?;
            if let Some(cache) = &ctx.cache {
                cache.put(self.postings_key(&plan.keys()[*i]), serialize(&lists[*i]));
            }
        }
        Ok(plan.combine(lists))
    }

    fn postings_key(&self, key: &PostingsKey) -> CacheKey {
        CacheKey::Postings {
            block: self.id,
            name: key.name.clone(),
            value: key.value.clone(),
        }
    }

    fn decode_postings(&self, b: &[u8], offset: u64) -> Result<RoaringBitmap> {
        decode_postings_bitmap(b)
            .map_err(|e| TsdbError::corrupt(self.index.name(), Section::Postings, offset, e).into())
    }

    /// Reads index ranges from the bucket, within the request's download budget.
    fn read_index(
        &self,
        index: &IndexReader,
        section: Section,
        ranges: &[Range<u64>],
        ctx: &mut QueryCtx,
    ) -> Result<(Vec<Bytes>, FetchCost)> {
        let source = index.source().as_ref();
        ctx.reserve(plan_cost(ranges, source.merge_gap()).bytes)?;
        let (bytes, cost) = read_coalesced(source, ranges).map_err(|e| {
            TsdbError::read(
                index.name(),
                section,
                ranges.first().map_or(0, |r| r.start),
                e,
            )
        })?;
        ctx.stats.data_downloaded_size_sum += cost.bytes as i64;
        Ok((bytes, cost))
    }

    /// Reads the entries of `refs` (sorted) and returns, in the same order, each series'
    /// labels (with the external labels, which win over the series' own) and its chunks
    /// overlapping `[min_time, max_time]`; series without such chunks, or whose own labels
    /// fail a filter of [`BlockPostings`], are left out.
    pub fn series(
        &self,
        refs: &[u64],
        filters: &[Matcher],
        min_time: i64,
        max_time: i64,
        ctx: &mut QueryCtx,
    ) -> Result<Vec<BlockSeries>> {
        let index = self.open_index()?;
        let section_end = index.series_section().end;
        let offsets = refs
            .iter()
            .map(|&r| index.series_offset(r))
            .collect::<Result<Vec<u64>, TsdbError>>()?;
        let mut entries: Vec<Bytes> = vec![Bytes::new(); refs.len()];
        let mut missing: Vec<usize> = Vec::new();
        let (cached, pages) = match &ctx.cache {
            Some(cache) => {
                let (cached, pages) = cache.series_entries(self.id, &offsets);
                (cached, Some(pages))
            }
            None => (vec![None; refs.len()], None),
        };
        for (i, hit) in cached.into_iter().enumerate() {
            match hit {
                Some(b) => entries[i] = b,
                None => missing.push(i),
            }
        }
        // An entry ends before the next one starts: the next wanted offset bounds the read.
        let ranges: Vec<Range<u64>> = missing
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let off = offsets[i];
                let bound = missing
                    .get(k + 1)
                    .map_or(section_end, |&next| offsets[next]);
                off..bound.min(off + SERIES_GUESS).min(section_end)
            })
            .collect();
        let (fetched, cost) = self.read_index(&index, Section::Series, &ranges, ctx)?;
        ctx.stats.series_fetch_count += cost.requests as i64;
        ctx.stats.series_fetched_size_sum += cost.bytes as i64;
        for (&i, b) in missing.iter().zip(fetched) {
            entries[i] = b;
        }

        // Entries longer than their first read get a second, exact one.
        let mut longer: Vec<(usize, Range<u64>)> = Vec::new();
        for &i in &missing {
            let off = offsets[i];
            let total = index.series_entry_len(off, &entries[i])?;
            if total > entries[i].len() as u64 {
                longer.push((i, off..off + total));
            } else {
                entries[i].truncate(total as usize);
            }
        }
        if !longer.is_empty() {
            let ranges: Vec<Range<u64>> = longer.iter().map(|l| l.1.clone()).collect();
            let (bytes, cost) = self.read_index(&index, Section::Series, &ranges, ctx)?;
            ctx.stats.series_fetch_count += cost.requests as i64;
            ctx.stats.series_fetched_size_sum += cost.bytes as i64;
            for ((i, _), b) in longer.into_iter().zip(bytes) {
                entries[i] = b;
            }
        }
        if let (Some(cache), Some(pages)) = (&ctx.cache, pages) {
            cache.put_series_entries(
                pages,
                missing.iter().map(|&i| (offsets[i], &entries[i][..])),
            );
        }

        let mut out = Vec::with_capacity(refs.len());
        let mut refs_buf = SeriesEntryRefs::default();
        let mut resolver = index.label_resolver();
        let mut own = Vec::new();
        for (&off, entry) in offsets.iter().zip(&entries) {
            index.decode_series_entry_at(off, entry, &mut refs_buf)?;
            ctx.stats.series_touched += 1;
            ctx.stats.series_touched_size_sum += entry.len() as i64;
            let chunks = wanted_chunks(&refs_buf.chunks, min_time, max_time);
            if chunks.is_empty() {
                continue;
            }
            resolver.resolve(off, &refs_buf.labels, &mut own)?;
            if !matches_filters(filters, own.iter().copied()) {
                ctx.stats.series_filtered += 1;
                continue;
            }
            let labels = Labels::from_pairs(
                own.iter().copied().chain(
                    self.ext_labels
                        .iter()
                        .map(|l| (l.name.as_str(), l.value.as_str())),
                ),
            );
            out.push(BlockSeries { labels, chunks });
        }
        ctx.stats.series_fetched += out.len() as i64;
        Ok(out)
    }

    /// Fetches chunks by their metas (or takes them from the chunk cache), returned in the
    /// order asked: [`Self::plan_chunks`], the reads on this thread, [`Self::finish_chunks`].
    pub fn chunks(&self, metas: &[WantedChunk], ctx: &mut QueryCtx) -> Result<Vec<StoredChunk>> {
        let mut plan = self.plan_chunks(metas, ctx)?;
        let records = self.read_planned(&plan)?;
        plan.records = Some(records);
        self.finish_chunks(plan, metas, ctx)
    }

    /// The first step of fetching `metas`' chunks: takes what it can from the chunk cache,
    /// plans the records of the rest as coalesced ranges per segment, and reserves their
    /// bytes. A local bucket's records are read right away (positional reads on this
    /// thread); a remote bucket's are left to [`Self::fetch_planned`], which runs on the
    /// runtime, so the caller can go on while they arrive.
    pub fn plan_chunks(&self, metas: &[WantedChunk], ctx: &mut QueryCtx) -> Result<ChunkPlan> {
        let mut cached: Vec<Option<StoredChunk>> = vec![None; metas.len()];
        let mut cacheable: Vec<usize> = match &ctx.chunk_cache {
            Some(_) => (0..metas.len())
                .filter(|&i| metas[i].meta.max_time >= ctx.chunk_cache_min_time)
                .collect(),
            None => Vec::new(),
        };
        if let (Some(cache), false) = (&ctx.chunk_cache, cacheable.is_empty()) {
            let keys: Vec<CacheKey> = cacheable
                .iter()
                .map(|&i| self.chunk_key(&metas[i]))
                .collect();
            for (&i, hit) in cacheable.iter().zip(cache.get_many(&keys)) {
                let Some(chunk) = hit.and_then(|v| cached_chunk(&metas[i], v)) else {
                    continue;
                };
                ctx.stats.chunks_touched += 1;
                ctx.stats.chunks_touched_size_sum += chunk_record_len(&chunk) as i64;
                cached[i] = Some(chunk);
            }
            cacheable.retain(|&i| cached[i].is_none());
        }
        let mut order: Vec<usize> = (0..metas.len()).filter(|&i| cached[i].is_none()).collect();
        order.sort_by_key(|&i| metas[i].meta.chunk_ref);
        let mut segments = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let (segment, _) = split_chunk_ref(metas[order[start]].meta.chunk_ref);
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|&&i| split_chunk_ref(metas[i].meta.chunk_ref).0 == segment)
                    .count();
            segments.push(self.plan_segment(segment, order[start..end].to_vec(), metas)?);
            start = end;
        }
        // Counted as downloaded when reserved, so the request's bytes limit holds however
        // many batches it has in flight.
        for s in &segments {
            let bytes: u64 = s.merged.iter().map(|r| r.end - r.start).sum();
            ctx.reserve(bytes)?;
            ctx.stats.data_downloaded_size_sum += bytes as i64;
            ctx.stats.chunks_fetch_count += s.merged.len() as i64;
            ctx.stats.chunks_fetched_size_sum += bytes as i64;
        }
        let mut plan = ChunkPlan {
            cached,
            cacheable,
            segments,
            records: None,
        };
        if plan.segments.is_empty() || self.segments.iter().all(|f| f.is_local()) {
            plan.records = Some(self.read_planned(&plan)?);
        } else if crate::nowait::refuse() {
            return Err(StoreError::WouldWait); // no remote reads without waiting
        }
        Ok(plan)
    }

    /// The records `plan` wants, read on this thread (blocking on a remote bucket).
    fn read_planned(&self, plan: &ChunkPlan) -> Result<Vec<SegmentRecords>> {
        plan.segments
            .iter()
            .map(|s| {
                let file = &self.segments[s.segment as usize];
                let merged = file.read_ranges(&s.merged).map_err(|e| {
                    TsdbError::read(file.name(), Section::ChunkRecord, s.merged[0].start, e)
                })?;
                Ok(SegmentRecords {
                    merged,
                    longer: Vec::new(),
                    taken: None,
                })
            })
            .collect()
    }

    /// The remote reads of `plan` as a future that owns what it needs, to run on the
    /// runtime: one GET per coalesced range within `request`'s permits, then, right away,
    /// the records longer than their first read, if `budget` has room for them without
    /// waiting. Resolves at once when the records were read when planned.
    pub fn fetch_planned(
        &self,
        plan: &ChunkPlan,
        request: &Arc<tokio::sync::Semaphore>,
        budget: Option<(Arc<super::MemoryBudget>, u64)>,
    ) -> futures::future::BoxFuture<'static, Result<Vec<SegmentRecords>>> {
        if plan.records.is_some() {
            return Box::pin(futures::future::ready(Ok(Vec::new())));
        }
        let reads: Vec<_> = plan
            .segments
            .iter()
            .map(|s| {
                let file = self.segments[s.segment as usize].clone();
                let (ranges, merged, offsets) =
                    (s.ranges.clone(), s.merged.clone(), s.offsets.clone());
                let (request, budget) = (request.clone(), budget.clone());
                async move {
                    let failed = |e, at| {
                        StoreError::from(TsdbError::read(file.name(), Section::ChunkRecord, at, e))
                    };
                    let first = file
                        .get_ranges(merged.clone(), request.clone())
                        .await
                        .map_err(|e| failed(e, merged[0].start))?;
                    let records = slice_coalesced(&ranges, &merged, &first);
                    let mut done = SegmentRecords {
                        merged: first,
                        longer: Vec::new(),
                        taken: None,
                    };
                    let longer = longer_records(&offsets, &records, ReadAt::len(file.as_ref()));
                    let bytes: u64 = longer.iter().map(|(_, r)| r.end - r.start).sum();
                    let taken = match &budget {
                        Some((budget, ticket)) => {
                            super::budget::Taken::try_take(budget, *ticket, bytes)
                        }
                        None => None,
                    };
                    if longer.is_empty() || (budget.is_some() && taken.is_none()) {
                        return Ok(done); // none, or left to the request's thread
                    }
                    let again: Vec<Range<u64>> = longer.iter().map(|(_, r)| r.clone()).collect();
                    let got = file
                        .get_ranges(again, request)
                        .await
                        .map_err(|e| failed(e, longer[0].1.start))?;
                    done.longer = longer.into_iter().map(|(k, _)| k).zip(got).collect();
                    done.taken = taken;
                    Ok(done)
                }
            })
            .collect();
        Box::pin(futures::future::try_join_all(reads))
    }

    /// The last step: the records of `plan` (`fetched`, unless they were read when planned)
    /// decoded and checked, those longer than their first read read again exactly (on this
    /// thread), and the recent ones put in the chunk cache. In the order of `metas`.
    pub fn finish_chunks(
        &self,
        mut plan: ChunkPlan,
        metas: &[WantedChunk],
        ctx: &mut QueryCtx,
    ) -> Result<Vec<StoredChunk>> {
        let records = plan.records.take().unwrap_or_default();
        let mut out = std::mem::take(&mut plan.cached);
        for (s, read) in plan.segments.iter().zip(records) {
            self.finish_segment(s, read, metas, &mut out, ctx)?;
        }
        if let Some(cache) = &ctx.chunk_cache {
            for &i in &plan.cacheable {
                let chunk = out[i].as_mut().expect("every chunk filled");
                // The cache gets its own copy, not a slice of the whole coalesced read, and
                // the response uses it too, so the read buffer can go.
                let mut value = Vec::with_capacity(1 + chunk.data.len());
                value.push(chunk.encoding.as_u8());
                value.extend_from_slice(&chunk.data);
                let value = Bytes::from(value);
                chunk.data = value.slice(1..);
                cache.put(self.chunk_key(&metas[i]), value);
            }
        }
        Ok(out
            .into_iter()
            .map(|c| c.expect("every chunk filled"))
            .collect())
    }

    fn chunk_key(&self, wanted: &WantedChunk) -> CacheKey {
        CacheKey::Chunk {
            block: self.id,
            chunk_ref: wanted.meta.chunk_ref,
        }
    }

    /// The ranges of the chunks `order` (sorted by reference, all in `segment`) wants.
    fn plan_segment(
        &self,
        segment: u32,
        order: Vec<usize>,
        metas: &[WantedChunk],
    ) -> Result<SegmentPlan> {
        let file = self.segments.get(segment as usize).ok_or_else(|| {
            TsdbError::invalid(
                self.index.name(),
                Section::Series,
                0,
                format!(
                    "chunk reference into segment {} of {}",
                    segment + 1,
                    self.segments.len()
                ),
            )
        })?;
        let seg_len = ReadAt::len(file.as_ref());
        let offsets: Vec<u64> = order
            .iter()
            .map(|&i| u64::from(split_chunk_ref(metas[i].meta.chunk_ref).1))
            .collect();
        // Over a remote bucket a second round trip for a record longer than guessed costs
        // far more than reading a little more the first time.
        let remote = !file.is_local();
        let mut ranges = Vec::with_capacity(offsets.len());
        for (k, (&off, &i)) in offsets.iter().zip(&order).enumerate() {
            if off >= seg_len {
                return Err(TsdbError::invalid(
                    file.name(),
                    Section::ChunkRecord,
                    off,
                    format!("chunk offset past the segment end {seg_len}"),
                )
                .into());
            }
            let next = offsets
                .get(k + 1)
                .copied()
                .filter(|&n| n > off)
                .unwrap_or(seg_len);
            let wanted = &metas[i];
            let len = match (wanted.len, wanted.exact) {
                (0, _) => CHUNK_GUESS,
                (len, true) => u64::from(len),
                // The series' last chunk is usually no longer than its others.
                (len, false) if remote => 2 * u64::from(len) + 256,
                (len, false) => u64::from(len) + u64::from(len) / 8,
            };
            ranges.push(off..next.min(off + len).min(seg_len));
        }
        let merged = coalesce(&ranges, file.merge_gap());
        Ok(SegmentPlan {
            segment,
            order,
            offsets,
            ranges,
            merged,
        })
    }

    /// Decodes the records of one segment from its coalesced reads, reading again those
    /// longer than their first range.
    fn finish_segment(
        &self,
        plan: &SegmentPlan,
        read: SegmentRecords,
        metas: &[WantedChunk],
        out: &mut [Option<StoredChunk>],
        ctx: &mut QueryCtx,
    ) -> Result<()> {
        let file = &self.segments[plan.segment as usize];
        let seg_len = ReadAt::len(file.as_ref());
        let name = ReadAt::name(file.as_ref()).to_string();
        let mut records = slice_coalesced(&plan.ranges, &plan.merged, &read.merged);
        if let Some(taken) = read.taken {
            ctx.adopt(taken);
        }
        if !read.longer.is_empty() {
            let bytes = read.longer.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
            ctx.count_download(bytes)?;
            ctx.stats.chunks_fetch_count += read.longer.len() as i64;
            ctx.stats.chunks_fetched_size_sum += bytes as i64;
        }
        for (k, b) in read.longer {
            records[k] = b;
        }

        let mut longer: Vec<(usize, Range<u64>)> = Vec::new();
        for (k, (&off, b)) in plan.offsets.iter().zip(&records).enumerate() {
            let (len, n) = read_uvarint(b)
                .map_err(|e| TsdbError::corrupt(&name, Section::ChunkRecord, off, e))?;
            let total = len.saturating_add(n as u64 + 1 + 4);
            if total > b.len() as u64 {
                if off.saturating_add(total) > seg_len {
                    return Err(TsdbError::invalid(
                        &name,
                        Section::ChunkRecord,
                        off,
                        format!("record of {total} bytes runs past the segment end {seg_len}"),
                    )
                    .into());
                }
                longer.push((k, off..off + total));
            }
        }
        if !longer.is_empty() {
            let ranges: Vec<Range<u64>> = longer.iter().map(|l| l.1.clone()).collect();
            ctx.reserve(plan_cost(&ranges, file.merge_gap()).bytes)?;
            let (bytes, cost) = read_coalesced(file.as_ref(), &ranges)
                .map_err(|e| TsdbError::read(&name, Section::ChunkRecord, ranges[0].start, e))?;
            ctx.stats.data_downloaded_size_sum += cost.bytes as i64;
            ctx.stats.chunks_fetch_count += cost.requests as i64;
            ctx.stats.chunks_fetched_size_sum += cost.bytes as i64;
            for ((k, _), b) in longer.into_iter().zip(bytes) {
                records[k] = b;
            }
        }
        for ((&i, &off), record) in plan.order.iter().zip(&plan.offsets).zip(&records) {
            let (encoding, data, used) = decode_chunk_record(record)
                .map_err(|e| TsdbError::corrupt(&name, Section::ChunkRecord, off, e))?;
            let data = record.slice_ref(data);
            ctx.stats.chunks_touched += 1;
            ctx.stats.chunks_touched_size_sum += used as i64;
            ctx.stats.chunks_fetched += 1;
            out[i] = Some(StoredChunk {
                min_time: metas[i].meta.min_time,
                max_time: metas[i].meta.max_time,
                encoding,
                hash: xxhash_rust::xxh64::xxh64(&data, 0),
                data,
            });
        }
        Ok(())
    }

    /// Whether the block's series can leave label order beyond what [`crate::store::query`]
    /// restores on the fly: when a series' own label is replaced by an external label or
    /// dropped as a replica label, anything can move. Such blocks are read whole and sorted.
    pub fn own_labels_rewritten(&self, dropped: &[String]) -> Result<bool> {
        let names = self.open_index()?.label_names()?;
        Ok(names
            .iter()
            .any(|n| self.ext_labels.get(n).is_some() || dropped.iter().any(|d| d == n)))
    }

    /// Label names of the block (external ones included), sorted.
    pub fn label_names(&self) -> Result<Vec<String>> {
        let mut names = self.open_index()?.label_names()?;
        names.extend(self.ext_labels.iter().map(|l| l.name.to_string()));
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Values of `name` in the block, sorted; an external label has its one value.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        if let Some(v) = self.ext_labels.get(name) {
            return Ok(vec![v.to_string()]);
        }
        Ok(self.open_index()?.label_values(name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::chunks::chunk_ref;

    fn meta(min_time: i64, segment: u32, offset: u32) -> ChunkMeta {
        ChunkMeta {
            min_time,
            max_time: min_time + 9,
            chunk_ref: chunk_ref(segment, offset),
        }
    }

    #[test]
    fn chunk_lengths_come_from_the_next_chunk_of_the_series() {
        // Two chunks in segment 0, then one at the start of segment 1.
        let chunks = [
            meta(0, 0, 8),
            meta(10, 0, 308),
            meta(20, 0, 500),
            meta(30, 1, 8),
        ];
        let got = wanted_chunks(&chunks, 0, 100);
        let lens: Vec<(u32, bool)> = got.iter().map(|w| (w.len, w.exact)).collect();
        // The third is the series' last in its segment: guessed from the longest exact one.
        assert_eq!(lens, [(300, true), (192, true), (300, false), (300, false)]);
        // Only chunks overlapping the range, with the lengths known from the whole series.
        let got = wanted_chunks(&chunks, 12, 15);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].meta, got[0].len, got[0].exact),
            (chunks[1], 192, true)
        );
        assert_eq!(
            wanted_chunks(&chunks[..1], 0, 100)[0].len,
            0,
            "nothing known"
        );
    }
}
