//! The symbol table: every label name and value, sorted and de-duplicated.
//!
//! ```text
//! ┌────────────────────┬─────────────────────┐
//! │ len <4b>           │ #symbols <4b>       │
//! ├────────────────────┴─────────────────────┤
//! │ uvarint len(str_1) │ str_1 (UTF-8)       │
//! │ ...                                      │
//! │ uvarint len(str_n) │ str_n               │
//! ├──────────────────────────────────────────┤
//! │ CRC32C over #symbols and the strings <4b>│
//! └──────────────────────────────────────────┘
//! ```
//!
//! Like Prometheus, [`Symbols`] keeps the raw section bytes plus the position of every
//! 32nd symbol, so memory stays ~1/32 of a decoded table while a lookup scans at most 31
//! strings.

use bytes::Bytes;

use super::IndexVersion;
use crate::tsdb::encoding::{Decbuf, DecodeError};

/// One in this many symbol positions is kept in memory.
pub const SYMBOL_FACTOR: usize = 32;

/// A decoded symbol table over its section bytes.
#[derive(Debug, Clone)]
pub struct Symbols {
    /// `#symbols` and the strings: the framed content without length and CRC.
    data: Bytes,
    /// Absolute file offset of `data[0]`; v1 references are absolute offsets.
    base: u64,
    count: u32,
    /// Position in `data` of symbols 0, 32, 64, ...
    samples: Vec<u32>,
    version: IndexVersion,
}

impl Symbols {
    /// Parses the framed content (CRC already checked) located at file offset `base`.
    /// On error, returns the absolute offset of the offending symbol.
    pub fn new(data: Bytes, base: u64, version: IndexVersion) -> Result<Self, (u64, DecodeError)> {
        let mut d = Decbuf::new(&data);
        let count = d.be32().map_err(|e| (base, e))?;
        let total = data.len();
        let mut samples = Vec::with_capacity((count as usize / SYMBOL_FACTOR + 1).min(total));
        for i in 0..count as usize {
            let pos = total - d.len();
            if i % SYMBOL_FACTOR == 0 {
                samples.push(pos as u32);
            }
            d.uvarint_bytes().map_err(|e| (base + pos as u64, e))?;
        }
        if !d.is_empty() {
            let pos = (total - d.len()) as u64;
            return Err((
                base + pos,
                DecodeError::Invalid(format!("{} trailing bytes after {count} symbols", d.len())),
            ));
        }
        Self::with_samples(data, base, version, samples)
    }

    /// Like [`Self::new`] with the sample positions a previous [`Self::sample_positions`]
    /// returned for the same bytes (kept in an index header), so the table is not scanned.
    /// The positions are checked for shape (one per 32 symbols, increasing, in bounds); what
    /// they point at is trusted, their container being checksummed.
    pub fn with_samples(
        data: Bytes,
        base: u64,
        version: IndexVersion,
        samples: Vec<u32>,
    ) -> Result<Self, (u64, DecodeError)> {
        let count = Decbuf::new(&data).be32().map_err(|e| (base, e))?;
        let want = (count as usize).div_ceil(SYMBOL_FACTOR);
        let in_bounds = samples.first().is_none_or(|&p| p == 4)
            && samples.windows(2).all(|w| w[0] < w[1])
            && samples.last().is_none_or(|&p| (p as usize) < data.len());
        if samples.len() != want || !in_bounds {
            return Err((
                base,
                DecodeError::Invalid(format!(
                    "{} symbol samples do not fit a table of {count} symbols",
                    samples.len()
                )),
            ));
        }
        Ok(Symbols {
            data,
            base,
            count,
            samples,
            version,
        })
    }

    /// Where symbols 0, 32, 64, ... start, for [`Self::with_samples`].
    pub fn sample_positions(&self) -> &[u32] {
        &self.samples
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    /// Resolves a symbol reference as stored in series entries and label indices.
    pub fn lookup(&self, r: u32) -> Result<&str, DecodeError> {
        let pos = match self.version {
            IndexVersion::V2 => {
                if r >= self.count {
                    return Err(DecodeError::Invalid(format!(
                        "symbol ref {r} out of range ({} symbols)",
                        self.count
                    )));
                }
                let idx = r as usize;
                let start = self
                    .samples
                    .get(idx / SYMBOL_FACTOR)
                    .copied()
                    .ok_or_else(|| DecodeError::Invalid(format!("symbol ref {r} not sampled")))?;
                let mut d = Decbuf::new(self.data.get(start as usize..).unwrap_or_default());
                for _ in 0..idx % SYMBOL_FACTOR {
                    d.uvarint_bytes()?;
                }
                return d.uvarint_str();
            }
            IndexVersion::V1 => u64::from(r).checked_sub(self.base),
        };
        // v1: the reference is a file offset; it must lie after the count, inside the table.
        match pos {
            Some(p) if p >= 4 && p < self.data.len() as u64 => {
                Decbuf::new(self.data.get(p as usize..).unwrap_or_default()).uvarint_str()
            }
            _ => Err(DecodeError::Invalid(format!(
                "symbol ref {r} is outside the symbol table"
            ))),
        }
    }

    /// Every symbol in order with its reference, decoded lazily.
    pub fn iter(&self) -> SymbolIter<'_> {
        let mut d = Decbuf::new(&self.data);
        let _ = d.skip(4);
        SymbolIter {
            d,
            total: self.data.len(),
            base: self.base,
            next: 0,
            count: self.count,
            version: self.version,
        }
    }
}

/// Iterator over `(reference, symbol)`.
pub struct SymbolIter<'a> {
    d: Decbuf<'a>,
    total: usize,
    base: u64,
    next: u32,
    count: u32,
    version: IndexVersion,
}

impl<'a> Iterator for SymbolIter<'a> {
    type Item = Result<(u32, &'a str), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let r = match self.version {
            IndexVersion::V2 => self.next,
            IndexVersion::V1 => {
                let off = self.base + (self.total - self.d.len()) as u64;
                match u32::try_from(off) {
                    Ok(o) => o,
                    Err(_) => {
                        self.next = self.count;
                        return Some(Err(DecodeError::OutOfRange {
                            value: off,
                            target: "u32 symbol ref",
                        }));
                    }
                }
            }
        };
        self.next += 1;
        match self.d.uvarint_str() {
            Ok(s) => Some(Ok((r, s))),
            Err(e) => {
                self.next = self.count;
                Some(Err(e))
            }
        }
    }
}

/// Appends one symbol table entry: uvarint length and the UTF-8 bytes.
pub(crate) fn encode_symbol(e: &mut crate::tsdb::encoding::Encbuf, s: &str) {
    e.put_uvarint_bytes(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::encoding::Encbuf;

    fn table(syms: &[&str]) -> Bytes {
        let mut e = Encbuf::new();
        e.put_be32(syms.len() as u32);
        for s in syms {
            encode_symbol(&mut e, s);
        }
        Bytes::from(e.buf)
    }

    #[test]
    fn samples_kept_elsewhere_reopen_the_same_table() {
        let owned: Vec<String> = (0..70).map(|i| format!("s{i:03}")).collect();
        let syms: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        let scanned = Symbols::new(table(&syms), 9, IndexVersion::V2).unwrap();
        let samples = scanned.sample_positions().to_vec();
        assert_eq!(samples.len(), 3);
        let reopened =
            Symbols::with_samples(table(&syms), 9, IndexVersion::V2, samples.clone()).unwrap();
        for i in 0..70 {
            assert_eq!(reopened.lookup(i).unwrap(), scanned.lookup(i).unwrap());
        }
        // Samples of another table are refused, never trusted into a panic.
        for bad in [
            vec![],
            samples[..2].to_vec(),
            vec![4, 3, 2],
            vec![4, 50, 9999],
        ] {
            assert!(Symbols::with_samples(table(&syms), 9, IndexVersion::V2, bad).is_err());
        }
    }

    #[test]
    fn v2_lookup_crosses_samples() {
        let owned: Vec<String> = (0..100).map(|i| format!("s{i:03}")).collect();
        let syms: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        let t = Symbols::new(table(&syms), 9, IndexVersion::V2).unwrap();
        assert_eq!(t.len(), 100);
        for (i, s) in syms.iter().enumerate() {
            assert_eq!(t.lookup(i as u32).unwrap(), *s);
        }
        assert!(t.lookup(100).is_err());
        let all: Vec<_> = t.iter().map(|r| r.unwrap().1).collect();
        assert_eq!(all, syms);
    }

    #[test]
    fn v1_refs_are_offsets() {
        let t = Symbols::new(table(&["a", "bb", "ccc"]), 9, IndexVersion::V1).unwrap();
        // data starts at 9: count(4) at 9..13, "a" at 13, "bb" at 15, "ccc" at 18.
        assert_eq!(t.lookup(13).unwrap(), "a");
        assert_eq!(t.lookup(15).unwrap(), "bb");
        assert_eq!(t.lookup(18).unwrap(), "ccc");
        assert!(t.lookup(9).is_err());
        assert!(t.lookup(22).is_err());
        assert!(t.lookup(3).is_err());
        let refs: Vec<_> = t.iter().map(|r| r.unwrap().0).collect();
        assert_eq!(refs, vec![13, 15, 18]);
    }

    #[test]
    fn bad_count_is_an_error() {
        let mut e = Encbuf::new();
        e.put_be32(5);
        encode_symbol(&mut e, "a");
        assert!(Symbols::new(Bytes::from(e.buf), 0, IndexVersion::V2).is_err());
    }
}
