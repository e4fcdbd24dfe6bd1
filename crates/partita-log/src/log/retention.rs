//! Retention by time and size, DeleteRecords, and removal of whole old segments.

use super::Log;
use crate::config::CleanupPolicy;
use crate::error::LogError;

impl Log {
    /// Deletes old segments (never the active one) and returns how many were removed.
    ///
    /// Removes, oldest first: segments entirely below the log start offset; segments whose
    /// newest timestamp is more than `retention_ms` old; and segments that can go while the log
    /// stays at least `retention_bytes` large (Kafka's rule). Compact-only logs keep everything.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let log_start_offset = self.log_start_offset;
        let mut deleted =
            self.delete_oldest_while(|segment| segment.next_offset() <= log_start_offset)?;
        if self.config.cleanup_policy == CleanupPolicy::Compact {
            return Ok(deleted);
        }
        let retention_ms = self.config.retention_ms;
        if retention_ms >= 0 {
            deleted += self.delete_oldest_while(|segment| {
                let newest = segment.max_timestamp().map(|(_, ts)| ts);
                newest
                    .or_else(|| segment.modified_ms())
                    .is_some_and(|newest| now_ms.saturating_sub(newest) > retention_ms)
            })?;
        }
        let retention_bytes = self.config.retention_bytes;
        if retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - retention_bytes;
            deleted += self.delete_oldest_while(|segment| {
                let size = segment.size() as i64;
                let deletable = excess - size >= 0;
                if deletable {
                    excess -= size;
                }
                deletable
            })?;
        }
        Ok(deleted)
    }

    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords) and deletes the
    /// segments entirely below it. Offsets at or below the current start are ignored.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<(), LogError> {
        if offset > self.log_end_offset {
            return Err(LogError::OffsetOutOfRange);
        }
        if offset <= self.log_start_offset {
            return Ok(());
        }
        self.log_start_offset = offset;
        self.persist_log_start_offset()?;
        self.delete_oldest_while(|segment| segment.next_offset() <= offset)?;
        Ok(())
    }

    /// Deletes segments from the oldest on while `deletable` says so, stopping at the first it
    /// refuses and always keeping the active segment. Moves the log start offset past them.
    fn delete_oldest_while(
        &mut self,
        mut deletable: impl FnMut(&crate::segment::Segment) -> bool,
    ) -> Result<usize, LogError> {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let (&base_offset, segment) = self.segments.iter().next().expect("non-empty");
            if !deletable(segment) {
                break;
            }
            self.forget_clean_shutdown()?;
            let segment = self.segments.remove(&base_offset).expect("present");
            tracing::info!(
                file = %segment.log_path().display(),
                bytes = segment.size(),
                "deleting log segment"
            );
            segment.delete()?;
            deleted += 1;
        }
        let first_base = *self.segments.keys().next().expect("active segment");
        self.log_start_offset = self.log_start_offset.max(first_base);
        Ok(deleted)
    }
}
