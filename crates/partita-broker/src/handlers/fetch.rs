//! Fetch: hand stored batches back, long-polling until `min_bytes` have arrived or
//! `max_wait_ms` has passed. Waiting fetches are woken by appends, never by a timer loop.
//!
//! A response holds at most `fetch.max.bytes` (beyond the first batch, per KIP-74), and all
//! responses together at most `fetch.memory.max.bytes`: a fetch waits for memory beyond that.
//!
//! Fetch sessions (KIP-227) are not kept: every response says session id 0, which tells the
//! client to send full requests, as the protocol allows.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use kafka_protocol::messages::fetch_request::FetchPartition;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::ResponseError;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use partita_groups::ClientContext;

use crate::broker::{now_ms, Broker};
use crate::error::log_error;
use crate::memory::MemoryClaim;
use crate::partition::Partition;
use crate::readers::{ReaderId, TopicFetch};
use crate::topics::Topic;

/// Topic ids replace names in Fetch from this version on (KIP-516).
const TOPIC_ID_VERSION: i16 = 13;

/// Answers a fetch. The response comes with the memory it holds, claimed from
/// `fetch.memory.max.bytes` and given back once the response has been written.
pub(crate) async fn handle(
    broker: &Broker,
    request: FetchRequest,
    version: i16,
    client: &ClientContext,
) -> (FetchResponse, MemoryClaim) {
    if request.session_id != 0 {
        let response =
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return (response, broker.fetch_memory.claim(0).await);
    }
    // Resolved once: a topic deleted while the fetch waits answers as it did when asked.
    let topics: Vec<Option<Arc<Topic>>> = request
        .topics
        .iter()
        .map(|wanted| resolve_topic(broker, version, &wanted.topic, wanted.topic_id))
        .collect();
    note_reader(broker, &request, &topics, client);
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = (request.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes);
    let waiter = Arc::new(Notify::new());
    let mut stopping = broker.shutdown_signal();
    loop {
        let mut memory = broker.fetch_memory.claim(max_bytes).await;
        // Register before reading, so an append between the read and the wait still wakes us.
        let (responses, bytes, errors) =
            read_all(&request, &topics, max_bytes, version, Some(&waiter)).await;
        let done = bytes >= min_bytes || errors || Instant::now() >= deadline;
        if done || stopping.is_shutdown() {
            memory.shrink_to(bytes);
            return (respond(broker, version, responses), memory);
        }
        // Nothing is held while waiting.
        drop((memory, responses));
        tokio::select! {
            _ = waiter.notified() => continue,
            _ = tokio::time::sleep_until(deadline) => {}
            // A stopping broker answers with what it has rather than hold shutdown up.
            _ = stopping.recv() => {}
        }
        let mut memory = broker.fetch_memory.claim(max_bytes).await;
        let (responses, bytes, _) = read_all(&request, &topics, max_bytes, version, None).await;
        memory.shrink_to(bytes);
        return (respond(broker, version, responses), memory);
    }
}

/// Remembers the isolation level this client reads each fetched topic with and where it reads
/// each partition, from which its group's lag is counted (see [`crate::readers`]).
fn note_reader(
    broker: &Broker,
    request: &FetchRequest,
    topics: &[Option<Arc<Topic>>],
    client: &ClientContext,
) {
    let fetches: Vec<TopicFetch<'_>> = request
        .topics
        .iter()
        .zip(topics)
        .filter_map(|(wanted, topic)| Some((wanted, topic.as_ref()?)))
        .map(|(wanted, topic)| TopicFetch {
            topic: &topic.name,
            offsets: wanted
                .partitions
                .iter()
                .map(|p| (p.partition, p.fetch_offset))
                .collect(),
        })
        .collect();
    let reader = ReaderId {
        client_id: &client.client_id,
        client_host: &client.client_host,
    };
    let committed = request.isolation_level == 1;
    broker
        .readers
        .fetched(reader, &fetches, committed, now_ms());
}

/// The response, counted in the topics' traffic and the error metrics.
fn respond(broker: &Broker, version: i16, responses: Vec<FetchableTopicResponse>) -> FetchResponse {
    for response in &responses {
        let mut traffic = None;
        for partition in &response.partitions {
            broker
                .metrics
                .record_error(ApiKey::Fetch, partition.error_code);
            let records = partition.records.as_deref().unwrap_or_default();
            if records.is_empty() {
                continue;
            }
            // Records came back, so the topic exists.
            let traffic = traffic.get_or_insert_with(|| {
                let name = if version >= TOPIC_ID_VERSION {
                    broker
                        .topics
                        .get_by_id(response.topic_id)
                        .map(|t| t.name.clone())
                } else {
                    Some(response.topic.to_string())
                };
                name.map(|name| broker.metrics.topic(&name))
            });
            if let Some(traffic) = traffic {
                let count = crate::metrics::count_records(records);
                traffic.record_out(records.len() as u64, count);
            }
        }
    }
    FetchResponse::default().with_responses(responses)
}

/// Partitions of one fetch read at the same time, at most.
const READ_AHEAD: usize = 8;

/// Reads every requested partition (of `topics`, the request's topics resolved, `None` for
/// unknown ones). Returns the per-topic results, the bytes gathered and
/// whether any partition had an error (which ends the wait, as in Kafka).
///
/// Partitions are read [`READ_AHEAD`] at a time (a read from an object store takes a while),
/// in the request's order, until `max_bytes` are gathered; the rest are answered with their
/// offsets and no records.
async fn read_all(
    request: &FetchRequest,
    topics: &[Option<Arc<Topic>>],
    max_bytes: usize,
    version: i16,
    waiter: Option<&Arc<Notify>>,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let wanted: Vec<(usize, &FetchPartition, Option<Arc<Partition>>)> = request
        .topics
        .iter()
        .zip(topics)
        .enumerate()
        .flat_map(|(t, (wanted, topic))| {
            wanted.partitions.iter().map(move |p| {
                let partition = topic
                    .as_ref()
                    .and_then(|t| t.partition(p.partition).cloned());
                (t, p, partition)
            })
        })
        .collect();
    // KIP-98: a read_committed consumer reads below the last stable offset, and is told of
    // the aborted transactions in what it reads so that it drops their records.
    let committed = request.isolation_level == 1;
    let mut remaining = max_bytes;
    let mut gathered = 0usize;
    let mut errors = false;
    let mut answers: Vec<Vec<PartitionData>> = vec![Vec::new(); request.topics.len()];
    for chunk in wanted.chunks(READ_AHEAD) {
        let budget = remaining;
        let reads = chunk.iter().map(|(_, p, partition)| async move {
            let partition = partition.as_ref()?;
            if let Some(waiter) = waiter {
                partition.register_waiter(waiter);
            }
            if budget == 0 {
                return Some(Ok((Bytes::new(), partition.offsets(), Vec::new())));
            }
            let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
            Some(match committed {
                true => partition.read_committed(p.fetch_offset, limit).await,
                false => (partition.read(p.fetch_offset, limit).await)
                    .map(|(records, offsets)| (records, offsets, Vec::new())),
            })
        });
        for ((t, p, partition), read) in chunk.iter().zip(join_all(reads).await) {
            let answer = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(Bytes::new()));
            let (Some(partition), Some(read)) = (partition, read) else {
                errors = true;
                let code = if version >= TOPIC_ID_VERSION {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                answers[*t].push(answer.with_error_code(code.code()));
                continue;
            };
            let answer = match read {
                Ok((records, offsets, aborted)) => {
                    // The first data in a response may exceed the limits (KIP-74) so that a
                    // batch larger than max_bytes still makes progress; later ones may not.
                    let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                    let records = if gathered > 0 && records.len() > limit {
                        Bytes::new()
                    } else {
                        records
                    };
                    gathered += records.len();
                    remaining = remaining.saturating_sub(records.len());
                    let aborted = (committed && !records.is_empty()).then(|| {
                        aborted
                            .iter()
                            .map(|txn| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(txn.producer_id))
                                    .with_first_offset(txn.first_offset)
                            })
                            .collect()
                    });
                    answer
                        .with_high_watermark(offsets.log_end_offset)
                        .with_last_stable_offset(offsets.last_stable_offset)
                        .with_log_start_offset(offsets.log_start_offset)
                        .with_aborted_transactions(aborted)
                        .with_records(Some(records))
                }
                Err(error) => {
                    errors = true;
                    let offsets = partition.offsets();
                    answer
                        .with_error_code(log_error(&error).code())
                        .with_high_watermark(offsets.log_end_offset)
                        .with_last_stable_offset(offsets.last_stable_offset)
                        .with_log_start_offset(offsets.log_start_offset)
                }
            };
            answers[*t].push(answer);
        }
    }
    let responses = request
        .topics
        .iter()
        .zip(topics)
        .zip(answers)
        .map(|((wanted, topic), partitions)| {
            FetchableTopicResponse::default()
                .with_topic(wanted.topic.clone())
                .with_topic_id(topic.as_ref().map_or(wanted.topic_id, |t| t.id))
                .with_partitions(partitions)
        })
        .collect();
    (responses, gathered, errors)
}

fn resolve_topic(broker: &Broker, version: i16, name: &TopicName, id: Uuid) -> Option<Arc<Topic>> {
    if version >= TOPIC_ID_VERSION {
        broker.topics.get_by_id(id)
    } else {
        broker.topics.get(name.as_str())
    }
}
