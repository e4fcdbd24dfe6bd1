//! The PostgreSQL side: a connection pool, and the schema every broker agrees on.
//!
//! Tables (all prefixed `partita_`):
//!
//! - `cluster`: one row, the cluster id and the catalog version, bumped by every change to
//!   topics, partitions or leaders so that brokers know when to reload;
//! - `brokers`: one row per broker ever started, with its address, last heartbeat and the
//!   key of the lock its presence session holds;
//! - `topics`, `partitions`: names, ids, configs, leaders with their epochs, and the offsets
//!   of each partition (`next_offset` is the high watermark);
//! - `objects`: every object of record data in the object store;
//! - `batches`: which offsets of which partition are where in which object;
//! - `producers`: idempotent producers' last batches, per partition;
//! - `scram_credentials`: SCRAM users, salted and hashed (crate::credentials);
//! - `acls`: every ACL, in one row with a version (crate::acls);
//! - the sequence `producer_ids`.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::redact;
use crate::error::{describe_pg, ClusterError};

/// The schema version this code writes and reads.
const SCHEMA_VERSION: i32 = 1;

/// Key of the advisory lock held while the schema is created or checked.
const SCHEMA_LOCK: i64 = 0x7061_7274_6974_6101;

/// How long one metadata operation may take before it counts as failed.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of every session, so that a broker which vanishes without closing its
/// connections (a machine lost, a network cut) cannot hold what the others need: PostgreSQL
/// itself ends a session whose client no longer answers (TCP keepalives and a send timeout,
/// about ten seconds, which also releases a presence lock), and ends a transaction left open
/// between two statements for five seconds, which would otherwise keep its row locks (a
/// partition's row, the leaders lock) until the kernel gave up on the socket, hours later.
/// No transaction of a broker waits on anything but the database between its statements. A
/// statement waits at most ten seconds for a lock.
const SESSION_SETTINGS: &str = "-c idle_in_transaction_session_timeout=5000 \
     -c tcp_keepalives_idle=3 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 \
     -c tcp_user_timeout=10000 -c lock_timeout=10000";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS partita_cluster (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id text NOT NULL,
    schema_version int NOT NULL,
    catalog_version bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS partita_brokers (
    node_id int PRIMARY KEY,
    host text NOT NULL,
    port int NOT NULL,
    rack text,
    incarnation uuid NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS partita_topics (
    topic_id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    collision_name text NOT NULL UNIQUE,
    configs jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS partita_partitions (
    topic_id uuid NOT NULL REFERENCES partita_topics ON DELETE CASCADE,
    partition int NOT NULL,
    leader int NOT NULL,
    leader_epoch int NOT NULL,
    log_start_offset bigint NOT NULL DEFAULT 0,
    next_offset bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);
CREATE TABLE IF NOT EXISTS partita_objects (
    object_id uuid PRIMARY KEY,
    size bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS partita_batches (
    topic_id uuid NOT NULL,
    partition int NOT NULL,
    base_offset bigint NOT NULL,
    last_offset bigint NOT NULL,
    object_id uuid NOT NULL REFERENCES partita_objects,
    position bigint NOT NULL,
    size int NOT NULL,
    max_timestamp bigint NOT NULL,
    merged boolean NOT NULL DEFAULT false,
    PRIMARY KEY (topic_id, partition, base_offset),
    FOREIGN KEY (topic_id, partition) REFERENCES partita_partitions ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS partita_batches_object ON partita_batches (object_id);
CREATE TABLE IF NOT EXISTS partita_producers (
    topic_id uuid NOT NULL,
    partition int NOT NULL,
    producer_id bigint NOT NULL,
    producer_epoch smallint NOT NULL,
    batches bytea NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id),
    FOREIGN KEY (topic_id, partition) REFERENCES partita_partitions ON DELETE CASCADE
);
CREATE SEQUENCE IF NOT EXISTS partita_producer_ids;
ALTER TABLE partita_brokers ADD COLUMN IF NOT EXISTS presence_key int;
ALTER TABLE partita_brokers ADD COLUMN IF NOT EXISTS endpoints jsonb;
CREATE TABLE IF NOT EXISTS partita_scram_credentials (
    name text NOT NULL,
    mechanism smallint NOT NULL,
    salt bytea NOT NULL,
    stored_key bytea NOT NULL,
    server_key bytea NOT NULL,
    iterations int NOT NULL,
    PRIMARY KEY (name, mechanism)
);
CREATE TABLE IF NOT EXISTS partita_acls (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version bigint NOT NULL,
    acls jsonb NOT NULL
);
";

/// Connections to the metadata database: a pool for the data path, and a small one of its
/// own for membership (heartbeats, views, leadership), so that a burst of reads and writes
/// never delays a heartbeat into a lost session.
pub(crate) struct Db {
    pool: Pool,
    control: Pool,
    /// For sessions of their own (presence).
    config: tokio_postgres::Config,
}

impl Db {
    /// Connects, checks the database answers, and creates the schema on first use. Every
    /// session is named `partita broker <node.id>` (`application_name` in `pg_stat_activity`).
    pub(crate) async fn connect(url: &str, node_id: i32) -> Result<Db, ClusterError> {
        let shown = redact(url);
        let mut config: tokio_postgres::Config = url.parse().map_err(|error| {
            ClusterError::Startup(format!(
                "cluster.metadata.url {shown} is not valid: {error}"
            ))
        })?;
        config.connect_timeout(Duration::from_secs(5));
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name(format!("partita broker {node_id}"));
        config.options(SESSION_SETTINGS);
        let db = Db {
            pool: pool(config.clone(), 16)?,
            control: pool(config.clone(), 2)?,
            config,
        };
        let mut client = db.pool.get().await.map_err(|error| {
            let reason = match error {
                deadpool_postgres::PoolError::Backend(error) => describe_pg(&error),
                other => other.to_string(),
            };
            ClusterError::Startup(format!(
                "cannot connect to PostgreSQL at {shown} (cluster.metadata.url): {reason}"
            ))
        })?;
        create_schema(&mut client).await.map_err(|error| {
            ClusterError::Startup(format!(
                "cannot set up the cluster schema in PostgreSQL at {shown}: {error}"
            ))
        })?;
        Ok(db)
    }

    /// A connection for reads and writes of partitions and topics.
    pub(crate) async fn client(&self) -> Result<Object, ClusterError> {
        Ok(self.pool.get().await?)
    }

    /// How to open a connection of one's own.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A connection for membership: heartbeats, views, leadership.
    pub(crate) async fn control(&self) -> Result<Object, ClusterError> {
        Ok(self.control.get().await?)
    }
}

fn pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, ClusterError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(OPERATION_TIMEOUT))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|error| ClusterError::Startup(error.to_string()))
}

/// Creates the tables if they are missing, and the cluster row with a new cluster id.
async fn create_schema(client: &mut Object) -> Result<(), ClusterError> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    transaction.batch_execute(SCHEMA).await?;
    let row = transaction
        .query_opt("SELECT schema_version FROM partita_cluster", &[])
        .await?;
    match row.map(|row| row.get::<_, i32>(0)) {
        None => {
            transaction
                .execute(
                    "INSERT INTO partita_cluster (cluster_id, schema_version) VALUES ($1, $2)",
                    &[&new_cluster_id(), &SCHEMA_VERSION],
                )
                .await?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(ClusterError::Metadata(format!(
                "the database holds schema version {other}, this broker knows {SCHEMA_VERSION}"
            )))
        }
    }
    transaction.commit().await?;
    Ok(())
}

/// A Kafka-style cluster id: 16 random bytes in URL-safe base64 without padding.
pub(crate) fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}
