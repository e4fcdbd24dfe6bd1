//! One connection to one broker: TLS and SASL if configured, framing, correlation ids and
//! API version negotiation.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{AdminError, Result};
use crate::security::{ClientSecurity, SaslCredentials, SaslMechanism};

/// A plaintext or TLS byte stream.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Responses larger than this are refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Sent in every request header, so broker logs show who asked.
const CLIENT_ID: &str = "partita-admin";

/// How long to wait for the network.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Bound on establishing a TCP connection.
    pub connect: Duration,
    /// Bound on one request's round trip (on top of any wait the request itself asks for).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
        }
    }
}

/// A connection that has negotiated API versions with its broker.
pub(crate) struct Connection {
    address: String,
    stream: Box<dyn Io>,
    next_correlation_id: i32,
    /// Broker's (min, max) version per API key.
    broker_versions: HashMap<i16, (i16, i16)>,
    timeouts: Timeouts,
}

impl Connection {
    /// Connects to `address` (with TLS and SASL as `security` says) and learns which API
    /// versions the broker serves.
    pub(crate) async fn open(
        address: &str,
        timeouts: Timeouts,
        security: &ClientSecurity,
    ) -> Result<Connection> {
        let unreachable = |reason: String| AdminError::Unreachable {
            address: address.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect(address))
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no connection after {} s",
                    timeouts.connect.as_secs()
                ))
            })?
            .map_err(|e| unreachable(e.to_string()))?;
        stream.set_nodelay(true).ok();
        let stream: Box<dyn Io> = match &security.tls {
            None => Box::new(stream),
            Some(config) => {
                let host = address
                    .rsplit_once(':')
                    .map_or(address, |(host, _)| host)
                    .trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| unreachable(format!("{host} is no TLS server name: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config));
                let tls = tokio::time::timeout(timeouts.connect, connector.connect(name, stream))
                    .await
                    .map_err(|_| unreachable("no TLS handshake in time".to_string()))?
                    .map_err(|e| unreachable(format!("TLS handshake: {e}")))?;
                Box::new(tls)
            }
        };
        let mut connection = Connection {
            address: address.to_string(),
            stream,
            next_correlation_id: 1,
            broker_versions: HashMap::new(),
            timeouts,
        };
        // ApiVersions v0 is understood by every broker and needs no negotiation.
        let response: ApiVersionsResponse = connection
            .round_trip(&ApiVersionsRequest::default(), 0, Duration::ZERO)
            .await?;
        AdminError::check(response.error_code, None, || {
            format!("ApiVersions to {address}")
        })?;
        connection.broker_versions = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, (api.min_version, api.max_version)))
            .collect();
        if let Some(sasl) = &security.sasl {
            connection.authenticate(sasl).await?;
        }
        Ok(connection)
    }

    /// SaslHandshake, then SaslAuthenticate until the mechanism is done.
    async fn authenticate(&mut self, sasl: &SaslCredentials) -> Result<()> {
        let failed = |address: &str, reason: String| AdminError::Authentication {
            address: address.to_string(),
            reason,
        };
        let name = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(mechanism) => mechanism.name(),
        };
        let (handshake, _) = self
            .call(1, |_| {
                SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(name))
            })
            .await?;
        if handshake.error_code != 0 {
            let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(failed(
                &self.address,
                format!("the broker does not take {name} (it offers {offered:?})"),
            ));
        }
        match sasl.mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{}\0{}", sasl.username, sasl.password);
                self.sasl_step(token.into_bytes()).await?;
            }
            SaslMechanism::Scram(mechanism) => {
                let mut client =
                    partita_scram::ScramClient::new(mechanism, &sasl.username, &sasl.password);
                let challenge = self.sasl_step(client.first()).await?;
                let proof = client
                    .answer(&challenge)
                    .map_err(|why| failed(&self.address, why))?;
                let last = self.sasl_step(proof).await?;
                client
                    .verify(&last)
                    .map_err(|why| failed(&self.address, why))?;
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate round trip: the broker's token back.
    async fn sasl_step(&mut self, token: Vec<u8>) -> Result<Vec<u8>> {
        let (response, _) = self
            .call(2, |_| {
                SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token))
            })
            .await?;
        if response.error_code != 0 {
            let reason = response.error_message.map_or_else(
                || format!("error {}", response.error_code),
                |m| m.to_string(),
            );
            return Err(AdminError::Authentication {
                address: self.address.clone(),
                reason,
            });
        }
        Ok(response.auth_bytes.to_vec())
    }

    /// `host:port` of the broker.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// The highest version of `R` that both sides speak, with this client capped at `cap`
    /// (the highest version whose fields the caller handles).
    pub(crate) fn version<R: Request>(&self, cap: i16) -> Result<i16> {
        let ours_max = R::VERSIONS.max.min(cap);
        let ours_min = R::VERSIONS.min;
        let unsupported = || AdminError::Unsupported {
            address: self.address.clone(),
            api: api_name(R::KEY),
            ours: format!("{ours_min}..{ours_max}"),
        };
        let (broker_min, broker_max) =
            *self.broker_versions.get(&R::KEY).ok_or_else(unsupported)?;
        let version = ours_max.min(broker_max);
        if version < ours_min.max(broker_min) {
            return Err(unsupported());
        }
        Ok(version)
    }

    /// Negotiates a version, builds the request for it with `build`, and returns the response
    /// with the version used.
    pub(crate) async fn call<R: Request>(
        &mut self,
        cap: i16,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(R::Response, i16)> {
        self.call_with_wait(cap, Duration::ZERO, build).await
    }

    /// Like [`Connection::call`], for requests that may legitimately wait on the broker
    /// (a long-poll fetch) for up to `wait` before the response timeout starts to matter.
    pub(crate) async fn call_with_wait<R: Request>(
        &mut self,
        cap: i16,
        wait: Duration,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(R::Response, i16)> {
        let version = self.version::<R>(cap)?;
        let request = build(version);
        let response = self.round_trip(&request, version, wait).await?;
        Ok((response, version))
    }

    async fn round_trip<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        wait: Duration,
    ) -> Result<R::Response> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = self.encode(request, version, correlation_id)?;
        let limit = self.timeouts.request + wait;
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let length = self.stream.read_u32().await? as usize;
            if length > MAX_RESPONSE_BYTES {
                return Err(std::io::Error::other(format!(
                    "response of {length} bytes is over the {MAX_RESPONSE_BYTES}-byte limit"
                )));
            }
            let mut body = vec![0u8; length];
            self.stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let body = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| AdminError::Timeout {
                address: self.address.clone(),
                api: api_name(R::KEY),
                seconds: limit.as_secs(),
            })?
            .map_err(|e| self.protocol_error(format!("{} failed: {e}", api_name(R::KEY))))?;
        self.decode::<R>(body, version, correlation_id)
    }

    fn encode<R: Request>(&self, request: &R, version: i16, correlation_id: i32) -> Result<Bytes> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::new();
        frame.put_u32(0); // length, patched below
        let encoded = header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version));
        encoded.map_err(|e| {
            self.protocol_error(format!("encoding {} v{version}: {e}", api_name(R::KEY)))
        })?;
        let length = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
        frame[..4].copy_from_slice(&length.to_be_bytes());
        Ok(frame.freeze())
    }

    fn decode<R: Request>(
        &self,
        mut body: Bytes,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response> {
        let api = api_name(R::KEY);
        let header_version = R::Response::header_version(version);
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| self.protocol_error(format!("decoding the {api} response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol_error(format!(
                "{api} response has correlation id {}, expected {correlation_id}",
                header.correlation_id
            )));
        }
        // Trailing bytes after the body are ignored rather than refused.
        R::Response::decode(&mut body, version)
            .map_err(|e| self.protocol_error(format!("decoding {api} v{version}: {e}")))
    }

    fn protocol_error(&self, reason: String) -> AdminError {
        AdminError::Protocol {
            address: self.address.clone(),
            reason,
        }
    }
}

/// The Kafka name of an API key, e.g. `Metadata`.
pub(crate) fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(()) => format!("API {key}"),
    }
}
