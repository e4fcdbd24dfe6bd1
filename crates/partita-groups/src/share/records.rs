//! Share-group state in the internal topic `__share_group_state`, in the spirit of Kafka's
//! share-state records: one compacted record per share-partition holding its start offset and
//! the state of every in-flight record, and one per group holding its configuration.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::partition::{RecordState, ShareSnapshot, SnapshotBatch};

/// Key type of a share-partition snapshot.
const SNAPSHOT: i16 = 0;
/// Key type of a group's share configuration.
const GROUP_CONFIG: i16 = 1;

/// A decoded key of `__share_group_state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareStateKey {
    /// The snapshot of one share-partition.
    Snapshot {
        /// The group.
        group: String,
        /// The topic id.
        topic_id: Uuid,
        /// The partition.
        partition: i32,
    },
    /// A group's configuration.
    GroupConfig {
        /// The group.
        group: String,
    },
}

/// A record that could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unreadable share state record")]
pub struct ShareStateError;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ShareStateError> {
        if self.0.len() < N {
            return Err(ShareStateError);
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("length checked"))
    }
    fn i16(&mut self) -> Result<i16, ShareStateError> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, ShareStateError> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, ShareStateError> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn string(&mut self) -> Result<String, ShareStateError> {
        let len = usize::try_from(self.i16()?).map_err(|_| ShareStateError)?;
        if self.0.len() < len {
            return Err(ShareStateError);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8(head.to_vec()).map_err(|_| ShareStateError)
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as i16).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl ShareStateKey {
    /// Encodes the key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            ShareStateKey::Snapshot {
                group,
                topic_id,
                partition,
            } => {
                out.extend_from_slice(&SNAPSHOT.to_be_bytes());
                put_string(&mut out, group);
                out.extend_from_slice(topic_id.as_bytes());
                out.extend_from_slice(&partition.to_be_bytes());
            }
            ShareStateKey::GroupConfig { group } => {
                out.extend_from_slice(&GROUP_CONFIG.to_be_bytes());
                put_string(&mut out, group);
            }
        }
        out
    }

    /// Decodes a key.
    pub fn decode(bytes: &[u8]) -> Result<ShareStateKey, ShareStateError> {
        let mut r = Reader(bytes);
        match r.i16()? {
            SNAPSHOT => Ok(ShareStateKey::Snapshot {
                group: r.string()?,
                topic_id: Uuid::from_bytes(r.take()?),
                partition: r.i32()?,
            }),
            GROUP_CONFIG => Ok(ShareStateKey::GroupConfig { group: r.string()? }),
            _ => Err(ShareStateError),
        }
    }
}

/// The snapshot value version written: 1 adds the holder and lock deadline of acquired
/// records to version 0.
const SNAPSHOT_VERSION: i16 = 1;

/// Bytes of a batch at least (version 0's fixed part).
const MIN_BATCH_BYTES: usize = 19;

/// Encodes a share-partition snapshot.
pub fn encode_snapshot(snapshot: &ShareSnapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + snapshot.batches.len() * MIN_BATCH_BYTES);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&snapshot.start_offset.to_be_bytes());
    out.extend_from_slice(&(snapshot.batches.len() as i32).to_be_bytes());
    for batch in &snapshot.batches {
        out.extend_from_slice(&batch.first_offset.to_be_bytes());
        out.extend_from_slice(&batch.last_offset.to_be_bytes());
        out.extend_from_slice(&batch.delivery_count.to_be_bytes());
        out.push(batch.state.code() as u8);
        put_string(&mut out, batch.owner.as_deref().unwrap_or(""));
        out.extend_from_slice(&batch.lock_deadline.to_be_bytes());
    }
    out
}

/// Decodes a share-partition snapshot (version 0 or 1).
pub fn decode_snapshot(bytes: &[u8]) -> Result<ShareSnapshot, ShareStateError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if !(0..=SNAPSHOT_VERSION).contains(&version) {
        return Err(ShareStateError);
    }
    let start_offset = r.i64()?;
    let count = usize::try_from(r.i32()?).map_err(|_| ShareStateError)?;
    if count > bytes.len() / MIN_BATCH_BYTES {
        return Err(ShareStateError);
    }
    let mut batches = Vec::with_capacity(count);
    for _ in 0..count {
        let first_offset = r.i64()?;
        let last_offset = r.i64()?;
        let delivery_count = r.i16()?;
        let [state] = r.take::<1>()?;
        let (owner, lock_deadline) = if version >= 1 {
            (r.string()?, r.i64()?)
        } else {
            (String::new(), 0)
        };
        if last_offset < first_offset || last_offset - first_offset > 1_000_000 {
            return Err(ShareStateError);
        }
        batches.push(SnapshotBatch {
            first_offset,
            last_offset,
            state: RecordState::from_code(state as i8),
            delivery_count,
            owner: (!owner.is_empty()).then_some(owner),
            lock_deadline,
        });
    }
    Ok(ShareSnapshot {
        start_offset,
        batches,
    })
}

/// A decoded value of `__share_group_state`, of the type its key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareStateValue {
    /// For [`ShareStateKey::Snapshot`].
    Snapshot(ShareSnapshot),
    /// For [`ShareStateKey::GroupConfig`]: the group's configs set with
    /// IncrementalAlterConfigs (name to value).
    GroupConfig(BTreeMap<String, String>),
}

impl ShareStateValue {
    /// Encodes the value.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ShareStateValue::Snapshot(snapshot) => encode_snapshot(snapshot),
            ShareStateValue::GroupConfig(configs) => encode_group_config(configs),
        }
    }

    /// Decodes the value of a record with this key.
    pub fn decode(key: &ShareStateKey, bytes: &[u8]) -> Result<ShareStateValue, ShareStateError> {
        match key {
            ShareStateKey::Snapshot { .. } => decode_snapshot(bytes).map(ShareStateValue::Snapshot),
            ShareStateKey::GroupConfig { .. } => {
                decode_group_config(bytes).map(ShareStateValue::GroupConfig)
            }
        }
    }
}

/// Encodes a group's configs (value version 1: a count, then each name and value as an
/// int16-length UTF-8 string).
pub fn encode_group_config(configs: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = 1i16.to_be_bytes().to_vec();
    out.extend_from_slice(&(configs.len() as i32).to_be_bytes());
    for (name, value) in configs {
        put_string(&mut out, name);
        put_string(&mut out, value);
    }
    out
}

/// Decodes a group's configs. Version 0 held only `share.auto.offset.reset` (1 for earliest).
pub fn decode_group_config(bytes: &[u8]) -> Result<BTreeMap<String, String>, ShareStateError> {
    let mut r = Reader(bytes);
    match r.i16()? {
        0 => {
            let [earliest] = r.take::<1>()?;
            let value = if earliest == 1 { "earliest" } else { "latest" };
            let name = crate::config::SHARE_AUTO_OFFSET_RESET.to_string();
            Ok(BTreeMap::from([(name, value.to_string())]))
        }
        1 => {
            let count = r.i32()?;
            let mut configs = BTreeMap::new();
            for _ in 0..count.max(0) {
                let name = r.string()?;
                let value = r.string()?;
                configs.insert(name, value);
            }
            Ok(configs)
        }
        _ => Err(ShareStateError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = ShareStateKey::Snapshot {
            group: "workers".into(),
            topic_id: Uuid::from_u128(7),
            partition: 3,
        };
        assert_eq!(ShareStateKey::decode(&key.encode()), Ok(key));
        let group = ShareStateKey::GroupConfig {
            group: "workers".into(),
        };
        assert_eq!(ShareStateKey::decode(&group.encode()), Ok(group));
        let batch = |first, last, state, count, owner: Option<&str>| SnapshotBatch {
            first_offset: first,
            last_offset: last,
            state,
            delivery_count: count,
            owner: owner.map(str::to_string),
            lock_deadline: if owner.is_some() { 77 } else { 0 },
        };
        let snapshot = ShareSnapshot {
            start_offset: 10,
            batches: vec![
                batch(10, 12, RecordState::Acknowledged, 1, None),
                batch(13, 13, RecordState::Available, 2, None),
                batch(14, 15, RecordState::Acquired, 1, Some("member-a")),
            ],
        };
        assert_eq!(decode_snapshot(&encode_snapshot(&snapshot)), Ok(snapshot));
        let configs = BTreeMap::from([
            (
                "consumer.session.timeout.ms".to_string(),
                "10000".to_string(),
            ),
            (
                "share.auto.offset.reset".to_string(),
                "earliest".to_string(),
            ),
        ]);
        assert_eq!(
            decode_group_config(&encode_group_config(&configs)),
            Ok(configs)
        );
    }

    #[test]
    fn version_0_group_configs_are_read() {
        let earliest = [0, 0, 1];
        let got = decode_group_config(&earliest).unwrap();
        assert_eq!(got["share.auto.offset.reset"], "earliest");
        let latest = [0, 0, 0];
        let got = decode_group_config(&latest).unwrap();
        assert_eq!(got["share.auto.offset.reset"], "latest");
    }

    #[test]
    fn version_0_snapshots_are_read() {
        let mut bytes = 0i16.to_be_bytes().to_vec();
        bytes.extend_from_slice(&5i64.to_be_bytes());
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&5i64.to_be_bytes());
        bytes.extend_from_slice(&6i64.to_be_bytes());
        bytes.extend_from_slice(&2i16.to_be_bytes());
        bytes.push(RecordState::Acknowledged.code() as u8);
        let snapshot = decode_snapshot(&bytes).unwrap();
        assert_eq!(snapshot.start_offset, 5);
        assert_eq!(snapshot.batches[0].last_offset, 6);
        assert_eq!(snapshot.batches[0].owner, None);
    }

    #[test]
    fn damaged_records_are_refused_without_panicking() {
        let bytes = encode_snapshot(&ShareSnapshot {
            start_offset: 1,
            batches: vec![SnapshotBatch {
                first_offset: 1,
                last_offset: 2,
                state: RecordState::Archived,
                delivery_count: 5,
                owner: None,
                lock_deadline: 0,
            }],
        });
        for len in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..len]).is_err());
        }
        assert!(ShareStateKey::decode(&[0, 9, 1]).is_err());
    }
}
