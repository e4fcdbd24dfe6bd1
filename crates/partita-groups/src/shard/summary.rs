//! What each group looks like now, for the dashboard and `/metrics`: published by the shard's
//! driver from time to time, so that a scrape reads memory instead of asking every shard.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_groups_response::DescribedGroup;

use super::share::ShareGroupStatus;
use super::{Group, GroupShard};

/// One group now.
#[derive(Clone, Debug)]
pub struct GroupSummary {
    /// The group id.
    pub group_id: String,
    /// `classic`, `consumer` or `share`.
    pub kind: &'static str,
    /// The group as DescribeGroups shows it (for a classic or consumer group).
    pub described: Option<DescribedGroup>,
    /// Committed offsets by topic and partition.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// Members and share-partitions (for a share group).
    pub share: Option<ShareGroupStatus>,
}

impl GroupShard {
    /// Summaries of the groups changed since the last call, and the ids of the groups gone.
    pub fn take_changed_summaries(&mut self) -> (Vec<GroupSummary>, Vec<String>) {
        let changed = std::mem::take(&mut self.changed);
        let mut summaries = Vec::new();
        let mut gone = Vec::new();
        for group_id in changed {
            match self.groups.get(&group_id) {
                Some(group) => summaries.push(self.summary(group)),
                None => gone.push(group_id),
            }
        }
        (summaries, gone)
    }

    /// Whether a group changed since the summaries were last taken.
    pub fn has_changed_summaries(&self) -> bool {
        !self.changed.is_empty()
    }

    fn summary(&self, group: &Group) -> GroupSummary {
        let group_id = group.group_id();
        let offsets = self
            .offsets
            .get(group_id)
            .into_iter()
            .flatten()
            .map(|(key, committed)| (key.clone(), committed.offset))
            .collect();
        let (described, share) = match group {
            Group::Share(_) => (None, self.share_status(group_id)),
            _ => (Some(self.described(group_id)), None),
        };
        GroupSummary {
            group_id: group_id.to_string(),
            kind: group.kind(),
            described,
            offsets,
            share,
        }
    }
}
