//! The cluster's ACLs in PostgreSQL: one row holding them all (as JSON, in the broker's own
//! form) with a version moved by every change, so that brokers reload them only when another
//! broker changed them.

use crate::db::Db;
use crate::error::ClusterError;

pub(crate) async fn version(db: &Db) -> Result<i64, ClusterError> {
    // The data pool: the control pool's two connections are kept for membership.
    let client = db.client().await?;
    let row = client
        .query_opt("SELECT version FROM partita_acls", &[])
        .await?;
    Ok(row.map_or(0, |row| row.get(0)))
}

pub(crate) async fn load(db: &Db) -> Result<(i64, Vec<serde_json::Value>), ClusterError> {
    let client = db.client().await?;
    let row = client
        .query_opt("SELECT version, acls FROM partita_acls", &[])
        .await?;
    Ok(match row {
        Some(row) => (row.get(0), values(row.get(1))),
        None => (0, Vec::new()),
    })
}

/// Replaces the ACLs with what `change` makes of them, in one transaction that holds the row
/// (so that two brokers' changes apply one after the other), and moves the version on.
pub(crate) async fn update<T>(
    db: &Db,
    change: impl FnOnce(Vec<serde_json::Value>) -> (Vec<serde_json::Value>, T),
) -> Result<T, ClusterError> {
    let mut client = db.client().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "INSERT INTO partita_acls (singleton, version, acls) VALUES (true, 0, '[]') \
             ON CONFLICT DO NOTHING",
            &[],
        )
        .await?;
    let row = transaction
        .query_one("SELECT acls FROM partita_acls FOR UPDATE", &[])
        .await?;
    let (next, outcome) = change(values(row.get(0)));
    transaction
        .execute(
            "UPDATE partita_acls SET acls = $1, version = version + 1",
            &[&serde_json::Value::Array(next)],
        )
        .await?;
    transaction.commit().await?;
    Ok(outcome)
}

fn values(json: serde_json::Value) -> Vec<serde_json::Value> {
    match json {
        serde_json::Value::Array(values) => values,
        _ => Vec::new(),
    }
}
