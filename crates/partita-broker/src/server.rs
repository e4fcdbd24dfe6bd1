//! The accept loop and clean shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::admission::TooManyFromAddress;
use crate::broker::{now_ms, Broker};
use crate::connection::{Connection, Stream, Via};

/// Tells every task the broker is stopping; cloned into each connection.
#[derive(Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    pub(crate) fn new(receiver: watch::Receiver<bool>) -> Shutdown {
        Shutdown { receiver }
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes once shutdown has begun.
    pub async fn recv(&mut self) {
        let _ = self.receiver.wait_for(|stopping| *stopping).await;
    }
}

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves Kafka clients on `sockets`, bound to the addresses of `broker.listeners` in the
/// same order (and `/metrics` and the dashboard on `http.listen`) until `stop` completes,
/// then answers the requests in flight, closes every connection and flushes every log.
pub async fn serve(
    broker: Arc<Broker>,
    sockets: Vec<TcpListener>,
    stop: impl std::future::Future<Output = ()>,
) {
    let (done_sender, mut done_receiver) = mpsc::channel::<()>(1);
    let shutdown = broker.shutdown_signal();
    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&broker), shutdown.clone()));
    let scrub = tokio::spawn(scrub(Arc::clone(&broker), shutdown.clone()));
    crate::transactions::TransactionCoordinator::start_markers(&broker);
    let http = crate::http::start(&broker, shutdown.clone()).await;

    let accepting = sockets
        .iter()
        .zip(&broker.listeners)
        .map(|(socket, listener)| {
            let acceptor = (listener.tls.as_ref())
                .map(|tls| tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config)));
            let via = Via {
                name: Arc::from(listener.name.as_str()),
                sasl: listener.sasl.clone(),
                principal_mapper: listener.principal_mapper.clone(),
            };
            accept_loop(&broker, socket, via, acceptor, &shutdown, &done_sender)
        });
    tokio::select! {
        _ = futures_util::future::join_all(accepting) => {}
        _ = stop => tracing::info!("shutting down"),
    }

    // Connections stop reading; requests parked waiting for data or for a rebalance answer.
    broker.begin_shutdown();
    drop(done_sender);
    drop(sockets);
    // Each connection holds a clone of `done_sender`; all are gone once every in-flight
    // request has been answered.
    if tokio::time::timeout(Duration::from_secs(30), done_receiver.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; closing anyway");
    }
    let _ = housekeeping.await;
    let _ = scrub.await;
    for task in http {
        let _ = task.await;
    }
    broker.shutdown().await;
    tracing::info!("stopped");
}

async fn accept_loop(
    broker: &Arc<Broker>,
    socket: &TcpListener,
    via: Via,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: &Shutdown,
    done: &mpsc::Sender<()>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        // At `max.connections` this waits, and new clients wait in the listen backlog.
        let room = broker.admission.room().await;
        match socket.accept().await {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(10);
                let admitted = match broker.admission.admit(peer.ip(), room) {
                    Ok(admitted) => admitted,
                    Err(TooManyFromAddress(cap)) => {
                        broker.metrics.connection_refused();
                        tracing::info!(%peer, cap, "refused a connection: its address already has max.connections.per.ip open");
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                let (broker, via, tls) = (Arc::clone(broker), via.clone(), tls.clone());
                let name = Arc::clone(&via.name);
                let (shutdown, done) = (shutdown.clone(), done.clone());
                tokio::spawn(async move {
                    // The handshake runs in the connection's own task, so that a slow or
                    // silent client holds up no other.
                    let stream = match tls {
                        None => Stream::Plain(socket),
                        Some(tls) => {
                            let handshake = tls.accept(socket);
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                                Ok(Ok(stream)) => Stream::Tls(Box::new(stream)),
                                Ok(Err(error)) => {
                                    broker.metrics.tls_handshake_failed();
                                    tracing::info!(%peer, listener = %name, %error, "TLS handshake failed; connection closed");
                                    return;
                                }
                                Err(_) => {
                                    broker.metrics.tls_handshake_failed();
                                    tracing::info!(%peer, listener = %name, timeout = ?TLS_HANDSHAKE_TIMEOUT, "no TLS handshake in time; connection closed");
                                    return;
                                }
                            }
                        }
                    };
                    let connection =
                        Connection::new(broker, stream, peer, via, admitted, shutdown, done);
                    connection.run().await;
                });
            }
            Err(error) => {
                // Usually out of file descriptors: wait rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Periodic log maintenance: time-based rolls, compaction of compacted topics, retention,
/// and `flush.ms`. The work is the storage's, done off the async workers.
async fn housekeeping(broker: Arc<Broker>, mut shutdown: Shutdown) {
    let retention_every = Duration::from_millis(broker.config.log_retention_check_interval_ms);
    let flush_every = Duration::from_millis(broker.config.log_flush_scheduler_interval_ms);
    let mut retention = tokio::time::interval(retention_every);
    let mut flush = tokio::time::interval(flush_every);
    let mut last_flush = HashMap::new();
    // In cluster mode, ACLs changed through another broker are taken within a second.
    let mut acls = tokio::time::interval(Duration::from_secs(1));
    let mut tls_files = tokio::time::interval(TLS_FILES_CHECK);
    loop {
        tokio::select! {
            _ = retention.tick() => maintain_logs(&broker).await,
            _ = flush.tick() => flush_due_logs(&broker, &mut last_flush).await,
            _ = acls.tick(), if broker.cluster.is_some() && broker.authorizer.enabled() => {
                if let Err(error) = broker.authorizer.reload().await {
                    tracing::warn!(%error, "could not reload the ACLs; the last ones loaded stay in force");
                }
            }
            _ = tls_files.tick(), if !broker.tls_files.is_empty() => reload_tls_files(&broker),
            _ = shutdown.recv() => return,
        }
    }
}

/// Reads every segment that start-up opened without reading (after a clean shutdown, or
/// before a crashed partition's recovery point), once,
/// at `log.scrub.bytes.per.second`, checking every batch's CRC: damage made while the broker
/// was stopped is reported (a log line and `partita_log_damaged_batches_total`) before a
/// consumer meets it; the damaged batch itself is never served, as reads check every CRC.
async fn scrub(broker: Arc<Broker>, mut shutdown: Shutdown) {
    let rate = broker.config.log_scrub_bytes_per_second;
    if rate == 0 {
        return;
    }
    // Set at shutdown: a segment being read stops at its next chunk.
    let stop = Arc::new(AtomicBool::new(false));
    let work = async {
        let (mut segments, mut bytes) = (0u64, 0u64);
        for topic in broker.topics.all() {
            for partition in &topic.partitions {
                loop {
                    match partition.scrub_next(rate, Arc::clone(&stop)).await {
                        Ok(None) => break,
                        Ok(Some(done)) => {
                            segments += 1;
                            bytes += done.bytes;
                            broker.metrics.scrubbed(done.bytes);
                            if let Some(damage) = done.damage {
                                broker.metrics.damaged_batch(&topic.name, partition.index);
                                tracing::error!(
                                    topic = %topic.name,
                                    partition = partition.index,
                                    file = %damage.path.display(),
                                    position = damage.position,
                                    reason = %damage.reason,
                                    "the scrub found a damaged batch: it is not served"
                                );
                            }
                        }
                        Err(error) => {
                            tracing::warn!(topic = %topic.name, partition = partition.index, %error, "scrub failed");
                            break;
                        }
                    }
                }
            }
        }
        if segments > 0 {
            tracing::info!(
                segments,
                bytes,
                "scrub checked the segments opened without reading"
            );
        }
    };
    tokio::select! {
        _ = work => {}
        _ = shutdown.recv() => stop.store(true, Ordering::Relaxed),
    }
}

/// How often the keystore and truststore files of TLS listeners are looked at for changes.
const TLS_FILES_CHECK: Duration = Duration::from_secs(2);

/// Serves a renewed key and certificate, and checks client certificates against renewed
/// authorities, from the next handshake on; a file that cannot be used leaves the one in use,
/// with a warning.
fn reload_tls_files(broker: &Broker) {
    for (listener, file) in &broker.tls_files {
        let what = file.what();
        match file.reload_if_changed() {
            Ok(true) => tracing::info!(%listener, path = ?file.path(), "{what} reloaded"),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%listener, %error, "the {what} changed but cannot be used; the one in use stays")
            }
        }
    }
}

/// Rolls, compacts and applies retention to every partition.
async fn maintain_logs(broker: &Broker) {
    let now = now_ms();
    for topic in broker.topics.all() {
        for partition in &topic.partitions {
            let (name, index) = (&topic.name, partition.index);
            match partition.maintain(now).await {
                Ok(done) => {
                    if let Some(stats) = done.compaction.filter(|s| s.records_removed > 0) {
                        tracing::info!(
                            topic = %name,
                            partition = index,
                            removed = stats.records_removed,
                            bytes_before = stats.bytes_before,
                            bytes_after = stats.bytes_after,
                            "compacted"
                        );
                    }
                    if done.segments_deleted > 0 {
                        tracing::info!(topic = %name, partition = index, deleted = done.segments_deleted, "retention deleted segments");
                    }
                }
                Err(error) => {
                    tracing::error!(topic = %name, partition = index, %error, "log maintenance failed")
                }
            }
        }
    }
}

/// Fsyncs the logs whose `flush.ms` has passed since their last flush.
async fn flush_due_logs(broker: &Broker, last_flush: &mut HashMap<(String, i32), i64>) {
    let now = now_ms();
    for topic in broker.topics.all() {
        for partition in &topic.partitions {
            let flush_ms = partition.config().flush_ms;
            if flush_ms == u64::MAX {
                continue;
            }
            let last = last_flush
                .entry((topic.name.clone(), partition.index))
                .or_insert(now);
            if now - *last >= flush_ms as i64 {
                *last = now;
                if let Err(error) = partition.flush().await {
                    tracing::error!(topic = %topic.name, partition = partition.index, %error, "flush failed");
                }
            }
        }
    }
}
