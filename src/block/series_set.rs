//! Series selected across several local blocks, merged by label set in Prometheus order.

use std::cmp::Ordering;

use crate::model::{Labels, Matcher};
use crate::tsdb::index::ChunkMeta;
use crate::tsdb::Result;

use super::LocalBlock;

/// One series with its float samples.
pub type SeriesSamples = (Labels, Vec<(i64, f64)>);

struct Cursor<'a> {
    block: &'a LocalBlock,
    refs: std::vec::IntoIter<u64>,
    current: Option<(u64, Labels, Vec<ChunkMeta>)>,
}

impl Cursor<'_> {
    fn advance(&mut self) -> Result<()> {
        self.current = match self.refs.next() {
            Some(r) => {
                let (labels, chunks) = self.block.series(r)?;
                Some((r, labels, chunks))
            }
            None => None,
        };
        Ok(())
    }
}

/// Streams `(labels, samples)` for every series matching `matchers` in any of `blocks`, in
/// label order; samples within `[min_time, max_time]`, merged over blocks, duplicates
/// (same timestamp) dropped. Series without samples in the range are skipped.
pub struct MergedSeries<'a> {
    cursors: Vec<Cursor<'a>>,
    min_time: i64,
    max_time: i64,
}

impl<'a> MergedSeries<'a> {
    pub fn new(
        blocks: &'a [LocalBlock],
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
    ) -> Result<Self> {
        let mut cursors = Vec::new();
        for block in blocks {
            if block.meta.max_time <= min_time || block.meta.min_time > max_time {
                continue;
            }
            let mut c = Cursor {
                block,
                refs: block.select(matchers)?.into_iter(),
                current: None,
            };
            c.advance()?;
            cursors.push(c);
        }
        Ok(MergedSeries {
            cursors,
            min_time,
            max_time,
        })
    }

    fn next_series(&mut self) -> Result<Option<SeriesSamples>> {
        loop {
            let mut smallest: Option<&Labels> = None;
            for c in &self.cursors {
                if let Some((_, l, _)) = &c.current {
                    if smallest.is_none_or(|s| l.cmp(s) == Ordering::Less) {
                        smallest = Some(l);
                    }
                }
            }
            let Some(labels) = smallest.cloned() else {
                return Ok(None);
            };
            let mut samples = Vec::new();
            for c in &mut self.cursors {
                let matches = matches!(&c.current, Some((_, l, _)) if *l == labels);
                if matches {
                    if let Some((r, _, chunks)) = c.current.take() {
                        samples
                            .extend(c.block.samples(r, &chunks, self.min_time, self.max_time)?.0);
                    }
                    c.advance()?;
                }
            }
            samples.sort_by_key(|s| s.0);
            samples.dedup_by_key(|s| s.0);
            if !samples.is_empty() {
                return Ok(Some((labels, samples)));
            }
        }
    }
}

impl Iterator for MergedSeries<'_> {
    type Item = Result<SeriesSamples>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_series().transpose()
    }
}
