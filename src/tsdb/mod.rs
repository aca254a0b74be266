//! The Prometheus TSDB block format, read and written.
//!
//! Architecture invariant: nothing in here is async and nothing touches the network or an
//! object store. Readers see bytes only through [`source::ReadAt`]; writers write to
//! `std::io::Write` sinks. Facts about the format: `docs/ARCHITECTURE.md` and the module docs.

pub mod chunks;
pub(crate) mod encoding;
pub(crate) mod error;
pub mod index;
pub mod meta;
pub mod source;
pub mod tombstones;

pub use error::{Result, Section, TsdbError};
