//! Round trips through [`IndexWriter`] and [`IndexReader`], a hand-built v1 index, and
//! corruption: every damaged input must give an error naming the right section, never a
//! panic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use proptest::prelude::*;

use super::series::encode_series_entry;
use super::*;
use crate::tsdb::encoding::Encbuf;
use crate::tsdb::error::{Section, TsdbError};
use crate::tsdb::source::ReadAt;

type LabelSet = Vec<(String, String)>;
/// A written series: its reference, labels and chunks.
type Written = (u64, LabelSet, Vec<ChunkMeta>);

/// Writes `series` (any order) and returns the index bytes and the sorted series with refs.
fn build(series: &[LabelSet]) -> (Bytes, Vec<Written>) {
    let mut sorted: Vec<LabelSet> = series.to_vec();
    for s in &mut sorted {
        s.sort();
    }
    sorted.sort();
    sorted.dedup();
    let symbols: BTreeSet<&str> = sorted
        .iter()
        .flat_map(|s| s.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()]))
        .collect();
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    w.add_symbols(symbols.iter()).unwrap();
    let mut out = Vec::new();
    for (i, s) in sorted.iter().enumerate() {
        let labels: Vec<(&str, &str)> = s.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let chunks: Vec<ChunkMeta> = (0..1 + (i % 3) as i64)
            .map(|c| ChunkMeta {
                min_time: 1_000 * c - 500,
                max_time: 1_000 * c + 499,
                chunk_ref: (c as u64) << 32 | (8 + 100 * i as u64),
            })
            .collect();
        let r = w.add_series(&labels, &chunks).unwrap();
        out.push((r, s.clone(), chunks));
    }
    (Bytes::from(w.finish().unwrap()), out)
}

fn open(b: &Bytes) -> Result<IndexReader, TsdbError> {
    IndexReader::open(Arc::new(b.clone()))
}

fn ls(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Checks every lookup of `r` against the series it was built from.
fn check_against(r: &IndexReader, want: &[Written]) {
    let mut postings: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for (sref, labels, chunks) in want {
        let got = r.series(*sref).unwrap();
        assert_eq!(&got.labels, labels);
        assert_eq!(&got.chunks, chunks);
        for l in labels {
            postings.entry(l.clone()).or_default().push(*sref);
        }
    }
    let all: Vec<u64> = want.iter().map(|w| w.0).collect();
    assert_eq!(r.all_postings().unwrap(), all);
    let names: BTreeSet<&String> = postings.keys().map(|k| &k.0).collect();
    assert_eq!(
        r.label_names().unwrap(),
        names.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    for name in names {
        let values: Vec<String> = postings
            .keys()
            .filter(|k| &k.0 == name)
            .map(|k| k.1.clone())
            .collect();
        assert_eq!(&r.label_values(name).unwrap(), &values);
    }
    for ((n, v), refs) in &postings {
        assert_eq!(&r.postings(n, v).unwrap(), refs, "postings of {n}={v}");
        assert!(r.postings_range(n, v).unwrap().is_some());
    }
    assert_eq!(r.postings("nope", "x").unwrap(), Vec::<u64>::new());
    assert_eq!(r.postings_range("job", "\u{10FFFF}").unwrap(), None);
    assert!(r.label_values("nope").unwrap().is_empty());
    let stats = r.verify().unwrap();
    assert_eq!(stats.series, want.len() as u64);
    assert_eq!(
        stats.chunks,
        want.iter().map(|w| w.2.len() as u64).sum::<u64>()
    );
    assert_eq!(stats.postings_lists, postings.len() as u64 + 1);
    assert_eq!(stats.symbols, u64::from(r.symbol_count()));
}

fn many_series() -> Vec<LabelSet> {
    let values = ["ünïcödé", "日本語", "emoji-🦀", "plain", "a b", "ZZ"];
    (0..3000)
        .map(|i| {
            let mut s = ls(&[(
                "__name__",
                if i % 3 == 0 {
                    "up"
                } else {
                    "http_requests_total"
                },
            )]);
            s.push(("instance".into(), format!("host-{:04}:9090", i % 700)));
            s.push(("job".into(), values[i % values.len()].to_string()));
            s.push(("shard".into(), format!("{}", i)));
            if i % 5 == 0 {
                s.push(("zone".into(), "éu-west".into()));
            }
            s
        })
        .collect()
}

#[test]
fn round_trip_many_series() {
    let (b, want) = build(&many_series());
    assert_eq!(want.len(), 3000);
    let r = open(&b).unwrap();
    assert_eq!(r.version(), IndexVersion::V2);
    check_against(&r, &want);
    // Refs are offsets / 16 and entries are aligned.
    assert!(want.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(want[0].0 * 16 >= r.toc().series);
    // A 3000-value label name exercises sampling across many samples.
    assert_eq!(r.label_values("shard").unwrap().len(), 3000);
}

/// One resolver over many series (far more symbols than memo slots, so slots are shared
/// and overwritten) gives every series its own labels, in any order.
#[test]
fn label_resolver_memo_never_mixes_symbols() {
    let (b, want) = build(&many_series());
    let r = open(&b).unwrap();
    assert!(r.symbol_count() > 3 * 256);
    let mut resolver = r.label_resolver();
    let mut labels = Vec::new();
    let forward = want.iter();
    let backward = want.iter().rev().step_by(7);
    for (sref, expected, _) in forward.chain(backward) {
        let entry = r.series_refs(*sref).unwrap();
        let off = sref * 16;
        resolver.resolve(off, &entry.labels, &mut labels).unwrap();
        let got: Vec<(String, String)> = labels
            .iter()
            .map(|&(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert_eq!(&got, expected, "series {sref}");
    }
    // A reference past the table is an error even where its slot holds a symbol.
    let past = r.symbol_count();
    assert!(resolver
        .resolve(0, &[(0, 0), (past, 0)], &mut labels)
        .is_err());
    assert!(resolver.resolve(0, &[(u32::MAX, 0)], &mut labels).is_err());
}

#[test]
fn empty_index_round_trips() {
    let (b, want) = build(&[]);
    let r = open(&b).unwrap();
    assert!(want.is_empty());
    assert!(r.label_names().unwrap().is_empty());
    assert!(r.all_postings().unwrap().is_empty());
    assert_eq!(r.verify().unwrap().postings_lists, 1);
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    assert!(matches!(
        w.add_symbols(["b", "a"]),
        Err(TsdbError::InvalidInput(_))
    ));
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    w.add_symbols(["", "a", "b", "c"]).unwrap();
    assert!(w.add_symbols(["b"]).is_err());
    assert!(
        w.add_series(&[("b", "a"), ("a", "b")], &[]).is_err(),
        "labels unsorted"
    );
    assert!(w.add_series(&[("a", "zz")], &[]).is_err(), "unknown symbol");
    assert!(w.add_series(&[("a", "")], &[]).is_err(), "empty value");
    let bad_chunk = ChunkMeta {
        min_time: 5,
        max_time: 1,
        chunk_ref: 8,
    };
    assert!(w.add_series(&[("a", "b")], &[bad_chunk]).is_err());
    w.add_series(&[("a", "c")], &[]).unwrap();
    assert!(w.add_series(&[("a", "b")], &[]).is_err(), "out of order");
    assert!(w.add_series(&[("a", "c")], &[]).is_err(), "duplicate");
    assert!(w.add_symbols(["d"]).is_err(), "symbols after series");
    w.add_series(&[("a", "c"), ("b", "a")], &[]).unwrap();
    let b = Bytes::from(w.finish().unwrap());
    let r = open(&b).unwrap();
    assert_eq!(r.verify().unwrap().series, 2);
    assert_eq!(r.label_names().unwrap(), vec!["a", "b"]);
}

fn label_set_strategy() -> impl Strategy<Value = Vec<LabelSet>> {
    let name = prop::sample::select(vec!["a", "b", "job", "__name__", "ü"]);
    let value = "[a-c\u{e9}\u{65e5}]{1,3}";
    let set = prop::collection::btree_map(name, value, 1..4).prop_map(|m| {
        m.into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect::<LabelSet>()
    });
    prop::collection::vec(set, 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_random_label_sets(sets in label_set_strategy()) {
        let (b, want) = build(&sets);
        let r = open(&b).unwrap();
        check_against(&r, &want);
    }
}

// ---------------------------------------------------------------------------------------
// Format v1, built by hand: symbol refs are file offsets, series refs are file offsets,
// entries are unaligned, and the postings offset table is not sorted.

struct V1 {
    bytes: Bytes,
    /// `(series ref, labels)` in order.
    series: Vec<Written>,
}

fn build_v1(sets: &[LabelSet]) -> V1 {
    let mut sets = sets.to_vec();
    sets.sort();
    let symbols: BTreeSet<&str> = sets
        .iter()
        .flat_map(|s| s.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()]))
        .collect();
    let mut f = Encbuf::new();
    f.put_be32(MAGIC_INDEX);
    f.put_u8(1);
    // Symbols: the reference of a symbol is the offset of its entry.
    let sym_start = f.len() as u64;
    let mut content = Encbuf::new();
    content.put_be32(symbols.len() as u32);
    let mut sym_ref = BTreeMap::new();
    for s in &symbols {
        sym_ref.insert(*s, (sym_start + 4 + content.len() as u64) as u32);
        content.put_uvarint_bytes(s.as_bytes());
    }
    f.put_be32(content.len() as u32);
    f.put_bytes(content.as_slice());
    f.put_crc32c_from(sym_start as usize + 4);
    // Series, unaligned; the reference is the offset.
    let series_start = f.len() as u64;
    let mut series = Vec::new();
    let mut postings: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    let mut scratch = Encbuf::new();
    for (i, s) in sets.iter().enumerate() {
        let r = f.len() as u64;
        let refs: Vec<(u32, u32)> = s
            .iter()
            .map(|(n, v)| (sym_ref[n.as_str()], sym_ref[v.as_str()]))
            .collect();
        let chunks: Vec<ChunkMeta> = (0..i as i64 % 3)
            .map(|c| ChunkMeta {
                min_time: c * 10,
                max_time: c * 10 + 5,
                chunk_ref: 8 + c as u64,
            })
            .collect();
        encode_series_entry(&mut f, &mut scratch, &refs, &chunks);
        for l in s {
            postings.entry(l.clone()).or_default().push(r as u32);
        }
        series.push((r, s.clone(), chunks));
    }
    // Label indices, unaligned.
    let label_indices = f.len() as u64;
    let mut label_index_offsets = Vec::new();
    let names: BTreeSet<&String> = postings.keys().map(|k| &k.0).collect();
    for name in &names {
        label_index_offsets.push((name.to_string(), f.len() as u64));
        let vals: Vec<u32> = postings
            .keys()
            .filter(|k| &&k.0 == name)
            .map(|k| sym_ref[k.1.as_str()])
            .collect();
        let start = f.len();
        f.put_be32(8 + 4 * vals.len() as u32);
        f.put_be32(1);
        f.put_be32(vals.len() as u32);
        for v in vals {
            f.put_be32(v);
        }
        f.put_crc32c_from(start + 4);
    }
    // Postings, all-postings list first.
    let postings_start = f.len() as u64;
    let mut table = vec![(String::new(), String::new(), f.len() as u64)];
    let all: Vec<u32> = series.iter().map(|s| s.0 as u32).collect();
    encode_postings_list(&all, &mut f);
    for ((n, v), refs) in &postings {
        table.push((n.clone(), v.clone(), f.len() as u64));
        encode_postings_list(refs, &mut f);
    }
    // Label offset table.
    let lot = f.len() as u64;
    let mut c = Encbuf::new();
    c.put_be32(label_index_offsets.len() as u32);
    for (n, o) in &label_index_offsets {
        c.put_uvarint(1);
        c.put_uvarint_bytes(n.as_bytes());
        c.put_uvarint(*o);
    }
    f.put_be32(c.len() as u32);
    let s = f.len();
    f.put_bytes(c.as_slice());
    f.put_crc32c_from(s);
    // Postings offset table, deliberately in reverse order: v1 promises no order.
    let pot = f.len() as u64;
    table.reverse();
    let mut c = Encbuf::new();
    c.put_be32(table.len() as u32);
    for (n, v, o) in &table {
        c.put_uvarint(2);
        c.put_uvarint_bytes(n.as_bytes());
        c.put_uvarint_bytes(v.as_bytes());
        c.put_uvarint(*o);
    }
    f.put_be32(c.len() as u32);
    let s = f.len();
    f.put_bytes(c.as_slice());
    f.put_crc32c_from(s);
    Toc {
        symbols: sym_start,
        series: series_start,
        label_indices,
        label_indices_table: lot,
        postings: postings_start,
        postings_table: pot,
    }
    .encode(&mut f);
    V1 {
        bytes: Bytes::from(f.buf),
        series,
    }
}

#[test]
fn reads_a_hand_built_v1_index() {
    let sets = vec![
        ls(&[("__name__", "up"), ("job", "prom")]),
        ls(&[("__name__", "up"), ("job", "node"), ("zone", "ä")]),
        ls(&[("__name__", "go_goroutines"), ("job", "prom")]),
        ls(&[("a", "1")]),
    ];
    let v1 = build_v1(&sets);
    let r = open(&v1.bytes).unwrap();
    assert_eq!(r.version(), IndexVersion::V1);
    // Series refs are plain offsets: not multiples of 16 in general.
    assert!(v1.series.iter().any(|s| s.0 % 16 != 0));
    check_against(&r, &v1.series);
    // Symbol refs are offsets: the first symbol sits right after the count.
    assert_eq!(r.symbol((r.toc().symbols + 8) as u32).unwrap(), "1");
    assert_eq!(r.symbol((r.toc().symbols + 10) as u32).unwrap(), "__name__");
    assert!(r.symbol(0).is_err());
    // A v1 ref into the middle of an entry is refused rather than misread.
    assert!(r.series(v1.series[1].0 + 1).is_err());
}

// ---------------------------------------------------------------------------------------
// Corruption.

fn small_index() -> &'static (Bytes, Vec<Written>) {
    static CELL: OnceLock<(Bytes, Vec<Written>)> = OnceLock::new();
    CELL.get_or_init(|| build(&many_series()[..60]))
}

fn section_of(e: &TsdbError) -> Option<Section> {
    match e {
        TsdbError::Corrupt { section, .. } => Some(*section),
        _ => None,
    }
}

fn flipped(b: &Bytes, at: u64) -> Bytes {
    let mut v = b.to_vec();
    v[at as usize] ^= 0x20;
    Bytes::from(v)
}

/// Opens, verifies and looks up everything; returns the first error.
fn exercise(b: &Bytes) -> Result<(), TsdbError> {
    let r = open(b)?;
    let mut first = r.verify().err();
    let mut note = |res: Result<(), TsdbError>| {
        if let Err(e) = res {
            first.get_or_insert(e);
        }
    };
    for name in r.label_names().unwrap_or_default() {
        for v in r.label_values(&name).unwrap_or_default() {
            note(r.postings(&name, &v).map(|_| ()));
        }
    }
    note(r.all_postings().map(|_| ()));
    for s in &small_index().1 {
        note(r.series(s.0).map(|_| ()));
    }
    for sref in [0, 1, u64::from(u32::MAX), u64::MAX] {
        let _ = r.series(sref);
    }
    for i in 0..r.symbol_count() {
        note(r.symbol(i).map(|_| ()));
    }
    first.map_or(Ok(()), Err)
}

#[test]
fn truncated_file_wrong_magic_bad_version() {
    let (b, _) = small_index();
    for n in [0, 3, 5, 20, b.len() / 2, b.len() - 1] {
        let e = open(&b.slice(..n)).unwrap_err();
        assert!(matches!(e, TsdbError::Corrupt { .. }), "{n}: {e}");
    }
    let e = open(&flipped(b, 1)).unwrap_err();
    assert_eq!(section_of(&e), Some(Section::IndexHeader));
    assert!(e.to_string().contains("magic"), "{e}");
    let mut v = b.to_vec();
    v[4] = 9;
    let e = open(&Bytes::from(v)).unwrap_err();
    assert_eq!(section_of(&e), Some(Section::IndexHeader));
    let mut v = b.to_vec();
    v[4] = 3;
    assert_eq!(open(&Bytes::from(v)).unwrap().version(), IndexVersion::V2);
}

#[test]
fn flipped_byte_in_each_section_names_it() {
    let (b, want) = small_index();
    let r = open(b).unwrap();
    let toc = *r.toc();
    let len = b.len() as u64;

    let e = open(&flipped(b, len - 30)).unwrap_err();
    assert_eq!(section_of(&e), Some(Section::Toc), "{e}");

    let e = open(&flipped(b, toc.symbols + 12)).unwrap_err();
    assert_eq!(section_of(&e), Some(Section::Symbols), "{e}");

    let e = open(&flipped(b, toc.postings_table + 12)).unwrap_err();
    assert_eq!(section_of(&e), Some(Section::PostingsOffsetTable), "{e}");

    // Series: a byte inside the first entry's body.
    let first = want[0].0 * 16;
    let c = flipped(b, first + 3);
    let r = open(&c).unwrap();
    let e = r.series(want[0].0).unwrap_err();
    assert_eq!(section_of(&e), Some(Section::Series), "{e}");
    assert!(e.to_string().contains(&format!("offset {first}")), "{e}");
    assert_eq!(section_of(&r.verify().unwrap_err()), Some(Section::Series));

    // Postings: a byte inside the all-postings list.
    let range = r.postings_range("", "").unwrap().unwrap();
    let c = flipped(b, range.start + 9);
    let r = open(&c).unwrap();
    let e = r.all_postings().unwrap_err();
    assert_eq!(section_of(&e), Some(Section::Postings), "{e}");
    assert_eq!(
        section_of(&r.verify().unwrap_err()),
        Some(Section::Postings)
    );

    // Legacy label indices and their table are checked by verify.
    let c = flipped(b, toc.label_indices_table + 9);
    let e = open(&c).unwrap().verify().unwrap_err();
    assert_eq!(section_of(&e), Some(Section::LabelOffsetTable), "{e}");
    let c = flipped(b, toc.label_indices + 9);
    let e = open(&c).unwrap().verify().unwrap_err();
    assert_eq!(section_of(&e), Some(Section::LabelIndices), "{e}");
}

#[test]
fn series_ref_out_of_range_is_an_error() {
    let (b, want) = small_index();
    let r = open(b).unwrap();
    for bad in [
        0,
        1,
        want.last().unwrap().0 + 1_000_000,
        u64::MAX / 16 + 1,
        u64::MAX,
    ] {
        let e = r.series(bad).unwrap_err();
        assert_eq!(section_of(&e), Some(Section::Series), "{bad}: {e}");
    }
    // Inside the section but not the start of an entry (the padding after the first).
    assert!(r.series(want[0].0 + 1).is_err() || want[1].0 == want[0].0 + 1);
}

#[test]
fn every_byte_flip_is_caught_except_in_padding() {
    let (b, _) = small_index();
    // Stride through the file to keep the test quick; every section is hit many times.
    for at in (0..b.len() as u64).step_by(3) {
        if exercise(&flipped(b, at)).is_ok() {
            // Only alignment padding before a postings list or label index may go unnoticed.
            assert_eq!(b[at as usize], 0, "flip at {at} went unnoticed");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damaged_input_never_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (b, _) = small_index();
        let mut v = b.to_vec();
        for (i, x) in &flips {
            let i = i.index(v.len());
            v[i] ^= x;
        }
        if let Some(c) = cut {
            v.truncate(c.index(v.len()));
        }
        let b = Bytes::from(v);
        let r = exercise(&b);
        if flips.is_empty() && cut.is_none() {
            prop_assert!(r.is_ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut data in prop::collection::vec(any::<u8>(), 0..400)) {
        // Give it a valid header so the decoders past it get exercised too.
        if data.len() >= 5 {
            data[..4].copy_from_slice(&MAGIC_INDEX.to_be_bytes());
            data[4] = 2;
        }
        let _ = exercise(&Bytes::from(data));
    }
}

#[test]
fn reader_reads_only_ranges() {
    /// A source that refuses any read larger than a limit, to show open and lookups
    /// never pull the whole file.
    struct Limited(Bytes, u64);
    impl ReadAt for Limited {
        fn len(&self) -> u64 {
            ReadAt::len(&self.0)
        }
        fn read_at(
            &self,
            r: std::ops::Range<u64>,
        ) -> Result<Bytes, crate::tsdb::source::ReadError> {
            assert!(
                r.end - r.start <= self.1,
                "read of {} bytes",
                r.end - r.start
            );
            self.0.read_at(r)
        }
    }
    let (b, want) = build(&many_series());
    let toc = *open(&b).unwrap().toc();
    // The biggest whole-section read open needs is the postings offset table.
    let limit = (b.len() as u64 - toc.postings_table).max(toc.series - toc.symbols);
    assert!(limit < b.len() as u64 / 2);
    let r = IndexReader::open(Arc::new(Limited(b.clone(), limit))).unwrap();
    assert_eq!(r.series(want[7].0).unwrap().labels, want[7].1);
    assert_eq!(r.postings("job", "plain").unwrap().len(), 500);
}

#[test]
fn huge_offsets_in_the_postings_table_are_errors() {
    let (b, _) = small_index();
    let toc = *open(b).unwrap().toc();
    let pot = toc.postings_table as usize;
    for huge in [u64::MAX, u64::MAX - 3, b.len() as u64 + 1, 0] {
        let mut entries = Vec::new();
        visit_postings_offset_table(&b[pot..b.len() - toc::TOC_LEN], |e| {
            entries.push((e.name.to_string(), e.value.to_string(), e.offset));
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
        entries[3].2 = huge;
        let mut f = Encbuf::new();
        f.put_bytes(&b[..pot]);
        let mut c = Encbuf::new();
        c.put_be32(entries.len() as u32);
        for (n, v, o) in &entries {
            c.put_uvarint(2);
            c.put_uvarint_bytes(n.as_bytes());
            c.put_uvarint_bytes(v.as_bytes());
            c.put_uvarint(*o);
        }
        f.put_be32(c.len() as u32);
        f.put_bytes(c.as_slice());
        f.put_crc32c_from(pot + 4);
        toc.encode(&mut f);
        let c = Bytes::from(f.buf);
        let r = open(&c).unwrap();
        let (n, v) = (&entries[3].0, &entries[3].1);
        assert!(r.postings(n, v).is_err(), "offset {huge}");
        assert!(r.verify().is_err(), "offset {huge}");
        let _ = exercise(&c);
    }
}
