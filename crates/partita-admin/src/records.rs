//! A minimal producer and consumer, for trying a cluster without other tools.
//!
//! The producer writes uncompressed v2 batches. The consumer decodes uncompressed batches and
//! reports compressed ones (gzip, snappy, lz4, zstd) as skipped rather than decompressing them:
//! keeping codec libraries out of the build matters more here than reading other producers'
//! compressed data.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use partita_log::batch::{build_batch, decode_records, parse_header, Compression, KeyValue};

use crate::client::{AdminClient, TopicInfo};
use crate::error::{AdminError, Result};
use crate::offsets::{self, topic_name, OffsetSpec};

const PRODUCE_MAX_VERSION: i16 = 11;
/// Fetch v13+ names topics by id; this client names them.
const FETCH_MAX_VERSION: i16 = 12;
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
const FETCH_PARTITION_MAX_BYTES: i32 = 1024 * 1024;
const FETCH_MAX_BYTES: i32 = 16 * 1024 * 1024;

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Key, `None` for null.
    pub key: Option<Vec<u8>>,
    /// Value, `None` for null.
    pub value: Option<Vec<u8>>,
}

/// Sends records to one topic; partitions like Kafka's default partitioner for keyed records
/// (murmur2 of the key) and round-robin for the others.
pub struct Producer {
    topic: TopicInfo,
    partition: Option<i32>,
    next_round_robin: usize,
    acks: i16,
}

impl Producer {
    /// A producer for `topic`, writing every record to `partition` if given.
    /// `acks` is Kafka's: -1 (all), 1 (leader) or 0 (none).
    pub async fn new(
        client: &mut AdminClient,
        topic: &str,
        partition: Option<i32>,
        acks: i16,
    ) -> Result<Producer> {
        if !matches!(acks, -1 | 1) {
            // A broker sends no response to acks=0, and this client always waits for one.
            return Err(AdminError::InvalidInput(format!(
                "acks must be -1 (all) or 1 (leader), not {acks}"
            )));
        }
        let topic = client
            .existing_topics(&[topic.to_string()])
            .await?
            .remove(0);
        if let Some(p) = partition {
            if !topic.partitions.iter().any(|info| info.partition == p) {
                return Err(AdminError::InvalidInput(format!(
                    "topic {} has no partition {p} (it has {})",
                    topic.name,
                    topic.partitions.len()
                )));
            }
        }
        Ok(Producer {
            topic,
            partition,
            next_round_robin: 0,
            acks,
        })
    }

    fn choose_partition(&mut self, record: &NewRecord) -> i32 {
        if let Some(p) = self.partition {
            return p;
        }
        let count = self.topic.partitions.len().max(1);
        let index = match &record.key {
            Some(key) => (murmur2(key) & 0x7fff_ffff) as usize % count,
            None => {
                self.next_round_robin = self.next_round_robin.wrapping_add(1);
                (self.next_round_robin - 1) % count
            }
        };
        self.topic.partitions.get(index).map_or(0, |p| p.partition)
    }

    /// Sends `records`, one batch per partition, and returns the base offset of each batch.
    pub async fn send(
        &mut self,
        client: &mut AdminClient,
        records: &[NewRecord],
    ) -> Result<BTreeMap<i32, i64>> {
        let mut by_partition: BTreeMap<i32, Vec<KeyValue<'_>>> = BTreeMap::new();
        for record in records {
            let partition = self.choose_partition(record);
            by_partition
                .entry(partition)
                .or_default()
                .push((record.key.as_deref(), record.value.as_deref()));
        }
        let now = now_ms();
        let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
        for (partition, records) in &by_partition {
            let batch = build_batch(records, now).freeze();
            let leader = self.leader(*partition);
            by_leader.entry(leader).or_default().push(
                PartitionProduceData::default()
                    .with_index(*partition)
                    .with_records(Some(batch)),
            );
        }
        let mut base_offsets = BTreeMap::new();
        for (leader, partitions) in by_leader {
            let request = ProduceRequest::default()
                .with_acks(self.acks)
                .with_timeout_ms(PRODUCE_TIMEOUT_MS)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(&self.topic.name))
                    .with_partition_data(partitions)]);
            let connection = client.broker(leader).await?;
            let (response, _) = connection.call(PRODUCE_MAX_VERSION, |_| request).await?;
            for topic in response.responses {
                for p in topic.partition_responses {
                    AdminError::check(p.error_code, p.error_message.as_deref(), || {
                        format!("producing to {}-{}", topic.name.0, p.index)
                    })?;
                    base_offsets.insert(p.index, p.base_offset);
                }
            }
        }
        Ok(base_offsets)
    }

    fn leader(&self, partition: i32) -> i32 {
        self.topic
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .map_or(-1, |p| p.leader)
    }
}

/// A record read by [`Consumer::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Key, `None` if null.
    pub key: Option<Bytes>,
    /// Value, `None` if null.
    pub value: Option<Bytes>,
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// A record.
    Record(ConsumedRecord),
    /// A compressed batch this client does not decode, skipped.
    SkippedCompressed {
        /// Partition.
        partition: i32,
        /// First offset of the batch.
        first_offset: i64,
        /// Last offset of the batch.
        last_offset: i64,
        /// The codec, e.g. `Lz4`.
        codec: String,
    },
}

/// Where a consumer starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The log start offset.
    Earliest,
    /// The log end offset: only records produced from now on.
    Latest,
    /// This offset.
    Offset(i64),
}

/// Reads one topic (some or all partitions) with Fetch, outside any group.
pub struct Consumer {
    topic: TopicInfo,
    /// Next offset to fetch, per partition.
    positions: BTreeMap<i32, i64>,
}

impl Consumer {
    /// A consumer of `partitions` of `topic` (all if `None`), starting at `start`.
    pub async fn new(
        client: &mut AdminClient,
        topic: &str,
        partitions: Option<&[i32]>,
        start: StartAt,
    ) -> Result<Consumer> {
        let info = client
            .existing_topics(&[topic.to_string()])
            .await?
            .remove(0);
        let chosen: Vec<i32> = match partitions {
            Some(list) => {
                for p in list {
                    if !info.partitions.iter().any(|i| i.partition == *p) {
                        return Err(AdminError::InvalidInput(format!(
                            "topic {topic} has no partition {p} (it has {})",
                            info.partitions.len()
                        )));
                    }
                }
                list.to_vec()
            }
            None => info.partitions.iter().map(|p| p.partition).collect(),
        };
        let tps: Vec<(String, i32)> = chosen.iter().map(|p| (topic.to_string(), *p)).collect();
        let positions = match start {
            StartAt::Offset(offset) => chosen.iter().map(|p| (*p, offset)).collect(),
            StartAt::Earliest | StartAt::Latest => {
                let spec = if start == StartAt::Earliest {
                    OffsetSpec::Earliest
                } else {
                    OffsetSpec::Latest
                };
                let found =
                    offsets::list_offsets(client, std::slice::from_ref(&info), &tps, spec).await?;
                found.into_iter().map(|((_, p), o)| (p, o)).collect()
            }
        };
        Ok(Consumer {
            topic: info,
            positions,
        })
    }

    /// Fetches once from every leader (waiting up to half a second for new records).
    pub async fn poll(&mut self, client: &mut AdminClient) -> Result<Vec<FetchEvent>> {
        let mut by_leader: BTreeMap<i32, Vec<FetchPartition>> = BTreeMap::new();
        for (partition, position) in &self.positions {
            let leader = self
                .topic
                .partitions
                .iter()
                .find(|p| p.partition == *partition)
                .map_or(-1, |p| p.leader);
            by_leader.entry(leader).or_default().push(
                FetchPartition::default()
                    .with_partition(*partition)
                    .with_fetch_offset(*position)
                    .with_partition_max_bytes(FETCH_PARTITION_MAX_BYTES),
            );
        }
        let mut events = Vec::new();
        for (leader, partitions) in by_leader {
            let request = FetchRequest::default()
                .with_max_wait_ms(FETCH_MAX_WAIT.as_millis() as i32)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&self.topic.name))
                    .with_partitions(partitions)]);
            let connection = client.broker(leader).await?;
            let (response, _) = connection
                .call_with_wait(FETCH_MAX_VERSION, FETCH_MAX_WAIT, |_| request)
                .await?;
            AdminError::check(response.error_code, None, || "Fetch".to_string())?;
            for topic in response.responses {
                for data in topic.partitions {
                    let partition = data.partition_index;
                    AdminError::check(data.error_code, None, || {
                        format!("fetching {}-{partition}", topic.topic.0)
                    })?;
                    if let Some(records) = &data.records {
                        self.decode(partition, records, &mut events)?;
                    }
                }
            }
        }
        Ok(events)
    }

    /// Appends the records of `bytes` at or past the partition's position, and advances it.
    fn decode(
        &mut self,
        partition: i32,
        bytes: &Bytes,
        events: &mut Vec<FetchEvent>,
    ) -> Result<()> {
        let Some(position) = self.positions.get_mut(&partition) else {
            return Ok(());
        };
        let mut rest: &[u8] = bytes;
        // A fetch may end with a partial batch; it is read whole by the next fetch.
        while let Ok(header) = parse_header(rest) {
            let size = header.total_size();
            if size > rest.len() {
                break;
            }
            let batch = &rest[..size];
            rest = &rest[size..];
            if header.last_offset() < *position {
                continue;
            }
            if header.is_control() {
                *position = header.last_offset() + 1;
                continue;
            }
            if header.compression() != Compression::None {
                events.push(FetchEvent::SkippedCompressed {
                    partition,
                    first_offset: header.base_offset,
                    last_offset: header.last_offset(),
                    codec: format!("{:?}", header.compression()),
                });
                *position = header.last_offset() + 1;
                continue;
            }
            let records = decode_records(batch).map_err(|e| AdminError::Protocol {
                address: self.topic.name.clone(),
                reason: format!("partition {partition}: {e}"),
            })?;
            for record in records.into_iter().filter(|r| r.offset >= *position) {
                events.push(FetchEvent::Record(ConsumedRecord {
                    partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key.map(Bytes::copy_from_slice),
                    value: record.value.map(Bytes::copy_from_slice),
                }));
            }
            *position = header.last_offset() + 1;
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Kafka's murmur2 hash (as in `org.apache.kafka.common.utils.Utils.murmur2`), which the
/// default partitioner applies to record keys.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(
            murmur2(b"a-little-bit-longer-string") as i32,
            -1_486_304_829
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
    }
}
