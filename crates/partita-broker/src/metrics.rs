//! The broker's own counters, gauges and histograms, updated on the hot path with atomics,
//! and the Prometheus text exposition format they are written in.
//!
//! Metric names are stable and documented in `docs/metrics.md`; the group metrics (lag,
//! state, rebalances) are gathered at scrape time by [`crate::http`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use partita_log::batch;

/// A monotonically increasing count.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n` (negative to subtract).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the request latency buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (seconds) of the rebalance duration buckets.
pub const REBALANCE_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// A histogram of observations in seconds, with fixed bucket bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts; one more than `bounds` for `+Inf`.
    buckets: Vec<AtomicU64>,
    /// Sum of observations, in microseconds.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these bucket upper bounds (ascending, in seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let index = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(value.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Cumulative counts per bound (the last one is `+Inf`), the sum in seconds and the count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's values at one instant, ready to write.
#[derive(Clone, Debug)]
pub struct HistogramSnapshot {
    /// Bucket upper bounds, without `+Inf`.
    pub bounds: &'static [f64],
    /// Cumulative count for each bound, then for `+Inf` (the total count).
    pub cumulative: Vec<u64>,
    /// Sum of every observation, in seconds.
    pub sum_seconds: f64,
}

/// Traffic of one topic: what producers wrote and consumers read.
#[derive(Default, Debug)]
pub struct TopicTraffic {
    /// Bytes of record batches appended by Produce.
    pub bytes_in: Counter,
    /// Records appended by Produce.
    pub records_in: Counter,
    /// Bytes of record batches returned by Fetch.
    pub bytes_out: Counter,
    /// Records returned by Fetch (counted from batch headers).
    pub records_out: Counter,
}

/// Requests of one API.
#[derive(Debug)]
pub struct ApiMetrics {
    /// Requests answered (or refused by closing the connection).
    pub requests: Counter,
    /// Requests that closed the connection because they could not be answered.
    pub failures: Counter,
    /// Time from a whole request frame read to its response written.
    pub latency: Histogram,
}

/// Highest API key tracked individually; anything above is counted as unknown.
const MAX_API_KEY: usize = 127;

/// The broker's hot-path metrics, shared by every connection.
pub struct BrokerMetrics {
    apis: Vec<ApiMetrics>,
    topics: RwLock<HashMap<String, Arc<TopicTraffic>>>,
    errors: Mutex<HashMap<(i16, i16), u64>>,
    /// Client connections open now.
    pub open_connections: Gauge,
    /// Client connections accepted since start.
    pub connections_accepted: Counter,
    /// Connections closed at once because their address had `max.connections.per.ip` open.
    pub connections_refused: Counter,
    /// Connections closed after `connections.max.idle.ms` without a byte from the client.
    pub connections_idle_closed: Counter,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            apis: (0..=MAX_API_KEY + 1)
                .map(|_| ApiMetrics {
                    requests: Counter::default(),
                    failures: Counter::default(),
                    latency: Histogram::new(LATENCY_BUCKETS),
                })
                .collect(),
            topics: RwLock::new(HashMap::new()),
            errors: Mutex::new(HashMap::new()),
            open_connections: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            connections_idle_closed: Counter::default(),
        }
    }
}

impl BrokerMetrics {
    /// Records one request of `api_key` and how long it took to answer.
    pub fn record_request(&self, api_key: i16, elapsed: Duration, failed: bool) {
        let api = self.api(api_key);
        api.requests.add(1);
        if failed {
            api.failures.add(1);
        }
        api.latency.observe(elapsed);
    }

    /// Counts an error code returned to a client by `api_key`; 0 (no error) is ignored.
    pub fn record_error(&self, api_key: ApiKey, code: i16) {
        if code == 0 {
            return;
        }
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry((api_key as i16, code)).or_insert(0) += 1;
    }

    /// The traffic counters of `topic`, created on first use.
    pub fn topic(&self, topic: &str) -> Arc<TopicTraffic> {
        if let Some(traffic) = self.read_topics().get(topic) {
            return Arc::clone(traffic);
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(topics.entry(topic.to_string()).or_default())
    }

    /// Forgets a deleted topic's counters.
    pub fn forget_topic(&self, topic: &str) {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        topics.remove(topic);
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

    /// Errors returned so far, as `((api key, error code), count)`, sorted.
    pub fn errors(&self) -> Vec<((i16, i16), u64)> {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = errors.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort();
        all
    }

    /// The metrics of every API that has seen a request: `(api key, metrics)`; key -1 for
    /// keys this broker does not know.
    pub fn apis(&self) -> impl Iterator<Item = (i16, &ApiMetrics)> {
        self.apis
            .iter()
            .enumerate()
            .filter(|(_, api)| api.requests.get() > 0)
            .map(|(key, api)| (if key > MAX_API_KEY { -1 } else { key as i16 }, api))
    }

    fn api(&self, api_key: i16) -> &ApiMetrics {
        let index = usize::try_from(api_key)
            .ok()
            .filter(|k| *k <= MAX_API_KEY)
            .unwrap_or(MAX_API_KEY + 1);
        &self.apis[index]
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TopicTraffic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the broker-wide metrics.
    pub fn write(&self, out: &mut Exposition) {
        let topics = self.topics();
        let totals = |f: fn(&TopicTraffic) -> u64| topics.iter().map(|(_, t)| f(t)).sum::<u64>();
        out.family(
            "partita_bytes_in_total",
            "counter",
            "Bytes of record batches appended by Produce.",
        );
        out.sample("partita_bytes_in_total", &[], totals(|t| t.bytes_in.get()));
        out.family(
            "partita_bytes_out_total",
            "counter",
            "Bytes of record batches returned by Fetch.",
        );
        out.sample(
            "partita_bytes_out_total",
            &[],
            totals(|t| t.bytes_out.get()),
        );
        out.family(
            "partita_records_in_total",
            "counter",
            "Records appended by Produce.",
        );
        out.sample(
            "partita_records_in_total",
            &[],
            totals(|t| t.records_in.get()),
        );
        out.family(
            "partita_records_out_total",
            "counter",
            "Records returned by Fetch.",
        );
        out.sample(
            "partita_records_out_total",
            &[],
            totals(|t| t.records_out.get()),
        );
        self.write_topic_traffic(out, &topics);
        self.write_requests(out);
        out.family(
            "partita_errors_total",
            "counter",
            "Error codes returned to clients, by API and Kafka error code.",
        );
        for ((api, code), count) in self.errors() {
            let name = error_name(code);
            let code = code.to_string();
            out.sample(
                "partita_errors_total",
                &[("api", api_name(api)), ("code", &code), ("error", &name)],
                count,
            );
        }
        out.family(
            "partita_connections_open",
            "gauge",
            "Kafka client connections open now.",
        );
        out.sample("partita_connections_open", &[], self.open_connections.get());
        out.family(
            "partita_connections_accepted_total",
            "counter",
            "Kafka client connections accepted since the broker started.",
        );
        out.sample(
            "partita_connections_accepted_total",
            &[],
            self.connections_accepted.get(),
        );
        out.family(
            "partita_connections_closed_total",
            "counter",
            "Connections the broker closed: refused at max.connections.per.ip, or idle for \
             connections.max.idle.ms.",
        );
        out.sample(
            "partita_connections_closed_total",
            &[("reason", "per_ip_limit")],
            self.connections_refused.get(),
        );
        out.sample(
            "partita_connections_closed_total",
            &[("reason", "idle")],
            self.connections_idle_closed.get(),
        );
    }

    fn write_topic_traffic(&self, out: &mut Exposition, topics: &[(String, Arc<TopicTraffic>)]) {
        type Read = fn(&TopicTraffic) -> u64;
        let families: [(&str, &str, Read); 4] = [
            (
                "partita_topic_bytes_in_total",
                "Bytes appended by Produce, by topic.",
                |t| t.bytes_in.get(),
            ),
            (
                "partita_topic_bytes_out_total",
                "Bytes returned by Fetch, by topic.",
                |t| t.bytes_out.get(),
            ),
            (
                "partita_topic_records_in_total",
                "Records appended by Produce, by topic.",
                |t| t.records_in.get(),
            ),
            (
                "partita_topic_records_out_total",
                "Records returned by Fetch, by topic.",
                |t| t.records_out.get(),
            ),
        ];
        for (name, help, value) in families {
            out.family(name, "counter", help);
            for (topic, traffic) in topics {
                out.sample(name, &[("topic", topic)], value(traffic));
            }
        }
    }

    fn write_requests(&self, out: &mut Exposition) {
        out.family(
            "partita_requests_total",
            "counter",
            "Requests received, by API.",
        );
        for (key, api) in self.apis() {
            out.sample(
                "partita_requests_total",
                &[("api", api_name(key))],
                api.requests.get(),
            );
        }
        out.family(
            "partita_request_failures_total",
            "counter",
            "Requests that could not be answered and closed their connection, by API.",
        );
        for (key, api) in self.apis() {
            out.sample(
                "partita_request_failures_total",
                &[("api", api_name(key))],
                api.failures.get(),
            );
        }
        out.family(
            "partita_request_duration_seconds",
            "histogram",
            "Time from a request read to its response written, by API (Fetch includes its long-poll wait).",
        );
        for (key, api) in self.apis() {
            out.histogram(
                "partita_request_duration_seconds",
                &[("api", api_name(key))],
                &api.latency.snapshot(),
            );
        }
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

/// Kafka's name of an API (`Produce`, `JoinGroup`, ...), or `unknown`.
pub fn api_name(api_key: i16) -> &'static str {
    match ApiKey::try_from(api_key) {
        Ok(key) => API_NAMES
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("other", |(_, name)| name),
        Err(_) => "unknown",
    }
}

/// The APIs this broker serves, with their names as metric labels.
const API_NAMES: &[(ApiKey, &str)] = &[
    (ApiKey::Produce, "Produce"),
    (ApiKey::Fetch, "Fetch"),
    (ApiKey::ListOffsets, "ListOffsets"),
    (ApiKey::Metadata, "Metadata"),
    (ApiKey::OffsetCommit, "OffsetCommit"),
    (ApiKey::OffsetFetch, "OffsetFetch"),
    (ApiKey::FindCoordinator, "FindCoordinator"),
    (ApiKey::JoinGroup, "JoinGroup"),
    (ApiKey::Heartbeat, "Heartbeat"),
    (ApiKey::LeaveGroup, "LeaveGroup"),
    (ApiKey::SyncGroup, "SyncGroup"),
    (ApiKey::DescribeGroups, "DescribeGroups"),
    (ApiKey::ListGroups, "ListGroups"),
    (ApiKey::ApiVersions, "ApiVersions"),
    (ApiKey::CreateTopics, "CreateTopics"),
    (ApiKey::DeleteTopics, "DeleteTopics"),
    (ApiKey::InitProducerId, "InitProducerId"),
    (ApiKey::OffsetForLeaderEpoch, "OffsetForLeaderEpoch"),
    (ApiKey::DescribeConfigs, "DescribeConfigs"),
    (ApiKey::AlterConfigs, "AlterConfigs"),
    (ApiKey::CreatePartitions, "CreatePartitions"),
    (ApiKey::DeleteGroups, "DeleteGroups"),
    (ApiKey::IncrementalAlterConfigs, "IncrementalAlterConfigs"),
    (ApiKey::OffsetDelete, "OffsetDelete"),
    (ApiKey::DescribeCluster, "DescribeCluster"),
    (ApiKey::ConsumerGroupHeartbeat, "ConsumerGroupHeartbeat"),
    (ApiKey::ConsumerGroupDescribe, "ConsumerGroupDescribe"),
];

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

/// A value a sample can carry.
pub trait SampleValue {
    /// The value as Prometheus writes it.
    fn write_to(&self, out: &mut String);
}

impl SampleValue for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for i64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for i32 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for f64 {
    fn write_to(&self, out: &mut String) {
        write_float(out, *self);
    }
}

fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

/// A Prometheus text-format (version 0.0.4) document being written: families, each with
/// `# HELP` and `# TYPE` lines, then their samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// The content type of the text format.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Starts a metric family. Every sample of the family must follow before the next one.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// Writes one sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl SampleValue) {
        self.text.push_str(name);
        write_labels(&mut self.text, labels, None);
        self.text.push(' ');
        value.write_to(&mut self.text);
        self.text.push('\n');
    }

    /// Writes a histogram's `_bucket`, `_sum` and `_count` lines.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        histogram: &HistogramSnapshot,
    ) {
        let bucket = format!("{name}_bucket");
        for (i, count) in histogram.cumulative.iter().enumerate() {
            let mut le = String::new();
            match histogram.bounds.get(i) {
                Some(bound) => write_float(&mut le, *bound),
                None => le.push_str("+Inf"),
            }
            self.text.push_str(&bucket);
            write_labels(&mut self.text, labels, Some(&le));
            let _ = writeln!(self.text, " {count}");
        }
        let total = histogram.cumulative.last().copied().unwrap_or(0);
        self.sample(&format!("{name}_sum"), labels, histogram.sum_seconds);
        self.sample(&format!("{name}_count"), labels, total);
    }

    /// The finished document.
    pub fn finish(self) -> String {
        self.text
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    for (name, value) in all {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_families_announced() {
        let mut out = Exposition::default();
        out.family("partita_x", "gauge", "An example.");
        out.sample("partita_x", &[("group", "a\"b\\c\nd")], 3i64);
        out.sample("partita_x", &[], 1.5f64);
        assert_eq!(
            out.finish(),
            "# HELP partita_x An example.\n# TYPE partita_x gauge\n\
             partita_x{group=\"a\\\"b\\\\c\\nd\"} 3\npartita_x 1.5\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        static BOUNDS: &[f64] = &[0.1, 1.0];
        let histogram = Histogram::new(BOUNDS);
        histogram.observe(Duration::from_millis(50));
        histogram.observe(Duration::from_millis(500));
        histogram.observe(Duration::from_secs(3));
        let mut out = Exposition::default();
        out.histogram("h", &[("api", "Fetch")], &histogram.snapshot());
        assert_eq!(
            out.finish(),
            "h_bucket{api=\"Fetch\",le=\"0.1\"} 1\n\
             h_bucket{api=\"Fetch\",le=\"1\"} 2\n\
             h_bucket{api=\"Fetch\",le=\"+Inf\"} 3\n\
             h_sum{api=\"Fetch\"} 3.55\n\
             h_count{api=\"Fetch\"} 3\n"
        );
    }

    #[test]
    fn broker_metrics_name_apis_and_errors() {
        let metrics = BrokerMetrics::default();
        metrics.record_request(0, Duration::from_millis(2), false);
        metrics.record_request(999, Duration::from_millis(2), true);
        metrics.record_error(ApiKey::Produce, 3);
        metrics.topic("orders").records_in.add(5);
        let mut out = Exposition::default();
        metrics.write(&mut out);
        let text = out.finish();
        assert!(
            text.contains("partita_requests_total{api=\"Produce\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("partita_request_failures_total{api=\"unknown\"} 1\n"));
        assert!(text.contains(
            "partita_errors_total{api=\"Produce\",code=\"3\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 1\n"
        ));
        assert!(text.contains("partita_records_in_total 5\n"));
        assert!(text.contains("partita_topic_records_in_total{topic=\"orders\"} 5\n"));
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
