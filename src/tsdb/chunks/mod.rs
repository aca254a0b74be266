//! Chunk segment files (`<block>/chunks/000001`, ...) and the chunk encodings inside them.
//!
//! A block's samples live in numbered segment files. Each starts with an 8-byte header and is
//! followed by chunk records packed back to back, with no padding and no trailer; a record never
//! spans two files.
//!
//! ```text
//! segment file:
//! +-------------------+---------+---------+----------+---------+-- ... --+
//! | 85 BD 40 DD       | 01      | 00 00 00| record 0 | record 1|         |   (EOF ends it)
//! | magic (be32)      | version | padding |  @ 8     |         |         |
//! +-------------------+---------+---------+----------+---------+-- ... --+
//!
//! record:
//! +-----------------+----------+-----------------+------------------------------------+
//! | uvarint len     | encoding | data (len bytes) | CRC32C(encoding, data) (be32)     |
//! +-----------------+----------+-----------------+------------------------------------+
//! ```
//!
//! A chunk reference (as stored in the index) is `segment index << 32 | byte offset`, where
//! the segment index is 0-based (file `000001` is 0) and the offset points at the record's
//! length varint, so it is always >= 8.
//!
//! [`xor`] is the codec for float samples (encoding 1). Histogram encodings and any encoding a
//! newer Prometheus invents are carried as opaque bytes ([`ChunkEncoding::Unknown`]).

pub(crate) mod segment;
pub(crate) mod xor;

use bytes::Bytes;

pub use segment::{
    decode_chunk_record, encode_chunk_record, segment_file_name, verify_segment, ChunkReader,
    ChunkWriter, DEFAULT_MAX_SEGMENT_SIZE, SEGMENT_HEADER_SIZE, SEGMENT_MAGIC, SEGMENT_VERSION,
};
pub use xor::{decode_xor, XorEncoder, XorIter};

/// The encoding byte of a chunk record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkEncoding {
    None,
    Xor,
    Histogram,
    FloatHistogram,
    /// Any other byte (newer Prometheus uses 4..=6). Never holds 0..=3: use [`Self::from_u8`].
    Unknown(u8),
}

impl ChunkEncoding {
    pub const fn from_u8(b: u8) -> Self {
        match b {
            0 => ChunkEncoding::None,
            1 => ChunkEncoding::Xor,
            2 => ChunkEncoding::Histogram,
            3 => ChunkEncoding::FloatHistogram,
            other => ChunkEncoding::Unknown(other),
        }
    }

    pub const fn as_u8(self) -> u8 {
        match self {
            ChunkEncoding::None => 0,
            ChunkEncoding::Xor => 1,
            ChunkEncoding::Histogram => 2,
            ChunkEncoding::FloatHistogram => 3,
            ChunkEncoding::Unknown(b) => b,
        }
    }
}

/// One chunk as stored in a segment: its encoding and its (still encoded) bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub encoding: ChunkEncoding,
    pub data: Bytes,
}

/// Packs a 0-based segment index and a byte offset into the reference the index stores.
#[inline]
pub fn chunk_ref(segment_index: u32, offset: u32) -> u64 {
    (u64::from(segment_index) << 32) | u64::from(offset)
}

/// Splits a chunk reference into (0-based segment index, byte offset).
#[inline]
pub fn split_chunk_ref(r: u64) -> (u32, u32) {
    ((r >> 32) as u32, r as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_bytes() {
        for b in 0..=255u8 {
            assert_eq!(ChunkEncoding::from_u8(b).as_u8(), b);
        }
        assert_eq!(ChunkEncoding::from_u8(1), ChunkEncoding::Xor);
        assert_eq!(ChunkEncoding::from_u8(3), ChunkEncoding::FloatHistogram);
        assert_eq!(ChunkEncoding::from_u8(4), ChunkEncoding::Unknown(4));
    }

    #[test]
    fn refs() {
        assert_eq!(chunk_ref(0, 8), 8);
        assert_eq!(chunk_ref(2, 0x10), 0x0000_0002_0000_0010);
        assert_eq!(
            split_chunk_ref(chunk_ref(u32::MAX, u32::MAX)),
            (u32::MAX, u32::MAX)
        );
        assert_eq!(split_chunk_ref(0x0000_0001_0000_0100), (1, 0x100));
    }
}
