//! Property tests: offsets are assigned densely whatever the batches and segment sizes, and
//! every offset is found again (through the sparse indexes), before and after a reopen.

use proptest::prelude::*;

use super::tests::{base_offsets, open};
use super::*;
use crate::batch::{build_batch, KeyValue};

/// A batch of `count` records of `size`-byte values at timestamp `ts`.
fn batch(count: usize, size: usize, ts: i64) -> bytes::BytesMut {
    let values: Vec<Vec<u8>> = (0..count).map(|i| vec![i as u8; size]).collect();
    let records: Vec<KeyValue> = values.iter().map(|v| (None, Some(&v[..]))).collect();
    build_batch(&records, ts)
}

#[derive(Debug, Clone)]
struct Case {
    /// (records, value size, timestamp) of each batch.
    batches: Vec<(usize, usize, i64)>,
    segment_bytes: u64,
    index_interval_bytes: u32,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((1usize..12, 0usize..200, 0i64..100_000), 1..60),
        200u64..6000,
        1u32..2000,
    )
        .prop_map(|(batches, segment_bytes, index_interval_bytes)| Case {
            batches,
            segment_bytes,
            index_interval_bytes,
        })
}

/// Checks that every offset below the log end reads back the batch that holds it.
fn check_reads(log: &Log, firsts: &[i64], end: i64) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_end_offset(), end);
    for offset in 0..end {
        let got = base_offsets(&log.read(offset, 1).unwrap());
        let holder = firsts[firsts.partition_point(|&base| base <= offset) - 1];
        prop_assert_eq!(got, vec![holder], "offset {}", offset);
    }
    prop_assert_eq!(
        base_offsets(&log.read(0, usize::MAX).unwrap()),
        firsts.to_vec()
    );
    prop_assert!(log.read(end, 1).unwrap().is_empty());
    prop_assert!(matches!(
        log.read(end + 1, 1),
        Err(LogError::OffsetOutOfRange)
    ));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn offsets_are_dense_and_every_one_is_found_again(case in cases()) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: case.segment_bytes,
            index_interval_bytes: case.index_interval_bytes,
            ..LogConfig::default()
        };
        let mut log = open(dir.path(), config.clone());
        let mut firsts = Vec::new();
        let mut next = 0i64;
        for &(count, size, ts) in &case.batches {
            let info = log.append(&mut batch(count, size, ts), ts).unwrap();
            prop_assert_eq!(info.base_offset, next);
            prop_assert_eq!(info.last_offset, next + count as i64 - 1);
            firsts.push(next);
            next += count as i64;
        }
        check_reads(&log, &firsts, next)?;

        // Timestamp lookups agree with a scan of every batch.
        for probe in [0, 25_000, 50_000, 99_999, 100_000] {
            let expected = case
                .batches
                .iter()
                .zip(&firsts)
                .find(|((_, _, ts), _)| *ts >= probe)
                .map(|((_, _, ts), base)| (*base, *ts));
            prop_assert_eq!(log.offset_for_timestamp(probe).unwrap(), expected, "ts {}", probe);
        }

        log.close().unwrap();
        let log = open(dir.path(), config);
        check_reads(&log, &firsts, next)?;
    }
}
