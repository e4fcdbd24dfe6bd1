//! The shard's deadlines, in time order: the next one is found without looking at every
//! member of every group. Each group has at most one entry, its earliest deadline, put back
//! in place after every operation on the group.

use std::collections::{BTreeSet, HashMap};

/// What a deadline is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadlineKey {
    /// The earliest deadline of one group: a session, a join or sync phase, a rebalance
    /// timeout.
    Group(String),
    /// The periodic check for expired offsets (`offsets.retention.check.interval.ms`).
    OffsetsExpiry,
}

/// Deadlines ordered by time.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    by_time: BTreeSet<(i64, DeadlineKey)>,
    by_key: HashMap<DeadlineKey, i64>,
    /// Nothing is due before this instant (after a failed append).
    paused_until: i64,
}

impl Deadlines {
    /// Sets (or, with `None`, clears) the deadline of `key`.
    pub(super) fn set(&mut self, key: DeadlineKey, at: Option<i64>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            self.by_time.insert((at, key.clone()));
            self.by_key.insert(key, at);
        }
    }

    /// The earliest deadline that has passed at `now`.
    pub(super) fn due(&self, now: i64) -> Option<DeadlineKey> {
        if now < self.paused_until {
            return None;
        }
        self.by_time
            .first()
            .filter(|(at, _)| *at <= now)
            .map(|(_, key)| key.clone())
    }

    /// When the earliest deadline passes.
    pub(super) fn next(&self) -> Option<i64> {
        self.by_time
            .first()
            .map(|(at, _)| (*at).max(self.paused_until))
    }

    /// Holds every deadline back until `until`.
    pub(super) fn pause_until(&mut self, until: i64) {
        self.paused_until = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_deadline_comes_first_and_moves_with_its_key() {
        let mut deadlines = Deadlines::default();
        let a = DeadlineKey::Group("a".into());
        let b = DeadlineKey::Group("b".into());
        deadlines.set(a.clone(), Some(50));
        deadlines.set(b.clone(), Some(20));
        assert_eq!(deadlines.next(), Some(20));
        assert_eq!(deadlines.due(19), None);
        assert_eq!(deadlines.due(20), Some(b.clone()));
        deadlines.set(b.clone(), Some(70));
        assert_eq!(deadlines.due(60), Some(a.clone()));
        deadlines.set(a, None);
        assert_eq!(deadlines.next(), Some(70));
        deadlines.pause_until(100);
        assert_eq!(deadlines.due(80), None);
        assert_eq!(deadlines.next(), Some(100));
        assert_eq!(deadlines.due(100), Some(b));
    }
}
