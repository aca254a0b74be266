//! XOR chunks: arbitrary bytes through the decoder (must not panic), and a structured round
//! trip: the input as (timestamp, value bits) samples, encoded and decoded bit-exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele::tsdb::chunks::{decode_xor, XorEncoder, XorIter};

fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// Mode 0: each 16 bytes are a raw (t, v bits) pair. Mode 1: each 16 bytes are a small timestamp
/// delta and an XOR of the previous value with a shifted word, the shape of real data, so the
/// encoder's compact cases (small delta-of-deltas, reused value windows) get exercised too.
fn samples(data: &[u8]) -> Vec<(i64, u64)> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    let (mut t, mut v) = (0i64, 0u64);
    rest.chunks(16)
        .map(|c| {
            let (a, b) = c.split_at(c.len().min(8));
            let (a, b) = (word(a), word(b));
            if mode & 1 == 0 {
                (a as i64, b)
            } else {
                t = t.wrapping_add((a as i64) >> (a as u8 & 63));
                v ^= b.rotate_left((b >> 58) as u32) >> ((b >> 52) & 63);
                (t, v)
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes: never more samples than the header claims, and decode_xor agrees with
    // the iterator.
    if let Ok(mut it) = XorIter::new(data) {
        let n = usize::from(it.num_samples());
        let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        assert!(got.len() <= n);
        match decode_xor(data) {
            Ok(all) => {
                assert!(it.err().is_none());
                assert_eq!(all.len(), n);
                let all: Vec<(i64, u64)> = all.into_iter().map(|(t, v)| (t, v.to_bits())).collect();
                assert_eq!(all, got);
            }
            Err(_) => assert!(it.err().is_some() || got.len() < n),
        }
    } else {
        assert!(decode_xor(data).is_err());
    }

    // Round trip.
    let input = samples(data);
    let mut enc = XorEncoder::new();
    for &(t, v) in &input {
        if enc.is_full() {
            break;
        }
        enc.append(t, f64::from_bits(v));
    }
    let n = usize::from(enc.num_samples());
    assert_eq!(n, input.len().min(usize::from(u16::MAX)));
    let bytes = enc.bytes();
    let decoded: Vec<(i64, u64)> = decode_xor(bytes)
        .expect("decoding what the encoder wrote")
        .into_iter()
        .map(|(t, v)| (t, v.to_bits()))
        .collect();
    assert_eq!(decoded.as_slice(), &input[..n]);
    let it = XorIter::new(bytes).expect("header");
    assert!(it
        .map(|(t, v)| (t, v.to_bits()))
        .eq(input[..n].iter().copied()));
});
