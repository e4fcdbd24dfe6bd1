//! Broker configuration, named with Kafka's property names wherever Kafka has one.
//!
//! Every source (TOML file, `PARTITA_*` variables, `--set name=value`) ends up as a
//! sequence of `(name, value)` strings applied with [`BrokerConfig::set`], so all of them
//! accept exactly the same names and report mistakes the same way.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use partita_cluster::ClusterConfig;
use partita_groups::GroupConfig;
use partita_log::{CleanupPolicy, LogConfig, TimestampType};

use crate::listeners::{Listener, ListenerProperties};

/// Everything the broker needs to know to start.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Where partition directories and broker metadata live (`log.dirs`).
    pub data_dir: PathBuf,
    /// Address the Kafka listener binds to (`listeners`).
    pub listen: SocketAddr,
    /// Host and port given to clients in Metadata and FindCoordinator (`advertised.listeners`).
    pub advertised_host: String,
    /// Port given to clients; see [`BrokerConfig::advertised_host`].
    pub advertised_port: u16,
    /// This broker's id (`node.id` / `broker.id`).
    pub node_id: i32,
    /// Partitions of an auto-created topic, or of a CreateTopics with `-1` (`num.partitions`).
    pub num_partitions: i32,
    /// Whether a Metadata request for an unknown topic creates it.
    pub auto_create_topics_enable: bool,
    /// Largest request frame accepted, checked before the frame is buffered.
    pub socket_request_max_bytes: usize,
    /// Bytes that request frames being read and answered may hold at once, across every
    /// connection (`queued.max.request.bytes`); `None` is unbounded, Kafka's default.
    pub queued_max_request_bytes: Option<usize>,
    /// Client connections open at once (`max.connections`); at the cap new connections wait
    /// in the listen backlog until one closes. `None` is unbounded.
    pub max_connections: Option<usize>,
    /// Client connections open at once from one IP address (`max.connections.per.ip`); a
    /// connection beyond it is closed at once. `None` is unbounded.
    pub max_connections_per_ip: Option<usize>,
    /// Per-address exceptions to `max_connections_per_ip` (`max.connections.per.ip.overrides`).
    pub max_connections_per_ip_overrides: Vec<(IpAddr, usize)>,
    /// A connection that sends nothing for this long is closed (`connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// How long a SASL authentication lasts before the client must re-authenticate
    /// (`connections.max.reauth.ms`, KIP-368); 0, the default, for ever.
    pub connections_max_reauth_ms: u64,
    /// Largest Fetch response, whatever the request asks (`fetch.max.bytes`).
    pub fetch_max_bytes: usize,
    /// Bytes that Fetch responses may hold at once, across every connection
    /// (`fetch.memory.max.bytes`); a fetch waits for memory beyond it. `None` is unbounded.
    pub fetch_memory_max_bytes: Option<usize>,
    /// Defaults for every partition's log; topics may override them.
    pub log: LogConfig,
    /// How often retention and time-based segment rolls are checked.
    pub log_retention_check_interval_ms: u64,
    /// How often logs with a `flush.ms` policy are flushed by the background task.
    pub log_flush_scheduler_interval_ms: u64,
    /// How fast the scrub reads segments opened without being read (after a clean shutdown, or
    /// before the recovery point after a crash), checking every batch's CRC
    /// (`log.scrub.bytes.per.second`); 0 turns it off.
    pub log_scrub_bytes_per_second: u64,
    /// Segment and index files kept open between uses, at most (`log.open.files.max`);
    /// `None` derives it from the open-file limit the process has (see `partita_log::open_files`).
    pub log_open_files_max: Option<usize>,
    /// Whether DeleteTopics is allowed.
    pub delete_topic_enable: bool,
    /// The group coordinator's settings.
    pub groups: GroupConfig,
    /// The transaction coordinator's settings.
    pub transactions: partita_groups::transactions::TransactionConfig,
    /// `transaction.state.log.num.partitions`: shards of the transaction coordinator.
    pub transaction_state_partitions: i32,
    /// Cluster mode's settings: off unless `storage.url` and `cluster.metadata.url` are set.
    pub cluster: ClusterConfig,
    /// Address of the HTTP listener for `/metrics` and the dashboard (`http.listen`); `None`
    /// (an empty value) turns it off.
    pub http_listen: Option<SocketAddr>,
    /// Whether the HTTP listener speaks TLS (`http.listen=https://HOST:PORT`), with the PEM
    /// settings of a listener named HTTP (`listener.name.http.ssl.*`, else `ssl.*`).
    pub http_tls: bool,
    /// Who may see the HTTP listener (`http.auth`); required unless it is bound to loopback.
    pub http_auth: crate::http::HttpAuth,
    /// How much history the dashboard's charts keep, in minutes (`http.history.minutes`).
    pub http_history_minutes: u64,
    /// How often lag and traffic are sampled for that history (`http.history.interval.ms`).
    pub http_history_interval_ms: u64,
    /// `listeners`, `advertised.listeners`, `listener.security.protocol.map` and the TLS
    /// settings as given; [`BrokerConfig::listeners`] resolves them.
    pub listener_properties: ListenerProperties,
    /// ACLs: `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::acl::AuthorizerConfig,
    /// The properties given explicitly (file, environment or flags), as named there; what
    /// DescribeConfigs reports as STATIC_BROKER_CONFIG rather than DEFAULT_CONFIG.
    pub explicit: std::collections::BTreeSet<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: 9092,
            node_id: 1,
            num_partitions: 1,
            auto_create_topics_enable: true,
            socket_request_max_bytes: 104_857_600,
            queued_max_request_bytes: None,
            max_connections: None,
            max_connections_per_ip: None,
            max_connections_per_ip_overrides: Vec::new(),
            connections_max_idle_ms: 600_000,
            connections_max_reauth_ms: 0,
            fetch_max_bytes: 57_671_680,
            fetch_memory_max_bytes: Some(268_435_456),
            log_scrub_bytes_per_second: 50 * 1024 * 1024,
            log_open_files_max: None,
            log: LogConfig::default(),
            log_retention_check_interval_ms: 300_000,
            log_flush_scheduler_interval_ms: 1_000,
            delete_topic_enable: true,
            groups: GroupConfig::default(),
            transactions: Default::default(),
            transaction_state_partitions: 50,
            cluster: ClusterConfig::default(),
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            http_tls: false,
            http_auth: Default::default(),
            http_history_minutes: 15,
            http_history_interval_ms: 5_000,
            listener_properties: ListenerProperties::default(),
            authorizer: Default::default(),
            explicit: Default::default(),
        }
    }
}

/// What happened to one `name=value` setting.
#[derive(Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// The property was understood and applied.
    Applied,
    /// A Kafka property this broker accepts but has no use for (replication, ZooKeeper, ...).
    Ignored,
    /// Not a property this broker or Kafka knows; the caller logs a warning.
    Unknown,
}

/// A property with a value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid value {value:?} for {name}: {reason}")]
pub struct ConfigError {
    /// The property name.
    pub name: String,
    /// The value given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// Kafka broker properties that make no difference to a single-node broker without replication.
const IGNORED_PROPERTIES: &[&str] = &[
    "offsets.topic.segment.bytes",
    "offsets.commit.timeout.ms",
    "offsets.load.buffer.size",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.listener.names",
    "inter.broker.listener.name",
    "zookeeper.connect",
    "default.replication.factor",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "min.insync.replicas",
    "num.network.threads",
    "num.io.threads",
    "num.recovery.threads.per.data.dir",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "log.message.format.version",
    "inter.broker.protocol.version",
    "replica.lag.time.max.ms",
    "num.replica.fetchers",
];

impl BrokerConfig {
    /// Applies one property given as text, as from `--set name=value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<SetOutcome, ConfigError> {
        let value = value.trim();
        let bad = |reason: &str| ConfigError {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let int = || value.parse::<i64>().map_err(|_| bad("not an integer"));
        let positive = || match int()? {
            n if n > 0 => Ok(n),
            _ => Err(bad("must be positive")),
        };
        // A positive number for an int setting: larger values stand for Java's Integer.MAX_VALUE.
        let positive_i32 = || positive().map(|n| n.min(i32::MAX as i64) as i32);
        let non_negative = || match int()? {
            n if n >= 0 => Ok(n),
            _ => Err(bad("must not be negative")),
        };
        // A cap: a positive number, or -1 (or Kafka's Integer.MAX_VALUE) for none.
        let limit = || match int()? {
            -1 | 2_147_483_647 => Ok(None),
            n if n > 0 => Ok(Some(n as usize)),
            _ => Err(bad("must be positive, or -1 for no limit")),
        };
        let boolean = || value.parse::<bool>().map_err(|_| bad("not true or false"));
        let listener_property = self.listener_properties.set(name, value);
        match name {
            "log.dirs" | "log.dir" | "data.dir" | "data-dir" => {
                let first = value.split(',').next().unwrap_or(value);
                self.data_dir = PathBuf::from(first);
            }
            "listeners" | "listen" => self.listen = parse_listener(value).map_err(|r| bad(&r))?,
            "advertised.listeners" | "advertised" => {
                let (host, port) = parse_host_port(value).map_err(|r| bad(&r))?;
                self.advertised_host = host;
                self.advertised_port = port;
            }
            _ if listener_property => {}
            "node.id" | "broker.id" => self.node_id = int()? as i32,
            "authorizer.class.name" => {
                self.authorizer.enabled = match value {
                    "" => false,
                    class if crate::acl::AUTHORIZER_CLASSES.contains(&class) => true,
                    _ => {
                        return Err(bad(&format!(
                            "the authorizer served is {}",
                            crate::acl::AUTHORIZER_CLASSES[0]
                        )))
                    }
                }
            }
            "super.users" => {
                self.authorizer.super_users = value
                    .split(';')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "allow.everyone.if.no.acl.found" => {
                self.authorizer.allow_everyone_if_no_acl_found = boolean()?
            }
            "num.partitions" => self.num_partitions = positive()? as i32,
            "auto.create.topics.enable" => self.auto_create_topics_enable = boolean()?,
            "delete.topic.enable" => self.delete_topic_enable = boolean()?,
            "socket.request.max.bytes" => self.socket_request_max_bytes = positive()? as usize,
            "queued.max.request.bytes" => self.queued_max_request_bytes = limit()?,
            "max.connections" => self.max_connections = limit()?,
            "max.connections.per.ip" => self.max_connections_per_ip = limit()?,
            "max.connections.per.ip.overrides" => {
                self.max_connections_per_ip_overrides =
                    parse_ip_overrides(value).map_err(|r| bad(&r))?
            }
            "connections.max.idle.ms" => self.connections_max_idle_ms = positive()? as u64,
            "connections.max.reauth.ms" => self.connections_max_reauth_ms = non_negative()? as u64,
            "fetch.max.bytes" => match positive()? {
                n if n >= 1024 => self.fetch_max_bytes = n as usize,
                _ => return Err(bad("must be at least 1024")),
            },
            "fetch.memory.max.bytes" => self.fetch_memory_max_bytes = limit()?,
            "message.max.bytes" => self.log.max_message_bytes = positive()? as u32,
            "log.segment.bytes" => self.log.segment_bytes = positive()? as u64,
            "log.roll.ms" => self.log.segment_ms = positive()?,
            "log.roll.hours" => self.log.segment_ms = positive()? * 3_600_000,
            "log.retention.ms" => self.log.retention_ms = int()?,
            "log.retention.minutes" => self.log.retention_ms = int()? * 60_000,
            "log.retention.hours" => self.log.retention_ms = int()? * 3_600_000,
            "log.retention.bytes" => self.log.retention_bytes = int()?,
            "log.flush.interval.messages" => self.log.flush_messages = positive()? as u64,
            "log.flush.interval.ms" => self.log.flush_ms = positive()? as u64,
            "log.index.interval.bytes" => self.log.index_interval_bytes = positive()? as u32,
            "log.cleanup.policy" => {
                self.log.cleanup_policy = parse_cleanup_policy(value).map_err(|r| bad(&r))?
            }
            "log.message.timestamp.type" => {
                self.log.timestamp_type = parse_timestamp_type(value).map_err(|r| bad(&r))?
            }
            "log.cleaner.delete.retention.ms" => {
                self.log.delete_retention_ms = non_negative()?;
            }
            "log.cleaner.min.compaction.lag.ms" => {
                self.log.min_compaction_lag_ms = non_negative()?;
            }
            "log.retention.check.interval.ms" => {
                self.log_retention_check_interval_ms = positive()? as u64
            }
            "log.flush.scheduler.interval.ms" => {
                self.log_flush_scheduler_interval_ms = positive()? as u64
            }
            "log.scrub.bytes.per.second" => {
                self.log_scrub_bytes_per_second = non_negative()? as u64
            }
            "log.open.files.max" => self.log_open_files_max = Some(positive()? as usize),
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay_ms = int()?.max(0)
            }
            "group.min.session.timeout.ms" => self.groups.min_session_timeout_ms = positive_i32()?,
            "group.max.session.timeout.ms" => self.groups.max_session_timeout_ms = positive_i32()?,
            "group.max.size" => self.groups.max_size = positive()? as usize,
            "offsets.topic.num.partitions" => {
                self.groups.offsets_topic_num_partitions = positive()?.min(10_000) as i32
            }
            "offsets.retention.minutes" => self.groups.offsets_retention_ms = positive()? * 60_000,
            "transaction.state.log.num.partitions" => {
                self.transaction_state_partitions = positive()?.min(10_000) as i32
            }
            "transaction.max.timeout.ms" => self.transactions.max_timeout_ms = positive_i32()?,
            "transactional.id.expiration.ms" => self.transactions.id_expiration_ms = positive()?,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.transactions.abort_check_interval_ms = positive()?
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.transactions.expiration_check_interval_ms = positive()?
            }
            "offsets.retention.check.interval.ms" => {
                self.groups.offsets_retention_check_interval_ms = positive()?
            }
            "group.consumer.heartbeat.interval.ms" => {
                self.groups.consumer_heartbeat_interval_ms = positive_i32()?
            }
            "group.consumer.session.timeout.ms" => {
                self.groups.consumer_session_timeout_ms = positive_i32()?
            }
            "group.consumer.min.session.timeout.ms" => {
                self.groups.consumer_session_timeout_bounds_ms.0 = positive_i32()?
            }
            "group.consumer.max.session.timeout.ms" => {
                self.groups.consumer_session_timeout_bounds_ms.1 = positive_i32()?
            }
            "group.consumer.min.heartbeat.interval.ms" => {
                self.groups.consumer_heartbeat_interval_bounds_ms.0 = positive_i32()?
            }
            "group.consumer.max.heartbeat.interval.ms" => {
                self.groups.consumer_heartbeat_interval_bounds_ms.1 = positive_i32()?
            }
            "group.consumer.max.size" => self.groups.consumer_max_size = positive()? as usize,
            "group.consumer.assignors" => {
                let assignors: Vec<String> = value
                    .split(',')
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect();
                if assignors.is_empty()
                    || assignors
                        .iter()
                        .any(|a| !matches!(a.as_str(), "uniform" | "range"))
                {
                    return Err(bad("assignors must be uniform and/or range"));
                }
                self.groups.consumer_assignors = assignors;
            }
            "group.share.heartbeat.interval.ms" => {
                self.groups.share.heartbeat_interval_ms = positive_i32()?
            }
            "group.share.session.timeout.ms" => self.groups.share.session_timeout_ms = positive()?,
            "group.share.record.lock.duration.ms" => {
                self.groups.share.partition.lock_duration_ms = positive()?
            }
            "group.share.delivery.count.limit" => {
                self.groups.share.partition.delivery_count_limit =
                    positive()?.min(i16::MAX as i64) as i16
            }
            "group.share.partition.max.record.locks" => {
                self.groups.share.partition.max_in_flight = positive()? as usize
            }
            "offset.metadata.max.bytes" => {
                self.groups.offset_metadata_max_bytes = positive()? as usize
            }
            "storage.url" => self.cluster.storage_url = non_empty(value),
            "cluster.metadata.url" => self.cluster.metadata_url = non_empty(value),
            "storage.flush.interval.ms" => self.cluster.flush_interval_ms = positive()? as u64,
            "storage.flush.max.bytes" => self.cluster.flush_max_bytes = positive()? as usize,
            "storage.cache.max.bytes" => self.cluster.cache_max_bytes = non_negative()? as u64,
            "broker.heartbeat.interval.ms" => {
                self.cluster.heartbeat_interval_ms = positive()? as u64
            }
            "broker.session.timeout.ms" => self.cluster.session_timeout_ms = positive()? as u64,
            "broker.rack" => self.cluster.rack = non_empty(value),
            "storage.merge.age.ms" => self.cluster.merge_age_ms = positive()? as u64,
            "log.segment.delete.delay.ms" => self.cluster.delete_delay_ms = non_negative()? as u64,
            "http.listen" if value.is_empty() => self.http_listen = None,
            "http.listen" => {
                let (tls, address) = match value.split_once("://") {
                    Some(("https", address)) => (true, address),
                    Some(("http", address)) => (false, address),
                    Some(_) => return Err(bad("the scheme may be http:// or https://")),
                    None => (false, value),
                };
                self.http_listen = Some(parse_listener(address).map_err(|r| bad(&r))?);
                self.http_tls = tls;
            }
            "http.auth" => {
                self.http_auth = crate::http::HttpAuth::parse(value).map_err(|r| bad(&r))?
            }
            "http.history.minutes" => self.http_history_minutes = positive()? as u64,
            "http.history.interval.ms" => self.http_history_interval_ms = positive()? as u64,
            _ if IGNORED_PROPERTIES.contains(&name) => return Ok(SetOutcome::Ignored),
            _ => return Ok(SetOutcome::Unknown),
        }
        self.explicit.insert(name.to_string());
        Ok(SetOutcome::Applied)
    }
}

/// How DescribeConfigs types a property (its `ConfigType`).
pub mod config_type {
    /// `true` or `false`.
    pub const BOOLEAN: i8 = 1;
    /// Text.
    pub const STRING: i8 = 2;
    /// A 32-bit integer.
    pub const INT: i8 = 3;
    /// A 64-bit integer.
    pub const LONG: i8 = 5;
    /// A floating-point number.
    pub const DOUBLE: i8 = 6;
    /// A comma-separated list.
    pub const LIST: i8 = 7;
}

impl BrokerConfig {
    /// Every Kafka listener, the first being the one `listen` and `advertised_*` describe;
    /// reads the TLS keys and certificates they name.
    pub fn listeners(&self) -> Result<Vec<Listener>, String> {
        self.listener_properties
            .resolve(self.listen, &self.advertised_host, self.advertised_port)
    }

    /// The broker properties DescribeConfigs lists besides the defaults of topic properties:
    /// name, value and type. None of them can be changed while the broker runs.
    pub fn described(&self) -> Vec<(&'static str, String, i8)> {
        use config_type::{BOOLEAN, INT, LONG, STRING};
        let g = &self.groups;
        let given = |name| self.listener_properties.given(name);
        let listener = given("listeners").unwrap_or_else(|| format!("PLAINTEXT://{}", self.listen));
        let advertised = given("advertised.listeners").unwrap_or_else(|| {
            format!(
                "PLAINTEXT://{}:{}",
                self.advertised_host, self.advertised_port
            )
        });
        let int = |name, value: &dyn ToString| (name, value.to_string(), INT);
        vec![
            ("advertised.listeners", advertised, STRING),
            (
                "auto.create.topics.enable",
                self.auto_create_topics_enable.to_string(),
                BOOLEAN,
            ),
            (
                "connections.max.idle.ms",
                self.connections_max_idle_ms.to_string(),
                LONG,
            ),
            (
                "delete.topic.enable",
                self.delete_topic_enable.to_string(),
                BOOLEAN,
            ),
            int("fetch.max.bytes", &self.fetch_max_bytes),
            int(
                "group.consumer.heartbeat.interval.ms",
                &g.consumer_heartbeat_interval_ms,
            ),
            int(
                "group.consumer.max.heartbeat.interval.ms",
                &g.consumer_heartbeat_interval_bounds_ms.1,
            ),
            int(
                "group.consumer.max.session.timeout.ms",
                &g.consumer_session_timeout_bounds_ms.1,
            ),
            int("group.consumer.max.size", &g.consumer_max_size),
            int(
                "group.consumer.min.heartbeat.interval.ms",
                &g.consumer_heartbeat_interval_bounds_ms.0,
            ),
            int(
                "group.consumer.min.session.timeout.ms",
                &g.consumer_session_timeout_bounds_ms.0,
            ),
            int(
                "group.consumer.session.timeout.ms",
                &g.consumer_session_timeout_ms,
            ),
            int(
                "group.initial.rebalance.delay.ms",
                &g.initial_rebalance_delay_ms,
            ),
            int("group.max.session.timeout.ms", &g.max_session_timeout_ms),
            int("group.max.size", &g.max_size),
            int("group.min.session.timeout.ms", &g.min_session_timeout_ms),
            ("listeners", listener, STRING),
            ("log.dirs", self.data_dir.display().to_string(), STRING),
            (
                "log.retention.check.interval.ms",
                self.log_retention_check_interval_ms.to_string(),
                LONG,
            ),
            int("node.id", &self.node_id),
            int("num.partitions", &self.num_partitions),
            int("offset.metadata.max.bytes", &g.offset_metadata_max_bytes),
            int(
                "offsets.retention.minutes",
                &(g.offsets_retention_ms / 60_000),
            ),
            int(
                "offsets.topic.num.partitions",
                &g.offsets_topic_num_partitions,
            ),
            int("socket.request.max.bytes", &self.socket_request_max_bytes),
            int(
                "transaction.max.timeout.ms",
                &self.transactions.max_timeout_ms,
            ),
            int(
                "transaction.state.log.num.partitions",
                &self.transaction_state_partitions,
            ),
            int(
                "transactional.id.expiration.ms",
                &self.transactions.id_expiration_ms,
            ),
        ]
    }
}

/// A text setting, where empty means unset.
fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// Parses `max.connections.per.ip.overrides`: `address:count` pairs, comma separated.
fn parse_ip_overrides(value: &str) -> Result<Vec<(IpAddr, usize)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (address, count) = entry
                .rsplit_once(':')
                .ok_or_else(|| format!("{entry:?} is not address:count"))?;
            let address = address.trim_start_matches('[').trim_end_matches(']');
            let address = address
                .parse::<IpAddr>()
                .map_err(|_| format!("{address:?} is not an IP address"))?;
            let count = count
                .parse::<usize>()
                .map_err(|_| format!("{count:?} is not a count"))?;
            Ok((address, count))
        })
        .collect()
}

/// Parses `cleanup.policy` values: `delete`, `compact` or both, comma separated.
pub fn parse_cleanup_policy(value: &str) -> Result<CleanupPolicy, String> {
    let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
    parts.sort_unstable();
    parts.dedup();
    match parts.as_slice() {
        ["delete"] => Ok(CleanupPolicy::Delete),
        ["compact"] => Ok(CleanupPolicy::Compact),
        ["compact", "delete"] => Ok(CleanupPolicy::CompactDelete),
        _ => Err("expected delete, compact or compact,delete".to_string()),
    }
}

/// Parses `message.timestamp.type` values.
pub fn parse_timestamp_type(value: &str) -> Result<TimestampType, String> {
    match value {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        _ => Err("expected CreateTime or LogAppendTime".to_string()),
    }
}

/// Accepts `HOST:PORT` or Kafka's `PLAINTEXT://HOST:PORT` (first listener of a list).
fn parse_host_port(value: &str) -> Result<(String, u16), String> {
    let first = value.split(',').next().unwrap_or(value).trim();
    let address = first.rsplit_once("://").map_or(first, |(_, rest)| rest);
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT".to_string())?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok((host.to_string(), port))
}

fn parse_listener(value: &str) -> Result<SocketAddr, String> {
    let (host, port) = parse_host_port(value)?;
    crate::listeners::parse_bind(&host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_property_names_are_applied() {
        let mut config = BrokerConfig::default();
        assert_eq!(
            config.set("num.partitions", "3").unwrap(),
            SetOutcome::Applied
        );
        assert_eq!(
            config.set("log.segment.bytes", "1048576").unwrap(),
            SetOutcome::Applied
        );
        assert_eq!(
            config
                .set("advertised.listeners", "PLAINTEXT://example:19092")
                .unwrap(),
            SetOutcome::Applied
        );
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.log.segment_bytes, 1_048_576);
        assert_eq!(
            (config.advertised_host.as_str(), config.advertised_port),
            ("example", 19092)
        );
    }

    #[test]
    fn unknown_and_ignored_properties_are_told_apart() {
        let mut config = BrokerConfig::default();
        assert_eq!(
            config.set("no.such.thing", "1").unwrap(),
            SetOutcome::Unknown
        );
        assert_eq!(
            config.set("default.replication.factor", "3").unwrap(),
            SetOutcome::Ignored
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let mut config = BrokerConfig::default();
        assert!(config.set("num.partitions", "zero").is_err());
        assert!(config.set("num.partitions", "0").is_err());
        assert!(config.set("listeners", "nohost").is_err());
        assert!(config.set("log.cleanup.policy", "shred").is_err());
        assert!(config.set("http.listen", "nohost").is_err());
        assert!(config.set("max.connections", "0").is_err());
        assert!(config.set("fetch.max.bytes", "100").is_err());
        assert!(config
            .set("max.connections.per.ip.overrides", "db.example:5")
            .is_err());
    }

    #[test]
    fn connection_and_memory_caps_take_kafka_names_and_minus_one_for_none() {
        let mut config = BrokerConfig::default();
        assert_eq!(config.max_connections, None);
        assert_eq!(config.fetch_memory_max_bytes, Some(268_435_456));
        config.set("max.connections", "100").unwrap();
        config.set("max.connections.per.ip", "2147483647").unwrap();
        config.set("queued.max.request.bytes", "1048576").unwrap();
        config.set("fetch.memory.max.bytes", "-1").unwrap();
        config
            .set("max.connections.per.ip.overrides", "127.0.0.1:5, [::1]:7")
            .unwrap();
        assert_eq!(config.max_connections, Some(100));
        assert_eq!(config.max_connections_per_ip, None);
        assert_eq!(config.queued_max_request_bytes, Some(1_048_576));
        assert_eq!(config.fetch_memory_max_bytes, None);
        assert_eq!(
            config.max_connections_per_ip_overrides,
            vec![
                (IpAddr::from([127, 0, 0, 1]), 5),
                ("::1".parse().unwrap(), 7)
            ]
        );
    }

    #[test]
    fn http_listener_is_on_by_default_and_off_when_empty() {
        let mut config = BrokerConfig::default();
        assert_eq!(
            config.http_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9644)))
        );
        config.set("http.listen", "0.0.0.0:9700").unwrap();
        assert_eq!(
            config.http_listen,
            Some(SocketAddr::from(([0, 0, 0, 0], 9700)))
        );
        config.set("http.listen", "").unwrap();
        assert_eq!(config.http_listen, None);
    }
}
