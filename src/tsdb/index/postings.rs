//! Postings lists: for one (name, value) pair, the sorted references of the series having it.
//!
//! ```text
//! ┌────────────────────┬────────────────────┐
//! │ len <4b>           │ #entries <4b>      │
//! ├────────────────────┴────────────────────┤
//! │ series ref_1 <4b> ... series ref_n <4b> │
//! ├─────────────────────────────────────────┤
//! │ CRC32C over #entries and refs <4b>      │
//! └─────────────────────────────────────────┘
//! ```
//!
//! Each list starts on a 4-byte boundary. The first list belongs to the all-postings key
//! `("", "")` and holds every series.

use roaring::RoaringBitmap;

use super::decode_frame;
use crate::tsdb::encoding::{Decbuf, DecodeError, Encbuf};

/// Refs sharing their upper 16 bits (one roaring container) from which the container is
/// built as a bit set rather than value by value: building from 8 KiB of bits costs about
/// what pushing this many values does.
const DENSE_CONTAINER: usize = 64;

/// Decodes the list framed at the start of `bytes`, verifying its CRC and entry count.
/// Trailing bytes (alignment padding up to the next list) are ignored, so a byte range
/// taken from the postings offset table can be passed as is.
pub fn decode_postings_list(bytes: &[u8]) -> Result<Vec<u32>, DecodeError> {
    let content = decode_frame(bytes)?;
    let mut d = Decbuf::new(content);
    let n = d.be32()? as usize;
    if d.len() != n.saturating_mul(4) {
        return Err(DecodeError::Invalid(format!(
            "postings list claims {n} entries but holds {} bytes",
            d.len()
        )));
    }
    Ok(d.bytes(d.len())?
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// [`decode_postings_list`] straight into a bitmap, also checking that refs strictly
/// increase. Dense stretches are set as bits and handed to roaring a container at a time:
/// on the large lists (`job`, `__name__` of a busy metric) this took the postings share of a
/// cold query's CPU from 256 to 108 perf samples (docs/PERFORMANCE.md), against inserting
/// each ref.
pub fn decode_postings_bitmap(bytes: &[u8]) -> Result<RoaringBitmap, DecodeError> {
    let refs = decode_postings_list(bytes)?;
    if let Some(w) = refs.windows(2).find(|w| w[0] >= w[1]) {
        return Err(DecodeError::Invalid(format!(
            "postings list not in increasing order: {} then {}",
            w[0], w[1]
        )));
    }
    let mut out = RoaringBitmap::new();
    let mut bits = vec![0u8; 1 << 13];
    for group in refs.chunk_by(|a, b| a >> 16 == b >> 16) {
        if group.len() < DENSE_CONTAINER {
            out.append(group.iter().copied())
                .expect("refs checked to be increasing");
            continue;
        }
        bits.fill(0);
        for &r in group {
            let low = (r & 0xffff) as usize;
            bits[low >> 3] |= 1 << (low & 7);
        }
        out |= RoaringBitmap::from_lsb0_bytes(group[0] & !0xffff, &bits);
    }
    Ok(out)
}

/// Appends a framed list; the caller pads to 4 bytes first.
pub fn encode_postings_list(refs: &[u32], e: &mut Encbuf) {
    e.put_be32((4 + refs.len() * 4) as u32);
    let start = e.len();
    e.put_be32(refs.len() as u32);
    for &r in refs {
        e.put_be32(r);
    }
    e.put_crc32c_from(start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(refs: Vec<u32>, pad in 0usize..4) {
            let mut e = Encbuf::new();
            encode_postings_list(&refs, &mut e);
            e.put_bytes(&vec![0; pad]);
            prop_assert_eq!(decode_postings_list(e.as_slice()).unwrap(), refs);
        }

        #[test]
        fn bitmap_holds_the_list(
            mut refs in proptest::collection::vec(0u32..300_000, 0..5000),
            dense in 0u32..3,
        ) {
            // Runs of consecutive refs make containers dense enough for the bit-set path.
            let base = dense * 70_000;
            refs.extend(base..base + 2000);
            refs.sort_unstable();
            refs.dedup();
            let mut e = Encbuf::new();
            encode_postings_list(&refs, &mut e);
            let bitmap = decode_postings_bitmap(e.as_slice()).unwrap();
            prop_assert_eq!(bitmap.iter().collect::<Vec<_>>(), refs);
        }

        #[test]
        fn garbage_never_panics(data: Vec<u8>) {
            let _ = decode_postings_list(&data);
            let _ = decode_postings_bitmap(&data);
        }
    }

    #[test]
    fn flipped_byte_is_a_checksum_error() {
        let mut e = Encbuf::new();
        encode_postings_list(&[1, 2, 3], &mut e);
        e.buf[9] ^= 0x40;
        assert!(matches!(
            decode_postings_list(e.as_slice()),
            Err(DecodeError::Checksum { .. })
        ));
        assert!(decode_postings_list(&e.as_slice()[..10]).is_err());
    }

    #[test]
    fn bitmap_refuses_what_the_list_refuses() {
        let mut e = Encbuf::new();
        encode_postings_list(&[1, 2, 3], &mut e);
        e.buf[9] ^= 0x40;
        assert!(matches!(
            decode_postings_bitmap(e.as_slice()),
            Err(DecodeError::Checksum { .. })
        ));
        let mut e = Encbuf::new();
        encode_postings_list(&[5, 5, 7], &mut e);
        assert!(decode_postings_list(e.as_slice()).is_ok());
        assert!(matches!(
            decode_postings_bitmap(e.as_slice()),
            Err(DecodeError::Invalid(_))
        ));
    }
}
