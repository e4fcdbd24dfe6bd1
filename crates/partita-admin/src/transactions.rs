//! Transactions as `kafka-transactions.sh` shows and ends them: every transaction the
//! brokers' coordinators know (ListTransactions, KIP-664), one transactional id's state
//! (DescribeTransactions, asked of its coordinator), the producers of a partition
//! (DescribeProducers) and the abort of a hanging transaction (WriteTxnMarkers).

use kafka_protocol::messages::{
    describe_producers_request, write_txn_markers_request, DescribeProducersRequest,
    DescribeTransactionsRequest, ListTransactionsRequest, ProducerId, TopicName, TransactionalId,
    WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::client::AdminClient;
use crate::error::{AdminError, Result};

/// One transaction as ListTransactions gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
    /// The broker coordinating it.
    pub coordinator: i32,
}

/// One transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the open transaction began (ms since the epoch), -1 if none is open.
    pub start_time_ms: i64,
    /// Its partitions, as `topic-partition`.
    pub partitions: Vec<String>,
    pub coordinator: i32,
}

/// Every transaction of every broker, in the given states (all if empty), of the given
/// producers (all if empty), open for at least `min_duration_ms` (-1: any).
pub async fn list(
    client: &mut AdminClient,
    states: &[String],
    producer_ids: &[i64],
    min_duration_ms: i64,
) -> Result<Vec<TransactionListing>> {
    let brokers: Vec<i32> = client
        .metadata(Some(&[]))
        .await?
        .brokers
        .iter()
        .map(|b| b.node_id)
        .collect();
    let mut found = Vec::new();
    for node_id in brokers {
        let (response, _) = client
            .broker(node_id)
            .await?
            .call(1, |_| {
                ListTransactionsRequest::default()
                    .with_state_filters(
                        states
                            .iter()
                            .map(|s| StrBytes::from_string(s.clone()))
                            .collect(),
                    )
                    .with_producer_id_filters(producer_ids.iter().map(|p| ProducerId(*p)).collect())
                    .with_duration_filter(min_duration_ms)
            })
            .await?;
        AdminError::check(response.error_code, None, || {
            format!("listing the transactions of broker {node_id}")
        })?;
        if let Some(unknown) = response.unknown_state_filters.first() {
            return Err(AdminError::InvalidInput(format!(
                "unknown transaction state {unknown:?} (Empty, Ongoing, PrepareCommit, \
                 PrepareAbort, CompleteCommit, CompleteAbort, PrepareEpochFence)"
            )));
        }
        found.extend(
            response
                .transaction_states
                .iter()
                .map(|t| TransactionListing {
                    transactional_id: t.transactional_id.to_string(),
                    producer_id: t.producer_id.0,
                    state: t.transaction_state.to_string(),
                    coordinator: node_id,
                }),
        );
    }
    found.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    Ok(found)
}

/// One transactional id's state, from its coordinator.
pub async fn describe(
    client: &mut AdminClient,
    transactional_id: &str,
) -> Result<TransactionDescription> {
    let coordinator = client.transaction_coordinator(transactional_id).await?;
    let (response, _) = client
        .broker(coordinator)
        .await?
        .call(0, |_| {
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_string(transactional_id.to_string()),
            )])
        })
        .await?;
    let state = response.transaction_states.first().ok_or_else(|| {
        AdminError::kafka(
            format!("describing transactional id {transactional_id:?}"),
            -1,
            Some("empty answer".into()),
        )
    })?;
    AdminError::check(state.error_code, None, || {
        format!("describing transactional id {transactional_id:?}")
    })?;
    let mut partitions: Vec<String> = state
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| format!("{}-{p}", t.topic.as_str()))
        })
        .collect();
    partitions.sort();
    Ok(TransactionDescription {
        transactional_id: transactional_id.to_string(),
        state: state.transaction_state.to_string(),
        producer_id: state.producer_id.0,
        producer_epoch: state.producer_epoch,
        timeout_ms: state.transaction_timeout_ms,
        start_time_ms: state.transaction_start_time_ms,
        partitions,
        coordinator,
    })
}

/// A producer that wrote to a partition, as DescribeProducers gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProducerListing {
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub last_sequence: i32,
    /// The epoch of the coordinator that last ended one of its transactions, -1 if unknown.
    pub coordinator_epoch: i32,
    /// The offset of the first record of its transaction under way there, -1 if none.
    pub current_transaction_start_offset: i64,
}

/// The producers that wrote to `topic`-`partition`, asked of its leader.
pub async fn describe_producers(
    client: &mut AdminClient,
    topic: &str,
    partition: i32,
) -> Result<Vec<ProducerListing>> {
    let leader = leader_of(client, topic, partition).await?;
    let (response, _) = client
        .broker(leader)
        .await?
        .call(0, |_| {
            DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partition_indexes(vec![partition]),
            ])
        })
        .await?;
    let answer = response
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| AdminError::InvalidInput(format!("no answer for {topic}-{partition}")))?;
    let message = answer.error_message.as_ref().map(|m| m.to_string());
    AdminError::check(answer.error_code, message.as_deref(), || {
        format!("describing the producers of {topic}-{partition}")
    })?;
    Ok(answer
        .active_producers
        .into_iter()
        .map(|p| ProducerListing {
            producer_id: p.producer_id.0,
            producer_epoch: p.producer_epoch,
            last_sequence: p.last_sequence,
            coordinator_epoch: p.coordinator_epoch,
            current_transaction_start_offset: p.current_txn_start_offset,
        })
        .collect())
}

/// Which transaction of a partition to abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortTarget {
    /// The one whose first record is at this offset (found with DescribeProducers).
    StartOffset(i64),
    /// This producer's, at this epoch, as ended by a coordinator of this epoch.
    Producer {
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    },
}

/// Aborts a transaction in `topic`-`partition` by writing its ABORT marker there
/// (WriteTxnMarkers, as `kafka-transactions.sh abort` does): for a hanging transaction, one
/// whose coordinator will never end it. Returns the producer whose transaction it was.
pub async fn abort(
    client: &mut AdminClient,
    topic: &str,
    partition: i32,
    target: AbortTarget,
) -> Result<i64> {
    let (producer_id, producer_epoch, coordinator_epoch) = match target {
        AbortTarget::Producer {
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => (producer_id, producer_epoch, coordinator_epoch),
        AbortTarget::StartOffset(offset) => {
            let producers = describe_producers(client, topic, partition).await?;
            let found = producers
                .iter()
                .find(|p| p.current_transaction_start_offset == offset)
                .ok_or_else(|| {
                    AdminError::InvalidInput(format!(
                        "no transaction of {topic}-{partition} starts at offset {offset}"
                    ))
                })?;
            let epoch = i16::try_from(found.producer_epoch).unwrap_or(-1);
            (found.producer_id, epoch, found.coordinator_epoch)
        }
    };
    let leader = leader_of(client, topic, partition).await?;
    let (response, _) = client
        .broker(leader)
        .await?
        .call(1, |_| {
            WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(producer_epoch)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(coordinator_epoch)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partition_indexes(vec![partition]),
                    ]),
            ])
        })
        .await?;
    for result in response.markers.iter().flat_map(|m| &m.topics) {
        for p in &result.partitions {
            AdminError::check(p.error_code, None, || {
                format!("aborting the transaction of producer {producer_id} in {topic}-{partition}")
            })?;
        }
    }
    Ok(producer_id)
}

/// The broker leading `topic`-`partition`.
async fn leader_of(client: &mut AdminClient, topic: &str, partition: i32) -> Result<i32> {
    let topics = client.existing_topics(&[topic.to_string()]).await?;
    topics
        .iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
        .map(|p| p.leader)
        .ok_or_else(|| AdminError::InvalidInput(format!("no partition {topic}-{partition}")))
}
