//! A block's index, opened on first use and closed again when it has been idle.
//!
//! An open index costs memory (the sampled postings offset table, the symbol table's
//! offsets) and a mapping; a store with thousands of blocks only needs the ones being queried.
//! Opening builds the index header when it is not on disk yet. Callers that arrive while
//! another one opens the same block wait for it rather than opening it twice.
//!
//! No lock is held while an index opens or its header is built: those read the bucket, which
//! may be slow or stalled. The open index is published in an [`ArcSwapOption`], so whoever
//! only asks whether it is open, or takes it when it is ([`LazyIndex::get_open`], `/metrics`),
//! never waits; a flag under a small mutex says that someone is opening it, and callers that
//! need it wait on a condition variable for that opener (blocking pool only).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use parking_lot::{Condvar, Mutex};

use crate::index_header;
use crate::tsdb::index::IndexReader;
use crate::tsdb::source::ReadAt;
use crate::tsdb::TsdbError;

/// What happened to the store's index headers, for `/metrics`.
#[derive(Debug, Default)]
pub struct HeaderCounters {
    /// Indexes opened (headers mapped).
    pub loads: AtomicU64,
    pub load_failures: AtomicU64,
    /// Indexes closed after being idle.
    pub unloads: AtomicU64,
    /// Headers built from the bucket rather than reused from disk.
    pub built: AtomicU64,
    /// Time spent opening, in microseconds.
    pub load_micros: AtomicU64,
}

pub struct LazyIndex {
    remote: Arc<dyn ReadAt>,
    /// Where the index header lives.
    dir: PathBuf,
    open: ArcSwapOption<IndexReader>,
    /// True while one caller opens the index or builds its header; the others wait on
    /// `done`. Held only to flip the flag, never across the work.
    busy: Mutex<bool>,
    done: Condvar,
    /// When the index was last asked for, in milliseconds since [`epoch`].
    last_used_ms: AtomicU64,
    /// Bytes of the header file, once known.
    header_size: AtomicU64,
    counters: Arc<HeaderCounters>,
}

/// The clock `last_used_ms` counts on: monotonic, shared by every block.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn elapsed_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// The right to open an index or build its header, taken by [`LazyIndex::claim`]. Dropping it
/// (also when the work panicked) lets the waiting callers go on.
struct Claim<'a>(&'a LazyIndex);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock() = false;
        self.0.done.notify_all();
    }
}

impl LazyIndex {
    /// Reads the size of a header already on disk: blocking (a `stat`).
    pub fn new(remote: Arc<dyn ReadAt>, dir: &Path, counters: Arc<HeaderCounters>) -> Self {
        let on_disk = std::fs::metadata(dir.join(index_header::FILE_NAME)).map_or(0, |m| m.len());
        LazyIndex {
            remote,
            dir: dir.to_path_buf(),
            open: ArcSwapOption::empty(),
            busy: Mutex::new(false),
            done: Condvar::new(),
            last_used_ms: AtomicU64::new(elapsed_ms()),
            header_size: AtomicU64::new(on_disk),
            counters,
        }
    }

    /// The index if it is open: what a thread that may not wait can use ([`crate::nowait`]).
    /// Never waits.
    pub fn get_open(&self) -> Option<Arc<IndexReader>> {
        let index = self.open.load_full()?;
        self.last_used_ms.store(elapsed_ms(), Ordering::Relaxed);
        Some(index)
    }

    /// The index, opened (and its header built) if it is not open yet. Blocking: waits for
    /// another caller opening it, or opens it itself.
    pub fn get(&self) -> Result<Arc<IndexReader>, TsdbError> {
        self.last_used_ms.store(elapsed_ms(), Ordering::Relaxed);
        let Some(_claim) = self.claim() else {
            return Ok(self
                .open
                .load_full()
                .expect("claim returns None only when open"));
        };
        let started = Instant::now();
        let opened = index_header::open_index(&self.dir, self.remote.clone());
        let index = Arc::new(self.account(started, opened)?);
        self.counters.loads.fetch_add(1, Ordering::Relaxed);
        self.open.store(Some(index.clone()));
        Ok(index)
    }

    /// Makes sure a valid header is on disk without opening the index: a header already there
    /// is checked (checksum, index length); a missing or bad one is built (which checks the
    /// index's tables) and written. A query arriving meanwhile waits for the header instead of
    /// building it a second time, then opens what was written.
    pub fn ensure_header(&self) -> Result<(), TsdbError> {
        let Some(_claim) = self.claim() else {
            return Ok(());
        };
        let started = Instant::now();
        let ensured = index_header::ensure(&self.dir, self.remote.as_ref());
        self.account(started, ensured.map(|(built, size)| ((), built, size)))
    }

    /// Waits until nobody is opening the index; then `None` if it is open, else the right to
    /// open it. Blocking pool only.
    fn claim(&self) -> Option<Claim<'_>> {
        if self.open.load().is_some() {
            return None;
        }
        let mut busy = self.busy.lock();
        while *busy {
            self.done.wait(&mut busy);
        }
        if self.open.load().is_some() {
            return None;
        }
        *busy = true;
        Some(Claim(self))
    }

    /// Counts an opening or header build that began at `started` (its time, whether it built
    /// the header, its failure) and records the header's size; returns what it produced.
    fn account<T>(
        &self,
        started: Instant,
        outcome: Result<(T, bool, u64), TsdbError>,
    ) -> Result<T, TsdbError> {
        let c = &self.counters;
        c.load_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match outcome {
            Ok((made, built, size)) => {
                if built {
                    c.built.fetch_add(1, Ordering::Relaxed);
                }
                self.header_size.store(size, Ordering::Relaxed);
                Ok(made)
            }
            Err(e) => {
                c.load_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Never waits.
    pub fn is_open(&self) -> bool {
        self.open.load().is_some()
    }

    /// Closes the index if nobody asked for it within `idle`. Requests already holding it
    /// keep it until they finish; the mapping goes with the last of them. Never waits.
    pub fn close_if_idle(&self, idle: Duration) -> bool {
        let Some(busy) = self.busy.try_lock() else {
            return false;
        };
        let idle_for = elapsed_ms().saturating_sub(self.last_used_ms.load(Ordering::Relaxed));
        if *busy || idle_for < idle.as_millis() as u64 || self.open.swap(None).is_none() {
            return false; // being opened right now, in use, or closed already
        }
        self.counters.unloads.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Closes the index now, whoever used it last (it reopens on the next use).
    pub fn close(&self) {
        self.open.store(None);
    }

    /// Bytes of the header on local disk (0 until it has been built).
    pub fn header_size(&self) -> u64 {
        self.header_size.load(Ordering::Relaxed)
    }

    /// Bytes of the remote index.
    pub fn index_len(&self) -> u64 {
        self.remote.len()
    }

    /// The remote index's name, for errors.
    pub fn name(&self) -> &str {
        self.remote.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::index::{ChunkMeta, IndexWriter};
    use bytes::Bytes;

    fn index_bytes() -> Bytes {
        let mut w = IndexWriter::new(Vec::new()).unwrap();
        w.add_symbols(["__name__", "a", "b", "up"]).unwrap();
        for v in ["a", "b"] {
            w.add_series(
                &[("__name__", "up"), ("a", v)],
                &[ChunkMeta {
                    min_time: 0,
                    max_time: 1,
                    chunk_ref: 8,
                }],
            )
            .unwrap();
        }
        Bytes::from(w.finish().unwrap())
    }

    /// A lazy index over `index`, with its header dir and counters.
    fn lazy_over(index: Bytes) -> (tempfile::TempDir, Arc<HeaderCounters>, LazyIndex) {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(HeaderCounters::default());
        let lazy = LazyIndex::new(Arc::new(index), dir.path(), counters.clone());
        (dir, counters, lazy)
    }

    #[test]
    fn opens_on_use_and_closes_when_idle() {
        let (_dir, counters, lazy) = lazy_over(index_bytes());
        assert!(!lazy.is_open());
        assert_eq!(lazy.header_size(), 0);

        let held = lazy.get().unwrap();
        assert!(lazy.is_open());
        assert!(lazy.header_size() > 0);
        assert_eq!(counters.built.load(Ordering::Relaxed), 1);
        assert!(Arc::ptr_eq(&held, &lazy.get().unwrap()), "opened once");
        assert_eq!(counters.loads.load(Ordering::Relaxed), 1);

        assert!(!lazy.close_if_idle(Duration::from_secs(3600)));
        assert!(lazy.close_if_idle(Duration::ZERO));
        assert!(!lazy.is_open());
        assert_eq!(counters.unloads.load(Ordering::Relaxed), 1);
        // A request that held it still reads through its own handle.
        assert_eq!(held.label_values("a").unwrap(), ["a", "b"]);

        // Reopened from the header on disk, not rebuilt.
        lazy.get().unwrap();
        assert_eq!(counters.loads.load(Ordering::Relaxed), 2);
        assert_eq!(counters.built.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn ensure_header_builds_once_and_leaves_the_index_closed() {
        let (dir, counters, lazy) = lazy_over(index_bytes());
        lazy.ensure_header().unwrap();
        assert!(!lazy.is_open());
        assert_eq!(counters.built.load(Ordering::Relaxed), 1);
        let size = lazy.header_size();
        assert_eq!(
            size,
            std::fs::metadata(dir.path().join(index_header::FILE_NAME))
                .unwrap()
                .len()
        );
        lazy.ensure_header().unwrap();
        assert_eq!(counters.built.load(Ordering::Relaxed), 1, "reused");
        assert_eq!(counters.loads.load(Ordering::Relaxed), 0, "never opened");
        // The first use opens what was written, without building it again.
        lazy.get().unwrap();
        assert_eq!(counters.loads.load(Ordering::Relaxed), 1);
        assert_eq!(counters.built.load(Ordering::Relaxed), 1);
        assert_eq!(lazy.header_size(), size);
        lazy.close();

        let path = dir.path().join(index_header::FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        lazy.ensure_header().unwrap();
        assert_eq!(counters.built.load(Ordering::Relaxed), 2, "rebuilt");
        assert!(!lazy.is_open());
    }

    #[test]
    fn concurrent_first_uses_open_once() {
        let (_dir, counters, lazy) = lazy_over(index_bytes());
        let lazy = Arc::new(lazy);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let lazy = lazy.clone();
                std::thread::spawn(move || lazy.get().unwrap())
            })
            .collect();
        let got: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(got.iter().all(|i| Arc::ptr_eq(i, &got[0])));
        assert_eq!(counters.loads.load(Ordering::Relaxed), 1);
        assert_eq!(counters.built.load(Ordering::Relaxed), 1);
    }

    /// A remote index whose reads wait at a gate until it opens: a bucket that stalls.
    struct Gated {
        index: Bytes,
        open: Mutex<bool>,
        opened: Condvar,
        /// Reads that reached the gate.
        arrived: AtomicU64,
    }

    impl Gated {
        fn new(index: Bytes) -> Arc<Self> {
            Arc::new(Gated {
                index,
                open: Mutex::new(false),
                opened: Condvar::new(),
                arrived: AtomicU64::new(0),
            })
        }

        fn release(&self) {
            *self.open.lock() = true;
            self.opened.notify_all();
        }
    }

    impl ReadAt for Gated {
        fn len(&self) -> u64 {
            self.index.len() as u64
        }

        fn read_at(
            &self,
            range: std::ops::Range<u64>,
        ) -> Result<Bytes, crate::tsdb::source::ReadError> {
            self.arrived.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.lock();
            while !*open {
                self.opened.wait(&mut open);
            }
            self.index.read_at(range)
        }
    }

    #[test]
    fn a_stalled_opening_holds_nothing_others_wait_for() {
        let gated = Gated::new(index_bytes());
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(HeaderCounters::default());
        let lazy = Arc::new(LazyIndex::new(gated.clone(), dir.path(), counters.clone()));
        let opener = {
            let lazy = lazy.clone();
            std::thread::spawn(move || lazy.get().unwrap())
        };
        // The opening is in flight, stuck on the bucket...
        let deadline = Instant::now() + Duration::from_secs(30);
        while gated.arrived.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the opening never read the bucket"
            );
            std::thread::yield_now();
        }
        // ... and what /metrics, the idle sweep and no-wait requests ask returns regardless
        // (a wait here would hang the test, not slow it).
        assert!(!lazy.is_open());
        assert!(lazy.get_open().is_none());
        assert!(
            !lazy.close_if_idle(Duration::ZERO),
            "being opened is not idle"
        );
        // A second user waits for the first opening rather than starting its own.
        let second = {
            let lazy = lazy.clone();
            std::thread::spawn(move || lazy.get().unwrap())
        };
        gated.release();
        let (a, b) = (opener.join().unwrap(), second.join().unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(counters.loads.load(Ordering::Relaxed), 1);
        assert_eq!(counters.built.load(Ordering::Relaxed), 1);
        assert!(lazy.is_open());
    }

    #[test]
    fn a_panicking_opening_lets_the_waiters_go() {
        struct Panics;
        impl ReadAt for Panics {
            fn len(&self) -> u64 {
                1 << 20
            }
            fn read_at(
                &self,
                _: std::ops::Range<u64>,
            ) -> Result<Bytes, crate::tsdb::source::ReadError> {
                panic!("a bug in a reader")
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let lazy = Arc::new(LazyIndex::new(Arc::new(Panics), dir.path(), Arc::default()));
        let l = lazy.clone();
        assert!(std::thread::spawn(move || l.get().map(drop))
            .join()
            .is_err());
        // The claim was given back: the next user tries again instead of waiting forever.
        let l = lazy.clone();
        assert!(std::thread::spawn(move || l.get().map(drop))
            .join()
            .is_err());
    }

    #[test]
    fn a_broken_index_fails_each_time_without_poisoning() {
        let index = index_bytes();
        let (_dir, counters, lazy) = lazy_over(index.slice(..index.len() / 2));
        assert!(lazy.get().is_err());
        assert!(lazy.get().is_err());
        assert_eq!(counters.load_failures.load(Ordering::Relaxed), 2);
        assert!(!lazy.is_open());
    }
}
