//! The postings cost model never changes an answer: on a small written block, random matcher
//! sets select through `BucketBlock` (postings, then series with the model's filters) exactly
//! the series a brute-force match over every series' labels selects, with the model on and
//! off, with and without the index cache.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use stele::block::write_block;
use stele::cache::Cache;
use stele::model::{Labels, MatchKind, Matcher};
use stele::store::{BlockIo, BucketBlock, QueryCtx};
use ulid::Ulid;

const SERIES: usize = 3000;

/// Labels shaped to make the model defer: `x` is on every series with a value each (like
/// Prometheus' `i`), `j` splits the series in halves, `a` in thirds, `b` in 97 parts, and
/// `c` is on a fifth of them only.
fn series_labels(i: usize) -> Labels {
    let mut pairs = vec![
        ("a".to_string(), format!("a{}", i % 3)),
        ("b".to_string(), format!("b{}", i % 97)),
        (
            "j".to_string(),
            if i % 2 == 0 { "foo" } else { "bar" }.to_string(),
        ),
        ("x".to_string(), format!("x{i}")),
    ];
    if i % 5 == 0 {
        pairs.push(("c".to_string(), format!("c{}", i % 7)));
    }
    Labels::from_pairs(pairs)
}

fn matcher() -> impl Strategy<Value = Matcher> {
    let name = prop::sample::select(vec!["a", "b", "c", "j", "x", "missing"]);
    let value = prop::sample::select(vec![
        "", "a0", "a1|a2", "b1.*", "b10", "c3", "c.+", "foo", "bar", "foo|bar", "x1.+", "x42",
        ".*", ".+", "zzz",
    ]);
    let kind = prop::sample::select(vec![
        MatchKind::Equal,
        MatchKind::NotEqual,
        MatchKind::Regex,
        MatchKind::NotRegex,
    ]);
    (kind, name, value).prop_map(|(k, n, v)| Matcher::new(k, n, v).unwrap())
}

fn select(
    block: &BucketBlock,
    matchers: &[Matcher],
    cache: Option<&Arc<Cache>>,
    cost_model: bool,
) -> (BTreeSet<Labels>, i64) {
    let mut ctx = QueryCtx::default();
    ctx.cache = cache.cloned();
    ctx.postings_cost_model = cost_model;
    let p = block.postings(matchers, &mut ctx).unwrap();
    let series = block.series(&p.refs, &p.filters, 0, 10, &mut ctx).unwrap();
    let labels = series.into_iter().map(|s| s.labels).collect();
    (labels, ctx.stats.postings_filters)
}

#[test]
fn cost_model_selects_exactly_what_the_matchers_do() {
    let bucket = tempfile::tempdir().unwrap();
    let id = Ulid::new();
    let mut series: Vec<(Labels, Vec<(i64, f64)>)> = (0..SERIES)
        .map(|i| (series_labels(i), vec![(0, i as f64)]))
        .collect();
    write_block(bucket.path(), id, 0, 10, &mut series, None).unwrap();
    let all: Vec<Labels> = series.into_iter().map(|(l, _)| l).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let io = BlockIo::local(bucket.path(), runtime.handle().clone()).unwrap();
    let block = BucketBlock::open_from_bucket(id, data.path(), &io).unwrap();
    let cache = Arc::new(Cache::new(64 << 20));

    let filtered_sets = std::cell::Cell::new(0);
    proptest!(ProptestConfig::with_cases(200), |(matchers in prop::collection::vec(matcher(), 1..4))| {
        let expected: BTreeSet<Labels> = all
            .iter()
            .filter(|l| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .cloned()
            .collect();
        let (off, _) = select(&block, &matchers, None, false);
        let (on, filters) = select(&block, &matchers, None, true);
        prop_assert_eq!(&off, &expected);
        prop_assert_eq!(&on, &expected);
        // Twice through the cache: filled, then answered from it.
        for _ in 0..2 {
            prop_assert_eq!(&select(&block, &matchers, Some(&cache), true).0, &expected);
            prop_assert_eq!(&select(&block, &matchers, Some(&cache), false).0, &expected);
        }
        if filters > 0 {
            filtered_sets.set(filtered_sets.get() + 1);
        }
    });
    // The model must have had something to decide, or this test proves nothing.
    let filtered_sets = filtered_sets.get();
    assert!(
        filtered_sets > 10,
        "only {filtered_sets} matcher sets used filters"
    );

    // The cases it is for: a label every series has next to a selective matcher.
    let m = |k, n: &str, v: &str| Matcher::new(k, n, v).unwrap();
    for matchers in [
        vec![
            m(MatchKind::Equal, "b", "b10"),
            m(MatchKind::NotEqual, "x", ""),
        ],
        vec![
            m(MatchKind::Equal, "b", "b10"),
            m(MatchKind::Regex, "x", ".+"),
        ],
    ] {
        let (_, filters) = select(&block, &matchers, None, true);
        assert_eq!(filters, 1, "{matchers:?}");
    }
}
