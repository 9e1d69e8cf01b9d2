//! The OCI image `ci/image` builds, run under podman as a platform runs it: its own entrypoint and
//! defaults, a published port, a read-only root, its non-root user, SIGTERM, a volume.
//!
//! How the image is built and run: `common::podman`.

use crate::common;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::jwt::{claims, KeyFile, SigningKey, AUDIENCE, ISSUER};
use common::podman::{image, open_to_all, podman, podman_ok, Container, Volume, DATA};
use common::{call, resource, wait_until};
use grpcio::RpcStatusCode;
use mrmat_rust_api_grpc::proto::{Empty, ResourceV1ProtoClient};

/// The image's gRPC port.
const GRPC: u16 = 50051;

/// The image's server, started with its own entrypoint as a platform starts it: read-only root,
/// its data on `volume`, `keys` mounted for the token service, its port 50051 published on
/// loopback; once its health answers SERVING.
fn start(volume: &Volume, keys: &KeyFile, extra: &[&str]) -> Container {
    let options = [
        "--volume".to_owned(),
        format!("{}:{DATA}", volume.0),
        "--volume".to_owned(),
        format!("{}:/keys:ro", keys.dir().display()),
    ];
    let args: Vec<String> = [
        "--jwks-file",
        "/keys/jwks.json",
        "--token-issuer",
        ISSUER,
        "--token-audience",
        AUDIENCE,
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    let server = Container::run(&options, &[GRPC], &args);
    server.wait_until_serving(GRPC, "");
    server
}

/// A key set the container can read: its user is not the test's.
fn readable_keys(key: &SigningKey) -> KeyFile {
    let keys = KeyFile::new(&[key]);
    open_to_all(keys.dir());
    open_to_all(&keys.path());
    keys
}

/// The client binary's stdout against `address`, for a call that must succeed.
fn client(address: &str, args: &[&str]) -> String {
    let out = common::client_output(address, args);
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
    let server = start(&volume, &keys, &[]);
    let address = server.address(GRPC);

    // Through the published port, from the host.
    assert_eq!(client(&address, &["healthz"]), "[200] OK\n");
    assert_eq!(client(&address, &["greeting", "v1"]), "Hello World\n");
    let token = key.sign(&claims("alice"));
    let answer = client(&address, &["token", "v1", "validate", &token, "nonsense"]);
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
    let server = start(&volume, &keys, &["--drain-delay", "1"]);

    // Creates, one after another, until the server stops answering; each acknowledged one is
    // remembered.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let creator = {
        let client = ResourceV1ProtoClient::new(server.channel(GRPC));
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

    server.start();
    server.wait_until_serving(GRPC, "");
    let listed = ResourceV1ProtoClient::new(server.channel(GRPC))
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

#[test]
fn a_data_volume_its_user_cannot_write_stops_it_at_once_saying_why() {
    // A folder of root's, as a volume mounted without fsGroup would be.
    let folder = tempfile::tempdir().expect("a temporary folder");
    open_to_all(folder.path());
    let options = [
        "--volume".to_owned(),
        format!("{}:{DATA}", folder.path().display()),
    ];
    let server = Container::run(&options, &[GRPC], &[]);
    let code = server.wait_for_exit(Duration::from_secs(30));
    let logs = server.logs();
    assert_eq!(code, 1, "{logs}");
    assert!(
        logs.contains(&format!(
            "cannot open the SQLite store {DATA}/mrmat-grpc.sqlite3: Permission denied"
        )),
        "{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}
