//! Rebalances and membership changes, read from the broker's group event log: the counters
//! and duration histograms of `/metrics`, each group's generation, and the rebalance timeline
//! of the dashboard (cause, duration and the partitions that moved).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use partita_groups::{GroupEvent, GroupEventKind};
use serde::Serialize;

use crate::group_events::GroupEventLog;
use crate::metrics::{Exposition, Histogram, REBALANCE_BUCKETS};

/// Counters of one group, kept since the broker started (the event log itself is bounded).
#[derive(Default)]
struct GroupCounters {
    generation: Option<i32>,
    rebalances: BTreeMap<&'static str, u64>,
    durations: BTreeMap<&'static str, Histogram>,
    joined: u64,
    left: u64,
    removed: BTreeMap<&'static str, u64>,
}

/// Follows the group event log and counts what happened to each group.
///
/// The tracker remembers the sequence number of the next event to count; it is updated every
/// sampling interval and at every scrape, far more often than the ring (10,000 events) wraps.
#[derive(Default)]
pub(crate) struct RebalanceTracker {
    state: Mutex<TrackerState>,
}

#[derive(Default)]
struct TrackerState {
    next: u64,
    groups: BTreeMap<String, GroupCounters>,
}

impl RebalanceTracker {
    /// Counts the events recorded since the last update.
    pub(crate) fn update(&self, log: &GroupEventLog) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let new = log.since(state.next);
        if new.skipped > 0 {
            tracing::warn!(
                skipped = new.skipped,
                "group events dropped before they were counted"
            );
        }
        for event in &new.events {
            state.count(event);
        }
        state.next = new.next;
    }

    /// The generation of `group_id`, if an event told it since the broker started.
    pub(crate) fn generation(&self, group_id: &str) -> Option<i32> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.groups.get(group_id).and_then(|g| g.generation)
    }

    /// Rebalances of `group_id` since the broker started.
    pub(crate) fn rebalance_count(&self, group_id: &str) -> u64 {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .groups
            .get(group_id)
            .map_or(0, |g| g.rebalances.values().sum())
    }

    /// Writes the generation, rebalance and membership families for every group.
    pub(crate) fn write(&self, out: &mut Exposition) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let groups = &state.groups;
        out.family(
            "partita_group_generation",
            "gauge",
            "Generation of the group (classic protocol), as of its last rebalance since the broker started.",
        );
        for (group, counters) in groups {
            if let Some(generation) = counters.generation {
                out.sample("partita_group_generation", &[("group", group)], generation);
            }
        }
        out.family(
            "partita_group_rebalances_total",
            "counter",
            "Rebalances started, by group and cause.",
        );
        for (group, counters) in groups {
            for (cause, count) in &counters.rebalances {
                out.sample(
                    "partita_group_rebalances_total",
                    &[("group", group), ("cause", cause)],
                    *count,
                );
            }
        }
        out.family(
            "partita_group_rebalance_duration_seconds",
            "histogram",
            "Duration of completed rebalances, from start to every member holding its assignment, by group and cause.",
        );
        for (group, counters) in groups {
            for (cause, histogram) in &counters.durations {
                out.histogram(
                    "partita_group_rebalance_duration_seconds",
                    &[("group", group), ("cause", cause)],
                    &histogram.snapshot(),
                );
            }
        }
        out.family(
            "partita_group_members_joined_total",
            "counter",
            "Members admitted to the group.",
        );
        for (group, counters) in groups {
            out.sample(
                "partita_group_members_joined_total",
                &[("group", group)],
                counters.joined,
            );
        }
        out.family(
            "partita_group_members_left_total",
            "counter",
            "Members that left the group with LeaveGroup.",
        );
        for (group, counters) in groups {
            out.sample(
                "partita_group_members_left_total",
                &[("group", group)],
                counters.left,
            );
        }
        out.family(
            "partita_group_members_removed_total",
            "counter",
            "Members the coordinator removed, by reason (session_timeout, missed_poll, sync_timeout).",
        );
        for (group, counters) in groups {
            for (reason, count) in &counters.removed {
                out.sample(
                    "partita_group_members_removed_total",
                    &[("group", group), ("reason", reason)],
                    *count,
                );
            }
        }
    }
}

impl TrackerState {
    fn count(&mut self, event: &GroupEvent) {
        if event.kind == GroupEventKind::GroupDeleted {
            self.groups.remove(&event.group_id);
            return;
        }
        let group = self.groups.entry(event.group_id.clone()).or_default();
        match &event.kind {
            GroupEventKind::MemberJoined { .. } => group.joined += 1,
            GroupEventKind::MemberLeft { .. } => group.left += 1,
            GroupEventKind::MemberRemoved { reason, .. } => {
                *group.removed.entry(reason.name()).or_insert(0) += 1
            }
            GroupEventKind::RebalanceStarted { generation, cause } => {
                group.generation = Some(*generation);
                *group.rebalances.entry(cause.name()).or_insert(0) += 1;
            }
            GroupEventKind::RebalanceCompleted {
                generation,
                started_at_ms,
                cause,
                ..
            } => {
                group.generation = Some(*generation);
                let elapsed = (event.at_ms - started_at_ms).max(0) as u64;
                group
                    .durations
                    .entry(cause.name())
                    .or_insert_with(|| Histogram::new(REBALANCE_BUCKETS))
                    .observe(Duration::from_millis(elapsed));
            }
            GroupEventKind::GroupEmptied { generation } => group.generation = Some(*generation),
            GroupEventKind::StaticMemberRejoined { .. } | GroupEventKind::GroupDeleted => {}
        }
    }
}

/// A partition that changed owner in a rebalance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Move {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The previous owner, `None` if the partition was unassigned.
    pub(crate) from: Option<String>,
    /// The new owner, `None` if it was revoked (first round of a cooperative rebalance).
    pub(crate) to: Option<String>,
}

/// One rebalance of the timeline.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Rebalance {
    pub(crate) cause: &'static str,
    pub(crate) started_at_ms: i64,
    /// `None` while it is in progress.
    pub(crate) completed_at_ms: Option<i64>,
    pub(crate) duration_ms: Option<i64>,
    /// The generation it completed with.
    pub(crate) generation: Option<i32>,
    pub(crate) members: usize,
    pub(crate) moved_count: usize,
    /// The partitions that moved, at most [`MOVES_LISTED`].
    pub(crate) moved: Vec<Move>,
}

/// A membership change of the timeline.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct MemberChange {
    pub(crate) at_ms: i64,
    /// `joined`, `left`, `removed` or `static_rejoined`.
    pub(crate) event: &'static str,
    pub(crate) member_id: String,
    /// Why the coordinator removed it.
    pub(crate) reason: Option<&'static str>,
    pub(crate) client_id: Option<String>,
}

/// A group's recent rebalances and membership changes, newest first.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Timeline {
    pub(crate) rebalances: Vec<Rebalance>,
    pub(crate) member_changes: Vec<MemberChange>,
}

/// How many moved partitions one rebalance lists (the count is always exact).
pub(crate) const MOVES_LISTED: usize = 100;
/// How many rebalances and membership changes a timeline keeps.
const TIMELINE_ENTRIES: usize = 200;

/// Builds the timeline of one group from its events, oldest first.
pub(crate) fn timeline(events: &[GroupEvent]) -> Timeline {
    let mut timeline = Timeline::default();
    let mut owners: HashMap<(String, i32), String> = HashMap::new();
    let mut open: Option<Rebalance> = None;
    for event in events {
        match &event.kind {
            GroupEventKind::RebalanceStarted { cause, .. } => {
                open.get_or_insert(Rebalance {
                    cause: cause.name(),
                    started_at_ms: event.at_ms,
                    completed_at_ms: None,
                    duration_ms: None,
                    generation: None,
                    members: 0,
                    moved_count: 0,
                    moved: Vec::new(),
                });
            }
            GroupEventKind::RebalanceCompleted {
                generation,
                started_at_ms,
                cause,
                assignment,
            } => {
                open = None;
                let new_owners: HashMap<(String, i32), String> = assignment
                    .iter()
                    .flat_map(|(member, topics)| {
                        topics.iter().flat_map(move |(topic, partitions)| {
                            partitions
                                .iter()
                                .map(move |p| ((topic.clone(), *p), member.clone()))
                        })
                    })
                    .collect();
                let mut moved = moves(&owners, &new_owners);
                let moved_count = moved.len();
                moved.truncate(MOVES_LISTED);
                timeline.rebalances.push(Rebalance {
                    cause: cause.name(),
                    started_at_ms: *started_at_ms,
                    completed_at_ms: Some(event.at_ms),
                    duration_ms: Some((event.at_ms - started_at_ms).max(0)),
                    generation: Some(*generation),
                    members: assignment.len(),
                    moved_count,
                    moved,
                });
                owners = new_owners;
            }
            GroupEventKind::GroupEmptied { .. } | GroupEventKind::GroupDeleted => {
                owners.clear();
            }
            GroupEventKind::MemberJoined {
                member_id,
                client_id,
                ..
            } => timeline.member_changes.push(MemberChange {
                at_ms: event.at_ms,
                event: "joined",
                member_id: member_id.clone(),
                reason: None,
                client_id: Some(client_id.clone()),
            }),
            GroupEventKind::MemberLeft { member_id } => {
                timeline.member_changes.push(MemberChange {
                    at_ms: event.at_ms,
                    event: "left",
                    member_id: member_id.clone(),
                    reason: None,
                    client_id: None,
                })
            }
            GroupEventKind::MemberRemoved { member_id, reason } => {
                timeline.member_changes.push(MemberChange {
                    at_ms: event.at_ms,
                    event: "removed",
                    member_id: member_id.clone(),
                    reason: Some(reason.name()),
                    client_id: None,
                })
            }
            GroupEventKind::StaticMemberRejoined { new_member_id, .. } => {
                timeline.member_changes.push(MemberChange {
                    at_ms: event.at_ms,
                    event: "static_rejoined",
                    member_id: new_member_id.clone(),
                    reason: None,
                    client_id: None,
                })
            }
        }
    }
    timeline.rebalances.extend(open);
    timeline.rebalances.reverse();
    timeline.rebalances.truncate(TIMELINE_ENTRIES);
    timeline.member_changes.reverse();
    timeline.member_changes.truncate(TIMELINE_ENTRIES);
    timeline
}

/// The partitions whose owner differs between two assignments, sorted.
fn moves(
    before: &HashMap<(String, i32), String>,
    after: &HashMap<(String, i32), String>,
) -> Vec<Move> {
    let mut moved: Vec<Move> = after
        .iter()
        .filter(|(key, owner)| before.get(*key) != Some(*owner))
        .map(|((topic, partition), owner)| Move {
            topic: topic.clone(),
            partition: *partition,
            from: before.get(&(topic.clone(), *partition)).cloned(),
            to: Some(owner.clone()),
        })
        .chain(
            before
                .iter()
                .filter(|(key, _)| !after.contains_key(*key))
                .map(|((topic, partition), owner)| Move {
                    topic: topic.clone(),
                    partition: *partition,
                    from: Some(owner.clone()),
                    to: None,
                }),
        )
        .collect();
    moved.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use partita_groups::{RebalanceCause, RemovalReason};

    fn at(at_ms: i64, kind: GroupEventKind) -> GroupEvent {
        GroupEvent {
            at_ms,
            group_id: "g".to_string(),
            kind,
        }
    }

    fn completed(
        at_ms: i64,
        started: i64,
        generation: i32,
        owners: &[(&str, &[i32])],
    ) -> GroupEvent {
        at(
            at_ms,
            GroupEventKind::RebalanceCompleted {
                generation,
                started_at_ms: started,
                cause: RebalanceCause::MemberJoined,
                assignment: owners
                    .iter()
                    .map(|(m, ps)| (m.to_string(), vec![("t".to_string(), ps.to_vec())]))
                    .collect(),
            },
        )
    }

    fn started(at_ms: i64, cause: RebalanceCause) -> GroupEvent {
        at(
            at_ms,
            GroupEventKind::RebalanceStarted {
                generation: 1,
                cause,
            },
        )
    }

    #[test]
    fn timeline_shows_cause_duration_and_moved_partitions() {
        let events = vec![
            started(1_000, RebalanceCause::MemberJoined),
            completed(1_250, 1_000, 1, &[("a", &[0, 1, 2, 3])]),
            started(5_000, RebalanceCause::MemberJoined),
            completed(5_400, 5_000, 2, &[("a", &[0, 1]), ("b", &[2, 3])]),
            at(
                9_000,
                GroupEventKind::MemberRemoved {
                    member_id: "b".to_string(),
                    reason: RemovalReason::SessionTimeout,
                },
            ),
            started(9_000, RebalanceCause::SessionTimeout),
        ];
        let timeline = timeline(&events);
        let [in_progress, second, first] = &timeline.rebalances[..] else {
            panic!("{timeline:?}");
        };
        assert_eq!(in_progress.cause, "session_timeout");
        assert_eq!(in_progress.completed_at_ms, None);
        assert_eq!(second.duration_ms, Some(400));
        assert_eq!(second.moved_count, 2);
        assert_eq!(
            second.moved[0],
            Move {
                topic: "t".to_string(),
                partition: 2,
                from: Some("a".to_string()),
                to: Some("b".to_string())
            }
        );
        assert_eq!((first.moved_count, first.members), (4, 1));
        assert_eq!(timeline.member_changes[0].reason, Some("session_timeout"));
    }

    #[test]
    fn tracker_counts_each_event_once_and_keeps_generation() {
        let log = GroupEventLog::new(100);
        let tracker = RebalanceTracker::default();
        log.record(vec![
            started(1_000, RebalanceCause::MemberJoined),
            completed(1_500, 1_000, 1, &[("a", &[0])]),
        ]);
        tracker.update(&log);
        tracker.update(&log);
        log.record(vec![started(2_000, RebalanceCause::MemberLeft)]);
        tracker.update(&log);
        assert_eq!(tracker.rebalance_count("g"), 2);
        assert_eq!(tracker.generation("g"), Some(1));
        let mut out = Exposition::default();
        tracker.write(&mut out);
        let text = out.finish();
        assert!(text.contains("partita_group_rebalances_total{group=\"g\",cause=\"join\"} 1\n"));
        assert!(text.contains("partita_group_rebalances_total{group=\"g\",cause=\"leave\"} 1\n"));
        assert!(text.contains(
            "partita_group_rebalance_duration_seconds_bucket{group=\"g\",cause=\"join\",le=\"0.5\"} 1\n"
        ));
        assert!(text.contains(
            "partita_group_rebalance_duration_seconds_count{group=\"g\",cause=\"join\"} 1\n"
        ));
    }
}
