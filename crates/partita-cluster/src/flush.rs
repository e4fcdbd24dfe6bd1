//! The flusher: one per broker, gathering the batches produced to every partition it leads
//! into one object, then making them visible in one PostgreSQL transaction.
//!
//! A flush starts when the first batch has waited `storage.flush.interval.ms` or when
//! `storage.flush.max.bytes` wait. It then:
//!
//! 1. gives each batch its offsets from the leader's state in memory (checking idempotent
//!    producers' sequences first: a retry is answered with the offsets it got before and not
//!    written again), and lays the batches out partition by partition in one object;
//! 2. writes the object, under a new id that nothing refers to yet;
//! 3. in one transaction, records the object, moves each partition's next offset on (only
//!    if this broker still leads it at the same epoch, from the same next offset), adds the
//!    index entries and the producers' new state;
//! 4. answers: every batch once the transaction committed, none before.
//!
//! If the object cannot be written or the transaction fails, nothing became visible and every
//! batch is answered with a retriable error; the partitions load their state again before
//! the next write, as the outcome of a failed commit is not known.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use partita_log::batch;
use partita_log::producer_state::{ProducerStateTable, SequenceCheck};
use partita_log::{AppendInfo, LogError, TimestampType};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use crate::db::OPERATION_TIMEOUT;
use crate::error::ClusterError;
use crate::partition::{encode_batches, Core, Row};
use crate::{PartitionKey, Shared};

/// A batch waiting to be written.
pub(crate) struct FlushItem {
    pub(crate) core: Arc<Core>,
    /// The leader epoch the batch was accepted at.
    pub(crate) epoch: i32,
    pub(crate) batch: Vec<u8>,
    pub(crate) now_ms: i64,
    /// When it was put in line: it waits at most the flush interval from then.
    pub(crate) queued: Instant,
    pub(crate) reply: oneshot::Sender<Result<AppendInfo, LogError>>,
}

type Reply = oneshot::Sender<Result<AppendInfo, LogError>>;

/// What one flush writes for one partition.
struct PartitionWrite {
    core: Arc<Core>,
    epoch: i32,
    expected_next: i64,
    next_offset: i64,
    producers: ProducerStateTable,
    /// Producers whose state changed.
    touched: Vec<i64>,
    row: Row,
    /// Answers to give once the write is durable.
    replies: Vec<(Reply, AppendInfo)>,
}

/// Runs the flusher until every sender is gone.
pub(crate) async fn run(shared: Arc<Shared>, mut items: mpsc::Receiver<FlushItem>) {
    let interval = Duration::from_millis(shared.config.flush_interval_ms);
    let max_bytes = shared.config.flush_max_bytes;
    while let Some(first) = items.recv().await {
        // A batch that already waited (behind the previous flush) is not kept waiting a whole
        // interval more.
        let deadline = first.queued + interval;
        let mut bytes = first.batch.len();
        let mut pending = vec![first];
        while bytes < max_bytes {
            if let Ok(item) = items.try_recv() {
                bytes += item.batch.len();
                pending.push(item);
                continue;
            }
            tokio::select! {
                item = items.recv() => match item {
                    Some(item) => {
                        bytes += item.batch.len();
                        pending.push(item);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        flush(&shared, pending).await;
    }
}

/// Writes one object's worth of batches and answers them.
async fn flush(shared: &Shared, items: Vec<FlushItem>) {
    let mut by_partition: BTreeMap<PartitionKey, Vec<FlushItem>> = BTreeMap::new();
    for item in items {
        by_partition.entry(item.core.key).or_default().push(item);
    }
    let object = Uuid::new_v4();
    let mut body = BytesMut::new();
    let mut writes = Vec::new();
    let mut duplicates = Vec::new();
    for items in by_partition.into_values() {
        if let Some(write) = lay_out(object, &mut body, items, &mut duplicates) {
            writes.push(write);
        }
    }
    if writes.is_empty() {
        answer_duplicates(duplicates);
        return;
    }
    let body = body.freeze();
    match write(shared, object, &body, &writes).await {
        Ok(()) => {
            for write in writes {
                shared.cache.insert(
                    (object, write.row.position),
                    body.slice(
                        write.row.position as usize
                            ..(write.row.position + write.row.size as u64) as usize,
                    ),
                );
                finish(write);
            }
            answer_duplicates(duplicates);
        }
        Err((error, fenced)) => {
            tracing::warn!(%error, object = %object, "flush failed; its batches are answered with a retriable error");
            for write in writes {
                write.core.unload(write.epoch);
                let fenced = fenced.contains(&write.core.key);
                for (reply, _) in write.replies {
                    let refusal = match fenced {
                        true => LogError::NotLeader,
                        false => LogError::Unavailable(error.to_string()),
                    };
                    let _ = reply.send(Err(refusal));
                }
            }
            for (reply, _) in duplicates {
                let _ = reply.send(Err(LogError::Unavailable(error.to_string())));
            }
        }
    }
}

fn answer_duplicates(duplicates: Vec<(Reply, AppendInfo)>) {
    for (reply, info) in duplicates {
        let _ = reply.send(Ok(info));
    }
}

/// Gives one partition's batches their offsets and appends them to the object. Batches that
/// cannot be written are answered at once; retries of batches already written go to
/// `duplicates`, answered after the flush.
fn lay_out(
    object: Uuid,
    body: &mut BytesMut,
    items: Vec<FlushItem>,
    duplicates: &mut Vec<(Reply, AppendInfo)>,
) -> Option<PartitionWrite> {
    let core = Arc::clone(&items[0].core);
    let epoch = items[0].epoch;
    let start = core.with_state(epoch, |s| (s.next_offset, s.producers.clone()));
    let Some((expected_next, mut producers)) = start else {
        for item in items {
            let _ = item.reply.send(Err(LogError::NotLeader));
        }
        return None;
    };
    let append_time = core.config().timestamp_type == TimestampType::LogAppendTime;
    let position = body.len() as u64;
    let mut next_offset = expected_next;
    let mut max_timestamp = i64::MIN;
    let mut touched = Vec::new();
    let mut replies = Vec::new();
    for mut item in items {
        if item.epoch != epoch {
            let _ = item.reply.send(Err(LogError::NotLeader));
            continue;
        }
        let header = match batch::parse_header(&item.batch) {
            Ok(header) => header,
            Err(error) => {
                let _ = item.reply.send(Err(error.into()));
                continue;
            }
        };
        match producers.check(&header) {
            Err(error) => {
                let _ = item.reply.send(Err(error));
                continue;
            }
            Ok(SequenceCheck::Duplicate(original)) => {
                let info = AppendInfo {
                    base_offset: original.base_offset,
                    last_offset: original.last_offset,
                    log_append_time: -1,
                    duplicate: true,
                };
                duplicates.push((item.reply, info));
                continue;
            }
            Ok(SequenceCheck::Accept) => {}
        }
        batch::set_base_offset(&mut item.batch, next_offset);
        let mut log_append_time = -1;
        if append_time {
            batch::set_log_append_time(&mut item.batch, item.now_ms);
            log_append_time = item.now_ms;
        }
        let Ok(header) = batch::parse_header(&item.batch) else {
            continue;
        };
        producers.record(&header);
        if header.producer_id >= 0 && !touched.contains(&header.producer_id) {
            touched.push(header.producer_id);
        }
        max_timestamp = max_timestamp.max(header.max_timestamp);
        next_offset = header.last_offset() + 1;
        body.extend_from_slice(&item.batch);
        replies.push((
            item.reply,
            AppendInfo {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                log_append_time,
                duplicate: false,
            },
        ));
    }
    if replies.is_empty() {
        return None;
    }
    let row = Row {
        base_offset: expected_next,
        last_offset: next_offset - 1,
        object,
        position,
        size: (body.len() as u64 - position) as u32,
        max_timestamp,
        merged: false,
    };
    Some(PartitionWrite {
        core,
        epoch,
        expected_next,
        next_offset,
        producers,
        touched,
        row,
        replies,
    })
}

/// Writes the object, then commits its index entries. On failure, the error and the
/// partitions this broker turned out not to lead.
async fn write(
    shared: &Shared,
    object: Uuid,
    body: &Bytes,
    writes: &[PartitionWrite],
) -> Result<(), (ClusterError, Vec<PartitionKey>)> {
    shared
        .objects
        .put(object, body.clone())
        .await
        .map_err(|e| (e, Vec::new()))?;
    match tokio::time::timeout(
        OPERATION_TIMEOUT,
        commit(shared, object, body.len(), writes),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err((
            ClusterError::Metadata("the commit timed out".into()),
            Vec::new(),
        )),
    }
}

async fn commit(
    shared: &Shared,
    object: Uuid,
    size: usize,
    writes: &[PartitionWrite],
) -> Result<(), (ClusterError, Vec<PartitionKey>)> {
    let plain = |e: ClusterError| (e, Vec::new());
    let pg = |e: tokio_postgres::Error| (ClusterError::from(e), Vec::new());
    let mut client = shared.db.client().await.map_err(plain)?;
    let transaction = client.transaction().await.map_err(pg)?;
    transaction
        .execute(
            "INSERT INTO partita_objects (object_id, size) VALUES ($1, $2)",
            &[&object, &(size as i64)],
        )
        .await
        .map_err(pg)?;
    let topics: Vec<Uuid> = writes.iter().map(|w| w.core.key.topic_id).collect();
    let partitions: Vec<i32> = writes.iter().map(|w| w.core.key.partition).collect();
    let epochs: Vec<i32> = writes.iter().map(|w| w.epoch).collect();
    let expected: Vec<i64> = writes.iter().map(|w| w.expected_next).collect();
    let next: Vec<i64> = writes.iter().map(|w| w.next_offset).collect();
    let advanced = transaction
        .query(
            "UPDATE partita_partitions p SET next_offset = v.next \
             FROM unnest($1::uuid[], $2::int[], $3::int[], $4::bigint[], $5::bigint[]) \
                  AS v(topic_id, partition, epoch, expected, next) \
             WHERE p.topic_id = v.topic_id AND p.partition = v.partition \
               AND p.leader = $6 AND p.leader_epoch = v.epoch AND p.next_offset = v.expected \
             RETURNING p.topic_id, p.partition",
            &[
                &topics,
                &partitions,
                &epochs,
                &expected,
                &next,
                &shared.node.node_id,
            ],
        )
        .await
        .map_err(pg)?;
    if advanced.len() != writes.len() {
        let done: Vec<PartitionKey> = advanced
            .iter()
            .map(|row| PartitionKey {
                topic_id: row.get(0),
                partition: row.get(1),
            })
            .collect();
        let fenced = writes
            .iter()
            .map(|w| w.core.key)
            .filter(|key| !done.contains(key))
            .collect();
        return Err((
            ClusterError::Metadata("another broker leads some of these partitions now".into()),
            fenced,
        ));
    }
    insert_rows(&transaction, object, writes)
        .await
        .map_err(pg)?;
    store_producers(&transaction, writes).await.map_err(pg)?;
    transaction.commit().await.map_err(pg)?;
    Ok(())
}

async fn insert_rows(
    transaction: &deadpool_postgres::Transaction<'_>,
    object: Uuid,
    writes: &[PartitionWrite],
) -> Result<(), tokio_postgres::Error> {
    let topics: Vec<Uuid> = writes.iter().map(|w| w.core.key.topic_id).collect();
    let partitions: Vec<i32> = writes.iter().map(|w| w.core.key.partition).collect();
    let bases: Vec<i64> = writes.iter().map(|w| w.row.base_offset).collect();
    let lasts: Vec<i64> = writes.iter().map(|w| w.row.last_offset).collect();
    let positions: Vec<i64> = writes.iter().map(|w| w.row.position as i64).collect();
    let sizes: Vec<i32> = writes.iter().map(|w| w.row.size as i32).collect();
    let times: Vec<i64> = writes.iter().map(|w| w.row.max_timestamp).collect();
    transaction
        .execute(
            "INSERT INTO partita_batches \
             (topic_id, partition, base_offset, last_offset, object_id, position, size, max_timestamp) \
             SELECT t, p, b, l, $8, pos, s, ts \
             FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[], \
                         $6::int[], $7::bigint[]) AS v(t, p, b, l, pos, s, ts)",
            &[&topics, &partitions, &bases, &lasts, &positions, &sizes, &times, &object],
        )
        .await?;
    Ok(())
}

async fn store_producers(
    transaction: &deadpool_postgres::Transaction<'_>,
    writes: &[PartitionWrite],
) -> Result<(), tokio_postgres::Error> {
    let (mut topics, mut partitions, mut ids, mut epochs, mut batches) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for write in writes {
        for &producer_id in &write.touched {
            if let Some((epoch, last)) = write.producers.entry(producer_id) {
                topics.push(write.core.key.topic_id);
                partitions.push(write.core.key.partition);
                ids.push(producer_id);
                epochs.push(epoch);
                batches.push(encode_batches(&last));
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    transaction
        .execute(
            "INSERT INTO partita_producers (topic_id, partition, producer_id, producer_epoch, batches) \
             SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::smallint[], $5::bytea[]) \
             ON CONFLICT (topic_id, partition, producer_id) DO UPDATE \
             SET producer_epoch = excluded.producer_epoch, batches = excluded.batches",
            &[&topics, &partitions, &ids, &epochs, &batches],
        )
        .await?;
    Ok(())
}

/// The write is durable: the leader's state moves on and the producers get their answers.
fn finish(write: PartitionWrite) {
    let PartitionWrite {
        core,
        epoch,
        next_offset,
        producers,
        row,
        replies,
        ..
    } = write;
    core.with_state(epoch, move |state| {
        state.next_offset = next_offset;
        state.size += row.size as u64;
        state.producers = producers;
        state.remember([row]);
    });
    for (reply, info) in replies {
        let _ = reply.send(Ok(info));
    }
}
