//! Producer ids for idempotent producers, unique across restarts.
//!
//! On a single node, ids are handed out from blocks; the end of the current block is written
//! to disk before any id in it is used, so a restart starts past every id ever given out. In
//! cluster mode they come from a PostgreSQL sequence, unique across brokers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::BrokerError;

const BLOCK_SIZE: i64 = 1000;

/// Allocates producer ids.
pub enum ProducerIds {
    /// From blocks recorded in the data directory.
    Local(Arc<Blocks>),
    /// From the cluster's sequence.
    Cluster(partita_cluster::Cluster),
}

/// The block in use, and where its end is kept.
pub struct Blocks {
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
        Ok(ProducerIds::Local(Arc::new(Blocks {
            file,
            state: Mutex::new((start, start)),
        })))
    }

    /// The next unused producer id. Reserving a new block writes a file, on a blocking
    /// thread.
    pub async fn next(&self) -> Result<i64, BrokerError> {
        match self {
            ProducerIds::Local(blocks) => {
                let blocks = Arc::clone(blocks);
                tokio::task::spawn_blocking(move || blocks.next())
                    .await
                    .unwrap_or_else(|error| Err(BrokerError::Storage(error.to_string())))
            }
            ProducerIds::Cluster(cluster) => cluster
                .next_producer_id()
                .await
                .map_err(|error| BrokerError::Storage(error.to_string())),
        }
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
