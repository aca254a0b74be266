//! The data model shared by every layer: label sets, matchers and the selector syntax.
//!
//! Pure code: no I/O, no async, no knowledge of the block format or the wire protocol.

pub(crate) mod format;
pub(crate) mod labels;
pub(crate) mod matcher;
pub(crate) mod selector;
pub mod size;
pub mod time;

pub use labels::{Label, Labels};
pub use matcher::{MatchKind, Matcher, MatcherError};
pub use selector::parse_selector;
