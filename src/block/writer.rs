//! Writes a block directory that Prometheus accepts: `chunks/00000N`, `index`, `meta.json`
//! (plus an empty `tombstones`), built under `<ULID>.tmp` and renamed into place at the end so
//! a reader never sees a half-written block.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ulid::Ulid;

use crate::model::Labels;
use crate::tsdb::chunks::{ChunkEncoding, ChunkWriter, XorEncoder, DEFAULT_MAX_SEGMENT_SIZE};
use crate::tsdb::index::{ChunkMeta, IndexWriter};
use crate::tsdb::meta::{BlockMeta, BlockStats, Compaction, ThanosMeta, META_VERSION};
use crate::tsdb::tombstones::encode_tombstones;
use crate::tsdb::{Result, TsdbError};

/// Prometheus cuts a chunk after this many samples.
pub const SAMPLES_PER_CHUNK: usize = 120;

const WRITE_BUFFER: usize = 1 << 20;

/// One encoded chunk handed to [`BlockWriter::add_series`].
#[derive(Debug, Clone, Copy)]
pub struct EncodedChunk<'a> {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: ChunkEncoding,
    pub data: &'a [u8],
    pub num_samples: u64,
}

pub struct BlockWriter {
    final_dir: PathBuf,
    tmp_dir: PathBuf,
    ulid: Ulid,
    min_time: i64,
    max_time: i64,
    chunks: ChunkWriter<BufWriter<File>>,
    index: IndexWriter<BufWriter<File>>,
    stats: BlockStats,
    metas: Vec<ChunkMeta>,
    encoder_scratch: Vec<(i64, i64, Vec<u8>, u64)>,
}

impl BlockWriter {
    /// Starts block `ulid` under `parent`, covering `[min_time, max_time)`. `symbols` must be
    /// every label name and value the series will use, sorted and unique.
    pub fn create<'a>(
        parent: &Path,
        ulid: Ulid,
        min_time: i64,
        max_time: i64,
        symbols: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self> {
        let final_dir = parent.join(ulid.to_string());
        let tmp_dir = parent.join(format!("{ulid}.tmp"));
        if tmp_dir.exists() {
            std::fs::remove_dir_all(&tmp_dir).map_err(|e| TsdbError::io(&tmp_dir, e))?;
        }
        let chunks_dir = tmp_dir.join("chunks");
        std::fs::create_dir_all(&chunks_dir).map_err(|e| TsdbError::io(&chunks_dir, e))?;
        let factory_dir = chunks_dir.clone();
        let chunks = ChunkWriter::new(
            Box::new(move |segment: u32| {
                let path = factory_dir.join(format!("{:06}", segment + 1));
                Ok(BufWriter::with_capacity(WRITE_BUFFER, File::create(path)?))
            }),
            DEFAULT_MAX_SEGMENT_SIZE,
        );
        let index_path = tmp_dir.join("index");
        let file = File::create(&index_path).map_err(|e| TsdbError::io(&index_path, e))?;
        let mut index = IndexWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file))?;
        index.add_symbols(symbols)?;
        Ok(BlockWriter {
            final_dir,
            tmp_dir,
            ulid,
            min_time,
            max_time,
            chunks,
            index,
            stats: BlockStats::default(),
            metas: Vec::new(),
            encoder_scratch: Vec::new(),
        })
    }

    /// Adds a series with its chunks; series must come in increasing label-set order.
    /// A series needs at least one chunk: Prometheus never writes empty ones, and its tools
    /// (promtool 2.42 `tsdb analyze`) crash on them.
    pub fn add_series(
        &mut self,
        labels: &[(&str, &str)],
        chunks: &[EncodedChunk<'_>],
    ) -> Result<()> {
        if chunks.is_empty() {
            return Err(TsdbError::InvalidInput(format!(
                "series {labels:?} has no chunks"
            )));
        }
        self.metas.clear();
        for c in chunks {
            let chunk_ref = self
                .chunks
                .write_chunk(c.encoding, c.data)
                .map_err(|e| TsdbError::io(self.tmp_dir.join("chunks"), e))?;
            self.metas.push(ChunkMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk_ref,
            });
            self.stats.num_samples += c.num_samples;
        }
        self.index.add_series(labels, &self.metas)?;
        self.stats.num_series += 1;
        self.stats.num_chunks += chunks.len() as u64;
        Ok(())
    }

    /// Adds a series from float samples sorted by time, cut into XOR chunks of
    /// [`SAMPLES_PER_CHUNK`] samples.
    pub fn add_series_samples(
        &mut self,
        labels: &[(&str, &str)],
        samples: &[(i64, f64)],
    ) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.encoder_scratch);
        scratch.clear();
        for part in samples.chunks(SAMPLES_PER_CHUNK) {
            let mut enc = XorEncoder::new();
            for &(t, v) in part {
                enc.append(t, v);
            }
            let first = part.first().map_or(0, |s| s.0);
            let last = part.last().map_or(0, |s| s.0);
            scratch.push((first, last, enc.into_bytes(), part.len() as u64));
        }
        let chunks: Vec<EncodedChunk<'_>> = scratch
            .iter()
            .map(|(min_time, max_time, data, n)| EncodedChunk {
                min_time: *min_time,
                max_time: *max_time,
                encoding: ChunkEncoding::Xor,
                data,
                num_samples: *n,
            })
            .collect();
        let result = self.add_series(labels, &chunks);
        drop(chunks);
        self.encoder_scratch = scratch;
        result
    }

    /// Finishes the files, writes meta.json and moves the block into place.
    pub fn finish(self, thanos: Option<ThanosMeta>) -> Result<BlockMeta> {
        let tmp = self.tmp_dir.clone();
        let chunk_sizes = self
            .chunks
            .finish()
            .map_err(|e| TsdbError::io(tmp.join("chunks"), e))?;
        let mut index = self.index.finish()?;
        index
            .flush()
            .map_err(|e| TsdbError::io(tmp.join("index"), e))?;
        let index_file = index
            .into_inner()
            .map_err(|e| TsdbError::io(tmp.join("index"), e.into_error()))?;
        index_file
            .sync_all()
            .map_err(|e| TsdbError::io(tmp.join("index"), e))?;
        drop(index_file);

        let tombstones = encode_tombstones(&[]);
        std::fs::write(tmp.join("tombstones"), &tombstones)
            .map_err(|e| TsdbError::io(tmp.join("tombstones"), e))?;

        let thanos = thanos.map(|mut t| {
            t.files = block_files(&tmp, chunk_sizes.len());
            t
        });
        let ulid = self.ulid.to_string();
        let meta = BlockMeta {
            ulid: ulid.clone(),
            min_time: self.min_time,
            max_time: self.max_time,
            stats: self.stats,
            compaction: Compaction {
                level: 1,
                sources: vec![ulid],
                ..Default::default()
            },
            version: META_VERSION,
            thanos,
            extra: Default::default(),
        };
        std::fs::write(tmp.join("meta.json"), meta.to_json())
            .map_err(|e| TsdbError::io(tmp.join("meta.json"), e))?;
        if self.final_dir.exists() {
            std::fs::remove_dir_all(&self.final_dir)
                .map_err(|e| TsdbError::io(&self.final_dir, e))?;
        }
        std::fs::rename(&tmp, &self.final_dir).map_err(|e| TsdbError::io(&self.final_dir, e))?;
        Ok(meta)
    }
}

/// The `files` list of the Thanos section: every file but meta.json with its size, sorted.
fn block_files(dir: &Path, segments: usize) -> Vec<crate::tsdb::meta::FileMeta> {
    let mut names: Vec<String> = (1..=segments).map(|i| format!("chunks/{i:06}")).collect();
    names.push("index".into());
    names.push("meta.json".into());
    names
        .into_iter()
        .map(|rel_path| {
            let size_bytes = if rel_path == "meta.json" {
                None
            } else {
                std::fs::metadata(dir.join(&rel_path)).ok().map(|m| m.len())
            };
            crate::tsdb::meta::FileMeta {
                rel_path,
                size_bytes,
                extra: Default::default(),
            }
        })
        .collect()
}

/// Writes a whole block from in-memory series (tests and small tools). Series are sorted
/// here; samples must be sorted by time. The block covers `[min_time, max_time)`.
pub fn write_block(
    parent: &Path,
    ulid: Ulid,
    min_time: i64,
    max_time: i64,
    series: &mut [(Labels, Vec<(i64, f64)>)],
    thanos: Option<ThanosMeta>,
) -> Result<BlockMeta> {
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut symbols: Vec<&str> = series
        .iter()
        .flat_map(|(l, _)| l.iter().flat_map(|l| [l.name.as_str(), l.value.as_str()]))
        .collect();
    symbols.sort_unstable();
    symbols.dedup();
    let mut w = BlockWriter::create(parent, ulid, min_time, max_time, symbols.iter().copied())?;
    for (labels, samples) in series.iter() {
        w.add_series_samples(&labels.as_pairs(), samples)?;
    }
    w.finish(thanos)
}
