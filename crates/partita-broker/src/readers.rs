//! How each group reads: `read_uncommitted`, or `read_committed` (it stops at the last stable
//! offset), so that its lag is counted as its consumers see it.
//!
//! Kafka's protocol never says: a Fetch names no group, and JoinGroup or
//! ConsumerGroupHeartbeat no isolation level. But a member's `client.id` and host are known
//! to its group, and the same client's fetches carry both and the topics they read. So every
//! consumer fetch is remembered under (host, `client.id`, topic) with its isolation level and
//! time, and a group reads committed when the latest fetches of its members, on the topics the
//! group consumes, were read_committed. A group's answer outlives its members, so a group whose
//! consumers have all stopped keeps being counted the way it read.
//!
//! Two consumers on one host sharing a `client.id` (librdkafka's default is `rdkafka`) and
//! reading one topic with different isolation levels cannot be told apart: the latest fetch
//! wins.

use std::collections::HashMap;
use std::sync::Mutex;

/// A fetch seen more recently than this is not written again (it changes nothing).
const REFRESH_MS: i64 = 1_000;
/// Fetches older than this no longer say how a client reads: it may have restarted since
/// with another setting.
const STALE_MS: i64 = 10 * 60 * 1_000;
/// Groups remembered at most (their answer outlives their members).
const GROUPS_RETAINED: usize = 100_000;

/// The isolation level of one client's latest fetch of one topic.
#[derive(Clone, Copy, Debug)]
struct Seen {
    read_committed: bool,
    at_ms: i64,
}

/// host -> client.id -> topic -> latest fetch.
type Fetches = HashMap<String, HashMap<String, HashMap<String, Seen>>>;

/// Isolation levels of recent consumer fetches, and each group's conclusion.
#[derive(Default)]
pub(crate) struct Readers {
    fetches: Mutex<Fetches>,
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
    /// Notes a consumer fetch of `topic` by `client_id` from `client_host`.
    pub(crate) fn fetched(
        &self,
        client: ReaderId<'_>,
        topic: &str,
        read_committed: bool,
        now_ms: i64,
    ) {
        let mut fetches = self.fetches.lock().expect("readers lock");
        let seen = Seen {
            read_committed,
            at_ms: now_ms,
        };
        let by_topic = fetches
            .get_mut(client.client_host)
            .and_then(|clients| clients.get_mut(client.client_id));
        match by_topic.and_then(|topics| topics.get_mut(topic)) {
            Some(known) => {
                if known.read_committed != read_committed || now_ms - known.at_ms >= REFRESH_MS {
                    *known = seen;
                }
            }
            None => {
                // A new reader: the moment to forget those long gone.
                forget_stale(&mut fetches, now_ms);
                fetches
                    .entry(client.client_host.to_string())
                    .or_default()
                    .entry(client.client_id.to_string())
                    .or_default()
                    .insert(topic.to_string(), seen);
            }
        }
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
            let fetches = self.fetches.lock().expect("readers lock");
            let mut latest: Option<Seen> = None;
            for member in members {
                let Some(by_topic) = fetches
                    .get(member.client_host)
                    .and_then(|clients| clients.get(member.client_id))
                else {
                    continue;
                };
                for topic in topics {
                    let Some(&seen) = by_topic.get(*topic) else {
                        continue;
                    };
                    if now_ms - seen.at_ms < STALE_MS
                        && latest.is_none_or(|latest| seen.at_ms > latest.at_ms)
                    {
                        latest = Some(seen);
                    }
                }
            }
            latest.map(|seen| seen.read_committed)
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

fn forget_stale(
    fetches: &mut HashMap<String, HashMap<String, HashMap<String, Seen>>>,
    now_ms: i64,
) {
    for clients in fetches.values_mut() {
        for topics in clients.values_mut() {
            topics.retain(|_, seen| now_ms - seen.at_ms < STALE_MS);
        }
        clients.retain(|_, topics| !topics.is_empty());
    }
    fetches.retain(|_, clients| !clients.is_empty());
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

    #[test]
    fn a_group_reads_as_its_members_last_fetched() {
        let readers = Readers::default();
        readers.fetched(id("app", "/10.0.0.1"), "orders", true, 1_000);
        readers.fetched(id("other", "/10.0.0.1"), "orders", false, 1_000);
        let members = [id("app", "/10.0.0.1")];
        assert!(readers.reads_committed("g", &members, &["orders"], 2_000));
        // The same client now reads uncommitted.
        readers.fetched(id("app", "/10.0.0.1"), "orders", false, 3_000);
        assert!(!readers.reads_committed("g", &members, &["orders"], 4_000));
    }

    #[test]
    fn only_the_groups_topics_and_hosts_count() {
        let readers = Readers::default();
        readers.fetched(id("rdkafka", "/10.0.0.1"), "orders", true, 1_000);
        readers.fetched(id("rdkafka", "/10.0.0.1"), "clicks", false, 1_500);
        readers.fetched(id("rdkafka", "/10.0.0.2"), "orders", false, 1_800);
        let members = [id("rdkafka", "/10.0.0.1")];
        assert!(readers.reads_committed("orders-app", &members, &["orders"], 2_000));
        assert!(!readers.reads_committed("clicks-app", &members, &["clicks"], 2_000));
    }

    #[test]
    fn a_group_without_members_keeps_its_answer_and_a_new_one_reads_uncommitted() {
        let readers = Readers::default();
        readers.fetched(id("app", "/10.0.0.1"), "orders", true, 1_000);
        assert!(readers.reads_committed("g", &[id("app", "/10.0.0.1")], &["orders"], 2_000));
        assert!(readers.reads_committed("g", &[], &["orders"], 3_000));
        assert!(!readers.reads_committed("never-seen", &[], &["orders"], 3_000));
    }

    #[test]
    fn stale_fetches_say_nothing_and_are_forgotten() {
        let readers = Readers::default();
        readers.fetched(id("app", "/10.0.0.1"), "orders", true, 1_000);
        let later = 1_000 + STALE_MS;
        assert!(!readers.reads_committed("g", &[id("app", "/10.0.0.1")], &["orders"], later));
        // A new reader sweeps the stale one out.
        readers.fetched(id("new", "/10.0.0.9"), "orders", false, later);
        let fetches = readers.fetches.lock().unwrap();
        assert!(!fetches.contains_key("/10.0.0.1"));
    }
}
