//! Partita's Kafka protocol server: accepts connections, frames requests, routes each to the
//! handler for its API, and keeps the topics and their partition logs.

pub mod acl;
mod admission;
mod authz;
pub mod broker;
pub mod config;
mod connection;
pub mod credentials;
mod dispatch;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod group_events;
pub mod groups;
mod handlers;
mod http;
mod legacy;
pub mod listeners;
mod memory;
pub mod metrics;
pub mod oauth;
pub mod partition;
pub mod principal;
mod producer_ids;
mod readers;
mod sasl;
mod server;
pub mod storage;
pub mod topic_config;
pub mod topics;
pub mod transactions;

pub use broker::Broker;
pub use config::{BrokerConfig, ConfigError, SetOutcome};
pub use http::HttpAuth;
/// SCRAM's mechanisms and exchanges (the partita-scram crate).
pub use partita_log::open_files;
pub use partita_scram as scram;
pub use server::{serve, Shutdown};
