//! ACLs with Kafka's semantics (`authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer`):
//! who (a principal such as `User:alice`, or `User:*`) from where (a host, or `*`) may or may
//! not do what (an operation) to which resources (topics, groups, the cluster, transactional
//! ids; by literal name, `*`, or name prefix). A matching DENY wins over any ALLOW; READ,
//! WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS, ALL implies
//! everything; `super.users` may do anything; a resource no ACL names is open only with
//! `allow.everyone.if.no.acl.found=true`.
//!
//! ACLs are kept in `acls.json` of the data directory or, in cluster mode, in PostgreSQL,
//! where every broker reloads them once they change (within about a second).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use partita_cluster::Cluster;
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The file of a single broker's ACLs, in its data directory.
pub const FILE_NAME: &str = "acls.json";

/// Kafka's resource types (the numbers of the ACL APIs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<ResourceType> {
        [
            ResourceType::Topic,
            ResourceType::Group,
            ResourceType::Cluster,
            ResourceType::TransactionalId,
            ResourceType::DelegationToken,
            ResourceType::User,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }
}

/// How an ACL names its resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// The name itself, or `*` for every resource of the type.
    Literal,
    /// Every resource whose name starts with it.
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

/// Kafka's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl Operation {
    const EVERY: [Operation; 13] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
    ];

    pub fn code(self) -> i8 {
        Operation::EVERY
            .iter()
            .position(|o| *o == self)
            .map_or(0, |i| i as i8 + 2)
    }

    pub fn from_code(code: i8) -> Option<Operation> {
        Operation::EVERY
            .get(usize::try_from(code - 2).ok()?)
            .copied()
    }

    /// Whether an ALLOW for `self` allows `wanted`.
    fn allows(self, wanted: Operation) -> bool {
        self == Operation::All
            || self == wanted
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

/// ALLOW or DENY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }
}

/// One ACL.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Whether this ACL is about `session`: its principal (or `User:*` for any user) from its
    /// host (or `*` for any).
    fn applies_to(&self, session: &Session) -> bool {
        (self.principal == session.principal
            || (self.principal == "User:*" && session.principal.starts_with("User:")))
            && (self.host == "*" || self.host == session.host)
    }

    /// Whether this ACL names the resource `name` of `resource_type`.
    fn names(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == name || self.resource_name == "*",
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }
}

/// Which ACLs a DescribeAcls or DeleteAcls filter selects, in the APIs' numbers: 1 is ANY;
/// for the pattern, 2 is MATCH (the ACLs that apply to the named resource).
#[derive(Clone, Debug)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

const ANY: i8 = 1;
const MATCH: i8 = 2;

impl AclFilter {
    /// Whether the filter can select anything (its type numbers are known ones).
    pub fn is_valid(&self) -> bool {
        (self.resource_type == ANY || ResourceType::from_code(self.resource_type).is_some())
            && (ANY..=4).contains(&self.pattern_type)
            && (self.operation == ANY || Operation::from_code(self.operation).is_some())
            && (ANY..=3).contains(&self.permission)
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        let resource = (self.resource_type == ANY
            || self.resource_type == acl.resource_type.code())
            && match (self.pattern_type, &self.resource_name) {
                (ANY, None) => true,
                (ANY, Some(name)) => &acl.resource_name == name,
                (MATCH, None) => true,
                (MATCH, Some(name)) => match acl.pattern_type {
                    PatternType::Literal => &acl.resource_name == name || acl.resource_name == "*",
                    PatternType::Prefixed => name.starts_with(&acl.resource_name),
                },
                (pattern, name) => {
                    pattern == acl.pattern_type.code()
                        && name.as_ref().is_none_or(|n| n == &acl.resource_name)
                }
            };
        resource
            && self.principal.as_ref().is_none_or(|p| p == &acl.principal)
            && self.host.as_ref().is_none_or(|h| h == &acl.host)
            && (self.operation == ANY || self.operation == acl.operation.code())
            && (self.permission == ANY || self.permission == acl.permission.code())
    }
}

/// The authorizer's settings.
#[derive(Clone, Debug, Default)]
pub struct AuthorizerConfig {
    /// `authorizer.class.name` names Kafka's standard authorizer (or the older AclAuthorizer).
    pub enabled: bool,
    /// `super.users`: principals allowed everything, separated by `;`.
    pub super_users: BTreeSet<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Whether `session` is not held to ACLs at all: none are checked, or it is a super user.
    fn unchecked(&self, session: &Session) -> bool {
        !self.enabled || self.super_users.contains(&session.principal)
    }
}

/// The class names that turn ACLs on.
pub const AUTHORIZER_CLASSES: [&str; 2] = [
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// Who is asking: the authenticated principal and the client's address.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: String,
    pub host: String,
}

impl Session {
    /// A client that did not authenticate (a PLAINTEXT listener, TLS without a certificate).
    pub fn anonymous(host: std::net::IpAddr) -> Session {
        Session {
            principal: "User:ANONYMOUS".to_string(),
            host: host.to_string(),
        }
    }
}

/// The ACLs and the decisions made with them.
pub struct Authorizer {
    /// Shared with every snapshot: taking one copies two pointers.
    config: Arc<AuthorizerConfig>,
    acls: RwLock<Arc<Vec<AclBinding>>>,
    store: AclStore,
    /// The cluster's ACL version last loaded.
    version: std::sync::atomic::AtomicI64,
}

enum AclStore {
    Local(PathBuf),
    Cluster(Cluster),
}

impl Authorizer {
    /// The ACLs of the data directory.
    pub fn local(config: AuthorizerConfig, data_dir: &Path) -> Result<Authorizer, BrokerError> {
        let path = data_dir.join(FILE_NAME);
        let acls = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                BrokerError::Startup(format!("{} is not readable: {e}", path.display()))
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(BrokerError::Startup(format!(
                    "cannot read {}: {error}",
                    path.display()
                )))
            }
        };
        Ok(Authorizer::with(config, acls, AclStore::Local(path)))
    }

    /// The cluster's ACLs, loaded now.
    pub async fn cluster(
        config: AuthorizerConfig,
        cluster: Cluster,
    ) -> Result<Authorizer, BrokerError> {
        let authorizer = Authorizer::with(config, Vec::new(), AclStore::Cluster(cluster));
        // Without an authorizer nothing reads them: no query at start.
        if authorizer.enabled() {
            authorizer.reload().await?;
        }
        Ok(authorizer)
    }

    fn with(config: AuthorizerConfig, acls: Vec<AclBinding>, store: AclStore) -> Authorizer {
        Authorizer {
            config: Arc::new(config),
            acls: RwLock::new(Arc::new(acls)),
            store,
            version: std::sync::atomic::AtomicI64::new(-1),
        }
    }

    /// Whether ACLs are checked at all.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn current(&self) -> Arc<Vec<AclBinding>> {
        Arc::clone(&self.acls.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether `session` may do `operation` on the resource `name` of `resource_type`.
    pub fn authorize(
        &self,
        session: &Session,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.snapshot()
            .authorize(session, operation, resource_type, name)
    }

    /// The ACLs in force now, for decisions made later (on a response's entries).
    pub fn snapshot(&self) -> AclSnapshot {
        AclSnapshot {
            config: Arc::clone(&self.config),
            acls: self.current(),
        }
    }

    /// Whether some ACL allows `session` `operation` on some resource of `resource_type`
    /// (and none denies it on all of them): Kafka's test for an idempotent producer, which
    /// may write if it may write to any topic.
    pub fn allows_some(
        &self,
        session: &Session,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self.config.unchecked(session) {
            return true;
        }
        let acls = self.current();
        let applies =
            |acl: &&AclBinding| acl.resource_type == resource_type && acl.applies_to(session);
        let denied_everywhere = acls.iter().filter(applies).any(|acl| {
            acl.permission == Permission::Deny
                && acl.pattern_type == PatternType::Literal
                && acl.resource_name == "*"
                && (acl.operation == Operation::All || acl.operation == operation)
        });
        !denied_everywhere
            && acls
                .iter()
                .filter(applies)
                .any(|acl| acl.permission == Permission::Allow && acl.operation.allows(operation))
    }
}

/// The ACLs at one moment, with the settings they are read with.
pub struct AclSnapshot {
    config: Arc<AuthorizerConfig>,
    acls: Arc<Vec<AclBinding>>,
}

impl AclSnapshot {
    /// Whether `session` may do `operation` on the resource `name` of `resource_type`.
    pub fn authorize(
        &self,
        session: &Session,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if self.config.unchecked(session) {
            return true;
        }
        let acls = &self.acls;
        let mut named = false;
        let mut allowed = false;
        for acl in acls.iter().filter(|acl| acl.names(resource_type, name)) {
            named = true;
            if !acl.applies_to(session) {
                continue;
            }
            match acl.permission {
                Permission::Deny
                    if acl.operation == Operation::All || acl.operation == operation =>
                {
                    return false
                }
                Permission::Allow if acl.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!named && self.config.allow_everyone_if_no_acl_found)
    }
}

impl Authorizer {
    /// The ACLs a filter selects.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.current()
            .iter()
            .filter(|acl| filter.matches(acl))
            .cloned()
            .collect()
    }

    /// Adds ACLs (one already there is left as it is).
    pub async fn create(&self, new: Vec<AclBinding>) -> Result<(), BrokerError> {
        self.change(move |acls| {
            for acl in new {
                if !acls.contains(&acl) {
                    acls.push(acl);
                }
            }
        })
        .await
        .map(|_| ())
    }

    /// Removes the ACLs each filter selects; what each removed.
    pub async fn delete(
        &self,
        filters: Vec<AclFilter>,
    ) -> Result<Vec<Vec<AclBinding>>, BrokerError> {
        self.change(move |acls| {
            let mut removed = vec![Vec::new(); filters.len()];
            for (i, filter) in filters.iter().enumerate() {
                removed[i] = acls.iter().filter(|a| filter.matches(a)).cloned().collect();
            }
            acls.retain(|acl| !filters.iter().any(|f| f.matches(acl)));
            removed
        })
        .await
    }

    /// Applies `change` to the stored ACLs and takes the outcome in use.
    async fn change<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Vec<AclBinding>) -> T + Send + 'static,
    ) -> Result<T, BrokerError> {
        match &self.store {
            AclStore::Local(path) => {
                let mut acls = self.acls.write().unwrap_or_else(|p| p.into_inner());
                let mut next = acls.as_ref().clone();
                let outcome = change(&mut next);
                next.sort();
                let text = serde_json::to_vec_pretty(&next)
                    .map_err(|e| BrokerError::Storage(e.to_string()))?;
                partita_log::files::replace(path, &text)?;
                *acls = Arc::new(next);
                Ok(outcome)
            }
            AclStore::Cluster(cluster) => {
                let outcome = cluster
                    .update_acls(move |stored: Vec<serde_json::Value>| {
                        let mut acls: Vec<AclBinding> = stored
                            .into_iter()
                            .filter_map(|v| serde_json::from_value(v).ok())
                            .collect();
                        let outcome = change(&mut acls);
                        acls.sort();
                        let values = acls
                            .iter()
                            .filter_map(|a| serde_json::to_value(a).ok())
                            .collect();
                        (values, outcome)
                    })
                    .await
                    .map_err(|e| BrokerError::Storage(e.to_string()))?;
                self.reload().await?;
                Ok(outcome)
            }
        }
    }

    /// In cluster mode, loads the ACLs if another broker changed them since the last load.
    pub async fn reload(&self) -> Result<(), BrokerError> {
        let AclStore::Cluster(cluster) = &self.store else {
            return Ok(());
        };
        let storage = |e: partita_cluster::ClusterError| BrokerError::Storage(e.to_string());
        let known = self.version.load(std::sync::atomic::Ordering::SeqCst);
        if cluster.acl_version().await.map_err(storage)? == known {
            return Ok(());
        }
        let (version, stored) = cluster.acls().await.map_err(storage)?;
        let acls: Vec<AclBinding> = stored
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        *self.acls.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(acls);
        self.version
            .store(version, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: "*".to_string(),
            operation,
            permission,
        }
    }

    fn authorizer(acls: Vec<AclBinding>, allow_if_none: bool) -> Authorizer {
        let config = AuthorizerConfig {
            enabled: true,
            super_users: ["User:admin".to_string()].into(),
            allow_everyone_if_no_acl_found: allow_if_none,
        };
        Authorizer::with(config, acls, AclStore::Local(PathBuf::from("/nonexistent")))
    }

    fn user(name: &str) -> Session {
        Session {
            principal: format!("User:{name}"),
            host: "10.0.0.1".to_string(),
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn allow_implies_describe_and_deny_wins() {
        let a = authorizer(
            vec![
                acl(Topic, "orders", Literal, "User:alice", Read, Allow),
                acl(Topic, "pay", Prefixed, "User:*", Write, Allow),
                acl(Topic, "payroll", Literal, "User:bob", All, Deny),
                acl(Group, "*", Literal, "User:alice", Read, Allow),
            ],
            false,
        );
        assert!(a.authorize(&user("alice"), Read, Topic, "orders"));
        assert!(a.authorize(&user("alice"), Describe, Topic, "orders"));
        assert!(!a.authorize(&user("alice"), Write, Topic, "orders"));
        assert!(!a.authorize(&user("bob"), Read, Topic, "orders"));
        assert!(a.authorize(&user("bob"), Write, Topic, "payments"));
        assert!(
            !a.authorize(&user("bob"), Write, Topic, "payroll"),
            "deny wins"
        );
        assert!(a.authorize(&user("carol"), Write, Topic, "payroll"));
        assert!(a.authorize(&user("alice"), Read, Group, "any-group"));
        assert!(a.authorize(&user("admin"), Delete, Cluster, CLUSTER_NAME));
        // Nothing names this topic: closed unless allow.everyone.if.no.acl.found.
        assert!(!a.authorize(&user("alice"), Read, Topic, "other"));
        let open = authorizer(
            vec![acl(Topic, "orders", Literal, "User:x", Read, Allow)],
            true,
        );
        assert!(open.authorize(&user("alice"), Read, Topic, "other"));
        assert!(!open.authorize(&user("alice"), Read, Topic, "orders"));
    }

    #[test]
    fn hosts_are_matched_and_alter_configs_implies_describe_configs() {
        let mut from_elsewhere = acl(Topic, "t", Literal, "User:alice", AlterConfigs, Allow);
        from_elsewhere.host = "10.0.0.2".to_string();
        let a = authorizer(
            vec![
                from_elsewhere,
                acl(Topic, "u", Literal, "User:alice", AlterConfigs, Allow),
            ],
            false,
        );
        assert!(!a.authorize(&user("alice"), AlterConfigs, Topic, "t"));
        assert!(a.authorize(&user("alice"), DescribeConfigs, Topic, "u"));
        assert!(!a.authorize(&user("alice"), Describe, Topic, "u"));
    }

    #[test]
    fn filters_select_as_kafka_s_do() {
        let acls = [
            acl(Topic, "orders", Literal, "User:alice", Read, Allow),
            acl(Topic, "ord", Prefixed, "User:bob", Write, Allow),
            acl(Topic, "*", Literal, "User:carol", Describe, Allow),
            acl(Group, "orders", Literal, "User:alice", Read, Allow),
        ];
        let filter = |resource_type, name: Option<&str>, pattern_type| AclFilter {
            resource_type,
            resource_name: name.map(str::to_string),
            pattern_type,
            principal: None,
            host: None,
            operation: ANY,
            permission: ANY,
        };
        let count = |f: AclFilter| acls.iter().filter(|a| f.matches(a)).count();
        assert_eq!(count(filter(ANY, None, ANY)), 4);
        assert_eq!(count(filter(2, None, ANY)), 3);
        assert_eq!(count(filter(2, Some("orders"), MATCH)), 3);
        assert_eq!(count(filter(2, Some("orders"), 3)), 1);
        assert_eq!(count(filter(2, Some("ord"), 4)), 1);
        assert_eq!(count(filter(ANY, Some("orders"), ANY)), 2);
    }

    #[test]
    fn operation_numbers_are_kafka_s() {
        assert_eq!(Operation::All.code(), 2);
        assert_eq!(Operation::Describe.code(), 8);
        assert_eq!(Operation::IdempotentWrite.code(), 12);
        assert_eq!(Operation::from_code(3), Some(Operation::Read));
        assert_eq!(Operation::from_code(1), None);
        assert_eq!(Operation::from_code(15), None);
    }
}
