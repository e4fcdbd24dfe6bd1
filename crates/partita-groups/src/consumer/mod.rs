//! Consumer groups of the next-generation protocol (KIP-848, `group.protocol=consumer`): the
//! broker computes a target assignment, and each member reconciles towards it on its own, so
//! only the partitions that move ever pause.

pub mod assignor;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::ConsumerGroupHeartbeatRequest;
use uuid::Uuid;

use crate::shard::{ClientContext, Token};

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What the coordinator knows of the cluster's topics: name to id and partition count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicsImage {
    /// Topics by name.
    pub by_name: BTreeMap<String, TopicImage>,
    /// Distinguishes this image from every other built in this process (0 for the empty
    /// default): a regular expression resolved against an older image is resolved again.
    pub version: u64,
}

/// One topic in a [`TopicsImage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicImage {
    /// The topic id.
    pub id: Uuid,
    /// How many partitions it has.
    pub partitions: i32,
}

impl TopicsImage {
    /// An image of these topics, with a version of its own.
    pub fn new(by_name: BTreeMap<String, TopicImage>) -> TopicsImage {
        static VERSIONS: AtomicU64 = AtomicU64::new(1);
        let version = VERSIONS.fetch_add(1, Ordering::Relaxed);
        TopicsImage { by_name, version }
    }

    /// The name of the topic with this id.
    pub fn name_of(&self, id: Uuid) -> Option<&str> {
        self.by_name
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(name, _)| name.as_str())
    }
}

/// A shared, immutable image; the broker replaces it when topics change.
pub type SharedTopics = Arc<TopicsImage>;

/// Where a member is in its reconciliation towards the target assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// It owns exactly its target assignment, at the assignment epoch.
    Stable,
    /// It must give up partitions before it can move on.
    UnrevokedPartitions,
    /// It waits for partitions other members still have to release.
    UnreleasedPartitions,
}

impl MemberState {
    /// The state's number in `__consumer_offsets` records.
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    /// The state for a record's number.
    pub fn from_code(code: i8) -> MemberState {
        match code {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

/// A member of a consumer group.
#[derive(Clone, Debug)]
pub struct ConsumerMember {
    /// Its member id.
    pub member_id: String,
    /// Its `group.instance.id`, for a static member.
    pub instance_id: Option<String>,
    /// Its rack.
    pub rack_id: Option<String>,
    /// Its `client.id`.
    pub client_id: String,
    /// Its address.
    pub client_host: String,
    /// How long it may take to revoke partitions.
    pub rebalance_timeout_ms: i32,
    /// Topics it subscribes to by name.
    pub subscribed_topic_names: Vec<String>,
    /// Topics it subscribes to by regular expression.
    pub subscribed_topic_regex: Option<String>,
    /// The server-side assignor it asked for.
    pub server_assignor: Option<String>,
    /// Its epoch: the assignment epoch it has reconciled to.
    pub member_epoch: i32,
    /// Its epoch before the last change, accepted once in case a response was lost.
    pub previous_member_epoch: i32,
    /// Reconciliation state.
    pub state: MemberState,
    /// Partitions it owns now.
    pub assigned: Assignment,
    /// Partitions it has been asked to give up.
    pub pending_revocation: Assignment,
    /// Evicted unless it heartbeats before.
    pub session_deadline: i64,
    /// Evicted unless it revokes before (set while it has partitions to revoke).
    pub rebalance_deadline: Option<i64>,
    /// The assignment last sent to it, to send a new one only when it changes.
    pub last_sent: Option<(i32, Assignment)>,
    /// A static member that left temporarily (epoch -2), keeping its place until its
    /// session times out.
    pub left_temporarily: bool,
    /// The heartbeat interval it was last told (0: none yet). Not in the records.
    pub heartbeat_interval_ms: i32,
}

/// A consumer group's membership and assignments.
///
/// Everything but the deadlines, `assignor` and `rebalance` is what its records say, and
/// changes only when one is replayed.
#[derive(Clone, Debug, Default)]
pub struct ConsumerGroup {
    /// The group id.
    pub group_id: String,
    /// When the group last changed between empty and not empty (for offset expiry).
    pub state_timestamp: i64,
    /// Bumped by every change of membership, subscriptions or subscribed topics.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// Target assignment by member id.
    pub target: BTreeMap<String, Assignment>,
    /// Members by member id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// Static members: instance id to member id.
    pub static_members: HashMap<String, String>,
    /// A hash of the subscribed topics' names, ids and partition counts when the group epoch
    /// was last bumped: a change means the target assignment must be recomputed. Stored in
    /// the group's metadata record, as Kafka 4.1 does.
    pub metadata_hash: i64,
    /// The assignor of the last target assignment.
    pub assignor: String,
    /// When the reconciliation in progress started, and why.
    pub rebalance: Option<(i64, crate::events::RebalanceCause)>,
    /// The topics each subscribed regular expression matched when last resolved. Derived
    /// state, not in the records: after a replay a pattern is resolved again when first
    /// needed.
    pub regexes: BTreeMap<String, ResolvedRegex>,
    /// Patterns a member has just brought to the group: resolved after its heartbeat is
    /// answered, as Kafka resolves them in the background, so the member gets its named
    /// topics first and the matched ones at a later heartbeat.
    pub pending_regexes: BTreeSet<String>,
    /// Heartbeats answered later, by member id: each had nothing new for its member when it
    /// came, and is answered as soon as something changes for the member, or shortly before
    /// the member's next heartbeat is due. Not in the records.
    pub held: BTreeMap<String, HeldHeartbeat>,
}

/// A heartbeat held until something changes for its member (see
/// [`ConsumerGroup::held`]).
#[derive(Clone, Debug)]
pub struct HeldHeartbeat {
    /// Where its answer goes.
    pub token: Token,
    /// The request as it came, run again when it is answered.
    pub request: ConsumerGroupHeartbeatRequest,
    /// Its version.
    pub version: i16,
    /// Who sent it.
    pub client: ClientContext,
    /// When it is answered at the latest.
    pub until: i64,
}

/// Kafka's `REGEX_BATCH_REFRESH_MIN_INTERVAL_MS`: the regular expressions of a group are
/// resolved again at most this often, all together, so topics created one after the other
/// reach every member in the same rebalance.
pub const REGEX_REFRESH_MIN_INTERVAL_MS: i64 = 10_000;

/// What a subscribed regular expression matched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedRegex {
    /// The names of the matched topics.
    pub topics: BTreeSet<String>,
    /// The version of the image it was resolved against.
    pub image_version: u64,
    /// When it was resolved.
    pub resolved_at: i64,
}

impl ResolvedRegex {
    /// Resolves `pattern` (matched as a whole name, internal topics left out) against
    /// `topics`. A pattern that does not compile matches nothing: heartbeats validate it.
    pub fn resolve(pattern: &str, topics: &TopicsImage, now: i64) -> ResolvedRegex {
        let matched = match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(regex) => topics
                .by_name
                .keys()
                .filter(|name| !name.starts_with("__") && regex.is_match(name))
                .cloned()
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        ResolvedRegex {
            topics: matched,
            image_version: topics.version,
            resolved_at: now,
        }
    }
}

impl ConsumerGroup {
    /// A group with no members, epoch 0.
    pub fn new(group_id: &str, now: i64) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            state_timestamp: now,
            ..ConsumerGroup::default()
        }
    }

    /// The next instant a member's session or rebalance timeout passes, or a held heartbeat
    /// is due.
    pub fn next_deadline(&self) -> Option<i64> {
        let held = self.held.values().map(|h| h.until);
        self.members
            .values()
            .flat_map(|m| [Some(m.session_deadline), m.rebalance_deadline])
            .flatten()
            .chain(held)
            .min()
    }

    /// The state KIP-848 reports: Empty, Assigning, Reconciling or Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The topic names the members subscribe to, by name or by regular expression, that
    /// exist in `topics`.
    pub fn subscribed_topic_names(&self, topics: &TopicsImage) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for member in self.members.values() {
            names.extend(self.member_topics(member, topics));
        }
        names
    }

    /// The topics one member subscribes to that exist: its named topics, and what its
    /// regular expression matched when last resolved.
    pub fn member_topics(&self, member: &ConsumerMember, topics: &TopicsImage) -> BTreeSet<String> {
        let matched = member
            .subscribed_topic_regex
            .as_ref()
            .and_then(|pattern| self.regexes.get(pattern))
            .into_iter()
            .flat_map(|resolved| &resolved.topics);
        member
            .subscribed_topic_names
            .iter()
            .chain(matched)
            .filter(|name| topics.by_name.contains_key(*name))
            .cloned()
            .collect()
    }

    /// The regular expressions the members subscribe to.
    pub fn subscribed_regexes(&self) -> BTreeSet<String> {
        self.members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.clone())
            .collect()
    }

    /// Forgets the patterns no member subscribes to any more, and resolves at once those
    /// that members hold but that were never resolved here and are not pending (after a
    /// replay): what the members were assigned before stays theirs.
    pub fn restore_regexes(&mut self, topics: &TopicsImage) {
        let subscribed = self.subscribed_regexes();
        self.regexes
            .retain(|pattern, _| subscribed.contains(pattern));
        self.pending_regexes
            .retain(|pattern| subscribed.contains(pattern));
        for pattern in subscribed {
            if !self.regexes.contains_key(&pattern) && !self.pending_regexes.contains(&pattern) {
                // Restored, not refreshed: it does not hold the next refresh back.
                let resolved = ResolvedRegex::resolve(&pattern, topics, i64::MIN);
                self.regexes.insert(pattern, resolved);
            }
        }
    }

    /// Marks the pattern of `member_id` pending when it is new to the group: it was not its
    /// pattern before (`before`), no other member subscribes to it, and it is not resolved.
    pub fn note_new_regex(&mut self, member_id: &str, before: Option<&str>) {
        let Some(pattern) = self
            .members
            .get(member_id)
            .and_then(|m| m.subscribed_topic_regex.clone())
        else {
            return;
        };
        let held_by_others = self.members.values().any(|m| {
            m.member_id != member_id && m.subscribed_topic_regex.as_ref() == Some(&pattern)
        });
        if before != Some(pattern.as_str())
            && !held_by_others
            && !self.regexes.contains_key(&pattern)
        {
            self.pending_regexes.insert(pattern);
        }
    }

    /// Resolves every subscribed pattern again when one is pending or the topics changed
    /// since the last resolution, unless that was less than
    /// [`REGEX_REFRESH_MIN_INTERVAL_MS`] ago. Returns whether it resolved them.
    pub fn refresh_regexes(&mut self, topics: &TopicsImage, now: i64) -> bool {
        self.restore_regexes(topics);
        let last = self.regexes.values().map(|r| r.resolved_at).max();
        if last.is_some_and(|last| now < last.saturating_add(REGEX_REFRESH_MIN_INTERVAL_MS)) {
            return false;
        }
        let stale = self
            .regexes
            .values()
            .any(|r| r.image_version != topics.version);
        if self.pending_regexes.is_empty() && !stale {
            return false;
        }
        for pattern in self.subscribed_regexes() {
            let resolved = ResolvedRegex::resolve(&pattern, topics, now);
            self.regexes.insert(pattern, resolved);
        }
        self.pending_regexes.clear();
        true
    }

    /// The hash of the subscribed topics as `topics` has them (FNV-1a, stable across runs).
    pub fn subscribed_metadata_hash(&self, topics: &TopicsImage) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for name in self.subscribed_topic_names(topics) {
            if let Some(topic) = topics.by_name.get(&name) {
                feed(name.as_bytes());
                feed(topic.id.as_bytes());
                feed(&topic.partitions.to_be_bytes());
            }
        }
        hash as i64
    }

    /// Partitions owned (assigned or still being revoked) by members other than `except`.
    pub fn owned_by_others(&self, except: &str) -> Assignment {
        let mut owned = Assignment::new();
        for member in self.members.values().filter(|m| m.member_id != except) {
            for source in [&member.assigned, &member.pending_revocation] {
                for (topic, partitions) in source {
                    owned.entry(*topic).or_default().extend(partitions);
                }
            }
        }
        owned
    }
}

/// Counts the partitions in an assignment.
pub fn partition_count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}
