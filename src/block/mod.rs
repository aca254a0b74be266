//! Blocks in a local directory: open one for reading, write a new one.
//!
//! Here the block format meets the local filesystem ([`file`]: local files as `ReadAt`
//! sources); the format code in [`crate::tsdb`] sees bytes through `ReadAt` and writes to
//! `io::Write` sinks.

pub(crate) mod file;
mod reader;
mod select;
mod series_set;
mod verify;
mod writer;

pub use file::{mmap_file, resident, FileSource};
pub use reader::{list_blocks, LocalBlock};
pub use select::{
    matchers_key, matches_filters, postings_for_matchers, PostingsKey, PostingsPlan, RefSet,
};
pub use series_set::MergedSeries;
pub use verify::{verify_block, VerifyReport};
pub use writer::{write_block, BlockWriter, EncodedChunk, SAMPLES_PER_CHUNK};
