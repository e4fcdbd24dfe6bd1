//! Requests whose counts lie about their size are refused by the decoder, never allowed to size
//! an allocation (found by fuzz/: the broker aborted on a 130-byte ListOffsets).

use bytes::Bytes;
use kafka_protocol::messages::{ListOffsetsRequest, MetadataRequest};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable};

#[test]
fn a_huge_array_count_in_a_small_request_is_an_error() {
    let frame = include_bytes!("../../../fuzz/corpus/request/regression-list-offsets-huge-array");
    let mut buf = Bytes::from_static(frame);
    let header = decode_request_header_from_buffer(&mut buf).unwrap();
    assert_eq!(header.request_api_key, 2);
    assert!(ListOffsetsRequest::decode(&mut buf, header.request_api_version).is_err());
}

#[test]
fn array_counts_beyond_the_bytes_left_are_errors() {
    // Metadata v0: topics is an int32-counted array.
    let mut classic = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 1]);
    assert!(MetadataRequest::decode(&mut classic, 0).is_err());
    // Metadata v12: topics is a compact array, counted by an unsigned varint (+1).
    let mut compact = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x07, 0, 0]);
    assert!(MetadataRequest::decode(&mut compact, 12).is_err());
}
