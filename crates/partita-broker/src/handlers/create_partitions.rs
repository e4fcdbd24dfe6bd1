//! CreatePartitions: grow a topic; shrinking is refused as in Kafka.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::create_topics::check_assigned_brokers;
use super::str_bytes;
use crate::broker::Broker;
use crate::error::BrokerError;

pub(crate) async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for wanted in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(wanted.name.clone());
        let added = match check_assignments(broker, &wanted) {
            Ok(()) => {
                let name = wanted.name.as_str();
                let validate_only = request.validate_only;
                broker
                    .topics
                    .add_partitions(name, wanted.count, validate_only)
                    .await
            }
            Err(error) => Err(error),
        };
        results.push(match added {
            Ok(()) => result,
            Err(error) => result
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(&error.to_string()))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// Manual assignments, when given, must name only this broker, one per new partition.
fn check_assignments(broker: &Broker, wanted: &CreatePartitionsTopic) -> Result<(), BrokerError> {
    let Some(assignments) = &wanted.assignments else {
        return Ok(());
    };
    let brokers = assignments.iter().flat_map(|a| a.broker_ids.iter());
    check_assigned_brokers(broker, brokers.map(|id| id.0))?;
    if let Some(topic) = broker.topics.get(wanted.name.as_str()) {
        let adding = wanted.count - topic.partitions.len() as i32;
        if adding > 0 && assignments.len() as i32 != adding {
            return Err(BrokerError::InvalidReplicaAssignment(format!(
                "Attempted to add {adding} additional partitions, but only {} assignments \
                 were specified.",
                assignments.len()
            )));
        }
    }
    Ok(())
}
