//! The OCI image `ci/image` builds, run under podman as a platform runs it: its own entrypoint and
//! defaults, a published port, a read-only root, its non-root user, SIGTERM, a volume.
//!
//! `ci/test` builds the image once before the tests and names it in `MRMAT_TEST_IMAGE`; run
//! alone, the first test to need it builds it. Podman on this kind of machine needs the `runc`
//! runtime and ulimits within the hard limit (`PODMAN`).

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::jwt::{claims, KeyFile, SigningKey, AUDIENCE, ISSUER};
use common::{call, free_port, holds_within, resource, wait_until};
use grpcio::{ChannelBuilder, EnvBuilder, RpcStatusCode};
use mrmat_rust_api_grpc::proto::health::v1::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthClient,
};
use mrmat_rust_api_grpc::proto::{Empty, ResourceV1ProtoClient};

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");
/// Where the image keeps its data: its volume.
const DATA: &str = "/var/lib/mrmat-rust-api-grpc";
/// What every podman call here starts with.
const PODMAN: [&str; 3] = ["podman", "--runtime", "runc"];
const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// The image's reference: `MRMAT_TEST_IMAGE`, or what `ci/image` prints last.
fn image() -> &'static str {
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
fn podman(args: &[&str]) -> Output {
    Command::new(PODMAN[0])
        .args(&PODMAN[1..])
        .args(args)
        .output()
        .expect("podman runs")
}

/// podman's stdout for a call that must succeed.
fn podman_ok(args: &[&str]) -> String {
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
struct Volume(String);

impl Volume {
    fn new() -> Self {
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

/// The image's server, started with its own entrypoint as a platform starts it: read-only root,
/// its data on `volume`, `keys` mounted for the token service, its port 50051 published on
/// loopback. Removed when dropped.
struct Container {
    name: String,
    /// HOST:PORT of the published gRPC port.
    address: String,
}

impl Container {
    fn start(volume: &Volume, keys: &KeyFile, extra: &[&str]) -> Self {
        let name = unique("server");
        let port = free_port();
        let published = format!("127.0.0.1:{port}:50051");
        let data = format!("{}:{DATA}", volume.0);
        let mounted = format!("{}:/keys:ro", keys.dir().display());
        let mut args = vec!["run", "--detach", "--name", &name, "--read-only"];
        args.extend(LIMITS);
        args.extend([
            "--publish",
            &published,
            "--volume",
            &data,
            "--volume",
            &mounted,
        ]);
        args.push(image());
        args.extend([
            "--jwks-file",
            "/keys/jwks.json",
            "--token-issuer",
            ISSUER,
            "--token-audience",
            AUDIENCE,
        ]);
        args.extend(extra);
        podman_ok(&args);
        let container = Self {
            name,
            address: format!("127.0.0.1:{port}"),
        };
        container.wait_until_serving();
        container
    }

    /// Waits until health checking answers SERVING through the published port.
    fn wait_until_serving(&self) {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        let health = HealthClient::new(ChannelBuilder::new(env).connect(&self.address));
        let serving = holds_within(Duration::from_secs(60), || {
            health
                .check_opt(&HealthCheckRequest::new(), call())
                .is_ok_and(|answer| answer.status.enum_value_or_default() == ServingStatus::SERVING)
        });
        assert!(
            serving,
            "the container's health is not SERVING within 60 s; its log:\n{}",
            self.logs()
        );
    }

    fn channel(&self) -> grpcio::Channel {
        let env = Arc::new(EnvBuilder::new().cq_count(1).build());
        ChannelBuilder::new(env).connect(&self.address)
    }

    /// What the server logged (podman keeps its stderr).
    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// `podman inspect --format FORMAT` of the container.
    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
            .trim()
            .to_owned()
    }

    /// Waits for the container to exit; its exit code.
    fn wait_for_exit(&self, timeout: Duration) -> i64 {
        wait_until("the container exits", timeout, || {
            self.inspect("{{.State.Status}}") == "exited"
        });
        self.inspect("{{.State.ExitCode}}")
            .parse()
            .expect("an exit code")
    }

    /// Starts the stopped container again, on the same volume and arguments.
    fn restart(&self) {
        podman_ok(&["start", &self.name]);
        self.wait_until_serving();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name]);
    }
}

/// A key set the container can read: its user is not the test's, so the folder and file are
/// opened to everyone (they hold public keys only).
fn readable_keys(key: &SigningKey) -> KeyFile {
    use std::os::unix::fs::PermissionsExt as _;
    let keys = KeyFile::new(&[key]);
    let open = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    open(keys.dir(), 0o755);
    open(&keys.path(), 0o644);
    keys
}

/// The client binary (the test build's) against `address`.
fn client(address: &str, args: &[&str]) -> String {
    let out = Command::new(CLIENT)
        .args(["--server", address])
        .args(args)
        .env_remove("MRMAT_GRPC_SERVER")
        .output()
        .expect("the client runs");
    assert!(
        out.status.success(),
        "client {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn the_image_is_small_labelled_and_names_its_user_port_and_volume() {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        image(),
        format!("localhost/mrmat-rust-api-grpc:{version}"),
        "ci/image's last line names the image"
    );
    let size: u64 = podman_ok(&["image", "inspect", "--format", "{{.Size}}", image()])
        .trim()
        .parse()
        .expect("a size");
    assert!(
        size < 50_000_000,
        "the image is {size} bytes; the target is under 50 MB"
    );
    let config = |format: &str| {
        podman_ok(&["image", "inspect", "--format", format, image()])
            .trim()
            .to_owned()
    };
    assert_eq!(config("{{.Config.User}}"), "65532:65532");
    assert_eq!(
        config("{{index .Config.Labels \"org.opencontainers.image.version\"}}"),
        version
    );
    assert_eq!(
        config("{{index .Config.Labels \"org.opencontainers.image.licenses\"}}"),
        "MIT"
    );
    assert!(
        config("{{index .Config.Labels \"org.opencontainers.image.source\"}}")
            .starts_with("https://github.com/")
    );
    assert_eq!(config("{{.Config.StopSignal}}"), "SIGTERM");
    assert!(config("{{.Config.ExposedPorts}}").contains("50051/tcp"));
    assert!(config("{{.Config.Volumes}}").contains(DATA));
    // No shell and no package manager: nothing an intruder could run that the server is not.
    let entrypoint = config("{{.Config.Entrypoint}}");
    assert_eq!(entrypoint, "[/usr/local/bin/mrmat-rust-api-grpc-server]");
    let shell = podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        image(),
        "-c",
        "true",
    ]);
    assert!(!shell.status.success(), "the image has a shell");
}

#[test]
fn the_image_serves_health_greetings_and_tokens_read_only_as_its_own_user() {
    let key = SigningKey::p256("image-1");
    let keys = readable_keys(&key);
    let volume = Volume::new();
    let server = Container::start(&volume, &keys, &[]);

    // Through the published port, from the host.
    assert_eq!(client(&server.address, &["healthz"]), "[200] OK\n");
    assert_eq!(
        client(&server.address, &["greeting", "v1"]),
        "Hello World\n"
    );
    let token = key.sign(&claims("alice"));
    let answer = client(
        &server.address,
        &["token", "v1", "validate", &token, "nonsense"],
    );
    let lines: Vec<&str> = answer.lines().collect();
    assert!(lines[0].starts_with("[200] Valid: sub=alice"), "{answer}");
    assert!(lines[1].starts_with("[401] Malformed"), "{answer}");
    // The image's own client, inside: it listens on every address of the container.
    let inside = podman_ok(&[
        "exec",
        &server.name,
        "mrmat-rust-api-grpc-client",
        "--server",
        "localhost:50051",
        "healthz",
    ]);
    assert_eq!(inside, "[200] OK\n");
    assert!(
        server.logs().contains("listening on 0.0.0.0:50051"),
        "{}",
        server.logs()
    );

    // Read-only, and the process runs as 65532, not as root: read from the kernel, not from
    // podman's configuration.
    assert_eq!(server.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    let pid = server.inspect("{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let ids = |field: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .expect("the field")
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("Uid:"), ["65532"; 4], "{status}");
    assert_eq!(ids("Gid:"), ["65532"; 4], "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
}

#[test]
fn sigterm_drains_and_every_acknowledged_create_survives_a_restart_on_the_volume() {
    let key = SigningKey::p256("image-2");
    let keys = readable_keys(&key);
    let volume = Volume::new();
    let server = Container::start(&volume, &keys, &["--drain-delay", "1"]);

    // Creates, one after another, until the server stops answering; each acknowledged one is
    // remembered.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let creator = {
        let client = ResourceV1ProtoClient::new(server.channel());
        let acknowledged = Arc::clone(&acknowledged);
        thread::spawn(move || {
            for n in 0u64.. {
                let name = format!("kept {n}");
                match client.create_opt(&resource(0, 7, &name), call()) {
                    Ok(created) => {
                        assert_eq!(created.status.code, 201, "{}", created.status.message);
                        let id = created.resource.id;
                        acknowledged.lock().expect("lock").push((id, name));
                    }
                    Err(error) => return error,
                }
            }
            unreachable!("creates end when the server stops")
        })
    };
    wait_until("creates are acknowledged", Duration::from_secs(30), || {
        acknowledged.lock().expect("lock").len() >= 100
    });
    let sent = Instant::now();
    podman_ok(&["kill", "--signal", "TERM", &server.name]);
    let code = server.wait_for_exit(Duration::from_secs(30));
    let took = sent.elapsed();
    let refusal = creator.join().expect("the creating thread");
    let logs = server.logs();
    assert_eq!(code, 0, "exit code; its log:\n{logs}");
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("shut down"), "{logs}");
    assert!(!logs.contains("cancelling"), "calls were cut off: {logs}");
    // The drain delay kept it serving a second, then it closed within its grace.
    assert!(took >= Duration::from_secs(1), "exited after {took:?}");
    // A create sent after the listener closed is refused, never left hanging.
    assert!(
        matches!(
            &refusal,
            grpcio::Error::RpcFailure(status)
                if matches!(status.code(), RpcStatusCode::UNAVAILABLE | RpcStatusCode::CANCELLED)
        ),
        "{refusal:?}"
    );

    server.restart();
    let listed = ResourceV1ProtoClient::new(server.channel())
        .list_opt(&Empty::new(), call())
        .expect("list");
    let stored: std::collections::BTreeMap<u64, String> = listed
        .resources
        .iter()
        .map(|kept| (kept.id, kept.name.clone()))
        .collect();
    let acknowledged = acknowledged.lock().expect("lock");
    for (id, name) in acknowledged.iter() {
        assert_eq!(
            stored.get(id),
            Some(name),
            "acknowledged create {id} was lost"
        );
    }
    assert!(acknowledged.len() >= 100);
}
