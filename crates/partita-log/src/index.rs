//! Sparse offset and time indexes of a segment, and its index of aborted transactions, in
//! Kafka's file layouts.
//!
//! The entries live in memory; the files are a cache written alongside, rebuilt from the
//! segment's batches whenever they disagree with it (see `Segment::open_existing`).

use std::io;
use std::path::Path;

use crate::open_files::CachedFile;
use crate::producer_state::AbortedTxn;

/// One fixed-size entry of an index file.
pub(crate) trait IndexEntry: Copy + PartialEq {
    /// Bytes per entry on disk.
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    /// The entry in `bytes`, which hold exactly [`IndexEntry::SIZE`] of them.
    fn decode(bytes: &[u8]) -> Self;
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"))
}

fn be_i64(bytes: &[u8]) -> i64 {
    i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// `.index` entry: a batch's base offset relative to the segment's, and its file position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: be_u32(bytes),
            position: be_u32(&bytes[4..]),
        }
    }
}

/// `.timeindex` entry: the largest timestamp in the segment up to and including the batch at
/// `relative_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        TimeEntry {
            timestamp: be_i64(bytes),
            relative_offset: be_u32(&bytes[8..]),
        }
    }
}

/// `.txnindex` entry: a transaction aborted by a marker in the segment (Kafka's `AbortedTxn`
/// record, version 0): its producer, first offset, the marker's offset, and the partition's
/// last stable offset once it ended, past which no transaction begun earlier is still open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxnEntry {
    pub(crate) txn: AbortedTxn,
    pub(crate) last_stable_offset: i64,
}

impl IndexEntry for TxnEntry {
    const SIZE: usize = 34;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&self.txn.producer_id.to_be_bytes());
        out.extend_from_slice(&self.txn.first_offset.to_be_bytes());
        out.extend_from_slice(&self.txn.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        TxnEntry {
            txn: AbortedTxn {
                producer_id: be_i64(&bytes[2..]),
                first_offset: be_i64(&bytes[10..]),
                last_offset: be_i64(&bytes[18..]),
            },
            last_stable_offset: be_i64(&bytes[26..]),
        }
    }
}

/// An index: sorted entries in memory, mirrored to a file (opened only to write it).
pub(crate) struct Index<E: IndexEntry> {
    file: CachedFile,
    entries: Vec<E>,
}

impl<E: IndexEntry> Index<E> {
    /// Opens the file at `path` with the authoritative `entries` rebuilt from the segment,
    /// rewriting the file if it does not hold exactly those entries.
    pub(crate) fn open(path: &Path, entries: Vec<E>) -> io::Result<Index<E>> {
        let index = Index {
            file: CachedFile::create(path, false)?,
            entries,
        };
        let expected = index.encoded();
        let on_disk = std::fs::read(path)?;
        if on_disk != expected {
            if !on_disk.is_empty() || !expected.is_empty() {
                tracing::info!(
                    path = %path.display(),
                    file_bytes = on_disk.len(),
                    rebuilt_bytes = expected.len(),
                    "rebuilt index file from the segment"
                );
            }
            index.file.set_len(0)?;
            index.file.write_all_at(&expected, 0)?;
        }
        Ok(index)
    }

    /// Opens the file at `path` trusting what it holds, if it holds exactly `count` entries
    /// (a clean shutdown recorded how many): `None` if it does not.
    pub(crate) fn load(path: &Path, count: usize) -> io::Result<Option<Index<E>>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        if bytes.len() != count * E::SIZE {
            return Ok(None);
        }
        let entries = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Some(Index {
            // Loaded as a clean shutdown or a recovery point left it: synced then.
            file: CachedFile::existing(path, true),
            entries,
        }))
    }

    fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * E::SIZE);
        for entry in &self.entries {
            entry.encode(&mut out);
        }
        out
    }

    pub(crate) fn append(&mut self, entry: E) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(E::SIZE);
        entry.encode(&mut bytes);
        let position = (self.entries.len() * E::SIZE) as u64;
        self.file.write_all_at(&bytes, position)?;
        self.entries.push(entry);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, in order.
    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    /// Forgets the entries from `len` on (after a failed append). The file keeps its bytes,
    /// which the next append overwrites; a restart rebuilds the file anyway.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    /// Fsyncs the file, if it changed since its last sync.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }
}

impl Index<OffsetEntry> {
    /// File position of the indexed batch with the largest relative offset `<= relative_offset`,
    /// or 0 if there is none.
    pub(crate) fn lookup(&self, relative_offset: u32) -> u32 {
        let after = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        match after {
            0 => 0,
            n => self.entries[n - 1].position,
        }
    }
}

impl Index<TimeEntry> {
    /// Relative offset from which to scan for the first batch with a timestamp `>= timestamp`:
    /// the last entry whose timestamp is still below it (everything before is older), or 0.
    pub(crate) fn lookup(&self, timestamp: i64) -> u32 {
        let after = self
            .entries
            .partition_point(|entry| entry.timestamp < timestamp);
        match after {
            0 => 0,
            n => self.entries[n - 1].relative_offset,
        }
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// Sorted, strictly increasing relative offsets and positions, as segments write them.
    fn offset_entries() -> impl Strategy<Value = Vec<OffsetEntry>> {
        prop::collection::vec((1u32..1000, 1u32..5000), 0..60).prop_map(|steps| {
            let (mut relative_offset, mut position) = (0u32, 0u32);
            steps
                .into_iter()
                .map(|(offset_step, position_step)| {
                    let entry = OffsetEntry {
                        relative_offset,
                        position,
                    };
                    relative_offset += offset_step;
                    position += position_step;
                    entry
                })
                .collect()
        })
    }

    /// Strictly increasing timestamps (the index only records new maxima) and offsets.
    fn time_entries() -> impl Strategy<Value = Vec<TimeEntry>> {
        prop::collection::vec((1i64..10_000, 1u32..1000), 0..60).prop_map(|steps| {
            let (mut timestamp, mut relative_offset) = (0i64, 0u32);
            steps
                .into_iter()
                .map(|(time_step, offset_step)| {
                    timestamp += time_step;
                    relative_offset += offset_step;
                    TimeEntry {
                        timestamp,
                        relative_offset,
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn offset_lookup_finds_the_last_entry_at_or_below(
            entries in offset_entries(),
            probe in 0u32..70_000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let index = Index::open(&dir.path().join("x.index"), entries.clone()).unwrap();
            let expected = entries
                .iter()
                .rev()
                .find(|e| e.relative_offset <= probe)
                .map_or(0, |e| e.position);
            prop_assert_eq!(index.lookup(probe), expected);
            // The file holds exactly the entries, and reopening it from the same entries
            // leaves it alone.
            let on_disk = std::fs::read(dir.path().join("x.index")).unwrap();
            prop_assert_eq!(on_disk.len(), entries.len() * OffsetEntry::SIZE);
        }

        #[test]
        fn time_lookup_starts_at_the_last_older_entry(
            entries in time_entries(),
            probe in -5i64..700_000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let index = Index::open(&dir.path().join("x.timeindex"), entries.clone()).unwrap();
            let expected = entries
                .iter()
                .rev()
                .find(|e| e.timestamp < probe)
                .map_or(0, |e| e.relative_offset);
            prop_assert_eq!(index.lookup(probe), expected);
        }

        #[test]
        fn appends_then_truncate_roll_back_to_a_prefix(
            entries in offset_entries(),
            keep in 0usize..60,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut index = Index::open(&dir.path().join("x.index"), Vec::new()).unwrap();
            for entry in &entries {
                index.append(*entry).unwrap();
            }
            let keep = keep.min(entries.len());
            index.truncate(keep);
            prop_assert_eq!(index.len(), keep);
            let probe = u32::MAX;
            let expected = entries[..keep].last().map_or(0, |e| e.position);
            prop_assert_eq!(index.lookup(probe), expected);
        }
    }
}
