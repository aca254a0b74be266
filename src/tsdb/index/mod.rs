//! The TSDB `index` file: symbols, series, postings and the tables that locate them.
//!
//! ```text
//! ┌────────────────────────────┬─────────────────────┐
//! │ magic(0xBAAAD700) <4b>     │ version(1|2) <1b>   │   header
//! ├────────────────────────────┴─────────────────────┤
//! │ Symbol table      len, #symbols, strings, CRC    │   symbols.rs
//! ├──────────────────────────────────────────────────┤
//! │ Series            one entry per series, sorted   │   series.rs
//! │                   by label set (v2: 16-aligned)  │
//! ├──────────────────────────────────────────────────┤
//! │ Label index 1..N  (legacy, one per label name)   │
//! ├──────────────────────────────────────────────────┤
//! │ Postings 1..N     sorted series refs per         │   postings.rs
//! │                   (name, value), 4-aligned       │
//! ├──────────────────────────────────────────────────┤
//! │ Label offset table (legacy)                      │
//! ├──────────────────────────────────────────────────┤
//! │ Postings offset table (name, value) -> offset    │   postings_table.rs
//! ├──────────────────────────────────────────────────┤
//! │ TOC               six be64 offsets + CRC         │   toc.rs
//! └──────────────────────────────────────────────────┘
//! ```
//!
//! The differences of format v1: a symbol reference is the absolute file offset of the
//! symbol (v2: its sequence number), a series reference is the absolute offset of the entry
//! (v2: offset / 16, entries being 16-byte aligned), and the postings offset table is not
//! guaranteed sorted, so it is held in memory whole rather than sampled.
//!
//! Architecture invariant: the section modules are pure decoders over byte slices, so the
//! store can batch and coalesce ranged reads itself; only [`reader::IndexReader`] talks to
//! a [`ReadAt`](crate::tsdb::source::ReadAt), and only [`writer::IndexWriter`] writes.

pub(crate) mod postings;
pub(crate) mod postings_table;
pub(crate) mod reader;
pub(crate) mod series;
pub(crate) mod symbols;
pub(crate) mod toc;
pub(crate) mod writer;

pub use postings::{decode_postings_bitmap, decode_postings_list, encode_postings_list};
pub use postings_table::{visit_postings_offset_table, PostingsTableEntry};
pub use reader::{IndexReader, IndexStats, LabelResolver, Sampling, Series};
pub use series::{
    decode_series_entry, decode_series_entry_into, split_series_entry, ChunkMeta, SeriesEntryRefs,
};
pub use toc::Toc;
pub use writer::IndexWriter;

use crate::tsdb::encoding::{verify_crc32c, Decbuf, DecodeError};

/// First four bytes of every index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// Header length: magic and version byte.
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexVersion {
    V1,
    V2,
}

impl IndexVersion {
    /// Version 3 only changed how Prometheus interprets chunk ranges, not the index layout.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(IndexVersion::V1),
            2 | 3 => Some(IndexVersion::V2),
            _ => None,
        }
    }
}

/// Splits a `be32 len | content | be32 CRC32C(content)` frame at the start of `b` and
/// returns the verified content. Bytes after the frame (padding) are ignored.
pub fn decode_frame(b: &[u8]) -> Result<&[u8], DecodeError> {
    let mut d = Decbuf::new(b);
    let len = d.be32()? as usize;
    let content = d.bytes(len)?;
    let stored = d.be32()?;
    verify_crc32c(content, stored)?;
    Ok(content)
}

#[cfg(test)]
mod tests;
