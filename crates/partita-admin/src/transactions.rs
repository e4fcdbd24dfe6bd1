//! Transactions as `kafka-transactions.sh` shows them: every transaction the brokers'
//! coordinators know (ListTransactions, KIP-664) and one transactional id's state
//! (DescribeTransactions, asked of its coordinator).

use kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, ProducerId, TransactionalId,
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
