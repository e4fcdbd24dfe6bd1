//! The recent history of group events (joins, leaves, evictions, rebalances), kept in bounded
//! memory for the rebalance timeline and metrics.

use std::collections::VecDeque;
use std::sync::Mutex;

use partita_groups::GroupEvent;

/// A bounded ring of the most recent group events, oldest first. Every event gets a sequence
/// number, counting from 0 since the broker started, so that a reader can take what it has
/// not seen yet even after the ring has wrapped.
pub struct GroupEventLog {
    capacity: usize,
    ring: Mutex<Ring>,
}

struct Ring {
    events: VecDeque<GroupEvent>,
    /// Sequence number of the oldest event kept.
    first: u64,
}

impl GroupEventLog {
    /// Keeps at most `capacity` events; older ones are dropped.
    pub fn new(capacity: usize) -> GroupEventLog {
        GroupEventLog {
            capacity,
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity.min(1024)),
                first: 0,
            }),
        }
    }

    /// Appends events as they happened.
    pub fn record(&self, new: Vec<GroupEvent>) {
        if new.is_empty() {
            return;
        }
        let mut ring = self.lock();
        for event in new {
            if ring.events.len() == self.capacity {
                ring.events.pop_front();
                ring.first += 1;
            }
            ring.events.push_back(event);
        }
    }

    /// The events from sequence number `next` on, and the sequence number to ask for next
    /// time. Events older than the ring are gone; the count of those is `skipped`.
    pub fn since(&self, next: u64) -> Since {
        let ring = self.lock();
        let end = ring.first + ring.events.len() as u64;
        let from = next.clamp(ring.first, end);
        Since {
            events: ring
                .events
                .range((from - ring.first) as usize..)
                .cloned()
                .collect(),
            next: end,
            skipped: from - next.min(from),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The retained events, of one group or of all, oldest first.
    pub fn recent(&self, group_id: Option<&str>) -> Vec<GroupEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| group_id.is_none_or(|g| e.group_id == g))
            .cloned()
            .collect()
    }
}

/// What [`GroupEventLog::since`] returns.
pub struct Since {
    /// The events not seen yet, oldest first.
    pub events: Vec<GroupEvent>,
    /// The sequence number to ask for next time.
    pub next: u64,
    /// Events that were dropped from the ring before they could be read.
    pub skipped: u64,
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

    #[test]
    fn since_returns_each_event_once_even_when_identical_or_after_a_wrap() {
        let log = GroupEventLog::new(3);
        log.record(vec![event("a", 1), event("a", 1)]);
        let first = log.since(0);
        assert_eq!((first.events.len(), first.next, first.skipped), (2, 2, 0));
        assert_eq!(log.since(first.next).events.len(), 0);
        log.record(vec![event("a", 1)]);
        let second = log.since(first.next);
        assert_eq!((second.events.len(), second.next), (1, 3));
        // Five more wrap the ring of three: two were never read.
        log.record((10..15).map(|i| event("a", i)).collect());
        let third = log.since(second.next);
        let kept: Vec<i64> = third.events.iter().map(|e| e.at_ms).collect();
        assert_eq!((kept, third.next, third.skipped), (vec![12, 13, 14], 8, 2));
    }
}
