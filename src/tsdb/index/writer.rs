//! [`IndexWriter`]: writes a v2 index the way Prometheus 2.42 lays it out.
//!
//! Section order: header, symbols, series, label indices, postings, label offset table,
//! postings offset table, TOC. The legacy label indices are still written so that
//! Prometheus 2.x and promtool read our blocks like their own.
//!
//! The writer streams to any `std::io::Write` (no seeking), so a section whose length
//! prefix is only known at its end is assembled in memory first. Postings are held as a
//! `Vec<u32>` per (name ref, value ref) pair, which sorts in string order because symbol
//! references are sequence numbers in a sorted table.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufWriter, Write};

use super::postings::encode_postings_list;
use super::series::{encode_series_entry, ChunkMeta};
use super::symbols::encode_symbol;
use super::toc::Toc;
use super::{IndexVersion, HEADER_LEN, MAGIC_INDEX};
use crate::tsdb::encoding::{crc32c, Encbuf};
use crate::tsdb::error::{Result, TsdbError};

/// The Firefox/rustc multiply-rotate hash. The writer hashes millions of short symbols
/// and ref pairs of trusted input, where SipHash's DoS resistance buys nothing.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(a));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Where the writer is; methods may only move it forward, like Prometheus' `ensureStage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Symbols,
    Series,
    Done,
}

pub struct IndexWriter<W: Write> {
    out: BufWriter<W>,
    pos: u64,
    stage: Stage,
    toc: Toc,
    /// The symbol table content (`#symbols` filled in at the end of the stage).
    symtab: Encbuf,
    symbol_count: u32,
    symbols: Vec<Box<str>>,
    symbol_refs: FxMap<Box<str>, u32>,
    /// Reused buffers: the current label refs, the previous series' refs, and encodings.
    labels: Vec<(u32, u32)>,
    last_labels: Vec<(u32, u32)>,
    buf: Encbuf,
    body: Encbuf,
    series: Vec<u32>,
    postings: FxMap<(u32, u32), Vec<u32>>,
}

fn io_err(e: std::io::Error) -> TsdbError {
    TsdbError::io("<index writer>", e)
}

fn invalid(msg: String) -> TsdbError {
    TsdbError::InvalidInput(msg)
}

impl<W: Write> IndexWriter<W> {
    /// Writes the header and starts the symbols stage.
    pub fn new(w: W) -> Result<Self> {
        let mut iw = IndexWriter {
            out: BufWriter::with_capacity(1 << 20, w),
            pos: 0,
            stage: Stage::Symbols,
            toc: Toc::default(),
            symtab: Encbuf::new(),
            symbol_count: 0,
            symbols: Vec::new(),
            symbol_refs: FxMap::default(),
            labels: Vec::new(),
            last_labels: Vec::new(),
            buf: Encbuf::with_capacity(1 << 16),
            body: Encbuf::with_capacity(1 << 10),
            series: Vec::new(),
            postings: FxMap::default(),
        };
        let mut h = Encbuf::new();
        h.put_be32(MAGIC_INDEX);
        h.put_u8(2);
        debug_assert_eq!(h.len(), HEADER_LEN);
        iw.write(h.as_slice())?;
        iw.toc.symbols = iw.pos;
        Ok(iw)
    }

    /// The format this writer produces.
    pub fn version(&self) -> IndexVersion {
        IndexVersion::V2
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out.write_all(b).map_err(io_err)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let rem = self.pos % align;
        if rem != 0 {
            self.write(&[0u8; 16][..(align - rem) as usize])?;
        }
        Ok(())
    }

    /// Writes `buf` (a section built in memory) and clears it.
    fn flush_buf(&mut self) -> Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.write(buf.as_slice());
        self.buf = buf;
        self.buf.clear();
        r
    }

    /// Appends symbols; across calls they must be strictly increasing.
    pub fn add_symbols<I, S>(&mut self, symbols: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if self.stage != Stage::Symbols {
            return Err(invalid("symbols must be added before any series".into()));
        }
        for s in symbols {
            let s = s.as_ref();
            if let Some(last) = self.symbols.last() {
                if **last >= *s {
                    return Err(invalid(format!("symbol {s:?} not after {last:?}")));
                }
            }
            let r = self.symbol_count;
            self.symbol_count = r
                .checked_add(1)
                .ok_or_else(|| invalid("more than 2^32 symbols".into()))?;
            encode_symbol(&mut self.symtab, s);
            self.symbols.push(s.into());
            self.symbol_refs.insert(s.into(), r);
        }
        Ok(())
    }

    /// Moves forward to `to`, writing whatever the stages in between owe.
    fn ensure_stage(&mut self, to: Stage) -> Result<()> {
        if self.stage > to {
            return Err(invalid(format!(
                "cannot go back to stage {to:?} from {:?}",
                self.stage
            )));
        }
        while self.stage < to {
            match self.stage {
                Stage::Symbols => {
                    self.finish_symbols()?;
                    self.toc.series = self.pos;
                    self.stage = Stage::Series;
                }
                Stage::Series => {
                    self.finish_index()?;
                    self.stage = Stage::Done;
                }
                Stage::Done => break,
            }
        }
        Ok(())
    }

    fn finish_symbols(&mut self) -> Result<()> {
        let table = std::mem::take(&mut self.symtab);
        self.buf.clear();
        self.buf.put_be32((4 + table.len()) as u32);
        let start = self.buf.len();
        self.buf.put_be32(self.symbol_count);
        self.buf.put_bytes(table.as_slice());
        self.buf.put_crc32c_from(start);
        if table.len() + 4 > u32::MAX as usize {
            return Err(invalid("symbol table over 4 GiB".into()));
        }
        self.flush_buf()
    }

    /// Adds a series; `labels` sorted by name, label sets strictly increasing across calls.
    /// Returns its reference (offset / 16).
    pub fn add_series(&mut self, labels: &[(&str, &str)], chunks: &[ChunkMeta]) -> Result<u64> {
        self.ensure_stage(Stage::Series)?;
        if labels.is_empty() {
            return Err(invalid("series without labels".into()));
        }
        self.labels.clear();
        for &(name, value) in labels {
            if value.is_empty() || name.is_empty() {
                return Err(invalid(format!("empty label name or value in {labels:?}")));
            }
            let lookup = |s: &str| {
                self.symbol_refs
                    .get(s)
                    .copied()
                    .ok_or_else(|| invalid(format!("{s:?} is not a symbol")))
            };
            let pair = (lookup(name)?, lookup(value)?);
            if self.labels.last().is_some_and(|p| p.0 >= pair.0) {
                return Err(invalid(format!("labels not sorted by name: {labels:?}")));
            }
            self.labels.push(pair);
        }
        if !self.series.is_empty() && self.labels <= self.last_labels {
            return Err(invalid(format!("series {labels:?} out of order")));
        }
        let mut prev_min = i64::MIN;
        for c in chunks {
            if c.min_time > c.max_time || c.min_time < prev_min {
                return Err(invalid(format!(
                    "chunks of {labels:?} malformed or unordered"
                )));
            }
            prev_min = c.min_time;
        }

        self.pad(16)?;
        let series_ref = u32::try_from(self.pos / 16)
            .map_err(|_| invalid("index too large for 32-bit series references".into()))?;
        self.buf.clear();
        encode_series_entry(&mut self.buf, &mut self.body, &self.labels, chunks);
        self.flush_buf()?;

        for pair in &self.labels {
            self.postings.entry(*pair).or_default().push(series_ref);
        }
        self.series.push(series_ref);
        std::mem::swap(&mut self.labels, &mut self.last_labels);
        Ok(u64::from(series_ref))
    }

    /// Writes label indices, postings, both offset tables and the TOC; returns the sink.
    pub fn finish(mut self) -> Result<W> {
        self.ensure_stage(Stage::Done)?;
        self.out.flush().map_err(io_err)?;
        self.out.into_inner().map_err(|e| io_err(e.into_error()))
    }

    fn symbol(&self, r: u32) -> &str {
        self.symbols.get(r as usize).map_or("", |s| s)
    }

    fn finish_index(&mut self) -> Result<()> {
        let mut keys: Vec<(u32, u32)> = self.postings.keys().copied().collect();
        keys.sort_unstable();

        // Label indices: per name, the value refs in order.
        self.toc.label_indices = self.pos;
        let mut label_offsets: Vec<(u32, u64)> = Vec::new();
        let mut i = 0;
        while let Some(&(name, _)) = keys.get(i) {
            let n = keys
                .get(i..)
                .unwrap_or_default()
                .iter()
                .take_while(|k| k.0 == name)
                .count();
            self.pad(4)?;
            label_offsets.push((name, self.pos));
            self.buf.clear();
            self.buf.put_be32((8 + 4 * n) as u32);
            let start = self.buf.len();
            self.buf.put_be32(1);
            self.buf.put_be32(n as u32);
            for k in keys.get(i..i + n).unwrap_or_default() {
                self.buf.put_be32(k.1);
            }
            self.buf.put_crc32c_from(start);
            self.flush_buf()?;
            i += n;
        }

        // Postings, the all-postings list first; the offset table is built alongside.
        self.toc.postings = self.pos;
        let mut table = Encbuf::new();
        let mut table_count: u32 = 0;
        let mut put_entry = |t: &mut Encbuf, name: &str, value: &str, off: u64| {
            t.put_uvarint(2);
            t.put_uvarint_bytes(name.as_bytes());
            t.put_uvarint_bytes(value.as_bytes());
            t.put_uvarint(off);
            table_count += 1;
        };
        self.pad(4)?;
        put_entry(&mut table, "", "", self.pos);
        let all = std::mem::take(&mut self.series);
        self.buf.clear();
        encode_postings_list(&all, &mut self.buf);
        self.flush_buf()?;
        for key in &keys {
            self.pad(4)?;
            let (name, value) = (self.symbol(key.0), self.symbol(key.1));
            put_entry(&mut table, name, value, self.pos);
            self.buf.clear();
            if let Some(list) = self.postings.get(key) {
                encode_postings_list(list, &mut self.buf);
            }
            self.flush_buf()?;
        }
        self.postings = FxMap::default();

        // Label offset table.
        self.toc.label_indices_table = self.pos;
        let mut lot = Encbuf::new();
        lot.put_be32(label_offsets.len() as u32);
        for &(name, off) in &label_offsets {
            lot.put_uvarint(1);
            lot.put_uvarint_bytes(self.symbol(name).as_bytes());
            lot.put_uvarint(off);
        }
        self.write_framed(&lot)?;

        // Postings offset table.
        self.toc.postings_table = self.pos;
        let mut pot = Encbuf::with_capacity(table.len() + 4);
        pot.put_be32(table_count);
        pot.put_bytes(table.as_slice());
        self.write_framed(&pot)?;

        let mut t = Encbuf::new();
        self.toc.encode(&mut t);
        self.write(t.as_slice())
    }

    /// Writes `len | content | CRC32C(content)`.
    fn write_framed(&mut self, content: &Encbuf) -> Result<()> {
        let len =
            u32::try_from(content.len()).map_err(|_| invalid("index section over 4 GiB".into()))?;
        self.write(&len.to_be_bytes())?;
        self.write(content.as_slice())?;
        self.write(&crc32c(content.as_slice()).to_be_bytes())
    }
}
