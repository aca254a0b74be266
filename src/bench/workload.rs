//! Workload files: the mix of requests `stele bench` sends, as TOML (`bench-data/workload.toml`
//! is the default mix).
//!
//! ```toml
//! [[request]]
//! name = "series-100"          # unique; names the row in every report
//! kind = "series"              # series | label_names | label_values
//! selector = 'up{namespace="monitoring"}'
//! range = "all"                # "all", or a duration ending at the data's last sample: "30m"
//! skip_chunks = false
//! weight = 2                   # share of the mix (default 1)
//! label = "pod"                # label_values only
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::model::time::parse_duration;
use crate::model::{parse_selector, Matcher};

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("reading workload {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("workload {source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Series,
    LabelNames,
    LabelValues,
}

impl RequestKind {
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Series => "Series",
            RequestKind::LabelNames => "LabelNames",
            RequestKind::LabelValues => "LabelValues",
        }
    }
}

/// The time window of a request, relative to the span of the data served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRange {
    All,
    /// The last `Duration` of the data.
    Last(Duration),
}

impl TimeRange {
    /// `[min, max]` in milliseconds within the data span `[data_min, data_max]`.
    pub fn resolve(self, data_min: i64, data_max: i64) -> (i64, i64) {
        match self {
            TimeRange::All => (data_min, data_max),
            TimeRange::Last(d) => {
                let start = data_max.saturating_sub(d.as_millis() as i64);
                (start.max(data_min), data_max)
            }
        }
    }
}

/// One entry of the mix.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub name: String,
    pub kind: RequestKind,
    /// As written; empty for LabelNames/LabelValues without matchers.
    pub selector: String,
    pub matchers: Vec<Matcher>,
    pub range: TimeRange,
    pub range_text: String,
    pub skip_chunks: bool,
    pub weight: u32,
    /// The label of a LabelValues request.
    pub label: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub requests: Vec<RequestSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    request: Vec<RequestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestEntry {
    name: String,
    kind: RequestKind,
    #[serde(default)]
    selector: String,
    #[serde(default = "default_range")]
    range: String,
    #[serde(default)]
    skip_chunks: bool,
    #[serde(default = "default_weight")]
    weight: u32,
    label: Option<String>,
}

fn default_range() -> String {
    "all".into()
}

fn default_weight() -> u32 {
    1
}

/// Where the default mix lives in the repository.
pub fn default_workload_path() -> std::path::PathBuf {
    crate::gen::profile::profiles_dir().join("workload.toml")
}

pub fn load_workload(path: &Path) -> Result<Workload, WorkloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_workload(&text, &path.display().to_string())
}

/// Parses and checks a workload; `source_name` names it in errors.
pub fn parse_workload(text: &str, source_name: &str) -> Result<Workload, WorkloadError> {
    let invalid = |reason: String| WorkloadError::Invalid {
        source_name: source_name.to_string(),
        reason,
    };
    let file: WorkloadFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if file.request.is_empty() {
        return Err(invalid("no [[request]] entries".into()));
    }
    let mut requests = Vec::with_capacity(file.request.len());
    for entry in file.request {
        let name = entry.name.clone();
        let at = |reason: String| invalid(format!("request {name:?}: {reason}"));
        if requests.iter().any(|r: &RequestSpec| r.name == name) {
            return Err(at("duplicate name".into()));
        }
        let matchers = if entry.selector.trim().is_empty() {
            Vec::new()
        } else {
            parse_selector(&entry.selector).map_err(|e| at(e.to_string()))?
        };
        match entry.kind {
            RequestKind::Series if matchers.is_empty() => {
                return Err(at("a series request needs a selector".into()))
            }
            RequestKind::LabelValues if entry.label.is_none() => {
                return Err(at("a label_values request needs `label`".into()))
            }
            RequestKind::Series | RequestKind::LabelNames if entry.label.is_some() => {
                return Err(at("`label` is for label_values requests".into()))
            }
            _ => {}
        }
        if entry.weight == 0 {
            return Err(at("weight must be at least 1".into()));
        }
        let range = match entry.range.as_str() {
            "all" => TimeRange::All,
            d => TimeRange::Last(parse_duration(d).map_err(|e| at(format!("range: {e}")))?),
        };
        requests.push(RequestSpec {
            name: entry.name,
            kind: entry.kind,
            selector: entry.selector,
            matchers,
            range,
            range_text: entry.range,
            skip_chunks: entry.skip_chunks,
            weight: entry.weight,
            label: entry.label,
        });
    }
    Ok(Workload { requests })
}

impl Workload {
    /// One round of the mix as indexes into `requests`: each entry `weight` times, spread out
    /// (smooth weighted round robin), so concurrent clients see a steady blend.
    pub fn round(&self) -> Vec<usize> {
        let total: i64 = self.requests.iter().map(|r| i64::from(r.weight)).sum();
        let mut current = vec![0i64; self.requests.len()];
        let mut out = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, r) in current.iter_mut().zip(&self.requests) {
                *c += i64::from(r.weight);
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
                .expect("non-empty workload");
            current[best] -= total;
            out.push(best);
        }
        out
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.requests.iter().position(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX: &str = r#"
[[request]]
name = "one"
kind = "series"
selector = 'up{job="a"}'
range = "30m"
weight = 3

[[request]]
name = "names"
kind = "label_names"

[[request]]
name = "values"
kind = "label_values"
label = "pod"
selector = '{namespace!="x"}'
"#;

    #[test]
    fn parses_entries_and_defaults() {
        let w = parse_workload(MIX, "mix").unwrap();
        assert_eq!(w.requests.len(), 3);
        let one = &w.requests[0];
        assert_eq!(one.kind, RequestKind::Series);
        assert_eq!(one.matchers.len(), 2);
        assert_eq!(one.range, TimeRange::Last(Duration::from_secs(1800)));
        assert_eq!(w.requests[1].range, TimeRange::All);
        assert_eq!(w.requests[1].weight, 1);
        assert_eq!(w.requests[2].label.as_deref(), Some("pod"));
    }

    #[test]
    fn ranges_end_at_the_data_and_stay_inside_it() {
        let last = TimeRange::Last(Duration::from_secs(60));
        assert_eq!(last.resolve(0, 100_000), (40_000, 100_000));
        assert_eq!(last.resolve(90_000, 100_000), (90_000, 100_000));
        assert_eq!(TimeRange::All.resolve(5, 9), (5, 9));
    }

    #[test]
    fn rounds_follow_weights_and_interleave() {
        let w = parse_workload(MIX, "mix").unwrap();
        let round = w.round();
        assert_eq!(round.len(), 5);
        assert_eq!(round.iter().filter(|&&i| i == 0).count(), 3);
        // The heavy entry never runs three times in a row.
        assert!(round.windows(3).all(|win| !win.iter().all(|&i| i == 0)));
    }

    #[test]
    fn bad_entries_are_named() {
        for (text, needle) in [
            ("[[request]]\nname='a'\nkind='series'\n", "needs a selector"),
            ("[[request]]\nname='a'\nkind='label_values'\n", "needs `label`"),
            (
                "[[request]]\nname='a'\nkind='series'\nselector='up{'\n",
                "request \"a\"",
            ),
            (
                "[[request]]\nname='a'\nkind='label_names'\n[[request]]\nname='a'\nkind='label_names'\n",
                "duplicate",
            ),
            (
                "[[request]]\nname='a'\nkind='label_names'\nrange='soon'\n",
                "range",
            ),
            ("[[request]]\nname='a'\nkind='bogus'\n", "bogus"),
        ] {
            let err = parse_workload(text, "w").unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn the_default_mix_parses() {
        let w = load_workload(&default_workload_path()).unwrap();
        assert!(w.requests.iter().any(|r| r.kind == RequestKind::Series));
        assert!(w.requests.iter().any(|r| r.skip_chunks));
        assert!(w
            .requests
            .iter()
            .any(|r| r.kind == RequestKind::LabelValues));
    }
}
