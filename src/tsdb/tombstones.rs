//! The `tombstones` file: deleted time ranges per series.
//!
//! ```text
//! ┌────────────────────────────┬─────────────────────┐
//! │ magic(0x0130BA30) <4b>     │ version(1) <1 byte> │
//! ├────────────────────────────┴─────────────────────┤
//! │ series ref <uvarint64> │ mint <varint64> │ maxt <varint64>   (one per interval)
//! │ ...                                              │
//! ├──────────────────────────────────────────────────┤
//! │ CRC32C over the entries <4b>                     │
//! └──────────────────────────────────────────────────┘
//! ```
//!
//! Prometheus writes one entry per interval, in map order; readers group them by series.

use std::collections::BTreeMap;

use super::encoding::{verify_crc32c, Decbuf, DecodeError, Encbuf};

pub const MAGIC_TOMBSTONES: u32 = 0x0130_BA30;
pub const TOMBSTONES_V1: u8 = 1;

/// A deleted time range, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    pub min_time: i64,
    pub max_time: i64,
}

/// Decodes a tombstones file into intervals grouped by series reference, sorted by
/// reference; each series' intervals keep their stored order (they are not merged).
pub fn decode_tombstones(bytes: &[u8]) -> Result<Vec<(u64, Vec<Interval>)>, DecodeError> {
    let mut d = Decbuf::new(bytes);
    let magic = d.be32()?;
    if magic != MAGIC_TOMBSTONES {
        return Err(DecodeError::Invalid(format!(
            "bad tombstones magic {magic:#010x}"
        )));
    }
    let version = d.u8()?;
    if version != TOMBSTONES_V1 {
        return Err(DecodeError::Invalid(format!(
            "unsupported tombstones version {version}"
        )));
    }
    let rest = d.remaining();
    let entries_len = rest.len().checked_sub(4).ok_or(DecodeError::ShortRead {
        needed: 4,
        available: rest.len(),
    })?;
    let mut d = Decbuf::new(rest);
    let entries = d.bytes(entries_len)?;
    verify_crc32c(entries, d.be32()?)?;

    let mut grouped: BTreeMap<u64, Vec<Interval>> = BTreeMap::new();
    let mut d = Decbuf::new(entries);
    while !d.is_empty() {
        let series = d.uvarint()?;
        let min_time = d.varint()?;
        let max_time = d.varint()?;
        grouped
            .entry(series)
            .or_default()
            .push(Interval { min_time, max_time });
    }
    Ok(grouped.into_iter().collect())
}

/// Encodes a tombstones file as Prometheus writes it.
pub fn encode_tombstones(tombstones: &[(u64, Vec<Interval>)]) -> Vec<u8> {
    let mut e = Encbuf::new();
    e.put_be32(MAGIC_TOMBSTONES);
    e.put_u8(TOMBSTONES_V1);
    let start = e.len();
    for (series, intervals) in tombstones {
        for iv in intervals {
            e.put_uvarint(*series);
            e.put_varint(iv.min_time);
            e.put_varint(iv.max_time);
        }
    }
    e.put_crc32c_from(start);
    e.buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_file_is_magic_version_and_zero_crc() {
        let b = encode_tombstones(&[]);
        assert_eq!(b, vec![0x01, 0x30, 0xba, 0x30, 1, 0, 0, 0, 0]);
        assert_eq!(decode_tombstones(&b).unwrap(), vec![]);
    }

    #[test]
    fn round_trip_and_corruption() {
        let t = vec![
            (
                1,
                vec![Interval {
                    min_time: -5,
                    max_time: 10,
                }],
            ),
            (
                7,
                vec![
                    Interval {
                        min_time: 0,
                        max_time: 1,
                    },
                    Interval {
                        min_time: 100,
                        max_time: i64::MAX,
                    },
                ],
            ),
        ];
        let b = encode_tombstones(&t);
        assert_eq!(decode_tombstones(&b).unwrap(), t);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(decode_tombstones(&c).is_err(), "flip at {i} undetected");
        }
        for n in 0..b.len() {
            assert!(decode_tombstones(&b[..n]).is_err());
        }
    }

    #[test]
    fn entries_are_grouped_by_series() {
        let a = Interval {
            min_time: 1,
            max_time: 2,
        };
        let b = Interval {
            min_time: 3,
            max_time: 4,
        };
        let bytes = encode_tombstones(&[(9, vec![a]), (2, vec![a]), (9, vec![b])]);
        assert_eq!(
            decode_tombstones(&bytes).unwrap(),
            vec![(2, vec![a]), (9, vec![a, b])]
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data: Vec<u8>) {
            let _ = decode_tombstones(&data);
        }
    }
}
