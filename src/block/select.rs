//! Matchers to series references over one index, with Prometheus' semantics. The plan
//! combines any [`RefSet`]: sorted lists for the tools, roaring bitmaps in the store.

use std::ops::Range;

use crate::model::Matcher;
use crate::tsdb::index::IndexReader;
use crate::tsdb::Result;

/// The series whose label sets satisfy all `matchers`, sorted by reference (= label order).
pub fn postings_for_matchers(index: &IndexReader, matchers: &[Matcher]) -> Result<Vec<u64>> {
    let plan = PostingsPlan::new(index, matchers)?;
    let lists = plan
        .keys()
        .iter()
        .map(|k| index.postings(&k.name, &k.value))
        .collect::<Result<Vec<_>>>()?;
    Ok(plan.combine(lists))
}

/// Bytes of one entry of a postings list (index v2: a big-endian `u32`).
const POSTING_BYTES: u64 = 4;

/// A series read only to be dropped by a filter costs its entry's bytes plus about this many
/// bytes of postings fetched and decoded: decoding the entry and resolving its labels takes
/// ~2.2 µs (benches/index.rs, `series_lookup`), about what fetching ~220 bytes from object
/// storage at 100 MB/s and decoding them takes.
const SERIES_DECODE_BYTES: u64 = 256;

/// One postings list to fetch: a label pair and where its list lies, if the index has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingsKey {
    pub name: String,
    pub value: String,
    pub range: Option<Range<u64>>,
}

impl PostingsKey {
    fn bytes(&self) -> u64 {
        self.range.as_ref().map_or(0, |r| r.end - r.start)
    }
}

/// The lists of one matcher (or of all series), combined by union.
#[derive(Debug, Clone)]
struct Group {
    /// Subtract (rather than intersect) the union of the lists.
    subtract: bool,
    keys: Range<usize>,
    /// `None` for the all-postings group.
    matcher: Option<Matcher>,
}

/// Which postings lists answer a set of matchers, and how to combine them.
///
/// Matchers that select the empty value (`l=""`, `l!="x"`, `l=~".*"`) cannot be answered
/// by their own postings, since series lacking `l` appear in none; they subtract the postings
/// of their inverse instead, starting from all series if no positive matcher narrows first.
///
/// Planning needs only the postings offset table (the index header); fetching the lists is
/// up to the caller, so a remote reader can fetch them all in one batch. With
/// [`PostingsPlan::defer_expensive`], matchers whose lists cost more than they would save are
/// left out of the fetch and become [`PostingsPlan::filters`] on the series' labels.
#[derive(Debug, Default)]
pub struct PostingsPlan {
    /// Every list to fetch, grouped by matcher.
    keys: Vec<PostingsKey>,
    groups: Vec<Group>,
    /// Matchers answered by the series' labels rather than by postings.
    filters: Vec<Matcher>,
    /// A positive matcher matches no value: nothing to fetch, no series.
    empty: bool,
}

impl PostingsPlan {
    pub fn new(index: &IndexReader, matchers: &[Matcher]) -> Result<Self> {
        let (subtractive, positive): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| m.matches_empty());
        let mut plan = PostingsPlan::default();
        for m in &positive {
            let start = plan.keys.len();
            plan.add_values(index, m)?;
            if plan.keys.len() == start {
                return Ok(PostingsPlan {
                    empty: true,
                    ..Default::default()
                });
            }
            plan.push_group(false, start, Some((*m).clone()));
        }
        if positive.is_empty() {
            let range = index.postings_range("", "")?;
            plan.keys.push(PostingsKey {
                name: String::new(),
                value: String::new(),
                range,
            });
            plan.push_group(false, 0, None);
        }
        for m in subtractive {
            let start = plan.keys.len();
            plan.add_values(index, &m.inverse())?;
            plan.push_group(true, start, Some(m.clone()));
        }
        Ok(plan)
    }

    fn push_group(&mut self, subtract: bool, start: usize, matcher: Option<Matcher>) {
        self.groups.push(Group {
            subtract,
            keys: start..self.keys.len(),
            matcher,
        });
    }

    fn add_values(&mut self, index: &IndexReader, m: &Matcher) -> Result<()> {
        if let Some(values) = m.selected_values() {
            // Looked up directly; values the index lacks find no list.
            for value in values {
                let range = index.postings_range(&m.name, value)?;
                self.keys.push(PostingsKey {
                    name: m.name.clone(),
                    value: value.to_string(),
                    range,
                });
            }
            return Ok(());
        }
        if m.matches_nothing() {
            return Ok(());
        }
        for (value, range) in index.postings_ranges(&m.name)? {
            if m.matches(&value) {
                self.keys.push(PostingsKey {
                    name: m.name.clone(),
                    value,
                    range: Some(range),
                });
            }
        }
        Ok(())
    }

    /// The cost model: leaves out of the fetch the groups whose postings cost more than the
    /// series they would rule out, and keeps their matchers as [`Self::filters`].
    ///
    /// The cheapest positive group (or all series) is always fetched; it bounds the
    /// candidates. Then, cheapest first, each other group is fetched when its bytes are below
    /// what reading the series it is expected to rule out would cost (matchers taken as
    /// independent: a group of `g` of the `series` rules out a share `1 - g/series` of the
    /// candidates, a subtracted one `g/series`). So `i!=""` or `i=~".+"` over a label every
    /// series has, next to a selective `n="1"`, becomes a filter: it rules nothing out.
    pub fn defer_expensive(&mut self, series: u64, series_entry_bytes: u64) {
        if self.empty || self.groups.len() < 2 {
            return;
        }
        let total = series.max(1) as f64;
        let bytes = |g: &Group| -> u64 {
            self.keys[g.keys.clone()]
                .iter()
                .map(PostingsKey::bytes)
                .sum()
        };
        let cardinality = |b: u64| (b / POSTING_BYTES) as f64;
        let series_cost = (series_entry_bytes + SERIES_DECODE_BYTES) as f64;

        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        // Positive groups first (the base is the cheapest of them), each kind cheapest first.
        order.sort_by_key(|&i| (self.groups[i].subtract, bytes(&self.groups[i])));
        let mut fetch = vec![false; self.groups.len()];
        fetch[order[0]] = true;
        let mut candidates = cardinality(bytes(&self.groups[order[0]])).min(total);
        for &i in &order[1..] {
            let g = &self.groups[i];
            let b = bytes(g);
            let share = (cardinality(b) / total).min(1.0);
            let ruled_out = candidates * if g.subtract { share } else { 1.0 - share };
            if b as f64 <= ruled_out * series_cost {
                fetch[i] = true;
                candidates -= ruled_out;
            }
        }
        if fetch.iter().all(|&f| f) {
            return;
        }

        let old_keys = std::mem::take(&mut self.keys);
        let old_groups = std::mem::take(&mut self.groups);
        for (g, fetched) in old_groups.into_iter().zip(fetch) {
            if !fetched {
                self.filters.extend(g.matcher);
                continue;
            }
            let start = self.keys.len();
            self.keys.extend_from_slice(&old_keys[g.keys]);
            self.push_group(g.subtract, start, g.matcher);
        }
    }

    /// The lists to fetch, in the order [`PostingsPlan::combine`] expects them.
    pub fn keys(&self) -> &[PostingsKey] {
        &self.keys
    }

    /// Matchers the combined postings do not answer: apply them to the series' labels.
    pub fn filters(&self) -> &[Matcher] {
        &self.filters
    }

    /// The matchers the combined postings answer (those not turned into filters): what a
    /// cache of the combined result is keyed by.
    pub fn fetched_matchers(&self) -> Vec<Matcher> {
        self.groups
            .iter()
            .filter_map(|g| g.matcher.clone())
            .collect()
    }

    /// True when the matchers select nothing whatever the lists hold.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Combines the fetched lists (one per key) into the matching references.
    pub fn combine<S: RefSet>(&self, mut lists: Vec<S>) -> S {
        if self.empty {
            return S::default();
        }
        let mut acc: Option<S> = None;
        for g in &self.groups {
            let group = S::union_all(
                lists[g.keys.clone()]
                    .iter_mut()
                    .map(std::mem::take)
                    .collect(),
            );
            acc = Some(match (acc, g.subtract) {
                (None, _) => group,
                (Some(a), false) => a.intersect(&group),
                (Some(a), true) => a.subtract(&group),
            });
            if acc.as_ref().is_some_and(RefSet::is_empty) {
                return S::default();
            }
        }
        acc.unwrap_or_default()
    }
}

/// Whether a series' labels satisfy every filter (a missing label reads as "").
pub fn matches_filters<'a>(
    filters: &[Matcher],
    labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> bool {
    filters.iter().all(|m| {
        let value = labels
            .clone()
            .find(|(n, _)| *n == m.name)
            .map_or("", |(_, v)| v);
        m.matches(value)
    })
}

/// A set of series references the plan can combine.
pub trait RefSet: Default {
    fn union_all(sets: Vec<Self>) -> Self;
    fn intersect(&self, other: &Self) -> Self;
    fn subtract(&self, other: &Self) -> Self;
    fn is_empty(&self) -> bool;
}

/// Sorted, deduplicated references.
impl RefSet for Vec<u64> {
    fn union_all(sets: Vec<Self>) -> Self {
        union(sets)
    }
    fn intersect(&self, other: &Self) -> Self {
        intersect(self, other)
    }
    fn subtract(&self, other: &Self) -> Self {
        subtract_sorted(self, other)
    }
    fn is_empty(&self) -> bool {
        <[u64]>::is_empty(self)
    }
}

/// References as stored in postings lists (32 bits: series offset / 16 in index v2).
impl RefSet for roaring::RoaringBitmap {
    fn union_all(sets: Vec<Self>) -> Self {
        roaring::MultiOps::union(sets)
    }
    fn intersect(&self, other: &Self) -> Self {
        self & other
    }
    fn subtract(&self, other: &Self) -> Self {
        self - other
    }
    fn is_empty(&self) -> bool {
        roaring::RoaringBitmap::is_empty(self)
    }
}

/// The matchers as one unambiguous, order-independent text: a cache key that two different
/// matcher sets can never share.
pub fn matchers_key(matchers: &[Matcher]) -> String {
    let mut parts: Vec<String> = matchers
        .iter()
        .map(|m| format!("{:?}{}{:?}", m.name, m.kind.operator(), m.value))
        .collect();
    parts.sort();
    parts.dedup();
    parts.join(",")
}

pub(crate) fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

pub(crate) fn subtract_sorted(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

pub(crate) fn union(mut lists: Vec<Vec<u64>>) -> Vec<u64> {
    if lists.len() == 1 {
        return lists.pop().unwrap_or_default();
    }
    let mut all: Vec<u64> = lists.into_iter().flatten().collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5]), vec![3, 5]);
        assert_eq!(subtract_sorted(&[1, 3, 5, 7], &[3, 4, 5]), vec![1, 7]);
        assert_eq!(union(vec![vec![5, 1], vec![3, 1]]), vec![1, 3, 5]);
    }

    #[test]
    fn bitmaps_and_lists_combine_alike() {
        use proptest::prelude::*;
        use roaring::RoaringBitmap;
        let sets =
            proptest::collection::vec(proptest::collection::btree_set(0u32..200, 0..40), 1..6);
        proptest!(|(a in sets.clone(), b in sets, subtract: bool)| {
            let key = PostingsKey { name: String::new(), value: String::new(), range: None };
            let plan = PostingsPlan {
                keys: vec![key; a.len() + b.len()],
                groups: vec![
                    Group { subtract: false, keys: 0..a.len(), matcher: None },
                    Group { subtract, keys: a.len()..a.len() + b.len(), matcher: None },
                ],
                ..Default::default()
            };
            let lists: Vec<Vec<u64>> = a.iter().chain(&b)
                .map(|s| s.iter().map(|&x| u64::from(x)).collect())
                .collect();
            let bitmaps: Vec<RoaringBitmap> = a.iter().chain(&b)
                .map(|s| s.iter().copied().collect())
                .collect();
            let from_lists = plan.combine(lists);
            let from_bitmaps: Vec<u64> = plan.combine(bitmaps).iter().map(u64::from).collect();
            prop_assert_eq!(from_lists, from_bitmaps);
        });
    }

    #[test]
    fn matcher_keys_ignore_order_and_never_collide() {
        use crate::model::{MatchKind, Matcher};
        let m = |n: &str, k, v: &str| Matcher::new(k, n, v).unwrap();
        let a = [
            m("a", MatchKind::Equal, "1"),
            m("b", MatchKind::Regex, "x|y"),
        ];
        let b = [
            m("b", MatchKind::Regex, "x|y"),
            m("a", MatchKind::Equal, "1"),
        ];
        assert_eq!(matchers_key(&a), matchers_key(&b));
        // A value containing what looks like a separator stays one value.
        let c = [m("a", MatchKind::Equal, "1\",b=~\"x|y")];
        assert_ne!(matchers_key(&a), matchers_key(&c));
        assert_ne!(
            matchers_key(&[m("a", MatchKind::Equal, "1")]),
            matchers_key(&[m("a", MatchKind::NotEqual, "1")])
        );
    }
}
