//! `partita transactions`: list, describe and abort transactions, and describe a
//! partition's producers, as `kafka-transactions.sh` does.

use partita_admin::transactions;
use partita_admin::AdminError;

use super::table::Table;
use super::{print_json, ClusterArgs, Output};

#[derive(clap::Args)]
pub(crate) struct TransactionsArgs {
    #[command(subcommand)]
    command: TransactionsCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Subcommand)]
enum TransactionsCommand {
    /// List the transactions the brokers coordinate: id, producer, state.
    List(ListArgs),
    /// One transactional id's state, producer, timeout, start and partitions.
    Describe(DescribeArgs),
    /// The producers that wrote to a partition, and where each one's open transaction
    /// starts: how a hanging transaction is found.
    DescribeProducers(PartitionArgs),
    /// Aborts a hanging transaction in a partition by writing its ABORT marker there.
    Abort(AbortArgs),
}

#[derive(clap::Args)]
struct PartitionArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The partition.
    #[arg(long)]
    partition: i32,
}

#[derive(clap::Args)]
struct AbortArgs {
    #[command(flatten)]
    partition: PartitionArgs,
    /// The offset of the transaction's first record (from describe-producers).
    #[arg(
        long,
        required_unless_present = "producer_id",
        conflicts_with = "producer_id"
    )]
    start_offset: Option<i64>,
    /// The transaction's producer id, with --producer-epoch and --coordinator-epoch.
    #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
    producer_id: Option<i64>,
    /// The producer's epoch.
    #[arg(long, requires = "producer_id")]
    producer_epoch: Option<i16>,
    /// The epoch of the coordinator that last wrote a marker for it (-1 if unknown).
    #[arg(long, requires = "producer_id", allow_hyphen_values = true)]
    coordinator_epoch: Option<i32>,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Only transactions in this state (Ongoing, PrepareCommit, CompleteCommit, ...);
    /// may be repeated.
    #[arg(long = "state")]
    states: Vec<String>,
    /// Only transactions of this producer id; may be repeated.
    #[arg(long = "producer-id")]
    producer_ids: Vec<i64>,
    /// Only open transactions running for at least this many milliseconds (hanging ones).
    #[arg(long, value_name = "MS")]
    duration_ms: Option<i64>,
}

#[derive(clap::Args)]
struct DescribeArgs {
    /// The transactional id.
    #[arg(long)]
    transactional_id: String,
}

pub(crate) async fn run(args: TransactionsArgs) -> Result<(), AdminError> {
    let output = args.cluster.output;
    let mut client = args.cluster.connect().await?;
    match args.command {
        TransactionsCommand::List(list) => {
            let duration = list.duration_ms.unwrap_or(-1);
            let found =
                transactions::list(&mut client, &list.states, &list.producer_ids, duration).await?;
            match output {
                Output::Json => print_json(&found)?,
                Output::Text => {
                    let mut table =
                        Table::new(&["TRANSACTIONAL ID", "COORDINATOR", "PRODUCER ID", "STATE"]);
                    for t in &found {
                        table.row(vec![
                            t.transactional_id.clone(),
                            t.coordinator.to_string(),
                            t.producer_id.to_string(),
                            t.state.clone(),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        TransactionsCommand::Describe(describe) => {
            let t = transactions::describe(&mut client, &describe.transactional_id).await?;
            match output {
                Output::Json => print_json(&t)?,
                Output::Text => {
                    let mut table = Table::new(&[
                        "TRANSACTIONAL ID",
                        "COORDINATOR",
                        "PRODUCER ID",
                        "EPOCH",
                        "STATE",
                        "TIMEOUT MS",
                        "START MS",
                        "PARTITIONS",
                    ]);
                    let start = match t.start_time_ms {
                        ms if ms < 0 => "-".to_string(),
                        ms => ms.to_string(),
                    };
                    table.row(vec![
                        t.transactional_id.clone(),
                        t.coordinator.to_string(),
                        t.producer_id.to_string(),
                        t.producer_epoch.to_string(),
                        t.state.clone(),
                        t.timeout_ms.to_string(),
                        start,
                        match t.partitions.is_empty() {
                            true => "-".to_string(),
                            false => t.partitions.join(","),
                        },
                    ]);
                    print!("{}", table.render());
                }
            }
        }
        TransactionsCommand::DescribeProducers(at) => {
            let producers =
                transactions::describe_producers(&mut client, &at.topic, at.partition).await?;
            match output {
                Output::Json => print_json(&producers)?,
                Output::Text => {
                    let mut table = Table::new(&[
                        "PRODUCER ID",
                        "PRODUCER EPOCH",
                        "LAST SEQUENCE",
                        "COORDINATOR EPOCH",
                        "CURRENT TRANSACTION START OFFSET",
                    ]);
                    for p in &producers {
                        table.row(vec![
                            p.producer_id.to_string(),
                            p.producer_epoch.to_string(),
                            p.last_sequence.to_string(),
                            p.coordinator_epoch.to_string(),
                            match p.current_transaction_start_offset {
                                offset if offset < 0 => "None".to_string(),
                                offset => offset.to_string(),
                            },
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        TransactionsCommand::Abort(abort) => {
            let target = match (abort.start_offset, abort.producer_id) {
                (Some(offset), _) => transactions::AbortTarget::StartOffset(offset),
                (None, Some(producer_id)) => transactions::AbortTarget::Producer {
                    producer_id,
                    producer_epoch: abort.producer_epoch.unwrap_or(-1),
                    coordinator_epoch: abort.coordinator_epoch.unwrap_or(-1),
                },
                (None, None) => {
                    return Err(AdminError::InvalidInput(
                        "give --start-offset, or --producer-id with --producer-epoch and \
                         --coordinator-epoch"
                            .to_string(),
                    ))
                }
            };
            let (topic, partition) = (&abort.partition.topic, abort.partition.partition);
            let producer_id = transactions::abort(&mut client, topic, partition, target).await?;
            match output {
                Output::Json => print_json(&serde_json::json!({
                    "topic": topic,
                    "partition": partition,
                    "producer_id": producer_id,
                }))?,
                Output::Text => println!(
                    "Aborted the transaction of producer {producer_id} in {topic}-{partition}"
                ),
            }
        }
    }
    Ok(())
}
