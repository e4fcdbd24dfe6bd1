//! A broker's presence: a PostgreSQL session of its own, holding an advisory lock, for as
//! long as the broker runs.
//!
//! Heartbeats alone make a dead broker's partitions wait for `broker.session.timeout.ms`. A
//! broker whose process dies (a crash, SIGKILL, an out-of-memory kill) closes its sockets as
//! it goes; PostgreSQL ends its session at once and releases the lock, and the next heartbeat
//! of any other broker sees it gone. A broker is live while its heartbeat is fresh *and* the
//! lock its row names is held, so a whole machine lost (no socket closed) still leaves after
//! the session timeout, and a broker cut off from PostgreSQL never counts itself live longer
//! than the others count it.
//!
//! The same session listens for catalog changes (`NOTIFY partita_catalog`, sent by every
//! transaction that bumps the catalog version), so that a move of leadership reaches every
//! broker in milliseconds rather than at its next heartbeat.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::error::{describe_pg, ClusterError};
use crate::Shared;

/// The first key of the advisory locks that mark presence; the second is random per session.
pub(crate) const PRESENCE_LOCK_CLASS: i32 = 0x7061_7274;

/// The channel every catalog change is announced on.
pub(crate) const CATALOG_CHANNEL: &str = "partita_catalog";

/// A presence session that is up.
pub(crate) struct Session {
    /// Kept for as long as the session is: dropping it would end it.
    _client: tokio_postgres::Client,
    /// Fires when the session ends, for whatever reason.
    ended: oneshot::Receiver<()>,
}

/// Opens a presence session: connects, takes a lock of a random key, names that key in this
/// broker's row and listens for catalog changes, which `on_change` is told of.
pub(crate) async fn open(
    shared: &Shared,
    on_change: Arc<tokio::sync::Notify>,
) -> Result<Session, ClusterError> {
    let (client, mut connection) = shared
        .db
        .config()
        .connect(NoTls)
        .await
        .map_err(|error| ClusterError::Metadata(describe_pg(&error)))?;
    let (ended_tx, ended) = oneshot::channel();
    tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => on_change.notify_one(),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "presence session ended");
                    break;
                }
            }
        }
        let _ = ended_tx.send(());
    });
    let key = loop {
        let key = (uuid::Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
        let taken: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&PRESENCE_LOCK_CLASS, &key],
            )
            .await?
            .get(0);
        if taken {
            break key;
        }
    };
    client
        .batch_execute(&format!("LISTEN {CATALOG_CHANNEL}"))
        .await?;
    let updated = client
        .execute(
            "UPDATE partita_brokers SET presence_key = $1 WHERE node_id = $2 AND incarnation = $3",
            &[&key, &shared.node.node_id, &shared.incarnation],
        )
        .await?;
    if updated == 0 {
        return Err(ClusterError::Metadata(
            "another broker registered with this node.id".to_string(),
        ));
    }
    Ok(Session {
        _client: client,
        ended,
    })
}

/// Keeps a presence session open while the broker runs: when it ends, the broker stops
/// serving at once (the others already count it gone) and opens another.
pub(crate) async fn keep(
    shared: Weak<Shared>,
    mut session: Session,
    on_change: Arc<tokio::sync::Notify>,
) {
    loop {
        let _ = (&mut session.ended).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        tracing::warn!("lost this broker's presence session with PostgreSQL: stopped serving its partitions until it is back");
        strong.stop_serving();
        drop(strong);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Some(strong) = shared.upgrade() else {
                return;
            };
            match open(&strong, Arc::clone(&on_change)).await {
                Ok(new) => {
                    tracing::info!("presence session with PostgreSQL open again");
                    session = new;
                    break;
                }
                Err(error) => tracing::debug!(%error, "could not open a presence session yet"),
            }
        }
    }
}
