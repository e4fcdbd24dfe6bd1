//! InitProducerId: ids and epochs for idempotent producers.
//!
//! Transactions are not served yet: a transactional id is refused rather than half-served.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub(crate) async fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if request.transactional_id.is_some() {
        return response
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // KIP-360: an idempotent producer that already has an id asks for an epoch bump.
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
        if request.producer_epoch == i16::MAX {
            return match broker.producer_ids.next().await {
                Ok(id) => response
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0),
                Err(error) => response.with_error_code(error.code()),
            };
        }
        return response
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match broker.producer_ids.next().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => response
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
