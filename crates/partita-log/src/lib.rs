#![warn(missing_docs)]
//! Partition storage for Partita: segmented logs of Kafka record batches.
//!
//! One [`Log`] per topic-partition, in its own directory. Batches (Kafka magic v2) are stored
//! as opaque bytes exactly as produced; see [`batch`] for the header format. Segments, sparse
//! offset and time indexes, crash recovery, retention and idempotent-producer checks follow
//! Kafka's behaviour and file layout.

pub mod batch;
mod config;
mod error;
pub mod files;
mod index;
mod log;
pub mod open_files;
pub mod producer_state;
mod segment;
pub mod storage;

pub use config::{CleanupPolicy, LogConfig, TimestampType};
pub use error::LogError;
pub use log::{
    check_appendable, AppendInfo, Cleaner, CompactionOutput, CompactionPlan, CompactionStats,
    Damage, Log, ScrubTarget,
};
