//! Index headers: the few parts of a block's index that every query needs, kept on local disk.
//!
//! Opening an index reads its header bytes, its TOC, the symbol table and the postings
//! offset table; queries then only read postings lists and series entries by range. A header
//! file holds exactly those opening regions, copied from the bucket with one round of ranged
//! reads (a window at each end of the index), two when a table is larger than its window
//! (never the whole index), and is memory-mapped. [`HeaderedIndex`] serves reads
//! inside those regions from the mapping and everything else from the remote index, so the
//! ordinary [`IndexReader`](crate::tsdb::index::IndexReader) runs over it unchanged.
//!
//! The file also keeps where the samples of the symbol and postings offset tables lie
//! ([`Sampling`]), found by scanning both tables once when the header is built: reopening a
//! header (first query of a block after a start or an idle close) then decodes only the
//! sampled entries instead of every one, most of what opening used to cost.
//!
//! File layout (big-endian): magic `u32`, format version `u8`, index length `u64`, region
//! count `u32`, then `(index offset u64, length u64)` per region; the symbol sample count
//! `u32` and positions `u32` each, the postings sample count `u32` and positions `u32` each;
//! the region bytes in region order, and a CRC32C of everything before it. A file that
//! fails any check, or was written by another format version, is rebuilt.

use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::block::mmap_file;
use crate::tsdb::encoding::{crc32c, crc32c_append, Decbuf, DecodeError};
use crate::tsdb::index::toc::TOC_LEN;
use crate::tsdb::index::{IndexReader, Sampling, Toc, HEADER_LEN};
use crate::tsdb::source::{ReadAt, ReadError};
use crate::tsdb::{Result, Section, TsdbError};

pub const FILE_NAME: &str = "index-header";
const MAGIC: u32 = 0x5354_4c48; // "STLH"
/// 2 added the sampling.
const FORMAT_VERSION: u8 = 2;
/// Magic, version, index length, region count.
const PREFIX_LEN: usize = 4 + 1 + 8 + 4;

/// Builds the header of `index` in memory: its opening regions (header, symbol table,
/// postings offset table, TOC) read by range, and the sampling of its tables. Opening a reader
/// over the regions checks them (section CRCs, table order) and finds the sampling; nothing
/// is copied or encoded on the way.
pub fn build(index: &dyn ReadAt) -> Result<IndexHeader> {
    let regions = opening_regions(index)?;
    let index_len = index.len();
    // Cloning the regions clones four `Bytes` handles, not their bytes.
    let unsampled = IndexHeader::new(index_len, regions.clone(), Sampling::default());
    let sampling = IndexReader::open(Arc::new(unsampled))?.sampling();
    Ok(IndexHeader::new(index_len, regions, sampling))
}

/// Bytes read from each end of the index in the first round: the symbol table follows the
/// index's header and the postings offset table precedes its TOC, so in most blocks one round
/// trip to the bucket finds all four regions; larger tables take a second, exact one.
const END_WINDOW: u64 = 64 << 10;

/// The regions of `index` that opening reads, sorted by offset: one round of reads (both
/// ends of the index), then one more for a table larger than its window.
fn opening_regions(index: &dyn ReadAt) -> Result<Vec<(u64, Bytes)>> {
    let name = index.name().to_string();
    let len = index.len();
    let corrupt = |section, offset, e| TsdbError::corrupt(&name, section, offset, e);
    let read = |section, ranges: &[Range<u64>]| {
        index
            .read_ranges(ranges)
            .map_err(|e| TsdbError::read(&name, section, ranges[0].start, e))
    };
    let min_len = (HEADER_LEN + TOC_LEN) as u64;
    if len < min_len {
        return Err(corrupt(
            Section::Toc,
            0,
            DecodeError::ShortRead {
                needed: min_len as usize,
                available: len as usize,
            },
        ));
    }
    let toc_start = len - TOC_LEN as u64;
    // The two windows, each at most a quarter of the index, so a small index is not read
    // whole either.
    let window = END_WINDOW.min(len / 4);
    let head_end = window.max(HEADER_LEN as u64);
    let tail_start = (len - window.max(TOC_LEN as u64)).max(head_end);
    let windows = if len < 4 * TOC_LEN as u64 {
        // Too small for a real index: one read, checked as usual.
        std::iter::once(0..len).collect()
    } else {
        vec![0..head_end, tail_start..len]
    };
    let first = read(Section::Toc, &windows)?;
    let window_of = |r: &Range<u64>| -> Option<Bytes> {
        windows
            .iter()
            .zip(&first)
            .find(|(w, _)| w.start <= r.start && r.end <= w.end)
            .map(|(w, b)| b.slice((r.start - w.start) as usize..(r.end - w.start) as usize))
    };
    let toc_range = toc_start..len;
    let toc_bytes = window_of(&toc_range).expect("the windows cover the TOC");
    let toc = Toc::decode(&toc_bytes).map_err(|e| corrupt(Section::Toc, toc_start, e))?;
    let framed = [
        (Section::Symbols, toc.symbols),
        (Section::PostingsOffsetTable, toc.postings_table),
    ];
    for (section, off) in framed {
        if off < HEADER_LEN as u64 || off + 8 > toc_start {
            return Err(corrupt(
                section,
                off,
                DecodeError::Invalid(format!("section offset {off} outside the index")),
            ));
        }
    }
    // A table's extent: its length when the first round has it, else up to the next section
    // (or the TOC), trimmed to the length once read.
    let next_section = |off: u64| {
        [
            toc.series,
            toc.label_indices,
            toc.label_indices_table,
            toc.postings,
            toc.postings_table,
        ]
        .into_iter()
        .filter(|&o| o > off)
        .min()
        .unwrap_or(toc_start)
        .min(toc_start)
    };
    let frame_end = |section, off: u64, length: &[u8]| -> Result<u64> {
        let n = u64::from(
            Decbuf::new(length)
                .be32()
                .map_err(|e| corrupt(section, off, e))?,
        );
        let end = off + 4 + n + 4;
        if end > toc_start {
            return Err(corrupt(
                section,
                off,
                DecodeError::Invalid(format!("length {n} runs past the TOC at {toc_start}")),
            ));
        }
        Ok(end)
    };
    let mut frames: Vec<Option<Range<u64>>> = Vec::with_capacity(2);
    let mut missing: Vec<Range<u64>> = Vec::new();
    for &(section, off) in &framed {
        let frame = match window_of(&(off..off + 4)) {
            Some(length) => {
                let frame = off..frame_end(section, off, &length)?;
                if window_of(&frame).is_none() {
                    missing.push(frame.clone());
                }
                Some(frame)
            }
            None => {
                missing.push(off..next_section(off));
                None
            }
        };
        frames.push(frame);
    }
    let second = if missing.is_empty() {
        Vec::new()
    } else {
        read(Section::Symbols, &missing)?
    };
    let mut regions: Vec<(u64, Bytes)> =
        vec![(0, first[0].slice(..HEADER_LEN)), (toc_start, toc_bytes)];
    for ((section, off), frame) in framed.into_iter().zip(frames) {
        let (start, bytes) = match frame.as_ref().and_then(window_of) {
            Some(bytes) => (off, bytes),
            None => {
                let (range, b) = missing
                    .iter()
                    .zip(&second)
                    .find(|(r, _)| r.start == off)
                    .expect("a table not in the first round was read in the second");
                let end = match &frame {
                    Some(f) => f.end,
                    None => frame_end(section, off, &b[..4.min(b.len())])?,
                };
                if end > range.end {
                    return Err(corrupt(
                        section,
                        off,
                        DecodeError::Invalid(format!(
                            "table of {} bytes runs into the next section at {}",
                            end - off,
                            range.end
                        )),
                    ));
                }
                (off, b.slice(..(end - off) as usize))
            }
        };
        regions.push((start, bytes));
    }
    regions.sort_by_key(|r| r.0);
    Ok(regions)
}

/// Bytes of a header file before its region bytes: the prefix, the region table and the
/// sampling.
fn head_len(regions: &[(u64, Bytes)], sampling: &Sampling) -> usize {
    let samples = sampling.symbols.len() + sampling.postings.len();
    PREFIX_LEN + 16 * regions.len() + 8 + 4 * samples
}

/// Writes a header file (temp file, rename) without an fsync: a header torn by a crash
/// fails its CRC at the next load and is rebuilt, which costs less than an fsync per block
/// on every cold start.
pub fn write(dir: &Path, header: &IndexHeader) -> std::io::Result<()> {
    crate::fs::replace_checksummed(&dir.join(FILE_NAME), |f| header.write_to(f))
}

/// A header: checked regions of an index and the sampling of its tables, either mapped from
/// its file or, right after [`build`], held as the buffers read from the bucket.
pub struct IndexHeader {
    index_len: u64,
    /// `(offset in the index, bytes)`, sorted by offset.
    regions: Vec<(u64, Bytes)>,
    sampling: Sampling,
    /// Bytes of the header file.
    size: u64,
}

impl IndexHeader {
    fn new(index_len: u64, regions: Vec<(u64, Bytes)>, sampling: Sampling) -> Self {
        let data: usize = regions.iter().map(|r| r.1.len()).sum();
        let size = (head_len(&regions, &sampling) + data + 4) as u64;
        IndexHeader {
            index_len,
            regions,
            sampling,
            size,
        }
    }

    /// Maps and checks a header file: magic, version, region bounds and CRC.
    pub fn load(path: &Path) -> Result<Self> {
        let file = mmap_file(path).map_err(|e| TsdbError::io(path, e))?;
        Self::parse(file.inner)
            .map_err(|e| TsdbError::corrupt(&file.name, Section::IndexHeader, 0, e))
    }

    /// Writes the header file's bytes (layout in the module docs) to `out`, computing the CRC
    /// on the way, so the regions are never copied into one buffer first.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut prefix = Vec::with_capacity(head_len(&self.regions, &self.sampling));
        prefix.extend_from_slice(&MAGIC.to_be_bytes());
        prefix.push(FORMAT_VERSION);
        prefix.extend_from_slice(&self.index_len.to_be_bytes());
        prefix.extend_from_slice(&(self.regions.len() as u32).to_be_bytes());
        for (off, b) in &self.regions {
            prefix.extend_from_slice(&off.to_be_bytes());
            prefix.extend_from_slice(&(b.len() as u64).to_be_bytes());
        }
        for positions in [&self.sampling.symbols, &self.sampling.postings] {
            prefix.extend_from_slice(&(positions.len() as u32).to_be_bytes());
            for p in positions {
                prefix.extend_from_slice(&p.to_be_bytes());
            }
        }
        out.write_all(&prefix)?;
        let mut crc = crc32c(&prefix);
        for (_, b) in &self.regions {
            out.write_all(b)?;
            crc = crc32c_append(crc, b);
        }
        out.write_all(&crc.to_be_bytes())
    }

    fn parse(map: Bytes) -> Result<Self, DecodeError> {
        if map.len() < PREFIX_LEN + 4 {
            return Err(DecodeError::ShortRead {
                needed: PREFIX_LEN + 4,
                available: map.len(),
            });
        }
        let (body, crc) = map.split_at(map.len() - 4);
        let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        if crc32c(body) != stored {
            return Err(DecodeError::Invalid(
                "index-header checksum mismatch".into(),
            ));
        }
        let mut d = Decbuf::new(body);
        if d.be32()? != MAGIC {
            return Err(DecodeError::Invalid("not an index-header file".into()));
        }
        let version = d.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Invalid(format!(
                "index-header format {version}, want {FORMAT_VERSION}"
            )));
        }
        let index_len = d.be64()?;
        let count = d.be32()? as usize;
        let mut ranges = Vec::with_capacity(count.min(16));
        for _ in 0..count {
            let off = d.be64()?;
            let len = d.be64()?;
            let end = off
                .checked_add(len)
                .filter(|&e| e <= index_len)
                .ok_or_else(|| {
                    DecodeError::Invalid(format!("region {off}+{len} past the index"))
                })?;
            ranges.push(off..end);
        }
        let mut sampling = Sampling::default();
        for positions in [&mut sampling.symbols, &mut sampling.postings] {
            let n = d.be32()? as usize;
            if n > d.len() / 4 {
                return Err(DecodeError::ShortRead {
                    needed: n * 4,
                    available: d.len(),
                });
            }
            positions.reserve_exact(n);
            for _ in 0..n {
                positions.push(d.be32()?);
            }
        }
        let mut at = body.len() - d.len();
        let mut regions = Vec::with_capacity(ranges.len());
        for r in ranges {
            let n = (r.end - r.start) as usize;
            if at + n > body.len() {
                return Err(DecodeError::ShortRead {
                    needed: at + n,
                    available: body.len(),
                });
            }
            regions.push((r.start, map.slice(at..at + n)));
            at += n;
        }
        regions.sort_by_key(|r| r.0);
        Ok(IndexHeader {
            index_len,
            regions,
            sampling,
            size: map.len() as u64,
        })
    }

    /// Where the samples of the index's tables lie, as found when the header was built.
    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// Length of the index this header was built from.
    pub fn index_len(&self) -> u64 {
        self.index_len
    }

    /// Bytes of the header file (what the header costs on disk).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The index ranges the header holds, in index order.
    pub fn regions(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.regions
            .iter()
            .map(|(start, b)| *start..start + b.len() as u64)
    }

    fn local(&self, range: &Range<u64>) -> Option<Bytes> {
        let i = self.regions.partition_point(|r| r.0 <= range.start);
        let (start, bytes) = self.regions.get(i.checked_sub(1)?)?;
        let from = (range.start - start) as usize;
        let to = from.checked_add((range.end.checked_sub(range.start)?) as usize)?;
        (to <= bytes.len()).then(|| bytes.slice(from..to))
    }
}

/// The header alone: reads outside its regions fail. Opening an index needs nothing else.
impl ReadAt for IndexHeader {
    fn len(&self) -> u64 {
        self.index_len
    }

    fn read_at(&self, range: Range<u64>) -> std::result::Result<Bytes, ReadError> {
        self.local(&range).ok_or_else(|| {
            ReadError::Backend(format!("index range {range:?} is not in the index header").into())
        })
    }

    fn name(&self) -> &str {
        FILE_NAME
    }
}

/// How long a header found in RAM is taken to stay there before [`HeaderedIndex::resident`]
/// asks the kernel again: asking costs a system call and a byte per page of the header.
const RESIDENT_RECHECK: Duration = Duration::from_secs(1);

/// The index of a block: header regions from the local mapping, the rest from `remote`.
pub struct HeaderedIndex {
    header: IndexHeader,
    remote: Arc<dyn ReadAt>,
    /// When the whole header was last found in RAM: microseconds after `created`, plus one
    /// (0: not yet). An atomic, so asking never waits.
    found_resident: AtomicU64,
    created: Instant,
}

impl HeaderedIndex {
    pub fn new(header: IndexHeader, remote: Arc<dyn ReadAt>) -> Self {
        HeaderedIndex {
            header,
            remote,
            found_resident: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    pub fn header(&self) -> &IndexHeader {
        &self.header
    }
}

impl ReadAt for HeaderedIndex {
    fn len(&self) -> u64 {
        self.remote.len()
    }

    fn read_at(&self, range: Range<u64>) -> std::result::Result<Bytes, ReadError> {
        match self.header.local(&range) {
            Some(b) => Ok(b),
            None => self.remote.read_at(range),
        }
    }

    fn name(&self) -> &str {
        self.remote.name()
    }

    fn read_ranges(&self, ranges: &[Range<u64>]) -> std::result::Result<Vec<Bytes>, ReadError> {
        match ranges.iter().map(|r| self.header.local(r)).collect() {
            Some(local) => Ok(local),
            None => self.remote.read_ranges(ranges),
        }
    }

    /// Whether every page of the header's regions is in RAM (`mincore`), so reading them
    /// cannot fault on the disk. A positive answer holds for [`RESIDENT_RECHECK`]: a page
    /// evicted within that time costs one read from the disk where it is touched.
    fn resident(&self) -> bool {
        let now = self.created.elapsed().as_micros() as u64 + 1;
        let found = self.found_resident.load(Ordering::Relaxed);
        if found > 0 && now - found.min(now) < RESIDENT_RECHECK.as_micros() as u64 {
            return true;
        }
        let resident = self
            .header
            .regions
            .iter()
            .all(|(_, bytes)| crate::block::resident(bytes));
        self.found_resident
            .store(if resident { now } else { 0 }, Ordering::Relaxed);
        resident
    }
}

/// The header under `dir`, if there is one and it is valid for an index of `index_len` bytes;
/// why not is logged.
pub fn load_valid(dir: &Path, index_len: u64) -> Option<IndexHeader> {
    let path = dir.join(FILE_NAME);
    if !path.exists() {
        return None;
    }
    match IndexHeader::load(&path) {
        Ok(h) if h.index_len() == index_len => return Some(h),
        Ok(h) => tracing::warn!(
            path = %path.display(),
            header_index_len = h.index_len(),
            index_len,
            "index-header was built for another index; rebuilding"
        ),
        Err(e) => tracing::warn!(error = %e, "invalid index-header; rebuilding"),
    }
    None
}

/// Loads `dir/index-header` if it is valid for `remote`, else builds and writes it anew.
/// Returns the index and whether it was (re)built.
pub fn open_or_build(dir: &Path, remote: Arc<dyn ReadAt>) -> Result<(HeaderedIndex, bool)> {
    if let Some(h) = load_valid(dir, remote.len()) {
        return Ok((HeaderedIndex::new(h, remote), false));
    }
    let path = build_and_write(dir, remote.as_ref())?.1;
    // Served from the mapping of the file just written, not from the buffers it was built
    // from: those are heap, the mapping is page cache the kernel can reclaim.
    let header = IndexHeader::load(&path)?;
    Ok((HeaderedIndex::new(header, remote), true))
}

/// Makes sure `dir/index-header` is a valid header for `remote`, building and writing it if
/// not, without opening the index. Returns whether it was (re)built and its size, like
/// [`open_index`].
pub fn ensure(dir: &Path, remote: &dyn ReadAt) -> Result<(bool, u64)> {
    if let Some(h) = load_valid(dir, remote.len()) {
        return Ok((false, h.size()));
    }
    Ok((true, build_and_write(dir, remote)?.0))
}

/// Builds the header of `remote` and writes it under `dir`; returns its size and path.
fn build_and_write(dir: &Path, remote: &dyn ReadAt) -> Result<(u64, std::path::PathBuf)> {
    let path = dir.join(FILE_NAME);
    let header = build(remote)?;
    write(dir, &header).map_err(|e| TsdbError::io(&path, e))?;
    Ok((header.size(), path))
}

/// Opens the index of a block through its header under `dir` (built if missing or invalid),
/// with the header's sampling. Returns the reader, whether the header was (re)built, and its
/// size on disk.
pub fn open_index(dir: &Path, remote: Arc<dyn ReadAt>) -> Result<(IndexReader, bool, u64)> {
    let (headered, built) = open_or_build(dir, remote)?;
    let size = headered.header().size();
    let sampling = headered.header().sampling().clone();
    let index = IndexReader::open_sampled(Arc::new(headered), Some(sampling))?;
    Ok((index, built, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::index::{IndexReader, IndexWriter};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts the bytes read through it.
    struct Counting {
        inner: Bytes,
        bytes: AtomicU64,
    }

    impl ReadAt for Counting {
        fn len(&self) -> u64 {
            self.inner.len() as u64
        }
        fn read_at(&self, range: Range<u64>) -> std::result::Result<Bytes, ReadError> {
            self.bytes
                .fetch_add(range.end - range.start, Ordering::Relaxed);
            self.inner.read_at(range)
        }
    }

    /// Counts rounds: each `read_ranges` call is one round trip to a bucket.
    struct Rounds {
        inner: Bytes,
        rounds: AtomicU64,
    }

    impl ReadAt for Rounds {
        fn len(&self) -> u64 {
            self.inner.len() as u64
        }
        fn read_at(&self, range: Range<u64>) -> std::result::Result<Bytes, ReadError> {
            self.inner.read_at(range)
        }
        fn read_ranges(&self, ranges: &[Range<u64>]) -> std::result::Result<Vec<Bytes>, ReadError> {
            self.rounds.fetch_add(1, Ordering::Relaxed);
            ranges
                .iter()
                .map(|r| self.inner.read_at(r.clone()))
                .collect()
        }
    }

    #[test]
    fn a_header_is_built_in_one_round_when_its_tables_fit_the_windows() {
        // Padding series between the tables makes the index larger than both windows.
        let mut w = IndexWriter::new(Vec::new()).unwrap();
        let values: Vec<String> = (0..20_000).map(|i| format!("v{i:06}")).collect();
        let mut symbols: Vec<&str> = vec!["a", "b"];
        symbols.extend(values.iter().map(String::as_str));
        symbols.sort();
        w.add_symbols(symbols.iter().copied()).unwrap();
        for v in &values {
            w.add_series(&[("a", v.as_str())], &[]).unwrap();
        }
        let big_symbols = Bytes::from(w.finish().unwrap());
        let small = sample_index();
        let rounds = |index: &Bytes| {
            let src = Rounds {
                inner: index.clone(),
                rounds: AtomicU64::new(0),
            };
            let header = build(&src).unwrap();
            let direct = IndexReader::open(Arc::new(index.clone())).unwrap();
            let via = IndexReader::open(Arc::new(header)).unwrap();
            assert_eq!(via.label_names().unwrap(), direct.label_names().unwrap());
            src.rounds.load(Ordering::Relaxed)
        };
        assert!(small.len() as u64 > 4 * TOC_LEN as u64);
        assert!(rounds(&small) <= 2);
        // 20k symbols (~180 KiB) do not fit the head window: one more, exact, round.
        assert!(big_symbols.len() as u64 > 4 * END_WINDOW);
        assert_eq!(rounds(&big_symbols), 2);
        // Most blocks: small tables around a large series section, one round.
        let mut w = IndexWriter::new(Vec::new()).unwrap();
        let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let mut symbols: Vec<&str> = vec!["a", "b", "c"];
        symbols.extend(digits.iter().map(String::as_str));
        symbols.sort();
        w.add_symbols(symbols.iter().copied()).unwrap();
        let chunks: Vec<crate::tsdb::index::ChunkMeta> = (0..100)
            .map(|i| crate::tsdb::index::ChunkMeta {
                min_time: i * 1000,
                max_time: i * 1000 + 999,
                chunk_ref: 8 + i as u64 * 300,
            })
            .collect();
        for x in &digits {
            for y in &digits {
                for z in &digits {
                    let labels = [("a", x.as_str()), ("b", y.as_str()), ("c", z.as_str())];
                    w.add_series(&labels, &chunks).unwrap();
                }
            }
        }
        let index = Bytes::from(w.finish().unwrap());
        assert_eq!(rounds(&index), 1);
    }

    proptest::proptest! {
        #[test]
        fn building_from_garbage_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
        ) {
            let _ = build(&Bytes::from(bytes));
        }
    }

    fn sample_index() -> Bytes {
        let mut w = IndexWriter::new(Vec::new()).unwrap();
        let mut symbols: Vec<String> = vec!["__name__".into(), "job".into(), "up".into()];
        for i in 0..300 {
            symbols.push(format!("i{i:04}"));
            symbols.push("instance".into());
        }
        symbols.sort();
        symbols.dedup();
        w.add_symbols(symbols.iter().map(String::as_str)).unwrap();
        for i in 0..300 {
            let inst = format!("i{i:04}");
            w.add_series(
                &[
                    ("__name__", "up"),
                    ("instance", inst.as_str()),
                    ("job", "job"),
                ],
                &[crate::tsdb::index::ChunkMeta {
                    min_time: 0,
                    max_time: 10,
                    chunk_ref: 8 + i,
                }],
            )
            .unwrap();
        }
        Bytes::from(w.finish().unwrap())
    }

    #[test]
    fn a_built_header_writes_the_file_it_describes() {
        let index = sample_index();
        let built = build(&index).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &built).unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), built.size());
        let loaded = IndexHeader::load(&path).unwrap();
        assert_eq!(loaded.size(), built.size());
        assert_eq!(loaded.index_len(), index.len() as u64);
        assert_eq!(loaded.sampling(), built.sampling());
        let regions: Vec<Range<u64>> = built.regions().collect();
        assert_eq!(loaded.regions().collect::<Vec<_>>(), regions);
        assert_eq!(regions.len(), 4);
        for r in regions {
            let want = index.slice(r.start as usize..r.end as usize);
            assert_eq!(loaded.read_at(r.clone()).unwrap(), want);
            assert_eq!(built.read_at(r.clone()).unwrap(), want);
            // Nothing past a region's end, even by one byte.
            assert!(loaded.read_at(r.start..r.end + 1).is_err());
        }
    }

    #[test]
    fn header_serves_opening_reads_and_queries_go_remote() {
        let index = sample_index();
        let dir = tempfile::tempdir().unwrap();
        let remote = Arc::new(Counting {
            inner: index.clone(),
            bytes: AtomicU64::new(0),
        });
        let (h, built) = open_or_build(dir.path(), remote.clone()).unwrap();
        assert!(built);
        let fetched_to_build = remote.bytes.load(Ordering::Relaxed);
        assert!(
            fetched_to_build < index.len() as u64,
            "never the whole index"
        );

        let reader = IndexReader::open(Arc::new(h)).unwrap();
        assert_eq!(
            remote.bytes.load(Ordering::Relaxed),
            fetched_to_build,
            "opening reads only header regions"
        );
        let direct = IndexReader::open(Arc::new(index.clone())).unwrap();
        assert_eq!(reader.label_names().unwrap(), direct.label_names().unwrap());
        assert_eq!(
            reader.postings("instance", "i0123").unwrap(),
            direct.postings("instance", "i0123").unwrap()
        );
        assert!(remote.bytes.load(Ordering::Relaxed) > fetched_to_build);

        // Reused on the next start.
        let (_, built) = open_or_build(dir.path(), remote.clone()).unwrap();
        assert!(!built);
    }

    #[test]
    fn the_header_keeps_the_sampling_so_reopening_does_not_scan() {
        let index = sample_index();
        let dir = tempfile::tempdir().unwrap();
        let remote: Arc<dyn ReadAt> = Arc::new(index.clone());
        let (reader, built, size) = open_index(dir.path(), remote.clone()).unwrap();
        assert!(built);
        let scanned = IndexReader::open(Arc::new(index.clone())).unwrap();
        let sampling = scanned.sampling();
        // 300 instance values: several samples each, so lookups cross them.
        assert!(sampling.postings.len() > 10 && !sampling.symbols.is_empty());
        assert_eq!(reader.sampling(), sampling);

        let (reopened, built, size_again) = open_index(dir.path(), remote).unwrap();
        assert!(!built);
        assert_eq!(size, size_again);
        assert_eq!(reopened.sampling(), sampling);
        assert_eq!(
            reopened.label_names().unwrap(),
            scanned.label_names().unwrap()
        );
        for name in ["instance", "job", "__name__"] {
            let values = scanned.label_values(name).unwrap();
            assert_eq!(reopened.label_values(name).unwrap(), values);
            for v in &values {
                assert_eq!(
                    reopened.postings(name, v).unwrap(),
                    scanned.postings(name, v).unwrap()
                );
            }
        }
        for r in 0..scanned.symbol_count() {
            assert_eq!(reopened.symbol(r).unwrap(), scanned.symbol(r).unwrap());
        }
    }

    #[test]
    fn corrupt_or_truncated_headers_are_rebuilt() {
        let index = sample_index();
        let dir = tempfile::tempdir().unwrap();
        let remote: Arc<dyn ReadAt> = Arc::new(index.clone());
        open_or_build(dir.path(), remote.clone()).unwrap();
        let path = dir.path().join(FILE_NAME);
        let good = std::fs::read(&path).unwrap();

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        assert!(IndexHeader::load(&path).is_err());
        let (_, built) = open_or_build(dir.path(), remote.clone()).unwrap();
        assert!(built);

        std::fs::write(&path, &good[..good.len() / 3]).unwrap();
        let (h, built) = open_or_build(dir.path(), remote).unwrap();
        assert!(built);
        IndexReader::open(Arc::new(h)).unwrap();
    }

    #[test]
    fn a_truncated_remote_index_is_an_error() {
        let index = sample_index();
        let short: Arc<dyn ReadAt> = Arc::new(index.slice(..index.len() / 2));
        let dir = tempfile::tempdir().unwrap();
        assert!(open_or_build(dir.path(), short).is_err());
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        for n in 0..64usize {
            let junk: Vec<u8> = (0..n * 7).map(|i| (i * 31 + n) as u8).collect();
            let _ = IndexHeader::parse(Bytes::from(junk));
        }
    }
}
