//! One segment: a `.log` file of whole batches plus its offset and time indexes, and the
//! transactions aborted in it (`.txnindex`, present only once there is one).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, HEADER_SIZE};
use crate::error::LogError;
use crate::index::{Index, OffsetEntry, TimeEntry, TxnEntry};
use crate::open_files::CachedFile;

/// Path of a segment file: the base offset in 20 digits, as Kafka names them.
/// Bytes read at once when scanning batch headers.
const SCAN_WINDOW: usize = 16 * 1024;

pub(crate) fn segment_path(dir: &Path, base_offset: i64, extension: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{extension}"))
}

/// Where recovery cut a segment short, and why.
#[derive(Debug)]
pub(crate) struct Truncation {
    pub(crate) position: u64,
    pub(crate) dropped_bytes: u64,
    pub(crate) reason: String,
}

/// Running totals that decide when the next index entries are due.
#[derive(Clone, Debug)]
struct Tracker {
    base_offset: i64,
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_index_entry: u64,
    last_indexed_timestamp: i64,
}

impl Tracker {
    fn new(base_offset: i64) -> Tracker {
        Tracker {
            base_offset,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            bytes_since_index_entry: 0,
            last_indexed_timestamp: -1,
        }
    }

    /// Accounts for a batch written at the current end and returns the index entries it needs.
    fn observe(
        &mut self,
        header: &BatchHeader,
        index_interval_bytes: u32,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        let position = self.size;
        let relative_offset = (header.base_offset - self.base_offset) as u32;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        let mut offset_entry = None;
        let mut time_entry = None;
        if position == 0 || self.bytes_since_index_entry >= u64::from(index_interval_bytes) {
            offset_entry = Some(OffsetEntry {
                relative_offset,
                position: position as u32,
            });
            self.bytes_since_index_entry = 0;
            if self.max_timestamp > self.last_indexed_timestamp {
                self.last_indexed_timestamp = self.max_timestamp;
                time_entry = Some(TimeEntry {
                    timestamp: self.max_timestamp,
                    relative_offset,
                });
            }
        }
        self.size += header.total_size() as u64;
        self.bytes_since_index_entry += header.total_size() as u64;
        self.next_offset = header.last_offset() + 1;
        (offset_entry, time_entry)
    }
}

/// What a clean shutdown records of a segment, to open it again without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub(crate) base_offset: i64,
    pub(crate) size: u64,
    pub(crate) next_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) offset_of_max_timestamp: i64,
    pub(crate) bytes_since_index_entry: u64,
    pub(crate) last_indexed_timestamp: i64,
    /// -1 for none.
    pub(crate) rolling_base_ms: i64,
    pub(crate) offset_entries: u32,
    pub(crate) time_entries: u32,
    pub(crate) txn_entries: u32,
}

/// A segment of the log. Offsets in it are `base_offset..next_offset`.
pub(crate) struct Segment {
    dir: PathBuf,
    /// The `.log` file; [`SegmentFile`]s share it open to read outside the log's lock.
    file: CachedFile,
    offset_index: Index<OffsetEntry>,
    time_index: Index<TimeEntry>,
    /// Transactions whose ABORT marker is in this segment, in the markers' order.
    aborted: Vec<TxnEntry>,
    /// Their `.txnindex` file, from the first one on; a write that fails leaves `aborted`
    /// whole (the next start rebuilds the file from the log).
    txn_index: Option<Index<TxnEntry>>,
    tracker: Tracker,
    /// Wall-clock (or first batch) time the segment's age is measured from, for time rolls.
    pub(crate) rolling_base_ms: Option<i64>,
    /// Every batch's CRC has been checked since the broker started (by the start-up scan or
    /// the scrub), or the segment was written since.
    pub(crate) verified: bool,
}

impl Segment {
    /// Creates an empty segment, replacing any files of the same name.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let file = CachedFile::create(&segment_path(dir, base_offset, "log"), true)?;
        Ok(Segment {
            dir: dir.to_path_buf(),
            file,
            offset_index: Index::open(&segment_path(dir, base_offset, "index"), Vec::new())?,
            time_index: Index::open(&segment_path(dir, base_offset, "timeindex"), Vec::new())?,
            aborted: Vec::new(),
            txn_index: None,
            tracker: Tracker::new(base_offset),
            rolling_base_ms: None,
            verified: true,
        })
    }

    /// Opens an existing segment, scanning every batch header (and, with `verify_crc`, every
    /// CRC). The file is truncated at the first damaged batch. `on_batch` sees each good header,
    /// and the whole batch when its CRC was checked or it is a control batch (else the header).
    pub(crate) fn open_existing(
        dir: &Path,
        base_offset: i64,
        min_offset: i64,
        verify_crc: bool,
        index_interval_bytes: u32,
        on_batch: &mut dyn FnMut(&BatchHeader, &[u8]),
    ) -> Result<(Segment, Option<Truncation>), LogError> {
        let path = segment_path(dir, base_offset, "log");
        let file = open_rw(&path)?;
        let file_len = file.metadata()?.len();
        let mut tracker = Tracker::new(base_offset);
        let mut offset_entries = Vec::new();
        let mut time_entries = Vec::new();
        let mut first_batch_timestamp = None;
        let mut reader = BufReader::with_capacity(64 * 1024, &file);
        let mut batch_buf = Vec::new();
        let mut failure = None;
        let mut expected_min = min_offset.max(base_offset);
        while tracker.size < file_len {
            let remaining = file_len - tracker.size;
            match scan_one(&mut reader, &mut batch_buf, remaining, verify_crc) {
                Ok(header) => {
                    if let Err(reason) = check_offsets(&header, base_offset, expected_min) {
                        failure = Some(reason);
                        break;
                    }
                    if tracker.size + header.total_size() as u64 > u64::from(u32::MAX) {
                        failure = Some("segment larger than 4 GiB".to_string());
                        break;
                    }
                    first_batch_timestamp.get_or_insert(header.max_timestamp);
                    let (offset_entry, time_entry) = tracker.observe(&header, index_interval_bytes);
                    offset_entries.extend(offset_entry);
                    time_entries.extend(time_entry);
                    expected_min = header.last_offset() + 1;
                    on_batch(&header, &batch_buf);
                }
                Err(reason) => {
                    failure = Some(reason);
                    break;
                }
            }
        }
        drop(reader);
        let truncation = match failure {
            Some(reason) => {
                file.set_len(tracker.size)?;
                file.sync_all()?;
                Some(Truncation {
                    position: tracker.size,
                    dropped_bytes: file_len - tracker.size,
                    reason,
                })
            }
            None => None,
        };
        drop(file);
        let segment = Segment {
            dir: dir.to_path_buf(),
            // Read, not necessarily synced: written by a process that did not stop cleanly.
            file: CachedFile::existing(&path, false),
            offset_index: Index::open(&segment_path(dir, base_offset, "index"), offset_entries)?,
            time_index: Index::open(&segment_path(dir, base_offset, "timeindex"), time_entries)?,
            aborted: Vec::new(),
            txn_index: None,
            tracker,
            rolling_base_ms: first_batch_timestamp.filter(|ts| *ts >= 0),
            verified: verify_crc,
        };
        Ok((segment, truncation))
    }

    /// Sets the transactions aborted in this segment, rebuilt by scanning the log from its
    /// start, rewriting `.txnindex` if it does not hold exactly those (and removing it when
    /// there are none).
    pub(crate) fn set_aborted(&mut self, entries: Vec<TxnEntry>) -> io::Result<()> {
        let path = segment_path(&self.dir, self.tracker.base_offset, "txnindex");
        self.txn_index = match entries.is_empty() {
            true => {
                remove_if_present(&path)?;
                None
            }
            false => Some(Index::open(&path, entries.clone())?),
        };
        self.aborted = entries;
        Ok(())
    }

    /// Records a transaction aborted by a marker just appended here. A read_committed fetch
    /// must learn of it whatever happens to the file: if `.txnindex` cannot be created or
    /// written, the entry is kept in memory and the next start rebuilds the file from the log.
    pub(crate) fn append_aborted(&mut self, entry: TxnEntry) {
        self.aborted.push(entry);
        let path = segment_path(&self.dir, self.tracker.base_offset, "txnindex");
        let written = match &mut self.txn_index {
            Some(index) => index.append(entry),
            None => Index::open(&path, vec![entry]).map(|index| {
                self.txn_index = Some(index);
            }),
        };
        if let Err(error) = written {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot write the aborted-transaction index; the transaction is kept in memory \
                 and the file is rebuilt from the log at the next start"
            );
        }
    }

    /// The transactions aborted by markers in this segment, in the markers' order.
    pub(crate) fn aborted(&self) -> &[TxnEntry] {
        &self.aborted
    }

    /// Moves `previous`'s aborted transactions here: a compacted copy keeps the markers and
    /// their `.txnindex` of the segment it replaces.
    pub(crate) fn inherit_aborted(&mut self, previous: &mut Segment) {
        self.aborted = std::mem::take(&mut previous.aborted);
        self.txn_index = previous.txn_index.take();
    }

    /// What a clean shutdown records of this segment (its files synced).
    pub(crate) fn meta(&self) -> SegmentMeta {
        let t = &self.tracker;
        SegmentMeta {
            base_offset: t.base_offset,
            size: t.size,
            next_offset: t.next_offset,
            max_timestamp: t.max_timestamp,
            offset_of_max_timestamp: t.offset_of_max_timestamp,
            bytes_since_index_entry: t.bytes_since_index_entry,
            last_indexed_timestamp: t.last_indexed_timestamp,
            rolling_base_ms: self.rolling_base_ms.unwrap_or(-1),
            offset_entries: self.offset_index.len() as u32,
            time_entries: self.time_index.len() as u32,
            txn_entries: self.aborted.len() as u32,
        }
    }

    /// Opens a segment as a clean shutdown left it, reading none of its batches: its indexes
    /// are taken from their files. `None` if the files do not match `meta` (the caller then
    /// scans the log instead).
    pub(crate) fn open_clean(dir: &Path, meta: &SegmentMeta) -> io::Result<Option<Segment>> {
        let base_offset = meta.base_offset;
        let log_path = segment_path(dir, base_offset, "log");
        match fs::metadata(&log_path) {
            Ok(metadata) if metadata.len() == meta.size => {}
            Ok(_) => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        }
        let path = |extension| segment_path(dir, base_offset, extension);
        let Some(offset_index) =
            Index::<OffsetEntry>::load(&path("index"), meta.offset_entries as usize)?
        else {
            return Ok(None);
        };
        let Some(time_index) =
            Index::<TimeEntry>::load(&path("timeindex"), meta.time_entries as usize)?
        else {
            return Ok(None);
        };
        let txn_path = path("txnindex");
        let txn_index = match meta.txn_entries {
            0 => {
                remove_if_present(&txn_path)?;
                None
            }
            count => match Index::<TxnEntry>::load(&txn_path, count as usize)? {
                Some(index) => Some(index),
                None => return Ok(None),
            },
        };
        // Entries as the segment writes them: offsets and positions rising, inside the file.
        let offsets = offset_index.entries();
        let sane = offsets
            .iter()
            .all(|e| u64::from(e.position) < meta.size.max(1))
            && offsets.windows(2).all(|w| {
                w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position
            })
            && time_index
                .entries()
                .windows(2)
                .all(|w| w[0].timestamp < w[1].timestamp);
        if !sane {
            return Ok(None);
        }
        Ok(Some(Segment {
            dir: dir.to_path_buf(),
            // As a clean shutdown or a roll left it: synced then.
            file: CachedFile::existing(&log_path, true),
            offset_index,
            time_index,
            aborted: txn_index
                .as_ref()
                .map_or_else(Vec::new, |index| index.entries().to_vec()),
            txn_index,
            tracker: Tracker {
                base_offset,
                size: meta.size,
                next_offset: meta.next_offset,
                max_timestamp: meta.max_timestamp,
                offset_of_max_timestamp: meta.offset_of_max_timestamp,
                bytes_since_index_entry: meta.bytes_since_index_entry,
                last_indexed_timestamp: meta.last_indexed_timestamp,
            },
            rolling_base_ms: (meta.rolling_base_ms >= 0).then_some(meta.rolling_base_ms),
            verified: false,
        }))
    }

    /// The offset the segment starts at.
    pub(crate) fn base_offset(&self) -> i64 {
        self.tracker.base_offset
    }

    /// Offset after the last batch (the base offset if empty).
    pub(crate) fn next_offset(&self) -> i64 {
        self.tracker.next_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.tracker.size
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tracker.size == 0
    }

    /// The time index as (offset, largest timestamp up to it) pairs, from memory.
    pub(crate) fn time_marks(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let base = self.tracker.base_offset;
        self.time_index
            .entries()
            .iter()
            .map(move |e| (base + i64::from(e.relative_offset), e.timestamp))
    }

    /// Largest batch timestamp and the last offset of its batch; `None` if no batch has one.
    pub(crate) fn max_timestamp(&self) -> Option<(i64, i64)> {
        (self.tracker.max_timestamp >= 0).then_some((
            self.tracker.offset_of_max_timestamp,
            self.tracker.max_timestamp,
        ))
    }

    /// Whether a batch of `size` bytes ending at `last_offset` still fits the index formats
    /// and `segment_bytes`.
    pub(crate) fn fits(&self, size: usize, last_offset: i64, segment_bytes: u64) -> bool {
        let limit = segment_bytes.min(u64::from(u32::MAX));
        let offset_fits = last_offset - self.tracker.base_offset <= i64::from(u32::MAX);
        self.is_empty() || (self.tracker.size + size as u64 <= limit && offset_fits)
    }

    /// Appends one batch whose base offset is already assigned.
    ///
    /// All or nothing: if a write fails (a full disk), the segment and its indexes are as
    /// before, and the bytes written past the end are overwritten by the next append.
    pub(crate) fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        index_interval_bytes: u32,
    ) -> io::Result<()> {
        let mut tracker = self.tracker.clone();
        let (offset_entry, time_entry) = tracker.observe(header, index_interval_bytes);
        self.file.write_all_at(batch, self.tracker.size)?;
        let offset_entries = self.offset_index.len();
        if let Some(entry) = offset_entry {
            self.offset_index.append(entry)?;
        }
        if let Some(entry) = time_entry {
            if let Err(error) = self.time_index.append(entry) {
                self.offset_index.truncate(offset_entries);
                return Err(error);
            }
        }
        self.tracker = tracker;
        Ok(())
    }

    /// Position of the first batch whose last offset is `>= offset`, with its header.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let relative = (offset - self.tracker.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        self.scan_from(u64::from(self.offset_index.lookup(relative)), |h| {
            h.last_offset() >= offset
        })
    }

    /// Position and header of the first batch ending at or after `min_offset` whose max
    /// timestamp is `>= timestamp`.
    pub(crate) fn find_batch_by_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let relative = self.time_index.lookup(timestamp);
        let start = self.offset_index.lookup(relative);
        self.scan_from(u64::from(start), |h| {
            h.max_timestamp >= timestamp && h.last_offset() >= min_offset
        })
    }

    /// The first batch from `position` on that is `wanted`. Headers are parsed from windows
    /// of [`SCAN_WINDOW`] bytes, one read each, rather than read one by one: a scan from an
    /// index entry crosses up to `index.interval.bytes` of small batches.
    fn scan_from(
        &self,
        mut position: u64,
        wanted: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let size = self.tracker.size;
        let file = self.file.get()?;
        let mut window = Vec::new();
        let mut window_start = position;
        while position + HEADER_SIZE as u64 <= size {
            let window_end = window_start + window.len() as u64;
            if position + HEADER_SIZE as u64 > window_end {
                let len = (size - position).min(SCAN_WINDOW as u64) as usize;
                window.resize(len, 0);
                file.read_exact_at(&mut window, position)?;
                window_start = position;
            }
            let at = (position - window_start) as usize;
            let header = batch::parse_header(&window[at..at + HEADER_SIZE])?;
            if position + header.total_size() as u64 > size {
                return Err(LogError::Corrupt(format!(
                    "batch at {position} in {} overruns the segment",
                    self.log_path().display()
                )));
            }
            if wanted(&header) {
                return Ok(Some((position, header)));
            }
            position += header.total_size() as u64;
        }
        Ok(None)
    }

    /// Reads `len` bytes at `position`.
    pub(crate) fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.get()?.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    /// Fsyncs the data and its indexes: those of their files that changed since last synced.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()?;
        self.offset_index.sync()?;
        self.time_index.sync()?;
        match &self.txn_index {
            Some(index) => index.sync(),
            None => Ok(()),
        }
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    /// Removes the segment's files.
    pub(crate) fn delete(self) -> io::Result<()> {
        let paths = [
            self.log_path(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            segment_path(&self.dir, self.tracker.base_offset, "txnindex"),
        ];
        drop(self);
        for path in paths {
            remove_if_present(&path)?;
        }
        Ok(())
    }

    /// The segment's bytes as they are now, to read without the log (a closed segment's
    /// bytes do not change). The view keeps the file open, whatever the cache evicts.
    pub(crate) fn file_view(&self) -> io::Result<SegmentFile> {
        Ok(SegmentFile {
            base_offset: self.tracker.base_offset,
            file: self.file.get()?,
            file_id: self.file.id(),
            size: self.tracker.size,
            path: self.log_path(),
        })
    }

    /// Whether `view` was taken of this segment (not of one since put in its place).
    pub(crate) fn is_viewed_by(&self, view: &SegmentFile) -> bool {
        self.file.id() == view.file_id
    }

    /// Modification time of the `.log` file in milliseconds since the epoch, if known.
    pub(crate) fn modified_ms(&self) -> Option<i64> {
        let modified = fs::metadata(self.file.path()).ok()?.modified().ok()?;
        let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(since_epoch.as_millis()).ok()
    }
}

/// A closed segment's bytes, read without holding the log: what compaction cleans.
#[derive(Clone, Debug)]
pub(crate) struct SegmentFile {
    pub(crate) base_offset: i64,
    file: Arc<File>,
    /// The [`CachedFile::id`] of the segment's file.
    file_id: u64,
    pub(crate) size: u64,
    pub(crate) path: PathBuf,
}

impl SegmentFile {
    /// Header of the batch starting at `position`, if a whole batch starts there.
    pub(crate) fn header_at(&self, position: u64) -> Result<Option<BatchHeader>, LogError> {
        if position + HEADER_SIZE as u64 > self.size {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_SIZE];
        self.file.read_exact_at(&mut buf, position)?;
        let header = batch::parse_header(&buf)?;
        if position + header.total_size() as u64 > self.size {
            return Err(LogError::Corrupt(format!(
                "batch at {position} in {} overruns the segment",
                self.path.display()
            )));
        }
        Ok(Some(header))
    }

    /// Reads `len` bytes at `position`.
    pub(crate) fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    /// Checks every batch's length and CRC, reading `chunk` bytes at a time and calling
    /// `pace` with the bytes of each chunk checked (to keep a rate; it returns false to stop
    /// early, which returns `Ok(None)` too). Returns the position of the first damaged batch
    /// and why, if there is one.
    pub(crate) fn verify(
        &self,
        chunk: usize,
        pace: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Option<(u64, String)>, LogError> {
        let mut position = 0u64;
        while position < self.size {
            let len = (self.size - position).min(chunk as u64) as usize;
            let mut bytes = self.read_at(position, len)?;
            let mut whole = crate::log::whole_batches_len(&bytes);
            if whole == 0 {
                // A batch larger than a chunk, or a length that cannot be right.
                let Some(header) = self.header_at(position).ok().flatten() else {
                    return Ok(Some((
                        position,
                        "a batch cut off or with a bad length".into(),
                    )));
                };
                bytes = self.read_at(position, header.total_size())?;
                whole = bytes.len();
            }
            let (intact, damage) = crate::log::intact_batches_len(&bytes[..whole]);
            if let Some(reason) = damage {
                return Ok(Some((position + intact as u64, reason)));
            }
            position += whole as u64;
            if !pace(whole as u64) {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

/// Deletes the file at `path`, if there is one.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Reads the next batch from `reader`: all of it when verifying the CRC, else only its header.
/// Returns why it is unusable on error (the caller truncates there).
fn scan_one(
    reader: &mut BufReader<&File>,
    batch_buf: &mut Vec<u8>,
    remaining: u64,
    verify_crc: bool,
) -> Result<BatchHeader, String> {
    if remaining < HEADER_SIZE as u64 {
        return Err(format!(
            "{remaining} trailing bytes are shorter than a batch header"
        ));
    }
    batch_buf.resize(HEADER_SIZE, 0);
    reader
        .read_exact(batch_buf)
        .map_err(|e| format!("read failed: {e}"))?;
    let header = batch::parse_header(batch_buf).map_err(|e| e.to_string())?;
    let size = header.total_size();
    if size as u64 > remaining {
        return Err(format!(
            "batch of {size} bytes is cut off after {remaining} bytes"
        ));
    }
    if verify_crc {
        batch_buf.resize(size, 0);
        reader
            .read_exact(&mut batch_buf[HEADER_SIZE..])
            .map_err(|e| format!("read failed: {e}"))?;
        batch::validate(batch_buf).map_err(|e| e.to_string())?;
    } else if header.is_control() {
        // Transaction markers are read whole: the producer state needs what they say.
        batch_buf.resize(size, 0);
        reader
            .read_exact(&mut batch_buf[HEADER_SIZE..])
            .map_err(|e| format!("read failed: {e}"))?;
    } else {
        reader
            .seek_relative((size - HEADER_SIZE) as i64)
            .map_err(|e| format!("seek failed: {e}"))?;
        if header.last_offset_delta < 0 {
            return Err(format!(
                "negative lastOffsetDelta {}",
                header.last_offset_delta
            ));
        }
    }
    Ok(header)
}

/// Offsets must grow through the log and stay within the segment's 32-bit relative range.
fn check_offsets(header: &BatchHeader, base_offset: i64, expected_min: i64) -> Result<(), String> {
    if header.base_offset < expected_min {
        return Err(format!(
            "batch base offset {} is below the expected {expected_min}",
            header.base_offset
        ));
    }
    let last_offset = header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .ok_or_else(|| "offset overflow".to_string())?;
    if last_offset - base_offset > i64::from(u32::MAX) {
        return Err(format!(
            "offset {} is too far from segment base {base_offset}",
            header.last_offset()
        ));
    }
    Ok(())
}
