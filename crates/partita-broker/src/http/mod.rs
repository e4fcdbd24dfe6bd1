//! The broker's HTTP side: `/metrics` in the Prometheus text format, and a live dashboard of
//! groups (lag, ownership, rebalances) and topics, with the JSON endpoints it polls.
//!
//! Everything is served by the broker itself from memory: the dashboard's assets are compiled
//! in, and the history behind its charts is sampled by a task here and kept for
//! `http.history.minutes`.

mod auth;
mod exposition;
mod history;
mod rebalances;
mod routes;
mod server;
mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::broker::{now_ms, Broker};
use crate::server::Shutdown;
pub use auth::HttpAuth;
use history::{GroupSample, Series, TopicSample};
use rebalances::RebalanceTracker;

/// What the HTTP side shares between requests and the sampler.
pub(crate) struct Observer {
    broker: Arc<Broker>,
    tracker: RebalanceTracker,
    group_history: Series<GroupSample>,
    topic_history: Series<TopicSample>,
    interval: Duration,
}

impl Observer {
    fn new(broker: Arc<Broker>) -> Observer {
        let window = Duration::from_secs(broker.config.http_history_minutes * 60);
        let interval = Duration::from_millis(broker.config.http_history_interval_ms);
        Observer {
            broker,
            tracker: RebalanceTracker::default(),
            group_history: Series::new(window, interval),
            topic_history: Series::new(window, interval),
            interval,
        }
    }

    /// Takes one sample of every group's lag and every topic's traffic.
    fn sample(&self) {
        self.tracker.update(&self.broker.group_events);
        let now = now_ms();
        let mut groups = Vec::new();
        for group in snapshot::consumer_groups(&self.broker, false, now) {
            let lags = group.partitions.iter().filter_map(|p| p.lag);
            let (total_lag, max_partition_lag) = lags.fold((0, 0), |(total, max), lag| {
                (total + lag, i64::max(max, lag))
            });
            let sample = GroupSample {
                at_ms: now,
                total_lag,
                max_partition_lag,
            };
            groups.push((group.group_id, sample));
        }
        for share in snapshot::share_groups(&self.broker) {
            let sample = GroupSample {
                at_ms: now,
                total_lag: share.total_lag(),
                max_partition_lag: share
                    .partitions
                    .iter()
                    .filter_map(|p| p.share_lag)
                    .max()
                    .unwrap_or(0),
            };
            groups.push((share.group_id, sample));
        }
        self.group_history.record(now, groups);

        let topics = snapshot::topics(&self.broker);
        let metrics = &self.broker.metrics;
        for (name, _) in metrics.topics() {
            if !topics.iter().any(|t| t.name == name) {
                metrics.forget_topic(&name);
            }
        }
        let samples = topics
            .iter()
            .map(|topic| {
                let traffic = metrics.topic(&topic.name);
                let sample = TopicSample {
                    at_ms: now,
                    log_end_offset: topic.log_end_offset(),
                    size_bytes: topic.size_bytes(),
                    records_in: traffic.records_in(),
                    bytes_in: traffic.bytes_in(),
                    records_out: traffic.records_out(),
                    bytes_out: traffic.bytes_out(),
                };
                (topic.name.clone(), sample)
            })
            .collect();
        self.topic_history.record(now, samples);
    }
}

/// Starts the HTTP listener and the history sampler when `http.listen` is set. A listener
/// that cannot bind is logged and left off: the Kafka side keeps running.
pub(crate) async fn start(broker: &Arc<Broker>, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
    let Some(address) = broker.config.http_listen else {
        return Vec::new();
    };
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%address, %error, "cannot listen for HTTP (http.listen); /metrics and the dashboard are off");
            return Vec::new();
        }
    };
    let local = listener.local_addr().map_or(address, |a| a);
    let scheme = match broker.http_tls {
        Some(_) => "HTTPS",
        None => "HTTP",
    };
    tracing::info!(address = %local, scheme, authentication = !broker.config.http_auth.is_open(), "serving /metrics and the dashboard");
    let observer = Arc::new(Observer::new(Arc::clone(broker)));
    let tls = broker.http_tls.clone().map(tokio_rustls::TlsAcceptor::from);
    vec![
        tokio::spawn(run_sampler(Arc::clone(&observer), shutdown.clone())),
        tokio::spawn(server::run(observer, listener, tls, shutdown)),
    ]
}

/// Samples every `http.history.interval.ms` until shutdown.
async fn run_sampler(observer: Arc<Observer>, mut shutdown: Shutdown) {
    let mut every = tokio::time::interval(observer.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => observer.sample(),
            _ = shutdown.recv() => return,
        }
    }
}
