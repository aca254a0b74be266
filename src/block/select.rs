//! Matchers to series references over one index, with Prometheus' semantics. The plan
//! combines any [`RefSet`]: sorted lists for the tools, roaring bitmaps in the store.

use crate::model::Matcher;
use crate::tsdb::index::IndexReader;
use crate::tsdb::Result;

/// The series whose label sets satisfy all `matchers`, sorted by reference (= label order).
pub fn postings_for_matchers(index: &IndexReader, matchers: &[Matcher]) -> Result<Vec<u64>> {
    let plan = PostingsPlan::new(index, matchers)?;
    let lists = plan
        .keys()
        .iter()
        .map(|(n, v)| index.postings(n, v))
        .collect::<Result<Vec<_>>>()?;
    Ok(plan.combine(lists))
}

/// Which postings lists answer a set of matchers, and how to combine them.
///
/// Matchers that select the empty value (`l=""`, `l!="x"`, `l=~".*"`) cannot be answered
/// by their own postings, since series lacking `l` appear in none; they subtract the postings
/// of their inverse instead, starting from all series if no positive matcher narrows first.
///
/// Planning needs only label values (the index header); fetching the lists is up to the
/// caller, so a remote reader can fetch them all in one batch.
#[derive(Debug, Default)]
pub struct PostingsPlan {
    /// `(label name, value)` of every list to fetch, grouped by matcher.
    keys: Vec<(String, String)>,
    /// Per matcher: subtract (rather than intersect) its group, and its range in `keys`.
    groups: Vec<(bool, std::ops::Range<usize>)>,
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
            plan.groups.push((false, start..plan.keys.len()));
        }
        if positive.is_empty() {
            plan.keys.push((String::new(), String::new()));
            plan.groups.push((false, 0..1));
        }
        for m in subtractive {
            let start = plan.keys.len();
            plan.add_values(index, &m.inverse())?;
            plan.groups.push((true, start..plan.keys.len()));
        }
        Ok(plan)
    }

    fn add_values(&mut self, index: &IndexReader, m: &Matcher) -> Result<()> {
        if let Some(values) = m.selected_values() {
            // Looked up directly; values the index lacks find no list.
            let name = &m.name;
            self.keys
                .extend(values.into_iter().map(|v| (name.clone(), v.to_string())));
            return Ok(());
        }
        if m.matches_nothing() {
            return Ok(());
        }
        for value in index.label_values(&m.name)? {
            if m.matches(&value) {
                self.keys.push((m.name.clone(), value));
            }
        }
        Ok(())
    }

    /// The lists to fetch, in the order [`PostingsPlan::combine`] expects them.
    pub fn keys(&self) -> &[(String, String)] {
        &self.keys
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
        for (subtract, range) in &self.groups {
            let group = S::union_all(
                lists[range.clone()]
                    .iter_mut()
                    .map(std::mem::take)
                    .collect(),
            );
            acc = Some(match (acc, subtract) {
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
            let plan = PostingsPlan {
                keys: vec![(String::new(), String::new()); a.len() + b.len()],
                groups: vec![(false, 0..a.len()), (subtract, a.len()..a.len() + b.len())],
                empty: false,
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
