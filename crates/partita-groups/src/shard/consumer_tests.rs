//! Deterministic tests of KIP-848 consumer groups, driven by a virtual clock: reconciliation,
//! fencing, leaves, timeouts, static members, topic changes and replay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::harness::Driver;
use super::*;
use crate::consumer::{TopicImage, TopicsImage};

const GROUP: &str = "orders-app";
const TOPIC: Uuid = Uuid::from_u128(0xAA);

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

type Owned = BTreeMap<Uuid, BTreeSet<i32>>;

struct Harness {
    driver: Driver,
    config: GroupConfig,
    topics: SharedTopics,
}

/// What one heartbeat got back.
#[derive(Debug)]
struct Beat {
    error: i16,
    epoch: i32,
    assignment: Option<BTreeSet<i32>>,
}

impl Harness {
    fn new(partitions: i32) -> Harness {
        let config = GroupConfig {
            initial_rebalance_delay_ms: 0,
            consumer_session_timeout_ms: 10_000,
            ..GroupConfig::default()
        };
        let mut h = Harness {
            driver: Driver::new(config.clone(), 3, 5_000_000),
            config,
            topics: Arc::new(TopicsImage::default()),
        };
        h.set_partitions(partitions);
        h
    }

    fn set_partitions(&mut self, partitions: i32) {
        let mut by_name = BTreeMap::new();
        if partitions > 0 {
            by_name.insert(
                "orders".to_string(),
                TopicImage {
                    id: TOPIC,
                    partitions,
                },
            );
        }
        self.topics = Arc::new(TopicsImage::new(by_name));
    }

    fn send(&mut self, request: Request) -> Response {
        let client = ClientContext {
            client_id: "app".into(),
            client_host: "/127.0.0.1".into(),
        };
        let token = self.driver.send_as(&client, request);
        self.driver.take(token).expect("answered")
    }

    fn advance(&mut self, ms: i64) {
        self.driver.advance(ms)
    }

    #[allow(clippy::too_many_arguments)]
    fn heartbeat_with(
        &mut self,
        member: &str,
        epoch: i32,
        instance: Option<&str>,
        owned: Option<&Owned>,
        join: bool,
    ) -> Beat {
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_instance_id(instance.map(s))
            .with_rebalance_timeout_ms(if join { 30_000 } else { -1 })
            .with_topic_partitions(owned.map(wire_owned));
        if join {
            request = request.with_subscribed_topic_names(Some(vec![TopicName(s("orders"))]));
        }
        let topics = self.topics.clone();
        beat_of(self.send(Request::ConsumerGroupHeartbeat(request, 1, topics)))
    }

    /// A regular heartbeat the shard may hold, reporting what the member owns; its token.
    fn poll(&mut self, member: &str, epoch: i32, owned: &BTreeSet<i32>) -> Token {
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(Some(wire_owned(&Owned::from([(TOPIC, owned.clone())]))));
        let request = Request::ConsumerGroupHeartbeatMayWait(request, 1, self.topics.clone());
        self.driver.send_as(&ClientContext::default(), request)
    }

    /// The answer to a heartbeat sent with [`Harness::poll`], if it has been given.
    fn answered(&mut self, token: Token) -> Option<Beat> {
        self.driver.take(token).map(beat_of)
    }

    fn join(&mut self, member: &str) -> Beat {
        self.heartbeat_with(member, 0, None, Some(&Owned::new()), true)
    }

    /// A regular heartbeat reporting what the member owns.
    fn beat(&mut self, member: &str, epoch: i32, owned: &BTreeSet<i32>) -> Beat {
        let owned = Owned::from([(TOPIC, owned.clone())]);
        self.heartbeat_with(member, epoch, None, Some(&owned), false)
    }

    fn group(&self) -> &crate::consumer::ConsumerGroup {
        self.driver
            .shard
            .groups
            .get(GROUP)
            .and_then(Group::as_consumer)
            .expect("a consumer group")
    }

    /// No partition is held by two members at any time.
    fn assert_single_owners(&self) {
        let mut seen = BTreeSet::new();
        for member in self.group().members.values() {
            for set in [&member.assigned, &member.pending_revocation] {
                for p in set.get(&TOPIC).into_iter().flatten() {
                    assert!(seen.insert(*p), "partition {p} has two owners");
                }
            }
        }
    }

    /// Heartbeats every member, each reporting what it was last given, until the group is
    /// stable; returns each member's partitions.
    fn settle(&mut self, members: &mut BTreeMap<String, (i32, BTreeSet<i32>)>) {
        for _ in 0..10 {
            let ids: Vec<String> = members.keys().cloned().collect();
            for id in ids {
                let (epoch, owned) = members[&id].clone();
                let beat = self.beat(&id, epoch, &owned);
                assert_eq!(beat.error, 0, "{id}: {beat:?}");
                let owned = beat.assignment.unwrap_or(owned);
                members.insert(id, (beat.epoch, owned));
                self.assert_single_owners();
            }
            if self.group().state_name() == "Stable" {
                return;
            }
        }
        panic!("the group did not settle: {}", self.group().state_name());
    }
}

fn beat_of(response: Response) -> Beat {
    match response {
        Response::ConsumerGroupHeartbeat(r) | Response::HeldConsumerGroupHeartbeat(r, _) => Beat {
            error: r.error_code,
            epoch: r.member_epoch,
            assignment: r.assignment.map(|a| {
                a.topic_partitions
                    .iter()
                    .flat_map(|tp| tp.partitions.iter().copied())
                    .collect()
            }),
        },
        other => panic!("expected a heartbeat response, got {other:?}"),
    }
}

/// What a heartbeat says its member owns.
fn wire_owned(owned: &Owned) -> Vec<TopicPartitions> {
    owned
        .iter()
        .map(|(topic, partitions)| {
            TopicPartitions::default()
                .with_topic_id(*topic)
                .with_partitions(partitions.iter().copied().collect())
        })
        .collect()
}

fn set(ps: &[i32]) -> BTreeSet<i32> {
    ps.iter().copied().collect()
}

#[test]
fn a_lone_member_gets_every_partition_at_epoch_one() {
    let mut h = Harness::new(4);
    let beat = h.join("m1");
    assert_eq!(beat.error, 0);
    assert_eq!(beat.epoch, 1);
    assert_eq!(beat.assignment, Some(set(&[0, 1, 2, 3])));
    assert_eq!(h.group().state_name(), "Stable");
}

#[test]
fn partitions_are_revoked_before_they_are_given_to_a_new_member() {
    let mut h = Harness::new(4);
    h.join("m1");
    let joined = h.join("m2");
    assert_eq!(joined.epoch, 2, "the newcomer is at the new epoch at once");
    assert_eq!(
        joined.assignment,
        Some(BTreeSet::new()),
        "but gets nothing m1 still owns"
    );
    h.assert_single_owners();

    // m1 learns it must give up two partitions; its epoch stays until it has.
    let told = h.beat("m1", 1, &set(&[0, 1, 2, 3]));
    assert_eq!(told.epoch, 1);
    let kept = told.assignment.expect("a new assignment");
    assert_eq!(kept.len(), 2);
    // m2 still waits: the partitions are not released yet.
    let waiting = h.beat("m2", 2, &BTreeSet::new());
    assert!(waiting.assignment.is_none_or(|a| a.is_empty()));
    // m1 confirms; now it moves to epoch 2 and m2 gets the rest.
    let confirmed = h.beat("m1", 1, &kept);
    assert_eq!(confirmed.epoch, 2);
    let given = h
        .beat("m2", 2, &BTreeSet::new())
        .assignment
        .expect("released partitions");
    assert_eq!(given.len(), 2);
    assert!(given.is_disjoint(&kept));
    h.assert_single_owners();
    assert_eq!(h.group().state_name(), "Stable");
}

#[test]
fn partitions_that_stay_with_their_owner_are_never_revoked() {
    let mut h = Harness::new(6);
    let mut members = BTreeMap::new();
    for id in ["m1", "m2"] {
        let beat = h.join(id);
        members.insert(
            id.to_string(),
            (beat.epoch, beat.assignment.unwrap_or_default()),
        );
    }
    h.settle(&mut members);
    let before = members.clone();
    let beat = h.join("m3");
    members.insert(
        "m3".to_string(),
        (beat.epoch, beat.assignment.unwrap_or_default()),
    );
    h.settle(&mut members);
    for id in ["m1", "m2"] {
        let kept = members[id].1.intersection(&before[id].1).count();
        assert_eq!(
            kept, 2,
            "{id} keeps 2 of its 3 partitions: {:?} -> {:?}",
            before[id].1, members[id].1
        );
    }
    assert_eq!(members["m3"].1.len(), 2);
}

#[test]
fn stale_and_unknown_epochs_get_kafkas_errors() {
    let mut h = Harness::new(2);
    let first = h.join("m1");
    assert_eq!(
        h.beat("m1", 7, &set(&[0, 1])).error,
        ResponseError::FencedMemberEpoch.code()
    );
    assert_eq!(
        h.beat("ghost", 1, &BTreeSet::new()).error,
        ResponseError::UnknownMemberId.code()
    );
    // A second member moves m1 to a new epoch; m1's previous epoch is still accepted once
    // when it owns no more than it is assigned (its response may have been lost).
    h.join("m2");
    let revoking = h.beat("m1", first.epoch, &set(&[0, 1]));
    let kept = revoking.assignment.expect("revocation");
    let moved = h.beat("m1", first.epoch, &kept);
    assert_eq!(moved.epoch, 2);
    assert_eq!(
        h.beat("m1", first.epoch, &kept).error,
        0,
        "previous epoch, owned subset"
    );
    assert_eq!(
        h.beat("m1", first.epoch, &set(&[0, 1])).error,
        ResponseError::FencedMemberEpoch.code(),
        "previous epoch but owning partitions it no longer has"
    );
    // A fenced member rejoins with epoch 0 and the same id.
    assert_eq!(h.join("m1").error, 0);
}

#[test]
fn a_member_leaving_mid_reconciliation_frees_its_partitions() {
    let mut h = Harness::new(4);
    h.join("m1");
    h.join("m2");
    h.beat("m1", 1, &set(&[0, 1, 2, 3]));
    // m1 leaves while it still has partitions to revoke.
    let left = h.heartbeat_with("m1", -1, None, None, false);
    assert_eq!((left.error, left.epoch), (0, -1));
    let all = h.beat("m2", 2, &BTreeSet::new());
    assert!(all.epoch > 2, "the leave bumped the group epoch");
    assert_eq!(all.assignment, Some(set(&[0, 1, 2, 3])));
    assert_eq!(
        h.heartbeat_with("m1", 1, None, None, false).error,
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn a_deleted_topic_is_taken_away_from_its_subscribers() {
    let mut h = Harness::new(3);
    let joined = h.join("m1");
    assert_eq!(joined.assignment, Some(set(&[0, 1, 2])));
    h.set_partitions(0);
    let beat = h.beat("m1", joined.epoch, &set(&[0, 1, 2]));
    assert_eq!(beat.error, 0);
    assert_eq!(beat.assignment, Some(BTreeSet::new()), "revoked");
    let done = h.beat("m1", joined.epoch, &BTreeSet::new());
    assert!(done.epoch > joined.epoch);
    assert_eq!(h.group().state_name(), "Stable");
}

#[test]
fn new_partitions_reach_subscribed_groups() {
    let mut h = Harness::new(2);
    let joined = h.join("m1");
    h.set_partitions(4);
    let beat = h.beat("m1", joined.epoch, &set(&[0, 1]));
    assert_eq!(beat.assignment, Some(set(&[0, 1, 2, 3])));
}

#[test]
fn a_silent_member_is_fenced_after_the_session_timeout() {
    let mut h = Harness::new(2);
    h.join("m1");
    let mut members = BTreeMap::from([("m1".to_string(), (1, set(&[0, 1])))]);
    let beat = h.join("m2");
    members.insert(
        "m2".to_string(),
        (beat.epoch, beat.assignment.unwrap_or_default()),
    );
    h.settle(&mut members);
    // m2 keeps heartbeating, m1 falls silent.
    for _ in 0..4 {
        h.advance(4_000);
        let (epoch, owned) = members["m2"].clone();
        let beat = h.beat("m2", epoch, &owned);
        members.insert("m2".into(), (beat.epoch, beat.assignment.unwrap_or(owned)));
    }
    assert!(!h.group().members.contains_key("m1"), "m1 was fenced");
    assert_eq!(members["m2"].1, set(&[0, 1]), "m2 took over m1's partition");
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let mut h = Harness::new(2);
    h.join("m1");
    h.join("m2");
    h.beat("m1", 1, &set(&[0, 1])); // told to revoke one partition, never confirms
    for _ in 0..10 {
        h.advance(4_000);
        h.beat("m1", 1, &set(&[0, 1]));
        let m2_epoch = h.group().members["m2"].member_epoch;
        h.beat("m2", m2_epoch, &BTreeSet::new());
    }
    assert!(
        !h.group().members.contains_key("m1"),
        "fenced by its rebalance timeout"
    );
}

#[test]
fn a_static_member_that_comes_back_keeps_its_partitions_without_a_new_epoch() {
    let mut h = Harness::new(2);
    let joined = h.heartbeat_with("a-1", 0, Some("pod-a"), Some(&Owned::new()), true);
    assert_eq!(joined.assignment, Some(set(&[0, 1])));
    let epoch = h.group().group_epoch;
    let left = h.heartbeat_with("a-1", -2, Some("pod-a"), None, false);
    assert_eq!((left.error, left.epoch), (0, -2));
    // Another process may not take the instance id while it is held...
    // ...but the restarted one, with a new member id, gets the same partitions back.
    let back = h.heartbeat_with("a-2", 0, Some("pod-a"), Some(&Owned::new()), true);
    assert_eq!(back.error, 0);
    assert_eq!(back.assignment, Some(set(&[0, 1])));
    assert_eq!(h.group().group_epoch, epoch, "no new group epoch");
    // The old member id is fenced; a third process with the same instance id is refused.
    assert_eq!(
        h.heartbeat_with("a-1", back.epoch, Some("pod-a"), None, false)
            .error,
        ResponseError::FencedInstanceId.code()
    );
    assert_eq!(
        h.heartbeat_with("a-3", 0, Some("pod-a"), Some(&Owned::new()), true)
            .error,
        ResponseError::UnreleasedInstanceId.code()
    );
}

#[test]
fn a_restarted_coordinator_lets_members_carry_on_with_their_epochs() {
    let mut h = Harness::new(4);
    let mut members = BTreeMap::new();
    for id in ["m1", "m2"] {
        let beat = h.join(id);
        members.insert(
            id.to_string(),
            (beat.epoch, beat.assignment.unwrap_or_default()),
        );
    }
    h.settle(&mut members);
    let mut restarted = Harness::new(4);
    restarted.driver.now = h.driver.now;
    restarted.driver.shard = h.driver.rebuilt(h.config.clone());
    assert_eq!(restarted.group().state_name(), "Stable");
    for (id, (epoch, owned)) in &members {
        let beat = restarted.beat(id, *epoch, owned);
        assert_eq!((beat.error, beat.epoch), (0, *epoch), "{id} continues");
    }
    restarted.assert_single_owners();
}

#[test]
fn classic_and_consumer_groups_keep_their_protocol() {
    let mut h = Harness::new(2);
    h.join("m1");
    let classic = JoinGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range"))
        ]);
    match h.send(Request::JoinGroup(classic, 7)) {
        Response::JoinGroup(r) => {
            assert_eq!(
                r.error_code,
                ResponseError::InconsistentGroupProtocol.code()
            )
        }
        other => panic!("{other:?}"),
    }
    // The other way round: a consumer-protocol member cannot join an active classic group.
    let classic = JoinGroupRequest::default()
        .with_group_id(GroupId(s("classic-app")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range"))
        ]);
    h.send(Request::JoinGroup(classic, 3));
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("classic-app")))
        .with_member_id(s("x"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(1000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("orders"))]))
        .with_topic_partitions(Some(vec![]));
    let topics = h.topics.clone();
    match h.send(Request::ConsumerGroupHeartbeat(request, 1, topics)) {
        Response::ConsumerGroupHeartbeat(r) => {
            assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_heartbeats_are_refused_before_anything_changes() {
    let mut h = Harness::new(2);
    let bad_join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s("m1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(1000)
        .with_topic_partitions(Some(vec![]));
    let topics = h.topics.clone();
    match h.send(Request::ConsumerGroupHeartbeat(bad_join, 1, topics.clone())) {
        Response::ConsumerGroupHeartbeat(r) => {
            assert_eq!(
                r.error_code,
                ResponseError::InvalidRequest.code(),
                "no subscription"
            )
        }
        other => panic!("{other:?}"),
    }
    let bad_assignor = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s("m1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(1000)
        .with_server_assignor(Some(s("sticky-magic")))
        .with_subscribed_topic_names(Some(vec![TopicName(s("orders"))]))
        .with_topic_partitions(Some(vec![]));
    match h.send(Request::ConsumerGroupHeartbeat(bad_assignor, 1, topics)) {
        Response::ConsumerGroupHeartbeat(r) => {
            assert_eq!(r.error_code, ResponseError::UnsupportedAssignor.code())
        }
        other => panic!("{other:?}"),
    }
    assert!(!h.driver.shard.groups.contains_key(GROUP));
}

/// An OffsetCommit of offset 5 on orders-0 with epoch -1, naming `member`.
fn commit_without_epoch(member: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(member))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(5),
                ]),
        ])
}

#[test]
fn offsets_of_a_topic_a_live_consumer_group_subscribes_to_cannot_be_deleted() {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    let mut h = Harness::new(2);
    h.join("m1");
    h.send(Request::OffsetCommit(commit_without_epoch(""), 8));
    let delete = |topic: &str| {
        Request::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]),
        )
    };
    let code = |response: Response| match response {
        Response::OffsetDelete(r) => {
            assert_eq!(r.error_code, 0);
            r.topics[0].partitions[0].error_code
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(h.send(delete("orders"))),
        ResponseError::GroupSubscribedToTopic.code()
    );
    // A topic nobody subscribes to may go.
    assert_eq!(code(h.send(delete("archive"))), 0);
}

#[test]
fn a_commit_without_an_epoch_is_taken_once_the_group_is_empty_whatever_member_it_names() {
    // As Kafka's ConsumerGroup.validateOffsetCommit: librdkafka's KIP-848 consumers that
    // assign partitions themselves send their member id with epoch -1.
    let mut h = Harness::new(2);
    h.join("m1");
    let commit = |member: &str| Request::OffsetCommit(commit_without_epoch(member), 9);
    let code = |response: Response| match response {
        Response::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(h.send(commit("assigner"))),
        ResponseError::UnknownMemberId.code(),
        "the group has a member"
    );
    h.beat("m1", -1, &set(&[]));
    assert!(h.group().members.is_empty());
    assert_eq!(code(h.send(commit("assigner"))), 0);
}

const LOGS_A: Uuid = Uuid::from_u128(0xA1);
const LOGS_B: Uuid = Uuid::from_u128(0xB1);
const LOGS_C: Uuid = Uuid::from_u128(0xC1);

/// An image of `orders` (two partitions) and the named `logs-*` topics (two each).
fn image_with_logs(logs: &[(&str, Uuid)]) -> SharedTopics {
    let mut by_name = BTreeMap::from([(
        "orders".to_string(),
        TopicImage {
            id: TOPIC,
            partitions: 2,
        },
    )]);
    for (name, id) in logs {
        let image = TopicImage {
            id: *id,
            partitions: 2,
        };
        by_name.insert(name.to_string(), image);
    }
    Arc::new(TopicsImage::new(by_name))
}

impl Harness {
    /// A heartbeat of a member subscribed to `orders` by name and to `logs-.*`; returns the
    /// response, and `owned` becomes what it was sent.
    fn pattern_beat(
        &mut self,
        member: &str,
        epoch: i32,
        owned: &mut Owned,
    ) -> ConsumerGroupHeartbeatResponse {
        let join = epoch == 0;
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(if join { 30_000 } else { -1 })
            .with_subscribed_topic_names(join.then(|| vec![TopicName(s("orders"))]))
            .with_subscribed_topic_regex(join.then(|| s("logs-.*")))
            .with_topic_partitions(Some(wire_owned(owned)));
        let topics = self.topics.clone();
        let Response::ConsumerGroupHeartbeat(response) =
            self.send(Request::ConsumerGroupHeartbeat(request, 1, topics))
        else {
            panic!("expected a heartbeat response");
        };
        assert_eq!(response.error_code, 0, "{response:?}");
        if let Some(assignment) = &response.assignment {
            *owned = assignment
                .topic_partitions
                .iter()
                .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
                .collect();
        }
        response
    }
}

fn topic_ids(owned: &Owned) -> Vec<Uuid> {
    owned
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(id, _)| *id)
        .collect()
}

/// A member subscribed to `orders` and `logs-.*`, settled with `logs-a`: the harness, its
/// epoch and what it owns.
fn settled_pattern_member() -> (Harness, i32, Owned) {
    let mut h = Harness::new(0);
    h.topics = image_with_logs(&[("logs-a", LOGS_A)]);
    let mut owned = Owned::new();
    let mut epoch = h.pattern_beat("m1", 0, &mut owned).member_epoch;
    epoch = h.pattern_beat("m1", epoch, &mut owned).member_epoch;
    assert_eq!(topic_ids(&owned), vec![LOGS_A, TOPIC]);
    (h, epoch, owned)
}

#[test]
fn a_new_pattern_is_resolved_after_the_heartbeat_that_brings_it() {
    // As Kafka resolves regular expressions in the background: the member gets its named
    // topics at once, and what its pattern matches at its next heartbeat, which it is told
    // to send soon.
    let mut h = Harness::new(0);
    h.topics = image_with_logs(&[("logs-a", LOGS_A)]);
    let mut owned = Owned::new();
    let first = h.pattern_beat("m1", 0, &mut owned);
    assert_eq!(topic_ids(&owned), vec![TOPIC]);
    assert!(first.heartbeat_interval_ms <= 200, "{first:?}");
    let second = h.pattern_beat("m1", first.member_epoch, &mut owned);
    assert!(second.member_epoch > first.member_epoch);
    assert_eq!(topic_ids(&owned), vec![LOGS_A, TOPIC]);
    assert_eq!(h.group().state_name(), "Stable");
}

#[test]
fn topics_created_one_after_the_other_reach_a_pattern_together() {
    let (mut h, mut epoch, mut owned) = settled_pattern_member();

    // Two topics created a second apart, each seen by a heartbeat: the resolution of the
    // first heartbeat stands for 10 s, then both are matched at once.
    h.advance(1_000);
    h.topics = image_with_logs(&[("logs-a", LOGS_A), ("logs-b", LOGS_B)]);
    let beat = h.pattern_beat("m1", epoch, &mut owned);
    assert_eq!((beat.member_epoch, topic_ids(&owned).len()), (epoch, 2));
    h.advance(1_000);
    h.topics = image_with_logs(&[("logs-a", LOGS_A), ("logs-b", LOGS_B), ("logs-c", LOGS_C)]);
    let beat = h.pattern_beat("m1", epoch, &mut owned);
    assert_eq!((beat.member_epoch, topic_ids(&owned).len()), (epoch, 2));
    assert_eq!(h.group().state_name(), "Stable");

    h.advance(5_000);
    let beat = h.pattern_beat("m1", epoch, &mut owned);
    assert_eq!((beat.member_epoch, topic_ids(&owned).len()), (epoch, 2));
    h.advance(crate::consumer::REGEX_REFRESH_MIN_INTERVAL_MS - 7_000);
    h.pattern_beat("m1", epoch, &mut owned);
    assert_eq!(h.group().state_name(), "Assigning", "both topics matched");
    let beat = h.pattern_beat("m1", epoch, &mut owned);
    assert!(beat.member_epoch > epoch);
    assert_eq!(topic_ids(&owned), vec![LOGS_A, TOPIC, LOGS_B, LOGS_C]);
    epoch = beat.member_epoch;

    // A deleted topic leaves at once: it no longer exists, whatever was last matched.
    h.topics = image_with_logs(&[("logs-b", LOGS_B), ("logs-c", LOGS_C)]);
    h.pattern_beat("m1", epoch, &mut owned);
    assert!(h.group().group_epoch > epoch);
    assert_eq!(topic_ids(&owned), vec![TOPIC, LOGS_B, LOGS_C]);
}

#[test]
fn a_restarted_coordinator_keeps_what_a_pattern_matched() {
    let (h, epoch, mut owned) = settled_pattern_member();

    let mut restarted = Harness::new(0);
    restarted.topics = h.topics.clone();
    restarted.driver.now = h.driver.now;
    restarted.driver.shard = h.driver.rebuilt(h.config.clone());
    let before = owned.clone();
    let beat = restarted.pattern_beat("m1", epoch, &mut owned);
    assert_eq!(beat.member_epoch, epoch, "no new epoch after a restart");
    assert_eq!(owned, before, "nothing revoked");
    assert_eq!(restarted.group().state_name(), "Stable");
}

/// A member alone in a stable group, told the default heartbeat interval (5 s).
fn stable_member() -> Harness {
    let mut h = Harness::new(4);
    let joined = h.join("m1");
    assert_eq!(joined.assignment, Some(set(&[0, 1, 2, 3])));
    assert_eq!(h.group().state_name(), "Stable");
    h
}

#[test]
fn a_heartbeat_with_nothing_new_waits_until_a_newcomer_needs_its_partitions() {
    let mut h = stable_member();
    let held = h.poll("m1", 1, &set(&[0, 1, 2, 3]));
    h.advance(2_000);
    assert!(h.answered(held).is_none(), "nothing changed for m1: held");

    // m2 joins: m1 is told at once, not at its next heartbeat, to give up two partitions.
    let joined = h.join("m2");
    assert_eq!(joined.assignment, Some(BTreeSet::new()));
    let told = h.answered(held).expect("answered by m2's join");
    assert_eq!((told.error, told.epoch), (0, 1));
    let kept = told.assignment.expect("a revocation");
    assert_eq!(kept.len(), 2);

    // A member with partitions to give up is answered at once: its client acknowledges the
    // revocation only once this answer is in.
    let acked = h.poll("m1", 1, &kept);
    let acked = h
        .answered(acked)
        .expect("a revocation acknowledged is answered");
    assert_eq!(acked.epoch, 2);
    h.assert_single_owners();
}

#[test]
fn a_held_heartbeat_is_answered_half_a_second_before_the_next_one_is_due() {
    let mut h = stable_member();
    let held = h.poll("m1", 1, &set(&[0, 1, 2, 3]));
    h.advance(4_499);
    assert!(h.answered(held).is_none());
    h.advance(1);
    let beat = h.answered(held).expect("answered 4.5 s after it came");
    assert_eq!((beat.error, beat.epoch, beat.assignment), (0, 1, None));
    assert!(h.group().held.is_empty());
}

#[test]
fn a_held_heartbeat_is_answered_when_its_client_sends_anything_else() {
    let mut h = stable_member();
    let held = h.poll("m1", 1, &set(&[0, 1, 2, 3]));
    let release = Request::ReleaseConsumerGroupHeartbeat(GROUP.into(), "m1".into());
    assert!(matches!(h.send(release), Response::Done(0)));
    let beat = h.answered(held).expect("released");
    assert_eq!((beat.error, beat.epoch), (0, 1));

    // A second heartbeat of the same member answers the first before it is served.
    let first = h.poll("m1", 1, &set(&[0, 1, 2, 3]));
    let second = h.beat("m1", 1, &set(&[0, 1, 2, 3]));
    assert_eq!(second.error, 0);
    assert_eq!(h.answered(first).map(|b| b.error), Some(0));
}

#[test]
fn a_member_told_a_short_interval_is_never_held() {
    let mut h = stable_member();
    h.join("m2");
    // While the group reconciles, members are told 200 ms: less than the margin.
    let waiting = h.poll("m2", 2, &BTreeSet::new());
    assert!(h.answered(waiting).is_some());
}

#[test]
fn a_held_heartbeat_survives_a_failed_append_and_is_answered_by_the_next_change() {
    let mut h = stable_member();
    let held = h.poll("m1", 1, &set(&[0, 1, 2, 3]));
    h.driver.failing = true;
    let failed = h.join("m2");
    assert_eq!(failed.error, ResponseError::CoordinatorNotAvailable.code());
    assert!(
        h.answered(held).is_none(),
        "the join that would answer it was undone"
    );
    h.driver.failing = false;
    h.advance(1_000);
    h.join("m2");
    let told = h.answered(held).expect("answered by the join that took");
    assert_eq!(told.assignment.map(|a| a.len()), Some(2));
}

#[test]
fn a_member_leaving_answers_the_others_held_heartbeats_with_its_partitions() {
    let mut h = Harness::new(4);
    h.join("m1");
    h.join("m2");
    let mut members = BTreeMap::from([
        ("m1".to_string(), (1, BTreeSet::new())),
        ("m2".to_string(), (2, BTreeSet::new())),
    ]);
    h.settle(&mut members);
    // Once stable, each is told the default interval at its next heartbeat.
    for (id, (epoch, owned)) in &members {
        assert_eq!(h.beat(id, *epoch, owned).error, 0);
    }
    let (epoch, owned) = members["m2"].clone();
    assert_eq!(owned.len(), 2);
    let held = h.poll("m2", epoch, &owned);
    assert!(h.answered(held).is_none());

    let (m1_epoch, _) = members["m1"].clone();
    let left = h.heartbeat_with("m1", -1, None, None, false);
    assert_eq!((left.error, left.epoch), (0, -1), "{m1_epoch}");
    let told = h.answered(held).expect("answered when m1 left");
    assert_eq!(told.assignment, Some(set(&[0, 1, 2, 3])));
}
