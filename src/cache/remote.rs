//! The index cache's shared second level: cache keys and values as memcached items.
//!
//! A key becomes its full text (`stele2:` + kind + block + what), used as the memcached key
//! when memcached accepts it, else replaced by `stele2:H:` + the SHA-256 of the text. The value
//! carries the full key text in front of the payload, and a lookup whose text differs is a
//! miss: a hash collision (or another program's item under the same key) can never hand back
//! the wrong postings or series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha2::Digest;

use super::codec::Stored;
use super::memcached::{is_valid_key, MemcachedClient};
use super::{CacheKey, ItemKind};

const MAGIC: &[u8; 4] = b"STL1";
const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Versioned: bumped whenever a value's format changes (2: postings as roaring bitmaps), so
/// stores of different versions sharing a memcached never read each other's values.
const KEY_PREFIX: &str = "stele2:";

/// Hashes a key text too long or awkward for memcached into 32 bytes.
pub type KeyHash = fn(&[u8]) -> [u8; 32];

pub fn sha256(text: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(text).into()
}

impl CacheKey {
    /// The full, unambiguous text of the key (label names carry their length, so no name or
    /// value can be mistaken for another split).
    pub fn text(&self) -> String {
        match self {
            CacheKey::Postings { block, name, value } => {
                format!("{KEY_PREFIX}P:{block}:{}:{name}{value}", name.len())
            }
            // The window size is part of the key: stores paging differently never share pages.
            CacheKey::SeriesPage { block, page } => {
                format!(
                    "{KEY_PREFIX}S{}:{block}:{page}",
                    super::series_pages::PAGE_SHIFT
                )
            }
            CacheKey::ExpandedPostings { block, matchers } => {
                format!("{KEY_PREFIX}E:{block}:{matchers}")
            }
            CacheKey::Chunk { block, chunk_ref } => format!("{KEY_PREFIX}C:{block}:{chunk_ref}"),
        }
    }
}

/// The memcached key for a key text: the text itself when memcached accepts it, else its hash.
pub fn wire_key(text: &str, hash: KeyHash) -> String {
    if is_valid_key(text) {
        return text.to_string();
    }
    let mut key = String::with_capacity(KEY_PREFIX.len() + 2 + 64);
    key.push_str(KEY_PREFIX);
    key.push_str("H:");
    for b in hash(text.as_bytes()) {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

/// The item stored for `text`: magic, encoding, raw length, key text, payload.
pub fn seal(text: &str, value: &Stored) -> Bytes {
    let (encoding, raw_len, payload) = match value {
        Stored::Raw(b) => (RAW, b.len() as u32, b),
        Stored::Zstd { frame, raw_len } => (ZSTD, *raw_len, frame),
    };
    let mut out = BytesMut::with_capacity(13 + text.len() + payload.len());
    out.put_slice(MAGIC);
    out.put_u8(encoding);
    out.put_u32_le(raw_len);
    out.put_u32_le(text.len() as u32);
    out.put_slice(text.as_bytes());
    out.put_slice(payload);
    out.freeze()
}

/// Why an item was not taken as the value of a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    Value(Stored),
    /// The item belongs to another key text (a hash collision).
    OtherKey,
    /// Not an item stele wrote, or truncated.
    Malformed,
}

pub fn unseal(text: &str, mut item: Bytes) -> Unsealed {
    if item.len() < 13 || &item[..4] != MAGIC {
        return Unsealed::Malformed;
    }
    item.advance(4);
    let encoding = item.get_u8();
    let raw_len = item.get_u32_le();
    let key_len = item.get_u32_le() as usize;
    if item.len() < key_len {
        return Unsealed::Malformed;
    }
    if &item[..key_len] != text.as_bytes() {
        return Unsealed::OtherKey;
    }
    item.advance(key_len);
    match encoding {
        RAW if item.len() == raw_len as usize => Unsealed::Value(Stored::Raw(item)),
        ZSTD => Unsealed::Value(Stored::Zstd {
            frame: item,
            raw_len,
        }),
        _ => Unsealed::Malformed,
    }
}

/// Lookups and hits in memcached per item kind, and items refused.
#[derive(Debug, Default)]
pub struct RemoteStats {
    requests: [AtomicU64; ItemKind::ALL.len()],
    hits: [AtomicU64; ItemKind::ALL.len()],
    /// Items under the right memcached key but for another key text.
    pub key_mismatches: AtomicU64,
    /// Items that are not stele's, truncated, or do not decompress.
    pub malformed: AtomicU64,
}

impl RemoteStats {
    pub fn requests(&self, kind: ItemKind) -> u64 {
        self.requests[kind as usize].load(Ordering::Relaxed)
    }

    pub fn hits(&self, kind: ItemKind) -> u64 {
        self.hits[kind as usize].load(Ordering::Relaxed)
    }
}

/// The second level: a memcached client, the items' expiry and the key hash.
#[derive(Debug)]
pub struct SecondLevel {
    client: MemcachedClient,
    ttl: Duration,
    hash: KeyHash,
    pub stats: RemoteStats,
}

impl SecondLevel {
    pub fn new(client: MemcachedClient, ttl: Duration) -> Self {
        Self::with_key_hash(client, ttl, sha256)
    }

    /// As [`SecondLevel::new`] with another hash of long keys (tests force collisions).
    pub fn with_key_hash(client: MemcachedClient, ttl: Duration, hash: KeyHash) -> Self {
        SecondLevel {
            client,
            ttl,
            hash,
            stats: RemoteStats::default(),
        }
    }

    pub fn client(&self) -> &MemcachedClient {
        &self.client
    }

    /// The stored values of `keys`, in order, in one multi-get.
    pub fn get_many(&self, keys: &[&CacheKey]) -> Vec<Option<Stored>> {
        let texts: Vec<String> = keys.iter().map(|k| k.text()).collect();
        let wire: Vec<String> = texts.iter().map(|t| wire_key(t, self.hash)).collect();
        let wire_refs: Vec<&str> = wire.iter().map(String::as_str).collect();
        let items = self.client.get_multi(&wire_refs);
        let s = &self.stats;
        keys.iter()
            .zip(texts)
            .zip(items)
            .map(|((key, text), item)| {
                let kind = key.kind() as usize;
                s.requests[kind].fetch_add(1, Ordering::Relaxed);
                let value = match unseal(&text, item?) {
                    Unsealed::Value(v) => v,
                    Unsealed::OtherKey => {
                        s.key_mismatches.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    Unsealed::Malformed => {
                        s.malformed.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                };
                s.hits[kind].fetch_add(1, Ordering::Relaxed);
                Some(value)
            })
            .collect()
    }

    /// Queues `value` for storing under `key`; never waits.
    pub fn put(&self, key: &CacheKey, value: &Stored) {
        let text = key.text();
        let wire = wire_key(&text, self.hash);
        self.client.set_async(wire, seal(&text, value), self.ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ulid::Ulid;

    #[test]
    fn keys_are_memcached_safe_and_exact() {
        let short = CacheKey::SeriesPage {
            block: Ulid(1),
            page: 42,
        };
        assert_eq!(wire_key(&short.text(), sha256), short.text());
        let spaced = CacheKey::Postings {
            block: Ulid(1),
            name: "path".into(),
            value: "a b\nc".into(),
        };
        let long = CacheKey::ExpandedPostings {
            block: Ulid(1),
            matchers: "x".repeat(400),
        };
        for k in [&spaced, &long] {
            let w = wire_key(&k.text(), sha256);
            assert!(is_valid_key(&w), "{w}");
            assert!(w.starts_with("stele2:H:"));
        }
        // A name and value can not be re-split into another pair.
        let a = CacheKey::Postings {
            block: Ulid(1),
            name: "ab".into(),
            value: "c".into(),
        };
        let b = CacheKey::Postings {
            block: Ulid(1),
            name: "a".into(),
            value: "bc".into(),
        };
        assert_ne!(a.text(), b.text());
    }

    #[test]
    fn sealed_items_open_only_for_their_key() {
        let value = Stored::Raw(Bytes::from_static(b"postings"));
        let item = seal("stele2:P:x", &value);
        assert_eq!(unseal("stele2:P:x", item.clone()), Unsealed::Value(value));
        assert_eq!(unseal("stele2:P:y", item.clone()), Unsealed::OtherKey);
        assert_eq!(
            unseal("stele2:P:x", item.slice(..item.len() - 1)),
            Unsealed::Malformed
        );
        assert_eq!(
            unseal("stele2:P:x", Bytes::from_static(b"thanos value")),
            Unsealed::Malformed
        );
        let z = Stored::encode(Bytes::from(vec![3u8; 9000]), 4096);
        assert!(matches!(z, Stored::Zstd { .. }));
        assert_eq!(unseal("k", seal("k", &z)), Unsealed::Value(z));
    }
}
