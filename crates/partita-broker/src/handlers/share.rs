//! Share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch (with
//! piggy-backed acknowledgements) and ShareAcknowledge.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use partita_groups::share::partition::AcknowledgeType;
use partita_groups::ClientContext;
use partita_log::batch;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::str_bytes;
use crate::broker::{now_ms, Broker};
use crate::memory::MemoryClaim;

/// Records acquired per partition when the request does not say.
const DEFAULT_MAX_RECORDS: usize = 500;

pub(crate) async fn heartbeat(
    broker: &Broker,
    client: &ClientContext,
    request: ShareGroupHeartbeatRequest,
    _version: i16,
) -> ShareGroupHeartbeatResponse {
    let topics = broker.topics.image();
    let response = broker.shares.lock().heartbeat(
        now_ms(),
        &client.client_id,
        &client.client_host,
        &request,
        &topics,
    );
    broker.shares.persist();
    response
}

pub(crate) async fn describe(
    broker: &Broker,
    _client: &ClientContext,
    request: ShareGroupDescribeRequest,
    _version: i16,
) -> ShareGroupDescribeResponse {
    let topics = broker.topics.image();
    let shares = broker.shares.lock();
    let groups = request
        .group_ids
        .into_iter()
        .map(|group_id| {
            let described = DescribedGroup::default().with_group_id(group_id.clone());
            let Some(group) = shares.groups().get(group_id.as_str()) else {
                return described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_group_state(str_bytes("Dead"));
            };
            let members = group
                .members
                .values()
                .map(|m| {
                    let partitions = m
                        .subscribed
                        .iter()
                        .filter_map(|name| topics.by_name.get(name).map(|t| (name, t)))
                        .map(|(name, t)| {
                            TopicPartitions::default()
                                .with_topic_id(t.id)
                                .with_topic_name(TopicName(str_bytes(name)))
                                .with_partitions((0..t.partitions).collect())
                        })
                        .collect();
                    Member::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_member_epoch(group.epoch)
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_subscribed_topic_names(
                            m.subscribed
                                .iter()
                                .map(|n| TopicName(str_bytes(n)))
                                .collect(),
                        )
                        .with_assignment(Assignment::default().with_topic_partitions(partitions))
                })
                .collect();
            described
                .with_group_state(str_bytes(if group.members.is_empty() {
                    "Empty"
                } else {
                    "Stable"
                }))
                .with_group_epoch(group.epoch)
                .with_assignment_epoch(group.epoch)
                .with_assignor_name(str_bytes("simple"))
                .with_members(members)
        })
        .collect();
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

/// Applies one partition's acknowledgement batches, as the request carries them (first
/// offset, last offset, types); returns the error code for the partition.
fn apply_acknowledgements(
    broker: &Broker,
    group_id: &str,
    member_id: &str,
    topic_id: Uuid,
    partition: i32,
    batches: impl Iterator<Item = (i64, i64, Vec<i8>)>,
) -> i16 {
    let Some(batches) = acknowledgements(batches) else {
        return ResponseError::InvalidRequest.code();
    };
    if batches.is_empty() {
        return 0;
    }
    let key = (group_id.to_string(), topic_id, partition);
    match broker.shares.lock().acknowledge(&key, member_id, &batches) {
        Ok(()) => 0,
        Err(_) => ResponseError::InvalidRecordState.code(),
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

async fn fetch_holding(
    broker: &Broker,
    _client: &ClientContext,
    request: ShareFetchRequest,
    _version: i16,
    memory: &mut MemoryClaim,
) -> ShareFetchResponse {
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
    let requested: Vec<(Uuid, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic_id, p.partition_index))
        })
        .collect();
    let forgotten: Vec<(Uuid, i32)> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    let session = broker.shares.lock().update_session(
        &group_id,
        &member_id,
        request.share_session_epoch,
        &requested,
        &forgotten,
    );
    let session = match session {
        Ok(partitions) => partitions,
        Err(error) => {
            return ShareFetchResponse::default().with_error_code(error.response_error().code())
        }
    };
    // Acknowledgements first: records given back may be fetched again right away.
    let mut ack_errors = std::collections::BTreeMap::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let batches = p
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
            let code = apply_acknowledgements(
                broker,
                &group_id,
                &member_id,
                topic.topic_id,
                p.partition_index,
                batches,
            );
            ack_errors.insert((topic.topic_id, p.partition_index), code);
        }
    }
    let lock_ms = broker.shares.lock().lock_duration_ms() as i32;
    let response = ShareFetchResponse::default().with_acquisition_lock_timeout_ms(lock_ms);
    if request.share_session_epoch == -1 {
        broker.shares.persist();
        return response.with_responses(partition_responses(&ack_errors, Vec::new()));
    }
    // The client's batch size, when it gives one, bounds what one fetch acquires, so that
    // the members sharing a partition each get a part of it.
    let max_records = [request.max_records, request.batch_size]
        .into_iter()
        .filter_map(|n| usize::try_from(n).ok().filter(|n| *n > 0))
        .min()
        .unwrap_or(DEFAULT_MAX_RECORDS);
    let max_bytes = usize::try_from(request.max_bytes)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(1 << 20)
        .min(broker.config.fetch_max_bytes);
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let waiter = Arc::new(Notify::new());
    let mut stopping = broker.shutdown_signal();
    loop {
        *memory = broker.fetch_memory.claim(max_bytes).await;
        let acquired = acquire_all(
            broker,
            &group_id,
            &member_id,
            &session,
            max_records,
            max_bytes,
            &waiter,
        );
        let any = acquired
            .iter()
            .any(|(_, data)| !data.acquired_records.is_empty());
        let bytes: usize = acquired
            .iter()
            .map(|(_, data)| data.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        memory.shrink_to(bytes);
        broker.shares.persist();
        // A stopping broker answers at once rather than hold shutdown up.
        if any || Instant::now() >= deadline || stopping.is_shutdown() {
            return response.with_responses(partition_responses(&ack_errors, acquired));
        }
        // Wait for new records, or for a lock to expire, or for the request's deadline.
        let lock_expiry = broker
            .shares
            .lock()
            .next_deadline()
            .map(|at| Instant::now() + Duration::from_millis((at - now_ms()).max(0) as u64));
        let wake = lock_expiry.map_or(deadline, |at| at.min(deadline));
        tokio::select! {
            _ = waiter.notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
            _ = stopping.recv() => {}
        }
    }
}

/// Acquires records on every partition of the session and reads them.
fn acquire_all(
    broker: &Broker,
    group_id: &str,
    member_id: &str,
    session: &std::collections::BTreeSet<(Uuid, i32)>,
    max_records: usize,
    max_bytes: usize,
    waiter: &Arc<Notify>,
) -> Vec<((Uuid, i32), PartitionData)> {
    let mut out = Vec::new();
    let mut records_left = max_records;
    let mut bytes_left = max_bytes;
    for &(topic_id, index) in session {
        let data = PartitionData::default().with_partition_index(index);
        let Some(partition) = broker
            .topics
            .get_by_id(topic_id)
            .and_then(|t| t.partition(index).cloned())
        else {
            out.push((
                (topic_id, index),
                data.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            ));
            continue;
        };
        partition.register_waiter(waiter);
        if records_left == 0 || bytes_left == 0 {
            out.push(((topic_id, index), data.with_records(Some(Bytes::new()))));
            continue;
        }
        let key = (group_id.to_string(), topic_id, index);
        let now = now_ms();
        let offsets = partition.offsets();
        let start = broker.shares.lock().next_fetch_offset(
            &key,
            now,
            offsets.log_start_offset,
            offsets.log_end_offset,
        );
        if start >= offsets.log_end_offset {
            out.push(((topic_id, index), data.with_records(Some(Bytes::new()))));
            continue;
        }
        let bytes = match partition.read(start, bytes_left) {
            Ok((bytes, _)) => bytes,
            Err(error) => {
                out.push((
                    (topic_id, index),
                    data.with_error_code(crate::error::log_error(&error).code()),
                ));
                continue;
            }
        };
        let covered_end = covered_end_offset(&bytes).unwrap_or(start);
        let acquired =
            broker
                .shares
                .lock()
                .acquire(&key, member_id, now, covered_end, records_left);
        let count: i64 = acquired
            .iter()
            .map(|r| r.last_offset - r.first_offset + 1)
            .sum();
        records_left = records_left.saturating_sub(count as usize);
        if acquired.is_empty() {
            out.push(((topic_id, index), data.with_records(Some(Bytes::new()))));
            continue;
        }
        bytes_left = bytes_left.saturating_sub(bytes.len());
        let ranges = acquired
            .iter()
            .map(|r| {
                AcquiredRecords::default()
                    .with_first_offset(r.first_offset)
                    .with_last_offset(r.last_offset)
                    .with_delivery_count(r.delivery_count)
            })
            .collect();
        out.push((
            (topic_id, index),
            data.with_records(Some(bytes)).with_acquired_records(ranges),
        ));
    }
    out
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
    ack_errors: &std::collections::BTreeMap<(Uuid, i32), i16>,
    data: Vec<((Uuid, i32), PartitionData)>,
) -> Vec<ShareFetchableTopicResponse> {
    let mut by_topic: std::collections::BTreeMap<Uuid, Vec<PartitionData>> = Default::default();
    let mut seen = std::collections::BTreeSet::new();
    for ((topic, index), mut partition) in data {
        partition.acknowledge_error_code = ack_errors.get(&(topic, index)).copied().unwrap_or(0);
        seen.insert((topic, index));
        by_topic.entry(topic).or_default().push(partition);
    }
    for (&(topic, index), &code) in ack_errors {
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
    let session = broker.shares.lock().update_session(
        &group_id,
        &member_id,
        request.share_session_epoch,
        &[],
        &[],
    );
    if let Err(error) = session {
        return ShareAcknowledgeResponse::default().with_error_code(error.response_error().code());
    }
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let batches = p
                        .acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()));
                    let code = apply_acknowledgements(
                        broker,
                        &group_id,
                        &member_id,
                        topic.topic_id,
                        p.partition_index,
                        batches,
                    );
                    AckPartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(
                            (code != 0)
                                .then(|| StrBytes::from_static_str("acknowledgement refused")),
                        )
                })
                .collect();
            ShareAcknowledgeTopicResponse::default()
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    broker.shares.persist();
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
    use kafka_protocol::messages::describe_share_group_offsets_response::{
        DescribeShareGroupOffsetsResponseGroup as GroupResult,
        DescribeShareGroupOffsetsResponsePartition as PartitionResult,
        DescribeShareGroupOffsetsResponseTopic as TopicResult,
    };
    let partition_result = |index: i32, start_offset: i64| {
        PartitionResult::default()
            .with_partition_index(index)
            .with_start_offset(start_offset)
            .with_leader_epoch(0)
    };
    let groups = request
        .groups
        .into_iter()
        .map(|requested| {
            let group_id = requested.group_id.to_string();
            let result = GroupResult::default().with_group_id(requested.group_id.clone());
            // Start offsets by (topic id, partition), read under the lock and nothing else.
            let starts: Option<std::collections::BTreeMap<(Uuid, i32), i64>> = {
                let shares = broker.shares.lock();
                shares.groups().contains_key(&group_id).then(|| {
                    shares
                        .partitions_of(&group_id)
                        .into_iter()
                        .map(|((_, topic_id, index), p)| ((*topic_id, *index), p.start_offset()))
                        .collect()
                })
            };
            let Some(starts) = starts else {
                return result
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(&format!("Group {group_id} not found."))));
            };
            let topics = match requested.topics {
                None => {
                    let mut by_topic: std::collections::BTreeMap<Uuid, Vec<PartitionResult>> =
                        Default::default();
                    for (&(topic_id, index), &start) in &starts {
                        by_topic
                            .entry(topic_id)
                            .or_default()
                            .push(partition_result(index, start));
                    }
                    by_topic
                        .into_iter()
                        .filter_map(|(topic_id, partitions)| {
                            // State of a deleted topic is not shown.
                            let topic = broker.topics.get_by_id(topic_id)?;
                            Some(
                                TopicResult::default()
                                    .with_topic_name(TopicName(str_bytes(&topic.name)))
                                    .with_topic_id(topic_id)
                                    .with_partitions(partitions),
                            )
                        })
                        .collect()
                }
                Some(topics) => topics
                    .into_iter()
                    .map(|t| {
                        let result = TopicResult::default().with_topic_name(t.topic_name.clone());
                        let Some(topic) = broker.topics.get(t.topic_name.as_str()) else {
                            let unknown = ResponseError::UnknownTopicOrPartition;
                            return result.with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|&index| {
                                        partition_result(index, -1)
                                            .with_error_code(unknown.code())
                                            .with_error_message(Some(str_bytes(
                                                "This server does not host this topic-partition.",
                                            )))
                                    })
                                    .collect(),
                            );
                        };
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|&index| {
                                let start = starts.get(&(topic.id, index)).copied().unwrap_or(-1);
                                partition_result(index, start)
                            })
                            .collect();
                        result.with_topic_id(topic.id).with_partitions(partitions)
                    })
                    .collect(),
            };
            result.with_topics(topics)
        })
        .collect();
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}
