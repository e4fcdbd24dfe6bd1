//! The transaction coordinator's shards (KIP-98), on a single node: one task per
//! `__transaction_state` partition owns that shard's state machine ([`TransactionShard`]).
//! It runs each operation, appends the records it wrote to the partition, replays them, and
//! only then answers; a failed append changes nothing and is answered
//! COORDINATOR_NOT_AVAILABLE, which clients retry. The transaction markers an operation
//! calls for are written by one marker task into every partition of the transaction, after
//! which it tells the shard, which completes the transaction. Markers of transactions left
//! prepared by a stop are written at the next start.
//!
//! Cluster mode does not serve transactions yet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::ResponseError;
use partita_groups::partition_for_group;
use partita_groups::shard::{ClientContext, Request, Response, TxnMarker};
use partita_groups::transactions::{
    MarkerJob, TransactionConfig, TransactionShard, TxnOperation, TxnRecord, TxnResponse,
};
use partita_log::{batch, LogError};
use tokio::sync::{mpsc, oneshot};

use crate::broker::{now_ms, Broker};
use crate::error::BrokerError;
use crate::groups::{internal_topic, replay, CoordinatorError, CONSUMER_OFFSETS};
use crate::partition::Partition;
use crate::topics::TopicRegistry;

/// Kafka's internal topic for transaction state.
pub const TRANSACTION_STATE: &str = "__transaction_state";

/// What a shard is sent: an operation, with where to send the answer; or a look at its state
/// (DescribeTransactions, ListTransactions), which answers by itself.
enum TxnMessage {
    Operation {
        operation: TxnOperation,
        reply: oneshot::Sender<TxnResponse>,
    },
    Look(Box<dyn FnOnce(&TransactionShard) + Send>),
}

/// Markers to write: the job, and the shard to tell when they are written.
type MarkerWork = (usize, MarkerJob);

/// Routes each transactional id's operations to the shard that owns it.
pub struct TransactionCoordinator {
    config: TransactionConfig,
    partitions: i32,
    /// The shards, started with `__transaction_state`: at start-up if the topic exists, else
    /// when the first transactional producer comes (as Kafka creates the topic), so that a
    /// broker never used for transactions keeps no files for them.
    shards: tokio::sync::OnceCell<Vec<mpsc::Sender<TxnMessage>>>,
    marker_sender: mpsc::UnboundedSender<MarkerWork>,
    /// The marker work, until the marker task takes it when the broker starts serving.
    markers: Mutex<Option<mpsc::UnboundedReceiver<MarkerWork>>>,
}

impl TransactionCoordinator {
    /// The coordinator of `partitions` shards (`transaction.state.log.num.partitions`);
    /// its shards are rebuilt now if `__transaction_state` exists.
    pub async fn open(
        topics: &TopicRegistry,
        partitions: i32,
        config: TransactionConfig,
    ) -> Result<TransactionCoordinator, BrokerError> {
        let (marker_sender, markers) = mpsc::unbounded_channel();
        let coordinator = TransactionCoordinator {
            config,
            partitions,
            shards: tokio::sync::OnceCell::new(),
            marker_sender,
            markers: Mutex::new(Some(markers)),
        };
        if topics.get(TRANSACTION_STATE).is_some() {
            coordinator.shards(topics).await?;
        }
        Ok(coordinator)
    }

    /// The shards, started first if they are not yet.
    async fn shards(
        &self,
        topics: &TopicRegistry,
    ) -> Result<&Vec<mpsc::Sender<TxnMessage>>, BrokerError> {
        self.shards.get_or_try_init(|| self.start(topics)).await
    }

    /// Creates `__transaction_state` if needed, rebuilds every shard from it and starts the
    /// shard tasks.
    async fn start(
        &self,
        topics: &TopicRegistry,
    ) -> Result<Vec<mpsc::Sender<TxnMessage>>, BrokerError> {
        let topic = internal_topic(topics, TRANSACTION_STATE, self.partitions).await?;
        let mut shards = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let index = partition.index as usize;
            let now = now_ms();
            // The coordinator epoch grows with the shard's records, so that the markers of
            // an older run of this shard are told apart.
            let coordinator_epoch = partition.offsets().log_end_offset.min(i32::MAX as i64) as i32;
            let mut shard = TransactionShard::new(self.config.clone(), coordinator_epoch, now);
            let replayed = replay(partition, |key, value| {
                if let Err(error) = shard.replay(key, value) {
                    tracing::warn!(partition = index, %error, "skipping an unreadable __transaction_state record");
                }
            })
            .await?;
            if replayed > 0 {
                tracing::info!(
                    partition = index,
                    records = replayed,
                    "transaction coordinator shard loaded"
                );
            }
            for job in shard.pending_markers() {
                let _ = self.marker_sender.send((index, job));
            }
            let (sender, receiver) = mpsc::channel(1024);
            let driver = ShardDriver {
                index,
                partition: Arc::clone(partition),
                markers: self.marker_sender.clone(),
            };
            tokio::spawn(driver.run(shard, receiver));
            shards.push(sender);
        }
        Ok(shards)
    }

    /// Runs an operation on the shard of `transactional_id` (as Kafka places it: the same
    /// hash as a group's).
    pub async fn call(
        &self,
        topics: &TopicRegistry,
        transactional_id: &str,
        operation: TxnOperation,
    ) -> TxnResponse {
        let count = match self.shards(topics).await {
            Ok(shards) => shards.len(),
            Err(error) => {
                tracing::warn!(%error, "could not start the transaction coordinator");
                return TxnResponse::Error(ResponseError::CoordinatorNotAvailable);
            }
        };
        let shard = partition_for_group(transactional_id, count as i32) as usize;
        self.call_shard(shard, operation).await
    }

    async fn call_shard(&self, shard: usize, operation: TxnOperation) -> TxnResponse {
        let unavailable = TxnResponse::Error(ResponseError::CoordinatorNotAvailable);
        let Some(sender) = self.shards.get().and_then(|s| s.get(shard)) else {
            return unavailable;
        };
        let (reply, answer) = oneshot::channel();
        if sender
            .send(TxnMessage::Operation { operation, reply })
            .await
            .is_err()
        {
            return unavailable;
        }
        answer.await.unwrap_or(unavailable)
    }

    /// What `look` finds in each shard, in shard order; nothing at all while no transactional
    /// producer has come (there are no shards then).
    pub async fn look_all<T: Send + 'static>(
        &self,
        look: impl Fn(&TransactionShard) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let Some(shards) = self.shards.get() else {
            return Vec::new();
        };
        let look = Arc::new(look);
        let mut found = Vec::with_capacity(shards.len());
        for sender in shards {
            let (reply, answer) = oneshot::channel();
            let look = Arc::clone(&look);
            let message = TxnMessage::Look(Box::new(move |shard| {
                let _ = reply.send(look(shard));
            }));
            if sender.send(message).await.is_ok() {
                if let Ok(value) = answer.await {
                    found.push(value);
                }
            }
        }
        found
    }

    /// What `look` finds in the shard of `transactional_id`, if there are shards.
    pub async fn look<T: Send + 'static>(
        &self,
        transactional_id: &str,
        look: impl FnOnce(&TransactionShard) -> T + Send + 'static,
    ) -> Option<T> {
        let shards = self.shards.get()?;
        let shard = partition_for_group(transactional_id, shards.len() as i32) as usize;
        let (reply, answer) = oneshot::channel();
        let message = TxnMessage::Look(Box::new(move |shard| {
            let _ = reply.send(look(shard));
        }));
        shards[shard].send(message).await.ok()?;
        answer.await.ok()
    }

    /// Starts the task that writes transaction markers; once, when the broker serves.
    pub(crate) fn start_markers(broker: &Arc<Broker>) {
        let Some(transactions) = broker.transactions.as_ref() else {
            return;
        };
        let taken = transactions
            .markers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(work) = taken {
            tokio::spawn(write_markers(Arc::clone(broker), work));
        }
    }
}

/// What a shard's task needs besides the shard itself.
struct ShardDriver {
    index: usize,
    /// Its partition of `__transaction_state`.
    partition: Arc<Partition>,
    markers: mpsc::UnboundedSender<MarkerWork>,
}

impl ShardDriver {
    async fn run(self, mut shard: TransactionShard, mut requests: mpsc::Receiver<TxnMessage>) {
        loop {
            let wait = Duration::from_millis((shard.next_due() - now_ms()).max(0) as u64);
            tokio::select! {
                message = requests.recv() => match message {
                    None => return,
                    Some(TxnMessage::Operation { operation, reply }) => {
                        let response = self.step(&mut shard, operation).await;
                        let _ = reply.send(response);
                    }
                    Some(TxnMessage::Look(look)) => look(&shard),
                },
                _ = tokio::time::sleep(wait) => {
                    self.step(&mut shard, TxnOperation::Deadline).await;
                }
            }
        }
    }

    /// Runs one operation: appends what it wrote, replays it, hands its markers over.
    async fn step(&self, shard: &mut TransactionShard, operation: TxnOperation) -> TxnResponse {
        let staged = shard.execute(now_ms(), operation);
        if !staged.records.is_empty() {
            if let Err(error) = self.append(&staged.records).await {
                tracing::warn!(partition = self.index, %error, "could not write to __transaction_state; the operation is refused and the client retries");
                return TxnResponse::Error(ResponseError::CoordinatorNotAvailable);
            }
            for record in &staged.records {
                if let Err(error) = shard.replay(&record.key, record.value.as_deref()) {
                    tracing::error!(partition = self.index, %error, "a record just written does not replay");
                }
            }
        }
        for job in staged.markers {
            let _ = self.markers.send((self.index, job));
        }
        staged.response
    }

    async fn append(&self, records: &[TxnRecord]) -> Result<(), LogError> {
        let pairs: Vec<batch::KeyValue<'_>> = records
            .iter()
            .map(|r| (Some(r.key.as_slice()), r.value.as_deref()))
            .collect();
        let encoded = batch::build_batch(&pairs, now_ms()).to_vec();
        self.partition.append(encoded, now_ms()).await.map(|_| ())
    }
}

/// How long a marker that could not be written waits before it is tried again, at most.
const MARKER_RETRY_MAX: Duration = Duration::from_secs(5);

/// Writes the markers of each transaction into its partitions, then tells its shard. A
/// partition that cannot be written now is tried again; one whose topic was deleted is
/// passed over.
async fn write_markers(broker: Arc<Broker>, mut work: mpsc::UnboundedReceiver<MarkerWork>) {
    while let Some((shard, job)) = work.recv().await {
        let marker = TxnMarker {
            producer_id: job.producer_id,
            producer_epoch: job.producer_epoch,
            commit: job.commit,
            coordinator_epoch: job.coordinator_epoch,
        };
        for (topic, index) in &job.partitions {
            let mut backoff = Duration::from_millis(50);
            loop {
                match write_marker(&broker, topic, *index, marker).await {
                    // Written; or its topic is gone; or a newer epoch already ended this
                    // producer's transaction there.
                    Ok(())
                    | Err(ResponseError::UnknownTopicOrPartition)
                    | Err(ResponseError::InvalidProducerEpoch) => break,
                    Err(error) => {
                        tracing::warn!(%topic, partition = index, ?error, "could not write a transaction marker; trying again");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MARKER_RETRY_MAX);
                    }
                }
            }
        }
        let Some(transactions) = broker.transactions.as_ref() else {
            return;
        };
        let done = TxnOperation::MarkersWritten {
            transactional_id: job.transactional_id.clone(),
            producer_id: job.producer_id,
            producer_epoch: job.producer_epoch,
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            match transactions.call_shard(shard, done.clone()).await {
                // Its record could not be written: the transaction stays prepared until it is.
                TxnResponse::Error(ResponseError::CoordinatorNotAvailable) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MARKER_RETRY_MAX);
                }
                TxnResponse::Error(error) => {
                    tracing::debug!(transactional_id = %job.transactional_id, ?error, "transaction already completed");
                    break;
                }
                _ => break,
            }
        }
    }
}

/// The control batch of a transaction marker, as Kafka writes it.
pub(crate) fn marker_batch(marker: &TxnMarker) -> Vec<u8> {
    let encoded = batch::build_marker(
        marker.producer_id,
        marker.producer_epoch,
        marker.commit,
        marker.coordinator_epoch,
        now_ms(),
    );
    encoded.to_vec()
}

/// Writes a transaction marker into one partition, once: the error is what Kafka would
/// answer WriteTxnMarkers with. A `__consumer_offsets` partition is written through the
/// group coordinator shard that owns it, which commits or drops the offsets the transaction
/// holds there as it writes the marker.
pub(crate) async fn write_marker(
    broker: &Broker,
    topic: &str,
    index: i32,
    marker: TxnMarker,
) -> Result<(), ResponseError> {
    let Some(partition) = broker
        .topics
        .get(topic)
        .and_then(|t| t.partition(index).cloned())
    else {
        return Err(ResponseError::UnknownTopicOrPartition);
    };
    if topic == CONSUMER_OFFSETS {
        let client = ClientContext::default();
        let request = Request::TxnMarker(marker);
        return match broker
            .groups
            .call_shard(index as usize, &client, request)
            .await
        {
            Ok(Response::Done(0)) => Ok(()),
            Ok(Response::Done(code)) => {
                Err(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError))
            }
            Ok(_) => Err(ResponseError::UnknownServerError),
            Err(CoordinatorError::NotCoordinator) => Err(ResponseError::NotLeaderOrFollower),
            Err(CoordinatorError::Unavailable) => Err(ResponseError::CoordinatorNotAvailable),
        };
    }
    match partition.append(marker_batch(&marker), now_ms()).await {
        Ok(_) => Ok(()),
        Err(LogError::InvalidProducerEpoch) => Err(ResponseError::InvalidProducerEpoch),
        Err(LogError::NotLeader) => Err(ResponseError::NotLeaderOrFollower),
        Err(_) => Err(ResponseError::KafkaStorageError),
    }
}
