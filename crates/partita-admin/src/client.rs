//! The admin client: a bootstrap connection, the cluster's brokers, and routing of each request
//! to the broker that must answer it (partition leader or group coordinator).

use std::collections::HashMap;

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::connection::{Connection, Timeouts};
use crate::error::{AdminError, Result};
use crate::security::ClientSecurity;

/// Highest Metadata version whose fields this client handles.
const METADATA_MAX_VERSION: i16 = 12;
/// Highest FindCoordinator version whose fields this client handles.
const FIND_COORDINATOR_MAX_VERSION: i16 = 6;

/// A broker of the cluster, as Metadata describes it.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerInfo {
    /// Broker id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic, as Metadata describes it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id, -1 if none.
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
}

/// One topic, as Metadata describes it.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id in Kafka's base64 form, if the broker sent one.
    pub topic_id: Option<String>,
    /// Whether the topic is internal (`__consumer_offsets`).
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// What Metadata says about the cluster and the topics asked for.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterMetadata {
    /// Cluster id, if the broker sent one.
    pub cluster_id: Option<String>,
    /// Controller broker id, -1 if unknown.
    pub controller_id: i32,
    /// Brokers, sorted by id.
    pub brokers: Vec<BrokerInfo>,
    /// Topics that exist, sorted by name.
    pub topics: Vec<TopicInfo>,
    /// Topics asked for that the broker does not know.
    #[serde(skip)]
    pub missing: Vec<String>,
}

impl ClusterMetadata {
    /// The topic named `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.name == name)
    }
}

/// A client that speaks the Kafka protocol to any Kafka-compatible cluster.
pub struct AdminClient {
    bootstrap: String,
    timeouts: Timeouts,
    /// TLS and SASL, for every connection.
    security: ClientSecurity,
    /// Open connections by `host:port`; the bootstrap connection is one of them.
    connections: HashMap<String, Connection>,
    /// Broker addresses by node id, from the latest Metadata.
    brokers: HashMap<i32, String>,
}

impl AdminClient {
    /// Connects to `bootstrap` (`host:port`) in plaintext and learns the cluster's brokers.
    pub async fn connect(bootstrap: &str, timeouts: Timeouts) -> Result<AdminClient> {
        AdminClient::connect_with(bootstrap, timeouts, ClientSecurity::default()).await
    }

    /// Connects to `bootstrap` with TLS and SASL as `security` says.
    pub async fn connect_with(
        bootstrap: &str,
        timeouts: Timeouts,
        security: ClientSecurity,
    ) -> Result<AdminClient> {
        let connection = Connection::open(bootstrap, timeouts, &security).await?;
        let mut client = AdminClient {
            bootstrap: bootstrap.to_string(),
            timeouts,
            security,
            connections: HashMap::from([(bootstrap.to_string(), connection)]),
            brokers: HashMap::new(),
        };
        client.metadata(Some(&[])).await?;
        Ok(client)
    }

    /// The connection to the bootstrap server, for requests any broker can answer.
    pub(crate) fn any_broker(&mut self) -> &mut Connection {
        self.connections
            .get_mut(&self.bootstrap)
            .expect("the bootstrap connection is opened in connect and never removed")
    }

    /// The connection to broker `node_id`, opened on first use.
    pub(crate) async fn broker(&mut self, node_id: i32) -> Result<&mut Connection> {
        let address = match self.brokers.get(&node_id) {
            Some(address) => address.clone(),
            None => {
                self.metadata(Some(&[])).await?;
                self.brokers.get(&node_id).cloned().ok_or_else(|| {
                    AdminError::InvalidInput(format!("broker {node_id} is not in the cluster"))
                })?
            }
        };
        self.connection_to(&address).await
    }

    async fn connection_to(&mut self, address: &str) -> Result<&mut Connection> {
        if !self.connections.contains_key(address) {
            let connection = Connection::open(address, self.timeouts, &self.security).await?;
            self.connections.insert(address.to_string(), connection);
        }
        Ok(self
            .connections
            .get_mut(address)
            .expect("inserted just above"))
    }

    /// The broker ids of the cluster, sorted.
    pub(crate) fn broker_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.brokers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Metadata for `topics`: `None` for every topic, `Some(&[])` for brokers only.
    ///
    /// Never asks the broker to auto-create a topic.
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<ClusterMetadata> {
        let (response, _) = self
            .any_broker()
            .call(METADATA_MAX_VERSION, |version| {
                metadata_request(topics, version)
            })
            .await?;
        let metadata = convert_metadata(response, topics)?;
        self.brokers = metadata
            .brokers
            .iter()
            .map(|b| (b.node_id, b.address()))
            .collect();
        Ok(metadata)
    }

    /// Metadata for exactly these topics; an unknown one is [`AdminError::TopicNotFound`].
    pub async fn existing_topics(&mut self, topics: &[String]) -> Result<Vec<TopicInfo>> {
        let metadata = self.metadata(Some(topics)).await?;
        if let Some(missing) = metadata.missing.first() {
            return Err(AdminError::TopicNotFound(missing.clone()));
        }
        Ok(metadata.topics)
    }

    /// The broker id of `group`'s coordinator.
    pub async fn group_coordinator(&mut self, group: &str) -> Result<i32> {
        self.find_coordinator(group, 0).await
    }

    /// The broker id of `transactional_id`'s transaction coordinator.
    pub async fn transaction_coordinator(&mut self, transactional_id: &str) -> Result<i32> {
        self.find_coordinator(transactional_id, 1).await
    }

    /// FindCoordinator for `key`: a group (`key_type` 0) or a transactional id (1).
    async fn find_coordinator(&mut self, group: &str, key_type: i8) -> Result<i32> {
        let (response, version) = self
            .any_broker()
            .call(FIND_COORDINATOR_MAX_VERSION, |version| {
                let mut request = FindCoordinatorRequest::default().with_key_type(key_type);
                if version >= 4 {
                    request.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
                } else {
                    request.key = StrBytes::from_string(group.to_string());
                }
                request
            })
            .await?;
        let what = if key_type == 1 {
            "transactional id"
        } else {
            "group"
        };
        let context = || format!("finding the coordinator of {what} {group:?}");
        let (node_id, host, port) = if version >= 4 {
            let coordinator = response.coordinators.first().ok_or_else(|| {
                AdminError::kafka(context(), -1, Some("empty coordinator list".into()))
            })?;
            AdminError::check(
                coordinator.error_code,
                coordinator.error_message.as_deref(),
                context,
            )?;
            (
                coordinator.node_id.0,
                coordinator.host.to_string(),
                coordinator.port,
            )
        } else {
            AdminError::check(
                response.error_code,
                response.error_message.as_deref(),
                context,
            )?;
            (response.node_id.0, response.host.to_string(), response.port)
        };
        self.brokers.insert(node_id, format!("{host}:{port}"));
        Ok(node_id)
    }

    /// The connection to `group`'s coordinator.
    pub(crate) async fn coordinator_connection(&mut self, group: &str) -> Result<&mut Connection> {
        let node_id = self.group_coordinator(group).await?;
        self.broker(node_id).await
    }

    /// `host:port` of broker `node_id`, if known.
    pub fn broker_address(&self, node_id: i32) -> Option<&str> {
        self.brokers.get(&node_id).map(String::as_str)
    }
}

fn metadata_request(topics: Option<&[String]>, version: i16) -> MetadataRequest {
    let mut request = MetadataRequest::default();
    request.topics = match topics {
        // Version 0 has no null: an empty list means every topic there.
        None if version == 0 => Some(Vec::new()),
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|name| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                })
                .collect(),
        ),
    };
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    request
}

fn convert_metadata(
    response: MetadataResponse,
    requested: Option<&[String]>,
) -> Result<ClusterMetadata> {
    AdminError::check(response.error_code, None, || "Metadata".to_string())?;
    let mut brokers: Vec<BrokerInfo> = response
        .brokers
        .iter()
        .map(|b| BrokerInfo {
            node_id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
        })
        .collect();
    brokers.sort_by_key(|b| b.node_id);
    let mut topics = Vec::new();
    let mut missing = Vec::new();
    for topic in response.topics {
        let name = topic
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .unwrap_or_default();
        match topic.error_code {
            0 => {}
            3 => {
                missing.push(name);
                continue;
            }
            code => {
                return Err(AdminError::kafka(
                    format!("metadata of topic {name:?}"),
                    code,
                    None,
                ))
            }
        }
        let mut partitions: Vec<PartitionInfo> = topic
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition_index,
                leader: p.leader_id.0,
                replicas: p.replica_nodes.iter().map(|id| id.0).collect(),
                isr: p.isr_nodes.iter().map(|id| id.0).collect(),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        let topic_id = (!topic.topic_id.is_nil()).then(|| base64_url(topic.topic_id.as_bytes()));
        topics.push(TopicInfo {
            name,
            topic_id,
            internal: topic.is_internal,
            partitions,
        });
    }
    // A broker may leave an unknown topic out of the response instead of flagging it.
    if let Some(requested) = requested {
        for name in requested {
            if !topics.iter().any(|t| &t.name == name) && !missing.contains(name) {
                missing.push(name.clone());
            }
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ClusterMetadata {
        cluster_id: response.cluster_id.map(|id| id.to_string()),
        controller_id: response.controller_id.0,
        brokers,
        topics,
        missing,
    })
}

/// URL-safe base64 without padding: how Kafka prints topic ids.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_url;

    #[test]
    fn topic_ids_print_like_kafka() {
        assert_eq!(base64_url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url(b"fooba"), "Zm9vYmE");
        assert_eq!(base64_url(b"f"), "Zg");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }
}
