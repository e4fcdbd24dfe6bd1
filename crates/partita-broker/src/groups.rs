//! The group coordinator's shards, and the router in front of them.
//!
//! One task per `__consumer_offsets` partition owns that shard's state machine
//! ([`GroupShard`]): it runs each operation (a request, or a deadline that passed), appends
//! the records the operation wrote to the partition (on a blocking thread: the disk is never
//! touched from an async worker), and hands the outcome back to the shard, which then lets
//! the responses out or undoes the operation. Time is only looked at when the shard's next
//! deadline comes. A shard that panics is rebuilt from its partition and carries on; the
//! requests it held are answered COORDINATOR_NOT_AVAILABLE, so their clients retry.
//!
//! In cluster mode a shard is served by the broker that leads its partition: a task holds
//! its shard only while its partition's storage says this broker leads it, loads it again
//! when it leads at a new epoch (another broker may have written meanwhile), and answers
//! nothing while another broker leads, so that clients look for the coordinator again.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::ResponseError;
use partita_groups::shard::{BatchKind, GroupSummary, RecordLog};
use partita_groups::share::records::ShareStateKey;
use partita_groups::{
    partition_for_group, AppendError, ClientContext, GroupConfig, GroupShard, Operation, Record,
    Request, Response, Token,
};
use partita_log::batch::{self, BatchHeader};
use partita_log::LogError;
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

/// Kafka's internal topic for share-group state.
pub const SHARE_GROUP_STATE: &str = "__share_group_state";

/// How long a shard's group summaries may lag behind its groups.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// How often a shard's task checks whether this broker still leads its partition (cluster
/// mode; on a single node it always does): a failover waits for it.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(100);

/// The summaries one shard published, by group id.
type Published = RwLock<BTreeMap<String, Arc<GroupSummary>>>;

/// A request on its way to a shard, with where to send the answer.
struct ShardMessage {
    client: ClientContext,
    request: Request,
    reply: oneshot::Sender<Response>,
}

/// Routes each group's requests to the shard that owns the group.
pub struct ShardRouter {
    shards: Vec<mpsc::Sender<ShardMessage>>,
    /// What each shard last published of its groups.
    published: Vec<Arc<Published>>,
    /// Each shard's `__consumer_offsets` partition, which says whether this broker leads it.
    leaders: Vec<Arc<Partition>>,
}

/// Why a group's request got no answer from its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinatorError {
    /// Another broker coordinates the group (cluster mode): NOT_COORDINATOR, so that the
    /// client looks for its coordinator again.
    NotCoordinator,
    /// The broker is shutting down, or the shard failed or lost its partition while holding
    /// the request: COORDINATOR_NOT_AVAILABLE, which clients retry.
    Unavailable,
}

impl CoordinatorError {
    /// The Kafka error code.
    pub fn code(self) -> i16 {
        match self {
            CoordinatorError::NotCoordinator => ResponseError::NotCoordinator.code(),
            CoordinatorError::Unavailable => ResponseError::CoordinatorNotAvailable.code(),
        }
    }

    /// The error code of a request whose shard gave no answer, or an answer of the wrong
    /// kind (which does not happen).
    pub fn of(outcome: Result<Response, CoordinatorError>) -> i16 {
        outcome
            .err()
            .unwrap_or(CoordinatorError::Unavailable)
            .code()
    }
}

impl ShardRouter {
    /// Creates `__consumer_offsets` and `__share_group_state` if needed, and starts the
    /// shard tasks. Called at start-up, within the runtime. With `load_now` (a single node)
    /// every shard is rebuilt from its records before this returns, and a failure stops the
    /// start; in cluster mode, where leadership moves while brokers come up, each task loads
    /// its shard once this broker leads its partition.
    pub async fn start(
        topics: &TopicRegistry,
        config: &GroupConfig,
        events: Arc<GroupEventLog>,
        load_now: bool,
    ) -> Result<ShardRouter, BrokerError> {
        let offsets = internal_topic(
            topics,
            CONSUMER_OFFSETS,
            config.offsets_topic_num_partitions,
        )
        .await?;
        let mut config = config.clone();
        // The partition count is fixed when the topic is created, as in Kafka.
        config.offsets_topic_num_partitions = offsets.partitions.len() as i32;
        // Shard i keeps its share-group state in partition i of `__share_group_state`.
        let share_state = internal_topic(
            topics,
            SHARE_GROUP_STATE,
            config.offsets_topic_num_partitions,
        )
        .await?;
        let share_state = Arc::new(share_state.partitions.clone());
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        let mut shards = Vec::with_capacity(offsets.partitions.len());
        let mut published = Vec::with_capacity(offsets.partitions.len());
        let mut leaders = Vec::with_capacity(offsets.partitions.len());
        for partition in &offsets.partitions {
            let driver = ShardDriver {
                config: config.clone(),
                seed: seed ^ partition.index as u64,
                offsets: Arc::clone(partition),
                share_state: Arc::clone(&share_state),
                events: Arc::clone(&events),
                published: Arc::default(),
            };
            let shard = match partition.leader_epoch().filter(|_| load_now) {
                Some(epoch) => {
                    let mut shard = driver.load().await?;
                    driver.publish(&mut shard);
                    Some((epoch, shard))
                }
                None => None,
            };
            published.push(Arc::clone(&driver.published));
            leaders.push(Arc::clone(partition));
            let (sender, receiver) = mpsc::channel(1024);
            tokio::spawn(driver.run(shard, receiver));
            shards.push(sender);
        }
        Ok(ShardRouter {
            shards,
            published,
            leaders,
        })
    }

    /// Whether this broker serves shard `shard` now (always, on a single node).
    pub fn leads(&self, shard: usize) -> bool {
        self.leaders.get(shard).is_some_and(|p| p.is_leader())
    }

    /// Sends a request to the shard of `group_id` and waits for its response.
    pub async fn call(
        &self,
        group_id: &str,
        client: &ClientContext,
        request: Request,
    ) -> Result<Response, CoordinatorError> {
        let shard = partition_for_group(group_id, self.shards.len() as i32) as usize;
        self.call_shard(shard, client, request).await
    }

    /// Sends a request to one shard.
    pub async fn call_shard(
        &self,
        shard: usize,
        client: &ClientContext,
        request: Request,
    ) -> Result<Response, CoordinatorError> {
        if !self.leads(shard) {
            return Err(CoordinatorError::NotCoordinator);
        }
        let (reply, response) = oneshot::channel();
        let message = ShardMessage {
            client: client.clone(),
            request,
            reply,
        };
        let unanswered = || match self.leads(shard) {
            true => CoordinatorError::Unavailable,
            false => CoordinatorError::NotCoordinator,
        };
        self.shards[shard]
            .send(message)
            .await
            .map_err(|_| unanswered())?;
        response.await.map_err(|_| unanswered())
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Every group as its shard last published it (at most [`PUBLISH_EVERY`] old), sorted
    /// by group id. Reads memory only.
    pub fn summaries(&self) -> Vec<Arc<GroupSummary>> {
        let mut all: Vec<Arc<GroupSummary>> = self
            .published
            .iter()
            .flat_map(|shard| {
                let groups = shard.read().unwrap_or_else(|p| p.into_inner());
                groups.values().cloned().collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        all
    }

    /// One group as its shard last published it.
    pub fn summary(&self, group_id: &str) -> Option<Arc<GroupSummary>> {
        let shard = partition_for_group(group_id, self.shards.len() as i32) as usize;
        let groups = self.published[shard]
            .read()
            .unwrap_or_else(|p| p.into_inner());
        groups.get(group_id).cloned()
    }
}

/// An internal compacted topic of the coordinator, created on first start with `partitions`
/// partitions, and grown to them if an older version made it with fewer. In cluster mode
/// another broker starting at the same time may create it first.
pub(crate) async fn internal_topic(
    topics: &TopicRegistry,
    name: &str,
    partitions: i32,
) -> Result<Arc<crate::topics::Topic>, BrokerError> {
    let topic = match topics.get(name) {
        Some(topic) => topic,
        None => {
            let mut overrides = TopicOverrides::new();
            overrides.insert("cleanup.policy".to_string(), "compact".to_string());
            overrides.insert("segment.bytes".to_string(), "104857600".to_string());
            match topics.create(name, partitions, overrides).await {
                Ok(topic) => topic,
                Err(BrokerError::TopicAlreadyExists(_)) => topics
                    .get(name)
                    .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?,
                Err(error) => return Err(error),
            }
        }
    };
    if name == SHARE_GROUP_STATE && (topic.partitions.len() as i32) < partitions {
        match topics.add_partitions(name, partitions, false).await {
            Ok(()) | Err(BrokerError::InvalidPartitions(_)) => {}
            Err(error) => return Err(error),
        }
        return topics
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()));
    }
    Ok(topic)
}

/// What a shard's task needs besides the shard itself.
struct ShardDriver {
    config: GroupConfig,
    seed: u64,
    /// Its partition of `__consumer_offsets`; its index is the shard's.
    offsets: Arc<Partition>,
    /// Every partition of `__share_group_state`: the shard writes to the one of its index,
    /// and reads its groups' records from all of them (older versions wrote to one).
    share_state: Arc<Vec<Arc<Partition>>>,
    events: Arc<GroupEventLog>,
    /// Where its group summaries are published.
    published: Arc<Published>,
}

/// Requests a shard holds until it answers them.
type Waiting = HashMap<Token, oneshot::Sender<Response>>;

impl ShardDriver {
    /// A shard rebuilt from every record of its partitions.
    async fn load(&self) -> Result<GroupShard, BrokerError> {
        let mut shard = GroupShard::new(self.config.clone(), self.seed);
        let now = now_ms();
        let index = self.offsets.index;
        // Offsets committed inside a transaction wait in the shard for the transaction's
        // marker, which follows them in the partition.
        let replayed = replay_batches(&self.offsets, |header, bytes| {
            if let Some((marker, _)) = batch::marker_of(header, bytes) {
                let commit = marker == batch::ControlType::Commit;
                shard.replay_marker(now, header.producer_id, commit);
                return 0;
            }
            let producer = header.is_transactional().then_some(header.producer_id);
            replay_records(header, bytes, index, |key, value| {
                let replayed = match producer {
                    Some(producer_id) => shard.replay_transactional(now, producer_id, key, value),
                    None => shard.replay(now, key, value),
                };
                if let Err(error) = replayed {
                    tracing::warn!(partition = index, %error, "skipping an unreadable __consumer_offsets record");
                }
            })
        })
        .await?;
        let shards = self.config.offsets_topic_num_partitions;
        let mut share_records = 0;
        // Partitions another broker leads hold none of this shard's groups (cluster mode
        // places partition i of both internal topics on the same broker).
        for partition in self.share_state.iter().filter(|p| p.is_leader()) {
            share_records += replay(partition, |key, value| {
                let group = match ShareStateKey::decode(key) {
                    Ok(
                        ShareStateKey::Snapshot { group, .. }
                        | ShareStateKey::GroupConfig { group },
                    ) => group,
                    Err(error) => {
                        tracing::warn!(partition = partition.index, %error, "skipping an unreadable __share_group_state record");
                        return;
                    }
                };
                if partition_for_group(&group, shards) != index {
                    return;
                }
                if let Err(error) = shard.replay_share(now, key, value) {
                    tracing::warn!(partition = partition.index, %error, "skipping an unreadable __share_group_state record");
                }
            })
            .await?;
        }
        shard.finish_loading(now);
        if replayed > 0 || share_records > 0 {
            tracing::info!(
                partition = index,
                records = replayed,
                "group coordinator shard loaded"
            );
        }
        Ok(shard)
    }

    /// The shard's task: requests in, responses out, and a timer set to the next deadline.
    /// `held` is the shard with the leader epoch it was loaded at, or `None` while another
    /// broker leads its partition.
    async fn run(
        self,
        mut held: Option<(i32, GroupShard)>,
        mut requests: mpsc::Receiver<ShardMessage>,
    ) {
        let mut waiting = Waiting::new();
        let mut next_token: Token = 0;
        let mut published_at = Instant::now();
        let mut publish_at: Option<Instant> = None;
        loop {
            held = self.follow_leadership(held, &mut waiting).await;
            let mut wake_at = Instant::now() + LEADERSHIP_CHECK;
            if let Some((epoch, mut shard)) = held.take() {
                while let Some(operation) = shard.next_due(now_ms()) {
                    shard = self.step(shard, operation, &mut waiting).await;
                }
                // A change is published at once after a quiet spell, and a burst of changes
                // once more at its end: summaries are never more than PUBLISH_EVERY behind.
                if shard.has_changed_summaries() && publish_at.is_none() {
                    publish_at = Some(published_at + PUBLISH_EVERY);
                }
                if publish_at.is_some_and(|at| at <= Instant::now()) {
                    self.publish(&mut shard);
                    published_at = Instant::now();
                    publish_at = None;
                }
                if let Some(deadline) = shard.next_deadline() {
                    let due = Duration::from_millis((deadline - now_ms()).max(0) as u64);
                    wake_at = wake_at.min(Instant::now() + due);
                }
                held = Some((epoch, shard));
            }
            if let Some(at) = publish_at {
                wake_at = wake_at.min(at);
            }
            tokio::select! {
                message = requests.recv() => {
                    let Some(message) = message else { return };
                    // While another broker leads the partition the request gets no answer,
                    // which its handler turns into COORDINATOR_NOT_AVAILABLE.
                    let Some((epoch, shard)) = held.take() else { continue };
                    next_token += 1;
                    waiting.insert(next_token, message.reply);
                    let operation = Operation::Request {
                        token: next_token,
                        client: message.client,
                        request: message.request,
                    };
                    held = Some((epoch, self.step(shard, operation, &mut waiting).await));
                }
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    /// Keeps the shard only while this broker leads its partition at the epoch it was loaded
    /// at; loads it when this broker comes to lead it.
    async fn follow_leadership(
        &self,
        held: Option<(i32, GroupShard)>,
        waiting: &mut Waiting,
    ) -> Option<(i32, GroupShard)> {
        let index = self.offsets.index;
        match (held, self.offsets.leader_epoch()) {
            (Some((loaded, shard)), Some(epoch)) if loaded == epoch => Some((loaded, shard)),
            (None, None) => None,
            (held, epoch) => {
                if held.is_some() {
                    tracing::info!(
                        partition = index,
                        "no longer coordinating this shard's groups"
                    );
                }
                waiting.clear();
                self.published
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                let epoch = epoch?;
                match self.load().await {
                    Ok(mut shard) => {
                        self.publish(&mut shard);
                        tracing::info!(
                            partition = index,
                            epoch,
                            "coordinating this shard's groups"
                        );
                        Some((epoch, shard))
                    }
                    // Leadership moved on while the shard loaded: the next check sees it.
                    Err(BrokerError::Log(LogError::NotLeader)) => None,
                    Err(error) => {
                        tracing::warn!(partition = index, %error, "could not load the shard; trying again");
                        None
                    }
                }
            }
        }
    }

    /// Publishes the summaries of the groups that changed.
    fn publish(&self, shard: &mut GroupShard) {
        let (changed, gone) = shard.take_changed_summaries();
        let mut published = self.published.write().unwrap_or_else(|p| p.into_inner());
        for summary in changed {
            published.insert(summary.group_id.clone(), Arc::new(summary));
        }
        for group_id in gone {
            published.remove(&group_id);
        }
    }

    /// Runs one operation through the shard's door: execute, append, complete. A panic
    /// loses the shard's soft state, not its records: it is rebuilt from its partition.
    async fn step(
        &self,
        mut shard: GroupShard,
        operation: Operation,
        waiting: &mut Waiting,
    ) -> GroupShard {
        let staged = catch_unwind(AssertUnwindSafe(|| shard.execute(now_ms(), operation)));
        let outcome = match staged {
            Ok(staged) => {
                let appended = self.append(staged.records(), staged.batch()).await;
                catch_unwind(AssertUnwindSafe(|| {
                    shard.complete(now_ms(), staged, appended)
                }))
            }
            Err(panic) => Err(panic),
        };
        match outcome {
            Ok(responses) => {
                self.events.record(shard.take_events());
                for (token, response) in responses {
                    if let Some(reply) = waiting.remove(&token) {
                        // The client may have gone; its answer is simply dropped.
                        let _ = reply.send(response);
                    }
                }
                shard
            }
            Err(panic) => self.restart(panic, waiting).await.unwrap_or(shard),
        }
    }

    /// Rebuilds a shard that panicked. The requests it held get no answer, which their
    /// handlers turn into COORDINATOR_NOT_AVAILABLE.
    async fn restart(
        &self,
        panic: Box<dyn std::any::Any + Send>,
        waiting: &mut Waiting,
    ) -> Option<GroupShard> {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let index = self.offsets.index;
        tracing::error!(partition = index, panic = %message, "group coordinator shard failed; rebuilding it from its records");
        waiting.clear();
        let driver = ShardDriver {
            config: self.config.clone(),
            seed: self.seed.rotate_left(1),
            offsets: Arc::clone(&self.offsets),
            share_state: Arc::clone(&self.share_state),
            events: Arc::clone(&self.events),
            published: Arc::clone(&self.published),
        };
        match driver.load().await {
            Ok(shard) => Some(shard),
            Err(error) => {
                tracing::error!(partition = index, %error, "could not rebuild the group coordinator shard");
                None
            }
        }
    }

    /// Appends records to the shard's partitions, one batch per internal topic (the storage
    /// does its I/O off the async workers), or the transaction marker the operation wrote.
    /// An operation writes to one of them only.
    async fn append(&self, records: &[Record], kind: BatchKind) -> Result<(), AppendError> {
        let refused = |error: LogError| AppendError {
            producer_fenced: matches!(error, LogError::InvalidProducerEpoch),
            reason: error.to_string(),
        };
        if let BatchKind::Marker(marker) = kind {
            let encoded = crate::transactions::marker_batch(&marker);
            return match self.offsets.append(encoded, now_ms()).await {
                Ok(_) => Ok(()),
                Err(error) => Err(refused(error)),
            };
        }
        for log in [RecordLog::ConsumerOffsets, RecordLog::ShareGroupState] {
            let pairs: Vec<batch::KeyValue<'_>> = records
                .iter()
                .filter(|r| r.log == log)
                .map(|r| (Some(r.key.as_slice()), r.value.as_deref()))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let partition = match log {
                RecordLog::ConsumerOffsets => Arc::clone(&self.offsets),
                RecordLog::ShareGroupState => {
                    let index = self.offsets.index as usize;
                    Arc::clone(&self.share_state[index.min(self.share_state.len() - 1)])
                }
            };
            let encoded = match (log, kind) {
                (
                    RecordLog::ConsumerOffsets,
                    BatchKind::Transactional {
                        producer_id,
                        producer_epoch,
                    },
                ) => batch::build_transactional_batch(
                    &pairs,
                    now_ms(),
                    producer_id,
                    producer_epoch,
                    -1,
                ),
                _ => batch::build_batch(&pairs, now_ms()),
            };
            if let Err(error) = partition.append(encoded.to_vec(), now_ms()).await {
                return Err(refused(error));
            }
        }
        Ok(())
    }
}

/// Feeds every record of a compacted internal partition to `apply`, oldest first; returns
/// how many there were.
pub(crate) async fn replay(
    partition: &Partition,
    mut apply: impl FnMut(&[u8], Option<&[u8]>),
) -> Result<usize, BrokerError> {
    let index = partition.index;
    replay_batches(partition, |header, bytes| {
        replay_records(header, bytes, index, &mut apply)
    })
    .await
}

/// Feeds each keyed record of one batch to `apply`; returns how many there were. A batch
/// that does not decode is skipped with a warning.
fn replay_records(
    header: &BatchHeader,
    bytes: &[u8],
    partition: i32,
    mut apply: impl FnMut(&[u8], Option<&[u8]>),
) -> usize {
    let records = match batch::decode_records(bytes) {
        Ok(records) => records,
        Err(error) => {
            tracing::warn!(partition, base_offset = header.base_offset, %error, "skipping an unreadable batch of an internal topic");
            return 0;
        }
    };
    let mut count = 0;
    for record in records {
        let Some(key) = record.key else { continue };
        apply(key, record.value);
        count += 1;
    }
    count
}

/// Feeds every batch of an internal partition to `apply`, oldest first; returns the sum of
/// what `apply` counted.
async fn replay_batches(
    partition: &Partition,
    mut apply: impl FnMut(&BatchHeader, &[u8]) -> usize,
) -> Result<usize, BrokerError> {
    let mut offset = partition.offsets().log_start_offset;
    let mut count = 0;
    loop {
        let (bytes, offsets) = match partition.read(offset, 1 << 20).await {
            // The log start was not known until the first read loaded the partition (cluster
            // mode), or retention moved it meanwhile.
            Err(LogError::OffsetOutOfRange) if offset < partition.offsets().log_start_offset => {
                offset = partition.offsets().log_start_offset;
                continue;
            }
            other => other?,
        };
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
            count += apply(&header, one);
        }
        if offset >= offsets.log_end_offset {
            return Ok(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
    use partita_groups::shard::OffsetFetchGroup;

    use super::*;
    use crate::config::BrokerConfig;

    async fn commit(router: &ShardRouter, group: &str, offset: i64) -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(group.to_string().into()))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName("orders".into()))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        let client = ClientContext::default();
        match router
            .call(group, &client, Request::OffsetCommit(request, 8))
            .await
        {
            Ok(Response::OffsetCommit(r)) => r.topics[0].partitions[0].error_code,
            other => panic!("{other:?}"),
        }
    }

    async fn committed(router: &ShardRouter, group: &str) -> i64 {
        let request = Request::OffsetFetch(OffsetFetchGroup {
            group_id: group.to_string(),
            topics: Some(vec![("orders".to_string(), vec![0])]),
            member: None,
            require_stable: false,
        });
        let client = ClientContext::default();
        match router.call(group, &client, request).await {
            Ok(Response::OffsetFetch(r)) => r.topics[0].partitions[0].committed_offset,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_shard_that_panics_is_rebuilt_from_its_records_and_serves_again() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let mut groups = config.groups.clone();
        groups.offsets_topic_num_partitions = 3;
        let topics = TopicRegistry::open(&config).unwrap();
        let events = Arc::new(GroupEventLog::new(100));
        let router = ShardRouter::start(&topics, &groups, events, true)
            .await
            .unwrap();
        assert_eq!(commit(&router, "billing", 42).await, 0);
        let client = ClientContext::default();
        let failed = router
            .call("billing", &client, Request::Panic("billing".to_string()))
            .await;
        assert!(
            failed.is_err(),
            "the request that hit the panic has no answer"
        );
        assert_eq!(
            committed(&router, "billing").await,
            42,
            "rebuilt from its records"
        );
        assert_eq!(commit(&router, "billing", 43).await, 0);
        assert_eq!(committed(&router, "billing").await, 43);
    }
}
