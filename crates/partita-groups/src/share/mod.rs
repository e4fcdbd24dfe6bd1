//! Share groups (KIP-932): members read the same partitions together, each record acquired
//! by one member at a time and acknowledged one by one, like a work queue.

pub mod coordinator;
pub mod partition;
pub mod records;
