//! XOR chunk codec throughput, in samples per second.
//!
//! Decodes and encodes 1000 chunks of 120 samples each (Prometheus' usual chunk size) for several
//! realistic series shapes: a 15 s scrape interval with occasional millisecond jitter, and values
//! that are counters with small integer increments, noisy float gauges, or constants, plus a mix
//! of all three. Run with `cargo bench --bench xor` (quick: `-- --warm-up-time 1
//! --measurement-time 3`).
//!
//! Decoding goes through `XorIter::for_each_sample`, the internal loop the block reader uses,
//! into a checksum; `xor_decode_vec` pushes the samples into a `Vec` the way the block reader
//! does, and `xor_decode_next` measures the plain iterator (`next`) for comparison.
//!
//! For `perf stat`, `XOR_PERF=<shape>:<iterations>[:next|:vec]` replaces criterion by a fixed
//! number of decoding passes over one data set (see `perf_run`).

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use stele::tsdb::chunks::{XorEncoder, XorIter};

const SAMPLES_PER_CHUNK: usize = 120;
const CHUNKS: usize = 1000;

#[derive(Clone, Copy)]
enum Shape {
    Counter,
    Gauge,
    Constant,
}

/// One chunk's samples: 15 s steps, about one in ten off by a few milliseconds.
fn series(rng: &mut Pcg64, shape: Shape) -> Vec<(i64, f64)> {
    let mut t = 1_700_000_000_000i64 + rng.gen_range(0..15_000);
    let mut counter = rng.gen_range(0..1_000_000) as f64;
    let base = rng.gen_range(0.0..100.0);
    let constant = rng.gen_range(0..100) as f64;
    (0..SAMPLES_PER_CHUNK)
        .map(|_| {
            let jitter = if rng.gen_ratio(1, 10) {
                rng.gen_range(-50..50)
            } else {
                0
            };
            t += 15_000;
            let v = match shape {
                Shape::Counter => {
                    counter += rng.gen_range(0..10) as f64;
                    counter
                }
                Shape::Gauge => base + rng.gen_range(-0.5..0.5),
                Shape::Constant => constant,
            };
            (t + jitter, v)
        })
        .collect()
}

/// Decodes every chunk with the internal loop and folds the samples into a checksum.
fn decode_internal(encoded: &[Vec<u8>]) -> u64 {
    let mut acc = 0u64;
    for chunk in encoded {
        let mut it = XorIter::new(black_box(chunk)).expect("valid chunk");
        it.for_each_sample(|t, v| acc = acc.wrapping_add(t as u64 ^ v.to_bits()))
            .expect("valid chunk");
    }
    acc
}

/// The same into a `Vec`, like the block reader: one vector reused across chunks, so what is
/// measured is the push (capacity check, store, length), not the allocator.
fn decode_vec(encoded: &[Vec<u8>]) -> u64 {
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut acc = 0u64;
    for chunk in encoded {
        out.clear();
        let mut it = XorIter::new(black_box(chunk)).expect("valid chunk");
        it.for_each_sample(|t, v| out.push((t, v)))
            .expect("valid chunk");
        let (t, v) = black_box(&out).last().copied().unwrap_or_default();
        acc = acc.wrapping_add(out.len() as u64 ^ t as u64 ^ v.to_bits());
    }
    acc
}

/// The same with `XorIter::next`.
fn decode_next(encoded: &[Vec<u8>]) -> u64 {
    let mut acc = 0u64;
    for chunk in encoded {
        for (t, v) in XorIter::new(black_box(chunk)).expect("valid chunk") {
            acc = acc.wrapping_add(t as u64 ^ v.to_bits());
        }
    }
    acc
}

fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut e = XorEncoder::new();
    for &(t, v) in samples {
        e.append(t, v);
    }
    e.into_bytes()
}

/// A named set of chunks, each a list of samples.
type DataSet = (&'static str, Vec<Vec<(i64, f64)>>);

fn data_sets() -> Vec<DataSet> {
    let mut rng = Pcg64::seed_from_u64(42);
    let shapes = [
        ("counter", Shape::Counter),
        ("gauge", Shape::Gauge),
        ("constant", Shape::Constant),
    ];
    let mut sets: Vec<_> = shapes
        .iter()
        .map(|&(name, shape)| (name, (0..CHUNKS).map(|_| series(&mut rng, shape)).collect()))
        .collect();
    let mixed = (0..CHUNKS)
        .map(|i| series(&mut rng, shapes[i % 3].1))
        .collect();
    sets.push(("mixed", mixed));
    sets
}

fn bench(c: &mut Criterion) {
    let sets = data_sets();
    let total = (SAMPLES_PER_CHUNK * CHUNKS) as u64;

    let encoded: Vec<(&str, Vec<Vec<u8>>)> = sets
        .iter()
        .map(|(name, chunks)| (*name, chunks.iter().map(|s| encode(s)).collect()))
        .collect();
    for (group, decode) in [
        ("xor_decode", decode_internal as fn(&[Vec<u8>]) -> u64),
        ("xor_decode_vec", decode_vec),
        ("xor_decode_next", decode_next),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(total));
        for (name, chunks) in &encoded {
            if group == "xor_decode" {
                let bytes: usize = chunks.iter().map(Vec::len).sum();
                eprintln!("{name}: {:.2} bytes/sample", bytes as f64 / total as f64);
            }
            g.bench_with_input(BenchmarkId::from_parameter(name), chunks, |b, chunks| {
                b.iter(|| decode(chunks))
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("xor_encode");
    g.throughput(Throughput::Elements(total));
    for (name, chunks) in &sets {
        g.bench_with_input(BenchmarkId::from_parameter(name), chunks, |b, chunks| {
            b.iter(|| {
                let mut n = 0usize;
                for s in chunks {
                    n += encode(black_box(s)).len();
                }
                n
            })
        });
    }
    g.finish();
}

/// `XOR_PERF=<shape>:<iterations>[:next|:vec]` instead of criterion: decodes that data set a
/// fixed number of times with the same loop as `xor_decode` (`xor_decode_next` with `:next`,
/// `xor_decode_vec` with `:vec`) and exits, for a steady per-sample count under `perf stat`
/// (subtract a run with 0 iterations, which only builds the data).
fn perf_run(spec: &str) {
    let mut parts = spec.split(':');
    let (Some(name), Some(iterations)) = (parts.next(), parts.next()) else {
        panic!("XOR_PERF=<shape>:<iterations>[:next|:vec]");
    };
    let iterations: usize = iterations.parse().expect("iterations");
    let decode = match parts.next() {
        None => decode_internal,
        Some("next") => decode_next,
        Some("vec") => decode_vec,
        Some(other) => panic!("unknown decoder {other:?}: leave it out or say next or vec"),
    };
    let (_, chunks) = data_sets()
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("shape: counter, gauge, constant or mixed");
    let encoded: Vec<Vec<u8>> = chunks.iter().map(|s| encode(s)).collect();
    let mut acc = 0u64;
    for _ in 0..iterations {
        acc = acc.wrapping_add(decode(&encoded));
    }
    println!(
        "{name}: {} samples decoded ({acc:x})",
        iterations * SAMPLES_PER_CHUNK * CHUNKS
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(spec) = std::env::var("XOR_PERF") {
        perf_run(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
