//! Reading a store's `/metrics` (Prometheus text exposition): the figures `stele bench`
//! reports, as differences between two scrapes. Pure: text in, numbers out.

use std::collections::BTreeMap;

/// Every sample of one scrape, keyed by `name{labels as written}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Values never contain spaces; label values may, so split at the last space
            // that follows the closing brace (or the name).
            let key_end = line
                .rfind('}')
                .map_or_else(|| line.find(' '), |i| Some(i + 1));
            let Some(key_end) = key_end else { continue };
            let mut rest = line[key_end..].split_whitespace();
            if let Some(Ok(v)) = rest.next().map(str::parse::<f64>) {
                samples.insert(line[..key_end].to_string(), v);
            }
        }
        Scrape { samples }
    }

    /// The value of `name` with exactly `labels` (as `k="v"` pairs in exposition order), or 0.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = if labels.is_empty() {
            name.to_string()
        } else {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{name}{{{}}}", inner.join(","))
        };
        self.samples.get(&key).copied().unwrap_or(0.0)
    }

    /// The values of label `label` that `name` has samples for.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let prefix = format!("{name}{{");
        let needle = format!("{label}=\"");
        self.samples
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|rest| {
                let start = rest.find(&needle)? + needle.len();
                let end = rest[start..].find('"')? + start;
                Some(rest[start..end].to_string())
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Index-cache figures of one item kind over an interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CacheFigures {
    pub item_type: String,
    pub requests: u64,
    pub hits: u64,
    /// hits / requests; `None` without requests.
    pub hit_ratio: Option<f64>,
    pub evictions: u64,
    /// Held at the end of the interval.
    pub bytes: u64,
    pub items: u64,
}

/// Cache figures per item kind between two scrapes of a stele store: the index cache's kinds,
/// then the chunk cache's when it is on.
pub fn cache_figures(before: &Scrape, after: &Scrape) -> Vec<CacheFigures> {
    let mut out = Vec::new();
    for prefix in ["stele_index_cache", "stele_chunk_cache"] {
        let name = |figure: &str| format!("{prefix}_{figure}");
        for kind in after.label_values(&name("requests_total"), "item_type") {
            let labels = [("item_type", kind.as_str())];
            let delta = |figure: &str| {
                let name = name(figure);
                (after.value(&name, &labels) - before.value(&name, &labels)).max(0.0) as u64
            };
            let (requests, hits) = (delta("requests_total"), delta("hits_total"));
            out.push(CacheFigures {
                requests,
                hits,
                hit_ratio: (requests > 0).then(|| hits as f64 / requests as f64),
                evictions: delta("items_evicted_total"),
                bytes: after.value(&name("size_bytes"), &labels) as u64,
                items: after.value(&name("items"), &labels) as u64,
                item_type: kind,
            });
        }
    }
    out
}

/// Bytes fetched from the bucket (index and chunk files) between two scrapes.
pub fn bucket_fetched_bytes(before: &Scrape, after: &Scrape) -> u64 {
    ["index", "chunks"]
        .iter()
        .map(|kind| {
            let name = format!("stele_store_bucket_{kind}_fetched_bytes_total");
            (after.value(&name, &[]) - before.value(&name, &[])).max(0.0) as u64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# HELP stele_index_cache_requests Index cache lookups
# TYPE stele_index_cache_requests counter
stele_index_cache_requests_total{item_type=\"postings\"} 10
stele_index_cache_requests_total{item_type=\"series\"} 100
stele_index_cache_hits_total{item_type=\"postings\"} 0
stele_index_cache_hits_total{item_type=\"series\"} 50
stele_store_bucket_index_fetched_bytes_total 1000
stele_store_bucket_chunks_fetched_bytes_total 5000
";

    const AFTER: &str = "\
stele_index_cache_requests_total{item_type=\"postings\"} 30
stele_index_cache_requests_total{item_type=\"series\"} 100
stele_index_cache_hits_total{item_type=\"postings\"} 15
stele_index_cache_hits_total{item_type=\"series\"} 50
stele_index_cache_items_evicted_total{item_type=\"postings\"} 2
stele_index_cache_size_bytes{item_type=\"postings\"} 4096
stele_index_cache_items{item_type=\"postings\"} 8
stele_store_bucket_index_fetched_bytes_total 1500
stele_store_bucket_chunks_fetched_bytes_total 9000
stele_chunk_cache_requests_total{item_type=\"chunks\"} 40
stele_chunk_cache_hits_total{item_type=\"chunks\"} 10
stele_chunk_cache_size_bytes{item_type=\"chunks\"} 2048
weird{path=\"a b} c\"} 1.5e3
";

    #[test]
    fn reads_values_with_and_without_labels() {
        let s = Scrape::parse(AFTER);
        assert_eq!(
            s.value("stele_store_bucket_index_fetched_bytes_total", &[]),
            1500.0
        );
        assert_eq!(
            s.value("stele_index_cache_items", &[("item_type", "postings")]),
            8.0
        );
        assert_eq!(s.value("weird", &[("path", "a b} c")]), 1500.0);
        assert_eq!(s.value("absent", &[]), 0.0);
    }

    #[test]
    fn cache_ratios_are_over_the_interval() {
        let figures = cache_figures(&Scrape::parse(BEFORE), &Scrape::parse(AFTER));
        let postings = figures.iter().find(|f| f.item_type == "postings").unwrap();
        assert_eq!((postings.requests, postings.hits), (20, 15));
        assert_eq!(postings.hit_ratio, Some(0.75));
        assert_eq!(
            (postings.evictions, postings.bytes, postings.items),
            (2, 4096, 8)
        );
        let series = figures.iter().find(|f| f.item_type == "series").unwrap();
        assert_eq!((series.requests, series.hit_ratio), (0, None));
        // The chunk cache's figures follow the index cache's.
        let chunks = figures.last().unwrap();
        assert_eq!(chunks.item_type, "chunks");
        assert_eq!((chunks.requests, chunks.hits, chunks.bytes), (40, 10, 2048));
    }

    #[test]
    fn fetched_bytes_add_index_and_chunks() {
        assert_eq!(
            bucket_fetched_bytes(&Scrape::parse(BEFORE), &Scrape::parse(AFTER)),
            500 + 4000
        );
    }
}
