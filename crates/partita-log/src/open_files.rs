//! Open files as a bounded resource.
//!
//! Every segment has a `.log`, an `.index` and a `.timeindex` file (and a `.txnindex` once a
//! transaction aborts there), so a broker keeping them all open needs three descriptors per
//! partition: 100,000 partitions would need 300,000, far past the limit most systems give a
//! process. Instead each file is named by a [`CachedFile`], opened when it is used and kept in
//! one process-wide cache of at most [`set_capacity`] entries. Files used often (the active
//! segments being written and read) stay open; the others are closed as the cache evicts
//! them and opened again when needed.
//!
//! Eviction never fails an operation: a file in use is shared (`Arc<File>`) and stays open
//! until its last user drops it, so the cache bounds the files kept open *between* uses.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

type Cache = quick_cache::sync::Cache<u64, Arc<File>>;

/// Files kept open when nothing sets the capacity (tests, embedded use).
pub const DEFAULT_CAPACITY: usize = 256;

/// The cache never holds fewer: a partition being written needs its three files at once.
pub const MIN_CAPACITY: usize = 16;

static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_CAPACITY);
static CACHE: OnceLock<Cache> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static OPENS: AtomicU64 = AtomicU64::new(0);

/// Sets how many segment and index files may be kept open between uses. It takes effect
/// only before the first file is opened (a broker sets it at start); returns whether it did.
pub fn set_capacity(capacity: usize) -> bool {
    if CACHE.get().is_some() {
        return false;
    }
    CAPACITY.store(capacity.max(MIN_CAPACITY), Ordering::Relaxed);
    true
}

/// How many files the cache may keep open.
pub fn capacity() -> usize {
    match CACHE.get() {
        Some(cache) => cache.capacity() as usize,
        None => CAPACITY.load(Ordering::Relaxed),
    }
}

/// Files kept open in the cache now.
pub fn open_count() -> usize {
    CACHE.get().map_or(0, Cache::len)
}

/// Files opened since the process started: a count that keeps growing under steady load
/// means the cache is too small for the partitions in use.
pub fn opens_total() -> u64 {
    OPENS.load(Ordering::Relaxed)
}

/// The cache, made at first use. Its shards (each evicting on its own) share the capacity
/// evenly, rounded down, so that together they never hold more than it.
fn cache() -> &'static Cache {
    CACHE.get_or_init(|| {
        let capacity = CAPACITY.load(Ordering::Relaxed);
        let shards = (capacity / 32).clamp(1, 64);
        let shards = 1 << shards.ilog2();
        let capacity = capacity / shards * shards;
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(capacity)
            .weight_capacity(capacity as u64)
            .build()
            .expect("valid cache options");
        Cache::with_options(
            options,
            Default::default(),
            Default::default(),
            Default::default(),
        )
    })
}

/// A file of the log, opened on use through the process-wide cache. Dropping it closes the
/// file (once no reader holds it). It knows whether it was written since its last fsync, so
/// that syncing a partition whose files did not change (a clean shutdown of many idle
/// partitions) costs no fsync.
#[derive(Debug)]
pub(crate) struct CachedFile {
    id: u64,
    path: PathBuf,
    unsynced: AtomicBool,
}

impl CachedFile {
    /// Opens the file at `path`, creating it if missing (and emptying it with `truncate`),
    /// and keeps it in the cache.
    pub(crate) fn create(path: &Path, truncate: bool) -> io::Result<CachedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(path)?;
        OPENS.fetch_add(1, Ordering::Relaxed);
        let cached = CachedFile::existing(path, false);
        cache().insert(cached.id, Arc::new(file));
        Ok(cached)
    }

    /// Names the existing file at `path`, to be opened when first used; `synced` if its
    /// contents are known to be on disk (else the next [`CachedFile::sync_data`] syncs it).
    pub(crate) fn existing(path: &Path, synced: bool) -> CachedFile {
        CachedFile {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path: path.to_path_buf(),
            unsynced: AtomicBool::new(!synced),
        }
    }

    /// Writes `bytes` at `position`.
    pub(crate) fn write_all_at(&self, bytes: &[u8], position: u64) -> io::Result<()> {
        self.unsynced.store(true, Ordering::Relaxed);
        self.get()?.write_all_at(bytes, position)
    }

    /// Truncates or extends the file to `len` bytes.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.unsynced.store(true, Ordering::Relaxed);
        self.get()?.set_len(len)
    }

    /// Fsyncs the file's data if it changed since it was last synced (or opened unsynced).
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        if self.unsynced.swap(false, Ordering::Relaxed) {
            if let Err(error) = self.get().and_then(|file| file.sync_data()) {
                self.unsynced.store(true, Ordering::Relaxed);
                return Err(error);
            }
        }
        Ok(())
    }

    /// The open file. It is never created here: a file removed behind the broker's back is
    /// an error, not an empty file.
    pub(crate) fn get(&self) -> io::Result<Arc<File>> {
        cache().get_or_insert_with(&self.id, || {
            let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
            OPENS.fetch_add(1, Ordering::Relaxed);
            Ok(Arc::new(file))
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Identifies this file (not another since put at the same path).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        if let Some(cache) = CACHE.get() {
            cache.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn files_beyond_the_capacity_are_closed_and_reopened_when_used() {
        let dir = tempfile::tempdir().unwrap();
        let capacity = capacity();
        let files: Vec<CachedFile> = (0..capacity * 3)
            .map(|i| {
                let file = CachedFile::create(&dir.path().join(i.to_string()), true).unwrap();
                file.get()
                    .unwrap()
                    .write_all_at(&i.to_be_bytes(), 0)
                    .unwrap();
                file
            })
            .collect();
        // Other tests share the cache: it holds at most its capacity, whoever opened them.
        assert!(open_count() <= capacity, "{} open", open_count());
        assert!(open_descriptors() < capacity * 2, "{}", open_descriptors());
        for (i, file) in files.iter().enumerate() {
            let mut bytes = [0u8; 8];
            file.get().unwrap().read_exact_at(&mut bytes, 0).unwrap();
            assert_eq!(usize::from_be_bytes(bytes), i);
        }
    }

    #[test]
    fn only_a_file_written_since_its_last_sync_is_synced_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = CachedFile::create(&dir.path().join("dirty"), true).unwrap();
        let unsynced = |file: &CachedFile| file.unsynced.load(Ordering::Relaxed);
        assert!(unsynced(&file), "a new file is not on disk yet");
        file.sync_data().unwrap();
        assert!(!unsynced(&file));
        file.write_all_at(b"x", 0).unwrap();
        assert!(unsynced(&file));
        file.sync_data().unwrap();
        assert!(!unsynced(&file));
        assert!(!unsynced(&CachedFile::existing(file.path(), true)));
        assert!(unsynced(&CachedFile::existing(file.path(), false)));
    }

    #[test]
    fn a_file_held_by_a_reader_stays_readable_after_eviction_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let file = CachedFile::create(&dir.path().join("held"), true).unwrap();
        file.write_all_at(b"kept", 0).unwrap();
        let held = file.get().unwrap();
        drop(file);
        let mut bytes = [0u8; 4];
        held.read_exact_at(&mut bytes, 0).unwrap();
        assert_eq!(&bytes, b"kept");
    }

    #[test]
    fn a_file_removed_behind_the_cache_is_an_error_not_a_new_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        std::fs::write(&path, b"x").unwrap();
        let file = CachedFile::existing(&path, true);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            file.get().unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "reopening must not create the file"
        );
        assert!(!path.exists());
    }
}
