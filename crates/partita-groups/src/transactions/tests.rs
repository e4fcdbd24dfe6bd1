//! The transaction coordinator's state machine, with a virtual clock: every record an
//! operation writes is replayed (as the driver does after appending it), and a restart
//! rebuilds the shard from the records alone.

use super::*;

/// A shard and the records it has written.
struct Harness {
    shard: TransactionShard,
    log: Vec<TxnRecord>,
    now: i64,
    next_id: i64,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            shard: TransactionShard::new(TransactionConfig::default(), 3, 0),
            log: Vec::new(),
            now: 0,
            next_id: 1000,
        }
    }

    /// Runs an operation and appends what it wrote.
    fn run(&mut self, operation: TxnOperation) -> TxnStaged {
        let staged = self.shard.execute(self.now, operation);
        for record in &staged.records {
            self.shard
                .replay(&record.key, record.value.as_deref())
                .unwrap();
            self.log.push(record.clone());
        }
        staged
    }

    fn fresh(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn init(&mut self, id: &str, producer: (i64, i16)) -> TxnResponse {
        let fresh_producer_id = self.fresh();
        self.run(TxnOperation::InitProducerId {
            transactional_id: id.into(),
            timeout_ms: 60_000,
            producer_id: producer.0,
            producer_epoch: producer.1,
            fresh_producer_id,
        })
        .response
    }

    fn add(&mut self, id: &str, producer: (i64, i16), partitions: &[(&str, i32)]) -> TxnStaged {
        self.run(TxnOperation::AddPartitions {
            transactional_id: id.into(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            partitions: partitions
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect(),
            verify_only: false,
        })
    }

    fn end(&mut self, id: &str, producer: (i64, i16), commit: bool, version: i16) -> TxnStaged {
        let fresh_producer_id = self.fresh();
        self.run(TxnOperation::EndTxn {
            transactional_id: id.into(),
            producer_id: producer.0,
            producer_epoch: producer.1,
            commit,
            client_transaction_version: version,
            fresh_producer_id,
        })
    }

    fn markers_written(&mut self, job: &MarkerJob) -> TxnStaged {
        self.run(TxnOperation::MarkersWritten {
            transactional_id: job.transactional_id.clone(),
            producer_id: job.producer_id,
            producer_epoch: job.producer_epoch,
        })
    }

    fn state(&self, id: &str) -> TransactionState {
        self.shard.describe(id).unwrap().state
    }

    /// A shard rebuilt from the records alone.
    fn restarted(&self) -> TransactionShard {
        let mut shard = TransactionShard::new(TransactionConfig::default(), 4, self.now);
        for record in &self.log {
            shard.replay(&record.key, record.value.as_deref()).unwrap();
        }
        shard
    }
}

fn producer(response: &TxnResponse) -> (i64, i16) {
    match response {
        TxnResponse::Producer {
            producer_id,
            producer_epoch,
        } => (*producer_id, *producer_epoch),
        other => panic!("expected a producer id, got {other:?}"),
    }
}

fn partition_errors(staged: &TxnStaged) -> Vec<Option<ResponseError>> {
    match &staged.response {
        TxnResponse::Partitions(answers) => answers.iter().map(|(_, e)| *e).collect(),
        other => panic!("expected partition answers, got {other:?}"),
    }
}

#[test]
fn a_new_id_gets_a_producer_id_and_each_init_a_new_epoch() {
    let mut h = Harness::new();
    let first = producer(&h.init("tx", (-1, -1)));
    assert_eq!(first, (1001, 0));
    assert_eq!(h.state("tx"), TransactionState::Empty);
    // The same producer starting again (KIP-360 gives its id and epoch) gets the next epoch.
    assert_eq!(producer(&h.init("tx", first)), (1001, 1));
    // A restart of the application (no id given) too.
    assert_eq!(producer(&h.init("tx", (-1, -1))), (1001, 2));
}

#[test]
fn a_committed_transaction_writes_its_markers_then_completes() {
    let mut h = Harness::new();
    let p = producer(&h.init("tx", (-1, -1)));
    h.now = 10;
    let added = h.add("tx", p, &[("orders", 0), ("orders", 1)]);
    assert_eq!(partition_errors(&added), [None, None]);
    assert_eq!(h.state("tx"), TransactionState::Ongoing);
    assert_eq!(h.shard.describe("tx").unwrap().start_ms, 10);
    // Adding the same partition again writes nothing.
    assert!(h.add("tx", p, &[("orders", 1)]).records.is_empty());
    h.add("tx", p, &[("__consumer_offsets", 7)]);
    let ended = h.end("tx", p, true, 0);
    assert_eq!(producer(&ended.response), p);
    assert_eq!(h.state("tx"), TransactionState::PrepareCommit);
    let job = ended.markers[0].clone();
    assert!(job.commit);
    assert_eq!(job.coordinator_epoch, 3);
    assert_eq!(
        job.partitions,
        [
            ("__consumer_offsets".to_string(), 7),
            ("orders".to_string(), 0),
            ("orders".to_string(), 1)
        ]
    );
    // Until the markers are written, the producer must wait.
    assert_eq!(
        partition_errors(&h.add("tx", p, &[("orders", 2)])),
        [Some(ResponseError::ConcurrentTransactions)]
    );
    assert_eq!(
        h.end("tx", p, true, 0).response,
        TxnResponse::Error(ResponseError::ConcurrentTransactions)
    );
    h.markers_written(&job);
    assert_eq!(h.state("tx"), TransactionState::CompleteCommit);
    assert!(h.shard.describe("tx").unwrap().partitions.is_empty());
    // A retried EndTxn of the same commit is answered again; an abort now is refused.
    assert_eq!(producer(&h.end("tx", p, true, 0).response), p);
    assert_eq!(
        h.end("tx", p, false, 0).response,
        TxnResponse::Error(ResponseError::InvalidTxnState)
    );
    // The next transaction starts afresh.
    h.add("tx", p, &[("orders", 2)]);
    assert_eq!(
        h.shard.describe("tx").unwrap().partitions,
        BTreeSet::from([("orders".to_string(), 2)])
    );
}

#[test]
fn a_new_producer_fences_the_old_one_and_aborts_what_it_left_open() {
    let mut h = Harness::new();
    let old = producer(&h.init("tx", (-1, -1)));
    h.add("tx", old, &[("orders", 0)]);
    // A second instance of the application starts with the same transactional id.
    let staged = h.run(TxnOperation::InitProducerId {
        transactional_id: "tx".into(),
        timeout_ms: 60_000,
        producer_id: -1,
        producer_epoch: -1,
        fresh_producer_id: 5000,
    });
    assert_eq!(
        staged.response,
        TxnResponse::Error(ResponseError::ConcurrentTransactions)
    );
    let job = staged.markers[0].clone();
    assert!(!job.commit);
    assert_eq!(
        job.producer_epoch,
        old.1 + 1,
        "aborted under a bumped epoch"
    );
    assert_eq!(h.state("tx"), TransactionState::PrepareAbort);
    // The old instance can do nothing more.
    assert_eq!(
        partition_errors(&h.add("tx", old, &[("orders", 1)])),
        [Some(ResponseError::ProducerFenced)]
    );
    assert_eq!(
        h.end("tx", old, true, 0).response,
        TxnResponse::Error(ResponseError::ProducerFenced)
    );
    h.markers_written(&job);
    assert_eq!(h.state("tx"), TransactionState::CompleteAbort);
    // The new instance's retry gets the id with yet another epoch.
    assert_eq!(producer(&h.init("tx", (-1, -1))), (old.0, old.1 + 2));
    // And the old one, giving its epoch, is told it was fenced.
    assert_eq!(
        h.init("tx", old),
        TxnResponse::Error(ResponseError::ProducerFenced)
    );
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new();
    let fresh_producer_id = h.fresh();
    let p = producer(
        &h.run(TxnOperation::InitProducerId {
            transactional_id: "slow".into(),
            timeout_ms: 5_000,
            producer_id: -1,
            producer_epoch: -1,
            fresh_producer_id,
        })
        .response,
    );
    h.add("slow", p, &[("orders", 0)]);
    h.init("quick", (-1, -1));
    let q = (h.shard.describe("quick").unwrap().producer_id, 0);
    h.add("quick", q, &[("orders", 1)]);
    // Nothing happens before the first check.
    assert_eq!(h.shard.next_due(), 10_000);
    h.now = 4_000;
    assert!(h.run(TxnOperation::Deadline).records.is_empty());
    h.now = 10_000;
    let staged = h.run(TxnOperation::Deadline);
    assert_eq!(staged.markers.len(), 1, "only the transaction past its 5 s");
    assert_eq!(staged.markers[0].transactional_id, "slow");
    assert_eq!(staged.markers[0].producer_epoch, p.1 + 1);
    assert_eq!(h.state("slow"), TransactionState::PrepareAbort);
    assert_eq!(h.state("quick"), TransactionState::Ongoing);
    assert_eq!(h.shard.next_due(), 20_000);
    h.markers_written(&staged.markers[0].clone());
    assert_eq!(
        h.end("slow", p, true, 0).response,
        TxnResponse::Error(ResponseError::ProducerFenced)
    );
}

#[test]
fn a_restart_finds_prepared_transactions_and_writes_their_markers() {
    let mut h = Harness::new();
    let p = producer(&h.init("tx", (-1, -1)));
    h.add("tx", p, &[("orders", 0)]);
    let job = h.end("tx", p, false, 0).markers[0].clone();
    // The broker dies before the markers are written.
    let mut restarted = h.restarted();
    let pending = restarted.pending_markers();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        MarkerJob {
            coordinator_epoch: 3,
            ..pending[0].clone()
        },
        job,
        "the same markers, under the new coordinator epoch"
    );
    assert_eq!(pending[0].coordinator_epoch, 4);
    let done = restarted.execute(
        1,
        TxnOperation::MarkersWritten {
            transactional_id: "tx".into(),
            producer_id: p.0,
            producer_epoch: p.1,
        },
    );
    assert_eq!(done.records.len(), 1);
    // Replayed, the shard is exactly what the records say.
    for record in &h.log {
        restarted
            .replay(&record.key, record.value.as_deref())
            .unwrap();
    }
    assert_eq!(
        restarted.describe("tx"),
        h.shard.describe("tx"),
        "replaying the same records gives the same state"
    );
}

#[test]
fn nothing_changes_until_the_records_are_replayed() {
    let mut h = Harness::new();
    let p = producer(&h.init("tx", (-1, -1)));
    let before = h.shard.describe("tx").cloned();
    // The append of this operation's records fails: the driver does not replay them.
    let staged = h.shard.execute(
        0,
        TxnOperation::AddPartitions {
            transactional_id: "tx".into(),
            producer_id: p.0,
            producer_epoch: p.1,
            partitions: vec![("orders".into(), 0)],
            verify_only: false,
        },
    );
    assert_eq!(staged.records.len(), 1);
    assert_eq!(h.shard.describe("tx").cloned(), before);
}

#[test]
fn end_txn_in_the_wrong_state_and_with_the_wrong_producer() {
    let mut h = Harness::new();
    let p = producer(&h.init("tx", (-1, -1)));
    assert_eq!(
        h.end("tx", p, true, 0).response,
        TxnResponse::Error(ResponseError::InvalidTxnState),
        "nothing to commit"
    );
    assert_eq!(
        h.end("unknown", p, true, 0).response,
        TxnResponse::Error(ResponseError::InvalidProducerIdMapping)
    );
    h.add("tx", p, &[("orders", 0)]);
    assert_eq!(
        h.end("tx", (p.0 + 1, p.1), true, 0).response,
        TxnResponse::Error(ResponseError::InvalidProducerIdMapping)
    );
    assert_eq!(
        h.end("tx", (p.0, p.1 + 1), true, 0).response,
        TxnResponse::Error(ResponseError::ProducerFenced)
    );
    let job = h.end("tx", p, false, 0).markers[0].clone();
    assert_eq!(
        h.end("tx", p, true, 0).response,
        TxnResponse::Error(ResponseError::InvalidTxnState),
        "a commit while the abort is being written"
    );
    h.markers_written(&job);
    assert_eq!(h.state("tx"), TransactionState::CompleteAbort);
}

#[test]
fn transactions_version_2_bump_the_epoch_at_every_end() {
    let mut h = Harness::new();
    let p = producer(&h.init("tx", (-1, -1)));
    h.add("tx", p, &[("orders", 0)]);
    let ended = h.end("tx", p, true, 2);
    let next = producer(&ended.response);
    assert_eq!(next, (p.0, p.1 + 1));
    assert_eq!(
        ended.markers[0].producer_epoch,
        p.1 + 1,
        "markers carry the new epoch"
    );
    h.markers_written(&ended.markers[0].clone());
    // The retry of that EndTxn, with the old epoch, is answered the same.
    assert_eq!(producer(&h.end("tx", p, true, 2).response), next);
    // An abort with nothing added is allowed, and bumps the epoch again.
    let aborted = h.end("tx", next, false, 2);
    assert_eq!(producer(&aborted.response), (p.0, p.1 + 2));
    assert!(aborted.markers[0].partitions.is_empty());
    // The value is written at version 1, which keeps the client's transaction version.
    let record = h.log.last().unwrap();
    let value = TransactionLogValue::decode(record.value.as_deref().unwrap()).unwrap();
    assert_eq!(value.client_transaction_version, 2);
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let mut h = Harness::new();
    let p = producer(&h.init("tx", (-1, -1)));
    // Written as a record, as a long-lived id would have it.
    let mut worn = h.shard.describe("tx").unwrap().clone();
    worn.producer_epoch = i16::MAX - 1;
    let record = worn.record();
    h.shard
        .replay(&record.key, record.value.as_deref())
        .unwrap();
    let next = producer(&h.init("tx", (p.0, i16::MAX - 1)));
    assert_ne!(next.0, p.0);
    assert_eq!(next.1, 0);
    // The next epochs run under the new id.
    assert_eq!(producer(&h.init("tx", next)), (next.0, 1));
}

#[test]
fn unused_ids_expire_and_a_producer_of_an_expired_id_must_start_afresh() {
    let mut h = Harness::new();
    let p = producer(&h.init("idle", (-1, -1)));
    let week = 7 * 24 * 3_600_000;
    h.now = week - 1;
    h.init("recent", (-1, -1));
    h.now = week + 10_000;
    let staged = h.run(TxnOperation::Deadline);
    let tombstone = TransactionLogKey {
        transactional_id: "idle".into(),
    }
    .encode();
    assert!(staged
        .records
        .iter()
        .any(|r| r.value.is_none() && r.key == tombstone));
    assert_eq!(staged.records.len(), 1, "only the id unused for a week");
    assert!(h.shard.describe("idle").is_none());
    assert!(h.shard.describe("recent").is_some());
    assert!(
        h.restarted().describe("idle").is_none(),
        "the removal is a record"
    );
    assert_eq!(
        h.init("idle", p),
        TxnResponse::Error(ResponseError::InvalidProducerIdMapping)
    );
    assert_ne!(producer(&h.init("idle", (-1, -1))).0, p.0);
}

#[test]
fn timeouts_outside_the_limits_are_refused() {
    let mut h = Harness::new();
    for timeout_ms in [0, -5, 900_001] {
        let staged = h.run(TxnOperation::InitProducerId {
            transactional_id: "tx".into(),
            timeout_ms,
            producer_id: -1,
            producer_epoch: -1,
            fresh_producer_id: 1,
        });
        assert_eq!(
            staged.response,
            TxnResponse::Error(ResponseError::InvalidTransactionTimeout)
        );
        assert!(staged.records.is_empty());
    }
}

#[test]
fn verify_only_says_whether_partitions_are_in_the_transaction() {
    let mut h = Harness::new();
    let p = producer(&h.init("tx", (-1, -1)));
    h.add("tx", p, &[("orders", 0)]);
    let staged = h.run(TxnOperation::AddPartitions {
        transactional_id: "tx".into(),
        producer_id: p.0,
        producer_epoch: p.1,
        partitions: vec![("orders".into(), 0), ("orders".into(), 1)],
        verify_only: true,
    });
    assert!(staged.records.is_empty());
    assert_eq!(
        partition_errors(&staged),
        [None, Some(ResponseError::InvalidTxnState)]
    );
}

#[test]
fn list_filters_by_state_producer_and_duration() {
    let mut h = Harness::new();
    let a = producer(&h.init("a", (-1, -1)));
    let b = producer(&h.init("b", (-1, -1)));
    h.add("a", a, &[("orders", 0)]);
    h.now = 5_000;
    h.add("b", b, &[("orders", 1)]);
    h.now = 6_000;
    let names = |found: Vec<&TransactionView>| {
        found
            .iter()
            .map(|m| m.transactional_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(h.shard.list(&[], &[], -1, h.now)), ["a", "b"]);
    assert_eq!(names(h.shard.list(&[], &[b.0], -1, h.now)), ["b"]);
    assert_eq!(names(h.shard.list(&[], &[], 3_000, h.now)), ["a"]);
    assert!(h
        .shard
        .list(&[TransactionState::Empty], &[], -1, h.now)
        .is_empty());
}
