use super::*;
use bytes::BytesMut;

fn three_records() -> BytesMut {
    build_batch(
        &[
            (Some(b"k1"), Some(b"v1")),
            (None, Some(b"v2")),
            (Some(b"k3"), None),
        ],
        1_700_000_000_000,
    )
}

#[test]
fn built_batch_validates_and_has_kafka_header_fields() {
    let batch = three_records();
    let header = validate(&batch).unwrap();
    assert_eq!(header.base_offset, 0);
    assert_eq!(header.magic, 2);
    assert_eq!(header.record_count, 3);
    assert_eq!(header.last_offset_delta, 2);
    assert_eq!(header.total_size(), batch.len());
    assert_eq!(header.producer_id, -1);
    assert_eq!(header.producer_epoch, -1);
    assert_eq!(header.base_sequence, -1);
    assert_eq!(header.max_timestamp, 1_700_000_000_000);
    assert_eq!(header.compression(), Compression::None);
    assert!(!header.is_transactional() && !header.is_control());
    assert!(!header.timestamp_type_log_append());
}

#[test]
fn records_decode_back() {
    let mut batch = three_records();
    set_base_offset(&mut batch, 100);
    let records = decode_records(&batch).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].offset, 100);
    assert_eq!(records[0].key, Some(&b"k1"[..]));
    assert_eq!(records[1].key, None);
    assert_eq!(records[2].offset, 102);
    assert_eq!(records[2].value, None);
    assert_eq!(records[2].timestamp, 1_700_000_000_000);
}

#[test]
fn crc_and_length_damage_is_detected() {
    let batch = three_records();
    let mut flipped = batch.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(validate(&flipped), Err(BatchError::Corrupt(_))));
    assert!(matches!(
        validate(&batch[..batch.len() - 1]),
        Err(BatchError::Corrupt(_))
    ));
    assert!(matches!(
        validate(&batch[..10]),
        Err(BatchError::Corrupt(_))
    ));
    let mut magic = batch.clone();
    magic[16] = 1;
    assert_eq!(validate(&magic), Err(BatchError::UnsupportedMagic(1)));
}

#[test]
fn negative_last_offset_delta_is_rejected() {
    let mut batch = build_batch(&[], 0);
    batch[23..27].copy_from_slice(&(-1i32).to_be_bytes());
    update_crc(&mut batch);
    assert!(matches!(validate(&batch), Err(BatchError::Corrupt(_))));
}

#[test]
fn base_offset_is_outside_the_crc() {
    let mut batch = three_records();
    set_base_offset(&mut batch, 42);
    assert_eq!(validate(&batch).unwrap().base_offset, 42);
}

#[test]
fn log_append_time_rewrites_timestamp_and_crc() {
    let mut batch = three_records();
    set_log_append_time(&mut batch, 5);
    let header = validate(&batch).unwrap();
    assert!(header.timestamp_type_log_append());
    assert_eq!(header.max_timestamp, 5);
    assert!(decode_records(&batch)
        .unwrap()
        .iter()
        .all(|r| r.timestamp == 5));
}

#[test]
fn split_finds_each_batch_and_rejects_a_partial_tail() {
    let first = three_records();
    let second = build_batch(&[(None, Some(b"x"))], 1);
    let mut both = first.clone();
    both.extend_from_slice(&second);
    let ranges = split_batches(&both).unwrap();
    assert_eq!(ranges, vec![0..first.len(), first.len()..both.len()]);
    assert!(split_batches(&both[..both.len() - 3]).is_err());
    assert!(split_batches(&[]).unwrap().is_empty());
}

#[test]
fn garbage_never_panics() {
    let mut garbage = vec![0xffu8; 200];
    garbage[16] = 2;
    let _ = validate(&garbage);
    let _ = split_batches(&garbage);
    let _ = decode_records(&garbage);
    let mut batch = three_records();
    batch[61] = 0x7f; // first record length: far too long
    update_crc(&mut batch);
    assert!(decode_records(&batch).is_err());
}

#[test]
fn idempotent_batch_carries_producer_fields() {
    let batch = build_idempotent_batch(&[(None, Some(b"a")), (None, Some(b"b"))], 9, 77, 3, 10);
    let header = validate(&batch).unwrap();
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (77, 3, 10)
    );
    assert_eq!(header.last_sequence(), 11);
}
