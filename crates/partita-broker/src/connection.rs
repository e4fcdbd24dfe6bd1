//! One client connection: read a frame, answer it, repeat, in order.
//!
//! Requests on one connection are answered one at a time and in the order they arrived, as
//! Kafka does; a waiting fetch therefore holds back only its own connection.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::dispatch::{dispatch, DispatchError};
use crate::server::Shutdown;

/// A connection and what it needs to answer requests.
pub(crate) struct Connection {
    broker: Arc<Broker>,
    stream: BufWriter<TcpStream>,
    peer: SocketAddr,
    shutdown: Shutdown,
    _done: mpsc::Sender<()>,
}

/// Why a connection stopped reading.
enum ReadOutcome {
    Frame(Bytes),
    Closed,
}

impl Connection {
    pub(crate) fn new(
        broker: Arc<Broker>,
        socket: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
        done: mpsc::Sender<()>,
    ) -> Connection {
        Connection {
            broker,
            stream: BufWriter::new(socket),
            peer,
            shutdown,
            _done: done,
        }
    }

    /// Serves the connection until the client closes it, sends something that cannot be
    /// answered, or the broker shuts down.
    pub(crate) async fn run(mut self) {
        tracing::debug!(peer = %self.peer, "connection opened");
        self.broker.metrics.connections_accepted.add(1);
        self.broker.metrics.open_connections.add(1);
        let mut shutdown = self.shutdown.clone();
        loop {
            let frame = tokio::select! {
                frame = self.read_frame() => frame,
                _ = shutdown.recv() => break,
            };
            let frame = match frame {
                Ok(ReadOutcome::Frame(frame)) => frame,
                Ok(ReadOutcome::Closed) => break,
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
        self.broker.metrics.open_connections.add(-1);
        let _ = self.stream.shutdown().await;
        tracing::debug!(peer = %self.peer, "connection closed");
    }

    /// Reads one size-prefixed frame, refusing an oversized one before buffering it.
    async fn read_frame(&mut self) -> Result<ReadOutcome, String> {
        let size = match self.stream.read_i32().await {
            Ok(size) => size,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(ReadOutcome::Closed)
            }
            Err(e) => return Err(e.to_string()),
        };
        let limit = self.broker.config.socket_request_max_bytes;
        if size < 8 || size as usize > limit {
            return Err(format!(
                "request size {size} is outside 8..={limit} (socket.request.max.bytes)"
            ));
        }
        let mut frame = BytesMut::zeroed(size as usize);
        self.stream
            .read_exact(&mut frame)
            .await
            .map_err(|e| format!("connection lost mid-request: {e}"))?;
        Ok(ReadOutcome::Frame(frame.freeze()))
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
