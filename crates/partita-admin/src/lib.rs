//! Client-side administration of any Kafka-compatible cluster, over the Kafka protocol only:
//! consumer groups and their lag, share groups and their share lag, offset resets, topics, topic configs, and a simple producer
//! and consumer for trying a cluster out.
//!
//! [`AdminClient`] holds the connections (one per broker, API versions negotiated on connect);
//! each area is a module of async functions taking it.

pub mod acls;
mod client;
pub mod configs;
mod connection;
mod error;
pub mod groups;
pub mod lag;
pub mod offsets;
pub mod records;
pub mod reset;
pub mod security;
pub mod share;
pub mod time;
pub mod topics;
pub mod transactions;
pub mod users;

pub use client::{AdminClient, BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo};
pub use connection::Timeouts;
pub use error::{AdminError, Result};
pub use security::ClientSecurity;
