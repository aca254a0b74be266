//! The byte-range seam between the format code and wherever the bytes live.
//!
//! Format readers only ever ask a [`ReadAt`] for a range of bytes. The same reader code thus
//! works over a local file, a memory-mapped index header, or ranges fetched from object
//! storage (the store fetches asynchronously, then hands the bytes to the same decoders).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("range {start}..{end} is past the end ({len} bytes)")]
    OutOfBounds { start: u64, end: u64, len: u64 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The storage behind the source failed (an object store request, say); usually
    /// transient, unlike corruption.
    #[error("{0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The read would have waited (for the disk or the network) on a thread that may not
    /// wait (`crate::nowait`).
    #[error("the read would wait")]
    WouldWait,
}

/// Random access to an immutable sequence of bytes.
pub trait ReadAt: Send + Sync {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Returns exactly the bytes of `range`, or an error if it is out of bounds.
    fn read_at(&self, range: Range<u64>) -> Result<Bytes, ReadError>;

    /// A human-readable name for error messages (usually a path).
    fn name(&self) -> &str {
        "<memory>"
    }

    /// Reads several ranges at once, in the order given. Remote sources override this to
    /// issue the reads concurrently; local ones just loop.
    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ReadError> {
        ranges.iter().map(|r| self.read_at(r.clone())).collect()
    }

    /// Bytes between two wanted ranges below which one read spanning both costs less than
    /// two reads. A remote store pays per request; a local file hardly does.
    fn merge_gap(&self) -> u64 {
        DEFAULT_MERGE_GAP
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether what this source serves from memory maps is in RAM, so reading it cannot
    /// fault on the disk. Sources without a map say true: their reads refuse to wait
    /// themselves where waiting is not allowed (`crate::nowait`).
    fn resident(&self) -> bool {
        true
    }
}

/// [`ReadAt::merge_gap`] unless a source knows better: a few KiB cost less than a request.
pub const DEFAULT_MERGE_GAP: u64 = 4 << 10;

/// `Ok` when `range` is a valid range of a source of `len` bytes.
pub fn check_bounds(range: &Range<u64>, len: u64) -> Result<(), ReadError> {
    if range.start > range.end || range.end > len {
        return Err(ReadError::OutOfBounds {
            start: range.start,
            end: range.end,
            len,
        });
    }
    Ok(())
}

/// In-memory bytes, and memory maps (through `Bytes::from_owner`): slicing is free.
impl ReadAt for Bytes {
    fn len(&self) -> u64 {
        Bytes::len(self) as u64
    }

    fn read_at(&self, range: Range<u64>) -> Result<Bytes, ReadError> {
        check_bounds(&range, ReadAt::len(self))?;
        Ok(self.slice(range.start as usize..range.end as usize))
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&self, range: Range<u64>) -> Result<Bytes, ReadError> {
        (**self).read_at(range)
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ReadError> {
        (**self).read_ranges(ranges)
    }
    fn merge_gap(&self) -> u64 {
        (**self).merge_gap()
    }
}

/// Gives any source a name for error messages.
pub struct Named<S> {
    pub name: String,
    pub inner: S,
}

impl<S: ReadAt> ReadAt for Named<S> {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, range: Range<u64>) -> Result<Bytes, ReadError> {
        self.inner.read_at(range)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ReadError> {
        self.inner.read_ranges(ranges)
    }
    fn merge_gap(&self) -> u64 {
        self.inner.merge_gap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let b = Bytes::from_static(b"hello");
        assert_eq!(&b.read_at(1..3).unwrap()[..], b"el");
        assert!(b.read_at(3..6).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 4..2;
        assert!(b.read_at(reversed).is_err());
    }
}
