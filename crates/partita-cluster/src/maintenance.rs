//! Keeping storage in bounds: retention and DeleteRecords (run by a partition's leader),
//! and the removal of objects nothing refers to any more (run by one broker for all).

use std::collections::HashSet;
use std::time::Duration;

use partita_log::storage::Maintenance;
use partita_log::{CleanupPolicy, LogError};
use uuid::Uuid;

use crate::error::ClusterError;
use crate::partition::Core;
use crate::Shared;

/// An object written but never recorded (its broker died between the write and the commit)
/// is deleted once this old.
const ORPHAN_AGE_MS: i64 = 15 * 60_000;

/// Moves the log start offset to `offset` (DeleteRecords) and drops the index entries wholly
/// below it. Returns the new log start.
pub(crate) async fn delete_records(core: &Core, offset: i64) -> Result<i64, LogError> {
    let epoch = core.leader_epoch().await?;
    let (log_start, next_offset) = core
        .with_state(epoch, |s| (s.log_start, s.next_offset))
        .ok_or(LogError::NotLeader)?;
    if offset > next_offset {
        return Err(LogError::OffsetOutOfRange);
    }
    if offset <= log_start {
        return Ok(log_start);
    }
    move_log_start(core, epoch, offset).await?;
    Ok(offset)
}

/// Compaction (of a compacted topic) and retention of a partition this broker leads.
pub(crate) async fn maintain(core: &Core, now_ms: i64) -> Result<Maintenance, LogError> {
    if !core.is_leader() {
        return Ok(Maintenance::default());
    }
    let policy = core.config().cleanup_policy;
    let compaction = match policy {
        CleanupPolicy::Delete => None,
        _ => Some(crate::compaction::compact(core, now_ms).await?),
    };
    let segments_deleted = match policy {
        CleanupPolicy::Compact => 0,
        _ => retention(core, now_ms).await?,
    };
    Ok(Maintenance {
        compaction,
        segments_deleted,
    })
}

/// Time and size retention; returns how many index entries it dropped.
async fn retention(core: &Core, now_ms: i64) -> Result<usize, LogError> {
    let config = core.config();
    if config.retention_ms < 0 && config.retention_bytes < 0 {
        return Ok(0);
    }
    let epoch = core.leader_epoch().await?;
    let Some((log_start, size)) = core.with_state(epoch, |s| (s.log_start, s.size)) else {
        return Ok(0);
    };
    let client = core.shared().db.client().await?;
    let rows = client
        .query(
            "SELECT last_offset, size, max_timestamp FROM partita_batches \
             WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 \
             ORDER BY base_offset LIMIT 10000",
            &[&core.key.topic_id, &core.key.partition, &log_start],
        )
        .await
        .map_err(ClusterError::from)?;
    let mut remaining = size as i64;
    let mut new_start = log_start;
    let mut deleted = 0;
    for row in rows {
        let (last_offset, row_size, max_timestamp): (i64, i32, i64) =
            (row.get(0), row.get(1), row.get(2));
        let too_old = config.retention_ms >= 0 && now_ms - max_timestamp > config.retention_ms;
        let too_big =
            config.retention_bytes >= 0 && remaining - row_size as i64 >= config.retention_bytes;
        if !(too_old || too_big) {
            break;
        }
        remaining -= row_size as i64;
        new_start = last_offset + 1;
        deleted += 1;
    }
    if new_start > log_start {
        move_log_start(core, epoch, new_start).await?;
    }
    Ok(deleted)
}

/// Moves the log start on in PostgreSQL (only while this broker leads at `epoch`) and drops
/// the index entries below it.
async fn move_log_start(core: &Core, epoch: i32, new_start: i64) -> Result<(), LogError> {
    let mut client = core.shared().db.client().await?;
    let transaction = client.transaction().await.map_err(ClusterError::from)?;
    let moved = transaction
        .execute(
            "UPDATE partita_partitions SET log_start_offset = greatest(log_start_offset, $3) \
             WHERE topic_id = $1 AND partition = $2 AND leader = $4 AND leader_epoch = $5",
            &[
                &core.key.topic_id,
                &core.key.partition,
                &new_start,
                &core.shared().node.node_id,
                &epoch,
            ],
        )
        .await
        .map_err(ClusterError::from)?;
    if moved == 0 {
        return Err(LogError::NotLeader);
    }
    let freed: i64 = transaction
        .query_one(
            "WITH gone AS (DELETE FROM partita_batches \
             WHERE topic_id = $1 AND partition = $2 AND last_offset < $3 RETURNING size) \
             SELECT coalesce(sum(size), 0)::bigint FROM gone",
            &[&core.key.topic_id, &core.key.partition, &new_start],
        )
        .await
        .map_err(ClusterError::from)?
        .get(0);
    transaction.commit().await.map_err(ClusterError::from)?;
    core.with_state(epoch, |state| {
        state.log_start = state.log_start.max(new_start);
        state.size = state.size.saturating_sub(freed as u64);
        state.rows.retain(|_, row| row.last_offset >= new_start);
    });
    Ok(())
}

/// Deletes the objects no index entry refers to any more (after a grace period), and the
/// objects that were written but never recorded. Run by one broker at a time.
pub(crate) async fn collect_objects(shared: &Shared) -> Result<usize, ClusterError> {
    let client = shared.db.client().await?;
    let unreferenced: Vec<Uuid> = client
        .query(
            "SELECT object_id FROM partita_objects o \
             WHERE created_at < now() - ($1::bigint * interval '1 millisecond') \
             AND NOT EXISTS (SELECT 1 FROM partita_batches b WHERE b.object_id = o.object_id) \
             LIMIT 1000",
            &[&(shared.config.delete_delay_ms as i64)],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for &id in &unreferenced {
        shared.objects.delete(id).await?;
        client
            .execute(
                "DELETE FROM partita_objects o WHERE object_id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM partita_batches b WHERE b.object_id = o.object_id)",
                &[&id],
            )
            .await?;
    }
    Ok(unreferenced.len())
}

/// Deletes objects old enough that their commit cannot still be coming, which PostgreSQL
/// does not know.
pub(crate) async fn sweep_orphans(shared: &Shared, now_ms: i64) -> Result<usize, ClusterError> {
    let listed = shared.objects.list_data().await?;
    let old: Vec<Uuid> = listed
        .into_iter()
        .filter(|&(_, written)| now_ms - written > ORPHAN_AGE_MS)
        .map(|(id, _)| id)
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    let client = shared.db.client().await?;
    let known: HashSet<Uuid> = client
        .query(
            "SELECT object_id FROM partita_objects WHERE object_id = ANY($1)",
            &[&old],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut deleted = 0;
    for id in old.into_iter().filter(|id| !known.contains(id)) {
        shared.objects.delete(id).await?;
        deleted += 1;
    }
    Ok(deleted)
}

/// How often the collection of objects runs: every half `log.segment.delete.delay.ms`, between 1 and
/// 30 seconds.
pub(crate) fn collect_every(shared: &Shared) -> Duration {
    Duration::from_millis(shared.config.delete_delay_ms / 2)
        .clamp(Duration::from_secs(1), Duration::from_secs(30))
}
