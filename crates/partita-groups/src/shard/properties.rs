//! Properties of the write discipline, over random sequences of requests and passing time
//! in which any append may fail:
//!
//! - an operation whose records could not be appended changes nothing (checked by the
//!   driver after every failed append);
//! - what the shard holds durably (offsets, stored classic generations, consumer groups) is
//!   exactly what replaying the records it appended rebuilds;
//! - a classic group that is Stable is what its last record says.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use proptest::prelude::*;
use uuid::Uuid;

use super::harness::{test_client, Driver};
use super::*;
use crate::consumer::{Assignment, MemberState, TopicImage, TopicsImage};
use crate::records::GroupMetadataValue;

const CLASSIC: &str = "classic-app";
const CONSUMER: &str = "consumer-app";
const SIMPLE: &str = "simple-app";
const SHARE: &str = "share-app";
const TOPIC: Uuid = Uuid::from_u128(0x70);

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// One step of a test.
#[derive(Clone, Debug)]
enum Step {
    Join {
        member: usize,
        protocol: u8,
    },
    Sync {
        member: usize,
    },
    Heartbeat {
        member: usize,
    },
    Leave {
        member: usize,
    },
    Commit {
        member: Option<usize>,
        group: u8,
        partition: i32,
        offset: i64,
    },
    ConsumerJoin {
        member: usize,
        instance: bool,
    },
    ConsumerBeat {
        member: usize,
    },
    ConsumerPoll {
        member: usize,
    },
    ConsumerLeave {
        member: usize,
        temporarily: bool,
    },
    OffsetDelete {
        group: u8,
        partition: i32,
    },
    DeleteGroup {
        group: u8,
    },
    TopicDeleted,
    Repartition {
        partitions: i32,
    },
    Advance {
        ms: i64,
    },
    ShareJoin {
        member: usize,
    },
    ShareLeave {
        member: usize,
    },
    ShareFetch {
        member: usize,
        max_records: usize,
    },
    ShareAck {
        member: usize,
        kind: u8,
    },
    Produce {
        partition: i32,
        records: i64,
    },
    SetEarliest {
        earliest: bool,
    },
    /// Commits an offset inside the transaction of producer `producer`.
    TxnCommit {
        producer: i64,
        member: Option<usize>,
        group: u8,
        partition: i32,
        offset: i64,
    },
    /// Ends the transaction of producer `producer`.
    TxnEnd {
        producer: i64,
        commit: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let member = 0..3usize;
    prop_oneof![
        (member.clone(), 0..2u8).prop_map(|(member, protocol)| Step::Join { member, protocol }),
        member.clone().prop_map(|member| Step::Sync { member }),
        member.clone().prop_map(|member| Step::Heartbeat { member }),
        member.clone().prop_map(|member| Step::Leave { member }),
        (
            prop::option::of(member.clone()),
            0..3u8,
            0..3i32,
            0..1000i64
        )
            .prop_map(|(member, group, partition, offset)| Step::Commit {
                member,
                group,
                partition,
                offset
            }),
        (member.clone(), any::<bool>())
            .prop_map(|(member, instance)| Step::ConsumerJoin { member, instance }),
        member
            .clone()
            .prop_map(|member| Step::ConsumerBeat { member }),
        member
            .clone()
            .prop_map(|member| Step::ConsumerPoll { member }),
        (member, any::<bool>()).prop_map(|(member, temporarily)| Step::ConsumerLeave {
            member,
            temporarily
        }),
        (0..3u8, 0..3i32).prop_map(|(group, partition)| Step::OffsetDelete { group, partition }),
        (0..3u8).prop_map(|group| Step::DeleteGroup { group }),
        Just(Step::TopicDeleted),
        (3..6i32).prop_map(|partitions| Step::Repartition { partitions }),
        (
            0..2i64,
            prop::option::of(0..3usize),
            0..3u8,
            0..3i32,
            0..1000i64
        )
            .prop_map(
                |(producer, member, group, partition, offset)| Step::TxnCommit {
                    producer,
                    member,
                    group,
                    partition,
                    offset
                }
            ),
        (0..2i64, any::<bool>()).prop_map(|(producer, commit)| Step::TxnEnd { producer, commit }),
        (0..20_000i64).prop_map(|ms| Step::Advance { ms }),
        (0..3usize).prop_map(|member| Step::ShareJoin { member }),
        (0..3usize).prop_map(|member| Step::ShareLeave { member }),
        (0..3usize, 1..8usize).prop_map(|(member, max_records)| Step::ShareFetch {
            member,
            max_records
        }),
        (0..3usize, 1..8usize).prop_map(|(member, max_records)| Step::ShareFetch {
            member,
            max_records
        }),
        (0..3usize, 0..4u8).prop_map(|(member, kind)| Step::ShareAck { member, kind }),
        (0..3i32, 1..10i64).prop_map(|(partition, records)| Step::Produce { partition, records }),
        any::<bool>().prop_map(|earliest| Step::SetEarliest { earliest }),
    ]
}

fn group_name(group: u8) -> &'static str {
    [CLASSIC, CONSUMER, SIMPLE][usize::from(group) % 3]
}

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 1_000,
        consumer_session_timeout_ms: 12_000,
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 15_000,
        ..GroupConfig::default()
    }
}

/// A classic member as its client knows itself.
#[derive(Clone, Debug, Default)]
struct ClassicClient {
    member_id: String,
    generation: i32,
    join: Option<Token>,
    sync: Option<Token>,
}

/// A consumer-protocol member as its client knows itself.
#[derive(Clone, Debug, Default)]
struct ConsumerClient {
    member_id: String,
    epoch: i32,
    owned: BTreeSet<i32>,
    instance: Option<String>,
}

/// A share-group member as its client knows itself.
#[derive(Clone, Debug, Default)]
struct ShareClient {
    joined: bool,
    epoch: i32,
    session_epoch: i32,
    /// Records it acquired and has not acknowledged: partition, first, last.
    held: Vec<(i32, i64, i64)>,
}

/// The test: a driver whose appends fail when told, and the clients' view of themselves.
struct World {
    driver: Driver,
    classic: Vec<ClassicClient>,
    consumer: Vec<ConsumerClient>,
    share: Vec<ShareClient>,
    /// Log end offset of each partition of the topic.
    log_ends: BTreeMap<i32, i64>,
    topics: SharedTopics,
    /// Consumer members started so far: each start has a new member id, as clients do.
    starts: usize,
    /// Heartbeats the shard may still hold: the member's slot and id, and the token.
    polls: Vec<(usize, String, Token)>,
    /// Held heartbeats whose client has moved on (left, or started again): the shard must
    /// still answer them.
    orphans: Vec<Token>,
}

impl World {
    fn new() -> World {
        let mut world = World {
            driver: Driver::new(config(), 11, 10_000_000),
            classic: vec![ClassicClient::default(); 3],
            consumer: vec![ConsumerClient::default(); 3],
            share: vec![ShareClient::default(); 3],
            log_ends: BTreeMap::new(),
            topics: Arc::default(),
            starts: 0,
            polls: Vec::new(),
            orphans: Vec::new(),
        };
        world.repartition(4);
        world
    }

    fn repartition(&mut self, partitions: i32) {
        let image = TopicImage {
            id: TOPIC,
            partitions,
        };
        let by_name = BTreeMap::from([("orders".to_string(), image)]);
        self.topics = Arc::new(TopicsImage::new(by_name));
    }

    fn send(&mut self, request: Request) -> Token {
        self.driver.send_as(&test_client(), request)
    }

    /// Takes the responses of waiting joins and syncs and acts on them as a client would:
    /// a member given an id joins again with it; a member whose join completed syncs (the
    /// leader with an assignment for every member).
    fn collect(&mut self) {
        for (slot, member_id, token) in std::mem::take(&mut self.polls) {
            match self.driver.take(token) {
                None => self.polls.push((slot, member_id, token)),
                Some(
                    Response::ConsumerGroupHeartbeat(r)
                    | Response::HeldConsumerGroupHeartbeat(r, _),
                ) if self.consumer[slot].member_id == member_id => {
                    self.take_heartbeat_answer(slot, r)
                }
                Some(_) => {}
            }
        }
        let driver = &mut self.driver;
        self.orphans.retain(|token| driver.take(*token).is_none());
        let mut progress = true;
        while progress {
            progress = false;
            for i in 0..self.classic.len() {
                progress |= self.collect_join(i);
                if let Some(token) = self.classic[i].sync {
                    if self.driver.take(token).is_some() {
                        self.classic[i].sync = None;
                        progress = true;
                    }
                }
            }
        }
    }

    fn collect_join(&mut self, i: usize) -> bool {
        let Some(token) = self.classic[i].join else {
            return false;
        };
        let Some(Response::JoinGroup(r)) = self.driver.take(token) else {
            return false;
        };
        let client = &mut self.classic[i];
        client.join = None;
        if !r.member_id.is_empty() {
            client.member_id = r.member_id.to_string();
        }
        if r.error_code == ResponseError::MemberIdRequired.code() {
            self.run(&Step::Join {
                member: i,
                protocol: 0,
            });
        } else if r.error_code == 0 {
            client.generation = r.generation_id;
            let assignments: Vec<String> =
                r.members.iter().map(|m| m.member_id.to_string()).collect();
            self.sync(i, &assignments);
        }
        true
    }

    fn sync(&mut self, member: usize, assignments: &[String]) {
        let client = &self.classic[member];
        let assignments = assignments
            .iter()
            .map(|member_id| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(s(member_id))
                    .with_assignment(Bytes::from(member_id.clone().into_bytes()))
            })
            .collect();
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(s(CLASSIC)))
            .with_generation_id(client.generation)
            .with_member_id(s(&client.member_id))
            .with_assignments(assignments);
        let token = self.send(Request::SyncGroup(request, 4));
        self.classic[member].sync = Some(token);
    }

    fn run(&mut self, step: &Step) {
        match *step {
            Step::Join { .. } | Step::Sync { .. } | Step::Heartbeat { .. } | Step::Leave { .. } => {
                self.run_classic(step)
            }
            Step::Commit {
                member,
                group,
                partition,
                offset,
            } => self.commit(member, group, partition, offset),
            Step::TxnCommit {
                producer,
                member,
                group,
                partition,
                offset,
            } => self.txn_commit(producer, member, group, partition, offset),
            Step::TxnEnd { producer, commit } => {
                self.send(Request::TxnMarker(TxnMarker {
                    producer_id: producer,
                    producer_epoch: 0,
                    commit,
                    coordinator_epoch: 0,
                }));
            }
            Step::ConsumerJoin { member, instance } => {
                self.orphan_polls(member);
                self.starts += 1;
                self.consumer[member] = ConsumerClient {
                    member_id: format!("consumer-{member}-{}", self.starts),
                    instance: instance.then(|| format!("instance-{member}")),
                    ..ConsumerClient::default()
                };
                self.consumer_heartbeat(member, 0, true);
            }
            // A client sends one heartbeat at a time.
            Step::ConsumerBeat { member } | Step::ConsumerPoll { member }
                if self.polls.iter().any(|(slot, ..)| *slot == member) => {}
            Step::ConsumerBeat { member } => {
                let epoch = self.consumer[member].epoch;
                self.consumer_heartbeat(member, epoch, false);
            }
            Step::ConsumerPoll { member } => {
                let epoch = self.consumer[member].epoch;
                self.consumer_poll(member, epoch);
            }
            Step::ConsumerLeave {
                member,
                temporarily,
            } => {
                // A leave goes out beside a heartbeat still held, whose answer is dropped.
                self.orphan_polls(member);
                let static_member = self.consumer[member].instance.is_some();
                let epoch = if temporarily && static_member { -2 } else { -1 };
                self.consumer_heartbeat(member, epoch, false);
            }
            Step::OffsetDelete { group, partition } => {
                let request = OffsetDeleteRequest::default()
                    .with_group_id(GroupId(s(group_name(group))))
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(TopicName(s("orders")))
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default()
                                    .with_partition_index(partition),
                            ]),
                    ]);
                self.send(Request::OffsetDelete(request));
            }
            Step::DeleteGroup { group } => {
                self.send(Request::DeleteGroup(group_name(group).to_string()));
            }
            Step::TopicDeleted => {
                self.send(Request::TopicDeleted("orders".to_string()));
            }
            Step::Repartition { partitions } => self.repartition(partitions),
            Step::Advance { ms } => self.driver.advance(ms),
            Step::ShareJoin { member } => self.share_heartbeat(member, 0),
            Step::ShareLeave { member } => self.share_heartbeat(member, -1),
            Step::ShareFetch {
                member,
                max_records,
            } => self.share_fetch(member, max_records),
            Step::ShareAck { member, kind } => self.share_ack(member, kind),
            Step::Produce { partition, records } => {
                *self.log_ends.entry(partition).or_default() += records;
            }
            Step::SetEarliest { earliest } => {
                let value = if earliest { "earliest" } else { "latest" };
                let configs = BTreeMap::from([(
                    crate::config::SHARE_AUTO_OFFSET_RESET.to_string(),
                    value.to_string(),
                )]);
                self.send(Request::SetGroupConfig(SHARE.to_string(), configs));
            }
        }
        self.collect();
    }

    /// The classic members' steps.
    fn run_classic(&mut self, step: &Step) {
        match *step {
            Step::Join { member, protocol } => {
                let client = &self.classic[member];
                let name = ["range", "roundrobin"][usize::from(protocol)];
                let request = JoinGroupRequest::default()
                    .with_group_id(GroupId(s(CLASSIC)))
                    .with_session_timeout_ms(6_000)
                    .with_rebalance_timeout_ms(9_000)
                    .with_member_id(s(&client.member_id))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(s(name))
                        .with_metadata(Bytes::from_static(b"meta"))]);
                let token = self.send(Request::JoinGroup(request, 7));
                self.classic[member].join = Some(token);
            }
            Step::Sync { member } => {
                let everyone: Vec<String> = self
                    .classic
                    .iter()
                    .filter(|c| !c.member_id.is_empty())
                    .map(|c| c.member_id.clone())
                    .collect();
                self.sync(member, &everyone);
            }
            Step::Heartbeat { member } => {
                let client = &self.classic[member];
                let request = HeartbeatRequest::default()
                    .with_group_id(GroupId(s(CLASSIC)))
                    .with_generation_id(client.generation)
                    .with_member_id(s(&client.member_id));
                self.send(Request::Heartbeat(request));
            }
            Step::Leave { member } => {
                let client = &self.classic[member];
                let request = LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(CLASSIC)))
                    .with_members(vec![
                        MemberIdentity::default().with_member_id(s(&client.member_id))
                    ]);
                self.send(Request::LeaveGroup(request, 5));
            }
            _ => unreachable!("not a classic step"),
        }
    }

    fn share_heartbeat(&mut self, member: usize, epoch: i32) {
        let epoch = if epoch == 0 || !self.share[member].joined {
            epoch
        } else {
            -1
        };
        let request = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(SHARE)))
            .with_member_id(s(&format!("share-{member}")))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(Some(vec![TopicName(s("orders"))]));
        let topics = Arc::clone(&self.topics);
        let token = self.send(Request::ShareGroupHeartbeat(request, topics));
        if let Some(Response::ShareGroupHeartbeat(r)) = self.driver.take(token) {
            let client = &mut self.share[member];
            if r.error_code == 0 {
                client.joined = epoch == 0;
                client.epoch = r.member_epoch;
                client.session_epoch = 0;
                if epoch == -1 {
                    client.held.clear();
                }
            }
        }
    }

    fn share_fetch(&mut self, member: usize, max_records: usize) {
        let partitions: Vec<(Uuid, i32)> = (0..3).map(|p| (TOPIC, p)).collect();
        let session = ShareSessionUpdate {
            group_id: SHARE.to_string(),
            member_id: format!("share-{member}"),
            session_epoch: self.share[member].session_epoch,
            added: partitions.clone(),
            forgotten: Vec::new(),
        };
        let token = self.send(Request::ShareSession(session));
        let Some(Response::ShareSession(Ok(_))) = self.driver.take(token) else {
            self.share[member].session_epoch = 0;
            return;
        };
        self.share[member].session_epoch += 1;
        let plan = SharePlan {
            group_id: SHARE.to_string(),
            partitions: partitions
                .iter()
                .map(|&(t, p)| ((t, p), 0, self.log_ends.get(&p).copied().unwrap_or(0)))
                .collect(),
        };
        let token = self.send(Request::SharePlan(plan));
        let Some(Response::SharePlanned(planned)) = self.driver.take(token) else {
            return;
        };
        let reads = planned
            .reads
            .iter()
            .map(|&(partition, from)| {
                let end = self.log_ends.get(&partition.1).copied().unwrap_or(0);
                ShareRead {
                    partition,
                    from,
                    covered_end: end,
                    log_end_offset: end,
                }
            })
            .collect();
        let acquire = ShareAcquire {
            group_id: SHARE.to_string(),
            member_id: format!("share-{member}"),
            reads,
            max_records,
        };
        let token = self.send(Request::ShareAcquire(acquire));
        if let Some(Response::ShareAcquired(acquired)) = self.driver.take(token) {
            for ((_, partition), ranges) in acquired {
                for range in ranges {
                    let held = (partition, range.first_offset, range.last_offset);
                    self.share[member].held.push(held);
                }
            }
        }
    }

    fn share_ack(&mut self, member: usize, kind: u8) {
        use crate::share::partition::AcknowledgeType;
        let kind = match kind {
            0 => AcknowledgeType::Accept,
            1 => AcknowledgeType::Release,
            2 => AcknowledgeType::Reject,
            _ => AcknowledgeType::Gap,
        };
        let held = std::mem::take(&mut self.share[member].held);
        let mut by_partition: BTreeMap<i32, Vec<(i64, i64, AcknowledgeType)>> = BTreeMap::new();
        for (partition, first, last) in held {
            by_partition
                .entry(partition)
                .or_default()
                .push((first, last, kind));
        }
        let acks = ShareAcknowledgements {
            group_id: SHARE.to_string(),
            member_id: format!("share-{member}"),
            partitions: by_partition
                .into_iter()
                .map(|(p, batches)| ((TOPIC, p), batches))
                .collect(),
        };
        self.send(Request::ShareAcknowledge(acks));
    }

    fn txn_commit(
        &mut self,
        producer: i64,
        member: Option<usize>,
        group: u8,
        partition: i32,
        offset: i64,
    ) {
        use kafka_protocol::messages::txn_offset_commit_request::{
            TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
        };
        let (member_id, generation) = self.committer(member, group);
        let request = TxnOffsetCommitRequest::default()
            .with_group_id(GroupId(s(group_name(group))))
            .with_producer_id(ProducerId(producer))
            .with_generation_id(generation)
            .with_member_id(s(&member_id))
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)])]);
        self.send(Request::TxnOffsetCommit(request, 3));
    }

    /// The member id and generation (or epoch) a commit of `member` names in `group`.
    fn committer(&self, member: Option<usize>, group: u8) -> (String, i32) {
        match member {
            Some(i) if group_name(group) == CLASSIC => {
                let client = &self.classic[i];
                (client.member_id.clone(), client.generation)
            }
            Some(i) if group_name(group) == CONSUMER => {
                (self.consumer[i].member_id.clone(), self.consumer[i].epoch)
            }
            _ => (String::new(), -1),
        }
    }

    fn commit(&mut self, member: Option<usize>, group: u8, partition: i32, offset: i64) {
        let (member_id, generation) = self.committer(member, group);
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group_name(group))))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(&member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)])]);
        self.send(Request::OffsetCommit(request, 9));
    }

    fn consumer_heartbeat(&mut self, member: usize, epoch: i32, join: bool) {
        use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
        let client = self.consumer[member].clone();
        let owned = if join {
            Vec::new()
        } else {
            vec![TopicPartitions::default()
                .with_topic_id(TOPIC)
                .with_partitions(client.owned.iter().copied().collect())]
        };
        let mut request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(CONSUMER)))
            .with_member_id(s(&client.member_id))
            .with_member_epoch(epoch)
            .with_instance_id(client.instance.as_deref().map(s))
            .with_topic_partitions(Some(owned));
        if join {
            request = request
                .with_rebalance_timeout_ms(8_000)
                .with_subscribed_topic_names(Some(vec![TopicName(s("orders"))]));
        } else {
            request = request.with_rebalance_timeout_ms(-1);
        }
        let topics = Arc::clone(&self.topics);
        let token = self.send(Request::ConsumerGroupHeartbeat(request, 1, topics));
        if let Some(Response::ConsumerGroupHeartbeat(r)) = self.driver.take(token) {
            self.take_heartbeat_answer(member, r);
        }
    }

    /// A regular heartbeat the shard may hold until it has something to say.
    fn consumer_poll(&mut self, member: usize, epoch: i32) {
        use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
        let client = self.consumer[member].clone();
        let owned = TopicPartitions::default()
            .with_topic_id(TOPIC)
            .with_partitions(client.owned.iter().copied().collect());
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(CONSUMER)))
            .with_member_id(s(&client.member_id))
            .with_member_epoch(epoch)
            .with_instance_id(client.instance.as_deref().map(s))
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(Some(vec![owned]));
        let topics = Arc::clone(&self.topics);
        let token = self.send(Request::ConsumerGroupHeartbeatMayWait(request, 1, topics));
        self.polls.push((member, client.member_id, token));
    }

    /// The client of slot `member` has moved on: its held heartbeats are answered to nobody.
    fn orphan_polls(&mut self, member: usize) {
        let (gone, kept) = std::mem::take(&mut self.polls)
            .into_iter()
            .partition(|(slot, ..)| *slot == member);
        self.polls = kept;
        let gone: Vec<(usize, String, Token)> = gone;
        self.orphans
            .extend(gone.into_iter().map(|(.., token)| token));
    }

    /// A heartbeat's answer, taken as its client takes it.
    fn take_heartbeat_answer(&mut self, member: usize, r: ConsumerGroupHeartbeatResponse) {
        let client = &mut self.consumer[member];
        if r.error_code != 0 {
            client.epoch = 0;
            client.owned.clear();
            return;
        }
        client.epoch = r.member_epoch;
        if let Some(assignment) = r.assignment {
            client.owned = assignment
                .topic_partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().copied())
                .collect();
        }
    }
}

/// What a consumer group's records say of one member.
type DurableMember = (
    crate::records::ConsumerGroupMemberMetadataValue,
    i32,
    i32,
    MemberState,
    Assignment,
    Assignment,
);

/// What the records say of a consumer group.
#[derive(Debug, PartialEq)]
struct DurableConsumerGroup {
    group_epoch: i32,
    assignment_epoch: i32,
    metadata_hash: i64,
    target: BTreeMap<String, Assignment>,
    members: BTreeMap<String, DurableMember>,
    static_members: BTreeMap<String, String>,
}

/// What a shard holds that records say.
#[derive(Debug, PartialEq)]
struct Durable {
    offsets: BTreeMap<String, GroupOffsets>,
    pending: BTreeMap<i64, PendingOffsets>,
    /// Share-partitions, with acquired records given back as a restart does.
    shares: BTreeMap<String, SharePartitions>,
    group_configs: BTreeMap<String, BTreeMap<String, String>>,
    classic: BTreeMap<String, Option<GroupMetadataValue>>,
    consumer: BTreeMap<String, DurableConsumerGroup>,
}

fn durable(shard: &GroupShard) -> Durable {
    let offsets = shard
        .offsets
        .iter()
        .map(|(id, offsets)| (id.clone(), offsets.clone()))
        .collect();
    let pending = shard
        .pending_offsets
        .iter()
        .map(|(producer, offsets)| (*producer, offsets.clone()))
        .collect();
    let shares = shard
        .share_partitions
        .iter()
        .map(|(id, partitions)| {
            let mut partitions = partitions.clone();
            partitions.values_mut().for_each(|p| {
                p.release_all();
            });
            (id.clone(), partitions)
        })
        .collect();
    let group_configs = shard
        .group_configs
        .iter()
        .map(|(id, c)| (id.clone(), c.clone()))
        .collect();
    let mut classic = BTreeMap::new();
    let mut consumer = BTreeMap::new();
    for (id, group) in &shard.groups {
        match group {
            Group::Share(_) => {}
            // A classic group that stored nothing and holds no offset leaves no trace.
            Group::Classic(g) if g.stored.is_none() && !shard.offsets.contains_key(id) => {}
            Group::Classic(g) => {
                classic.insert(id.clone(), g.stored.clone());
            }
            Group::Consumer(g) => {
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        let member = (
                            super::consumer::member_metadata_value(m),
                            m.member_epoch,
                            m.previous_member_epoch,
                            m.state,
                            m.assigned.clone(),
                            m.pending_revocation.clone(),
                        );
                        (m.member_id.clone(), member)
                    })
                    .collect();
                let durable = DurableConsumerGroup {
                    group_epoch: g.group_epoch,
                    assignment_epoch: g.assignment_epoch,
                    metadata_hash: g.metadata_hash,
                    target: g.target.clone(),
                    members,
                    static_members: g.static_members.clone().into_iter().collect(),
                };
                consumer.insert(id.clone(), durable);
            }
        }
    }
    Durable {
        offsets,
        pending,
        shares,
        group_configs,
        classic,
        consumer,
    }
}

/// A Stable classic group is what its last record says (but for when it turned Stable).
fn check_stable_groups_are_stored(shard: &GroupShard) -> Result<(), TestCaseError> {
    for group in shard.groups.values().filter_map(Group::as_classic) {
        if group.state != crate::classic::GroupState::Stable {
            continue;
        }
        let mut live = group.metadata_record();
        let mut stored = group.stored.clone().expect("a Stable group has stored");
        live.current_state_timestamp = 0;
        stored.current_state_timestamp = 0;
        prop_assert_eq!(live, stored, "group {}", group.group_id);
    }
    Ok(())
}

/// No record is held by two share members at once.
fn check_records_have_one_holder(world: &World) -> Result<(), TestCaseError> {
    let mut holders: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let group = world
        .driver
        .shard
        .groups
        .get(SHARE)
        .and_then(Group::as_share);
    for (member, client) in world.share.iter().enumerate() {
        let still_member =
            group.is_some_and(|g| g.members.contains_key(&format!("share-{member}")));
        if !still_member {
            continue;
        }
        for &(partition, first, last) in &client.held {
            for offset in first..=last {
                let previous = holders.insert((partition, offset), member);
                prop_assert!(
                    previous.is_none() || world.driver.now > 10_000_000,
                    "record {}:{} held by {:?} and {}",
                    partition,
                    offset,
                    previous,
                    member
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_shard_is_what_its_records_say_and_a_failed_append_changes_nothing(
        steps in prop::collection::vec((step(), prop::bool::weighted(0.2)), 1..80)
    ) {
        let mut world = World::new();
        let mut acquired = 0;
        for (step, fail) in &steps {
            world.driver.failing = *fail;
            world.run(step);
            world.driver.failing = false;
            let rebuilt = world.driver.rebuilt(config());
            prop_assert_eq!(
                durable(&world.driver.shard),
                durable(&rebuilt),
                "after {:?}",
                step
            );
            check_stable_groups_are_stored(&world.driver.shard)?;
            check_records_have_one_holder(&world)?;
            acquired += world.share.iter().map(|c| c.held.len()).sum::<usize>();
        }
        let _ = acquired;
        // No heartbeat is held for longer than its member's interval.
        world.driver.advance(5_000);
        world.collect();
        prop_assert!(world.polls.is_empty(), "held for ever: {:?}", world.polls);
        prop_assert!(world.orphans.is_empty(), "held for ever: {:?}", world.orphans);
    }
}
