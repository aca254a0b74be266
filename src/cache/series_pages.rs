//! Series entries cached a page at a time. A page is a fixed window of `PAGE_BYTES` of a
//! block's series section (by file offset, so index versions 1 and 2 page alike), and its
//! cached value holds the entries starting in the window that have been read so far, column
//! by column:
//!
//! ```text
//! start    u64 LE          file offset of the window (checked on decode)
//! count    u32 LE
//! offsets  count × u16 LE  each entry's offset in the window, increasing
//! ends     count × u32 LE  each entry's end in `data`, increasing
//! data                     the entries as the index holds them, one after another
//! ```
//!
//! One cache item per page rather than per series: the per-item cost (key, LRU node and map
//! slot, ~136 bytes) is shared by the ~40 entries of a full page, the entries keep their
//! varint encoding (6 bytes of columns each), and a hit hands entries out as slices of the
//! page, without copies. Filling is read-modify-write: the entries a batch read are merged
//! into the page as the batch found it; when two requests fill a page at once, the last put
//! wins and the other's entries are read again later (a miss, never a wrong entry).

use bytes::{BufMut, Bytes};
use ulid::Ulid;

use super::{Cache, CacheKey, ItemKind};

/// log2 of a page's window: 4 KiB of the series section, ~40 entries of 60–100 bytes (each
/// starts on a 16-byte boundary in index v2), so a full page stays below the default
/// `--index-cache.compress-min-bytes` (4 KiB) and a warm hit is a slice, not a decompression.
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_BYTES: u64 = 1 << PAGE_SHIFT;
/// The largest page value: far below memcached's default 1 MiB item limit. An entry that does
/// not fit (a series with tens of thousands of chunks) is read from the bucket every time.
pub const MAX_PAGE_BYTES: usize = 256 << 10;

const HEADER: usize = 8 + 4;
const PER_ENTRY: usize = 2 + 4;

// Offsets in the window are u16.
const _: () = assert!(PAGE_SHIFT <= 16);

/// The page holding the entry at `offset` of the index file.
pub fn page_of(offset: u64) -> u64 {
    offset >> PAGE_SHIFT
}

/// A page as cached, checked.
#[derive(Debug, Clone)]
pub struct SeriesPage {
    start: u64,
    count: usize,
    bytes: Bytes,
}

impl SeriesPage {
    /// The page `page` from its cached value; `None` when the value is not a well-formed page
    /// of that window.
    pub fn decode(page: u64, bytes: Bytes) -> Option<SeriesPage> {
        let start = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let count = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
        let data_start = count.checked_mul(PER_ENTRY)?.checked_add(HEADER)?;
        if start != page << PAGE_SHIFT || data_start > bytes.len() {
            return None;
        }
        let p = SeriesPage {
            start,
            count,
            bytes,
        };
        let data_len = p.bytes.len() - data_start;
        let (mut prev_offset, mut prev_end) = (None, 0);
        for i in 0..count {
            let (offset, end) = (p.offset_at(i), p.end_at(i));
            if prev_offset.is_some_and(|o| o >= offset) || end <= prev_end || end > data_len {
                return None;
            }
            (prev_offset, prev_end) = (Some(offset), end);
        }
        (prev_end == data_len).then_some(p)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn offset_at(&self, i: usize) -> u16 {
        let at = HEADER + 2 * i;
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    fn end_at(&self, i: usize) -> usize {
        let at = HEADER + 2 * self.count + 4 * i;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes")) as usize
    }

    fn entry_at(&self, i: usize) -> Bytes {
        let data = HEADER + PER_ENTRY * self.count;
        let begin = if i == 0 { 0 } else { self.end_at(i - 1) };
        self.bytes.slice(data + begin..data + self.end_at(i))
    }

    /// The entry at file offset `offset`, if the page holds it: a slice of the page.
    pub fn get(&self, offset: u64) -> Option<Bytes> {
        let within = offset.checked_sub(self.start).filter(|&o| o < PAGE_BYTES)? as u16;
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.offset_at(mid).cmp(&within) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.entry_at(mid)),
            }
        }
        None
    }

    /// The entries held, by file offset, in order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, Bytes)> + '_ {
        (0..self.count).map(|i| (self.start + u64::from(self.offset_at(i)), self.entry_at(i)))
    }
}

/// The value of page `page` holding `entries` (file offsets in the page's window, increasing,
/// and the entries' bytes).
pub fn encode_page(page: u64, entries: &[(u64, &[u8])]) -> Bytes {
    let start = page << PAGE_SHIFT;
    let data: usize = entries.iter().map(|e| e.1.len()).sum();
    let mut out = Vec::with_capacity(HEADER + PER_ENTRY * entries.len() + data);
    out.put_u64_le(start);
    out.put_u32_le(entries.len() as u32);
    for &(offset, _) in entries {
        debug_assert_eq!(page_of(offset), page);
        out.put_u16_le((offset - start) as u16);
    }
    let mut end = 0;
    for (_, entry) in entries {
        end += entry.len();
        out.put_u32_le(end as u32);
    }
    for (_, entry) in entries {
        out.put_slice(entry);
    }
    Bytes::from(out)
}

/// Page `page` with the `fresh` entries (just read; in the page's window, by increasing
/// offset) added to `old`, within `max_bytes`: fresh entries first, then as many of the old
/// ones as still fit. `None` when no fresh entry fits (the cached page stays as it is).
pub fn merge_page(
    page: u64,
    old: Option<&SeriesPage>,
    fresh: &[(u64, &[u8])],
    max_bytes: usize,
) -> Option<Bytes> {
    let mut size = HEADER;
    let mut fits = |entry: &[u8]| {
        let fits = size + PER_ENTRY + entry.len() <= max_bytes;
        size += usize::from(fits) * (PER_ENTRY + entry.len());
        fits
    };
    let old_entries: Vec<(u64, Bytes)> = old.map_or_else(Vec::new, |p| p.entries().collect());
    let mut kept: Vec<(u64, &[u8])> = Vec::with_capacity(fresh.len() + old_entries.len());
    for &(offset, entry) in fresh {
        if kept.last().is_none_or(|k| k.0 < offset) && fits(entry) {
            kept.push((offset, entry));
        }
    }
    if kept.is_empty() {
        return None;
    }
    let fresh_kept = kept.len();
    for (offset, entry) in &old_entries {
        let known = kept[..fresh_kept]
            .binary_search_by_key(offset, |k| k.0)
            .is_ok();
        if !known && fits(entry) {
            kept.push((*offset, entry));
        }
    }
    kept.sort_unstable_by_key(|k| k.0);
    Some(encode_page(page, &kept))
}

/// The pages a batch of one block's series entries was looked up in, to merge the entries
/// then read into ([`Cache::put_series_entries`]).
#[derive(Debug)]
pub struct SeriesPages {
    block: Ulid,
    /// By page number; `None` for pages not cached.
    pages: Vec<(u64, Option<SeriesPage>)>,
}

impl SeriesPages {
    fn find(&self, page: u64) -> Option<&SeriesPage> {
        let i = self.pages.binary_search_by_key(&page, |p| p.0).ok()?;
        self.pages[i].1.as_ref()
    }
}

impl Cache {
    /// The cached series entries of `block` at the index file offsets `offsets`, in order,
    /// with one lookup (and at most one memcached multi-get) for all the pages they are in.
    /// Lookups and hits are counted per entry.
    pub fn series_entries(
        &self,
        block: Ulid,
        offsets: &[u64],
    ) -> (Vec<Option<Bytes>>, SeriesPages) {
        let mut numbers: Vec<u64> = offsets.iter().map(|&o| page_of(o)).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let keys: Vec<CacheKey> = numbers
            .iter()
            .map(|&page| CacheKey::SeriesPage { block, page })
            .collect();
        let values = self.lookup(&keys, false);
        let pages = SeriesPages {
            block,
            pages: numbers
                .into_iter()
                .zip(values)
                .map(|(page, value)| (page, value.and_then(|v| self.decode_page(page, v))))
                .collect(),
        };
        let entries: Vec<Option<Bytes>> = offsets
            .iter()
            .map(|&o| pages.find(page_of(o))?.get(o))
            .collect();
        if let Some(key) = keys.first() {
            let hits = entries.iter().filter(|e| e.is_some()).count();
            self.count_lookups(key, offsets.len() as u64, hits as u64);
        }
        (entries, pages)
    }

    fn decode_page(&self, page: u64, value: Bytes) -> Option<SeriesPage> {
        let decoded = SeriesPage::decode(page, value);
        if decoded.is_none() {
            // Only memcached can hand back a page this store did not write.
            if let Some(second) = &self.second {
                second
                    .stats
                    .malformed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        decoded
    }

    /// Adds the entries read after [`Cache::series_entries`] missed them (file offset,
    /// entry bytes; they are copied) to their pages, and puts the pages.
    pub fn put_series_entries<'a>(
        &self,
        pages: SeriesPages,
        fetched: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) {
        if !self.enabled[ItemKind::Series.index()] {
            return;
        }
        let mut fetched: Vec<(u64, &[u8])> = fetched.into_iter().collect();
        fetched.sort_unstable_by_key(|f| f.0);
        for fresh in fetched.chunk_by(|a, b| page_of(a.0) == page_of(b.0)) {
            let page = page_of(fresh[0].0);
            let key = CacheKey::SeriesPage {
                block: pages.block,
                page,
            };
            let max_bytes = self.max_value_bytes(&key).min(MAX_PAGE_BYTES);
            if let Some(value) = merge_page(page, pages.find(page), fresh, max_bytes) {
                self.put(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Entries of page `page`: distinct offsets in its window, with arbitrary non-empty bytes.
    fn entries(page: u64) -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
        proptest::collection::btree_map(
            0..PAGE_BYTES,
            proptest::collection::vec(any::<u8>(), 1..300),
            0..60,
        )
        .prop_map(move |m| {
            m.into_iter()
                .map(|(o, e)| ((page << PAGE_SHIFT) + o, e))
                .collect()
        })
    }

    fn borrowed(entries: &[(u64, Vec<u8>)]) -> Vec<(u64, &[u8])> {
        entries.iter().map(|(o, e)| (*o, e.as_slice())).collect()
    }

    proptest! {
        #[test]
        fn any_page_round_trips(
            (page, entries) in (0u64..1 << 40).prop_flat_map(|p| (Just(p), entries(p)))
        ) {
            let value = encode_page(page, &borrowed(&entries));
            let decoded = SeriesPage::decode(page, value.clone()).expect("a page");
            prop_assert_eq!(decoded.len(), entries.len());
            for (o, e) in &entries {
                prop_assert_eq!(decoded.get(*o), Some(Bytes::copy_from_slice(e)));
            }
            let back: Vec<(u64, Vec<u8>)> = decoded.entries().map(|(o, e)| (o, e.to_vec())).collect();
            prop_assert_eq!(&back, &entries);
            // Offsets not held, or outside the window, find nothing.
            for probe in [page << PAGE_SHIFT, (page << PAGE_SHIFT) + 17, (page + 1) << PAGE_SHIFT] {
                if !entries.iter().any(|e| e.0 == probe) {
                    prop_assert!(decoded.get(probe).is_none());
                }
            }
            // Another window's page, or any truncation, is refused.
            prop_assert!(SeriesPage::decode(page + 1, value.clone()).is_none());
            for cut in [0, 7, HEADER, value.len().saturating_sub(1)] {
                if cut < value.len() {
                    prop_assert!(SeriesPage::decode(page, value.slice(..cut)).is_none());
                }
            }
        }

        #[test]
        fn merging_keeps_old_and_fresh_entries(old in entries(3), fresh in entries(3)) {
            let old_page = SeriesPage::decode(3, encode_page(3, &borrowed(&old))).unwrap();
            let merged = merge_page(3, Some(&old_page), &borrowed(&fresh), usize::MAX);
            let Some(merged) = merged else {
                prop_assert!(fresh.is_empty());
                return Ok(());
            };
            let merged = SeriesPage::decode(3, merged).expect("a page");
            // Fresh entries win over old ones at the same offset; every offset once.
            let mut want: std::collections::BTreeMap<u64, Vec<u8>> = old.into_iter().collect();
            want.extend(fresh);
            let got: Vec<(u64, Vec<u8>)> = merged.entries().map(|(o, e)| (o, e.to_vec())).collect();
            prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn an_oversize_page_keeps_fresh_entries_first(
            old in entries(0),
            fresh in entries(0),
            max_bytes in 0usize..8000,
        ) {
            let old_page = SeriesPage::decode(0, encode_page(0, &borrowed(&old))).unwrap();
            match merge_page(0, Some(&old_page), &borrowed(&fresh), max_bytes) {
                None => prop_assert!(fresh.iter().all(|f| HEADER + PER_ENTRY + f.1.len() > max_bytes)),
                Some(value) => {
                    prop_assert!(value.len() <= max_bytes);
                    let page = SeriesPage::decode(0, value).expect("a page");
                    // Old entries never take the room of fresh ones: the fresh entries kept
                    // are those a page of fresh entries alone keeps.
                    let alone = merge_page(0, None, &borrowed(&fresh), max_bytes).unwrap();
                    let alone = SeriesPage::decode(0, alone).unwrap();
                    for (o, e) in alone.entries() {
                        prop_assert_eq!(page.get(o), Some(e));
                    }
                    for (o, e) in page.entries() {
                        let from = |v: &[(u64, Vec<u8>)]| v.iter().any(|x| x.0 == o && x.1 == e);
                        prop_assert!(from(&fresh) || from(&old));
                    }
                }
            }
        }
    }

    #[test]
    fn malformed_values_are_no_page() {
        let good = encode_page(
            2,
            &[(2 * PAGE_BYTES + 16, b"abc"), (2 * PAGE_BYTES + 32, b"de")],
        );
        assert!(SeriesPage::decode(2, good.clone()).is_some());
        let bad = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.to_vec();
            edit(&mut v);
            SeriesPage::decode(2, Bytes::from(v)).is_none()
        };
        assert!(bad(&|v| v[8] = 200), "count past the end");
        assert!(
            bad(&|v| v[12..14].copy_from_slice(&[32, 0])),
            "offsets not increasing"
        );
        assert!(
            bad(&|v| v[16..20].copy_from_slice(&[0, 0, 0, 0])),
            "an empty entry"
        );
        assert!(
            bad(&|v| v[20..24].copy_from_slice(&[9, 0, 0, 0])),
            "data past the end"
        );
        assert!(bad(&|v| v.push(0)), "bytes after the data");
        assert!(SeriesPage::decode(0, Bytes::new()).is_none());
    }

    #[test]
    fn a_batch_finds_what_earlier_batches_read() {
        let cache = Cache::new(1 << 20);
        let block = Ulid(9);
        let offsets = [16, 48, 4096 + 32, 3 * 4096];
        let (found, pages) = cache.series_entries(block, &offsets);
        assert!(found.iter().all(Option::is_none));
        cache.put_series_entries(pages, [(16, &b"one"[..]), (4096 + 32, &b"three"[..])]);
        let (found, pages) = cache.series_entries(block, &offsets);
        let found: Vec<Option<&[u8]>> = found.iter().map(Option::as_deref).collect();
        assert_eq!(found, [Some(&b"one"[..]), None, Some(&b"three"[..]), None]);
        cache.put_series_entries(pages, [(48, &b"two"[..])]);
        let (found, _) = cache.series_entries(block, &offsets[..2]);
        assert_eq!(found[0].as_deref(), Some(&b"one"[..]));
        assert_eq!(found[1].as_deref(), Some(&b"two"[..]));
        let s = cache.stats(ItemKind::Series);
        // Counted per entry; held per page.
        assert_eq!((s.requests, s.hits, s.items), (10, 4, 2));
        assert_eq!(cache.series_entries(Ulid(8), &[16]).0, [None]);
        cache.remove_block(block);
        assert_eq!(cache.series_entries(block, &[16]).0, [None]);
        assert_eq!(cache.stats(ItemKind::Series).items, 0);
    }

    #[test]
    fn a_tiny_cache_holds_pages_of_what_fits() {
        // 16 shards of 256 bytes: a page value of at most 120 bytes.
        let cache = Cache::new(16 * 256);
        let entry = [7u8; 60];
        let (_, pages) = cache.series_entries(Ulid(1), &[0, 16]);
        cache.put_series_entries(pages, [(0, &entry[..]), (16, &entry[..])]);
        let (found, _) = cache.series_entries(Ulid(1), &[0, 16]);
        assert_eq!(found.iter().filter(|f| f.is_some()).count(), 1);
        assert_eq!(cache.stats(ItemKind::Series).too_large, 0);
        assert!(cache.bytes() <= cache.max_bytes());
    }
}
