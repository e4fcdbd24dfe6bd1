//! One share-partition (KIP-932): the window of in-flight records a share group reads from
//! one topic-partition. Each record is Available, Acquired by one member until its lock
//! expires, Acknowledged, or Archived; every delivery is counted, and a record delivered
//! too often is archived instead of being offered again.
//!
//! Sans-io: every call takes `now`, and [`SharePartition::next_deadline`] says when lock
//! expiry next matters.

use std::collections::BTreeMap;

/// Where one in-flight record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordState {
    /// May be acquired by any member.
    Available,
    /// Held by one member until its lock expires or it acknowledges.
    Acquired,
    /// Accepted: processed, never delivered again.
    Acknowledged,
    /// Rejected, or delivered too often: never delivered again.
    Archived,
}

impl RecordState {
    /// The state's number in persisted share state (Kafka's RecordState ids).
    pub fn code(self) -> i8 {
        match self {
            RecordState::Available => 0,
            RecordState::Acquired => 1,
            RecordState::Acknowledged => 2,
            RecordState::Archived => 4,
        }
    }

    /// The state for a persisted number.
    pub fn from_code(code: i8) -> RecordState {
        match code {
            1 => RecordState::Acquired,
            2 => RecordState::Acknowledged,
            4 => RecordState::Archived,
            _ => RecordState::Available,
        }
    }
}

/// How a member acknowledges a record (ShareFetch / ShareAcknowledge types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcknowledgeType {
    /// A gap in the offsets (no record there): treated as done.
    Gap,
    /// Processed.
    Accept,
    /// Give it back for another delivery.
    Release,
    /// Cannot be processed: never deliver again.
    Reject,
}

impl AcknowledgeType {
    /// The type for its wire number, if valid.
    pub fn from_code(code: i8) -> Option<AcknowledgeType> {
        match code {
            0 => Some(AcknowledgeType::Gap),
            1 => Some(AcknowledgeType::Accept),
            2 => Some(AcknowledgeType::Release),
            3 => Some(AcknowledgeType::Reject),
            _ => None,
        }
    }
}

/// A range of records acquired together, with their delivery count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquiredRange {
    /// First offset.
    pub first_offset: i64,
    /// Last offset, inclusive.
    pub last_offset: i64,
    /// How many times these records have now been delivered.
    pub delivery_count: i16,
}

/// An acknowledgement for records this member does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the records are not acquired by this member")]
pub struct InvalidRecordState;

/// Settings of a share-partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharePartitionConfig {
    /// `group.share.record.lock.duration.ms`.
    pub lock_duration_ms: i64,
    /// `group.share.delivery.count.limit`.
    pub delivery_count_limit: i16,
    /// `group.share.partition.max.record.locks`: records in flight at most.
    pub max_in_flight: usize,
}

impl Default for SharePartitionConfig {
    fn default() -> Self {
        SharePartitionConfig {
            lock_duration_ms: 30_000,
            delivery_count_limit: 5,
            max_in_flight: 2_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct InFlight {
    state: RecordState,
    delivery_count: i16,
    owner: Option<String>,
    lock_deadline: i64,
}

/// The persisted form of a share-partition: its start offset and the state of every record
/// of its in-flight window, exactly (a partition rebuilt from it is the same partition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareSnapshot {
    /// The share-partition start offset: everything below is done.
    pub start_offset: i64,
    /// Runs of records in the same state, from the start offset on.
    pub batches: Vec<SnapshotBatch>,
}

/// A run of consecutive records in the same state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotBatch {
    /// First offset.
    pub first_offset: i64,
    /// Last offset, inclusive.
    pub last_offset: i64,
    /// Their state.
    pub state: RecordState,
    /// How many times they have been delivered.
    pub delivery_count: i16,
    /// Who holds them, when Acquired.
    pub owner: Option<String>,
    /// When their acquisition lock expires, when Acquired.
    pub lock_deadline: i64,
}

impl SnapshotBatch {
    fn extends(&self, offset: i64, record: &InFlight) -> bool {
        self.last_offset + 1 == offset
            && self.state == record.state
            && self.delivery_count == record.delivery_count
            && self.owner == record.owner
            && self.lock_deadline == record.lock_deadline
    }
}

/// The in-flight window of one share-partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharePartition {
    config: SharePartitionConfig,
    start_offset: i64,
    /// Offsets from `start_offset` below this have been handed out at least once.
    end_offset: i64,
    records: BTreeMap<i64, InFlight>,
}

impl SharePartition {
    /// A share-partition starting at `start_offset` (from `share.auto.offset.reset`).
    pub fn new(config: SharePartitionConfig, start_offset: i64) -> SharePartition {
        SharePartition {
            config,
            start_offset,
            end_offset: start_offset,
            records: BTreeMap::new(),
        }
    }

    /// Rebuilds a share-partition exactly as its snapshot describes it.
    pub fn from_snapshot(config: SharePartitionConfig, snapshot: &ShareSnapshot) -> SharePartition {
        let mut partition = SharePartition::new(config, snapshot.start_offset);
        for batch in &snapshot.batches {
            for offset in batch.first_offset.max(snapshot.start_offset)..=batch.last_offset {
                let record = InFlight {
                    state: batch.state,
                    delivery_count: batch.delivery_count,
                    owner: batch.owner.clone(),
                    lock_deadline: batch.lock_deadline,
                };
                partition.records.insert(offset, record);
            }
            partition.end_offset = partition.end_offset.max(batch.last_offset + 1);
        }
        partition.advance_start();
        partition
    }

    /// Gives back every acquired record, as at start-up, when their holders are gone.
    /// Returns whether anything changed.
    pub fn release_all(&mut self) -> bool {
        let limit = self.config.delivery_count_limit;
        let mut changed = false;
        for record in self.records.values_mut() {
            if record.state == RecordState::Acquired {
                release(record, limit);
                changed = true;
            }
        }
        self.advance_start();
        changed
    }

    /// The share-partition start offset.
    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// Records in flight (acquired, or delivered and waiting to be again).
    pub fn in_flight(&self) -> usize {
        self.records
            .values()
            .filter(|r| matches!(r.state, RecordState::Acquired | RecordState::Available))
            .count()
    }

    /// Records currently acquired by some member.
    pub fn acquired(&self) -> usize {
        self.records
            .values()
            .filter(|r| r.state == RecordState::Acquired)
            .count()
    }

    /// Records of the window that are Available again (released, or whose lock expired),
    /// waiting to be delivered once more.
    pub fn available_in_window(&self) -> usize {
        self.records
            .values()
            .filter(|r| r.state == RecordState::Available)
            .count()
    }

    /// The end of the in-flight window: offsets from here on were never delivered.
    pub fn window_end_offset(&self) -> i64 {
        self.end_offset
    }

    /// Records a member could acquire now if the log ends at `log_end_offset`: those
    /// Available in the window, and those past the window never delivered yet.
    pub fn available(&self, log_end_offset: i64) -> u64 {
        let never_delivered = (log_end_offset - self.end_offset.max(self.start_offset)).max(0);
        self.available_in_window() as u64 + never_delivered as u64
    }

    /// Moves the start past `offset` if the log no longer has records below it.
    pub fn skip_to(&mut self, log_start_offset: i64) {
        if log_start_offset > self.start_offset {
            self.records.retain(|offset, _| *offset >= log_start_offset);
            self.start_offset = log_start_offset;
            self.end_offset = self.end_offset.max(log_start_offset);
            self.advance_start();
        }
    }

    /// The first offset that could be acquired now: the first available record of the
    /// window, or the end of the window.
    pub fn first_acquirable(&self) -> i64 {
        self.records
            .iter()
            .find(|(_, r)| r.state == RecordState::Available)
            .map_or(self.end_offset, |(offset, _)| *offset)
    }

    /// Records `member` holds: acquired by it and not yet acknowledged.
    pub fn held_by(&self, member: &str) -> usize {
        self.records
            .values()
            .filter(|r| r.state == RecordState::Acquired && r.owner.as_deref() == Some(member))
            .count()
    }

    /// How many more records `member` may acquire now, when `sharing` members fetch from
    /// this share-partition and its log ends at `log_end_offset`. Of what is acquirable or
    /// acquired, a member may hold an even part, and take at most half of that in one fetch
    /// (so members come back for more at their own pace: a slow one ends with less than a
    /// fast one, where taking the whole even part at once would split a burst half and half
    /// between a member that needs a second for it and one that needs ten). A lone member
    /// may take everything.
    pub fn fair_share(
        &mut self,
        member: &str,
        now: i64,
        log_end_offset: i64,
        sharing: usize,
    ) -> usize {
        if sharing <= 1 {
            return usize::MAX;
        }
        self.expire_locks(now);
        let outstanding = self.available(log_end_offset) as usize + self.acquired();
        let part = outstanding.div_ceil(sharing);
        let step = outstanding.div_ceil(2 * sharing);
        part.saturating_sub(self.held_by(member)).min(step)
    }

    /// Acquires up to `max_records` records of `from..upper_bound` for `member` (the records
    /// a fetch read): first those offered before and available again, then new ones.
    pub fn acquire(
        &mut self,
        member: &str,
        now: i64,
        from: i64,
        upper_bound: i64,
        max_records: usize,
    ) -> Vec<AcquiredRange> {
        self.expire_locks(now);
        let mut acquired: Vec<(i64, i16)> = Vec::new();
        let lock_deadline = now + self.config.lock_duration_ms;
        let log_end_offset = upper_bound;
        for (offset, record) in self.records.range_mut(from..log_end_offset) {
            if acquired.len() >= max_records {
                break;
            }
            if record.state == RecordState::Available {
                record.state = RecordState::Acquired;
                record.delivery_count += 1;
                record.owner = Some(member.to_string());
                record.lock_deadline = lock_deadline;
                acquired.push((*offset, record.delivery_count));
            }
        }
        while acquired.len() < max_records
            && self.end_offset >= from
            && self.end_offset < log_end_offset
            && self.records.len() < self.config.max_in_flight
        {
            let offset = self.end_offset;
            self.records.insert(
                offset,
                InFlight {
                    state: RecordState::Acquired,
                    delivery_count: 1,
                    owner: Some(member.to_string()),
                    lock_deadline,
                },
            );
            acquired.push((offset, 1));
            self.end_offset += 1;
        }
        acquired.sort_unstable();
        ranges(&acquired)
    }

    /// Applies one acknowledgement of `first..=last` by `member`. Every record of the range
    /// must be acquired by it; otherwise nothing changes.
    pub fn acknowledge(
        &mut self,
        member: &str,
        first: i64,
        last: i64,
        kind: AcknowledgeType,
    ) -> Result<(), InvalidRecordState> {
        if first > last {
            return Err(InvalidRecordState);
        }
        let held = (first..=last).all(|offset| {
            self.records.get(&offset).is_some_and(|r| {
                r.state == RecordState::Acquired && r.owner.as_deref() == Some(member)
            })
        });
        if !held {
            return Err(InvalidRecordState);
        }
        let limit = self.config.delivery_count_limit;
        for offset in first..=last {
            let record = self.records.get_mut(&offset).expect("checked above");
            record.owner = None;
            record.state = match kind {
                AcknowledgeType::Accept | AcknowledgeType::Gap => RecordState::Acknowledged,
                AcknowledgeType::Reject => RecordState::Archived,
                AcknowledgeType::Release if record.delivery_count >= limit => RecordState::Archived,
                AcknowledgeType::Release => RecordState::Available,
            };
        }
        self.advance_start();
        Ok(())
    }

    /// Gives back every record `member` holds, as when it leaves or is removed. Returns
    /// whether it held any.
    pub fn release_member(&mut self, member: &str) -> bool {
        let limit = self.config.delivery_count_limit;
        let mut changed = false;
        for record in self.records.values_mut() {
            if record.state == RecordState::Acquired && record.owner.as_deref() == Some(member) {
                release(record, limit);
                changed = true;
            }
        }
        self.advance_start();
        changed
    }

    /// Makes records whose lock has expired available again (or archives them if they have
    /// been delivered as often as allowed). Returns whether anything changed.
    pub fn expire_locks(&mut self, now: i64) -> bool {
        let limit = self.config.delivery_count_limit;
        let mut changed = false;
        for record in self.records.values_mut() {
            if record.state == RecordState::Acquired && record.lock_deadline <= now {
                release(record, limit);
                changed = true;
            }
        }
        if changed {
            self.advance_start();
        }
        changed
    }

    /// When the next acquisition lock expires.
    pub fn next_deadline(&self) -> Option<i64> {
        self.records
            .values()
            .filter(|r| r.state == RecordState::Acquired)
            .map(|r| r.lock_deadline)
            .min()
    }

    /// The persisted form.
    pub fn snapshot(&self) -> ShareSnapshot {
        let mut batches: Vec<SnapshotBatch> = Vec::new();
        for (offset, record) in &self.records {
            match batches.last_mut() {
                Some(last) if last.extends(*offset, record) => last.last_offset = *offset,
                _ => batches.push(SnapshotBatch {
                    first_offset: *offset,
                    last_offset: *offset,
                    state: record.state,
                    delivery_count: record.delivery_count,
                    owner: record.owner.clone(),
                    lock_deadline: record.lock_deadline,
                }),
            }
        }
        ShareSnapshot {
            start_offset: self.start_offset,
            batches,
        }
    }

    /// Moves the start offset over records that are done, dropping them from the window.
    fn advance_start(&mut self) {
        while let Some(record) = self.records.get(&self.start_offset) {
            if !matches!(
                record.state,
                RecordState::Acknowledged | RecordState::Archived
            ) {
                break;
            }
            self.records.remove(&self.start_offset);
            self.start_offset += 1;
        }
        self.end_offset = self.end_offset.max(self.start_offset);
    }
}

fn release(record: &mut InFlight, limit: i16) {
    record.owner = None;
    record.state = if record.delivery_count >= limit {
        RecordState::Archived
    } else {
        RecordState::Available
    };
}

/// Groups sorted (offset, delivery count) pairs into contiguous ranges of equal count.
fn ranges(acquired: &[(i64, i16)]) -> Vec<AcquiredRange> {
    let mut out: Vec<AcquiredRange> = Vec::new();
    for &(offset, delivery_count) in acquired {
        match out.last_mut() {
            Some(range)
                if range.last_offset + 1 == offset && range.delivery_count == delivery_count =>
            {
                range.last_offset = offset
            }
            _ => out.push(AcquiredRange {
                first_offset: offset,
                last_offset: offset,
                delivery_count,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SharePartitionConfig {
        SharePartitionConfig {
            lock_duration_ms: 1_000,
            delivery_count_limit: 3,
            max_in_flight: 100,
        }
    }

    fn range(first: i64, last: i64, delivery_count: i16) -> AcquiredRange {
        AcquiredRange {
            first_offset: first,
            last_offset: last,
            delivery_count,
        }
    }

    #[test]
    fn members_acquire_disjoint_records() {
        let mut p = SharePartition::new(config(), 0);
        assert_eq!(p.acquire("a", 0, 0, 10, 4), vec![range(0, 3, 1)]);
        assert_eq!(p.acquire("b", 0, 0, 10, 4), vec![range(4, 7, 1)]);
        assert_eq!(p.acquire("c", 0, 0, 10, 4), vec![range(8, 9, 1)]);
        assert_eq!(p.acquire("c", 0, 0, 10, 4), vec![], "nothing left");
    }

    #[test]
    fn accepted_records_move_the_start_offset_and_are_never_delivered_again() {
        let mut p = SharePartition::new(config(), 0);
        p.acquire("a", 0, 0, 5, 5);
        p.acknowledge("a", 0, 4, AcknowledgeType::Accept).unwrap();
        assert_eq!(p.start_offset(), 5);
        assert_eq!(p.acquire("b", 10, 0, 5, 5), vec![]);
    }

    #[test]
    fn released_records_come_back_with_a_higher_delivery_count() {
        let mut p = SharePartition::new(config(), 0);
        p.acquire("a", 0, 0, 3, 3);
        p.acknowledge("a", 1, 1, AcknowledgeType::Release).unwrap();
        assert_eq!(p.acquire("b", 0, 0, 3, 3), vec![range(1, 1, 2)]);
    }

    #[test]
    fn rejected_records_never_come_back() {
        let mut p = SharePartition::new(config(), 0);
        p.acquire("a", 0, 0, 2, 2);
        p.acknowledge("a", 0, 0, AcknowledgeType::Reject).unwrap();
        p.acknowledge("a", 1, 1, AcknowledgeType::Release).unwrap();
        assert_eq!(p.acquire("b", 0, 0, 2, 5), vec![range(1, 1, 2)]);
        assert_eq!(p.start_offset(), 1, "the rejected record is archived");
    }

    #[test]
    fn a_record_released_past_the_delivery_limit_is_archived() {
        let mut p = SharePartition::new(config(), 0);
        for delivery in 1..=3 {
            assert_eq!(p.acquire("a", 0, 0, 1, 1), vec![range(0, 0, delivery)]);
            p.acknowledge("a", 0, 0, AcknowledgeType::Release).unwrap();
        }
        assert_eq!(
            p.acquire("a", 0, 0, 1, 1),
            vec![],
            "archived after 3 deliveries"
        );
        assert_eq!(p.start_offset(), 1);
    }

    #[test]
    fn expired_locks_make_records_available_to_others() {
        let mut p = SharePartition::new(config(), 0);
        p.acquire("a", 0, 0, 2, 2);
        assert_eq!(p.next_deadline(), Some(1_000));
        assert_eq!(p.acquire("b", 999, 0, 2, 2), vec![], "still locked");
        assert_eq!(p.acquire("b", 1_000, 0, 2, 2), vec![range(0, 1, 2)]);
        // The first holder's late acknowledgement is refused.
        assert_eq!(
            p.acknowledge("a", 0, 1, AcknowledgeType::Accept),
            Err(InvalidRecordState)
        );
        p.acknowledge("b", 0, 1, AcknowledgeType::Accept).unwrap();
        assert_eq!(p.start_offset(), 2);
    }

    #[test]
    fn acknowledging_records_not_held_is_refused_whole() {
        let mut p = SharePartition::new(config(), 0);
        p.acquire("a", 0, 0, 2, 1);
        p.acquire("b", 0, 0, 2, 1);
        assert_eq!(
            p.acknowledge("a", 0, 1, AcknowledgeType::Accept),
            Err(InvalidRecordState)
        );
        assert_eq!(
            p.acknowledge("a", 5, 5, AcknowledgeType::Accept),
            Err(InvalidRecordState)
        );
        p.acknowledge("a", 0, 0, AcknowledgeType::Accept).unwrap();
        p.acknowledge("b", 1, 1, AcknowledgeType::Accept).unwrap();
        assert_eq!(p.start_offset(), 2);
    }

    #[test]
    fn a_member_that_leaves_gives_its_records_back() {
        let mut p = SharePartition::new(config(), 0);
        p.acquire("a", 0, 0, 3, 3);
        p.release_member("a");
        assert_eq!(p.acquire("b", 0, 0, 3, 3), vec![range(0, 2, 2)]);
    }

    #[test]
    fn the_window_advances_over_archived_records() {
        let mut p = SharePartition::new(config(), 0);
        p.acquire("a", 0, 0, 4, 4);
        p.acknowledge("a", 1, 2, AcknowledgeType::Reject).unwrap();
        assert_eq!(p.start_offset(), 0, "offset 0 is still held");
        p.acknowledge("a", 0, 0, AcknowledgeType::Accept).unwrap();
        assert_eq!(p.start_offset(), 3, "over the accepted and the archived");
    }

    #[test]
    fn the_in_flight_window_is_bounded() {
        let mut p = SharePartition::new(
            SharePartitionConfig {
                max_in_flight: 3,
                ..config()
            },
            0,
        );
        assert_eq!(p.acquire("a", 0, 0, 10, 10), vec![range(0, 2, 1)]);
        p.acknowledge("a", 0, 0, AcknowledgeType::Accept).unwrap();
        assert_eq!(p.acquire("a", 0, 0, 10, 10), vec![range(3, 3, 1)]);
    }

    #[test]
    fn counts_of_acquired_and_available_records() {
        let mut p = SharePartition::new(config(), 0);
        assert_eq!(p.available(10), 10, "nothing delivered yet");
        p.acquire("a", 0, 0, 10, 4);
        assert_eq!((p.acquired(), p.in_flight(), p.available(10)), (4, 4, 6));
        p.acknowledge("a", 0, 0, AcknowledgeType::Accept).unwrap();
        p.acknowledge("a", 1, 1, AcknowledgeType::Release).unwrap();
        assert_eq!(p.start_offset(), 1);
        assert_eq!((p.acquired(), p.in_flight(), p.available(10)), (2, 3, 7));
        assert_eq!(p.window_end_offset(), 4);
        p.expire_locks(1_000);
        assert_eq!(
            (p.acquired(), p.available_in_window(), p.available(10)),
            (0, 3, 9)
        );
    }

    #[test]
    fn a_restored_partition_keeps_accepted_records_and_frees_acquired_ones() {
        let mut p = SharePartition::new(config(), 0);
        p.acquire("a", 0, 0, 6, 6);
        p.acknowledge("a", 0, 1, AcknowledgeType::Accept).unwrap();
        p.acknowledge("a", 3, 3, AcknowledgeType::Accept).unwrap();
        let mut restored = SharePartition::from_snapshot(config(), &p.snapshot());
        assert_eq!(restored, p, "a snapshot holds the whole partition");
        restored.release_all();
        assert_eq!(restored.start_offset(), 2);
        let again = restored.acquire("b", 0, 0, 6, 10);
        assert_eq!(
            again,
            vec![range(2, 2, 2), range(4, 5, 2)],
            "3 stays accepted"
        );
    }
}
