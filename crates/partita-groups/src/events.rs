//! What happens to groups, as events: for the structured log, the rebalance timeline and
//! metrics. The coordinator records them as it goes; its driver takes them after each step.

/// Partitions by topic.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

/// Why a rebalance started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RebalanceCause {
    /// A new member joined.
    MemberJoined,
    /// A member left with LeaveGroup.
    MemberLeft,
    /// A member stopped heartbeating for longer than its session timeout.
    SessionTimeout,
    /// A member did not rejoin within the rebalance timeout (`max.poll.interval.ms`).
    MissedPoll,
    /// Members of a new generation did not send SyncGroup in time.
    SyncTimeout,
    /// A member rejoined with different metadata: a changed subscription, new partitions of a
    /// subscribed topic (the leader rejoins), or the second round of a cooperative rebalance.
    MetadataChanged,
    /// A static member restarted with different metadata.
    StaticMemberRestarted,
    /// The assignment could not be stored.
    StorageFailure,
}

impl RebalanceCause {
    /// A stable, lower-case name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            RebalanceCause::MemberJoined => "join",
            RebalanceCause::MemberLeft => "leave",
            RebalanceCause::SessionTimeout => "session_timeout",
            RebalanceCause::MissedPoll => "missed_poll",
            RebalanceCause::SyncTimeout => "sync_timeout",
            RebalanceCause::MetadataChanged => "metadata_changed",
            RebalanceCause::StaticMemberRestarted => "static_restart",
            RebalanceCause::StorageFailure => "storage_failure",
        }
    }
}

/// Why a member was removed by the coordinator rather than by its own LeaveGroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalReason {
    /// No heartbeat within the session timeout.
    SessionTimeout,
    /// Did not rejoin within the rebalance timeout.
    MissedPoll,
    /// Did not send SyncGroup within the rebalance timeout.
    SyncTimeout,
}

impl RemovalReason {
    /// A stable, lower-case name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            RemovalReason::SessionTimeout => "session_timeout",
            RemovalReason::MissedPoll => "missed_poll",
            RemovalReason::SyncTimeout => "sync_timeout",
        }
    }
}

/// One thing that happened to a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEventKind {
    /// A member was admitted.
    MemberJoined {
        /// Its member id.
        member_id: String,
        /// Its `client.id`.
        client_id: String,
        /// Its `group.instance.id`, for a static member.
        group_instance_id: Option<String>,
    },
    /// A member left with LeaveGroup.
    MemberLeft {
        /// Its member id.
        member_id: String,
    },
    /// The coordinator removed a member.
    MemberRemoved {
        /// Its member id.
        member_id: String,
        /// Why.
        reason: RemovalReason,
    },
    /// A static member came back with a new member id and took over the old one's place.
    StaticMemberRejoined {
        /// The fenced member id.
        old_member_id: String,
        /// The member id it has now.
        new_member_id: String,
    },
    /// A rebalance started.
    RebalanceStarted {
        /// The generation it will replace.
        generation: i32,
        /// Why.
        cause: RebalanceCause,
    },
    /// A rebalance ended with every member holding its assignment.
    RebalanceCompleted {
        /// The new generation.
        generation: i32,
        /// When the rebalance started (ms since the epoch).
        started_at_ms: i64,
        /// Why it started.
        cause: RebalanceCause,
        /// Each member's assigned partitions, by topic (empty for protocols other than
        /// `consumer`).
        assignment: Vec<(String, TopicPartitions)>,
    },
    /// The last member left; the group is empty.
    GroupEmptied {
        /// The generation it ended at.
        generation: i32,
    },
    /// The group was deleted.
    GroupDeleted,
}

/// A group event with its time and group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEvent {
    /// When it happened, in ms since the epoch (the coordinator's `now`).
    pub at_ms: i64,
    /// The group.
    pub group_id: String,
    /// What happened.
    pub kind: GroupEventKind,
}
