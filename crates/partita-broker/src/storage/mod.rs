//! The local implementation of [`PartitionStorage`]: a segmented log on this machine's disk.

mod local;

pub use local::LocalPartition;
pub use partita_log::storage::{
    Appending, Maintenance, PartitionOffsets, PartitionStorage, Scrubbed,
};
