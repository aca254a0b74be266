//! A block directory on local disk opened for reading: every file memory-mapped, parsed lazily
//! by the format readers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::mmap_file;
use crate::model::{Labels, Matcher};
use crate::tsdb::chunks::{ChunkEncoding, ChunkReader, XorIter};
use crate::tsdb::encoding::DecodeError;
use crate::tsdb::index::{ChunkMeta, IndexReader};
use crate::tsdb::meta::{BlockMeta, META_FILENAME};
use crate::tsdb::source::ReadAt;
use crate::tsdb::tombstones::{decode_tombstones, Interval};
use crate::tsdb::{Result, Section, TsdbError};

pub struct LocalBlock {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    pub index: IndexReader,
    pub chunks: ChunkReader,
    /// The chunk segment files, segment 0 first (the reader holds the same mappings).
    pub segments: Vec<Arc<dyn ReadAt>>,
    tombstones: HashMap<u64, Vec<Interval>>,
}

/// The block directories (those with a meta.json) directly under `dir`, sorted by name, which
/// for ULIDs is by creation time.
pub fn list_blocks(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| TsdbError::io(dir, e))?;
    let mut blocks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TsdbError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let is_ulid = name
            .to_str()
            .is_some_and(|n| ulid::Ulid::from_string(n).is_ok());
        if is_ulid && path.join(META_FILENAME).is_file() {
            blocks.push(path);
        }
    }
    blocks.sort();
    Ok(blocks)
}

impl LocalBlock {
    pub fn open(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILENAME);
        let meta_bytes = std::fs::read(&meta_path).map_err(|e| TsdbError::io(&meta_path, e))?;
        let meta = BlockMeta::parse(&meta_path.display().to_string(), &meta_bytes)?;

        let index_path = dir.join("index");
        let index_src = mmap_file(&index_path).map_err(|e| TsdbError::io(&index_path, e))?;
        let index = IndexReader::open(Arc::new(index_src))?;

        let chunks_dir = dir.join("chunks");
        let mut segment_paths = Vec::new();
        let entries = std::fs::read_dir(&chunks_dir).map_err(|e| TsdbError::io(&chunks_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| TsdbError::io(&chunks_dir, e))?;
            let name = entry.file_name();
            if let Some(n) = name.to_str().and_then(|n| n.parse::<u32>().ok()) {
                segment_paths.push((n, entry.path()));
            }
        }
        segment_paths.sort();
        for (i, (n, path)) in segment_paths.iter().enumerate() {
            if *n as usize != i + 1 {
                return Err(TsdbError::invalid(
                    &path.display().to_string(),
                    Section::ChunkSegmentHeader,
                    0,
                    format!(
                        "chunk segments are not numbered 000001.. without gaps (expected {:06})",
                        i + 1
                    ),
                ));
            }
        }
        let mut segments: Vec<Arc<dyn ReadAt>> = Vec::with_capacity(segment_paths.len());
        for (_, path) in &segment_paths {
            segments.push(Arc::new(
                mmap_file(path).map_err(|e| TsdbError::io(path, e))?,
            ));
        }
        let chunks = ChunkReader::new(segments.clone())?;

        let tomb_path = dir.join("tombstones");
        let tombstones = match std::fs::read(&tomb_path) {
            Ok(bytes) => decode_tombstones(&bytes)
                .map_err(|e| {
                    TsdbError::corrupt(&tomb_path.display().to_string(), Section::Tombstones, 0, e)
                })?
                .into_iter()
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(TsdbError::io(&tomb_path, e)),
        };
        Ok(LocalBlock {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
            segments,
            tombstones,
        })
    }

    /// Series references selected by `matchers`, in label-set order.
    pub fn select(&self, matchers: &[Matcher]) -> Result<Vec<u64>> {
        super::postings_for_matchers(&self.index, matchers)
    }

    /// The labels and chunk metas of one series.
    pub fn series(&self, series_ref: u64) -> Result<(Labels, Vec<ChunkMeta>)> {
        let s = self.index.series(series_ref)?;
        Ok((Labels::from_pairs(s.labels), s.chunks))
    }

    /// The float samples of one series within `[min_time, max_time]` (both inclusive, as in
    /// Prometheus' querier), with deleted intervals removed. Histogram chunks are skipped and
    /// counted in the second value.
    pub fn samples(
        &self,
        series_ref: u64,
        chunks: &[ChunkMeta],
        min_time: i64,
        max_time: i64,
    ) -> Result<(Vec<(i64, f64)>, usize)> {
        let deleted = self
            .tombstones
            .get(&series_ref)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut out = Vec::new();
        let mut skipped = 0;
        for meta in chunks
            .iter()
            .filter(|c| c.max_time >= min_time && c.min_time <= max_time)
        {
            let chunk = self.chunks.chunk(meta.chunk_ref)?;
            if chunk.encoding != ChunkEncoding::Xor {
                skipped += 1;
                continue;
            }
            let mut it = XorIter::new(&chunk.data).map_err(|e| self.chunk_error(meta, e))?;
            it.for_each_sample(|t, v| {
                if t >= min_time
                    && t <= max_time
                    && !deleted.iter().any(|d| t >= d.min_time && t <= d.max_time)
                {
                    out.push((t, v));
                }
            })
            .map_err(|e| self.chunk_error(meta, e))?;
        }
        Ok((out, skipped))
    }

    fn chunk_error(&self, meta: &ChunkMeta, e: DecodeError) -> TsdbError {
        let (segment, offset) = crate::tsdb::chunks::split_chunk_ref(meta.chunk_ref);
        let file = self.dir.join("chunks").join(format!("{:06}", segment + 1));
        TsdbError::corrupt(
            &file.display().to_string(),
            Section::XorChunk,
            u64::from(offset),
            e,
        )
    }
}
