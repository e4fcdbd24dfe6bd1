//! Topic configs: describe (DescribeConfigs) and alter (IncrementalAlterConfigs, or AlterConfigs
//! with the full set for brokers that lack the incremental API).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_request::{self, AlterConfigsRequest};
use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::client::AdminClient;
use crate::error::{AdminError, Result};

const DESCRIBE_CONFIGS_MAX_VERSION: i16 = 4;
const INCREMENTAL_ALTER_CONFIGS_MAX_VERSION: i16 = 1;
const ALTER_CONFIGS_MAX_VERSION: i16 = 2;
const RESOURCE_TOPIC: i8 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;

/// One config of a topic.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigEntry {
    /// Property name, e.g. `retention.ms`.
    pub name: String,
    /// Value, `None` if sensitive or unset.
    pub value: Option<String>,
    /// Where the value comes from, in Kafka's words (`DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`, ...).
    pub source: String,
    /// Whether the value may not be changed.
    pub read_only: bool,
    /// Whether the value is a secret (and so not shown).
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Whether the topic overrides this config (rather than inheriting it).
    pub fn is_topic_override(&self) -> bool {
        self.source == source_name(SOURCE_DYNAMIC_TOPIC)
    }
}

/// Every config of `topic`, sorted by name.
pub async fn describe_topic_configs(
    client: &mut AdminClient,
    topic: &str,
) -> Result<Vec<ConfigEntry>> {
    let (response, _) = client
        .any_broker()
        .call(DESCRIBE_CONFIGS_MAX_VERSION, |_| {
            DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_configuration_keys(None),
            ])
        })
        .await?;
    let mut entries = Vec::new();
    for result in response.results {
        if result.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            return Err(AdminError::TopicNotFound(topic.to_string()));
        }
        AdminError::check(result.error_code, result.error_message.as_deref(), || {
            format!("describing the configs of topic {topic}")
        })?;
        entries.extend(result.configs.into_iter().map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: source_name(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        }));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Sets `set` and removes `delete` (back to the default) on `topic`.
pub async fn alter_topic_configs(
    client: &mut AdminClient,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    if client
        .any_broker()
        .version::<IncrementalAlterConfigsRequest>(INCREMENTAL_ALTER_CONFIGS_MAX_VERSION)
        .is_err()
    {
        return alter_by_replacing(client, topic, set, delete).await;
    }
    let mut configs: Vec<AlterableConfig> = set
        .iter()
        .map(|(name, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(value.clone())))
        })
        .collect();
    configs.extend(delete.iter().map(|name| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.clone()))
            .with_config_operation(1)
            .with_value(None)
    }));
    let (response, _) = client
        .any_broker()
        .call(INCREMENTAL_ALTER_CONFIGS_MAX_VERSION, |_| {
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_configs(configs),
            ])
        })
        .await?;
    for result in response.responses {
        check_alter_result(topic, result.error_code, result.error_message.as_deref())?;
    }
    Ok(())
}

/// AlterConfigs replaces a topic's whole override set, so read it first and apply the change.
async fn alter_by_replacing(
    client: &mut AdminClient,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> Result<()> {
    let mut overrides: BTreeMap<String, Option<String>> = describe_topic_configs(client, topic)
        .await?
        .into_iter()
        .filter(ConfigEntry::is_topic_override)
        .map(|c| (c.name, c.value))
        .collect();
    for name in delete {
        overrides.remove(name);
    }
    for (name, value) in set {
        overrides.insert(name.clone(), Some(value.clone()));
    }
    let (response, _) = client
        .any_broker()
        .call(ALTER_CONFIGS_MAX_VERSION, |_| {
            AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_configs(
                        overrides
                            .iter()
                            .map(|(name, value)| {
                                alter_configs_request::AlterableConfig::default()
                                    .with_name(StrBytes::from_string(name.clone()))
                                    .with_value(value.clone().map(StrBytes::from_string))
                            })
                            .collect(),
                    ),
            ])
        })
        .await?;
    for result in response.responses {
        check_alter_result(topic, result.error_code, result.error_message.as_deref())?;
    }
    Ok(())
}

fn check_alter_result(topic: &str, code: i16, message: Option<&str>) -> Result<()> {
    if code == UNKNOWN_TOPIC_OR_PARTITION {
        return Err(AdminError::TopicNotFound(topic.to_string()));
    }
    AdminError::check(code, message, || {
        format!("altering the configs of topic {topic}")
    })
}

/// Kafka's name for a `config_source` value.
fn source_name(source: i8) -> String {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
    .to_string()
}
