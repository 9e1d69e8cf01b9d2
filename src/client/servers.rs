//! Where a client sends its calls: one server, or several replicas that it balances over.
//!
//! `--server` takes one `HOST:PORT` or several, comma separated. One server is called as it
//! always was (the C core's `pick_first`). Several (or one name that resolves to several
//! addresses of one family, as a headless Kubernetes service does) get the C core's balancing
//! through the channel's service config:
//! - `round_robin` over every address;
//! - client-side health checking: the core watches each replica's `grpc.health.v1` status of
//!   the service the client calls and sends nothing to a replica that says NOT_SERVING;
//! - retries on another replica, for calls that are safe to repeat (see [`RETRIED`]) when a
//!   replica answers UNAVAILABLE or is lost while the call is under way.
//!
//! A list is resolved once, when the channel opens (the core has no target for several names);
//! a single name is left to the core's resolver, which resolves it again when replicas change.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs as _};

use grpcio::{Channel, ChannelBuilder};

use super::connection::LoadedTls;
use crate::proto::service_names;

/// Calls the channel retries on another replica: those that change nothing, and v2's Create,
/// whose request id makes a repeat answer the first result instead of creating again (send one:
/// the client always does). v1's Create, Modify and Remove, and v2's Update and Delete, are not:
/// a retry after a lost answer could apply them twice (or refuse the caller's own change).
pub const RETRIED: &[(&str, &str)] = &[
    (service_names::RESOURCE_V1_PROTO, "Get"),
    (service_names::RESOURCE_V1_PROTO, "List"),
    (service_names::RESOURCE_V2_PROTO, "Get"),
    (service_names::RESOURCE_V2_PROTO, "List"),
    (service_names::RESOURCE_V2_PROTO, "Create"),
    (service_names::TOKEN_V1_PROTO, "Validate"),
];

/// The servers `--server` names, and how a channel reaches them.
#[derive(Clone, Debug)]
pub struct Servers {
    /// As given, for messages.
    given: String,
    /// The channel's target: as given for one server; `ipv4:`, `ipv6:` or `dns:///` when
    /// balanced.
    target: String,
    /// Host and `host:port` of the first server when balanced: the name TLS checks and the
    /// `:authority` calls carry, which an address list cannot give.
    first: Option<(String, String)>,
}

impl Servers {
    /// The servers in `list` (`HOST:PORT[,HOST:PORT...]`), or why it names none a client may
    /// call (a port above 65535). Names in a list of several are resolved here; one that does
    /// not resolve is left out with a warning (it may resolve later; the others serve).
    pub fn new(list: &str) -> Result<Self, ServersError> {
        check(list)?;
        Ok(Self::resolved(list))
    }

    fn resolved(list: &str) -> Self {
        // A target in the C core's own syntax (`dns:///`, `ipv4:`, `unix:`...) is its to read.
        if [
            "dns:",
            "ipv4:",
            "ipv6:",
            "unix:",
            "unix-abstract:",
            "vsock:",
        ]
        .iter()
        .any(|scheme| list.starts_with(scheme))
        {
            return Self::single(list);
        }
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect();
        let given = entries.join(",");
        let first = entries.first().map(|entry| {
            let host = split_host(entry);
            (host.to_owned(), (*entry).to_owned())
        });
        match entries.as_slice() {
            [] => Self::single(list),
            [one] => {
                if several_in_one_family(one) {
                    Self {
                        target: format!("dns:///{one}"),
                        given,
                        first,
                    }
                } else {
                    Self::single(one)
                }
            }
            many => {
                let mut addresses = BTreeSet::new();
                for entry in many {
                    match entry.to_socket_addrs() {
                        Ok(resolved) => addresses.extend(resolved),
                        Err(e) => log::warn!("--server: leaving out {entry}: {e}"),
                    }
                }
                let target = address_target(&addresses).unwrap_or_else(|| given.clone());
                Self {
                    target,
                    given,
                    first,
                }
            }
        }
    }

    fn single(server: &str) -> Self {
        Self {
            given: server.to_owned(),
            target: server.to_owned(),
            first: None,
        }
    }

    /// Whether calls are spread over several replicas.
    pub fn balanced(&self) -> bool {
        self.first.is_some()
    }

    /// The servers as given, for messages.
    pub fn describe(&self) -> &str {
        &self.given
    }

    /// The channel's target (for tests and logs).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A channel to these servers, secured as `tls` says. When balanced, the core routes
    /// around replicas whose health for `service` (a `grpc.health.v1` service name, `""` for the
    /// server as a whole) is not SERVING.
    pub fn connect(&self, mut builder: ChannelBuilder, tls: &LoadedTls, service: &str) -> Channel {
        let mut tls_name = None;
        if let Some((host, authority)) = &self.first {
            let config = CString::new(service_config(service))
                .expect("the service config is JSON without NUL");
            builder = builder
                .raw_cfg_string(
                    CString::new("grpc.service_config").expect("a constant"),
                    config,
                )
                .default_authority(authority.as_str());
            tls_name = Some(host.as_str());
        }
        tls.connect_named(builder, &self.target, tls_name)
    }
}

/// Why a server list names no server a client may call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServersError(Box<ServersErrorKind>);

/// What is wrong with a server list, for callers to match on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServersErrorKind {
    /// An entry's port is not a number from 0 to 65535 (the core would take 116437 as port
    /// 50901: a client must never call a server other than the one it was given).
    BadPort {
        /// The entry, as given.
        entry: String,
    },
}

impl ServersError {
    /// What is wrong.
    pub fn kind(&self) -> &ServersErrorKind {
        &self.0
    }
}

impl fmt::Display for ServersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            ServersErrorKind::BadPort { entry } => {
                write!(f, "`{entry}`: the port must be a number from 0 to 65535")
            }
        }
    }
}

impl std::error::Error for ServersError {}

/// `list` as `--server` takes it, or why it names no server a client may call. A clap value
/// parser, and the check [`Servers::new`] makes.
pub fn check(list: &str) -> Result<String, ServersError> {
    if list.starts_with("unix:") || list.starts_with("unix-abstract:") || list.starts_with("vsock:")
    {
        return Ok(list.to_owned());
    }
    let addresses = ["dns:///", "dns:", "ipv4:", "ipv6:"]
        .iter()
        .find_map(|scheme| list.strip_prefix(scheme))
        .unwrap_or(list);
    for entry in addresses.split(',').map(str::trim) {
        let Some((_, port)) = entry.rsplit_once(':') else {
            continue;
        };
        // A colon inside brackets is an IPv6 address's, not a port's.
        if port.ends_with(']') {
            continue;
        }
        if port.parse::<u16>().is_err() {
            return Err(ServersError(Box::new(ServersErrorKind::BadPort {
                entry: entry.to_owned(),
            })));
        }
    }
    Ok(list.to_owned())
}

/// The host of `HOST:PORT` (`[v6]:PORT` too).
fn split_host(entry: &str) -> &str {
    let host = entry.rsplit_once(':').map_or(entry, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `entry` resolves to several addresses of one family: several replicas behind one
/// name. `localhost` (one IPv4 and one IPv6 address of the same host) is one server.
fn several_in_one_family(entry: &str) -> bool {
    let Ok(resolved) = entry.to_socket_addrs() else {
        return false;
    };
    let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved.partition(SocketAddr::is_ipv4);
    let distinct = |addresses: Vec<SocketAddr>| addresses.into_iter().collect::<BTreeSet<_>>();
    distinct(v4).len() > 1 || distinct(v6).len() > 1
}

/// A target naming every address: `ipv4:` when all are IPv4, otherwise `ipv6:` with IPv4 ones
/// mapped (a target holds one family).
fn address_target(addresses: &BTreeSet<SocketAddr>) -> Option<String> {
    if addresses.is_empty() {
        return None;
    }
    if addresses.iter().all(SocketAddr::is_ipv4) {
        let list: Vec<String> = addresses.iter().map(SocketAddr::to_string).collect();
        return Some(format!("ipv4:{}", list.join(",")));
    }
    let list: Vec<String> = addresses
        .iter()
        .map(|address| match address {
            SocketAddr::V4(v4) => format!("[{}]:{}", v4.ip().to_ipv6_mapped(), v4.port()),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        })
        .collect();
    Some(format!("ipv6:{}", list.join(",")))
}

/// The service config of a balanced channel: round robin, health checking of `service`, and
/// retries of [`RETRIED`] on UNAVAILABLE (a replica lost or refusing). Five attempts (the core's
/// most) with backoff from 50 ms: enough to find a live replica among several, short enough to
/// stay well within a caller's deadline. No retry throttling: losing one replica of three fails
/// many calls at once, which throttling would stop retrying exactly when it matters.
pub fn service_config(service: &str) -> String {
    let names: Vec<serde_json::Value> = RETRIED
        .iter()
        .map(|(service, method)| serde_json::json!({"service": service, "method": method}))
        .collect();
    serde_json::json!({
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": service},
        "methodConfig": [{
            "name": names,
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"]
            }
        }]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_is_called_as_given() {
        for bad in [
            "127.0.0.1:116437",
            "127.0.0.1:1,127.0.0.1:65536",
            "[::1]:99999",
            "localhost:-1",
            "localhost:http",
            "ipv4:127.0.0.1:70000",
            "dns:///localhost:1000000",
        ] {
            let why = check(bad).expect_err(bad);
            assert!(
                matches!(why.kind(), ServersErrorKind::BadPort { .. }),
                "{bad}: {why}"
            );
            assert!(Servers::new(bad).is_err(), "{bad}");
        }
        for good in [
            "localhost:50051",
            "[::1]:1,127.0.0.1:65535",
            "unix:/tmp/s:1",
            "[::1]",
        ] {
            assert_eq!(check(good).as_deref(), Ok(good));
        }
        let servers = Servers::new("localhost:50051").expect("a server");
        assert!(!servers.balanced());
        assert_eq!(servers.target(), "localhost:50051");
    }

    #[test]
    fn several_addresses_become_one_balanced_target() {
        let servers = Servers::new("127.0.0.2:50051, 127.0.0.1:50052").expect("servers");
        assert!(servers.balanced());
        assert_eq!(servers.target(), "ipv4:127.0.0.1:50052,127.0.0.2:50051");
        assert_eq!(servers.describe(), "127.0.0.2:50051,127.0.0.1:50052");
    }

    #[test]
    fn a_target_in_the_cores_syntax_is_left_to_it() {
        let servers = Servers::new("ipv4:127.0.0.1:1,127.0.0.1:2").expect("servers");
        assert!(!servers.balanced());
        assert_eq!(servers.target(), "ipv4:127.0.0.1:1,127.0.0.1:2");
    }

    #[test]
    fn mixed_families_are_listed_as_ipv6() {
        let servers = Servers::new("127.0.0.1:1,[::1]:2").expect("servers");
        assert_eq!(servers.target(), "ipv6:[::ffff:127.0.0.1]:1,[::1]:2");
    }

    #[test]
    fn the_service_config_retries_only_what_is_safe_to_repeat() {
        let config: serde_json::Value =
            serde_json::from_str(&service_config("TokenV1Proto")).expect("JSON");
        assert_eq!(config["healthCheckConfig"]["serviceName"], "TokenV1Proto");
        let names = config["methodConfig"][0]["name"].to_string();
        assert!(names.contains("Validate") && names.contains("Get"));
        assert!(!names.contains("Remove") && !names.contains("Update"));
        assert!(!names.contains(r#""service":"ResourceV1Proto","method":"Create""#));
    }
}
