//! Entry point for fuzzing the request path (feature `fuzzing`): one request frame in, the
//! response frame or a clean close out, exactly as a connection would handle it.
//!
//! Used by the targets in `fuzz/`; not part of the broker's API otherwise.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use crate::broker::Broker;
use crate::dispatch::{dispatch, DispatchError};

/// What the broker does with one request frame.
#[derive(Debug)]
pub enum FrameOutcome {
    /// The encoded response, size prefix included.
    Response(BytesMut),
    /// No response is due (a produce with `acks=0`).
    NoResponse,
    /// The connection is closed, with the reason the broker logs.
    Close(String),
}

/// Answers one request frame (the bytes after the 4-byte size prefix) as a connection does,
/// including the size check a connection makes before dispatching.
pub async fn answer_frame(broker: &Broker, frame: Bytes) -> FrameOutcome {
    let limit = broker.config.socket_request_max_bytes;
    if frame.len() < 8 || frame.len() > limit {
        return FrameOutcome::Close(format!(
            "request size {} is outside 8..={limit}",
            frame.len()
        ));
    }
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    let session = crate::acl::Session::anonymous(peer.ip());
    let next = crate::connection::NextRequest::already_sent();
    match dispatch(broker, peer, ("PLAINTEXT", &session, &next), frame).await {
        Ok(Some(reply)) => FrameOutcome::Response(reply.frame),
        Ok(None) => FrameOutcome::NoResponse,
        Err(DispatchError::Close(reason)) => FrameOutcome::Close(reason),
    }
}

/// Feeds `frames` to the SASL exchange of a connection on a SASL listener with PLAIN (whose
/// JAAS setting is `jaas`), both SCRAM mechanisms (with `broker`'s credentials) and
/// OAUTHBEARER (tokens checked against the JWKS file `jwks`), as a connection would before
/// authentication: each frame is answered, dispatched (ApiVersions) or ends the exchange.
/// Returns the responses, and the principal if one authenticated. Panics only on a bug.
pub async fn sasl_exchange(
    broker: &Broker,
    jaas: &str,
    jwks: &std::path::Path,
    frames: &[Bytes],
) -> (Vec<BytesMut>, Option<String>) {
    use crate::sasl::{SaslConfig, SaslSession, SaslStep};
    let mechanisms = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER";
    let url = format!("file://{}", jwks.display());
    let property = |name: &str| (name == "sasl.oauthbearer.jwks.endpoint.url").then(|| url.clone());
    let Ok(config) = SaslConfig::new("SASL_SSL", mechanisms, |_| Some(jaas.to_string()), property)
    else {
        return (Vec::new(), None);
    };
    let mut session = SaslSession::new(std::sync::Arc::new(config), 0);
    let mut responses = Vec::new();
    for frame in frames {
        // A connection refuses frames shorter than a request header before this point.
        if frame.len() < 8 {
            break;
        }
        match session.step(frame, &broker.credentials).await {
            Ok(SaslStep::Reply { reply, close }) => {
                responses.push(reply.frame);
                if close {
                    break;
                }
            }
            Ok(SaslStep::Dispatch) => {}
            Ok(SaslStep::Close(_)) | Err(_) => break,
        }
        if session.principal().is_some() {
            break;
        }
    }
    (responses, session.principal().map(str::to_string))
}
