//! Topics in PostgreSQL: create, grow, reconfigure, delete, and producer ids. Each change is
//! one transaction that also moves the catalog version, so every broker reloads its view.

use std::collections::BTreeMap;

use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::db::Db;
use crate::error::ClusterError;
use crate::members::{bump_catalog, choose_leader, live_brokers, placement};
use crate::view::configs_to_json;

/// Kafka refuses a topic whose name equals another's once '.' and '_' are made the same.
fn collision_name(name: &str) -> String {
    name.replace('.', "_")
}

/// Creates a topic with `partitions` partitions, led by the live brokers.
pub(crate) async fn create_topic(
    db: &Db,
    name: &str,
    partitions: i32,
    configs: &BTreeMap<String, String>,
    session_timeout_ms: i64,
) -> Result<Uuid, ClusterError> {
    let id = Uuid::new_v4();
    let mut client = db.client().await?;
    let transaction = client.transaction().await?;
    let inserted = transaction
        .execute(
            "INSERT INTO partita_topics (topic_id, name, collision_name, configs) \
             VALUES ($1, $2, $3, $4)",
            &[&id, &name, &collision_name(name), &configs_to_json(configs)],
        )
        .await;
    if let Err(error) = inserted {
        if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            drop(transaction);
            return Err(existing_name_error(db, name).await);
        }
        return Err(error.into());
    }
    let live = live_brokers(&transaction, session_timeout_ms).await?;
    insert_partitions(&transaction, id, name, 0..partitions, &live).await?;
    bump_catalog(&transaction).await?;
    transaction.commit().await?;
    Ok(id)
}

/// Which existing topic a refused name clashes with.
async fn existing_name_error(db: &Db, name: &str) -> ClusterError {
    let found = match db.client().await {
        Ok(client) => client
            .query_opt(
                "SELECT name FROM partita_topics WHERE collision_name = $1",
                &[&collision_name(name)],
            )
            .await
            .ok()
            .flatten()
            .map(|row| row.get::<_, String>(0)),
        Err(_) => None,
    };
    match found {
        Some(existing) if existing != name => ClusterError::TopicCollides(name.into(), existing),
        _ => ClusterError::TopicExists(name.into()),
    }
}

async fn insert_partitions(
    client: &impl deadpool_postgres::GenericClient,
    topic_id: Uuid,
    name: &str,
    indexes: std::ops::Range<i32>,
    live: &[i32],
) -> Result<(), ClusterError> {
    let partitions: Vec<i32> = indexes.collect();
    let leaders: Vec<i32> = partitions
        .iter()
        .map(|&p| choose_leader(placement(topic_id, name), p, live))
        .collect();
    client
        .execute(
            "INSERT INTO partita_partitions (topic_id, partition, leader, leader_epoch) \
             SELECT $1, p, l, 0 FROM unnest($2::int[], $3::int[]) AS v(p, l)",
            &[&topic_id, &partitions, &leaders],
        )
        .await?;
    Ok(())
}

/// Grows a topic to `count` partitions.
pub(crate) async fn add_partitions(
    db: &Db,
    name: &str,
    count: i32,
    session_timeout_ms: i64,
) -> Result<(), ClusterError> {
    let mut client = db.client().await?;
    let transaction = client.transaction().await?;
    let topic_id: Uuid = transaction
        .query_opt(
            "SELECT topic_id FROM partita_topics WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
        .ok_or_else(|| ClusterError::UnknownTopic(name.into()))?
        .get(0);
    let current: i64 = transaction
        .query_one(
            "SELECT count(*) FROM partita_partitions WHERE topic_id = $1",
            &[&topic_id],
        )
        .await?
        .get(0);
    let current = current as i32;
    if count <= current {
        return Err(ClusterError::InvalidPartitions(format!(
            "topic currently has {current} partitions, which is higher than the requested {count}"
        )));
    }
    let live = live_brokers(&transaction, session_timeout_ms).await?;
    insert_partitions(&transaction, topic_id, name, current..count, &live).await?;
    bump_catalog(&transaction).await?;
    transaction.commit().await?;
    Ok(())
}

/// Replaces a topic's config overrides.
pub(crate) async fn set_configs(
    db: &Db,
    name: &str,
    configs: &BTreeMap<String, String>,
) -> Result<(), ClusterError> {
    let mut client = db.client().await?;
    let transaction = client.transaction().await?;
    let updated = transaction
        .execute(
            "UPDATE partita_topics SET configs = $2 WHERE name = $1",
            &[&name, &configs_to_json(configs)],
        )
        .await?;
    if updated == 0 {
        return Err(ClusterError::UnknownTopic(name.into()));
    }
    bump_catalog(&transaction).await?;
    transaction.commit().await?;
    Ok(())
}

/// Deletes a topic with its partitions and batch index; its objects go with the next
/// collection of unreferenced objects.
pub(crate) async fn delete_topic(db: &Db, name: &str) -> Result<Uuid, ClusterError> {
    let mut client = db.client().await?;
    let transaction = client.transaction().await?;
    let id: Uuid = transaction
        .query_opt(
            "DELETE FROM partita_topics WHERE name = $1 RETURNING topic_id",
            &[&name],
        )
        .await?
        .ok_or_else(|| ClusterError::UnknownTopic(name.into()))?
        .get(0);
    bump_catalog(&transaction).await?;
    transaction.commit().await?;
    Ok(id)
}

/// A producer id no broker of the cluster has given out.
pub(crate) async fn next_producer_id(db: &Db) -> Result<i64, ClusterError> {
    let client = db.client().await?;
    Ok(client
        .query_one("SELECT nextval('partita_producer_ids')", &[])
        .await?
        .get(0))
}
