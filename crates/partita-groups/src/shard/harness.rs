//! A driver for tests: what the broker's shard task does, with a virtual clock, a `Vec` for
//! the shard's partition, and appends that can be told to fail.

use std::collections::{BTreeMap, HashMap};

use super::*;

/// A shard, its journal, and a clock that only moves when the test says so.
pub(super) struct Driver {
    pub(super) shard: GroupShard,
    /// Each append: how its batch was written, and its records.
    batches: Vec<(BatchKind, Vec<Record>)>,
    pub(super) now: i64,
    /// While set, every append fails.
    pub(super) failing: bool,
    /// How many appends have failed.
    pub(super) failed_appends: usize,
    next_token: Token,
    responses: HashMap<Token, Response>,
}

impl Driver {
    pub(super) fn new(config: GroupConfig, seed: u64, now: i64) -> Driver {
        Driver {
            shard: GroupShard::new(config, seed),
            batches: Vec::new(),
            now,
            failing: false,
            failed_appends: 0,
            next_token: 0,
            responses: HashMap::new(),
        }
    }

    /// Runs one operation through the shard's door; returns whether its records (if any)
    /// were appended.
    ///
    /// An operation whose append fails must leave the shard exactly as it found it.
    pub(super) fn run(&mut self, operation: Operation) -> bool {
        let before = self.failing.then(|| everything(&self.shard));
        let described = format!("{operation:?}");
        let staged = self.shard.execute(self.now, operation);
        let marker = matches!(staged.batch(), BatchKind::Marker(_));
        let appended = if staged.records().is_empty() && !marker {
            Ok(())
        } else if self.failing {
            Err(AppendError::new("the disk is gone"))
        } else {
            let records = staged.records().to_vec();
            self.batches.push((staged.batch(), records));
            Ok(())
        };
        let ok = appended.is_ok();
        self.failed_appends += usize::from(!ok);
        let due = self.shard.complete(self.now, staged, appended);
        self.responses.extend(due);
        if let (false, Some(before)) = (ok, before) {
            assert_eq!(
                before,
                everything(&self.shard),
                "{described} changed the shard though its append failed"
            );
        }
        ok
    }

    /// Sends a request; its response, once due, is kept for [`Driver::take`].
    pub(super) fn send_as(&mut self, client: &ClientContext, request: Request) -> Token {
        self.next_token += 1;
        let token = self.next_token;
        self.run(Operation::Request {
            token,
            client: client.clone(),
            request,
        });
        token
    }

    /// The response to `token`, if it has been given.
    pub(super) fn take(&mut self, token: Token) -> Option<Response> {
        self.responses.remove(&token)
    }

    /// Moves the clock forward, running every deadline on the way, as the driver would.
    pub(super) fn advance(&mut self, ms: i64) {
        let target = self.now + ms;
        let mut steps = 0;
        while let Some(deadline) = self.shard.next_deadline().filter(|d| *d <= target) {
            steps += 1;
            assert!(
                steps < 10_000,
                "a deadline at {deadline} is never cleared by its operation"
            );
            self.now = self.now.max(deadline);
            if let Some(operation) = self.shard.next_due(self.now) {
                self.run(operation);
            }
        }
        self.now = target;
    }

    /// The records appended, in order.
    pub(super) fn journal(&self) -> Vec<&Record> {
        self.batches
            .iter()
            .flat_map(|(_, records)| records)
            .collect()
    }

    /// A shard rebuilt from the journal alone, as a restart would.
    pub(super) fn rebuilt(&self, config: GroupConfig) -> GroupShard {
        let mut shard = GroupShard::new(config, 99);
        for (batch, records) in &self.batches {
            if let BatchKind::Marker(marker) = batch {
                shard.replay_marker(self.now, marker.producer_id, marker.commit);
            }
            for record in records {
                let value = record.value.as_deref();
                let decoded = match (record.log, batch) {
                    (RecordLog::ShareGroupState, _) => {
                        shard.replay_share(self.now, &record.key, value).is_ok()
                    }
                    (RecordLog::ConsumerOffsets, BatchKind::Transactional { producer_id, .. }) => {
                        shard
                            .replay_transactional(self.now, *producer_id, &record.key, value)
                            .is_ok()
                    }
                    (RecordLog::ConsumerOffsets, _) => {
                        shard.replay(self.now, &record.key, value).is_ok()
                    }
                };
                assert!(decoded, "the shard's own records decode");
            }
        }
        shard.finish_loading(self.now);
        shard
    }
}

/// The client every test request comes from.
pub(super) fn test_client() -> ClientContext {
    ClientContext {
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
    }
}

/// Everything a shard holds, soft state included, in a stable order.
fn everything(shard: &GroupShard) -> String {
    let groups: BTreeMap<&String, String> = shard
        .groups
        .iter()
        .map(|(id, group)| (id, canonical(group)))
        .collect();
    let offsets: BTreeMap<&String, &GroupOffsets> = shard.offsets.iter().collect();
    let pending: BTreeMap<&i64, &PendingOffsets> = shard.pending_offsets.iter().collect();
    let shares: BTreeMap<&String, &SharePartitions> = shard.share_partitions.iter().collect();
    let earliest: BTreeMap<&String, &BTreeMap<String, String>> =
        shard.group_configs.iter().collect();
    format!("{groups:#?}\n{offsets:#?}\n{pending:#?}\n{shares:#?}\n{earliest:#?}")
}

fn canonical(group: &Group) -> String {
    match group {
        Group::Classic(g) => {
            let mut g = g.clone();
            let statics: BTreeMap<_, _> = g.static_members.drain().collect();
            let pending: BTreeMap<_, _> = g.pending_members.drain().collect();
            format!("{g:?} {statics:?} {pending:?}")
        }
        Group::Consumer(g) => {
            let mut g = g.clone();
            let statics: BTreeMap<_, _> = g.static_members.drain().collect();
            format!("{g:?} {statics:?}")
        }
        Group::Share(g) => format!("{g:?}"),
    }
}
