//! The fuzz targets' seed corpora (`fuzz/`), written with stele's own writers so a fuzz run
//! starts from real structure instead of having to discover magics and CRCs, and checked here:
//! every seed is a valid input that stele's readers accept. `.ci/run` passes the directory
//! this writes, `target/tmp/fuzz-seeds/<target>/`, to each `cargo fuzz run` as a read-only
//! corpus; run this test first when fuzzing by hand (fuzz/README.md).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use stele::tsdb::chunks::{
    decode_chunk_record, decode_xor, verify_segment, ChunkEncoding, ChunkWriter, XorEncoder,
    SEGMENT_HEADER_SIZE,
};
use stele::tsdb::index::{ChunkMeta, IndexReader, IndexWriter};
use stele::tsdb::meta::{BlockMeta, DeletionMark};
use stele::tsdb::tombstones::{decode_tombstones, encode_tombstones, Interval};

fn corpus(target: &str) -> io::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-seeds")
        .join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// An XOR chunk of `n` samples: regular scrapes with some jitter and a slowly moving value.
fn xor_chunk(n: u16, start: i64, step: i64, seed: u64) -> Vec<u8> {
    let mut enc = XorEncoder::new();
    let mut v = seed as f64;
    for i in 0..n {
        let jitter = ((seed.wrapping_mul(31).wrapping_add(u64::from(i) * 7)) % 5) as i64;
        if i % 7 == 3 {
            v += 1.5;
        }
        enc.append(start + i64::from(i) * step + jitter, v);
    }
    enc.into_bytes()
}

/// An index of `series` series over labels `job`, `instance` (and `__name__`).
fn index(series: usize, chunks_per_series: usize) -> Vec<u8> {
    let mut labels: Vec<[String; 3]> = (0..series)
        .map(|i| {
            [
                format!("metric_{}", i % 3),
                format!("host-{i:03}"),
                format!("job-{}", i % 2),
            ]
        })
        .collect();
    labels.sort();
    let mut symbols: Vec<String> = ["__name__", "instance", "job"]
        .into_iter()
        .map(String::from)
        .chain(labels.iter().flatten().cloned())
        .collect();
    symbols.sort();
    symbols.dedup();

    let mut w = IndexWriter::new(Vec::new()).expect("index writer");
    w.add_symbols(&symbols).expect("symbols");
    for (i, [name, inst, job]) in labels.iter().enumerate() {
        let chunks: Vec<ChunkMeta> = (0..chunks_per_series)
            .map(|c| ChunkMeta {
                min_time: 1_000 * c as i64,
                max_time: 1_000 * c as i64 + 999,
                chunk_ref: 8 + 40 * (i * chunks_per_series + c) as u64,
            })
            .collect();
        w.add_series(
            &[("__name__", name), ("instance", inst), ("job", job)],
            &chunks,
        )
        .expect("series");
    }
    w.finish().expect("finish")
}

fn write_seeds() -> io::Result<PathBuf> {
    let dir = corpus("index")?;
    for (name, series, chunks) in [("one", 1, 1), ("small", 6, 2), ("wide", 40, 3)] {
        fs::write(dir.join(format!("seed-{name}")), index(series, chunks))?;
    }
    let empty = IndexWriter::new(Vec::new())
        .and_then(|w| w.finish())
        .expect("empty index");
    fs::write(dir.join("seed-empty"), empty)?;

    let dir = corpus("chunks")?;
    let seg_dir = dir.clone();
    let mut w = ChunkWriter::new(
        Box::new(move |i| fs::File::create(seg_dir.join(format!("seed-segment-{i}")))),
        4096,
    );
    for (i, n) in [1u16, 2, 3, 10, 120].into_iter().enumerate() {
        w.write_chunk(
            ChunkEncoding::Xor,
            &xor_chunk(n, 1_700_000_000_000, 15_000, i as u64),
        )?;
    }
    w.write_chunk(ChunkEncoding::Histogram, &[0, 0])?;
    w.write_chunk(ChunkEncoding::Unknown(9), b"opaque")?;
    w.finish()?;
    let tombstones = encode_tombstones(&[
        (
            1,
            vec![Interval {
                min_time: 0,
                max_time: 10,
            }],
        ),
        (
            42,
            vec![
                Interval {
                    min_time: -5,
                    max_time: 5,
                },
                Interval {
                    min_time: 100,
                    max_time: i64::MAX,
                },
            ],
        ),
    ]);
    fs::write(dir.join("seed-tombstones"), tombstones)?;
    fs::write(
        dir.join("seed-meta.json"),
        r#"{"ulid":"01HQ3Z1Y5K8N0C2V9W4XG6T7BR","minTime":1700000000000,"maxTime":1700007200000,
"stats":{"numSamples":1200,"numSeries":10,"numChunks":10},"compaction":{"level":1,
"sources":["01HQ3Z1Y5K8N0C2V9W4XG6T7BR"]},"version":1,"thanos":{"labels":{"cluster":"eu-1"},
"downsample":{"resolution":0},"source":"sidecar","segment_files":["000001"],
"files":[{"rel_path":"chunks/000001","size_bytes":1234},{"rel_path":"meta.json"}]}}"#,
    )?;
    fs::write(
        dir.join("seed-deletion-mark.json"),
        r#"{"id":"01HQ3Z1Y5K8N0C2V9W4XG6T7BR","deletion_time":1700000000,"version":1}"#,
    )?;

    let dir = corpus("xor")?;
    for (i, n) in [0u16, 1, 2, 3, 30, 200].into_iter().enumerate() {
        fs::write(
            dir.join(format!("seed-chunk-{n}")),
            xor_chunk(n, 1_700_000_000_000, 15_000, i as u64),
        )?;
    }
    // Round-trip shaped inputs: mode byte then 16-byte (t, v) words.
    let mut raw = vec![0u8];
    let mut delta = vec![1u8];
    for i in 0..40u64 {
        raw.extend_from_slice(&(1_700_000_000_000 + 15_000 * i as i64).to_le_bytes());
        raw.extend_from_slice(&(i as f64 * 0.5).to_bits().to_le_bytes());
        delta.extend_from_slice(&(15_000u64 << 8).to_le_bytes());
        delta.extend_from_slice(&((i % 4) << 3).to_le_bytes());
    }
    fs::write(dir.join("seed-pairs-raw"), raw)?;
    fs::write(dir.join("seed-pairs-delta"), delta)?;
    Ok(dir.parent().unwrap_or(&dir).to_path_buf())
}

fn seeds(root: &Path, target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(root.join(target))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_fuzz_seeds_are_valid_inputs() {
    let root = write_seeds().unwrap();

    let index = seeds(&root, "index");
    assert_eq!(index.len(), 4);
    for (name, bytes) in &index {
        let r = IndexReader::open(std::sync::Arc::new(Bytes::from(bytes.clone())))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        r.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
        let series = r.all_postings().unwrap();
        let expected = match name.as_str() {
            "seed-empty" => 0,
            "seed-one" => 1,
            "seed-small" => 6,
            _ => 40,
        };
        assert_eq!(series.len(), expected, "{name}");
        for s in series {
            r.series(s)
                .unwrap_or_else(|e| panic!("{name}: series {s}: {e}"));
        }
    }

    let chunks = seeds(&root, "chunks");
    let segment = &chunks
        .iter()
        .find(|(n, _)| n.starts_with("seed-segment-"))
        .expect("a segment seed")
        .1;
    assert_eq!(verify_segment(&Bytes::from(segment.clone())).unwrap(), 7);
    let mut off = SEGMENT_HEADER_SIZE;
    let mut samples = Vec::new();
    while off < segment.len() {
        let (encoding, data, total) = decode_chunk_record(&segment[off..]).unwrap();
        if encoding == ChunkEncoding::Xor {
            samples.push(decode_xor(data).unwrap().len());
        }
        off += total;
    }
    assert_eq!(samples, [1, 2, 3, 10, 120]);
    let find = |name: &str| &chunks.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(decode_tombstones(find("seed-tombstones")).unwrap().len(), 2);
    BlockMeta::parse("meta.json", find("seed-meta.json")).unwrap();
    DeletionMark::parse("deletion-mark.json", find("seed-deletion-mark.json")).unwrap();

    let xor = seeds(&root, "xor");
    for n in [0usize, 1, 2, 3, 30, 200] {
        let chunk = &xor
            .iter()
            .find(|(name, _)| *name == format!("seed-chunk-{n}"))
            .unwrap()
            .1;
        assert_eq!(decode_xor(chunk).unwrap().len(), n);
    }
    assert_eq!(xor.len(), 8);
}
