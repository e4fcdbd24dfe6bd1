//! Brokers joining, staying and leaving, and the spreading of partition leadership over the
//! live ones.
//!
//! A broker registers its node id and address with a fresh incarnation, then heartbeats; it
//! is live while its last heartbeat is younger than `broker.session.timeout.ms` by
//! PostgreSQL's clock, the only clock brokers share, and its presence session is open
//! (`presence.rs`). Leaders are chosen by rendezvous
//! hashing over the live brokers, so a broker joining takes about its share of partitions
//! and a broker leaving moves only its own. Each change bumps the partition's leader epoch,
//! which every write checks: a broker that lost a partition can no longer write to it.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::db::Db;
use crate::error::ClusterError;
use crate::view::live_condition;

/// Key of the advisory lock held while leaders are reassigned.
const LEADERS_LOCK: i64 = 0x7061_7274_6974_6102;

/// This broker, as it registers.
#[derive(Clone, Debug)]
pub struct NodeAddress {
    /// `node.id`.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Every listener's advertised endpoint.
    pub endpoints: Vec<crate::view::Endpoint>,
}

/// What a heartbeat learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Beat {
    /// The catalog version now.
    pub(crate) catalog_version: i64,
    /// The live brokers' ids, in order.
    pub(crate) live: Vec<i32>,
}

/// Registers this broker under a new incarnation. A node id held by another live broker (a
/// different address) is refused; the same address is this broker restarted, which takes
/// its row over and fences whatever its previous incarnation led.
pub(crate) async fn register(
    db: &Db,
    node: &NodeAddress,
    session_timeout_ms: i64,
) -> Result<Uuid, ClusterError> {
    let incarnation = Uuid::new_v4();
    let mut client = db.control().await?;
    let transaction = client.transaction().await?;
    let existing = transaction
        .query_opt(
            &format!(
                "SELECT host, port, {} FROM partita_brokers WHERE node_id = $2 FOR UPDATE",
                live_condition(1)
            ),
            &[&session_timeout_ms, &node.node_id],
        )
        .await?;
    if let Some(row) = &existing {
        let (host, port, live): (String, i32, bool) = (row.get(0), row.get(1), row.get(2));
        if live && (host != node.host || port != node.port) {
            return Err(ClusterError::Startup(format!(
                "node.id {} is already used by the live broker at {host}:{port}; give each \
                 broker its own node.id",
                node.node_id
            )));
        }
    }
    transaction
        .execute(
            "INSERT INTO partita_brokers \
             (node_id, host, port, rack, incarnation, heartbeat_at, endpoints) \
             VALUES ($1, $2, $3, $4, $5, now(), $6) \
             ON CONFLICT (node_id) DO UPDATE SET host = excluded.host, port = excluded.port, \
             rack = excluded.rack, incarnation = excluded.incarnation, heartbeat_at = now(), \
             presence_key = NULL, endpoints = excluded.endpoints",
            &[
                &node.node_id,
                &node.host,
                &node.port,
                &node.rack,
                &incarnation,
                &serde_json::to_value(&node.endpoints).unwrap_or_default(),
            ],
        )
        .await?;
    if existing.is_some() {
        let fenced = transaction
            .execute(
                "UPDATE partita_partitions SET leader_epoch = leader_epoch + 1 WHERE leader = $1",
                &[&node.node_id],
            )
            .await?;
        if fenced > 0 {
            bump_catalog(&transaction).await?;
        }
    }
    transaction.commit().await?;
    Ok(incarnation)
}

/// One heartbeat. `None` when another incarnation has taken this node id over.
pub(crate) async fn heartbeat(
    db: &Db,
    node_id: i32,
    incarnation: Uuid,
    session_timeout_ms: i64,
) -> Result<Option<Beat>, ClusterError> {
    let client = db.control().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE partita_brokers SET heartbeat_at = now() \
                 WHERE node_id = $2 AND incarnation = $3 \
                 RETURNING (SELECT catalog_version FROM partita_cluster), \
                 (SELECT array_agg(node_id ORDER BY node_id) FROM partita_brokers WHERE {})",
                live_condition(1)
            ),
            &[&session_timeout_ms, &node_id, &incarnation],
        )
        .await?;
    Ok(row.map(|row| Beat {
        catalog_version: row.get(0),
        live: row.get::<_, Option<Vec<i32>>>(1).unwrap_or_default(),
    }))
}

/// Leaves the cluster at once (a clean shutdown), instead of after the session timeout.
pub(crate) async fn deregister(
    db: &Db,
    node_id: i32,
    incarnation: Uuid,
) -> Result<(), ClusterError> {
    let client = db.control().await?;
    client
        .execute(
            "UPDATE partita_brokers SET heartbeat_at = 'epoch' \
             WHERE node_id = $1 AND incarnation = $2",
            &[&node_id, &incarnation],
        )
        .await?;
    Ok(())
}

/// Gives every partition the leader rendezvous hashing picks among the live brokers, bumping
/// the epoch of each that moves. Returns how many moved. Safe to run from several brokers at
/// once: one at a time holds the lock, and the result depends only on the database.
pub(crate) async fn reassign_leaders(
    db: &Db,
    session_timeout_ms: i64,
) -> Result<usize, ClusterError> {
    let mut client = db.control().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&LEADERS_LOCK])
        .await?;
    let live = live_brokers(&transaction, session_timeout_ms).await?;
    if live.is_empty() {
        return Ok(0);
    }
    let rows = transaction
        .query(
            "SELECT p.topic_id, p.partition, p.leader, t.name FROM partita_partitions p \
             JOIN partita_topics t USING (topic_id)",
            &[],
        )
        .await?;
    let (mut topics, mut partitions, mut leaders) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        let (topic_id, partition, leader, name): (Uuid, i32, i32, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let wanted = choose_leader(placement(topic_id, &name), partition, &live);
        if wanted != leader {
            topics.push(topic_id);
            partitions.push(partition);
            leaders.push(wanted);
        }
    }
    if !topics.is_empty() {
        transaction
            .execute(
                "UPDATE partita_partitions p SET leader = v.leader, \
                 leader_epoch = p.leader_epoch + 1 \
                 FROM unnest($1::uuid[], $2::int[], $3::int[]) AS v(topic_id, partition, leader) \
                 WHERE p.topic_id = v.topic_id AND p.partition = v.partition",
                &[&topics, &partitions, &leaders],
            )
            .await?;
        bump_catalog(&transaction).await?;
    }
    transaction.commit().await?;
    Ok(topics.len())
}

/// The ids of the live brokers, in order.
pub(crate) async fn live_brokers(
    client: &impl GenericClient,
    session_timeout_ms: i64,
) -> Result<Vec<i32>, ClusterError> {
    Ok(client
        .query(
            &format!(
                "SELECT node_id FROM partita_brokers WHERE {} ORDER BY node_id",
                live_condition(1)
            ),
            &[&session_timeout_ms],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Moves the catalog version on, so that every broker reloads its view, and tells them
/// when the transaction commits.
pub(crate) async fn bump_catalog(client: &impl GenericClient) -> Result<i64, ClusterError> {
    let version = client
        .query_one(
            "UPDATE partita_cluster SET catalog_version = catalog_version + 1 \
             RETURNING catalog_version",
            &[],
        )
        .await?
        .get(0);
    client
        .execute(
            "SELECT pg_notify($1, '')",
            &[&crate::presence::CATALOG_CHANNEL],
        )
        .await?;
    Ok(version)
}

/// What a partition's leader is chosen by: its topic id, except for the group coordinator's
/// two internal topics, whose partitions `i` share one placement, so that the broker that
/// coordinates a group holds both its offsets and its share-group state.
pub(crate) fn placement(topic_id: Uuid, name: &str) -> Uuid {
    const COORDINATOR: Uuid = Uuid::from_u128(0x7061_7274_6974_6100_636f_6f72_6469_6e61);
    match name {
        "__consumer_offsets" | "__share_group_state" => COORDINATOR,
        _ => topic_id,
    }
}

/// The leader of a partition among `live` (not empty): the broker with the highest score
/// for it (rendezvous hashing).
pub(crate) fn choose_leader(topic_id: Uuid, partition: i32, live: &[i32]) -> i32 {
    live.iter()
        .copied()
        .max_by_key(|&node| score(topic_id, partition, node))
        .unwrap_or(-1)
}

/// A well-spread score of (partition, broker), the same on every broker and every build.
fn score(topic_id: Uuid, partition: i32, node: i32) -> u64 {
    let id = topic_id.as_u128();
    let mut z = (id as u64) ^ ((id >> 64) as u64).rotate_left(17);
    z ^= (partition as u32 as u64) << 32 | node as u32 as u64;
    // SplitMix64's finaliser.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaders_spread_and_move_little() {
        let topic = Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let three = [1, 2, 3];
        let leaders: Vec<i32> = (0..300).map(|p| choose_leader(topic, p, &three)).collect();
        for node in three {
            let led = leaders.iter().filter(|&&l| l == node).count();
            assert!((70..=130).contains(&led), "node {node} leads {led} of 300");
        }
        // A fourth broker takes about a quarter, only from the others.
        let four = [1, 2, 3, 4];
        let moved: Vec<i32> = (0..300)
            .filter(|&p| choose_leader(topic, p, &four) != leaders[p as usize])
            .collect();
        assert!((40..=110).contains(&moved.len()), "{} moved", moved.len());
        assert!(moved.iter().all(|&p| choose_leader(topic, p, &four) == 4));
        // Broker 2 leaving moves only its partitions.
        let without_two = [1, 3];
        for p in 0..300 {
            if leaders[p as usize] != 2 {
                assert_eq!(choose_leader(topic, p, &without_two), leaders[p as usize]);
            }
        }
    }
}
