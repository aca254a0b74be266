//! Overlaps and gaps in time per stream (external-label set and resolution). Pure.
//!
//! Blocks of one stream should tile time: an overlap means duplicate work for the compactor
//! and the store (a missing compaction, or two uploaders with the same labels), a gap means
//! data that was never uploaded or was deleted.

use std::collections::BTreeMap;

use serde::Serialize;

/// A block as the timeline sees it.
#[derive(Debug, Clone)]
pub struct Span {
    pub ulid: String,
    pub labels: BTreeMap<String, String>,
    pub resolution: i64,
    pub min_time: i64,
    pub max_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    Overlap,
    Gap,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub kind: IssueKind,
    /// The stream: external labels as `{k="v",...}` and the resolution.
    pub labels: String,
    pub resolution: i64,
    /// The time range overlapped twice or not covered.
    pub from: i64,
    pub to: i64,
    /// The two blocks on either side (for an overlap: the earlier one, then the one inside it).
    pub blocks: [String; 2],
}

/// `{a="1",b="2"}`.
pub fn format_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// Overlaps and gaps of every stream, streams in label order, issues in time order.
pub fn issues(spans: &[Span]) -> Vec<Issue> {
    let mut streams: BTreeMap<(String, i64), Vec<&Span>> = BTreeMap::new();
    for s in spans {
        streams
            .entry((format_labels(&s.labels), s.resolution))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for ((labels, resolution), mut blocks) in streams {
        blocks.sort_by_key(|b| (b.min_time, b.max_time));
        // The block reaching furthest so far: what the next block must start at.
        let mut reach: Option<&Span> = None;
        for b in blocks {
            if let Some(r) = reach {
                let issue = |kind, from, to| Issue {
                    kind,
                    labels: labels.clone(),
                    resolution,
                    from,
                    to,
                    blocks: [r.ulid.clone(), b.ulid.clone()],
                };
                if b.min_time < r.max_time {
                    out.push(issue(
                        IssueKind::Overlap,
                        b.min_time,
                        b.max_time.min(r.max_time),
                    ));
                } else if b.min_time > r.max_time {
                    out.push(issue(IssueKind::Gap, r.max_time, b.min_time));
                }
            }
            if reach.is_none_or(|r| b.max_time > r.max_time) {
                reach = Some(b);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, cluster: &str, min: i64, max: i64) -> Span {
        Span {
            ulid: id.into(),
            labels: BTreeMap::from([("cluster".to_string(), cluster.to_string())]),
            resolution: 0,
            min_time: min,
            max_time: max,
        }
    }

    #[test]
    fn overlaps_and_gaps_per_stream() {
        let spans = [
            span("a1", "a", 0, 100),
            span("a2", "a", 100, 200),
            span("a3", "a", 150, 300), // overlaps a2 on 150..200
            span("a4", "a", 400, 500), // gap 300..400
            span("b1", "b", 0, 100),   // other stream: no issue with a*
            span("b2", "b", 20, 50),   // inside b1
        ];
        let got: Vec<(IssueKind, i64, i64, [String; 2])> = issues(&spans)
            .into_iter()
            .map(|i| (i.kind, i.from, i.to, i.blocks))
            .collect();
        let b = |x: &str, y: &str| [x.to_string(), y.to_string()];
        assert_eq!(
            got,
            vec![
                (IssueKind::Overlap, 150, 200, b("a2", "a3")),
                (IssueKind::Gap, 300, 400, b("a3", "a4")),
                (IssueKind::Overlap, 20, 50, b("b1", "b2")),
            ]
        );
        assert_eq!(
            format_labels(&spans[0].labels),
            r#"{cluster="a"}"#,
            "the stream is named like a selector"
        );
    }
}
