//! One object of the bucket seen as a [`ReadAt`]: every read is a ranged GET.
//!
//! The format readers are synchronous, so a read blocks the calling thread on the runtime.
//! That is only allowed off the tokio worker threads: callers run block reads inside
//! `spawn_blocking` (the store does), never on an async task.

use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::runtime::Handle;

use crate::tsdb::source::{check_bounds, ReadAt, ReadError};

/// How many files of a local bucket stay open between reads.
const OPEN_LOCAL_FILES: usize = 256;

/// Ranges of a remote object closer than this are read with one GET. A GET costs a round
/// trip (tens of milliseconds) and a request fee; at the bandwidth of a bucket in the same
/// region, 64 KiB more of one costs well under a millisecond.
pub const REMOTE_MERGE_GAP: u64 = 64 << 10;

/// How many ranged GETs of one synchronous read run at once (index reads; chunk reads go
/// through [`BucketFile::get_ranges`] with the request's own bound).
const CONCURRENT_RANGE_READS: usize = 32;

/// The ranged GETs a store has in flight to its bucket, bounded
/// (`--store.max-bucket-requests`): every remote read holds a permit while its GET runs, so
/// however many requests run at once, the bucket (and the connection pool) sees at most this
/// many requests.
#[derive(Debug)]
pub struct BucketGate {
    permits: Arc<tokio::sync::Semaphore>,
    in_flight: AtomicU64,
}

impl BucketGate {
    /// `limit` GETs at once; 0 is unbounded.
    pub fn new(limit: usize) -> Self {
        let permits = if limit == 0 {
            tokio::sync::Semaphore::MAX_PERMITS
        } else {
            limit
        };
        BucketGate {
            permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            in_flight: AtomicU64::new(0),
        }
    }

    /// GETs in flight now. Never waits.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Runs `get` once a permit is free, counting it in flight meanwhile.
    async fn run<T>(&self, get: impl std::future::Future<Output = T>) -> T {
        let _permit = self.permits.acquire().await.expect("never closed");
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let out = get.await;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        out
    }
}

impl Default for BucketGate {
    fn default() -> Self {
        Self::new(0)
    }
}

/// Totals of what was fetched from the bucket, shared by every file of a store.
#[derive(Debug, Default)]
pub struct FetchCounters {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub failures: AtomicU64,
}

/// A bucket that is a local directory, read in place. Up to [`OPEN_LOCAL_FILES`] of its files
/// stay open between reads, one per slot of a table indexed by path: without them every read
/// opened and closed its file (an `openat` and a `close` per chunk read, about 5% of the CPU of
/// a one-series request). A file whose slot is taken by another is closed.
pub struct LocalBucket {
    dir: std::path::PathBuf,
    open: Vec<parking_lot::Mutex<Option<OpenFile>>>,
}

/// A file held open in a [`LocalBucket`] slot, with its path.
type OpenFile = (std::path::PathBuf, Arc<std::fs::File>);

impl LocalBucket {
    pub fn new(dir: std::path::PathBuf) -> Self {
        LocalBucket {
            dir,
            open: (0..OPEN_LOCAL_FILES).map(|_| Default::default()).collect(),
        }
    }

    /// The slot of the file at `path`.
    fn slot(&self, path: &std::path::Path) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut h);
        (h.finish() % self.open.len() as u64) as usize
    }

    /// The file at `path` (whose slot is `slot`), open. A held file that was unlinked since
    /// (its object deleted, or replaced by another) is not served: it is opened again, as an
    /// object store would answer, which fails for a deleted object. That check is one `fstat`,
    /// cheaper than the path lookup of an `openat`.
    /// The slot's lock is held only to look or put, never across the open or the `fstat`.
    fn file(&self, path: &std::path::Path, slot: usize) -> std::io::Result<Arc<std::fs::File>> {
        let held = self.open[slot].lock().clone();
        if let Some(f) = still_held(held, path)? {
            return Ok(f);
        }
        let f = Arc::new(std::fs::File::open(path)?);
        *self.open[slot].lock() = Some((path.to_path_buf(), f.clone()));
        Ok(f)
    }

    /// The file at `path` (whose slot is `slot`) if it is held open and its slot is free:
    /// what a thread that may not wait can read (opening a file looks its path up on disk).
    fn held_file(&self, path: &std::path::Path, slot: usize) -> Option<Arc<std::fs::File>> {
        let held = self.open[slot].try_lock()?.clone();
        still_held(held, path).ok()?
    }

    /// Closes the file at `path` (whose slot is `slot`) if it is open.
    fn forget(&self, path: &std::path::Path, slot: usize) {
        let mut held = self.open[slot].lock();
        if held.as_ref().is_some_and(|(p, _)| p == path) {
            *held = None;
        }
    }
}

/// The file a slot holds, if it is the one at `path` and still linked (see
/// [`LocalBucket::file`]).
fn still_held(
    held: Option<OpenFile>,
    path: &std::path::Path,
) -> std::io::Result<Option<Arc<std::fs::File>>> {
    use std::os::unix::fs::MetadataExt;
    Ok(match held {
        Some((p, f)) if p == path && f.metadata()?.nlink() > 0 => Some(f),
        _ => None,
    })
}

/// A [`BucketFile`]'s object in a [`LocalBucket`].
struct LocalFile {
    bucket: Arc<LocalBucket>,
    path: std::path::PathBuf,
    slot: usize,
}

pub struct BucketFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    len: u64,
    name: String,
    runtime: Handle,
    counters: Arc<FetchCounters>,
    gate: Arc<BucketGate>,
    /// The object's file when the bucket is a local directory: ranges are read from the file
    /// directly on the calling (blocking) thread, not through the runtime, and are not merged
    /// over gaps.
    local: Option<LocalFile>,
}

impl BucketFile {
    /// A file of known length (from a listing or meta.json), so opening costs no request.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        len: u64,
        runtime: Handle,
        counters: Arc<FetchCounters>,
    ) -> Self {
        BucketFile {
            name: format!("bucket:{path}"),
            store,
            path,
            len,
            runtime,
            counters,
            gate: Arc::default(),
            local: None,
        }
    }

    /// Remote reads hold a permit of `gate` while their GET runs.
    pub fn with_gate(mut self, gate: Arc<BucketGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Whether reads are positional reads of a local file (synchronous, no round trip).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Remote GETs of `ranges` (in bounds, non-empty), all at once but for the permits: each
    /// GET holds one of `request` (the request's own bound) and one of the store's gate while
    /// it runs. The future owns what it needs, to run on the runtime while the caller goes on.
    /// For a local bucket, use [`ReadAt::read_ranges`] on a blocking thread instead.
    pub fn get_ranges(
        self: &Arc<Self>,
        ranges: Vec<Range<u64>>,
        request: Arc<tokio::sync::Semaphore>,
    ) -> futures::future::BoxFuture<'static, Result<Vec<Bytes>, ReadError>> {
        let this = self.clone();
        Box::pin(async move {
            for r in &ranges {
                check_bounds(r, this.len)?;
            }
            let gets = ranges.iter().cloned().map(|r| {
                let (this, request) = (&this, &request);
                async move {
                    let _mine = request.acquire().await.expect("never closed");
                    this.gate.run(this.store.get_range(&this.path, r)).await
                }
            });
            let result = futures::future::try_join_all(gets)
                .await
                .map_err(|e| e.into());
            this.account(&ranges, result)
        })
    }

    /// Counts a remote read of `ranges` and checks every part came whole.
    fn account(
        &self,
        ranges: &[Range<u64>],
        result: Result<Vec<Bytes>, Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<Vec<Bytes>, ReadError> {
        let requested: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        self.counters
            .requests
            .fetch_add(ranges.len() as u64, Ordering::Relaxed);
        match result {
            Ok(parts) => {
                self.counters.bytes.fetch_add(requested, Ordering::Relaxed);
                for (p, r) in parts.iter().zip(ranges) {
                    if p.len() as u64 != r.end - r.start {
                        return Err(ReadError::Backend(
                            format!(
                                "{}: asked for {} bytes at {}, got {}",
                                self.name,
                                r.end - r.start,
                                r.start,
                                p.len()
                            )
                            .into(),
                        ));
                    }
                }
                Ok(parts)
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                Err(ReadError::Backend(e))
            }
        }
    }

    /// Reads the object as a file of `bucket`, when the bucket is a local directory (see
    /// [`BucketFile::local`]).
    pub fn with_local_reads(mut self, bucket: Option<&Arc<LocalBucket>>) -> Self {
        self.local = bucket.map(|bucket| {
            let path = bucket.dir.join(self.path.as_ref());
            LocalFile {
                slot: bucket.slot(&path),
                bucket: bucket.clone(),
                path,
            }
        });
        self
    }

    /// A positional read per range of one open file.
    fn read_local(file: &LocalFile, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
        use std::os::unix::fs::FileExt;
        let f = file.bucket.file(&file.path, file.slot)?;
        ranges
            .iter()
            .map(|r| {
                let mut buf = vec![0; (r.end - r.start) as usize];
                f.read_exact_at(&mut buf, r.start)?;
                Ok(Bytes::from(buf))
            })
            .collect()
    }

    /// [`Self::read_local`] on a thread that may not wait ([`crate::nowait`]): only from a
    /// file held open and only what the page cache holds (`RWF_NOWAIT`), else it refuses.
    fn read_local_without_waiting(
        file: &LocalFile,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>, ReadError> {
        let refused = || {
            crate::nowait::refuse();
            ReadError::WouldWait
        };
        let f = file
            .bucket
            .held_file(&file.path, file.slot)
            .ok_or_else(refused)?;
        ranges
            .iter()
            .map(|r| {
                let mut buf = vec![0; (r.end - r.start) as usize];
                match read_cached(&f, &mut buf, r.start) {
                    true => Ok(Bytes::from(buf)),
                    false => Err(refused()),
                }
            })
            .collect()
    }

    fn fetch(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ReadError> {
        for r in ranges {
            check_bounds(r, self.len)?;
        }
        let requested: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        if crate::nowait::active() {
            let Some(file) = &self.local else {
                crate::nowait::refuse();
                return Err(ReadError::WouldWait);
            };
            let parts = Self::read_local_without_waiting(file, ranges)?;
            self.counters
                .requests
                .fetch_add(ranges.len() as u64, Ordering::Relaxed);
            self.counters.bytes.fetch_add(requested, Ordering::Relaxed);
            return Ok(parts);
        }
        let result: Result<Vec<Bytes>, Box<dyn std::error::Error + Send + Sync>> = match &self.local
        {
            Some(file) => Self::read_local(file, ranges)
                .map_err(|e| format!("{}: reading {}: {e}", self.name, file.path.display()).into()),
            None => self
                .runtime
                .block_on(
                    futures::stream::iter(ranges.iter().cloned())
                        .map(|r| self.gate.run(self.store.get_range(&self.path, r)))
                        .buffered(CONCURRENT_RANGE_READS)
                        .try_collect::<Vec<Bytes>>(),
                )
                .map_err(|e| e.into()),
        };
        self.account(ranges, result)
    }
}

/// Fills `buf` from `offset` of `f` if the page cache holds all of it, without waiting for
/// the disk (`preadv2` with `RWF_NOWAIT`); false if it would wait, or on any error (the read
/// is then made again where waiting is allowed, which reports it).
#[cfg(target_os = "linux")]
fn read_cached(f: &std::fs::File, buf: &mut [u8], offset: u64) -> bool {
    use std::os::fd::AsRawFd;
    let mut done = 0;
    while done < buf.len() {
        let iov = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: buf.len() - done,
        };
        // SAFETY: `iov` points into `buf`, which outlives the call; the fd is open.
        let n = unsafe {
            libc::preadv2(
                f.as_raw_fd(),
                &iov,
                1,
                (offset + done as u64) as libc::off_t,
                libc::RWF_NOWAIT,
            )
        };
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_: &std::fs::File, _: &mut [u8], _: u64) -> bool {
    false
}

/// A block's files are dropped with the block (it left the bucket or the store): its file, if
/// open, is closed, so a deleted object's disk space is not held.
impl Drop for BucketFile {
    fn drop(&mut self) {
        if let Some(file) = &self.local {
            file.bucket.forget(&file.path, file.slot);
        }
    }
}

impl ReadAt for BucketFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, range: Range<u64>) -> Result<Bytes, ReadError> {
        if range.start == range.end {
            check_bounds(&range, self.len)?;
            return Ok(Bytes::new());
        }
        Ok(self.fetch(std::slice::from_ref(&range))?.remove(0))
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn merge_gap(&self) -> u64 {
        if self.local.is_some() {
            0
        } else {
            REMOTE_MERGE_GAP
        }
    }

    fn read_ranges(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ReadError> {
        self.fetch(ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    /// `data` as object `b/index` of an in-memory bucket, with the runtime its reads use.
    fn in_memory_object(
        data: &'static [u8],
    ) -> (tokio::runtime::Runtime, BucketFile, Arc<FetchCounters>) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("b/index");
        rt.block_on(store.put(&path, Bytes::from_static(data).into()))
            .unwrap();
        let counters = Arc::new(FetchCounters::default());
        let f = BucketFile::new(
            store,
            path,
            data.len() as u64,
            rt.handle().clone(),
            counters.clone(),
        );
        (rt, f, counters)
    }

    #[test]
    fn ranges_are_fetched_and_counted() {
        let (_rt, f, counters) = in_memory_object(b"0123456789");
        let got = std::thread::spawn(move || {
            let a = f.read_at(2..5).unwrap();
            let many = f.read_ranges(&[0..1, 8..10]).unwrap();
            let past_end = f.read_at(8..11).is_err();
            (a, many, past_end)
        })
        .join()
        .unwrap();
        assert_eq!(&got.0[..], b"234");
        assert_eq!(
            got.1,
            vec![Bytes::from_static(b"0"), Bytes::from_static(b"89")]
        );
        assert!(got.2, "out-of-bounds reads are refused before any request");
        assert_eq!(counters.requests.load(Ordering::Relaxed), 3);
        assert_eq!(counters.bytes.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn a_local_bucket_is_read_directly_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/index"), b"0123456789").unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let counters = Arc::new(FetchCounters::default());
        let local = Arc::new(LocalBucket::new(dir.path().to_path_buf()));
        let open = |len| {
            BucketFile::new(
                store.clone(),
                Path::from("b/index"),
                len,
                rt.handle().clone(),
                counters.clone(),
            )
            .with_local_reads(Some(&local))
        };
        let f = open(10);
        assert_eq!(f.merge_gap(), 0);
        assert_eq!(
            f.read_ranges(&[0..2, 7..10]).unwrap(),
            vec![Bytes::from_static(b"01"), Bytes::from_static(b"789")]
        );
        // Listed longer than it is (a half-uploaded object): an error, not short data.
        let err = open(20).read_at(8..14).unwrap_err();
        assert!(matches!(err, ReadError::Backend(_)), "{err}");
        assert!(err.to_string().contains("b/index"), "{err}");
        assert_eq!(counters.failures.load(Ordering::Relaxed), 1);

        // The file is held open between reads, but never served once unlinked: replaced by
        // another, the new one is read; deleted, the read fails as for a deleted object.
        assert_eq!(f.read_at(0..2).unwrap(), Bytes::from_static(b"01"));
        std::fs::write(dir.path().join("b/index.new"), b"abcdefghij").unwrap();
        std::fs::rename(dir.path().join("b/index.new"), dir.path().join("b/index")).unwrap();
        assert_eq!(f.read_at(3..5).unwrap(), Bytes::from_static(b"de"));
        std::fs::remove_file(dir.path().join("b/index")).unwrap();
        assert!(f.read_at(3..5).is_err(), "a deleted file is not read");
    }

    #[test]
    fn in_no_wait_mode_only_page_cached_bytes_of_open_local_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        let data: Vec<u8> = (0..1 << 16).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("b/chunks"), &data).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let counters = Arc::new(FetchCounters::default());
        let local = Arc::new(LocalBucket::new(dir.path().to_path_buf()));
        let f = BucketFile::new(
            store,
            Path::from("b/chunks"),
            data.len() as u64,
            rt.handle().clone(),
            counters.clone(),
        )
        .with_local_reads(Some(&local));
        let without_waiting = |ranges: &[Range<u64>]| {
            let attempt = crate::nowait::enter();
            let got = f.read_ranges(ranges);
            assert_eq!(got.is_err(), attempt.refused());
            got.map_err(|e| assert!(matches!(e, ReadError::WouldWait), "{e}"))
        };

        // Not open yet: opening looks the path up on disk, so it refuses.
        assert!(without_waiting(std::slice::from_ref(&(0..10))).is_err());
        assert_eq!(counters.requests.load(Ordering::Relaxed), 0);
        // Open (a read that may wait holds it) and in the page cache: read in place.
        f.read_at(0..1).unwrap();
        assert_eq!(
            without_waiting(&[5..9, 60_000..60_010]).unwrap(),
            vec![
                Bytes::copy_from_slice(&data[5..9]),
                Bytes::copy_from_slice(&data[60_000..60_010])
            ]
        );
        // Out of the page cache: refused, and read again where it may wait.
        let file = std::fs::File::open(dir.path().join("b/chunks")).unwrap();
        file.sync_all().unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a valid fd; advice has no memory effects.
        let dropped =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(dropped, 0);
        assert!(
            without_waiting(std::slice::from_ref(&(30_000..30_010))).is_err(),
            "pages dropped from the page cache are read from the disk (needs a disk file \
             system under the temporary directory, not tmpfs)"
        );
        assert_eq!(
            f.read_at(30_000..30_010).unwrap(),
            Bytes::copy_from_slice(&data[30_000..30_010])
        );
    }

    #[test]
    fn in_no_wait_mode_a_remote_object_is_not_read() {
        let (rt, f, counters) = in_memory_object(b"0123456789");
        // On a runtime thread, where a blocking read would panic: it refuses first.
        let (err, refused) = rt.block_on(async {
            let attempt = crate::nowait::enter();
            (f.read_at(0..4).unwrap_err(), attempt.refused())
        });
        assert!(matches!(err, ReadError::WouldWait) && refused, "{err}");
        assert_eq!(counters.requests.load(Ordering::Relaxed), 0);
        assert_eq!(counters.failures.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_missing_object_is_a_backend_error() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let counters = Arc::new(FetchCounters::default());
        let f = BucketFile::new(store, Path::from("gone"), 10, rt.handle().clone(), counters);
        let err = std::thread::spawn(move || f.read_at(0..4).unwrap_err())
            .join()
            .unwrap();
        assert!(matches!(err, ReadError::Backend(_)), "{err}");
    }
}
