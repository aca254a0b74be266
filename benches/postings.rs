//! Postings for matchers on one block with Prometheus' own benchmark label scheme (its
//! `tsdb/querier_bench_test.go`, `BenchmarkQuerier` as of v2.42): for `n` in 0..10 and `i` in
//! 0..100k, five series `{i, n, j="foo"}`, `{i, n, j="bar"}`, `{i, n="0_<n>", j="bar"}`,
//! `{i, n="1_<n>", j="bar"}`, `{i, n="2_<n>", j="foo"}`, where `i` and `n` values carry a
//! 40-byte suffix: 5M series, one sample each. Written once with our block writer under
//! `target/tmp/postings-bench-100000/` and reused (a 50k-series one under `cargo test`).
//!
//! The block is read the way the store reads it: `BucketBlock` over the bucket (a local file
//! system), its index header built under a temp data dir. Each of Prometheus' matcher sets is
//! measured through `BucketBlock::postings`:
//! - `cold`: no index cache, every list read and decoded; the cost model on (the default),
//!   and `cold_no_model` with it off;
//! - `warm_lists`: a cache holding only postings lists (no bucket reads, lists decoded);
//! - `warm_expanded`: the full cache, whose expanded-postings entry answers repeats.
//!
//! With the cost model, matchers can be left to the series' labels; `postings_and_series`
//! measures postings plus reading (and filtering) the series for the sets it changes, on and off.
//! `index_header` builds the header of this block and, when present, of one `medium` block
//! (`STELE_MEDIUM_BLOCKS`, default `bench-data/generated/medium`, made by
//! `stele gen --profile medium`), and prints bytes read, sizes and memory.
//!
//! Run: `cargo bench --bench postings -- --warm-up-time 1 --measurement-time 3`

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use stele::block::BlockWriter;
use stele::cache::{Cache, CacheOptions, ItemKind};
use stele::model::{MatchKind, Matcher};
use stele::store::{BlockIo, BucketBlock, QueryCtx};
use ulid::Ulid;

/// Prometheus' suffix: makes values ~50 bytes, like real high-cardinality labels.
const SUFFIX: &str = "aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd";
const N_VALUES: usize = 10;
const CACHE_BYTES: u64 = 4 << 30;

fn block_id() -> Ulid {
    Ulid::from_parts(1_700_000_000_000, 0x5354_454c_4550_4f53)
}

/// Values of `i`: Prometheus' 100k when benchmarking; 1k when `cargo test --benches` runs
/// this once as a smoke test.
fn i_values() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    }
}

/// The block directory's parent (the "bucket"), writing the block if it is not there yet.
fn scheme_bucket() -> PathBuf {
    let parent =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("postings-bench-{}", i_values()));
    let id = block_id();
    if parent.join(id.to_string()).join("meta.json").exists() {
        return parent;
    }
    std::fs::create_dir_all(&parent).unwrap();
    let started = Instant::now();
    let mut i_values: Vec<String> = (0..i_values()).map(|i| format!("{i}{SUFFIX}")).collect();
    i_values.sort();
    // n values with the j values their series have.
    let mut n_values: Vec<(String, &[&str])> = Vec::new();
    for n in 0..N_VALUES {
        n_values.push((format!("{n}{SUFFIX}"), &["bar", "foo"]));
        n_values.push((format!("0_{n}{SUFFIX}"), &["bar"]));
        n_values.push((format!("1_{n}{SUFFIX}"), &["bar"]));
        n_values.push((format!("2_{n}{SUFFIX}"), &["foo"]));
    }
    n_values.sort();
    let mut symbols: Vec<&str> = vec!["bar", "foo", "i", "j", "n"];
    symbols.extend(i_values.iter().map(String::as_str));
    symbols.extend(n_values.iter().map(|(n, _)| n.as_str()));
    symbols.sort_unstable();
    symbols.dedup();
    let mut w = BlockWriter::create(&parent, id, 0, 1, symbols.iter().copied()).unwrap();
    // Label order: i, then j, then n.
    for i in &i_values {
        for j in ["bar", "foo"] {
            for (n, js) in &n_values {
                if js.contains(&j) {
                    let labels = [("i", i.as_str()), ("j", j), ("n", n.as_str())];
                    w.add_series_samples(&labels, &[(0, 1.0)]).unwrap();
                }
            }
        }
    }
    let meta = w.finish(None).unwrap();
    eprintln!(
        "postings bench: wrote {} series in {:.1?} to {}",
        meta.stats.num_series,
        started.elapsed(),
        parent.display()
    );
    parent
}

/// A block of a local "bucket" opened as the store opens it, its header under `data_dir`.
struct Opened {
    block: BucketBlock,
    io: BlockIo,
    _runtime: tokio::runtime::Runtime,
}

fn open_block(bucket_dir: &Path, id: Ulid, data_dir: &Path) -> Opened {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let io = BlockIo::local(bucket_dir, runtime.handle().clone()).unwrap();
    let block = BucketBlock::open_from_bucket(id, data_dir, &io).unwrap();
    Opened {
        block,
        io,
        _runtime: runtime,
    }
}

fn m(kind: MatchKind, name: &str, value: &str) -> Matcher {
    Matcher::new(kind, name, value).unwrap()
}

/// Prometheus' cases (v2.42 `benchmarkPostingsForMatchers`), named as there.
fn cases() -> Vec<(&'static str, Vec<Matcher>)> {
    use MatchKind::{Equal as Eq, NotEqual as Ne, NotRegex as Nre, Regex as Re};
    let n1 = m(Eq, "n", &format!("1{SUFFIX}"));
    let nx = m(Eq, "n", &format!("X{SUFFIX}"));
    let j_foo = m(Eq, "j", "foo");
    let j_not_foo = m(Ne, "j", "foo");
    let i_star = m(Re, "i", ".*");
    let i1_star = m(Re, "i", "1.*");
    let i_star1 = m(Re, "i", ".*1");
    let i_star1_star = m(Re, "i", ".*1.*");
    let i_plus = m(Re, "i", ".+");
    let i1_plus = m(Re, "i", "1.+");
    let i_empty_re = m(Re, "i", "");
    let i_not_empty = m(Ne, "i", "");
    let i_not2 = m(Ne, "i", &format!("2{SUFFIX}"));
    let i_not2_star = m(Nre, "i", "2.*");
    let i_not_star2_star = m(Nre, "i", ".*2.*");
    let j_foo_bar = m(Re, "j", "foo|bar");
    let j_xxx_yyy = m(Re, "j", "XXX|YYY");
    let j_xplus = m(Re, "j", "X.+");
    let i_char_set = m(Re, "i", "1[0-9]");
    let i_alternate = m(Re, "i", "(1|2|3|4|5|6|20|55)");
    let i_xyz = m(Re, "i", "X|Y|Z");
    let c = |name, ms: &[&Matcher]| (name, ms.iter().map(|&x| x.clone()).collect());
    vec![
        c(r#"n="1""#, &[&n1]),
        c(r#"n="X""#, &[&nx]),
        c(r#"n="1",j="foo""#, &[&n1, &j_foo]),
        c(r#"n="X",j="foo""#, &[&nx, &j_foo]),
        c(r#"j="foo",n="1""#, &[&j_foo, &n1]),
        c(r#"n="1",j!="foo""#, &[&n1, &j_not_foo]),
        c(r#"n="X",j!="foo""#, &[&nx, &j_not_foo]),
        c(r#"i=~"1[0-9]",j=~"foo|bar""#, &[&i_char_set, &j_foo_bar]),
        c(r#"j=~"foo|bar""#, &[&j_foo_bar]),
        c(r#"j=~"XXX|YYY""#, &[&j_xxx_yyy]),
        c(r#"j=~"X.+""#, &[&j_xplus]),
        c(r#"i=~"(1|2|3|4|5|6|20|55)""#, &[&i_alternate]),
        c(r#"i=~"X|Y|Z""#, &[&i_xyz]),
        c(r#"i=~".*""#, &[&i_star]),
        c(r#"i=~"1.*""#, &[&i1_star]),
        c(r#"i=~".*1""#, &[&i_star1]),
        c(r#"i=~".+""#, &[&i_plus]),
        c(r#"i=~".+",j=~"X.+""#, &[&i_plus, &j_xplus]),
        c(r#"i=~"""#, &[&i_empty_re]),
        c(r#"i!="""#, &[&i_not_empty]),
        c(r#"n="1",i=~".*",j="foo""#, &[&n1, &i_star, &j_foo]),
        c(r#"n="X",i=~".*",j="foo""#, &[&nx, &i_star, &j_foo]),
        c(
            r#"n="1",i=~".*",i!="2",j="foo""#,
            &[&n1, &i_star, &i_not2, &j_foo],
        ),
        c(r#"n="1",i!="""#, &[&n1, &i_not_empty]),
        c(r#"n="1",i!="",j="foo""#, &[&n1, &i_not_empty, &j_foo]),
        c(r#"n="1",i!="",j=~"X.+""#, &[&n1, &i_not_empty, &j_xplus]),
        c(
            r#"n="1",i!="",j=~"XXX|YYY""#,
            &[&n1, &i_not_empty, &j_xxx_yyy],
        ),
        c(r#"n="1",i=~"X|Y|Z",j="foo""#, &[&n1, &i_xyz, &j_foo]),
        c(r#"n="1",i=~".+",j="foo""#, &[&n1, &i_plus, &j_foo]),
        c(r#"n="1",i=~"1.+",j="foo""#, &[&n1, &i1_plus, &j_foo]),
        c(r#"n="1",i=~".*1.*",j="foo""#, &[&n1, &i_star1_star, &j_foo]),
        c(
            r#"n="1",i=~".+",i!="2",j="foo""#,
            &[&n1, &i_plus, &i_not2, &j_foo],
        ),
        c(
            r#"n="1",i=~".+",i!~"2.*",j="foo""#,
            &[&n1, &i_plus, &i_not2_star, &j_foo],
        ),
        c(
            r#"n="1",i=~".+",i!~".*2.*",j="foo""#,
            &[&n1, &i_plus, &i_not_star2_star, &j_foo],
        ),
        c(
            r#"n="X",i=~".+",i!~".*2.*",j="foo""#,
            &[&nx, &i_plus, &i_not_star2_star, &j_foo],
        ),
    ]
}

fn ctx(cache: Option<&Arc<Cache>>, cost_model: bool) -> QueryCtx {
    let mut ctx = QueryCtx::default();
    ctx.cache = cache.cloned();
    ctx.postings_cost_model = cost_model;
    ctx
}

fn cache(enabled: Vec<ItemKind>) -> Arc<Cache> {
    Arc::new(Cache::with_options(
        CacheOptions {
            enabled,
            ..CacheOptions::in_memory(CACHE_BYTES)
        },
        None,
    ))
}

fn postings(c: &mut Criterion) {
    let bucket = scheme_bucket();
    let data_dir = tempfile::tempdir().unwrap();
    let opened = open_block(&bucket, block_id(), data_dir.path());
    let block = &opened.block;
    let cases = cases();

    // What each set selects and what the cost model leaves to the series, once.
    for (name, matchers) in &cases {
        let mut cx = ctx(None, true);
        let p = block.postings(matchers, &mut cx).unwrap();
        let exact = block.postings(matchers, &mut ctx(None, false)).unwrap();
        eprintln!(
            "{name}: {} series; cost model: {} candidates, {} filter(s), {} postings bytes",
            exact.refs.len(),
            p.refs.len(),
            p.filters.len(),
            cx.stats.postings_touched_size_sum
        );
    }

    let lists_only = cache(vec![ItemKind::Postings]);
    let full = cache(ItemKind::INDEX.to_vec());
    let modes: [(&str, Option<&Arc<Cache>>, bool); 4] = [
        ("cold", None, true),
        ("cold_no_model", None, false),
        ("warm_lists", Some(&lists_only), true),
        ("warm_expanded", Some(&full), true),
    ];
    for (mode, cache, cost_model) in modes {
        let mut group = c.benchmark_group(format!("postings/{mode}"));
        group.sample_size(10);
        for (name, matchers) in &cases {
            // Fill the cache before measuring.
            block
                .postings(matchers, &mut ctx(cache, cost_model))
                .unwrap();
            group.bench_function(*name, |b| {
                b.iter(|| {
                    block
                        .postings(matchers, &mut ctx(cache, cost_model))
                        .unwrap()
                })
            });
        }
        group.finish();
    }

    let mut group = c.benchmark_group("postings_and_series");
    group.sample_size(10);
    for (name, matchers) in &cases {
        if block
            .postings(matchers, &mut ctx(None, true))
            .unwrap()
            .filters
            .is_empty()
        {
            continue;
        }
        for (label, cost_model) in [("model", true), ("no_model", false)] {
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| {
                    let mut cx = ctx(None, cost_model);
                    let p = block.postings(matchers, &mut cx).unwrap();
                    block.series(&p.refs, &p.filters, 0, 1, &mut cx).unwrap()
                })
            });
        }
    }
    group.finish();
}

/// Resident set size of this process, from /proc/self/statm.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn index_header(c: &mut Criterion) {
    let mut blocks = vec![("scheme".to_string(), scheme_bucket(), block_id())];
    let medium = std::env::var("STELE_MEDIUM_BLOCKS").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data/generated/medium"),
        PathBuf::from,
    );
    let first_medium = std::fs::read_dir(&medium).ok().and_then(|dir| {
        let mut ids: Vec<Ulid> = dir
            .filter_map(|e| Ulid::from_string(&e.ok()?.file_name().to_string_lossy()).ok())
            .collect();
        ids.sort();
        ids.first().copied()
    });
    match first_medium {
        Some(id) => blocks.push(("medium".to_string(), medium, id)),
        None => eprintln!(
            "index_header: NO medium block under {} (set STELE_MEDIUM_BLOCKS or run \
             `stele gen --profile medium`): measuring the scheme block only",
            medium.display()
        ),
    }

    let mut group = c.benchmark_group("index_header");
    group.sample_size(10);
    for (name, bucket, id) in &blocks {
        // The figures of one build.
        let data_dir = tempfile::tempdir().unwrap();
        let opened = open_block(bucket, *id, data_dir.path());
        let rss_before = rss_bytes();
        let started = Instant::now();
        let index = opened.block.index.get().unwrap();
        let elapsed = started.elapsed();
        let rss_after = rss_bytes();
        let mut names: Vec<(String, Vec<String>)> = vec![(String::new(), vec![String::new()])];
        for n in index.label_names().unwrap() {
            let values = index.label_values(&n).unwrap();
            names.push((n, values));
        }
        let heap = stele::plan::header::heap_bytes(
            u64::from(index.symbol_count()),
            names
                .iter()
                .map(|(n, vs)| (n.as_str(), vs.iter().map(String::as_str).collect())),
        );
        let read = opened.io.index_counters.bytes.load(Ordering::Relaxed);
        let index_bytes = opened.block.index.index_len();
        let pct = |x: u64| 100.0 * x as f64 / index_bytes as f64;
        eprintln!(
            "index_header {name} ({id}): built in {elapsed:.1?}; read {read} B of a {} B index \
             ({:.2}%); header file {} B ({:.2}%); heap {heap} B ({:.3}%); RSS +{} B ({:.2}%)",
            index_bytes,
            pct(read),
            opened.block.index.header_size(),
            pct(opened.block.index.header_size()),
            pct(heap),
            rss_after.saturating_sub(rss_before),
            pct(rss_after.saturating_sub(rss_before)),
        );
        drop(index);

        group.bench_function(format!("build/{name}"), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let opened = open_block(bucket, *id, dir.path());
                    (dir, opened)
                },
                |(dir, opened)| {
                    opened.block.index.get().unwrap();
                    (dir, opened)
                },
                BatchSize::PerIteration,
            )
        });

        // Reopening a header already on disk: what the first query of a block closed since
        // (cold start in lazy mode, idle timeout) pays.
        opened.block.index.close();
        group.bench_function(format!("open/{name}"), |b| {
            b.iter(|| {
                opened.block.index.get().unwrap();
                opened.block.index.close();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, postings, index_header);
criterion_main!(benches);
