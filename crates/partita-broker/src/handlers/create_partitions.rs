//! CreatePartitions: grow a topic; shrinking is refused as in Kafka.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub(crate) async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|wanted| {
            let result = CreatePartitionsTopicResult::default().with_name(wanted.name.clone());
            match broker.topics.add_partitions(
                wanted.name.as_str(),
                wanted.count,
                request.validate_only,
            ) {
                Ok(()) => result,
                Err(error) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&error.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
