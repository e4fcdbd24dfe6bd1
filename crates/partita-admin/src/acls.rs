//! ACLs: create, list and delete (CreateAcls, DescribeAcls, DeleteAcls), as `kafka-acls.sh`
//! does, in Kafka's names and numbers.

use kafka_protocol::messages::create_acls_request::{AclCreation, CreateAclsRequest};
use kafka_protocol::messages::delete_acls_request::{DeleteAclsFilter, DeleteAclsRequest};
use kafka_protocol::messages::describe_acls_request::DescribeAclsRequest;
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::client::AdminClient;
use crate::error::{AdminError, Result};

const ACLS_MAX_VERSION: i16 = 3;

/// One ACL, in Kafka's words (`TOPIC`, `LITERAL`, `User:alice`, `*`, `READ`, `ALLOW`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acl {
    pub resource_type: String,
    pub resource_name: String,
    pub pattern_type: String,
    pub principal: String,
    pub host: String,
    pub operation: String,
    pub permission: String,
}

/// What to select: `None` is any.
#[derive(Debug, Clone, Default)]
pub struct AclFilter {
    pub resource_type: Option<String>,
    pub resource_name: Option<String>,
    /// `LITERAL`, `PREFIXED`, `MATCH` or `ANY` (the default).
    pub pattern_type: Option<String>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<String>,
    pub permission: Option<String>,
}

const RESOURCE_TYPES: [(&str, i8); 6] = [
    ("TOPIC", 2),
    ("GROUP", 3),
    ("CLUSTER", 4),
    ("TRANSACTIONAL_ID", 5),
    ("DELEGATION_TOKEN", 6),
    ("USER", 7),
];
const PATTERN_TYPES: [(&str, i8); 4] = [("ANY", 1), ("MATCH", 2), ("LITERAL", 3), ("PREFIXED", 4)];
const OPERATIONS: [(&str, i8); 13] = [
    ("ALL", 2),
    ("READ", 3),
    ("WRITE", 4),
    ("CREATE", 5),
    ("DELETE", 6),
    ("ALTER", 7),
    ("DESCRIBE", 8),
    ("CLUSTER_ACTION", 9),
    ("DESCRIBE_CONFIGS", 10),
    ("ALTER_CONFIGS", 11),
    ("IDEMPOTENT_WRITE", 12),
    ("CREATE_TOKENS", 13),
    ("DESCRIBE_TOKENS", 14),
];
const PERMISSIONS: [(&str, i8); 2] = [("DENY", 2), ("ALLOW", 3)];
const ANY: i8 = 1;

/// The number of `name` in `table` (any case, `-` for `_`).
fn code(table: &[(&str, i8)], what: &str, name: &str) -> Result<i8> {
    let wanted = name.to_ascii_uppercase().replace('-', "_");
    table
        .iter()
        .find(|(n, _)| *n == wanted)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            AdminError::InvalidInput(format!(
                "{what} {name:?} is not one of {}",
                known.join(", ")
            ))
        })
}

fn name(table: &[(&str, i8)], code: i8) -> String {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("UNKNOWN({code})"), |(n, _)| n.to_string())
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// An ACL from the numbers and strings of a response: its resource, and who may or may not
/// do what.
fn acl_of(
    (resource_type, resource_name, pattern_type): (i8, &StrBytes, i8),
    (principal, host, operation, permission): (&StrBytes, &StrBytes, i8, i8),
) -> Acl {
    Acl {
        resource_type: name(&RESOURCE_TYPES, resource_type),
        resource_name: resource_name.to_string(),
        pattern_type: name(&PATTERN_TYPES, pattern_type),
        principal: principal.to_string(),
        host: host.to_string(),
        operation: name(&OPERATIONS, operation),
        permission: name(&PERMISSIONS, permission),
    }
}

/// Creates ACLs.
pub async fn create(client: &mut AdminClient, acls: &[Acl]) -> Result<()> {
    let mut creations = Vec::with_capacity(acls.len());
    for acl in acls {
        creations.push(
            AclCreation::default()
                .with_resource_type(code(&RESOURCE_TYPES, "resource type", &acl.resource_type)?)
                .with_resource_name(text(&acl.resource_name))
                .with_resource_pattern_type(code(
                    &PATTERN_TYPES,
                    "pattern type",
                    &acl.pattern_type,
                )?)
                .with_principal(text(&acl.principal))
                .with_host(text(&acl.host))
                .with_operation(code(&OPERATIONS, "operation", &acl.operation)?)
                .with_permission_type(code(&PERMISSIONS, "permission", &acl.permission)?),
        );
    }
    let (response, _) = client
        .any_broker()
        .call(ACLS_MAX_VERSION, |_| {
            CreateAclsRequest::default().with_creations(creations)
        })
        .await?;
    for (result, acl) in response.results.iter().zip(acls) {
        AdminError::check(result.error_code, result.error_message.as_deref(), || {
            format!("creating the ACL {acl:?}")
        })?;
    }
    Ok(())
}

fn filter_codes(filter: &AclFilter) -> Result<(i8, i8, i8, i8)> {
    let or_any = |table: &[(&str, i8)], what, value: &Option<String>| match value {
        Some(v) => code(table, what, v),
        None => Ok(ANY),
    };
    Ok((
        or_any(&RESOURCE_TYPES, "resource type", &filter.resource_type)?,
        or_any(&PATTERN_TYPES, "pattern type", &filter.pattern_type)?,
        or_any(&OPERATIONS, "operation", &filter.operation)?,
        or_any(&PERMISSIONS, "permission", &filter.permission)?,
    ))
}

/// The ACLs a filter selects.
pub async fn list(client: &mut AdminClient, filter: &AclFilter) -> Result<Vec<Acl>> {
    let (resource_type, pattern_type, operation, permission) = filter_codes(filter)?;
    let (response, _) = client
        .any_broker()
        .call(ACLS_MAX_VERSION, |_| {
            DescribeAclsRequest::default()
                .with_resource_type_filter(resource_type)
                .with_resource_name_filter(filter.resource_name.as_deref().map(text))
                .with_pattern_type_filter(pattern_type)
                .with_principal_filter(filter.principal.as_deref().map(text))
                .with_host_filter(filter.host.as_deref().map(text))
                .with_operation(operation)
                .with_permission_type(permission)
        })
        .await?;
    AdminError::check(
        response.error_code,
        response.error_message.as_deref(),
        || "listing ACLs".to_string(),
    )?;
    Ok(response
        .resources
        .iter()
        .flat_map(|resource| {
            resource.acls.iter().map(move |acl| {
                acl_of(
                    (
                        resource.resource_type,
                        &resource.resource_name,
                        resource.pattern_type,
                    ),
                    (
                        &acl.principal,
                        &acl.host,
                        acl.operation,
                        acl.permission_type,
                    ),
                )
            })
        })
        .collect())
}

/// Deletes the ACLs a filter selects; those deleted.
pub async fn remove(client: &mut AdminClient, filter: &AclFilter) -> Result<Vec<Acl>> {
    let (resource_type, pattern_type, operation, permission) = filter_codes(filter)?;
    let (response, _) = client
        .any_broker()
        .call(ACLS_MAX_VERSION, |_| {
            DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                .with_resource_type_filter(resource_type)
                .with_resource_name_filter(filter.resource_name.as_deref().map(text))
                .with_pattern_type_filter(pattern_type)
                .with_principal_filter(filter.principal.as_deref().map(text))
                .with_host_filter(filter.host.as_deref().map(text))
                .with_operation(operation)
                .with_permission_type(permission)])
        })
        .await?;
    let mut removed = Vec::new();
    for result in &response.filter_results {
        AdminError::check(result.error_code, result.error_message.as_deref(), || {
            "removing ACLs".to_string()
        })?;
        removed.extend(result.matching_acls.iter().map(|acl| {
            acl_of(
                (acl.resource_type, &acl.resource_name, acl.pattern_type),
                (
                    &acl.principal,
                    &acl.host,
                    acl.operation,
                    acl.permission_type,
                ),
            )
        }));
    }
    Ok(removed)
}
