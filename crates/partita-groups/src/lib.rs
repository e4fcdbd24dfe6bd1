//! Group coordination for Partita: consumer groups and their committed offsets.
//!
//! [`coordinator::Coordinator`] is one shard's sans-io state machine; the broker runs one per
//! `__consumer_offsets` partition and feeds it requests, time, and the records it replays.

pub mod classic;
pub mod config;
pub mod consumer;
pub mod consumer_protocol;
pub mod coordinator;
pub mod events;
pub mod records;
pub mod share;

pub use config::{partition_for_group, GroupConfig};
pub use coordinator::{ClientContext, Coordinator, Journal, Record, Request, Response, Token};
pub use events::{GroupEvent, GroupEventKind, RebalanceCause, RemovalReason};
