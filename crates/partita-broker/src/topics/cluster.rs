//! Topics in cluster mode: kept in PostgreSQL, changed through any broker, and mirrored here
//! from each new view of the cluster (with who leads each partition).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use partita_cluster::{Cluster, ClusterError, ClusterView, PartitionKey, TopicInfo};
use uuid::Uuid;

use super::{check_growth, Leader, Registry, Topic, TopicRegistry, Topics};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::topic_config::{self, TopicOverrides};

impl TopicRegistry {
    /// The topics of a cluster, kept up to date with its views.
    pub async fn cluster(config: &BrokerConfig, cluster: Cluster) -> TopicRegistry {
        let registry = TopicRegistry {
            inner: Arc::new(Registry::new(config)),
            cluster: Some(cluster.clone()),
        };
        apply_view(&registry.inner, &cluster, &cluster.view()).await;
        tokio::spawn(follow_views(Arc::downgrade(&registry.inner), cluster));
        registry
    }

    /// Catches up with changes made through other brokers (cluster mode; nothing on a single
    /// node): for answers such as Metadata that must show them.
    pub async fn catch_up(&self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        match cluster.newer_view().await {
            Ok(Some(view)) => apply_view(&self.inner, cluster, &view).await,
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "could not check for a newer cluster view"),
        }
    }

    pub(super) async fn create_in_cluster(
        &self,
        cluster: &Cluster,
        name: &str,
        partitions: i32,
        overrides: TopicOverrides,
    ) -> Result<Arc<Topic>, BrokerError> {
        self.inner.validate_new(name, partitions, &overrides)?;
        if let Err(error) = cluster.create_topic(name, partitions, &overrides).await {
            // Created through another broker meanwhile: look at it now rather than at the
            // next view.
            if matches!(error, ClusterError::TopicExists(_)) {
                if let Ok(view) = cluster.refresh().await {
                    apply_view(&self.inner, cluster, &view).await;
                }
            }
            return Err(broker_error(error));
        }
        apply_view(&self.inner, cluster, &cluster.view()).await;
        tracing::info!(topic = name, partitions, "created topic");
        self.get(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))
    }

    pub(super) async fn add_partitions_in_cluster(
        &self,
        cluster: &Cluster,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let topic = self
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_string()))?;
        check_growth(topic.partitions.len() as i32, count)?;
        if validate_only {
            return Ok(());
        }
        cluster
            .add_partitions(name, count)
            .await
            .map_err(broker_error)?;
        apply_view(&self.inner, cluster, &cluster.view()).await;
        Ok(())
    }

    pub(super) async fn set_overrides_in_cluster(
        &self,
        cluster: &Cluster,
        name: &str,
        overrides: TopicOverrides,
    ) -> Result<(), BrokerError> {
        cluster
            .set_topic_configs(name, &overrides)
            .await
            .map_err(broker_error)?;
        apply_view(&self.inner, cluster, &cluster.view()).await;
        Ok(())
    }

    pub(super) async fn delete_in_cluster(
        &self,
        cluster: &Cluster,
        name: &str,
    ) -> Result<Uuid, BrokerError> {
        let id = cluster.delete_topic(name).await.map_err(broker_error)?;
        apply_view(&self.inner, cluster, &cluster.view()).await;
        tracing::info!(topic = name, "deleted topic");
        Ok(id)
    }
}

/// Applies every new view until the registry is gone.
async fn follow_views(registry: Weak<Registry>, cluster: Cluster) {
    let mut views = cluster.subscribe();
    while views.changed().await.is_ok() {
        let view = views.borrow_and_update().clone();
        let Some(registry) = registry.upgrade() else {
            return;
        };
        apply_view(&registry, &cluster, &view).await;
    }
}

/// Makes the registry's topics those of `view`: partitions keep their storage objects,
/// leaders and configs follow the view.
async fn apply_view(registry: &Registry, cluster: &Cluster, view: &ClusterView) {
    let _applying = registry.applying.lock().await;
    let before: HashMap<Uuid, Arc<Topic>> = registry.read().by_id.clone();
    let mut topics = Topics::default();
    let mut reconfigured = Vec::new();
    for info in &view.topics {
        let old = before.get(&info.id);
        let topic = topic_from_view(registry, cluster, view, info, old);
        if old.is_some_and(|old| old.overrides != topic.overrides) {
            reconfigured.push(Arc::clone(&topic));
        }
        topics.insert(topic);
    }
    *registry.write() = topics;
    registry.refresh_image();
    for topic in reconfigured {
        let config = topic_config::log_config(&registry.config, &topic.overrides);
        for partition in &topic.partitions {
            partition.set_config(config.clone()).await;
        }
    }
}

fn topic_from_view(
    registry: &Registry,
    cluster: &Cluster,
    view: &ClusterView,
    info: &TopicInfo,
    old: Option<&Arc<Topic>>,
) -> Arc<Topic> {
    let leaders: Vec<Leader> = info
        .partitions
        .iter()
        .map(|p| Leader {
            node_id: if view.is_live(p.leader) { p.leader } else { -1 },
            epoch: p.leader_epoch,
        })
        .collect();
    if let Some(old) = old {
        if old.leaders == leaders && old.overrides == info.configs && old.name == info.name {
            return Arc::clone(old);
        }
    }
    let config = topic_config::log_config(&registry.config, &info.configs);
    let partitions = (0..info.partitions.len() as i32)
        .map(|index| match old.and_then(|t| t.partition(index)) {
            Some(partition) => Arc::clone(partition),
            None => {
                let key = PartitionKey {
                    topic_id: info.id,
                    partition: index,
                };
                let storage = cluster.partition(key, config.clone());
                Arc::new(Partition::new(index, Arc::new(storage)))
            }
        })
        .collect();
    Arc::new(Topic {
        name: info.name.clone(),
        id: info.id,
        partitions,
        overrides: info.configs.clone(),
        leaders,
    })
}

/// The broker's error for a cluster catalog error.
fn broker_error(error: ClusterError) -> BrokerError {
    match error {
        ClusterError::TopicExists(name) => BrokerError::TopicAlreadyExists(name),
        ClusterError::TopicCollides(name, other) => BrokerError::InvalidTopic(format!(
            "topic '{name}' collides with existing topic '{other}'"
        )),
        ClusterError::UnknownTopic(name) => BrokerError::UnknownTopic(name),
        ClusterError::InvalidPartitions(reason) => BrokerError::InvalidPartitions(reason),
        other => BrokerError::Storage(other.to_string()),
    }
}
