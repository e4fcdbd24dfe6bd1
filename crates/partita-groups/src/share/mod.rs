//! Share groups (KIP-932): members read the same partitions together, each record acquired
//! by one member at a time and acknowledged one by one, like a work queue. The operations on
//! them run in the group coordinator's shards ([`crate::shard`]).

pub mod group;
pub mod partition;
pub mod records;
