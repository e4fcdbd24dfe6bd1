//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and a read-only view
//! of the broker's own settings).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    alter_configs_response, AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::str_bytes;
use partita_groups::config::{
    CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS, SHARE_AUTO_OFFSET_RESET,
};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topic_config::{
    self, config_type, default_source, TopicOverrides, SOURCE_DEFAULT, SOURCE_STATIC_BROKER,
    SOURCE_TOPIC_OVERRIDE, TOPIC_CONFIG_NAMES,
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

/// Kafka's config source of a value set on a group.
const SOURCE_GROUP_CONFIG: i8 = 8;

/// The group configs this broker serves, with their types: a consumer group's session
/// timeout and heartbeat interval, and where a share group starts reading.
const GROUP_CONFIGS: &[(&str, i8)] = &[
    (
        CONSUMER_HEARTBEAT_INTERVAL_MS,
        crate::config::config_type::INT,
    ),
    (CONSUMER_SESSION_TIMEOUT_MS, crate::config::config_type::INT),
    (SHARE_AUTO_OFFSET_RESET, crate::config::config_type::STRING),
];

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(crate) async fn describe(
    broker: &Broker,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let mut group_settings = std::collections::HashMap::new();
    for resource in &request.resources {
        if resource.resource_type == RESOURCE_GROUP {
            let group_id = resource.resource_name.to_string();
            // Described as unset (the broker's defaults) if the coordinator cannot answer.
            let set = group_configs(broker, &group_id).await.unwrap_or_default();
            group_settings.insert(group_id, set);
        }
    }
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            match resource.resource_type {
                RESOURCE_TOPIC => match broker.topics.get(resource.resource_name.as_str()) {
                    None => result
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes("unknown topic"))),
                    Some(topic) => result.with_configs(
                        TOPIC_CONFIG_NAMES
                            .iter()
                            .filter(|name| wanted(name))
                            .map(|name| {
                                topic_entry(
                                    broker,
                                    name,
                                    &topic.overrides,
                                    request.include_synonyms,
                                )
                            })
                            .collect(),
                    ),
                },
                RESOURCE_GROUP => {
                    let set = group_settings.remove(resource.resource_name.as_str());
                    let set = set.unwrap_or_default();
                    let configs = GROUP_CONFIGS
                        .iter()
                        .filter(|(name, _)| wanted(name))
                        .map(|&(name, kind)| match set.get(name) {
                            Some(value) => {
                                entry(name, Some(value.clone()), SOURCE_GROUP_CONFIG, kind)
                            }
                            None => entry(
                                name,
                                Some(group_default(broker, name)),
                                SOURCE_DEFAULT,
                                kind,
                            ),
                        })
                        .collect();
                    result.with_configs(configs)
                }
                // The cluster-wide default resource (""): no dynamic defaults are kept.
                RESOURCE_BROKER if resource.resource_name.is_empty() => result,
                RESOURCE_BROKER => {
                    let defaults = TOPIC_CONFIG_NAMES
                        .iter()
                        .filter_map(|name| {
                            topic_config::broker_property_for(name).map(|b| (name, b))
                        })
                        .filter(|(_, broker_name)| wanted(broker_name))
                        .map(|(name, broker_name)| {
                            let value = topic_config::default_value(&broker.config, name);
                            let source = default_source(&broker.config, name);
                            entry(broker_name, value, source, config_type(name))
                                .with_read_only(true)
                        });
                    let own = broker
                        .config
                        .described()
                        .into_iter()
                        .filter(|(name, _, _)| wanted(name))
                        .map(|(name, value, kind)| {
                            // A node id is always configured in Kafka; here it has a default.
                            let set = broker.config.explicit.contains(name) || name == "node.id";
                            let source = if set {
                                SOURCE_STATIC_BROKER
                            } else {
                                SOURCE_DEFAULT
                            };
                            entry(name, Some(value), source, kind).with_read_only(true)
                        });
                    let mut configs: Vec<_> = defaults.chain(own).collect();
                    configs.sort_by(|a, b| a.name.cmp(&b.name));
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_entry(
    broker: &Broker,
    name: &str,
    overrides: &TopicOverrides,
    include_synonyms: bool,
) -> DescribeConfigsResourceResult {
    let default = topic_config::default_value(&broker.config, name);
    let inherited = default_source(&broker.config, name);
    let (value, source) = match overrides.get(name) {
        Some(value) => (Some(value.clone()), SOURCE_TOPIC_OVERRIDE),
        None => (default.clone(), inherited),
    };
    let mut result = entry(name, value.clone(), source, config_type(name));
    if include_synonyms {
        let mut synonyms = Vec::new();
        if source == SOURCE_TOPIC_OVERRIDE {
            synonyms.push(synonym(name, value, SOURCE_TOPIC_OVERRIDE));
        }
        if let Some(broker_name) = topic_config::broker_property_for(name) {
            synonyms.push(synonym(broker_name, default, inherited));
        }
        result = result.with_synonyms(synonyms);
    }
    result
}

fn entry(name: &str, value: Option<String>, source: i8, kind: i8) -> DescribeConfigsResourceResult {
    // No documentation is kept; null, as Kafka answers when it is not asked for.
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(value.as_deref().map(str_bytes))
        .with_config_source(source)
        .with_config_type(kind)
        .with_documentation(None)
}

fn synonym(name: &str, value: Option<String>, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(value.as_deref().map(str_bytes))
        .with_source(source)
}

pub(crate) async fn incremental_alter(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let changes: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = if resource.resource_type == RESOURCE_GROUP {
            alter_group(
                broker,
                &resource.resource_name,
                request.validate_only,
                &changes,
            )
            .await
        } else {
            alter_topic(
                broker,
                resource.resource_type,
                &resource.resource_name,
                request.validate_only,
                |overrides| {
                    for (name, operation, value) in &changes {
                        apply_operation(overrides, name, *operation, value.as_deref())?;
                    }
                    Ok(())
                },
            )
            .await
        };
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err((code, message)) => response
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub(crate) async fn alter(
    broker: &Broker,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome = alter_topic(
            broker,
            resource.resource_type,
            &resource.resource_name,
            request.validate_only,
            |overrides| {
                // AlterConfigs replaces the whole set of overrides.
                overrides.clear();
                for config in &resource.configs {
                    if let Some(value) = &config.value {
                        overrides.insert(config.name.to_string(), value.to_string());
                    }
                }
                Ok(())
            },
        )
        .await;
        let response = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err((code, message)) => response
                .with_error_code(code)
                .with_error_message(Some(str_bytes(&message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// The configs set on a group, or the error of a coordinator that cannot answer.
async fn group_configs(broker: &Broker, group_id: &str) -> Result<BTreeMap<String, String>, i16> {
    let client = partita_groups::ClientContext::default();
    let ask = partita_groups::Request::GroupConfig(group_id.to_string());
    match broker.groups.call(group_id, &client, ask).await {
        Ok(partita_groups::Response::GroupConfig(configs)) => Ok(configs),
        other => Err(crate::groups::CoordinatorError::of(other)),
    }
}

/// What a group config is when the group does not set it: the broker's setting.
fn group_default(broker: &Broker, name: &str) -> String {
    let groups = &broker.config.groups;
    match name {
        CONSUMER_HEARTBEAT_INTERVAL_MS => groups.consumer_heartbeat_interval_ms.to_string(),
        CONSUMER_SESSION_TIMEOUT_MS => groups.consumer_session_timeout_ms.to_string(),
        _ => "latest".to_string(),
    }
}

/// Group configs, changed as IncrementalAlterConfigs asks and checked as Kafka checks them:
/// known names only, numbers within the broker's `group.consumer.min/max.*` bounds, and a
/// heartbeat interval shorter than the session timeout.
async fn alter_group(
    broker: &Broker,
    group_id: &StrBytes,
    validate_only: bool,
    changes: &[(String, i8, Option<String>)],
) -> Result<(), (i16, String)> {
    let invalid = |message: String| Err((ResponseError::InvalidConfig.code(), message));
    // The change applies to the configs the group has: unreadable, nothing is written (it
    // would replace them all).
    let unavailable = |code| (code, "the group coordinator is not available".to_string());
    let mut configs = group_configs(broker, group_id.as_str())
        .await
        .map_err(unavailable)?;
    for (name, operation, value) in changes {
        if !GROUP_CONFIGS.iter().any(|(known, _)| known == name) {
            return invalid(format!("Unknown group config name: {name}"));
        }
        match (*operation, value) {
            (OP_SET, Some(value)) => configs.insert(name.clone(), value.clone()),
            (OP_DELETE, _) => configs.remove(name),
            (OP_SET, None) => return invalid(format!("{name} needs a value")),
            _ => return invalid(format!("{name} is not a list")),
        };
    }
    let groups = &broker.config.groups;
    let number = |name: &str| -> Result<i32, (i16, String)> {
        match configs.get(name) {
            None => Ok(group_default(broker, name).parse().unwrap_or(0)),
            Some(value) => value.parse::<i32>().map_err(|_| {
                let message = format!("Invalid value {value} for configuration {name}");
                (ResponseError::InvalidConfig.code(), message)
            }),
        }
    };
    let bounded = [
        (
            CONSUMER_SESSION_TIMEOUT_MS,
            groups.consumer_session_timeout_bounds_ms,
            "group.consumer.min.session.timeout.ms",
            "group.consumer.max.session.timeout.ms",
        ),
        (
            CONSUMER_HEARTBEAT_INTERVAL_MS,
            groups.consumer_heartbeat_interval_bounds_ms,
            "group.consumer.min.heartbeat.interval.ms",
            "group.consumer.max.heartbeat.interval.ms",
        ),
    ];
    for (name, (min, max), min_name, max_name) in bounded {
        if !configs.contains_key(name) {
            continue;
        }
        let value = number(name)?;
        if value < min {
            return invalid(format!(
                "{name} must be greater than or equal to {min_name}"
            ));
        }
        if value > max {
            return invalid(format!("{name} must be less than or equal to {max_name}"));
        }
    }
    if number(CONSUMER_HEARTBEAT_INTERVAL_MS)? >= number(CONSUMER_SESSION_TIMEOUT_MS)? {
        return invalid(format!(
            "{CONSUMER_HEARTBEAT_INTERVAL_MS} must be less than {CONSUMER_SESSION_TIMEOUT_MS}"
        ));
    }
    if let Some(value) = configs.get(SHARE_AUTO_OFFSET_RESET) {
        if value != "earliest" && value != "latest" {
            return invalid(format!(
                "{SHARE_AUTO_OFFSET_RESET} must be earliest or latest"
            ));
        }
    }
    if validate_only {
        return Ok(());
    }
    let client = partita_groups::ClientContext::default();
    let set = partita_groups::Request::SetGroupConfig(group_id.to_string(), configs);
    match broker.groups.call(group_id.as_str(), &client, set).await {
        Ok(partita_groups::Response::Done(0)) => Ok(()),
        Ok(partita_groups::Response::Done(code)) => {
            Err((code, "the setting could not be stored".to_string()))
        }
        other => Err(unavailable(crate::groups::CoordinatorError::of(other))),
    }
}

/// Applies `change` to a copy of a topic's overrides, validates the result and stores it.
async fn alter_topic(
    broker: &Broker,
    resource_type: i8,
    name: &StrBytes,
    validate_only: bool,
    change: impl FnOnce(&mut TopicOverrides) -> Result<(), BrokerError>,
) -> Result<(), (i16, String)> {
    let fail = |e: BrokerError| (e.code(), e.to_string());
    if resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("altering resource type {resource_type} is not supported"),
        ));
    }
    let topic = broker
        .topics
        .get(name.as_str())
        .ok_or_else(|| fail(BrokerError::UnknownTopic(name.to_string())))?;
    let mut overrides = topic.overrides.clone();
    change(&mut overrides).map_err(fail)?;
    for (key, value) in &overrides {
        topic_config::validate(key, value)
            .map_err(|reason| fail(BrokerError::InvalidConfig(reason)))?;
    }
    if validate_only {
        return Ok(());
    }
    broker
        .topics
        .set_overrides(name.as_str(), overrides)
        .await
        .map_err(fail)
}

fn apply_operation(
    overrides: &mut TopicOverrides,
    name: &str,
    operation: i8,
    value: Option<&str>,
) -> Result<(), BrokerError> {
    match operation {
        OP_SET => {
            let value = value.ok_or_else(|| {
                BrokerError::InvalidConfig(format!("SET of {name} needs a value"))
            })?;
            overrides.insert(name.to_string(), value.to_string());
        }
        OP_DELETE => {
            overrides.remove(name);
        }
        OP_APPEND | OP_SUBTRACT if name == "cleanup.policy" => {
            let current = overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| "delete".to_string());
            let mut items: Vec<String> = current.split(',').map(|s| s.trim().to_string()).collect();
            let given = value.unwrap_or_default();
            for item in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if operation == OP_APPEND {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                } else {
                    items.retain(|i| i != item);
                }
            }
            overrides.insert(name.to_string(), items.join(","));
        }
        OP_APPEND | OP_SUBTRACT => {
            return Err(BrokerError::InvalidConfig(format!(
                "{name} is not a list; APPEND and SUBTRACT do not apply"
            )))
        }
        other => {
            return Err(BrokerError::InvalidRequest(format!(
                "unknown config operation {other}"
            )))
        }
    }
    Ok(())
}
