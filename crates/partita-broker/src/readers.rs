//! How each group reads: `read_uncommitted`, or `read_committed` (it stops at the last stable
//! offset), so that its lag is counted as its consumers see it; and where its members are
//! reading, for the lag of a partition the group has not committed an offset for yet.
//!
//! Kafka's protocol never says: a Fetch names no group, and JoinGroup or
//! ConsumerGroupHeartbeat no isolation level. But a member's `client.id` and host are known
//! to its group, and the same client's fetches carry both and the topics they read. So every
//! consumer fetch is remembered under (host, `client.id`, topic) with its isolation level,
//! its fetch offset per partition and its time, and a group reads committed when the latest
//! fetches of its members, on the topics the group consumes, were read_committed. A group's
//! answer outlives its members, so a group whose consumers have all stopped keeps being
//! counted the way it read.
//!
//! Two consumers on one host sharing a `client.id` (librdkafka's default is `rdkafka`) and
//! reading one topic with different isolation levels cannot be told apart: the latest fetch
//! wins.

use std::collections::HashMap;
use std::sync::Mutex;

/// Fetches older than this no longer say how a client reads: it may have restarted since
/// with another setting.
const STALE_MS: i64 = 10 * 60 * 1_000;
/// Groups remembered at most (their answer outlives their members).
const GROUPS_RETAINED: usize = 100_000;
/// Clients (host and `client.id`) remembered at most; past it, new ones are not noted until
/// stale ones are swept out.
const CLIENTS_RETAINED: usize = 100_000;
/// Stale fetches are swept out at most this often, when a new client arrives.
const SWEEP_INTERVAL_MS: i64 = 60_000;

/// One client's latest fetch of one topic: its isolation level, and the offset it fetched
/// each partition from.
#[derive(Clone, Debug, Default)]
struct Seen {
    read_committed: bool,
    at_ms: i64,
    /// partition -> (fetch offset, when).
    positions: HashMap<i32, (i64, i64)>,
}

/// host -> client.id -> topic -> latest fetch.
type Fetches = HashMap<String, HashMap<String, HashMap<String, Seen>>>;

/// The fetches, and when the stale ones were last swept out.
#[derive(Default)]
struct FetchLog {
    fetches: Fetches,
    /// (host, client.id) pairs held.
    clients: usize,
    swept_at_ms: i64,
}

/// A fetch of one topic: its name and the offset it asks for in each partition.
pub(crate) struct TopicFetch<'a> {
    pub(crate) topic: &'a str,
    pub(crate) offsets: Vec<(i32, i64)>,
}

/// Isolation levels of recent consumer fetches, and each group's conclusion.
#[derive(Default)]
pub(crate) struct Readers {
    fetches: Mutex<FetchLog>,
    /// group -> reads committed, as last concluded from its members.
    groups: Mutex<HashMap<String, bool>>,
}

/// A member as its group knows it.
pub(crate) struct ReaderId<'a> {
    pub(crate) client_id: &'a str,
    /// The address as groups show it, `/127.0.0.1`.
    pub(crate) client_host: &'a str,
}

impl Readers {
    /// Notes a consumer fetch by `client_id` from `client_host`.
    pub(crate) fn fetched(
        &self,
        client: ReaderId<'_>,
        topics: &[TopicFetch<'_>],
        read_committed: bool,
        now_ms: i64,
    ) {
        let mut log = self.fetches.lock().expect("readers lock");
        let known = log
            .fetches
            .get(client.client_host)
            .is_some_and(|clients| clients.contains_key(client.client_id));
        if !known {
            // A new reader: the moment to forget those long gone, now and then.
            if now_ms - log.swept_at_ms >= SWEEP_INTERVAL_MS || log.clients >= CLIENTS_RETAINED {
                log.sweep(now_ms);
            }
            if log.clients >= CLIENTS_RETAINED {
                return;
            }
            log.clients += 1;
            log.fetches
                .entry(client.client_host.to_string())
                .or_default()
                .insert(client.client_id.to_string(), HashMap::new());
        }
        let by_topic = log
            .fetches
            .get_mut(client.client_host)
            .and_then(|clients| clients.get_mut(client.client_id))
            .expect("noted above");
        for fetch in topics {
            if !by_topic.contains_key(fetch.topic) {
                by_topic.insert(fetch.topic.to_string(), Seen::default());
            }
            let seen = by_topic.get_mut(fetch.topic).expect("inserted");
            seen.read_committed = read_committed;
            seen.at_ms = now_ms;
            for &(partition, offset) in &fetch.offsets {
                seen.positions.insert(partition, (offset, now_ms));
            }
        }
    }

    /// The offset `client` last fetched `topic`-`partition` from, if it did recently.
    pub(crate) fn position(
        &self,
        client: ReaderId<'_>,
        topic: &str,
        partition: i32,
        now_ms: i64,
    ) -> Option<i64> {
        let log = self.fetches.lock().expect("readers lock");
        let seen = log
            .fetches
            .get(client.client_host)?
            .get(client.client_id)?
            .get(topic)?;
        let &(offset, at_ms) = seen.positions.get(&partition)?;
        (now_ms - at_ms < STALE_MS).then_some(offset)
    }

    /// Whether `group` reads committed: concluded from the recent fetches of its `members`
    /// on `topics` when there are some, else as last concluded (read_uncommitted, Kafka's
    /// default, for a group never seen fetching).
    pub(crate) fn reads_committed(
        &self,
        group: &str,
        members: &[ReaderId<'_>],
        topics: &[&str],
        now_ms: i64,
    ) -> bool {
        let concluded = {
            let log = self.fetches.lock().expect("readers lock");
            // (when, read committed) of the latest fetch.
            let mut latest: Option<(i64, bool)> = None;
            for member in members {
                let Some(by_topic) = log
                    .fetches
                    .get(member.client_host)
                    .and_then(|clients| clients.get(member.client_id))
                else {
                    continue;
                };
                for topic in topics {
                    let Some(seen) = by_topic.get(*topic) else {
                        continue;
                    };
                    if now_ms - seen.at_ms < STALE_MS
                        && latest.is_none_or(|(at_ms, _)| seen.at_ms > at_ms)
                    {
                        latest = Some((seen.at_ms, seen.read_committed));
                    }
                }
            }
            latest.map(|(_, read_committed)| read_committed)
        };
        let mut groups = self.groups.lock().expect("readers lock");
        match concluded {
            Some(read_committed) => {
                if !groups.contains_key(group) && groups.len() >= GROUPS_RETAINED {
                    groups.clear();
                }
                groups.insert(group.to_string(), read_committed);
                read_committed
            }
            None => groups.get(group).copied().unwrap_or(false),
        }
    }
}

impl FetchLog {
    /// Forgets the fetches older than [`STALE_MS`].
    fn sweep(&mut self, now_ms: i64) {
        for clients in self.fetches.values_mut() {
            for topics in clients.values_mut() {
                topics.retain(|_, seen| now_ms - seen.at_ms < STALE_MS);
            }
            clients.retain(|_, topics| !topics.is_empty());
        }
        self.fetches.retain(|_, clients| !clients.is_empty());
        self.clients = self.fetches.values().map(HashMap::len).sum();
        self.swept_at_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<'a>(client_id: &'a str, client_host: &'a str) -> ReaderId<'a> {
        ReaderId {
            client_id,
            client_host,
        }
    }

    /// A fetch of partition 0 of `topic` from offset 0.
    fn fetch(readers: &Readers, client: ReaderId<'_>, topic: &str, committed: bool, at: i64) {
        let topics = [TopicFetch {
            topic,
            offsets: vec![(0, 0)],
        }];
        readers.fetched(client, &topics, committed, at);
    }

    #[test]
    fn a_group_reads_as_its_members_last_fetched() {
        let readers = Readers::default();
        fetch(&readers, id("app", "/10.0.0.1"), "orders", true, 1_000);
        fetch(&readers, id("other", "/10.0.0.1"), "orders", false, 1_000);
        let members = [id("app", "/10.0.0.1")];
        assert!(readers.reads_committed("g", &members, &["orders"], 2_000));
        // The same client now reads uncommitted.
        fetch(&readers, id("app", "/10.0.0.1"), "orders", false, 3_000);
        assert!(!readers.reads_committed("g", &members, &["orders"], 4_000));
    }

    #[test]
    fn only_the_groups_topics_and_hosts_count() {
        let readers = Readers::default();
        fetch(&readers, id("rdkafka", "/10.0.0.1"), "orders", true, 1_000);
        fetch(&readers, id("rdkafka", "/10.0.0.1"), "clicks", false, 1_500);
        fetch(&readers, id("rdkafka", "/10.0.0.2"), "orders", false, 1_800);
        let members = [id("rdkafka", "/10.0.0.1")];
        assert!(readers.reads_committed("orders-app", &members, &["orders"], 2_000));
        assert!(!readers.reads_committed("clicks-app", &members, &["clicks"], 2_000));
    }

    #[test]
    fn a_group_without_members_keeps_its_answer_and_a_new_one_reads_uncommitted() {
        let readers = Readers::default();
        fetch(&readers, id("app", "/10.0.0.1"), "orders", true, 1_000);
        assert!(readers.reads_committed("g", &[id("app", "/10.0.0.1")], &["orders"], 2_000));
        assert!(readers.reads_committed("g", &[], &["orders"], 3_000));
        assert!(!readers.reads_committed("never-seen", &[], &["orders"], 3_000));
    }

    #[test]
    fn stale_fetches_say_nothing_and_are_forgotten() {
        let readers = Readers::default();
        fetch(&readers, id("app", "/10.0.0.1"), "orders", true, 1_000);
        let later = 1_000 + STALE_MS;
        assert!(!readers.reads_committed("g", &[id("app", "/10.0.0.1")], &["orders"], later));
        // A new reader sweeps the stale one out.
        fetch(&readers, id("new", "/10.0.0.9"), "orders", false, later);
        let log = readers.fetches.lock().unwrap();
        assert!(!log.fetches.contains_key("/10.0.0.1"));
        assert_eq!(log.clients, 1);
    }

    #[test]
    fn a_clients_latest_fetch_offset_is_its_position() {
        let readers = Readers::default();
        let client = || id("app", "/10.0.0.1");
        let at = |offsets: Vec<(i32, i64)>| {
            vec![TopicFetch {
                topic: "orders",
                offsets,
            }]
        };
        readers.fetched(client(), &at(vec![(0, 10), (1, 20)]), false, 1_000);
        readers.fetched(client(), &at(vec![(1, 25)]), false, 2_000);
        assert_eq!(readers.position(client(), "orders", 0, 3_000), Some(10));
        assert_eq!(readers.position(client(), "orders", 1, 3_000), Some(25));
        assert_eq!(readers.position(client(), "orders", 2, 3_000), None);
        assert_eq!(
            readers.position(client(), "orders", 1, 2_000 + STALE_MS),
            None
        );
    }
}
