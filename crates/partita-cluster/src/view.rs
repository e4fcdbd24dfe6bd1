//! What a broker knows of the cluster: the live brokers, the topics, and who leads each
//! partition. Loaded whole from PostgreSQL whenever the catalog version moves.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::db::Db;
use crate::error::ClusterError;

/// A live broker, as clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `node.id`.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
    /// Where clients reach it through each of its listeners; `host` and `port` are its
    /// first listener's.
    pub endpoints: Vec<Endpoint>,
}

/// One listener of a broker, as clients reach it (`advertised.listeners`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// The listener's name (`PLAINTEXT`, `SSL`, or a name of `listener.security.protocol.map`).
    pub listener: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

impl BrokerInfo {
    /// Host and port of its listener named `listener`, if it has one.
    pub fn endpoint(&self, listener: &str) -> Option<(&str, i32)> {
        self.endpoints
            .iter()
            .find(|e| e.listener.eq_ignore_ascii_case(listener))
            .map(|e| (e.host.as_str(), e.port))
    }
}

/// A topic of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Config overrides, by Kafka property name.
    pub configs: BTreeMap<String, String>,
    /// Leaders, by partition index.
    pub partitions: Vec<PartitionInfo>,
}

/// Who leads one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The leader's node id.
    pub leader: i32,
    /// Bumped each time the leader changes: a write by an older leader is refused.
    pub leader_epoch: i32,
}

/// The cluster at one catalog version.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// The catalog version this view was loaded at.
    pub version: i64,
    /// The live brokers, by node id.
    pub brokers: Vec<BrokerInfo>,
    /// Every topic, by name.
    pub topics: Vec<TopicInfo>,
}

impl ClusterView {
    /// Whether `node_id` is a live broker.
    pub fn is_live(&self, node_id: i32) -> bool {
        self.broker(node_id).is_some()
    }

    /// The live broker with this id.
    pub fn broker(&self, node_id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.node_id == node_id)
    }

    /// The topic with this name.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.name == name)
    }
}

/// The SQL condition of a live broker's row of `partita_brokers`, its session timeout in ms
/// as parameter `$n`: a fresh heartbeat, and the lock of its presence session held.
pub(crate) fn live_condition(n: usize) -> String {
    format!(
        "partita_brokers.heartbeat_at > now() - (${n}::bigint * interval '1 millisecond') \
         AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
         AND l.classid = {class}::oid AND l.objid = partita_brokers.presence_key::oid \
         AND l.objsubid = 2)",
        class = crate::presence::PRESENCE_LOCK_CLASS
    )
}

/// Loads the whole view, from one snapshot of the database (a topic created while it loads
/// is in it with all its partitions, or not at all).
pub(crate) async fn load(db: &Db, session_timeout_ms: i64) -> Result<ClusterView, ClusterError> {
    let mut connection = db.control().await?;
    let client = connection
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let version: i64 = client
        .query_one("SELECT catalog_version FROM partita_cluster", &[])
        .await?
        .get(0);
    let brokers = client
        .query(
            &format!(
                "SELECT node_id, host, port, rack, endpoints FROM partita_brokers WHERE {} \
                 ORDER BY node_id",
                live_condition(1)
            ),
            &[&session_timeout_ms],
        )
        .await?
        .iter()
        .map(|row| BrokerInfo {
            node_id: row.get(0),
            host: row.get(1),
            port: row.get(2),
            rack: row.get(3),
            endpoints: row
                .get::<_, Option<serde_json::Value>>(4)
                .and_then(|json| serde_json::from_value(json).ok())
                .unwrap_or_default(),
        })
        .collect();
    let mut partitions: BTreeMap<Uuid, Vec<PartitionInfo>> = BTreeMap::new();
    for row in client
        .query(
            "SELECT topic_id, leader, leader_epoch FROM partita_partitions \
             ORDER BY topic_id, partition",
            &[],
        )
        .await?
    {
        partitions
            .entry(row.get(0))
            .or_default()
            .push(PartitionInfo {
                leader: row.get(1),
                leader_epoch: row.get(2),
            });
    }
    let mut topics: Vec<TopicInfo> = client
        .query("SELECT topic_id, name, configs FROM partita_topics", &[])
        .await?
        .iter()
        .map(|row| {
            let id: Uuid = row.get(0);
            let configs: serde_json::Value = row.get(2);
            TopicInfo {
                id,
                name: row.get(1),
                configs: configs_from_json(&configs),
                partitions: partitions.remove(&id).unwrap_or_default(),
            }
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    client.commit().await?;
    Ok(ClusterView {
        version,
        brokers,
        topics,
    })
}

/// Config overrides as stored: a JSON object of strings.
pub(crate) fn configs_to_json(configs: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(
        configs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

fn configs_from_json(value: &serde_json::Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
