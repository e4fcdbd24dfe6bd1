//! The recent history of group events (joins, leaves, evictions, rebalances), kept in bounded
//! memory for the rebalance timeline and metrics.

use std::collections::VecDeque;
use std::sync::Mutex;

use partita_groups::GroupEvent;

/// A bounded ring of the most recent group events, oldest first.
pub struct GroupEventLog {
    capacity: usize,
    events: Mutex<VecDeque<GroupEvent>>,
}

impl GroupEventLog {
    /// Keeps at most `capacity` events; older ones are dropped.
    pub fn new(capacity: usize) -> GroupEventLog {
        GroupEventLog {
            capacity,
            events: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
        }
    }

    /// Appends events as they happened.
    pub fn record(&self, new: Vec<GroupEvent>) {
        if new.is_empty() {
            return;
        }
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        for event in new {
            if events.len() == self.capacity {
                events.pop_front();
            }
            events.push_back(event);
        }
    }

    /// The retained events, of one group or of all, oldest first.
    pub fn recent(&self, group_id: Option<&str>) -> Vec<GroupEvent> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events
            .iter()
            .filter(|e| group_id.is_none_or(|g| e.group_id == g))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use partita_groups::GroupEventKind;

    fn event(group: &str, at_ms: i64) -> GroupEvent {
        GroupEvent {
            at_ms,
            group_id: group.to_string(),
            kind: GroupEventKind::GroupDeleted,
        }
    }

    #[test]
    fn keeps_only_the_newest_events() {
        let log = GroupEventLog::new(3);
        log.record((0..5).map(|i| event("a", i)).collect());
        let kept: Vec<i64> = log.recent(None).iter().map(|e| e.at_ms).collect();
        assert_eq!(kept, vec![2, 3, 4]);
        log.record(vec![event("b", 9)]);
        assert_eq!(log.recent(Some("b")).len(), 1);
    }
}
