//! One client connection: read a frame, answer it, repeat, in order.
//!
//! Requests on one connection are answered one at a time and in the order they arrived, as
//! Kafka does; a waiting fetch therefore holds back only its own connection, and a connection
//! never has more than one request in flight.
//!
//! A frame's buffer grows with the bytes that actually arrive, so a client that declares a
//! large request and sends it slowly holds no more memory than it has sent; with
//! `queued.max.request.bytes` set, the declared size is claimed from that budget first. A
//! connection that sends nothing for `connections.max.idle.ms` is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::admission::Admitted;
use crate::broker::Broker;
use crate::dispatch::{dispatch, DispatchError};
use crate::memory::MemoryClaim;
use crate::server::Shutdown;

/// The first piece of a frame's buffer; it doubles as more of the frame arrives.
const FIRST_READ: usize = 64 * 1024;

/// A connection and what it needs to answer requests.
pub(crate) struct Connection {
    broker: Arc<Broker>,
    stream: BufWriter<TcpStream>,
    peer: SocketAddr,
    idle: Duration,
    shutdown: Shutdown,
    _admitted: Admitted,
    _done: mpsc::Sender<()>,
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
    pub(crate) fn new(
        broker: Arc<Broker>,
        socket: TcpStream,
        peer: SocketAddr,
        admitted: Admitted,
        shutdown: Shutdown,
        done: mpsc::Sender<()>,
    ) -> Connection {
        let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
        Connection {
            broker,
            stream: BufWriter::new(socket),
            peer,
            idle,
            shutdown,
            _admitted: admitted,
            _done: done,
        }
    }

    /// Serves the connection until the client closes it, sends something that cannot be
    /// answered, or the broker shuts down.
    pub(crate) async fn run(mut self) {
        tracing::debug!(peer = %self.peer, "connection opened");
        self.broker.metrics.connections_accepted.inc();
        self.broker.metrics.open_connections.inc();
        let mut shutdown = self.shutdown.clone();
        loop {
            // Once shutdown has begun, no further request is read.
            let frame = tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                frame = self.read_frame() => frame,
            };
            let (frame, _memory) = match frame {
                Ok(ReadOutcome::Frame(frame, memory)) => (frame, memory),
                Ok(ReadOutcome::Closed) => break,
                Ok(ReadOutcome::Idle) => {
                    self.broker.metrics.connection_idle_closed();
                    tracing::debug!(peer = %self.peer, "closing idle connection");
                    break;
                }
                Err(reason) => {
                    tracing::warn!(peer = %self.peer, %reason, "closing connection");
                    break;
                }
            };
            // The API key is the frame's first two bytes; a frame is at least 8 bytes long.
            let api_key = i16::from_be_bytes([frame[0], frame[1]]);
            let started = std::time::Instant::now();
            let answered = self.answer(frame).await;
            let metrics = &self.broker.metrics;
            metrics.record_request(api_key, started.elapsed(), answered.is_err());
            if let Err(reason) = answered {
                tracing::warn!(peer = %self.peer, %reason, "closing connection");
                break;
            }
        }
        self.broker.metrics.open_connections.dec();
        let _ = self.stream.shutdown().await;
        tracing::debug!(peer = %self.peer, "connection closed");
    }

    /// Reads one size-prefixed frame, refusing an oversized one before buffering it.
    async fn read_frame(&mut self) -> Result<ReadOutcome, String> {
        let mut size = [0u8; 4];
        match self.fill(&mut size).await? {
            Filled::Done => {}
            Filled::Eof(0) => return Ok(ReadOutcome::Closed),
            Filled::Eof(_) => return Err("connection lost mid-request".to_string()),
            Filled::Idle => return Ok(ReadOutcome::Idle),
        }
        let size = i32::from_be_bytes(size);
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
            let start = frame.len();
            frame.resize(start + (size - start).min(start.max(FIRST_READ)), 0);
            match self.fill(&mut frame[start..]).await? {
                Filled::Done => {}
                Filled::Eof(_) => return Err("connection lost mid-request".to_string()),
                Filled::Idle => return Ok(ReadOutcome::Idle),
            }
        }
        Ok(ReadOutcome::Frame(frame.freeze(), memory))
    }

    /// Fills `buffer` from the socket, giving up when no byte arrives for the idle timeout.
    async fn fill(&mut self, buffer: &mut [u8]) -> Result<Filled, String> {
        let mut filled = 0;
        while filled < buffer.len() {
            let read = tokio::time::timeout(self.idle, self.stream.read(&mut buffer[filled..]));
            match read.await {
                Err(_) => return Ok(Filled::Idle),
                Ok(Ok(0)) => return Ok(Filled::Eof(filled)),
                Ok(Ok(n)) => filled += n,
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
        Ok(Filled::Done)
    }

    /// Answers one request frame; an error means the connection must be closed.
    async fn answer(&mut self, frame: Bytes) -> Result<(), String> {
        let mut peek = frame.clone();
        let api_key = peek.get_i16();
        let api_version = peek.get_i16();
        let correlation_id = peek.get_i32();
        let reply = match dispatch(&self.broker, self.peer, frame).await {
            Ok(reply) => reply,
            Err(DispatchError::Close(reason)) => {
                return Err(format!(
                    "api key {api_key} v{api_version} (correlation id {correlation_id}): {reason}"
                ))
            }
        };
        let Some(reply) = reply else {
            return Ok(());
        };
        self.stream
            .write_all(&reply.frame)
            .await
            .map_err(|e| e.to_string())?;
        self.stream.flush().await.map_err(|e| e.to_string())
    }
}
