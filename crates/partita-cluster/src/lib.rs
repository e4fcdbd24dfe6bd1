#![warn(missing_docs)]
//! Cluster mode: several stateless Partita brokers over an object store and PostgreSQL.
//!
//! Record data lives in the object store (`storage.url`), in objects that gather the batches
//! of many partitions; PostgreSQL (`cluster.metadata.url`) holds everything that must be
//! agreed on: the live brokers, topics and partitions, who leads each partition and at which
//! epoch, the offsets of each partition and where its batches are, idempotent producers'
//! state. No broker keeps state of its own: any broker can take over any partition by
//! loading it from PostgreSQL.
//!
//! [`Cluster::start`] connects to both, registers the broker, opens its presence session and
//! starts its background tasks: the heartbeat (which also notices new catalog versions and
//! spreads leadership when brokers come and go), the follower of announced catalog changes,
//! the flusher, merges, and the collection of unreferenced objects.

mod acls;
mod catalog;
mod compaction;
pub mod config;
mod credentials;
mod db;
mod error;
mod flush;
mod maintenance;
mod members;
mod merge;
mod partition;
mod presence;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use partita_log::LogConfig;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use uuid::Uuid;

pub use config::ClusterConfig;
pub use credentials::{bootstrap as bootstrap_scram_credentials, StoredScram};
pub use error::ClusterError;
pub use members::NodeAddress;
pub use partition::ClusterPartition;
pub use view::{BrokerInfo, ClusterView, Endpoint, PartitionInfo, TopicInfo};

use db::Db;
use flush::FlushItem;
use objects::Objects;
use partition::Core;

mod objects;

/// Batches waiting for the flusher, at most.
const FLUSH_QUEUE: usize = 16_384;

/// A partition of a topic, by topic id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
}

/// Object data kept in memory for fetches, by object and position.
type ReadCache = quick_cache::sync::Cache<(Uuid, u64), Bytes, ByteWeight>;

/// Weighs cached data by its size.
#[derive(Clone)]
struct ByteWeight;

impl quick_cache::Weighter<(Uuid, u64), Bytes> for ByteWeight {
    fn weight(&self, _key: &(Uuid, u64), value: &Bytes) -> u64 {
        value.len().max(1) as u64
    }
}

/// What a broker's cluster tasks share.
pub(crate) struct Shared {
    config: ClusterConfig,
    node: NodeAddress,
    incarnation: Uuid,
    db: Db,
    objects: Objects,
    cache: ReadCache,
    cluster_id: String,
    view: watch::Sender<Arc<ClusterView>>,
    flusher: mpsc::Sender<FlushItem>,
    /// Every partition this broker has an object for.
    partitions: Mutex<HashMap<PartitionKey, Weak<Core>>>,
    /// When the catalog version was last read for [`Cluster::newer_view`].
    version_checked: tokio::sync::Mutex<Instant>,
    /// Until when this broker counts itself live: its last successful heartbeat plus the
    /// session timeout. Past it, it leads nothing, whatever its view says.
    live_until: Mutex<Instant>,
    /// Told of every catalog change another broker announces.
    catalog_changed: Arc<tokio::sync::Notify>,
    /// Held while a view loads, so that views are published in the order they were loaded
    /// and an older one never replaces a newer.
    loading: tokio::sync::Mutex<()>,
    /// Whether this broker serves its partitions, as last logged.
    serving: AtomicBool,
}

impl Shared {
    /// Whether this broker counts itself live now (see `live_until`).
    fn is_live(&self) -> bool {
        *self.live_until.lock().unwrap_or_else(|p| p.into_inner()) > Instant::now()
    }

    /// Stops leading anything now, until a heartbeat finds this broker live again.
    fn stop_serving(&self) {
        *self.live_until.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.serving.store(false, AtomicOrdering::SeqCst);
        let view = self.view.borrow().clone();
        apply_view(self, &view);
    }
}

/// This broker's membership of a cluster.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    /// Connects to PostgreSQL and the object store, registers this broker and starts its
    /// background tasks. Any failure is one line saying what to fix.
    pub async fn start(config: ClusterConfig, node: NodeAddress) -> Result<Cluster, ClusterError> {
        let (Some(storage_url), Some(metadata_url)) =
            (config.storage_url.clone(), config.metadata_url.clone())
        else {
            return Err(ClusterError::Startup(
                config.enabled().err().unwrap_or_default(),
            ));
        };
        let db = Db::connect(&metadata_url, node.node_id).await?;
        let objects = Objects::open(&storage_url).await?;
        let session = config.session_timeout_ms as i64;
        let incarnation = members::register(&db, &node, session).await?;
        let cluster_id: String = db
            .client()
            .await?
            .query_one("SELECT cluster_id FROM partita_cluster", &[])
            .await?
            .get(0);
        let view = view::load(&db, session).await?;
        let (flusher, flush_queue) = mpsc::channel(FLUSH_QUEUE);
        let shared = Arc::new(Shared {
            cache: ReadCache::with_weighter(
                (config.cache_max_bytes / 65_536).max(16) as usize,
                config.cache_max_bytes,
                ByteWeight,
            ),
            live_until: Mutex::new(
                Instant::now() + Duration::from_millis(config.session_timeout_ms),
            ),
            config,
            node,
            incarnation,
            db,
            objects,
            cluster_id,
            view: watch::channel(Arc::new(view)).0,
            flusher,
            partitions: Mutex::new(HashMap::new()),
            version_checked: tokio::sync::Mutex::new(Instant::now()),
            catalog_changed: Arc::new(tokio::sync::Notify::new()),
            loading: tokio::sync::Mutex::new(()),
            serving: AtomicBool::new(true),
        });
        let presence = presence::open(&shared, Arc::clone(&shared.catalog_changed))
            .await
            .map_err(|error| {
                ClusterError::Startup(format!(
                    "cannot open this broker's presence session in PostgreSQL: {error}"
                ))
            })?;
        tokio::spawn(presence::keep(
            Arc::downgrade(&shared),
            presence,
            Arc::clone(&shared.catalog_changed),
        ));
        tokio::spawn(follow_catalog(Arc::downgrade(&shared)));
        tokio::spawn(watchdog(Arc::downgrade(&shared)));
        tokio::spawn(flush::run(Arc::clone(&shared), flush_queue));
        tokio::spawn(heartbeats(Arc::downgrade(&shared)));
        tokio::spawn(collections(Arc::downgrade(&shared)));
        tokio::spawn(merges(Arc::downgrade(&shared)));
        let cluster = Cluster { shared };
        // Take a share of the partitions now rather than at the first live broker's next
        // heartbeat.
        reassign(&cluster.shared).await;
        cluster.refresh().await?;
        tracing::info!(
            node_id = cluster.shared.node.node_id,
            brokers = cluster.view().brokers.len(),
            "joined the cluster"
        );
        Ok(cluster)
    }

    /// The cluster id, the same on every broker.
    pub fn cluster_id(&self) -> &str {
        &self.shared.cluster_id
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.shared.node.node_id
    }

    /// The latest view of the cluster.
    pub fn view(&self) -> Arc<ClusterView> {
        self.shared.view.borrow().clone()
    }

    /// Tells of every new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.shared.view.subscribe()
    }

    /// Loads the view now, rather than at the next heartbeat that sees a change.
    pub async fn refresh(&self) -> Result<Arc<ClusterView>, ClusterError> {
        refresh(&self.shared).await
    }

    /// A view at least as new as the catalog when this is called: asks PostgreSQL for the
    /// catalog version (one small query, shared by callers that come within a few
    /// milliseconds of each other) and loads the view if it moved. `None` when the view in
    /// hand is current. For answers that must reflect changes made through other brokers
    /// (Metadata).
    pub async fn newer_view(&self) -> Result<Option<Arc<ClusterView>>, ClusterError> {
        let asked = Instant::now();
        let mut last = self.shared.version_checked.lock().await;
        if *last >= asked {
            return Ok(None);
        }
        let client = self.shared.db.client().await?;
        let version: i64 = client
            .query_one("SELECT catalog_version FROM partita_cluster", &[])
            .await?
            .get(0);
        drop(client);
        *last = Instant::now();
        if version == self.shared.view.borrow().version {
            return Ok(None);
        }
        Ok(Some(refresh(&self.shared).await?))
    }

    /// The storage of one partition (the same object for every caller).
    pub fn partition(&self, key: PartitionKey, config: LogConfig) -> ClusterPartition {
        let mut partitions = self
            .shared
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(core) = partitions.get(&key).and_then(Weak::upgrade) {
            return ClusterPartition { core };
        }
        let core = Arc::new(Core::new(key, Arc::clone(&self.shared), config));
        partitions.retain(|_, core| core.strong_count() > 0);
        partitions.insert(key, Arc::downgrade(&core));
        drop(partitions);
        set_leadership(&self.shared, &core, &self.view());
        ClusterPartition { core }
    }

    /// Creates a topic; the view includes it when this returns.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<Uuid, ClusterError> {
        let session = self.shared.config.session_timeout_ms as i64;
        let id = catalog::create_topic(&self.shared.db, name, partitions, configs, session).await?;
        self.refresh().await?;
        Ok(id)
    }

    /// Grows a topic to `count` partitions; the view includes them when this returns.
    pub async fn add_partitions(&self, name: &str, count: i32) -> Result<(), ClusterError> {
        let session = self.shared.config.session_timeout_ms as i64;
        catalog::add_partitions(&self.shared.db, name, count, session).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Replaces a topic's config overrides.
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ClusterError> {
        catalog::set_configs(&self.shared.db, name, configs).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Deletes a topic; its data goes with the next collection of objects.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, ClusterError> {
        let id = catalog::delete_topic(&self.shared.db, name).await?;
        self.refresh().await?;
        Ok(id)
    }

    /// A producer id unique in the cluster.
    pub async fn next_producer_id(&self) -> Result<i64, ClusterError> {
        catalog::next_producer_id(&self.shared.db).await
    }

    /// The version of the ACLs, moved by every change.
    pub async fn acl_version(&self) -> Result<i64, ClusterError> {
        acls::version(&self.shared.db).await
    }

    /// The ACLs (as the broker stored them) and their version.
    pub async fn acls(&self) -> Result<(i64, Vec<serde_json::Value>), ClusterError> {
        acls::load(&self.shared.db).await
    }

    /// Replaces the ACLs with what `change` makes of them, one change at a time across the
    /// cluster; returns what `change` returned.
    pub async fn update_acls<T>(
        &self,
        change: impl FnOnce(Vec<serde_json::Value>) -> (Vec<serde_json::Value>, T),
    ) -> Result<T, ClusterError> {
        acls::update(&self.shared.db, change).await
    }

    /// A user's SCRAM credential for one mechanism (KIP-554's number), read now.
    pub async fn scram_credential(
        &self,
        name: &str,
        mechanism: i8,
    ) -> Result<Option<StoredScram>, ClusterError> {
        credentials::get(&self.shared.db, name, mechanism).await
    }

    /// Every SCRAM credential's user, mechanism and iterations.
    pub async fn scram_credentials(&self) -> Result<Vec<(String, i8, i32)>, ClusterError> {
        credentials::list(&self.shared.db).await
    }

    /// Inserts or replaces a SCRAM credential.
    pub async fn put_scram_credential(&self, credential: &StoredScram) -> Result<(), ClusterError> {
        credentials::put(&self.shared.db, credential).await
    }

    /// Deletes a SCRAM credential; whether there was one.
    pub async fn delete_scram_credential(
        &self,
        name: &str,
        mechanism: i8,
    ) -> Result<bool, ClusterError> {
        credentials::delete(&self.shared.db, name, mechanism).await
    }

    /// Leaves the cluster at once: the other brokers take this one's partitions without
    /// waiting for its session to expire.
    pub async fn leave(&self) {
        let shared = &self.shared;
        if let Err(error) =
            members::deregister(&shared.db, shared.node.node_id, shared.incarnation).await
        {
            tracing::warn!(%error, "could not leave the cluster; the others wait for the session timeout");
        }
    }
}

/// Loads the view and applies it to every partition.
async fn refresh(shared: &Arc<Shared>) -> Result<Arc<ClusterView>, ClusterError> {
    let _loading = shared.loading.lock().await;
    let view = Arc::new(view::load(&shared.db, shared.config.session_timeout_ms as i64).await?);
    apply_view(shared, &view);
    shared.view.send_replace(Arc::clone(&view));
    Ok(view)
}

/// Leads the partitions the view gives this broker, and only those.
fn apply_view(shared: &Shared, view: &ClusterView) {
    let cores: Vec<Arc<Core>> = shared
        .partitions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter_map(Weak::upgrade)
        .collect();
    for core in cores {
        set_leadership(shared, &core, view);
    }
}

fn set_leadership(shared: &Shared, core: &Core, view: &ClusterView) {
    let live = shared.is_live();
    let epoch = view
        .topics
        .iter()
        .find(|t| t.id == core.key.topic_id)
        .and_then(|t| t.partitions.get(core.key.partition as usize))
        .filter(|p| live && p.leader == shared.node.node_id)
        .map(|p| p.leader_epoch);
    core.set_leadership(epoch);
}

/// Heartbeats until the broker is gone; reloads the view when the catalog moves, spreads
/// leadership when the live brokers change, and stops leading when heartbeats fail for a
/// whole session.
async fn heartbeats(shared: Weak<Shared>) {
    let mut last_live: Vec<i32> = Vec::new();
    let mut last_reassign = Instant::now();
    let mut reassigned_at_version = -1;
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let interval = Duration::from_millis(shared.config.heartbeat_interval_ms);
        let session = Duration::from_millis(shared.config.session_timeout_ms);
        let started = Instant::now();
        let beat = tokio::time::timeout(
            interval.max(Duration::from_millis(200)) * 2,
            members::heartbeat(
                &shared.db,
                shared.node.node_id,
                shared.incarnation,
                session.as_millis() as i64,
            ),
        )
        .await;
        match beat {
            Ok(Ok(Some(beat))) => {
                // Live by the same condition the others judge it by (its presence session
                // too).
                if beat.live.contains(&shared.node.node_id) {
                    *shared.live_until.lock().unwrap_or_else(|p| p.into_inner()) =
                        started + session;
                }
                // The first live broker spreads leadership whenever the live brokers or the
                // catalog changed (a broker that came and went between two heartbeats may
                // have taken partitions), and every 30 s whatever happened.
                let first = beat.live.first() == Some(&shared.node.node_id);
                if first
                    && (beat.live != last_live
                        || beat.catalog_version != reassigned_at_version
                        || last_reassign.elapsed() > Duration::from_secs(30))
                {
                    if reassign(&shared).await {
                        last_reassign = Instant::now();
                        reassigned_at_version = beat.catalog_version;
                    } else {
                        reassigned_at_version = -1;
                    }
                }
                if beat.catalog_version != shared.view.borrow().version || beat.live != last_live {
                    if let Err(error) = refresh(&shared).await {
                        tracing::warn!(%error, "could not reload the cluster view");
                    }
                }
                last_live = beat.live;
            }
            Ok(Ok(None)) => {
                tracing::error!(
                    node_id = shared.node.node_id,
                    "another broker registered with this node.id; this one leads nothing"
                );
                *shared.live_until.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            }
            Ok(Err(error)) => tracing::warn!(%error, "heartbeat failed"),
            Err(_) => tracing::warn!("heartbeat timed out"),
        }
        if shared.is_live() && !shared.serving.swap(true, AtomicOrdering::SeqCst) {
            tracing::info!("heartbeats reach PostgreSQL again: serving partitions");
        }
        let view = shared.view.borrow().clone();
        apply_view(&shared, &view);
        drop(shared);
        tokio::time::sleep_until(started + interval).await;
    }
}

/// Stops serving the moment this broker's session lapses (no heartbeat reached PostgreSQL
/// for `broker.session.timeout.ms`, or its presence session ended), before any other broker
/// can count it gone and take its partitions. Partitions already refuse work from that
/// moment (they check the same deadline); this makes it known and drops what they hold.
async fn watchdog(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let until = *strong.live_until.lock().unwrap_or_else(|p| p.into_inner());
        drop(strong);
        tokio::time::sleep_until(until.max(Instant::now() + Duration::from_millis(50))).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        if !strong.is_live() && strong.serving.swap(false, AtomicOrdering::SeqCst) {
            tracing::warn!(
                "no heartbeat reached PostgreSQL for broker.session.timeout.ms: stopped serving its partitions"
            );
            let view = strong.view.borrow().clone();
            apply_view(&strong, &view);
        }
    }
}

/// Reloads the view whenever another broker announces a catalog change (a topic, a
/// partition, a leader moved), rather than at the next heartbeat.
async fn follow_catalog(shared: Weak<Shared>) {
    loop {
        let Some(changed) = shared.upgrade().map(|s| Arc::clone(&s.catalog_changed)) else {
            return;
        };
        changed.notified().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(error) = refresh(&shared).await {
            tracing::debug!(%error, "could not reload the cluster view; the next heartbeat will");
        }
    }
}

/// Spreads partition leadership over the live brokers; false if that failed.
async fn reassign(shared: &Shared) -> bool {
    let session = shared.config.session_timeout_ms as i64;
    // Bounded well within the session, as it runs between two heartbeats of this broker.
    let bound = Duration::from_millis(shared.config.session_timeout_ms / 2);
    let reassigned = tokio::time::timeout(bound, members::reassign_leaders(&shared.db, session));
    match reassigned.await {
        Ok(Ok(0)) => true,
        Ok(Ok(moved)) => {
            tracing::info!(partitions = moved, "partition leaders moved");
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not spread partition leadership");
            false
        }
        Err(_) => {
            tracing::warn!("could not spread partition leadership in time; trying again");
            false
        }
    }
}

/// Collects unreferenced objects, from the first live broker only.
async fn collections(shared: Weak<Shared>) {
    let mut last_sweep = Instant::now();
    loop {
        let every = match shared.upgrade() {
            Some(shared) => maintenance::collect_every(&shared),
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let view = shared.view.borrow().clone();
        if view.brokers.first().map(|b| b.node_id) != Some(shared.node.node_id) {
            continue;
        }
        match maintenance::collect_objects(&shared).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(objects = n, "deleted objects no longer referred to"),
            Err(error) => tracing::warn!(%error, "could not collect unreferenced objects"),
        }
        if last_sweep.elapsed() > Duration::from_secs(600) {
            last_sweep = Instant::now();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            match maintenance::sweep_orphans(&shared, now_ms).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(objects = n, "deleted objects that were never recorded"),
                Err(error) => tracing::warn!(%error, "could not sweep unrecorded objects"),
            }
        }
    }
}

/// Merges the small objects of the partitions this broker leads, every half
/// `storage.merge.age.ms`.
async fn merges(shared: Weak<Shared>) {
    loop {
        let every = match shared.upgrade() {
            Some(shared) => Duration::from_millis(shared.config.merge_age_ms / 2)
                .max(Duration::from_millis(500)),
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let age = shared.config.merge_age_ms;
        let led: Vec<Arc<Core>> = shared
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .filter(|core| core.is_leader())
            .collect();
        drop(shared);
        for core in led {
            match merge::merge(&core, age).await {
                // Paced, so that merging a backlog never crowds out produce and fetch.
                Ok(bytes) => {
                    let pause = bytes as f64 / merge::MERGE_BYTES_PER_SECOND as f64;
                    tokio::time::sleep(Duration::from_secs_f64(pause)).await;
                }
                Err(error) => {
                    tracing::debug!(%error, partition = core.key.partition, "could not merge; trying again later")
                }
            }
        }
    }
}
