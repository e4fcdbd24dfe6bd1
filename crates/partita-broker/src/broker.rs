//! The state every connection shares: configuration, topics, cluster identity.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::acl::Authorizer;
use crate::admission::Admission;
use crate::config::BrokerConfig;
use crate::credentials::{Credentials, LocalCredentials};
use crate::error::BrokerError;
use crate::group_events::GroupEventLog;
use crate::groups::ShardRouter;
use crate::listeners::Listener;
use crate::memory::MemoryBudget;
use crate::metrics::BrokerMetrics;
use crate::producer_ids::ProducerIds;
use crate::server::Shutdown;
use crate::topic_config::TopicOverrides;
use crate::topics::{Topic, TopicRegistry};
use std::sync::Arc;

use partita_cluster::{BrokerInfo, Cluster, Endpoint, NodeAddress};
use tokio::sync::watch;

/// How many group events are kept for the timeline.
const GROUP_EVENTS_RETAINED: usize = 10_000;

/// A running broker's shared state.
pub struct Broker {
    /// The configuration the broker started with.
    pub config: BrokerConfig,
    /// Its Kafka listeners, the first being `config.listen`.
    pub listeners: Vec<Listener>,
    /// The topics and their partitions.
    pub topics: TopicRegistry,
    /// The cluster id: generated on first start and kept in `meta.properties`, or in cluster
    /// mode the cluster's, from PostgreSQL.
    pub cluster_id: String,
    /// Membership of a cluster, in cluster mode.
    pub cluster: Option<Cluster>,
    /// SCRAM users' credentials.
    pub credentials: Credentials,
    /// The ACLs, and whether requests are checked against them.
    pub authorizer: Authorizer,
    /// Allocator of idempotent producer ids.
    pub producer_ids: ProducerIds,
    /// The group coordinator: its shards, behind their router.
    pub groups: ShardRouter,
    /// The transaction coordinator; `None` in cluster mode, which does not serve
    /// transactions yet.
    pub transactions: Option<crate::transactions::TransactionCoordinator>,
    /// Recent group events, for the rebalance timeline and metrics.
    pub group_events: Arc<GroupEventLog>,
    /// Traffic, request and connection metrics, for `/metrics` and the dashboard.
    pub metrics: BrokerMetrics,
    /// The HTTP listener's TLS settings, when it serves HTTPS.
    pub(crate) http_tls: Option<Arc<rustls::ServerConfig>>,
    /// The key and certificate of every TLS listener (HTTPS too), read again when they change.
    /// The TLS files of every listener (the HTTPS one's too), each with its listener's name,
    /// looked at every few seconds for renewed certificates.
    pub(crate) tls_files: Vec<(String, Arc<dyn crate::listeners::Reload>)>,
    /// Connection caps (`max.connections`, `max.connections.per.ip`).
    pub(crate) admission: Admission,
    /// Memory held by request frames (`queued.max.request.bytes`).
    pub(crate) request_memory: MemoryBudget,
    /// Memory held by Fetch responses (`fetch.memory.max.bytes`).
    pub(crate) fetch_memory: MemoryBudget,
    /// The isolation level consumers fetch with, by client and topic: how each group reads.
    pub(crate) readers: crate::readers::Readers,
    /// Set once shutdown begins; requests parked waiting (long-poll fetches, joins) answer.
    stopping: watch::Sender<bool>,
}

impl Broker {
    /// Opens the data directory (creating it on first start), recovers every topic and
    /// starts the group coordinator from `__consumer_offsets`. Called at start-up, within the
    /// runtime, which runs the coordinator's shards.
    ///
    /// In cluster mode (`storage.url` and `cluster.metadata.url` set) nothing is kept in the
    /// data directory: the broker joins the cluster, and topics, offsets and records live in
    /// PostgreSQL and the object store.
    pub async fn open(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let listeners = config.listeners().map_err(BrokerError::Startup)?;
        Broker::open_with(config, listeners).await
    }

    /// [`Broker::open`] with its listeners already resolved from `config` (and their key
    /// and certificate files read), as the caller that bound their sockets has them.
    pub async fn open_with(
        config: BrokerConfig,
        listeners: Vec<Listener>,
    ) -> Result<Broker, BrokerError> {
        let (cluster, cluster_id, topics, producer_ids, credentials, authorizer) =
            match config.cluster.enabled().map_err(BrokerError::Startup)? {
                true => {
                    let cluster = join_cluster(&config, &listeners).await?;
                    let topics = TopicRegistry::cluster(&config, cluster.clone()).await;
                    let id = cluster.cluster_id().to_string();
                    let ids = ProducerIds::Cluster(cluster.clone());
                    let credentials = Credentials::Cluster(cluster.clone());
                    let authorizer =
                        Authorizer::cluster(config.authorizer.clone(), cluster.clone()).await?;
                    (Some(cluster), id, topics, ids, credentials, authorizer)
                }
                false => {
                    fs::create_dir_all(&config.data_dir)?;
                    let id = load_or_create_cluster_id(&config.data_dir, config.node_id)?;
                    let topics = TopicRegistry::open(&config)?;
                    let ids = ProducerIds::open(&config.data_dir)?;
                    let credentials = Credentials::Local(LocalCredentials::open(&config.data_dir)?);
                    let authorizer =
                        Authorizer::local(config.authorizer.clone(), &config.data_dir)?;
                    (None, id, topics, ids, credentials, authorizer)
                }
            };
        let http_tls = http_tls(&config)?;
        let named = |name: &str, tls: &crate::listeners::TlsSettings| {
            let files = tls.watched().into_iter();
            files
                .map(|file| (name.to_string(), file))
                .collect::<Vec<_>>()
        };
        let mut tls_files: Vec<_> = listeners
            .iter()
            .filter_map(|l| Some(named(&l.name, l.tls.as_ref()?)))
            .flatten()
            .collect();
        if let Some(tls) = &http_tls {
            tls_files.extend(named("HTTP", tls));
        }
        let http_tls = http_tls.map(|tls| tls.config);
        let group_events = Arc::new(GroupEventLog::new(GROUP_EVENTS_RETAINED));
        let events = Arc::clone(&group_events);
        let groups = ShardRouter::start(&topics, &config.groups, events, cluster.is_none()).await?;
        let transactions = match cluster {
            None => Some(
                crate::transactions::TransactionCoordinator::open(
                    &topics,
                    config.transaction_state_partitions,
                    config.transactions.clone(),
                )
                .await?,
            ),
            Some(_) => None,
        };
        Ok(Broker {
            admission: Admission::new(&config),
            http_tls,
            tls_files,
            request_memory: MemoryBudget::new(config.queued_max_request_bytes),
            fetch_memory: MemoryBudget::new(config.fetch_memory_max_bytes),
            readers: Default::default(),
            config,
            listeners,
            topics,
            cluster_id,
            cluster,
            credentials,
            authorizer,
            producer_ids,
            groups,
            transactions,
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

    /// Flushes and closes everything, and leaves the cluster; called once at shutdown.
    pub async fn shutdown(&self) {
        self.topics.close_all().await;
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
    }

    /// The brokers clients that connected through `listener` are told of: this one, or in
    /// cluster mode every live broker, each at its address on the listener of that name
    /// (Kafka answers with the same listener the client came through).
    pub fn brokers(&self, listener: &str) -> Vec<BrokerInfo> {
        match &self.cluster {
            Some(cluster) => cluster
                .view()
                .brokers
                .iter()
                .map(|b| reached_through(b, listener))
                .collect(),
            None => vec![self.this_broker(listener)],
        }
    }

    /// This broker, as clients of `listener` reach it.
    pub fn this_broker(&self, listener: &str) -> BrokerInfo {
        let this = BrokerInfo {
            node_id: self.config.node_id,
            host: self.config.advertised_host.clone(),
            port: i32::from(self.config.advertised_port),
            rack: self.config.cluster.rack.clone(),
            endpoints: endpoints(&self.listeners),
        };
        reached_through(&this, listener)
    }

    /// The broker given as the controller: this one, or the first live broker.
    pub fn controller_id(&self) -> i32 {
        match &self.cluster {
            Some(cluster) => cluster
                .view()
                .brokers
                .first()
                .map_or(-1, |broker| broker.node_id),
            None => self.config.node_id,
        }
    }

    /// The broker that coordinates `group_id`: the leader of its `__consumer_offsets`
    /// partition. `None` while that partition has no live leader.
    pub fn coordinator_of(&self, group_id: &str, listener: &str) -> Option<BrokerInfo> {
        let Some(cluster) = &self.cluster else {
            return Some(self.this_broker(listener));
        };
        let shard = partita_groups::partition_for_group(group_id, self.groups.shard_count() as i32);
        let leader = self
            .topics
            .get(crate::groups::CONSUMER_OFFSETS)?
            .leaders
            .get(shard as usize)?
            .node_id;
        cluster
            .view()
            .broker(leader)
            .map(|b| reached_through(b, listener))
    }
}

/// `broker` with the host and port of its listener named `listener` (its first listener's
/// if it has none of that name).
fn reached_through(broker: &BrokerInfo, listener: &str) -> BrokerInfo {
    let mut info = broker.clone();
    if let Some((host, port)) = broker.endpoint(listener) {
        (info.host, info.port) = (host.to_string(), port);
    }
    info
}

/// Every listener's advertised address.
fn endpoints(listeners: &[Listener]) -> Vec<Endpoint> {
    listeners
        .iter()
        .map(|l| Endpoint {
            listener: l.name.clone(),
            host: l.advertised_host.clone(),
            port: i32::from(l.advertised_port),
        })
        .collect()
}

/// The HTTP listener's TLS settings; refuses a listener other machines can reach without
/// `http.auth`, whose dashboard and metrics would be anyone's.
#[allow(clippy::type_complexity)]
fn http_tls(config: &BrokerConfig) -> Result<Option<crate::listeners::TlsSettings>, BrokerError> {
    let Some(address) = config.http_listen else {
        return Ok(None);
    };
    if !address.ip().is_loopback() && config.http_auth.is_open() {
        return Err(BrokerError::Startup(format!(
            "http.listen {address} can be reached from other machines: set http.auth \
             (basic:USER:PASSWORD or bearer:TOKEN), or listen on 127.0.0.1"
        )));
    }
    match config.http_tls {
        false => Ok(None),
        true => config
            .listener_properties
            .http_tls_config()
            .map(Some)
            .map_err(BrokerError::Startup),
    }
}

/// Joins the cluster named by the configuration; a failure is one line saying what to fix.
async fn join_cluster(
    config: &BrokerConfig,
    listeners: &[Listener],
) -> Result<Cluster, BrokerError> {
    let (host, port) = listeners
        .first()
        .map(|l| (l.advertised_host.clone(), l.advertised_port))
        .unwrap_or((config.advertised_host.clone(), config.advertised_port));
    let node = NodeAddress {
        node_id: config.node_id,
        host,
        port: i32::from(port),
        rack: config.cluster.rack.clone(),
        endpoints: endpoints(listeners),
    };
    Cluster::start(config.cluster.clone(), node)
        .await
        .map_err(|error| BrokerError::Startup(error.to_string()))
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
