//! Deterministic tests of the classic group state machine, driven by a virtual clock.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::harness::{test_client, Driver};
use super::*;
use crate::classic::ClassicGroup;
use crate::classic::GroupState;
use crate::events::{GroupEventKind, RebalanceCause, RemovalReason};

const GROUP: &str = "billing";
const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A shard with its driver.
struct Harness {
    driver: Driver,
    config: GroupConfig,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        })
    }

    fn with_config(config: GroupConfig) -> Harness {
        Harness {
            driver: Driver::new(config.clone(), 7, 1_000_000),
            config,
        }
    }

    fn send(&mut self, request: Request) -> Token {
        self.driver.send_as(&test_client(), request)
    }

    fn advance(&mut self, ms: i64) {
        self.driver.advance(ms)
    }

    fn take(&mut self, token: Token) -> Option<Response> {
        self.driver.take(token)
    }

    fn classic_group(&self) -> Option<&ClassicGroup> {
        self.driver
            .shard
            .groups
            .get(GROUP)
            .and_then(Group::as_classic)
    }

    fn join_response(&mut self, token: Token) -> JoinGroupResponse {
        match self.take(token) {
            Some(Response::JoinGroup(response)) => response,
            other => panic!("expected a JoinGroup response, got {other:?}"),
        }
    }

    fn sync_response(&mut self, token: Token) -> SyncGroupResponse {
        match self.take(token) {
            Some(Response::SyncGroup(response)) => response,
            other => panic!("expected a SyncGroup response, got {other:?}"),
        }
    }

    fn join(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        protocols: &[(&str, &[u8])],
    ) -> Token {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_session_timeout_ms(SESSION)
            .with_rebalance_timeout_ms(REBALANCE)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(
                protocols
                    .iter()
                    .map(|(name, metadata)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(s(name))
                            .with_metadata(Bytes::copy_from_slice(metadata))
                    })
                    .collect(),
            );
        self.send(Request::JoinGroup(request, 7))
    }

    /// A dynamic member's two-step first join (KIP-394): returns its member id and the
    /// token of the join that waits for the rebalance.
    fn join_new(&mut self) -> (String, Token) {
        let first = self.join("", None, &[("range", b"m")]);
        let response = self.join_response(first);
        assert_eq!(response.error_code, ResponseError::MemberIdRequired.code());
        let member_id = response.member_id.to_string();
        let token = self.join(&member_id, None, &[("range", b"m")]);
        (member_id, token)
    }

    fn sync(&mut self, member_id: &str, generation: i32, assignments: &[(&str, &[u8])]) -> Token {
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation)
            .with_member_id(s(member_id))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(member))
                            .with_assignment(Bytes::copy_from_slice(assignment))
                    })
                    .collect(),
            );
        self.send(Request::SyncGroup(request, 4))
    }

    fn heartbeat(&mut self, member_id: &str, instance: Option<&str>, generation: i32) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(generation)
            .with_member_id(s(member_id))
            .with_group_instance_id(instance.map(s));
        let token = self.send(Request::Heartbeat(request));
        match self.take(token) {
            Some(Response::Heartbeat(response)) => response.error_code,
            other => panic!("expected a Heartbeat response, got {other:?}"),
        }
    }

    fn commit(&mut self, member_id: &str, generation: i32, offset: i64, metadata: &str) -> i16 {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(s(metadata)))])]);
        let token = self.send(Request::OffsetCommit(request, 8));
        match self.take(token) {
            Some(Response::OffsetCommit(response)) => response.topics[0].partitions[0].error_code,
            other => panic!("expected an OffsetCommit response, got {other:?}"),
        }
    }

    fn committed(&mut self) -> i64 {
        self.fetch(false).0
    }

    /// The committed offset of `orders`/0 and the partition's error code.
    fn fetch(&mut self, require_stable: bool) -> (i64, i16) {
        let token = self.send(Request::OffsetFetch(OffsetFetchGroup {
            group_id: GROUP.to_string(),
            topics: Some(vec![("orders".to_string(), vec![0])]),
            member: None,
            require_stable,
        }));
        match self.take(token) {
            Some(Response::OffsetFetch(group)) => {
                let partition = &group.topics[0].partitions[0];
                (partition.committed_offset, partition.error_code)
            }
            other => panic!("expected an OffsetFetch response, got {other:?}"),
        }
    }

    /// Commits `orders`/0 at `offset` inside the transaction of `producer_id`, as the
    /// member `member_id` of `generation`; the partition's error code.
    fn txn_commit(
        &mut self,
        producer_id: i64,
        member_id: &str,
        generation: i32,
        offset: i64,
    ) -> i16 {
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_group_id(GroupId(s(GROUP)))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(0)
            .with_generation_id(generation)
            .with_member_id(s(member_id))
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(s("")))])]);
        let token = self.send(Request::TxnOffsetCommit(request, 3));
        match self.take(token) {
            Some(Response::TxnOffsetCommit(response)) => {
                response.topics[0].partitions[0].error_code
            }
            other => panic!("expected a TxnOffsetCommit response, got {other:?}"),
        }
    }

    /// Ends the transaction of `producer_id` in the shard's partition.
    fn end_txn(&mut self, producer_id: i64, commit: bool) {
        let token = self.send(Request::TxnMarker(TxnMarker {
            producer_id,
            producer_epoch: 0,
            commit,
            coordinator_epoch: 1,
        }));
        assert!(matches!(self.take(token), Some(Response::Done(0))));
    }

    fn leave(&mut self, member_id: &str, instance: Option<&str>) -> LeaveGroupResponse {
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(s(member_id))
                .with_group_instance_id(instance.map(s))]);
        let token = self.send(Request::LeaveGroup(request, 5));
        match self.take(token) {
            Some(Response::LeaveGroup(response)) => response,
            other => panic!("expected a LeaveGroup response, got {other:?}"),
        }
    }

    fn state(&self) -> GroupState {
        self.classic_group().map_or(GroupState::Dead, |g| g.state)
    }

    fn generation(&self) -> i32 {
        self.classic_group().expect("the group").generation_id
    }

    /// Two members through a whole first rebalance; returns (leader, follower, generation).
    fn stable_pair(&mut self) -> (String, String, i32) {
        let (a, join_a) = self.join_new();
        let response_a = self.join_response(join_a);
        let generation = response_a.generation_id;
        let sync_a = self.sync(&a, generation, &[(&a, b"A")]);
        assert_eq!(self.sync_response(sync_a).assignment.as_ref(), b"A");
        // A second member joins: the leader learns of it through its heartbeat.
        let (b, join_b) = self.join_new();
        assert_eq!(
            self.heartbeat(&a, None, generation),
            ResponseError::RebalanceInProgress.code()
        );
        let rejoin_a = self.join(&a, None, &[("range", b"m")]);
        let leader = self.join_response(rejoin_a);
        let follower = self.join_response(join_b);
        assert_eq!(leader.members.len(), 2, "the leader gets every member");
        assert!(follower.members.is_empty(), "followers get no member list");
        let generation = leader.generation_id;
        let sync_b = self.sync(&b, generation, &[]);
        assert!(
            self.take(sync_b).is_none(),
            "a follower's sync waits for the leader's"
        );
        let sync_a = self.sync(&a, generation, &[(&a, b"A"), (&b, b"B")]);
        assert_eq!(self.sync_response(sync_a).assignment.as_ref(), b"A");
        assert_eq!(self.sync_response(sync_b).assignment.as_ref(), b"B");
        assert_eq!(self.state(), GroupState::Stable);
        (a, b, generation)
    }
}

#[test]
fn members_join_sync_and_get_the_leaders_assignment() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    assert_eq!(generation, 2);
    assert_eq!(h.heartbeat(&a, None, generation), 0);
    assert_eq!(h.heartbeat(&b, None, generation), 0);
    // The assignment was stored before it was handed out.
    assert!(h.driver.journal().iter().any(|r| r.value.is_some()));
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let mut h = Harness::with_config(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..GroupConfig::default()
    });
    let (_, join_a) = h.join_new();
    h.advance(2_000);
    assert!(h.take(join_a).is_none(), "still within the initial delay");
    let (_, join_b) = h.join_new();
    // B's arrival extends the delay by another 3 s from the first deadline.
    h.advance(1_500);
    assert!(
        h.take(join_a).is_none(),
        "the delay was extended by a new member"
    );
    h.advance(3_000);
    let response = h.join_response(join_a);
    assert_eq!(response.generation_id, 1);
    assert_eq!(h.join_response(join_b).generation_id, 1);
}

#[test]
fn stale_generations_unknown_members_and_rebalances_get_kafkas_errors() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    assert_eq!(
        h.heartbeat(&a, None, generation - 1),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        h.heartbeat("nobody", None, generation),
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        h.commit(&a, generation - 1, 5, ""),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        h.commit("nobody", generation, 5, ""),
        ResponseError::UnknownMemberId.code()
    );
    // A rebalance starts when B rejoins with new metadata.
    let rejoin_b = h.join(&b, None, &[("range", b"changed")]);
    assert!(h.take(rejoin_b).is_none());
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat(&a, None, generation),
        ResponseError::RebalanceInProgress.code()
    );
    // Commits of the current generation are still accepted while preparing (eager consumers
    // commit in their revocation callback).
    assert_eq!(h.commit(&a, generation, 7, ""), 0);
    assert_eq!(h.committed(), 7);
    let sync = h.sync(&a, generation, &[]);
    assert_eq!(
        h.sync_response(sync).error_code,
        ResponseError::RebalanceInProgress.code()
    );
}

#[test]
fn a_member_without_heartbeats_is_evicted_after_its_session_timeout() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    // A keeps heartbeating; B falls silent.
    for _ in 0..3 {
        h.advance(i64::from(SESSION) / 3);
        assert_eq!(h.heartbeat(&a, None, generation), 0);
    }
    h.advance(i64::from(SESSION) / 3);
    assert_eq!(h.state(), GroupState::PreparingRebalance, "B was evicted");
    assert!(!h.classic_group().unwrap().members.contains_key(&b));
    assert_eq!(
        h.heartbeat(&a, None, generation),
        ResponseError::RebalanceInProgress.code()
    );
    let rejoin = h.join(&a, None, &[("range", b"m")]);
    let response = h.join_response(rejoin);
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(response.members.len(), 1);
    assert_eq!(
        h.heartbeat(&b, None, generation),
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    let rejoin_a = h.join(&a, None, &[("range", b"new")]);
    // B keeps heartbeating (its poll loop is stuck, its heartbeat thread is not) but never
    // rejoins.
    for _ in 0..10 {
        h.advance(i64::from(REBALANCE) / 10 - 1);
        if h.take(rejoin_a).is_some() {
            panic!("the join completed before the rebalance timeout");
        }
        h.heartbeat(&b, None, generation);
    }
    h.advance(20);
    let response = h.join_response(rejoin_a);
    assert_eq!(response.members.len(), 1, "B was removed");
    assert!(!h.classic_group().unwrap().members.contains_key(&b));
}

#[test]
fn a_static_member_that_restarts_keeps_its_assignment_without_a_rebalance() {
    let mut h = Harness::new();
    let first = h.join("", Some("pod-1"), &[("range", b"m")]);
    let joined = h.join_response(first);
    assert_eq!(joined.error_code, 0, "static members need no second join");
    let old_id = joined.member_id.to_string();
    let generation = joined.generation_id;
    let sync = h.sync(&old_id, generation, &[(&old_id, b"P0")]);
    assert_eq!(h.sync_response(sync).assignment.as_ref(), b"P0");

    // The process restarts: same instance id, no member id.
    let again = h.join("", Some("pod-1"), &[("range", b"m")]);
    let rejoined = h.join_response(again);
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, generation, "no rebalance");
    assert_ne!(rejoined.member_id.to_string(), old_id);
    assert_eq!(h.state(), GroupState::Stable);
    let new_id = rejoined.member_id.to_string();
    let sync = h.sync(&new_id, generation, &[]);
    assert_eq!(
        h.sync_response(sync).assignment.as_ref(),
        b"P0",
        "same assignment"
    );
    // The replaced member id is fenced.
    assert_eq!(
        h.heartbeat(&old_id, Some("pod-1"), generation),
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(h.heartbeat(&new_id, Some("pod-1"), generation), 0);
}

#[test]
fn a_join_during_sync_restarts_the_rebalance() {
    let mut h = Harness::new();
    let (a, join_a) = h.join_new();
    let generation = h.join_response(join_a).generation_id;
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    let follower_sync = h.sync(&a, generation, &[]);
    // A is the leader, so its sync completes at once; make a second member first instead.
    assert_eq!(h.sync_response(follower_sync).error_code, 0);
    let (b, join_b) = h.join_new();
    assert_eq!(h.state(), GroupState::PreparingRebalance);
    let rejoin_a = h.join(&a, None, &[("range", b"m")]);
    let leader = h.join_response(rejoin_a);
    h.join_response(join_b);
    let generation = leader.generation_id;
    let sync_b = h.sync(&b, generation, &[]);
    // Now a third member joins before the leader syncs: B's waiting sync is told to rejoin.
    let (_, _join_c) = h.join_new();
    assert_eq!(
        h.sync_response(sync_b).error_code,
        ResponseError::RebalanceInProgress.code()
    );
    assert_eq!(h.state(), GroupState::PreparingRebalance);
}

#[test]
fn a_leave_during_a_rebalance_lets_it_complete_without_the_leaver() {
    let mut h = Harness::new();
    let (a, b, _) = h.stable_pair();
    let rejoin_a = h.join(&a, None, &[("range", b"new")]);
    assert!(h.take(rejoin_a).is_none(), "waiting for B");
    let left = h.leave(&b, None);
    assert_eq!(left.members[0].error_code, 0);
    let response = h.join_response(rejoin_a);
    assert_eq!(response.members.len(), 1);
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    // Leaving again: the member is gone.
    assert_eq!(
        h.leave(&b, None).members[0].error_code,
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn leave_by_instance_id_fences_a_stale_member_id() {
    let mut h = Harness::new();
    let first = h.join("", Some("pod-1"), &[("range", b"m")]);
    let member = h.join_response(first).member_id.to_string();
    let response = h.leave("stale-id", Some("pod-1"));
    assert_eq!(
        response.members[0].error_code,
        ResponseError::FencedInstanceId.code()
    );
    let response = h.leave(&member, Some("pod-1"));
    assert_eq!(response.members[0].error_code, 0);
    assert_eq!(h.state(), GroupState::Empty);
}

#[test]
fn commits_are_checked_and_journaled_before_they_are_answered() {
    let mut h = Harness::new();
    // Consumers that assign partitions themselves commit with generation -1.
    assert_eq!(h.commit("", -1, 42, "meta"), 0);
    assert_eq!(h.committed(), 42);
    assert_eq!(h.driver.journal().len(), 1, "the commit was journaled");
    assert_eq!(
        h.commit("", -1, 43, &"x".repeat(5000)),
        ResponseError::OffsetMetadataTooLarge.code()
    );
    assert_eq!(h.committed(), 42);

    let (a, _, generation) = h.stable_pair();
    assert_eq!(
        h.commit("", -1, 50, ""),
        ResponseError::UnknownMemberId.code(),
        "group has members"
    );
    assert_eq!(h.commit(&a, generation, 60, ""), 0);
    assert_eq!(h.committed(), 60);
}

#[test]
fn a_commit_without_a_generation_is_taken_while_the_group_is_empty_whatever_member_it_names() {
    // As Kafka's ClassicGroup.validateOffsetCommit: librdkafka's consumers that assign
    // partitions themselves name their member id with generation -1.
    let mut h = Harness::new();
    let (a, b, _) = h.stable_pair();
    assert_eq!(
        h.commit("someone", -1, 5, ""),
        ResponseError::UnknownMemberId.code()
    );
    h.leave(&a, None);
    h.leave(&b, None);
    assert_eq!(h.state(), GroupState::Empty);
    assert_eq!(h.commit("someone", -1, 7, ""), 0);
    assert_eq!(h.committed(), 7);
}

#[test]
fn commits_during_completing_rebalance_are_refused() {
    let mut h = Harness::new();
    let (a, join_a) = h.join_new();
    let generation = h.join_response(join_a).generation_id;
    assert_eq!(h.state(), GroupState::CompletingRebalance);
    assert_eq!(
        h.commit(&a, generation, 1, ""),
        ResponseError::RebalanceInProgress.code()
    );
}

#[test]
fn a_restarted_coordinator_rebuilds_groups_and_offsets_from_its_journal() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    assert_eq!(h.commit(&a, generation, 99, "m"), 0);

    let mut restarted = Harness::new();
    restarted.driver.now = h.driver.now;
    restarted.driver.shard = h.driver.rebuilt(h.config.clone());
    assert_eq!(restarted.committed(), 99);
    assert_eq!(restarted.state(), GroupState::Stable);
    assert_eq!(restarted.generation(), generation);
    // Members carry on with their ids and generation.
    assert_eq!(restarted.heartbeat(&a, None, generation), 0);
    assert_eq!(restarted.heartbeat(&b, None, generation), 0);
    let sync = restarted.sync(&b, generation, &[]);
    assert_eq!(restarted.sync_response(sync).assignment.as_ref(), b"B");
}

#[test]
fn bad_joins_get_kafkas_errors() {
    let mut h = Harness::with_config(GroupConfig {
        initial_rebalance_delay_ms: 0,
        max_size: 1,
        ..GroupConfig::default()
    });
    let request = |group: &str, session: i32| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(session)
            .with_rebalance_timeout_ms(REBALANCE)
            .with_member_id(s(""))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(s("range"))
            ])
    };
    let token = h.send(Request::JoinGroup(request("", SESSION), 7));
    assert_eq!(
        h.join_response(token).error_code,
        ResponseError::InvalidGroupId.code()
    );
    let token = h.send(Request::JoinGroup(request(GROUP, 10), 7));
    assert_eq!(
        h.join_response(token).error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
    let token = h.send(Request::JoinGroup(request(GROUP, 999_999_999), 7));
    assert_eq!(
        h.join_response(token).error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
    let (_, first) = h.join_new();
    h.join_response(first);
    let token = h.join("", None, &[("range", b"m")]);
    assert_eq!(
        h.join_response(token).error_code,
        ResponseError::GroupMaxSizeReached.code()
    );
    // A member that supports none of the group's protocols.
    let token = h.join("", None, &[("roundrobin", b"m")]);
    assert_eq!(
        h.join_response(token).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
}

#[test]
fn the_protocol_most_members_prefer_among_those_all_support_wins() {
    let mut h = Harness::new();
    let first = h.join("", None, &[("range", b"1"), ("cooperative-sticky", b"1")]);
    let id = h.join_response(first).member_id.to_string();
    let first_join = h.join(&id, None, &[("range", b"1"), ("cooperative-sticky", b"1")]);
    assert_eq!(
        h.join_response(first_join).protocol_name.as_deref(),
        Some("range")
    );
    let Some(Group::Classic(group)) = h.driver.shard.groups.get_mut(GROUP) else {
        panic!("a classic group");
    };
    let mut second = group.members[&id].clone();
    second.member_id = "b".to_string();
    second.protocols = vec![
        ("cooperative-sticky".to_string(), Bytes::new()),
        ("range".to_string(), Bytes::new()),
    ];
    group.members.insert("b".to_string(), second.clone());
    second.member_id = "c".to_string();
    group.members.insert("c".to_string(), second);
    assert_eq!(
        group.select_protocol().as_deref(),
        Some("cooperative-sticky")
    );
}

#[test]
fn only_empty_groups_can_be_deleted() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    assert_eq!(h.commit(&a, generation, 5, ""), 0);
    let token = h.send(Request::DeleteGroup(GROUP.to_string()));
    assert!(
        matches!(h.take(token), Some(Response::DeleteGroup(code)) if code == ResponseError::NonEmptyGroup.code())
    );
    h.leave(&a, None);
    h.leave(&b, None);
    assert_eq!(h.state(), GroupState::Empty);
    let token = h.send(Request::DeleteGroup(GROUP.to_string()));
    assert!(matches!(h.take(token), Some(Response::DeleteGroup(0))));
    assert_eq!(h.committed(), -1);
    let tombstones = h
        .driver
        .journal()
        .iter()
        .rev()
        .take(2)
        .filter(|r| r.value.is_none())
        .count();
    assert_eq!(tombstones, 2, "offset and group metadata tombstones");
    let token = h.send(Request::DeleteGroup(GROUP.to_string()));
    assert!(
        matches!(h.take(token), Some(Response::DeleteGroup(code)) if code == ResponseError::GroupIdNotFound.code())
    );
}

#[test]
fn offsets_of_empty_groups_expire_after_the_retention_time() {
    let mut h = Harness::with_config(GroupConfig {
        initial_rebalance_delay_ms: 0,
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 10_000,
        ..GroupConfig::default()
    });
    assert_eq!(h.commit("", -1, 42, ""), 0);
    h.advance(50_000);
    assert_eq!(h.committed(), 42);
    h.advance(30_000);
    assert_eq!(h.committed(), -1, "expired");
    assert!(h.driver.journal().last().is_some_and(|r| r.value.is_none()));
}

#[test]
fn a_member_given_an_id_that_never_comes_back_does_not_block_the_group() {
    let mut h = Harness::new();
    let (a, b, _) = h.stable_pair();
    // A third member gets its id but never sends the second join.
    let first = h.join("", None, &[("range", b"m")]);
    assert_eq!(
        h.join_response(first).error_code,
        ResponseError::MemberIdRequired.code()
    );
    let rejoin_a = h.join(&a, None, &[("range", b"x")]);
    let rejoin_b = h.join(&b, None, &[("range", b"x")]);
    h.advance(i64::from(SESSION) + 1);
    assert_eq!(h.join_response(rejoin_a).members.len(), 2);
    h.join_response(rejoin_b);
}

#[test]
fn evictions_and_rebalances_are_reported_as_events_with_their_cause() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    h.driver.shard.take_events();
    for _ in 0..4 {
        h.advance(i64::from(SESSION) / 3);
        h.heartbeat(&a, None, generation);
    }
    let rejoin = h.join(&a, None, &[("range", b"m")]);
    let response = h.join_response(rejoin);
    let sync = h.sync(&a, response.generation_id, &[(&a, b"A")]);
    h.sync_response(sync);
    let events = h.driver.shard.take_events();
    let kinds: Vec<_> = events.iter().map(|e| &e.kind).collect();
    assert!(kinds.iter().any(|k| matches!(k, GroupEventKind::MemberRemoved { member_id, reason: RemovalReason::SessionTimeout } if *member_id == b)));
    assert!(kinds.iter().any(|k| matches!(k, GroupEventKind::RebalanceStarted { generation: g, cause: RebalanceCause::SessionTimeout } if *g == generation)));
    let completed = events
        .iter()
        .find_map(|e| match &e.kind {
            GroupEventKind::RebalanceCompleted {
                generation,
                started_at_ms,
                cause,
                ..
            } => Some((*generation, e.at_ms - started_at_ms, *cause)),
            _ => None,
        })
        .expect("a completed rebalance");
    assert_eq!(completed.0, generation + 1);
    assert_eq!(completed.2, RebalanceCause::SessionTimeout);
    assert!(completed.1 >= 0);
}

#[test]
fn offsets_committed_in_a_transaction_count_only_once_it_commits() {
    let mut h = Harness::new();
    assert_eq!(h.commit("", -1, 10, ""), 0);
    assert_eq!(h.txn_commit(7, "", -1, 20), 0);
    assert_eq!(
        h.fetch(false),
        (10, 0),
        "read_uncommitted still sees the old offset"
    );
    assert_eq!(
        h.fetch(true),
        (-1, ResponseError::UnstableOffsetCommit.code()),
        "require_stable waits for the transaction"
    );
    let restarted = h.driver.rebuilt(h.config.clone());
    assert_eq!(
        restarted.pending_offsets().count(),
        1,
        "pending offsets survive a restart"
    );

    h.end_txn(7, true);
    assert_eq!(h.fetch(true), (20, 0));
    let restarted = h.driver.rebuilt(h.config.clone());
    assert_eq!(restarted.offsets(GROUP).map(|o| o.len()), Some(1));
    assert_eq!(restarted.pending_offsets().count(), 0);
    assert_eq!(
        restarted
            .offsets(GROUP)
            .and_then(|o| o.values().next())
            .map(|c| c.offset),
        Some(20)
    );

    assert_eq!(h.txn_commit(7, "", -1, 30), 0);
    h.end_txn(7, false);
    assert_eq!(
        h.fetch(true),
        (20, 0),
        "an aborted transaction's offsets vanish"
    );
    let restarted = h.driver.rebuilt(h.config.clone());
    assert_eq!(
        restarted
            .offsets(GROUP)
            .and_then(|o| o.values().next())
            .map(|c| c.offset),
        Some(20)
    );
}

#[test]
fn a_commit_made_after_a_transactions_offset_wins_when_the_transaction_commits() {
    let mut h = Harness::new();
    assert_eq!(h.txn_commit(7, "", -1, 20), 0);
    assert_eq!(h.txn_commit(8, "", -1, 25), 0);
    assert_eq!(h.commit("", -1, 30, ""), 0);
    h.end_txn(7, true);
    assert_eq!(
        h.committed(),
        30,
        "the plain commit came after the transaction's"
    );
    // Producer 8's offset came after 7's but before the plain commit.
    assert_eq!(h.fetch(true).1, ResponseError::UnstableOffsetCommit.code());
    h.end_txn(8, true);
    assert_eq!(h.fetch(true), (30, 0));
    let restarted = h.driver.rebuilt(h.config.clone());
    assert_eq!(
        restarted
            .offsets(GROUP)
            .and_then(|o| o.values().next())
            .map(|c| c.offset),
        Some(30)
    );
}

#[test]
fn a_zombie_members_transaction_cannot_commit_offsets() {
    let mut h = Harness::new();
    let (a, b, generation) = h.stable_pair();
    assert_eq!(h.txn_commit(7, &a, generation, 5), 0);
    assert_eq!(
        h.txn_commit(8, &b, generation - 1, 6),
        ResponseError::IllegalGeneration.code(),
        "an older generation is fenced"
    );
    assert_eq!(
        h.txn_commit(8, "gone", generation, 6),
        ResponseError::UnknownMemberId.code()
    );
    // A producer that names no member (older clients) is let through.
    assert_eq!(h.txn_commit(9, "", -1, 7), 0);
    // Only the accepted commits wait for their transactions.
    assert_eq!(h.driver.shard.pending_offsets().count(), 2);
}

#[test]
fn a_marker_whose_append_fails_leaves_the_transaction_pending() {
    let mut h = Harness::new();
    assert_eq!(h.txn_commit(7, "", -1, 20), 0);
    h.driver.failing = true;
    let token = h.send(Request::TxnMarker(TxnMarker {
        producer_id: 7,
        producer_epoch: 0,
        commit: true,
        coordinator_epoch: 1,
    }));
    assert!(matches!(
        h.take(token),
        Some(Response::Done(code)) if code == ResponseError::CoordinatorNotAvailable.code()
    ));
    h.driver.failing = false;
    assert_eq!(h.fetch(true).1, ResponseError::UnstableOffsetCommit.code());
    h.end_txn(7, true);
    assert_eq!(h.fetch(true), (20, 0));
}

#[test]
fn pending_offsets_keep_an_empty_group_from_expiring() {
    let mut h = Harness::new();
    assert_eq!(h.txn_commit(7, "", -1, 20), 0);
    h.advance(h.config.offsets_retention_ms + 2 * h.config.offsets_retention_check_interval_ms);
    assert!(h.driver.shard.groups.contains_key(GROUP));
    h.end_txn(7, true);
    assert_eq!(h.committed(), 20);
}
