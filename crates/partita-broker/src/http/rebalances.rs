//! Rebalances and membership changes, read from the broker's group event log: the counters
//! and duration histograms of `/metrics`, each group's generation, and the rebalance timeline
//! of the dashboard (cause, duration and the partitions that moved).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use partita_groups::{GroupEvent, GroupEventKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::group_events::GroupEventLog;
use crate::metrics::rebalance_histogram;

/// What the tracker knows of one group since the broker started (the event log itself is
/// bounded): its generation, its rebalances, and the label values of its series.
#[derive(Default)]
struct GroupCounters {
    generation: Option<i32>,
    rebalances: u64,
    causes: BTreeSet<&'static str>,
    reasons: BTreeSet<&'static str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    group: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    group: String,
    reason: &'static str,
}

/// The tracker's series.
#[derive(Clone, Debug)]
struct Families {
    generation: Family<GroupLabels, Gauge>,
    rebalances: Family<CauseLabels, Counter>,
    durations: Family<CauseLabels, Histogram, fn() -> Histogram>,
    joined: Family<GroupLabels, Counter>,
    left: Family<GroupLabels, Counter>,
    removed: Family<ReasonLabels, Counter>,
}

impl Default for Families {
    fn default() -> Self {
        Families {
            generation: Family::default(),
            rebalances: Family::default(),
            durations: Family::new_with_constructor(rebalance_histogram),
            joined: Family::default(),
            left: Family::default(),
            removed: Family::default(),
        }
    }
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
    families: Families,
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
        state.groups.get(group_id).map_or(0, |g| g.rebalances)
    }

    /// Registers the generation, rebalance and membership families of every group.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let families = state.families.clone();
        registry.register(
            "partita_group_generation",
            "Generation of the group (classic protocol), as of its last rebalance since the broker started",
            families.generation,
        );
        registry.register(
            "partita_group_rebalances",
            "Rebalances started, by group and cause",
            families.rebalances,
        );
        registry.register(
            "partita_group_rebalance_duration_seconds",
            "Duration of completed rebalances, from start to every member holding its assignment, by group and cause",
            families.durations,
        );
        registry.register(
            "partita_group_members_joined",
            "Members admitted to the group",
            families.joined,
        );
        registry.register(
            "partita_group_members_left",
            "Members that left the group with LeaveGroup",
            families.left,
        );
        registry.register(
            "partita_group_members_removed",
            "Members the coordinator removed, by reason (session_timeout, missed_poll, sync_timeout)",
            families.removed,
        );
    }
}

impl TrackerState {
    fn count(&mut self, event: &GroupEvent) {
        let group_id = event.group_id.clone();
        let families = &self.families;
        let group = GroupLabels {
            group: group_id.clone(),
        };
        if event.kind == GroupEventKind::GroupDeleted {
            if let Some(counters) = self.groups.remove(&group_id) {
                forget(families, &group_id, &counters);
            }
            return;
        }
        let counters = self.groups.entry(group_id.clone()).or_default();
        // Every group known has its membership counters, at 0 until something happens.
        let joined = families.joined.get_or_create_owned(&group);
        let left = families.left.get_or_create_owned(&group);
        let cause_labels = |cause| CauseLabels {
            group: group_id.clone(),
            cause,
        };
        match &event.kind {
            GroupEventKind::MemberJoined { .. } => {
                joined.inc();
            }
            GroupEventKind::MemberLeft { .. } => {
                left.inc();
            }
            GroupEventKind::MemberRemoved { reason, .. } => {
                counters.reasons.insert(reason.name());
                let labels = ReasonLabels {
                    group: group_id.clone(),
                    reason: reason.name(),
                };
                families.removed.get_or_create(&labels).inc();
            }
            GroupEventKind::RebalanceStarted { generation, cause } => {
                counters.generation = Some(*generation);
                counters.rebalances += 1;
                counters.causes.insert(cause.name());
                families
                    .rebalances
                    .get_or_create(&cause_labels(cause.name()))
                    .inc();
            }
            GroupEventKind::RebalanceCompleted {
                generation,
                started_at_ms,
                cause,
                ..
            } => {
                counters.generation = Some(*generation);
                counters.causes.insert(cause.name());
                let elapsed = (event.at_ms - started_at_ms).max(0) as f64 / 1000.0;
                let histogram = families
                    .durations
                    .get_or_create(&cause_labels(cause.name()));
                histogram.observe(elapsed);
            }
            GroupEventKind::GroupEmptied { generation } => counters.generation = Some(*generation),
            GroupEventKind::StaticMemberRejoined { .. } | GroupEventKind::GroupDeleted => {}
        }
        if let Some(generation) = counters.generation {
            families
                .generation
                .get_or_create(&group)
                .set(i64::from(generation));
        }
    }
}

/// Removes every series of a deleted group.
fn forget(families: &Families, group_id: &str, counters: &GroupCounters) {
    let group = GroupLabels {
        group: group_id.to_string(),
    };
    families.generation.remove(&group);
    families.joined.remove(&group);
    families.left.remove(&group);
    for &cause in &counters.causes {
        let labels = CauseLabels {
            group: group_id.to_string(),
            cause,
        };
        families.rebalances.remove(&labels);
        families.durations.remove(&labels);
    }
    for &reason in &counters.reasons {
        let labels = ReasonLabels {
            group: group_id.to_string(),
            reason,
        };
        families.removed.remove(&labels);
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
        let mut registry = Registry::default();
        tracker.register(&mut registry);
        let text = crate::metrics::encode(&registry);
        assert!(text.contains("partita_group_rebalances_total{group=\"g\",cause=\"join\"} 1\n"));
        assert!(text.contains("partita_group_rebalances_total{group=\"g\",cause=\"leave\"} 1\n"));
        assert!(text.contains(
            "partita_group_rebalance_duration_seconds_bucket{le=\"0.5\",group=\"g\",cause=\"join\"} 1\n"
        ));
        assert!(text.contains(
            "partita_group_rebalance_duration_seconds_count{group=\"g\",cause=\"join\"} 1\n"
        ));
    }
}
