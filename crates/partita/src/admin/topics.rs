//! `partita topics ...` and `partita configs ...`.

use partita_admin::configs::{self, ConfigEntry};
use partita_admin::offsets::{self, OffsetSpec, TopicPartition};
use partita_admin::topics::{self, NewTopic};
use partita_admin::{AdminClient, AdminError, TopicInfo};
use serde::Serialize;

use super::table::{or_dash, Table};
use super::{parse_key_value, print_json, ClusterArgs, Output};

#[derive(clap::Args)]
pub(crate) struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Subcommand)]
enum TopicsCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List(ListArgs),
    /// Show partitions (leader, replicas, offsets) and config overrides.
    Describe(DescribeArgs),
    /// Delete a topic.
    Delete(TopicArg),
    /// Add partitions to a topic.
    Alter(AlterArgs),
}

#[derive(clap::Args)]
struct TopicArg {
    /// The topic.
    #[arg(long)]
    topic: String,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Partition count (default: the broker's num.partitions).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: Option<i32>,
    /// Replication factor (default: the broker's).
    #[arg(long, value_parser = clap::value_parser!(i16).range(1..))]
    replication_factor: Option<i16>,
    /// A topic config NAME=VALUE; repeatable.
    #[arg(long = "config", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    configs: Vec<(String, String)>,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Leave out internal topics such as __consumer_offsets.
    #[arg(long)]
    exclude_internal: bool,
}

#[derive(clap::Args)]
struct DescribeArgs {
    /// The topic (default: every topic).
    #[arg(long)]
    topic: Option<String>,
}

#[derive(clap::Args)]
struct AlterArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The new partition count (partitions can only be added).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
}

#[derive(clap::Args)]
pub(crate) struct ConfigsArgs {
    #[command(subcommand)]
    command: ConfigsCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Subcommand)]
enum ConfigsCommand {
    /// Show a topic's config overrides (every config with --all).
    Describe(ConfigsDescribeArgs),
    /// Set or remove topic config overrides.
    Alter(ConfigsAlterArgs),
}

#[derive(clap::Args)]
struct ConfigsDescribeArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Show every config, inherited ones included.
    #[arg(long)]
    all: bool,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["set", "delete"])))]
struct ConfigsAlterArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Set NAME=VALUE; repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
    /// Remove the override NAME (back to the default); repeatable.
    #[arg(long, value_name = "NAME")]
    delete: Vec<String>,
}

pub(crate) async fn run_topics(args: TopicsArgs) -> Result<(), AdminError> {
    let output = args.cluster.output;
    let mut client = args.cluster.connect().await?;
    match args.command {
        TopicsCommand::Create(create) => {
            let created = topics::create_topic(
                &mut client,
                &NewTopic {
                    name: create.topic.clone(),
                    partitions: create.partitions,
                    replication_factor: create.replication_factor,
                    configs: create.configs,
                },
            )
            .await?;
            match output {
                Output::Json => print_json(&created)?,
                Output::Text => println!("Created topic {}.", created.name),
            }
        }
        TopicsCommand::List(list) => {
            let metadata = client.metadata(None).await?;
            let topics: Vec<&TopicInfo> = metadata
                .topics
                .iter()
                .filter(|t| !(list.exclude_internal && (t.internal || t.name.starts_with("__"))))
                .collect();
            match output {
                Output::Json => print_json(&topics)?,
                Output::Text => topics.iter().for_each(|t| println!("{}", t.name)),
            }
        }
        TopicsCommand::Describe(describe) => run_describe(&mut client, describe, output).await?,
        TopicsCommand::Delete(delete) => {
            topics::delete_topic(&mut client, &delete.topic).await?;
            match output {
                Output::Json => print_json(&serde_json::json!({ "deleted": delete.topic }))?,
                Output::Text => println!("Deleted topic {}.", delete.topic),
            }
        }
        TopicsCommand::Alter(alter) => {
            topics::create_partitions(&mut client, &alter.topic, alter.partitions).await?;
            match output {
                Output::Json => print_json(&serde_json::json!({
                    "topic": alter.topic,
                    "partitions": alter.partitions,
                }))?,
                Output::Text => println!(
                    "Topic {} now has {} partitions.",
                    alter.topic, alter.partitions
                ),
            }
        }
    }
    Ok(())
}

/// A topic as `topics describe` shows it.
#[derive(Serialize)]
struct TopicView<'a> {
    #[serde(flatten)]
    topic: &'a TopicInfo,
    replication_factor: usize,
    /// Config overrides (`None` if they could not be read).
    configs: Option<Vec<(String, Option<String>)>>,
    /// Why the configs could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    configs_error: Option<String>,
    /// (log start offset, log end offset) per partition, in partition order.
    offsets: Vec<(Option<i64>, Option<i64>)>,
}

async fn run_describe(
    client: &mut AdminClient,
    args: DescribeArgs,
    output: Output,
) -> Result<(), AdminError> {
    let topics = match &args.topic {
        Some(name) => client.existing_topics(std::slice::from_ref(name)).await?,
        None => client.metadata(None).await?.topics,
    };
    let mut views = Vec::new();
    for topic in &topics {
        let partitions: Vec<TopicPartition> = topic
            .partitions
            .iter()
            .map(|p| (topic.name.clone(), p.partition))
            .collect();
        let slice = std::slice::from_ref(topic);
        let start = offsets::list_offsets(client, slice, &partitions, OffsetSpec::Earliest).await?;
        let end = offsets::list_offsets(client, slice, &partitions, OffsetSpec::Latest).await?;
        let (configs, configs_error) =
            match configs::describe_topic_configs(client, &topic.name).await {
                Ok(entries) => (
                    Some(
                        entries
                            .into_iter()
                            .filter(ConfigEntry::is_topic_override)
                            .map(|c| (c.name, c.value))
                            .collect(),
                    ),
                    None,
                ),
                Err(e) => (None, Some(e.to_string())),
            };
        views.push(TopicView {
            topic,
            replication_factor: topic.partitions.first().map_or(0, |p| p.replicas.len()),
            configs,
            configs_error,
            offsets: partitions
                .iter()
                .map(|tp| (start.get(tp).copied(), end.get(tp).copied()))
                .collect(),
        });
    }
    if output == Output::Json {
        return print_json(&views);
    }
    for (index, view) in views.iter().enumerate() {
        if index > 0 {
            println!();
        }
        let configs = match &view.configs {
            Some(list) if list.is_empty() => "-".to_string(),
            Some(list) => list
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("(hidden)")))
                .collect::<Vec<_>>()
                .join(","),
            None => format!(
                "(unavailable: {})",
                view.configs_error.as_deref().unwrap_or("unknown error")
            ),
        };
        println!(
            "Topic: {}  TopicId: {}  PartitionCount: {}  ReplicationFactor: {}  Configs: {configs}",
            view.topic.name,
            or_dash(view.topic.topic_id.as_deref()),
            view.topic.partitions.len(),
            view.replication_factor,
        );
        let mut table = Table::new(&[
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "ISR",
            "LOG-START-OFFSET",
            "LOG-END-OFFSET",
        ]);
        for (partition, (start, end)) in view.topic.partitions.iter().zip(&view.offsets) {
            table.row(vec![
                partition.partition.to_string(),
                partition.leader.to_string(),
                join(&partition.replicas),
                join(&partition.isr),
                or_dash(*start),
                or_dash(*end),
            ]);
        }
        print!("{}", table.render());
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

pub(crate) async fn run_configs(args: ConfigsArgs) -> Result<(), AdminError> {
    let output = args.cluster.output;
    let mut client = args.cluster.connect().await?;
    match args.command {
        ConfigsCommand::Describe(describe) => {
            let entries: Vec<ConfigEntry> =
                configs::describe_topic_configs(&mut client, &describe.topic)
                    .await?
                    .into_iter()
                    .filter(|c| describe.all || c.is_topic_override())
                    .collect();
            if output == Output::Json {
                return print_json(&entries);
            }
            if entries.is_empty() {
                println!(
                    "Topic {} has no config overrides (--all shows every config).",
                    describe.topic
                );
                return Ok(());
            }
            let mut table = Table::new(&["NAME", "VALUE", "SOURCE"]);
            for entry in &entries {
                let value = match (&entry.value, entry.sensitive) {
                    (_, true) => "(sensitive)".to_string(),
                    (value, false) => or_dash(value.as_deref()),
                };
                table.row(vec![entry.name.clone(), value, entry.source.clone()]);
            }
            print!("{}", table.render());
        }
        ConfigsCommand::Alter(alter) => {
            configs::alter_topic_configs(&mut client, &alter.topic, &alter.set, &alter.delete)
                .await?;
            match output {
                Output::Json => print_json(&serde_json::json!({
                    "topic": alter.topic,
                    "set": alter.set.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "deleted": alter.delete,
                }))?,
                Output::Text => println!("Updated the configs of topic {}.", alter.topic),
            }
        }
    }
    Ok(())
}
