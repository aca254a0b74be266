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

use super::decode_frame;
use crate::tsdb::encoding::{Decbuf, DecodeError, Encbuf};

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
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(d.be32()?);
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
        fn garbage_never_panics(data: Vec<u8>) {
            let _ = decode_postings_list(&data);
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
}
