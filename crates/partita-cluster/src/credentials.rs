//! SCRAM credentials in PostgreSQL (`partita_scram_credentials`), one row per user and
//! mechanism: the salt, the iteration count and the two keys derived from the salted
//! password, never the password. Every broker reads them at each authentication, so a
//! credential changed through one broker is used by all from the next connection on.

use crate::db::Db;
use crate::error::ClusterError;

/// One user's SCRAM credential for one mechanism (KIP-554's number: 1 SHA-256, 2 SHA-512).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredScram {
    /// The user name.
    pub name: String,
    /// KIP-554's mechanism number.
    pub mechanism: i8,
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: i32,
}

/// Names the user and the mechanism only.
impl std::fmt::Debug for StoredScram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredScram")
            .field("name", &self.name)
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

pub(crate) async fn get(
    db: &Db,
    name: &str,
    mechanism: i8,
) -> Result<Option<StoredScram>, ClusterError> {
    let client = db.client().await?;
    let row = client
        .query_opt(
            "SELECT salt, stored_key, server_key, iterations FROM partita_scram_credentials \
             WHERE name = $1 AND mechanism = $2",
            &[&name, &i16::from(mechanism)],
        )
        .await?;
    Ok(row.map(|row| StoredScram {
        name: name.to_string(),
        mechanism,
        salt: row.get(0),
        stored_key: row.get(1),
        server_key: row.get(2),
        iterations: row.get(3),
    }))
}

/// Every user's mechanisms and iteration counts, by user name.
pub(crate) async fn list(db: &Db) -> Result<Vec<(String, i8, i32)>, ClusterError> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT name, mechanism, iterations FROM partita_scram_credentials \
             ORDER BY name, mechanism",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get::<_, i16>(1) as i8, row.get(2)))
        .collect())
}

/// Inserts or replaces a credential.
pub(crate) async fn put(db: &Db, credential: &StoredScram) -> Result<(), ClusterError> {
    let client = db.client().await?;
    put_with(&client, credential).await
}

async fn put_with(
    client: &tokio_postgres::Client,
    credential: &StoredScram,
) -> Result<(), ClusterError> {
    client
        .execute(
            "INSERT INTO partita_scram_credentials \
             (name, mechanism, salt, stored_key, server_key, iterations) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name, mechanism) DO UPDATE SET salt = $3, stored_key = $4, \
             server_key = $5, iterations = $6",
            &[
                &credential.name,
                &i16::from(credential.mechanism),
                &credential.salt,
                &credential.stored_key,
                &credential.server_key,
                &credential.iterations,
            ],
        )
        .await?;
    Ok(())
}

/// Deletes a credential; whether there was one.
pub(crate) async fn delete(db: &Db, name: &str, mechanism: i8) -> Result<bool, ClusterError> {
    let client = db.client().await?;
    let deleted = client
        .execute(
            "DELETE FROM partita_scram_credentials WHERE name = $1 AND mechanism = $2",
            &[&name, &i16::from(mechanism)],
        )
        .await?;
    Ok(deleted > 0)
}

/// Stores credentials before any broker of the cluster starts (`partita storage format
/// --add-scram`): connects to PostgreSQL alone, creating the schema if it is the first use.
pub async fn bootstrap(
    metadata_url: &str,
    credentials: &[StoredScram],
) -> Result<(), ClusterError> {
    let db = Db::connect(metadata_url, -1).await?;
    let client = db.client().await?;
    for credential in credentials {
        put_with(&client, credential).await?;
    }
    Ok(())
}
