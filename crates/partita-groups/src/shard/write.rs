//! The one door through which a shard's state is written.
//!
//! An operation writes records with [`GroupShard::write`], which replays each record on the
//! spot (so that the operation's later steps see it) and remembers what it replaces. What the
//! operation answered and what it would undo travel in the [`Staged`] write it returns;
//! [`GroupShard::complete`] then either lets the answers out (the records were appended) or
//! puts every group and offset it touched back as it was (they were not).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::deadlines::DeadlineKey;
use super::{
    log_event, BatchKind, GroupShard, OffsetKey, PendingOffsets, Request, Response, Token,
    TxnMarker,
};
use crate::classic::CommittedOffset;
use crate::events::GroupEvent;
use crate::records::{RecordKey, RecordValue};
use crate::shard::{Group, Record, RecordLog};
use crate::share::group::SharePartitionKey;
use crate::share::partition::SharePartition;
use crate::share::records::{ShareStateKey, ShareStateValue};

/// How long deadlines wait after an append failed, so that a storage outage is not retried
/// in a busy loop.
const STORAGE_RETRY_MS: i64 = 1_000;

/// Why the records of an operation could not be appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendError {
    /// What the storage said.
    pub reason: String,
    /// The partition refused the batch because its producer's epoch is older than one it
    /// has seen (a transaction marker of a fenced producer).
    pub producer_fenced: bool,
}

impl AppendError {
    /// The storage could not append; trying again later may work.
    pub fn new(reason: impl Into<String>) -> AppendError {
        AppendError {
            reason: reason.into(),
            producer_fenced: false,
        }
    }
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The API of the request an operation answers, to answer it with an error if its records
/// cannot be appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestKind {
    JoinGroup,
    SyncGroup,
    Heartbeat,
    LeaveGroup,
    OffsetCommit,
    OffsetDelete,
    TxnOffsetCommit,
    ConsumerGroupHeartbeat,
    DeleteGroup,
    TopicDeleted,
    ShareGroupHeartbeat,
    ShareAcknowledge,
    SharePlan,
    ShareAcquire,
    /// A request answered [`Response::Done`].
    Setting,
    ReadOnly,
}

impl RequestKind {
    pub(super) fn of(request: &Request) -> RequestKind {
        match request {
            Request::JoinGroup(..) => RequestKind::JoinGroup,
            Request::SyncGroup(..) => RequestKind::SyncGroup,
            Request::Heartbeat(..) => RequestKind::Heartbeat,
            Request::LeaveGroup(..) => RequestKind::LeaveGroup,
            Request::OffsetCommit(..) => RequestKind::OffsetCommit,
            Request::OffsetDelete(..) => RequestKind::OffsetDelete,
            Request::TxnOffsetCommit(..) => RequestKind::TxnOffsetCommit,
            Request::TxnMarker(..) => RequestKind::Setting,
            Request::ConsumerGroupHeartbeat(..) | Request::ConsumerGroupHeartbeatMayWait(..) => {
                RequestKind::ConsumerGroupHeartbeat
            }
            Request::ReleaseConsumerGroupHeartbeat(..) => RequestKind::Setting,
            Request::DeleteGroup(..) => RequestKind::DeleteGroup,
            Request::TopicDeleted(..) => RequestKind::TopicDeleted,
            Request::ShareGroupHeartbeat(..) => RequestKind::ShareGroupHeartbeat,
            Request::ShareAcknowledge(..) => RequestKind::ShareAcknowledge,
            Request::SharePlan(..) => RequestKind::SharePlan,
            Request::ShareAcquire(..) => RequestKind::ShareAcquire,
            Request::SetGroupConfig(..) => RequestKind::Setting,
            Request::OffsetFetch(..)
            | Request::DescribeGroup(..)
            | Request::ListGroups(..)
            | Request::ConsumerGroupDescribe(..)
            | Request::ShareGroupDescribe(..)
            | Request::ShareSession(..)
            | Request::GroupConfig(..)
            | Request::ShareGroupStatus(..) => RequestKind::ReadOnly,
            #[cfg(feature = "fault-injection")]
            Request::Panic(..) => RequestKind::ReadOnly,
        }
    }
}

/// What an operation replaced, to put it back.
#[derive(Debug, Default)]
struct Undo {
    /// Each group the operation may have changed, as it was before (`None`: it did not exist).
    groups: Vec<(String, Option<Group>)>,
    /// Each committed offset it wrote, as it was before, in the order written.
    offsets: Vec<(OffsetKey, Option<CommittedOffset>)>,
    /// Each producer's pending offsets it changed, as they were before.
    pending_offsets: Vec<(i64, Option<PendingOffsets>)>,
    /// Each share-partition it wrote, as it was before, in the order written.
    share_partitions: Vec<(SharePartitionKey, Option<SharePartition>)>,
    /// Each `share.auto.offset.reset` it wrote, as it was before.
    group_configs: Vec<(String, Option<BTreeMap<String, String>>)>,
}

/// The operation running now.
#[derive(Debug, Default)]
pub(super) struct Transaction {
    records: Vec<Record>,
    pub(super) responses: Vec<(Token, Response)>,
    pub(super) events: Vec<GroupEvent>,
    /// The request that started the operation, answered with an error if the append fails.
    pub(super) trigger: Option<(Token, RequestKind)>,
    /// When offsets expire next, once this operation (the expiry) is done.
    pub(super) next_offsets_expiry: Option<i64>,
    /// How its `__consumer_offsets` records are appended.
    pub(super) batch: BatchKind,
    /// The groups whose records other than committed offsets it wrote.
    pub(super) regrouped: BTreeSet<String>,
    undo: Undo,
}

/// The outcome of [`GroupShard::execute`]: records to append, and what follows from them.
#[must_use = "a staged write must be completed"]
#[derive(Debug)]
pub struct Staged {
    transaction: Transaction,
}

impl Staged {
    /// The records to append, in order; empty when the operation changed nothing durable.
    pub fn records(&self) -> &[Record] {
        &self.transaction.records
    }

    /// How the `__consumer_offsets` records are to be appended; for
    /// [`BatchKind::Marker`], a transaction marker is appended, and no record.
    pub fn batch(&self) -> BatchKind {
        self.transaction.batch
    }
}

impl GroupShard {
    /// Keeps a copy of `group_id` as it is, once per operation, to put it back if the
    /// operation's records cannot be appended. Called before an operation changes a group.
    pub(super) fn remember_group(&mut self, group_id: &str) {
        let undo = &mut self.transaction.undo;
        if undo.groups.iter().any(|(id, _)| id == group_id) {
            return;
        }
        let before = self.groups.get(group_id).cloned();
        undo.groups.push((group_id.to_string(), before));
    }

    /// The groups the running operation has touched so far.
    pub(super) fn touched_group_ids(&self) -> Vec<String> {
        let undo = &self.transaction.undo;
        undo.groups
            .iter()
            .map(|(group_id, _)| group_id.clone())
            .collect()
    }

    /// The heartbeats held by consumer groups the running operation deleted or converted, and
    /// not answered by it.
    pub(super) fn dropped_heartbeats(&self) -> Vec<Token> {
        let answered = |token: &Token| self.transaction.responses.iter().any(|(t, _)| t == token);
        let undo = &self.transaction.undo;
        undo.groups
            .iter()
            .filter(|(group_id, _)| !matches!(self.groups.get(group_id), Some(Group::Consumer(_))))
            .flat_map(|(_, before)| match before {
                Some(Group::Consumer(group)) => group.held.values().map(|h| h.token).collect(),
                _ => Vec::new(),
            })
            .filter(|token| !answered(token))
            .collect()
    }

    /// Writes one record: it is appended with the operation's others, and replayed now.
    pub(super) fn write(&mut self, now: i64, key: RecordKey, value: Option<RecordValue>) {
        let producer = match self.transaction.batch {
            BatchKind::Transactional { producer_id, .. } => Some(producer_id),
            BatchKind::Plain | BatchKind::Marker(_) => None,
        };
        match (&key, producer) {
            (RecordKey::OffsetCommit { .. }, Some(producer_id)) => {
                self.remember_pending(producer_id)
            }
            (
                RecordKey::OffsetCommit {
                    group,
                    topic,
                    partition,
                },
                None,
            ) => {
                let key = (group.clone(), topic.clone(), *partition);
                if value.is_none() {
                    // A tombstone drops the partition's offsets still in transactions too.
                    let holding: Vec<i64> = self
                        .pending_offsets
                        .iter()
                        .filter(|(_, pending)| pending.contains_key(&key))
                        .map(|(producer_id, _)| *producer_id)
                        .collect();
                    holding.into_iter().for_each(|p| self.remember_pending(p));
                }
                self.remember_offset(&key);
            }
            _ => {}
        }
        if let Some(group) = key.group() {
            // Replaying may create or remove the group itself.
            let group = group.to_string();
            self.remember_group(&group);
            if !matches!(key, RecordKey::OffsetCommit { .. }) {
                self.transaction.regrouped.insert(group);
            }
        }
        self.transaction.records.push(Record {
            log: RecordLog::ConsumerOffsets,
            key: key.encode(),
            value: value.as_ref().map(RecordValue::encode),
        });
        self.apply(now, producer, key, value);
    }

    /// Writes the marker ending a producer's transaction in this partition, and replays it
    /// now. The operation writes no record of its own.
    pub(super) fn write_marker(&mut self, now: i64, marker: TxnMarker) {
        self.remember_pending(marker.producer_id);
        let keys: Vec<OffsetKey> = self
            .pending_offsets
            .get(&marker.producer_id)
            .map(|pending| pending.keys().cloned().collect())
            .unwrap_or_default();
        for key in &keys {
            self.remember_offset(key);
            self.remember_group(&key.0);
        }
        self.transaction.batch = BatchKind::Marker(marker);
        self.apply_marker(now, marker.producer_id, marker.commit);
    }

    /// Keeps a committed offset as it is, to put it back if the operation fails.
    fn remember_offset(&mut self, (group, topic, partition): &OffsetKey) {
        let before = self
            .offsets
            .get(group)
            .and_then(|offsets| offsets.get(&(topic.clone(), *partition)))
            .cloned();
        let offset_key = (group.clone(), topic.clone(), *partition);
        self.transaction.undo.offsets.push((offset_key, before));
    }

    /// Keeps a producer's pending offsets as they are, once per operation, to put them back
    /// if the operation fails.
    fn remember_pending(&mut self, producer_id: i64) {
        let undo = &mut self.transaction.undo;
        if undo.pending_offsets.iter().any(|(p, _)| *p == producer_id) {
            return;
        }
        let before = self.pending_offsets.get(&producer_id).cloned();
        undo.pending_offsets.push((producer_id, before));
    }

    /// Writes one record of `__share_group_state`: appended with the operation's others, and
    /// replayed now.
    pub(super) fn write_share(
        &mut self,
        now: i64,
        key: ShareStateKey,
        value: Option<ShareStateValue>,
    ) {
        let undo = &mut self.transaction.undo;
        match &key {
            ShareStateKey::Snapshot {
                group,
                topic_id,
                partition,
            } => {
                let before = self
                    .share_partitions
                    .get(group)
                    .and_then(|partitions| partitions.get(&(*topic_id, *partition)))
                    .cloned();
                let partition_key = (group.clone(), *topic_id, *partition);
                undo.share_partitions.push((partition_key, before));
            }
            ShareStateKey::GroupConfig { group } => {
                let before = self.group_configs.get(group).cloned();
                undo.group_configs.push((group.clone(), before));
            }
        }
        let group = match &key {
            ShareStateKey::Snapshot { group, .. } | ShareStateKey::GroupConfig { group } => {
                group.clone()
            }
        };
        self.remember_group(&group);
        self.transaction.records.push(Record {
            log: RecordLog::ShareGroupState,
            key: key.encode(),
            value: value.as_ref().map(ShareStateValue::encode),
        });
        self.apply_share(now, key, value);
    }

    /// Ends the operation running now.
    pub(super) fn stage(&mut self) -> Staged {
        Staged {
            transaction: std::mem::take(&mut self.transaction),
        }
    }

    /// Completes an operation with the outcome of appending its records, and returns the
    /// responses now due. Appended: its responses and events go out. Not appended: every
    /// group and offset it touched is put back as it was, and the request that started it is
    /// answered with COORDINATOR_NOT_AVAILABLE (deadlines wait a second before running again).
    pub fn complete(
        &mut self,
        now: i64,
        staged: Staged,
        appended: Result<(), AppendError>,
    ) -> Vec<(Token, Response)> {
        let transaction = staged.transaction;
        let touched: Vec<String> = transaction
            .undo
            .groups
            .iter()
            .map(|(group_id, _)| group_id.clone())
            .collect();
        let responses = match appended {
            Ok(()) => {
                transaction.events.iter().for_each(log_event);
                self.events.extend(transaction.events);
                if let Some(next) = transaction.next_offsets_expiry {
                    self.deadlines.set(DeadlineKey::OffsetsExpiry, Some(next));
                }
                transaction.responses
            }
            Err(error) => {
                tracing::warn!(%error, records = transaction.records.len(), "coordinator records could not be appended; the operation is undone");
                self.undo(transaction.undo);
                self.deadlines.pause_until(now + STORAGE_RETRY_MS);
                let error = match error.producer_fenced {
                    true => ResponseError::InvalidProducerEpoch,
                    false => ResponseError::CoordinatorNotAvailable,
                };
                let mut answered: HashMap<Token, Response> =
                    transaction.responses.into_iter().collect();
                transaction
                    .trigger
                    .map(|(token, kind)| (token, failed(kind, answered.remove(&token), error)))
                    .into_iter()
                    .collect()
            }
        };
        for group_id in touched {
            self.reindex(&group_id);
            self.changed.insert(group_id);
        }
        responses
    }

    fn undo(&mut self, undo: Undo) {
        for (producer_id, before) in undo.pending_offsets.into_iter().rev() {
            match before {
                Some(pending) => self.pending_offsets.insert(producer_id, pending),
                None => self.pending_offsets.remove(&producer_id),
            };
        }
        for ((group, topic_id, partition), before) in undo.share_partitions.into_iter().rev() {
            let partitions = self.share_partitions.entry(group.clone()).or_default();
            match before {
                Some(state) => partitions.insert((topic_id, partition), state),
                None => partitions.remove(&(topic_id, partition)),
            };
            if partitions.is_empty() {
                self.share_partitions.remove(&group);
            }
        }
        for (group, before) in undo.group_configs.into_iter().rev() {
            match before {
                Some(configs) => self.group_configs.insert(group, configs),
                None => self.group_configs.remove(&group),
            };
        }
        for ((group, topic, partition), before) in undo.offsets.into_iter().rev() {
            let offsets = self.offsets.entry(group.clone()).or_default();
            match before {
                Some(offset) => offsets.insert((topic, partition), offset),
                None => offsets.remove(&(topic, partition)),
            };
            if offsets.is_empty() {
                self.offsets.remove(&group);
            }
        }
        for (group_id, before) in undo.groups {
            match before {
                Some(group) => self.groups.insert(group_id, group),
                None => self.groups.remove(&group_id),
            };
        }
    }

    /// Puts a group's next deadline in the index: its members', and for a share group, its
    /// records' acquisition locks.
    pub(super) fn reindex(&mut self, group_id: &str) {
        let locks = self
            .share_partitions
            .get(group_id)
            .into_iter()
            .flat_map(|partitions| partitions.values())
            .filter_map(SharePartition::next_deadline);
        let members = self.groups.get(group_id).and_then(Group::next_deadline);
        let next = locks.chain(members).min();
        self.deadlines
            .set(DeadlineKey::Group(group_id.to_string()), next);
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Sets `code` wherever an answer said success.
fn fail_successes<'a>(codes: impl Iterator<Item = &'a mut i16>, code: i16) {
    for error_code in codes.filter(|c| **c == 0) {
        *error_code = code;
    }
}

/// The answer to a request whose records could not be appended: what it would have been,
/// with `error` wherever it said success, or the API's error response.
fn failed(kind: RequestKind, answered: Option<Response>, error: ResponseError) -> Response {
    let code = error.code();
    match (kind, answered) {
        (_, Some(Response::TxnOffsetCommit(mut response))) => {
            let partitions = response.topics.iter_mut().flat_map(|t| &mut t.partitions);
            fail_successes(partitions.map(|p| &mut p.error_code), code);
            Response::TxnOffsetCommit(response)
        }
        (_, Some(Response::OffsetCommit(mut response))) => {
            let partitions = response.topics.iter_mut().flat_map(|t| &mut t.partitions);
            fail_successes(partitions.map(|p| &mut p.error_code), code);
            Response::OffsetCommit(response)
        }
        (RequestKind::JoinGroup, answered) => {
            let member_id = match answered {
                Some(Response::JoinGroup(response)) => response.member_id,
                _ => text(""),
            };
            Response::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(code)
                    .with_generation_id(-1)
                    .with_protocol_name(Some(text("")))
                    .with_leader(text(""))
                    .with_member_id(member_id),
            )
        }
        (RequestKind::SyncGroup, _) => {
            Response::SyncGroup(SyncGroupResponse::default().with_error_code(code))
        }
        (RequestKind::Heartbeat, _) => {
            Response::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        (RequestKind::LeaveGroup, _) => {
            Response::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        (RequestKind::OffsetDelete, _) => {
            Response::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
        }
        (RequestKind::ConsumerGroupHeartbeat, _) => Response::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(text(
                    "the coordinator could not store the group's state",
                ))),
        ),
        (RequestKind::DeleteGroup, _) => Response::DeleteGroup(code),
        (RequestKind::ShareGroupHeartbeat, _) => Response::ShareGroupHeartbeat(
            ShareGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(text(
                    "the coordinator could not store the group's state",
                ))),
        ),
        (RequestKind::ShareAcknowledge, Some(Response::ShareAcknowledged(partitions))) => {
            let failed = partitions
                .into_iter()
                .map(|(partition, own)| (partition, if own == 0 { code } else { own }))
                .collect();
            Response::ShareAcknowledged(failed)
        }
        (RequestKind::ShareAcknowledge, _) => Response::ShareAcknowledged(Vec::new()),
        // Nothing to read, and nothing acquired: the records stay where they were, for the
        // next fetch.
        (RequestKind::SharePlan, _) => Response::SharePlanned(Default::default()),
        (RequestKind::ShareAcquire, _) => Response::ShareAcquired(Vec::new()),
        (RequestKind::Setting, _) => Response::Done(code),
        (RequestKind::TopicDeleted, _) => Response::TopicDeleted(0),
        (RequestKind::OffsetCommit, _) => Response::OffsetCommit(OffsetCommitResponse::default()),
        (RequestKind::TxnOffsetCommit, _) => {
            Response::TxnOffsetCommit(TxnOffsetCommitResponse::default())
        }
        (RequestKind::ReadOnly, Some(response)) => response,
        (RequestKind::ReadOnly, None) => {
            Response::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
    }
}
