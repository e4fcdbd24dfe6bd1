//! `partita groups ...`: list, describe, delete, delete-offsets, reset-offsets. `describe`
//! shows share groups too: members, and per share-partition the start offset and share lag.

use std::collections::BTreeMap;

use partita_admin::groups::{self, GroupDescription, Isolation, MemberDescription};
use partita_admin::lag::SKEW_FACTOR;
use partita_admin::reset::{self, PlannedReset, ResetScope, ResetStrategy};
use partita_admin::share::{self, ShareGroupDescription, ShareMember};
use partita_admin::{time, AdminClient, AdminError};
use serde::Serialize;

use super::table::{or_dash, Table};
use super::{print_json, ClusterArgs, Output};

#[derive(clap::Args)]
pub(crate) struct GroupsArgs {
    #[command(subcommand)]
    command: GroupsCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Subcommand)]
enum GroupsCommand {
    /// List the groups of every broker, with state, type (classic, consumer, share) and
    /// protocol type.
    List,
    /// Show a group's lag per partition (or its members, or its state).
    ///
    /// Under the table: the total lag per topic, and a warning for any partition whose lag is
    /// at least 1000 and over 10 times the median lag of the topic's other partitions.
    ///
    /// For a share group: its members and what they are assigned, and per share-partition the
    /// start offset, log end offset and share lag (records not yet acknowledged or archived).
    Describe(DescribeArgs),
    /// Delete groups that have no active members, with their offsets.
    Delete(DeleteArgs),
    /// Delete a group's committed offsets for a topic.
    DeleteOffsets(DeleteOffsetsArgs),
    /// Move a group's committed offsets (dry run unless --execute).
    ResetOffsets(ResetArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["group", "all_groups"])))]
struct DescribeArgs {
    /// The group to describe.
    #[arg(long)]
    group: Option<String>,
    /// Describe every group of the cluster.
    #[arg(long)]
    all_groups: bool,
    /// Show members and their assignments instead of the lag table.
    #[arg(long, conflicts_with = "state")]
    members: bool,
    /// Show state, assignor, generation, coordinator and member count instead of the lag table.
    #[arg(long)]
    state: bool,
    /// How the group's consumers read: with read_committed, lag ends at each partition's last
    /// stable offset (shown as LOG-END-OFFSET), where an open transaction holds them.
    #[arg(long, value_name = "LEVEL", default_value = "read_uncommitted", value_parser = parse_isolation)]
    isolation_level: Isolation,
}

fn parse_isolation(text: &str) -> Result<Isolation, String> {
    match text {
        "read_uncommitted" => Ok(Isolation::ReadUncommitted),
        "read_committed" => Ok(Isolation::ReadCommitted),
        _ => Err("expected read_uncommitted or read_committed".to_string()),
    }
}

#[derive(clap::Args)]
struct DeleteArgs {
    /// A group to delete; repeatable.
    #[arg(long, required = true)]
    group: Vec<String>,
}

#[derive(clap::Args)]
struct DeleteOffsetsArgs {
    /// The group.
    #[arg(long)]
    group: String,
    /// TOPIC or TOPIC:P,P,... whose offsets to delete.
    #[arg(long, value_parser = reset::parse_topic_partitions)]
    topic: (String, Option<Vec<i32>>),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["topic", "all_topics"])))]
#[command(group(clap::ArgGroup::new("strategy").required(true).args([
    "to_earliest", "to_latest", "to_offset", "shift_by", "to_datetime", "by_duration", "to_current",
])))]
#[command(group(clap::ArgGroup::new("mode").args(["dry_run", "execute"])))]
struct ResetArgs {
    /// The group (it must have no active members).
    #[arg(long)]
    group: String,
    /// TOPIC or TOPIC:P,P,... to reset; repeatable.
    #[arg(long, value_parser = reset::parse_topic_partitions)]
    topic: Vec<(String, Option<Vec<i32>>)>,
    /// Reset every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to the log's range).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// By this many records from the committed offset (negative moves back).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// To the first record at or after this time, e.g. 2026-01-01T00:00:00Z.
    #[arg(long, value_name = "DATETIME", value_parser = time::parse_datetime)]
    to_datetime: Option<i64>,
    /// To the first record at or after this long ago, ISO-8601, e.g. PT1H.
    #[arg(long, value_name = "DURATION", value_parser = time::parse_duration)]
    by_duration: Option<i64>,
    /// To the committed offset (the log end where there is none).
    #[arg(long)]
    to_current: bool,
    /// Only print the plan (the default).
    #[arg(long)]
    dry_run: bool,
    /// Apply the plan.
    #[arg(long)]
    execute: bool,
}

pub(crate) async fn run(args: GroupsArgs) -> Result<(), AdminError> {
    let output = args.cluster.output;
    let mut client = args.cluster.connect().await?;
    match args.command {
        GroupsCommand::List => list(&mut client, output).await,
        GroupsCommand::Describe(describe) => run_describe(&mut client, describe, output).await,
        GroupsCommand::Delete(delete) => run_delete(&mut client, delete, output).await,
        GroupsCommand::DeleteOffsets(delete) => {
            run_delete_offsets(&mut client, delete, output).await
        }
        GroupsCommand::ResetOffsets(reset) => run_reset(&mut client, reset, output).await,
    }
}

async fn list(client: &mut AdminClient, output: Output) -> Result<(), AdminError> {
    let listed = groups::list_groups(client).await?;
    if output == Output::Json {
        return print_json(&listed);
    }
    let mut table = Table::new(&["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"]);
    for group in &listed {
        table.row(vec![
            group.group.clone(),
            or_dash(group.state.as_deref()),
            or_dash(group.group_type.as_deref()),
            or_dash(Some(group.protocol_type.as_str()).filter(|p| !p.is_empty())),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

async fn run_describe(
    client: &mut AdminClient,
    args: DescribeArgs,
    output: Output,
) -> Result<(), AdminError> {
    let names = match &args.group {
        Some(group) => vec![group.clone()],
        None => groups::list_groups(client)
            .await?
            .into_iter()
            .map(|g| g.group)
            .collect(),
    };
    let mut described = Vec::new();
    for name in &names {
        match describe_any(client, name, args.isolation_level).await {
            Ok(group) => described.push(group),
            // With --all-groups, a group that vanished since the listing is simply left out.
            Err(AdminError::GroupNotFound(_)) if args.group.is_none() => {}
            Err(e) => return Err(e),
        }
    }
    if described.iter().any(|d| matches!(d, Described::Share(_))) {
        return print_described(&described, &args, output);
    }
    let described: Vec<GroupDescription> = described
        .into_iter()
        .filter_map(|d| match d {
            Described::Consumer(group) => Some(group),
            Described::Share(_) => None,
        })
        .collect();
    if output == Output::Json {
        return match (args.members, args.state, args.group.is_some()) {
            (true, _, true) => print_json(&members_view(&described[0])),
            (true, _, false) => print_json(&described.iter().map(members_view).collect::<Vec<_>>()),
            (_, true, true) => print_json(&state_view(&described[0])),
            (_, true, false) => print_json(&described.iter().map(state_view).collect::<Vec<_>>()),
            (false, false, true) => print_json(&described[0]),
            (false, false, false) => print_json(&described),
        };
    }
    for (index, group) in described.iter().enumerate() {
        if index > 0 {
            println!();
        }
        if args.members {
            print_members(group);
        } else if args.state {
            print_state(group);
        } else {
            print_lag(group);
        }
    }
    Ok(())
}

/// A consumer group (classic or KIP-848), or a share group.
#[derive(Serialize)]
#[serde(untagged)]
enum Described {
    Consumer(GroupDescription),
    Share(ShareGroupDescription),
}

/// Describes `name` as a consumer group, or else as a share group.
async fn describe_any(
    client: &mut AdminClient,
    name: &str,
    isolation: Isolation,
) -> Result<Described, AdminError> {
    match groups::describe_group(client, name, isolation).await {
        Ok(group) => Ok(Described::Consumer(group)),
        Err(AdminError::GroupNotFound(not_found)) => {
            match share::describe_share_group(client, name).await {
                Ok(group) => Ok(Described::Share(group)),
                Err(AdminError::GroupNotFound(_)) => Err(AdminError::GroupNotFound(not_found)),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Output when share groups are among the described: each group in its own shape.
fn print_described(
    described: &[Described],
    args: &DescribeArgs,
    output: Output,
) -> Result<(), AdminError> {
    let view = |d: &Described| -> serde_json::Value {
        let value = match (d, args.members, args.state) {
            (Described::Consumer(g), true, _) => serde_json::to_value(members_view(g)),
            (Described::Consumer(g), _, true) => serde_json::to_value(state_view(g)),
            (Described::Consumer(g), false, false) => serde_json::to_value(g),
            (Described::Share(g), true, _) => serde_json::to_value(share_members_view(g)),
            (Described::Share(g), _, true) => serde_json::to_value(share_state_view(g)),
            (Described::Share(g), false, false) => serde_json::to_value(g),
        };
        value.unwrap_or(serde_json::Value::Null)
    };
    if output == Output::Json {
        return if args.group.is_some() {
            print_json(&view(&described[0]))
        } else {
            print_json(&described.iter().map(view).collect::<Vec<_>>())
        };
    }
    for (index, group) in described.iter().enumerate() {
        if index > 0 {
            println!();
        }
        match (group, args.members, args.state) {
            (Described::Consumer(g), true, _) => print_members(g),
            (Described::Consumer(g), _, true) => print_state(g),
            (Described::Consumer(g), false, false) => print_lag(g),
            (Described::Share(g), true, _) => print_share_members(g),
            (Described::Share(g), _, true) => print_share_state(g),
            (Described::Share(g), false, false) => print_share(g),
        }
    }
    Ok(())
}

/// A share group: the share lag of each share-partition, then the members.
fn print_share(group: &ShareGroupDescription) {
    if group.members.is_empty() {
        println!("Share group '{}' has no active members.\n", group.group);
    }
    let mut table = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "START-OFFSET",
        "LOG-END-OFFSET",
        "SHARE-LAG",
    ]);
    for row in &group.partitions {
        table.row(vec![
            group.group.clone(),
            row.topic.clone(),
            row.partition.to_string(),
            or_dash(row.start_offset),
            or_dash(row.log_end_offset),
            or_dash(row.share_lag),
        ]);
    }
    print!("{}", table.render());
    println!(
        "\nShare lag: records not yet acknowledged or archived ({} in all). A partition no member \
         has read yet has no start offset.",
        group.total_share_lag
    );
    if !group.members.is_empty() {
        println!();
        print_share_members(group);
    }
}

fn print_share_members(group: &ShareGroupDescription) {
    if group.members.is_empty() {
        println!("Share group '{}' has no active members.", group.group);
        return;
    }
    let mut table = Table::new(&[
        "GROUP",
        "MEMBER-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
        "ASSIGNMENT",
    ]);
    for member in &group.members {
        table.row(vec![
            group.group.clone(),
            member.member_id.clone(),
            member.host.clone(),
            member.client_id.clone(),
            member.partition_count().to_string(),
            assignment_text(&member.assignment),
        ]);
    }
    print!("{}", table.render());
}

fn print_share_state(group: &ShareGroupDescription) {
    let mut table = Table::new(&[
        "GROUP",
        "COORDINATOR (ID)",
        "TYPE",
        "ASSIGNOR",
        "STATE",
        "GROUP-EPOCH",
        "#MEMBERS",
    ]);
    table.row(vec![
        group.group.clone(),
        format!("{} ({})", group.coordinator, group.coordinator_id),
        group.group_type.to_string(),
        or_dash(Some(group.assignor.as_str()).filter(|a| !a.is_empty())),
        group.state.clone(),
        group.group_epoch.to_string(),
        group.members.len().to_string(),
    ]);
    print!("{}", table.render());
}

#[derive(Serialize)]
struct ShareMembersView<'a> {
    group: &'a str,
    members: &'a [ShareMember],
}

fn share_members_view(group: &ShareGroupDescription) -> ShareMembersView<'_> {
    ShareMembersView {
        group: &group.group,
        members: &group.members,
    }
}

#[derive(Serialize)]
struct ShareStateView<'a> {
    group: &'a str,
    #[serde(rename = "type")]
    group_type: &'a str,
    state: &'a str,
    assignor: &'a str,
    group_epoch: i32,
    coordinator_id: i32,
    coordinator: &'a str,
    member_count: usize,
}

fn share_state_view(group: &ShareGroupDescription) -> ShareStateView<'_> {
    ShareStateView {
        group: &group.group,
        group_type: group.group_type,
        state: &group.state,
        assignor: &group.assignor,
        group_epoch: group.group_epoch,
        coordinator_id: group.coordinator_id,
        coordinator: &group.coordinator,
        member_count: group.members.len(),
    }
}

fn print_lag(group: &GroupDescription) {
    if group.members.is_empty() {
        println!("Consumer group '{}' has no active members.\n", group.group);
    } else if group.state != "Stable" {
        println!(
            "Consumer group '{}' is rebalancing ({}): assignments are shown once it is Stable.\n",
            group.group, group.state
        );
    }
    let mut table = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for row in &group.rows {
        table.row(vec![
            group.group.clone(),
            or_dash(row.topic.as_deref()),
            or_dash(row.partition),
            or_dash(row.current_offset),
            or_dash(row.log_end_offset),
            or_dash(row.lag),
            or_dash(row.consumer_id.as_deref()),
            or_dash(row.host.as_deref()),
            or_dash(row.client_id.as_deref()),
        ]);
    }
    print!("{}", table.render());
    if !group.topic_lag.is_empty() {
        let mut totals = Table::new(&["TOPIC", "TOTAL-LAG", "PARTITIONS-WITHOUT-OFFSET"]);
        for topic in &group.topic_lag {
            totals.row(vec![
                topic.topic.clone(),
                topic.total_lag.to_string(),
                topic.partitions_without_offset.to_string(),
            ]);
        }
        println!();
        print!("{}", totals.render());
    }
    if group.isolation_level == "read_committed" {
        println!(
            "\nLOG-END-OFFSET is the last stable offset: read_committed consumers stop there."
        );
    }
    for open in &group.open_transactions {
        println!(
            "\nNOTE: {}-{} has {} records past its last stable offset {}: an open transaction \
             holds read_committed consumers there (partita transactions describe-producers \
             --topic {} --partition {}).",
            open.topic,
            open.partition,
            open.log_end_offset - open.last_stable_offset,
            open.last_stable_offset,
            open.topic,
            open.partition
        );
    }
    for skew in &group.skew {
        let owner = match (&skew.consumer_id, &skew.host) {
            (Some(id), Some(host)) => format!("owned by {id} on {host}"),
            (Some(id), None) => format!("owned by {id}"),
            _ => "owned by no member".to_string(),
        };
        println!(
            "\nWARNING: {}-{} lags {} records, over {SKEW_FACTOR}x the median of the topic's \
             other partitions ({}); {owner}. A hot key or a slow consumer?",
            skew.topic, skew.partition, skew.lag, skew.median_of_others
        );
    }
}

/// A member's partitions as `topic(0,1) other(2)`, or `-` for none; the same for consumer
/// and share group members.
fn assignment_text(assignment: &BTreeMap<String, Vec<i32>>) -> String {
    if assignment.is_empty() {
        return "-".to_string();
    }
    assignment
        .iter()
        .map(|(topic, partitions)| {
            let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
            format!("{topic}({})", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_members(group: &GroupDescription) {
    if group.members.is_empty() {
        println!("Consumer group '{}' has no active members.", group.group);
        return;
    }
    let mut table = Table::new(&[
        "GROUP",
        "CONSUMER-ID",
        "GROUP-INSTANCE-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
        "ASSIGNMENT",
    ]);
    for member in &group.members {
        table.row(vec![
            group.group.clone(),
            member.member_id.clone(),
            or_dash(member.group_instance_id.as_deref()),
            member.host.clone(),
            member.client_id.clone(),
            member.partition_count().to_string(),
            assignment_text(&member.assignment),
        ]);
    }
    print!("{}", table.render());
}

fn print_state(group: &GroupDescription) {
    let mut table = Table::new(&[
        "GROUP",
        "COORDINATOR (ID)",
        "ASSIGNMENT-STRATEGY",
        "STATE",
        "GENERATION",
        "#MEMBERS",
    ]);
    table.row(vec![
        group.group.clone(),
        format!("{} ({})", group.coordinator, group.coordinator_id),
        or_dash(Some(group.protocol.as_str()).filter(|p| !p.is_empty())),
        group.state.clone(),
        or_dash(group.generation),
        group.members.len().to_string(),
    ]);
    print!("{}", table.render());
}

#[derive(Serialize)]
struct MembersView<'a> {
    group: &'a str,
    members: &'a [MemberDescription],
}

fn members_view(group: &GroupDescription) -> MembersView<'_> {
    MembersView {
        group: &group.group,
        members: &group.members,
    }
}

#[derive(Serialize)]
struct StateView<'a> {
    group: &'a str,
    state: &'a str,
    protocol_type: &'a str,
    protocol: &'a str,
    generation: Option<i32>,
    coordinator_id: i32,
    coordinator: &'a str,
    member_count: usize,
}

fn state_view(group: &GroupDescription) -> StateView<'_> {
    StateView {
        group: &group.group,
        state: &group.state,
        protocol_type: &group.protocol_type,
        protocol: &group.protocol,
        generation: group.generation,
        coordinator_id: group.coordinator_id,
        coordinator: &group.coordinator,
        member_count: group.members.len(),
    }
}

async fn run_delete(
    client: &mut AdminClient,
    args: DeleteArgs,
    output: Output,
) -> Result<(), AdminError> {
    for group in &args.group {
        groups::delete_group(client, group).await?;
        if output == Output::Text {
            println!("Deleted consumer group '{group}'.");
        }
    }
    if output == Output::Json {
        print_json(&serde_json::json!({ "deleted": args.group }))?;
    }
    Ok(())
}

async fn run_delete_offsets(
    client: &mut AdminClient,
    args: DeleteOffsetsArgs,
    output: Output,
) -> Result<(), AdminError> {
    let (topic, partitions) = &args.topic;
    let deleted = groups::delete_offsets(client, &args.group, topic, partitions.as_deref()).await?;
    if output == Output::Json {
        return print_json(&serde_json::json!({
            "group": args.group,
            "topic": topic,
            "partitions": deleted,
        }));
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "STATUS"]);
    for partition in deleted {
        table.row(vec![topic.clone(), partition.to_string(), "Deleted".into()]);
    }
    print!("{}", table.render());
    Ok(())
}

impl ResetArgs {
    fn strategy(&self) -> ResetStrategy {
        if self.to_earliest {
            ResetStrategy::ToEarliest
        } else if self.to_latest {
            ResetStrategy::ToLatest
        } else if let Some(offset) = self.to_offset {
            ResetStrategy::ToOffset(offset)
        } else if let Some(delta) = self.shift_by {
            ResetStrategy::ShiftBy(delta)
        } else if let Some(ms) = self.to_datetime {
            ResetStrategy::ToDatetime(ms)
        } else if let Some(ms) = self.by_duration {
            ResetStrategy::ByDuration(ms)
        } else {
            ResetStrategy::ToCurrent
        }
    }

    fn scope(&self) -> ResetScope {
        if self.all_topics {
            ResetScope::AllTopics
        } else {
            ResetScope::Topics(self.topic.clone())
        }
    }
}

#[derive(Serialize)]
struct ResetReport<'a> {
    group: &'a str,
    executed: bool,
    plan: &'a [PlannedReset],
}

async fn run_reset(
    client: &mut AdminClient,
    args: ResetArgs,
    output: Output,
) -> Result<(), AdminError> {
    let plan = reset::plan_reset(client, &args.group, &args.scope(), args.strategy()).await?;
    if args.execute {
        reset::execute_reset(client, &args.group, &plan).await?;
    }
    if output == Output::Json {
        return print_json(&ResetReport {
            group: &args.group,
            executed: args.execute,
            plan: &plan,
        });
    }
    let mut table = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "NEW-OFFSET",
        "LOG-END-OFFSET",
        "LAG-AFTER",
    ]);
    for row in &plan {
        table.row(vec![
            args.group.clone(),
            row.topic.clone(),
            row.partition.to_string(),
            or_dash(row.current_offset),
            row.new_offset.to_string(),
            row.log_end_offset.to_string(),
            row.lag_after.to_string(),
        ]);
    }
    print!("{}", table.render());
    if args.execute {
        println!("\nOffsets of group '{}' reset.", args.group);
    } else {
        println!("\nDry run: nothing was changed. Add --execute to apply this plan.");
    }
    Ok(())
}
