//! Producer ids for idempotent producers, unique across restarts.
//!
//! Ids are handed out from blocks; the end of the current block is written to disk before any
//! id in it is used, so a restart starts past every id ever given out.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::BrokerError;

const BLOCK_SIZE: i64 = 1000;

/// Allocates producer ids.
pub struct ProducerIds {
    inner: Arc<Blocks>,
}

/// The block in use, and where its end is kept.
struct Blocks {
    file: PathBuf,
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// Opens the allocator, starting after the last block reserved before.
    pub fn open(data_dir: &Path) -> Result<ProducerIds, BrokerError> {
        let file = data_dir.join("producer-id-block");
        let start = fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Ok(ProducerIds {
            inner: Arc::new(Blocks {
                file,
                state: Mutex::new((start, start)),
            }),
        })
    }

    /// The next unused producer id. Reserving a new block writes a file, on a blocking
    /// thread.
    pub async fn next(&self) -> Result<i64, BrokerError> {
        let blocks = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || blocks.next())
            .await
            .unwrap_or_else(|error| Err(BrokerError::Storage(error.to_string())))
    }
}

impl Blocks {
    fn next(&self) -> Result<i64, BrokerError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (next, block_end) = *state;
        if next >= block_end {
            let new_end = next + BLOCK_SIZE;
            partita_log::files::replace(&self.file, new_end.to_string().as_bytes())?;
            state.1 = new_end;
        }
        state.0 = next + 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerIds::open(dir.path()).unwrap();
        let a = first.next().await.unwrap();
        let b = first.next().await.unwrap();
        assert_ne!(a, b);
        let second = ProducerIds::open(dir.path()).unwrap();
        let c = second.next().await.unwrap();
        assert!(c > b, "{c} after restart must exceed {b}");
    }
}
