//! What each path serves: the dashboard's assets, `/metrics`, and the JSON the dashboard polls.
//!
//! - `GET /api/groups`: every group with state, protocol, members, total lag and lag trend,
//!   the lagging ones first;
//! - `GET /api/groups/{id}`: one group: members and what they own (idle ones flagged), every
//!   partition's committed offset, log-end offset and lag (the skewed ones flagged), the lag
//!   history and the rebalance timeline;
//! - share groups are in both: type `share`, their lag the share lag (log end minus share-partition
//!   start offset: records not yet acknowledged or archived), with the records acquired,
//!   available and in flight, in total and per share-partition;
//! - `GET /api/topics` and `GET /api/topics/{name}`: topics with partitions, sizes, log-end
//!   offsets and in/out rates.

use serde_json::{json, Value};

use super::history::rates;
use super::rebalances::timeline;
use super::server::{percent_decode, Reply};
use super::snapshot::{self, GroupView, PartitionLag};
use super::{exposition, Observer};
use crate::broker::now_ms;

const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../assets/dashboard.css");

/// Samples of lag trend given per group in the groups list.
const TREND_SAMPLES: usize = 60;
/// A partition is skewed when its lag is at least this many times the group's mean lag...
const SKEW_FACTOR: f64 = 2.0;
/// ...and at least this many records.
const SKEW_MIN_LAG: i64 = 10;
/// Topic rates are averaged over about this long.
const RATE_WINDOW_MS: usize = 10_000;

/// Serves one GET.
pub(crate) async fn route(observer: &Observer, path: &str) -> Reply {
    match path {
        "/" | "/index.html" => Reply::new(200, "text/html; charset=utf-8", DASHBOARD_HTML),
        "/dashboard.js" => Reply::new(200, "text/javascript; charset=utf-8", DASHBOARD_JS),
        "/dashboard.css" => Reply::new(200, "text/css; charset=utf-8", DASHBOARD_CSS),
        "/metrics" => {
            let text = exposition::render(observer);
            Reply::new(200, crate::metrics::CONTENT_TYPE, text)
        }
        "/api/groups" => json_reply(groups(observer)),
        "/api/topics" => json_reply(topics(observer)),
        _ => {
            if let Some(id) = path.strip_prefix("/api/groups/") {
                let Some(id) = percent_decode(id) else {
                    return Reply::text(400, "bad group id\n");
                };
                return match group(observer, &id) {
                    Some(value) => json_reply(value),
                    None => Reply::text(404, "no such group\n"),
                };
            }
            if let Some(name) = path.strip_prefix("/api/topics/") {
                let name = percent_decode(name).unwrap_or_default();
                return match topic(observer, &name) {
                    Some(value) => json_reply(value),
                    None => Reply::text(404, "no such topic\n"),
                };
            }
            Reply::text(404, "not found\n")
        }
    }
}

fn json_reply(value: Value) -> Reply {
    Reply::new(200, "application/json", value.to_string())
}

/// Every group, the lagging ones first.
fn groups(observer: &Observer) -> Value {
    let broker = &observer.broker;
    observer.tracker.update(&broker.group_events);
    let now = now_ms();
    let views = snapshot::consumer_groups(broker, false, now);
    let types = snapshot::group_types(broker);
    let mut groups: Vec<Value> = views
        .iter()
        .map(|g| {
            let trend: Vec<i64> = observer
                .group_history
                .last(&g.group_id, TREND_SAMPLES)
                .iter()
                .map(|s| s.total_lag)
                .collect();
            json!({
                "group_id": g.group_id,
                "type": types.get(&g.group_id),
                "state": g.state,
                "protocol_type": g.protocol_type,
                "protocol": g.protocol,
                "members": g.members.len(),
                "generation": observer.tracker.generation(&g.group_id),
                "rebalances_total": observer.tracker.rebalance_count(&g.group_id),
                "partitions": g.partitions.len(),
                "total_lag": g.total_lag(),
                "trend": trend,
            })
        })
        .collect();
    // Share groups: their lag is the share lag, records not yet acknowledged or archived.
    groups.extend(snapshot::share_groups(broker).iter().map(|g| {
        let trend: Vec<i64> = observer
            .group_history
            .last(&g.group_id, TREND_SAMPLES)
            .iter()
            .map(|s| s.total_lag)
            .collect();
        json!({
            "group_id": g.group_id,
            "type": "share",
            "state": g.state,
            "protocol_type": "share",
            "protocol": "simple",
            "members": g.members.len(),
            "generation": g.epoch,
            "rebalances_total": null,
            "partitions": g.partitions.len(),
            "total_lag": g.total_lag(),
            "acquired": g.acquired(),
            "available": g.available(),
            "in_flight": g.in_flight(),
            "trend": trend,
        })
    }));
    let lag = |g: &Value| g["total_lag"].as_i64().unwrap_or(0);
    groups.sort_by(|a, b| {
        lag(b)
            .cmp(&lag(a))
            .then_with(|| a["group_id"].as_str().cmp(&b["group_id"].as_str()))
    });
    json!({ "now_ms": now, "groups": groups })
}

/// One group in full, or `None` if it does not exist.
fn group(observer: &Observer, group_id: &str) -> Option<Value> {
    let broker = &observer.broker;
    observer.tracker.update(&broker.group_events);
    let now = now_ms();
    let Some(view) = snapshot::describe_group(broker, group_id, true, now) else {
        return share_group(observer, group_id, now);
    };
    // Classic groups show assignments once stable; consumer-protocol groups always do.
    let stable = view.state == "Stable" || view.members.iter().any(|m| !m.assignment.is_empty());
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|m| member_json(m, stable))
        .collect();
    let skewed = skewed_partitions(&view);
    let partitions: Vec<Value> = view
        .partitions
        .iter()
        .zip(&skewed)
        .map(|(p, skewed)| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "log_end_offset": p.log_end_offset,
                "last_stable_offset": p.last_stable_offset,
                "fetch_position": p.fetch_position,
                "lag": p.lag,
                "lag_seconds": p.lag_seconds,
                "owner": p.owner,
                "skewed": skewed,
            })
        })
        .collect();
    let events = broker.group_events.recent(Some(group_id));
    Some(json!({
        "now_ms": now,
        "group_id": view.group_id,
        "state": view.state,
        "protocol_type": view.protocol_type,
        "protocol": view.protocol,
        "generation": observer.tracker.generation(group_id),
        "rebalances_total": observer.tracker.rebalance_count(group_id),
        "assignment_known": stable,
        "isolation_level": view.isolation_level(),
        "total_lag": view.total_lag(),
        "max_lag_seconds": view.max_lag_seconds(),
        "members": members,
        "partitions": partitions,
        "history_interval_ms": observer.interval.as_millis() as u64,
        "history": observer.group_history.get(group_id),
        "timeline": timeline(&events),
    }))
}

/// A member as the dashboard shows it. With `may_be_idle`, a member without partitions is
/// idle (a stable consumer group with more members than partitions).
fn member_json(m: &snapshot::MemberView, may_be_idle: bool) -> Value {
    let count: usize = m.assignment.iter().map(|(_, p)| p.len()).sum();
    let assignment: Vec<Value> = m
        .assignment
        .iter()
        .map(|(topic, partitions)| json!({ "topic": topic, "partitions": partitions }))
        .collect();
    json!({
        "member_id": m.member_id,
        "group_instance_id": m.group_instance_id,
        "client_id": m.client_id,
        "client_host": m.client_host,
        "assignment": assignment,
        "partition_count": count,
        "idle": may_be_idle && count == 0,
    })
}

/// One share group in full: members, and per share-partition the start offset, log end,
/// share lag and the records acquired, available and in flight.
fn share_group(observer: &Observer, group_id: &str, now: i64) -> Option<Value> {
    let view = snapshot::describe_share_group(&observer.broker, group_id)?;
    // Members of a share group read the same partitions: none is idle.
    let members: Vec<Value> = view.members.iter().map(|m| member_json(m, false)).collect();
    let partitions: Vec<Value> = view
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "start_offset": p.start_offset,
                "log_end_offset": p.log_end_offset,
                "share_lag": p.share_lag,
                "lag": p.share_lag,
                "in_flight": p.in_flight,
                "acquired": p.acquired,
                "available": p.available,
                "committed": null,
                "lag_seconds": null,
                "owner": null,
                "skewed": false,
            })
        })
        .collect();
    let events = observer.broker.group_events.recent(Some(group_id));
    Some(json!({
        "now_ms": now,
        "group_id": view.group_id,
        "type": "share",
        "state": view.state,
        "protocol_type": "share",
        "protocol": "simple",
        "generation": view.epoch,
        "rebalances_total": null,
        "assignment_known": true,
        "total_lag": view.total_lag(),
        "acquired": view.acquired(),
        "available": view.available(),
        "in_flight": view.in_flight(),
        "max_lag_seconds": null,
        "members": members,
        "partitions": partitions,
        "history_interval_ms": observer.interval.as_millis() as u64,
        "history": observer.group_history.get(group_id),
        "timeline": timeline(&events),
    }))
}

/// Which partitions lag far more than the group's others (see [`SKEW_FACTOR`]).
fn skewed_partitions(view: &GroupView) -> Vec<bool> {
    let lags: Vec<i64> = view.partitions.iter().filter_map(|p| p.lag).collect();
    if lags.len() < 2 {
        return vec![false; view.partitions.len()];
    }
    let mean = lags.iter().sum::<i64>() as f64 / lags.len() as f64;
    let is_skewed = |p: &PartitionLag| {
        p.lag
            .is_some_and(|lag| lag >= SKEW_MIN_LAG && lag as f64 >= SKEW_FACTOR * mean)
    };
    view.partitions.iter().map(is_skewed).collect()
}

/// Every topic with its size, log-end offsets and rates.
fn topics(observer: &Observer) -> Value {
    let interval_ms = observer.interval.as_millis().max(1) as usize;
    let rate_samples = (RATE_WINDOW_MS / interval_ms).max(1) + 1;
    let topics: Vec<Value> = snapshot::topics(&observer.broker)
        .iter()
        .map(|t| {
            let history = observer.topic_history.last(&t.name, rate_samples);
            json!({
                "name": t.name,
                "internal": t.internal,
                "partitions": t.partitions.len(),
                "size_bytes": t.size_bytes(),
                "log_end_offset": t.log_end_offset(),
                "rates": rates(&history),
            })
        })
        .collect();
    json!({ "now_ms": now_ms(), "history_interval_ms": observer.interval.as_millis() as u64, "topics": topics })
}

/// One topic's partitions.
fn topic(observer: &Observer, name: &str) -> Option<Value> {
    let topic = snapshot::topics(&observer.broker)
        .into_iter()
        .find(|t| t.name == name)?;
    let partitions: Vec<Value> = topic
        .partitions
        .iter()
        .map(|p| {
            json!({
                "partition": p.partition,
                "log_start_offset": p.log_start_offset,
                "log_end_offset": p.log_end_offset,
                "size_bytes": p.size_bytes,
            })
        })
        .collect();
    Some(json!({
        "name": topic.name,
        "internal": topic.internal,
        "partitions": partitions,
        "history": observer.topic_history.get(name),
    }))
}
