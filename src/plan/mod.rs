//! `stele plan`: capacity planning for a store-gateway fleet from the data itself.
//!
//! - [`inventory`] (I/O): what the bucket holds, from meta.json files and small index ranges.
//! - [`cardinality`], [`header`], [`timeline`] (pure): the figures the inventory derives.
//! - [`calibrate`] (pure): a `stele bench` JSON report as the query profile.
//! - [`model`] (pure): inventory + query profile + targets -> pods, memory, disk, requests.
//! - [`report`] (pure): terminal tables, JSON, Markdown and the SVG chart.

pub(crate) mod calibrate;
pub(crate) mod cardinality;
pub mod header;
pub(crate) mod inventory;
pub(crate) mod model;
pub(crate) mod report;
pub(crate) mod timeline;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PlanError {
    /// The bucket cannot be listed (unreachable, bad credentials, missing bucket).
    #[error("bucket unreachable: {0}")]
    Bucket(String),
    /// A block's index could not be read or decoded.
    #[error("{0}")]
    Index(String),
    #[error(transparent)]
    Tsdb(#[from] crate::tsdb::TsdbError),
    /// Nonsense inputs: negative sizes, zero QPS, an unreadable bench report.
    #[error("invalid input: {0}")]
    Input(String),
    #[error("internal error: {0}")]
    Internal(String),
}
