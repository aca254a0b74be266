//! Matchers to series references over one index, with Prometheus' semantics. A plain sorted
//! list implementation for the tools; the store gateway's planner uses roaring bitmaps.

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
        if m.kind == crate::model::MatchKind::Equal {
            self.keys.push((m.name.clone(), m.value.clone()));
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

    /// Combines the fetched lists (one per key, sorted) into the matching references.
    pub fn combine(&self, mut lists: Vec<Vec<u64>>) -> Vec<u64> {
        if self.empty {
            return Vec::new();
        }
        let mut acc: Option<Vec<u64>> = None;
        for (subtract, range) in &self.groups {
            let group = union(
                lists[range.clone()]
                    .iter_mut()
                    .map(std::mem::take)
                    .collect(),
            );
            acc = Some(match (acc, subtract) {
                (None, _) => group,
                (Some(a), false) => intersect(&a, &group),
                (Some(a), true) => subtract_sorted(&a, &group),
            });
            if acc.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        acc.unwrap_or_default()
    }
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
}
