//! Full verification of a local block: every checksum and the invariants Prometheus relies on.

use std::path::Path;

use crate::tsdb::chunks::{split_chunk_ref, verify_segment, ChunkEncoding, XorIter};
use crate::tsdb::{Result, Section, TsdbError};

use super::LocalBlock;

/// What a successful verification counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    pub chunk_records: u64,
    pub histogram_chunks: u64,
}

/// Verifies the block at `dir`, stopping at the first problem with an error naming the file,
/// the section and the offset.
pub fn verify_block(dir: &Path) -> Result<VerifyReport> {
    let block = LocalBlock::open(dir)?;
    let index_file = dir.join("index").display().to_string();
    let stats = block.index.verify()?;
    let mut report = VerifyReport::default();
    for segment in &block.segments {
        report.chunk_records += verify_segment(segment.as_ref())? as u64;
    }
    let (min_time, max_time) = (block.meta.min_time, block.meta.max_time);
    for series_ref in block.index.all_postings()? {
        let series = block.index.series(series_ref)?;
        report.series += 1;
        for meta in &series.chunks {
            report.chunks += 1;
            let (segment, offset) = split_chunk_ref(meta.chunk_ref);
            let chunk_file = dir
                .join("chunks")
                .join(format!("{:06}", segment + 1))
                .display()
                .to_string();
            let at = |reason: String| {
                TsdbError::invalid(&chunk_file, Section::ChunkRecord, u64::from(offset), reason)
            };
            if meta.min_time < min_time || meta.max_time >= max_time {
                return Err(at(format!(
                    "chunk [{}, {}] of series ref {series_ref} lies outside the block's range [{min_time}, {max_time})",
                    meta.min_time, meta.max_time
                )));
            }
            let chunk = block.chunks.chunk(meta.chunk_ref)?;
            if chunk.encoding != ChunkEncoding::Xor {
                report.histogram_chunks += 1;
                continue;
            }
            let mut it = XorIter::new(&chunk.data).map_err(|e| {
                TsdbError::corrupt(&chunk_file, Section::XorChunk, u64::from(offset), e)
            })?;
            let (mut first, mut last, mut n) = (None, i64::MIN, 0u64);
            let mut unordered = None;
            let decoded = it.for_each_sample(|t, _| {
                if n > 0 && t <= last {
                    unordered.get_or_insert((t, last));
                }
                first.get_or_insert(t);
                last = t;
                n += 1;
            });
            // Reported before a decoding error further on, as the first problem in the chunk.
            if let Some((t, before)) = unordered {
                return Err(at(format!("timestamps not increasing: {t} after {before}")));
            }
            decoded.map_err(|e| {
                TsdbError::corrupt(&chunk_file, Section::XorChunk, u64::from(offset), e)
            })?;
            if first != Some(meta.min_time) || last != meta.max_time {
                return Err(at(format!(
                    "index says chunk spans [{}, {}], its samples span [{}, {last}]",
                    meta.min_time,
                    meta.max_time,
                    first.map_or("none".into(), |f| f.to_string())
                )));
            }
            report.samples += n;
        }
    }
    if report.series != stats.series {
        return Err(TsdbError::invalid(
            &index_file,
            Section::Postings,
            0,
            format!(
                "all-postings list has {} series, the series section {}",
                report.series, stats.series
            ),
        ));
    }
    let s = &block.meta.stats;
    let meta_file = dir.join("meta.json").display().to_string();
    for (what, claimed, counted) in [
        ("numSeries", s.num_series, report.series),
        ("numChunks", s.num_chunks, report.chunks),
    ] {
        if claimed != 0 && claimed != counted {
            return Err(TsdbError::invalid(
                &meta_file,
                Section::Meta,
                0,
                format!("{what} is {claimed}, the block has {counted}"),
            ));
        }
    }
    if s.num_samples != 0 && report.histogram_chunks == 0 && s.num_samples != report.samples {
        return Err(TsdbError::invalid(
            &meta_file,
            Section::Meta,
            0,
            format!(
                "numSamples is {}, the chunks hold {}",
                s.num_samples, report.samples
            ),
        ));
    }
    Ok(report)
}
