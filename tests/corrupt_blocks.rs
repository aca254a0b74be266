//! Damaged blocks: every kind of corruption gives a typed error that names the file, the
//! section and the offset, never a panic; `stele block verify` exits non-zero saying so.

mod common;

use std::path::{Path, PathBuf};

use stele::block::{verify_block, write_block, LocalBlock};
use stele::model::Labels;
use stele::tsdb::{Section, TsdbError};

fn make_block(parent: &Path) -> PathBuf {
    let mut series: Vec<(Labels, Vec<(i64, f64)>)> = (0..200)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "metric"),
                ("instance", &format!("host-{i:03}")),
                ("zone", ["a", "b", "ü"][i % 3]),
            ]);
            let samples = (0..300i64)
                .map(|k| (k * 15_000, (i as i64 * k) as f64))
                .collect();
            (labels, samples)
        })
        .collect();
    let ulid = ulid::Ulid::from_parts(0, 42);
    write_block(parent, ulid, 0, 7_200_000, &mut series, None).unwrap();
    parent.join(ulid.to_string())
}

fn flip_byte(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).unwrap();
    data[offset as usize] ^= 0x5a;
    std::fs::write(path, data).unwrap();
}

fn expect_corrupt(dir: &Path, section: Section, file_suffix: &str) -> TsdbError {
    let err = verify_block(dir).expect_err("corruption must be detected");
    match &err {
        TsdbError::Corrupt {
            file, section: s, ..
        } => {
            assert_eq!(*s, section, "wrong section in: {err}");
            assert!(
                file.ends_with(file_suffix),
                "error names {file}, expected …{file_suffix}: {err}"
            );
        }
        other => panic!("expected Corrupt({section}), got {other}"),
    }
    err
}

#[test]
fn every_index_section_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = make_block(&tmp.path().join("pristine"));
    verify_block(&pristine).unwrap();
    let toc = *LocalBlock::open(&pristine).unwrap().index.toc();
    let index_len = std::fs::metadata(pristine.join("index")).unwrap().len();
    let cases = [
        ("magic", 1, Section::IndexHeader),
        ("symbols", toc.symbols + 9, Section::Symbols),
        ("series", toc.series + 3, Section::Series),
        ("postings", toc.postings + 9, Section::Postings),
        (
            "postings offset table",
            toc.postings_table + 9,
            Section::PostingsOffsetTable,
        ),
        ("toc", index_len - 20, Section::Toc),
    ];
    for (i, (what, offset, section)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        common::copy_dir(&pristine, &dir);
        flip_byte(&dir.join("index"), offset);
        let err = expect_corrupt(&dir, section, "index");
        println!("{what}: {err}");
    }
}

#[test]
fn truncated_and_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = make_block(&tmp.path().join("pristine"));

    let dir = tmp.path().join("short-index");
    common::copy_dir(&pristine, &dir);
    let index = std::fs::read(dir.join("index")).unwrap();
    std::fs::write(dir.join("index"), &index[..index.len() / 2]).unwrap();
    let err = verify_block(&dir).unwrap_err();
    assert!(err.to_string().contains("index"), "{err}");

    let dir = tmp.path().join("short-chunks");
    common::copy_dir(&pristine, &dir);
    let seg = dir.join("chunks/000001");
    let data = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &data[..data.len() / 2]).unwrap();
    let err = verify_block(&dir).unwrap_err();
    assert!(err.to_string().contains("chunks/000001"), "{err}");

    let dir = tmp.path().join("no-index");
    common::copy_dir(&pristine, &dir);
    std::fs::remove_file(dir.join("index")).unwrap();
    assert!(matches!(verify_block(&dir), Err(TsdbError::Io { .. })));
}

#[test]
fn chunk_crc_and_meta_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = make_block(&tmp.path().join("pristine"));

    let dir = tmp.path().join("chunk-crc");
    common::copy_dir(&pristine, &dir);
    flip_byte(&dir.join("chunks/000001"), 40);
    expect_corrupt(&dir, Section::ChunkRecord, "chunks/000001");

    let dir = tmp.path().join("segment-magic");
    common::copy_dir(&pristine, &dir);
    flip_byte(&dir.join("chunks/000001"), 0);
    expect_corrupt(&dir, Section::ChunkSegmentHeader, "chunks/000001");

    let dir = tmp.path().join("meta");
    common::copy_dir(&pristine, &dir);
    std::fs::write(dir.join("meta.json"), b"{\"ulid\": 12, garbage").unwrap();
    expect_corrupt(&dir, Section::Meta, "meta.json");

    let dir = tmp.path().join("tombstones");
    common::copy_dir(&pristine, &dir);
    std::fs::write(dir.join("tombstones"), b"\x01\x30\xba\x30\x01garbage").unwrap();
    expect_corrupt(&dir, Section::Tombstones, "tombstones");

    // A series ref past the end of the series section is an error, not a panic.
    let block = LocalBlock::open(&pristine).unwrap();
    assert!(block.index.series(u64::from(u32::MAX)).is_err());
    assert!(block.chunks.chunk(u64::MAX).is_err());
}

#[test]
fn writer_refuses_series_without_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let mut series = vec![(Labels::from_pairs([("__name__", "empty")]), Vec::new())];
    let err = write_block(
        tmp.path(),
        ulid::Ulid::from_parts(0, 1),
        0,
        1000,
        &mut series,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, TsdbError::InvalidInput(_)), "{err}");
}

#[test]
fn verify_command_fails_with_a_precise_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = make_block(tmp.path());
    let ok = common::stele()
        .args(["block", "verify"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 blocks verified"));

    let toc = *LocalBlock::open(&dir).unwrap().index.toc();
    flip_byte(&dir.join("index"), toc.series + 3);
    let out = common::stele()
        .args(["block", "verify"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is corrupt") && stderr.contains("index") && stderr.contains("series"),
        "{stderr}"
    );
}
