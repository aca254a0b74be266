//! Range planning for reads from the bucket: many small wanted ranges become few requests.
//!
//! Postings lists, series entries and chunks are each read as a sorted set of ranges. Ranges
//! closer than the source's [`ReadAt::merge_gap`] are merged into one request (for a remote
//! bucket a request costs more than a few KiB of extra bytes; for a local one it does not),
//! requests run concurrently, and each wanted range is then sliced out of the fetched buffers
//! without copying.

use std::ops::Range;

use bytes::Bytes;

use crate::tsdb::source::{ReadAt, ReadError};

/// What a batch of reads cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FetchCost {
    pub requests: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for FetchCost {
    fn add_assign(&mut self, o: Self) {
        self.requests += o.requests;
        self.bytes += o.bytes;
    }
}

/// Merges ranges (sorted by start) whose gaps are at most `max_gap`.
pub fn coalesce(sorted: &[Range<u64>], max_gap: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(max_gap) => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r.clone()),
        }
    }
    out
}

/// The coalesced requests that `wanted` (sorted by start) would cost, without reading.
pub fn plan_cost(wanted: &[Range<u64>], max_gap: u64) -> FetchCost {
    let merged = coalesce(wanted, max_gap);
    FetchCost {
        requests: merged.len() as u64,
        bytes: merged.iter().map(|r| r.end - r.start).sum(),
    }
}

/// Reads every range of `wanted` (sorted by start) from `src` with coalesced requests.
pub fn read_coalesced(
    src: &dyn ReadAt,
    wanted: &[Range<u64>],
) -> Result<(Vec<Bytes>, FetchCost), ReadError> {
    debug_assert!(wanted.windows(2).all(|w| w[0].start <= w[1].start));
    let merged = coalesce(wanted, src.merge_gap());
    if merged.is_empty() {
        return Ok((Vec::new(), FetchCost::default()));
    }
    let buffers = src.read_ranges(&merged)?;
    let cost = FetchCost {
        requests: merged.len() as u64,
        bytes: merged.iter().map(|r| r.end - r.start).sum(),
    };
    Ok((slice_coalesced(wanted, &merged, &buffers), cost))
}

/// Each range of `wanted` (sorted by start) sliced, without copying, out of `buffers`, the
/// reads of `merged` (`wanted` coalesced).
pub fn slice_coalesced(
    wanted: &[Range<u64>],
    merged: &[Range<u64>],
    buffers: &[Bytes],
) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(wanted.len());
    let mut i = 0;
    for w in wanted {
        while merged[i].end < w.end {
            i += 1;
        }
        let base = merged[i].start;
        out.push(buffers[i].slice((w.start - base) as usize..(w.end - base) as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_close_ranges_only() {
        let r = coalesce(&[0..10, 12..20, 100..110, 105..107, 200..201], 5);
        assert_eq!(r, vec![0..20, 100..110, 200..201]);
        assert_eq!(
            plan_cost(&[0..10, 12..20], 1),
            FetchCost {
                requests: 2,
                bytes: 18
            }
        );
    }

    /// In-memory bytes with a chosen merge gap.
    struct Gapped(Bytes, u64);

    impl ReadAt for Gapped {
        fn len(&self) -> u64 {
            ReadAt::len(&self.0)
        }
        fn read_at(&self, range: Range<u64>) -> Result<Bytes, ReadError> {
            self.0.read_at(range)
        }
        fn merge_gap(&self) -> u64 {
            self.1
        }
    }

    proptest! {
        #[test]
        fn every_wanted_range_reads_its_own_bytes(
            mut starts in proptest::collection::vec((0u64..4000, 0u64..300), 0..40),
            gap in 0u64..600,
        ) {
            let data: Bytes = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>().into();
            starts.sort();
            let wanted: Vec<Range<u64>> = starts.iter().map(|&(s, n)| s..(s + n).min(5000)).collect();
            let (got, cost) = read_coalesced(&Gapped(data.clone(), gap), &wanted).unwrap();
            prop_assert_eq!(cost, plan_cost(&wanted, gap));
            prop_assert_eq!(got.len(), wanted.len());
            for (g, w) in got.iter().zip(&wanted) {
                prop_assert_eq!(&g[..], &data[w.start as usize..w.end as usize]);
            }
            prop_assert!(cost.requests as usize <= wanted.len());
        }
    }
}
