//! `partita transactions`: list and describe transactions, as `kafka-transactions.sh` does.

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
    }
    Ok(())
}
