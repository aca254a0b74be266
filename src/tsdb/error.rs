//! Errors of the block-format layer.

use std::fmt;

use thiserror::Error;

use super::encoding::DecodeError;
use super::source::ReadError;

/// The part of a block a corruption was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    IndexHeader,
    Toc,
    Symbols,
    Series,
    LabelIndices,
    LabelOffsetTable,
    Postings,
    PostingsOffsetTable,
    ChunkSegmentHeader,
    ChunkRecord,
    XorChunk,
    Tombstones,
    Meta,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Section::IndexHeader => "index header",
            Section::Toc => "index TOC",
            Section::Symbols => "symbol table",
            Section::Series => "series",
            Section::LabelIndices => "label indices",
            Section::LabelOffsetTable => "label offset table",
            Section::Postings => "postings list",
            Section::PostingsOffsetTable => "postings offset table",
            Section::ChunkSegmentHeader => "chunk segment header",
            Section::ChunkRecord => "chunk",
            Section::XorChunk => "XOR chunk",
            Section::Tombstones => "tombstones",
            Section::Meta => "meta.json",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Error)]
pub enum TsdbError {
    /// The bytes are there but wrong: bad magic, CRC, varint, reference or invariant.
    #[error("{file}: corrupt {section} at offset {offset}: {source}")]
    Corrupt {
        file: String,
        section: Section,
        offset: u64,
        #[source]
        source: DecodeError,
    },
    /// The bytes could not be read at all (I/O error or range past the end).
    #[error("{file}: reading {section} at offset {offset}: {source}")]
    Read {
        file: String,
        section: Section,
        offset: u64,
        #[source]
        source: ReadError,
    },
    /// A local file or directory could not be accessed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A caller broke a writer's contract (unsorted series, unknown symbol, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl TsdbError {
    pub fn corrupt(file: &str, section: Section, offset: u64, source: DecodeError) -> Self {
        TsdbError::Corrupt {
            file: file.to_string(),
            section,
            offset,
            source,
        }
    }

    pub fn invalid(file: &str, section: Section, offset: u64, reason: impl Into<String>) -> Self {
        Self::corrupt(file, section, offset, DecodeError::Invalid(reason.into()))
    }

    pub fn read(file: &str, section: Section, offset: u64, source: ReadError) -> Self {
        TsdbError::Read {
            file: file.to_string(),
            section,
            offset,
            source,
        }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        TsdbError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = TsdbError> = std::result::Result<T, E>;
