//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and a read-only view
//! of the broker's own settings).

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
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topic_config::{
    self, config_type, default_source, TopicOverrides, SOURCE_DEFAULT, SOURCE_STATIC_BROKER,
    SOURCE_TOPIC_OVERRIDE, TOPIC_CONFIG_NAMES,
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;

/// The group config this broker serves: where a share group starts reading.
const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(crate) async fn describe(
    broker: &Broker,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let mut share_settings = std::collections::HashMap::new();
    for resource in &request.resources {
        if resource.resource_type == RESOURCE_GROUP {
            let group_id = resource.resource_name.to_string();
            let earliest = share_auto_offset_reset(broker, &group_id).await;
            share_settings.insert(group_id, earliest);
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
                    let earliest = share_settings
                        .get(resource.resource_name.as_str())
                        .copied()
                        .unwrap_or(false);
                    let value = if earliest { "earliest" } else { "latest" };
                    let source = if earliest {
                        SOURCE_TOPIC_OVERRIDE
                    } else {
                        SOURCE_DEFAULT
                    };
                    let configs = if wanted(SHARE_AUTO_OFFSET_RESET) {
                        vec![entry(
                            SHARE_AUTO_OFFSET_RESET,
                            Some(value.to_string()),
                            source,
                            crate::config::config_type::STRING,
                        )]
                    } else {
                        Vec::new()
                    };
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

/// A group's `share.auto.offset.reset`: whether it is `earliest`.
async fn share_auto_offset_reset(broker: &Broker, group_id: &str) -> bool {
    let client = partita_groups::ClientContext::default();
    let ask = partita_groups::Request::ShareAutoOffsetReset(group_id.to_string());
    matches!(
        broker.groups.call(group_id, &client, ask).await,
        Ok(partita_groups::Response::ShareAutoOffsetReset(Some(true)))
    )
}

/// Group configs: `share.auto.offset.reset` (`earliest` or `latest`) of a share group.
async fn alter_group(
    broker: &Broker,
    group_id: &StrBytes,
    validate_only: bool,
    changes: &[(String, i8, Option<String>)],
) -> Result<(), (i16, String)> {
    let invalid = |message: String| Err((ResponseError::InvalidConfig.code(), message));
    let mut earliest = None;
    for (name, operation, value) in changes {
        if name != SHARE_AUTO_OFFSET_RESET {
            return invalid(format!("unknown group config {name}"));
        }
        earliest = match (*operation, value.as_deref()) {
            (OP_SET, Some("earliest")) => Some(true),
            (OP_SET, Some("latest")) | (OP_DELETE, _) => Some(false),
            _ => return invalid(format!("{name} must be earliest or latest")),
        };
    }
    if let (Some(earliest), false) = (earliest, validate_only) {
        let client = partita_groups::ClientContext::default();
        let set = partita_groups::Request::SetShareAutoOffsetReset(group_id.to_string(), earliest);
        match broker.groups.call(group_id.as_str(), &client, set).await {
            Ok(partita_groups::Response::Done(0)) => {}
            Ok(partita_groups::Response::Done(code)) => {
                return Err((code, "the setting could not be stored".to_string()))
            }
            other => {
                let code = crate::groups::CoordinatorError::of(other);
                return Err((code, "the group coordinator is not available".to_string()));
            }
        }
    }
    Ok(())
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
