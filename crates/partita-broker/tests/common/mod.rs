//! A broker started in-process on a free port, and a bare Kafka protocol client to poke it.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use partita_broker::{Broker, BrokerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A broker running inside the test's runtime, with its own data directory.
pub struct TestBroker {
    pub address: SocketAddr,
    /// The broker itself, for what no client can do (appending as a coordinator would).
    pub broker: Arc<Broker>,
    pub data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestBroker {
    /// Starts a broker with these `--set` style properties on top of the defaults.
    pub async fn start(settings: &[(&str, &str)]) -> TestBroker {
        let data_dir = tempfile::tempdir().unwrap();
        TestBroker::start_in(data_dir, settings).await
    }

    async fn start_in(data_dir: tempfile::TempDir, settings: &[(&str, &str)]) -> TestBroker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut config = BrokerConfig {
            data_dir: data_dir.path().to_path_buf(),
            listen: address,
            advertised_host: "127.0.0.1".to_string(),
            advertised_port: address.port(),
            ..BrokerConfig::default()
        };
        for (name, value) in settings {
            config.set(name, value).unwrap();
        }
        let broker = Arc::new(Broker::open(config).await.unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = Arc::clone(&broker);
        let task = tokio::spawn(partita_broker::serve(serving, vec![listener], async {
            let _ = stopped.await;
        }));
        TestBroker {
            address,
            broker,
            data_dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts the broker down cleanly and starts a new one on the same data directory.
    pub async fn restart(mut self, settings: &[(&str, &str)]) -> TestBroker {
        self.shutdown().await;
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        TestBroker::start_in(data_dir, settings).await
    }

    /// Clean shutdown, as on Ctrl-C.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.address).await
    }
}

/// A minimal Kafka client: one request at a time, typed through kafka-protocol.
pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub async fn connect(address: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(address).await.unwrap(),
            correlation_id: 0,
        }
    }

    /// Sends a typed request at `version` and decodes the typed response.
    pub async fn send<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let correlation_id = self.send_only(request, version).await;
        let mut frame = self.read_frame().await.expect("connection closed");
        let api_key = ApiKey::try_from(R::KEY).unwrap();
        let header =
            ResponseHeader::decode(&mut frame, api_key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        R::Response::decode(&mut frame, version).unwrap()
    }

    /// Sends a typed request without reading a response (for `acks=0`).
    pub async fn send_only<R: Request>(&mut self, request: &R, version: i16) -> i32 {
        self.correlation_id += 1;
        let api_key = ApiKey::try_from(R::KEY).unwrap();
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("partita-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api_key.request_header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        self.send_raw(&body).await;
        self.correlation_id
    }

    /// Writes one size-prefixed frame of arbitrary bytes.
    pub async fn send_raw(&mut self, body: &[u8]) {
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.put_slice(body);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Writes bytes with no framing at all.
    pub async fn write_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads one response frame; `None` once the broker has closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let size = self.stream.read_i32().await.ok()?;
            let mut frame = vec![0; size as usize];
            self.stream.read_exact(&mut frame).await.ok()?;
            Some(Bytes::from(frame))
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("no response and no close within 30 s")
    }

    /// Reads a raw v0 response: correlation id, then the body.
    pub async fn read_v0_response(&mut self) -> Option<(i32, Bytes)> {
        let mut frame = self.read_frame().await?;
        let correlation_id = frame.get_i32();
        Some((correlation_id, frame))
    }
}
