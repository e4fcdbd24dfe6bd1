//! `partita produce` and `partita consume`: a console producer and consumer.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use partita_admin::records::{Consumer, FetchEvent, NewRecord, Producer, StartAt};
use partita_admin::AdminError;

use super::{print_json, ClusterArgs, Output};

/// Lines read from stdin are sent together when this many are waiting...
const MAX_RECORDS_PER_SEND: usize = 1000;
/// ...or when stdin has been quiet this long (so typed lines go out at once).
const LINGER: Duration = Duration::from_millis(5);

#[derive(clap::Args)]
pub(crate) struct ProduceArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Split each line at the first SEP into key and value (no key otherwise).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Write every record to this partition (default: by key hash, round-robin without key).
    #[arg(long)]
    partition: Option<i32>,
    /// Acknowledgements to wait for: -1 (all in-sync replicas) or 1 (the leader).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    acks: i16,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("start").args(["from_beginning", "offset"])))]
pub(crate) struct ConsumeArgs {
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the log start (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<i64>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no record arrives for this long (ms).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Print the key before the value.
    #[arg(long)]
    print_key: bool,
    /// Separator between key and value with --print-key.
    #[arg(long, value_name = "SEP", default_value = "\t")]
    key_separator: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub(crate) async fn run_produce(args: ProduceArgs) -> Result<(), AdminError> {
    if matches!(&args.key_separator, Some(sep) if sep.is_empty()) {
        return Err(AdminError::InvalidInput(
            "--key-separator must not be empty".into(),
        ));
    }
    let mut client = args.cluster.connect().await?;
    let mut producer = Producer::new(&mut client, &args.topic, args.partition, args.acks).await?;
    let mut lines = stdin_lines();
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut total = 0usize;
    let mut finished = false;
    while !finished {
        let mut records = Vec::new();
        // Wait as long as it takes for the first line, then gather what follows at once.
        match lines.recv().await {
            Some(line) => records.push(to_record(line?, separator)?),
            None => break,
        }
        while records.len() < MAX_RECORDS_PER_SEND {
            match tokio::time::timeout(LINGER, lines.recv()).await {
                Ok(Some(line)) => records.push(to_record(line?, separator)?),
                Ok(None) => {
                    finished = true;
                    break;
                }
                Err(_) => break,
            }
        }
        producer.send(&mut client, &records).await?;
        total += records.len();
    }
    match args.cluster.output {
        Output::Json => print_json(&serde_json::json!({
            "topic": args.topic,
            "records": total,
        })),
        Output::Text => {
            eprintln!("Produced {total} record(s) to {}.", args.topic);
            Ok(())
        }
    }
}

/// Lines of stdin (without their line ending), read on a thread of their own because reading
/// stdin blocks.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<Result<Vec<u8>, AdminError>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(MAX_RECORDS_PER_SEND);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            let line = match stdin.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.ends_with(b"\n") {
                        line.pop();
                    }
                    if line.ends_with(b"\r") {
                        line.pop();
                    }
                    Ok(line)
                }
                Err(e) => Err(AdminError::InvalidInput(format!("reading stdin: {e}"))),
            };
            let failed = line.is_err();
            if sender.blocking_send(line).is_err() || failed {
                break;
            }
        }
    });
    receiver
}

fn to_record(line: Vec<u8>, separator: Option<&[u8]>) -> Result<NewRecord, AdminError> {
    let Some(separator) = separator else {
        return Ok(NewRecord {
            key: None,
            value: Some(line),
        });
    };
    let at = line
        .windows(separator.len())
        .position(|window| window == separator)
        .ok_or_else(|| {
            AdminError::InvalidInput(format!(
                "line {:?} has no key separator {:?}",
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(separator)
            ))
        })?;
    Ok(NewRecord {
        key: Some(line[..at].to_vec()),
        value: Some(line[at + separator.len()..].to_vec()),
    })
}

pub(crate) async fn run_consume(args: ConsumeArgs) -> Result<(), AdminError> {
    let mut client = args.cluster.connect().await?;
    let start = match (args.offset, args.from_beginning) {
        (Some(offset), _) => StartAt::Offset(offset),
        (None, true) => StartAt::Earliest,
        (None, false) => StartAt::Latest,
    };
    let partitions = args.partition.map(|p| vec![p]);
    let mut consumer =
        Consumer::new(&mut client, &args.topic, partitions.as_deref(), start).await?;
    let mut printed: u64 = 0;
    let mut last_record = Instant::now();
    let stdout = std::io::stdout();
    'poll: loop {
        if args.max_messages.is_some_and(|max| printed >= max) {
            break;
        }
        if let Some(timeout) = args.timeout_ms {
            if last_record.elapsed() >= Duration::from_millis(timeout) {
                break;
            }
        }
        let events = consumer.poll(&mut client).await?;
        let mut out = stdout.lock();
        for event in events {
            match event {
                FetchEvent::Record(record) => {
                    last_record = Instant::now();
                    let written = match args.cluster.output {
                        Output::Json => {
                            let text = |b: &Option<bytes::Bytes>| {
                                b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
                            };
                            let line = serde_json::json!({
                                "partition": record.partition,
                                "offset": record.offset,
                                "timestamp": record.timestamp,
                                "key": text(&record.key),
                                "value": text(&record.value),
                            });
                            writeln!(out, "{line}")
                        }
                        Output::Text => {
                            let mut line = Vec::new();
                            if args.print_key {
                                line.extend_from_slice(record.key.as_deref().unwrap_or(b"null"));
                                line.extend_from_slice(args.key_separator.as_bytes());
                            }
                            line.extend_from_slice(record.value.as_deref().unwrap_or(b"null"));
                            line.push(b'\n');
                            out.write_all(&line)
                        }
                    };
                    if written.is_err() {
                        // stdout closed (e.g. piped into `head`): stop quietly.
                        break 'poll;
                    }
                    printed += 1;
                    if args.max_messages.is_some_and(|max| printed >= max) {
                        break;
                    }
                }
                FetchEvent::SkippedCompressed {
                    partition,
                    first_offset,
                    last_offset,
                    codec,
                } => eprintln!(
                    "skipped a {codec}-compressed batch ({}-{partition}, offsets \
                     {first_offset}..={last_offset}): partita consume reads only uncompressed \
                     batches",
                    args.topic
                ),
            }
        }
        let _ = out.flush();
    }
    eprintln!("Processed a total of {printed} messages");
    Ok(())
}
