//! The OCI image `ci/image` builds, and containers of it under podman, as a platform runs them:
//! its own entrypoint, a read-only root, ulimits within this machine's hard limit, ports
//! published on loopback. Podman here needs the `runc` runtime (the hybrid cgroups refuse crun).
//!
//! `ci/test` builds the image once before the tests and names it in `MRMAT_TEST_IMAGE`; run
//! alone, the first test to need it builds it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use grpcio::{ChannelBuilder, EnvBuilder};
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};

/// Where the image keeps its data: its volume.
pub const DATA: &str = "/var/lib/mrmat-rust-api-grpc";
/// What every podman call here starts with.
const PODMAN: [&str; 3] = ["podman", "--runtime", "runc"];
/// Podman's default ulimits exceed this machine's hard limits.
const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// The image's reference: `MRMAT_TEST_IMAGE`, or what `ci/image` prints last.
pub fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Ok(reference) = std::env::var("MRMAT_TEST_IMAGE") {
            return reference;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/image");
        let out = Command::new(&script).output().expect("ci/image runs");
        assert!(
            out.status.success(),
            "ci/image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
        stdout.lines().last().expect("a reference").to_owned()
    })
}

/// Runs podman with `args`; its output, whatever its exit.
pub fn podman(args: &[&str]) -> Output {
    Command::new(PODMAN[0])
        .args(&PODMAN[1..])
        .args(args)
        .output()
        .expect("podman runs")
}

/// podman's stdout for a call that must succeed.
pub fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A name no other run's container or volume has.
fn unique(what: &str) -> String {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("mrmat-test-{what}-{}-{n}", std::process::id())
}

/// A podman volume, removed when dropped.
pub struct Volume(pub String);

impl Volume {
    pub fn new() -> Self {
        let name = unique("data");
        podman_ok(&["volume", "create", &name]);
        Self(name)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = podman(&["volume", "rm", "--force", &self.0]);
    }
}

/// A container of the image, running its own entrypoint with a read-only root; removed when
/// dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run --detach --read-only OPTIONS IMAGE ARGS`, each of `ports` (the container's)
    /// published on a free port of 127.0.0.1.
    pub fn run(options: &[String], ports: &[u16], args: &[String]) -> Self {
        let name = unique("server");
        let mut command: Vec<String> = ["run", "--detach", "--name", &name, "--read-only"]
            .iter()
            .chain(&LIMITS)
            .map(|s| s.to_string())
            .collect();
        for port in ports {
            command.extend(["--publish".to_owned(), format!("127.0.0.1::{port}")]);
        }
        command.extend(options.iter().cloned());
        command.push(image().to_owned());
        command.extend(args.iter().cloned());
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        podman_ok(&command);
        Self { name }
    }

    /// HOST:PORT on the host where the container's `port` is published.
    pub fn address(&self, port: u16) -> String {
        let out = podman_ok(&["port", &self.name, &format!("{port}/tcp")]);
        out.lines()
            .next()
            .expect("a published address")
            .trim()
            .to_owned()
    }

    /// A channel to the container's gRPC `port`, through where it is published.
    pub fn channel(&self, port: u16) -> grpcio::Channel {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        ChannelBuilder::new(env).connect(&self.address(port))
    }

    /// Waits until health checking answers SERVING for `service` on the container's `port`,
    /// as the kubelet's gRPC probe asks.
    pub fn wait_until_serving(&self, port: u16, service: &str) {
        let health = HealthClient::new(self.channel(port));
        let mut request = HealthCheckRequest::new();
        request.service = service.to_owned();
        let serving = super::holds_within(Duration::from_secs(60), || {
            health
                .check_opt(&request, super::call())
                .is_ok_and(|answer| answer.status.enum_value_or_default() == ServingStatus::SERVING)
        });
        assert!(
            serving,
            "health of {service:?} is not SERVING within 60 s; the container's log:\n{}",
            self.logs()
        );
    }

    /// What the server logged (podman keeps its stderr).
    pub fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `podman inspect --format FORMAT` of the container.
    pub fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
            .trim()
            .to_owned()
    }

    /// Waits for the container to exit; its exit code.
    pub fn wait_for_exit(&self, timeout: Duration) -> i64 {
        super::wait_until("the container exits", timeout, || {
            self.inspect("{{.State.Status}}") == "exited"
        });
        self.inspect("{{.State.ExitCode}}")
            .parse()
            .expect("an exit code")
    }

    /// Starts the stopped container again, on the same volumes and arguments.
    pub fn start(&self) {
        podman_ok(&["start", &self.name]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

/// Makes `path` (a folder or a file the test wrote) readable by the image's user, which is not
/// the test's: for what is mounted into a container (public keys, config files).
pub fn open_to_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
