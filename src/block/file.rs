//! Local files as byte sources: positional reads ([`FileSource`]), read-only memory maps
//! ([`mmap_file`]), and whether mapped pages are in RAM ([`resident`]). The format code in
//! [`crate::tsdb`] reads through `ReadAt` only; this is where a path becomes one.

use std::ops::Range;

use bytes::Bytes;

use crate::tsdb::source::{check_bounds, Named, ReadAt, ReadError};

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

    /// The format readers run over a file as over memory.
    #[test]
    fn an_index_reads_through_a_file() {
        use crate::tsdb::index::{IndexReader, IndexWriter};
        let mut w = IndexWriter::new(Vec::new()).unwrap();
        w.add_symbols(["__name__", "a", "b", "up"]).unwrap();
        for v in ["a", "b"] {
            w.add_series(&[("__name__", "up"), ("a", v)], &[]).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        std::fs::write(&path, w.finish().unwrap()).unwrap();
        let r = IndexReader::open(std::sync::Arc::new(FileSource::open(&path).unwrap())).unwrap();
        assert_eq!(r.label_values("a").unwrap(), ["a", "b"]);
        let e = r.series(1 << 40).unwrap_err();
        assert!(e.to_string().contains("index"), "{e}");
    }
}
