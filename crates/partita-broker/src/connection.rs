//! One client connection: requests read in order, answered in order.
//!
//! Requests are answered in the order they arrived, as Kafka does. A produce request may
//! overlap the requests after it: once its batches are in line in their partitions, the next
//! produce request is read and put in line too, while the first waits to be appended (cluster
//! mode gathers batches for a few milliseconds before it writes them); at most
//! [`IN_FLIGHT`] at once. Any other request starts only once every request before it is
//! answered. A waiting fetch therefore holds back only its own connection.
//!
//! A frame's buffer grows with the bytes that actually arrive, so a client that declares a
//! large request and sends it slowly holds no more memory than it has sent; with
//! `queued.max.request.bytes` set, the declared size is claimed from that budget first. A
//! connection that sends nothing for `connections.max.idle.ms` is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::acl::Session;
use crate::admission::Admitted;
use crate::broker::Broker;
use crate::dispatch::{self, DispatchError, Reply};
use crate::memory::MemoryClaim;
use crate::principal::PrincipalMapper;
use crate::sasl::{SaslConfig, SaslSession, SaslStep};
use crate::server::Shutdown;

/// Produce requests of one connection being worked on at once, at most.
const IN_FLIGHT: usize = 16;

/// The first piece of a frame's buffer; it doubles as more of the frame arrives.
const FIRST_READ: usize = 64 * 1024;

/// The reading side of a connection, in clear text or TLS.
type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// The writing side of a connection, in clear text or TLS.
type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A client's byte stream: a TCP socket, or TLS over one.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// The principal of a TLS client that presented a certificate, as Kafka's default
    /// principal builder names it: `User:` and the certificate's subject, most specific
    /// attribute first (RFC 4514: `CN=alice,OU=eng,O=Example`) as the listener's
    /// `ssl.principal.mapping.rules` rewrite it; an error when no rule applies.
    fn certificate_principal(
        &self,
        mapper: Option<&PrincipalMapper>,
    ) -> Result<Option<String>, String> {
        use x509_cert::der::Decode;
        let Stream::Tls(stream) = self else {
            return Ok(None);
        };
        let Some(der) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        else {
            return Ok(None);
        };
        let Ok(certificate) = x509_cert::Certificate::from_der(der.as_ref()) else {
            return Ok(None);
        };
        let subject = certificate.tbs_certificate.subject.to_string();
        let name = match mapper {
            Some(mapper) => mapper.name(&subject)?,
            None => subject,
        };
        Ok(Some(format!("User:{name}")))
    }

    fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(socket) => {
                let (read, write) = socket.into_split();
                (Box::new(read), Box::new(write))
            }
            Stream::Tls(stream) => {
                let (read, write) = tokio::io::split(stream);
                (Box::new(read), Box::new(write))
            }
        }
    }
}

/// What a connection needs of the listener it came through.
#[derive(Clone)]
pub(crate) struct Via {
    /// The listener's name.
    pub name: Arc<str>,
    /// Its SASL settings, on a SASL listener.
    pub sasl: Option<Arc<SaslConfig>>,
    /// How a client certificate names its principal, on a TLS listener.
    pub principal_mapper: Option<Arc<PrincipalMapper>>,
}

/// A connection and what it needs to answer requests.
pub(crate) struct Connection {
    broker: Arc<Broker>,
    reader: FrameReader,
    writer: BufWriter<WriteHalf>,
    peer: SocketAddr,
    /// The name of the listener it came through.
    listener: Arc<str>,
    /// On a SASL listener, the client's authentication.
    sasl: Option<SaslSession>,
    /// The principal of the client's TLS certificate, if it presented one; an error if the
    /// listener's mapping rules give it none.
    certificate_principal: Result<Option<String>, String>,
    shutdown: Shutdown,
    _admitted: Admitted,
    _done: mpsc::Sender<()>,
}

/// The reading side: whole frames off the socket.
struct FrameReader {
    broker: Arc<Broker>,
    half: ReadHalf,
    idle: Duration,
}

/// How filling a buffer from the socket ended.
enum Filled {
    Done,
    /// The client closed the connection after this many bytes.
    Eof(usize),
    Idle,
}

/// Why a connection stopped reading.
enum ReadOutcome {
    /// A whole frame, and the request memory it holds until it has been answered.
    Frame(Bytes, MemoryClaim),
    /// The client closed the connection between requests.
    Closed,
    /// Nothing arrived for `connections.max.idle.ms`.
    Idle,
}

impl Connection {
    /// A connection of `peer` through the listener `via`.
    pub(crate) fn new(
        broker: Arc<Broker>,
        stream: Stream,
        peer: SocketAddr,
        via: Via,
        admitted: Admitted,
        shutdown: Shutdown,
        done: mpsc::Sender<()>,
    ) -> Connection {
        let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
        let certificate_principal = stream.certificate_principal(via.principal_mapper.as_deref());
        let reauth_ms = broker.config.connections_max_reauth_ms;
        let (read_half, write_half) = stream.split();
        Connection {
            reader: FrameReader {
                broker: Arc::clone(&broker),
                half: read_half,
                idle,
            },
            broker,
            writer: BufWriter::new(write_half),
            peer,
            listener: via.name,
            sasl: via.sasl.map(|sasl| SaslSession::new(sasl, reauth_ms)),
            certificate_principal,
            shutdown,
            _admitted: admitted,
            _done: done,
        }
    }

    /// Serves the connection until the client closes it, sends something that cannot be
    /// answered, or the broker shuts down.
    pub(crate) async fn run(self) {
        tracing::debug!(peer = %self.peer, "connection opened");
        self.broker.metrics.connections_accepted.inc();
        self.broker.metrics.open_connections.inc();
        // The admission and the shutdown tracker are held until the connection ends.
        let Connection {
            broker,
            reader,
            mut writer,
            peer,
            listener,
            mut sasl,
            certificate_principal,
            shutdown,
            _admitted,
            _done,
        } = self;
        let (frames, mut incoming) = mpsc::channel(1);
        let (arrivals, arrived) = watch::channel(0);
        let reading = tokio::spawn(reader.read_frames(frames, arrivals, shutdown));
        // How many frames have come out of the reader: the request being answered is the
        // last of them.
        let mut received = 0;
        let mut in_flight = FuturesOrdered::new();
        let mut open = true;
        // What the client said it is (ApiVersions v3+), for the log.
        let mut software: Option<Arc<ClientSoftware>> = None;
        // Who is asking, for ACLs: the subject of its TLS certificate, or anonymous until
        // SASL authenticates someone (a SASL principal wins over a certificate's, as in Kafka).
        let mut asking = Session::anonymous(peer.ip());
        match certificate_principal {
            Ok(Some(principal)) => asking.principal = principal,
            Ok(None) => {}
            Err(reason) => {
                // As Kafka: a certificate no mapping rule names is not let in.
                broker.metrics.tls_handshake_failed();
                tracing::info!(%peer, listener = %listener, %reason, "client certificate refused; connection closed");
                open = false;
            }
        }
        while open {
            tokio::select! {
                biased;
                Some((request, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                    open = write_reply(&broker, peer, &mut writer, request, outcome).await;
                }
                next = incoming.recv(), if in_flight.len() < IN_FLIGHT => {
                    let Some(Ok(ReadOutcome::Frame(frame, memory))) = next else {
                        log_end(&broker, peer, next);
                        // Requests read before the end are still answered.
                        while let Some((request, outcome)) = in_flight.next().await {
                            if !write_reply(&broker, peer, &mut writer, request, outcome).await {
                                break;
                            }
                        }
                        break;
                    };
                    // Counted as the reader counted it, whatever happens to it next.
                    received += 1;
                    if !dispatch::is_produce(&frame) {
                        // Anything but a produce starts once every request before it is done.
                        while let Some((request, outcome)) = in_flight.next().await {
                            open = write_reply(&broker, peer, &mut writer, request, outcome).await;
                            if !open {
                                break;
                            }
                        }
                        if !open {
                            break;
                        }
                    }
                    if let Some(named) = ClientSoftware::named_by(&frame) {
                        software = Some(named);
                    }
                    let mut request = Request::of(&frame, memory, software.clone());
                    // A re-authentication (KIP-368) starts with a SaslHandshake; an
                    // authentication run out (connections.max.reauth.ms) without one ends the
                    // connection at the next request, as in Kafka.
                    if let Some(session) = sasl.as_mut().filter(|s| s.authenticated()) {
                        if !session.begins_reauthentication(&frame) && session.expired() {
                            broker.metrics.sasl_authentication_failed();
                            tracing::info!(%peer, listener = %listener, "SASL session expired without re-authentication; connection closed");
                            break;
                        }
                    }
                    // Before SASL authentication, only ApiVersions and the SASL exchange.
                    if let Some(session) = sasl.as_mut().filter(|s| !s.authenticated()) {
                        if session.expects_raw_token() {
                            // Not a request: no api key to count it under but SASL's.
                            request.api_key = kafka_protocol::messages::ApiKey::SaslAuthenticate as i16;
                        }
                        match session.step(&frame, &broker.credentials).await {
                            Ok(SaslStep::Dispatch) => {}
                            Ok(SaslStep::Reply { reply, close }) => {
                                open = write_reply(&broker, peer, &mut writer, request, Ok(Some(reply))).await;
                                match (close, session.principal()) {
                                    (true, _) => {
                                        broker.metrics.sasl_authentication_failed();
                                        tracing::info!(%peer, listener = %listener, "SASL authentication failed; connection closed");
                                        break;
                                    }
                                    (false, Some(principal)) => {
                                        tracing::debug!(%peer, principal, "authenticated");
                                        asking.principal = principal.to_string();
                                    }
                                    (false, None) => {}
                                }
                                continue;
                            }
                            Ok(SaslStep::Close(reason)) | Err(reason) => {
                                tracing::info!(%peer, listener = %listener, %reason, "closing connection");
                                break;
                            }
                        }
                    }
                    let next = NextRequest {
                        arrivals: arrived.clone(),
                        after: received,
                    };
                    let staged = dispatch::stage(&broker, peer, (&listener, &asking, &next), frame).await;
                    in_flight.push_back(async move {
                        let outcome = match staged {
                            Ok(pending) => pending.await,
                            Err(error) => Err(error),
                        };
                        (request, outcome)
                    });
                }
            }
        }
        reading.abort();
        broker.metrics.open_connections.dec();
        let _ = writer.shutdown().await;
        tracing::debug!(peer = %peer, "connection closed");
    }
}

/// Whether the client has sent anything after the request being answered: a response the
/// broker holds back until something changes (a KIP-848 heartbeat with nothing new) is due
/// as soon as it has, since a connection's requests are answered in order.
#[derive(Clone, Debug)]
pub(crate) struct NextRequest {
    /// How many frames the connection's reader has read, and whether it still reads.
    arrivals: watch::Receiver<u64>,
    /// The request's own place among them.
    after: u64,
}

impl NextRequest {
    /// For a request not read from a connection: nothing may wait for a later one.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn already_sent() -> NextRequest {
        NextRequest {
            arrivals: watch::channel(0).1,
            after: 0,
        }
    }

    /// Whether another request has come, or the connection stopped reading.
    pub(crate) fn came(&self) -> bool {
        *self.arrivals.borrow() > self.after || self.arrivals.has_changed().is_err()
    }

    /// Waits until [`NextRequest::came`].
    pub(crate) async fn wait(&mut self) {
        let after = self.after;
        let _ = self.arrivals.wait_for(|read| *read > after).await;
    }
}

/// What is known of a request while it is answered.
struct Request {
    api_key: i16,
    version: i16,
    correlation_id: i32,
    started: Instant,
    /// The request, whose header names the client if the connection must be closed.
    frame: Bytes,
    software: Option<Arc<ClientSoftware>>,
    /// Request memory held until the request is answered.
    _memory: MemoryClaim,
}

impl Request {
    fn of(frame: &Bytes, memory: MemoryClaim, software: Option<Arc<ClientSoftware>>) -> Request {
        // A frame is at least 8 bytes long: key, version, correlation id.
        let mut peek = frame.clone();
        Request {
            api_key: peek.get_i16(),
            version: peek.get_i16(),
            correlation_id: peek.get_i32(),
            started: Instant::now(),
            frame: frame.clone(),
            software,
            _memory: memory,
        }
    }

    /// The client id of the request's header, if it can be read.
    fn client_id(&self) -> String {
        let mut frame = self.frame.clone();
        kafka_protocol::protocol::decode_request_header_from_buffer(&mut frame)
            .ok()
            .and_then(|header| header.client_id)
            .map(|id| id.to_string())
            .unwrap_or_default()
    }
}

/// The client's software name and version, as ApiVersions v3 and later carry them (KIP-511).
struct ClientSoftware(String);

impl ClientSoftware {
    /// The software an ApiVersions request names, if `frame` is one that does.
    fn named_by(frame: &Bytes) -> Option<Arc<ClientSoftware>> {
        use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
        use kafka_protocol::protocol::Decodable;
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let is_api_versions =
            i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::ApiVersions as i16;
        if !is_api_versions || !(3..=4).contains(&version) {
            return None;
        }
        let mut body = frame.clone();
        kafka_protocol::protocol::decode_request_header_from_buffer(&mut body).ok()?;
        let request = ApiVersionsRequest::decode(&mut body, version).ok()?;
        Some(Arc::new(ClientSoftware(format!(
            "{} {}",
            request.client_software_name.as_str(),
            request.client_software_version.as_str()
        ))))
    }
}

/// Writes a request's answer, if it has one; `false` when the connection must be closed.
async fn write_reply(
    broker: &Broker,
    peer: SocketAddr,
    writer: &mut BufWriter<WriteHalf>,
    request: Request,
    outcome: Result<Option<Reply>, DispatchError>,
) -> bool {
    let elapsed = request.started.elapsed();
    broker
        .metrics
        .record_request(request.api_key, elapsed, outcome.is_err());
    let written = match outcome {
        Ok(None) => Ok(()),
        Ok(Some(reply)) => match writer.write_all(&reply.frame).await {
            Ok(()) => writer.flush().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(DispatchError::Close(reason)) => {
            // Name the client, so that an operator can find which application sent it.
            let software = request
                .software
                .as_ref()
                .map_or("unknown", |s| s.0.as_str());
            tracing::warn!(
                peer = %peer,
                client_id = %request.client_id(),
                client_software = %software,
                reason = %format!(
                    "api key {} v{} (correlation id {}): {reason}",
                    request.api_key, request.version, request.correlation_id
                ),
                "closing connection"
            );
            return false;
        }
    };
    if let Err(reason) = &written {
        tracing::warn!(peer = %peer, %reason, "closing connection");
    }
    written.is_ok()
}

/// Notes why reading ended.
fn log_end(broker: &Broker, peer: SocketAddr, end: Option<Result<ReadOutcome, String>>) {
    match end {
        Some(Ok(ReadOutcome::Idle)) => {
            broker.metrics.connection_idle_closed();
            tracing::debug!(peer = %peer, "closing idle connection");
        }
        Some(Err(reason)) => tracing::warn!(peer = %peer, %reason, "closing connection"),
        // Closed by the client, or the broker is stopping.
        _ => {}
    }
}

impl FrameReader {
    /// Reads frames until the client closes the connection or sends something unreadable, or
    /// the broker shuts down (no further request is read then).
    /// Each frame read, and the end of the connection, is counted in `arrivals` before it is
    /// passed on, so that a request held by the broker is answered once the client has sent
    /// another ([`NextRequest`]).
    async fn read_frames(
        mut self,
        frames: mpsc::Sender<Result<ReadOutcome, String>>,
        arrivals: watch::Sender<u64>,
        mut shutdown: Shutdown,
    ) {
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.recv() => return,
                next = self.read_frame() => next,
            };
            arrivals.send_modify(|read| *read += 1);
            let more = matches!(next, Ok(ReadOutcome::Frame(..)));
            if frames.send(next).await.is_err() || !more {
                return;
            }
        }
    }

    /// Reads one size-prefixed frame, refusing an oversized one before buffering it.
    async fn read_frame(&mut self) -> Result<ReadOutcome, String> {
        let mut size = BytesMut::with_capacity(4);
        match self.fill(&mut size, 4).await? {
            Filled::Done => {}
            Filled::Eof(0) => return Ok(ReadOutcome::Closed),
            Filled::Eof(_) => return Err("connection lost mid-request".to_string()),
            Filled::Idle => return Ok(ReadOutcome::Idle),
        }
        let size = size.get_i32();
        let limit = self.broker.config.socket_request_max_bytes;
        if size < 8 || size as usize > limit {
            return Err(format!(
                "request size {size} is outside 8..={limit} (socket.request.max.bytes)"
            ));
        }
        let size = size as usize;
        let memory = self.broker.request_memory.claim(size).await;
        let mut frame = BytesMut::new();
        while frame.len() < size {
            // Room for as much again as has arrived (at least FIRST_READ), never past the
            // frame: read straight into it, with no zero-filling first.
            let upto = frame.len() + (size - frame.len()).min(frame.len().max(FIRST_READ));
            frame.reserve(upto - frame.len());
            match self.fill(&mut frame, upto).await? {
                Filled::Done => {}
                Filled::Eof(_) => return Err("connection lost mid-request".to_string()),
                Filled::Idle => return Ok(ReadOutcome::Idle),
            }
        }
        Ok(ReadOutcome::Frame(frame.freeze(), memory))
    }

    /// Fills `buffer` from the socket up to `upto` bytes, never past them, giving up when no
    /// byte arrives for the idle timeout.
    async fn fill(&mut self, buffer: &mut BytesMut, upto: usize) -> Result<Filled, String> {
        while buffer.len() < upto {
            let left = upto - buffer.len();
            let mut room = (&mut *buffer).limit(left);
            let read = tokio::time::timeout(self.idle, self.half.read_buf(&mut room));
            match read.await {
                Err(_) => return Ok(Filled::Idle),
                Ok(Ok(0)) => return Ok(Filled::Eof(buffer.len())),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
        Ok(Filled::Done)
    }
}
