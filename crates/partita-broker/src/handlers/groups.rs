//! The classic group APIs: each request goes to the coordinator shard of its group (or to
//! every shard, for ListGroups), and the shard's answer comes back as the response.

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::*;
use partita_groups::shard::OffsetFetchGroup;
use partita_groups::{ClientContext, Request, Response};

use crate::broker::Broker;
use crate::connection::NextRequest;
use crate::groups::CoordinatorError;

/// OffsetFetch and DescribeGroups name several groups from these versions on.
const OFFSET_FETCH_BATCHED_VERSION: i16 = 8;

async fn call(
    broker: &Broker,
    group_id: &str,
    client: &ClientContext,
    request: Request,
) -> Result<Response, CoordinatorError> {
    broker.groups.call(group_id, client, request).await
}

/// [`call`] for the requests that wait for the rest of the group (JoinGroup, SyncGroup): a
/// stopping broker answers them at once with COORDINATOR_NOT_AVAILABLE, so that the client
/// looks for its coordinator again.
async fn call_parked(
    broker: &Broker,
    group_id: &str,
    client: &ClientContext,
    request: Request,
) -> Result<Response, CoordinatorError> {
    let mut stopping = broker.shutdown_signal();
    tokio::select! {
        response = call(broker, group_id, client, request) => response,
        _ = stopping.recv() => Err(CoordinatorError::Unavailable),
    }
}

pub(crate) async fn join_group(
    broker: &Broker,
    client: &ClientContext,
    request: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let group_id = request.group_id.to_string();
    match call_parked(
        broker,
        &group_id,
        client,
        Request::JoinGroup(request, version),
    )
    .await
    {
        // Fields newer than the request's version must not be sent.
        Ok(Response::JoinGroup(mut response)) => {
            if version < 7 {
                response.protocol_type = None;
            }
            if version < 9 {
                response.skip_assignment = false;
            }
            if version < 5 {
                for member in &mut response.members {
                    member.group_instance_id = None;
                }
            }
            response
        }
        other => JoinGroupResponse::default()
            .with_error_code(CoordinatorError::of(other))
            .with_generation_id(-1),
    }
}

pub(crate) async fn sync_group(
    broker: &Broker,
    client: &ClientContext,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let group_id = request.group_id.to_string();
    match call_parked(
        broker,
        &group_id,
        client,
        Request::SyncGroup(request, version),
    )
    .await
    {
        Ok(Response::SyncGroup(mut response)) => {
            if version < 5 {
                response.protocol_type = None;
                response.protocol_name = None;
            }
            response
        }
        other => SyncGroupResponse::default().with_error_code(CoordinatorError::of(other)),
    }
}

pub(crate) async fn heartbeat(
    broker: &Broker,
    client: &ClientContext,
    request: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    let group_id = request.group_id.to_string();
    match call(broker, &group_id, client, Request::Heartbeat(request)).await {
        Ok(Response::Heartbeat(response)) => response,
        other => HeartbeatResponse::default().with_error_code(CoordinatorError::of(other)),
    }
}

pub(crate) async fn leave_group(
    broker: &Broker,
    client: &ClientContext,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = request.group_id.to_string();
    match call(
        broker,
        &group_id,
        client,
        Request::LeaveGroup(request, version),
    )
    .await
    {
        Ok(Response::LeaveGroup(response)) => response,
        other => LeaveGroupResponse::default().with_error_code(CoordinatorError::of(other)),
    }
}

pub(crate) async fn offset_commit(
    broker: &Broker,
    client: &ClientContext,
    mut request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    use super::unknown_partitions::{answer, indexes, refuse_all, take};
    let group_id = request.group_id.to_string();
    let unknown = take(broker, &mut request.topics);
    let asked = indexes(&request.topics);
    let mut response = if request.topics.is_empty() && !unknown.is_empty() {
        // As Kafka: with nothing left to commit, the coordinator is not asked.
        OffsetCommitResponse::default()
    } else {
        match call(
            broker,
            &group_id,
            client,
            Request::OffsetCommit(request, version),
        )
        .await
        {
            Ok(Response::OffsetCommit(response)) => response,
            other => refuse_all(asked, CoordinatorError::of(other)),
        }
    };
    answer(&mut response, unknown);
    response
}

pub(crate) async fn offset_fetch(
    broker: &Broker,
    client: &ClientContext,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= OFFSET_FETCH_BATCHED_VERSION {
        let mut groups = Vec::with_capacity(request.groups.len());
        for wanted in request.groups {
            let group = OffsetFetchGroup {
                group_id: wanted.group_id.to_string(),
                topics: wanted.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                }),
                // v9 names the asking member; only a named member is checked.
                member: wanted
                    .member_id
                    .map(|member_id| (member_id.to_string(), wanted.member_epoch)),
                require_stable: request.require_stable,
            };
            groups.push(fetch_group(broker, client, group).await);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let group = OffsetFetchGroup {
        group_id: request.group_id.to_string(),
        topics: request.topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect()
        }),
        member: None,
        require_stable: request.require_stable,
    };
    let answer = fetch_group(broker, client, group).await;
    let topics = answer
        .topics
        .into_iter()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_committed_offset(p.committed_offset)
                                .with_committed_leader_epoch(if version >= 5 {
                                    p.committed_leader_epoch
                                } else {
                                    -1
                                })
                                .with_metadata(p.metadata)
                                .with_error_code(p.error_code)
                        })
                        .collect(),
                )
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(answer.error_code)
    } else {
        response
    }
}

async fn fetch_group(
    broker: &Broker,
    client: &ClientContext,
    group: OffsetFetchGroup,
) -> OffsetFetchResponseGroup {
    let group_id = group.group_id.clone();
    match call(broker, &group_id, client, Request::OffsetFetch(group)).await {
        Ok(Response::OffsetFetch(answer)) => answer,
        other => OffsetFetchResponseGroup::default()
            .with_group_id(GroupId(group_id.into()))
            .with_error_code(CoordinatorError::of(other)),
    }
}

pub(crate) async fn offset_delete(
    broker: &Broker,
    client: &ClientContext,
    mut request: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.to_string();
    let unknown = super::unknown_partitions::take(broker, &mut request.topics);
    let mut response = if request.topics.is_empty() && !unknown.is_empty() {
        OffsetDeleteResponse::default()
    } else {
        match call(broker, &group_id, client, Request::OffsetDelete(request)).await {
            Ok(Response::OffsetDelete(response)) => response,
            other => OffsetDeleteResponse::default().with_error_code(CoordinatorError::of(other)),
        }
    };
    super::unknown_partitions::answer(&mut response, unknown);
    response
}

pub(crate) async fn describe_groups(
    broker: &Broker,
    client: &ClientContext,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let id = group_id.to_string();
        let described = match call(broker, &id, client, Request::DescribeGroup(id.clone())).await {
            Ok(Response::DescribeGroup(mut described)) => {
                if version < 4 {
                    for member in &mut described.members {
                        member.group_instance_id = None;
                    }
                }
                described
            }
            other => DescribedGroup::default()
                .with_group_id(group_id)
                .with_error_code(CoordinatorError::of(other)),
        };
        let operations = super::operations::if_asked(
            request.include_authorized_operations && described.error_code == 0,
            super::operations::GROUP,
        );
        groups.push(described.with_authorized_operations(operations));
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(crate) async fn list_groups(
    broker: &Broker,
    client: &ClientContext,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_string())
        .collect();
    let types: Vec<String> = request.types_filter.iter().map(|t| t.to_string()).collect();
    let mut groups = Vec::new();
    // In cluster mode each broker lists the groups it coordinates, as in Kafka; admin
    // clients ask every broker.
    for shard in (0..broker.groups.shard_count()).filter(|&s| broker.groups.leads(s)) {
        let request = Request::ListGroups(states.clone(), types.clone());
        match broker.groups.call_shard(shard, client, request).await {
            Ok(Response::ListGroups(mut listed)) => {
                if version < 5 {
                    // Before v5 a client cannot tell a share group from a consumer group.
                    listed.retain(|group| group.group_type.as_str() != "share");
                    for group in &mut listed {
                        group.group_type = Default::default();
                    }
                }
                groups.extend(listed)
            }
            other => {
                return ListGroupsResponse::default().with_error_code(CoordinatorError::of(other))
            }
        }
    }
    ListGroupsResponse::default().with_groups(groups)
}

/// ConsumerGroupHeartbeat (KIP-848): the shard of the group decides, with the topics as this
/// broker knows them now. A heartbeat with nothing new for its member may be held by the
/// shard until something changes for it; it is answered at once when the client sends
/// another request on this connection, which must not wait behind it.
pub(crate) async fn consumer_group_heartbeat(
    broker: &Broker,
    client: &ClientContext,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    next: &NextRequest,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let topics = broker.topics.image();
    let may_wait = !next.came();
    let request = match may_wait {
        true => Request::ConsumerGroupHeartbeatMayWait(request, version, topics),
        false => Request::ConsumerGroupHeartbeat(request, version, topics),
    };
    let answer = call(broker, &group_id, client, request);
    tokio::pin!(answer);
    let mut next = next.clone();
    let outcome = tokio::select! {
        biased;
        outcome = &mut answer => outcome,
        () = next.wait(), if may_wait => {
            // The heartbeat goes on being polled first, so that it reaches the shard before
            // its release even when the shard's queue is full.
            let release = Request::ReleaseConsumerGroupHeartbeat(group_id.clone(), member_id);
            let (outcome, _) = tokio::join!(answer, call(broker, &group_id, client, release));
            outcome
        }
    };
    match outcome {
        Ok(Response::ConsumerGroupHeartbeat(response)) => response,
        Ok(Response::HeldConsumerGroupHeartbeat(response, why)) => {
            broker.metrics.held_heartbeat_answered(why);
            response
        }
        other => {
            ConsumerGroupHeartbeatResponse::default().with_error_code(CoordinatorError::of(other))
        }
    }
}

pub(crate) async fn consumer_group_describe(
    broker: &Broker,
    client: &ClientContext,
    request: ConsumerGroupDescribeRequest,
    _version: i16,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in request.group_ids {
        let id = group_id.to_string();
        let request = Request::ConsumerGroupDescribe(id.clone(), broker.topics.image());
        let described = match call(broker, &id, client, request).await {
            Ok(Response::ConsumerGroupDescribe(described)) => described,
            other => consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(group_id)
                .with_error_code(CoordinatorError::of(other)),
        };
        groups.push(described);
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

pub(crate) async fn delete_groups(
    broker: &Broker,
    client: &ClientContext,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    let mut seen = std::collections::HashSet::new();
    for group_id in request.groups_names {
        let id = group_id.to_string();
        // A group named twice is deleted and answered once, as in Kafka.
        if !seen.insert(id.clone()) {
            continue;
        }
        let code = match call(broker, &id, client, Request::DeleteGroup(id.clone())).await {
            Ok(Response::DeleteGroup(code)) => code,
            other => CoordinatorError::of(other),
        };
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
