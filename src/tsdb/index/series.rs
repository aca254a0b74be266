//! Series entries: a series' label set as symbol references and its chunk metadata.
//!
//! ```text
//! ┌──────────────────────────────────────────────────────────────┐
//! │ len <uvarint>                                                │
//! ├──────────────────────────────────────────────────────────────┤
//! │ #labels <uvarint>                                            │
//! │ name ref_1 <uvarint> │ value ref_1 <uvarint>   (sorted by name)
//! │ ...                                                          │
//! │ #chunks <uvarint>                                            │
//! │ c_0.mint <varint> │ c_0.maxt - c_0.mint <uvarint> │ c_0.ref <uvarint>
//! │ c_i.mint - c_{i-1}.maxt <uvarint> │ c_i.maxt - c_i.mint <uvarint>
//! │                                   │ c_i.ref - c_{i-1}.ref <varint>
//! ├──────────────────────────────────────────────────────────────┤
//! │ CRC32C(body) <4b>                                            │
//! └──────────────────────────────────────────────────────────────┘
//! ```
//!
//! In v2 every entry starts on a 16-byte boundary and its reference is offset / 16; in v1
//! the reference is the offset. The body layout is the same in both versions. Deltas are
//! added with wrapping arithmetic, as Prometheus does, so any value Prometheus can write
//! (even overlapping chunks, stored as huge uvarints) decodes to what was written.

use super::IndexVersion;
use crate::tsdb::encoding::{read_uvarint, verify_crc32c, Decbuf, DecodeError, Encbuf};

/// Where a chunk lives and the time range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    /// Upper 32 bits: segment file index (000001 is 0); lower 32 bits: offset in it.
    pub chunk_ref: u64,
}

/// A series entry with its labels still as symbol references.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeriesEntryRefs {
    /// `(name ref, value ref)` pairs in stored order.
    pub labels: Vec<(u32, u32)>,
    pub chunks: Vec<ChunkMeta>,
}

/// Decodes a series entry body (the bytes between the uvarint length and the CRC).
pub fn decode_series_entry(
    body: &[u8],
    version: IndexVersion,
) -> Result<SeriesEntryRefs, DecodeError> {
    let mut out = SeriesEntryRefs::default();
    decode_series_entry_into(body, version, &mut out)?;
    Ok(out)
}

/// Like [`decode_series_entry`], reusing `out`'s allocations (for scans over all series).
pub fn decode_series_entry_into(
    body: &[u8],
    _version: IndexVersion,
    out: &mut SeriesEntryRefs,
) -> Result<(), DecodeError> {
    out.labels.clear();
    out.chunks.clear();
    let mut d = Decbuf::new(body);
    let nlabels = d.uvarint_usize()?;
    // Each label takes at least two bytes: never trust a count for an allocation.
    out.labels.reserve(nlabels.min(d.len() / 2));
    for _ in 0..nlabels {
        let name = d.uvarint32()?;
        let value = d.uvarint32()?;
        out.labels.push((name, value));
    }
    let nchunks = d.uvarint_usize()?;
    if nchunks > 0 {
        out.chunks.reserve(nchunks.min(d.len() / 3 + 1));
        let mut mint = d.varint()?;
        let mut maxt = mint.wrapping_add(d.uvarint()? as i64);
        let mut cref = d.uvarint()?;
        out.chunks.push(ChunkMeta {
            min_time: mint,
            max_time: maxt,
            chunk_ref: cref,
        });
        for _ in 1..nchunks {
            mint = maxt.wrapping_add(d.uvarint()? as i64);
            maxt = mint.wrapping_add(d.uvarint()? as i64);
            cref = cref.wrapping_add(d.varint()? as u64);
            out.chunks.push(ChunkMeta {
                min_time: mint,
                max_time: maxt,
                chunk_ref: cref,
            });
        }
    }
    if !d.is_empty() {
        return Err(DecodeError::Invalid(format!(
            "{} trailing bytes in series entry",
            d.len()
        )));
    }
    Ok(())
}

/// Splits `uvarint len | body | CRC` at the start of `b`, verifying the CRC. Returns the
/// body and the total entry length; bytes after the entry are ignored.
pub fn split_series_entry(b: &[u8]) -> Result<(&[u8], usize), DecodeError> {
    let (len, n) = read_uvarint(b)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::OutOfRange {
        value: len,
        target: "usize",
    })?;
    let mut d = Decbuf::new(b);
    d.skip(n)?;
    let body = d.bytes(len)?;
    let stored = d.be32()?;
    verify_crc32c(body, stored)?;
    Ok((body, n + len + 4))
}

/// Appends a complete entry (`len | body | CRC`) to `e`, using `scratch` for the body.
pub(crate) fn encode_series_entry(
    e: &mut Encbuf,
    scratch: &mut Encbuf,
    labels: &[(u32, u32)],
    chunks: &[ChunkMeta],
) {
    scratch.clear();
    scratch.put_uvarint(labels.len() as u64);
    for &(n, v) in labels {
        scratch.put_uvarint(u64::from(n));
        scratch.put_uvarint(u64::from(v));
    }
    scratch.put_uvarint(chunks.len() as u64);
    if let Some((first, rest)) = chunks.split_first() {
        scratch.put_varint(first.min_time);
        scratch.put_uvarint(first.max_time.wrapping_sub(first.min_time) as u64);
        scratch.put_uvarint(first.chunk_ref);
        let mut prev = *first;
        for c in rest {
            scratch.put_uvarint(c.min_time.wrapping_sub(prev.max_time) as u64);
            scratch.put_uvarint(c.max_time.wrapping_sub(c.min_time) as u64);
            scratch.put_varint(c.chunk_ref.wrapping_sub(prev.chunk_ref) as i64);
            prev = *c;
        }
    }
    e.put_uvarint(scratch.len() as u64);
    let start = e.len();
    e.put_bytes(scratch.as_slice());
    e.put_crc32c_from(start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunks() -> impl Strategy<Value = Vec<ChunkMeta>> {
        proptest::collection::vec((any::<i64>(), any::<i64>(), any::<u64>()), 0..6).prop_map(|v| {
            v.into_iter()
                .map(|(a, b, r)| ChunkMeta {
                    min_time: a,
                    max_time: b,
                    chunk_ref: r,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn round_trip(labels in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..8), chunks in chunks()) {
            let (mut e, mut s) = (Encbuf::new(), Encbuf::new());
            encode_series_entry(&mut e, &mut s, &labels, &chunks);
            let (body, n) = split_series_entry(e.as_slice()).unwrap();
            prop_assert_eq!(n, e.len());
            let got = decode_series_entry(body, IndexVersion::V2).unwrap();
            prop_assert_eq!(got.labels, labels);
            prop_assert_eq!(got.chunks, chunks);
        }

        #[test]
        fn garbage_never_panics(data: Vec<u8>) {
            let _ = decode_series_entry(&data, IndexVersion::V1);
            let _ = split_series_entry(&data);
        }
    }

    #[test]
    fn known_bytes() {
        let (mut e, mut s) = (Encbuf::new(), Encbuf::new());
        let c = [
            ChunkMeta {
                min_time: 1000,
                max_time: 2000,
                chunk_ref: 8,
            },
            ChunkMeta {
                min_time: 2001,
                max_time: 2500,
                chunk_ref: 100,
            },
        ];
        encode_series_entry(&mut e, &mut s, &[(1, 2)], &c);
        // body: 1 label (1,2); 2 chunks; varint 1000 = d0 0f; 1000 = e8 07; 8;
        // then 1, 499 = f3 03, varint 92 = b8 01.
        let body = [
            1, 1, 2, 2, 0xd0, 0x0f, 0xe8, 0x07, 8, 1, 0xf3, 0x03, 0xb8, 0x01,
        ];
        assert_eq!(e.as_slice()[0] as usize, body.len());
        assert_eq!(&e.as_slice()[1..1 + body.len()], &body);
    }
}
