//! Server-side assignors: `uniform` (balanced and sticky) and `range` (contiguous ranges per
//! topic, as the classic range assignor gives).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{partition_count, Assignment, TopicImage};

/// The assignors served, the first being the default (`group.consumer.assignors`).
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// What an assignor sees of one member.
#[derive(Clone, Debug)]
pub struct MemberSpec<'a> {
    /// Member id.
    pub member_id: &'a str,
    /// The topics it subscribes to (that exist).
    pub topics: BTreeSet<String>,
    /// Its current target, for stickiness.
    pub current: Option<&'a Assignment>,
}

/// Computes the target assignment of every member.
pub fn assign(
    assignor: &str,
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicImage>,
) -> BTreeMap<String, Assignment> {
    match assignor {
        "range" => range(members, topics),
        _ => uniform(members, topics),
    }
}

/// Balanced and sticky: every partition goes to one subscribed member; members keep what
/// they had as long as that keeps the counts within one of each other.
fn uniform(
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicImage>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    // Every partition that some member subscribes to, in a stable order.
    let mut partitions: Vec<(String, Uuid, i32)> = Vec::new();
    for (name, topic) in topics {
        if members.iter().any(|m| m.topics.contains(name)) {
            partitions.extend((0..topic.partitions).map(|p| (name.clone(), topic.id, p)));
        }
    }
    let total = partitions.len();
    let count = members.len().max(1);
    let floor = total / count;
    let mut ceilings_left = total % count;
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    // Keep current partitions, up to each member's quota.
    let mut order: Vec<&MemberSpec<'_>> = members.iter().collect();
    order.sort_by_key(|m| std::cmp::Reverse(m.current.map_or(0, partition_count)));
    for member in &order {
        let Some(current) = member.current else {
            continue;
        };
        let quota = if ceilings_left > 0 && partition_count(current) > floor {
            ceilings_left -= 1;
            floor + 1
        } else {
            floor
        };
        let mine = result.get_mut(member.member_id).expect("member listed");
        let mut kept = 0;
        for (topic_id, set) in current {
            let Some((name, topic)) = topics.iter().find(|(_, t)| t.id == *topic_id) else {
                continue;
            };
            if !member.topics.contains(name) {
                continue;
            }
            for &p in set {
                if kept < quota && p < topic.partitions && taken.insert((*topic_id, p)) {
                    mine.entry(*topic_id).or_default().insert(p);
                    kept += 1;
                }
            }
        }
    }
    // Hand out the rest, each to the eligible member with the fewest partitions.
    for (name, topic_id, p) in partitions {
        if taken.contains(&(topic_id, p)) {
            continue;
        }
        let candidate = members
            .iter()
            .filter(|m| m.topics.contains(&name))
            .min_by_key(|m| (partition_count(&result[m.member_id]), m.member_id));
        if let Some(member) = candidate {
            result
                .get_mut(member.member_id)
                .expect("member listed")
                .entry(topic_id)
                .or_default()
                .insert(p);
            taken.insert((topic_id, p));
        }
    }
    result
}

/// Per topic, the subscribed members sorted by id get contiguous ranges, the first ones one
/// partition more when the count does not divide evenly.
fn range(
    members: &[MemberSpec<'_>],
    topics: &BTreeMap<String, TopicImage>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for (name, topic) in topics {
        let mut subscribed: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(name))
            .map(|m| m.member_id)
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        subscribed.sort_unstable();
        let per_member = topic.partitions as usize / subscribed.len();
        let extra = topic.partitions as usize % subscribed.len();
        let mut next = 0;
        for (i, member_id) in subscribed.iter().enumerate() {
            let size = per_member + usize::from(i < extra);
            let partitions = (next..next + size).map(|p| p as i32);
            if size > 0 {
                result
                    .get_mut(*member_id)
                    .expect("member listed")
                    .entry(topic.id)
                    .or_default()
                    .extend(partitions);
            }
            next += size;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(spec: &[(&str, i32)]) -> BTreeMap<String, TopicImage> {
        spec.iter()
            .enumerate()
            .map(|(i, (name, partitions))| {
                (
                    name.to_string(),
                    TopicImage {
                        id: Uuid::from_u128(i as u128 + 1),
                        partitions: *partitions,
                    },
                )
            })
            .collect()
    }

    fn spec<'a>(
        id: &'a str,
        subscribed: &[&str],
        current: Option<&'a Assignment>,
    ) -> MemberSpec<'a> {
        MemberSpec {
            member_id: id,
            topics: subscribed.iter().map(|s| s.to_string()).collect(),
            current,
        }
    }

    #[test]
    fn uniform_balances_and_gives_every_partition_one_owner() {
        let t = topics(&[("a", 7), ("b", 2)]);
        let members = [
            spec("m1", &["a", "b"], None),
            spec("m2", &["a", "b"], None),
            spec("m3", &["a", "b"], None),
        ];
        let result = assign("uniform", &members, &t);
        let counts: Vec<usize> = result.values().map(partition_count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 9);
        assert!(counts.iter().all(|c| *c == 3), "{counts:?}");
    }

    #[test]
    fn uniform_moves_only_what_it_must_when_a_member_joins() {
        let t = topics(&[("a", 6)]);
        let before = assign(
            "uniform",
            &[spec("m1", &["a"], None), spec("m2", &["a"], None)],
            &t,
        );
        let m1 = before["m1"].clone();
        let m2 = before["m2"].clone();
        let after = assign(
            "uniform",
            &[
                spec("m1", &["a"], Some(&m1)),
                spec("m2", &["a"], Some(&m2)),
                spec("m3", &["a"], None),
            ],
            &t,
        );
        for member in ["m1", "m2"] {
            let kept = after[member]
                .values()
                .flatten()
                .filter(|p| before[member].values().flatten().any(|q| q == *p))
                .count();
            assert_eq!(kept, 2, "{member} keeps two of its three partitions");
        }
        assert_eq!(partition_count(&after["m3"]), 2);
    }

    #[test]
    fn members_beyond_the_partition_count_get_nothing() {
        let t = topics(&[("a", 2)]);
        let members = [
            spec("m1", &["a"], None),
            spec("m2", &["a"], None),
            spec("m3", &["a"], None),
        ];
        let result = assign("uniform", &members, &t);
        assert_eq!(result.values().filter(|a| a.is_empty()).count(), 1);
    }

    #[test]
    fn range_gives_contiguous_ranges_by_member_id() {
        let t = topics(&[("a", 5)]);
        let members = [spec("m2", &["a"], None), spec("m1", &["a"], None)];
        let result = assign("range", &members, &t);
        let id = t["a"].id;
        assert_eq!(result["m1"][&id], BTreeSet::from([0, 1, 2]));
        assert_eq!(result["m2"][&id], BTreeSet::from([3, 4]));
    }

    #[test]
    fn only_subscribers_of_a_topic_get_its_partitions() {
        let t = topics(&[("a", 2), ("b", 2)]);
        let members = [spec("m1", &["a"], None), spec("m2", &["b"], None)];
        for assignor in ASSIGNORS {
            let result = assign(assignor, &members, &t);
            assert_eq!(result["m1"].keys().collect::<Vec<_>>(), vec![&t["a"].id]);
            assert_eq!(result["m2"].keys().collect::<Vec<_>>(), vec![&t["b"].id]);
        }
    }
}
