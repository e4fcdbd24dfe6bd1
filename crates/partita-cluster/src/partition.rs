//! One partition in cluster mode: [`PartitionStorage`] over object storage and PostgreSQL.
//!
//! Only the partition's leader reads and writes it. On becoming leader a broker loads the
//! partition's offsets, idempotent producers and latest batch index entries from
//! PostgreSQL; from then on it is the only broker whose writes the database accepts (they
//! carry its leader epoch), so what it holds in memory is the truth until it loses the
//! partition. Appends go to the broker's flusher, which gathers the batches of every
//! partition into one object; reads find the object ranges in the index and read them
//! through the cache.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use partita_log::batch;
use partita_log::producer_state::{BatchMetadata, ProducerStateTable};
use partita_log::storage::{Appending, Maintenance, PartitionOffsets, PartitionStorage};
use partita_log::{LogConfig, LogError};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::ClusterError;
use crate::flush::FlushItem;
use crate::{PartitionKey, Shared};

/// Index entries kept in memory per partition; older ones are looked up when read.
const ROWS_IN_MEMORY: usize = 4_096;

/// The cache key position of a whole object.
const WHOLE: u64 = u64::MAX;

/// Index entries fetched at once when a read needs older ones.
const ROWS_PER_LOOKUP: i64 = 64;

/// Where a run of a partition's batches is: offsets, object, byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) object: Uuid,
    pub(crate) position: u64,
    pub(crate) size: u32,
    pub(crate) max_timestamp: i64,
    pub(crate) merged: bool,
}

impl Row {
    pub(crate) fn from_sql(row: &tokio_postgres::Row) -> Row {
        Row {
            base_offset: row.get("base_offset"),
            last_offset: row.get("last_offset"),
            object: row.get("object_id"),
            position: row.get::<_, i64>("position") as u64,
            size: row.get::<_, i32>("size") as u32,
            max_timestamp: row.get("max_timestamp"),
            merged: row.get("merged"),
        }
    }
}

/// The columns [`Row::from_sql`] reads.
pub(crate) const ROW_COLUMNS: &str =
    "base_offset, last_offset, object_id, position, size, max_timestamp, merged";

/// What the leader holds.
pub(crate) struct LeaderState {
    pub(crate) next_offset: i64,
    pub(crate) log_start: i64,
    pub(crate) size: u64,
    pub(crate) producers: ProducerStateTable,
    /// The latest index entries, by base offset.
    pub(crate) rows: BTreeMap<i64, Row>,
    /// The last offset of the merged part when it was last compacted (compacted topics).
    pub(crate) compacted_through: Option<i64>,
}

impl LeaderState {
    /// Adds index entries, forgetting the oldest beyond the bound.
    pub(crate) fn remember(&mut self, rows: impl IntoIterator<Item = Row>) {
        for row in rows {
            self.rows.insert(row.base_offset, row);
        }
        while self.rows.len() > ROWS_IN_MEMORY {
            self.rows.pop_first();
        }
    }
}

enum Role {
    Follower,
    /// Leader at `epoch`; `state` is loaded on first use.
    Leader {
        epoch: i32,
        state: Option<Box<LeaderState>>,
    },
}

/// Offsets and size readable without the lock.
#[derive(Default)]
struct Published {
    log_start: AtomicI64,
    next_offset: AtomicI64,
    size: AtomicU64,
}

/// The partition's shared core, also held by the flusher while it writes.
pub(crate) struct Core {
    pub(crate) key: PartitionKey,
    shared: Arc<Shared>,
    config: RwLock<LogConfig>,
    role: Mutex<Role>,
    /// One load from PostgreSQL at a time.
    loading: tokio::sync::Mutex<()>,
    published: Published,
}

/// A partition stored in cluster mode.
pub struct ClusterPartition {
    pub(crate) core: Arc<Core>,
}

impl Core {
    pub(crate) fn new(key: PartitionKey, shared: Arc<Shared>, config: LogConfig) -> Core {
        Core {
            key,
            shared,
            config: RwLock::new(config),
            role: Mutex::new(Role::Follower),
            loading: tokio::sync::Mutex::new(()),
            published: Published::default(),
        }
    }

    /// What the broker's cluster tasks share.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn role(&self) -> MutexGuard<'_, Role> {
        self.role.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes this broker the leader at `epoch`, or (`None`) a follower. Leading at a new
    /// epoch drops what was loaded, since another broker may have written meanwhile.
    pub(crate) fn set_leadership(&self, epoch: Option<i32>) {
        let mut role = self.role();
        match (&*role, epoch) {
            (Role::Leader { epoch: current, .. }, Some(epoch)) if *current == epoch => {}
            (_, Some(epoch)) => *role = Role::Leader { epoch, state: None },
            (Role::Follower, None) => {}
            (_, None) => *role = Role::Follower,
        }
    }

    /// Whether this broker leads the partition now.
    pub(crate) fn is_leader(&self) -> bool {
        self.current_epoch().is_some()
    }

    /// The epoch this broker leads the partition at, if it does. Never past the moment this
    /// broker would count itself gone (its session with PostgreSQL lapsed), whatever its view
    /// still says: the others may take the partition from then on.
    pub(crate) fn current_epoch(&self) -> Option<i32> {
        match &*self.role() {
            Role::Leader { epoch, .. } if self.shared.is_live() => Some(*epoch),
            _ => None,
        }
    }

    /// Forgets what was loaded (after a write whose outcome is unknown): the next operation
    /// loads again.
    pub(crate) fn unload(&self, epoch: i32) {
        if let Role::Leader {
            epoch: current,
            state,
        } = &mut *self.role()
        {
            if *current == epoch {
                *state = None;
            }
        }
    }

    /// Within `transaction`, locks the partition's row if this broker still leads it at
    /// `epoch` (so that the transaction commits only while it does); `NotLeader` if not.
    pub(crate) async fn lock_leadership(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        epoch: i32,
    ) -> Result<(), LogError> {
        let leads = transaction
            .execute(
                "SELECT 1 FROM partita_partitions WHERE topic_id = $1 AND partition = $2 \
                 AND leader = $3 AND leader_epoch = $4 FOR UPDATE",
                &[
                    &self.key.topic_id,
                    &self.key.partition,
                    &self.shared.node.node_id,
                    &epoch,
                ],
            )
            .await
            .map_err(ClusterError::from)?;
        match leads {
            0 => Err(LogError::NotLeader),
            _ => Ok(()),
        }
    }

    /// Runs `f` on the leader's state if this broker still leads at `epoch` with it loaded.
    pub(crate) fn with_state<T>(
        &self,
        epoch: i32,
        f: impl FnOnce(&mut LeaderState) -> T,
    ) -> Option<T> {
        let mut role = self.role();
        match &mut *role {
            Role::Leader {
                epoch: current,
                state: Some(state),
            } if *current == epoch => {
                let out = f(state);
                self.published
                    .log_start
                    .store(state.log_start, Ordering::Relaxed);
                self.published
                    .next_offset
                    .store(state.next_offset, Ordering::Relaxed);
                self.published.size.store(state.size, Ordering::Relaxed);
                Some(out)
            }
            _ => None,
        }
    }

    /// The epoch this broker leads at, loading the partition first if needed.
    pub(crate) async fn leader_epoch(&self) -> Result<i32, LogError> {
        loop {
            if !self.shared.is_live() {
                return Err(LogError::NotLeader);
            }
            let wanted = match &*self.role() {
                Role::Follower => return Err(LogError::NotLeader),
                Role::Leader {
                    epoch,
                    state: Some(_),
                } => return Ok(*epoch),
                Role::Leader { epoch, state: None } => *epoch,
            };
            let _loading = self.loading.lock().await;
            if self.with_state(wanted, |_| ()).is_some() {
                return Ok(wanted);
            }
            let state = self.load(wanted).await?;
            let mut role = self.role();
            if let Role::Leader {
                epoch,
                state: slot @ None,
            } = &mut *role
            {
                if *epoch == wanted {
                    *slot = Some(Box::new(state));
                }
            }
            drop(role);
            self.with_state(wanted, |_| ());
        }
    }

    /// Reads the partition's state from PostgreSQL, checking it is still this broker's.
    async fn load(&self, epoch: i32) -> Result<LeaderState, LogError> {
        let client = self.shared.db.client().await?;
        let key = &self.key;
        let row = client
            .query_opt(
                "SELECT leader, leader_epoch, log_start_offset, next_offset \
                 FROM partita_partitions WHERE topic_id = $1 AND partition = $2",
                &[&key.topic_id, &key.partition],
            )
            .await
            .map_err(ClusterError::from)?
            .ok_or(LogError::NotLeader)?;
        let (leader, stored_epoch): (i32, i32) = (row.get(0), row.get(1));
        if leader != self.shared.node.node_id || stored_epoch != epoch {
            return Err(LogError::NotLeader);
        }
        let mut state = LeaderState {
            log_start: row.get(2),
            next_offset: row.get(3),
            size: 0,
            producers: ProducerStateTable::default(),
            rows: BTreeMap::new(),
            compacted_through: None,
        };
        let size: i64 = client
            .query_one(
                "SELECT coalesce(sum(size), 0)::bigint FROM partita_batches \
                 WHERE topic_id = $1 AND partition = $2",
                &[&key.topic_id, &key.partition],
            )
            .await
            .map_err(ClusterError::from)?
            .get(0);
        state.size = size as u64;
        for row in client
            .query(
                "SELECT producer_id, producer_epoch, batches FROM partita_producers \
                 WHERE topic_id = $1 AND partition = $2",
                &[&key.topic_id, &key.partition],
            )
            .await
            .map_err(ClusterError::from)?
        {
            let batches: Vec<u8> = row.get(2);
            state
                .producers
                .restore(row.get(0), row.get(1), decode_batches(&batches));
        }
        let rows = client
            .query(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM partita_batches \
                     WHERE topic_id = $1 AND partition = $2 \
                     ORDER BY base_offset DESC LIMIT $3"
                ),
                &[&key.topic_id, &key.partition, &ROWS_PER_LOOKUP],
            )
            .await
            .map_err(ClusterError::from)?;
        state.remember(rows.iter().map(Row::from_sql));
        Ok(state)
    }

    /// Index entries from the one holding `offset`, contiguous, up to about `max_bytes`.
    /// `None` when the entry holding `offset` is not in memory.
    fn rows_from(&self, epoch: i32, offset: i64, max_bytes: usize) -> Option<Vec<Row>> {
        self.with_state(epoch, |state| {
            let (_, first) = state.rows.range(..=offset).next_back()?;
            if first.last_offset < offset {
                return None;
            }
            let mut rows = vec![*first];
            let mut bytes = first.size as usize;
            for row in state.rows.range(first.base_offset + 1..).map(|(_, r)| r) {
                let last = rows.last().map_or(offset, |r| r.last_offset);
                if bytes >= max_bytes || row.base_offset != last + 1 {
                    break;
                }
                bytes += row.size as usize;
                rows.push(*row);
            }
            Some(rows)
        })
        .flatten()
    }

    /// Looks up index entries from `offset` on in PostgreSQL and remembers them.
    /// Returns the entries found, from the first that holds `offset` or comes after it.
    async fn look_up(&self, epoch: i32, offset: i64) -> Result<Vec<Row>, LogError> {
        let client = self.shared.db.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM partita_batches \
                     WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 \
                     ORDER BY base_offset LIMIT $4"
                ),
                &[
                    &self.key.topic_id,
                    &self.key.partition,
                    &offset,
                    &ROWS_PER_LOOKUP,
                ],
            )
            .await
            .map_err(ClusterError::from)?;
        let rows: Vec<Row> = rows.iter().map(Row::from_sql).collect();
        self.with_state(epoch, |state| state.remember(rows.iter().copied()));
        Ok(rows)
    }

    /// The bytes an index entry points at, from the cache or the object store. An entry of
    /// a flush object (a little of many partitions, which consumers tend to read together) is
    /// read with its whole object, kept in the cache for the other entries; an entry of a
    /// merged object is read alone. Reads of the same thing at the same time (the partitions
    /// of one flush object, fetched together) wait for one request to the object store.
    pub(crate) async fn row_bytes(&self, row: &Row) -> Result<Bytes, LogError> {
        let cache = &self.shared.cache;
        let slice = |whole: &Bytes| {
            let end = (row.position + row.size as u64) as usize;
            whole
                .get(row.position as usize..end)
                .map(|_| whole.slice(row.position as usize..end))
        };
        if let Some(bytes) = cache.get(&(row.object, row.position)) {
            return Ok(bytes);
        }
        if let Some(bytes) = cache.get(&(row.object, WHOLE)).as_ref().and_then(slice) {
            return Ok(bytes);
        }
        if !row.merged {
            let whole = cache
                .get_or_insert_async(&(row.object, WHOLE), self.shared.objects.get(row.object))
                .await?;
            if let Some(bytes) = slice(&whole) {
                return Ok(bytes);
            }
        }
        let read = self
            .shared
            .objects
            .read(row.object, row.position, row.size as u64);
        Ok(cache
            .get_or_insert_async(&(row.object, row.position), read)
            .await?)
    }

    /// Loads into the cache, in the background, the rows a consumer reading on after `rows`
    /// will want next (about `max_bytes` of them), so that its next fetch finds them there.
    fn read_ahead(self: &Arc<Self>, epoch: i32, rows: &[Row], max_bytes: usize) {
        let Some(next) = rows.last().map(|row| row.last_offset + 1) else {
            return;
        };
        let ahead = self
            .rows_from(epoch, next, max_bytes)
            .unwrap_or_default()
            .into_iter()
            .filter(|row| {
                let cache = &self.shared.cache;
                !cache.contains_key(&(row.object, row.position))
                    && !cache.contains_key(&(row.object, WHOLE))
            })
            .collect::<Vec<_>>();
        if ahead.is_empty() {
            return;
        }
        let core = Arc::clone(self);
        tokio::spawn(async move {
            let _ = join_all(ahead.iter().map(|row| core.row_bytes(row))).await;
        });
    }

    fn offsets(&self) -> PartitionOffsets {
        let log_end_offset = self.published.next_offset.load(Ordering::Relaxed);
        PartitionOffsets {
            log_start_offset: self.published.log_start.load(Ordering::Relaxed),
            log_end_offset,
            // Cluster storage has no transactions yet: every offset is stable.
            last_stable_offset: log_end_offset,
        }
    }
}

impl ClusterPartition {
    /// The epoch read at, and the rows from the one holding `offset`.
    async fn read_rows(&self, offset: i64, max_bytes: usize) -> Result<(i32, Vec<Row>), LogError> {
        let core = &self.core;
        let epoch = core.leader_epoch().await?;
        let bounds = core.with_state(epoch, |s| (s.log_start, s.next_offset));
        let Some((log_start, next_offset)) = bounds else {
            return Err(LogError::NotLeader);
        };
        if offset < log_start || offset > next_offset {
            return Err(LogError::OffsetOutOfRange);
        }
        if offset == next_offset {
            return Ok((epoch, Vec::new()));
        }
        if let Some(rows) = core.rows_from(epoch, offset, max_bytes) {
            return Ok((epoch, rows));
        }
        // Not in memory: the entries from PostgreSQL, the first of which holds `offset` or,
        // where compaction left no record at `offset`, comes after it.
        let mut rows = core.look_up(epoch, offset).await?;
        let mut size = 0;
        let mut last = None;
        rows.retain(|row| {
            let follows = last.is_none_or(|last: i64| row.base_offset == last + 1);
            let keep = follows && (size == 0 || size + row.size as usize <= max_bytes);
            if keep {
                size += row.size as usize;
                last = Some(row.last_offset);
            }
            keep
        });
        match rows.is_empty() {
            // Below the log start after a concurrent retention.
            true => Err(LogError::OffsetOutOfRange),
            false => Ok((epoch, rows)),
        }
    }
}

#[async_trait]
impl PartitionStorage for ClusterPartition {
    async fn enqueue(&self, batch: Vec<u8>, now_ms: i64) -> Result<Appending, LogError> {
        let config = self.core.config();
        partita_log::check_appendable(&batch, &config)?;
        let epoch = self.core.leader_epoch().await?;
        let (reply, answer) = oneshot::channel();
        let item = FlushItem {
            core: Arc::clone(&self.core),
            epoch,
            batch,
            now_ms,
            queued: tokio::time::Instant::now(),
            reply,
        };
        self.core
            .shared
            .flusher
            .send(item)
            .await
            .map_err(|_| LogError::Unavailable("the broker is stopping".into()))?;
        Ok(Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(LogError::Unavailable("the write was abandoned".into())))
        }))
    }

    async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, PartitionOffsets), LogError> {
        let (epoch, rows) = self.read_rows(offset, max_bytes).await?;
        // The rows are read from the object store at the same time, not one after another;
        // the ones after them are read ahead.
        let fetched = join_all(rows.iter().map(|row| self.core.row_bytes(row))).await;
        self.core.read_ahead(epoch, &rows, max_bytes);
        // Whole batches from the one holding `offset`, up to `max_bytes` but at least one:
        // a slice of each row's bytes, copied only when they span several rows.
        let mut slices = Vec::with_capacity(fetched.len());
        let mut total = 0;
        'rows: for bytes in fetched {
            let bytes = bytes?;
            let (mut start, mut end) = (None, 0);
            for range in batch::split_batches(&bytes)? {
                let header = batch::parse_header(&bytes[range.clone()])?;
                if header.last_offset() < offset {
                    continue;
                }
                if total > 0 && total + range.len() > max_bytes {
                    if let Some(start) = start {
                        slices.push(bytes.slice(start..end));
                    }
                    break 'rows;
                }
                start.get_or_insert(range.start);
                end = range.end;
                total += range.len();
            }
            if let Some(start) = start {
                slices.push(bytes.slice(start..end));
            }
        }
        let records = match slices.len() {
            1 => slices.pop().unwrap_or_default(),
            _ => {
                let mut out = BytesMut::with_capacity(total);
                slices.iter().for_each(|slice| out.extend_from_slice(slice));
                out.freeze()
            }
        };
        Ok((records, self.core.offsets()))
    }

    fn offsets(&self) -> PartitionOffsets {
        self.core.offsets()
    }

    async fn current_offsets(&self) -> Result<PartitionOffsets, LogError> {
        let epoch = self.core.leader_epoch().await?;
        self.core
            .with_state(epoch, |s| PartitionOffsets {
                log_start_offset: s.log_start,
                log_end_offset: s.next_offset,
                last_stable_offset: s.next_offset,
            })
            .ok_or(LogError::NotLeader)
    }

    fn size_bytes(&self) -> u64 {
        self.core.published.size.load(Ordering::Relaxed)
    }

    fn timestamp_at(&self, _offset: i64) -> Option<i64> {
        None
    }

    fn config(&self) -> LogConfig {
        self.core.config()
    }

    async fn set_config(&self, config: LogConfig) {
        *self.core.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let epoch = self.core.leader_epoch().await?;
        let log_start = self
            .core
            .with_state(epoch, |s| s.log_start)
            .ok_or(LogError::NotLeader)?;
        let client = self.core.shared.db.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM partita_batches \
                     WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 \
                     AND max_timestamp >= $4 ORDER BY base_offset LIMIT 1"
                ),
                &[
                    &self.core.key.topic_id,
                    &self.core.key.partition,
                    &log_start,
                    &timestamp,
                ],
            )
            .await
            .map_err(ClusterError::from)?;
        let Some(row) = row.as_ref().map(Row::from_sql) else {
            return Ok(None);
        };
        let bytes = self.core.row_bytes(&row).await?;
        for range in batch::split_batches(&bytes)? {
            let header = batch::parse_header(&bytes[range.clone()])?;
            if header.last_offset() >= log_start && header.max_timestamp >= timestamp {
                return Ok(Some(batch::find_by_timestamp(
                    &bytes[range],
                    timestamp,
                    log_start,
                )?));
            }
        }
        Ok(None)
    }

    async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let epoch = self.core.leader_epoch().await?;
        let log_start = self
            .core
            .with_state(epoch, |s| s.log_start)
            .ok_or(LogError::NotLeader)?;
        let client = self.core.shared.db.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {ROW_COLUMNS} FROM partita_batches \
                     WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 \
                     ORDER BY max_timestamp DESC, base_offset LIMIT 1"
                ),
                &[
                    &self.core.key.topic_id,
                    &self.core.key.partition,
                    &log_start,
                ],
            )
            .await
            .map_err(ClusterError::from)?;
        let Some(row) = row.as_ref().map(Row::from_sql) else {
            return Ok(None);
        };
        let ts = row.max_timestamp;
        let bytes = self.core.row_bytes(&row).await?;
        for range in batch::split_batches(&bytes)? {
            let header = batch::parse_header(&bytes[range.clone()])?;
            if header.max_timestamp == ts {
                return Ok(Some((batch::offset_of_timestamp(&bytes[range], ts)?, ts)));
            }
        }
        Ok(Some((row.last_offset, ts)))
    }

    async fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        crate::maintenance::delete_records(&self.core, offset).await
    }

    async fn maintain(&self, now_ms: i64) -> Result<Maintenance, LogError> {
        crate::maintenance::maintain(&self.core, now_ms).await
    }

    async fn flush(&self) -> Result<(), LogError> {
        // Everything acknowledged is already in the object store and PostgreSQL.
        Ok(())
    }

    fn leader_epoch(&self) -> Option<i32> {
        self.core.current_epoch()
    }
}

/// Idempotent producers' last batches, as stored in `partita_producers.batches`: 24 bytes
/// each (first and last sequence, base and last offset, big-endian).
pub(crate) fn encode_batches(batches: &[BatchMetadata]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batches.len() * 24);
    for b in batches {
        out.extend_from_slice(&b.first_sequence.to_be_bytes());
        out.extend_from_slice(&b.last_sequence.to_be_bytes());
        out.extend_from_slice(&b.base_offset.to_be_bytes());
        out.extend_from_slice(&b.last_offset.to_be_bytes());
    }
    out
}

fn decode_batches(bytes: &[u8]) -> Vec<BatchMetadata> {
    bytes
        .chunks_exact(24)
        .map(|c| BatchMetadata {
            first_sequence: i32::from_be_bytes(c[0..4].try_into().unwrap_or_default()),
            last_sequence: i32::from_be_bytes(c[4..8].try_into().unwrap_or_default()),
            base_offset: i64::from_be_bytes(c[8..16].try_into().unwrap_or_default()),
            last_offset: i64::from_be_bytes(c[16..24].try_into().unwrap_or_default()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_batches_round_trip() {
        let batches = vec![
            BatchMetadata {
                first_sequence: 0,
                last_sequence: 9,
                base_offset: 100,
                last_offset: 109,
            },
            BatchMetadata {
                first_sequence: 10,
                last_sequence: i32::MAX,
                base_offset: i64::MAX - 5,
                last_offset: i64::MAX,
            },
        ];
        assert_eq!(decode_batches(&encode_batches(&batches)), batches);
    }
}
