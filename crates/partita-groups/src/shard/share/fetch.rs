//! The share-group side of ShareFetch and ShareAcknowledge, as operations of the shard:
//!
//! 1. [`ShareSessionUpdate`]: the member's share session, its epoch checked;
//! 2. [`ShareAcknowledgements`]: records processed, released or rejected;
//! 3. [`SharePlan`]: where to read each partition of the session (its first record that
//!    may be acquired);
//! 4. [`ShareAcquire`]: which of the records the fetch read go to this member.
//!
//! The handler reads the log between 3 and 4; the shard never touches it.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::shard::{Group, GroupShard};
use crate::share::group::{ShareRequestError, ShareSession};
use crate::share::partition::{AcknowledgeType, AcquiredRange, SharePartition};

/// The share session part of a ShareFetch or ShareAcknowledge.
#[derive(Clone, Debug)]
pub struct ShareSessionUpdate {
    /// The group.
    pub group_id: String,
    /// The member.
    pub member_id: String,
    /// 0 opens a session, -1 closes it, anything else must be the session's next epoch.
    pub session_epoch: i32,
    /// Partitions the request adds to the session.
    pub added: Vec<(Uuid, i32)>,
    /// Partitions it forgets.
    pub forgotten: Vec<(Uuid, i32)>,
}

/// Acknowledgements of one partition: (first offset, last offset, type) each.
pub type AcknowledgementBatches = Vec<(i64, i64, AcknowledgeType)>;

/// A member's acknowledgements, by partition.
#[derive(Clone, Debug)]
pub struct ShareAcknowledgements {
    /// The group.
    pub group_id: String,
    /// The member.
    pub member_id: String,
    /// Acknowledgements by partition.
    pub partitions: Vec<((Uuid, i32), AcknowledgementBatches)>,
}

/// The partitions a ShareFetch may read, with their log start and end offsets now.
#[derive(Clone, Debug)]
pub struct SharePlan {
    /// The group.
    pub group_id: String,
    /// (topic id, partition), log start offset, log end offset.
    pub partitions: Vec<((Uuid, i32), i64, i64)>,
}

/// Where a ShareFetch should read.
#[derive(Clone, Debug, Default)]
pub struct SharePlanned {
    /// Each partition with something to offer, and the offset to read it from.
    pub reads: Vec<((Uuid, i32), i64)>,
    /// How long an acquired record stays with its member.
    pub lock_duration_ms: i64,
    /// When the next acquisition lock of these partitions expires.
    pub next_lock_expiry: Option<i64>,
}

/// What a ShareFetch read of one partition.
#[derive(Clone, Copy, Debug)]
pub struct ShareRead {
    /// The partition.
    pub partition: (Uuid, i32),
    /// The offset it read from.
    pub from: i64,
    /// The offset after the last record of the whole batches it read.
    pub covered_end: i64,
    /// The partition's log end offset when it was read.
    pub log_end_offset: i64,
}

/// Acquires, for a member, records a ShareFetch read.
#[derive(Clone, Debug)]
pub struct ShareAcquire {
    /// The group.
    pub group_id: String,
    /// The member.
    pub member_id: String,
    /// What was read, in the order records should be handed out.
    pub reads: Vec<ShareRead>,
    /// How many records the fetch may acquire in all.
    pub max_records: usize,
}

impl GroupShard {
    /// Checks a ShareFetch or ShareAcknowledge's member and session epoch, and updates the
    /// session: epoch 0 opens it with the added partitions, a positive epoch adds and forgets
    /// partitions, -1 closes it. Returns the session's partitions.
    pub(super) fn share_session(
        &mut self,
        update: &ShareSessionUpdate,
    ) -> Result<BTreeSet<(Uuid, i32)>, ShareRequestError> {
        let Some(Group::Share(group)) = self.groups.get_mut(&update.group_id) else {
            return Err(ShareRequestError::UnknownMemberId);
        };
        let member_id = &update.member_id;
        // A closing request may come after the member has left: it only ends the session.
        let is_member = group.members.contains_key(member_id);
        let closing = update.session_epoch == -1 && group.sessions.contains_key(member_id);
        if !(is_member || closing) {
            return Err(ShareRequestError::UnknownMemberId);
        }
        match update.session_epoch {
            0 => {
                let session = ShareSession {
                    next_epoch: 1,
                    partitions: update.added.iter().copied().collect(),
                };
                let partitions = session.partitions.clone();
                group.sessions.insert(member_id.clone(), session);
                Ok(partitions)
            }
            -1 => group
                .sessions
                .remove(member_id)
                .map(|session| session.partitions)
                .ok_or(ShareRequestError::SessionNotFound),
            epoch => {
                let session = group
                    .sessions
                    .get_mut(member_id)
                    .ok_or(ShareRequestError::SessionNotFound)?;
                if epoch != session.next_epoch {
                    return Err(ShareRequestError::InvalidSessionEpoch);
                }
                session.next_epoch = session.next_epoch.wrapping_add(1).max(1);
                session.partitions.extend(update.added.iter().copied());
                for gone in &update.forgotten {
                    session.partitions.remove(gone);
                }
                Ok(session.partitions.clone())
            }
        }
    }

    /// Applies a member's acknowledgements; an error code for each partition.
    pub(super) fn share_acknowledge(
        &mut self,
        now: i64,
        acks: &ShareAcknowledgements,
    ) -> Vec<((Uuid, i32), i16)> {
        let mut codes = Vec::with_capacity(acks.partitions.len());
        for (key, batches) in &acks.partitions {
            let code = match self.share_partition(&acks.group_id, key) {
                _ if batches.is_empty() => 0,
                None => ResponseError::InvalidRecordState.code(),
                Some(mut partition) => {
                    let before = partition.clone();
                    let mut code = 0;
                    for &(first, last, kind) in batches {
                        if partition
                            .acknowledge(&acks.member_id, first, last, kind)
                            .is_err()
                        {
                            code = ResponseError::InvalidRecordState.code();
                        }
                    }
                    if partition != before {
                        self.write_snapshot(now, &acks.group_id, *key, &partition);
                    }
                    code
                }
            };
            codes.push((*key, code));
        }
        codes
    }

    /// Where to read each partition: the first record that may be acquired. A partition the
    /// group reads for the first time starts at the log end, or at the log start with
    /// `share.auto.offset.reset=earliest`.
    pub(super) fn share_plan(&mut self, now: i64, plan: &SharePlan) -> SharePlanned {
        let earliest = self.group_config(&plan.group_id, crate::config::SHARE_AUTO_OFFSET_RESET)
            == Some("earliest");
        let config = self.config.share.partition;
        let mut planned = SharePlanned {
            lock_duration_ms: config.lock_duration_ms,
            ..SharePlanned::default()
        };
        for &(key, log_start_offset, log_end_offset) in &plan.partitions {
            let (mut partition, new) = match self.share_partition(&plan.group_id, &key) {
                Some(partition) => (partition, false),
                None => {
                    let start = if earliest {
                        log_start_offset
                    } else {
                        log_end_offset
                    };
                    (SharePartition::new(config, start), true)
                }
            };
            let before = partition.clone();
            partition.expire_locks(now);
            partition.skip_to(log_start_offset);
            if new || partition != before {
                self.write_snapshot(now, &plan.group_id, key, &partition);
            }
            let from = partition.first_acquirable();
            if from < log_end_offset {
                planned.reads.push((key, from));
            }
            let expiry = partition.next_deadline();
            planned.next_lock_expiry = match (planned.next_lock_expiry, expiry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        planned
    }

    /// Acquires records the fetch read for its member, partition by partition, at most
    /// `max_records` in all.
    pub(super) fn share_acquire(
        &mut self,
        now: i64,
        acquire: &ShareAcquire,
    ) -> Vec<((Uuid, i32), Vec<AcquiredRange>)> {
        let mut acquired = Vec::new();
        let group = match self.groups.get(&acquire.group_id) {
            Some(Group::Share(group)) if group.members.contains_key(&acquire.member_id) => group,
            _ => return acquired,
        };
        // The members whose share sessions hold each partition: they share its records.
        let sharing: Vec<usize> = acquire
            .reads
            .iter()
            .map(|read| {
                group
                    .sessions
                    .iter()
                    .filter(|(member, session)| {
                        group.members.contains_key(*member)
                            && session.partitions.contains(&read.partition)
                    })
                    .count()
            })
            .collect();
        let mut records_left = acquire.max_records;
        for (read, sharing) in acquire.reads.iter().zip(sharing) {
            if records_left == 0 {
                break;
            }
            let Some(mut partition) = self.share_partition(&acquire.group_id, &read.partition)
            else {
                continue;
            };
            let member = &acquire.member_id;
            let fair = partition.fair_share(member, now, read.log_end_offset, sharing);
            let ranges = partition.acquire(
                member,
                now,
                read.from,
                read.covered_end,
                records_left.min(fair),
            );
            if ranges.is_empty() {
                continue;
            }
            let count: i64 = ranges
                .iter()
                .map(|r| r.last_offset - r.first_offset + 1)
                .sum();
            records_left = records_left.saturating_sub(count as usize);
            self.write_snapshot(now, &acquire.group_id, read.partition, &partition);
            acquired.push((read.partition, ranges));
        }
        acquired
    }

    /// A copy of one share-partition's state, to change and write back.
    fn share_partition(&self, group_id: &str, key: &(Uuid, i32)) -> Option<SharePartition> {
        self.share_partitions.get(group_id)?.get(key).cloned()
    }
}
