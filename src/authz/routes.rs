//! The routes of the config file (`[[route]]`): which request each covers (hosts, path,
//! methods), what it asks of it (scopes, a rule, nothing at all when public), and the policy for
//! a request no route covers. The first route that matches, in file order, decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::facts::RequestFacts;
use super::rules::Rule;

/// The most routes a file may have.
pub const MAX_ROUTES: usize = 1000;

/// What a route's path setting matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// Every path.
    Any,
    /// This path only.
    Exact(String),
    /// Every path that starts with this.
    Prefix(String),
}

/// One route.
#[derive(Debug)]
pub struct Route {
    /// Unique; named in logs, metrics and denials.
    pub name: String,
    /// Lower case; `*.example.com` matches any name under example.com; empty: any host.
    pub hosts: Vec<String>,
    pub path: PathMatch,
    /// Empty: any method.
    pub methods: Vec<String>,
    /// Scopes the token must have, beside those the proxy names.
    pub scopes: Vec<String>,
    /// No token needed, none read; the identity headers removed.
    pub public: bool,
    /// A request without a token is judged by the rule alone (a workload calling with none).
    pub token_optional: bool,
    pub rule: Option<Rule>,
    /// The rule is evaluated, logged and counted, never enforced.
    pub shadow: bool,
    /// When a rule error was last logged, Unix seconds (at most one a minute per route).
    pub last_error_logged: AtomicU64,
    /// Its decisions' counters.
    pub decisions: crate::metrics::RouteDecisions,
}

impl Route {
    /// Whether this route covers `request`.
    pub fn matches(&self, request: &RequestFacts) -> bool {
        self.covers_path(&request.path)
            && self.covers_method(&request.method)
            && self.covers_host(&request.host)
    }

    /// Whether the route's path setting covers `path` (normalised).
    pub fn covers_path(&self, path: &str) -> bool {
        match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
        }
    }

    /// Whether the route's methods cover `method`.
    pub fn covers_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    /// Whether the route's hosts cover `host` (lower case, no port).
    pub fn covers_host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| host_matches(h, host))
    }
}

/// Whether `pattern` (an exact host, `*.suffix`, or `*`) covers `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// What a request no route covers gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fallback {
    /// A valid token, with the scopes the proxy names (the rule without routes).
    #[default]
    Authenticated,
    /// 403.
    Deny,
}

/// Every route of the file, in order, and the fallback.
#[derive(Debug, Default)]
pub struct Routes {
    pub routes: Vec<Route>,
    pub fallback: Fallback,
}

impl Routes {
    /// The route that decides `request`: the first that matches.
    pub fn find(&self, request: &RequestFacts) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(request))
    }

    /// Whether any route or the fallback asks more than a valid token.
    pub fn in_use(&self) -> bool {
        !self.routes.is_empty() || self.fallback != Fallback::Authenticated
    }

    /// Whether a rule reads the request's headers (only then are they gathered).
    pub fn read_headers(&self) -> bool {
        self.routes
            .iter()
            .any(|route| route.rule.as_ref().is_some_and(Rule::reads_headers))
    }
}

/// The routes in force, shared by both transports and replaced whole on SIGHUP.
#[derive(Clone, Debug, Default)]
pub struct RouteTable(Arc<RwLock<Arc<Routes>>>);

impl RouteTable {
    /// The routes in force now.
    pub fn current(&self) -> Arc<Routes> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Puts `routes` in force from now on.
    pub fn replace(&self, routes: Routes) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(routes);
    }
}

impl PartialEq for RouteTable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for RouteTable {}

/// `route NAME: WHAT IT COVERS -> WHAT IT ASKS`, one line, as `--check-config` shows it.
pub fn describe(route: &Route) -> String {
    let hosts = if route.hosts.is_empty() {
        "any host".to_owned()
    } else {
        route.hosts.join(" ")
    };
    let path = match &route.path {
        PathMatch::Any => "every path".to_owned(),
        PathMatch::Exact(path) => path.clone(),
        PathMatch::Prefix(prefix) => format!("{prefix}*"),
    };
    let methods = if route.methods.is_empty() {
        "any method".to_owned()
    } else {
        route.methods.join(" ")
    };
    let asks = if route.public {
        "public: no token read".to_owned()
    } else {
        let mut asks = vec![if route.token_optional {
            "a valid token or none".to_owned()
        } else {
            "a valid token".to_owned()
        }];
        if !route.scopes.is_empty() {
            asks.push(format!("scopes {}", route.scopes.join(" ")));
        }
        if let Some(rule) = &route.rule {
            asks.push(format!(
                "{}rule {}",
                if route.shadow { "shadow " } else { "" },
                rule.source()
            ));
        }
        asks.join(", ")
    };
    format!("route {}: {hosts}, {path}, {methods} -> {asks}", route.name)
}

/// Whether a rule error on `route` may be logged now (at most once a minute per route).
pub fn may_log_error(route: &Route, now_seconds: u64) -> bool {
    let last = route.last_error_logged.load(Ordering::Relaxed);
    now_seconds >= last.saturating_add(60)
        && route
            .last_error_logged
            .compare_exchange(last, now_seconds, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, hosts: &[&str], path: PathMatch, methods: &[&str]) -> Route {
        Route {
            name: name.to_owned(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            path,
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            scopes: Vec::new(),
            public: false,
            token_optional: false,
            rule: None,
            shadow: false,
            last_error_logged: AtomicU64::new(0),
            decisions: Default::default(),
        }
    }

    fn decided(routes: &Routes, method: &str, host: &str, target: &str) -> Option<String> {
        routes
            .find(&RequestFacts::new(method, host, target))
            .map(|route| route.name.clone())
    }

    #[test]
    fn the_first_route_that_matches_decides() {
        let routes = Routes {
            routes: vec![
                route("health", &[], PathMatch::Exact("/healthz".into()), &[]),
                route(
                    "admin-writes",
                    &["api.example.com", "*.example.com"],
                    PathMatch::Prefix("/admin".into()),
                    &["POST", "DELETE"],
                ),
                route("admin", &[], PathMatch::Prefix("/admin".into()), &[]),
                route("rest", &["*"], PathMatch::Any, &[]),
            ],
            fallback: Fallback::Deny,
        };
        let cases = [
            ("GET", "x", "/healthz", "health"),
            ("GET", "x", "/healthz/x", "rest"),
            ("POST", "api.example.com", "/admin/users", "admin-writes"),
            ("POST", "a.b.example.com:443", "/admin", "admin-writes"),
            ("POST", "example.com", "/admin", "admin"),
            ("POST", "evil-example.com", "/admin", "admin"),
            ("GET", "api.example.com", "/admin", "admin"),
            ("post", "api.example.com", "/admin", "admin"),
            (
                "POST",
                "API.EXAMPLE.COM",
                "/public/../admin",
                "admin-writes",
            ),
            ("GET", "x", "/other", "rest"),
        ];
        for (method, host, target, expected) in cases {
            assert_eq!(
                decided(&routes, method, host, target).as_deref(),
                Some(expected),
                "{method} {host} {target}"
            );
        }
        let without_rest = Routes {
            routes: vec![route("a", &[], PathMatch::Prefix("/a".into()), &[])],
            fallback: Fallback::Deny,
        };
        assert_eq!(decided(&without_rest, "GET", "x", "/b"), None);
    }

    #[test]
    fn a_rule_error_is_logged_at_most_once_a_minute() {
        let r = route("r", &[], PathMatch::Any, &[]);
        assert!(may_log_error(&r, 1000));
        assert!(!may_log_error(&r, 1030));
        assert!(may_log_error(&r, 1060));
    }
}
