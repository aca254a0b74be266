//! The in-memory cache written to the data dir at shutdown and read back at the next start, so
//! the first queries after a restart (a rollout, an upgrade) find their postings and series
//! entries in memory instead of paying for the bucket again. Blocks are immutable, so an entry
//! stays true for as long as its block is served; entries of blocks gone since are skipped.
//!
//! ```text
//! "STLCACHE" <8b> │ version <4b LE>
//! entry*: len <4b LE> │ kind <1b> │ block ULID <16b> │ key fields │ value │ CRC32C(kind..value) <4b LE>
//! ```
//!
//! Key fields: postings `name`, `value`; series page `page <8b LE>`; expanded postings `matchers`,
//! each string as `len <4b LE>` + bytes. Value: `0` + bytes (raw) or `1` + raw length
//! `<4b LE>` + bytes (zstd), bytes running to the entry's end. Entries are written least
//! recently used first, so reading them back in order leaves the most recent on top. A bad
//! entry ends the load and keeps what was read before it.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use bytes::Bytes;
use ulid::Ulid;

use super::{Cache, CacheKey, Stored};

const MAGIC: &[u8; 8] = b"STLCACHE";
const VERSION: u32 = 1;
/// The file's name in the data dir.
pub const FILE_NAME: &str = "index-cache.snapshot";

const POSTINGS: u8 = 0;
const SERIES_PAGE: u8 = 1;
const EXPANDED_POSTINGS: u8 = 2;
const CHUNK: u8 = 3;

/// What a save or a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    pub items: u64,
    pub bytes: u64,
    /// Entries of blocks no longer served (load only).
    pub skipped: u64,
}

/// Why a snapshot could not be read; the caller logs it and starts with an empty cache.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an index cache snapshot of this version")]
    Format,
    #[error("entry {index} is corrupt ({why}); kept the {index} entries before it")]
    Corrupt { index: u64, why: &'static str },
}

/// Writes what `cache` holds in memory to `path`, atomically (a temporary file renamed into
/// place).
pub fn save(cache: &Cache, path: &Path) -> std::io::Result<SnapshotReport> {
    let mut entries = cache.entries_most_recent_first();
    entries.reverse();
    let mut report = SnapshotReport::default();
    crate::fs::write_atomically_with(path, |file| {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        let mut entry = Vec::new();
        for (key, value) in &entries {
            entry.clear();
            encode_entry(key, value, &mut entry);
            w.write_all(&(entry.len() as u32).to_le_bytes())?;
            w.write_all(&entry)?;
            w.write_all(&crc32c::crc32c(&entry).to_le_bytes())?;
            report.items += 1;
            report.bytes += value.len() as u64;
        }
        w.flush()
    })?;
    Ok(report)
}

/// Puts the entries of `path` whose block is in `served` into `cache`'s memory (not into a
/// second level, which has them already). On a corrupt entry, what was read before stays.
pub fn load(
    cache: &Cache,
    path: &Path,
    served: &HashSet<Ulid>,
) -> Result<SnapshotReport, SnapshotError> {
    let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut header = [0u8; 12];
    r.read_exact(&mut header)
        .map_err(|_| SnapshotError::Format)?;
    if &header[..8] != MAGIC || header[8..] != VERSION.to_le_bytes() {
        return Err(SnapshotError::Format);
    }
    let mut report = SnapshotReport::default();
    let mut entry = Vec::new();
    loop {
        let corrupt = |why| SnapshotError::Corrupt {
            index: report.items + report.skipped,
            why,
        };
        let mut len = [0u8; 4];
        match r.read(&mut len[..1])? {
            0 => return Ok(report),
            _ => r
                .read_exact(&mut len[1..])
                .map_err(|_| corrupt("truncated"))?,
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > cache.max_bytes() as usize + (1 << 16) {
            return Err(corrupt("length beyond the cache size"));
        }
        entry.resize(len, 0);
        let mut crc = [0u8; 4];
        r.read_exact(&mut entry)
            .and_then(|_| r.read_exact(&mut crc))
            .map_err(|_| corrupt("truncated"))?;
        if crc32c::crc32c(&entry) != u32::from_le_bytes(crc) {
            return Err(corrupt("checksum mismatch"));
        }
        let (key, value) = decode_entry(&entry).ok_or_else(|| corrupt("malformed"))?;
        if !served.contains(&key.block()) {
            report.skipped += 1;
            continue;
        }
        report.items += 1;
        report.bytes += value.len() as u64;
        cache.restore(key, value);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_entry(key: &CacheKey, value: &Stored, out: &mut Vec<u8>) {
    let (kind, block) = match key {
        CacheKey::Postings { block, .. } => (POSTINGS, block),
        CacheKey::SeriesPage { block, .. } => (SERIES_PAGE, block),
        CacheKey::ExpandedPostings { block, .. } => (EXPANDED_POSTINGS, block),
        CacheKey::Chunk { block, .. } => (CHUNK, block),
    };
    out.push(kind);
    out.extend_from_slice(&block.0.to_be_bytes());
    match key {
        CacheKey::Postings { name, value, .. } => {
            put_str(out, name);
            put_str(out, value);
        }
        CacheKey::SeriesPage { page, .. } => out.extend_from_slice(&page.to_le_bytes()),
        CacheKey::ExpandedPostings { matchers, .. } => put_str(out, matchers),
        CacheKey::Chunk { chunk_ref, .. } => out.extend_from_slice(&chunk_ref.to_le_bytes()),
    }
    match value {
        Stored::Raw(b) => {
            out.push(0);
            out.extend_from_slice(b);
        }
        Stored::Zstd { frame, raw_len } => {
            out.push(1);
            out.extend_from_slice(&raw_len.to_le_bytes());
            out.extend_from_slice(frame);
        }
    }
}

/// A cursor over an entry's bytes; `None` when they run out.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn decode_entry(entry: &[u8]) -> Option<(CacheKey, Stored)> {
    let mut f = Fields(entry);
    let kind = f.take(1)?[0];
    let block = Ulid(u128::from_be_bytes(f.take(16)?.try_into().ok()?));
    let key = match kind {
        POSTINGS => CacheKey::Postings {
            block,
            name: f.string()?,
            value: f.string()?,
        },
        SERIES_PAGE => CacheKey::SeriesPage {
            block,
            page: u64::from_le_bytes(f.take(8)?.try_into().ok()?),
        },
        EXPANDED_POSTINGS => CacheKey::ExpandedPostings {
            block,
            matchers: f.string()?,
        },
        CHUNK => CacheKey::Chunk {
            block,
            chunk_ref: u64::from_le_bytes(f.take(8)?.try_into().ok()?),
        },
        _ => return None,
    };
    // The value gets its own allocation: a slice of a shared read buffer would keep the
    // whole buffer alive for as long as any entry from it stays cached.
    let value = match f.take(1)?[0] {
        0 => Stored::Raw(Bytes::copy_from_slice(f.0)),
        1 => Stored::Zstd {
            raw_len: f.u32()?,
            frame: Bytes::copy_from_slice(f.0),
        },
        _ => return None,
    };
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheOptions, ItemKind};

    fn filled() -> Cache {
        let cache = Cache::with_options(
            CacheOptions {
                compress_min_bytes: 1,
                ..CacheOptions::in_memory(1 << 20)
            },
            None,
        );
        for i in 0..50u64 {
            cache.put(
                CacheKey::SeriesPage {
                    block: Ulid(1 + u128::from(i % 2)),
                    page: i,
                },
                Bytes::from(vec![i as u8; 40 + i as usize]),
            );
        }
        cache.put(
            CacheKey::Postings {
                block: Ulid(1),
                name: "pod".into(),
                value: "a-é".into(),
            },
            Bytes::from(vec![0u8; 5000]),
        );
        cache.put(
            CacheKey::ExpandedPostings {
                block: Ulid(2),
                matchers: "{a=\"b\"}".into(),
            },
            Bytes::from_static(b"bitmap"),
        );
        cache
    }

    #[test]
    fn a_saved_cache_loads_back_for_the_blocks_still_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let cache = filled();
        let saved = save(&cache, &path).unwrap();
        assert_eq!(saved.items, 52);

        let restored = Cache::new(1 << 20);
        let report = load(&restored, &path, &HashSet::from([Ulid(1)])).unwrap();
        assert_eq!((report.items, report.skipped), (26, 26));
        for i in 0..50u64 {
            let key = CacheKey::SeriesPage {
                block: Ulid(1 + u128::from(i % 2)),
                page: i,
            };
            assert_eq!(
                restored.get(&key),
                (i % 2 == 0).then(|| cache.get(&key).unwrap())
            );
        }
        let postings = CacheKey::Postings {
            block: Ulid(1),
            name: "pod".into(),
            value: "a-é".into(),
        };
        assert_eq!(restored.get(&postings).unwrap(), vec![0u8; 5000]);
        assert_eq!(restored.stats(ItemKind::Postings).items, 1);
        assert_eq!(restored.stats(ItemKind::ExpandedPostings).items, 0);
    }

    #[test]
    fn the_most_recently_used_entries_survive_a_smaller_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let cache = Cache::new(1 << 20);
        for i in 0..1000u64 {
            cache.put(
                CacheKey::SeriesPage {
                    block: Ulid(1),
                    page: i,
                },
                Bytes::from(vec![1u8; 100]),
            );
        }
        save(&cache, &path).unwrap();
        // Room for about a tenth: the entries put last must be the ones kept. Each shard keeps
        // its own most recent, and keys spread over shards unevenly, so a shard with few keys
        // keeps some older ones: most kept entries, not all, are among the newest.
        let small = Cache::new(25_000);
        load(&small, &path, &HashSet::from([Ulid(1)])).unwrap();
        let kept: Vec<u64> = (0..1000)
            .filter(|&i| {
                small
                    .get(&CacheKey::SeriesPage {
                        block: Ulid(1),
                        page: i,
                    })
                    .is_some()
            })
            .collect();
        assert!(kept.len() > 50, "kept {kept:?}");
        let recent = kept.iter().filter(|&&i| i >= 850).count();
        assert!(recent * 10 >= kept.len() * 8, "kept {kept:?}");
    }

    #[test]
    fn a_damaged_file_keeps_the_entries_before_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        save(&filled(), &path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let served = HashSet::from([Ulid(1), Ulid(2)]);

        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let cache = Cache::new(1 << 20);
        match load(&cache, &path, &served) {
            Err(SnapshotError::Corrupt { index, .. }) => {
                assert!(index > 0 && index < 52);
                let held: u64 = ItemKind::ALL.iter().map(|k| cache.stats(*k).items).sum();
                assert_eq!(held, index);
            }
            other => panic!("{other:?}"),
        }

        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(load(&Cache::new(1 << 20), &path, &served).is_err());
        std::fs::write(&path, b"STLCACHE\x09\x00\x00\x00").unwrap();
        assert!(matches!(
            load(&Cache::new(1 << 20), &path, &served),
            Err(SnapshotError::Format)
        ));
    }
}
