//! What each record of `__consumer_offsets` means: the one place where committed offsets, a
//! classic group's stored metadata and a consumer group change. Start-up and the write path
//! both come through here.

use super::{Group, GroupShard, OffsetKey};
use crate::classic::{ClassicGroup, CommittedOffset};
use crate::records::{GroupMetadataValue, OffsetCommitValue, RecordError, RecordKey, RecordValue};

impl GroupShard {
    /// Applies one record read back from `__consumer_offsets` at start-up. Records of types
    /// Partita does not handle are skipped, as Kafka skips them.
    pub fn replay(
        &mut self,
        now: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        self.replay_of(now, None, key, value)
    }

    /// Applies one record of a transactional batch of `producer_id` read back at start-up:
    /// an offset committed inside the producer's transaction, which waits for its marker.
    pub fn replay_transactional(
        &mut self,
        now: i64,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        self.replay_of(now, Some(producer_id), key, value)
    }

    /// Applies a transaction marker read back at start-up: the offsets the producer committed
    /// inside its transaction become the groups' (`commit`) or are dropped.
    pub fn replay_marker(&mut self, now: i64, producer_id: i64, commit: bool) {
        self.apply_marker(now, producer_id, commit);
    }

    fn replay_of(
        &mut self,
        now: i64,
        producer: Option<i64>,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordError> {
        let key = RecordKey::decode(key)?;
        let value = match value {
            Some(bytes) => RecordValue::decode(&key, bytes)?,
            None => None,
        };
        if !matches!(key, RecordKey::Unknown { .. }) {
            self.apply(now, producer, key, value);
        }
        Ok(())
    }

    /// Ends start-up: classic groups take the generation their last record stored, records
    /// that were acquired by share group members are offered again, and every group's
    /// deadlines are indexed.
    pub fn finish_loading(&mut self, now: i64) {
        for group in self.groups.values_mut() {
            if let Group::Classic(classic) = group {
                if let Some(stored) = classic.stored.clone() {
                    *classic = ClassicGroup::from_record(&classic.group_id, stored, now);
                }
            }
        }
        self.release_share_records_at_start();
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in ids {
            self.reindex(&group_id);
            self.changed.insert(group_id);
        }
    }

    /// Applies one record, decoded; `producer` is the transactional producer whose batch
    /// holds it, if one does.
    pub(super) fn apply(
        &mut self,
        now: i64,
        producer: Option<i64>,
        key: RecordKey,
        value: Option<RecordValue>,
    ) {
        match (key, value) {
            (
                RecordKey::OffsetCommit {
                    group,
                    topic,
                    partition,
                },
                value,
            ) => {
                let value = match value {
                    Some(RecordValue::OffsetCommit(value)) => Some(value),
                    _ => None,
                };
                self.apply_offset(now, producer, (group, topic, partition), value)
            }
            (RecordKey::GroupMetadata { group }, value) => {
                let value = match value {
                    Some(RecordValue::GroupMetadata(value)) => Some(value),
                    _ => None,
                };
                self.apply_group_metadata(now, group, value)
            }
            (RecordKey::Unknown { .. }, _) => {}
            (key, value) => self.apply_consumer(now, key, value),
        }
    }

    /// A commit, or its tombstone. A commit for a group the shard does not know makes it an
    /// empty classic group (a group of consumers that assign partitions themselves). A
    /// commit inside a producer's transaction waits for the transaction's marker.
    fn apply_offset(
        &mut self,
        now: i64,
        producer: Option<i64>,
        (group_id, topic, partition): OffsetKey,
        value: Option<OffsetCommitValue>,
    ) {
        self.offset_records += 1;
        match value {
            Some(value) => {
                self.groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::Classic(ClassicGroup::new(&group_id, now)));
                let offset = CommittedOffset {
                    offset: value.offset,
                    leader_epoch: value.leader_epoch,
                    metadata: value.metadata,
                    commit_timestamp: value.commit_timestamp,
                    expire_timestamp: value.expire_timestamp,
                    order: self.offset_records,
                };
                match producer {
                    Some(producer_id) => {
                        let pending = self.pending_offsets.entry(producer_id).or_default();
                        pending.insert((group_id, topic, partition), offset);
                    }
                    None => {
                        let offsets = self.offsets.entry(group_id).or_default();
                        offsets.insert((topic, partition), offset);
                    }
                }
            }
            None => {
                let key = (group_id.clone(), topic.clone(), partition);
                self.pending_offsets.retain(|_, pending| {
                    pending.remove(&key);
                    !pending.is_empty()
                });
                if let Some(offsets) = self.offsets.get_mut(&group_id) {
                    offsets.remove(&(topic, partition));
                    if offsets.is_empty() {
                        self.offsets.remove(&group_id);
                    }
                }
            }
        }
    }

    /// The end of a producer's transaction: on commit, each offset it committed becomes its
    /// group's unless the group committed that partition again after it (as Kafka compares
    /// their records' places in the log); on abort, they are dropped.
    pub(super) fn apply_marker(&mut self, now: i64, producer_id: i64, commit: bool) {
        let Some(pending) = self.pending_offsets.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for ((group_id, topic, partition), offset) in pending {
            self.groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::Classic(ClassicGroup::new(&group_id, now)));
            let offsets = self.offsets.entry(group_id).or_default();
            let key = (topic, partition);
            if offsets
                .get(&key)
                .is_none_or(|current| current.order < offset.order)
            {
                offsets.insert(key, offset);
            }
        }
    }

    /// A classic group's metadata, or its tombstone. The record is what the group stored;
    /// its members and state follow it only at start-up ([`GroupShard::finish_loading`]).
    fn apply_group_metadata(
        &mut self,
        now: i64,
        group_id: String,
        value: Option<GroupMetadataValue>,
    ) {
        match (self.groups.get_mut(&group_id), value) {
            (Some(Group::Classic(group)), Some(value)) => group.stored = Some(value),
            (_, Some(value)) => {
                let mut group = ClassicGroup::new(&group_id, now);
                group.stored = Some(value);
                self.groups.insert(group_id, Group::Classic(group));
            }
            (Some(Group::Classic(_)), None) => self.forget_group(now, &group_id),
            (_, None) => {}
        }
    }

    /// A group's records are gone: it is forgotten, or left as an empty group that only
    /// holds its committed offsets.
    pub(super) fn forget_group(&mut self, now: i64, group_id: &str) {
        if self.offsets.contains_key(group_id) {
            let group = ClassicGroup::new(group_id, now);
            self.groups
                .insert(group_id.to_string(), Group::Classic(group));
        } else {
            self.groups.remove(group_id);
        }
    }
}
