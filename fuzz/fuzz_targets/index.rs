//! Arbitrary bytes as a whole index file: open, verify, and every kind of lookup. Errors are
//! fine; a panic, an abort or an unbounded allocation is a bug.
#![no_main]

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stele::tsdb::index::{
    decode_postings_list, decode_series_entry, split_series_entry, visit_postings_offset_table,
    IndexReader, IndexVersion, Toc,
};
use stele::tsdb::source::ReadAt;

/// Upper bound on label value / postings lookups per input, so one input stays fast.
const LOOKUP_BUDGET: usize = 300;
/// Upper bound on series reads per input.
const SERIES_BUDGET: usize = 200;

/// A few refs derived from the input bytes: 8-byte words from both ends.
fn arbitrary_refs(data: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let word = |c: &[u8]| {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(b)
    };
    data.chunks(8)
        .take(4)
        .chain(data.rchunks(8).take(4))
        .map(word)
}

fuzz_target!(|data: &[u8]| {
    // The pure section decoders, on the raw bytes.
    let _ = Toc::decode(data);
    let _ = decode_postings_list(data);
    let _ = split_series_entry(data);
    let _ = decode_series_entry(data, IndexVersion::V1);
    let _ = decode_series_entry(data, IndexVersion::V2);
    let mut entries = 0;
    let _ = visit_postings_offset_table(data, |_| {
        entries += 1;
        Ok(if entries < 10_000 {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        })
    });

    let src: Arc<dyn ReadAt> = Arc::new(Bytes::copy_from_slice(data));
    let Ok(r) = IndexReader::open(src) else {
        return;
    };
    let _ = r.verify();

    let mut budget = LOOKUP_BUDGET;
    let names = r.label_names().unwrap_or_default();
    'names: for name in names
        .iter()
        .chain([&String::new(), &"\u{0}nope".to_string()])
    {
        if budget == 0 {
            break;
        }
        budget -= 1;
        let values = r.label_values(name).unwrap_or_default();
        for value in values.iter().take(16) {
            if budget == 0 {
                break 'names;
            }
            budget -= 1;
            let _ = r.postings_range(name, value);
            let _ = r.postings(name, value);
        }
        // An absent value sorts between / after present ones.
        let _ = r.postings(name, "\u{10FFFF}");
    }

    let all = r.all_postings().unwrap_or_default();
    for &s in all.iter().take(SERIES_BUDGET) {
        let _ = r.series(s);
    }
    let series_words = r.toc().offsets().into_iter().max().unwrap_or(0) / 16 + 1;
    for x in arbitrary_refs(data) {
        let _ = r.series(x);
        let _ = r.series(x % series_words);
        let _ = r.series_refs(x % (data.len() as u64 + 1));
        let _ = r.symbol(x as u32);
        let _ = r.symbol((x % (u64::from(r.symbol_count()) + 1)) as u32);
    }
});
