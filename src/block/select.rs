//! Matchers to series references over one index, with Prometheus' semantics. A plain sorted
//! list implementation for the tools; the store gateway's planner uses roaring bitmaps.

use crate::model::Matcher;
use crate::tsdb::index::IndexReader;
use crate::tsdb::Result;

/// The series whose label sets satisfy all `matchers`, sorted by reference (= label order).
///
/// Matchers that select the empty value (`l=""`, `l!="x"`, `l=~".*"`) cannot be answered
/// by their own postings, since series lacking `l` appear in none; they subtract the postings
/// of their inverse instead, starting from all series if no positive matcher narrows first.
pub fn postings_for_matchers(index: &IndexReader, matchers: &[Matcher]) -> Result<Vec<u64>> {
    let (subtractive, positive): (Vec<&Matcher>, Vec<&Matcher>) =
        matchers.iter().partition(|m| m.matches_empty());
    let mut result: Option<Vec<u64>> = None;
    for m in positive {
        let list = postings_for_values(index, m)?;
        result = Some(match result {
            None => list,
            Some(acc) => intersect(&acc, &list),
        });
        if result.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
    }
    let mut acc = match result {
        Some(acc) => acc,
        None => index.all_postings()?,
    };
    for m in subtractive {
        let inverse = m.inverse();
        acc = subtract(&acc, &postings_for_values(index, &inverse)?);
    }
    Ok(acc)
}

/// Union of the postings of every value of `m.name` that `m` matches (never the empty value:
/// series without the label have no postings entry).
fn postings_for_values(index: &IndexReader, m: &Matcher) -> Result<Vec<u64>> {
    if m.kind == crate::model::MatchKind::Equal {
        return index.postings(&m.name, &m.value);
    }
    let mut lists = Vec::new();
    for value in index.label_values(&m.name)? {
        if m.matches(&value) {
            lists.push(index.postings(&m.name, &value)?);
        }
    }
    Ok(union(lists))
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

pub(crate) fn subtract(a: &[u64], b: &[u64]) -> Vec<u64> {
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

pub(crate) fn union(lists: Vec<Vec<u64>>) -> Vec<u64> {
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
        assert_eq!(subtract(&[1, 3, 5, 7], &[3, 4, 5]), vec![1, 7]);
        assert_eq!(union(vec![vec![5, 1], vec![3, 1]]), vec![1, 3, 5]);
    }
}
