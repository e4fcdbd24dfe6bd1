//! Helpers for the command-line tests: a real broker process on a free port, and the
//! `partita` binary run as an operator would run it.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use partita_admin::{offsets, AdminClient, Timeouts};

/// The `partita` binary under test.
pub fn partita() -> Command {
    Command::new(env!("CARGO_BIN_EXE_partita"))
}

/// A free local port (free when asked; another process could take it before use).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// A broker process, killed on drop.
pub struct Broker {
    pub address: String,
    child: Child,
    _data: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts `partita broker` on a free port with an empty data directory.
    pub fn start() -> Broker {
        let data = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let child = partita()
            .args(["broker", "--listen", &address, "--data-dir"])
            .arg(data.path())
            .args(["--set", "group.initial.rebalance.delay.ms=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the broker");
        let broker = Broker {
            address,
            child,
            _data: Some(data),
        };
        broker.wait_until_listening();
        broker
    }

    /// Starts Tansu in memory if its binary is found, else `None` (the caller skips).
    pub fn start_tansu() -> Option<Broker> {
        let binary = tansu_binary()?;
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let broker = Broker {
            address,
            child,
            _data: None,
        };
        broker.wait_until_listening();
        Some(broker)
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&self.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker {} did not start",
                self.address
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `partita ARGS --bootstrap-server ADDRESS`.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_with_stdin(args, "")
    }

    /// Like [`Broker::cli`], feeding `stdin`.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        run(args, &self.address, stdin)
    }

    /// Commits offsets for `group` with the admin client (OffsetCommit, generation -1).
    pub fn commit(&self, group: &str, offsets: &[(&str, i32, i64)]) {
        let map: BTreeMap<(String, i32), i64> = offsets
            .iter()
            .map(|(t, p, o)| ((t.to_string(), *p), *o))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut client = AdminClient::connect(&self.address, Timeouts::default())
                .await
                .expect("connecting");
            offsets::commit_offsets(&mut client, group, &map)
                .await
                .expect("committing offsets");
        });
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tansu's binary: `$PARTITA_TANSU_BIN`, the benchmark cache, or `tansu` on the PATH.
fn tansu_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PARTITA_TANSU_BIN").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/partita-bench/bin/tansu")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .or_else(|| {
            let found = Command::new("tansu").arg("--version").output().ok()?;
            found.status.success().then(|| PathBuf::from("tansu"))
        })
}

/// The result of one command.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the command's output unless it succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the command failed with a one-line error.
    pub fn fails(self) -> Run {
        assert_ne!(self.code, Some(0), "command should fail:\n{}", self.stdout);
        assert_eq!(
            self.stderr.trim().lines().count(),
            1,
            "expected a one-line error, got:\n{}",
            self.stderr
        );
        self
    }

    /// Rows of a table printed on stdout whose first cell is `first`, split on whitespace.
    pub fn rows_starting_with(&self, first: &str) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .filter(|cells| cells.first().map(String::as_str) == Some(first))
            .collect()
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `partita ARGS --bootstrap-server ADDRESS` with `stdin`.
pub fn run(args: &[&str], address: &str, stdin: &str) -> Run {
    let mut child = partita()
        .args(args)
        .args(["--bootstrap-server", address])
        .env("PARTITA_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running partita");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("waiting for partita");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
