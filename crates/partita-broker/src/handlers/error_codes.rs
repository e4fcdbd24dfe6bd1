//! The error codes a group response carries, so that every group API is counted in the
//! `partita_errors_total` metric the same way.

use kafka_protocol::messages::*;

/// A response's error codes: its top-level code and those of its entries.
pub(crate) trait ErrorCodes {
    fn error_codes(&self) -> Vec<i16>;
}

macro_rules! top_level {
    ($($response:ty),*) => {$(
        impl ErrorCodes for $response {
            fn error_codes(&self) -> Vec<i16> {
                vec![self.error_code]
            }
        }
    )*};
}

top_level!(
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    ListGroupsResponse,
    ConsumerGroupHeartbeatResponse,
    ShareGroupHeartbeatResponse,
    ShareAcknowledgeResponse
);

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self) -> Vec<i16> {
        std::iter::once(self.error_code)
            .chain(self.members.iter().map(|m| m.error_code))
            .collect()
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }
}

impl ErrorCodes for TxnOffsetCommitResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self) -> Vec<i16> {
        std::iter::once(self.error_code)
            .chain(self.groups.iter().map(|g| g.error_code))
            .collect()
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn error_codes(&self) -> Vec<i16> {
        std::iter::once(self.error_code)
            .chain(
                self.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
            .collect()
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.groups.iter().map(|g| g.error_code).collect()
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.results.iter().map(|r| r.error_code).collect()
    }
}

impl ErrorCodes for ConsumerGroupDescribeResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.groups.iter().map(|g| g.error_code).collect()
    }
}

impl ErrorCodes for ShareGroupDescribeResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.groups.iter().map(|g| g.error_code).collect()
    }
}

impl ErrorCodes for DescribeShareGroupOffsetsResponse {
    fn error_codes(&self) -> Vec<i16> {
        self.groups
            .iter()
            .flat_map(|g| {
                std::iter::once(g.error_code).chain(
                    g.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
            })
            .collect()
    }
}

impl ErrorCodes for ShareFetchResponse {
    fn error_codes(&self) -> Vec<i16> {
        std::iter::once(self.error_code)
            .chain(self.responses.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .flat_map(|p| [p.error_code, p.acknowledge_error_code])
            }))
            .collect()
    }
}
