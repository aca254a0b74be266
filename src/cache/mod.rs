//! stele's caches: one LRU design bounded in bytes ([`Cache`]), used twice by the store.
//!
//! - The index cache: postings lists of the served blocks as serialized roaring bitmaps,
//!   series entries in pages (a window of a block's series section per item,
//!   [`series_pages`]), and expanded postings (the series matching a whole matcher set, as a
//!   serialized roaring bitmap).
//! - The optional chunk cache: chunk records of hot recent data, each under its block and
//!   chunk reference, with a budget of its own so chunks never push index entries out.
//!
//! Either may be backed by memcached as a second level shared by several stores.
//!
//! The LRU is split into shards, each behind its own lock, so concurrent queries rarely wait
//! on each other. A lock is held for a few map operations, never across I/O; a thread in
//! no-wait mode ([`crate::nowait`]) only tries it, and takes a busy shard as a miss. The
//! figures are atomics beside each shard's lock, so `/metrics` reads them without waiting. Every shard holds at most its share of the budget; accounting is exact
//! (key bytes, stored value bytes and a fixed per-entry overhead), so `stele_index_cache_bytes`
//! is what the cache really holds. An item larger than a shard's share is not cached at all.
//! Large values may be held zstd-compressed ([`codec`]); the accounting counts what is held.
//!
//! With a [`SecondLevel`], a lookup that misses the LRU asks memcached (one multi-get for a
//! whole batch of keys) and keeps what it finds in the LRU; a put goes to the LRU and is queued
//! for memcached. memcached being slow or down only turns its answers into misses.

pub(crate) mod codec;
pub mod config;
pub mod memcached;
pub mod remote;
pub mod series_pages;
pub(crate) mod snapshot;

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;
use ulid::Ulid;

pub use codec::Stored;
pub use remote::SecondLevel;
pub use series_pages::SeriesPages;

/// Bookkeeping per entry beyond key and value bytes: the LRU's node and map slot, the
/// stored value's header and the key's heap header.
const ENTRY_OVERHEAD: u64 = 104;
const SHARDS: usize = 16;

/// What an entry holds; metrics are kept per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    Postings,
    Series,
    ExpandedPostings,
    Chunks,
}

impl ItemKind {
    pub const ALL: [ItemKind; 4] = [
        ItemKind::Postings,
        ItemKind::Series,
        ItemKind::ExpandedPostings,
        ItemKind::Chunks,
    ];

    /// What the index cache holds.
    pub const INDEX: [ItemKind; 3] = [
        ItemKind::Postings,
        ItemKind::Series,
        ItemKind::ExpandedPostings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Postings => "postings",
            ItemKind::Series => "series",
            ItemKind::ExpandedPostings => "expanded_postings",
            ItemKind::Chunks => "chunks",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Postings are cached as serialized roaring bitmaps and chunks XOR-encoded, both already
    /// compact: zstd would cost time on every put and hit for little.
    fn compressible(self) -> bool {
        matches!(self, ItemKind::Series)
    }
}

/// How a [`Cache`] is set up, beyond its byte budget.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// The in-memory budget; 0 keeps nothing in memory.
    pub max_bytes: u64,
    /// Values longer than this are not cached (0: only the shard share bounds them).
    pub max_item_bytes: u64,
    /// Values at least this long are held zstd-compressed when that saves a quarter of their
    /// bytes; 0 never compresses.
    pub compress_min_bytes: usize,
    /// Item kinds cached at all.
    pub enabled: Vec<ItemKind>,
}

impl CacheOptions {
    /// An index cache of `max_bytes` in memory.
    pub fn in_memory(max_bytes: u64) -> Self {
        CacheOptions {
            max_bytes,
            max_item_bytes: 0,
            compress_min_bytes: 0,
            enabled: ItemKind::INDEX.to_vec(),
        }
    }

    /// A chunk cache of `max_bytes` in memory.
    pub fn chunks(max_bytes: u64) -> Self {
        CacheOptions {
            enabled: vec![ItemKind::Chunks],
            ..Self::in_memory(max_bytes)
        }
    }
}

/// A cache key: the block and what in it. The full label name and value are part of the key,
/// so two lists can never be confused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    Postings {
        block: Ulid,
        name: String,
        value: String,
    },
    /// The series entries cached of a window of the block's series section
    /// ([`series_pages`]).
    SeriesPage { block: Ulid, page: u64 },
    /// The series of `block` matching a matcher set, keyed by its full normalised text
    /// ([`crate::block::matchers_key`]).
    ExpandedPostings { block: Ulid, matchers: String },
    /// A chunk record of `block`: its encoding byte, then its data.
    Chunk { block: Ulid, chunk_ref: u64 },
}

impl CacheKey {
    pub fn kind(&self) -> ItemKind {
        match self {
            CacheKey::Postings { .. } => ItemKind::Postings,
            CacheKey::SeriesPage { .. } => ItemKind::Series,
            CacheKey::ExpandedPostings { .. } => ItemKind::ExpandedPostings,
            CacheKey::Chunk { .. } => ItemKind::Chunks,
        }
    }

    pub fn block(&self) -> Ulid {
        match self {
            CacheKey::Postings { block, .. }
            | CacheKey::SeriesPage { block, .. }
            | CacheKey::ExpandedPostings { block, .. }
            | CacheKey::Chunk { block, .. } => *block,
        }
    }

    fn size(&self) -> u64 {
        match self {
            CacheKey::Postings { name, value, .. } => (32 + name.len() + value.len()) as u64,
            CacheKey::SeriesPage { .. } | CacheKey::Chunk { .. } => 32,
            CacheKey::ExpandedPostings { matchers, .. } => (32 + matchers.len()) as u64,
        }
    }
}

/// Figures of one item kind, summed over the shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KindStats {
    pub requests: u64,
    pub hits: u64,
    pub added: u64,
    pub evicted: u64,
    pub too_large: u64,
    pub bytes: u64,
    pub items: u64,
}

impl std::ops::AddAssign for KindStats {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.hits += o.hits;
        self.added += o.added;
        self.evicted += o.evicted;
        self.too_large += o.too_large;
        self.bytes += o.bytes;
        self.items += o.items;
    }
}

/// [`KindStats`] of one shard, updated by whoever holds (or just released) its lock and read
/// by `/metrics` without it.
#[derive(Debug, Default)]
struct KindCounters {
    requests: AtomicU64,
    hits: AtomicU64,
    added: AtomicU64,
    evicted: AtomicU64,
    too_large: AtomicU64,
    bytes: AtomicU64,
    items: AtomicU64,
}

impl KindCounters {
    fn read(&self) -> KindStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KindStats {
            requests: load(&self.requests),
            hits: load(&self.hits),
            added: load(&self.added),
            evicted: load(&self.evicted),
            too_large: load(&self.too_large),
            bytes: load(&self.bytes),
            items: load(&self.items),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A shard: its LRU behind a lock, and its figures beside it. Aligned so two shards' hot
/// lines are never shared.
#[repr(align(128))]
struct ShardSlot {
    lru: Mutex<Shard>,
    stats: [KindCounters; ItemKind::ALL.len()],
}

impl ShardSlot {
    fn stats(&self, kind: ItemKind) -> &KindCounters {
        &self.stats[kind.index()]
    }

    /// The shard's LRU, locked; in no-wait mode only if nobody holds it (else `None`, and the
    /// attempt is refused).
    fn lock(&self) -> Option<parking_lot::MutexGuard<'_, Shard>> {
        if crate::nowait::active() {
            let guard = self.lru.try_lock();
            if guard.is_none() {
                crate::nowait::refuse();
            }
            guard
        } else {
            Some(self.lru.lock())
        }
    }

    /// Accounts for an entry leaving the shard (whose lock `shard` is).
    fn forget(&self, shard: &mut Shard, kind: ItemKind, size: u64) {
        shard.bytes -= size;
        let stats = self.stats(kind);
        stats.bytes.fetch_sub(size, Ordering::Relaxed);
        stats.items.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Shard {
    lru: LruCache<CacheKey, Stored>,
    bytes: u64,
}

/// Lookups a request made in no-wait mode ([`crate::nowait`]), counted in the hit figures only
/// if it is answered there: one handed off to the blocking pool looks everything up again.
struct PendingLookups {
    cache: u64,
    shard: usize,
    kind: ItemKind,
    requests: u64,
    hits: u64,
}

thread_local! {
    static NO_WAIT_LOOKUPS: std::cell::RefCell<Vec<PendingLookups>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Settles this thread's lookups made in no-wait mode: counted in those of `caches` they were
/// made in if the request was answered in place, forgotten if it was handed off.
pub fn settle_no_wait_lookups<'a>(caches: impl IntoIterator<Item = &'a Cache>, answered: bool) {
    let pending = NO_WAIT_LOOKUPS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if !answered {
        return;
    }
    for cache in caches {
        for p in pending.iter().filter(|p| p.cache == cache.id) {
            let stats = cache.shards[p.shard].stats(p.kind);
            bump(&stats.requests, p.requests);
            bump(&stats.hits, p.hits);
        }
    }
}

pub struct Cache {
    /// Tells this cache's pending no-wait lookups from another's.
    id: u64,
    shards: Vec<ShardSlot>,
    shard_budget: u64,
    hasher: std::collections::hash_map::RandomState,
    options: CacheOptions,
    enabled: [bool; ItemKind::ALL.len()],
    second: Option<SecondLevel>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("options", &self.options)
            .field("second", &self.second)
            .finish_non_exhaustive()
    }
}

fn entry_size(key: &CacheKey, value: &Stored) -> u64 {
    key.size() + value.len() as u64 + ENTRY_OVERHEAD
}

impl Cache {
    /// An in-memory index cache holding at most `max_bytes`; 0 disables it (every lookup
    /// misses).
    pub fn new(max_bytes: u64) -> Self {
        Self::with_options(CacheOptions::in_memory(max_bytes), None)
    }

    pub fn with_options(options: CacheOptions, second: Option<SecondLevel>) -> Self {
        let mut enabled = [false; ItemKind::ALL.len()];
        for k in &options.enabled {
            enabled[k.index()] = true;
        }
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Cache {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            shards: (0..SHARDS)
                .map(|_| ShardSlot {
                    lru: Mutex::new(Shard {
                        lru: LruCache::unbounded(),
                        bytes: 0,
                    }),
                    stats: Default::default(),
                })
                .collect(),
            shard_budget: options.max_bytes / SHARDS as u64,
            hasher: Default::default(),
            options,
            enabled,
            second,
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.options.max_bytes
    }

    pub fn second_level(&self) -> Option<&SecondLevel> {
        self.second.as_ref()
    }

    /// The figures of one item kind, over all shards.
    pub fn stats(&self, kind: ItemKind) -> KindStats {
        let mut sum = KindStats::default();
        for shard in &self.shards {
            sum += shard.stats(kind).read();
        }
        sum
    }

    fn shard_index(&self, key: &CacheKey) -> usize {
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn shard(&self, key: &CacheKey) -> &ShardSlot {
        &self.shards[self.shard_index(key)]
    }

    /// The value of `key`: from memory, else from the second level (kept in memory then).
    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        self.get_many(std::slice::from_ref(key)).pop().flatten()
    }

    /// The values of `keys`, in order; the keys memory misses go to the second level in one
    /// multi-get.
    pub fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Bytes>> {
        self.lookup(keys, true)
    }

    /// [`Self::get_many`], counting the lookups in the kind's figures or not (when the caller
    /// counts what it looks up in the values instead).
    fn lookup(&self, keys: &[CacheKey], count: bool) -> Vec<Option<Bytes>> {
        let mut out = self.get_local_many(keys, count);
        // A thread that may not wait does not ask memcached: what memory misses, it reads
        // from the bucket, which refuses, and the request runs again where it may wait.
        let Some(second) = self.second.as_ref().filter(|_| !crate::nowait::active()) else {
            return out;
        };
        let missing: Vec<usize> = (0..keys.len())
            .filter(|&i| out[i].is_none() && self.enabled[keys[i].kind().index()])
            .collect();
        if missing.is_empty() {
            return out;
        }
        let wanted: Vec<&CacheKey> = missing.iter().map(|&i| &keys[i]).collect();
        for (i, found) in missing.into_iter().zip(second.get_many(&wanted)) {
            let Some(stored) = found else { continue };
            let Some(value) = stored.decode() else {
                second
                    .stats
                    .malformed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            };
            self.put_local(keys[i].clone(), stored);
            out[i] = Some(value);
        }
        out
    }

    /// The values of `keys` held in memory, in order. Each shard is locked once for all its
    /// keys, not once per key: a batch holds thousands of chunk or series keys, and threads
    /// taking a lock that often collide and wait on the few cores a store gets. Values are
    /// decompressed after the locks are released.
    fn get_local_many(&self, keys: &[CacheKey], count: bool) -> Vec<Option<Bytes>> {
        let mut by_shard: Vec<(usize, usize)> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| self.enabled[k.kind().index()])
            .map(|(i, k)| (self.shard_index(k), i))
            .collect();
        by_shard.sort_unstable();
        let mut stored: Vec<Option<Stored>> = vec![None; keys.len()];
        for group in by_shard.chunk_by(|a, b| a.0 == b.0) {
            let Some(mut shard) = self.shards[group[0].0].lock() else {
                continue; // busy, in no-wait mode: misses
            };
            for &(shard_index, i) in group {
                let key = &keys[i];
                let found = shard.lru.get(key).cloned();
                if count {
                    let hits = u64::from(found.is_some());
                    self.count(shard_index, key.kind(), 1, hits);
                }
                stored[i] = found;
            }
        }
        stored
            .into_iter()
            .map(|s| s.and_then(|s| s.decode()))
            .collect()
    }

    /// Counts `requests` lookups of `key`'s kind, `hits` of them found, in the shard of `key`.
    fn count_lookups(&self, key: &CacheKey, requests: u64, hits: u64) {
        if !self.enabled[key.kind().index()] {
            return;
        }
        self.count(self.shard_index(key), key.kind(), requests, hits);
    }

    /// Adds lookups to the figures of shard `index`, or, in no-wait mode, keeps them until
    /// the attempt is settled ([`settle_no_wait_lookups`]).
    fn count(&self, index: usize, kind: ItemKind, requests: u64, hits: u64) {
        if crate::nowait::active() {
            NO_WAIT_LOOKUPS.with(|pending| {
                pending.borrow_mut().push(PendingLookups {
                    cache: self.id,
                    shard: index,
                    kind,
                    requests,
                    hits,
                })
            });
            return;
        }
        let stats = self.shards[index].stats(kind);
        bump(&stats.requests, requests);
        bump(&stats.hits, hits);
    }

    /// The longest value `key` can be cached with: its shard's share of the budget less the
    /// key and bookkeeping, and the item size limit; unbounded with a second level, which
    /// holds what memory cannot (a small or disabled memory level in front of memcached).
    pub fn max_value_bytes(&self, key: &CacheKey) -> usize {
        if self.second.is_some() {
            return usize::MAX;
        }
        let share = self
            .shard_budget
            .saturating_sub(key.size() + ENTRY_OVERHEAD);
        let limit = match self.options.max_item_bytes {
            0 => share,
            max => share.min(max),
        };
        usize::try_from(limit).unwrap_or(usize::MAX)
    }

    /// Stores `value` in memory, evicting least recently used entries of the shard to make
    /// room, and queues it for the second level. `value` should own its bytes (not a slice of
    /// a larger buffer), or the cache would keep the whole buffer alive; callers copy slices
    /// first.
    pub fn put(&self, key: CacheKey, value: Bytes) {
        if !self.enabled[key.kind().index()] {
            return;
        }
        let min_bytes = match key.kind().compressible() {
            true => self.options.compress_min_bytes,
            false => 0,
        };
        let stored = Stored::encode(value, min_bytes);
        if let Some(second) = &self.second {
            second.put(&key, &stored);
        }
        self.put_local(key, stored);
    }

    /// Puts an entry saved earlier (by [`snapshot::save`]) back in memory only.
    pub fn restore(&self, key: CacheKey, value: Stored) {
        if self.enabled[key.kind().index()] {
            self.put_local(key, value);
        }
    }

    /// Every entry held in memory, the most recently used first. Shards keep their own
    /// recency, so they are interleaved: the n-th most recent of each shard, then the n+1-th.
    pub fn entries_most_recent_first(&self) -> Vec<(CacheKey, Stored)> {
        let per_shard: Vec<Vec<(CacheKey, Stored)>> = self
            .shards
            .iter()
            .map(|s| {
                let shard = s.lru.lock();
                shard
                    .lru
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect();
        let longest = per_shard.iter().map(Vec::len).max().unwrap_or(0);
        let mut iters: Vec<_> = per_shard.into_iter().map(Vec::into_iter).collect();
        let mut out = Vec::new();
        for _ in 0..longest {
            out.extend(iters.iter_mut().filter_map(Iterator::next));
        }
        out
    }

    /// In no-wait mode, a busy shard is not waited for: the value is not kept.
    fn put_local(&self, key: CacheKey, value: Stored) {
        let kind = key.kind();
        let size = entry_size(&key, &value);
        let key_size = key.size();
        let slot = self.shard(&key);
        let max_item = self.options.max_item_bytes;
        if size > self.shard_budget || (max_item > 0 && value.len() as u64 > max_item) {
            bump(&slot.stats(kind).too_large, 1);
            return;
        }
        let Some(mut shard) = slot.lock() else {
            return;
        };
        if let Some(old) = shard.lru.put(key, value) {
            slot.forget(
                &mut shard,
                kind,
                key_size + old.len() as u64 + ENTRY_OVERHEAD,
            );
        }
        shard.bytes += size;
        let stats = slot.stats(kind);
        bump(&stats.bytes, size);
        bump(&stats.items, 1);
        bump(&stats.added, 1);
        while shard.bytes > self.shard_budget {
            let Some((k, v)) = shard.lru.pop_lru() else {
                break;
            };
            slot.forget(&mut shard, k.kind(), entry_size(&k, &v));
            bump(&slot.stats(k.kind()).evicted, 1);
        }
    }

    /// Bytes held, all kinds. Never waits.
    pub fn bytes(&self) -> u64 {
        ItemKind::ALL.iter().map(|&k| self.stats(k).bytes).sum()
    }

    /// Drops every entry of `block` from memory (when it stops being served). memcached's
    /// copies expire on their own: a block's contents never change, so they stay right.
    pub fn remove_block(&self, block: Ulid) {
        for slot in &self.shards {
            let mut shard = slot.lru.lock();
            let doomed: Vec<CacheKey> = shard
                .lru
                .iter()
                .filter(|(k, _)| k.block() == block)
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                if let Some(v) = shard.lru.pop(&k) {
                    slot.forget(&mut shard, k.kind(), entry_size(&k, &v));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postings(block: u128, value: &str) -> CacheKey {
        CacheKey::Postings {
            block: Ulid(block),
            name: "job".into(),
            value: value.into(),
        }
    }

    #[test]
    fn stays_within_its_byte_budget_and_evicts_least_recently_used() {
        let cache = Cache::new(16 * 4096);
        for i in 0..2000 {
            cache.put(postings(1, &format!("v{i}")), Bytes::from(vec![0u8; 500]));
            assert!(cache.bytes() <= cache.max_bytes());
        }
        let s = cache.stats(ItemKind::Postings);
        assert_eq!(s.added, 2000);
        assert!(s.evicted > 1500);
        assert_eq!(s.bytes, cache.bytes());
        // The most recent entry is there, the oldest long gone.
        assert!(cache.get(&postings(1, "v1999")).is_some());
        assert!(cache.get(&postings(1, "v0")).is_none());
        let s = cache.stats(ItemKind::Postings);
        assert_eq!(s.hits, 1);
        assert_eq!(s.requests, 2);
    }

    #[test]
    fn keys_are_exact_and_blocks_can_be_dropped() {
        let cache = Cache::new(1 << 20);
        cache.put(postings(1, "a"), Bytes::from_static(b"one"));
        cache.put(postings(2, "a"), Bytes::from_static(b"two"));
        cache.put(
            CacheKey::SeriesPage {
                block: Ulid(1),
                page: 7,
            },
            Bytes::from_static(b"s"),
        );
        assert_eq!(cache.get(&postings(1, "a")).unwrap(), "one");
        assert_eq!(cache.get(&postings(2, "a")).unwrap(), "two");
        assert!(cache.get(&postings(1, "b")).is_none());
        cache.remove_block(Ulid(1));
        assert!(cache.get(&postings(1, "a")).is_none());
        assert_eq!(cache.get(&postings(2, "a")).unwrap(), "two");
        assert_eq!(cache.stats(ItemKind::Series).items, 0);
        // Replacing an entry keeps the accounting exact.
        cache.put(postings(2, "a"), Bytes::from_static(b"three"));
        assert_eq!(cache.bytes(), cache.stats(ItemKind::Postings).bytes);
    }

    /// Threads putting, looking up (one key and batches) and dropping blocks at once: the
    /// budget holds at every step, every value found is the one put under its key, and the
    /// figures add up to what the shards hold once they are done.
    #[test]
    fn concurrent_use_keeps_the_budget_the_values_and_the_accounting() {
        let cache = Cache::with_options(
            CacheOptions {
                enabled: ItemKind::ALL.to_vec(),
                ..CacheOptions::in_memory(32 * 1024)
            },
            None,
        );
        let key = |t: u64, i: u64| match i % 3 {
            0 => postings(u128::from(t % 3), &format!("v{i}")),
            1 => CacheKey::SeriesPage {
                block: Ulid(u128::from(t % 3)),
                page: i,
            },
            _ => CacheKey::Chunk {
                block: Ulid(u128::from(t % 3)),
                chunk_ref: i,
            },
        };
        // The value says which key it belongs to.
        let value = |k: &CacheKey| Bytes::from(format!("{k:?}").repeat(1 + k.size() as usize % 7));
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let cache = &cache;
                scope.spawn(move || {
                    let mut rng = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    for _ in 0..4000 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let i = rng % 500;
                        match rng % 100 {
                            0..=49 => {
                                let k = key(t, i);
                                let v = value(&k);
                                cache.put(k, v);
                            }
                            50..=79 => {
                                let keys: Vec<CacheKey> = (i..i + 40).map(|i| key(t, i)).collect();
                                for (k, got) in keys.iter().zip(cache.get_many(&keys)) {
                                    if let Some(got) = got {
                                        assert_eq!(got, value(k), "{k:?}");
                                    }
                                }
                            }
                            80..=98 => {
                                let k = key(t, i);
                                if let Some(got) = cache.get(&k) {
                                    assert_eq!(got, value(&k));
                                }
                            }
                            _ => cache.remove_block(Ulid(u128::from(i % 3))),
                        }
                        assert!(cache.bytes() <= cache.max_bytes());
                    }
                });
            }
        });
        let mut held = KindStats::default();
        for kind in ItemKind::ALL {
            held += cache.stats(kind);
        }
        assert_eq!(held.bytes, cache.bytes());
        let entries = cache.entries_most_recent_first();
        assert_eq!(held.items, entries.len() as u64);
        let bytes: u64 = entries.iter().map(|(k, v)| entry_size(k, v)).sum();
        assert_eq!(bytes, cache.bytes());
        assert!(held.added > 1000 && held.evicted > 0, "{held:?}");
        assert!(held.hits > 0 && held.hits <= held.requests, "{held:?}");
    }

    #[test]
    fn oversized_items_and_a_zero_budget_cache_nothing() {
        let cache = Cache::new(0);
        cache.put(postings(1, "a"), Bytes::from_static(b"x"));
        assert!(cache.get(&postings(1, "a")).is_none());
        assert_eq!(cache.stats(ItemKind::Postings).too_large, 1);
        assert_eq!(cache.bytes(), 0);
    }
}
