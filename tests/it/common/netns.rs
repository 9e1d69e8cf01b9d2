//! Replicas with network addresses of their own: each in a network namespace joined to this
//! host by a veth pair, and the database on an address of this host that each namespace routes
//! to over its veth, so one replica's link to the database can be cut (a blackhole route in its
//! namespace: packets vanish, as on a cut cable) while clients still reach it. Needs root and
//! `ip` (iproute2, which `ci/setup` installs); everything is removed when the topology is
//! dropped or this process ends, however it ends (a guard process, as for PostgreSQL).

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// One replica's place: its namespace and the address clients reach it at.
pub struct Place {
    /// The namespace's name.
    pub netns: String,
    /// Its address (on its side of the veth), where its server listens.
    pub address: String,
}

/// Namespaces for replicas and an address for the database.
pub struct Topology {
    /// One per replica.
    pub places: Vec<Place>,
    /// The address on this host where the database listens, routed to from every namespace.
    pub database_address: String,
    guard: Mutex<Option<(ChildStdin, Child)>>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "ip {}: {e} (iproute2 is installed by ci/setup)",
            args.join(" ")
        )
    });
    assert!(
        out.status.success(),
        "ip {} failed (the namespace tests run as root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_netns(netns: &str, args: &[&str]) {
    let mut all = vec!["netns", "exec", netns, "ip"];
    all.extend_from_slice(args);
    ip(&all);
}

impl Topology {
    /// Namespaces for `replicas` replicas, each with its own /24, and the database address.
    pub fn new(replicas: usize) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let pid = std::process::id();
        let topology = NEXT.fetch_add(1, Ordering::Relaxed);
        // 10.B.S.0/24 per replica; B from the process, S from the topology and the replica, so
        // topologies of concurrent tests (and test processes) never share a subnet.
        let b = 100 + pid % 100;
        let subnet = |n: usize| topology * 10 + n;
        let database_address = format!("10.{b}.{}.1", subnet(9));
        let names: Vec<(String, String)> = (0..replicas)
            .map(|n| {
                (
                    format!("mrmat-{pid}-{topology}-{n}"),
                    format!("mr{}x{topology}x{n}", pid % 100_000),
                )
            })
            .collect();
        // The guard first, so that a failure half-way still leaves nothing behind.
        let mut cleanup = vec![format!("ip addr del {database_address}/32 dev lo")];
        for (netns, host_veth) in &names {
            cleanup.push(format!("ip link del {host_veth}"));
            cleanup.push(format!("ip netns del {netns}"));
        }
        let guard = guard(&cleanup);
        ip(&[
            "addr",
            "add",
            &format!("{database_address}/32"),
            "dev",
            "lo",
        ]);
        let mut places = Vec::new();
        for (n, (netns, host_veth)) in names.into_iter().enumerate() {
            let (host_side, replica_side) = (
                format!("10.{b}.{}.1", subnet(n)),
                format!("10.{b}.{}.2", subnet(n)),
            );
            ip(&["netns", "add", &netns]);
            ip(&[
                "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ]);
            ip(&["addr", "add", &format!("{host_side}/24"), "dev", &host_veth]);
            ip(&["link", "set", &host_veth, "up"]);
            in_netns(
                &netns,
                &["addr", "add", &format!("{replica_side}/24"), "dev", "eth0"],
            );
            in_netns(&netns, &["link", "set", "eth0", "up"]);
            in_netns(&netns, &["link", "set", "lo", "up"]);
            in_netns(&netns, &["route", "add", "default", "via", &host_side]);
            places.push(Place {
                netns,
                address: replica_side,
            });
        }
        Self {
            places,
            database_address,
            guard: Mutex::new(Some(guard)),
        }
    }

    /// Drops every packet replica `n` sends to the database, as a cut link would.
    pub fn cut_database(&self, n: usize) {
        let route = format!("{}/32", self.database_address);
        in_netns(
            &self.places[n].netns,
            &["route", "add", "blackhole", &route],
        );
    }

    /// Mends what [`Topology::cut_database`] cut.
    pub fn mend_database(&self, n: usize) {
        let route = format!("{}/32", self.database_address);
        in_netns(
            &self.places[n].netns,
            &["route", "del", "blackhole", &route],
        );
    }

    /// The command prefix that runs a program in replica `n`'s namespace.
    pub fn prefix(&self, n: usize) -> Vec<String> {
        ["ip", "netns", "exec", &self.places[n].netns]
            .map(str::to_owned)
            .to_vec()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some((stdin, mut child)) = self.guard.lock().expect("not poisoned").take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// A process that runs `cleanup` once its stdin closes: when the topology is dropped or this
/// process exits, crashed or not.
fn guard(cleanup: &[String]) -> (ChildStdin, Child) {
    let script = format!(
        "cat >/dev/null; {}",
        cleanup
            .iter()
            .map(|step| format!("{step} >/dev/null 2>&1"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let mut stdin = child.stdin.take().expect("piped");
    let _ = stdin.flush();
    (stdin, child)
}
