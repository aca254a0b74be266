//! Arbitrary bytes as a chunk segment file (and, since the same bytes cost nothing to reuse, as
//! a tombstones file, a meta.json and a deletion mark). Errors are fine; panics are bugs.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stele::tsdb::chunks::{
    decode_chunk_record, decode_xor, verify_segment, ChunkEncoding, ChunkReader, XorIter,
    SEGMENT_HEADER_SIZE,
};
use stele::tsdb::meta::{BlockMeta, DeletionMark};
use stele::tsdb::source::ReadAt;
use stele::tsdb::tombstones::decode_tombstones;

/// Upper bound on chunk reads per input.
const READ_BUDGET: usize = 128;

fuzz_target!(|data: &[u8]| {
    let _ = decode_tombstones(data);
    let _ = BlockMeta::parse("meta.json", data);
    let _ = DeletionMark::parse("deletion-mark.json", data);
    let _ = decode_chunk_record(data);

    let seg = Bytes::copy_from_slice(data);
    let _ = verify_segment(&seg);

    // Refs of the records a sequential walk finds, as a reader given a correct index would use.
    let mut refs = Vec::new();
    let mut off = SEGMENT_HEADER_SIZE;
    while let Some(rest) = data.get(off..) {
        if rest.is_empty() || refs.len() >= READ_BUDGET / 2 {
            break;
        }
        match decode_chunk_record(rest) {
            Ok((_, _, total)) => {
                refs.push(off as u64);
                off += total;
            }
            Err(_) => break,
        }
    }
    // Plus arbitrary ones: words from the input, either whole (any segment index) or in the
    // second segment, and every small offset.
    for c in data.chunks(8).take(8) {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        let r = u64::from_le_bytes(b);
        refs.push(r);
        refs.push((1 << 32) | (r as u32 as u64 % (data.len() as u64 + 1)));
    }
    refs.extend(0..(data.len() as u64).min(24));
    refs.push(u64::MAX);
    refs.push(u64::from(u32::MAX));

    let segs: Vec<Arc<dyn ReadAt>> = vec![Arc::new(seg.clone()), Arc::new(seg)];
    let Ok(cr) = ChunkReader::new(segs) else {
        return;
    };
    let _ = cr.segment_len(cr.segment_count());
    for r in refs.into_iter().take(READ_BUDGET) {
        let Ok(chunk) = cr.chunk(r) else {
            continue;
        };
        if chunk.encoding == ChunkEncoding::Xor {
            let _ = decode_xor(&chunk.data);
            if let Ok(it) = XorIter::new(&chunk.data) {
                let n = it.num_samples();
                assert!(it.count() <= usize::from(n));
            }
        }
    }
});
