//! [`IndexReader`]: opens an index through a [`ReadAt`] and answers lookups by ranged reads.
//!
//! Opening reads the header, the TOC, the symbol table and the postings offset table; the
//! series and postings sections are only ever read by ranges, so the same reader serves a
//! local file, an mmap or object storage.

use std::ops::{ControlFlow, Range};
use std::sync::Arc;

use bytes::Bytes;

use super::postings::decode_postings_list;
use super::postings_table::{visit_content, FullTable, ListLocation, SampledTable};
use super::series::{decode_series_entry_into, split_series_entry, ChunkMeta, SeriesEntryRefs};
use super::symbols::Symbols;
use super::toc::{Toc, TOC_LEN};
use super::{decode_frame, IndexVersion, HEADER_LEN, MAGIC_INDEX};
use crate::tsdb::encoding::{read_uvarint, Decbuf, DecodeError};
use crate::tsdb::error::{Result, Section, TsdbError};
use crate::tsdb::source::ReadAt;

/// A series with its labels resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub chunks: Vec<ChunkMeta>,
}

/// What [`IndexReader::verify`] walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStats {
    pub series: u64,
    pub chunks: u64,
    /// Label names, without the all-postings name "".
    pub label_names: u64,
    /// Postings lists, including the all-postings list.
    pub postings_lists: u64,
    pub symbols: u64,
}

#[derive(Debug)]
enum PostingsOffsets {
    Sampled(SampledTable),
    Full(FullTable),
}

/// How much a first series read fetches: most entries fit, saving a second round trip.
const SERIES_PREFIX: u64 = 512;
/// Read size of the sequential scans in [`IndexReader::verify`].
const VERIFY_WINDOW: u64 = 1 << 20;

pub struct IndexReader {
    file: File,
    version: IndexVersion,
    toc: Toc,
    /// Offset of the TOC, i.e. the end of the last section.
    toc_start: u64,
    symbols: Symbols,
    postings: PostingsOffsets,
}

impl std::fmt::Debug for IndexReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexReader")
            .field("name", &self.file.name)
            .field("version", &self.version)
            .field("toc", &self.toc)
            .finish_non_exhaustive()
    }
}

/// Where the samples of the symbol and postings offset tables lie, as opening finds them by
/// scanning both tables. Kept beside the tables (in an index header), it lets
/// [`IndexReader::open_sampled`] skip the scans, most of what opening costs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sampling {
    /// Positions of every 32nd symbol in the symbol table content.
    pub symbols: Vec<u32>,
    /// Positions of the sampled postings offset table entries (v2; empty for v1, whose
    /// table is held whole).
    pub postings: Vec<u32>,
}

impl IndexReader {
    pub fn open(source: Arc<dyn ReadAt>) -> Result<Self> {
        Self::open_sampled(source, None)
    }

    /// Opens with the [`Sampling`] that [`Self::sampling`] gave for the same index, if any.
    /// Sampling that does not fit the tables is a corruption error of the table concerned.
    /// With a sampling, the two tables' CRCs are not checked again: the caller vouches that
    /// their bytes are covered by a check of its own (the index header's CRC).
    pub fn open_sampled(source: Arc<dyn ReadAt>, sampling: Option<Sampling>) -> Result<Self> {
        let name = source.name().to_string();
        let len = source.len();
        let corrupt = |section, offset, e| TsdbError::corrupt(&name, section, offset, e);
        let short = |needed: u64| DecodeError::ShortRead {
            needed: needed as usize,
            available: len as usize,
        };
        if len < HEADER_LEN as u64 {
            return Err(corrupt(Section::IndexHeader, 0, short(HEADER_LEN as u64)));
        }
        let header = source
            .read_at(0..HEADER_LEN as u64)
            .map_err(|e| TsdbError::read(&name, Section::IndexHeader, 0, e))?;
        let mut d = Decbuf::new(&header);
        let magic = d.be32().map_err(|e| corrupt(Section::IndexHeader, 0, e))?;
        if magic != MAGIC_INDEX {
            return Err(corrupt(
                Section::IndexHeader,
                0,
                DecodeError::Invalid(format!("bad magic {magic:#010x}, want {MAGIC_INDEX:#010x}")),
            ));
        }
        let vbyte = d.u8().map_err(|e| corrupt(Section::IndexHeader, 4, e))?;
        let version = IndexVersion::from_byte(vbyte).ok_or_else(|| {
            corrupt(
                Section::IndexHeader,
                4,
                DecodeError::Invalid(format!("unsupported index version {vbyte}")),
            )
        })?;

        let min_len = (HEADER_LEN + TOC_LEN) as u64;
        if len < min_len {
            return Err(corrupt(Section::Toc, HEADER_LEN as u64, short(min_len)));
        }
        let toc_start = len - TOC_LEN as u64;
        let toc_bytes = source
            .read_at(toc_start..len)
            .map_err(|e| TsdbError::read(&name, Section::Toc, toc_start, e))?;
        let toc = Toc::decode(&toc_bytes).map_err(|e| corrupt(Section::Toc, toc_start, e))?;
        for off in toc.offsets() {
            if off != 0 && (off < HEADER_LEN as u64 || off >= toc_start) {
                return Err(corrupt(
                    Section::Toc,
                    toc_start,
                    DecodeError::Invalid(format!(
                        "section offset {off} outside {HEADER_LEN}..{toc_start}"
                    )),
                ));
            }
        }
        if toc.symbols == 0 || toc.postings_table == 0 {
            return Err(corrupt(
                Section::Toc,
                toc_start,
                DecodeError::Invalid("symbol table or postings offset table missing".into()),
            ));
        }

        let file = File {
            source,
            name,
            toc,
            toc_start,
        };
        // A sampling was taken by opening these tables once with their CRCs checked, and comes
        // from an index header whose own CRC covers the same bytes since (`index_header`):
        // checking the sections' CRCs again would read the tables a second time for nothing.
        let check = if sampling.is_some() {
            FrameCheck::Covered
        } else {
            FrameCheck::Crc
        };
        let sym = file.read_frame(Section::Symbols, toc.symbols, check)?;
        let (sym_samples, pot_samples) = sampling.map(|s| (s.symbols, s.postings)).unzip();
        let symbols = match sym_samples {
            Some(samples) => Symbols::with_samples(sym, toc.symbols + 4, version, samples),
            None => Symbols::new(sym, toc.symbols + 4, version),
        }
        .map_err(|(o, e)| file.corrupt(Section::Symbols, o, e))?;
        let pot = file.read_frame(Section::PostingsOffsetTable, toc.postings_table, check)?;
        let base = toc.postings_table + 4;
        let pot_err = |(p, e): (usize, DecodeError)| {
            file.corrupt(Section::PostingsOffsetTable, base + p as u64, e)
        };
        let postings = match (version, pot_samples) {
            (IndexVersion::V2, Some(samples)) => {
                SampledTable::with_samples(pot, &samples).map(PostingsOffsets::Sampled)
            }
            (IndexVersion::V2, None) => SampledTable::new(pot).map(PostingsOffsets::Sampled),
            (IndexVersion::V1, _) => FullTable::new(pot).map(PostingsOffsets::Full),
        }
        .map_err(pot_err)?;
        Ok(IndexReader {
            file,
            version,
            toc,
            toc_start,
            symbols,
            postings,
        })
    }

    pub fn version(&self) -> IndexVersion {
        self.version
    }

    /// The samples opening found, for [`Self::open_sampled`].
    pub fn sampling(&self) -> Sampling {
        Sampling {
            symbols: self.symbols.sample_positions().to_vec(),
            postings: match &self.postings {
                PostingsOffsets::Sampled(t) => t.sample_positions(),
                PostingsOffsets::Full(_) => Vec::new(),
            },
        }
    }

    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// The name of the source, used in errors.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    fn corrupt(&self, section: Section, offset: u64, e: DecodeError) -> TsdbError {
        self.file.corrupt(section, offset, e)
    }

    fn read(&self, section: Section, range: Range<u64>) -> Result<Bytes> {
        self.file.read(section, range)
    }

    fn read_framed(&self, section: Section, off: u64) -> Result<Bytes> {
        self.file.read_framed(section, off)
    }

    /// Resolves a symbol reference (v2: sequence number, v1: file offset).
    pub fn symbol(&self, r: u32) -> Result<&str> {
        self.symbols
            .lookup(r)
            .map_err(|e| self.corrupt(Section::Symbols, self.toc.symbols, e))
    }

    pub fn symbol_count(&self) -> u32 {
        self.symbols.len()
    }

    /// Every label name, sorted, without the all-postings name "".
    pub fn label_names(&self) -> Result<Vec<String>> {
        let names: Vec<String> = match &self.postings {
            PostingsOffsets::Sampled(t) => t
                .names()
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect(),
            PostingsOffsets::Full(t) => t
                .names()
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect(),
        };
        Ok(names)
    }

    /// Every value of `name`, sorted; empty if the name is unknown.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        match &self.postings {
            PostingsOffsets::Sampled(t) => t.values(name).map_err(|(p, e)| {
                self.corrupt(
                    Section::PostingsOffsetTable,
                    self.toc.postings_table + 4 + p as u64,
                    e,
                )
            }),
            PostingsOffsets::Full(t) => Ok(t.values(name)),
        }
    }

    /// Byte range of the postings list of `(name, value)`: from its length field up to the
    /// start of the next list (so it may include alignment padding, which
    /// [`decode_postings_list`] ignores), or up to the next section for the last list.
    pub fn postings_range(&self, name: &str, value: &str) -> Result<Option<Range<u64>>> {
        let loc = match &self.postings {
            PostingsOffsets::Sampled(t) => t.lookup(name, value).map_err(|(p, e)| {
                self.corrupt(
                    Section::PostingsOffsetTable,
                    self.toc.postings_table + 4 + p as u64,
                    e,
                )
            })?,
            PostingsOffsets::Full(t) => t.lookup(name, value),
        };
        loc.map(|l| self.list_range(l)).transpose()
    }

    /// Every value of `name` with the byte range of its postings list (as
    /// [`Self::postings_range`] gives it), sorted by value: one scan of the offset table.
    pub fn postings_ranges(&self, name: &str) -> Result<Vec<(String, Range<u64>)>> {
        let locations = match &self.postings {
            PostingsOffsets::Sampled(t) => t.locations(name).map_err(|(p, e)| {
                self.corrupt(
                    Section::PostingsOffsetTable,
                    self.toc.postings_table + 4 + p as u64,
                    e,
                )
            })?,
            PostingsOffsets::Full(t) => t.locations(name),
        };
        locations
            .into_iter()
            .map(|(value, loc)| Ok((value, self.list_range(loc)?)))
            .collect()
    }

    fn list_range(&self, loc: ListLocation) -> Result<Range<u64>> {
        let start = loc.offset;
        let section_end = self.toc.section_end(start, self.toc_start);
        let end = loc.next_offset.map_or(section_end, |n| n.min(section_end));
        if start < HEADER_LEN as u64 || end < start.saturating_add(8) {
            return Err(self.corrupt(
                Section::PostingsOffsetTable,
                self.toc.postings_table,
                DecodeError::Invalid(format!("postings list range {start}..{end} is invalid")),
            ));
        }
        Ok(start..end)
    }

    /// Series references of `(name, value)` as stored; empty when the pair is absent.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>> {
        let Some(range) = self.postings_range(name, value)? else {
            return Ok(Vec::new());
        };
        let start = range.start;
        let bytes = self.read(Section::Postings, range)?;
        let list =
            decode_postings_list(&bytes).map_err(|e| self.corrupt(Section::Postings, start, e))?;
        Ok(list.into_iter().map(u64::from).collect())
    }

    /// Every series reference: the list of the all-postings key `("", "")`.
    pub fn all_postings(&self) -> Result<Vec<u64>> {
        self.postings("", "")
    }

    /// The source the index is read from (for batched reads of postings and series).
    pub fn source(&self) -> &Arc<dyn ReadAt> {
        &self.file.source
    }

    /// The series section: `[start, end)`.
    pub fn series_section(&self) -> Range<u64> {
        if self.toc.series == 0 {
            return 0..0;
        }
        self.toc.series..self.toc.series_end(self.toc_start)
    }

    /// File offset of the entry of `series_ref`, checked to lie in the series section.
    pub fn series_offset(&self, series_ref: u64) -> Result<u64> {
        let off = match self.version {
            IndexVersion::V2 => series_ref.checked_mul(16),
            IndexVersion::V1 => Some(series_ref),
        };
        let sec = self.series_section();
        match off {
            Some(o) if sec.contains(&o) => Ok(o),
            _ => Err(self.corrupt(
                Section::Series,
                off.unwrap_or(u64::MAX),
                DecodeError::Invalid(format!(
                    "series ref {series_ref} outside the series section {}..{}",
                    sec.start, sec.end
                )),
            )),
        }
    }

    /// Total length (length prefix, body and CRC) of the series entry at `off`, from a prefix
    /// of its bytes; checked against the end of the series section.
    pub fn series_entry_len(&self, off: u64, prefix: &[u8]) -> Result<u64> {
        let end = self.series_section().end;
        let err = |e| self.corrupt(Section::Series, off, e);
        let (len, n) = read_uvarint(prefix).map_err(err)?;
        len.checked_add(n as u64 + 4)
            .filter(|&t| off.checked_add(t).is_some_and(|e| e <= end))
            .ok_or_else(|| {
                err(DecodeError::Invalid(format!(
                    "entry length {len} runs past the series section end at {end}"
                )))
            })
    }

    /// CRC-checks and decodes the series entry at `off` from bytes starting there.
    pub fn decode_series_entry_at(
        &self,
        off: u64,
        entry: &[u8],
        out: &mut SeriesEntryRefs,
    ) -> Result<()> {
        let err = |e| self.corrupt(Section::Series, off, e);
        let (body, _) = split_series_entry(entry).map_err(err)?;
        decode_series_entry_into(body, self.version, out).map_err(err)
    }

    /// Reads and CRC-checks the entry of `series_ref`, returning its refs undecoded.
    pub fn series_refs(&self, series_ref: u64) -> Result<SeriesEntryRefs> {
        let off = self.series_offset(series_ref)?;
        let end = self.series_section().end;
        let first = self.read(Section::Series, off..end.min(off + SERIES_PREFIX))?;
        let total = self.series_entry_len(off, &first)?;
        let entry = if total <= first.len() as u64 {
            first
        } else {
            self.read(Section::Series, off..off + total)?
        };
        let mut out = SeriesEntryRefs::default();
        self.decode_series_entry_at(off, &entry, &mut out)?;
        Ok(out)
    }

    /// A resolver of series entries' label references to strings, for one pass over many
    /// series.
    pub fn label_resolver(&self) -> LabelResolver<'_> {
        LabelResolver {
            index: self,
            memo: vec![None; MEMO_SLOTS],
        }
    }

    /// The series at `series_ref` (v2: offset / 16, v1: offset) with labels resolved.
    pub fn series(&self, series_ref: u64) -> Result<Series> {
        let refs = self.series_refs(series_ref)?;
        let off = self.series_offset(series_ref)?;
        // One series: a memo would not be used, so none is allocated.
        let mut labels = Vec::new();
        LabelResolver {
            index: self,
            memo: Vec::new(),
        }
        .resolve(off, &refs.labels, &mut labels)?;
        let labels = labels
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Ok(Series {
            labels,
            chunks: refs.chunks,
        })
    }

    /// Walks every section, checking every CRC and the format's invariants. Sections are
    /// scanned in bounded windows; the symbol and postings offset tables are already held.
    pub fn verify(&self) -> Result<IndexStats> {
        let mut stats = IndexStats {
            symbols: u64::from(self.symbols.len()),
            ..Default::default()
        };
        let symbol_refs = self.verify_symbols()?;
        let series = self.verify_series(&symbol_refs, &mut stats)?;
        self.verify_label_indices(&symbol_refs)?;
        self.verify_postings(&series, &mut stats)?;
        Ok(stats)
    }

    /// Symbols are sorted and unique. Returns the valid references, sorted, and whether
    /// "" is one of them (as the first).
    fn verify_symbols(&self) -> Result<SymbolRefs> {
        let mut refs = Vec::with_capacity(self.symbols.len() as usize);
        let mut prev: Option<&str> = None;
        let mut empty = None;
        for item in self.symbols.iter() {
            let (r, s) = item.map_err(|e| self.corrupt(Section::Symbols, self.toc.symbols, e))?;
            if let Some(p) = prev {
                if p >= s {
                    return Err(self.corrupt(
                        Section::Symbols,
                        self.symbol_offset(r),
                        DecodeError::Invalid(format!("symbol {s:?} not after {p:?}")),
                    ));
                }
            } else if s.is_empty() {
                empty = Some(r);
            }
            prev = Some(s);
            refs.push(r);
        }
        Ok(SymbolRefs { refs, empty })
    }

    fn symbol_offset(&self, r: u32) -> u64 {
        match self.version {
            IndexVersion::V1 => u64::from(r),
            IndexVersion::V2 => self.toc.symbols,
        }
    }

    /// Series are sorted by label set, labels by name, values non-empty, symbol references
    /// valid, chunks well-formed. Returns every series reference, in order.
    fn verify_series(&self, syms: &SymbolRefs, stats: &mut IndexStats) -> Result<Vec<u32>> {
        let mut refs = Vec::new();
        let mut prev = SeriesEntryRefs::default();
        let mut cur = SeriesEntryRefs::default();
        self.walk_series(|pos, entry| {
            let err = |e| self.corrupt(Section::Series, pos, e);
            let invalid = |m: String| err(DecodeError::Invalid(m));
            let series_ref = match self.version {
                IndexVersion::V2 if pos % 16 != 0 => {
                    return Err(invalid("series entry not 16-byte aligned".into()));
                }
                IndexVersion::V2 => pos / 16,
                IndexVersion::V1 => pos,
            };
            let series_ref = u32::try_from(series_ref)
                .map_err(|_| invalid(format!("series ref {series_ref} exceeds 32 bits")))?;
            let (body, _) = split_series_entry(entry).map_err(err)?;
            decode_series_entry_into(body, self.version, &mut cur).map_err(err)?;
            if cur.labels.is_empty() {
                return Err(invalid("series without labels".into()));
            }
            for (i, &(name, value)) in cur.labels.iter().enumerate() {
                for r in [name, value] {
                    if syms.refs.binary_search(&r).is_err() {
                        return Err(invalid(format!("unknown symbol ref {r}")));
                    }
                }
                if Some(value) == syms.empty || Some(name) == syms.empty {
                    return Err(invalid("empty label name or value".into()));
                }
                if i > 0 && cur.labels.get(i - 1).is_some_and(|p| p.0 >= name) {
                    return Err(invalid("labels not sorted by name".into()));
                }
            }
            // Symbol refs grow with the symbols in both versions, so comparing refs
            // compares label sets.
            if !refs.is_empty() && prev.labels >= cur.labels {
                return Err(invalid("series not sorted by label set".into()));
            }
            let mut last: Option<ChunkMeta> = None;
            for c in &cur.chunks {
                if c.min_time > c.max_time {
                    return Err(invalid(format!(
                        "chunk min time {} after max time {}",
                        c.min_time, c.max_time
                    )));
                }
                if last.is_some_and(|l| l.min_time > c.min_time) {
                    return Err(invalid("chunks not ordered by time".into()));
                }
                last = Some(*c);
            }
            stats.series += 1;
            stats.chunks += cur.chunks.len() as u64;
            refs.push(series_ref);
            std::mem::swap(&mut prev, &mut cur);
            Ok(())
        })?;
        Ok(refs)
    }

    /// Calls `f(file offset, entry bytes)` for every entry of the series section, in order,
    /// reading the section in bounded windows, never whole.
    fn walk_series(&self, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let sec = self.series_section();
        let mut w = Window::new(self, Section::Series, sec.end);
        let mut pos = sec.start;
        while pos < sec.end {
            // Zero bytes are alignment padding; an entry never starts with one (len >= 2).
            if w.get(pos, 1)?.first() == Some(&0) {
                pos += 1;
                continue;
            }
            let prefix = w.get(pos, (sec.end - pos).min(10))?;
            let total = self.series_entry_len(pos, &prefix)?;
            f(pos, &w.get(pos, total)?)?;
            pos += total;
        }
        Ok(())
    }

    /// Calls `f(labels, chunks)` for every series of the index, in order, streaming the
    /// series section in bounded windows (for whole-index statistics such as churn).
    pub fn for_each_series(&self, mut f: impl FnMut(&[(&str, &str)], &[ChunkMeta])) -> Result<u64> {
        let mut entry = SeriesEntryRefs::default();
        let mut resolver = self.label_resolver();
        let mut labels = Vec::new();
        let mut count = 0;
        self.walk_series(|pos, bytes| {
            self.decode_series_entry_at(pos, bytes, &mut entry)?;
            resolver.resolve(pos, &entry.labels, &mut labels)?;
            f(&labels, &entry.chunks);
            count += 1;
            Ok(())
        })?;
        Ok(count)
    }

    /// The verified postings offset table content (`#entries` and the entries), as held.
    pub fn postings_table(&self) -> &Bytes {
        match &self.postings {
            PostingsOffsets::Sampled(t) => t.content(),
            PostingsOffsets::Full(t) => t.content(),
        }
    }

    /// The legacy label indices and their offset table, when present: CRCs and symbol refs.
    fn verify_label_indices(&self, syms: &SymbolRefs) -> Result<()> {
        if !self.toc.has_label_offset_table() {
            return Ok(());
        }
        let table_off = self.toc.label_indices_table;
        let content = self.read_framed(Section::LabelOffsetTable, table_off)?;
        let mut d = Decbuf::new(&content);
        let terr =
            |p: usize, e| self.corrupt(Section::LabelOffsetTable, table_off + 4 + p as u64, e);
        let count = d.be32().map_err(|e| terr(0, e))?;
        for _ in 0..count {
            let p = content.len() - d.len();
            let n = d.uvarint().map_err(|e| terr(p, e))?;
            let mut names = Vec::new();
            for _ in 0..n {
                names.push(d.uvarint_str().map_err(|e| terr(p, e))?);
            }
            let off = d.uvarint().map_err(|e| terr(p, e))?;
            if off < HEADER_LEN as u64 || off >= self.toc_start {
                return Err(terr(
                    p,
                    DecodeError::Invalid(format!("label index offset {off} out of range")),
                ));
            }
            let idx = self.read_framed(Section::LabelIndices, off)?;
            let ierr = |e| self.corrupt(Section::LabelIndices, off, e);
            let mut id = Decbuf::new(&idx);
            let nnames = id.be32().map_err(ierr)?;
            let nentries = id.be32().map_err(ierr)?;
            if u64::from(nnames) != n
                || id.len() as u64 != u64::from(nnames) * u64::from(nentries) * 4
            {
                return Err(ierr(DecodeError::Invalid(format!(
                    "label index for {names:?} has inconsistent counts"
                ))));
            }
            while !id.is_empty() {
                let r = id.be32().map_err(ierr)?;
                if syms.refs.binary_search(&r).is_err() {
                    return Err(ierr(DecodeError::Invalid(format!(
                        "unknown symbol ref {r}"
                    ))));
                }
            }
        }
        if !d.is_empty() {
            return Err(terr(
                content.len() - d.len(),
                DecodeError::Invalid("trailing bytes".into()),
            ));
        }
        Ok(())
    }

    /// Every list's CRC; lists strictly increasing and pointing at real series; the table
    /// sorted (v2) and the all-postings list equal to the series.
    fn verify_postings(&self, series: &[u32], stats: &mut IndexStats) -> Result<()> {
        let content = self.postings_table().clone();
        let base = self.toc.postings_table + 4;
        let mut entries: Vec<(u64, bool)> = Vec::new();
        let mut prev: Option<(&str, &str)> = None;
        let mut names = 0u64;
        visit_content(&content, |e| {
            if prev.is_none_or(|p| p.0 != e.name) && !e.name.is_empty() {
                names += 1;
            }
            match (self.version, prev) {
                (IndexVersion::V2, Some(p)) if p >= (e.name, e.value) => {
                    return Err(DecodeError::Invalid(
                        "postings offset table not sorted".into(),
                    ));
                }
                (IndexVersion::V2, None) if (e.name, e.value) != ("", "") => {
                    return Err(DecodeError::Invalid(
                        "first entry is not (\"\", \"\")".into(),
                    ));
                }
                _ => {}
            }
            if self.version == IndexVersion::V2
                && entries.last().is_some_and(|&(o, _)| o >= e.offset)
            {
                return Err(DecodeError::Invalid(
                    "postings list offsets not increasing".into(),
                ));
            }
            prev = Some((e.name, e.value));
            entries.push((e.offset, e.name.is_empty() && e.value.is_empty()));
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|(p, e)| self.corrupt(Section::PostingsOffsetTable, base + p as u64, e))?;
        stats.label_names = names;

        let mut sorted: Vec<u64> = entries.iter().map(|e| e.0).collect();
        sorted.sort_unstable();
        let mut w = Window::new(self, Section::Postings, self.toc_start);
        for (off, is_all) in entries {
            let next = sorted.get(sorted.partition_point(|&o| o <= off)).copied();
            let range = self.list_range(ListLocation {
                offset: off,
                next_offset: next,
            })?;
            let bytes = w.get(range.start, range.end - range.start)?;
            let list = decode_postings_list(&bytes)
                .map_err(|e| self.corrupt(Section::Postings, off, e))?;
            let bad =
                |m: &str| self.corrupt(Section::Postings, off, DecodeError::Invalid(m.into()));
            if list.windows(2).any(|p| p.first() >= p.get(1)) {
                return Err(bad("postings list not strictly increasing"));
            }
            if list.iter().any(|r| series.binary_search(r).is_err()) {
                return Err(bad("postings list points at a non-series"));
            }
            if is_all && list.as_slice() != series {
                return Err(bad("all-postings list differs from the series section"));
            }
            stats.postings_lists += 1;
        }
        Ok(())
    }
}

/// The source with what is needed to bound and name reads.
struct File {
    source: Arc<dyn ReadAt>,
    name: String,
    toc: Toc,
    toc_start: u64,
}

/// Whether reading a frame checks its CRC, or its bytes are covered by a check done already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameCheck {
    Crc,
    Covered,
}

impl File {
    fn corrupt(&self, section: Section, offset: u64, e: DecodeError) -> TsdbError {
        TsdbError::corrupt(&self.name, section, offset, e)
    }

    fn read(&self, section: Section, range: Range<u64>) -> Result<Bytes> {
        let start = range.start;
        self.source
            .read_at(range)
            .map_err(|e| TsdbError::read(&self.name, section, start, e))
    }

    /// Reads a `len | content | CRC` section at `off`, bounded by the next section, and
    /// returns the verified content.
    fn read_framed(&self, section: Section, off: u64) -> Result<Bytes> {
        self.read_frame(section, off, FrameCheck::Crc)
    }

    /// The content of the `len | content | CRC` frame at `off`, its bounds always checked.
    fn read_frame(&self, section: Section, off: u64, check: FrameCheck) -> Result<Bytes> {
        let end = self.toc.section_end(off, self.toc_start);
        if end < off + 8 {
            return Err(self.corrupt(
                section,
                off,
                DecodeError::Invalid(format!("section at {off} has no room before {end}")),
            ));
        }
        let lenb = self.read(section, off..off + 4)?;
        let len = u64::from(
            Decbuf::new(&lenb)
                .be32()
                .map_err(|e| self.corrupt(section, off, e))?,
        );
        if off + 8 + len > end {
            return Err(self.corrupt(
                section,
                off,
                DecodeError::Invalid(format!("length {len} runs past the section end at {end}")),
            ));
        }
        let all = self.read(section, off..off + 8 + len)?;
        if check == FrameCheck::Crc {
            decode_frame(&all).map_err(|e| self.corrupt(section, off, e))?;
        }
        Ok(all.slice(4..4 + len as usize))
    }
}

struct SymbolRefs {
    /// Every valid symbol reference, sorted.
    refs: Vec<u32>,
    /// The reference of the empty string, if it is a symbol.
    empty: Option<u32>,
}

/// A sliding read window for sequential scans: serves `[off, off + n)` from one buffered
/// range, refilling with at least [`VERIFY_WINDOW`] bytes (capped at `limit`).
struct Window<'a> {
    r: &'a IndexReader,
    section: Section,
    limit: u64,
    start: u64,
    buf: Bytes,
}

impl<'a> Window<'a> {
    fn new(r: &'a IndexReader, section: Section, limit: u64) -> Self {
        Window {
            r,
            section,
            limit,
            start: 0,
            buf: Bytes::new(),
        }
    }

    fn get(&mut self, off: u64, n: u64) -> Result<Bytes> {
        let end = off
            .checked_add(n)
            .filter(|&e| e <= self.limit)
            .ok_or_else(|| {
                self.r.corrupt(
                    self.section,
                    off,
                    DecodeError::Invalid(format!("{n} bytes at {off} run past {}", self.limit)),
                )
            })?;
        let buf_end = self.start + self.buf.len() as u64;
        if off < self.start || end > buf_end {
            let fill_end = end.max(off.saturating_add(VERIFY_WINDOW).min(self.limit));
            self.buf = self.r.read(self.section, off..fill_end)?;
            self.start = off;
        }
        let s = (off - self.start) as usize;
        Ok(self.buf.slice(s..s + n as usize))
    }
}

/// Slots of a [`LabelResolver`]'s memo.
const MEMO_SLOTS: usize = 256;

/// Resolves label references with a memo of the symbols it resolved recently, one slot per
/// reference hash: the series of one request share their label names and many of their
/// values, and resolving a reference otherwise decodes up to 31 strings of the table.
pub struct LabelResolver<'a> {
    index: &'a IndexReader,
    /// [`MEMO_SLOTS`] slots, or none: every reference looked up.
    memo: Vec<Option<(u32, &'a str)>>,
}

impl<'a> LabelResolver<'a> {
    /// Replaces `out` with the `(name, value)` strings of the `(name ref, value ref)` pairs
    /// of the series entry at `off`.
    pub fn resolve(
        &mut self,
        off: u64,
        refs: &[(u32, u32)],
        out: &mut Vec<(&'a str, &'a str)>,
    ) -> Result<()> {
        out.clear();
        for &(name, value) in refs {
            out.push((self.symbol(off, name)?, self.symbol(off, value)?));
        }
        Ok(())
    }

    fn symbol(&mut self, off: u64, r: u32) -> Result<&'a str> {
        // Fibonacci hashing: the top 8 bits of the product pick one of the 256 slots.
        let slot = (r.wrapping_mul(0x9E37_79B9) >> 24) as usize;
        if let Some(&Some((key, s))) = self.memo.get(slot) {
            if key == r {
                return Ok(s);
            }
        }
        let index = self.index;
        let s = index
            .symbols
            .lookup(r)
            .map_err(|e| index.corrupt(Section::Series, off, e))?;
        if let Some(slot) = self.memo.get_mut(slot) {
            *slot = Some((r, s));
        }
        Ok(s)
    }
}
