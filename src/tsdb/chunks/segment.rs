//! Chunk segment files: the header, the record framing, a random-access reader, a sequential
//! verifier and a writer. See the module docs of [`super`] for the layout.

use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use bytes::Bytes;

use super::{chunk_ref, split_chunk_ref, Chunk, ChunkEncoding};
use crate::tsdb::encoding::{
    read_uvarint, uvarint_len, verify_crc32c, Decbuf, DecodeError, Encbuf,
};
use crate::tsdb::error::{Section, TsdbError};
use crate::tsdb::source::ReadAt;

pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
pub const SEGMENT_VERSION: u8 = 1;
pub const SEGMENT_HEADER_SIZE: usize = 8;
/// Prometheus' default; a segment only exceeds it when a single record is larger.
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 512 << 20;

/// A uvarint length field is at most this long.
const MAX_LEN_FIELD: usize = 10;
/// Bytes of encoding + CRC around a record's data.
const RECORD_OVERHEAD: usize = 1 + 4;
/// First read for [`ChunkReader::chunk`]: most chunks (~120 samples) are well below this, so one
/// `read_at` usually returns the whole record; larger ones take a second read.
const CHUNK_PREFETCH: u64 = 1024;
/// Read window of [`verify_segment`].
const VERIFY_WINDOW: u64 = 1 << 20;

/// The file name of a 0-based segment index: 0 is `000001`.
pub fn segment_file_name(index: u32) -> String {
    format!("{:06}", u64::from(index) + 1)
}

/// Decodes the record at the start of `b`: its encoding, its data and its total length
/// (length field, encoding, data and CRC), after checking the CRC.
pub fn decode_chunk_record(b: &[u8]) -> Result<(ChunkEncoding, &[u8], usize), DecodeError> {
    let mut d = Decbuf::new(b);
    let len = d.uvarint_usize()?;
    let body_len = len.checked_add(1).ok_or(DecodeError::OutOfRange {
        value: len as u64,
        target: "chunk length",
    })?;
    let body = d.bytes(body_len)?;
    let crc = d.be32()?;
    verify_crc32c(body, crc)?;
    match body.split_first() {
        Some((&enc, data)) => Ok((ChunkEncoding::from_u8(enc), data, b.len() - d.len())),
        None => Err(DecodeError::Invalid("empty chunk record".into())),
    }
}

/// Appends one record to `out`.
pub fn encode_chunk_record(enc: ChunkEncoding, data: &[u8], out: &mut Encbuf) {
    out.put_uvarint(data.len() as u64);
    let start = out.len();
    out.put_u8(enc.as_u8());
    out.put_bytes(data);
    out.put_crc32c_from(start);
}

/// Checks a segment header; errors name the file and the offending offset.
fn check_header(src: &dyn ReadAt) -> Result<(), TsdbError> {
    let name = src.name();
    let sec = Section::ChunkSegmentHeader;
    let len = src.len();
    if len < SEGMENT_HEADER_SIZE as u64 {
        let e = DecodeError::ShortRead {
            needed: SEGMENT_HEADER_SIZE,
            available: len as usize,
        };
        return Err(TsdbError::corrupt(name, sec, 0, e));
    }
    let hdr = src
        .read_at(0..SEGMENT_HEADER_SIZE as u64)
        .map_err(|e| TsdbError::read(name, sec, 0, e))?;
    let mut d = Decbuf::new(&hdr);
    let magic = d.be32().map_err(|e| TsdbError::corrupt(name, sec, 0, e))?;
    if magic != SEGMENT_MAGIC {
        return Err(TsdbError::invalid(
            name,
            sec,
            0,
            format!("bad magic {magic:#010x}, want {SEGMENT_MAGIC:#010x}"),
        ));
    }
    let version = d.u8().map_err(|e| TsdbError::corrupt(name, sec, 4, e))?;
    if version != SEGMENT_VERSION {
        return Err(TsdbError::invalid(
            name,
            sec,
            4,
            format!("unsupported chunk format version {version}"),
        ));
    }
    // Prometheus ignores the 3 padding bytes; so do we.
    Ok(())
}

/// Random access to the chunks of a block by reference.
///
/// Every error names the segment file and the record's offset (the chunk reference's lower
/// half), with [`Section::ChunkRecord`].
pub struct ChunkReader {
    segments: Vec<Arc<dyn ReadAt>>,
}

impl ChunkReader {
    /// `segments[0]` is file `000001`, and so on. Checks every header.
    pub fn new(segments: Vec<Arc<dyn ReadAt>>) -> Result<Self, TsdbError> {
        for s in &segments {
            check_header(s.as_ref())?;
        }
        Ok(ChunkReader { segments })
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Length in bytes of segment `i` (0-based), if it exists.
    pub fn segment_len(&self, i: usize) -> Option<u64> {
        self.segments.get(i).map(|s| s.len())
    }

    /// Reads and CRC-checks the chunk at `r`. One `read_at` for records up to ~1 KiB, two
    /// otherwise; never more than the record plus that prefetch.
    pub fn chunk(&self, r: u64) -> Result<Chunk, TsdbError> {
        let (seg, off) = split_chunk_ref(r);
        let off = u64::from(off);
        let sec = Section::ChunkRecord;
        let Some(src) = self.segments.get(seg as usize) else {
            return Err(TsdbError::invalid(
                &segment_file_name(seg),
                sec,
                off,
                format!(
                    "chunk ref {r:#x}: segment index {seg} out of range ({} segments)",
                    self.segments.len()
                ),
            ));
        };
        let name = src.name();
        let len = src.len();
        if off < SEGMENT_HEADER_SIZE as u64 {
            return Err(TsdbError::invalid(
                name,
                sec,
                off,
                format!("chunk ref {r:#x}: offset inside the segment header"),
            ));
        }
        if off >= len {
            return Err(TsdbError::invalid(
                name,
                sec,
                off,
                format!("chunk ref {r:#x}: offset past the end of the segment ({len} bytes)"),
            ));
        }
        let corrupt = |e| TsdbError::corrupt(name, sec, off, e);
        let read = |range| {
            src.read_at(range)
                .map_err(|e| TsdbError::read(name, sec, off, e))
        };

        let prefix = read(off..len.min(off + CHUNK_PREFETCH))?;
        let (data_len, n) = read_uvarint(&prefix).map_err(corrupt)?;
        let total = data_len
            .checked_add((n + RECORD_OVERHEAD) as u64)
            .filter(|&t| t <= len - off)
            .ok_or_else(|| {
                corrupt(DecodeError::ShortRead {
                    needed: (n + RECORD_OVERHEAD).saturating_add(data_len as usize),
                    available: (len - off) as usize,
                })
            })?;
        // `total <= len - off`, which is a usize-sized read of a ReadAt: fits usize.
        let record = if total <= prefix.len() as u64 {
            prefix.slice(n..total as usize)
        } else {
            read(off + n as u64..off + total)?
        };
        let body_len = record.len() - 4;
        let (body, crc) = record.split_at(body_len);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        verify_crc32c(body, stored).map_err(corrupt)?;
        Ok(Chunk {
            encoding: ChunkEncoding::from_u8(record[0]),
            data: record.slice(1..body_len),
        })
    }
}

/// Checks a whole segment file: header, then every record's framing and CRC up to the end.
/// Returns the number of records. Reads in windows of about 1 MiB (or one record, if larger).
pub fn verify_segment(src: &dyn ReadAt) -> Result<usize, TsdbError> {
    check_header(src)?;
    let name = src.name();
    let sec = Section::ChunkRecord;
    let len = src.len();
    let mut off = SEGMENT_HEADER_SIZE as u64;
    let mut win = Bytes::new();
    let mut win_start = off;
    let mut records = 0;
    while off < len {
        let rel = (off - win_start) as usize;
        let rest = win.get(rel..).unwrap_or(&[]);
        let win_end = win_start + win.len() as u64;
        match decode_chunk_record(rest) {
            Ok((_, _, total)) => {
                off += total as u64;
                records += 1;
            }
            Err(DecodeError::ShortRead { .. }) if win_end < len => {
                // The record runs past the window: size the next one to hold it whole, unless
                // its length field says it runs past the file.
                let mut want = VERIFY_WINDOW;
                if let Ok((data_len, n)) = read_uvarint(rest) {
                    let total = data_len.saturating_add((n + RECORD_OVERHEAD) as u64);
                    if total > len - off {
                        let e = DecodeError::ShortRead {
                            needed: total.min(usize::MAX as u64) as usize,
                            available: (len - off) as usize,
                        };
                        return Err(TsdbError::corrupt(name, sec, off, e));
                    }
                    want = want.max(total);
                }
                win = src
                    .read_at(off..len.min(off + want))
                    .map_err(|e| TsdbError::read(name, sec, off, e))?;
                win_start = off;
            }
            Err(e) => return Err(TsdbError::corrupt(name, sec, off, e)),
        }
    }
    Ok(records)
}

/// Writes chunk records into numbered segments, cutting a new one when the next record would
/// push the current one past the size limit (a record never spans files; one larger than the
/// limit gets a segment of its own).
///
/// Buffered; a write costs a few `memcpy`s into the buffer and a CRC, with no allocation.
pub struct ChunkWriter<W: Write> {
    factory: Box<dyn FnMut(u32) -> io::Result<W>>,
    max_segment_size: u64,
    cur: Option<BufWriter<W>>,
    /// 0-based index of `cur`.
    seg_index: u32,
    seg_len: u64,
    sizes: Vec<u64>,
}

impl<W: Write> ChunkWriter<W> {
    /// Buffer per open segment.
    const BUF_SIZE: usize = 1 << 20;

    /// `factory(i)` opens segment `i` (0-based: 0 is `000001`). `max_segment_size` is capped at
    /// 4 GiB because record offsets are 32 bits.
    pub fn new(factory: Box<dyn FnMut(u32) -> io::Result<W>>, max_segment_size: u64) -> Self {
        ChunkWriter {
            factory,
            max_segment_size: max_segment_size.min(u64::from(u32::MAX)),
            cur: None,
            seg_index: 0,
            seg_len: 0,
            sizes: Vec::new(),
        }
    }

    fn open_segment(&mut self, index: u32) -> io::Result<()> {
        let mut w = BufWriter::with_capacity(Self::BUF_SIZE, (self.factory)(index)?);
        let mut hdr = [0u8; SEGMENT_HEADER_SIZE];
        hdr[..4].copy_from_slice(&SEGMENT_MAGIC.to_be_bytes());
        hdr[4] = SEGMENT_VERSION;
        w.write_all(&hdr)?;
        self.cur = Some(w);
        self.seg_index = index;
        self.seg_len = SEGMENT_HEADER_SIZE as u64;
        Ok(())
    }

    fn close_segment(&mut self) -> io::Result<()> {
        if let Some(w) = self.cur.take() {
            let mut inner = w.into_inner().map_err(|e| e.into_error())?;
            inner.flush()?;
            self.sizes.push(self.seg_len);
        }
        Ok(())
    }

    /// Writes one record and returns its chunk reference.
    pub fn write_chunk(&mut self, enc: ChunkEncoding, data: &[u8]) -> io::Result<u64> {
        let record_len = (uvarint_len(data.len() as u64) + RECORD_OVERHEAD + data.len()) as u64;
        let has_records = self.seg_len > SEGMENT_HEADER_SIZE as u64;
        if self.cur.is_none() {
            self.open_segment(0)?;
        } else if has_records && self.seg_len + record_len > self.max_segment_size {
            let next = self.seg_index.checked_add(1).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "too many chunk segments")
            })?;
            self.close_segment()?;
            self.open_segment(next)?;
        }
        let offset = u32::try_from(self.seg_len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "chunk offset does not fit 32 bits",
            )
        })?;
        let Some(w) = self.cur.as_mut() else {
            return Err(io::Error::other("no open segment"));
        };
        let mut lenbuf = [0u8; MAX_LEN_FIELD];
        let mut v = data.len() as u64;
        let mut n = 0;
        while v >= 0x80 {
            lenbuf[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        lenbuf[n] = v as u8;
        let encb = [enc.as_u8()];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&encb), data);
        w.write_all(&lenbuf[..=n])?;
        w.write_all(&encb)?;
        w.write_all(data)?;
        w.write_all(&crc.to_be_bytes())?;
        self.seg_len += record_len;
        Ok(chunk_ref(self.seg_index, offset))
    }

    /// Flushes and closes the last segment. Returns the size of every segment written (none if
    /// no chunk was written, like Prometheus, which creates no file then).
    pub fn finish(mut self) -> io::Result<Vec<u64>> {
        self.close_segment()?;
        Ok(std::mem::take(&mut self.sizes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::source::Named;
    use proptest::prelude::*;
    use std::sync::Mutex;

    type Files = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A `Write` into one entry of a shared list of in-memory files.
    struct MemFile {
        files: Files,
        index: usize,
    }

    impl Write for MemFile {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.files.lock().unwrap()[self.index].extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn mem_writer(max: u64) -> (ChunkWriter<MemFile>, Files) {
        let files: Files = Arc::default();
        let f = files.clone();
        let factory = Box::new(move |i: u32| {
            let mut v = f.lock().unwrap();
            assert_eq!(v.len(), i as usize, "segments are opened in order");
            v.push(Vec::new());
            Ok(MemFile {
                files: f.clone(),
                index: i as usize,
            })
        });
        (ChunkWriter::new(factory, max), files)
    }

    fn sources(files: &Files) -> Vec<Arc<dyn ReadAt>> {
        files
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                Arc::new(Named {
                    name: format!("chunks/{}", segment_file_name(i as u32)),
                    inner: Bytes::from(f.clone()),
                }) as Arc<dyn ReadAt>
            })
            .collect()
    }

    fn write_all(max: u64, chunks: &[(u8, Vec<u8>)]) -> (Vec<u64>, Vec<u64>, Files) {
        let (mut w, files) = mem_writer(max);
        let refs = chunks
            .iter()
            .map(|(e, d)| w.write_chunk(ChunkEncoding::from_u8(*e), d).unwrap())
            .collect();
        let sizes = w.finish().unwrap();
        (refs, sizes, files)
    }

    fn corrupt_parts(e: TsdbError) -> (String, Section, u64, DecodeError) {
        match e {
            TsdbError::Corrupt {
                file,
                section,
                offset,
                source,
            } => (file, section, offset, source),
            other => panic!("not a corruption error: {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn record_round_trip(enc: u8, data in proptest::collection::vec(any::<u8>(), 0..300), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut out = Encbuf::new();
            encode_chunk_record(ChunkEncoding::from_u8(enc), &data, &mut out);
            let n = out.len();
            out.put_bytes(&tail);
            let (e, d, total) = decode_chunk_record(out.as_slice()).unwrap();
            prop_assert_eq!(e.as_u8(), enc);
            prop_assert_eq!(d, &data[..]);
            prop_assert_eq!(total, n);
            for cut in 0..n {
                prop_assert!(decode_chunk_record(&out.as_slice()[..cut]).is_err());
            }
        }

        #[test]
        fn record_bit_flips_are_detected(data in proptest::collection::vec(any::<u8>(), 1..100), bit: usize) {
            let mut out = Encbuf::new();
            encode_chunk_record(ChunkEncoding::Xor, &data, &mut out);
            let bit = bit % (out.len() * 8);
            out.buf[bit / 8] ^= 1 << (bit % 8);
            // A flip in the length field may also surface as a short read or a different length.
            prop_assert!(decode_chunk_record(out.as_slice()).map(|(_, d, _)| d != &data[..]).unwrap_or(true));
        }

        #[test]
        fn writer_reader_round_trip(
            chunks in proptest::collection::vec((0u8..8, proptest::collection::vec(any::<u8>(), 0..200)), 0..60),
            max in prop_oneof![Just(1u64), 16u64..600, Just(DEFAULT_MAX_SEGMENT_SIZE)],
        ) {
            let (refs, sizes, files) = write_all(max, &chunks);
            let srcs = sources(&files);
            prop_assert_eq!(srcs.len(), sizes.len());
            for (s, size) in srcs.iter().zip(&sizes) {
                prop_assert_eq!(s.len(), *size);
                // Only a segment holding a single oversized record may exceed the limit.
                prop_assert!(*size <= max.max(SEGMENT_HEADER_SIZE as u64) || verify_segment(s.as_ref()).unwrap() == 1);
            }
            let total: usize = srcs.iter().map(|s| verify_segment(s.as_ref()).unwrap()).sum();
            prop_assert_eq!(total, chunks.len());
            let r = ChunkReader::new(srcs).unwrap();
            for (rf, (e, d)) in refs.iter().zip(&chunks) {
                let c = r.chunk(*rf).unwrap();
                prop_assert_eq!(c.encoding.as_u8(), *e);
                prop_assert_eq!(&c.data[..], &d[..]);
            }
        }

        #[test]
        fn reader_never_panics_on_garbage(body in proptest::collection::vec(any::<u8>(), 0..300), off in 0u32..320, seg in 0u32..3) {
            let mut f = vec![0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0];
            f.extend_from_slice(&body);
            let src: Arc<dyn ReadAt> = Arc::new(Bytes::from(f));
            let _ = verify_segment(src.as_ref());
            let r = ChunkReader::new(vec![src]).unwrap();
            let _ = r.chunk(chunk_ref(seg, off));
        }
    }

    #[test]
    fn segments_are_cut() {
        // Each record: 1 (len) + 1 (enc) + 10 (data) + 4 (crc) = 16 bytes.
        let chunks: Vec<_> = (0..5).map(|i| (1u8, vec![i; 10])).collect();
        let (refs, sizes, files) = write_all(8 + 32, &chunks);
        assert_eq!(sizes, vec![40, 40, 24]);
        assert_eq!(
            refs,
            vec![
                chunk_ref(0, 8),
                chunk_ref(0, 24),
                chunk_ref(1, 8),
                chunk_ref(1, 24),
                chunk_ref(2, 8)
            ]
        );
        let files = files.lock().unwrap();
        assert_eq!(&files[0][..8], &[0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0]);
        assert_eq!(&files[0][8..12], &[10, 1, 0, 0]);
    }

    #[test]
    fn oversized_record_gets_its_own_segment() {
        let chunks = vec![(1u8, vec![1; 4]), (1, vec![2; 100]), (1, vec![3; 4])];
        let (refs, sizes, _) = write_all(30, &chunks);
        assert_eq!(
            refs,
            vec![chunk_ref(0, 8), chunk_ref(1, 8), chunk_ref(2, 8)]
        );
        assert_eq!(sizes, vec![18, 8 + 106, 18]);
    }

    #[test]
    fn no_chunks_no_segments() {
        let (_, sizes, files) = write_all(DEFAULT_MAX_SEGMENT_SIZE, &[]);
        assert!(sizes.is_empty());
        assert!(files.lock().unwrap().is_empty());
    }

    #[test]
    fn header_errors_name_file_and_offset() {
        let mk = |b: &[u8]| -> Arc<dyn ReadAt> {
            Arc::new(Named {
                name: "blk/chunks/000002".into(),
                inner: Bytes::copy_from_slice(b),
            })
        };
        let good = mk(&[0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0]);
        assert_eq!(verify_segment(good.as_ref()).unwrap(), 0);

        let cases: [(&[u8], u64); 3] = [
            (&[0x85, 0xbd, 0x40], 0),
            (&[0x85, 0xbd, 0x40, 0xde, 1, 0, 0, 0], 0),
            (&[0x85, 0xbd, 0x40, 0xdd, 2, 0, 0, 0], 4),
        ];
        for (bytes, want_off) in cases {
            let err = ChunkReader::new(vec![good.clone(), mk(bytes)])
                .err()
                .expect("bad header accepted");
            assert!(err.to_string().starts_with("blk/chunks/000002: "), "{err}");
            let (file, sec, off, _) = corrupt_parts(err);
            assert_eq!(file, "blk/chunks/000002");
            assert_eq!(sec, Section::ChunkSegmentHeader);
            assert_eq!(off, want_off);
        }
    }

    #[test]
    fn chunk_errors_name_file_section_and_offset() {
        let chunks = vec![(1u8, vec![7; 20]), (2, vec![8; 5])];
        let (refs, _, files) = write_all(DEFAULT_MAX_SEGMENT_SIZE, &chunks);
        assert_eq!(refs, vec![chunk_ref(0, 8), chunk_ref(0, 34)]);
        let good = files.lock().unwrap()[0].clone();
        let reader = |b: Vec<u8>| {
            ChunkReader::new(vec![Arc::new(Named {
                name: "c/000001".into(),
                inner: Bytes::from(b),
            })])
            .unwrap()
        };
        let r = reader(good.clone());
        let err_of = |r: &ChunkReader, rf| corrupt_parts(r.chunk(rf).unwrap_err());

        // Segment index out of range: names the missing file.
        let (file, sec, off, _) = err_of(&r, chunk_ref(1, 8));
        assert_eq!(
            (file.as_str(), sec, off),
            ("000002", Section::ChunkRecord, 8)
        );
        // Offset inside the header, and past the end.
        let (file, sec, off, _) = err_of(&r, chunk_ref(0, 3));
        assert_eq!(
            (file.as_str(), sec, off),
            ("c/000001", Section::ChunkRecord, 3)
        );
        let (_, _, off, _) = err_of(&r, chunk_ref(0, good.len() as u32));
        assert_eq!(off, good.len() as u64);

        // Bad CRC: flip a data byte of the second record.
        let mut bad = good.clone();
        bad[34 + 4] ^= 1;
        let (file, sec, off, e) = err_of(&reader(bad.clone()), chunk_ref(0, 34));
        assert_eq!(
            (file.as_str(), sec, off),
            ("c/000001", Section::ChunkRecord, 34)
        );
        assert!(matches!(e, DecodeError::Checksum { .. }));
        let (_, sec, off, e) = corrupt_parts(verify_segment(&Bytes::from(bad)).unwrap_err());
        assert_eq!((sec, off), (Section::ChunkRecord, 34));
        assert!(matches!(e, DecodeError::Checksum { .. }));
        // The first record is still fine.
        assert_eq!(r.chunk(refs[0]).unwrap().data.len(), 20);

        // Truncated record.
        let short = good[..good.len() - 1].to_vec();
        let (_, sec, off, e) = err_of(&reader(short.clone()), chunk_ref(0, 34));
        assert_eq!((sec, off), (Section::ChunkRecord, 34));
        assert!(matches!(e, DecodeError::ShortRead { .. }));
        let (_, sec, off, e) = corrupt_parts(verify_segment(&Bytes::from(short)).unwrap_err());
        assert_eq!((sec, off), (Section::ChunkRecord, 34));
        assert!(matches!(e, DecodeError::ShortRead { .. }));

        // Length varint that never ends.
        let mut endless = good[..34].to_vec();
        endless.extend_from_slice(&[0x80; 4]);
        let (_, _, off, e) = err_of(&reader(endless), chunk_ref(0, 34));
        assert_eq!(off, 34);
        assert!(matches!(e, DecodeError::ShortRead { .. }));
        // Huge length.
        let mut huge = good[..34].to_vec();
        huge.extend_from_slice(&[0xff; 9]);
        huge.push(0x01);
        huge.extend_from_slice(&[0; 20]);
        let (_, _, off, e) = err_of(&reader(huge.clone()), chunk_ref(0, 34));
        assert_eq!(off, 34);
        assert!(matches!(e, DecodeError::ShortRead { .. }));
        let (_, _, off, _) = corrupt_parts(verify_segment(&Bytes::from(huge)).unwrap_err());
        assert_eq!(off, 34);
    }

    /// Counts `read_at` calls and the bytes they return.
    struct Counting {
        inner: Bytes,
        calls: Mutex<(usize, u64)>,
    }

    impl ReadAt for Counting {
        fn len(&self) -> u64 {
            self.inner.len() as u64
        }
        fn read_at(
            &self,
            range: std::ops::Range<u64>,
        ) -> Result<Bytes, crate::tsdb::source::ReadError> {
            let mut c = self.calls.lock().unwrap();
            c.0 += 1;
            c.1 += range.end - range.start;
            self.inner.read_at(range)
        }
    }

    #[test]
    fn reads_are_few_and_bounded() {
        let big = vec![5u8; 3 << 20];
        let chunks = vec![(1u8, vec![1; 100]), (1, big.clone()), (1, vec![2; 50])];
        let (refs, _, files) = write_all(DEFAULT_MAX_SEGMENT_SIZE, &chunks);
        let src = Arc::new(Counting {
            inner: Bytes::from(files.lock().unwrap()[0].clone()),
            calls: Mutex::new((0, 0)),
        });
        let r = ChunkReader::new(vec![src.clone() as Arc<dyn ReadAt>]).unwrap();
        *src.calls.lock().unwrap() = (0, 0);
        assert_eq!(r.chunk(refs[0]).unwrap().data.len(), 100);
        assert_eq!(
            src.calls.lock().unwrap().0,
            1,
            "a small chunk takes one read"
        );
        *src.calls.lock().unwrap() = (0, 0);
        assert_eq!(r.chunk(refs[1]).unwrap().data, big);
        let (calls, bytes) = *src.calls.lock().unwrap();
        assert_eq!(calls, 2);
        assert!(bytes < big.len() as u64 + 2 * CHUNK_PREFETCH);

        *src.calls.lock().unwrap() = (0, 0);
        assert_eq!(verify_segment(src.as_ref()).unwrap(), 3);
        let (calls, bytes) = *src.calls.lock().unwrap();
        assert!(calls <= 4, "{calls} reads");
        assert!(bytes < src.len() + 2 * VERIFY_WINDOW);
    }

    #[test]
    fn verify_walks_many_windows() {
        let chunks: Vec<_> = (0..30_000u32)
            .map(|i| (1u8, i.to_be_bytes().repeat(1 + (i % 80) as usize)))
            .collect();
        let (_, sizes, files) = write_all(DEFAULT_MAX_SEGMENT_SIZE, &chunks);
        assert!(sizes[0] > 3 * VERIFY_WINDOW);
        let src = Bytes::from(files.lock().unwrap()[0].clone());
        assert_eq!(verify_segment(&src).unwrap(), chunks.len());
    }
}
