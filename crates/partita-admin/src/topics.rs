//! Topics: create, list and describe (from Metadata), delete, add partitions.

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::delete_topics_request::{DeleteTopicState, DeleteTopicsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::client::AdminClient;
use crate::connection::Connection;
use crate::error::{AdminError, Result};
use crate::offsets::topic_name;

const CREATE_TOPICS_MAX_VERSION: i16 = 7;
const DELETE_TOPICS_MAX_VERSION: i16 = 6;
const CREATE_PARTITIONS_MAX_VERSION: i16 = 3;
/// How long the broker may take to apply a topic change.
const TOPIC_CHANGE_TIMEOUT_MS: i32 = 30_000;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count, `None` for the broker's default (`num.partitions`).
    pub partitions: Option<i32>,
    /// Replication factor, `None` for the broker's default.
    pub replication_factor: Option<i16>,
    /// Topic configs, `(name, value)`.
    pub configs: Vec<(String, String)>,
}

/// The topic as the broker created it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedTopic {
    /// Topic name.
    pub name: String,
    /// Partition count, -1 if the broker did not say (CreateTopics before v5).
    pub partitions: i32,
    /// Replication factor, -1 if the broker did not say.
    pub replication_factor: i16,
}

/// The controller, which must receive topic changes; the bootstrap broker if it is unknown.
async fn controller(client: &mut AdminClient) -> Result<&mut Connection> {
    let controller_id = client.metadata(Some(&[])).await?.controller_id;
    if controller_id >= 0 && client.broker_address(controller_id).is_some() {
        client.broker(controller_id).await
    } else {
        Ok(client.any_broker())
    }
}

/// Creates a topic.
pub async fn create_topic(client: &mut AdminClient, topic: &NewTopic) -> Result<CreatedTopic> {
    let connection = controller(client).await?;
    let (response, _) = connection
        .call(CREATE_TOPICS_MAX_VERSION, |version| {
            // Before v4 the broker defaults cannot be asked for with -1.
            let fallback = if version >= 4 { -1 } else { 1 };
            let creatable = CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions.unwrap_or(fallback))
                .with_replication_factor(topic.replication_factor.unwrap_or(fallback as i16))
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(name, value)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(name.clone()))
                                .with_value(Some(StrBytes::from_string(value.clone())))
                        })
                        .collect(),
                );
            CreateTopicsRequest::default()
                .with_topics(vec![creatable])
                .with_timeout_ms(TOPIC_CHANGE_TIMEOUT_MS)
        })
        .await?;
    let result = response
        .topics
        .into_iter()
        .find(|t| t.name.0.as_str() == topic.name)
        .ok_or_else(|| AdminError::Protocol {
            address: "controller".into(),
            reason: format!("CreateTopics response does not mention {}", topic.name),
        })?;
    AdminError::check(result.error_code, result.error_message.as_deref(), || {
        format!("creating topic {}", topic.name)
    })?;
    Ok(CreatedTopic {
        name: topic.name.clone(),
        partitions: result.num_partitions,
        replication_factor: result.replication_factor,
    })
}

/// Deletes a topic.
pub async fn delete_topic(client: &mut AdminClient, name: &str) -> Result<()> {
    let connection = controller(client).await?;
    let (response, _) = connection
        .call(DELETE_TOPICS_MAX_VERSION, |version| {
            let request = DeleteTopicsRequest::default().with_timeout_ms(TOPIC_CHANGE_TIMEOUT_MS);
            if version >= 6 {
                request.with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(name)))
                ])
            } else {
                request.with_topic_names(vec![topic_name(name)])
            }
        })
        .await?;
    for result in response.responses {
        if result.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            return Err(AdminError::TopicNotFound(name.to_string()));
        }
        AdminError::check(result.error_code, result.error_message.as_deref(), || {
            format!("deleting topic {name}")
        })?;
    }
    Ok(())
}

/// Raises the partition count of a topic to `count`.
pub async fn create_partitions(client: &mut AdminClient, name: &str, count: i32) -> Result<()> {
    let connection = controller(client).await?;
    let (response, _) = connection
        .call(CREATE_PARTITIONS_MAX_VERSION, |_| {
            CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(name))
                    .with_count(count)
                    .with_assignments(None)])
                .with_timeout_ms(TOPIC_CHANGE_TIMEOUT_MS)
        })
        .await?;
    for result in response.results {
        if result.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            return Err(AdminError::TopicNotFound(name.to_string()));
        }
        AdminError::check(result.error_code, result.error_message.as_deref(), || {
            format!("setting the partition count of {name} to {count}")
        })?;
    }
    Ok(())
}
