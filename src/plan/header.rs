//! What a block's index header costs a store, under stele's sampling. Pure arithmetic over
//! the figures the inventory reads.
//!
//! On disk the header is the file [`crate::index_header::build`] writes (the inventory builds
//! those exact bytes, so that figure is exact). Once opened, the whole mapping is resident:
//! opening checks the CRCs of the file and of both tables. On the heap the reader
//! keeps one `u32` per 32 symbols and, per label name, a `NameSamples` with every 32nd value
//! (and the last) as a `(String, u32)`.

use crate::tsdb::index::postings_table::POSTINGS_SAMPLE_FACTOR;
use crate::tsdb::index::symbols::SYMBOL_FACTOR;

/// `NameSamples`: a `String` and a `Vec`.
const NAME_ENTRY: u64 = 48;
/// `(String, u32)` with padding.
const SAMPLE_ENTRY: u64 = 32;

/// Heap bytes of one allocation of `len` bytes: glibc rounds to 16 with an 8-byte header;
/// empty strings do not allocate.
fn allocation(len: u64) -> u64 {
    if len == 0 {
        0
    } else {
        (len + 8).div_ceil(16) * 16
    }
}

/// Heap bytes a loaded header keeps, given the symbol count and, per label name in table
/// order (the all-postings name "" included), the name and its values.
pub fn heap_bytes<'a>(
    symbols: u64,
    names: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>,
) -> u64 {
    let mut total = allocation(symbols.div_ceil(SYMBOL_FACTOR as u64) * 4);
    for (name, values) in names {
        total += NAME_ENTRY + allocation(name.len() as u64);
        let n = values.len();
        let mut sampled = 0u64;
        for (i, v) in values.iter().enumerate() {
            // Every 32nd value, and the last one (the reader adds it when not sampled).
            if i % POSTINGS_SAMPLE_FACTOR == 0 || i + 1 == n {
                sampled += 1;
                total += allocation(v.len() as u64);
            }
        }
        total += allocation(sampled * SAMPLE_ENTRY);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_counts_every_32nd_value_and_the_last() {
        // 33 values: samples 0, 32 (also the last). 34 values: 0, 32, 33.
        let v33: Vec<String> = (0..33).map(|i| format!("{i:07}")).collect();
        let v34: Vec<String> = (0..34).map(|i| format!("{i:07}")).collect();
        fn refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        // 7-byte values: 16 bytes each; 2 samples: 64 -> 80; 3 samples: 96 -> 112.
        let h33 = heap_bytes(0, [("a", refs(&v33))]);
        let h34 = heap_bytes(0, [("a", refs(&v34))]);
        assert_eq!(h33, NAME_ENTRY + 16 + 2 * 16 + 80);
        assert_eq!(h34, NAME_ENTRY + 16 + 3 * 16 + 112);
        // The all-postings name: no name or value allocation, one sample.
        assert_eq!(heap_bytes(0, [("", vec![""])]), NAME_ENTRY + 48);
        // 64 symbols: two u32 samples in one 16-byte allocation.
        assert_eq!(heap_bytes(64, []), 16);
    }
}
