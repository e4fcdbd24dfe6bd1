//! Moving one member from its current assignment towards its target, a step at a time:
//! partitions it must give up are revoked first (its epoch does not advance until it has
//! let them go), and partitions another member still owns are withheld until released. No
//! partition ever has two owners.

use super::{Assignment, ConsumerMember, MemberState};

/// The next step for `member` given its `target` at `target_epoch`, the partitions the member
/// reported owning (`None` when it did not say), and the partitions other members own.
pub fn reconcile(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    reported_owned: Option<&Assignment>,
    owned_by_others: &Assignment,
) -> ConsumerMember {
    match member.state {
        MemberState::UnrevokedPartitions => {
            // Still waiting for the member to confirm it let go of the revoked partitions.
            let released = reported_owned.is_some_and(|owned| {
                !owned.iter().any(|(topic, partitions)| {
                    member
                        .pending_revocation
                        .get(topic)
                        .is_some_and(|pending| partitions.iter().any(|p| pending.contains(p)))
                })
            });
            if !released {
                return member.clone();
            }
            next_step(member, target_epoch, target, owned_by_others)
        }
        MemberState::Stable if member.member_epoch == target_epoch => member.clone(),
        _ => next_step(member, target_epoch, target, owned_by_others),
    }
}

fn next_step(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    owned_by_others: &Assignment,
) -> ConsumerMember {
    let mut kept = Assignment::new();
    let mut to_revoke = Assignment::new();
    let mut newly_assigned = Assignment::new();
    let mut unreleased = false;
    for (topic, partitions) in &member.assigned {
        for &p in partitions {
            let in_target = target.get(topic).is_some_and(|t| t.contains(&p));
            let bucket = if in_target { &mut kept } else { &mut to_revoke };
            bucket.entry(*topic).or_default().insert(p);
        }
    }
    for (topic, partitions) in target {
        for &p in partitions {
            if kept.get(topic).is_some_and(|k| k.contains(&p)) {
                continue;
            }
            if owned_by_others.get(topic).is_some_and(|o| o.contains(&p)) {
                unreleased = true;
            } else {
                newly_assigned.entry(*topic).or_default().insert(p);
            }
        }
    }
    let mut next = member.clone();
    next.pending_revocation = Assignment::new();
    if !to_revoke.is_empty() {
        // Revoke first; the epoch stays until the member has done so.
        next.state = MemberState::UnrevokedPartitions;
        next.assigned = kept;
        next.pending_revocation = to_revoke;
        return next;
    }
    for (topic, partitions) in newly_assigned {
        kept.entry(topic).or_default().extend(partitions);
    }
    next.assigned = kept;
    next.rebalance_deadline = None;
    if next.member_epoch != target_epoch {
        next.previous_member_epoch = next.member_epoch;
        next.member_epoch = target_epoch;
    }
    next.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    next
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use uuid::Uuid;

    use super::*;

    const T: Uuid = Uuid::from_u128(1);

    fn parts(ps: &[i32]) -> Assignment {
        Assignment::from([(T, ps.iter().copied().collect::<BTreeSet<i32>>())])
    }

    fn member(epoch: i32, assigned: &[i32]) -> ConsumerMember {
        ConsumerMember {
            member_id: "m".into(),
            instance_id: None,
            rack_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            rebalance_timeout_ms: 1000,
            subscribed_topic_names: vec!["t".into()],
            subscribed_topic_regex: None,
            server_assignor: None,
            member_epoch: epoch,
            previous_member_epoch: -1,
            state: MemberState::Stable,
            assigned: parts(assigned),
            pending_revocation: Assignment::new(),
            session_deadline: 0,
            rebalance_deadline: None,
            last_sent: None,
            left_temporarily: false,
            heartbeat_interval_ms: 0,
        }
    }

    #[test]
    fn revocation_comes_before_the_epoch_advances() {
        let m = member(1, &[0, 1, 2]);
        let step = reconcile(&m, 2, &parts(&[0, 1]), None, &Assignment::new());
        assert_eq!(step.state, MemberState::UnrevokedPartitions);
        assert_eq!(step.member_epoch, 1);
        assert_eq!(step.assigned, parts(&[0, 1]));
        assert_eq!(step.pending_revocation, parts(&[2]));
        // Until the member reports it no longer owns 2, nothing changes.
        let still = reconcile(
            &step,
            2,
            &parts(&[0, 1]),
            Some(&parts(&[0, 1, 2])),
            &Assignment::new(),
        );
        assert_eq!(still.state, MemberState::UnrevokedPartitions);
        let done = reconcile(
            &step,
            2,
            &parts(&[0, 1]),
            Some(&parts(&[0, 1])),
            &Assignment::new(),
        );
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.member_epoch, 2);
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn partitions_still_owned_elsewhere_are_withheld() {
        let m = member(1, &[0]);
        let others = parts(&[1]);
        let step = reconcile(&m, 2, &parts(&[0, 1]), None, &others);
        assert_eq!(step.state, MemberState::UnreleasedPartitions);
        assert_eq!(step.member_epoch, 2);
        assert_eq!(step.assigned, parts(&[0]));
        let released = reconcile(&step, 2, &parts(&[0, 1]), None, &Assignment::new());
        assert_eq!(released.state, MemberState::Stable);
        assert_eq!(released.assigned, parts(&[0, 1]));
    }
}
