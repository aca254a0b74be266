//! An engine over series held in memory: the contract's reference implementation, for tests
//! (the conformance suite checks every engine against it) and for anything that needs a
//! StoreAPI over a few known series.
//!
//! Straightforward on purpose: every request scans every series. What it does is what every
//! engine must do: external labels settle matchers and are added to every series (winning
//! over a series' own label of that name), chunks outside the range are left out and so are
//! series with none left, replica labels are dropped, the shard filter applies, equal label
//! sets are merged (identical chunks once), the reply is sorted, and the limits hold.

use std::collections::BTreeMap;

use arc_swap::ArcSwapOption;

use super::labels;
use super::{
    check_range, Component, LabelsQuery, Limits, QueryStats, SeriesEvent, SeriesOut, SeriesQuery,
    SeriesSummary, StoreEngine, StoreError, StoreInfo, StoredChunk,
};
use crate::model::Labels;

/// A StoreAPI engine over series in memory.
pub struct MemoryStore {
    external: Labels,
    /// Own labels (without the external ones) and chunks sorted by min time.
    series: Vec<SeriesOut>,
    limits: Limits,
    /// `Some(reason)` while not ready.
    not_ready: ArcSwapOption<String>,
}

impl MemoryStore {
    /// An engine serving `series` (their own labels) with the `external` labels.
    pub fn new(external: Labels, series: impl IntoIterator<Item = SeriesOut>) -> Self {
        let mut series: Vec<SeriesOut> = series.into_iter().collect();
        for s in &mut series {
            s.chunks.sort_by_key(|c| (c.min_time, c.max_time));
        }
        MemoryStore {
            external,
            series,
            limits: Limits::default(),
            not_ready: ArcSwapOption::empty(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Not ready with `reason` (`None`: ready again).
    pub fn set_not_ready(&self, reason: Option<&str>) {
        self.not_ready
            .store(reason.map(|r| std::sync::Arc::new(r.to_string())));
    }

    fn check_ready(&self) -> Result<(), StoreError> {
        match self.not_ready.load_full() {
            Some(reason) => Err(StoreError::NotReady(reason.to_string())),
            None => Ok(()),
        }
    }

    /// The series matching the request's matchers in its range, each with its full labels
    /// and the chunks in range, merged, sorted; before limits and chunk dropping.
    fn matching(
        &self,
        q_matchers: &[crate::model::Matcher],
        block_matchers: &[crate::model::Matcher],
        (min, max): (i64, i64),
        without: &[String],
    ) -> BTreeMap<Labels, Vec<StoredChunk>> {
        let mut out: BTreeMap<Labels, Vec<StoredChunk>> = BTreeMap::new();
        if !labels::match_all(&self.external, block_matchers) {
            return out;
        }
        let Some(matchers) = labels::settle_external(&self.external, q_matchers) else {
            return out;
        };
        for s in &self.series {
            if !labels::match_all(&s.labels, &matchers) {
                continue;
            }
            let chunks: Vec<StoredChunk> = s
                .chunks
                .iter()
                .filter(|c| c.max_time >= min && c.min_time <= max)
                .cloned()
                .collect();
            if chunks.is_empty() {
                continue;
            }
            let full = Labels::from_pairs(
                s.labels
                    .iter()
                    .filter(|l| self.external.get(&l.name).is_none())
                    .chain(self.external.iter())
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            );
            out.entry(labels::without(full, without))
                .or_default()
                .extend(chunks);
        }
        for chunks in out.values_mut() {
            chunks.sort_by(|a, b| {
                (a.min_time, a.max_time, a.hash).cmp(&(b.min_time, b.max_time, b.hash))
            });
            chunks.dedup_by(|a, b| {
                (a.min_time, a.max_time, a.hash) == (b.min_time, b.max_time, b.hash)
                    && a.data == b.data
            });
        }
        out
    }
}

impl StoreEngine for MemoryStore {
    fn component(&self) -> Component {
        Component::Store
    }

    fn info(&self) -> Result<StoreInfo, StoreError> {
        self.check_ready()?;
        let chunks = self.series.iter().flat_map(|s| &s.chunks);
        let min = chunks.clone().map(|c| c.min_time).min().unwrap_or(i64::MAX);
        let max = chunks.map(|c| c.max_time).max().unwrap_or(i64::MIN);
        Ok(StoreInfo {
            label_sets: vec![self.external.clone()],
            min_time: min,
            max_time: max,
            tsdb_infos: vec![(self.external.clone(), min, max)],
        })
    }

    fn series(
        &self,
        q: &SeriesQuery,
        emit: &mut dyn FnMut(SeriesEvent) -> bool,
    ) -> Result<SeriesSummary, StoreError> {
        self.check_ready()?;
        check_range(q.min_time, q.max_time)?;
        let found = self.matching(
            &q.matchers,
            &q.block_matchers,
            (q.min_time, q.max_time),
            &q.without_replica_labels,
        );
        let found: Vec<(Labels, Vec<StoredChunk>)> = found
            .into_iter()
            .filter(|(l, _)| q.shard.as_ref().is_none_or(|s| s.matches(l)))
            .collect();
        self.limits.check_series(found.len() as u64)?;
        self.limits
            .check_samples(found.iter().map(|(_, c)| c.len() as u64).sum())?;
        let mut stats = QueryStats::default();
        for (labels, chunks) in found {
            if q.limit > 0 && stats.merged_series_count as u64 >= q.limit {
                break;
            }
            let chunks = if q.skip_chunks { Vec::new() } else { chunks };
            stats.merged_series_count += 1;
            stats.merged_chunks_count += chunks.len() as i64;
            if !emit(SeriesEvent::Series(SeriesOut { labels, chunks })) {
                break;
            }
        }
        Ok(SeriesSummary {
            queried_blocks: Vec::new(),
            stats,
        })
    }

    fn label_names(&self, q: &LabelsQuery) -> Result<(Vec<String>, Vec<String>), StoreError> {
        self.labels(q, |l| l.iter().map(|l| l.name.to_string()).collect())
    }

    fn label_values(
        &self,
        name: &str,
        q: &LabelsQuery,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        self.labels(q, |l| l.get(name).map(String::from).into_iter().collect())
    }
}

impl MemoryStore {
    /// Names or values (`pick`) over the series matching `q`, sorted and deduplicated.
    fn labels(
        &self,
        q: &LabelsQuery,
        pick: impl Fn(&Labels) -> Vec<String>,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        self.check_ready()?;
        check_range(q.min_time, q.max_time)?;
        let found = self.matching(
            &q.matchers,
            &q.block_matchers,
            (q.min_time, q.max_time),
            &q.without_replica_labels,
        );
        // Replica labels are gone from the label sets already.
        let mut all: Vec<String> = found.keys().flat_map(&pick).collect();
        all.sort();
        all.dedup();
        if q.limit > 0 {
            all.truncate(q.limit as usize);
        }
        Ok((all, Vec::new()))
    }
}
