//! Cardinality figures of one block, the ones `promtool tsdb analyze` prints. Pure: the
//! postings offset table and list extents in, ranked figures out.
//!
//! Everything but churn comes from the postings offset table alone: its entries are the
//! label pairs, and a postings list of `n` series is `12 + 4n` bytes (length, count, refs,
//! CRC) with no padding between lists (each starts 4-aligned and is a multiple of 4 long),
//! so the distance to the next list gives `n` without reading the list. Churn needs every
//! series' chunk time range: [`ChurnCounter`] takes them from a streamed series section.

use std::collections::HashMap;
use std::ops::ControlFlow;

use serde::Serialize;

use crate::tsdb::encoding::DecodeError;
use crate::tsdb::index::postings_table::visit_content;
use crate::tsdb::index::ChunkMeta;

/// Bytes of a postings list besides its refs: length, count and CRC.
const LIST_OVERHEAD: u64 = 12;

/// A key with its figure, as one line of `promtool tsdb analyze`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ranked {
    pub key: String,
    pub value: u64,
}

/// One postings offset table entry with its list's series count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCount {
    pub name: String,
    pub value: String,
    pub series: u64,
}

/// Where a list starts, and its series count once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListExtent {
    pub offset: u64,
    /// `None` when the extent cannot tell (the last list, or an unexpected gap): the caller
    /// reads the list's 8-byte head and calls [`count_from_head`].
    pub series: Option<u64>,
}

/// A postings offset table entry, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub name: String,
    pub value: String,
    /// Where the pair's postings list starts.
    pub offset: u64,
}

/// The table's entries in table order.
pub fn table_entries(content: &[u8]) -> Result<Vec<TableEntry>, (usize, DecodeError)> {
    let mut out = Vec::new();
    visit_content(content, |e| {
        out.push(TableEntry {
            name: e.name.to_string(),
            value: e.value.to_string(),
            offset: e.offset,
        });
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(out)
}

/// Series counts of the lists starting at `offsets` (any order), from the distance to the
/// next list. Returned in the order of `offsets`.
pub fn list_extents(offsets: &[u64]) -> Vec<ListExtent> {
    let mut sorted: Vec<u64> = offsets.to_vec();
    sorted.sort_unstable();
    offsets
        .iter()
        .map(|&offset| {
            let next = sorted
                .get(sorted.partition_point(|&o| o <= offset))
                .copied();
            let series = next.and_then(|n| {
                let len = n - offset;
                (len >= LIST_OVERHEAD && (len - LIST_OVERHEAD) % 4 == 0)
                    .then(|| (len - LIST_OVERHEAD) / 4)
            });
            ListExtent { offset, series }
        })
        .collect()
}

/// The series count from the first 8 bytes of a list (`be32 len | be32 count`), checked
/// against each other.
pub fn count_from_head(head: &[u8]) -> Result<u64, DecodeError> {
    let mut d = crate::tsdb::encoding::Decbuf::new(head);
    let len = d.be32()?;
    let count = d.be32()?;
    if u64::from(len) != 4 + 4 * u64::from(count) {
        return Err(DecodeError::Invalid(format!(
            "postings list length {len} does not match its {count} entries"
        )));
    }
    Ok(u64::from(count))
}

/// The `promtool tsdb analyze` figures of one block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cardinality {
    /// Label names, without the all-postings name.
    pub label_names: u64,
    /// "Postings (unique label pairs)".
    pub label_pairs: u64,
    /// "Postings entries (total label pairs)": the sum of the lists' lengths.
    pub postings_entries: u64,
    /// "Highest cardinality labels": values per label name.
    pub label_values: Vec<Ranked>,
    /// "Label names with highest cumulative label value length".
    pub value_lengths: Vec<Ranked>,
    /// "Highest cardinality metric names": series per `__name__` value.
    pub metric_series: Vec<Ranked>,
    /// "Most common label pairs": series per `name=value`.
    pub common_pairs: Vec<Ranked>,
    /// "Label pairs most involved in churning" (only with the series section read).
    pub churn_pairs: Option<Vec<Ranked>>,
    /// "Label names most involved in churning".
    pub churn_names: Option<Vec<Ranked>>,
}

impl Cardinality {
    /// The figures of a table's pairs (the all-postings pair is ignored), top `limit` each.
    pub fn from_pairs(pairs: &[PairCount], limit: usize) -> Cardinality {
        let mut values: Vec<Ranked> = Vec::new();
        let mut lengths: Vec<Ranked> = Vec::new();
        let mut metrics = Vec::new();
        let mut common = Vec::new();
        let mut entries = 0;
        for p in pairs.iter().filter(|p| !p.name.is_empty()) {
            if values.last().is_none_or(|r| r.key != p.name) {
                values.push(Ranked {
                    key: p.name.clone(),
                    value: 0,
                });
                lengths.push(Ranked {
                    key: p.name.clone(),
                    value: 0,
                });
            }
            if let (Some(v), Some(l)) = (values.last_mut(), lengths.last_mut()) {
                v.value += 1;
                l.value += p.value.len() as u64;
            }
            if p.name == "__name__" {
                metrics.push(Ranked {
                    key: p.value.clone(),
                    value: p.series,
                });
            }
            common.push(Ranked {
                key: format!("{}={}", p.name, p.value),
                value: p.series,
            });
            entries += p.series;
        }
        Cardinality {
            label_names: values.len() as u64,
            label_pairs: common.len() as u64,
            postings_entries: entries,
            label_values: top(values, limit),
            value_lengths: top(lengths, limit),
            metric_series: top(metrics, limit),
            common_pairs: top(common, limit),
            churn_pairs: None,
            churn_names: None,
        }
    }
}

/// The `limit` highest figures, highest first; ties by key so output is stable (promtool
/// leaves ties in map order).
pub fn top(mut items: Vec<Ranked>, limit: usize) -> Vec<Ranked> {
    items.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.key.cmp(&b.key)));
    items.truncate(limit);
    items
}

/// Churn as promtool measures it: per label pair and name, the block time not covered by
/// each series having it (block span minus the series' first-to-last chunk span), summed,
/// then divided by the block span.
#[derive(Debug)]
pub struct ChurnCounter {
    span: u64,
    pairs: HashMap<String, u64>,
    names: HashMap<String, u64>,
}

impl ChurnCounter {
    pub fn new(min_time: i64, max_time: i64) -> Self {
        ChurnCounter {
            span: max_time.wrapping_sub(min_time) as u64,
            pairs: HashMap::new(),
            names: HashMap::new(),
        }
    }

    /// Adds one series; series without chunks cover nothing and are left out.
    pub fn add(&mut self, labels: &[(&str, &str)], chunks: &[ChunkMeta]) {
        let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
            return;
        };
        // Unsigned and wrapping, exactly as promtool computes it.
        let covered = last.max_time.wrapping_sub(first.min_time) as u64;
        let uncovered = self.span.wrapping_sub(covered);
        for (name, value) in labels {
            let pair = self.pairs.entry(format!("{name}={value}")).or_default();
            *pair = pair.wrapping_add(uncovered);
            let n = self.names.entry((*name).to_string()).or_default();
            *n = n.wrapping_add(uncovered);
        }
    }

    /// Top `limit` pairs and names.
    pub fn finish(self, limit: usize) -> (Vec<Ranked>, Vec<Ranked>) {
        let span = self.span as f64;
        let ranked = |m: HashMap<String, u64>| {
            m.into_iter()
                .map(|(key, v)| Ranked {
                    key,
                    value: if span > 0.0 {
                        (v as f64 / span) as u64
                    } else {
                        0
                    },
                })
                .collect::<Vec<_>>()
        };
        (
            top(ranked(self.pairs), limit),
            top(ranked(self.names), limit),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, value: &str, series: u64) -> PairCount {
        PairCount {
            name: name.into(),
            value: value.into(),
            series,
        }
    }

    #[test]
    fn extents_give_counts_except_for_the_last_and_odd_gaps() {
        // Lists of 3, 1 and ? series, given out of order; then a gap that is no list size.
        let ext = list_extents(&[36, 12, 52, 201]);
        let counts: Vec<Option<u64>> = ext.iter().map(|e| e.series).collect();
        assert_eq!(counts, vec![Some(1), Some(3), None, None]);
        assert_eq!(
            count_from_head(&[0, 0, 0, 12, 0, 0, 0, 2]).unwrap(),
            2,
            "len 12 = count + 2 refs"
        );
        assert!(count_from_head(&[0, 0, 0, 12, 0, 0, 0, 3]).is_err());
        assert!(count_from_head(&[0, 0]).is_err());
    }

    #[test]
    fn figures_from_pairs() {
        let pairs = [
            pair("", "", 4),
            pair("__name__", "a", 3),
            pair("__name__", "bb", 1),
            pair("job", "x", 4),
            pair("le", "0.5", 2),
            pair("le", "1", 2),
            pair("le", "10", 2),
        ];
        let c = Cardinality::from_pairs(&pairs, 2);
        assert_eq!(c.label_names, 3);
        assert_eq!(c.label_pairs, 6);
        assert_eq!(c.postings_entries, 14);
        let r = |k: &str, v| Ranked {
            key: k.into(),
            value: v,
        };
        assert_eq!(c.label_values, vec![r("le", 3), r("__name__", 2)]);
        assert_eq!(c.value_lengths, vec![r("le", 6), r("__name__", 3)]);
        assert_eq!(c.metric_series, vec![r("a", 3), r("bb", 1)]);
        assert_eq!(c.common_pairs, vec![r("job=x", 4), r("__name__=a", 3)]);
    }

    #[test]
    fn churn_matches_promtools_arithmetic() {
        let chunk = |min_time, max_time| ChunkMeta {
            min_time,
            max_time,
            chunk_ref: 0,
        };
        let mut c = ChurnCounter::new(0, 1000);
        // Covers 0..1000: no churn. Covers 500..900: 600 uncovered.
        c.add(&[("job", "a")], &[chunk(0, 400), chunk(401, 1000)]);
        c.add(&[("job", "a"), ("pod", "p")], &[chunk(500, 900)]);
        c.add(&[("job", "b")], &[]);
        let (pairs, names) = c.finish(10);
        let r = |k: &str, v| Ranked {
            key: k.into(),
            value: v,
        };
        // 600 / 1000 truncates to 0, like promtool's uint64(float64(m) / span).
        assert_eq!(pairs, vec![r("job=a", 0), r("pod=p", 0)]);
        assert_eq!(names, vec![r("job", 0), r("pod", 0)]);

        let mut c = ChurnCounter::new(0, 100);
        for _ in 0..3 {
            c.add(&[("pod", "p")], &[chunk(50, 60)]);
        }
        assert_eq!(c.finish(1).0, vec![r("pod=p", 2)], "3 x 90 / 100");
    }
}
