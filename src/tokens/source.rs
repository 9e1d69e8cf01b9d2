//! Where the key set comes from, and when it is loaded again. Every load after the first runs on
//! one background thread, so neither a slow identity provider nor a slow disk ever holds up a
//! thread that serves calls; callers that need the result (a token naming an unknown kid) wait
//! for it as a future.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use super::keys::{KeySet, Parsed};
use super::TokenError;
use crate::availability::Availability;

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
    /// An identity provider's `jwks_uri`.
    Url { url: String, agent: ureq::Agent },
}

impl Location {
    /// A file location.
    pub fn file(path: &Path) -> Self {
        Self::File(path.to_owned())
    }

    /// A URL location, checked; `ca_cert` replaces the system roots for https.
    pub fn url(url: &str, ca_cert: Option<&Path>) -> Result<Self, TokenError> {
        let bad = |why: &str| TokenError(format!("--jwks-url {url}: {why}"));
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|_| bad("not a URL, e.g. https://id.example/.well-known/jwks.json"))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") => log::warn!(
                "the key set is fetched over plain http from {url}: anyone on the path can \
                 replace the keys; use https outside tests"
            ),
            _ => return Err(bad("only http and https URLs are fetched")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("the URL names no host"));
        }
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
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            .tls_config(tls)
            .user_agent(concat!("mrmat-rust-api-grpc/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self::Url {
            url: url.to_owned(),
            agent,
        })
    }

    /// Reads the key set document.
    fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            Self::File(path) => std::fs::read(path).map_err(|e| format!("cannot read: {e}")),
            Self::Url { agent, .. } => {
                let mut response = agent
                    .get(self.to_string())
                    .header("Accept", "application/json")
                    .call()
                    .map_err(|e| format!("cannot fetch: {e}"))?;
                response
                    .body_mut()
                    .with_config()
                    .limit(MAX_DOCUMENT_BYTES)
                    .read_to_vec()
                    .map_err(|e| format!("cannot read the answer: {e}"))
            }
        }
    }

    fn is_url(&self) -> bool {
        matches!(self, Self::Url { .. })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url { url, .. } => f.write_str(url),
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

struct Shared {
    location: Location,
    current: RwLock<Option<Arc<KeySet>>>,
    loads: Mutex<Loads>,
    /// Up from the first key set loaded on; a key set is never unloaded.
    loaded: Availability,
}

impl Shared {
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
        let result = self.location.read().and_then(|bytes| KeySet::parse(&bytes));
        let outcome = match result {
            Ok(parsed) => {
                self.install(parsed, why);
                Ok(())
            }
            Err(e) => Err(e),
        };
        crate::metrics::key_set_load(outcome.is_ok());
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
                keys.generation = current.as_ref().map_or(0, |old| old.generation + 1);
                *current = Some(Arc::new(keys));
            }
            changed
        };
        if changed {
            let current = self.current();
            let keys = current.as_ref().expect("just installed");
            log::info!(
                "signing keys loaded from {} ({why}): {} usable, kids [{}]",
                self.location,
                keys.len(),
                keys.kids().join(", ")
            );
            for reason in skipped {
                log::warn!("signing key left out of {}: {reason}", self.location);
            }
        } else {
            log::debug!("signing keys from {} ({why}): unchanged", self.location);
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
    shared: Arc<Shared>,
    wake: mpsc::Sender<()>,
}

impl KeySource {
    /// Loads the key set from `location` once, then keeps it loaded: a URL every `refresh`.
    /// A file must load now; a URL that fails now is tried again in the background, and
    /// [`KeySource::loaded`] turns up once the first key set is in (at once when it is now).
    pub fn start(location: Location, refresh: Duration) -> Result<Self, TokenError> {
        let shared = Arc::new(Shared {
            location,
            current: RwLock::new(None),
            loads: Mutex::default(),
            loaded: Availability::down(),
        });
        let first = shared.load("at start");
        if let Err(why) = &first {
            if !shared.location.is_url() {
                return Err(TokenError(format!(
                    "--jwks-file {}: {why}",
                    shared.location
                )));
            }
            log::warn!(
                "no signing keys from {} yet: {why}; TokenV1Proto is NOT_SERVING until they load",
                shared.location
            );
        }
        let (wake, woken) = mpsc::channel();
        let background = Arc::clone(&shared);
        let scheduled = background.location.is_url().then_some(refresh);
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

    /// Whether a key set has been loaded, now.
    pub fn is_loaded(&self) -> bool {
        self.shared.loaded.is_up()
    }

    /// Where the keys come from.
    pub fn location(&self) -> String {
        self.shared.location.to_string()
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
fn run(shared: &Shared, woken: &mpsc::Receiver<()>, refresh: Option<Duration>, loaded: bool) {
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
                    None => "TokenV1Proto stays NOT_SERVING".to_owned(),
                };
                log::warn!(
                    "cannot load signing keys from {}: {e}; {kept}",
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
