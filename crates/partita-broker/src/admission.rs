//! Which connections are let in: `max.connections` for the whole listener and
//! `max.connections.per.ip` for each client address, as Kafka counts them (KIP-402).
//!
//! At the listener's cap the accept loop stops accepting, so new connections wait in the
//! kernel's backlog until one closes; a connection beyond its address's cap is closed at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;

/// The caps and the connections open now.
pub(crate) struct Admission {
    total: Option<Arc<Semaphore>>,
    per_ip: Option<usize>,
    overrides: HashMap<IpAddr, usize>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Room for one more connection on the listener, taken before accepting it.
pub(crate) struct Room {
    _permit: Option<OwnedSemaphorePermit>,
}

/// An admitted connection's place, given back when dropped.
pub(crate) struct Admitted {
    _room: Room,
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection refused because its address already has this many open.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooManyFromAddress(pub(crate) usize);

impl Admission {
    pub(crate) fn new(config: &BrokerConfig) -> Admission {
        Admission {
            total: config.max_connections.map(|n| Arc::new(Semaphore::new(n))),
            per_ip: config.max_connections_per_ip,
            overrides: config
                .max_connections_per_ip_overrides
                .iter()
                .copied()
                .collect(),
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Waits until the listener has room for one more connection.
    pub(crate) async fn room(&self) -> Room {
        match &self.total {
            None => Room { _permit: None },
            Some(total) => Room {
                _permit: Arc::clone(total).acquire_owned().await.ok(),
            },
        }
    }

    /// Admits a connection from `ip` into `room`, unless its address is at its cap.
    pub(crate) fn admit(&self, ip: IpAddr, room: Room) -> Result<Admitted, TooManyFromAddress> {
        let cap = self.overrides.get(&ip).copied().or(self.per_ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if let Some(cap) = cap {
            if *count >= cap {
                if *count == 0 {
                    open.remove(&ip);
                }
                return Err(TooManyFromAddress(cap));
            }
        }
        *count += 1;
        Ok(Admitted {
            _room: room,
            ip,
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn admission(settings: &[(&str, &str)]) -> Admission {
        let mut config = BrokerConfig::default();
        for (name, value) in settings {
            config.set(name, value).unwrap();
        }
        Admission::new(&config)
    }

    #[tokio::test]
    async fn an_address_at_its_cap_is_refused_until_one_of_its_connections_closes() {
        let admission = admission(&[
            ("max.connections.per.ip", "2"),
            ("max.connections.per.ip.overrides", "10.0.0.9:0"),
        ]);
        let local = IpAddr::from([127, 0, 0, 1]);
        let first = admission.admit(local, admission.room().await).unwrap();
        let _second = admission.admit(local, admission.room().await).unwrap();
        let refused = admission.admit(local, admission.room().await);
        assert_eq!(refused.err(), Some(TooManyFromAddress(2)));
        // Other addresses have their own count, and overrides their own cap.
        assert!(admission
            .admit(IpAddr::from([10, 0, 0, 1]), admission.room().await)
            .is_ok());
        assert_eq!(
            admission
                .admit(IpAddr::from([10, 0, 0, 9]), admission.room().await)
                .err(),
            Some(TooManyFromAddress(0))
        );
        drop(first);
        assert!(admission.admit(local, admission.room().await).is_ok());
    }

    #[tokio::test]
    async fn the_listener_waits_for_room_at_max_connections() {
        let admission = Arc::new(admission(&[("max.connections", "1")]));
        let local = IpAddr::from([127, 0, 0, 1]);
        let first = admission.admit(local, admission.room().await).unwrap();
        let waiting = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.room().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "no room while one connection is open"
        );
        drop(first);
        let room = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert!(room.expect("room once the connection closed").is_ok());
    }
}
