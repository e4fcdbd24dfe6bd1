//! Deterministic tests of share groups in the shard: assignment, sharing records, session
//! timeouts, share sessions, and what a failed append does to acknowledgements.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::{
    GroupId, ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::harness::{test_client, Driver};
use super::*;
use crate::consumer::{TopicImage, TopicsImage};
use crate::share::partition::AcknowledgeType;

const GROUP: &str = "workers";
const T: Uuid = Uuid::from_u128(9);

fn topics() -> SharedTopics {
    let image = TopicImage {
        id: T,
        partitions: 1,
    };
    Arc::new(TopicsImage::new(BTreeMap::from([(
        "jobs".to_string(),
        image,
    )])))
}

fn driver() -> Driver {
    Driver::new(GroupConfig::default(), 5, 0)
}

fn ask(d: &mut Driver, request: Request) -> Response {
    let token = d.send_as(&test_client(), request);
    d.take(token).expect("answered")
}

fn heartbeat(d: &mut Driver, member: &str, epoch: i32) -> ShareGroupHeartbeatResponse {
    let request = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(GROUP.into()))
        .with_member_id(member.to_string().into())
        .with_member_epoch(epoch)
        .with_subscribed_topic_names((epoch == 0).then(|| vec![TopicName("jobs".into())]));
    match ask(d, Request::ShareGroupHeartbeat(request, topics())) {
        Response::ShareGroupHeartbeat(response) => response,
        other => panic!("{other:?}"),
    }
}

fn session(
    d: &mut Driver,
    member: &str,
    epoch: i32,
) -> Result<BTreeSet<(Uuid, i32)>, crate::share::group::ShareRequestError> {
    let update = ShareSessionUpdate {
        group_id: GROUP.to_string(),
        member_id: member.to_string(),
        session_epoch: epoch,
        added: vec![(T, 0)],
        forgotten: Vec::new(),
    };
    match ask(d, Request::ShareSession(update)) {
        Response::ShareSession(result) => result,
        other => panic!("{other:?}"),
    }
}

/// Plans and acquires from a log of `log_end` records, as a fetch that read all of them.
fn fetch(d: &mut Driver, member: &str, log_end: i64, max_records: usize) -> Vec<(i64, i64, i16)> {
    let plan = SharePlan {
        group_id: GROUP.to_string(),
        partitions: vec![((T, 0), 0, log_end)],
    };
    let Response::SharePlanned(planned) = ask(d, Request::SharePlan(plan)) else {
        panic!("a plan");
    };
    let reads = planned
        .reads
        .iter()
        .map(|&(partition, from)| ShareRead {
            partition,
            from,
            covered_end: log_end,
            log_end_offset: log_end,
        })
        .collect();
    let acquire = ShareAcquire {
        group_id: GROUP.to_string(),
        member_id: member.to_string(),
        reads,
        max_records,
    };
    match ask(d, Request::ShareAcquire(acquire)) {
        Response::ShareAcquired(acquired) => acquired
            .into_iter()
            .flat_map(|(_, ranges)| ranges)
            .map(|r| (r.first_offset, r.last_offset, r.delivery_count))
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn acknowledge(d: &mut Driver, member: &str, first: i64, last: i64) -> i16 {
    let acks = ShareAcknowledgements {
        group_id: GROUP.to_string(),
        member_id: member.to_string(),
        partitions: vec![((T, 0), vec![(first, last, AcknowledgeType::Accept)])],
    };
    match ask(d, Request::ShareAcknowledge(acks)) {
        Response::ShareAcknowledged(codes) => codes[0].1,
        other => panic!("{other:?}"),
    }
}

fn earliest(d: &mut Driver) {
    let configs = BTreeMap::from([(
        crate::config::SHARE_AUTO_OFFSET_RESET.to_string(),
        "earliest".to_string(),
    )]);
    let request = Request::SetGroupConfig(GROUP.to_string(), configs);
    assert!(matches!(ask(d, request), Response::Done(0)));
}

#[test]
fn every_member_is_assigned_the_single_partition() {
    let mut d = driver();
    for member in ["a", "b", "c"] {
        let response = heartbeat(&mut d, member, 0);
        assert_eq!(response.error_code, 0);
        let assignment = response.assignment.expect("an assignment");
        assert_eq!(assignment.topic_partitions[0].partitions, vec![0]);
    }
}

#[test]
fn members_of_one_partition_share_its_records() {
    let mut d = driver();
    earliest(&mut d);
    for member in ["a", "b"] {
        heartbeat(&mut d, member, 0);
        session(&mut d, member, 0).unwrap();
    }
    // Each may hold half of the 10, and take half of that (rounded up) in one fetch.
    assert_eq!(fetch(&mut d, "a", 10, 5), vec![(0, 2, 1)]);
    assert_eq!(fetch(&mut d, "b", 10, 5), vec![(3, 5, 1)]);
    assert_eq!(
        fetch(&mut d, "b", 10, 5),
        vec![(6, 7, 1)],
        "the rest of its half"
    );
    assert_eq!(fetch(&mut d, "a", 10, 5), vec![(8, 9, 1)]);
    assert_eq!(fetch(&mut d, "b", 10, 5), vec![], "nothing left");
}

#[test]
fn a_burst_is_spread_over_the_members_that_share_the_partition() {
    let mut d = driver();
    earliest(&mut d);
    for member in ["a", "b", "c"] {
        heartbeat(&mut d, member, 0);
        session(&mut d, member, 0).unwrap();
    }
    // Each may hold a third of the 600, however many it asks for, and takes half of that
    // in one fetch: members come back for more at their own pace.
    assert_eq!(fetch(&mut d, "a", 600, 500), vec![(0, 99, 1)]);
    assert_eq!(fetch(&mut d, "a", 600, 500), vec![(100, 199, 1)]);
    assert_eq!(fetch(&mut d, "a", 600, 500), vec![], "a holds its part");
    assert_eq!(fetch(&mut d, "b", 600, 500), vec![(200, 299, 1)]);
    // Once a acknowledges its part it may take more: of the 400 outstanding (300 waiting,
    // 100 held by b), a third is 134, half of it 67.
    assert_eq!(acknowledge(&mut d, "a", 0, 199), 0);
    assert_eq!(fetch(&mut d, "a", 600, 500), vec![(300, 366, 1)]);
}

#[test]
fn a_member_whose_session_times_out_gives_its_records_back() {
    let mut d = driver();
    earliest(&mut d);
    heartbeat(&mut d, "a", 0);
    let epoch = heartbeat(&mut d, "b", 0).member_epoch;
    session(&mut d, "a", 0).unwrap();
    assert_eq!(
        fetch(&mut d, "a", 3, 3),
        vec![(0, 2, 1)],
        "alone, it takes them all"
    );
    session(&mut d, "b", 0).unwrap();
    // Only b heartbeats.
    d.advance(40_000);
    heartbeat(&mut d, "b", epoch);
    d.advance(5_001);
    let group = d.shard.groups.get(GROUP).and_then(Group::as_share).unwrap();
    assert!(!group.members.contains_key("a"));
    assert_eq!(fetch(&mut d, "b", 3, 3), vec![(0, 2, 2)]);
}

#[test]
fn sessions_follow_kafkas_epochs() {
    use crate::share::group::ShareRequestError;
    let mut d = driver();
    heartbeat(&mut d, "a", 0);
    assert_eq!(
        session(&mut d, "a", 1),
        Err(ShareRequestError::SessionNotFound)
    );
    session(&mut d, "a", 0).unwrap();
    assert_eq!(
        session(&mut d, "a", 2),
        Err(ShareRequestError::InvalidSessionEpoch)
    );
    assert_eq!(session(&mut d, "a", 1), Ok(BTreeSet::from([(T, 0)])));
    assert_eq!(
        session(&mut d, "nobody", 0),
        Err(ShareRequestError::UnknownMemberId)
    );
}

#[test]
fn an_acknowledgement_that_cannot_be_stored_is_refused_and_the_records_stay_held() {
    let mut d = driver();
    earliest(&mut d);
    heartbeat(&mut d, "a", 0);
    session(&mut d, "a", 0).unwrap();
    assert_eq!(fetch(&mut d, "a", 4, 4), vec![(0, 3, 1)]);
    d.failing = true;
    assert_eq!(
        acknowledge(&mut d, "a", 0, 3),
        ResponseError::CoordinatorNotAvailable.code()
    );
    d.failing = false;
    assert_eq!(
        acknowledge(&mut d, "a", 0, 3),
        0,
        "still held, accepted now"
    );
    let start = d.shard.share_partitions(GROUP).unwrap()[&(T, 0)].start_offset();
    assert_eq!(start, 4);
}

#[test]
fn share_state_survives_a_restart_and_records_in_flight_are_offered_again() {
    let mut d = driver();
    earliest(&mut d);
    heartbeat(&mut d, "a", 0);
    session(&mut d, "a", 0).unwrap();
    assert_eq!(fetch(&mut d, "a", 6, 6), vec![(0, 5, 1)]);
    assert_eq!(acknowledge(&mut d, "a", 0, 1), 0);
    d.shard = d.rebuilt(GroupConfig::default());
    let partition = &d.shard.share_partitions(GROUP).unwrap()[&(T, 0)];
    assert_eq!(partition.start_offset(), 2);
    heartbeat(&mut d, "b", 0);
    session(&mut d, "b", 0).unwrap();
    assert_eq!(fetch(&mut d, "b", 6, 10), vec![(2, 5, 2)]);
}
