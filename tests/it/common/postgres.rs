//! A real, throwaway PostgreSQL server for the tests: its own cluster under `target/tmp`, on a
//! free port of 127.0.0.1, with a password, stopped and removed when the test process ends
//! however it ends (a guard process waits on a pipe that only this process holds). Needs
//! Debian's `postgresql` package, which `ci/setup` installs; missing, the tests fail: they are
//! never skipped.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The cluster's superuser, and the user the servers log in as.
pub const USER: &str = "mrmat";
/// Its password.
pub const PASSWORD: &str = "mrmat-test-password";

/// A running PostgreSQL cluster.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    /// The port it listens on, on 127.0.0.1 (and any address given to `start_on`).
    pub port: u16,
    /// `listen_addresses`.
    listen: String,
    /// Closing it stops and removes the cluster.
    guard: Mutex<Option<(ChildStdin, Child)>>,
}

/// The cluster the tests of one test binary share.
pub fn shared() -> &'static PgCluster {
    static SHARED: OnceLock<PgCluster> = OnceLock::new();
    SHARED.get_or_init(PgCluster::start)
}

/// The directory of PostgreSQL's server programs: Debian keeps them off PATH.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server programs are not installed (no /usr/lib/postgresql/*/bin/initdb): \
             run ci/setup, which installs Debian's postgresql package"
        )
    })
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `program` from `bin`, as the `postgres` user when we are root: initdb and postgres refuse
/// to run as root.
fn pg_command(bin: &Path, program: &str) -> Command {
    let program = bin.join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// Creates and starts a cluster of its own.
    pub fn start() -> Self {
        Self::start_on(None)
    }

    /// As [`PgCluster::start`], listening on `address` too (for replicas in network namespaces,
    /// whose 10.x.y.z addresses may log in with the password).
    pub fn start_on(address: Option<&str>) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bin = bin_dir();
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("postgres");
        let dir = root.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        let password_file = dir.with_extension("password");
        std::fs::write(&password_file, PASSWORD).expect("write the password file");
        if is_root() {
            // The postgres user must reach and own the cluster's directory.
            for path in [&root, &dir, &password_file] {
                run(
                    {
                        let mut chown = Command::new("chown");
                        chown.arg("postgres:postgres").arg(path);
                        chown
                    },
                    "chown to postgres",
                );
            }
        }
        let data = dir.join("data");
        let mut initdb = pg_command(&bin, "initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", password_file.display()));
        run(initdb, "initdb");
        let _ = std::fs::remove_file(&password_file);
        let mut hba = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("pg_hba.conf"))
            .expect("open pg_hba.conf");
        writeln!(hba, "host all all 10.0.0.0/8 scram-sha-256").expect("write pg_hba.conf");

        let port = super::free_port();
        let cluster = Self {
            guard: Mutex::new(Some(guard(&bin, &dir))),
            dir,
            bin,
            port,
            listen: std::iter::once("127.0.0.1")
                .chain(address)
                .collect::<Vec<_>>()
                .join(","),
        };
        cluster.start_again();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the cluster (again, after [`PgCluster::stop`]) and waits until it accepts
    /// connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses={} -c max_connections=300 -c fsync=on",
            self.port,
            self.dir.display(),
            self.listen
        );
        let mut pg_ctl = pg_command(&self.bin, "pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        run(pg_ctl, "pg_ctl start");
    }

    /// Stops the cluster (fast: connections are closed, nothing committed is lost).
    pub fn stop(&self) {
        let mut pg_ctl = pg_command(&self.bin, "pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-m", "fast", "stop"]);
        run(pg_ctl, "pg_ctl stop");
    }

    /// The `--store` URL of `database`, without the password.
    pub fn url(&self, database: &str) -> String {
        self.url_at("127.0.0.1", database)
    }

    /// The `--store` URL of `database` at `address`.
    pub fn url_at(&self, address: &str, database: &str) -> String {
        format!("postgres://{USER}@{address}:{}/{database}", self.port)
    }

    /// A client of `database`, as the superuser.
    pub fn client(&self, database: &str) -> postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match postgres::Config::new()
                .host("127.0.0.1")
                .port(self.port)
                .user(USER)
                .password(PASSWORD)
                .dbname(database)
                .connect(postgres::NoTls)
            {
                Ok(client) => return client,
                Err(e) if Instant::now() > deadline => panic!("connect to PostgreSQL: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// A new, empty database, for one test; its `--store` URL.
    pub fn new_database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a database");
        self.url(&name)
    }
}

/// A process that stops the cluster and removes its directory once its stdin closes: when this
/// process drops the cluster or exits, crashed or not.
fn guard(bin: &Path, dir: &Path) -> (ChildStdin, Child) {
    let stop = format!(
        "cat >/dev/null; {} {} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
        if is_root() {
            "runuser -u postgres --"
        } else {
            ""
        },
        bin.join("pg_ctl").display(),
        dir.join("data").display(),
        dir.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &stop])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let stdin = child.stdin.take().expect("piped");
    (stdin, child)
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some((mut stdin, mut child)) = self.guard.lock().expect("guard").take() {
            let _ = stdin.flush();
            drop(stdin);
            let _ = child.wait();
        }
    }
}
