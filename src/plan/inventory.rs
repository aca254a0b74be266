//! The inventory: what a bucket holds, read from meta.json files and small index ranges.
//!
//! Per block it reads exactly what a store reads to build the block's index header (the
//! index's header bytes, TOC, symbol table and postings offset table, in three rounds of
//! ranged reads through [`crate::index_header::build`]), plus the 8-byte head of the postings
//! lists whose length the table cannot tell (usually just the last). Never a whole index,
//! never a chunk. `analyze` adds a pass over the series section in bounded windows for
//! promtool's churn figures.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use indicatif::ProgressBar;
use object_store::path::Path;
use object_store::ObjectStore;
use serde::Serialize;
use ulid::Ulid;

use super::cardinality::{
    count_from_head, list_extents, table_entries, Cardinality, ChurnCounter, PairCount,
};
use super::timeline::{self, Issue, Span};
use super::{header, PlanError};
use crate::bucket::discover::{block_files, discover, BlockFilters};
use crate::index_header::{self as ih, HeaderedIndex};
use crate::objstore::{BucketFile, FetchCounters};
use crate::tsdb::index::IndexReader;
use crate::tsdb::meta::BlockMeta;
use crate::tsdb::source::ReadAt;

#[derive(Debug, Clone)]
pub struct InventoryOptions {
    /// Blocks read at once.
    pub concurrency: usize,
    /// Entries per ranked list.
    pub top: usize,
    /// Also stream each block's series section for the churn figures.
    pub analyze: bool,
}

impl Default for InventoryOptions {
    fn default() -> Self {
        InventoryOptions {
            concurrency: 8,
            top: 20,
            analyze: false,
        }
    }
}

/// One block: its meta, file sizes and, when its index could be read, the index figures.
#[derive(Debug, Clone, Serialize)]
pub struct BlockInventory {
    pub ulid: String,
    pub min_time: i64,
    pub max_time: i64,
    pub resolution: i64,
    pub external_labels: BTreeMap<String, String>,
    /// The component that made it (`thanos.source`), empty for a plain Prometheus block.
    pub source: String,
    pub compaction_level: u32,
    pub series: u64,
    pub samples: u64,
    pub chunks: u64,
    pub index_bytes: u64,
    pub chunk_bytes: u64,
    pub chunk_files: u64,
    /// Unix seconds of the deletion mark, when the block has one.
    pub deletion_time: Option<i64>,
    pub index: Option<IndexFigures>,
    /// Why `index` is missing: a broken or unreadable index (the block is listed, not fatal).
    pub error: Option<String>,
}

/// What the index's opening regions tell.
#[derive(Debug, Clone, Serialize)]
pub struct IndexFigures {
    pub symbols: u64,
    pub symbol_table_bytes: u64,
    pub postings_table_bytes: u64,
    pub series_section_bytes: u64,
    /// Series in the all-postings list (meta.json's count may differ on a bad meta).
    pub indexed_series: u64,
    /// The index-header file stele writes for this block.
    pub header_disk_bytes: u64,
    /// Heap the opened header keeps (sampled symbols and postings offsets).
    pub header_heap_bytes: u64,
    /// Bytes this inventory read from the index.
    pub bytes_read: u64,
    pub cardinality: Cardinality,
}

impl IndexFigures {
    /// Resident memory of the opened header: the whole mapping (both tables are scanned on
    /// opening) plus the heap.
    pub fn header_resident_bytes(&self) -> u64 {
        self.header_disk_bytes + self.header_heap_bytes
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    /// Where the blocks came from.
    pub source: String,
    /// Whether a store reads them from a remote bucket (set by the caller; it sizes what a
    /// request holds in flight).
    pub remote: bool,
    /// In time order, then by ULID.
    pub blocks: Vec<BlockInventory>,
    /// Directories that are no block (no or bad meta.json) with the reason.
    pub skipped: Vec<(String, String)>,
    /// Blocks whose meta.json could not be fetched.
    pub failed: Vec<(String, String)>,
    /// Overlaps and gaps between the blocks not marked for deletion.
    pub timeline: Vec<Issue>,
    pub totals: Totals,
}

/// Sums over the blocks not marked for deletion (what a store serves).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub blocks: u64,
    pub marked_for_deletion: u64,
    pub broken: u64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
    pub series: u64,
    pub samples: u64,
    pub chunks: u64,
    pub index_bytes: u64,
    pub chunk_bytes: u64,
    pub symbol_table_bytes: u64,
    pub postings_table_bytes: u64,
    pub series_section_bytes: u64,
    pub label_pairs: u64,
    pub postings_entries: u64,
    pub header_disk_bytes: u64,
    pub header_resident_bytes: u64,
    pub bytes_read: u64,
}

impl Inventory {
    /// The blocks a store would serve: not marked for deletion.
    pub fn served(&self) -> impl Iterator<Item = &BlockInventory> {
        self.blocks.iter().filter(|b| b.deletion_time.is_none())
    }

    fn finish(mut self) -> Self {
        self.blocks
            .sort_by(|a, b| (a.min_time, &a.ulid).cmp(&(b.min_time, &b.ulid)));
        let mut t = Totals::default();
        for b in &self.blocks {
            if b.deletion_time.is_some() {
                t.marked_for_deletion += 1;
                continue;
            }
            t.blocks += 1;
            t.min_time = Some(t.min_time.map_or(b.min_time, |m| m.min(b.min_time)));
            t.max_time = Some(t.max_time.map_or(b.max_time, |m| m.max(b.max_time)));
            t.series += b.series;
            t.samples += b.samples;
            t.chunks += b.chunks;
            t.index_bytes += b.index_bytes;
            t.chunk_bytes += b.chunk_bytes;
            match &b.index {
                Some(i) => {
                    t.symbol_table_bytes += i.symbol_table_bytes;
                    t.postings_table_bytes += i.postings_table_bytes;
                    t.series_section_bytes += i.series_section_bytes;
                    t.label_pairs += i.cardinality.label_pairs;
                    t.postings_entries += i.cardinality.postings_entries;
                    t.header_disk_bytes += i.header_disk_bytes;
                    t.header_resident_bytes += i.header_resident_bytes();
                    t.bytes_read += i.bytes_read;
                }
                None => t.broken += 1,
            }
        }
        let spans: Vec<Span> = self
            .served()
            .map(|b| Span {
                ulid: b.ulid.clone(),
                labels: b.external_labels.clone(),
                resolution: b.resolution,
                min_time: b.min_time,
                max_time: b.max_time,
            })
            .collect();
        self.timeline = timeline::issues(&spans);
        self.totals = t;
        self
    }
}

/// Inventories every block of `bucket`. `progress` advances once per block (its length is
/// set once the listing is known). Reads run on the blocking pool.
pub async fn inventory(
    bucket: Arc<dyn ObjectStore>,
    source: String,
    opts: &InventoryOptions,
    progress: &ProgressBar,
) -> Result<Inventory, PlanError> {
    let filters = BlockFilters {
        // Marked blocks are listed (and flagged), not dropped.
        ignore_deletion_marks_delay: Duration::from_secs(100 * 365 * 86_400),
        concurrency: opts.concurrency.max(1),
        ..Default::default()
    };
    let found = discover(&bucket, &filters, crate::model::time::now_ms())
        .await
        .map_err(|e| PlanError::Bucket(e.to_string()))?;
    progress.set_length(found.blocks.len() as u64);
    let runtime = tokio::runtime::Handle::current();
    let blocks: Vec<BlockInventory> = futures::stream::iter(found.blocks)
        .map(|(id, meta)| {
            let bucket = bucket.clone();
            let runtime = runtime.clone();
            let deletion_time = found.marked.get(&id).copied();
            let opts = opts.clone();
            async move {
                let files = block_files(&bucket, id).await;
                let block = tokio::task::spawn_blocking(move || {
                    let files = files.map_err(|e| e.to_string());
                    inventory_block(bucket, runtime, id, &meta, files, deletion_time, &opts)
                })
                .await
                .map_err(|e| PlanError::Internal(e.to_string()));
                progress.inc(1);
                block
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let inv = Inventory {
        source,
        blocks,
        skipped: found
            .skipped
            .iter()
            .map(|(id, s)| (id.to_string(), s.to_string()))
            .collect(),
        failed: found
            .failed
            .iter()
            .map(|(id, e)| (id.to_string(), e.clone()))
            .collect(),
        ..Default::default()
    };
    Ok(inv.finish())
}

/// One block; a broken index is recorded in the result, never returned as an error.
fn inventory_block(
    bucket: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Handle,
    id: Ulid,
    meta: &BlockMeta,
    files: Result<BTreeMap<String, u64>, String>,
    deletion_time: Option<i64>,
    opts: &InventoryOptions,
) -> BlockInventory {
    let listing = files;
    let files = listing.as_ref().ok();
    let size_of = |name: &str| files.and_then(|f| f.get(name).copied());
    let chunk_sizes: Vec<u64> = files
        .map(|f| {
            f.iter()
                .filter(|(k, _)| k.starts_with("chunks/"))
                .map(|(_, v)| *v)
                .collect()
        })
        .unwrap_or_default();
    let mut block = BlockInventory {
        ulid: id.to_string(),
        min_time: meta.min_time,
        max_time: meta.max_time,
        resolution: meta.resolution(),
        external_labels: meta.external_labels(),
        source: meta
            .thanos
            .as_ref()
            .map(|t| t.source.clone())
            .unwrap_or_default(),
        compaction_level: meta.compaction.level,
        series: meta.stats.num_series,
        samples: meta.stats.num_samples,
        chunks: meta.stats.num_chunks,
        index_bytes: size_of("index").unwrap_or(0),
        chunk_bytes: chunk_sizes.iter().sum(),
        chunk_files: chunk_sizes.len() as u64,
        deletion_time,
        index: None,
        error: None,
    };
    let result = match (&listing, size_of("index")) {
        (Err(e), _) => Err(format!("listing the block's files: {e}")),
        (Ok(_), None) => Err("the block has no index file".to_string()),
        (Ok(_), Some(len)) => {
            let counters = Arc::new(FetchCounters::default());
            let file = BucketFile::new(
                bucket,
                Path::from(format!("{id}/index")),
                len,
                runtime,
                counters.clone(),
            );
            index_figures(Arc::new(file), meta, opts)
                .map(|mut f| {
                    f.bytes_read = counters.bytes.load(Ordering::Relaxed);
                    f
                })
                .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(f) => block.index = Some(f),
        Err(e) => {
            tracing::warn!(block = %id, error = %e, "index unreadable; block listed without index figures");
            block.error = Some(e);
        }
    }
    block
}

/// The figures of one index read through `remote` (ranged reads only).
fn index_figures(
    remote: Arc<dyn ReadAt>,
    meta: &BlockMeta,
    opts: &InventoryOptions,
) -> Result<IndexFigures, PlanError> {
    let header = ih::build(remote.as_ref())?;
    let header_disk_bytes = header.size();
    let regions: Vec<std::ops::Range<u64>> = header.regions().collect();
    let reader = IndexReader::open(Arc::new(HeaderedIndex::new(header, remote.clone())))?;
    let toc = *reader.toc();
    let region_len = |start: u64| {
        regions
            .iter()
            .find(|r| r.start == start)
            .map_or(0, |r| r.end - r.start)
    };
    let corrupt = |what: String| PlanError::Index(format!("{}: {what}", reader.name()));

    let entries = table_entries(reader.postings_table())
        .map_err(|(p, e)| corrupt(format!("postings offset table at {p}: {e}")))?;
    let offsets: Vec<u64> = entries.iter().map(|e| e.offset).collect();
    let mut extents = list_extents(&offsets);
    let unknown: Vec<usize> = (0..extents.len())
        .filter(|&i| extents[i].series.is_none())
        .collect();
    let heads: Vec<std::ops::Range<u64>> = unknown
        .iter()
        .map(|&i| extents[i].offset..extents[i].offset + 8)
        .collect();
    if !heads.is_empty() {
        let read = remote
            .read_ranges(&heads)
            .map_err(|e| corrupt(format!("reading postings list heads: {e}")))?;
        for (&i, head) in unknown.iter().zip(read) {
            let n = count_from_head(&head)
                .map_err(|e| corrupt(format!("postings list at {}: {e}", extents[i].offset)))?;
            extents[i].series = Some(n);
        }
    }
    let pairs: Vec<PairCount> = entries
        .into_iter()
        .zip(&extents)
        .map(|(e, ext)| PairCount {
            name: e.name,
            value: e.value,
            series: ext.series.unwrap_or(0),
        })
        .collect();
    let indexed_series = pairs
        .iter()
        .find(|p| p.name.is_empty() && p.value.is_empty())
        .map_or(0, |p| p.series);

    let mut names: Vec<(&str, Vec<&str>)> = Vec::new();
    for p in &pairs {
        match names.last_mut() {
            Some((n, values)) if *n == p.name => values.push(&p.value),
            _ => names.push((&p.name, vec![&p.value])),
        }
    }
    let header_heap_bytes = header::heap_bytes(u64::from(reader.symbol_count()), names);

    let mut cardinality = Cardinality::from_pairs(&pairs, opts.top);
    if opts.analyze {
        let mut churn = ChurnCounter::new(meta.min_time, meta.max_time);
        reader.for_each_series(|labels, chunks| churn.add(labels, chunks))?;
        let (pairs, names) = churn.finish(opts.top);
        cardinality.churn_pairs = Some(pairs);
        cardinality.churn_names = Some(names);
    }
    let series = reader.series_section();
    Ok(IndexFigures {
        symbols: u64::from(reader.symbol_count()),
        symbol_table_bytes: region_len(toc.symbols),
        postings_table_bytes: region_len(toc.postings_table),
        series_section_bytes: series.end - series.start,
        indexed_series,
        header_disk_bytes,
        header_heap_bytes,
        bytes_read: 0,
        cardinality,
    })
}
