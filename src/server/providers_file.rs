//! The providers file (`--config FILE`, TOML): the identity providers that flags cannot describe,
//! one `[[provider]]` table each, with its own key source, audiences, leeway and CA. Read at
//! start, where any problem stops the server, and again on SIGHUP, where a file that no longer
//! reads keeps the providers as they were.
//!
//! ```toml
//! [[provider]]
//! issuer = "https://id.example/realms/apps"   # keys by OpenID Connect Discovery (the default)
//! audiences = ["orders"]                      # its tokens must name one; any when absent
//! leeway = 30                                 # seconds of clock skew on exp and nbf
//! ca_cert = "id-ca.pem"                       # instead of the system's roots
//!
//! [[provider]]
//! issuer = "ci"                               # any string when the keys are given directly
//! jwks_file = "ci-jwks.json"                  # or jwks_url = "https://..."
//!
//! [[provider]]
//! issuer = "https://hydra.example"            # opaque tokens, by introspection (RFC 7662)
//! introspection = true                        # the endpoint by discovery; or introspection_url
//! client_id = "gateway"                       # this server's credentials at the provider
//! client_secret_file = "gateway.secret"
//! token_prefix = "ory_at_"                    # when several providers introspect
//! introspection_cache = 60                    # seconds an active answer is reused (not past exp)
//! inactive_cache = 5                          # seconds an inactive one is
//! stale_if_error = 300                        # seconds past that while the endpoint fails
//! introspection_concurrency = 8               # calls in flight at most
//! introspection_timeout_ms = 2000             # one call
//! introspection_queue_wait_ms = 500           # a question's wait for a free call
//! ```
//!
//! It holds the routes too (`[policy]`, `[[route]]`, see [`crate::authz::routes`]), checked as
//! it loads: each problem `FILE:LINE: route "NAME": ...`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::ServerConfig;
use crate::authz::routes::MAX_ROUTES;
use crate::authz::{Fallback, PathMatch, Route, Routes, Rule};
use std::time::Duration;

use crate::tokens::{
    introspection_conflicts, IntrospectionEndpoint, IntrospectionOptions, KeysFrom,
    ProviderOptions, DEFAULT_LEEWAY_SECONDS,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    provider: Vec<Entry>,
    policy: Option<PolicyEntry>,
    #[serde(default)]
    route: Vec<RouteEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    default: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    name: Spanned<String>,
    hosts: Option<Vec<String>>,
    path: Option<String>,
    path_prefix: Option<String>,
    methods: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    public: Option<bool>,
    token: Option<String>,
    allow: Option<Spanned<String>>,
    shadow: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    issuer: Spanned<String>,
    jwks_url: Option<Spanned<String>>,
    jwks_file: Option<Spanned<PathBuf>>,
    audiences: Option<Vec<String>>,
    leeway: Option<u32>,
    ca_cert: Option<Spanned<PathBuf>>,
    introspection: Option<bool>,
    introspection_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    token_prefix: Option<String>,
    introspection_cache: Option<u64>,
    inactive_cache: Option<u64>,
    stale_if_error: Option<u64>,
    introspection_concurrency: Option<usize>,
    introspection_timeout_ms: Option<u64>,
    introspection_queue_wait_ms: Option<u64>,
}

/// A provider the file describes, and the line its issuer is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProvider {
    pub options: ProviderOptions,
    pub line: usize,
}

/// What the file describes: its providers, and its routes.
#[derive(Debug)]
pub struct FileContents {
    pub providers: Vec<FileProvider>,
    pub routes: Routes,
}

/// The providers `path` describes, paths in it taken from the file's folder; or every problem
/// with it, one line each, `FILE:LINE: problem`.
pub fn read(path: &Path) -> Result<Vec<FileProvider>, Vec<String>> {
    read_all(path).map(|contents| contents.providers)
}

/// The providers and the routes `path` describes; or every problem with it, one line each.
pub fn read_all(path: &Path) -> Result<FileContents, Vec<String>> {
    let name = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{name}: cannot read the providers file: {e}")])?;
    let at = |span: Option<Range<usize>>| match span {
        Some(span) => format!("{name}:{}", line_of(&text, span.start)),
        None => name.to_string(),
    };
    let document: Document = toml::from_str(&text).map_err(|e| {
        let message = e.message().replace('\n', " ");
        vec![format!("{}: {}", at(e.span()), message.trim())]
    })?;
    if document.provider.is_empty() && document.route.is_empty() && document.policy.is_none() {
        return Err(vec![format!(
            "{name}: no [[provider]] in it: give each identity provider a [[provider]] table \
             with its issuer"
        )]);
    }
    let mut problems = Vec::new();
    let routes = routes(
        document.policy,
        document.route,
        &|span| at(Some(span)),
        &mut problems,
    );
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut providers: Vec<FileProvider> = Vec::new();
    for mut entry in document.provider {
        let here = at(Some(entry.issuer.span()));
        let line = line_of(&text, entry.issuer.span().start);
        let issuer = entry.issuer.get_ref().clone();
        let introspection = match introspection(&mut entry, folder) {
            Ok(introspection) => introspection,
            Err(why) => {
                problems.push(format!("{here}: issuer {issuer}: {why}"));
                continue;
            }
        };
        let named_endpoint = matches!(
            introspection.as_ref().map(|i| &i.endpoint),
            Some(IntrospectionEndpoint::Url(_))
        );
        let keys = match (entry.jwks_url, entry.jwks_file) {
            (Some(_), Some(_)) => {
                problems.push(format!(
                    "{here}: issuer {issuer} has both jwks_url and jwks_file: give one, or \
                     neither for OpenID Connect Discovery"
                ));
                continue;
            }
            (Some(url), None) => KeysFrom::Url(url.into_inner()),
            (None, Some(file)) => KeysFrom::File(folder.join(file.into_inner())),
            // An endpoint named without keys: its tokens are all introspected.
            (None, None) if named_endpoint => KeysFrom::None,
            (None, None) => KeysFrom::Discovery,
        };
        let options = ProviderOptions {
            issuer,
            keys,
            ca_cert: entry.ca_cert.map(|pem| folder.join(pem.into_inner())),
            audiences: entry.audiences.unwrap_or_default(),
            leeway_seconds: entry.leeway.unwrap_or(DEFAULT_LEEWAY_SECONDS),
            introspection,
        };
        problems.extend(
            options
                .problems()
                .into_iter()
                .map(|problem| format!("{here}: {problem}")),
        );
        if let Some(first) = providers
            .iter()
            .find(|p| p.options.issuer == options.issuer)
        {
            problems.push(format!(
                "{here}: issuer {} is already a provider at line {}: each issuer is one provider",
                options.issuer, first.line
            ));
        }
        providers.push(FileProvider { options, line });
    }
    let options: Vec<ProviderOptions> = providers.iter().map(|p| p.options.clone()).collect();
    problems.extend(
        introspection_conflicts(&options)
            .into_iter()
            .map(|problem| format!("{name}: {problem}")),
    );
    if problems.is_empty() {
        Ok(FileContents { providers, routes })
    } else {
        Err(problems)
    }
}

/// The introspection an entry describes (None when it does not introspect), its paths taken
/// from `folder`; or why it cannot be used.
fn introspection(entry: &mut Entry, folder: &Path) -> Result<Option<IntrospectionOptions>, String> {
    let endpoint =
        match (entry.introspection, entry.introspection_url.take()) {
            (Some(true), Some(_)) => return Err(
                "introspection = true finds the endpoint by discovery; introspection_url names \
                 it: give one"
                    .to_owned(),
            ),
            (Some(true), None) => IntrospectionEndpoint::Discovery,
            (_, Some(url)) => IntrospectionEndpoint::Url(url),
            (Some(false) | None, None) => {
                let set = [
                    ("client_id", entry.client_id.is_some()),
                    ("client_secret_file", entry.client_secret_file.is_some()),
                    ("token_prefix", entry.token_prefix.is_some()),
                    ("introspection_cache", entry.introspection_cache.is_some()),
                    ("inactive_cache", entry.inactive_cache.is_some()),
                    ("stale_if_error", entry.stale_if_error.is_some()),
                    (
                        "introspection_concurrency",
                        entry.introspection_concurrency.is_some(),
                    ),
                    (
                        "introspection_timeout_ms",
                        entry.introspection_timeout_ms.is_some(),
                    ),
                    (
                        "introspection_queue_wait_ms",
                        entry.introspection_queue_wait_ms.is_some(),
                    ),
                ];
                return match set.iter().find(|(_, given)| *given) {
                    Some((name, _)) => Err(format!(
                        "{name} is for introspection: add introspection = true (the endpoint by \
                     discovery) or introspection_url"
                    )),
                    None => Ok(None),
                };
            }
        };
    let (Some(client_id), Some(secret)) = (entry.client_id.take(), entry.client_secret_file.take())
    else {
        return Err(
            "introspection needs client_id and client_secret_file: the endpoint answers only \
             clients it knows (RFC 7662 section 2.1)"
                .to_owned(),
        );
    };
    let mut options = IntrospectionOptions::new(endpoint, &client_id, folder.join(secret));
    options.token_prefix = entry.token_prefix.take();
    let seconds = Duration::from_secs;
    let millis = Duration::from_millis;
    options.cache = entry.introspection_cache.map_or(options.cache, seconds);
    options.inactive_cache = entry.inactive_cache.map_or(options.inactive_cache, seconds);
    options.stale_if_error = entry.stale_if_error.map_or(Duration::ZERO, seconds);
    options.concurrency = entry
        .introspection_concurrency
        .unwrap_or(options.concurrency);
    options.timeout = entry
        .introspection_timeout_ms
        .map_or(options.timeout, millis);
    options.queue_wait = entry
        .introspection_queue_wait_ms
        .map_or(options.queue_wait, millis);
    if options.concurrency > MAX_INTROSPECTION_CONCURRENCY {
        return Err(format!(
            "introspection_concurrency is {}; at most {MAX_INTROSPECTION_CONCURRENCY} (each is a \
             thread)",
            options.concurrency
        ));
    }
    Ok(Some(options))
}

/// The most introspection calls in flight to one provider a file may ask for.
const MAX_INTROSPECTION_CONCURRENCY: usize = 256;

/// The routes and the fallback the file describes; each problem added to `problems`.
fn routes(
    policy: Option<PolicyEntry>,
    entries: Vec<RouteEntry>,
    at: &dyn Fn(Range<usize>) -> String,
    problems: &mut Vec<String>,
) -> Routes {
    let mut fallback = Fallback::Authenticated;
    if let Some(default) = policy.and_then(|policy| policy.default) {
        match default.get_ref().as_str() {
            "authenticated" => {}
            "deny" => fallback = Fallback::Deny,
            other => problems.push(format!(
                "{}: [policy] default is {other:?}: give \"authenticated\" (a valid token) or \
                 \"deny\"",
                at(default.span())
            )),
        }
    }
    if entries.len() > MAX_ROUTES {
        problems.push(format!(
            "{}: {} routes; a file has at most {MAX_ROUTES}",
            at(entries[MAX_ROUTES].name.span()),
            entries.len()
        ));
        return Routes::default();
    }
    let mut routes: Vec<Route> = Vec::with_capacity(entries.len());
    // Every name seen, loaded or not: a second route of a name is a problem even when the
    // first had another.
    let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
    for entry in entries {
        let name = entry.name.get_ref().clone();
        let here = format!("{}: route {name:?}", at(entry.name.span()));
        let mut bad = |why: String| problems.push(format!("{here}: {why}"));
        let named_well = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
        if !named_well {
            bad("a name is 1 to 64 letters, digits and - _ . : /".to_owned());
            continue;
        }
        if !names.insert(name.clone()) {
            bad("another route has this name: each is named once".to_owned());
            continue;
        }
        let path = match (entry.path, entry.path_prefix) {
            (Some(_), Some(_)) => {
                bad("it has both path and path_prefix: give one, or neither for every path".into());
                continue;
            }
            (Some(path), None) if path.starts_with('/') => PathMatch::Exact(path),
            (None, Some(prefix)) if prefix.starts_with('/') => PathMatch::Prefix(prefix),
            (None, None) => PathMatch::Any,
            _ => {
                bad("a path starts with /".to_owned());
                continue;
            }
        };
        let methods = entry.methods.unwrap_or_default();
        if let Some(method) = methods.iter().find(|method| !is_token(method)) {
            bad(format!(
                "method {method:?} is not an HTTP method (a token: GET, POST, ...)"
            ));
            continue;
        }
        let hosts: Vec<String> = entry
            .hosts
            .unwrap_or_default()
            .iter()
            .map(|host| host.to_ascii_lowercase())
            .collect();
        if let Some(host) = hosts.iter().find(|host| !is_host_pattern(host)) {
            bad(format!(
                "host {host:?} is not a host name, *.suffix or *: give names without a port"
            ));
            continue;
        }
        let public = entry.public.unwrap_or(false);
        let shadow = entry.shadow.unwrap_or(false);
        let scopes = entry.scopes.unwrap_or_default();
        if scopes
            .iter()
            .any(|scope| scope.is_empty() || scope.contains(' '))
        {
            bad("a scope is one word, not empty".to_owned());
            continue;
        }
        let token_optional = match entry.token.as_deref() {
            None | Some("required") => false,
            Some("optional") => true,
            Some(other) => {
                bad(format!(
                    "token is {other:?}: give \"required\" or \"optional\""
                ));
                continue;
            }
        };
        if public && (entry.allow.is_some() || !scopes.is_empty() || token_optional || shadow) {
            bad("a public route reads no token: it has no scopes, allow, shadow or token".into());
            continue;
        }
        if shadow && entry.allow.is_none() {
            bad("shadow = true needs a rule (allow) to try".to_owned());
            continue;
        }
        if token_optional && entry.allow.is_none() {
            bad("token = \"optional\" needs a rule (allow) to judge requests without one".into());
            continue;
        }
        let rule = match entry.allow {
            None => None,
            Some(allow) => match Rule::compile(allow.get_ref()) {
                Ok(rule) => Some(rule),
                Err(why) => {
                    problems.push(format!("{}: route {name:?}: {why}", at(allow.span())));
                    continue;
                }
            },
        };
        routes.push(Route {
            name,
            hosts,
            path,
            methods,
            scopes,
            public,
            token_optional,
            rule,
            shadow,
            last_error_logged: Default::default(),
            decisions: Default::default(),
        });
    }
    Routes { routes, fallback }
}

/// Whether `text` is an RFC 9110 token (a method).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `text` is a host name, `*.suffix` or `*`.
fn is_host_pattern(text: &str) -> bool {
    let name = text.strip_prefix("*.").unwrap_or(text);
    text == "*"
        || (!name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

/// Where the identity providers come from: the flags, and the providers file if there is one.
pub struct Providers {
    flags: Vec<ProviderOptions>,
    /// The providers file, when there is one.
    pub file: Option<PathBuf>,
}

impl Providers {
    pub fn of(config: &ServerConfig) -> Self {
        Self {
            flags: config.tokens.providers.clone(),
            file: config.providers_file.clone(),
        }
    }

    /// Every provider and the routes, the file read now; or its problems, one line each.
    pub fn read(&self) -> Result<(Vec<ProviderOptions>, Routes), Vec<String>> {
        match &self.file {
            None => Ok((self.flags.clone(), Routes::default())),
            Some(path) => {
                let file = read_all(path)?;
                Ok((merge(&self.flags, path, file.providers)?, file.routes))
            }
        }
    }
}

/// The providers given by flags and those `path` describes, together; a provider in both is
/// a problem, one line each.
fn merge(
    flags: &[ProviderOptions],
    path: &Path,
    file: Vec<FileProvider>,
) -> Result<Vec<ProviderOptions>, Vec<String>> {
    let conflicts: Vec<String> = file
        .iter()
        .filter(|p| flags.iter().any(|f| f.issuer == p.options.issuer))
        .map(|p| {
            format!(
                "{}:{}: issuer {} is also given by a flag (--oidc-issuer or --token-issuer): \
                 configure each provider once",
                path.display(),
                p.line,
                p.options.issuer
            )
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    Ok(flags
        .iter()
        .cloned()
        .chain(file.into_iter().map(|p| p.options))
        .collect())
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|b| *b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<Vec<FileProvider>, Vec<String>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("providers.toml");
        std::fs::write(&path, text).expect("write the file");
        read(&path).map_err(|problems| {
            let shown = path.display().to_string();
            problems
                .into_iter()
                .map(|p| p.replace(&shown, "FILE"))
                .collect()
        })
    }

    #[test]
    fn each_provider_gets_its_own_settings_and_paths_from_the_files_folder() {
        let providers = read_text(
            "[[provider]]\nissuer = \"https://id.example\"\naudiences = [\"a\", \"b\"]\n\
             leeway = 5\n\n[[provider]]\nissuer = \"ci\"\njwks_file = \"ci.json\"\n",
        )
        .expect("reads");
        assert_eq!(providers.len(), 2);
        assert_eq!(providers[0].options.keys, KeysFrom::Discovery);
        assert_eq!(providers[0].options.audiences, ["a", "b"]);
        assert_eq!(providers[0].options.leeway_seconds, 5);
        assert_eq!(providers[0].line, 2);
        assert_eq!(providers[1].line, 7);
        let KeysFrom::File(path) = &providers[1].options.keys else {
            panic!("a file");
        };
        assert!(path.ends_with("ci.json") && path.is_absolute(), "{path:?}");
        assert_eq!(providers[1].options.leeway_seconds, DEFAULT_LEEWAY_SECONDS);
    }

    #[test]
    fn an_introspecting_provider_reads_its_settings_and_without_keys_has_none() {
        let providers = read_text(
            "[[provider]]\nissuer = \"https://hydra\"\nintrospection_url = \"https://hydra/i\"\n\
             client_id = \"g\"\nclient_secret_file = \"g.secret\"\ntoken_prefix = \"ory_at_\"\n\
             introspection_cache = 30\ninactive_cache = 2\nstale_if_error = 600\n\
             introspection_concurrency = 16\nintrospection_timeout_ms = 750\n\
             introspection_queue_wait_ms = 100\n\n\
             [[provider]]\nissuer = \"https://kc\"\nintrospection = true\nclient_id = \"g\"\n\
             client_secret_file = \"g.secret\"\n",
        )
        .expect("reads");
        let hydra = &providers[0].options;
        assert_eq!(hydra.keys, KeysFrom::None, "introspected only");
        let i = hydra.introspection.as_ref().expect("introspects");
        assert_eq!(
            i.endpoint,
            IntrospectionEndpoint::Url("https://hydra/i".into())
        );
        assert_eq!(i.token_prefix.as_deref(), Some("ory_at_"));
        assert_eq!(i.cache, Duration::from_secs(30));
        assert_eq!(i.inactive_cache, Duration::from_secs(2));
        assert_eq!(i.stale_if_error, Duration::from_secs(600));
        assert_eq!(i.concurrency, 16);
        assert_eq!(i.timeout, Duration::from_millis(750));
        assert_eq!(i.queue_wait, Duration::from_millis(100));
        assert!(i.client_secret_file.ends_with("g.secret"));
        let keycloak = &providers[1].options;
        assert_eq!(keycloak.keys, KeysFrom::Discovery, "its JWTs too");
        let i = keycloak.introspection.as_ref().expect("introspects");
        assert_eq!(i.endpoint, IntrospectionEndpoint::Discovery);
        assert_eq!(i.stale_if_error, Duration::ZERO);
    }

    #[test]
    fn every_problem_names_the_file_and_the_line() {
        let cases = [
            (
                "[[provider]]\nissuer = \"https://a\"\naudience = \"x\"\n",
                "FILE:3: unknown field `audience`",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\nleeway = -1\n",
                "FILE:3:",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\nleeway = \"30s\"\n",
                "FILE:3:",
            ),
            ("[[provider]]\nissuer = \"https://a\n", "FILE:2:"),
            ("[[provider]]\naudiences = []\n", "missing field `issuer`"),
            ("[provider]\nissuer = \"https://a\"\n", "FILE:1:"),
            ("title = \"x\"\n", "FILE:1: unknown field `title`"),
            ("", "FILE: no [[provider]]"),
            (
                "[[provider]]\nissuer = \"http://id.example\"\n",
                "FILE:2: issuer http://id.example: keys are fetched over https only",
            ),
            (
                "[[provider]]\n\nissuer = \"x\"\njwks_url = \"u\"\njwks_file = \"f\"\n",
                "FILE:3: issuer x has both",
            ),
            (
                "[[provider]]\nissuer = \"x\"\njwks_file = \"f\"\nca_cert = \"c\"\n",
                "FILE:2: issuer x: a CA certificate is for fetched keys",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\n[[provider]]\nissuer = \"https://a\"\n",
                "FILE:4: issuer https://a is already a provider at line 2",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\nclient_id = \"g\"\n",
                "FILE:2: issuer https://a: client_id is for introspection",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\nintrospection = true\n",
                "introspection needs client_id and client_secret_file",
            ),
            (
                "[[provider]]\nissuer = \"https://a\"\nintrospection = true\n\
                 introspection_url = \"https://a/i\"\nclient_id = \"g\"\nclient_secret_file = \"s\"\n",
                "introspection = true finds the endpoint by discovery",
            ),
            (
                "[[provider]]\nissuer = \"x\"\njwks_file = \"f\"\nintrospection = true\n\
                 client_id = \"g\"\nclient_secret_file = \"s\"\n",
                "give introspection_url instead",
            ),
            (
                "[[provider]]\nissuer = \"x\"\nintrospection_url = \"http://id.example/i\"\n\
                 client_id = \"g\"\nclient_secret_file = \"s\"\n",
                "introspection_url http://id.example/i of issuer x: keys are fetched over https",
            ),
            (
                "[[provider]]\nissuer = \"x\"\nintrospection_url = \"https://x/i\"\n\
                 client_id = \"g\"\nclient_secret_file = \"s\"\nintrospection_concurrency = 0\n",
                "introspection_concurrency is 0",
            ),
            (
                "[[provider]]\nissuer = \"x\"\nintrospection_url = \"https://x/i\"\n\
                 client_id = \"g\"\nclient_secret_file = \"s\"\ntoken_prefix = \"a b\"\n",
                "token_prefix \"a b\" is not the start of a token",
            ),
            (
                "[[provider]]\nissuer = \"x\"\nintrospection_url = \"https://x/i\"\n\
                 client_id = \"g\"\nclient_secret_file = \"s\"\n\
                 [[provider]]\nissuer = \"y\"\nintrospection_url = \"https://y/i\"\n\
                 client_id = \"g\"\nclient_secret_file = \"s\"\n",
                "issuers x and y both introspect any token",
            ),
            (
                "[[provider]]\nissuer = \"x\"\nintrospection_url = \"https://x/i\"\n\
                 client_id = \"g\"\nclient_secret_file = \"s\"\ntoken_prefix = \"ory_\"\n\
                 [[provider]]\nissuer = \"y\"\nintrospection_url = \"https://y/i\"\n\
                 client_id = \"g\"\nclient_secret_file = \"s\"\ntoken_prefix = \"ory_at_\"\n",
                "both introspect tokens starting \"ory_at_\"",
            ),
        ];
        for (text, expected) in cases {
            let problems = read_text(text).expect_err(text);
            assert_eq!(problems.len(), 1, "{text:?}: {problems:?}");
            assert!(
                problems[0].starts_with(expected) || problems[0].contains(expected),
                "{text:?}: {problems:?}, expected {expected:?}"
            );
            assert!(!problems[0].contains('\n'), "one line: {problems:?}");
        }
    }
}
