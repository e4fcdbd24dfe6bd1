//! Cluster mode's settings, with the names users give them.

use std::fmt;

/// What cluster mode needs besides the broker's own settings (`node.id`, listeners).
#[derive(Clone)]
pub struct ClusterConfig {
    /// Where record data goes (`storage.url`): `s3://bucket/prefix`, `gs://`, `az://`,
    /// `file:///path`.
    pub storage_url: Option<String>,
    /// The PostgreSQL database holding metadata and ordering (`cluster.metadata.url`):
    /// `postgres://user:password@host:port/db`. Never logged as given.
    pub metadata_url: Option<String>,
    /// How long produced batches wait to be gathered into one object
    /// (`storage.flush.interval.ms`).
    pub flush_interval_ms: u64,
    /// An object is written as soon as this many bytes wait (`storage.flush.max.bytes`).
    pub flush_max_bytes: usize,
    /// Bytes of object data kept in memory for fetches (`storage.cache.max.bytes`).
    pub cache_max_bytes: u64,
    /// How often a broker tells PostgreSQL it is alive (`broker.heartbeat.interval.ms`).
    pub heartbeat_interval_ms: u64,
    /// A broker silent for this long leaves the cluster, and its partitions move
    /// (`broker.session.timeout.ms`).
    pub session_timeout_ms: u64,
    /// The broker's rack, given to clients in Metadata (`broker.rack`).
    pub rack: Option<String>,
    /// Batches written this long ago are merged from the flush objects they share with other
    /// partitions into objects of their partition's own (`storage.merge.age.ms`).
    pub merge_age_ms: u64,
    /// How long an object nothing refers to any more is kept before it is deleted, for reads
    /// that found it just before (`log.segment.delete.delay.ms`, as Kafka waits before it deletes
    /// a segment file).
    pub delete_delay_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            storage_url: None,
            metadata_url: None,
            flush_interval_ms: 10,
            flush_max_bytes: 4 * 1024 * 1024,
            cache_max_bytes: 256 * 1024 * 1024,
            heartbeat_interval_ms: 500,
            session_timeout_ms: 3_000,
            rack: None,
            delete_delay_ms: 60_000,
            merge_age_ms: 30_000,
        }
    }
}

impl ClusterConfig {
    /// Whether cluster mode is on: both URLs given. One without the other is a mistake the
    /// broker refuses to start with.
    pub fn enabled(&self) -> Result<bool, String> {
        match (&self.storage_url, &self.metadata_url) {
            (Some(_), Some(_)) => Ok(true),
            (None, None) => Ok(false),
            (Some(_), None) => Err(
                "storage.url is set but cluster.metadata.url is not: cluster mode needs both \
                 (or neither, for a single-node broker)"
                    .into(),
            ),
            (None, Some(_)) => Err(
                "cluster.metadata.url is set but storage.url is not: cluster mode needs both \
                 (or neither, for a single-node broker)"
                    .into(),
            ),
        }
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("storage_url", &self.storage_url)
            .field("metadata_url", &self.metadata_url.as_deref().map(redact))
            .field("flush_interval_ms", &self.flush_interval_ms)
            .field("flush_max_bytes", &self.flush_max_bytes)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("rack", &self.rack)
            .field("delete_delay_ms", &self.delete_delay_ms)
            .field("merge_age_ms", &self.merge_age_ms)
            .finish()
    }
}

/// A connection URL with its password, if any, replaced by `***`: what may be logged.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            for (key, _) in parsed.query_pairs() {
                if key.eq_ignore_ascii_case("password") {
                    parsed.set_query(Some("password=***"));
                    break;
                }
            }
            parsed.to_string()
        }
        // Not a URL (a key=value connection string): show no more than its host.
        Err(_) => url
            .split_whitespace()
            .filter(|part| part.starts_with("host=") || part.starts_with("port="))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://partita:s3cret@db:5432/meta"),
            "postgres://partita:***@db:5432/meta"
        );
        assert!(!redact("postgres://u@h/db?password=s3cret").contains("s3cret"));
        assert_eq!(
            redact("host=db port=5432 user=u password=s3cret"),
            "host=db port=5432"
        );
        let config = ClusterConfig {
            metadata_url: Some("postgres://u:s3cret@h/db".into()),
            ..ClusterConfig::default()
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn both_urls_or_neither() {
        let mut config = ClusterConfig::default();
        assert_eq!(config.enabled(), Ok(false));
        config.storage_url = Some("s3://b".into());
        assert!(config
            .enabled()
            .unwrap_err()
            .contains("cluster.metadata.url"));
        config.metadata_url = Some("postgres://h/db".into());
        assert_eq!(config.enabled(), Ok(true));
    }
}
