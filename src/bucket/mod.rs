//! The bucket as a set of blocks: which blocks exist and which this process serves.
//!
//! Today: the relabelling rules that select blocks by external labels and `__block_id`.
//! Block discovery and periodic sync (metas, deletion marks, time ranges) come with the store.

pub mod discover;
pub mod relabel;
