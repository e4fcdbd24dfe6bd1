//! Group coordination for Partita: consumer groups and their committed offsets, and the
//! transaction coordinator ([`transactions::TransactionShard`], one per `__transaction_state`
//! partition) whose transactions commit consumer offsets too.
//!
//! [`shard::GroupShard`] is one coordinator shard's sans-io state machine; the broker runs one
//! per `__consumer_offsets` partition, feeds it operations, appends the records they write and
//! replays them at start-up.

pub mod classic;
pub mod config;
pub mod consumer;
pub mod consumer_protocol;
pub mod events;
pub mod records;
pub mod shard;
pub mod share;
pub mod transactions;

pub use config::{partition_for_group, GroupConfig};
pub use events::{GroupEvent, GroupEventKind, RebalanceCause, RemovalReason};
pub use shard::{
    AppendError, ClientContext, Group, GroupShard, HeldAnswer, Operation, Record, Request,
    Response, Staged, Token,
};
