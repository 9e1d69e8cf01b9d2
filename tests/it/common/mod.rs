//! Shared by the test files: a real server on a free port, and clients connected to it.

pub mod hostile;
pub mod jwt;
pub mod netns;
pub mod npm;
pub mod oidc;
pub mod pki;
pub mod podman;
pub mod postgres;
pub mod proxies;
pub mod python;
pub mod revocation;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use grpcio::{CallOption, Channel, ChannelBuilder, EnvBuilder};
use mrmat_rust_api_grpc::apis::{self, DependsOn};
use mrmat_rust_api_grpc::client::TlsOptions;
use mrmat_rust_api_grpc::server::{self, ListenAddress, RunningServer, ServerConfig};
use mrmat_rust_api_grpc::store::{StoreLocation, StoreOptions};

/// The standard services served beside the APIs, in the order they are registered.
pub const STANDARD: [&str; 3] = [
    apis::health::NAME,
    apis::reflection::NAMES[0],
    apis::reflection::NAMES[1],
];

/// The APIs a server serves by default (no key set), in registry order: asked of a real
/// server, so a new API needs no change here.
pub fn default_apis() -> Vec<&'static str> {
    let mut config = test_config();
    config.store = StoreOptions::memory();
    let apis = spawn_server_with(config).apis();
    apis.into_iter().map(|(name, _)| name).collect()
}

/// Every service a server serves by default, in the order reflection lists them.
pub fn default_services() -> Vec<&'static str> {
    default_apis().into_iter().chain(STANDARD).collect()
}

/// A server started for one test, stopped when dropped.
pub struct TestServer {
    server: Option<RunningServer>,
    /// HOST:PORT to connect to.
    pub address: String,
    /// Its own SQLite store, removed when it stops.
    store: Option<ScratchStore>,
}

/// An SQLite file of its own for one server under `target/tmp/stores`, so servers that run at
/// once never share ids; removed (with its `-wal` and `-shm`) when dropped.
pub struct ScratchStore {
    /// The database file.
    pub path: PathBuf,
}

impl ScratchStore {
    /// A path no other server uses (the file is created by the server).
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stores");
        std::fs::create_dir_all(&dir).expect("create target/tmp/stores");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .subsec_nanos();
        let name = format!(
            "{}-{}-{nanos}.sqlite3",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            path: dir.join(name),
        }
    }

    /// The `--store` value.
    pub fn flag(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

impl Default for ScratchStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

impl TestServer {
    /// A channel to this server.
    pub fn channel(&self) -> Channel {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        ChannelBuilder::new(env).connect(&self.address)
    }

    /// A channel to this server secured as `tls` says.
    pub fn channel_with(&self, tls: &TlsOptions) -> Channel {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        tls.connect(ChannelBuilder::new(env), &self.address)
            .expect("the client's TLS files are readable")
    }

    /// The contract's APIs it serves, in order, each with what its health follows.
    pub fn apis(&self) -> Vec<(&'static str, DependsOn)> {
        self.server.as_ref().expect("running").apis().to_vec()
    }

    /// Every service it serves, in the order reflection lists them (reflection on).
    pub fn served(&self) -> Vec<&'static str> {
        let apis = self.apis().into_iter().map(|(name, _)| name);
        apis.chain(STANDARD).collect()
    }

    /// Loads the token service's key set again, as SIGHUP does.
    pub fn reload_keys(&self) {
        self.server.as_ref().expect("running").reload_keys();
    }

    /// Stops the server gracefully, as a signal would.
    pub fn shutdown(mut self) -> bool {
        self.server
            .take()
            .expect("running")
            .shutdown(Duration::from_secs(5))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(5));
        }
        // The store's threads end with the server; its file goes after.
        drop(self.store.take());
    }
}

/// The default configuration, listening on 127.0.0.1 on a port the OS picks, with the default
/// kind of store (SQLite) in a file of its own.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        listen: ListenAddress::parse("127.0.0.1:0").expect("an address"),
        store: StoreOptions::sqlite(&ScratchStore::new().path),
        ..ServerConfig::default()
    }
}

/// Every API the registry serves when everything is configured (a key set included), each
/// with what its health follows: asked of a real server, so it is what a server serves.
pub fn registered_apis() -> Vec<(&'static str, DependsOn)> {
    let key = jwt::SigningKey::ed25519("registry");
    let keys = jwt::KeyFile::new(&[&key]);
    let mut config = jwt::token_config(&keys);
    config.store = StoreOptions::memory();
    spawn_server_with(config).apis()
}

/// Starts the real server on 127.0.0.1, on a port the OS picks.
pub fn spawn_server() -> TestServer {
    spawn_server_with(test_config())
}

/// Starts the real server with `config` (whose listen address should have port 0).
pub fn spawn_server_with(config: ServerConfig) -> TestServer {
    // test_config's file is the test's own: removed when the server stops. (Checked before a
    // ScratchStore exists: dropping one removes its file.)
    let scratch_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stores");
    let store = match &config.store.location {
        StoreLocation::Sqlite(path) if path.starts_with(&scratch_dir) => {
            Some(ScratchStore { path: path.clone() })
        }
        _ => None,
    };
    let server = server::start(&config).expect("the server starts on a free port");
    let address = format!("127.0.0.1:{}", server.port());
    TestServer {
        server: Some(server),
        address,
        store,
    }
}

/// A resource message (Create ignores the id).
pub fn resource(id: u64, owner_id: u64, name: &str) -> mrmat_rust_api_grpc::proto::ResourceV1 {
    let mut request = mrmat_rust_api_grpc::proto::ResourceV1::new();
    request.id = id;
    request.owner_id = owner_id;
    request.name = name.to_owned();
    request
}

/// The id input of Get and Remove.
pub fn resource_id(id: u64) -> mrmat_rust_api_grpc::proto::ResourceV1IdInput {
    let mut input = mrmat_rust_api_grpc::proto::ResourceV1IdInput::new();
    input.id = id;
    input
}

/// A port of 127.0.0.1 that nobody listens on now (for a peer started later, or none).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Every call in the tests has a deadline, so a broken server fails a test instead of hanging it.
pub fn call() -> CallOption {
    CallOption::default().timeout(Duration::from_secs(10))
}

/// The lines a child writes to one of its pipes, read on a thread so that the child never
/// blocks on a full pipe.
pub struct OutputLines {
    lines: std::sync::mpsc::Receiver<String>,
}

impl OutputLines {
    /// Starts reading `output`.
    pub fn read(output: impl std::io::Read + Send + 'static) -> Self {
        use std::io::{BufRead, BufReader};
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { lines }
    }

    /// The next line containing `needle`, or None once `timeout` has passed or the pipe closed.
    pub fn line_containing(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    /// Every line up to and including the next one containing `needle`, or None once `timeout`
    /// has passed or the pipe closed.
    pub fn lines_until(&self, needle: &str, timeout: Duration) -> Option<Vec<String>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            let found = line.contains(needle);
            lines.push(line);
            if found {
                return Some(lines);
            }
        }
    }

    /// How many of the lines written so far contain `needle` (without waiting for more).
    pub fn count_containing(&self, needle: &str) -> usize {
        self.lines
            .try_iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// The address in the next `listening on ADDRESS ...` line.
    pub fn announced_address(&self, timeout: Duration) -> Option<String> {
        address_in(&self.line_containing("listening on ", timeout)?)
    }
}

fn address_in(listening_line: &str) -> Option<String> {
    let (_, rest) = listening_line.split_once("listening on ")?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// The server binary, run as a user runs it; killed when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    /// Its own SQLite store, when `args` named none.
    _store: Option<ScratchStore>,
    /// Its log lines (stderr).
    pub log: OutputLines,
    /// HOST:PORT it listens on.
    pub address: String,
    /// The whole `listening on ...` log line.
    pub listening_line: String,
}

impl ServerProcess {
    /// Starts the server binary on a free port of 127.0.0.1 (unless `args` has `--listen`),
    /// logging at info, and waits for it to say where it listens.
    pub fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "info")
    }

    /// As [`ServerProcess::start`], with `RUST_LOG` set to `filter`.
    pub fn start_logging(args: &[&str], filter: &str) -> Self {
        Self::start_under(&[], args, filter)
    }

    /// As [`ServerProcess::start_logging`], run by the command `prefix` (`ip netns exec NAME`,
    /// which execs the server: its pid is the server's).
    pub fn start_under(prefix: &[String], args: &[&str], filter: &str) -> Self {
        use std::process::{Command, Stdio};
        let server = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server");
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(server);
                command
            }
            None => Command::new(server),
        };
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let store = (!args.contains(&"--store")).then(ScratchStore::new);
        if let Some(store) = &store {
            command.args(["--store", &store.flag()]);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary runs");
        let log = OutputLines::read(child.stderr.take().expect("piped"));
        let Some(listening_line) = log.line_containing("listening on ", Duration::from_secs(20))
        else {
            let _ = child.kill();
            panic!("the server binary did not log its address within 20s");
        };
        let address = address_in(&listening_line).expect("an address after `listening on`");
        Self {
            child,
            _store: store,
            log,
            address,
            listening_line,
        }
    }

    /// HOST:PORT of its `/metrics`, from the `metrics at http://...` of its start-up line.
    pub fn metrics_address(&self) -> Option<String> {
        self.announced_http("metrics at http://")
    }

    /// HOST:PORT of its forward-auth port, from `forward auth at http://...` of its start-up
    /// line.
    pub fn forward_auth_address(&self) -> Option<String> {
        self.announced_http("forward auth at http://")
    }

    fn announced_http(&self, prefix: &str) -> Option<String> {
        let (_, rest) = self.listening_line.split_once(prefix)?;
        rest.split('/').next().map(str::to_owned)
    }

    /// The value of the sample `series` (as the text format writes it: `name` or
    /// `name{label="value",...}`) on the server's `/metrics` (started with `--metrics-listen`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let address = self.metrics_address()?;
        let text = ureq::get(format!("http://{address}/metrics"))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    }

    /// A plaintext channel to the server.
    pub fn channel(&self) -> Channel {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        ChannelBuilder::new(env).connect(&self.address)
    }

    /// Sends SIGTERM, as an orchestrator stopping the service does.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`HUP`, `STOP`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, or None if it is still running after `timeout`.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the signal `name` (`TERM`, `STOP`, ...) to process `pid` with kill(1).
pub fn signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{name} {pid} failed");
}

/// The resident memory of process `pid`, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The peak resident memory of process `pid` so far, in KiB (VmHWM: the process's own
/// high-water mark, which no sample can miss).
pub fn peak_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// The value of `/proc/PID/status`'s line `field`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("a {field} line"))
}

/// Runs `bench` with `args` against `address` and returns its JSON report; no progress line is
/// drawn when stderr is not a terminal.
pub fn bench_json(address: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client"))
        .args(["--server", address, "--output", "json", "bench"])
        .args(args)
        .env_remove("MRMAT_GRPC_SERVER")
        .output()
        .expect("the client runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    assert!(
        stderr.is_empty(),
        "no progress line without a terminal: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Checks what every bench report must satisfy: `calls` calls, each a success or an error by
/// status, a positive rate, latency percentiles in order.
#[track_caller]
pub fn assert_consistent_bench_report(report: &serde_json::Value, calls: u64) {
    let number = |key: &str| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {report}"))
    };
    let errors: u64 = report["errors"]
        .as_object()
        .expect("errors by status")
        .values()
        .map(|n| n.as_u64().expect("a count"))
        .sum();
    assert_eq!(number("calls"), calls, "{report}");
    assert_eq!(number("successes") + errors, number("calls"), "{report}");
    assert!(
        report["calls_per_second"].as_f64().expect("a rate") > 0.0,
        "{report}"
    );
    let latency = &report["latency_ms"];
    let ordered: Vec<f64> = ["p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|p| {
            latency[p]
                .as_f64()
                .unwrap_or_else(|| panic!("{p}: {report}"))
        })
        .collect();
    assert!(ordered[0] > 0.0, "{report}");
    assert!(
        ordered.windows(2).all(|w| w[0] <= w[1]),
        "percentiles out of order: {report}"
    );
}

/// `service` served in this process on a free plaintext port: a stand-in peer (an older server,
/// a misbehaving one) for what the real binary never does. Serves until the server is dropped.
pub fn serve_in_process(service: grpcio::Service) -> (grpcio::Server, u16) {
    let env = Arc::new(EnvBuilder::new().cq_count(1).build());
    let mut server = grpcio::ServerBuilder::new(env)
        .register_service(service)
        .build()
        .expect("a server");
    let port = server
        .add_listening_port("127.0.0.1:0", grpcio::ServerCredentials::insecure())
        .expect("a free port");
    server.start();
    (server, port)
}

/// Polls `check` every 10 ms until it holds or `timeout` passes; whether it held. For a test
/// that asserts something else when it does not.
pub fn holds_within(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `check` until it holds; fails the calling test, at its line, saying `what` did not
/// happen within `timeout`. Readiness is waited for this way, never slept for.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    assert!(
        holds_within(timeout, check),
        "not within {timeout:?}: {what}"
    );
}

/// Runs `command` to its end with `input` on its standard input; its whole output.
pub fn output_fed(command: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped");
    // From another thread: a large input and output would otherwise fill both pipes at once.
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("it ends");
    feeder.join().expect("the feeder");
    output
}

/// The client binary (the test build's) to run against `address`, with no environment
/// overrides.
pub fn client_command(address: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client"));
    command
        .args(["--server", address])
        .env_remove("MRMAT_GRPC_SERVER")
        .env_remove("MRMAT_GRPC_TIMEOUT");
    command
}

/// The client run against `address` with `args`; its whole output.
pub fn client_output(address: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> std::process::Output {
    client_command(address)
        .args(args)
        .output()
        .expect("the client runs")
}

/// Runs `command` to its end under a wrapper that reaps it with `wait4`, and gives its output
/// and its peak resident memory in KiB (`ru_maxrss`): the process's own high-water mark, which
/// no sampling can miss. `feed` writes its stdin (piped when given) from another thread.
pub fn output_and_peak_kib(
    command: &mut std::process::Command,
    feed: Option<Box<dyn FnOnce(std::process::ChildStdin) + Send>>,
) -> (std::process::Output, u64) {
    use std::process::{Command, Stdio};
    const REAP: &str = "import os, subprocess, sys\n\
        child = subprocess.Popen(sys.argv[2:])\n\
        _, status, usage = os.wait4(child.pid, 0)\n\
        open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n\
        sys.exit(os.waitstatus_to_exitcode(status))\n";
    let peak = tempfile::NamedTempFile::new().expect("a file for the peak");
    let mut wrapped = Command::new("python3");
    wrapped
        .args(["-c", REAP])
        .arg(peak.path())
        .arg(command.get_program())
        .args(command.get_args())
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| value.map(|value| (key, value))),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = wrapped.spawn().expect("python3 runs the command");
    let writer = feed.map(|feed| {
        let stdin = child.stdin.take().expect("piped");
        std::thread::spawn(move || feed(stdin))
    });
    let output = child.wait_with_output().expect("the command ends");
    if let Some(writer) = writer {
        writer.join().expect("the stdin writer");
    }
    let peak = std::fs::read_to_string(peak.path())
        .ok()
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak reported: {output:?}"));
    (output, peak)
}
