//! The records of `__transaction_state`, in Kafka's format (the schemas `TransactionLogKey`
//! and `TransactionLogValue` of Apache Kafka's `transaction-coordinator` module), so that
//! Kafka's tools decode the topic and the coordinator rebuilds every transactional id from it.
//!
//! The key is version 0: an int16 0, then the transactional id. The value is version 0
//! (classic) or 1 (flexible, written for clients of transactions version 2): producer id,
//! epoch, timeout, state, partitions (null when there are none), last update and start times;
//! version 1 adds tagged fields for the previous and next producer ids and the client's
//! transaction version. A tombstone (null value) removes an expired transactional id.

use super::wire::{Reader, Writer};
use super::RecordError;

/// The key of a `__transaction_state` record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionLogKey {
    pub transactional_id: String,
}

impl TransactionLogKey {
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new(false);
        writer.i16(0);
        writer.string(&self.transactional_id);
        writer.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<TransactionLogKey, RecordError> {
        let mut reader = Reader::new(bytes, false);
        let version = reader.i16()?;
        if version != 0 {
            return Err(RecordError::UnknownVersion(version));
        }
        Ok(TransactionLogKey {
            transactional_id: reader.string()?,
        })
    }
}

/// Where a transactional id's transaction stands, with Kafka's codes and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// No transaction under way since the id was initialised.
    Empty,
    /// Partitions added, neither committed nor aborted yet.
    Ongoing,
    /// Commit decided; markers being written.
    PrepareCommit,
    /// Abort decided; markers being written.
    PrepareAbort,
    /// The last transaction committed; markers written.
    CompleteCommit,
    /// The last transaction aborted; markers written.
    CompleteAbort,
    /// The id expired and is being removed.
    Dead,
    /// An ongoing transaction is being aborted because a newer producer took the id over.
    PrepareEpochFence,
}

impl TransactionState {
    pub fn code(self) -> i8 {
        match self {
            TransactionState::Empty => 0,
            TransactionState::Ongoing => 1,
            TransactionState::PrepareCommit => 2,
            TransactionState::PrepareAbort => 3,
            TransactionState::CompleteCommit => 4,
            TransactionState::CompleteAbort => 5,
            TransactionState::Dead => 6,
            TransactionState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TransactionState> {
        Some(match code {
            0 => TransactionState::Empty,
            1 => TransactionState::Ongoing,
            2 => TransactionState::PrepareCommit,
            3 => TransactionState::PrepareAbort,
            4 => TransactionState::CompleteCommit,
            5 => TransactionState::CompleteAbort,
            6 => TransactionState::Dead,
            7 => TransactionState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions give it.
    pub fn name(self) -> &'static str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
            TransactionState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state named `name` (as ListTransactions filters take it), ignoring case.
    pub fn from_name(name: &str) -> Option<TransactionState> {
        (0..=7)
            .filter_map(TransactionState::from_code)
            .find(|state| state.name().eq_ignore_ascii_case(name))
    }
}

/// The value of a `__transaction_state` record: one transactional id's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLogValue {
    pub producer_id: i64,
    /// The producer id of the last committed transaction, -1 if none (version 1).
    pub previous_producer_id: i64,
    /// The producer id handed to the client next, -1 if none (version 1).
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TransactionState,
    /// The partitions of the transaction, by topic.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    /// When the transaction began, -1 if none is under way.
    pub start_ms: i64,
    /// The transaction version the client uses (2 for KIP-890), 0 if unknown (version 1).
    pub client_transaction_version: i16,
}

impl TransactionLogValue {
    /// Encodes at version 1 for a client of transactions version 2, else at version 0.
    pub fn encode(&self) -> Vec<u8> {
        let version: i16 = if self.client_transaction_version >= 2 {
            1
        } else {
            0
        };
        let flexible = version >= 1;
        let mut writer = Writer::new(false);
        writer.i16(version);
        let mut body = Writer::new(flexible);
        body.i64(self.producer_id);
        body.i16(self.producer_epoch);
        body.i32(self.timeout_ms);
        body.i8(self.state.code());
        if self.partitions.is_empty() {
            body.null_array();
        } else {
            body.array_len(self.partitions.len());
            for (topic, partitions) in &self.partitions {
                body.string(topic);
                body.i32s(partitions);
                body.tagged_fields(&[]);
            }
        }
        body.i64(self.last_update_ms);
        body.i64(self.start_ms);
        let mut tagged = Vec::new();
        if self.previous_producer_id != -1 {
            tagged.push((0, self.previous_producer_id.to_be_bytes().to_vec()));
        }
        if self.next_producer_id != -1 {
            tagged.push((1, self.next_producer_id.to_be_bytes().to_vec()));
        }
        if self.client_transaction_version != 0 {
            tagged.push((2, self.client_transaction_version.to_be_bytes().to_vec()));
        }
        body.tagged_fields(&tagged);
        let mut bytes = writer.into_bytes();
        bytes.extend(body.into_bytes());
        bytes
    }

    /// Decodes a value of version 0 or 1.
    pub fn decode(bytes: &[u8]) -> Result<TransactionLogValue, RecordError> {
        let version = Reader::new(bytes, false).i16()?;
        if !(0..=1).contains(&version) {
            return Err(RecordError::UnknownVersion(version));
        }
        let mut reader = Reader::new(&bytes[2..], version >= 1);
        let producer_id = reader.i64()?;
        let producer_epoch = reader.i16()?;
        let timeout_ms = reader.i32()?;
        let code = reader.i8()?;
        let state = TransactionState::from_code(code)
            .ok_or_else(|| RecordError::Invalid(format!("unknown transaction state {code}")))?;
        let partitions = reader
            .nullable_array_of(|r| {
                let topic = r.string()?;
                let partitions = r.i32s()?;
                r.tagged_fields(|_, _| Ok(()))?;
                Ok((topic, partitions))
            })?
            .unwrap_or_default();
        let last_update_ms = reader.i64()?;
        let start_ms = reader.i64()?;
        let mut value = TransactionLogValue {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch,
            timeout_ms,
            state,
            partitions,
            last_update_ms,
            start_ms,
            client_transaction_version: 0,
        };
        reader.tagged_fields(|tag, field| {
            match tag {
                0 => value.previous_producer_id = field.i64()?,
                1 => value.next_producer_id = field.i64()?,
                2 => value.client_transaction_version = field.i16()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(client_transaction_version: i16) -> TransactionLogValue {
        TransactionLogValue {
            producer_id: 4001,
            previous_producer_id: if client_transaction_version >= 2 {
                4000
            } else {
                -1
            },
            next_producer_id: -1,
            producer_epoch: 7,
            timeout_ms: 60_000,
            state: TransactionState::Ongoing,
            partitions: vec![
                ("orders".into(), vec![0, 3]),
                ("__consumer_offsets".into(), vec![12]),
            ],
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            client_transaction_version,
        }
    }

    #[test]
    fn key_bytes_are_kafkas() {
        let key = TransactionLogKey {
            transactional_id: "tx".into(),
        };
        assert_eq!(key.encode(), [0, 0, 0, 2, b't', b'x']);
        assert_eq!(TransactionLogKey::decode(&key.encode()).unwrap(), key);
        assert!(TransactionLogKey::decode(&[0, 1, 0, 0]).is_err());
    }

    #[test]
    fn value_version_0_bytes_are_kafkas() {
        let mut empty = value(0);
        empty.state = TransactionState::Empty;
        empty.partitions.clear();
        let bytes = empty.encode();
        let mut expected = vec![0, 0];
        expected.extend(4001i64.to_be_bytes());
        expected.extend(7i16.to_be_bytes());
        expected.extend(60_000i32.to_be_bytes());
        expected.push(0);
        expected.extend((-1i32).to_be_bytes());
        expected.extend(1_700_000_000_123i64.to_be_bytes());
        expected.extend(1_700_000_000_000i64.to_be_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(TransactionLogValue::decode(&bytes).unwrap(), empty);
    }

    #[test]
    fn both_versions_round_trip() {
        for version in [0, 2] {
            let value = value(version);
            let bytes = value.encode();
            assert_eq!(bytes[1], if version >= 2 { 1 } else { 0 });
            assert_eq!(TransactionLogValue::decode(&bytes).unwrap(), value);
        }
    }

    #[test]
    fn truncated_and_unknown_values_are_errors() {
        let bytes = value(2).encode();
        for end in 0..bytes.len() - 1 {
            assert!(TransactionLogValue::decode(&bytes[..end]).is_err(), "{end}");
        }
        assert!(TransactionLogValue::decode(&[0, 9]).is_err());
        let mut bad_state = value(0).encode();
        bad_state[2 + 8 + 2 + 4] = 42;
        assert!(TransactionLogValue::decode(&bad_state).is_err());
    }

    #[test]
    fn states_by_code_and_name() {
        for code in 0..=7 {
            let state = TransactionState::from_code(code).unwrap();
            assert_eq!(state.code(), code);
            assert_eq!(
                TransactionState::from_name(&state.name().to_uppercase()),
                Some(state)
            );
        }
        assert_eq!(TransactionState::from_code(8), None);
    }
}
