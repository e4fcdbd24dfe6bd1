//! The `partita` command: the broker and the operator tools.

mod admin;
mod settings;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use partita_broker::Broker;

/// mimalloc rather than the C library's allocator: a request's buffers are freed and
/// allocated again at the rate requests arrive, and glibc's malloc hands the memory of large
/// freed buffers back to the kernel and faults it in again for the next one (over TLS, a
/// fresh page for every 4 KiB produced: about a third of the broker's CPU; bench/tls.sh).
/// mimalloc keeps freed pages for reuse and releases them lazily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Partita: a Kafka-compatible broker built around consumer groups.
#[derive(Parser)]
#[command(name = "partita", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Broker(BrokerArgs),
    /// Prepare storage before the first start, as `kafka-storage format` does: add SCRAM users.
    Storage(StorageArgs),
    #[command(flatten)]
    Admin(admin::AdminCommand),
}

/// Options of `partita broker`. Flags override `PARTITA_*` variables, which override the
/// config file, which overrides the embedded defaults.
#[derive(clap::Args)]
struct BrokerArgs {
    /// Data directory (Kafka's `log.dirs`). Default: ./data
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on. Default: 127.0.0.1:9092
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address given to clients. Default: the listen address.
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,
    /// TOML file of broker properties, with Kafka's property names.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any broker property, with Kafka's name: --set num.partitions=3. Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args)]
struct StorageArgs {
    #[command(subcommand)]
    command: StorageCommand,
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Store SCRAM credentials where the broker (or, in cluster mode, every broker) reads
    /// them: in the data directory, or in PostgreSQL. Takes the broker's settings.
    Format(FormatArgs),
}

#[derive(clap::Args)]
struct FormatArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// A SCRAM user, as kafka-storage takes it:
    /// 'SCRAM-SHA-256=[name=alice,password=alice-secret]' (iterations=N to choose the
    /// iterations, default 4096). Repeatable.
    #[arg(
        long = "add-scram",
        short = 'S',
        value_name = "MECHANISM=[name=USER,password=PASSWORD]"
    )]
    add_scram: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    match cli.command {
        Command::Broker(args) => {
            // One line saying what to fix, as the operator tools do.
            if let Err(error) = run_broker(args) {
                eprintln!("error: {error:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Storage(StorageArgs {
            command: StorageCommand::Format(args),
        }) => {
            if let Err(error) = run_format(args) {
                eprintln!("error: {error:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Admin(command) => admin::run(command),
    }
}

fn run_format(args: FormatArgs) -> anyhow::Result<()> {
    let config = broker_config(&args.broker)?;
    let mut entries = Vec::with_capacity(args.add_scram.len());
    for text in &args.add_scram {
        // The error names the mechanism and field only: the text holds a password.
        let entry = partita_broker::credentials::parse_add_scram(text)
            .map_err(|why| anyhow::anyhow!("--add-scram: {why}"))?;
        entries.push(entry);
    }
    let added: Vec<String> = entries
        .iter()
        .map(|(user, mechanism, _)| format!("{user} ({})", mechanism.name()))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(partita_broker::credentials::bootstrap(&config, entries))?;
    match added.is_empty() {
        true => println!("nothing to add"),
        false => println!("SCRAM credentials stored: {}", added.join(", ")),
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARTITA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The broker's settings from its flags, `PARTITA_*` variables and config file.
fn broker_config(args: &BrokerArgs) -> anyhow::Result<partita_broker::BrokerConfig> {
    let mut properties = Vec::new();
    if let Some(path) = &args.config {
        properties.extend(settings::from_toml_file(path)?);
    }
    properties.extend(settings::from_environment(std::env::vars()));
    if let Some(dir) = &args.data_dir {
        properties.push(("log.dirs".to_string(), dir.display().to_string()));
    }
    if let Some(listen) = &args.listen {
        properties.push(("listeners".to_string(), listen.clone()));
        if args.advertised.is_none() {
            properties.push(("advertised.listeners".to_string(), listen.clone()));
        }
    }
    if let Some(advertised) = &args.advertised {
        properties.push(("advertised.listeners".to_string(), advertised.clone()));
    }
    for pair in &args.set {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--set expects NAME=VALUE, got {pair:?}"))?;
        properties.push((name.trim().to_string(), value.to_string()));
    }
    settings::build(properties)
}

/// Raises the soft limit on open files to the hard limit, as a broker with many partitions
/// and connections needs, and logs both. Nothing stops the broker if it cannot: it runs with
/// the limit it has. Returns the soft limit in force, if known.
fn raise_open_file_limit() -> Option<u64> {
    use rlimit::Resource;
    let (soft, hard) = match Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "open-file limit (RLIMIT_NOFILE)");
        return Some(soft);
    }
    match Resource::NOFILE.set(hard, hard) {
        Ok(()) => {
            tracing::info!(
                was = soft,
                soft = hard,
                hard,
                "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
            );
            Some(hard)
        }
        Err(error) => {
            tracing::warn!(
                soft,
                hard,
                %error,
                "cannot raise the open-file limit (RLIMIT_NOFILE) to its hard limit"
            );
            Some(soft)
        }
    }
}

/// Bounds the segment and index files kept open: `log.open.files.max` if set, else half the
/// open-file limit (the other half is for connections, sockets to the engines and the rest).
fn size_open_file_cache(configured: Option<usize>, limit: Option<u64>) {
    use partita_broker::open_files;
    let capacity = configured.unwrap_or_else(|| match limit {
        Some(limit) => usize::try_from(limit / 2)
            .unwrap_or(usize::MAX)
            .min(1 << 20),
        None => open_files::DEFAULT_CAPACITY,
    });
    open_files::set_capacity(capacity);
    tracing::info!(
        files = open_files::capacity(),
        "segment and index files kept open at most (log.open.files.max)"
    );
}

fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    let config = broker_config(&args)?;
    let limit = raise_open_file_limit();
    size_open_file_cache(config.log_open_files_max, limit);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listeners = config.listeners().map_err(anyhow::Error::msg)?;
        let mut sockets = Vec::with_capacity(listeners.len());
        for listener in &listeners {
            let socket = tokio::net::TcpListener::bind(listener.bind)
                .await
                .with_context(|| {
                    format!("binding {} (listener {})", listener.bind, listener.name)
                })?;
            sockets.push(socket);
        }
        let clustered =
            config.cluster.storage_url.is_some() || config.cluster.metadata_url.is_some();
        let broker = Arc::new(
            Broker::open_with(config.clone(), listeners)
                .await
                .with_context(|| match clustered {
                    true => "joining the cluster".to_string(),
                    false => format!("opening data directory {}", config.data_dir.display()),
                })?,
        );
        let shown: Vec<String> = broker
            .listeners
            .iter()
            .map(|l| {
                format!(
                    "{}://{} (advertised {}:{})",
                    l.name, l.bind, l.advertised_host, l.advertised_port
                )
            })
            .collect();
        tracing::info!(
            listeners = %shown.join(", "),
            storage = %match &config.cluster.storage_url {
                Some(url) => url.clone(),
                None => config.data_dir.display().to_string(),
            },
            cluster_id = %broker.cluster_id,
            "partita broker started"
        );
        partita_broker::serve(broker, sockets, shutdown_signal()).await;
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
