//! Request versions that Kafka 3.9 serves and Kafka 4.0 no longer does (KIP-896), for the
//! clients still in production that send them: sarama configured for Kafka 2.0 commits with
//! OffsetCommit v1, older tools create topics with CreateTopics v0, and so on.
//!
//! The broker's codec (kafka-protocol 0.18, Kafka 4's schemas) no longer knows these versions;
//! kafka-protocol 0.15 (Kafka 3.9's schemas) does. Such a request is decoded with the older
//! codec, re-encoded at the oldest version the broker's codec knows (its "floor") and served
//! as that version; the answer makes the same trip back. Where the two versions differ in
//! meaning, the difference is settled here, as Kafka 3.9 settles it:
//!
//! - OffsetCommit v0 (offsets once kept in ZooKeeper) and v1 are stored like the others, and
//!   OffsetFetch v0 reads them back (Kafka 3.9 in KRaft mode answers it UNSUPPORTED_VERSION
//!   per partition, having no ZooKeeper to read from). A v1
//!   commit timestamp is not kept: the offset is stamped when it is stored, and expires by
//!   `offsets.retention.minutes` from then, as a v2 commit without a retention time does.
//! - DescribeConfigs v0 says `is_default` where later versions give a source: a value is a
//!   default when its source is DEFAULT_CONFIG. Synonyms do not exist in v0.
//! - OffsetForLeaderEpoch v0 answers no leader epoch.
//! - Produce v0-2 carry message sets of the v0 and v1 formats: their records are put in one
//!   uncompressed v2 batch (up-conversion), which is then stored like any other. A message
//!   set that cannot be read (a bad CRC, a truncated message) is passed on as it came, which
//!   stores nothing, and answered CORRUPT_MESSAGE, as Kafka 3.9 answers it.
//! - Fetch v0-3 answer in the v0 (Fetch v0-1) or v1 (Fetch v2-3) format (down-conversion):
//!   uncompressed, without headers, and without the control records of transactions, which
//!   these formats cannot carry.
//!
//! Converting means holding every record decompressed: one request may decompress at most
//! 64 MiB (`MAX_DECOMPRESSED_BYTES`, as for one batch elsewhere). A produce past it is refused
//! as unreadable; a fetch answer stops at the batch that would pass it, and the client asks
//! again from there.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable as _, Encodable as _};
use kafka_protocol::ResponseError;
use kafka_protocol_3_9 as kafka39;
use kafka_protocol_3_9::protocol::{Decodable, Encodable};

/// Kafka's DescribeConfigs source for a default value.
const DEFAULT_CONFIG: i8 = 5;

/// The oldest version of each API that Kafka 3.9 serves, where it is older than the floor of
/// the broker's codec.
pub(crate) const OLDEST: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 0),
    (ApiKey::Fetch, 0),
    (ApiKey::OffsetCommit, 0),
    (ApiKey::OffsetFetch, 0),
    (ApiKey::CreateTopics, 0),
    (ApiKey::DeleteTopics, 0),
    (ApiKey::OffsetForLeaderEpoch, 0),
    (ApiKey::DescribeConfigs, 0),
    (ApiKey::DescribeAcls, 0),
    (ApiKey::CreateAcls, 0),
    (ApiKey::DeleteAcls, 0),
    (ApiKey::WriteTxnMarkers, 0),
];

/// The version an old request is served as: the floor of the broker's codec, when `version`
/// is below it and one this module bridges.
pub(crate) fn floor(api_key: ApiKey, version: i16) -> Option<i16> {
    let floor = api_key.valid_versions().min;
    let oldest = OLDEST.iter().find(|(key, _)| *key == api_key)?.1;
    (oldest..floor).contains(&version).then_some(floor)
}

/// A request rewritten at the floor, and what its answer must say that the floor's cannot.
pub(crate) struct Upgraded {
    /// The request at the floor: header and body.
    pub frame: Bytes,
    /// Produce partitions whose message set could not be read, with why: the handler
    /// refuses them as records of an old format, and their answer says CORRUPT_MESSAGE.
    pub unreadable: Vec<Unreadable>,
}

/// A produce partition whose message set could not be read.
pub(crate) struct Unreadable {
    topic: String,
    partition: i32,
    reason: String,
}

/// A request at an old version, rewritten as the same request at `floor`.
pub(crate) fn upgrade_request(
    api_key: ApiKey,
    version: i16,
    floor: i16,
    mut frame: Bytes,
) -> anyhow::Result<Upgraded> {
    let header = kafka_protocol::protocol::decode_request_header_from_buffer(&mut frame)?;
    let mut unreadable = Vec::new();
    let body = transcode_request(api_key, &mut frame, version, floor, &mut unreadable)?;
    let header = header.with_request_api_version(floor);
    let header_version = api_key.request_header_version(floor);
    let mut out = BytesMut::with_capacity(header.compute_size(header_version)? + body.len());
    header.encode(&mut out, header_version)?;
    out.put_slice(&body);
    Ok(Upgraded {
        frame: out.freeze(),
        unreadable,
    })
}

/// An answer encoded at `floor` (size, header, body), rewritten for the `version` asked.
pub(crate) fn downgrade_response(
    api_key: ApiKey,
    version: i16,
    floor: i16,
    frame: BytesMut,
    unreadable: &[Unreadable],
) -> anyhow::Result<BytesMut> {
    let mut frame = frame.freeze();
    frame.advance(4);
    let header = kafka_protocol::messages::ResponseHeader::decode(
        &mut frame,
        api_key.response_header_version(floor),
    )?;
    let body = transcode_response(api_key, &mut frame, floor, version, unreadable)?;
    let header_version = api_key.response_header_version(version);
    let header_size = header.compute_size(header_version)?;
    let mut out = BytesMut::with_capacity(4 + header_size + body.len());
    out.put_i32((header_size + body.len()) as i32);
    header.encode(&mut out, header_version)?;
    out.put_slice(&body);
    Ok(out)
}

/// Decodes a message with the older codec at `from`, settles what `to` cannot carry, and
/// encodes it at `to`.
fn transcode<M: Decodable + Encodable>(
    body: &mut Bytes,
    from: i16,
    to: i16,
    settle: impl FnOnce(&mut M),
) -> anyhow::Result<BytesMut> {
    let mut message = M::decode(body, from)?;
    settle(&mut message);
    let mut out = BytesMut::with_capacity(message.compute_size(to)?);
    message.encode(&mut out, to)?;
    Ok(out)
}

fn transcode_request(
    api_key: ApiKey,
    body: &mut Bytes,
    from: i16,
    to: i16,
    unreadable: &mut Vec<Unreadable>,
) -> anyhow::Result<BytesMut> {
    use kafka39::messages::{
        CreateAclsRequest, CreateTopicsRequest, DeleteAclsRequest, DeleteTopicsRequest,
        DescribeAclsRequest, DescribeConfigsRequest, FetchRequest, OffsetCommitRequest,
        OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, WriteTxnMarkersRequest,
    };
    fn nothing<M>(_: &mut M) {}
    match api_key {
        ApiKey::Produce => transcode(body, from, to, |r: &mut ProduceRequest| {
            let budget = Budget::new();
            for topic in r.topic_data.iter_mut() {
                for partition in topic.partition_data.iter_mut() {
                    let Some(records) = partition.records.as_ref() else {
                        continue;
                    };
                    match up_convert(records, &budget) {
                        Ok(converted) => partition.records = Some(converted),
                        Err(reason) => unreadable.push(Unreadable {
                            topic: topic.name.to_string(),
                            partition: partition.index,
                            reason,
                        }),
                    }
                }
            }
        }),
        ApiKey::Fetch => transcode(body, from, to, nothing::<FetchRequest>),
        ApiKey::OffsetCommit => transcode(body, from, to, |r: &mut OffsetCommitRequest| {
            // v2 has no per-partition commit timestamp (see the module's notes).
            for partition in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                partition.commit_timestamp = -1;
            }
        }),
        ApiKey::OffsetFetch => transcode(body, from, to, nothing::<OffsetFetchRequest>),
        ApiKey::CreateTopics => transcode(body, from, to, nothing::<CreateTopicsRequest>),
        ApiKey::DeleteTopics => transcode(body, from, to, nothing::<DeleteTopicsRequest>),
        ApiKey::OffsetForLeaderEpoch => {
            transcode(body, from, to, nothing::<OffsetForLeaderEpochRequest>)
        }
        ApiKey::DescribeConfigs => transcode(body, from, to, nothing::<DescribeConfigsRequest>),
        ApiKey::DescribeAcls => transcode(body, from, to, nothing::<DescribeAclsRequest>),
        ApiKey::CreateAcls => transcode(body, from, to, nothing::<CreateAclsRequest>),
        ApiKey::DeleteAcls => transcode(body, from, to, nothing::<DeleteAclsRequest>),
        ApiKey::WriteTxnMarkers => transcode(body, from, to, nothing::<WriteTxnMarkersRequest>),
        other => anyhow::bail!("{other:?} v{from} is not bridged"),
    }
}

fn transcode_response(
    api_key: ApiKey,
    body: &mut Bytes,
    from: i16,
    to: i16,
    unreadable: &[Unreadable],
) -> anyhow::Result<BytesMut> {
    use kafka39::messages::{
        CreateAclsResponse, CreateTopicsResponse, DeleteAclsResponse, DeleteTopicsResponse,
        DescribeAclsResponse, DescribeConfigsResponse, FetchResponse, OffsetCommitResponse,
        OffsetFetchResponse, OffsetForLeaderEpochResponse, ProduceResponse,
        WriteTxnMarkersResponse,
    };
    fn nothing<M>(_: &mut M) {}
    match api_key {
        ApiKey::Produce => transcode(body, from, to, |r: &mut ProduceResponse| {
            // Refused as records of an old format; Kafka 3.9 says why it could not read them.
            for topic in r.responses.iter_mut() {
                for partition in topic.partition_responses.iter_mut() {
                    let refused = partition.error_code == ResponseError::InvalidRecord.code();
                    let why = unreadable
                        .iter()
                        .find(|u| u.topic == topic.name.as_str() && u.partition == partition.index);
                    if let Some(why) = why.filter(|_| refused) {
                        partition.error_code = ResponseError::CorruptMessage.code();
                        partition.error_message = Some(why.reason.clone().into());
                    }
                }
            }
        }),
        ApiKey::Fetch => transcode(body, from, to, |r: &mut FetchResponse| {
            // Fetch v0 and v1 read the v0 format, v2 and v3 the v1 format.
            let magic = if to < 2 { 0 } else { 1 };
            let budget = Budget::new();
            for partition in r.responses.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                if let Some(records) = partition.records.as_ref() {
                    partition.records = Some(down_convert(records, magic, &budget));
                }
            }
        }),
        ApiKey::OffsetCommit => transcode(body, from, to, nothing::<OffsetCommitResponse>),
        ApiKey::OffsetFetch => transcode(body, from, to, nothing::<OffsetFetchResponse>),
        ApiKey::CreateTopics => transcode(body, from, to, nothing::<CreateTopicsResponse>),
        ApiKey::DeleteTopics => transcode(body, from, to, nothing::<DeleteTopicsResponse>),
        ApiKey::OffsetForLeaderEpoch => {
            transcode(body, from, to, nothing::<OffsetForLeaderEpochResponse>)
        }
        ApiKey::DescribeConfigs => transcode(body, from, to, |r: &mut DescribeConfigsResponse| {
            if to == 0 {
                for config in r.results.iter_mut().flat_map(|r| r.configs.iter_mut()) {
                    config.is_default = config.config_source == DEFAULT_CONFIG;
                    config.synonyms.clear();
                }
            }
        }),
        ApiKey::DescribeAcls => transcode(body, from, to, nothing::<DescribeAclsResponse>),
        ApiKey::CreateAcls => transcode(body, from, to, nothing::<CreateAclsResponse>),
        ApiKey::DeleteAcls => transcode(body, from, to, nothing::<DeleteAclsResponse>),
        ApiKey::WriteTxnMarkers => transcode(body, from, to, nothing::<WriteTxnMarkersResponse>),
        other => anyhow::bail!("{other:?} v{to} is not bridged"),
    }
}

/// What decompression may still produce while one request is converted: the records of a
/// converted message set or fetch answer are all held at once, so a few kilobytes of
/// compressed bombs must not become gigabytes.
struct Budget(std::cell::Cell<usize>);

impl Budget {
    fn new() -> Budget {
        Budget(std::cell::Cell::new(
            partita_log::batch::compression::MAX_DECOMPRESSED_BYTES,
        ))
    }

    /// Opens a compressed records section for the older codec, within what is left.
    fn decompress(
        &self,
        data: &mut Bytes,
        codec: kafka39::records::Compression,
    ) -> anyhow::Result<Bytes> {
        use kafka39::records::Compression as Codec;
        use partita_log::batch::{compression, Compression};
        let codec = match codec {
            Codec::None => return Ok(std::mem::take(data)),
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        };
        let plain = compression::decompress(codec, data, self.0.get())?;
        self.0.set(self.0.get() - plain.len());
        Ok(Bytes::from(plain))
    }
}

/// A v0 or v1 message set as one uncompressed v2 batch; why not if it cannot be read (or
/// is not a message set, or is empty).
fn up_convert(records: &Bytes, budget: &Budget) -> Result<Bytes, String> {
    use kafka39::records::{
        Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    };
    let mut set = records.clone();
    let mut records = RecordBatchDecoder::decode_legacy_message_set(&mut set, &|data, codec| {
        budget.decompress(data, codec)
    })
    .map_err(|e| format!("Record is corrupt: {e}"))?;
    if records.is_empty() {
        return Err("Record is corrupt: the message set holds no message".to_string());
    }
    // The broker numbers the batch; inside it, offsets follow one another. The encoder keeps
    // records in one batch while offset minus sequence stays the same, and takes the base
    // sequence from the first: -1, as a producer without idempotence sends it.
    for (delta, record) in records.iter_mut().enumerate() {
        record.offset = delta as i64;
        record.sequence = delta as i32 - 1;
    }
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut batch, records.iter(), &options)
        .map_err(|e| format!("Record is corrupt: {e}"))?;
    Ok(batch.freeze())
}

/// v2 batches as a message set of the `magic` format, as far as they can be read (a fetch may
/// end in the middle of a batch, and a client skips a partial message anyway).
fn down_convert(batches: &Bytes, magic: i8, budget: &Budget) -> Bytes {
    use kafka39::records::{
        Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    };
    let mut rest = batches.clone();
    let mut records = Vec::new();
    while rest.has_remaining() {
        let Ok(set) = RecordBatchDecoder::decode_with_custom_compression(
            &mut rest,
            Some(|data: &mut Bytes, codec| budget.decompress(data, codec)),
        ) else {
            break;
        };
        records.extend(set.records.into_iter().filter(|r| !r.control).map(|mut r| {
            r.transactional = false;
            r.headers.clear();
            r
        }));
    }
    let mut set = BytesMut::new();
    let options = RecordEncodeOptions {
        version: magic,
        compression: Compression::None,
    };
    match RecordBatchEncoder::encode(&mut set, records.iter(), &options) {
        Ok(()) => set.freeze(),
        Err(_) => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bridged_version_reaches_the_codec_floor() {
        for (api_key, oldest) in OLDEST {
            let codec_floor = api_key.valid_versions().min;
            assert!(*oldest < codec_floor, "{api_key:?}: nothing to bridge");
            for version in *oldest..codec_floor {
                assert_eq!(floor(*api_key, version), Some(codec_floor));
            }
            assert_eq!(floor(*api_key, codec_floor), None);
            let served = crate::dispatch::supported_versions(*api_key).unwrap();
            assert_eq!(served.0, *oldest, "{api_key:?}: ApiVersions must say so");
        }
    }

    #[test]
    fn an_offset_commit_v1_is_served_as_v2_and_answered_as_v1() {
        use kafka39::messages::{offset_commit_request, GroupId, OffsetCommitRequest, TopicName};
        use kafka39::protocol::StrBytes;
        let partition = offset_commit_request::OffsetCommitRequestPartition::default()
            .with_partition_index(3)
            .with_committed_offset(42)
            .with_commit_timestamp(1_700_000_000_000)
            .with_committed_metadata(Some(StrBytes::from_static_str("m")));
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id_or_member_epoch(7)
            .with_member_id(StrBytes::from_static_str("member"))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![partition]),
            ]);
        let mut body = BytesMut::new();
        request.encode(&mut body, 1).unwrap();
        let mut body = body.freeze();
        let mut upgraded =
            transcode_request(ApiKey::OffsetCommit, &mut body, 1, 2, &mut Vec::new())
                .unwrap()
                .freeze();
        let served =
            kafka_protocol::messages::OffsetCommitRequest::decode(&mut upgraded, 2).unwrap();
        assert_eq!(served.group_id.as_str(), "g");
        assert_eq!(served.generation_id_or_member_epoch, 7);
        assert_eq!(served.member_id.as_str(), "member");
        let partition = &served.topics[0].partitions[0];
        assert_eq!(
            (partition.partition_index, partition.committed_offset),
            (3, 42)
        );
        assert_eq!(partition.committed_metadata.as_deref(), Some("m"));
    }

    #[test]
    fn describe_configs_v0_says_which_values_are_defaults() {
        use kafka_protocol::messages::describe_configs_response::*;
        use kafka_protocol::protocol::StrBytes;
        let config = |name: &'static str, source: i8| {
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(Some(StrBytes::from_static_str("1")))
                .with_config_source(source)
                .with_synonyms(vec![DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_source(source)])
        };
        let response =
            kafka_protocol::messages::DescribeConfigsResponse::default().with_results(vec![
                DescribeConfigsResult::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_configs(vec![config("retention.ms", DEFAULT_CONFIG), config("x", 1)]),
            ]);
        let mut body = BytesMut::new();
        response.encode(&mut body, 1).unwrap();
        let mut body = body.freeze();
        let mut old = transcode_response(ApiKey::DescribeConfigs, &mut body, 1, 0, &[])
            .unwrap()
            .freeze();
        let old = kafka39::messages::DescribeConfigsResponse::decode(&mut old, 0).unwrap();
        let defaults: Vec<bool> = old.results[0]
            .configs
            .iter()
            .map(|c| c.is_default)
            .collect();
        assert_eq!(defaults, [true, false]);
    }

    #[test]
    fn a_v1_message_set_becomes_one_v2_batch_the_log_accepts() {
        use kafka39::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: kafka39::records::TimestampType::Creation,
                offset: 0,
                sequence: -1,
                timestamp: 1_700_000_000_000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut set = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 1,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut set, records.iter(), &options).unwrap();
        let batch = up_convert(&set.freeze(), &Budget::new()).expect("a v2 batch");
        partita_log::batch::validate(&batch).expect("a valid batch");
        let read = partita_log::batch::decode_records(&batch).unwrap();
        let got: Vec<_> = read
            .iter()
            .map(|r| (r.offset, r.timestamp, r.key.unwrap().to_vec()))
            .collect();
        assert_eq!(
            got,
            (0..3)
                .map(|i| (i, 1_700_000_000_000 + i, format!("k{i}").into_bytes()))
                .collect::<Vec<_>>()
        );
        // Not a message set: left for the handler to refuse.
        assert!(up_convert(&batch, &Budget::new()).is_err());
    }

    #[test]
    fn v2_batches_go_down_with_their_offsets_and_without_control_records() {
        use kafka39::records::RecordBatchDecoder;
        let mut first = partita_log::batch::build_batch(&[(Some(b"a"), Some(b"1"))], 5);
        partita_log::batch::set_base_offset(&mut first, 40);
        let mut marker = partita_log::batch::build_marker(7, 0, true, 0, 6);
        partita_log::batch::set_base_offset(&mut marker, 41);
        let mut second = partita_log::batch::build_batch(&[(Some(b"b"), Some(b"2"))], 7);
        partita_log::batch::set_base_offset(&mut second, 42);
        let mut batches = BytesMut::new();
        batches.extend_from_slice(&first);
        batches.extend_from_slice(&marker);
        batches.extend_from_slice(&second);
        // A fetch may end inside a batch.
        batches.extend_from_slice(&second[..10]);
        for magic in [0, 1] {
            let mut set = down_convert(&batches.clone().freeze(), magic, &Budget::new());
            let budget = Budget::new();
            let read = RecordBatchDecoder::decode_legacy_message_set(&mut set, &|data, codec| {
                budget.decompress(data, codec)
            })
            .unwrap();
            let got: Vec<_> = read
                .iter()
                .map(|r| (r.offset, r.value.clone().unwrap()))
                .collect();
            assert_eq!(
                got,
                [
                    (40, Bytes::from_static(b"1")),
                    (42, Bytes::from_static(b"2"))
                ]
            );
        }
    }

    #[test]
    fn decompression_for_one_request_stops_at_its_budget() {
        use flate2::{write::GzEncoder, Compression as Level};
        use std::io::Write;
        let mut bomb = GzEncoder::new(Vec::new(), Level::best());
        bomb.write_all(&vec![0u8; 40 << 20]).unwrap();
        let bomb = Bytes::from(bomb.finish().unwrap());
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let budget = Budget::new();
        let gzip = kafka39::records::Compression::Gzip;
        assert_eq!(
            budget.decompress(&mut bomb.clone(), gzip).unwrap().len(),
            40 << 20
        );
        // 40 MiB more would pass the 64 MiB a request may take.
        assert!(budget.decompress(&mut bomb.clone(), gzip).is_err());
    }
}
