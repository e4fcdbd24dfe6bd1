//! Where SCRAM credentials are kept: in the data directory (`scram-credentials.json`, written
//! whole and atomically, readable by the broker's user only), or in cluster mode in
//! PostgreSQL, read at each authentication so that every broker uses a change at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use partita_cluster::{Cluster, StoredScram};
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;
use crate::scram::{ScramCredential, ScramMechanism};

/// The file of a single broker's credentials, in its data directory.
pub const FILE_NAME: &str = "scram-credentials.json";

/// The SCRAM credentials of the broker or the cluster.
pub enum Credentials {
    Local(LocalCredentials),
    Cluster(Cluster),
}

impl Credentials {
    /// `user`'s credential for `mechanism`, if it has one.
    pub async fn get(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredential>, BrokerError> {
        match self {
            Credentials::Local(local) => Ok(local.lock().get(&key(user, mechanism)).cloned()),
            Credentials::Cluster(cluster) => Ok(cluster
                .scram_credential(user, mechanism.code())
                .await
                .map_err(storage)?
                .map(|stored| ScramCredential {
                    salt: stored.salt,
                    stored_key: stored.stored_key,
                    server_key: stored.server_key,
                    iterations: stored.iterations,
                })),
        }
    }

    /// Every user with a credential, with the iterations of each of its mechanisms.
    pub async fn users(&self) -> Result<BTreeMap<String, Vec<(ScramMechanism, i32)>>, BrokerError> {
        let listed: Vec<(String, ScramMechanism, i32)> = match self {
            Credentials::Local(local) => local
                .lock()
                .iter()
                .map(|((user, mechanism), c)| (user.clone(), *mechanism, c.iterations))
                .collect(),
            Credentials::Cluster(cluster) => cluster
                .scram_credentials()
                .await
                .map_err(storage)?
                .into_iter()
                .filter_map(|(user, code, iterations)| {
                    Some((user, ScramMechanism::from_code(code)?, iterations))
                })
                .collect(),
        };
        let mut users: BTreeMap<String, Vec<(ScramMechanism, i32)>> = BTreeMap::new();
        for (user, mechanism, iterations) in listed {
            users.entry(user).or_default().push((mechanism, iterations));
        }
        Ok(users)
    }

    /// Sets `user`'s credential for `mechanism`, replacing any it had.
    pub async fn put(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    ) -> Result<(), BrokerError> {
        match self {
            Credentials::Local(local) => local
                .change(|all| {
                    all.insert(key(user, mechanism), credential);
                    true
                })
                .map(|_| ()),
            Credentials::Cluster(cluster) => cluster
                .put_scram_credential(&stored(user, mechanism, credential))
                .await
                .map_err(storage),
        }
    }

    /// Deletes `user`'s credential for `mechanism`; whether it had one.
    pub async fn delete(&self, user: &str, mechanism: ScramMechanism) -> Result<bool, BrokerError> {
        match self {
            Credentials::Local(local) => {
                local.change(|all| all.remove(&key(user, mechanism)).is_some())
            }
            Credentials::Cluster(cluster) => cluster
                .delete_scram_credential(user, mechanism.code())
                .await
                .map_err(storage),
        }
    }
}

/// The credential as the cluster stores it.
pub fn stored(user: &str, mechanism: ScramMechanism, credential: ScramCredential) -> StoredScram {
    StoredScram {
        name: user.to_string(),
        mechanism: mechanism.code(),
        salt: credential.salt,
        stored_key: credential.stored_key,
        server_key: credential.server_key,
        iterations: credential.iterations,
    }
}

/// A credential to add before the first start, as `kafka-storage format --add-scram` takes
/// it: `SCRAM-SHA-256=[name=alice,password=alice-secret]`, with `iterations=8192` if wanted,
/// or `salt=<base64>,saltedpassword=<base64>` instead of the password; values may be quoted.
pub fn parse_add_scram(text: &str) -> Result<(String, ScramMechanism, ScramCredential), String> {
    let usage = "expected MECHANISM=[name=USER,password=PASSWORD]";
    let (mechanism, rest) = text.split_once('=').ok_or(usage)?;
    let mechanism = ScramMechanism::from_name(mechanism.trim()).ok_or_else(|| {
        format!("unknown SCRAM mechanism {mechanism:?}: SCRAM-SHA-256 or SCRAM-SHA-512")
    })?;
    let body = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or(usage)?;
    let mut fields = BTreeMap::new();
    for field in body.split(',') {
        let (key, value) = field.split_once('=').ok_or(usage)?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        fields.insert(key.trim().to_ascii_lowercase(), value.to_string());
    }
    let name = fields
        .remove("name")
        .filter(|n| !n.is_empty())
        .ok_or("a name is required")?;
    let iterations = match fields.remove("iterations") {
        Some(n) => n
            .parse::<i32>()
            .map_err(|_| format!("iterations {n:?} is not a number"))?,
        None => crate::scram::MIN_ITERATIONS,
    };
    if !(crate::scram::MIN_ITERATIONS..=crate::scram::MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "iterations must be between {} and {}",
            crate::scram::MIN_ITERATIONS,
            crate::scram::MAX_ITERATIONS
        ));
    }
    let credential = match (
        fields.remove("password"),
        fields.remove("salt"),
        fields.remove("saltedpassword"),
    ) {
        (Some(password), None, None) => {
            ScramCredential::from_password(mechanism, &password, iterations)
        }
        (None, Some(salt), Some(salted)) => {
            let decode = |v: &str| BASE64.decode(v).map_err(|e| format!("not base64: {e}"));
            ScramCredential::from_salted_password(
                mechanism,
                &decode(&salt)?,
                &decode(&salted)?,
                iterations,
            )
        }
        _ => return Err("give either password, or salt and saltedpassword".to_string()),
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(format!("unknown field {unknown:?}"));
    }
    Ok((name, mechanism, credential))
}

/// Stores credentials before the broker (or any broker of the cluster) first starts: in the
/// data directory, or in cluster mode in PostgreSQL.
pub async fn bootstrap(
    config: &crate::config::BrokerConfig,
    entries: Vec<(String, ScramMechanism, ScramCredential)>,
) -> Result<(), BrokerError> {
    if config.cluster.enabled().map_err(BrokerError::Startup)? {
        let url = config.cluster.metadata_url.as_deref().unwrap_or_default();
        let stored: Vec<StoredScram> = entries
            .into_iter()
            .map(|(user, mechanism, credential)| stored(&user, mechanism, credential))
            .collect();
        return partita_cluster::bootstrap_scram_credentials(url, &stored)
            .await
            .map_err(|error| BrokerError::Startup(error.to_string()));
    }
    std::fs::create_dir_all(&config.data_dir)?;
    LocalCredentials::open(&config.data_dir)?.change(|all| {
        for (user, mechanism, credential) in entries {
            all.insert(key(&user, mechanism), credential);
        }
        true
    })?;
    Ok(())
}

fn key(user: &str, mechanism: ScramMechanism) -> (String, ScramMechanism) {
    (user.to_string(), mechanism)
}

fn storage(error: partita_cluster::ClusterError) -> BrokerError {
    BrokerError::Storage(error.to_string())
}

type Table = BTreeMap<(String, ScramMechanism), ScramCredential>;

/// A single broker's credentials: in memory, and in a file of the data directory rewritten
/// at each change.
pub struct LocalCredentials {
    path: PathBuf,
    all: Mutex<Table>,
}

/// The file's form.
#[derive(Serialize, Deserialize)]
struct FileEntry {
    user: String,
    mechanism: String,
    salt: String,
    stored_key: String,
    server_key: String,
    iterations: i32,
}

impl LocalCredentials {
    /// Reads the credentials of `data_dir` (none when the file does not exist).
    pub fn open(data_dir: &Path) -> Result<LocalCredentials, BrokerError> {
        let path = data_dir.join(FILE_NAME);
        let all = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes).map_err(|why| {
                BrokerError::Startup(format!("{} is not readable: {why}", path.display()))
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Table::new(),
            Err(error) => {
                return Err(BrokerError::Startup(format!(
                    "cannot read {}: {error}",
                    path.display()
                )))
            }
        };
        Ok(LocalCredentials {
            path,
            all: Mutex::new(all),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` and, if it says it changed anything, writes the file; the table in
    /// memory is replaced only once the file is written.
    pub fn change(&self, change: impl FnOnce(&mut Table) -> bool) -> Result<bool, BrokerError> {
        let mut all = self.lock();
        let mut next = all.clone();
        if !change(&mut next) {
            return Ok(false);
        }
        write(&self.path, &next)?;
        *all = next;
        Ok(true)
    }
}

fn parse(bytes: &[u8]) -> Result<Table, String> {
    let entries: Vec<FileEntry> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let decode = |field: &str| BASE64.decode(field).map_err(|e| e.to_string());
    let mut all = Table::new();
    for entry in entries {
        let mechanism = ScramMechanism::from_name(&entry.mechanism)
            .ok_or_else(|| format!("unknown mechanism {}", entry.mechanism))?;
        let credential = ScramCredential {
            salt: decode(&entry.salt)?,
            stored_key: decode(&entry.stored_key)?,
            server_key: decode(&entry.server_key)?,
            iterations: entry.iterations,
        };
        all.insert((entry.user, mechanism), credential);
    }
    Ok(all)
}

fn write(path: &Path, all: &Table) -> Result<(), BrokerError> {
    let entries: Vec<FileEntry> = all
        .iter()
        .map(|((user, mechanism), c)| FileEntry {
            user: user.clone(),
            mechanism: mechanism.name().to_string(),
            salt: BASE64.encode(&c.salt),
            stored_key: BASE64.encode(&c.stored_key),
            server_key: BASE64.encode(&c.server_key),
            iterations: c.iterations,
        })
        .collect();
    let text =
        serde_json::to_vec_pretty(&entries).map_err(|e| BrokerError::Storage(e.to_string()))?;
    partita_log::files::replace(path, &text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn credentials_survive_a_reopen_and_deletions_say_whether_there_was_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Credentials::Local(LocalCredentials::open(dir.path()).unwrap());
        let alice = ScramCredential::from_password(ScramMechanism::Sha512, "secret", 4096);
        store
            .put("alice", ScramMechanism::Sha512, alice.clone())
            .await
            .unwrap();
        assert!(!store.delete("alice", ScramMechanism::Sha256).await.unwrap());

        let reopened = Credentials::Local(LocalCredentials::open(dir.path()).unwrap());
        assert_eq!(
            reopened.get("alice", ScramMechanism::Sha512).await.unwrap(),
            Some(alice)
        );
        let users = reopened.users().await.unwrap();
        assert_eq!(users["alice"], vec![(ScramMechanism::Sha512, 4096)]);
        assert!(reopened
            .delete("alice", ScramMechanism::Sha512)
            .await
            .unwrap());
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.trim(), "[]");
    }

    #[test]
    fn add_scram_is_read_as_kafka_storage_takes_it() {
        let (user, mechanism, credential) =
            parse_add_scram("SCRAM-SHA-512=[name=alice,password=\"alice secret\"]").unwrap();
        assert_eq!(
            (user.as_str(), mechanism),
            ("alice", ScramMechanism::Sha512)
        );
        assert_eq!(credential.iterations, 4096);
        let salted = mechanism.salted_password(b"alice secret", &credential.salt, 4096);
        assert_eq!(
            ScramCredential::from_salted_password(mechanism, &credential.salt, &salted, 4096),
            credential
        );
        let (_, _, given) = parse_add_scram(
            "SCRAM-SHA-256=[name=bob,iterations=8192,salt=\"c2FsdA==\",saltedpassword=\"cHc=\"]",
        )
        .unwrap();
        assert_eq!(
            (given.salt.as_slice(), given.iterations),
            (&b"salt"[..], 8192)
        );
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=[name=a,password=b,colour=red]",
            "SCRAM-SHA-256=name=a,password=b",
        ] {
            assert!(parse_add_scram(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_file_holds_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalCredentials::open(dir.path()).unwrap();
        let credential = ScramCredential::from_password(ScramMechanism::Sha256, "hunter2", 4096);
        store
            .change(|all| {
                all.insert(key("bob", ScramMechanism::Sha256), credential);
                true
            })
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.contains("bob") && !text.contains("hunter2"), "{text}");
    }
}
