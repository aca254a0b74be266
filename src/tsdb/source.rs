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

/// A local file read with positional reads (`pread`); no mapping, no shared cursor.
pub struct FileSource {
    file: std::fs::File,
    len: u64,
    name: String,
}

impl FileSource {
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileSource {
            file,
            len,
            name: path.display().to_string(),
        })
    }
}

impl ReadAt for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, range: Range<u64>) -> Result<Bytes, ReadError> {
        use std::os::unix::fs::FileExt;
        check_bounds(&range, self.len)?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        self.file.read_exact_at(&mut buf, range.start)?;
        Ok(Bytes::from(buf))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Maps a file read-only and serves ranges from the mapping without copying.
pub fn mmap_file(path: &std::path::Path) -> std::io::Result<Named<Bytes>> {
    let file = std::fs::File::open(path)?;
    let bytes = if file.metadata()?.len() == 0 {
        Bytes::new()
    } else {
        // SAFETY: block files are immutable once written (Prometheus and Thanos never modify
        // them in place); a concurrent truncation by a third party is outside our contract.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Bytes::from_owner(map)
    };
    Ok(Named {
        name: path.display().to_string(),
        inner: bytes,
    })
}

/// Whether every page under `bytes` is in RAM (`mincore`), so reading it cannot fault on the
/// disk: memory maps, whose pages the kernel may drop, and heap memory alike. False when the
/// kernel cannot tell.
#[cfg(target_os = "linux")]
pub fn resident(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    let start = bytes.as_ptr() as usize & !(page - 1);
    let end = bytes.as_ptr() as usize + bytes.len();
    let mut pages = vec![0u8; (end - start).div_ceil(page)];
    // SAFETY: `start..end` lies in pages mapped for `bytes` (rounded to whole pages, which
    // are mapped too); `pages` has a byte per page.
    let ok = unsafe { libc::mincore(start as *mut libc::c_void, end - start, pages.as_mut_ptr()) };
    ok == 0 && pages.iter().all(|p| p & 1 == 1)
}

#[cfg(not(target_os = "linux"))]
pub fn resident(_: &[u8]) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_memory_and_mapped_files_read_back_are_resident() {
        let heap = vec![7u8; 3 << 12];
        assert!(resident(&heap));
        assert!(resident(&heap[5..4097]));
        assert!(resident(&[]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 1 << 16]).unwrap();
        let map = mmap_file(&path).unwrap().inner;
        // Just written, the file is in the page cache; summing maps every page.
        assert_eq!(map.iter().map(|&b| u64::from(b)).sum::<u64>(), 1 << 16);
        assert!(resident(&map));

        // Dropped from the page cache, a mapped page would be read from the disk.
        let other = dir.path().join("g");
        std::fs::write(&other, vec![1u8; 1 << 16]).unwrap();
        let file = std::fs::File::open(&other).unwrap();
        file.sync_all().unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a valid fd; advice has no memory effects.
        let dropped =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(dropped, 0);
        let map = mmap_file(&other).unwrap().inner;
        assert!(
            !resident(&map[100..200]),
            "needs a disk file system under the temporary directory, not tmpfs"
        );
    }

    #[test]
    fn bounds_are_checked() {
        let b = Bytes::from_static(b"hello");
        assert_eq!(&b.read_at(1..3).unwrap()[..], b"el");
        assert!(b.read_at(3..6).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 4..2;
        assert!(b.read_at(reversed).is_err());
    }

    #[test]
    fn file_and_mmap_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let f = FileSource::open(&path).unwrap();
        let m = mmap_file(&path).unwrap();
        assert_eq!(f.read_at(2..7).unwrap(), m.read_at(2..7).unwrap());
        assert!(f.read_at(5..11).is_err());
        assert!(m.name().ends_with("/f"));
    }
}
