//! DeleteTopics, by name (all versions) or by topic id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use partita_groups::{ClientContext, Request, Response};

use super::{str_bytes, topic_name};
use crate::broker::Broker;

pub(crate) async fn handle(
    broker: &Broker,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil()))
            .collect()
    };
    let mut responses: Vec<DeletableTopicResult> = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        responses.push(delete_one(broker, name, id).await);
    }
    for deleted in responses.iter().filter(|r| r.error_code == 0) {
        if let Some(name) = &deleted.name {
            forget_offsets(broker, name.as_str()).await;
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Every group forgets its committed offsets of a deleted topic, as in Kafka.
async fn forget_offsets(broker: &Broker, topic: &str) {
    let client = ClientContext::default();
    let mut removed = 0;
    for shard in 0..broker.groups.shard_count() {
        let request = Request::TopicDeleted(topic.to_string());
        if let Ok(Response::TopicDeleted(n)) =
            broker.groups.call_shard(shard, &client, request).await
        {
            removed += n;
        }
    }
    if removed > 0 {
        tracing::info!(
            topic,
            offsets = removed,
            "removed the committed offsets of a deleted topic"
        );
    }
}

async fn delete_one(broker: &Broker, name: Option<TopicName>, id: Uuid) -> DeletableTopicResult {
    let topic = match &name {
        Some(name) => broker.topics.get(name.as_str()),
        None => broker.topics.get_by_id(id),
    };
    let result = DeletableTopicResult::default()
        .with_name(name.clone())
        .with_topic_id(id);
    let Some(topic) = topic else {
        let error = if name.is_some() {
            ResponseError::UnknownTopicOrPartition
        } else {
            ResponseError::UnknownTopicId
        };
        return result.with_error_code(error.code());
    };
    let result = result
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.id);
    if !broker.config.delete_topic_enable {
        return result.with_error_code(ResponseError::TopicDeletionDisabled.code());
    }
    if topic.is_internal() {
        return result
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes("internal topics cannot be deleted")));
    }
    match broker.topics.delete(&topic.name).await {
        Ok(_) => result,
        Err(error) => result
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(&error.to_string()))),
    }
}
