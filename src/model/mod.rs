//! The data model shared by every layer: label sets, matchers and the selector syntax.
//!
//! Pure code: no I/O, no async, no knowledge of the block format or the wire protocol.

pub mod format;
pub mod labels;
pub mod matcher;
pub mod selector;
pub mod size;
pub mod time;

pub use labels::{Label, Labels};
pub use matcher::{MatchKind, Matcher, MatcherError};
pub use selector::parse_selector;
