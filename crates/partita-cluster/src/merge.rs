//! Merging small objects: a flush writes one object holding a little of many partitions;
//! once those batches are `storage.merge.age.ms` old (and fill 4 MiB, or the oldest is four
//! times that age), each partition's leader rewrites its runs of them into objects of its
//! own, so that reading a partition takes fewer, larger requests, and the flush objects,
//! referred to by nothing any more, are deleted.
//!
//! A merge writes the new object first, then in one transaction (while the broker still
//! leads the partition at the same epoch) replaces the old index entries with the new ones,
//! only if every old one is still there (retention or DeleteRecords may have removed some
//! meanwhile; the merge is then tried again later).

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use partita_log::LogError;
use uuid::Uuid;

use crate::error::ClusterError;
use crate::partition::{Core, Row};

/// The columns `Row::from_sql` reads, of `partita_batches b`.
const MERGE_COLUMNS: &str =
    "b.base_offset, b.last_offset, object_id, b.position, b.size, b.max_timestamp, b.merged";

/// Aged batches are merged once they fill this much...
const MERGE_MIN_BYTES: usize = 4 * 1024 * 1024;

/// ...or once the oldest of them is this many `storage.merge.age.ms` old.
const OVERDUE_AGES: i64 = 4;

/// A merged object holds at most this much.
const MERGED_OBJECT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Each index entry of a merged object covers at most this much, so that a fetch reads no
/// more than it needs.
const MERGED_ROW_MAX_BYTES: usize = 1024 * 1024;

/// How fast merges may copy data, in bytes per second per broker: background work that must
/// not starve produce and fetch of the object store, PostgreSQL and CPU.
pub(crate) const MERGE_BYTES_PER_SECOND: u64 = 32 * 1024 * 1024;

/// Object reads of one merge under way at once.
const MERGE_READS: usize = 4;

/// Merges this partition's index entries that point into flush objects and are older than
/// `age_ms`; returns how many bytes were merged.
pub(crate) async fn merge(core: &Core, age_ms: u64) -> Result<usize, LogError> {
    if !core.is_leader() {
        return Ok(0);
    }
    let epoch = core.leader_epoch().await?;
    let Some(log_start) = core.with_state(epoch, |s| s.log_start) else {
        return Ok(0);
    };
    let client = core.shared().db.client().await?;
    let found = client
        .query(
            &format!(
                "SELECT {MERGE_COLUMNS}, \
                 o.created_at < now() - ($5::bigint * interval '1 millisecond') AS overdue \
                 FROM partita_batches b JOIN partita_objects o USING (object_id) \
                 WHERE b.topic_id = $1 AND b.partition = $2 AND NOT b.merged \
                 AND b.last_offset >= $3 \
                 AND o.created_at < now() - ($4::bigint * interval '1 millisecond') \
                 ORDER BY b.base_offset LIMIT 10000"
            ),
            &[
                &core.key.topic_id,
                &core.key.partition,
                &log_start,
                &(age_ms as i64),
                &(age_ms as i64 * OVERDUE_AGES),
            ],
        )
        .await
        .map_err(ClusterError::from)?;
    drop(client);
    let overdue = found.iter().any(|row| row.get::<_, bool>("overdue"));
    let rows = contiguous(found.iter().map(Row::from_sql).collect());
    let size: usize = rows.iter().map(|row| row.size as usize).sum();
    // Aged batches wait until there are enough of them to fill a worthwhile object, or until
    // they are long overdue.
    if rows.is_empty() || (size < MERGE_MIN_BYTES && !overdue) {
        return Ok(0);
    }
    let mut bytes: Vec<Bytes> = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(MERGE_READS) {
        for read in join_all(chunk.iter().map(|row| core.row_bytes(row))).await {
            bytes.push(read?);
        }
    }
    let object = Uuid::new_v4();
    let (body, merged) = lay_out(object, &rows, &bytes);
    core.shared().objects.put(object, body).await?;
    if !replace(core, epoch, object, &rows, &merged).await? {
        return Ok(0);
    }
    core.with_state(epoch, |state| {
        for row in &rows {
            state.rows.remove(&row.base_offset);
        }
        state.remember(merged.iter().copied());
    });
    Ok(size)
}

/// The first run of entries whose offsets follow each other, up to the size of one merged
/// object.
fn contiguous(rows: Vec<Row>) -> Vec<Row> {
    let mut run: Vec<Row> = Vec::new();
    let mut size = 0;
    for row in rows {
        let follows = run
            .last()
            .is_none_or(|last| last.last_offset + 1 == row.base_offset);
        if !follows || size + row.size as usize > MERGED_OBJECT_MAX_BYTES {
            break;
        }
        size += row.size as usize;
        run.push(row);
    }
    run
}

/// The merged object's bytes, and its index entries (runs of the old entries of at most
/// [`MERGED_ROW_MAX_BYTES`] each).
fn lay_out(object: Uuid, rows: &[Row], bytes: &[Bytes]) -> (Bytes, Vec<Row>) {
    let mut body = BytesMut::with_capacity(bytes.iter().map(Bytes::len).sum());
    let mut merged: Vec<Row> = Vec::new();
    for (row, data) in rows.iter().zip(bytes) {
        let position = body.len() as u64;
        body.extend_from_slice(data);
        match merged.last_mut() {
            Some(last) if last.size as usize + data.len() <= MERGED_ROW_MAX_BYTES => {
                last.last_offset = row.last_offset;
                last.size += data.len() as u32;
                last.max_timestamp = last.max_timestamp.max(row.max_timestamp);
            }
            _ => merged.push(Row {
                base_offset: row.base_offset,
                last_offset: row.last_offset,
                object,
                position,
                size: data.len() as u32,
                max_timestamp: row.max_timestamp,
                merged: true,
            }),
        }
    }
    (body.freeze(), merged)
}

/// Replaces `old` with `new` in the index, if this broker still leads the partition at
/// `epoch` and every old entry is still there. `false` when nothing was changed.
async fn replace(
    core: &Core,
    epoch: i32,
    object: Uuid,
    old: &[Row],
    new: &[Row],
) -> Result<bool, LogError> {
    let shared = core.shared();
    let mut client = shared.db.client().await?;
    let transaction = client.transaction().await.map_err(ClusterError::from)?;
    let pg = |e: tokio_postgres::Error| LogError::from(ClusterError::from(e));
    core.lock_leadership(&transaction, epoch).await?;
    let bases: Vec<i64> = old.iter().map(|r| r.base_offset).collect();
    let removed = transaction
        .execute(
            "DELETE FROM partita_batches WHERE topic_id = $1 AND partition = $2 \
             AND base_offset = ANY($3) AND NOT merged",
            &[&core.key.topic_id, &core.key.partition, &bases],
        )
        .await
        .map_err(pg)?;
    if removed as usize != old.len() {
        return Ok(false);
    }
    let size: i64 = new.iter().map(|r| r.size as i64).sum();
    transaction
        .execute(
            "INSERT INTO partita_objects (object_id, size) VALUES ($1, $2)",
            &[&object, &size],
        )
        .await
        .map_err(pg)?;
    let bases: Vec<i64> = new.iter().map(|r| r.base_offset).collect();
    let lasts: Vec<i64> = new.iter().map(|r| r.last_offset).collect();
    let positions: Vec<i64> = new.iter().map(|r| r.position as i64).collect();
    let sizes: Vec<i32> = new.iter().map(|r| r.size as i32).collect();
    let times: Vec<i64> = new.iter().map(|r| r.max_timestamp).collect();
    transaction
        .execute(
            "INSERT INTO partita_batches (topic_id, partition, base_offset, last_offset, \
             object_id, position, size, max_timestamp, merged) \
             SELECT $1, $2, b, l, $3, pos, s, ts, true \
             FROM unnest($4::bigint[], $5::bigint[], $6::bigint[], $7::int[], $8::bigint[]) \
                  AS v(b, l, pos, s, ts)",
            &[
                &core.key.topic_id,
                &core.key.partition,
                &object,
                &bases,
                &lasts,
                &positions,
                &sizes,
                &times,
            ],
        )
        .await
        .map_err(pg)?;
    transaction.commit().await.map_err(pg)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(base: i64, last: i64, size: u32) -> Row {
        Row {
            base_offset: base,
            last_offset: last,
            object: Uuid::nil(),
            position: 0,
            size,
            max_timestamp: base,
            merged: false,
        }
    }

    #[test]
    fn runs_stop_at_a_gap_and_entries_are_regrouped_by_size() {
        let rows = vec![
            row(0, 9, 600_000),
            row(10, 19, 600_000),
            row(20, 29, 10),
            row(40, 49, 10),
        ];
        let run = contiguous(rows);
        assert_eq!(run.len(), 3, "stops before the gap at 30");
        let bytes: Vec<Bytes> = run
            .iter()
            .map(|r| Bytes::from(vec![r.base_offset as u8; r.size as usize]))
            .collect();
        let object = Uuid::from_u128(7);
        let (body, merged) = lay_out(object, &run, &bytes);
        assert_eq!(body.len(), 1_200_010);
        // 600,000 + 600,000 exceeds a merged entry's limit: two entries.
        assert_eq!(
            merged
                .iter()
                .map(|r| (r.base_offset, r.last_offset, r.position, r.size))
                .collect::<Vec<_>>(),
            vec![(0, 9, 0, 600_000), (10, 29, 600_000, 600_010)]
        );
        assert!(merged.iter().all(|r| r.merged && r.object == object));
        assert_eq!(&body[600_000..600_001], &[10]);
    }
}
