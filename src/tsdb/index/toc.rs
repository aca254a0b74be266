//! The table of contents: the fixed 52-byte tail that locates every other section.
//!
//! ```text
//! ┌─────────────────────────────────────────┐
//! │ ref(symbols) <8b>                       │
//! │ ref(series) <8b>                        │
//! │ ref(label indices start) <8b>           │
//! │ ref(label offset table) <8b>            │
//! │ ref(postings start) <8b>                │
//! │ ref(postings offset table) <8b>         │
//! │ CRC32C of the 48 bytes above <4b>       │
//! └─────────────────────────────────────────┘
//! ```
//!
//! An offset of 0 means the section is absent. Section order differs between writers
//! (v1 and Prometheus 2.x put the label offset table after the postings), so the end of a
//! section is derived as "the next section start after it", never from a fixed order.

use crate::tsdb::encoding::{verify_crc32c, Decbuf, DecodeError, Encbuf};

/// Length of the TOC in bytes: six be64 offsets and a CRC32.
pub const TOC_LEN: usize = 6 * 8 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_indices_table: u64,
    pub postings: u64,
    pub postings_table: u64,
}

impl Toc {
    /// Decodes the last [`TOC_LEN`] bytes of an index file, checking the CRC.
    pub fn decode(b: &[u8]) -> Result<Toc, DecodeError> {
        if b.len() != TOC_LEN {
            return Err(DecodeError::Invalid(format!(
                "TOC must be {TOC_LEN} bytes, got {}",
                b.len()
            )));
        }
        let mut d = Decbuf::new(b);
        let body = d.bytes(TOC_LEN - 4)?;
        let stored = d.be32()?;
        verify_crc32c(body, stored)?;
        let mut d = Decbuf::new(body);
        Ok(Toc {
            symbols: d.be64()?,
            series: d.be64()?,
            label_indices: d.be64()?,
            label_indices_table: d.be64()?,
            postings: d.be64()?,
            postings_table: d.be64()?,
        })
    }

    pub fn encode(&self, e: &mut Encbuf) {
        let start = e.len();
        for off in self.offsets() {
            e.put_be64(off);
        }
        e.put_crc32c_from(start);
    }

    /// The six offsets in file order of the TOC fields.
    pub fn offsets(&self) -> [u64; 6] {
        [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ]
    }

    /// Where the section starting at `start` must end: the smallest section start greater
    /// than `start`, or `toc_start` (the TOC's own offset) if none is.
    pub fn section_end(&self, start: u64, toc_start: u64) -> u64 {
        self.offsets()
            .into_iter()
            .filter(|&o| o > start && o < toc_start)
            .min()
            .unwrap_or(toc_start)
    }

    /// The end of the series section. Unlike [`Toc::section_end`], a later section starting
    /// at the same offset ends it: that is how an index without series looks.
    pub fn series_end(&self, toc_start: u64) -> u64 {
        let later = [
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ];
        let same = later.into_iter().any(|o| o == self.series);
        if same {
            self.series
        } else {
            self.section_end(self.series, toc_start)
        }
    }

    /// Whether a label offset table is present. Prometheus 3.7+ writes none and points its
    /// offset at the postings, which must then not be parsed as a table.
    pub fn has_label_offset_table(&self) -> bool {
        self.label_indices_table != 0 && self.label_indices_table != self.postings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_crc() {
        let toc = Toc {
            symbols: 5,
            series: 100,
            label_indices: 200,
            label_indices_table: 400,
            postings: 300,
            postings_table: 500,
        };
        let mut e = Encbuf::new();
        toc.encode(&mut e);
        assert_eq!(e.len(), TOC_LEN);
        assert_eq!(Toc::decode(e.as_slice()).unwrap(), toc);
        let mut bad = e.buf.clone();
        bad[3] ^= 1;
        assert!(matches!(
            Toc::decode(&bad),
            Err(DecodeError::Checksum { .. })
        ));
        assert!(Toc::decode(&bad[1..]).is_err());
        // The label offset table sits after the postings here (Prometheus 2.x order).
        assert_eq!(toc.section_end(300, 600), 400);
        assert_eq!(toc.section_end(500, 600), 600);
        assert_eq!(toc.section_end(100, 600), 200);
    }
}
