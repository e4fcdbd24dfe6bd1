//! The group coordinator's drivers: one task per `__consumer_offsets` partition, each owning
//! its shard's state machine, feeding it requests and time, and appending its records to the
//! partition it owns. Waiting joins and syncs are answered when the state machine says so,
//! and time is only looked at when the state machine's next deadline comes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use partita_groups::{partition_for_group, ClientContext, Coordinator, GroupConfig, Journal};
use partita_groups::{Record, Request, Response, Token};
use partita_log::batch;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::broker::now_ms;
use crate::error::BrokerError;
use crate::group_events::GroupEventLog;
use crate::partition::Partition;
use crate::topic_config::TopicOverrides;
use crate::topics::TopicRegistry;

/// Kafka's internal topic for committed offsets and group metadata.
pub const CONSUMER_OFFSETS: &str = "__consumer_offsets";

/// A request on its way to a shard, with where to send the answer.
struct ShardMessage {
    client: ClientContext,
    request: Request,
    reply: oneshot::Sender<Response>,
}

/// Handle to every coordinator shard.
pub struct GroupCoordinator {
    shards: Vec<mpsc::Sender<ShardMessage>>,
}

/// The coordinator is gone (the broker is shutting down).
#[derive(Debug)]
pub struct CoordinatorUnavailable;

impl GroupCoordinator {
    /// Creates `__consumer_offsets` if needed, rebuilds every shard from it and starts the
    /// shard tasks. Must be called within the runtime.
    pub fn start(
        topics: &TopicRegistry,
        config: &GroupConfig,
        events: Arc<GroupEventLog>,
    ) -> Result<GroupCoordinator, BrokerError> {
        let topic = match topics.get(CONSUMER_OFFSETS) {
            Some(topic) => topic,
            None => {
                let mut overrides = TopicOverrides::new();
                overrides.insert("cleanup.policy".to_string(), "compact".to_string());
                overrides.insert("segment.bytes".to_string(), "104857600".to_string());
                topics.create(
                    CONSUMER_OFFSETS,
                    config.offsets_topic_num_partitions,
                    overrides,
                )?
            }
        };
        let mut config = config.clone();
        // The partition count is fixed when the topic is created, as in Kafka.
        config.offsets_topic_num_partitions = topic.partitions.len() as i32;
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        let mut shards = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let mut coordinator = Coordinator::new(config.clone(), seed ^ partition.index as u64);
            let replayed = replay(&mut coordinator, partition)?;
            if replayed > 0 {
                tracing::info!(
                    partition = partition.index,
                    records = replayed,
                    "group coordinator shard loaded"
                );
            }
            let (sender, receiver) = mpsc::channel(1024);
            tokio::spawn(run_shard(
                coordinator,
                Arc::clone(partition),
                receiver,
                Arc::clone(&events),
            ));
            shards.push(sender);
        }
        Ok(GroupCoordinator { shards })
    }

    /// Sends a request to the shard of `group_id` and waits for its response.
    pub async fn call(
        &self,
        group_id: &str,
        client: &ClientContext,
        request: Request,
    ) -> Result<Response, CoordinatorUnavailable> {
        let shard = partition_for_group(group_id, self.shards.len() as i32) as usize;
        self.call_shard(shard, client, request).await
    }

    /// Sends a request to one shard.
    pub async fn call_shard(
        &self,
        shard: usize,
        client: &ClientContext,
        request: Request,
    ) -> Result<Response, CoordinatorUnavailable> {
        let (reply, response) = oneshot::channel();
        let message = ShardMessage {
            client: client.clone(),
            request,
            reply,
        };
        self.shards[shard]
            .send(message)
            .await
            .map_err(|_| CoordinatorUnavailable)?;
        response.await.map_err(|_| CoordinatorUnavailable)
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

/// A shard's journal: its own `__consumer_offsets` partition.
struct PartitionJournal {
    partition: Arc<Partition>,
}

impl Journal for PartitionJournal {
    fn append(&mut self, records: Vec<Record>) -> Result<(), String> {
        let pairs: Vec<batch::KeyValue<'_>> = records
            .iter()
            .map(|r| (Some(r.key.as_slice()), r.value.as_deref()))
            .collect();
        let mut encoded = batch::build_batch(&pairs, now_ms());
        self.partition
            .append(&mut encoded, now_ms())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Feeds every record of the partition to the shard; returns how many there were.
fn replay(coordinator: &mut Coordinator, partition: &Partition) -> Result<usize, BrokerError> {
    let now = now_ms();
    let mut offset = partition.offsets().log_start_offset;
    let mut count = 0;
    loop {
        let (bytes, offsets) = partition.read(offset, 1 << 20)?;
        if bytes.is_empty() {
            return Ok(count);
        }
        for range in
            batch::split_batches(&bytes).map_err(|e| BrokerError::Storage(e.to_string()))?
        {
            let one = &bytes[range];
            let header =
                batch::parse_header(one).map_err(|e| BrokerError::Storage(e.to_string()))?;
            offset = header.last_offset() + 1;
            let records = match batch::decode_records(one) {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(partition = partition.index, base_offset = header.base_offset, %error, "skipping an unreadable __consumer_offsets batch");
                    continue;
                }
            };
            for record in records {
                let Some(key) = record.key else { continue };
                if let Err(error) = coordinator.replay(now, key, record.value) {
                    tracing::warn!(partition = partition.index, offset = record.offset, %error, "skipping an unreadable __consumer_offsets record");
                }
                count += 1;
            }
        }
        if offset >= offsets.log_end_offset {
            return Ok(count);
        }
    }
}

/// The shard's task: requests in, responses out, and a timer set to the next deadline.
async fn run_shard(
    mut coordinator: Coordinator,
    partition: Arc<Partition>,
    mut requests: mpsc::Receiver<ShardMessage>,
    events: Arc<GroupEventLog>,
) {
    let mut journal = PartitionJournal { partition };
    let mut waiting: HashMap<Token, oneshot::Sender<Response>> = HashMap::new();
    let mut next_token: Token = 0;
    loop {
        let wake_at = coordinator.next_deadline().map(|deadline| {
            Instant::now() + Duration::from_millis((deadline - now_ms()).max(0) as u64)
        });
        let timer = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let responses = tokio::select! {
            message = requests.recv() => {
                let Some(message) = message else { return };
                next_token += 1;
                waiting.insert(next_token, message.reply);
                coordinator.handle(now_ms(), &mut journal, next_token, &message.client, message.request)
            }
            _ = timer => coordinator.tick(now_ms(), &mut journal),
        };
        events.record(coordinator.take_events());
        for (token, response) in responses {
            if let Some(reply) = waiting.remove(&token) {
                // The client may have gone; its answer is simply dropped.
                let _ = reply.send(response);
            }
        }
    }
}
