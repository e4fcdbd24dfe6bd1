//! The share groups' driver: the share coordinator behind one lock, its timers (sessions,
//! acquisition locks), and its state kept in the compacted internal topic
//! `__share_group_state`, replayed at start-up.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use partita_groups::share::coordinator::{ShareConfig, ShareCoordinator};
use partita_groups::share::records::{self, ShareStateKey};
use partita_log::batch;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::now_ms;
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::server::Shutdown;
use crate::topic_config::TopicOverrides;
use crate::topics::TopicRegistry;

/// Kafka's internal topic for share-group state.
pub const SHARE_GROUP_STATE: &str = "__share_group_state";

/// Share groups and where their state is kept.
pub struct ShareGroups {
    coordinator: Mutex<ShareCoordinator>,
    state: Arc<Partition>,
    /// Woken when deadlines may have moved earlier (new locks, new members).
    changed: Notify,
}

impl ShareGroups {
    /// Creates `__share_group_state` if needed and restores every share-partition from it.
    pub fn start(topics: &TopicRegistry, config: ShareConfig) -> Result<ShareGroups, BrokerError> {
        let topic = match topics.get(SHARE_GROUP_STATE) {
            Some(topic) => topic,
            None => {
                let mut overrides = TopicOverrides::new();
                overrides.insert("cleanup.policy".to_string(), "compact".to_string());
                topics.create(SHARE_GROUP_STATE, 1, overrides)?
            }
        };
        let state = Arc::clone(&topic.partitions[0]);
        let mut coordinator = ShareCoordinator::new(config);
        let restored = replay(&mut coordinator, &state)?;
        if restored > 0 {
            tracing::info!(records = restored, "share group state loaded");
        }
        Ok(ShareGroups {
            coordinator: Mutex::new(coordinator),
            state,
            changed: Notify::new(),
        })
    }

    /// Locks the coordinator for one step.
    pub fn lock(&self) -> MutexGuard<'_, ShareCoordinator> {
        self.coordinator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the share-partitions that changed, then lets the timer task know deadlines may
    /// have moved.
    pub fn persist(&self) {
        let dirty = self.lock().take_dirty();
        self.changed.notify_one();
        if dirty.is_empty() {
            return;
        }
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = dirty
            .iter()
            .map(|((group, topic_id, partition), snapshot)| {
                let key = ShareStateKey::Snapshot {
                    group: group.clone(),
                    topic_id: *topic_id,
                    partition: *partition,
                };
                (key.encode(), records::encode_snapshot(snapshot))
            })
            .collect();
        self.append(&encoded);
    }

    /// Records a group's `share.auto.offset.reset`.
    pub fn set_auto_offset_reset(&self, group_id: &str, earliest: bool) {
        self.lock().set_auto_offset_reset(group_id, earliest);
        let key = ShareStateKey::GroupConfig {
            group: group_id.to_string(),
        };
        self.append(&[(key.encode(), records::encode_group_config(earliest))]);
    }

    fn append(&self, entries: &[(Vec<u8>, Vec<u8>)]) {
        let pairs: Vec<batch::KeyValue<'_>> = entries
            .iter()
            .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice())))
            .collect();
        let mut encoded = batch::build_batch(&pairs, now_ms());
        if let Err(error) = self.state.append(&mut encoded, now_ms()) {
            tracing::warn!(%error, "share group state could not be stored");
        }
    }

    /// Runs session timeouts and lock expiry when they are due, until shutdown.
    pub async fn run_timers(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            let next = self.lock().next_deadline();
            let wait = next.map_or(Duration::from_secs(3600), |deadline| {
                Duration::from_millis((deadline - now_ms()).max(0) as u64)
            });
            tokio::select! {
                _ = tokio::time::sleep_until(Instant::now() + wait) => {
                    self.lock().tick(now_ms());
                    self.persist();
                }
                _ = self.changed.notified() => {}
                _ = shutdown.recv() => return,
            }
        }
    }
}

/// Restores every share-partition and group setting from the state topic; returns the
/// number of records read.
fn replay(coordinator: &mut ShareCoordinator, state: &Partition) -> Result<usize, BrokerError> {
    let mut latest = std::collections::BTreeMap::new();
    let mut offset = state.offsets().log_start_offset;
    let mut count = 0;
    loop {
        let (bytes, offsets) = state.read(offset, 1 << 20)?;
        if bytes.is_empty() {
            break;
        }
        for range in
            batch::split_batches(&bytes).map_err(|e| BrokerError::Storage(e.to_string()))?
        {
            let one = &bytes[range];
            let header =
                batch::parse_header(one).map_err(|e| BrokerError::Storage(e.to_string()))?;
            offset = header.last_offset() + 1;
            for record in batch::decode_records(one).unwrap_or_default() {
                if let Some(key) = record.key {
                    latest.insert(key.to_vec(), record.value.map(<[u8]>::to_vec));
                    count += 1;
                }
            }
        }
        if offset >= offsets.log_end_offset {
            break;
        }
    }
    for (key, value) in latest {
        let (Ok(key), Some(value)) = (ShareStateKey::decode(&key), value) else {
            continue;
        };
        match key {
            ShareStateKey::Snapshot {
                group,
                topic_id,
                partition,
            } => {
                if let Ok(snapshot) = records::decode_snapshot(&value) {
                    coordinator.restore((group, topic_id, partition), &snapshot);
                }
            }
            ShareStateKey::GroupConfig { group } => {
                if let Ok(earliest) = records::decode_group_config(&value) {
                    coordinator.set_auto_offset_reset(&group, earliest);
                }
            }
        }
    }
    Ok(count)
}
