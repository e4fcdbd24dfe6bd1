//! What every API checks before it runs, as Kafka checks it, when ACLs are on: each request is
//! looked at before its handler, and either refused whole (a consumer without READ on its
//! group gets GROUP_AUTHORIZATION_FAILED) or stripped of what the principal may not touch,
//! whose entries are put back into the response with TOPIC_AUTHORIZATION_FAILED (or the
//! error of the resource), so that the handler only ever sees what is allowed.
//!
//! Metadata, ListGroups and OffsetFetch for "everything" leave out what the principal may
//! not describe, as Kafka does.

use kafka_protocol::messages::*;

use crate::acl::{Operation, ResourceType, Session, CLUSTER_NAME};
use crate::broker::Broker;

/// Puts the entries of refused resources back into a response.
pub(crate) type Fixup<R> = Box<dyn FnOnce(R) -> R + Send>;

/// What to do with a request.
pub(crate) enum Guarded<Req, Resp> {
    /// Answer this without running the handler.
    Refused(Resp),
    /// Run the handler on this request, then apply the fixup to its response.
    Proceed(Req, Option<Fixup<Resp>>),
}

/// A request whose resources are checked.
pub(crate) trait Guard: Sized {
    type Response;
    fn guard(self, check: &Check<'_>, version: i16) -> Guarded<Self, Self::Response>;
}

/// The principal and the ACLs it is checked against.
pub(crate) struct Check<'a> {
    pub(crate) broker: &'a Broker,
    pub(crate) session: &'a Session,
}

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TRANSACTIONAL_ID_DENIED: i16 = 53;

impl Check<'_> {
    fn allowed(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.broker
            .authorizer
            .authorize(self.session, operation, resource_type, name)
    }

    fn topic(&self, operation: Operation, name: &str) -> bool {
        self.allowed(operation, ResourceType::Topic, name)
    }

    fn group(&self, operation: Operation, name: &str) -> bool {
        self.allowed(operation, ResourceType::Group, name)
    }

    fn cluster(&self, operation: Operation) -> bool {
        self.allowed(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// The name of a topic given by id (Fetch v13+, share APIs), if it exists.
    fn topic_name(&self, id: uuid::Uuid) -> Option<String> {
        self.broker.topics.get_by_id(id).map(|t| t.name.clone())
    }
}

/// A request checked whole against one resource: refused with `refuse` if not allowed.
fn whole<Req, Resp>(
    allowed: bool,
    request: Req,
    refuse: impl FnOnce() -> Resp,
) -> Guarded<Req, Resp> {
    match allowed {
        true => Guarded::Proceed(request, None),
        false => Guarded::Refused(refuse()),
    }
}

/// Splits `items` into the allowed and the refused.
fn split<T>(items: Vec<T>, mut allowed: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|item| allowed(item))
}

/// A fixup appending entries, or none when there is nothing to append.
fn append<R: 'static, T: Send + 'static>(
    refused: Vec<T>,
    put: impl FnOnce(&mut R, Vec<T>) + Send + 'static,
) -> Option<Fixup<R>> {
    (!refused.is_empty()).then(|| {
        Box::new(move |mut response: R| {
            put(&mut response, refused);
            response
        }) as Fixup<R>
    })
}

/// `first`, then `then`.
fn chain<R: 'static>(first: Option<Fixup<R>>, then: Fixup<R>) -> Option<Fixup<R>> {
    Some(match first {
        None => then,
        Some(first) => Box::new(move |response| then(first(response))),
    })
}

/// KIP-430: the operations `session` may do on a resource, as a bit field of operation codes,
/// out of those the resource supports (`supported`, the bit field reported without ACLs).
fn authorized_operations(
    acls: &crate::acl::AclSnapshot,
    session: &Session,
    resource_type: ResourceType,
    name: &str,
    supported: i32,
) -> i32 {
    (0..32)
        .filter(|bit| supported & (1 << bit) != 0)
        .filter_map(|bit| Operation::from_code(bit as i8))
        .filter(|operation| acls.authorize(session, *operation, resource_type, name))
        .fold(0, |bits, operation| bits | (1 << operation.code()))
}

/// A fixup replacing the authorized operations of each entry named by `entries`.
fn operations_of<R: 'static>(
    check: &Check<'_>,
    resource_type: ResourceType,
    entries: fn(&mut R) -> Vec<(&str, &mut i32)>,
) -> Fixup<R> {
    let (acls, session) = (check.broker.authorizer.snapshot(), check.session.clone());
    Box::new(move |mut response: R| {
        for (name, bits) in entries(&mut response) {
            if *bits != i32::MIN {
                *bits = authorized_operations(&acls, &session, resource_type, name, *bits);
            }
        }
        response
    })
}

macro_rules! allow_all {
    ($($request:ty => $response:ty),* $(,)?) => {$(
        impl Guard for $request {
            type Response = $response;
            fn guard(self, _check: &Check<'_>, _version: i16) -> Guarded<Self, $response> {
                Guarded::Proceed(self, None)
            }
        }
    )*};
}

allow_all!(
    ApiVersionsRequest => ApiVersionsResponse,
    SaslHandshakeRequest => SaslHandshakeResponse,
    SaslAuthenticateRequest => SaslAuthenticateResponse,
);

/// Requests that need one operation on the cluster, refused whole with the top-level error.
macro_rules! cluster_operation {
    ($($request:ty => $response:ty, $operation:expr, $refuse:expr;)*) => {$(
        impl Guard for $request {
            type Response = $response;
            fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, $response> {
                let refuse: fn(&Self) -> $response = $refuse;
                match check.cluster($operation) {
                    true => Guarded::Proceed(self, None),
                    false => Guarded::Refused(refuse(&self)),
                }
            }
        }
    )*};
}

cluster_operation!(
    DescribeAclsRequest => DescribeAclsResponse, Operation::Describe,
        |_| DescribeAclsResponse::default().with_error_code(CLUSTER_DENIED);
    CreateAclsRequest => CreateAclsResponse, Operation::Alter,
        |r| CreateAclsResponse::default().with_results(r.creations.iter().map(|_|
            create_acls_response::AclCreationResult::default().with_error_code(CLUSTER_DENIED)).collect());
    DeleteAclsRequest => DeleteAclsResponse, Operation::Alter,
        |r| DeleteAclsResponse::default().with_filter_results(r.filters.iter().map(|_|
            delete_acls_response::DeleteAclsFilterResult::default().with_error_code(CLUSTER_DENIED)).collect());
    DescribeUserScramCredentialsRequest => DescribeUserScramCredentialsResponse, Operation::Describe,
        |_| DescribeUserScramCredentialsResponse::default().with_error_code(CLUSTER_DENIED);
    AlterUserScramCredentialsRequest => AlterUserScramCredentialsResponse, Operation::Alter,
        |r| {
            let users: std::collections::BTreeSet<&str> = r.deletions.iter().map(|d| d.name.as_str())
                .chain(r.upsertions.iter().map(|u| u.name.as_str())).collect();
            AlterUserScramCredentialsResponse::default().with_results(users.into_iter().map(|u|
                alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                    .with_user(u.to_string().into())
                    .with_error_code(CLUSTER_DENIED)).collect())
        };
);

impl Guard for DescribeClusterRequest {
    type Response = DescribeClusterResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, DescribeClusterResponse> {
        if !check.cluster(Operation::Describe) {
            return Guarded::Refused(
                DescribeClusterResponse::default().with_error_code(CLUSTER_DENIED),
            );
        }
        let fixup = operations_of(
            check,
            ResourceType::Cluster,
            |r: &mut DescribeClusterResponse| {
                vec![(CLUSTER_NAME, &mut r.cluster_authorized_operations)]
            },
        );
        Guarded::Proceed(self, Some(fixup))
    }
}

impl Guard for ProduceRequest {
    type Response = ProduceResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, ProduceResponse> {
        use produce_response::{PartitionProduceResponse, TopicProduceResponse};
        let (allowed, refused) = split(std::mem::take(&mut self.topic_data), |t| {
            check.topic(Operation::Write, t.name.as_str())
        });
        self.topic_data = allowed;
        let fixup = append(
            refused,
            |response: &mut ProduceResponse, refused: Vec<produce_request::TopicProduceData>| {
                for topic in refused {
                    response.responses.push(
                        TopicProduceResponse::default()
                            .with_name(topic.name)
                            .with_topic_id(topic.topic_id)
                            .with_partition_responses(
                                topic
                                    .partition_data
                                    .iter()
                                    .map(|p| {
                                        PartitionProduceResponse::default()
                                            .with_index(p.index)
                                            .with_error_code(TOPIC_DENIED)
                                            .with_base_offset(-1)
                                            .with_log_append_time_ms(-1)
                                            .with_log_start_offset(-1)
                                    })
                                    .collect(),
                            ),
                    );
                }
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for FetchRequest {
    type Response = FetchResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, FetchResponse> {
        use fetch_response::{FetchableTopicResponse, PartitionData};
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            let name = match t.topic.as_str() {
                "" => check.topic_name(t.topic_id),
                name => Some(name.to_string()),
            };
            // An unknown topic id is the handler's to answer (UNKNOWN_TOPIC_ID).
            name.is_none_or(|name| check.topic(Operation::Read, &name))
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            |response: &mut FetchResponse, refused: Vec<fetch_request::FetchTopic>| {
                for topic in refused {
                    response.responses.push(
                        FetchableTopicResponse::default()
                            .with_topic(topic.topic)
                            .with_topic_id(topic.topic_id)
                            .with_partitions(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|p| {
                                        PartitionData::default()
                                            .with_partition_index(p.partition)
                                            .with_error_code(TOPIC_DENIED)
                                            .with_high_watermark(-1)
                                            .with_last_stable_offset(-1)
                                            .with_log_start_offset(-1)
                                    })
                                    .collect(),
                            ),
                    );
                }
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for MetadataRequest {
    type Response = MetadataResponse;
    fn guard(self, check: &Check<'_>, version: i16) -> Guarded<Self, MetadataResponse> {
        let (cluster, topics) = (
            self.include_cluster_authorized_operations,
            self.include_topic_authorized_operations,
        );
        let Guarded::Proceed(request, fixup) = metadata_topics(self, check, version) else {
            unreachable!("Metadata is never refused whole")
        };
        let fixup = match cluster {
            true => chain(
                fixup,
                operations_of(check, ResourceType::Cluster, |r: &mut MetadataResponse| {
                    vec![(CLUSTER_NAME, &mut r.cluster_authorized_operations)]
                }),
            ),
            false => fixup,
        };
        let fixup = match topics {
            true => chain(
                fixup,
                operations_of(check, ResourceType::Topic, |r: &mut MetadataResponse| {
                    r.topics
                        .iter_mut()
                        .filter(|t| t.error_code == 0)
                        .filter_map(|t| {
                            Some((
                                t.name.as_ref()?.as_str(),
                                &mut t.topic_authorized_operations,
                            ))
                        })
                        .collect()
                }),
            ),
            false => fixup,
        };
        Guarded::Proceed(request, fixup)
    }
}

/// Metadata's topics: those the principal may not describe are refused, or left out of a
/// listing of every topic.
fn metadata_topics(
    mut request: MetadataRequest,
    check: &Check<'_>,
    _version: i16,
) -> Guarded<MetadataRequest, MetadataResponse> {
    use metadata_response::MetadataResponseTopic;
    {
        let Some(topics) = request.topics.take() else {
            // Every topic: only those the principal may describe.
            let (acls, session) = (check.broker.authorizer.snapshot(), check.session.clone());
            return Guarded::Proceed(
                request,
                Some(Box::new(move |mut response: MetadataResponse| {
                    response.topics.retain(|t| {
                        t.name.as_ref().is_some_and(|n| {
                            acls.authorize(
                                &session,
                                Operation::Describe,
                                ResourceType::Topic,
                                n.as_str(),
                            )
                        })
                    });
                    response
                })),
            );
        };
        let (allowed, refused) = split(topics, |t| {
            t.name
                .as_ref()
                .is_none_or(|n| check.topic(Operation::Describe, n.as_str()))
        });
        // A topic is created on the fly only for a principal that may create it.
        if request.allow_auto_topic_creation
            && !check.cluster(Operation::Create)
            && allowed.iter().any(|t| {
                t.name
                    .as_ref()
                    .is_some_and(|n| !check.topic(Operation::Create, n.as_str()))
            })
        {
            request.allow_auto_topic_creation = false;
        }
        request.topics = Some(allowed);
        let fixup = append(
            refused,
            |response: &mut MetadataResponse,
             refused: Vec<metadata_request::MetadataRequestTopic>| {
                for topic in refused {
                    response.topics.push(
                        MetadataResponseTopic::default()
                            .with_name(topic.name)
                            .with_topic_id(topic.topic_id)
                            .with_error_code(TOPIC_DENIED),
                    );
                }
            },
        );
        Guarded::Proceed(request, fixup)
    }
}

impl Guard for ListOffsetsRequest {
    type Response = ListOffsetsResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, ListOffsetsResponse> {
        use list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            check.topic(Operation::Describe, t.name.as_str())
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            |response: &mut ListOffsetsResponse,
             refused: Vec<list_offsets_request::ListOffsetsTopic>| {
                for topic in refused {
                    response.topics.push(
                        ListOffsetsTopicResponse::default()
                            .with_name(topic.name)
                            .with_partitions(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|p| {
                                        ListOffsetsPartitionResponse::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(TOPIC_DENIED)
                                            .with_timestamp(-1)
                                            .with_offset(-1)
                                    })
                                    .collect(),
                            ),
                    );
                }
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for OffsetForLeaderEpochRequest {
    type Response = OffsetForLeaderEpochResponse;
    fn guard(
        mut self,
        check: &Check<'_>,
        _version: i16,
    ) -> Guarded<Self, OffsetForLeaderEpochResponse> {
        use offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            check.topic(Operation::Describe, t.topic.as_str())
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            |response: &mut OffsetForLeaderEpochResponse,
             refused: Vec<offset_for_leader_epoch_request::OffsetForLeaderTopic>| {
                for topic in refused {
                    response.topics.push(
                        OffsetForLeaderTopicResult::default()
                            .with_topic(topic.topic)
                            .with_partitions(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|p| {
                                        EpochEndOffset::default()
                                            .with_partition(p.partition)
                                            .with_error_code(TOPIC_DENIED)
                                            .with_leader_epoch(-1)
                                            .with_end_offset(-1)
                                    })
                                    .collect(),
                            ),
                    );
                }
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for FindCoordinatorRequest {
    type Response = FindCoordinatorResponse;
    fn guard(self, check: &Check<'_>, version: i16) -> Guarded<Self, FindCoordinatorResponse> {
        let key_type = self.key_type;
        // Share keys (KIP-932) are the brokers' own: CLUSTER_ACTION, as in Kafka. Unknown key
        // types are refused by the handler.
        let allowed = |key: &str| match key_type {
            0 => check.group(Operation::Describe, key),
            1 => check.allowed(Operation::Describe, ResourceType::TransactionalId, key),
            2 => version < 6 || check.cluster(Operation::ClusterAction),
            _ => true,
        };
        let error = match self.key_type {
            1 => TRANSACTIONAL_ID_DENIED,
            2 => CLUSTER_DENIED,
            _ => GROUP_DENIED,
        };
        if version < 4 {
            return whole(allowed(self.key.as_str()), self, || {
                FindCoordinatorResponse::default()
                    .with_error_code(error)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
            });
        }
        let mut request = self;
        let keys = std::mem::take(&mut request.coordinator_keys);
        let (keys, refused) = split(keys, |k| allowed(k.as_str()));
        request.coordinator_keys = keys;
        let fixup = append(
            refused,
            move |response: &mut FindCoordinatorResponse,
                  refused: Vec<kafka_protocol::protocol::StrBytes>| {
                for key in refused {
                    response.coordinators.push(
                        find_coordinator_response::Coordinator::default()
                            .with_key(key)
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(error),
                    );
                }
            },
        );
        Guarded::Proceed(request, fixup)
    }
}

/// Group APIs refused whole without READ on the group.
macro_rules! group_read {
    ($($request:ty => $response:ty, $group:ident, $refuse:expr;)*) => {$(
        impl Guard for $request {
            type Response = $response;
            fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, $response> {
                let refuse: fn(&Self) -> $response = $refuse;
                match check.group(Operation::Read, self.$group.as_str()) {
                    true => Guarded::Proceed(self, None),
                    false => Guarded::Refused(refuse(&self)),
                }
            }
        }
    )*};
}

group_read!(
    JoinGroupRequest => JoinGroupResponse, group_id,
        |_| JoinGroupResponse::default().with_error_code(GROUP_DENIED).with_generation_id(-1);
    SyncGroupRequest => SyncGroupResponse, group_id,
        |_| SyncGroupResponse::default().with_error_code(GROUP_DENIED);
    HeartbeatRequest => HeartbeatResponse, group_id,
        |_| HeartbeatResponse::default().with_error_code(GROUP_DENIED);
    LeaveGroupRequest => LeaveGroupResponse, group_id,
        |_| LeaveGroupResponse::default().with_error_code(GROUP_DENIED);
    ConsumerGroupHeartbeatRequest => ConsumerGroupHeartbeatResponse, group_id,
        |_| ConsumerGroupHeartbeatResponse::default().with_error_code(GROUP_DENIED);
    ShareGroupHeartbeatRequest => ShareGroupHeartbeatResponse, group_id,
        |_| ShareGroupHeartbeatResponse::default().with_error_code(GROUP_DENIED);
);

impl Guard for OffsetCommitRequest {
    type Response = OffsetCommitResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, OffsetCommitResponse> {
        use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
        let answer = |topic: &offset_commit_request::OffsetCommitRequestTopic, error: i16| {
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error)
                        })
                        .collect(),
                )
        };
        if !check.group(Operation::Read, self.group_id.as_str()) {
            let topics = self
                .topics
                .iter()
                .map(|t| answer(t, GROUP_DENIED))
                .collect();
            return Guarded::Refused(OffsetCommitResponse::default().with_topics(topics));
        }
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            check.topic(Operation::Read, t.name.as_str())
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            move |response: &mut OffsetCommitResponse,
                  refused: Vec<offset_commit_request::OffsetCommitRequestTopic>| {
                response
                    .topics
                    .extend(refused.iter().map(|t| answer(t, TOPIC_DENIED)));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for OffsetFetchRequest {
    type Response = OffsetFetchResponse;
    fn guard(mut self, check: &Check<'_>, version: i16) -> Guarded<Self, OffsetFetchResponse> {
        // Topics the principal may not describe are left out of what is fetched or listed.
        let describable = |name: &str| check.topic(Operation::Describe, name);
        if version < 8 {
            if !check.group(Operation::Describe, self.group_id.as_str()) {
                return Guarded::Refused(
                    OffsetFetchResponse::default().with_error_code(GROUP_DENIED),
                );
            }
            if let Some(topics) = self.topics.as_mut() {
                topics.retain(|t| describable(t.name.as_str()));
            }
            let (acls, session) = (check.broker.authorizer.snapshot(), check.session.clone());
            return Guarded::Proceed(
                self,
                Some(Box::new(move |mut response: OffsetFetchResponse| {
                    response.topics.retain(|t| {
                        acls.authorize(
                            &session,
                            Operation::Describe,
                            ResourceType::Topic,
                            t.name.as_str(),
                        )
                    });
                    response
                })),
            );
        }
        let (allowed, refused) = split(std::mem::take(&mut self.groups), |g| {
            check.group(Operation::Describe, g.group_id.as_str())
        });
        self.groups = allowed;
        for group in &mut self.groups {
            if let Some(topics) = group.topics.as_mut() {
                topics.retain(|t| describable(t.name.as_str()));
            }
        }
        let (acls, session) = (check.broker.authorizer.snapshot(), check.session.clone());
        Guarded::Proceed(
            self,
            Some(Box::new(move |mut response: OffsetFetchResponse| {
                for group in &mut response.groups {
                    group.topics.retain(|t| {
                        acls.authorize(
                            &session,
                            Operation::Describe,
                            ResourceType::Topic,
                            t.name.as_str(),
                        )
                    });
                }
                response.groups.extend(refused.into_iter().map(|g| {
                    offset_fetch_response::OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(GROUP_DENIED)
                }));
                response
            })),
        )
    }
}

/// The group describes: groups the principal may not describe answer GROUP_AUTHORIZATION_FAILED;
/// the others, if asked, say what the principal may do with them (KIP-430).
macro_rules! describe_groups {
    ($($request:ty => $response:ty, $groups:ident, $described:ty;)*) => {$(
        impl Guard for $request {
            type Response = $response;
            fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, $response> {
                let (allowed, refused) = split(std::mem::take(&mut self.$groups), |g| {
                    check.group(Operation::Describe, g.as_str())
                });
                self.$groups = allowed;
                let fixup = append(refused, |response: &mut $response, refused: Vec<GroupId>| {
                    response.groups.extend(refused.into_iter().map(|g| {
                        <$described>::default()
                            .with_group_id(g)
                            .with_error_code(GROUP_DENIED)
                    }));
                });
                let fixup = match self.include_authorized_operations {
                    true => chain(
                        fixup,
                        operations_of(check, ResourceType::Group, |r: &mut $response| {
                            r.groups
                                .iter_mut()
                                .filter(|g| g.error_code == 0)
                                .map(|g| (g.group_id.as_str(), &mut g.authorized_operations))
                                .collect()
                        }),
                    ),
                    false => fixup,
                };
                Guarded::Proceed(self, fixup)
            }
        }
    )*};
}

describe_groups!(
    DescribeGroupsRequest => DescribeGroupsResponse, groups,
        describe_groups_response::DescribedGroup;
    ConsumerGroupDescribeRequest => ConsumerGroupDescribeResponse, group_ids,
        consumer_group_describe_response::DescribedGroup;
    ShareGroupDescribeRequest => ShareGroupDescribeResponse, group_ids,
        share_group_describe_response::DescribedGroup;
);

impl Guard for ListGroupsRequest {
    type Response = ListGroupsResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, ListGroupsResponse> {
        if check.cluster(Operation::Describe) {
            return Guarded::Proceed(self, None);
        }
        // Only the groups the principal may describe, decided on the ACLs in force now.
        let (acls, session) = (check.broker.authorizer.snapshot(), check.session.clone());
        Guarded::Proceed(
            self,
            Some(Box::new(move |mut response: ListGroupsResponse| {
                response.groups.retain(|g| {
                    acls.authorize(
                        &session,
                        Operation::Describe,
                        ResourceType::Group,
                        g.group_id.as_str(),
                    )
                });
                response
            })),
        )
    }
}

impl Guard for DeleteGroupsRequest {
    type Response = DeleteGroupsResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, DeleteGroupsResponse> {
        let (allowed, refused) = split(std::mem::take(&mut self.groups_names), |g| {
            check.group(Operation::Delete, g.as_str())
        });
        self.groups_names = allowed;
        let fixup = append(
            refused,
            |response: &mut DeleteGroupsResponse, refused: Vec<GroupId>| {
                response.results.extend(refused.into_iter().map(|g| {
                    delete_groups_response::DeletableGroupResult::default()
                        .with_group_id(g)
                        .with_error_code(GROUP_DENIED)
                }));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for OffsetDeleteRequest {
    type Response = OffsetDeleteResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, OffsetDeleteResponse> {
        use offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
        if !check.group(Operation::Delete, self.group_id.as_str()) {
            return Guarded::Refused(OffsetDeleteResponse::default().with_error_code(GROUP_DENIED));
        }
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            check.topic(Operation::Read, t.name.as_str())
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            |response: &mut OffsetDeleteResponse,
             refused: Vec<offset_delete_request::OffsetDeleteRequestTopic>| {
                response.topics.extend(refused.into_iter().map(|t| {
                    OffsetDeleteResponseTopic::default()
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC_DENIED)
                                })
                                .collect(),
                        )
                        .with_name(t.name)
                }));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for CreateTopicsRequest {
    type Response = CreateTopicsResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, CreateTopicsResponse> {
        let anywhere = check.cluster(Operation::Create);
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            anywhere || check.topic(Operation::Create, t.name.as_str())
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            |response: &mut CreateTopicsResponse,
             refused: Vec<create_topics_request::CreatableTopic>| {
                response.topics.extend(refused.into_iter().map(|t| {
                    create_topics_response::CreatableTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(TOPIC_DENIED)
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_configs(None)
                }));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for DeleteTopicsRequest {
    type Response = DeleteTopicsResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, DeleteTopicsResponse> {
        let may_delete =
            |name: Option<String>| name.is_none_or(|n| check.topic(Operation::Delete, &n));
        let (names, refused_names) = split(std::mem::take(&mut self.topic_names), |n| {
            may_delete(Some(n.to_string()))
        });
        self.topic_names = names;
        let (states, refused_states) = split(std::mem::take(&mut self.topics), |t| {
            may_delete(
                t.name
                    .as_ref()
                    .map(|n| n.to_string())
                    .or_else(|| check.topic_name(t.topic_id)),
            )
        });
        self.topics = states;
        let mut refused: Vec<delete_topics_response::DeletableTopicResult> = refused_names
            .into_iter()
            .map(|n| delete_topics_response::DeletableTopicResult::default().with_name(Some(n)))
            .collect();
        refused.extend(refused_states.into_iter().map(|t| {
            delete_topics_response::DeletableTopicResult::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
        }));
        let fixup = append(
            refused,
            |response: &mut DeleteTopicsResponse,
             refused: Vec<delete_topics_response::DeletableTopicResult>| {
                response
                    .responses
                    .extend(refused.into_iter().map(|r| r.with_error_code(TOPIC_DENIED)));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for DeleteRecordsRequest {
    type Response = DeleteRecordsResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, DeleteRecordsResponse> {
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            check.topic(Operation::Delete, t.name.as_str())
        });
        self.topics = allowed;
        let fixup =
            append(
                refused,
                |response: &mut DeleteRecordsResponse,
                 refused: Vec<delete_records_request::DeleteRecordsTopic>| {
                    response.topics.extend(refused.into_iter().map(|t| {
                        delete_records_response::DeleteRecordsTopicResult::default()
                    .with_partitions(t.partitions.iter().map(|p| {
                        delete_records_response::DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(TOPIC_DENIED)
                    }).collect())
                    .with_name(t.name)
                    }));
                },
            );
        Guarded::Proceed(self, fixup)
    }
}

impl Guard for CreatePartitionsRequest {
    type Response = CreatePartitionsResponse;
    fn guard(
        mut self,
        check: &Check<'_>,
        _version: i16,
    ) -> Guarded<Self, CreatePartitionsResponse> {
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            check.topic(Operation::Alter, t.name.as_str())
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            |response: &mut CreatePartitionsResponse,
             refused: Vec<create_partitions_request::CreatePartitionsTopic>| {
                response.results.extend(refused.into_iter().map(|t| {
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(TOPIC_DENIED)
                }));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

/// Whether a config resource (2 a topic, 4 a broker, 8 a broker logger, 16 a group) may be
/// read or changed, and the error if not.
fn config_resource(
    check: &Check<'_>,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Option<i16> {
    let allowed = match resource_type {
        2 => check.topic(operation, name),
        16 => check.group(operation, name),
        _ => check.cluster(operation),
    };
    (!allowed).then_some(match resource_type {
        2 => TOPIC_DENIED,
        16 => GROUP_DENIED,
        _ => CLUSTER_DENIED,
    })
}

impl Guard for DescribeConfigsRequest {
    type Response = DescribeConfigsResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, DescribeConfigsResponse> {
        let mut refused = Vec::new();
        self.resources.retain(|r| {
            match config_resource(
                check,
                Operation::DescribeConfigs,
                r.resource_type,
                r.resource_name.as_str(),
            ) {
                Some(error) => {
                    refused.push((r.resource_type, r.resource_name.clone(), error));
                    false
                }
                None => true,
            }
        });
        let fixup = append(
            refused,
            |response: &mut DescribeConfigsResponse,
             refused: Vec<(i8, kafka_protocol::protocol::StrBytes, i16)>| {
                response
                    .results
                    .extend(refused.into_iter().map(|(resource_type, name, error)| {
                        describe_configs_response::DescribeConfigsResult::default()
                            .with_resource_type(resource_type)
                            .with_resource_name(name)
                            .with_error_code(error)
                    }));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

macro_rules! alter_configs {
    ($($request:ty => $response:ty, $result:ty;)*) => {$(
        impl Guard for $request {
            type Response = $response;
            fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, $response> {
                let mut refused = Vec::new();
                self.resources.retain(|r| {
                    match config_resource(check, Operation::AlterConfigs, r.resource_type, r.resource_name.as_str()) {
                        Some(error) => {
                            refused.push((r.resource_type, r.resource_name.clone(), error));
                            false
                        }
                        None => true,
                    }
                });
                let fixup = append(refused, |response: &mut $response, refused: Vec<(i8, kafka_protocol::protocol::StrBytes, i16)>| {
                    response.responses.extend(refused.into_iter().map(|(resource_type, name, error)| {
                        <$result>::default()
                            .with_resource_type(resource_type)
                            .with_resource_name(name)
                            .with_error_code(error)
                    }));
                });
                Guarded::Proceed(self, fixup)
            }
        }
    )*};
}

alter_configs!(
    AlterConfigsRequest => AlterConfigsResponse, alter_configs_response::AlterConfigsResourceResponse;
    IncrementalAlterConfigsRequest => IncrementalAlterConfigsResponse,
        incremental_alter_configs_response::AlterConfigsResourceResponse;
);

impl Guard for InitProducerIdRequest {
    type Response = InitProducerIdResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, InitProducerIdResponse> {
        let refuse = |error| {
            InitProducerIdResponse::default()
                .with_error_code(error)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        };
        if let Some(id) = &self.transactional_id {
            let allowed =
                check.allowed(Operation::Write, ResourceType::TransactionalId, id.as_str());
            return whole(allowed, self, || refuse(TRANSACTIONAL_ID_DENIED));
        }
        // An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
        let allowed = check.cluster(Operation::IdempotentWrite)
            || check.broker.authorizer.allows_some(
                check.session,
                Operation::Write,
                ResourceType::Topic,
            );
        whole(allowed, self, || refuse(CLUSTER_DENIED))
    }
}

/// EndTxn: WRITE on the transactional id.
impl Guard for EndTxnRequest {
    type Response = EndTxnResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, EndTxnResponse> {
        let allowed = check.allowed(
            Operation::Write,
            ResourceType::TransactionalId,
            self.transactional_id.as_str(),
        );
        whole(allowed, self, || {
            EndTxnResponse::default()
                .with_error_code(TRANSACTIONAL_ID_DENIED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        })
    }
}

/// AddOffsetsToTxn: WRITE on the transactional id, then READ on the group.
impl Guard for AddOffsetsToTxnRequest {
    type Response = AddOffsetsToTxnResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, AddOffsetsToTxnResponse> {
        let code = if !check.allowed(
            Operation::Write,
            ResourceType::TransactionalId,
            self.transactional_id.as_str(),
        ) {
            TRANSACTIONAL_ID_DENIED
        } else if !check.group(Operation::Read, self.group_id.as_str()) {
            GROUP_DENIED
        } else {
            return Guarded::Proceed(self, None);
        };
        Guarded::Refused(AddOffsetsToTxnResponse::default().with_error_code(code))
    }
}

/// TxnOffsetCommit: WRITE on the transactional id and READ on the group, or every partition
/// is refused; then READ on each topic, the topics denied answered TOPIC_AUTHORIZATION_FAILED.
impl Guard for TxnOffsetCommitRequest {
    type Response = TxnOffsetCommitResponse;
    fn guard(mut self, check: &Check<'_>, _version: i16) -> Guarded<Self, TxnOffsetCommitResponse> {
        use txn_offset_commit_response::{
            TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
        };
        let answer = |topic: &txn_offset_commit_request::TxnOffsetCommitRequestTopic,
                      error: i16| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error)
                        })
                        .collect(),
                )
        };
        let whole_error = if !check.allowed(
            Operation::Write,
            ResourceType::TransactionalId,
            self.transactional_id.as_str(),
        ) {
            Some(TRANSACTIONAL_ID_DENIED)
        } else if !check.group(Operation::Read, self.group_id.as_str()) {
            Some(GROUP_DENIED)
        } else {
            None
        };
        if let Some(code) = whole_error {
            let topics = self.topics.iter().map(|t| answer(t, code)).collect();
            return Guarded::Refused(TxnOffsetCommitResponse::default().with_topics(topics));
        }
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            check.topic(Operation::Read, t.name.as_str())
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            move |response: &mut TxnOffsetCommitResponse,
                  refused: Vec<txn_offset_commit_request::TxnOffsetCommitRequestTopic>| {
                response
                    .topics
                    .extend(refused.iter().map(|t| answer(t, TOPIC_DENIED)));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

/// AddPartitionsToTxn: WRITE on the transactional id, and on every topic; with one denied,
/// nothing is added (the others are OPERATION_NOT_ATTEMPTED, as in Kafka).
impl Guard for AddPartitionsToTxnRequest {
    type Response = AddPartitionsToTxnResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, AddPartitionsToTxnResponse> {
        use add_partitions_to_txn_response::{
            AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
        };
        let id_allowed = check.allowed(
            Operation::Write,
            ResourceType::TransactionalId,
            self.v3_and_below_transactional_id.as_str(),
        );
        let denied: Vec<bool> = self
            .v3_and_below_topics
            .iter()
            .map(|t| !check.topic(Operation::Write, t.name.as_str()))
            .collect();
        if id_allowed && !denied.iter().any(|d| *d) {
            return Guarded::Proceed(self, None);
        }
        let results = self
            .v3_and_below_topics
            .iter()
            .zip(denied)
            .map(|(topic, denied)| {
                let code = match (id_allowed, denied) {
                    (false, _) => TRANSACTIONAL_ID_DENIED,
                    (true, true) => TOPIC_DENIED,
                    (true, false) => kafka_protocol::ResponseError::OperationNotAttempted.code(),
                };
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_results_by_partition(
                        topic
                            .partitions
                            .iter()
                            .map(|p| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_partition_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        Guarded::Refused(
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
        )
    }
}

/// DescribeTransactions: DESCRIBE on each transactional id; the others are answered
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
impl Guard for DescribeTransactionsRequest {
    type Response = DescribeTransactionsResponse;
    fn guard(
        mut self,
        check: &Check<'_>,
        _version: i16,
    ) -> Guarded<Self, DescribeTransactionsResponse> {
        let (allowed, refused) = split(std::mem::take(&mut self.transactional_ids), |id| {
            check.allowed(
                Operation::Describe,
                ResourceType::TransactionalId,
                id.as_str(),
            )
        });
        self.transactional_ids = allowed;
        let fixup = append(
            refused,
            |response: &mut DescribeTransactionsResponse, refused: Vec<TransactionalId>| {
                response
                    .transaction_states
                    .extend(refused.into_iter().map(|id| {
                        describe_transactions_response::TransactionState::default()
                            .with_transactional_id(id)
                            .with_error_code(TRANSACTIONAL_ID_DENIED)
                            .with_producer_id(ProducerId(-1))
                            .with_producer_epoch(-1)
                            .with_transaction_start_time_ms(-1)
                    }));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

/// WriteTxnMarkers: CLUSTER_ACTION on the cluster, as brokers and `kafka-transactions.sh
/// abort` have it.
impl Guard for WriteTxnMarkersRequest {
    type Response = WriteTxnMarkersResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, WriteTxnMarkersResponse> {
        use write_txn_markers_response::{
            WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
        };
        if check.cluster(Operation::ClusterAction) {
            return Guarded::Proceed(self, None);
        }
        let markers = self
            .markers
            .iter()
            .map(|m| {
                let topics = m.topics.iter().map(|t| {
                    let partitions = t.partition_indexes.iter().map(|p| {
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(*p)
                            .with_error_code(CLUSTER_DENIED)
                    });
                    WritableTxnMarkerTopicResult::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions.collect())
                });
                WritableTxnMarkerResult::default()
                    .with_producer_id(m.producer_id)
                    .with_topics(topics.collect())
            })
            .collect();
        Guarded::Refused(WriteTxnMarkersResponse::default().with_markers(markers))
    }
}

/// DescribeProducers: READ on each topic; the others are answered
/// TOPIC_AUTHORIZATION_FAILED.
impl Guard for DescribeProducersRequest {
    type Response = DescribeProducersResponse;
    fn guard(
        mut self,
        check: &Check<'_>,
        _version: i16,
    ) -> Guarded<Self, DescribeProducersResponse> {
        use describe_producers_response::{PartitionResponse, TopicResponse};
        let (allowed, refused) = split(std::mem::take(&mut self.topics), |t| {
            check.topic(Operation::Read, t.name.as_str())
        });
        self.topics = allowed;
        let fixup = append(
            refused,
            move |response: &mut DescribeProducersResponse,
                  refused: Vec<describe_producers_request::TopicRequest>| {
                response.topics.extend(refused.into_iter().map(|t| {
                    let partitions = t.partition_indexes.iter().map(|p| {
                        PartitionResponse::default()
                            .with_partition_index(*p)
                            .with_error_code(TOPIC_DENIED)
                    });
                    TopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions.collect())
                }));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

/// ListTransactions: only the transactional ids the principal may describe.
impl Guard for ListTransactionsRequest {
    type Response = ListTransactionsResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, ListTransactionsResponse> {
        let (acls, session) = (check.broker.authorizer.snapshot(), check.session.clone());
        Guarded::Proceed(
            self,
            Some(Box::new(move |mut response: ListTransactionsResponse| {
                response.transaction_states.retain(|t| {
                    acls.authorize(
                        &session,
                        Operation::Describe,
                        ResourceType::TransactionalId,
                        t.transactional_id.as_str(),
                    )
                });
                response
            })),
        )
    }
}

/// Share APIs: READ on the group, and on every topic named.
fn share_allowed(
    check: &Check<'_>,
    group: Option<&GroupId>,
    topics: impl Iterator<Item = uuid::Uuid>,
) -> Option<i16> {
    if !group.is_none_or(|g| check.group(Operation::Read, g.as_str())) {
        return Some(GROUP_DENIED);
    }
    let mut topics = topics;
    topics
        .any(|id| {
            check
                .topic_name(id)
                .is_some_and(|name| !check.topic(Operation::Read, &name))
        })
        .then_some(TOPIC_DENIED)
}

impl Guard for ShareFetchRequest {
    type Response = ShareFetchResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, ShareFetchResponse> {
        match share_allowed(
            check,
            self.group_id.as_ref(),
            self.topics.iter().map(|t| t.topic_id),
        ) {
            None => Guarded::Proceed(self, None),
            Some(error) => Guarded::Refused(ShareFetchResponse::default().with_error_code(error)),
        }
    }
}

impl Guard for ShareAcknowledgeRequest {
    type Response = ShareAcknowledgeResponse;
    fn guard(self, check: &Check<'_>, _version: i16) -> Guarded<Self, ShareAcknowledgeResponse> {
        match share_allowed(
            check,
            self.group_id.as_ref(),
            self.topics.iter().map(|t| t.topic_id),
        ) {
            None => Guarded::Proceed(self, None),
            Some(error) => {
                Guarded::Refused(ShareAcknowledgeResponse::default().with_error_code(error))
            }
        }
    }
}

impl Guard for DescribeShareGroupOffsetsRequest {
    type Response = DescribeShareGroupOffsetsResponse;
    fn guard(
        mut self,
        check: &Check<'_>,
        _version: i16,
    ) -> Guarded<Self, DescribeShareGroupOffsetsResponse> {
        let (allowed, refused) = split(std::mem::take(&mut self.groups), |g| {
            check.group(Operation::Describe, g.group_id.as_str())
        });
        self.groups = allowed;
        let fixup = append(
            refused,
            |response: &mut DescribeShareGroupOffsetsResponse,
             refused: Vec<
                describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup,
            >| {
                response.groups.extend(refused.into_iter().map(|g| {
                describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(GROUP_DENIED)
            }));
            },
        );
        Guarded::Proceed(self, fixup)
    }
}

/// Applies a fixup, if there is one.
pub(crate) fn fix<R>(response: R, fixup: Option<Fixup<R>>) -> R {
    match fixup {
        Some(fixup) => fixup(response),
        None => response,
    }
}

/// Checks a decoded request when ACLs are on; without them every request proceeds as is.
pub(crate) fn guard<R: Guard>(
    broker: &Broker,
    session: &Session,
    request: R,
    version: i16,
) -> Guarded<R, R::Response> {
    if !broker.authorizer.enabled() {
        return Guarded::Proceed(request, None);
    }
    request.guard(&Check { broker, session }, version)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::ResponseError;

    #[test]
    fn the_errors_are_kafka_s() {
        assert_eq!(
            ResponseError::TopicAuthorizationFailed.code(),
            super::TOPIC_DENIED
        );
        assert_eq!(
            ResponseError::GroupAuthorizationFailed.code(),
            super::GROUP_DENIED
        );
        assert_eq!(
            ResponseError::ClusterAuthorizationFailed.code(),
            super::CLUSTER_DENIED
        );
        assert_eq!(
            ResponseError::TransactionalIdAuthorizationFailed.code(),
            super::TRANSACTIONAL_ID_DENIED
        );
    }
}
