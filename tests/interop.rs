//! Interop with real Python grpcio, both ways: a Python client against the Rust server (plaintext,
//! TLS and mutual TLS), and the Rust client against a Python server. The Python side lives in `tests/interop/`; its venv is
//! created under `target/` on first use and reused while `requirements.txt` is unchanged.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::pki::Pki;
use common::{spawn_server, spawn_server_with, test_config};
use mrmat_rust_api_grpc::server::{ServerConfig, TlsConfig};

const CLIENT: &str = env!("CARGO_BIN_EXE_mrmat-rust-api-grpc-client");

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The venv's python, created with the pinned requirements when missing or outdated.
/// A missing python3 fails the test: it is never skipped silently.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let requirements = std::fs::read_to_string(interop_dir().join("requirements.txt"))
            .expect("read tests/interop/requirements.txt");
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
        let python = venv.join("bin/python");
        let marker = venv.join("requirements.installed");
        if std::fs::read_to_string(&marker).ok().as_deref() == Some(requirements.as_str()) {
            return python;
        }
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "create the interop venv with python3 -m venv (ci/setup installs python3 and venv)",
        );
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(interop_dir().join("requirements.txt")),
            "install tests/interop/requirements.txt into the interop venv",
        );
        std::fs::write(&marker, &requirements).expect("mark the venv as installed");
        python
    })
}

fn run(command: &mut Command, what: &str) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("cannot {what}: {command:?} exited with {status}"),
        Err(e) => panic!("cannot {what}: {command:?}: {e}"),
    }
}

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
                tls_cert: Some(pki.path("server.pem")),
                tls_key: Some(pki.path("server.key")),
                tls_client_ca: client_ca,
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
