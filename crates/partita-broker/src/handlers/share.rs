//! Share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch (with
//! piggy-backed acknowledgements), ShareAcknowledge and DescribeShareGroupOffsets.
//!
//! Each turns wire messages into operations of the group's coordinator shard and back. A
//! ShareFetch is four of them: its share session, its acknowledgements, then, until records
//! come or the wait is over, a plan (where to read) and an acquisition (which of the records
//! read go to this member); the handler reads the log in between.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use partita_groups::shard::{
    ShareAcknowledgements, ShareAcquire, SharePlan, SharePlanned, ShareRead, ShareSessionUpdate,
};
use partita_groups::share::group::ShareRequestError;
use partita_groups::share::partition::{AcknowledgeType, AcquiredRange};
use partita_groups::{ClientContext, Request, Response};
use partita_log::batch;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::groups::CoordinatorError;
use crate::memory::MemoryClaim;

/// Records acquired per partition when the request does not say.
const DEFAULT_MAX_RECORDS: usize = 500;

/// A share-partition of a request: topic id and partition.
type Key = (Uuid, i32);

/// Acknowledgement batches of a request, as on the wire: first offset, last offset, types.
type WireBatches = Vec<(i64, i64, Vec<i8>)>;

async fn call(
    broker: &Broker,
    group_id: &str,
    request: Request,
) -> Result<Response, CoordinatorError> {
    let client = ClientContext::default();
    broker.groups.call(group_id, &client, request).await
}

pub(crate) async fn heartbeat(
    broker: &Broker,
    client: &ClientContext,
    request: ShareGroupHeartbeatRequest,
    _version: i16,
) -> ShareGroupHeartbeatResponse {
    let group_id = request.group_id.to_string();
    let request = Request::ShareGroupHeartbeat(request, broker.topics.image());
    match broker.groups.call(&group_id, client, request).await {
        Ok(Response::ShareGroupHeartbeat(response)) => response,
        other => {
            ShareGroupHeartbeatResponse::default().with_error_code(CoordinatorError::of(other))
        }
    }
}

pub(crate) async fn describe(
    broker: &Broker,
    _client: &ClientContext,
    request: ShareGroupDescribeRequest,
    _version: i16,
) -> ShareGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in request.group_ids {
        let ask = Request::ShareGroupDescribe(group_id.to_string(), broker.topics.image());
        let described = match call(broker, &group_id, ask).await {
            Ok(Response::ShareGroupDescribe(described)) => described,
            other => share_group_describe_response::DescribedGroup::default()
                .with_group_id(group_id)
                .with_error_code(CoordinatorError::of(other)),
        };
        groups.push(described);
    }
    ShareGroupDescribeResponse::default().with_groups(groups)
}

/// Acknowledgement batches of one partition as (first, last, type) runs; `None` if a type is
/// not one Kafka defines.
fn acknowledgements(
    batches: impl Iterator<Item = (i64, i64, Vec<i8>)>,
) -> Option<Vec<(i64, i64, AcknowledgeType)>> {
    let mut out = Vec::new();
    for (first, last, types) in batches {
        if types.len() <= 1 {
            let kind = AcknowledgeType::from_code(*types.first().unwrap_or(&1))?;
            out.push((first, last, kind));
        } else {
            // One type per offset.
            for (i, code) in types.iter().enumerate() {
                let offset = first + i as i64;
                if offset > last {
                    break;
                }
                out.push((offset, offset, AcknowledgeType::from_code(*code)?));
            }
        }
    }
    Some(out)
}

/// Applies a request's acknowledgements, partition by partition: `(first, last, types)`
/// batches each. An error code for every partition named.
async fn acknowledge_all(
    broker: &Broker,
    group_id: &str,
    member_id: &str,
    requested: Vec<(Key, WireBatches)>,
) -> BTreeMap<Key, i16> {
    let mut codes = BTreeMap::new();
    let mut partitions = Vec::new();
    for (key, batches) in requested {
        match acknowledgements(batches.into_iter()) {
            None => {
                codes.insert(key, ResponseError::InvalidRequest.code());
            }
            Some(batches) if batches.is_empty() => {
                codes.insert(key, 0);
            }
            Some(batches) => partitions.push((key, batches)),
        }
    }
    if partitions.is_empty() {
        return codes;
    }
    let named: Vec<Key> = partitions.iter().map(|(key, _)| *key).collect();
    let acks = ShareAcknowledgements {
        group_id: group_id.to_string(),
        member_id: member_id.to_string(),
        partitions,
    };
    match call(broker, group_id, Request::ShareAcknowledge(acks)).await {
        Ok(Response::ShareAcknowledged(answered)) if !answered.is_empty() => codes.extend(answered),
        other => {
            let code = CoordinatorError::of(other);
            codes.extend(named.into_iter().map(|key| (key, code)));
        }
    }
    codes
}

/// The member's share session, updated: its partitions, or the error for the whole request.
async fn session(
    broker: &Broker,
    update: ShareSessionUpdate,
) -> Result<BTreeSet<Key>, ResponseError> {
    let group_id = update.group_id.clone();
    match call(broker, &group_id, Request::ShareSession(update)).await {
        Ok(Response::ShareSession(result)) => result.map_err(ShareRequestError::response_error),
        Err(CoordinatorError::NotCoordinator) => Err(ResponseError::NotCoordinator),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// ShareFetch. Like Fetch, the response comes with the memory it holds, claimed from
/// `fetch.memory.max.bytes` before records are read and given back once it has been written.
pub(crate) async fn fetch(
    broker: &Broker,
    client: &ClientContext,
    request: ShareFetchRequest,
    version: i16,
) -> (ShareFetchResponse, MemoryClaim) {
    let mut memory = broker.fetch_memory.claim(0).await;
    let response = fetch_holding(broker, client, request, version, &mut memory).await;
    (response, memory)
}

/// What one ShareFetch asks for, taken out of the request.
struct Fetch {
    group_id: String,
    member_id: String,
    max_records: usize,
    max_bytes: usize,
    deadline: Instant,
}

async fn fetch_holding(
    broker: &Broker,
    _client: &ClientContext,
    request: ShareFetchRequest,
    _version: i16,
    memory: &mut MemoryClaim,
) -> ShareFetchResponse {
    let fetch = Fetch {
        group_id: request
            .group_id
            .as_ref()
            .map(|g| g.to_string())
            .unwrap_or_default(),
        member_id: request
            .member_id
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        // The client's batch size, when it gives one, bounds what one fetch acquires, so that
        // the members sharing a partition each get a part of it.
        max_records: [request.max_records, request.batch_size]
            .into_iter()
            .filter_map(|n| usize::try_from(n).ok().filter(|n| *n > 0))
            .min()
            .unwrap_or(DEFAULT_MAX_RECORDS),
        max_bytes: usize::try_from(request.max_bytes)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(1 << 20)
            .min(broker.config.fetch_max_bytes),
        deadline: Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64),
    };
    let update = ShareSessionUpdate {
        group_id: fetch.group_id.clone(),
        member_id: fetch.member_id.clone(),
        session_epoch: request.share_session_epoch,
        added: request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, p.partition_index)))
            .collect(),
        forgotten: request
            .forgotten_topics_data
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
            .collect(),
    };
    let session = match session(broker, update).await {
        Ok(partitions) => partitions,
        Err(error) => return ShareFetchResponse::default().with_error_code(error.code()),
    };
    // Acknowledgements first: records given back may be fetched again right away.
    let requested_acks = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| {
                let batches = p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                    .collect();
                ((topic.topic_id, p.partition_index), batches)
            })
        })
        .collect();
    let ack_codes =
        acknowledge_all(broker, &fetch.group_id, &fetch.member_id, requested_acks).await;
    let lock_ms = broker.config.groups.share.partition.lock_duration_ms as i32;
    let response = ShareFetchResponse::default().with_acquisition_lock_timeout_ms(lock_ms);
    if request.share_session_epoch == -1 {
        return response.with_responses(partition_responses(&ack_codes, Vec::new()));
    }
    let data = fetch_records(broker, &fetch, &session, memory).await;
    response.with_responses(partition_responses(&ack_codes, data))
}

/// Plans, reads and acquires until records come, the wait is over or the broker stops.
async fn fetch_records(
    broker: &Broker,
    fetch: &Fetch,
    session: &BTreeSet<Key>,
    memory: &mut MemoryClaim,
) -> Vec<(Key, PartitionData)> {
    let waiter = Arc::new(Notify::new());
    let mut stopping = broker.shutdown_signal();
    loop {
        *memory = broker.fetch_memory.claim(fetch.max_bytes).await;
        let (data, next_lock_expiry) = fetch_once(broker, fetch, session, &waiter).await;
        let bytes: usize = data
            .iter()
            .map(|(_, p)| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        memory.shrink_to(bytes);
        let any = data.iter().any(|(_, p)| !p.acquired_records.is_empty());
        // A stopping broker answers at once rather than hold shutdown up.
        if any || Instant::now() >= fetch.deadline || stopping.is_shutdown() {
            return data;
        }
        // Wait for new records, or for a lock to expire, or for the request's deadline.
        let lock_expiry = next_lock_expiry
            .map(|at| Instant::now() + Duration::from_millis((at - now_ms()).max(0) as u64));
        let wake = lock_expiry.map_or(fetch.deadline, |at| at.min(fetch.deadline));
        tokio::select! {
            _ = waiter.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
            _ = stopping.recv() => {}
        }
    }
}

/// One round: where to read, the reads, and the acquisition. Returns each partition's data
/// and when the next acquisition lock of the session's partitions expires.
async fn fetch_once(
    broker: &Broker,
    fetch: &Fetch,
    session: &BTreeSet<Key>,
    waiter: &Arc<Notify>,
) -> (Vec<(Key, PartitionData)>, Option<i64>) {
    let mut data: BTreeMap<Key, PartitionData> = BTreeMap::new();
    let mut offsets = Vec::new();
    let mut logs = BTreeMap::new();
    for &(topic_id, index) in session {
        let empty = PartitionData::default()
            .with_partition_index(index)
            .with_records(Some(Bytes::new()));
        let found = broker
            .topics
            .get_by_id(topic_id)
            .and_then(|t| t.partition(index).cloned());
        let Some(partition) = found else {
            let unknown = ResponseError::UnknownTopicOrPartition.code();
            data.insert((topic_id, index), empty.with_error_code(unknown));
            continue;
        };
        partition.register_waiter(waiter);
        let now = partition.offsets();
        offsets.push(((topic_id, index), now.log_start_offset, now.log_end_offset));
        logs.insert((topic_id, index), partition);
        data.insert((topic_id, index), empty);
    }
    let log_ends: BTreeMap<Key, i64> = offsets.iter().map(|&(key, _, end)| (key, end)).collect();
    let plan = SharePlan {
        group_id: fetch.group_id.clone(),
        partitions: offsets,
    };
    let planned = match call(broker, &fetch.group_id, Request::SharePlan(plan)).await {
        Ok(Response::SharePlanned(planned)) => planned,
        _ => SharePlanned::default(),
    };
    let mut reads = Vec::new();
    let mut read_bytes: BTreeMap<Key, Bytes> = BTreeMap::new();
    let mut bytes_left = fetch.max_bytes;
    for &(key, from) in &planned.reads {
        if bytes_left == 0 {
            break;
        }
        let Some(partition) = logs.get(&key) else {
            continue;
        };
        match partition.read(from, bytes_left).await {
            Ok((bytes, _)) if !bytes.is_empty() => {
                let covered_end = covered_end_offset(&bytes).unwrap_or(from);
                bytes_left = bytes_left.saturating_sub(bytes.len());
                reads.push(ShareRead {
                    partition: key,
                    from,
                    covered_end,
                    log_end_offset: log_ends.get(&key).copied().unwrap_or(covered_end),
                });
                read_bytes.insert(key, bytes);
            }
            Ok(_) => {}
            Err(error) => {
                let code = crate::error::log_error(&error).code();
                if let Some(entry) = data.get_mut(&key) {
                    entry.error_code = code;
                }
            }
        }
    }
    for (key, ranges) in acquire(broker, fetch, reads).await {
        let (Some(entry), Some(bytes)) = (data.get_mut(&key), read_bytes.remove(&key)) else {
            continue;
        };
        entry.records = Some(bytes);
        entry.acquired_records = ranges
            .iter()
            .map(|r| {
                AcquiredRecords::default()
                    .with_first_offset(r.first_offset)
                    .with_last_offset(r.last_offset)
                    .with_delivery_count(r.delivery_count)
            })
            .collect();
    }
    (data.into_iter().collect(), planned.next_lock_expiry)
}

/// Acquires what was read for the fetch's member.
async fn acquire(
    broker: &Broker,
    fetch: &Fetch,
    reads: Vec<ShareRead>,
) -> Vec<(Key, Vec<AcquiredRange>)> {
    if reads.is_empty() {
        return Vec::new();
    }
    let acquire = ShareAcquire {
        group_id: fetch.group_id.clone(),
        member_id: fetch.member_id.clone(),
        reads,
        max_records: fetch.max_records,
    };
    match call(broker, &fetch.group_id, Request::ShareAcquire(acquire)).await {
        Ok(Response::ShareAcquired(acquired)) => acquired,
        _ => Vec::new(),
    }
}

/// The offset after the last record of the whole batches in `bytes`.
fn covered_end_offset(bytes: &[u8]) -> Option<i64> {
    let ranges = batch::split_batches(bytes).ok()?;
    let last = ranges.last()?;
    batch::parse_header(&bytes[last.clone()])
        .ok()
        .map(|h| h.last_offset() + 1)
}

/// Groups per-partition data by topic, adding partitions that only had acknowledgements.
fn partition_responses(
    ack_codes: &BTreeMap<Key, i16>,
    data: Vec<(Key, PartitionData)>,
) -> Vec<ShareFetchableTopicResponse> {
    let mut by_topic: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for ((topic, index), mut partition) in data {
        partition.acknowledge_error_code = ack_codes.get(&(topic, index)).copied().unwrap_or(0);
        seen.insert((topic, index));
        by_topic.entry(topic).or_default().push(partition);
    }
    for (&(topic, index), &code) in ack_codes {
        if !seen.contains(&(topic, index)) {
            by_topic.entry(topic).or_default().push(
                PartitionData::default()
                    .with_partition_index(index)
                    .with_acknowledge_error_code(code)
                    .with_records(Some(Bytes::new())),
            );
        }
    }
    by_topic
        .into_iter()
        .map(|(topic_id, partitions)| {
            ShareFetchableTopicResponse::default()
                .with_topic_id(topic_id)
                .with_partitions(partitions)
        })
        .collect()
}

pub(crate) async fn acknowledge(
    broker: &Broker,
    _client: &ClientContext,
    request: ShareAcknowledgeRequest,
    _version: i16,
) -> ShareAcknowledgeResponse {
    use kafka_protocol::messages::share_acknowledge_response::{
        PartitionData as AckPartition, ShareAcknowledgeTopicResponse,
    };
    let group_id = request
        .group_id
        .as_ref()
        .map(|g| g.to_string())
        .unwrap_or_default();
    let member_id = request
        .member_id
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let update = ShareSessionUpdate {
        group_id: group_id.clone(),
        member_id: member_id.clone(),
        session_epoch: request.share_session_epoch,
        added: Vec::new(),
        forgotten: Vec::new(),
    };
    if let Err(error) = session(broker, update).await {
        return ShareAcknowledgeResponse::default().with_error_code(error.code());
    }
    let requested = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| {
                let batches = p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                    .collect();
                ((topic.topic_id, p.partition_index), batches)
            })
        })
        .collect();
    let codes = acknowledge_all(broker, &group_id, &member_id, requested).await;
    let mut by_topic: BTreeMap<Uuid, Vec<AckPartition>> = BTreeMap::new();
    for ((topic_id, index), code) in codes {
        let message = (code != 0).then(|| StrBytes::from_static_str("acknowledgement refused"));
        by_topic.entry(topic_id).or_default().push(
            AckPartition::default()
                .with_partition_index(index)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    let responses = by_topic
        .into_iter()
        .map(|(topic_id, partitions)| {
            ShareAcknowledgeTopicResponse::default()
                .with_topic_id(topic_id)
                .with_partitions(partitions)
        })
        .collect();
    ShareAcknowledgeResponse::default().with_responses(responses)
}

/// DescribeShareGroupOffsets (v0): the start offset of each share-partition of a group, for
/// every partition it has state for when the request names no topics. A partition named but
/// never read by the group has no start offset yet: -1, as in Kafka.
pub(crate) async fn describe_offsets(
    broker: &Broker,
    _client: &ClientContext,
    request: DescribeShareGroupOffsetsRequest,
    _version: i16,
) -> DescribeShareGroupOffsetsResponse {
    use kafka_protocol::messages::describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup as GroupResult;
    let mut groups = Vec::with_capacity(request.groups.len());
    for requested in request.groups {
        let group_id = requested.group_id.to_string();
        let result = GroupResult::default().with_group_id(requested.group_id.clone());
        let ask = Request::ShareGroupStatus(group_id.clone());
        let starts: BTreeMap<Key, i64> = match call(broker, &group_id, ask).await {
            Ok(Response::ShareGroupStatus(Some(status))) => status
                .partitions
                .iter()
                .map(|(key, p)| (*key, p.start_offset))
                .collect(),
            _ => {
                groups.push(
                    result
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(str_bytes(&format!(
                            "Group {group_id} not found."
                        )))),
                );
                continue;
            }
        };
        let topics = match requested.topics {
            None => all_share_offsets(broker, &starts),
            Some(topics) => named_share_offsets(broker, &starts, topics),
        };
        groups.push(result.with_topics(topics));
    }
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponsePartition as OffsetsPartition,
    DescribeShareGroupOffsetsResponseTopic as OffsetsTopic,
};

fn offsets_partition(index: i32, start_offset: i64) -> OffsetsPartition {
    OffsetsPartition::default()
        .with_partition_index(index)
        .with_start_offset(start_offset)
        .with_leader_epoch(0)
}

/// Every share-partition the group has state for (those of deleted topics are not shown).
fn all_share_offsets(broker: &Broker, starts: &BTreeMap<Key, i64>) -> Vec<OffsetsTopic> {
    let mut by_topic: BTreeMap<Uuid, Vec<OffsetsPartition>> = BTreeMap::new();
    for (&(topic_id, index), &start) in starts {
        by_topic
            .entry(topic_id)
            .or_default()
            .push(offsets_partition(index, start));
    }
    by_topic
        .into_iter()
        .filter_map(|(topic_id, partitions)| {
            let topic = broker.topics.get_by_id(topic_id)?;
            Some(
                OffsetsTopic::default()
                    .with_topic_name(TopicName(str_bytes(&topic.name)))
                    .with_topic_id(topic_id)
                    .with_partitions(partitions),
            )
        })
        .collect()
}

/// The share-partitions a request names.
fn named_share_offsets(
    broker: &Broker,
    starts: &BTreeMap<Key, i64>,
    topics: Vec<describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic>,
) -> Vec<OffsetsTopic> {
    topics
        .into_iter()
        .map(|t| {
            let result = OffsetsTopic::default().with_topic_name(t.topic_name.clone());
            let Some(topic) = broker.topics.get(t.topic_name.as_str()) else {
                let unknown = ResponseError::UnknownTopicOrPartition;
                let partitions = t
                    .partitions
                    .iter()
                    .map(|&index| {
                        offsets_partition(index, -1)
                            .with_error_code(unknown.code())
                            .with_error_message(Some(str_bytes(
                                "This server does not host this topic-partition.",
                            )))
                    })
                    .collect();
                return result.with_partitions(partitions);
            };
            let partitions = t
                .partitions
                .iter()
                .map(|&index| {
                    let start = starts.get(&(topic.id, index)).copied().unwrap_or(-1);
                    offsets_partition(index, start)
                })
                .collect();
            result.with_topic_id(topic.id).with_partitions(partitions)
        })
        .collect()
}
