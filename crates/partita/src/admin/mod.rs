//! The operator commands (`groups`, `topics`, `configs`, `produce`, `consume`, `acls`,
//! `users`, `transactions`): thin clap
//! front ends over `partita-admin`, which speaks the Kafka protocol to any compatible cluster.

mod groups;
mod records;
mod security;
mod table;
mod topics;
mod transactions;

use std::fmt::Display;

use partita_admin::{AdminClient, AdminError, ClientSecurity, Timeouts};

/// Operator subcommands, flattened next to `broker` in the top-level command.
#[derive(clap::Subcommand)]
pub(crate) enum AdminCommand {
    /// Consumer groups: list, describe (lag per partition), delete, delete offsets, reset offsets.
    Groups(groups::GroupsArgs),
    /// Topics: create, list, describe, delete, add partitions.
    Topics(topics::TopicsArgs),
    /// Topic configs: describe and alter.
    Configs(topics::ConfigsArgs),
    /// Produce lines from stdin to a topic.
    Produce(records::ProduceArgs),
    /// Print a topic's records to stdout.
    Consume(records::ConsumeArgs),
    /// ACLs: add, list, remove (as kafka-acls.sh).
    Acls(security::AclsArgs),
    /// SCRAM users: list, set-password, delete (as kafka-configs.sh --entity-type users).
    Users(security::UsersArgs),
    /// Transactions: list, describe (as kafka-transactions.sh).
    Transactions(transactions::TransactionsArgs),
}

/// Options every operator command takes.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ClusterArgs {
    /// A broker of the cluster to bootstrap from.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    bootstrap_server: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
    /// Client properties as Kafka's tools take them (security.protocol, sasl.mechanism,
    /// sasl.jaas.config, ssl.truststore.location, ...), for a cluster with TLS or SASL.
    #[arg(long, value_name = "FILE", global = true)]
    command_config: Option<std::path::PathBuf>,
}

/// How results are printed.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Tables and sentences for people.
    Text,
    /// JSON for scripts.
    Json,
}

impl ClusterArgs {
    async fn connect(&self) -> partita_admin::Result<AdminClient> {
        let security = match &self.command_config {
            None => ClientSecurity::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    AdminError::InvalidInput(format!("--command-config {}: {e}", path.display()))
                })?;
                ClientSecurity::from_properties(&text)?
            }
        };
        AdminClient::connect_with(&self.bootstrap_server, Timeouts::default(), security).await
    }
}

/// Runs an operator command and exits: status 0 on success, 1 with a one-line message on
/// stderr otherwise.
pub(crate) fn run(command: AdminCommand) -> ! {
    quiet_panics();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => fail(format!("starting the async runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match command {
            AdminCommand::Groups(args) => groups::run(args).await,
            AdminCommand::Topics(args) => topics::run_topics(args).await,
            AdminCommand::Configs(args) => topics::run_configs(args).await,
            AdminCommand::Produce(args) => records::run_produce(args).await,
            AdminCommand::Consume(args) => records::run_consume(args).await,
            AdminCommand::Acls(args) => security::run_acls(args).await,
            AdminCommand::Users(args) => security::run_users(args).await,
            AdminCommand::Transactions(args) => transactions::run(args).await,
        }
    });
    drop(runtime);
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => fail(e),
    }
}

/// Operators get one line, never a backtrace: a reader that closed our stdout (`| head`) ends
/// the command quietly, and any other panic is reported as an internal error.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        eprintln!("error: internal error: {message}");
    }));
}

fn fail(message: impl Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// Prints `value` as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> Result<(), AdminError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| AdminError::InvalidInput(format!("encoding JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Parses `NAME=VALUE`.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}
