//! The client and server binaries as a user runs them: exact stdout, exit codes, error lines.

use crate::common;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use common::{spawn_server, ServerProcess};

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");
const SERVER: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-server");

/// Runs the client with `args` after `--server address`, with no environment overrides.
fn client(address: &str, args: &[&str]) -> Output {
    common::client_output(address, args)
}

/// The client's stdout for a call that must succeed.
fn stdout_of(address: &str, args: &[&str]) -> String {
    let out = client(address, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn greeting_subcommands_print_the_greeting() {
    let server = spawn_server();
    let a = &server.address;
    assert_eq!(stdout_of(a, &["greeting", "v1"]), "Hello World\n");
    assert_eq!(stdout_of(a, &["greeting", "v2"]), "Hello Stranger\n");
    assert_eq!(
        stdout_of(a, &["greeting", "v2", "--name", "Mat"]),
        "Hello Mat\n"
    );
    assert_eq!(
        stdout_of(a, &["greeting", "v2", "-n", "Zoë"]),
        "Hello Zoë\n"
    );
}

#[test]
fn healthz_prints_the_status_line() {
    let server = spawn_server();
    assert_eq!(stdout_of(&server.address, &["healthz"]), "[200] OK\n");
}

#[test]
fn healthz_of_a_service_succeeds_only_while_it_is_serving() {
    let server = spawn_server();
    let a = &server.address;
    assert_eq!(
        stdout_of(a, &["healthz", "--service", ""]),
        "[200] SERVING\n"
    );
    assert_eq!(
        stdout_of(a, &["healthz", "--service", "GreetingV1Proto"]),
        "[200] SERVING\n"
    );
    let out = client(a, &["healthz", "--service", "NoSuchProto"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("answered NOT_FOUND"), "{stderr}");

    // Token validation whose keys cannot be fetched: served, and not ready.
    let unreachable = format!("http://127.0.0.1:{}/jwks", common::free_port());
    let waiting = ServerProcess::start(&[
        "--jwks-url",
        &unreachable,
        "--token-issuer",
        "https://id.example",
    ]);
    let out = client(&waiting.address, &["healthz", "--service", "TokenV1Proto"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the server at {} reports TokenV1Proto NOT_SERVING",
            waiting.address
        )),
        "{stderr}"
    );
    assert_eq!(
        stdout_of(&waiting.address, &["healthz", "--service", ""]),
        "[200] SERVING\n"
    );
}

#[test]
fn resource_subcommands_print_what_the_original_printed() {
    let server = spawn_server();
    let a = &server.address;
    let r = |args: &[&str]| stdout_of(a, &[&["resource", "v1"], args].concat());
    assert_eq!(r(&["list"]), "[200] OK\nResources:\n");
    assert_eq!(
        r(&["create", "--owner-id", "1", "--name", "a"]),
        "[201] Created\n"
    );
    assert_eq!(
        r(&["create", "--owner-id", "2", "--name", "b c"]),
        "[201] Created\n"
    );
    assert_eq!(
        r(&["list"]),
        "[200] OK\nResources:\n- id: 0, owner_id: 1, name: a\n- id: 1, owner_id: 2, name: b c\n"
    );
    assert_eq!(
        r(&["get", "--id", "1"]),
        "[200] OK\n- id: 1, owner_id: 2, name: b c\n"
    );
    assert_eq!(r(&["get", "--id", "7"]), "[404] Not Found\n");
    assert_eq!(
        r(&["modify", "--id", "0", "--owner-id", "9", "--name", "z"]),
        "[200] OK\n"
    );
    assert_eq!(
        r(&["modify", "--id", "7", "--owner-id", "9", "--name", "z"]),
        "[404] Not Found\n"
    );
    assert_eq!(
        r(&["get", "--id", "0"]),
        "[200] OK\n- id: 0, owner_id: 1, name: z\n"
    );
    assert_eq!(r(&["remove", "--id", "0"]), "[401] Removed\n");
    assert_eq!(r(&["remove", "--id", "0"]), "[410] Gone\n");
    assert_eq!(
        r(&["list"]),
        "[200] OK\nResources:\n- id: 1, owner_id: 2, name: b c\n"
    );
}

#[test]
fn server_address_comes_from_the_environment_too() {
    let server = spawn_server();
    let out = Command::new(CLIENT)
        .arg("healthz")
        .env("MRMAT_GRPC_SERVER", &server.address)
        .output()
        .expect("the client runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[200] OK\n");
}

#[test]
fn unreachable_server_is_one_line_naming_it_and_exit_1() {
    // A port that was free a moment ago: nothing listens there.
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").to_string()
    };
    let started = Instant::now();
    let out = client(&address, &["--timeout", "5", "healthz"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("cannot reach the server at"), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused fails fast"
    );
}

#[test]
fn silent_server_hits_the_deadline_and_exit_1() {
    // Accepts connections and never speaks HTTP/2: only the deadline ends the call.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    let held = thread::spawn(move || {
        let _conn = listener.accept();
        thread::park_timeout(Duration::from_secs(20));
    });
    let started = Instant::now();
    let out = client(&address, &["--timeout", "0.5", "greeting", "v1"]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&address), "{stderr}");
    assert!(stderr.contains("within 0.5s"), "{stderr}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    held.thread().unpark();
}

#[test]
fn no_subcommand_prints_help_and_fails() {
    let out = Command::new(CLIENT).output().expect("the client runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"));
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["resource", "v1", "get"][..],
        &["resource", "v1", "get", "--id", "-1"],
        &["resource", "v1", "get", "--id", "x"],
        &["greeting", "v99"],
        &["--timeout", "0", "healthz"],
    ] {
        let out = client("127.0.0.1:1", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} explains itself");
    }
}

#[test]
fn server_binary_serves_and_exits_0_on_sigterm() {
    let mut server = ServerProcess::start(&[]);
    assert_eq!(stdout_of(&server.address, &["healthz"]), "[200] OK\n");
    server.terminate();
    let status = server
        .wait_for_exit(Duration::from_secs(20))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn server_binary_refuses_a_port_in_use() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = busy.local_addr().expect("addr").to_string();
    let out = Command::new(SERVER)
        .env("MRMAT_GRPC_STORE", "memory")
        .args(["--listen", &address])
        .output()
        .expect("the server runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&address) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn server_binary_refuses_an_unparsable_address() {
    let out = Command::new(SERVER)
        .env("MRMAT_GRPC_STORE", "memory")
        .args(["--listen", "nonsense"])
        .output()
        .expect("the server runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid listen address `nonsense`"),
        "{stderr}"
    );
}

#[test]
fn server_binary_documents_its_flags_and_version() {
    let help = Command::new(SERVER)
        .env("MRMAT_GRPC_STORE", "memory")
        .arg("--help")
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--shutdown-grace",
        "MRMAT_GRPC_LISTEN",
        "localhost:50051",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let version = Command::new(SERVER)
        .env("MRMAT_GRPC_STORE", "memory")
        .arg("--version")
        .output()
        .expect("runs");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("mrmat-rust-api-grpc-server {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// The client's stdout for `args` with `--output json`, parsed: one JSON object per line.
fn json_of(address: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let stdout = stdout_of(address, &all);
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn json_output_is_the_answer_in_protobufs_json_mapping() {
    use serde_json::json;
    let server = spawn_server();
    let a = &server.address;
    assert_eq!(
        json_of(a, &["greeting", "v1"]),
        json!({"message": "Hello World"})
    );
    assert_eq!(
        json_of(a, &["greeting", "v2", "-n", "Zoë"]),
        json!({"message": "Hello Zoë"})
    );
    assert_eq!(
        json_of(a, &["healthz"]),
        json!({"code": 200, "message": "OK"})
    );
    let created = json!({"id": "0", "ownerId": "1", "name": "a b"});
    assert_eq!(
        json_of(
            a,
            &[
                "resource",
                "v1",
                "create",
                "--owner-id",
                "1",
                "--name",
                "a b"
            ]
        ),
        json!({"status": {"code": 201, "message": "Created"}, "resource": created})
    );
    assert_eq!(
        json_of(a, &["resource", "v1", "list"]),
        json!({"status": {"code": 200, "message": "OK"}, "resources": [created]})
    );
    assert_eq!(
        json_of(a, &["resource", "v1", "get", "--id", "0"]),
        json!({"status": {"code": 200, "message": "OK"}, "resource": created})
    );
    assert_eq!(
        json_of(a, &["resource", "v1", "get", "--id", "7"]),
        json!({"status": {"code": 404, "message": "Not Found"}})
    );
    assert_eq!(
        json_of(a, &["resource", "v1", "remove", "--id", "0"]),
        json!({"code": 401, "message": "Removed"})
    );
    // Text stays the default, byte for byte.
    assert_eq!(stdout_of(a, &["--output", "text", "healthz"]), "[200] OK\n");
}

#[test]
fn the_token_service_is_served_only_with_a_key_set_and_the_start_up_line_says_which() {
    let without = ServerProcess::start(&[]);
    assert!(
        without
            .listening_line
            .contains("TokenV1Proto not served (no identity provider: --oidc-issuer, --jwks-file or --jwks-url, or --config)"),
        "{}",
        without.listening_line
    );
    // The same from the environment, as a deployment sets it.
    let key = common::jwt::SigningKey::ed25519("ed");
    let keys = common::jwt::KeyFile::new(&[&key]);
    let mut child = Command::new(SERVER)
        .env("MRMAT_GRPC_STORE", "memory")
        .args(["--listen", "127.0.0.1:0"])
        .env("MRMAT_GRPC_JWKS_FILE", keys.path())
        .env(
            "MRMAT_GRPC_TOKEN_ISSUER",
            "https://a.example,https://b.example",
        )
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the server runs");
    let log = common::OutputLines::read(child.stderr.take().expect("piped"));
    let tokens = log
        .line_containing("tokens: providers", Duration::from_secs(20))
        .expect("the token settings are logged");
    let file = keys.path().display().to_string();
    assert!(
        tokens.contains(&format!(
            "providers [https://a.example (jwks_file {file}), https://b.example (jwks_file {file})]"
        )),
        "{tokens}"
    );
    let listening = log
        .line_containing("listening on", Duration::from_secs(20))
        .expect("it listens");
    assert!(
        listening.contains("TokenV1Proto") && !listening.contains("not served"),
        "{listening}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn token_settings_that_cannot_work_stop_the_server_with_one_line_before_it_listens() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"keys": []}"#).expect("write");
    let secret = dir.path().join("secret.json");
    std::fs::write(
        &secret,
        r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}"#,
    )
    .expect("write");
    let missing = dir.path().join("missing.json");
    let empty = empty.to_str().expect("utf-8");
    let secret = secret.to_str().expect("utf-8");
    let missing = missing.to_str().expect("utf-8");
    let issuer = ["--token-issuer", "https://id.example"];
    for (args, expected) in [
        (vec!["--jwks-file", missing], vec![missing, "cannot read"]),
        (
            vec!["--jwks-file", empty],
            vec![empty, "holds no signing key"],
        ),
        (
            vec!["--jwks-file", secret],
            vec!["no usable signing key", "\"s\"", "symmetric"],
        ),
        (
            vec!["--jwks-url", "ftp://id.example/jwks.json"],
            vec!["only https URLs are fetched"],
        ),
        (
            vec!["--jwks-url", "http://id.example/jwks.json"],
            vec!["https only", "loopback"],
        ),
        (
            vec!["--oidc-issuer", "https://id.example", "--token-issuer", "x"],
            vec!["--token-issuer", "--jwks-file or --jwks-url"],
        ),
        (
            vec![
                "--jwks-url",
                "https://id.example/jwks",
                "--jwks-ca-cert",
                "no.pem",
            ],
            vec!["no.pem"],
        ),
        (
            vec!["--jwks-file", empty, "--token-admin", "ops"],
            vec!["--token-admin", "mutual TLS"],
        ),
    ] {
        let out = Command::new(SERVER)
            .env("MRMAT_GRPC_STORE", "memory")
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .args(issuer)
            .output()
            .expect("the server runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{args:?}: lacks {part:?}: {stderr}");
        }
    }
}

#[test]
fn token_flags_that_do_not_go_together_are_usage_errors() {
    for (args, names) in [
        (&["--jwks-file", "k.json"][..], "--token-issuer"),
        (
            &[
                "--jwks-file",
                "k.json",
                "--jwks-url",
                "https://id.example/jwks",
                "--token-issuer",
                "i",
            ],
            "--jwks-url",
        ),
        (&["--keepalive-time", "0"], "--keepalive-time"),
        (&["--token-leeway=-1"], "--token-leeway"),
    ] {
        let out = Command::new(SERVER)
            .env("MRMAT_GRPC_STORE", "memory")
            .args(args)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn server_binary_documents_the_token_and_stream_flags() {
    let help = Command::new(SERVER)
        .env("MRMAT_GRPC_STORE", "memory")
        .arg("--help")
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--jwks-file",
        "--jwks-url",
        "--jwks-refresh",
        "--jwks-ca-cert",
        "--token-issuer",
        "--token-audience",
        "--token-leeway",
        "--token-cache",
        "--token-admin",
        "--revocation-max-ttl",
        "--max-revocations",
        "--keepalive-time",
        "--keepalive-timeout",
        "--keepalive-min-ping-interval",
        "--max-concurrent-streams",
        "MRMAT_GRPC_JWKS_FILE",
        "MRMAT_GRPC_TOKEN_ADMIN",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_port_above_65535_is_refused_in_one_line_wherever_a_server_is_named() {
    for (server, args) in [
        ("127.0.0.1:116437", vec!["healthz"]),
        ("127.0.0.1:1,127.0.0.1:65536", vec!["healthz"]),
        ("[::1]:99999", vec!["token", "v1", "validate", "abc"]),
        ("127.0.0.1:116437", vec!["bench", "--calls", "1"]),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client"))
            .args(["--server", server])
            .args(&args)
            .output()
            .expect("the client runs");
        assert_eq!(out.status.code(), Some(2), "{server} {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(
            errors[0].contains("the port must be a number from 0 to 65535"),
            "{stderr}"
        );
    }
}
