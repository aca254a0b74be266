//! Label sets, kept sorted by name as Prometheus does, so that comparing two sets compares
//! series in the order the index stores them.

use std::cmp::Ordering;
use std::fmt;

use compact_str::CompactString;

use super::format::quote;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Names and values up to 24 bytes, nearly all of them, are held inline: resolving a series'
/// labels from a block allocates no string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: CompactString,
    pub value: CompactString,
}

/// A set of labels sorted by name, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a set from pairs in any order; on duplicate names the last one wins. Empty
    /// values are dropped, as in Prometheus a label with an empty value does not exist.
    pub fn from_pairs<N: Into<CompactString>, V: Into<CompactString>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut labels: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .collect();
        // Stable, so among equal names the last given stays last; dedup keeps the first of a
        // run, hence the swap that moves the last one into its place.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels.dedup_by(|later, kept| {
            let same = later.name == kept.name;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        labels.retain(|l| !l.value.is_empty());
        Labels(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Pairs of borrowed strings, the shape the block writer takes.
    pub fn as_pairs(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    /// Adds labels that are not already set (the series' own labels win, as in Thanos).
    pub fn merge_missing<'a>(&self, extra: impl IntoIterator<Item = (&'a str, &'a str)>) -> Labels {
        let mut pairs: Vec<(CompactString, CompactString)> = extra
            .into_iter()
            .filter(|(n, _)| self.get(n).is_none())
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        pairs.extend(self.0.iter().map(|l| (l.name.clone(), l.value.clone())));
        Labels::from_pairs(pairs)
    }
}

impl Ord for Labels {
    /// Prometheus' `labels.Compare`: name, then value, label by label; a prefix sorts first.
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            match a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value)) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Labels {
    /// `{__name__="up", job="node"}`, as Prometheus prints label sets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", l.name, quote(&l.value))?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_compared_like_prometheus() {
        let a = Labels::from_pairs([("b", "1"), ("a", "2")]);
        assert_eq!(a.to_string(), r#"{a="2", b="1"}"#);
        let prefix = Labels::from_pairs([("a", "2")]);
        assert!(prefix < a);
        let empty_dropped = Labels::from_pairs([("a", ""), ("b", "x")]);
        assert_eq!(empty_dropped.len(), 1);
        let merged = a.merge_missing([("a", "ext"), ("cluster", "c")]);
        assert_eq!(merged.get("a"), Some("2"));
        assert_eq!(merged.get("cluster"), Some("c"));
    }

    #[test]
    fn the_last_of_duplicate_names_wins() {
        let l = Labels::from_pairs([("b", "1"), ("a", "x"), ("b", "2"), ("a", "y"), ("b", "3")]);
        assert_eq!(l.to_string(), r#"{a="y", b="3"}"#);
        // A later empty value removes the label.
        assert!(Labels::from_pairs([("a", "x"), ("a", "")]).is_empty());
    }
}
