//! Idempotent producer bookkeeping (KIP-98): duplicate detection and sequence checks; and the
//! transactions under way in the partition, from which comes its last stable offset. The
//! aborted ones, which a `read_committed` consumer must skip, are kept by the segments that
//! hold their markers.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::batch::{add_sequence, BatchHeader};
use crate::error::LogError;

/// How many recent batches per producer are remembered for duplicate detection; Kafka's
/// producer keeps at most 5 requests in flight when idempotent.
const CACHED_BATCHES: usize = 5;

/// Sequence range and assigned offsets of one appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence number of the batch's first record.
    pub first_sequence: i32,
    /// Sequence number of its last record.
    pub last_sequence: i32,
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

#[derive(Clone)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

/// Outcome of checking a batch against the producer state.
#[derive(Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Accept,
    /// Already appended: answer with these offsets and write nothing.
    Duplicate(BatchMetadata),
}

/// A transaction aborted in the partition: its producer, the offset of its first record and
/// of the marker that aborted it. A `read_committed` consumer drops that producer's records in
/// between (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose transaction it was.
    pub producer_id: i64,
    /// The offset of the transaction's first record in the partition.
    pub first_offset: i64,
    /// The offset of the ABORT marker.
    pub last_offset: i64,
}

/// A producer that wrote to the partition, as DescribeProducers (KIP-664) shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    /// The producer id.
    pub producer_id: i64,
    /// Its epoch (-1 if it wrote only records without one).
    pub producer_epoch: i16,
    /// The sequence number of its last record, -1 if none.
    pub last_sequence: i32,
    /// The offset of the first record of its transaction under way here, -1 if none.
    pub txn_start_offset: i64,
}

/// State of every idempotent producer that wrote to one partition.
#[derive(Clone, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Transactions under way: the offset of each one's first record, by producer id.
    ongoing: HashMap<i64, i64>,
    /// The same, ordered by first offset: the first is where the partition stops being stable.
    ongoing_by_offset: BTreeSet<(i64, i64)>,
}

fn is_idempotent(header: &BatchHeader) -> bool {
    header.producer_id >= 0 && header.base_sequence >= 0
}

impl ProducerStateTable {
    /// Decides whether a batch about to be appended is new, a duplicate, or refused.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, LogError> {
        if !is_idempotent(header) {
            return Ok(SequenceCheck::Accept);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(SequenceCheck::Accept);
        };
        if header.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch);
        }
        if header.producer_epoch > entry.epoch {
            // A bumped epoch restarts the sequence at 0.
            return match header.base_sequence {
                0 => Ok(SequenceCheck::Accept),
                _ => Err(LogError::OutOfOrderSequence),
            };
        }
        let (first, last) = (header.base_sequence, header.last_sequence());
        if let Some(cached) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate(*cached));
        }
        match entry.batches.back() {
            Some(previous) if add_sequence(previous.last_sequence, 1) != first => {
                Err(LogError::OutOfOrderSequence)
            }
            _ => Ok(SequenceCheck::Accept),
        }
    }

    /// Records a batch that was appended (or found in the log during recovery), with its
    /// final offsets in `header`. A transactional batch opens its producer's transaction in
    /// the partition if none is open.
    pub fn record(&mut self, header: &BatchHeader) {
        if header.is_transactional()
            && !header.is_control()
            && !self.ongoing.contains_key(&header.producer_id)
        {
            self.ongoing.insert(header.producer_id, header.base_offset);
            self.ongoing_by_offset
                .insert((header.base_offset, header.producer_id));
        }
        if !is_idempotent(header) {
            return;
        }
        let entry = self.entry_at(header, |new, old| new != old);
        if entry.batches.len() == CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
    }

    /// The entry of `header`'s producer, created at its epoch if new, and moved to its epoch
    /// (forgetting the batches of the old one) when `moves(new, old)` says so.
    fn entry_at(
        &mut self,
        header: &BatchHeader,
        moves: impl Fn(i16, i16) -> bool,
    ) -> &mut ProducerEntry {
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert(ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(CACHED_BATCHES),
            });
        if moves(header.producer_epoch, entry.epoch) {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry
    }

    /// Whether a transaction marker of this producer may be written: not from an epoch older
    /// than the producer's (a coordinator never goes back; an older marker is a zombie's).
    pub fn check_marker(&self, header: &BatchHeader) -> Result<(), LogError> {
        match self.producers.get(&header.producer_id) {
            Some(entry) if header.producer_epoch < entry.epoch => {
                Err(LogError::InvalidProducerEpoch)
            }
            _ => Ok(()),
        }
    }

    /// Records a transaction marker appended at `header.base_offset` (or found in recovery):
    /// the producer's transaction ends, and is returned if aborted (the segment's index of
    /// aborted transactions keeps it). A marker under a newer epoch (a producer fenced, or
    /// transactions version 2) raises the producer's epoch, so that its older instance can
    /// write no more.
    pub fn record_marker(&mut self, header: &BatchHeader, commit: bool) -> Option<AbortedTxn> {
        let mut aborted = None;
        if let Some(first_offset) = self.ongoing.remove(&header.producer_id) {
            self.ongoing_by_offset
                .remove(&(first_offset, header.producer_id));
            aborted = (!commit).then_some(AbortedTxn {
                producer_id: header.producer_id,
                first_offset,
                last_offset: header.base_offset,
            });
        }
        self.entry_at(header, |new, old| new > old);
        aborted
    }

    /// Every producer the partition remembers, with its transaction under way if it has one,
    /// by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut active: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, entry)| ActiveProducer {
                producer_id: *id,
                producer_epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |b| b.last_sequence),
                txn_start_offset: self.ongoing.get(id).copied().unwrap_or(-1),
            })
            .collect();
        // Transactional batches without sequence numbers (offsets committed in a
        // transaction) open transactions of producers with no entry.
        for (id, first_offset) in &self.ongoing {
            if !self.producers.contains_key(id) {
                active.push(ActiveProducer {
                    producer_id: *id,
                    producer_epoch: -1,
                    last_sequence: -1,
                    txn_start_offset: *first_offset,
                });
            }
        }
        active.sort_by_key(|p| p.producer_id);
        active
    }

    /// The offset of the first record of the oldest transaction still under way: no
    /// `read_committed` consumer reads at or past it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing_by_offset.first().map(|(offset, _)| *offset)
    }

    /// Every producer's epoch and last batches, and the transactions under way, for a clean
    /// shutdown to record: (producer id, epoch, batches) by producer id, and (producer id,
    /// first offset) by producer id.
    #[allow(clippy::type_complexity)]
    pub(crate) fn snapshot(&self) -> (Vec<(i64, i16, Vec<BatchMetadata>)>, Vec<(i64, i64)>) {
        let mut producers: Vec<(i64, i16, Vec<BatchMetadata>)> = self
            .producers
            .iter()
            .map(|(id, entry)| (*id, entry.epoch, entry.batches.iter().copied().collect()))
            .collect();
        producers.sort_by_key(|(id, _, _)| *id);
        let mut ongoing: Vec<(i64, i64)> = self.ongoing.iter().map(|(p, o)| (*p, *o)).collect();
        ongoing.sort_unstable();
        (producers, ongoing)
    }

    /// Puts back a transaction under way, as [`ProducerStateTable::snapshot`] gave it.
    pub(crate) fn restore_ongoing(&mut self, producer_id: i64, first_offset: i64) {
        self.ongoing.insert(producer_id, first_offset);
        self.ongoing_by_offset.insert((first_offset, producer_id));
    }

    /// One producer's epoch and last batches, as stored elsewhere (cluster mode).
    pub fn entry(&self, producer_id: i64) -> Option<(i16, Vec<BatchMetadata>)> {
        self.producers
            .get(&producer_id)
            .map(|entry| (entry.epoch, entry.batches.iter().copied().collect()))
    }

    /// Puts back a producer's state as [`ProducerStateTable::entry`] gave it.
    pub fn restore(&mut self, producer_id: i64, epoch: i16, batches: Vec<BatchMetadata>) {
        let mut batches: VecDeque<BatchMetadata> = batches.into();
        while batches.len() > CACHED_BATCHES {
            batches.pop_front();
        }
        self.producers
            .insert(producer_id, ProducerEntry { epoch, batches });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_idempotent_batch, parse_header, set_base_offset, KeyValue};

    fn header(epoch: i16, base_sequence: i32, records: usize, base_offset: i64) -> BatchHeader {
        let values: Vec<KeyValue> = vec![(None, Some(b"v")); records];
        let mut batch = build_idempotent_batch(&values, 0, 7, epoch, base_sequence);
        set_base_offset(&mut batch, base_offset);
        parse_header(&batch).unwrap()
    }

    #[test]
    fn sequence_wraps_around_to_zero() {
        let mut table = ProducerStateTable::default();
        table.record(&header(0, i32::MAX - 1, 2, 0));
        assert_eq!(
            table.check(&header(0, 0, 1, 2)).unwrap(),
            SequenceCheck::Accept
        );
        assert!(matches!(
            table.check(&header(0, 1, 1, 2)),
            Err(LogError::OutOfOrderSequence)
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates() {
        let mut table = ProducerStateTable::default();
        for i in 0..6 {
            table.record(&header(0, i, 1, i64::from(i)));
        }
        assert!(matches!(
            table.check(&header(0, 5, 1, 99)),
            Ok(SequenceCheck::Duplicate(BatchMetadata {
                base_offset: 5,
                ..
            }))
        ));
        // Sequence 0 fell out of the cache: it is now simply out of order.
        assert!(matches!(
            table.check(&header(0, 0, 1, 99)),
            Err(LogError::OutOfOrderSequence)
        ));
    }

    #[test]
    fn epoch_bump_must_restart_at_zero() {
        let mut table = ProducerStateTable::default();
        table.record(&header(0, 0, 3, 0));
        assert!(matches!(
            table.check(&header(1, 3, 1, 3)),
            Err(LogError::OutOfOrderSequence)
        ));
        assert_eq!(
            table.check(&header(1, 0, 1, 3)).unwrap(),
            SequenceCheck::Accept
        );
    }
}
