//! Share groups' membership, share sessions and share-partitions (KIP-932), as one sans-io
//! state machine. The broker drives it: heartbeats, acquisitions and acknowledgements in,
//! with `now`; the partitions whose state changed come out to be persisted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::partition::{
    AcknowledgeType, AcquiredRange, InvalidRecordState, SharePartition, SharePartitionConfig,
    ShareSnapshot,
};
use crate::consumer::TopicsImage;

/// A share-partition: group, topic id, partition.
pub type SharePartitionKey = (String, Uuid, i32);

/// Settings of share groups, with Kafka's property names.
#[derive(Clone, Debug)]
pub struct ShareConfig {
    /// `group.share.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// `group.share.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// Record locks, delivery limit and window size.
    pub partition: SharePartitionConfig,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            heartbeat_interval_ms: 5_000,
            session_timeout_ms: 45_000,
            partition: SharePartitionConfig::default(),
        }
    }
}

/// A member of a share group.
#[derive(Clone, Debug)]
pub struct ShareMember {
    /// Its member id (chosen by the client).
    pub member_id: String,
    /// Its `client.id`.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// Topics it subscribes to.
    pub subscribed: Vec<String>,
    /// Evicted unless it heartbeats before.
    pub session_deadline: i64,
    /// The assignment last sent to it.
    pub last_sent: Option<(i32, BTreeSet<(Uuid, i32)>)>,
}

/// A share group.
#[derive(Clone, Debug, Default)]
pub struct ShareGroup {
    /// Bumped by every change of membership or subscriptions.
    pub epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, ShareMember>,
    /// `share.auto.offset.reset`: where a new share-partition starts (`latest` by default).
    pub auto_offset_reset_earliest: bool,
}

/// A member's share session: the partitions its fetches cover, and the session epoch.
#[derive(Clone, Debug, Default)]
pub struct ShareSession {
    /// The epoch the next request must carry.
    pub next_epoch: i32,
    /// Partitions in the session.
    pub partitions: BTreeSet<(Uuid, i32)>,
}

/// Why a share fetch or acknowledgement is refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareRequestError {
    /// The member is not in the group.
    UnknownMemberId,
    /// No session for this member, and the request is not opening one.
    SessionNotFound,
    /// The request's session epoch is not the expected one.
    InvalidSessionEpoch,
}

impl ShareRequestError {
    /// The Kafka error.
    pub fn response_error(self) -> ResponseError {
        match self {
            ShareRequestError::UnknownMemberId => ResponseError::UnknownMemberId,
            ShareRequestError::SessionNotFound => ResponseError::ShareSessionNotFound,
            ShareRequestError::InvalidSessionEpoch => ResponseError::InvalidShareSessionEpoch,
        }
    }
}

/// All share groups of the broker.
#[derive(Default)]
pub struct ShareCoordinator {
    config: ShareConfig,
    groups: HashMap<String, ShareGroup>,
    partitions: HashMap<SharePartitionKey, SharePartition>,
    sessions: HashMap<(String, String), ShareSession>,
    dirty: BTreeSet<SharePartitionKey>,
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl ShareCoordinator {
    /// A coordinator with no groups.
    pub fn new(config: ShareConfig) -> ShareCoordinator {
        ShareCoordinator {
            config,
            ..ShareCoordinator::default()
        }
    }

    /// The groups, for describing and listing.
    pub fn groups(&self) -> &HashMap<String, ShareGroup> {
        &self.groups
    }

    /// The share-partitions of a group, with their state.
    pub fn partitions_of(&self, group_id: &str) -> Vec<(&SharePartitionKey, &SharePartition)> {
        let mut found: Vec<_> = self
            .partitions
            .iter()
            .filter(|((g, _, _), _)| g == group_id)
            .collect();
        found.sort_by(|a, b| a.0.cmp(b.0));
        found
    }

    /// One share-partition's state, if the group has read it.
    pub fn partition(&self, key: &SharePartitionKey) -> Option<&SharePartition> {
        self.partitions.get(key)
    }

    /// The lock duration members are told.
    pub fn lock_duration_ms(&self) -> i64 {
        self.config.partition.lock_duration_ms
    }

    /// Sets `share.auto.offset.reset` for a group (`earliest` or `latest`).
    pub fn set_auto_offset_reset(&mut self, group_id: &str, earliest: bool) {
        self.groups
            .entry(group_id.to_string())
            .or_default()
            .auto_offset_reset_earliest = earliest;
    }

    /// ShareGroupHeartbeat: join (epoch 0), leave (-1), or stay; every member is assigned
    /// every partition of the topics it subscribes to, so none sits idle.
    pub fn heartbeat(
        &mut self,
        now: i64,
        client_id: &str,
        client_host: &str,
        request: &ShareGroupHeartbeatRequest,
        topics: &TopicsImage,
    ) -> ShareGroupHeartbeatResponse {
        let fail = |error: ResponseError, message: &str| {
            ShareGroupHeartbeatResponse::default()
                .with_error_code(error.code())
                .with_error_message(Some(text(message)))
        };
        let group_id = request.group_id.to_string();
        let member_id = request.member_id.to_string();
        if group_id.trim().is_empty() {
            return fail(ResponseError::InvalidRequest, "GroupId can't be empty.");
        }
        if member_id.trim().is_empty() {
            return fail(ResponseError::InvalidRequest, "MemberId can't be empty.");
        }
        let epoch = request.member_epoch;
        if epoch == -1 {
            if !self
                .groups
                .get(&group_id)
                .is_some_and(|g| g.members.contains_key(&member_id))
            {
                return fail(ResponseError::UnknownMemberId, "unknown member");
            }
            // The session outlives the leave, so that a final ShareAcknowledge can close it.
            let session_key = (group_id.clone(), member_id.clone());
            let session = self.sessions.remove(&session_key);
            self.remove_member(&group_id, &member_id);
            if let Some(session) = session {
                self.sessions.insert(session_key, session);
            }
            return ShareGroupHeartbeatResponse::default()
                .with_member_id(Some(text(&member_id)))
                .with_member_epoch(-1);
        }
        let session_timeout = self.config.session_timeout_ms;
        let group = self.groups.entry(group_id.clone()).or_default();
        let known = group.members.contains_key(&member_id);
        if !known && epoch != 0 {
            return fail(ResponseError::UnknownMemberId, "unknown member");
        }
        if known && epoch != 0 && epoch > group.epoch {
            return fail(
                ResponseError::FencedMemberEpoch,
                "the member epoch is stale",
            );
        }
        if !known {
            let Some(names) = &request.subscribed_topic_names else {
                return fail(
                    ResponseError::InvalidRequest,
                    "SubscribedTopicNames must be set in first request.",
                );
            };
            group.members.insert(
                member_id.clone(),
                ShareMember {
                    member_id: member_id.clone(),
                    client_id: client_id.to_string(),
                    client_host: client_host.to_string(),
                    subscribed: names.iter().map(|n| n.to_string()).collect(),
                    session_deadline: 0,
                    last_sent: None,
                },
            );
            group.epoch += 1;
            tracing::info!(event = "share_member_joined", group = %group_id, member = %member_id, "share member joined");
        }
        let member = group.members.get_mut(&member_id).expect("member exists");
        if let Some(names) = &request.subscribed_topic_names {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            if names != member.subscribed {
                member.subscribed = names;
                group.epoch += 1;
            }
        }
        let member = group.members.get_mut(&member_id).expect("member exists");
        member.session_deadline = now + session_timeout;
        let assignment: BTreeSet<(Uuid, i32)> = member
            .subscribed
            .iter()
            .filter_map(|name| topics.by_name.get(name))
            .flat_map(|t| (0..t.partitions).map(move |p| (t.id, p)))
            .collect();
        let group_epoch = group.epoch;
        let send = epoch == 0
            || member
                .last_sent
                .as_ref()
                .is_none_or(|(_, sent)| *sent != assignment);
        let mut response = ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(text(&member_id)))
            .with_member_epoch(group_epoch)
            .with_heartbeat_interval_ms(self.config.heartbeat_interval_ms);
        if send {
            let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in &assignment {
                by_topic.entry(*topic).or_default().push(*partition);
            }
            response = response.with_assignment(Some(
                Assignment::default().with_topic_partitions(
                    by_topic
                        .into_iter()
                        .map(|(topic_id, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(partitions)
                        })
                        .collect(),
                ),
            ));
            member.last_sent = Some((group_epoch, assignment));
        }
        response
    }

    /// Checks a ShareFetch or ShareAcknowledge's member and session epoch, and updates the
    /// session: epoch 0 opens it with `partitions`, a positive epoch adds `partitions` and
    /// drops `forgotten`, -1 closes it. Returns the session's partitions.
    pub fn update_session(
        &mut self,
        group_id: &str,
        member_id: &str,
        session_epoch: i32,
        partitions: &[(Uuid, i32)],
        forgotten: &[(Uuid, i32)],
    ) -> Result<BTreeSet<(Uuid, i32)>, ShareRequestError> {
        let key = (group_id.to_string(), member_id.to_string());
        // A closing request may come after the member has left: it only ends the session.
        let is_member = self
            .groups
            .get(group_id)
            .is_some_and(|g| g.members.contains_key(member_id));
        let closing = session_epoch == -1 && self.sessions.contains_key(&key);
        if !(is_member || closing) {
            return Err(ShareRequestError::UnknownMemberId);
        }
        match session_epoch {
            0 => {
                let session = ShareSession {
                    next_epoch: 1,
                    partitions: partitions.iter().copied().collect(),
                };
                let partitions = session.partitions.clone();
                self.sessions.insert(key, session);
                Ok(partitions)
            }
            -1 => {
                let session = self
                    .sessions
                    .remove(&key)
                    .ok_or(ShareRequestError::SessionNotFound)?;
                Ok(session.partitions)
            }
            epoch => {
                let session = self
                    .sessions
                    .get_mut(&key)
                    .ok_or(ShareRequestError::SessionNotFound)?;
                if epoch != session.next_epoch {
                    return Err(ShareRequestError::InvalidSessionEpoch);
                }
                session.next_epoch = session.next_epoch.wrapping_add(1).max(1);
                session.partitions.extend(partitions.iter().copied());
                for gone in forgotten {
                    session.partitions.remove(gone);
                }
                Ok(session.partitions.clone())
            }
        }
    }

    /// The first offset a fetch for this share-partition should read from: its first
    /// available record, or the end of its window. Creates the share-partition on first use,
    /// starting at the log end (or log start with `share.auto.offset.reset=earliest`).
    pub fn next_fetch_offset(
        &mut self,
        key: &SharePartitionKey,
        now: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> i64 {
        let partition = self.partition_mut(key, log_start_offset, log_end_offset);
        partition.expire_locks(now);
        partition.skip_to(log_start_offset);
        partition.first_acquirable()
    }

    /// Acquires records below `upper_bound` for a member.
    pub fn acquire(
        &mut self,
        key: &SharePartitionKey,
        member_id: &str,
        now: i64,
        upper_bound: i64,
        max_records: usize,
    ) -> Vec<AcquiredRange> {
        let Some(partition) = self.partitions.get_mut(key) else {
            return Vec::new();
        };
        let acquired = partition.acquire(member_id, now, upper_bound, max_records);
        if !acquired.is_empty() {
            self.dirty.insert(key.clone());
        }
        acquired
    }

    /// Applies acknowledgements of one share-partition: (first, last, type) each.
    pub fn acknowledge(
        &mut self,
        key: &SharePartitionKey,
        member_id: &str,
        batches: &[(i64, i64, AcknowledgeType)],
    ) -> Result<(), InvalidRecordState> {
        let partition = self.partitions.get_mut(key).ok_or(InvalidRecordState)?;
        let mut result = Ok(());
        for &(first, last, kind) in batches {
            if let Err(error) = partition.acknowledge(member_id, first, last, kind) {
                result = Err(error);
            }
        }
        self.dirty.insert(key.clone());
        result
    }

    /// Lets time pass: members whose session timed out are removed, expired locks freed.
    pub fn tick(&mut self, now: i64) {
        let expired: Vec<(String, String)> = self
            .groups
            .iter()
            .flat_map(|(g, group)| {
                group
                    .members
                    .values()
                    .filter(|m| m.session_deadline <= now)
                    .map(move |m| (g.clone(), m.member_id.clone()))
            })
            .collect();
        for (group_id, member_id) in expired {
            tracing::info!(event = "share_member_removed", group = %group_id, member = %member_id, reason = "session_timeout", "share member removed: session timed out");
            self.remove_member(&group_id, &member_id);
        }
        for (key, partition) in self.partitions.iter_mut() {
            if partition.expire_locks(now) {
                self.dirty.insert(key.clone());
            }
        }
    }

    /// When [`ShareCoordinator::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let sessions = self
            .groups
            .values()
            .flat_map(|g| g.members.values().map(|m| m.session_deadline));
        let locks = self
            .partitions
            .values()
            .filter_map(SharePartition::next_deadline);
        sessions.chain(locks).min()
    }

    /// The share-partitions changed since the last call, with their snapshots to persist.
    pub fn take_dirty(&mut self) -> Vec<(SharePartitionKey, ShareSnapshot)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|key| {
                self.partitions
                    .get(&key)
                    .map(|p| (key.clone(), p.snapshot()))
            })
            .collect()
    }

    /// Restores a share-partition from its persisted snapshot, at start-up.
    pub fn restore(&mut self, key: SharePartitionKey, snapshot: &ShareSnapshot) {
        self.groups.entry(key.0.clone()).or_default();
        self.partitions.insert(
            key,
            SharePartition::restore(self.config.partition, snapshot),
        );
    }

    fn partition_mut(
        &mut self,
        key: &SharePartitionKey,
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> &mut SharePartition {
        let earliest = self
            .groups
            .get(&key.0)
            .is_some_and(|g| g.auto_offset_reset_earliest);
        let config = self.config.partition;
        self.partitions.entry(key.clone()).or_insert_with(|| {
            let start = if earliest {
                log_start_offset
            } else {
                log_end_offset
            };
            self.dirty.insert(key.clone());
            SharePartition::new(config, start)
        })
    }

    fn remove_member(&mut self, group_id: &str, member_id: &str) {
        if let Some(group) = self.groups.get_mut(group_id) {
            if group.members.remove(member_id).is_some() {
                group.epoch += 1;
            }
        }
        self.sessions
            .remove(&(group_id.to_string(), member_id.to_string()));
        for (key, partition) in self
            .partitions
            .iter_mut()
            .filter(|((g, _, _), _)| g == group_id)
        {
            partition.release_member(member_id);
            self.dirty.insert(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kafka_protocol::messages::{GroupId, TopicName};

    use super::*;
    use crate::consumer::TopicImage;

    const T: Uuid = Uuid::from_u128(9);

    fn topics() -> Arc<TopicsImage> {
        Arc::new(TopicsImage {
            by_name: BTreeMap::from([(
                "jobs".to_string(),
                TopicImage {
                    id: T,
                    partitions: 1,
                },
            )]),
        })
    }

    fn join(c: &mut ShareCoordinator, now: i64, member: &str) -> ShareGroupHeartbeatResponse {
        let request = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(text("workers")))
            .with_member_id(text(member))
            .with_member_epoch(0)
            .with_subscribed_topic_names(Some(vec![TopicName(text("jobs"))]));
        c.heartbeat(now, "client", "/127.0.0.1", &request, &topics())
    }

    #[test]
    fn every_member_is_assigned_the_single_partition() {
        let mut c = ShareCoordinator::new(ShareConfig::default());
        for member in ["a", "b", "c"] {
            let response = join(&mut c, 0, member);
            assert_eq!(response.error_code, 0);
            let assignment = response.assignment.expect("an assignment");
            assert_eq!(assignment.topic_partitions[0].partitions, vec![0]);
        }
    }

    #[test]
    fn members_of_one_partition_share_its_records() {
        let mut c = ShareCoordinator::new(ShareConfig::default());
        let key = ("workers".to_string(), T, 0);
        c.set_auto_offset_reset("workers", true);
        for member in ["a", "b"] {
            join(&mut c, 0, member);
            c.update_session("workers", member, 0, &[(T, 0)], &[])
                .unwrap();
        }
        assert_eq!(c.next_fetch_offset(&key, 0, 0, 10), 0);
        let a = c.acquire(&key, "a", 0, 10, 5);
        assert_eq!(c.next_fetch_offset(&key, 0, 0, 10), 5);
        let b = c.acquire(&key, "b", 0, 10, 5);
        assert_eq!((a[0].first_offset, a[0].last_offset), (0, 4));
        assert_eq!((b[0].first_offset, b[0].last_offset), (5, 9));
    }

    #[test]
    fn a_member_whose_session_times_out_gives_its_records_back() {
        let mut c = ShareCoordinator::new(ShareConfig::default());
        let key = ("workers".to_string(), T, 0);
        c.set_auto_offset_reset("workers", true);
        join(&mut c, 0, "a");
        join(&mut c, 0, "b");
        c.next_fetch_offset(&key, 0, 0, 3);
        c.acquire(&key, "a", 0, 3, 3);
        // Only b heartbeats.
        let stay = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(text("workers")))
            .with_member_id(text("b"))
            .with_member_epoch(2);
        c.heartbeat(40_000, "client", "/127.0.0.1", &stay, &topics());
        c.tick(45_000);
        assert!(!c.groups()["workers"].members.contains_key("a"));
        assert_eq!(c.next_fetch_offset(&key, 45_000, 0, 3), 0);
        let again = c.acquire(&key, "b", 45_000, 3, 3);
        assert_eq!(again[0].delivery_count, 2);
    }

    #[test]
    fn sessions_follow_kafkas_epochs() {
        let mut c = ShareCoordinator::new(ShareConfig::default());
        join(&mut c, 0, "a");
        assert_eq!(
            c.update_session("workers", "a", 1, &[], &[]),
            Err(ShareRequestError::SessionNotFound)
        );
        c.update_session("workers", "a", 0, &[(T, 0)], &[]).unwrap();
        assert_eq!(
            c.update_session("workers", "a", 2, &[], &[]),
            Err(ShareRequestError::InvalidSessionEpoch)
        );
        let partitions = c.update_session("workers", "a", 1, &[], &[]).unwrap();
        assert_eq!(
            partitions,
            BTreeSet::from([(T, 0)]),
            "an incremental request keeps the session's partitions"
        );
        assert_eq!(
            c.update_session("workers", "nobody", 0, &[], &[]),
            Err(ShareRequestError::UnknownMemberId)
        );
    }
}
