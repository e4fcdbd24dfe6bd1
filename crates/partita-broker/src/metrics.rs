//! The broker's own counters, gauges and histograms (prometheus-client), updated on the hot
//! path, with typed labels: every API has its own name, every error code its Kafka name.
//!
//! Metric names are stable and documented in `docs/metrics.md`; the group and partition
//! metrics are gathered at scrape time by [`crate::http`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use partita_groups::HeldAnswer;
use partita_log::batch;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the request latency buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of the rebalance duration buckets.
pub const REBALANCE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The content type of the exposition: OpenMetrics text, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram of request latencies.
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// A histogram of rebalance durations.
pub fn rebalance_histogram() -> Histogram {
    Histogram::new(REBALANCE_BUCKETS.iter().copied())
}

/// A Kafka API, as a label: its name (`Produce`, `ShareFetch`, ...), or `unknown` for a key
/// Kafka does not define.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Api(pub i16);

impl EncodeLabelValue for Api {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&api_name(self.0))
    }
}

/// Labels of a per-API series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The API.
    pub api: Api,
}

/// A Kafka error code, as a label: `UNKNOWN_TOPIC_OR_PARTITION` style.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ErrorName(pub i16);

impl EncodeLabelValue for ErrorName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&error_name(self.0))
    }
}

/// Labels of an error series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The API that returned it.
    pub api: Api,
    /// The error code.
    pub code: i16,
    /// Its name.
    pub error: ErrorName,
}

/// Labels of a per-topic series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// The topic.
    pub topic: String,
}

/// Labels of the closed-connection counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why the broker closed it.
    pub reason: &'static str,
}

/// Labels of the held-heartbeat counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnsweredLabels {
    /// Why the held heartbeat was answered.
    pub answered: &'static str,
}

/// Traffic of one topic: what producers wrote and consumers read. Counting it counts the
/// broker-wide totals too.
#[derive(Clone, Debug, Default)]
pub struct TopicTraffic {
    bytes_in: Counter,
    records_in: Counter,
    bytes_out: Counter,
    records_out: Counter,
    totals: Totals,
}

impl TopicTraffic {
    /// Counts an append.
    pub fn record_in(&self, bytes: u64, records: u64) {
        self.bytes_in.inc_by(bytes);
        self.records_in.inc_by(records);
        self.totals.bytes_in.inc_by(bytes);
        self.totals.records_in.inc_by(records);
    }

    /// Counts what a fetch returned.
    pub fn record_out(&self, bytes: u64, records: u64) {
        self.bytes_out.inc_by(bytes);
        self.records_out.inc_by(records);
        self.totals.bytes_out.inc_by(bytes);
        self.totals.records_out.inc_by(records);
    }

    /// Bytes appended by Produce.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.get()
    }

    /// Records appended by Produce.
    pub fn records_in(&self) -> u64 {
        self.records_in.get()
    }

    /// Bytes returned by Fetch.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.get()
    }

    /// Records returned by Fetch.
    pub fn records_out(&self) -> u64 {
        self.records_out.get()
    }
}

/// The broker-wide traffic totals.
#[derive(Clone, Debug, Default)]
struct Totals {
    bytes_in: Counter,
    records_in: Counter,
    bytes_out: Counter,
    records_out: Counter,
}

/// The per-topic traffic families.
#[derive(Clone, Debug, Default)]
struct TopicFamilies {
    bytes_in: Family<TopicLabels, Counter>,
    records_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    records_out: Family<TopicLabels, Counter>,
}

/// A topic-partition, as a label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

/// The broker's hot-path metrics, shared by every connection.
pub struct BrokerMetrics {
    requests: Family<ApiLabels, Counter>,
    failures: Family<ApiLabels, Counter>,
    latency: Family<ApiLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
    totals: Totals,
    topic_families: TopicFamilies,
    topics: RwLock<HashMap<String, Arc<TopicTraffic>>>,
    /// Client connections open now.
    pub open_connections: Gauge,
    /// Client connections accepted since start.
    pub connections_accepted: Counter,
    connections_closed: Family<ReasonLabels, Counter>,
    held_heartbeats: Family<AnsweredLabels, Counter>,
    scrubbed_bytes: Counter,
    damaged_batches: Family<PartitionLabels, Counter>,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        // Both reasons are shown from the start, at 0.
        for reason in ["per_ip_limit", "idle"] {
            drop(connections_closed.get_or_create(&ReasonLabels { reason }));
        }
        let held_heartbeats = Family::<AnsweredLabels, Counter>::default();
        for why in [HeldAnswer::Changed, HeldAnswer::Released, HeldAnswer::Due] {
            drop(held_heartbeats.get_or_create(&AnsweredLabels {
                answered: why.name(),
            }));
        }
        BrokerMetrics {
            held_heartbeats,
            requests: Family::default(),
            failures: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            totals: Totals::default(),
            topic_families: TopicFamilies::default(),
            topics: RwLock::new(HashMap::new()),
            open_connections: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_closed,
            scrubbed_bytes: Counter::default(),
            damaged_batches: Family::default(),
        }
    }
}

impl BrokerMetrics {
    /// Records one request of `api_key` and how long it took to answer.
    pub fn record_request(&self, api_key: i16, elapsed: Duration, failed: bool) {
        let labels = ApiLabels { api: Api(api_key) };
        self.requests.get_or_create(&labels).inc();
        if failed {
            self.failures.get_or_create(&labels).inc();
        }
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an error code returned to a client by `api_key`; 0 (no error) is ignored.
    pub fn record_error(&self, api_key: ApiKey, code: i16) {
        if code == 0 {
            return;
        }
        let labels = ErrorLabels {
            api: Api(api_key as i16),
            code,
            error: ErrorName(code),
        };
        self.errors.get_or_create(&labels).inc();
    }

    /// Counts bytes the scrub read and checked.
    pub fn scrubbed(&self, bytes: u64) {
        self.scrubbed_bytes.inc_by(bytes);
    }

    /// Counts a damaged batch the scrub found in `topic`-`partition`.
    pub fn damaged_batch(&self, topic: &str, partition: i32) {
        let labels = PartitionLabels {
            topic: topic.to_string(),
            partition,
        };
        self.damaged_batches.get_or_create(&labels).inc();
    }

    /// Counts a KIP-848 heartbeat that was held, by why it was answered.
    pub fn held_heartbeat_answered(&self, why: HeldAnswer) {
        let labels = AnsweredLabels {
            answered: why.name(),
        };
        self.held_heartbeats.get_or_create(&labels).inc();
    }

    /// Counts a connection closed at once: its address had `max.connections.per.ip` open.
    pub fn connection_refused(&self) {
        self.closed_for("per_ip_limit");
    }

    /// Counts a connection closed because its TLS handshake failed or did not come.
    pub fn tls_handshake_failed(&self) {
        self.closed_for("tls_handshake");
    }

    /// Counts a connection closed because its SASL authentication failed.
    pub fn sasl_authentication_failed(&self) {
        self.closed_for("sasl_authentication");
    }

    /// Counts a connection closed after `connections.max.idle.ms` without a byte.
    pub fn connection_idle_closed(&self) {
        self.closed_for("idle");
    }

    fn closed_for(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The traffic counters of `topic`, created on first use.
    pub fn topic(&self, topic: &str) -> Arc<TopicTraffic> {
        if let Some(traffic) = self.read_topics().get(topic) {
            return Arc::clone(traffic);
        }
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        let families = &self.topic_families;
        let traffic = TopicTraffic {
            bytes_in: families.bytes_in.get_or_create_owned(&labels),
            records_in: families.records_in.get_or_create_owned(&labels),
            bytes_out: families.bytes_out.get_or_create_owned(&labels),
            records_out: families.records_out.get_or_create_owned(&labels),
            totals: self.totals.clone(),
        };
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            topics
                .entry(topic.to_string())
                .or_insert_with(|| Arc::new(traffic)),
        )
    }

    /// Forgets a deleted topic's counters.
    pub fn forget_topic(&self, topic: &str) {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        topics.remove(topic);
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        let families = &self.topic_families;
        for family in [
            &families.bytes_in,
            &families.records_in,
            &families.bytes_out,
            &families.records_out,
        ] {
            family.remove(&labels);
        }
    }

    /// Every topic with traffic, sorted by name.
    pub fn topics(&self) -> Vec<(String, Arc<TopicTraffic>)> {
        let mut all: Vec<_> = self
            .read_topics()
            .iter()
            .map(|(name, traffic)| (name.clone(), Arc::clone(traffic)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TopicTraffic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the broker-wide metrics (the same series, not copies) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let totals = &self.totals;
        let families = &self.topic_families;
        let counters: [(&str, &str, &Counter); 4] = [
            (
                "partita_bytes_in",
                "Bytes of record batches appended by Produce",
                &totals.bytes_in,
            ),
            (
                "partita_bytes_out",
                "Bytes of record batches returned by Fetch",
                &totals.bytes_out,
            ),
            (
                "partita_records_in",
                "Records appended by Produce",
                &totals.records_in,
            ),
            (
                "partita_records_out",
                "Records returned by Fetch",
                &totals.records_out,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let per_topic: [(&str, &str, &Family<TopicLabels, Counter>); 4] = [
            (
                "partita_topic_bytes_in",
                "Bytes appended by Produce, by topic",
                &families.bytes_in,
            ),
            (
                "partita_topic_bytes_out",
                "Bytes returned by Fetch, by topic",
                &families.bytes_out,
            ),
            (
                "partita_topic_records_in",
                "Records appended by Produce, by topic",
                &families.records_in,
            ),
            (
                "partita_topic_records_out",
                "Records returned by Fetch, by topic",
                &families.records_out,
            ),
        ];
        for (name, help, family) in per_topic {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "partita_requests",
            "Requests received, by API",
            self.requests.clone(),
        );
        registry.register(
            "partita_request_failures",
            "Requests that could not be answered and closed their connection, by API",
            self.failures.clone(),
        );
        registry.register(
            "partita_request_duration_seconds",
            "Time from a request read to its response written, by API (Fetch includes its long-poll wait)",
            self.latency.clone(),
        );
        registry.register(
            "partita_errors",
            "Error codes returned to clients, by API and Kafka error code",
            self.errors.clone(),
        );
        registry.register(
            "partita_connections_open",
            "Kafka client connections open now",
            self.open_connections.clone(),
        );
        registry.register(
            "partita_log_scrubbed_bytes",
            "Bytes of segments opened unread (after a clean shutdown or before the recovery point) that the scrub has read and checked",
            self.scrubbed_bytes.clone(),
        );
        registry.register(
            "partita_log_damaged_batches",
            "Damaged batches the scrub found (never served), by partition",
            self.damaged_batches.clone(),
        );
        registry.register(
            "partita_connections_accepted",
            "Kafka client connections accepted since the broker started",
            self.connections_accepted.clone(),
        );
        registry.register(
            "partita_consumer_heartbeats_held",
            "KIP-848 heartbeats held because they had nothing new for their member, by why they \
             were answered: something changed for the member, its client sent another request, \
             or its next heartbeat was about to be due",
            self.held_heartbeats.clone(),
        );
        registry.register(
            "partita_connections_closed",
            "Connections the broker closed: refused at max.connections.per.ip, or idle for \
             connections.max.idle.ms",
            self.connections_closed.clone(),
        );
    }
}

/// Counts the records of a sequence of whole record batches by reading their headers.
pub fn count_records(batches: &[u8]) -> u64 {
    let mut at = 0;
    let mut records = 0u64;
    while at < batches.len() {
        let Ok(header) = batch::parse_header(&batches[at..]) else {
            break;
        };
        records += u64::try_from(header.record_count).unwrap_or(0);
        at += header.total_size().max(batch::HEADER_SIZE);
    }
    records
}

/// Kafka's name of an API (`Produce`, `JoinGroup`, `ShareFetch`, ...), or `unknown`.
pub fn api_name(api_key: i16) -> String {
    match ApiKey::try_from(api_key) {
        Ok(key) => format!("{key:?}"),
        Err(_) => "unknown".to_string(),
    }
}

/// Kafka's name of an error code, `UNKNOWN_TOPIC_OR_PARTITION` style.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(kafka_protocol::ResponseError::Unknown(_)) | None => "UNKNOWN".to_string(),
        Some(error) => screaming_snake(&format!("{error:?}")),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The exposition of a registry.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        let _ = writeln!(text, "# encoding failed: {error}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_is_named_and_errors_are_counted_by_name() {
        let metrics = BrokerMetrics::default();
        metrics.record_request(0, Duration::from_millis(2), false);
        metrics.record_request(78, Duration::from_millis(2), false);
        metrics.record_request(999, Duration::from_millis(2), true);
        metrics.record_error(ApiKey::Produce, 3);
        metrics.topic("orders").record_in(10, 5);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let text = encode(&registry);
        assert!(
            text.contains("partita_requests_total{api=\"Produce\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("partita_requests_total{api=\"ShareFetch\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("partita_request_failures_total{api=\"unknown\"} 1\n"));
        assert!(text.contains(
            "partita_errors_total{api=\"Produce\",code=\"3\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 1\n"
        ));
        assert!(text.contains("partita_records_in_total 5\n"));
        assert!(text.contains("partita_topic_records_in_total{topic=\"orders\"} 5\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn records_are_counted_from_batch_headers() {
        let one = batch::build_batch(&[(None, Some(b"a")), (None, Some(b"b"))], 0);
        let two = batch::build_batch(&[(None, Some(b"c"))], 0);
        let mut both = one.to_vec();
        both.extend_from_slice(&two);
        assert_eq!(count_records(&both), 3);
        assert_eq!(count_records(&[]), 0);
    }
}
