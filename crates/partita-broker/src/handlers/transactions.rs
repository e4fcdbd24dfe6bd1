//! The transactional producer's APIs (KIP-98): InitProducerId with a transactional id,
//! AddPartitionsToTxn and EndTxn, answered by the transaction coordinator
//! ([`crate::transactions`]); and the check a transactional Produce passes, that its
//! partition was added to its producer's transaction.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, TopicName,
};
use kafka_protocol::ResponseError;
use partita_groups::transactions::{TxnOperation, TxnResponse};
use partita_log::batch::BatchHeader;

use crate::broker::Broker;

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
