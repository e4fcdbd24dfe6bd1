//! The topics this broker holds: creation, lookup, growth, deletion, and their persistence.
//!
//! Each topic has a small properties file in `<data>/.topics/<topic id>.properties` (its
//! name, partition count and config overrides; named by id because a 249-character topic
//! name would not fit in a file name with a suffix); each partition's log lives in
//! `<data>/<name>-<partition>/`, Kafka's layout. The properties file is written before the
//! partitions exist and removed before they are deleted, so a crash never leaves a topic that
//! half exists.

mod cluster;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use partita_cluster::Cluster;
use partita_groups::consumer::{SharedTopics, TopicImage, TopicsImage};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::storage::LocalPartition;
use crate::topic_config::{self, TopicOverrides};

/// Longest legal topic name, as in Kafka.
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// A topic: an immutable snapshot, replaced whole when partitions are added or configs change.
pub struct Topic {
    /// The topic's name.
    pub name: String,
    /// The topic id (KIP-516), stable across restarts.
    pub id: Uuid,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<Arc<Partition>>,
    /// Config overrides of the broker defaults.
    pub overrides: TopicOverrides,
    /// Who leads each partition, by partition number.
    pub leaders: Vec<Leader>,
}

/// Who leads a partition, as Metadata tells clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leader {
    /// The leader's node id; -1 while the partition has no live leader.
    pub node_id: i32,
    /// The leader epoch.
    pub epoch: i32,
}

/// The topics Kafka treats as internal.
const INTERNAL_TOPICS: &[&str] = &[
    "__consumer_offsets",
    "__transaction_state",
    "__share_group_state",
];

impl Topic {
    /// Whether this is one of the broker's internal topics. Other topics whose names begin
    /// with `__` are ordinary user topics, as in Kafka.
    pub fn is_internal(&self) -> bool {
        INTERNAL_TOPICS.contains(&self.name.as_str())
    }

    /// The partition with this index, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// All topics, by name and by id.
///
/// Lookups only read memory. Changes (create, grow, reconfigure, delete) write files and
/// fsync them on a blocking thread, one change at a time, and take the map's lock only to
/// swap a topic in or out: a lookup never waits for a disk.
pub struct TopicRegistry {
    inner: Arc<Registry>,
    /// In cluster mode, where topics are kept and changed.
    cluster: Option<Cluster>,
}

/// The registry's state, shared with the blocking threads that change it.
struct Registry {
    config: BrokerConfig,
    topics: RwLock<Topics>,
    /// Names, ids and partition counts, rebuilt on every change, for the group coordinator.
    image: RwLock<SharedTopics>,
    /// Held for the whole of a change, so that two changes never race; lookups ignore it.
    changing: Mutex<()>,
    /// Held while a cluster view is applied (cluster mode).
    applying: tokio::sync::Mutex<()>,
}

/// Topics by name, and the same by id.
#[derive(Default)]
struct Topics {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

impl Topics {
    fn insert(&mut self, topic: Arc<Topic>) {
        self.by_id.insert(topic.id, Arc::clone(&topic));
        self.by_name.insert(topic.name.clone(), topic);
    }

    fn remove(&mut self, name: &str) -> Option<Arc<Topic>> {
        let topic = self.by_name.remove(name)?;
        self.by_id.remove(&topic.id);
        Some(topic)
    }
}

impl TopicRegistry {
    /// Opens every topic found under the data directory, recovering each partition's log.
    /// Blocking: called at start-up, before the broker serves.
    pub fn open(config: &BrokerConfig) -> Result<TopicRegistry, BrokerError> {
        let registry = Registry::new(config);
        let meta_dir = registry.meta_dir();
        fs::create_dir_all(&meta_dir)?;
        let mut files = Vec::new();
        for entry in fs::read_dir(&meta_dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("properties") {
                files.push(registry.read_topic_file(&path)?);
            }
        }
        // Every partition of every topic, opened a few at a time: an open waits mostly on the
        // disk, and a broker may hold many thousands.
        let jobs: Vec<(&TopicFile, i32)> = files
            .iter()
            .flat_map(|file| (0..file.partitions).map(move |p| (file, p)))
            .collect();
        let mut opened = in_parallel(&jobs, |(file, p)| {
            registry.open_partition(&file.name, *p, file.log_config.clone())
        })?
        .into_iter();
        let mut topics = Topics::default();
        for file in files {
            let partitions: Vec<_> = opened.by_ref().take(file.partitions as usize).collect();
            tracing::info!(topic = %file.name, partitions = partitions.len(), "loaded topic");
            topics.insert(Arc::new(Topic {
                name: file.name,
                id: file.id,
                leaders: registry.local_leaders(partitions.len()),
                partitions,
                overrides: file.overrides,
            }));
        }
        *registry.write() = topics;
        registry.refresh_image();
        Ok(TopicRegistry {
            inner: Arc::new(registry),
            cluster: None,
        })
    }

    /// The current names, ids and partition counts of every topic.
    pub fn image(&self) -> SharedTopics {
        self.inner
            .image
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The topic with this name.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.inner.read().by_name.get(name).cloned()
    }

    /// The topic with this id.
    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.inner.read().by_id.get(&id).cloned()
    }

    /// Every topic, sorted by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = self.inner.read().by_name.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Checks that a topic could be created, without creating it.
    pub fn validate_new(
        &self,
        name: &str,
        partitions: i32,
        overrides: &TopicOverrides,
    ) -> Result<(), BrokerError> {
        self.inner.validate_new(name, partitions, overrides)
    }

    /// Creates a topic and its partitions on disk.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: TopicOverrides,
    ) -> Result<Arc<Topic>, BrokerError> {
        if let Some(cluster) = &self.cluster {
            return self
                .create_in_cluster(cluster, name, partitions, overrides)
                .await;
        }
        let name = name.to_string();
        self.blocking(move |registry| registry.create(&name, partitions, overrides))
            .await
    }

    /// Grows a topic to `count` partitions; shrinking is refused as in Kafka.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        if let Some(cluster) = &self.cluster {
            return self
                .add_partitions_in_cluster(cluster, name, count, validate_only)
                .await;
        }
        let name = name.to_string();
        self.blocking(move |registry| registry.add_partitions(&name, count, validate_only))
            .await
    }

    /// Replaces a topic's config overrides and applies them to its partitions.
    pub async fn set_overrides(
        &self,
        name: &str,
        overrides: TopicOverrides,
    ) -> Result<(), BrokerError> {
        if let Some(cluster) = &self.cluster {
            return self
                .set_overrides_in_cluster(cluster, name, overrides)
                .await;
        }
        let name = name.to_string();
        let topic = self
            .blocking(move |registry| registry.set_overrides(&name, overrides))
            .await?;
        let log_config = topic_config::log_config(&self.inner.config, &topic.overrides);
        for partition in &topic.partitions {
            partition.set_config(log_config.clone()).await;
        }
        Ok(())
    }

    /// Deletes a topic and its data.
    pub async fn delete(&self, name: &str) -> Result<Uuid, BrokerError> {
        if let Some(cluster) = &self.cluster {
            return self.delete_in_cluster(cluster, name).await;
        }
        let name = name.to_string();
        self.blocking(move |registry| registry.delete(&name)).await
    }

    /// Makes every partition durable as the broker stops, recording a clean shutdown of
    /// each local log so that the next start reads none of their batches.
    pub async fn close_all(&self) {
        use futures_util::stream::{self, StreamExt};
        let partitions: Vec<(Arc<Topic>, Arc<Partition>)> = self
            .all()
            .into_iter()
            .flat_map(|topic| {
                let partitions = topic.partitions.clone();
                partitions.into_iter().map(move |p| (Arc::clone(&topic), p))
            })
            .collect();
        // A few at a time: each waits mostly on fsyncs.
        stream::iter(partitions)
            .for_each_concurrent(16, |(topic, partition)| async move {
                if let Err(e) = partition.close().await {
                    tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "closing the partition failed");
                }
            })
            .await;
    }

    /// The broker configuration topics default to.
    pub fn broker_config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// Runs a change on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        change: impl FnOnce(&Registry) -> Result<T, BrokerError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        let registry = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || change(&registry))
            .await
            .unwrap_or_else(|error| Err(BrokerError::Storage(error.to_string())))
    }
}

impl Registry {
    fn new(config: &BrokerConfig) -> Registry {
        Registry {
            config: config.clone(),
            topics: RwLock::new(Topics::default()),
            image: RwLock::new(SharedTopics::default()),
            changing: Mutex::new(()),
            applying: tokio::sync::Mutex::new(()),
        }
    }

    /// Every partition led by this broker, as on a single node.
    fn local_leaders(&self, partitions: usize) -> Vec<Leader> {
        let leader = Leader {
            node_id: self.config.node_id,
            epoch: 0,
        };
        vec![leader; partitions]
    }

    fn validate_new(
        &self,
        name: &str,
        partitions: i32,
        overrides: &TopicOverrides,
    ) -> Result<(), BrokerError> {
        validate_topic_name(name)?;
        let topics = self.read();
        if topics.by_name.contains_key(name) {
            return Err(BrokerError::TopicAlreadyExists(name.to_string()));
        }
        let collision_key = name.replace('.', "_");
        if let Some(other) = topics
            .by_name
            .keys()
            .find(|t| t.replace('.', "_") == collision_key)
        {
            return Err(BrokerError::InvalidTopic(format!(
                "topic '{name}' collides with existing topic '{other}'"
            )));
        }
        if partitions < 1 {
            return Err(BrokerError::InvalidPartitions(
                "number of partitions must be larger than 0".to_string(),
            ));
        }
        for (key, value) in overrides {
            topic_config::validate(key, value).map_err(BrokerError::InvalidConfig)?;
        }
        Ok(())
    }

    fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: TopicOverrides,
    ) -> Result<Arc<Topic>, BrokerError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        self.validate_new(name, partitions, &overrides)?;
        let id = Uuid::new_v4();
        self.save_topic(name, id, partitions, &overrides)?;
        let log_config = topic_config::log_config(&self.config, &overrides);
        let opened = (0..partitions)
            .map(|p| self.new_partition(name, p, log_config.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            leaders: self.local_leaders(opened.len()),
            partitions: opened,
            overrides,
        });
        self.write().insert(Arc::clone(&topic));
        self.refresh_image();
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        check_growth(current, count)?;
        if validate_only {
            return Ok(());
        }
        self.save_topic(name, topic.id, count, &topic.overrides)?;
        let log_config = topic_config::log_config(&self.config, &topic.overrides);
        let mut partitions = topic.partitions.clone();
        for p in current..count {
            partitions.push(self.new_partition(name, p, log_config.clone())?);
        }
        self.write().insert(Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            leaders: self.local_leaders(partitions.len()),
            partitions,
            overrides: topic.overrides.clone(),
        }));
        self.refresh_image();
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Stores a topic's new overrides; returns the topic as it now is.
    fn set_overrides(
        &self,
        name: &str,
        overrides: TopicOverrides,
    ) -> Result<Arc<Topic>, BrokerError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        self.save_topic(name, topic.id, topic.partitions.len() as i32, &overrides)?;
        let changed = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            leaders: topic.leaders.clone(),
            overrides,
        });
        self.write().insert(Arc::clone(&changed));
        Ok(changed)
    }

    fn delete(&self, name: &str) -> Result<Uuid, BrokerError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let topic = self
            .write()
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        self.refresh_image();
        fs::remove_file(self.topic_file(topic.id))?;
        for partition in &topic.partitions {
            let dir = self.partition_dir(name, partition.index);
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove partition directory");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// Rebuilds the image after a change.
    fn refresh_image(&self) {
        let by_name = self
            .read()
            .by_name
            .values()
            .map(|t| {
                let image = TopicImage {
                    id: t.id,
                    partitions: t.partitions.len() as i32,
                };
                (t.name.clone(), image)
            })
            .collect();
        *self.image.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(TopicsImage::new(by_name));
    }

    fn open_partition(
        &self,
        name: &str,
        index: i32,
        config: partita_log::LogConfig,
    ) -> Result<Arc<Partition>, BrokerError> {
        let storage = LocalPartition::open(&self.partition_dir(name, index), config)?;
        Ok(Arc::new(Partition::new(index, Arc::new(storage))))
    }

    /// Opens a partition that must start empty: a directory left behind by a topic of the
    /// same name whose deletion was interrupted is removed first.
    fn new_partition(
        &self,
        name: &str,
        index: i32,
        config: partita_log::LogConfig,
    ) -> Result<Arc<Partition>, BrokerError> {
        let dir = self.partition_dir(name, index);
        if dir.exists() {
            tracing::warn!(dir = %dir.display(), "removing a stale partition directory");
            fs::remove_dir_all(&dir)?;
        }
        self.open_partition(name, index, config)
    }

    fn read_topic_file(&self, path: &Path) -> Result<TopicFile, BrokerError> {
        let text = fs::read_to_string(path)?;
        let mut id = None;
        let mut name = None;
        let mut partitions = None;
        let mut overrides = TopicOverrides::new();
        for line in text.lines().map(str::trim) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "topic.name" => name = Some(value.to_string()),
                "topic.id" => id = Uuid::parse_str(value).ok(),
                "partitions" => partitions = value.parse::<i32>().ok(),
                _ => {
                    if let Some(config) = key.strip_prefix("config.") {
                        overrides.insert(config.to_string(), value.to_string());
                    }
                }
            }
        }
        let (Some(name), Some(id), Some(count)) = (name, id, partitions) else {
            return Err(BrokerError::Storage(format!(
                "unreadable topic file {}",
                path.display()
            )));
        };
        Ok(TopicFile {
            log_config: topic_config::log_config(&self.config, &overrides),
            name,
            id,
            partitions: count.max(0),
            overrides,
        })
    }

    fn save_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        overrides: &TopicOverrides,
    ) -> Result<(), BrokerError> {
        let mut text = format!("topic.name={name}\ntopic.id={id}\npartitions={partitions}\n");
        for (key, value) in overrides {
            text.push_str(&format!("config.{key}={value}\n"));
        }
        partita_log::files::replace(&self.topic_file(id), text.as_bytes())?;
        Ok(())
    }

    fn meta_dir(&self) -> PathBuf {
        self.config.data_dir.join(".topics")
    }

    fn topic_file(&self, id: Uuid) -> PathBuf {
        self.meta_dir().join(format!("{id}.properties"))
    }

    fn partition_dir(&self, name: &str, index: i32) -> PathBuf {
        self.config.data_dir.join(format!("{name}-{index}"))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Topics> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Topics> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Kafka's rules for topic names: 1 to 249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    let invalid = |why: String| Err(BrokerError::InvalidTopic(why));
    if name.is_empty() {
        return invalid("topic name is illegal, it can't be empty".to_string());
    }
    if name == "." || name == ".." {
        return invalid("topic name cannot be \".\" or \"..\"".to_string());
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return invalid(format!(
            "topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// A topic may only grow, as in Kafka.
pub(super) fn check_growth(current: i32, count: i32) -> Result<(), BrokerError> {
    if count <= current {
        return Err(BrokerError::InvalidPartitions(format!(
            "topic currently has {current} partitions, which is higher than or equal to the requested {count}"
        )));
    }
    Ok(())
}

/// What a topic's file in the metadata directory says.
struct TopicFile {
    name: String,
    id: Uuid,
    partitions: i32,
    overrides: TopicOverrides,
    log_config: partita_log::LogConfig,
}

/// `work` done on every job on a few threads, the results in the jobs' order; the first error
/// (in any order) is returned.
fn in_parallel<J: Sync, T: Send>(
    jobs: &[J],
    work: impl Fn(&J) -> Result<T, BrokerError> + Sync,
) -> Result<Vec<T>, BrokerError> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
        * 2;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(jobs.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else {
                            return Ok(done);
                        };
                        done.push((i, work(job)?));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a partition opener panicked"))
            .collect::<Result<Vec<Vec<(usize, T)>>, BrokerError>>()
    })?;
    let mut done: Vec<(usize, T)> = done.into_iter().flatten().collect();
    done.sort_unstable_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, result)| result).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &Path) -> TopicRegistry {
        let config = BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        };
        TopicRegistry::open(&config).unwrap()
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("with space").is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    #[tokio::test]
    async fn dot_and_underscore_names_collide() {
        let dir = tempfile::tempdir().unwrap();
        let topics = registry(dir.path());
        topics
            .create("a.b", 1, TopicOverrides::new())
            .await
            .unwrap();
        let err = topics
            .create("a_b", 1, TopicOverrides::new())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, BrokerError::InvalidTopic(_)), "{err:?}");
    }

    #[tokio::test]
    async fn topics_survive_reopening_with_id_partitions_and_configs() {
        let dir = tempfile::tempdir().unwrap();
        let mut overrides = TopicOverrides::new();
        overrides.insert("retention.ms".into(), "60000".into());
        let id = {
            let topics = registry(dir.path());
            let id = topics
                .create("events", 2, overrides.clone())
                .await
                .unwrap()
                .id;
            topics.add_partitions("events", 3, false).await.unwrap();
            id
        };
        let topics = registry(dir.path());
        let topic = topics.get("events").unwrap();
        assert_eq!(topic.id, id);
        assert_eq!(topic.partitions.len(), 3);
        assert_eq!(topic.overrides, overrides);
        topics.delete("events").await.unwrap();
        assert!(registry(dir.path()).get("events").is_none());
    }
}
