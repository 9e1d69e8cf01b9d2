//! Where the key set comes from, and when it is loaded again. Every load after the first runs on
//! one background thread, so neither a slow identity provider nor a slow disk ever holds up a
//! thread that serves calls; callers that need the result (a token naming an unknown kid) wait
//! for it as a future.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use super::keys::{KeySet, Parsed};
use super::options::fetchable;
use super::{KeysFrom, ProviderOptions, TokenError};
use crate::availability::Availability;
use crate::quote::quoted;

/// Loads asked for by tokens naming an unknown kid happen at most this often, so that tokens
/// with made-up kids cannot make the server hammer the disk or the identity provider.
pub const UNKNOWN_KID_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// How long one fetch of a key set URL may take, connecting included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest key set document read; real ones are a few KiB.
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// After a failed fetch the next one comes this soon, doubling up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Where a key set is read from.
pub(super) enum Location {
    /// A local file.
    File(PathBuf),
    /// A key set URL.
    Url { url: String, agent: ureq::Agent },
    /// The `jwks_uri` of an issuer's OpenID configuration, whose `issuer` must be this one.
    Discovery { issuer: String, agent: ureq::Agent },
}

impl Location {
    /// Where `provider`'s keys come from, its URLs checked; `ca_cert` replaces the system
    /// roots for https. None for a provider without keys (its tokens are introspected).
    pub fn of(provider: &ProviderOptions) -> Result<Option<Self>, TokenError> {
        if let Some(problem) = provider.problems().into_iter().next() {
            return Err(TokenError(problem));
        }
        let new_agent = || agent(provider.ca_cert.as_deref(), FETCH_TIMEOUT);
        Ok(Some(match &provider.keys {
            KeysFrom::None => return Ok(None),
            KeysFrom::File(path) => Self::File(path.clone()),
            KeysFrom::Url(url) => Self::Url {
                url: url.clone(),
                agent: new_agent()?,
            },
            KeysFrom::Discovery => Self::Discovery {
                issuer: provider.issuer.clone(),
                agent: new_agent()?,
            },
        }))
    }

    /// Reads the key set document, and with discovery the introspection endpoint named beside
    /// it.
    fn read(&self) -> Result<(Vec<u8>, Option<String>), String> {
        match self {
            Self::File(path) => std::fs::read(path)
                .map(|bytes| (bytes, None))
                .map_err(|e| format!("cannot read: {e}")),
            Self::Url { agent, url } => fetch(agent, url).map(|bytes| (bytes, None)),
            Self::Discovery { issuer, agent } => {
                let found = discover(agent, issuer)?;
                let jwks_uri = found.jwks_uri;
                fetch(agent, &jwks_uri)
                    .map(|bytes| (bytes, found.introspection_endpoint))
                    .map_err(|e| format!("jwks_uri {jwks_uri}: {e}"))
            }
        }
    }

    fn is_fetched(&self) -> bool {
        !matches!(self, Self::File(_))
    }

    fn is_discovery(&self) -> bool {
        matches!(self, Self::Discovery { .. })
    }
}

/// An HTTP client for fetching keys: a timeout on the whole fetch, no redirects (a redirect
/// could leave https; configure the URL it names instead), `ca_cert` or the system's roots.
pub(super) fn agent(ca_cert: Option<&Path>, timeout: Duration) -> Result<ureq::Agent, TokenError> {
    let roots = match ca_cert {
        None => ureq::tls::RootCerts::PlatformVerifier,
        Some(path) => {
            let pem = crate::tls::read_certificates(path)
                .map_err(|e| TokenError(format!("--jwks-ca-cert {e}")))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            ureq::tls::RootCerts::new_with_certs(&certs)
        }
    };
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(roots)
        .build();
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .tls_config(tls)
        .user_agent(concat!("mrmat-rust-api-grpc/", env!("CARGO_PKG_VERSION")))
        .build()
        .into())
}

/// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`].
fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>, String> {
    let mut response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| format!("cannot fetch: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_vec()
        .map_err(|e| format!("cannot read the answer: {e}"))
}

/// What discovery found: where the keys are, and the introspection endpoint when named.
struct Discovered {
    jwks_uri: String,
    introspection_endpoint: Option<String>,
}

/// The `jwks_uri` of `issuer`'s OpenID configuration (OpenID Connect Discovery 1.0, section 4),
/// once its `issuer` is found equal to ours (section 4.3): a document naming another issuer is
/// never trusted. Its `introspection_endpoint` (RFC 8414) too, when it names one this server
/// may call.
fn discover(agent: &ureq::Agent, issuer: &str) -> Result<Discovered, String> {
    let url = discovery_url(issuer);
    let document = fetch(agent, &url).map_err(|e| format!("{url}: {e}"))?;
    let document: serde_json::Value = serde_json::from_slice(&document)
        .map_err(|e| format!("{url}: not an OpenID configuration: not JSON ({e})"))?;
    match document.get("issuer").and_then(serde_json::Value::as_str) {
        Some(named) if named == issuer => {}
        Some(named) => {
            return Err(format!(
                "{url} names the issuer {}, not {issuer}: a configuration for another issuer                  is never trusted (OpenID Connect Discovery 1.0, 4.3); its tokens are not                  valid until it names {issuer}",
                quoted(named)
            ))
        }
        None => return Err(format!("{url}: not an OpenID configuration: no issuer")),
    }
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("{url}: the OpenID configuration has no jwks_uri"))?;
    fetchable(jwks_uri).map_err(|why| format!("{url}: jwks_uri {}: {why}", quoted(jwks_uri)))?;
    let introspection_endpoint = document
        .get("introspection_endpoint")
        .and_then(serde_json::Value::as_str)
        .filter(|endpoint| match fetchable(endpoint) {
            Ok(()) => true,
            Err(why) => {
                log::warn!(
                    "{url}: introspection_endpoint {} is not used: {why}",
                    quoted(endpoint)
                );
                false
            }
        })
        .map(str::to_owned);
    Ok(Discovered {
        jwks_uri: jwks_uri.to_owned(),
        introspection_endpoint,
    })
}

/// `ISSUER/.well-known/openid-configuration`, a trailing `/` of the issuer removed first.
pub(super) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url { url, .. } => f.write_str(url),
            Self::Discovery { issuer, .. } => write!(f, "{}", discovery_url(issuer)),
        }
    }
}

/// Resolves when a key set load that was asked for has finished, whether or not it succeeded.
pub struct KeyReload(oneshot::Receiver<()>);

impl std::future::Future for KeyReload {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        // A dropped sender means the loader has gone: nothing more to wait for either way.
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// What loads have been asked for.
#[derive(Default)]
struct Loads {
    /// A load is asked for and has not started.
    requested: bool,
    /// A load is running.
    running: bool,
    /// Callers waiting for the running or next load to finish.
    waiters: Vec<oneshot::Sender<()>>,
    /// When a token's unknown kid last asked for a load.
    last_for_unknown_kid: Option<Instant>,
}

/// Generations of installed key sets, unique across every provider and reload, so that a cached
/// validation names exactly the key set that verified it.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

struct KeySourceState {
    /// The provider's issuer: its keys verify its tokens only.
    issuer: String,
    location: Location,
    /// The generation of the key set loaded now; 0 before the first.
    generation: AtomicU64,
    current: RwLock<Option<Arc<KeySet>>>,
    loads: Mutex<Loads>,
    /// Up from the first key set loaded on; a key set is never unloaded.
    loaded: Availability,
    /// The introspection endpoint the last discovery named.
    introspection_endpoint: Arc<RwLock<Option<String>>>,
}

impl KeySourceState {
    fn loads(&self) -> std::sync::MutexGuard<'_, Loads> {
        // Only flags and a list are changed under the lock: consistent even after a panic.
        self.loads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads and installs the key set; on failure keeps the one loaded before. Then wakes the
    /// callers that waited for a load.
    fn load(&self, why: &str) -> Result<(), String> {
        {
            let mut loads = self.loads();
            loads.requested = false;
            loads.running = true;
        }
        let result = self.location.read().and_then(|(bytes, endpoint)| {
            KeySet::parse(&bytes)
                .map(|parsed| (parsed, endpoint))
                .map_err(|e| e.to_string())
        });
        let outcome = match result {
            Ok((parsed, endpoint)) => {
                if self.location.is_discovery() {
                    *self
                        .introspection_endpoint
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = endpoint;
                }
                self.install(parsed, why);
                Ok(())
            }
            Err(e) => Err(e),
        };
        crate::metrics::key_set_load(&self.issuer, outcome.is_ok());
        let waiters = {
            let mut loads = self.loads();
            loads.running = false;
            std::mem::take(&mut loads.waiters)
        };
        for waiter in waiters {
            let _ = waiter.send(());
        }
        outcome
    }

    fn install(&self, parsed: Parsed, why: &str) {
        let Parsed { mut keys, skipped } = parsed;
        let changed = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            let changed = !current.as_ref().is_some_and(|old| old.same_keys(&keys));
            if changed {
                keys.generation = GENERATIONS.fetch_add(1, Ordering::Relaxed);
                self.generation.store(keys.generation, Ordering::Release);
                *current = Some(Arc::new(keys));
            }
            changed
        };
        if changed {
            let current = self.current();
            let keys = current.as_ref().expect("just installed");
            // Key ids are the provider's choice: quoted and cut, as a token's claims are.
            let kids: Vec<String> = keys.kids().iter().take(20).map(|k| quoted(k)).collect();
            let more = keys.kids().len().saturating_sub(kids.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            log::info!(
                "signing keys loaded for {} from {} ({why}): {} usable, kids [{}]{more}",
                self.issuer,
                self.location,
                keys.len(),
                kids.join(", ")
            );
            if !skipped.is_empty() {
                log::warn!(
                    "signing keys of {} left out of {}: {}",
                    self.issuer,
                    self.location,
                    super::keys::first_reasons(&skipped)
                );
            }
        } else {
            log::debug!(
                "signing keys of {} from {} ({why}): unchanged",
                self.issuer,
                self.location
            );
        }
        self.loaded.set(true);
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The loaded key set and the thread that loads it again. Dropping it stops the thread.
pub(super) struct KeySource {
    shared: Arc<KeySourceState>,
    wake: mpsc::Sender<()>,
}

impl KeySource {
    /// Loads `issuer`'s key set from `location` once, then keeps it loaded: fetched keys every
    /// `refresh`. A file must load now; a fetch that fails now is tried again in the background,
    /// and [`KeySource::loaded`] turns up once the first key set is in (at once when it is now).
    pub fn start(issuer: &str, location: Location, refresh: Duration) -> Result<Self, TokenError> {
        let shared = Arc::new(KeySourceState {
            issuer: issuer.to_owned(),
            location,
            generation: AtomicU64::new(0),
            current: RwLock::new(None),
            loads: Mutex::default(),
            loaded: Availability::down(),
            introspection_endpoint: Arc::default(),
        });
        let first = shared.load("at start");
        if let Err(why) = &first {
            if !shared.location.is_fetched() {
                return Err(TokenError(format!(
                    "jwks_file {} of {issuer}: {why}",
                    shared.location
                )));
            }
            log::warn!(
                "no signing keys of {issuer} yet from {}: {why}; its tokens are answered \
                 UNAVAILABLE until they load",
                shared.location
            );
        }
        let (wake, woken) = mpsc::channel();
        let background = Arc::clone(&shared);
        let scheduled = background.location.is_fetched().then_some(refresh);
        thread::Builder::new()
            .name("jwks-loader".to_owned())
            .spawn(move || run(&background, &woken, scheduled, first.is_ok()))
            .map_err(|e| TokenError(format!("cannot start the key loader thread: {e}")))?;
        Ok(Self { shared, wake })
    }

    /// The key set loaded now; None until the first load succeeds.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.shared.current()
    }

    /// Whether a key set has been loaded, shared with whoever watches it.
    pub fn loaded(&self) -> Availability {
        self.shared.loaded.clone()
    }

    /// The introspection endpoint discovery found last, shared: None before it has, or when
    /// the configuration names none.
    pub fn introspection_endpoint(&self) -> Arc<RwLock<Option<String>>> {
        Arc::clone(&self.shared.introspection_endpoint)
    }

    /// Whether a key set has been loaded, now.
    pub fn is_loaded(&self) -> bool {
        self.shared.loaded.is_up()
    }

    /// The generation of the key set loaded now (an atomic load); 0 before the first.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Asks for a load (SIGHUP); it runs in the background.
    pub fn reload(&self) {
        let mut loads = self.shared.loads();
        if !loads.requested {
            loads.requested = true;
            let _ = self.wake.send(());
        }
    }

    /// Asks for a load because a token names a kid that is not loaded: joins a load already
    /// asked for or running, or starts one unless one was started this way less than
    /// [`UNKNOWN_KID_RELOAD_INTERVAL`] ago. None when no load will come soon.
    pub fn reload_for_unknown_kid(&self) -> Option<KeyReload> {
        let mut loads = self.shared.loads();
        if !loads.requested && !loads.running {
            let recent = loads
                .last_for_unknown_kid
                .is_some_and(|at| at.elapsed() < UNKNOWN_KID_RELOAD_INTERVAL);
            if recent {
                return None;
            }
            loads.last_for_unknown_kid = Some(Instant::now());
            loads.requested = true;
            self.wake.send(()).ok()?;
        }
        let (done, wait) = oneshot::channel();
        loads.waiters.push(done);
        Some(KeyReload(wait))
    }
}

/// The loader thread: loads when asked, and on schedule for a URL (sooner after a failure).
fn run(
    shared: &KeySourceState,
    woken: &mpsc::Receiver<()>,
    refresh: Option<Duration>,
    loaded: bool,
) {
    let mut retry = FIRST_RETRY;
    let mut next = refresh.map(|every| Instant::now() + if loaded { every } else { retry });
    loop {
        let asked = match next {
            Some(at) => woken.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => woken
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        let why = match asked {
            Ok(()) => "asked for",
            Err(mpsc::RecvTimeoutError::Timeout) => "scheduled",
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match shared.load(why) {
            Ok(()) => {
                retry = FIRST_RETRY;
                next = refresh.map(|every| Instant::now() + every);
            }
            Err(e) => {
                let kept = match shared.current() {
                    Some(keys) => format!("keeping the {} keys loaded before", keys.len()),
                    None => "its tokens are still answered UNAVAILABLE".to_owned(),
                };
                log::warn!(
                    "cannot load signing keys of {} from {}: {e}; {kept}",
                    shared.issuer,
                    shared.location
                );
                if let Some(every) = refresh {
                    next = Some(Instant::now() + retry.min(every));
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }
}
