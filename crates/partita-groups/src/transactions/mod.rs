//! One transaction coordinator shard: the transactional ids whose `__transaction_state`
//! partition it owns (`hash(transactional.id) % transaction.state.log.num.partitions`, as in
//! Kafka), as a sans-io state machine with one door for writes.
//!
//! An operation (a request, a deadline, or the driver's word that a transaction's markers are
//! written) is checked against the state and comes back as a [`TxnStaged`] write: the records
//! it wants appended, the answer to give once they are, and the transaction markers to write
//! then. The state changes only by [`TransactionShard::replay`], the code that also rebuilds
//! the shard at start-up: the driver appends the records, replays them and only then answers.
//! A failed append changes nothing, and the client retries. One operation at a time.
//!
//! The life of a transaction, as in Kafka (KIP-98): InitProducerId gives a transactional id
//! its producer id and a new epoch (fencing any older producer of the same id, and aborting a
//! transaction it left open); AddPartitionsToTxn and AddOffsetsToTxn make it `Ongoing`; EndTxn
//! moves it to `PrepareCommit` or `PrepareAbort` and is answered once that is written; the
//! driver then writes a marker into every partition of the transaction and reports it with
//! [`TxnOperation::MarkersWritten`], which writes `CompleteCommit` or `CompleteAbort`. A
//! transaction open longer than its timeout is aborted with the producer's epoch bumped, so
//! that the producer is fenced; an id unused for `transactional.id.expiration.ms` is removed.
//! With transactions version 2 (KIP-890) the epoch is bumped at every commit or abort, and
//! the new one is given in the EndTxn answer.
//!
//! No sockets, no clock, no runtime: tests drive it with a virtual clock.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::ResponseError;

use crate::records::{TransactionLogKey, TransactionLogValue, TransactionState};

/// Settings of the transaction coordinator, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct TransactionConfig {
    /// `transaction.max.timeout.ms`: the longest timeout a producer may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: how long an unused transactional id is kept.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub expiration_check_interval_ms: i64,
}

impl Default for TransactionConfig {
    fn default() -> TransactionConfig {
        TransactionConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 3_600_000,
            abort_check_interval_ms: 10_000,
            expiration_check_interval_ms: 3_600_000,
        }
    }
}

/// What the coordinator knows of one transactional id: the last record written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TransactionState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    pub client_transaction_version: i16,
}

impl TransactionMetadata {
    fn from_value(transactional_id: String, value: TransactionLogValue) -> TransactionMetadata {
        TransactionMetadata {
            transactional_id,
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            next_producer_id: value.next_producer_id,
            producer_epoch: value.producer_epoch,
            timeout_ms: value.timeout_ms,
            state: value.state,
            partitions: value
                .partitions
                .into_iter()
                .flat_map(|(topic, ids)| ids.into_iter().map(move |p| (topic.clone(), p)))
                .collect(),
            last_update_ms: value.last_update_ms,
            start_ms: value.start_ms,
            client_transaction_version: value.client_transaction_version,
        }
    }

    fn to_value(&self) -> TransactionLogValue {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &self.partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        TransactionLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: by_topic
                .into_iter()
                .map(|(topic, ids)| (topic.to_string(), ids))
                .collect(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_transaction_version,
        }
    }

    /// The record that stores this state.
    fn record(&self) -> TxnRecord {
        TxnRecord {
            key: TransactionLogKey {
                transactional_id: self.transactional_id.clone(),
            }
            .encode(),
            value: Some(self.to_value().encode()),
        }
    }
}

/// A record for `__transaction_state`: key, and value or `None` for a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// What a shard is asked to do.
#[derive(Debug, Clone)]
pub enum TxnOperation {
    /// InitProducerId with a transactional id. `producer_id`/`producer_epoch` are the ones the
    /// producer already has (KIP-360), -1 if none; `fresh_producer_id` is an unused producer
    /// id the driver allocated, taken if the id is new or its epoch is exhausted.
    InitProducerId {
        transactional_id: String,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
        fresh_producer_id: i64,
    },
    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets`
    /// partition). With `verify_only` (a partition leader checking a write, KIP-890), nothing
    /// is added: the answer says whether each partition is in the transaction.
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    },
    /// EndTxn. `client_transaction_version` is 2 for clients of transactions version 2 (EndTxn
    /// v5 and later), whose epoch is bumped at every commit or abort; `fresh_producer_id` is
    /// taken if that exhausts the epoch.
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        client_transaction_version: i16,
        fresh_producer_id: i64,
    },
    /// The driver wrote the markers of the transaction it was given in a [`MarkerJob`].
    MarkersWritten {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// The periodic checks: transactions past their timeout, ids past their expiration.
    Deadline,
}

/// The answer to an operation, given once its records are appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResponse {
    /// InitProducerId's or EndTxn's producer id and epoch.
    Producer {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// AddPartitionsToTxn: an error (or none) for each partition.
    Partitions(Vec<((String, i32), Option<ResponseError>)>),
    /// The operation failed; nothing was written.
    Error(ResponseError),
    /// Nothing to answer (markers written, deadlines).
    Done,
}

/// Markers the driver must write, one control batch per partition, then report with
/// [`TxnOperation::MarkersWritten`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

/// What an operation wants written, and what follows once it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnStaged {
    pub records: Vec<TxnRecord>,
    pub response: TxnResponse,
    /// Markers to write once the records are appended.
    pub markers: Vec<MarkerJob>,
}

impl TxnStaged {
    fn error(error: ResponseError) -> TxnStaged {
        TxnStaged {
            records: Vec::new(),
            response: TxnResponse::Error(error),
            markers: Vec::new(),
        }
    }
}

/// A transaction as DescribeTransactions and ListTransactions show it.
pub type TransactionView = TransactionMetadata;

/// The state of one transaction coordinator shard.
pub struct TransactionShard {
    config: TransactionConfig,
    /// The shard's epoch as a coordinator (its lease's), carried by the markers it has
    /// written so that partitions refuse those of a coordinator that lost the shard.
    coordinator_epoch: i32,
    ids: HashMap<String, TransactionMetadata>,
    next_abort_check: i64,
    next_expiration_check: i64,
}

impl TransactionShard {
    pub fn new(config: TransactionConfig, coordinator_epoch: i32, now: i64) -> TransactionShard {
        TransactionShard {
            next_abort_check: now + config.abort_check_interval_ms,
            next_expiration_check: now + config.expiration_check_interval_ms,
            config,
            coordinator_epoch,
            ids: HashMap::new(),
        }
    }

    /// Applies a record of `__transaction_state`: at start-up, and after every append.
    /// Records that do not decode are skipped with the reason.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let key = TransactionLogKey::decode(key).map_err(|e| e.to_string())?;
        match value {
            None => {
                self.ids.remove(&key.transactional_id);
            }
            Some(value) => {
                let value = TransactionLogValue::decode(value).map_err(|e| e.to_string())?;
                let id = key.transactional_id.clone();
                self.ids.insert(
                    id,
                    TransactionMetadata::from_value(key.transactional_id, value),
                );
            }
        }
        Ok(())
    }

    /// Markers still to write after a start-up: transactions left prepared.
    pub fn pending_markers(&self) -> Vec<MarkerJob> {
        let mut jobs: Vec<MarkerJob> = self
            .ids
            .values()
            .filter_map(|m| {
                let commit = match m.state {
                    TransactionState::PrepareCommit => true,
                    TransactionState::PrepareAbort => false,
                    _ => return None,
                };
                Some(self.marker_job(m, commit))
            })
            .collect();
        jobs.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        jobs
    }

    /// When [`TxnOperation::Deadline`] should next run.
    pub fn next_due(&self) -> i64 {
        self.next_abort_check.min(self.next_expiration_check)
    }

    /// One transactional id's state, for DescribeTransactions.
    pub fn describe(&self, transactional_id: &str) -> Option<&TransactionView> {
        self.ids.get(transactional_id)
    }

    /// The transactions in one of `states` (any if empty), of one of `producer_ids` (any if
    /// empty), running for at least `min_duration_ms` (-1: any), for ListTransactions.
    pub fn list(
        &self,
        states: &[TransactionState],
        producer_ids: &[i64],
        min_duration_ms: i64,
        now: i64,
    ) -> Vec<&TransactionView> {
        let mut found: Vec<&TransactionView> = self
            .ids
            .values()
            .filter(|m| states.is_empty() || states.contains(&m.state))
            .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|m| {
                min_duration_ms < 0
                    || (m.state == TransactionState::Ongoing && now - m.start_ms >= min_duration_ms)
            })
            .collect();
        found.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        found
    }

    /// Runs one operation: what to write, and what follows once it is written. The state
    /// does not change until the records are replayed.
    pub fn execute(&mut self, now: i64, operation: TxnOperation) -> TxnStaged {
        match operation {
            TxnOperation::InitProducerId {
                transactional_id,
                timeout_ms,
                producer_id,
                producer_epoch,
                fresh_producer_id,
            } => self.init_producer_id(
                now,
                transactional_id,
                timeout_ms,
                (producer_id, producer_epoch),
                fresh_producer_id,
            ),
            TxnOperation::AddPartitions {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                verify_only,
            } => self.add_partitions(
                now,
                &transactional_id,
                (producer_id, producer_epoch),
                partitions,
                verify_only,
            ),
            TxnOperation::EndTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                client_transaction_version,
                fresh_producer_id,
            } => self.end_txn(
                now,
                &transactional_id,
                (producer_id, producer_epoch),
                commit,
                client_transaction_version,
                fresh_producer_id,
            ),
            TxnOperation::MarkersWritten {
                transactional_id,
                producer_id,
                producer_epoch,
            } => self.markers_written(now, &transactional_id, (producer_id, producer_epoch)),
            TxnOperation::Deadline => self.deadline(now),
        }
    }

    fn marker_job(&self, metadata: &TransactionMetadata, commit: bool) -> MarkerJob {
        MarkerJob {
            transactional_id: metadata.transactional_id.clone(),
            producer_id: metadata.producer_id,
            producer_epoch: metadata.producer_epoch,
            commit,
            coordinator_epoch: self.coordinator_epoch,
            partitions: metadata.partitions.iter().cloned().collect(),
        }
    }

    fn init_producer_id(
        &mut self,
        now: i64,
        transactional_id: String,
        timeout_ms: i32,
        (producer_id, producer_epoch): (i64, i16),
        fresh_producer_id: i64,
    ) -> TxnStaged {
        if transactional_id.is_empty() {
            return TxnStaged::error(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return TxnStaged::error(ResponseError::InvalidTransactionTimeout);
        }
        let Some(current) = self.ids.get(&transactional_id) else {
            if producer_id >= 0 {
                // A producer that says it had this id, which the coordinator does not know
                // (expired): it must start afresh, as Kafka answers.
                return TxnStaged::error(ResponseError::InvalidProducerIdMapping);
            }
            let metadata = TransactionMetadata {
                transactional_id,
                producer_id: fresh_producer_id,
                previous_producer_id: -1,
                next_producer_id: -1,
                producer_epoch: 0,
                timeout_ms,
                state: TransactionState::Empty,
                partitions: BTreeSet::new(),
                last_update_ms: now,
                start_ms: -1,
                client_transaction_version: 0,
            };
            return TxnStaged {
                records: vec![metadata.record()],
                response: TxnResponse::Producer {
                    producer_id: metadata.producer_id,
                    producer_epoch: 0,
                },
                markers: Vec::new(),
            };
        };
        // KIP-360: a producer that gives its id and epoch must be the current one (or retry
        // the call that made it current).
        if producer_id >= 0 && producer_id != current.producer_id {
            return TxnStaged::error(ResponseError::ProducerFenced);
        }
        if producer_id >= 0 && producer_epoch >= 0 && producer_epoch != current.producer_epoch {
            return TxnStaged::error(ResponseError::ProducerFenced);
        }
        match current.state {
            TransactionState::PrepareCommit
            | TransactionState::PrepareAbort
            | TransactionState::PrepareEpochFence => {
                TxnStaged::error(ResponseError::ConcurrentTransactions)
            }
            TransactionState::Ongoing => {
                // A new producer takes the id over: abort what the old one left open, with
                // the epoch bumped so that the old one is fenced. The new one retries.
                let mut fenced = current.clone();
                fenced.producer_epoch = bumped(fenced.producer_epoch);
                fenced.state = TransactionState::PrepareAbort;
                fenced.last_update_ms = now;
                let job = self.marker_job(&fenced, false);
                TxnStaged {
                    records: vec![fenced.record()],
                    response: TxnResponse::Error(ResponseError::ConcurrentTransactions),
                    markers: vec![job],
                }
            }
            TransactionState::Dead => TxnStaged::error(ResponseError::ConcurrentTransactions),
            TransactionState::Empty
            | TransactionState::CompleteCommit
            | TransactionState::CompleteAbort => {
                let mut next = current.clone();
                if next.producer_epoch >= i16::MAX - 1 {
                    // The epoch is exhausted: a new producer id, from epoch 0.
                    next.previous_producer_id = next.producer_id;
                    next.producer_id = fresh_producer_id;
                    next.producer_epoch = 0;
                } else {
                    next.producer_epoch += 1;
                }
                next.timeout_ms = timeout_ms;
                next.state = TransactionState::Empty;
                next.partitions.clear();
                next.start_ms = -1;
                next.last_update_ms = now;
                TxnStaged {
                    records: vec![next.record()],
                    response: TxnResponse::Producer {
                        producer_id: next.producer_id,
                        producer_epoch: next.producer_epoch,
                    },
                    markers: Vec::new(),
                }
            }
        }
    }

    /// The metadata of a request's producer, or the error it gets.
    fn producer_of(
        &self,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
    ) -> Result<&TransactionMetadata, ResponseError> {
        let current = self
            .ids
            .get(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if current.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if current.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(current)
    }

    fn add_partitions(
        &mut self,
        now: i64,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> TxnStaged {
        let every = |error: ResponseError| TxnStaged {
            records: Vec::new(),
            response: TxnResponse::Partitions(
                partitions
                    .iter()
                    .map(|p| (p.clone(), Some(error)))
                    .collect(),
            ),
            markers: Vec::new(),
        };
        let current = match self.producer_of(transactional_id, producer) {
            Ok(current) => current,
            Err(error) => return every(error),
        };
        if verify_only {
            let answers = partitions
                .iter()
                .map(|p| {
                    let included = current.state == TransactionState::Ongoing
                        && current.partitions.contains(p);
                    (
                        p.clone(),
                        (!included).then_some(ResponseError::InvalidTxnState),
                    )
                })
                .collect();
            return TxnStaged {
                records: Vec::new(),
                response: TxnResponse::Partitions(answers),
                markers: Vec::new(),
            };
        }
        match current.state {
            TransactionState::PrepareCommit
            | TransactionState::PrepareAbort
            | TransactionState::PrepareEpochFence => {
                return every(ResponseError::ConcurrentTransactions)
            }
            TransactionState::Dead => return every(ResponseError::InvalidTxnState),
            _ => {}
        }
        let answers = partitions.iter().map(|p| (p.clone(), None)).collect();
        let adds_nothing = current.state == TransactionState::Ongoing
            && partitions.iter().all(|p| current.partitions.contains(p));
        if adds_nothing {
            return TxnStaged {
                records: Vec::new(),
                response: TxnResponse::Partitions(answers),
                markers: Vec::new(),
            };
        }
        let mut next = current.clone();
        if next.state != TransactionState::Ongoing {
            next.partitions.clear();
            next.start_ms = now;
        }
        next.state = TransactionState::Ongoing;
        next.partitions.extend(partitions);
        next.last_update_ms = now;
        TxnStaged {
            records: vec![next.record()],
            response: TxnResponse::Partitions(answers),
            markers: Vec::new(),
        }
    }

    fn end_txn(
        &mut self,
        now: i64,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        commit: bool,
        client_transaction_version: i16,
        fresh_producer_id: i64,
    ) -> TxnStaged {
        let v2 = client_transaction_version >= 2;
        let Some(current) = self.ids.get(transactional_id) else {
            return TxnStaged::error(ResponseError::InvalidProducerIdMapping);
        };
        let completed = match current.state {
            TransactionState::CompleteCommit => Some(true),
            TransactionState::CompleteAbort => Some(false),
            _ => None,
        };
        // A retry of the EndTxn that completed the transaction: with transactions version 2
        // it carries the epoch before the bump.
        let same_producer = producer_id == current.producer_id
            || (v2 && producer_id == current.previous_producer_id);
        let retried_epoch = match v2 {
            true => producer_epoch.checked_add(1) == Some(current.producer_epoch),
            false => producer_epoch == current.producer_epoch,
        };
        if let Some(committed) = completed {
            if same_producer && retried_epoch && committed == commit {
                return TxnStaged {
                    records: Vec::new(),
                    response: TxnResponse::Producer {
                        producer_id: current.producer_id,
                        producer_epoch: current.producer_epoch,
                    },
                    markers: Vec::new(),
                };
            }
        }
        if producer_id != current.producer_id {
            return TxnStaged::error(ResponseError::InvalidProducerIdMapping);
        }
        if producer_epoch != current.producer_epoch {
            return TxnStaged::error(ResponseError::ProducerFenced);
        }
        match (current.state, commit) {
            (TransactionState::Ongoing, _) => {}
            (TransactionState::PrepareCommit, true)
            | (TransactionState::PrepareAbort, false)
            | (TransactionState::PrepareEpochFence, _) => {
                return TxnStaged::error(ResponseError::ConcurrentTransactions)
            }
            // With transactions version 2, an abort with nothing added is allowed and
            // bumps the epoch; before, it is a state error.
            (TransactionState::Empty, false)
            | (TransactionState::CompleteCommit, false)
            | (TransactionState::CompleteAbort, false)
                if v2 => {}
            _ => return TxnStaged::error(ResponseError::InvalidTxnState),
        }
        let mut next = current.clone();
        if v2 {
            next.client_transaction_version = client_transaction_version;
            if next.producer_epoch >= i16::MAX - 1 {
                next.previous_producer_id = next.producer_id;
                next.next_producer_id = fresh_producer_id;
            }
            next.producer_epoch = bumped(next.producer_epoch);
        }
        next.state = match commit {
            true => TransactionState::PrepareCommit,
            false => TransactionState::PrepareAbort,
        };
        next.last_update_ms = now;
        let job = self.marker_job(&next, commit);
        // The producer id and epoch of the producer's next transaction: with its epoch
        // exhausted, the new producer id from epoch 0.
        let (next_id, next_epoch) = match next.next_producer_id {
            id if id >= 0 => (id, 0),
            _ => (next.producer_id, next.producer_epoch),
        };
        TxnStaged {
            records: vec![next.record()],
            response: TxnResponse::Producer {
                producer_id: next_id,
                producer_epoch: next_epoch,
            },
            markers: vec![job],
        }
    }

    fn markers_written(
        &mut self,
        now: i64,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
    ) -> TxnStaged {
        let Some(current) = self.ids.get(transactional_id) else {
            return TxnStaged::error(ResponseError::InvalidProducerIdMapping);
        };
        let completed = match current.state {
            TransactionState::PrepareCommit => TransactionState::CompleteCommit,
            TransactionState::PrepareAbort => TransactionState::CompleteAbort,
            // Already completed (a replayed job written twice): nothing to do.
            _ => return TxnStaged::error(ResponseError::InvalidTxnState),
        };
        if current.producer_id != producer_id || current.producer_epoch != producer_epoch {
            return TxnStaged::error(ResponseError::ProducerFenced);
        }
        let mut next = current.clone();
        next.state = completed;
        next.partitions.clear();
        next.start_ms = -1;
        next.last_update_ms = now;
        if next.next_producer_id >= 0 {
            // Transactions version 2 with the epoch exhausted: the next transaction runs
            // under the new producer id.
            next.producer_id = next.next_producer_id;
            next.next_producer_id = -1;
            next.producer_epoch = 0;
        }
        TxnStaged {
            records: vec![next.record()],
            response: TxnResponse::Done,
            markers: Vec::new(),
        }
    }

    fn deadline(&mut self, now: i64) -> TxnStaged {
        let mut staged = TxnStaged {
            records: Vec::new(),
            response: TxnResponse::Done,
            markers: Vec::new(),
        };
        if now >= self.next_abort_check {
            self.next_abort_check = now + self.config.abort_check_interval_ms;
            let mut timed_out: Vec<&TransactionMetadata> = self
                .ids
                .values()
                .filter(|m| m.state == TransactionState::Ongoing)
                .filter(|m| now > m.start_ms + i64::from(m.timeout_ms))
                .collect();
            timed_out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
            for metadata in timed_out {
                // Aborted with the epoch bumped: the producer that let it time out is fenced.
                let mut aborted = metadata.clone();
                aborted.producer_epoch = bumped(aborted.producer_epoch);
                aborted.state = TransactionState::PrepareAbort;
                aborted.last_update_ms = now;
                staged.markers.push(self.marker_job(&aborted, false));
                staged.records.push(aborted.record());
            }
        }
        if now >= self.next_expiration_check {
            self.next_expiration_check = now + self.config.expiration_check_interval_ms;
            let mut expired: Vec<&TransactionMetadata> = self
                .ids
                .values()
                .filter(|m| {
                    matches!(
                        m.state,
                        TransactionState::Empty
                            | TransactionState::CompleteCommit
                            | TransactionState::CompleteAbort
                    )
                })
                .filter(|m| now - m.last_update_ms >= self.config.id_expiration_ms)
                .collect();
            expired.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
            for metadata in expired {
                staged.records.push(TxnRecord {
                    key: TransactionLogKey {
                        transactional_id: metadata.transactional_id.clone(),
                    }
                    .encode(),
                    value: None,
                });
            }
        }
        staged
    }
}

/// The epoch after `epoch`; an exhausted one stays (the producer id changes instead).
fn bumped(epoch: i16) -> i16 {
    epoch.saturating_add(1).min(i16::MAX - 1).max(epoch)
}
