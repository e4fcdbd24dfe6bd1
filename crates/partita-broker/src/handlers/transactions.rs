//! The transactional producer's APIs (KIP-98): InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn and EndTxn, answered by the transaction coordinator
//! ([`crate::transactions`]); TxnOffsetCommit, checked with the transaction coordinator and
//! answered by the group's; the check a transactional Produce passes, that its partition
//! was added to its producer's transaction; and DescribeTransactions, ListTransactions,
//! DescribeProducers and WriteTxnMarkers (KIP-664) for operators.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    describe_transactions_response, list_transactions_response, AddOffsetsToTxnRequest,
    AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::ResponseError;
use partita_groups::partition_for_group;
use partita_groups::records::TransactionState;
use partita_groups::shard::{ClientContext, Request, Response, TxnMarker};
use partita_groups::transactions::{TxnOperation, TxnResponse};
use partita_log::batch::BatchHeader;
use partita_log::LogError;

use crate::broker::Broker;
use crate::groups::{CoordinatorError, CONSUMER_OFFSETS};
use crate::transactions::write_marker;

/// InitProducerId for a transactional producer.
pub(crate) async fn init_producer_id(
    broker: &Broker,
    request: &InitProducerIdRequest,
    transactional_id: &str,
) -> InitProducerIdResponse {
    let refused = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let Some(coordinator) = broker.transactions.as_ref() else {
        // Cluster mode does not serve transactions yet.
        return refused(ResponseError::UnsupportedVersion);
    };
    let fresh_producer_id = match broker.producer_ids.next().await {
        Ok(id) => id,
        Err(error) => {
            return refused(ResponseError::CoordinatorNotAvailable).with_error_code(error.code())
        }
    };
    let operation = TxnOperation::InitProducerId {
        transactional_id: transactional_id.to_string(),
        timeout_ms: request.transaction_timeout_ms,
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        fresh_producer_id,
    };
    match coordinator
        .call(&broker.topics, transactional_id, operation)
        .await
    {
        TxnResponse::Producer {
            producer_id,
            producer_epoch,
        } => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
        TxnResponse::Error(error) => refused(error),
        _ => refused(ResponseError::UnknownServerError),
    }
}

/// AddPartitionsToTxn v0-3, as producers send it.
pub(crate) async fn add_partitions(
    broker: &Broker,
    request: AddPartitionsToTxnRequest,
    _version: i16,
) -> AddPartitionsToTxnResponse {
    let partitions: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let answer = |errors: Vec<((String, i32), Option<ResponseError>)>| {
        let mut by_topic: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
        for ((topic, partition), error) in errors {
            let result = AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(partition)
                .with_partition_error_code(error.map_or(0, |e| e.code()));
            match by_topic.iter_mut().find(|t| t.name.as_str() == topic) {
                Some(t) => t.results_by_partition.push(result),
                None => by_topic.push(
                    AddPartitionsToTxnTopicResult::default()
                        .with_name(TopicName(super::str_bytes(&topic)))
                        .with_results_by_partition(vec![result]),
                ),
            }
        }
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(by_topic)
    };
    let every = |error: ResponseError| {
        answer(
            partitions
                .iter()
                .map(|p| (p.clone(), Some(error)))
                .collect(),
        )
    };
    let Some(coordinator) = broker.transactions.as_ref() else {
        return every(ResponseError::UnsupportedVersion);
    };
    // Partitions of topics that do not exist are refused, and the others not added (Kafka
    // answers OPERATION_NOT_ATTEMPTED for them).
    let unknown: Vec<bool> = partitions
        .iter()
        .map(|(topic, p)| {
            broker
                .topics
                .get(topic)
                .and_then(|t| t.partition(*p).cloned())
                .is_none()
        })
        .collect();
    if unknown.iter().any(|u| *u) {
        return answer(
            partitions
                .iter()
                .zip(unknown)
                .map(|(p, unknown)| {
                    let error = match unknown {
                        true => ResponseError::UnknownTopicOrPartition,
                        false => ResponseError::OperationNotAttempted,
                    };
                    (p.clone(), Some(error))
                })
                .collect(),
        );
    }
    let id = request.v3_and_below_transactional_id.to_string();
    let operation = TxnOperation::AddPartitions {
        transactional_id: id.clone(),
        producer_id: request.v3_and_below_producer_id.0,
        producer_epoch: request.v3_and_below_producer_epoch,
        partitions: partitions.clone(),
        verify_only: false,
    };
    match coordinator.call(&broker.topics, &id, operation).await {
        TxnResponse::Partitions(errors) => answer(errors),
        TxnResponse::Error(error) => every(error),
        _ => every(ResponseError::UnknownServerError),
    }
}

/// EndTxn v0-4: commit or abort.
pub(crate) async fn end_txn(
    broker: &Broker,
    request: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let refused = |error: ResponseError| {
        EndTxnResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let Some(coordinator) = broker.transactions.as_ref() else {
        return refused(ResponseError::UnsupportedVersion);
    };
    let id = request.transactional_id.to_string();
    let fresh_producer_id = match version >= 5 {
        true => broker.producer_ids.next().await.unwrap_or(-1),
        false => -1,
    };
    let operation = TxnOperation::EndTxn {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        commit: request.committed,
        client_transaction_version: if version >= 5 { 2 } else { 0 },
        fresh_producer_id,
    };
    match coordinator.call(&broker.topics, &id, operation).await {
        TxnResponse::Producer {
            producer_id,
            producer_epoch,
        } => EndTxnResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
        TxnResponse::Error(error) => refused(error),
        _ => refused(ResponseError::UnknownServerError),
    }
}

/// Whether a transactional batch may be written to `topic`/`partition`: its producer's
/// transaction must hold the partition (KIP-890's verification), else the error it gets.
pub(crate) async fn verify_produce(
    broker: &Broker,
    transactional_id: Option<&str>,
    header: &BatchHeader,
    (topic, partition): (&str, i32),
) -> Result<(), ResponseError> {
    let (Some(coordinator), Some(id)) = (broker.transactions.as_ref(), transactional_id) else {
        return Err(ResponseError::InvalidTxnState);
    };
    let operation = TxnOperation::AddPartitions {
        transactional_id: id.to_string(),
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        partitions: vec![(topic.to_string(), partition)],
        verify_only: true,
    };
    match coordinator.call(&broker.topics, id, operation).await {
        TxnResponse::Partitions(errors) => match errors.first().and_then(|(_, e)| *e) {
            None => Ok(()),
            Some(error) => Err(error),
        },
        TxnResponse::Error(error) => Err(error),
        _ => Err(ResponseError::UnknownServerError),
    }
}

/// DescribeTransactions v0 (KIP-664): each transactional id's state, partitions and producer.
pub(crate) async fn describe(
    broker: &Broker,
    request: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let answer = describe_transactions_response::TransactionState::default()
            .with_transactional_id(id.clone())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        let key = id.to_string();
        let looked_for = key.clone();
        let found = match broker.transactions.as_ref() {
            Some(coordinator) => coordinator
                .look(&key, move |shard| shard.describe(&looked_for).cloned())
                .await
                .flatten(),
            None => None,
        };
        let Some(m) = found else {
            states.push(answer.with_error_code(ResponseError::TransactionalIdNotFound.code()));
            continue;
        };
        let mut topics: Vec<describe_transactions_response::TopicData> = Vec::new();
        for (topic, partition) in &m.partitions {
            match topics.iter_mut().find(|t| t.topic.as_str() == topic) {
                Some(t) => t.partitions.push(*partition),
                None => topics.push(
                    describe_transactions_response::TopicData::default()
                        .with_topic(TopicName(super::str_bytes(topic)))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        states.push(
            answer
                .with_transaction_state(super::str_bytes(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(topics),
        );
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions v0-1 (KIP-664, KIP-994): the transactions in the given states, of the
/// given producers, running for at least the given time.
pub(crate) async fn list(
    broker: &Broker,
    request: ListTransactionsRequest,
    _version: i16,
) -> ListTransactionsResponse {
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TransactionState::from_name(name.as_str()) {
            Some(state) => states.push(state),
            None => unknown.push(name.clone()),
        }
    }
    let producers: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    // With only unknown states asked for, nothing can match.
    let none_match = states.is_empty() && !unknown.is_empty();
    let min_duration = request.duration_filter;
    let now = crate::broker::now_ms();
    let found = match (broker.transactions.as_ref(), none_match) {
        (Some(coordinator), false) => {
            coordinator
                .look_all(move |shard| {
                    shard
                        .list(&states, &producers, min_duration, now)
                        .into_iter()
                        .map(|m| (m.transactional_id.clone(), m.producer_id, m.state.name()))
                        .collect::<Vec<_>>()
                })
                .await
        }
        _ => Vec::new(),
    };
    let transaction_states = found
        .into_iter()
        .flatten()
        .map(|(id, producer_id, state)| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(super::str_bytes(&id)))
                .with_producer_id(ProducerId(producer_id))
                .with_transaction_state(super::str_bytes(state))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(transaction_states)
}

/// AddOffsetsToTxn v0-4: adds the group's `__consumer_offsets` partition to the transaction,
/// so that its offsets are committed or dropped with it.
pub(crate) async fn add_offsets(
    broker: &Broker,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let refused =
        |error: ResponseError| AddOffsetsToTxnResponse::default().with_error_code(error.code());
    let Some(coordinator) = broker.transactions.as_ref() else {
        return refused(ResponseError::UnsupportedVersion);
    };
    let id = request.transactional_id.to_string();
    if id.is_empty() {
        return refused(ResponseError::InvalidRequest);
    }
    let shard = partition_for_group(
        request.group_id.as_str(),
        broker.groups.shard_count() as i32,
    );
    let operation = TxnOperation::AddPartitions {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        partitions: vec![(CONSUMER_OFFSETS.to_string(), shard)],
        verify_only: false,
    };
    let error = match coordinator.call(&broker.topics, &id, operation).await {
        TxnResponse::Partitions(errors) => errors.first().and_then(|(_, e)| *e),
        TxnResponse::Error(error) => Some(error),
        _ => Some(ResponseError::UnknownServerError),
    };
    match error {
        None => AddOffsetsToTxnResponse::default(),
        // PRODUCER_FENCED came with version 2; older clients know INVALID_PRODUCER_EPOCH.
        Some(ResponseError::ProducerFenced) if version < 2 => {
            refused(ResponseError::InvalidProducerEpoch)
        }
        Some(error) => refused(error),
    }
}

/// TxnOffsetCommit v0-4: offsets committed inside the producer's transaction, once its
/// coordinator confirms the group's partition is in it (KIP-890's verification), handed to
/// the group's coordinator, which holds them until the transaction ends.
pub(crate) async fn txn_offset_commit(
    broker: &Broker,
    client: &ClientContext,
    mut request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    // As KafkaApis: partitions no topic has are answered before anything else is asked.
    let unknown = super::unknown_partitions::take(broker, &mut request.topics);
    let mut response = if request.topics.is_empty() && !unknown.is_empty() {
        TxnOffsetCommitResponse::default()
    } else {
        commit_known_partitions(broker, client, request, version).await
    };
    super::unknown_partitions::answer(&mut response, unknown);
    response
}

/// [`txn_offset_commit`] of partitions that exist: checked with the transaction coordinator,
/// then handed to the group's shard.
async fn commit_known_partitions(
    broker: &Broker,
    client: &ClientContext,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    use super::unknown_partitions::{indexes, refuse_all};
    let asked = indexes(&request.topics);
    let every = |code: i16| refuse_all(asked.clone(), code);
    let Some(coordinator) = broker.transactions.as_ref() else {
        return every(ResponseError::UnsupportedVersion.code());
    };
    let group_id = request.group_id.as_str();
    if group_id.is_empty() {
        return every(ResponseError::InvalidGroupId.code());
    }
    let shard = partition_for_group(group_id, broker.groups.shard_count() as i32);
    let id = request.transactional_id.to_string();
    let operation = TxnOperation::AddPartitions {
        transactional_id: id.clone(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        partitions: vec![(CONSUMER_OFFSETS.to_string(), shard)],
        verify_only: true,
    };
    let verified = match coordinator.call(&broker.topics, &id, operation).await {
        TxnResponse::Partitions(errors) => errors.first().and_then(|(_, e)| *e),
        TxnResponse::Error(error) => Some(error),
        _ => Some(ResponseError::UnknownServerError),
    };
    if let Some(error) = verified {
        // As Kafka answers a commit its transaction coordinator does not vouch for.
        let error = match error {
            ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
            ResponseError::InvalidTxnState if version >= 4 => ResponseError::TransactionAbortable,
            other => other,
        };
        return every(error.code());
    }
    let group_id = group_id.to_string();
    match broker
        .groups
        .call(
            &group_id,
            client,
            Request::TxnOffsetCommit(request, version),
        )
        .await
    {
        Ok(Response::TxnOffsetCommit(response)) => response,
        other => every(CoordinatorError::of(other)),
    }
}

/// DescribeProducers v0 (KIP-664): the producers that wrote to each partition and the first
/// offset of the transaction each has under way there, for finding a hanging transaction.
pub(crate) async fn describe_producers(
    broker: &Broker,
    request: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let topic = broker.topics.get(wanted.name.as_str());
        let mut partitions = Vec::with_capacity(wanted.partition_indexes.len());
        for index in wanted.partition_indexes {
            let answer = PartitionResponse::default().with_partition_index(index);
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(index).cloned()) else {
                partitions
                    .push(answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let answer = match partition.producers().await {
                Ok(producers) => answer.with_active_producers(
                    producers
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(i32::from(p.producer_epoch))
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(-1)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(p.txn_start_offset)
                        })
                        .collect(),
                ),
                Err(LogError::NotLeader) => {
                    answer.with_error_code(ResponseError::NotLeaderOrFollower.code())
                }
                Err(error) => answer
                    .with_error_code(ResponseError::KafkaStorageError.code())
                    .with_error_message(Some(super::str_bytes(&error.to_string()))),
            };
            partitions.push(answer);
        }
        topics.push(
            TopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}

/// WriteTxnMarkers v1: transaction markers written into partitions from outside the
/// transaction coordinator, as `kafka-transactions.sh abort` does to end a hanging
/// transaction.
pub(crate) async fn write_txn_markers(
    broker: &Broker,
    request: WriteTxnMarkersRequest,
    _version: i16,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(request.markers.len());
    for wanted in request.markers {
        let marker = TxnMarker {
            producer_id: wanted.producer_id.0,
            producer_epoch: wanted.producer_epoch,
            commit: wanted.transaction_result,
            coordinator_epoch: wanted.coordinator_epoch,
        };
        let mut topics = Vec::with_capacity(wanted.topics.len());
        for topic in wanted.topics {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for index in topic.partition_indexes {
                let written = write_marker(broker, topic.name.as_str(), index, marker).await;
                if written.is_ok() {
                    tracing::info!(topic = %topic.name.as_str(), partition = index, producer_id = marker.producer_id, commit = marker.commit, "transaction marker written on request");
                }
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(written.err().map_or(0, |e| e.code())),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(wanted.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
