//! The state every connection shares: configuration, topics, cluster identity.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::admission::Admission;
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::group_events::GroupEventLog;
use crate::groups::ShardRouter;
use crate::memory::MemoryBudget;
use crate::metrics::BrokerMetrics;
use crate::producer_ids::ProducerIds;
use crate::server::Shutdown;
use crate::topic_config::TopicOverrides;
use crate::topics::{Topic, TopicRegistry};
use std::sync::Arc;

use tokio::sync::watch;

/// How many group events are kept for the timeline.
const GROUP_EVENTS_RETAINED: usize = 10_000;

/// A running broker's shared state.
pub struct Broker {
    /// The configuration the broker started with.
    pub config: BrokerConfig,
    /// The topics and their partitions.
    pub topics: TopicRegistry,
    /// The cluster id, generated on first start and kept in `meta.properties`.
    pub cluster_id: String,
    /// Allocator of idempotent producer ids.
    pub producer_ids: ProducerIds,
    /// The group coordinator: its shards, behind their router.
    pub groups: ShardRouter,
    /// Recent group events, for the rebalance timeline and metrics.
    pub group_events: Arc<GroupEventLog>,
    /// Traffic, request and connection metrics, for `/metrics` and the dashboard.
    pub metrics: BrokerMetrics,
    /// Connection caps (`max.connections`, `max.connections.per.ip`).
    pub(crate) admission: Admission,
    /// Memory held by request frames (`queued.max.request.bytes`).
    pub(crate) request_memory: MemoryBudget,
    /// Memory held by Fetch responses (`fetch.memory.max.bytes`).
    pub(crate) fetch_memory: MemoryBudget,
    /// Set once shutdown begins; requests parked waiting (long-poll fetches, joins) answer.
    stopping: watch::Sender<bool>,
}

impl Broker {
    /// Opens the data directory (creating it on first start), recovers every topic and
    /// starts the group coordinator from `__consumer_offsets`. Called at start-up, within the
    /// runtime, which runs the coordinator's shards.
    pub async fn open(config: BrokerConfig) -> Result<Broker, BrokerError> {
        fs::create_dir_all(&config.data_dir)?;
        let cluster_id = load_or_create_cluster_id(&config.data_dir, config.node_id)?;
        let topics = TopicRegistry::open(&config)?;
        let producer_ids = ProducerIds::open(&config.data_dir)?;
        let group_events = Arc::new(GroupEventLog::new(GROUP_EVENTS_RETAINED));
        let groups = ShardRouter::start(&topics, &config.groups, Arc::clone(&group_events)).await?;
        Ok(Broker {
            admission: Admission::new(&config),
            request_memory: MemoryBudget::new(config.queued_max_request_bytes),
            fetch_memory: MemoryBudget::new(config.fetch_memory_max_bytes),
            config,
            topics,
            cluster_id,
            producer_ids,
            groups,
            group_events,
            metrics: BrokerMetrics::default(),
            stopping: watch::channel(false).0,
        })
    }

    /// Looks a topic up, creating it with the broker defaults when auto-creation is enabled and
    /// the caller allows it. `Ok(None)` means the topic does not exist.
    pub async fn topic_or_auto_create(
        &self,
        name: &str,
        allow_auto_create: bool,
    ) -> Result<Option<Arc<Topic>>, BrokerError> {
        if let Some(topic) = self.topics.get(name) {
            return Ok(Some(topic));
        }
        if !(allow_auto_create && self.config.auto_create_topics_enable) {
            return Ok(None);
        }
        crate::topics::validate_topic_name(name)?;
        match self
            .topics
            .create(name, self.config.num_partitions, TopicOverrides::new())
            .await
        {
            Ok(topic) => Ok(Some(topic)),
            Err(BrokerError::TopicAlreadyExists(_)) => Ok(self.topics.get(name)),
            Err(e) => Err(e),
        }
    }

    /// Completes once shutdown has begun: for anything that waits on clients or data.
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown::new(self.stopping.subscribe())
    }

    /// Tells every connection and waiting request that the broker is stopping.
    pub(crate) fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Flushes and closes everything; called once at shutdown.
    pub async fn shutdown(&self) {
        self.topics.flush_all().await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads `cluster.id` from Kafka's `meta.properties`, writing a new one on first start.
fn load_or_create_cluster_id(data_dir: &Path, node_id: i32) -> Result<String, BrokerError> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = fs::read_to_string(&path) {
        if let Some(id) = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("cluster.id="))
        {
            return Ok(id.to_string());
        }
    }
    let id = new_cluster_id();
    let text = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
    partita_log::files::replace(&path, text.as_bytes())?;
    Ok(id)
}

/// A Kafka-style cluster id: 16 random bytes in URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}
