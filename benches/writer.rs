//! Block writing throughput: `stele gen` end to end (series enumeration, sample values, XOR
//! encoding, chunk segment and index writing, to a temp dir), in samples per second on one
//! core. Target: at least 5M samples/s.
//!
//! Run: `cargo bench --bench writer`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stele::gen::profile::parse_profile;

const PROFILE: &str = r#"
seed = 1
start = "2026-11-01T00:00:00Z"
blocks = 1
pod_churn = 0.05
counter_reset_probability = 0.0002
scrape_jitter_probability = 0.05
[external_labels]
cluster = "bench"
[topology]
nodes = 10
cpus_per_node = 8
namespaces = 4
deployments_per_namespace = 5
pods_per_deployment = 3
containers_per_pod = 2
http_handlers = 6
"#;

fn writer(c: &mut Criterion) {
    let profile = parse_profile("bench", "bench", PROFILE).unwrap();
    let mut group = c.benchmark_group("gen");
    group.throughput(Throughput::Elements(profile.total_samples()));
    group.sample_size(10);
    group.bench_function("write_block", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            stele::gen::generate(&profile, dir.path(), &indicatif::ProgressBar::hidden()).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, writer);
criterion_main!(benches);
