//! CreateAcls, DescribeAcls and DeleteAcls: what `kafka-acls.sh` and the admin clients send,
//! answered as Kafka answers them. Without an authorizer (`authorizer.class.name` unset) each
//! answers SECURITY_DISABLED. Who may call them (ALTER or DESCRIBE on the cluster) is checked
//! before they run (crate::authz).

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use crate::broker::Broker;

const NO_AUTHORIZER: &str = "No Authorizer is configured.";

pub(crate) async fn create(
    broker: &Broker,
    request: CreateAclsRequest,
    _version: i16,
) -> CreateAclsResponse {
    let refuse = |code: ResponseError, message: &str| {
        AclCreationResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if !broker.authorizer.enabled() {
        let results = request
            .creations
            .iter()
            .map(|_| refuse(ResponseError::SecurityDisabled, NO_AUTHORIZER))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let checked: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            binding(
                c.resource_type,
                c.resource_name.as_str(),
                c.resource_pattern_type,
                c.principal.as_str(),
                c.host.as_str(),
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|c| c.clone().ok()).collect();
    let stored = match valid.is_empty() {
        true => Ok(()),
        false => broker.authorizer.create(valid.clone()).await,
    };
    if stored.is_ok() {
        for acl in &valid {
            tracing::info!(?acl, "ACL created");
        }
    }
    let results = checked
        .into_iter()
        .map(|outcome| match (outcome, &stored) {
            (Err(why), _) => refuse(ResponseError::InvalidRequest, &why),
            (Ok(_), Ok(())) => AclCreationResult::default(),
            (Ok(_), Err(error)) => refuse(error.response_error(), &error.to_string()),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// A new ACL, checked as Kafka checks it.
fn binding(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    let resource_type =
        ResourceType::from_code(resource_type).ok_or("Invalid resourceType".to_string())?;
    let pattern_type = match pattern_type {
        3 => PatternType::Literal,
        4 => PatternType::Prefixed,
        _ => return Err("Invalid patternType".to_string()),
    };
    let operation = Operation::from_code(operation).ok_or("Invalid operation".to_string())?;
    let permission = match permission {
        2 => Permission::Deny,
        3 => Permission::Allow,
        _ => return Err("Invalid permissionType".to_string()),
    };
    if name.is_empty() {
        return Err("Resource name should not be empty".to_string());
    }
    if resource_type == ResourceType::Cluster && name != crate::acl::CLUSTER_NAME {
        return Err("The only valid name for the CLUSTER resource is kafka-cluster".to_string());
    }
    match principal.split_once(':') {
        Some((kind, who)) if !kind.is_empty() && !who.is_empty() => {}
        _ => return Err(format!("Could not parse principal from `{principal}`")),
    }
    if host.is_empty() {
        return Err("Invalid host".to_string());
    }
    Ok(AclBinding {
        resource_type,
        resource_name: name.to_string(),
        pattern_type,
        principal: principal.to_string(),
        host: host.to_string(),
        operation,
        permission,
    })
}

pub(crate) async fn describe(
    broker: &Broker,
    request: DescribeAclsRequest,
    _version: i16,
) -> DescribeAclsResponse {
    if !broker.authorizer.enabled() {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::SecurityDisabled.code())
            .with_error_message(Some(str_bytes(NO_AUTHORIZER)));
    }
    let filter = AclFilter {
        resource_type: request.resource_type_filter,
        resource_name: request.resource_name_filter.map(|n| n.to_string()),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.map(|p| p.to_string()),
        host: request.host_filter.map(|h| h.to_string()),
        operation: request.operation,
        permission: request.permission_type,
    };
    if !filter.is_valid() {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes("Invalid ACL filter")));
    }
    // One entry per resource pattern, with its ACLs (the bindings come sorted by resource).
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for acl in broker.authorizer.describe(&filter) {
        let description = AclDescription::default()
            .with_principal(str_bytes(&acl.principal))
            .with_host(str_bytes(&acl.host))
            .with_operation(acl.operation.code())
            .with_permission_type(acl.permission.code());
        let same = resources.last().is_some_and(|r| {
            r.resource_type == acl.resource_type.code()
                && r.resource_name.as_str() == acl.resource_name
                && r.pattern_type == acl.pattern_type.code()
        });
        match (same, resources.last_mut()) {
            (true, Some(resource)) => resource.acls.push(description),
            _ => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(acl.resource_type.code())
                    .with_resource_name(str_bytes(&acl.resource_name))
                    .with_pattern_type(acl.pattern_type.code())
                    .with_acls(vec![description]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

pub(crate) async fn delete(
    broker: &Broker,
    request: DeleteAclsRequest,
    _version: i16,
) -> DeleteAclsResponse {
    let failed = |code: ResponseError, message: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(message)))
    };
    if !broker.authorizer.enabled() {
        let results = request
            .filters
            .iter()
            .map(|_| failed(ResponseError::SecurityDisabled, NO_AUTHORIZER))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let filters: Vec<AclFilter> = request
        .filters
        .into_iter()
        .map(|f| AclFilter {
            resource_type: f.resource_type_filter,
            resource_name: f.resource_name_filter.map(|n| n.to_string()),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.map(|p| p.to_string()),
            host: f.host_filter.map(|h| h.to_string()),
            operation: f.operation,
            permission: f.permission_type,
        })
        .collect();
    let valid: Vec<AclFilter> = filters.iter().filter(|f| f.is_valid()).cloned().collect();
    let removed = match valid.is_empty() {
        true => Ok(Vec::new()),
        false => broker.authorizer.delete(valid).await,
    };
    let mut removed = match removed {
        Ok(removed) => removed.into_iter(),
        Err(error) => {
            let results = filters
                .iter()
                .map(|_| failed(error.response_error(), &error.to_string()))
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let results = filters
        .iter()
        .map(|filter| match filter.is_valid() {
            false => failed(ResponseError::InvalidRequest, "Invalid ACL filter"),
            true => {
                let acls = removed.next().unwrap_or_default();
                for acl in &acls {
                    tracing::info!(?acl, "ACL deleted");
                }
                DeleteAclsFilterResult::default().with_matching_acls(
                    acls.iter()
                        .map(|acl| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(acl.resource_type.code())
                                .with_resource_name(str_bytes(&acl.resource_name))
                                .with_pattern_type(acl.pattern_type.code())
                                .with_principal(str_bytes(&acl.principal))
                                .with_host(str_bytes(&acl.host))
                                .with_operation(acl.operation.code())
                                .with_permission_type(acl.permission.code())
                        })
                        .collect(),
                )
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
