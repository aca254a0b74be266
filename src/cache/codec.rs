//! How a cached value is stored: as given, or zstd-compressed when it is large and compression
//! pays. The in-memory LRU and memcached hold the same encoding, so a value is compressed once.

use bytes::Bytes;

/// zstd level 1: the fastest level, which already finds the repetition in postings lists.
const ZSTD_LEVEL: i32 = 1;

/// A value kept compressed only when that saves at least a quarter of its bytes; below that
/// the decompression on every hit costs more than the memory is worth.
fn pays(raw: usize, compressed: usize) -> bool {
    compressed * 4 <= raw * 3
}

/// A cached value as held: its bytes, and whether they are a zstd frame of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Raw(Bytes),
    Zstd { frame: Bytes, raw_len: u32 },
}

impl Stored {
    /// Encodes `value`, compressing it when `min_bytes` is not 0, the value is at least that
    /// long, and compression pays.
    pub fn encode(value: Bytes, min_bytes: usize) -> Stored {
        if min_bytes == 0 || value.len() < min_bytes || value.len() > u32::MAX as usize {
            return Stored::Raw(value);
        }
        match zstd::bulk::compress(&value, ZSTD_LEVEL) {
            Ok(frame) if pays(value.len(), frame.len()) => Stored::Zstd {
                frame: Bytes::from(frame),
                raw_len: value.len() as u32,
            },
            _ => Stored::Raw(value),
        }
    }

    /// Bytes held (what the cache accounts for).
    pub fn len(&self) -> usize {
        match self {
            Stored::Raw(b) => b.len(),
            Stored::Zstd { frame, .. } => frame.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value. `None` only for a frame that does not decode to `raw_len` bytes, which the
    /// caller treats as a miss.
    pub fn decode(&self) -> Option<Bytes> {
        match self {
            Stored::Raw(b) => Some(b.clone()),
            Stored::Zstd { frame, raw_len } => {
                let raw = zstd::bulk::decompress(frame, *raw_len as usize).ok()?;
                (raw.len() == *raw_len as usize).then(|| Bytes::from(raw))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_large_repetitive_values_only() {
        let repetitive = Bytes::from(
            (0..20_000u32)
                .flat_map(|i| (i / 7).to_be_bytes())
                .collect::<Vec<u8>>(),
        );
        let stored = Stored::encode(repetitive.clone(), 4096);
        assert!(matches!(stored, Stored::Zstd { .. }));
        assert!(stored.len() * 4 <= repetitive.len());
        assert_eq!(stored.decode().unwrap(), repetitive);

        // Off, too small, or incompressible: kept as given.
        assert_eq!(
            Stored::encode(repetitive.clone(), 0),
            Stored::Raw(repetitive.clone())
        );
        let small = repetitive.slice(..1000);
        assert_eq!(Stored::encode(small.clone(), 4096), Stored::Raw(small));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..10_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let noise = Bytes::from(noise);
        assert_eq!(Stored::encode(noise.clone(), 4096), Stored::Raw(noise));
    }

    #[test]
    fn a_bad_frame_decodes_to_nothing() {
        let bad = Stored::Zstd {
            frame: Bytes::from_static(b"not zstd"),
            raw_len: 10,
        };
        assert_eq!(bad.decode(), None);
        let value = Bytes::from(vec![7u8; 10_000]);
        let Stored::Zstd { frame, .. } = Stored::encode(value, 1) else {
            panic!("compressible");
        };
        let wrong_len = Stored::Zstd { frame, raw_len: 5 };
        assert_eq!(wrong_len.decode(), None);
    }
}
