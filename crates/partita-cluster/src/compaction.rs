//! Compaction of compacted topics (`cleanup.policy=compact`, `__consumer_offsets` among
//! them) in cluster mode, run by a partition's leader with its retention checks.
//!
//! The newest offset of every key is learnt from the whole partition; then the merged part
//! (batches at least `storage.merge.age.ms` old, in objects of the partition's own) is
//! rewritten without the records a newer record of the same key replaces, with the same
//! rules as the single-node log ([`partita_log::Cleaner`]). The cleaned index entries point
//! into one new object; they replace the old ones in one transaction, while the broker still
//! leads the partition at the same epoch and only where an entry is still the one that was
//! read. The recent, not yet merged part is never rewritten, as Kafka never cleans the active
//! segment.

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use partita_log::batch;
use partita_log::{Cleaner, CompactionStats, LogError};
use uuid::Uuid;

use crate::error::ClusterError;
use crate::partition::{Core, Row, ROW_COLUMNS};

/// Index entries read from the object store at once while compacting.
const READS_AT_ONCE: usize = 16;

/// Compacts the partition if new merged data came since the last compaction.
pub(crate) async fn compact(core: &Core, now_ms: i64) -> Result<CompactionStats, LogError> {
    let epoch = core.leader_epoch().await?;
    let config = core.config();
    let Some(log_start) = core.with_state(epoch, |s| s.log_start) else {
        return Err(LogError::NotLeader);
    };
    let client = core.shared().db.client().await?;
    let found = client
        .query(
            &format!(
                "SELECT {ROW_COLUMNS} FROM partita_batches \
                 WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 \
                 ORDER BY base_offset"
            ),
            &[&core.key.topic_id, &core.key.partition, &log_start],
        )
        .await
        .map_err(ClusterError::from)?;
    drop(client);
    let rows: Vec<Row> = found.iter().map(Row::from_sql).collect();
    let cleanable = rows.iter().take_while(|row| row.merged).count();
    let newest_merged = rows[..cleanable].last().map(|row| row.last_offset);
    let compacted_through = core.with_state(epoch, |s| s.compacted_through).flatten();
    if newest_merged.is_none() || newest_merged == compacted_through {
        return Ok(CompactionStats::default());
    }
    let mut cleaner = Cleaner::new(now_ms, config.delete_retention_ms);
    let mut contents = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(READS_AT_ONCE) {
        for bytes in join_all(chunk.iter().map(|row| core.row_bytes(row))).await {
            let bytes = bytes?;
            for range in batch::split_batches(&bytes)? {
                cleaner.learn(&bytes[range]);
            }
            contents.push(bytes);
        }
    }
    let object = Uuid::new_v4();
    let (body, cleaned, stats) = clean(&mut cleaner, object, &rows[..cleanable], &contents)?;
    if !cleaned.is_empty() {
        core.shared().objects.put(object, body).await?;
        if !replace(core, epoch, object, &cleaned).await? {
            return Ok(CompactionStats::default());
        }
    }
    core.with_state(epoch, |state| {
        state.compacted_through = newest_merged;
        for (old, new) in &cleaned {
            state.rows.remove(&old.base_offset);
            if let Some(new) = new {
                state.rows.insert(new.base_offset, *new);
            }
            state.size =
                state.size.saturating_sub(old.size as u64) + new.map_or(0, |n| n.size as u64);
        }
    });
    Ok(stats)
}

/// Each index entry that loses records, with its cleaned replacement in `object` (`None`
/// when nothing of it is left); the object's bytes; what was done.
type Cleaned = Vec<(Row, Option<Row>)>;

fn clean(
    cleaner: &mut Cleaner,
    object: Uuid,
    rows: &[Row],
    contents: &[Bytes],
) -> Result<(Bytes, Cleaned, CompactionStats), LogError> {
    let mut body = BytesMut::new();
    let mut cleaned = Vec::new();
    let mut stats = CompactionStats::default();
    for (row, bytes) in rows.iter().zip(contents) {
        stats.bytes_before += bytes.len() as u64;
        let mut out = BytesMut::new();
        let mut removed = 0;
        for range in batch::split_batches(bytes)? {
            let (rewritten, dropped) = cleaner.clean(&bytes[range.clone()]);
            removed += dropped;
            out.extend_from_slice(rewritten.as_deref().unwrap_or(&bytes[range]));
        }
        stats.bytes_after += out.len() as u64;
        if removed == 0 {
            continue;
        }
        stats.records_removed += removed;
        stats.segments_cleaned += 1;
        let replacement = (!out.is_empty()).then(|| {
            let position = body.len() as u64;
            body.extend_from_slice(&out);
            Row {
                object,
                position,
                size: out.len() as u32,
                ..*row
            }
        });
        cleaned.push((*row, replacement));
    }
    Ok((body.freeze(), cleaned, stats))
}

/// Swaps the cleaned entries in if every old one is still there; `false` when nothing was
/// changed.
async fn replace(
    core: &Core,
    epoch: i32,
    object: Uuid,
    cleaned: &Cleaned,
) -> Result<bool, LogError> {
    let shared = core.shared();
    let pg = |e: tokio_postgres::Error| LogError::from(ClusterError::from(e));
    let mut client = shared.db.client().await?;
    let transaction = client.transaction().await.map_err(pg)?;
    core.lock_leadership(&transaction, epoch).await?;
    let size: i64 = cleaned
        .iter()
        .filter_map(|(_, new)| *new)
        .map(|r| r.size as i64)
        .sum();
    transaction
        .execute(
            "INSERT INTO partita_objects (object_id, size) VALUES ($1, $2)",
            &[&object, &size],
        )
        .await
        .map_err(pg)?;
    for (old, new) in cleaned {
        let changed = match new {
            Some(new) => {
                transaction
                    .execute(
                        "UPDATE partita_batches SET object_id = $4, position = $5, size = $6 \
                         WHERE topic_id = $1 AND partition = $2 AND base_offset = $3 \
                         AND object_id = $7 AND position = $8",
                        &[
                            &core.key.topic_id,
                            &core.key.partition,
                            &old.base_offset,
                            &object,
                            &(new.position as i64),
                            &(new.size as i32),
                            &old.object,
                            &(old.position as i64),
                        ],
                    )
                    .await
            }
            None => {
                transaction
                    .execute(
                        "DELETE FROM partita_batches WHERE topic_id = $1 AND partition = $2 \
                         AND base_offset = $3 AND object_id = $4 AND position = $5",
                        &[
                            &core.key.topic_id,
                            &core.key.partition,
                            &old.base_offset,
                            &old.object,
                            &(old.position as i64),
                        ],
                    )
                    .await
            }
        }
        .map_err(pg)?;
        if changed != 1 {
            // Retention or DeleteRecords went first; this round is given up.
            return Ok(false);
        }
    }
    transaction.commit().await.map_err(pg)?;
    Ok(true)
}
