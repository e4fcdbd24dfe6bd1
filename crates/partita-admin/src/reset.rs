//! Resetting a group's committed offsets: parse what to reset, plan (old offset, new offset,
//! lag after), and apply the plan. Only an inactive group may be reset, as in Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::client::AdminClient;
use crate::error::{AdminError, Result};
use crate::groups;
use crate::offsets::{self, OffsetSpec, TopicPartition};

/// Where to move each offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetStrategy {
    /// The log start offset.
    ToEarliest,
    /// The log end offset.
    ToLatest,
    /// This offset.
    ToOffset(i64),
    /// The committed offset plus this (negative moves back).
    ShiftBy(i64),
    /// The first offset at or after this time (ms since the epoch).
    ToDatetime(i64),
    /// The first offset at or after now minus this many ms.
    ByDuration(i64),
    /// The committed offset (or the log end offset where there is none).
    ToCurrent,
}

/// Which partitions to reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetScope {
    /// Every partition the group has a committed offset for.
    AllTopics,
    /// These topics, each with all partitions (`None`) or a list.
    Topics(Vec<(String, Option<Vec<i32>>)>),
}

/// One line of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedReset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset before the reset, `None` if there was none.
    pub current_offset: Option<i64>,
    /// Committed offset after the reset.
    pub new_offset: i64,
    /// Log end offset now.
    pub log_end_offset: i64,
    /// Lag once the reset is applied.
    pub lag_after: i64,
}

/// Parses `TOPIC` or `TOPIC:P,P,...` (a partition list as `kafka-consumer-groups` takes it).
pub fn parse_topic_partitions(spec: &str) -> Result<(String, Option<Vec<i32>>)> {
    let bad = |why: String| AdminError::InvalidInput(format!("invalid --topic {spec:?}: {why}"));
    let (topic, partitions) = match spec.split_once(':') {
        None => (spec, None),
        Some((topic, list)) => {
            let mut partitions = BTreeSet::new();
            for item in list.split(',') {
                let item = item.trim();
                let partition: i32 = item
                    .parse()
                    .ok()
                    .filter(|p| *p >= 0)
                    .ok_or_else(|| bad(format!("{item:?} is not a partition number")))?;
                partitions.insert(partition);
            }
            (topic, Some(partitions.into_iter().collect()))
        }
    };
    if topic.is_empty() {
        return Err(bad("empty topic name".into()));
    }
    Ok((topic.to_string(), partitions))
}

/// The new offset for one partition, clamped to `[earliest, latest]`.
///
/// `by_time` is what ListOffsets found for a time strategy (`None`: no record that late, so
/// the log end). Fails only for `ShiftBy` without a committed offset to shift from.
pub fn new_offset(
    strategy: ResetStrategy,
    current: Option<i64>,
    earliest: i64,
    latest: i64,
    by_time: Option<i64>,
) -> std::result::Result<i64, &'static str> {
    let wanted = match strategy {
        ResetStrategy::ToEarliest => earliest,
        ResetStrategy::ToLatest => latest,
        ResetStrategy::ToOffset(offset) => offset,
        ResetStrategy::ShiftBy(delta) => current
            .ok_or("no committed offset to shift from")?
            .saturating_add(delta),
        ResetStrategy::ToDatetime(_) | ResetStrategy::ByDuration(_) => by_time.unwrap_or(latest),
        ResetStrategy::ToCurrent => current.unwrap_or(latest),
    };
    Ok(wanted.clamp(earliest, latest.max(earliest)))
}

/// Plans a reset of `group`; refuses a group with active members.
pub async fn plan_reset(
    client: &mut AdminClient,
    group: &str,
    scope: &ResetScope,
    strategy: ResetStrategy,
) -> Result<Vec<PlannedReset>> {
    let (state, members) = groups::group_state(client, group).await?;
    if members > 0 || !matches!(state.as_str(), "Empty" | "Dead") {
        return Err(AdminError::GroupActive {
            group: group.to_string(),
            state,
            members,
        });
    }
    let committed = offsets::committed_offsets(client, group).await?;
    let wanted: Vec<(String, Option<Vec<i32>>)> = match scope {
        ResetScope::Topics(topics) => topics.clone(),
        ResetScope::AllTopics => {
            let topics: BTreeSet<&String> = committed.keys().map(|(t, _)| t).collect();
            if topics.is_empty() {
                return Err(AdminError::InvalidInput(format!(
                    "group {group:?} has no committed offsets; name the topics with --topic"
                )));
            }
            topics.into_iter().map(|t| (t.clone(), None)).collect()
        }
    };
    let names: Vec<String> = wanted.iter().map(|(t, _)| t.clone()).collect();
    let topics = client.existing_topics(&names).await?;
    let mut partitions: Vec<TopicPartition> = Vec::new();
    for (name, list) in &wanted {
        let info = topics
            .iter()
            .find(|t| &t.name == name)
            .expect("checked to exist");
        let existing: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        match list {
            None => partitions.extend(existing.iter().map(|p| (name.clone(), *p))),
            Some(list) => {
                for p in list {
                    if !existing.contains(p) {
                        return Err(AdminError::InvalidInput(format!(
                            "topic {name} has no partition {p} (it has {})",
                            existing.len()
                        )));
                    }
                    partitions.push((name.clone(), *p));
                }
            }
        }
    }
    let earliest =
        offsets::list_offsets(client, &topics, &partitions, OffsetSpec::Earliest).await?;
    let latest = offsets::list_offsets(client, &topics, &partitions, OffsetSpec::Latest).await?;
    let by_time = match strategy {
        ResetStrategy::ToDatetime(ms) => Some(ms),
        ResetStrategy::ByDuration(ms) => Some(now_ms() - ms),
        _ => None,
    };
    let found_by_time = match by_time {
        Some(ms) => {
            offsets::list_offsets(client, &topics, &partitions, OffsetSpec::Timestamp(ms)).await?
        }
        None => BTreeMap::new(),
    };
    let mut plan = Vec::new();
    for tp in &partitions {
        let current = committed.get(tp).copied();
        let start = earliest.get(tp).copied().unwrap_or(0);
        let end = latest.get(tp).copied().unwrap_or(start);
        let new = new_offset(
            strategy,
            current,
            start,
            end,
            found_by_time.get(tp).copied(),
        )
        .map_err(|why| AdminError::InvalidInput(format!("{}-{}: {why}", tp.0, tp.1)))?;
        plan.push(PlannedReset {
            topic: tp.0.clone(),
            partition: tp.1,
            current_offset: current,
            new_offset: new,
            log_end_offset: end,
            lag_after: (end - new).max(0),
        });
    }
    Ok(plan)
}

/// Commits the new offsets of `plan` for `group`.
pub async fn execute_reset(
    client: &mut AdminClient,
    group: &str,
    plan: &[PlannedReset],
) -> Result<()> {
    let offsets: BTreeMap<TopicPartition, i64> = plan
        .iter()
        .map(|row| ((row.topic.clone(), row.partition), row.new_offset))
        .collect();
    offsets::commit_offsets(client, group, &offsets).await
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lists_parse_or_are_refused() {
        assert_eq!(
            parse_topic_partitions("orders").unwrap(),
            ("orders".to_string(), None)
        );
        assert_eq!(
            parse_topic_partitions("orders:2,0, 1").unwrap(),
            ("orders".to_string(), Some(vec![0, 1, 2]))
        );
        for bad in ["orders:", "orders:a", "orders:1,,2", "orders:-1", ":1"] {
            assert!(
                parse_topic_partitions(bad).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn offsets_are_clamped_to_the_log() {
        use ResetStrategy::*;
        assert_eq!(new_offset(ToOffset(500), Some(5), 10, 100, None), Ok(100));
        assert_eq!(new_offset(ToOffset(3), Some(5), 10, 100, None), Ok(10));
        assert_eq!(new_offset(ShiftBy(-50), Some(40), 10, 100, None), Ok(10));
        assert_eq!(new_offset(ShiftBy(7), Some(40), 10, 100, None), Ok(47));
        assert!(new_offset(ShiftBy(7), None, 10, 100, None).is_err());
        assert_eq!(new_offset(ToEarliest, Some(40), 10, 100, None), Ok(10));
        assert_eq!(new_offset(ToLatest, None, 10, 100, None), Ok(100));
        assert_eq!(new_offset(ToCurrent, Some(40), 10, 100, None), Ok(40));
        assert_eq!(new_offset(ToCurrent, None, 10, 100, None), Ok(100));
        assert_eq!(new_offset(ToDatetime(0), None, 10, 100, Some(60)), Ok(60));
        assert_eq!(new_offset(ByDuration(0), None, 10, 100, None), Ok(100));
    }
}
