//! Opaque tokens, judged by asking their provider (OAuth 2.0 Token Introspection, RFC 7662),
//! without letting a flood of tokens hurt the provider or slow good tokens:
//!
//! - one call per token however many ask at once (the others wait for its answer);
//! - at most `concurrency` calls in flight, each on a thread of its own, so no thread that serves
//!   calls ever waits for the provider;
//! - a question beyond those waits at most `queue_wait` (and at most [`MAX_WAITING`] wait), then
//!   cannot be judged;
//! - after 5 failed calls in a row, none is made for a while (0.5 s, doubling to 30 s while it
//!   keeps failing; then one call tries it): a struggling provider is not asked about every
//!   token a flood brings;
//! - the endpoint's failures are one warn line a minute, not one per request.
//!
//! Answers are cached by the verifier (`super::cache`), active and inactive alike, by the hook
//! the first asker gives: it runs before the waiters are answered, so that a question asked
//! after the answer finds it cached and never makes a second call.

mod answer;
mod call;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{BoxFuture, FutureExt as _};

pub(super) use answer::Introspected;

use super::cache::Key;
use super::claims::Rules;
use super::{IntrospectionEndpoint, IntrospectionOptions, Refusal, TokenError, Verdict};

/// Whether the client secret of `options` can be read (`--check-config`), or why not.
pub fn check_client_secret(options: &IntrospectionOptions) -> Result<(), String> {
    call::read_secret(&options.client_secret_file).map(|_| ())
}

/// Questions waiting for a free call, at most, per provider: beyond them a question cannot be
/// judged at once (the memory a flood holds stays bounded, and its answer comes now).
const MAX_WAITING: usize = 1024;

/// After this many failed calls in a row, calls are held off: a struggling endpoint is not
/// asked about every token (a flood of them would be a flood at the provider).
const FAILURES_BEFORE_HOLD_OFF: u32 = 5;

/// The first hold-off, doubling while the endpoint keeps failing, up to the last.
const FIRST_HOLD_OFF: Duration = Duration::from_millis(500);
const LONGEST_HOLD_OFF: Duration = Duration::from_secs(30);

/// The endpoint's failures are warned of at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What asking came to: the provider's answer as judged, or why it could not judge (always
/// [`Verdict::Unavailable`]).
pub(super) type Judged = Result<Arc<Introspected>, Refusal>;

/// What the asker does with an answer before anyone is given it (caches it).
pub(super) type Remember = Box<dyn FnOnce(&Judged) + Send>;

/// Where the endpoint is: named, or found by discovery (None until it has been).
pub(super) enum Endpoint {
    Fixed(String),
    Discovered(Arc<RwLock<Option<String>>>),
}

impl Endpoint {
    fn url(&self) -> Option<String> {
        match self {
            Self::Fixed(url) => Some(url.clone()),
            Self::Discovered(found) => found.read().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }
}

/// A question waiting for a call.
struct Job {
    key: Key,
    token: String,
    deadline: Instant,
    remember: Remember,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    /// Who waits for each token's answer, from its question until the answer.
    asked: HashMap<Key, Vec<oneshot::Sender<Judged>>>,
    stopping: bool,
}

/// When the endpoint last failed and was warned of.
#[derive(Default)]
struct Health {
    failing: bool,
    warned_at: Option<Instant>,
    failures_since_warned: u64,
    /// Calls failed in a row.
    failures_in_a_row: u32,
    /// While the endpoint keeps failing, no call is made before this (one then tries it).
    held_off_until: Option<Instant>,
    /// How long the next hold-off lasts.
    hold_off: Duration,
}

struct Shared {
    issuer: String,
    rules: Rules,
    endpoint: Endpoint,
    agent: ureq::Agent,
    client_id: String,
    /// `Basic ...`, made from the secret file; replaced when it is read again.
    authorization: RwLock<String>,
    queue: Mutex<Queue>,
    /// Wakes a worker: a job is waiting.
    work: Condvar,
    /// Wakes the timer: the first job's deadline may have changed.
    timer: Condvar,
    queue_wait: Duration,
    health: Mutex<Health>,
}

/// One provider's introspection: its endpoint, credentials and calls. Dropping it stops its
/// threads (a call in flight finishes first).
pub(super) struct Introspector {
    shared: Arc<Shared>,
    secret_file: std::path::PathBuf,
}

impl Introspector {
    /// Starts `issuer`'s introspection: its secret read now (a problem stops the start), its
    /// `concurrency` callers and timer started.
    pub fn start(
        issuer: &str,
        options: &IntrospectionOptions,
        rules: Rules,
        ca_cert: Option<&std::path::Path>,
        discovered: Option<Arc<RwLock<Option<String>>>>,
    ) -> Result<Self, TokenError> {
        let secret = call::read_secret(&options.client_secret_file)
            .map_err(|why| TokenError(format!("issuer {issuer}: {why}")))?;
        let endpoint = match (&options.endpoint, discovered) {
            (IntrospectionEndpoint::Url(url), _) => Endpoint::Fixed(url.clone()),
            (IntrospectionEndpoint::Discovery, Some(found)) => Endpoint::Discovered(found),
            (IntrospectionEndpoint::Discovery, None) => {
                return Err(TokenError(format!(
                    "issuer {issuer}: introspection by discovery needs keys by discovery"
                )))
            }
        };
        let shared = Arc::new(Shared {
            issuer: issuer.to_owned(),
            rules,
            endpoint,
            agent: super::source::agent(ca_cert, options.timeout)?,
            client_id: options.client_id.clone(),
            authorization: RwLock::new(call::basic_authorization(&options.client_id, &secret)),
            queue: Mutex::default(),
            work: Condvar::new(),
            timer: Condvar::new(),
            queue_wait: options.queue_wait,
            health: Mutex::default(),
        });
        for n in 0..options.concurrency {
            let worker = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("introspect-{n}"))
                .spawn(move || worker.work())
                .map_err(|e| TokenError(format!("cannot start an introspection thread: {e}")))?;
        }
        let timer = Arc::clone(&shared);
        thread::Builder::new()
            .name("introspect-timer".to_owned())
            .spawn(move || timer.expire())
            .map_err(|e| TokenError(format!("cannot start an introspection thread: {e}")))?;
        Ok(Self {
            shared,
            secret_file: options.client_secret_file.clone(),
        })
    }

    /// Reads the client secret again (SIGHUP); a file that no longer reads keeps the old one.
    pub fn reload_secret(&self) {
        match call::read_secret(&self.secret_file) {
            Ok(secret) => {
                *self
                    .shared
                    .authorization
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) =
                    call::basic_authorization(&self.shared.client_id, &secret);
            }
            Err(why) => log::warn!(
                "issuer {}: {why}; keeping the client secret read before",
                self.shared.issuer
            ),
        }
    }

    /// Asks the provider about `token` (known by `key`, its SHA-256): joins a question already
    /// asked of it, or waits for a free call. A call's answer goes to `remember` of the question
    /// that made it before it goes to anyone.
    pub fn ask(&self, key: Key, token: &str, remember: Remember) -> BoxFuture<'static, Judged> {
        if let Some(left) = self.shared.held_off() {
            crate::metrics::introspection(&self.shared.issuer, "held_off", None);
            return futures::future::ready(Err(Refusal::new(
                Verdict::Unavailable,
                format!(
                    "{}'s introspection endpoint keeps failing: it is asked again in {} ms; ask \
                     again later",
                    self.shared.issuer,
                    left.as_millis()
                ),
            )))
            .boxed();
        }
        let (answer, wait) = oneshot::channel();
        {
            let mut queue = self.shared.queue();
            if let Some(waiters) = queue.asked.get_mut(&key) {
                waiters.push(answer);
            } else if queue.waiting.len() >= MAX_WAITING {
                drop(queue);
                crate::metrics::introspection(&self.shared.issuer, "busy", None);
                return futures::future::ready(Err(self.shared.busy())).boxed();
            } else {
                queue.asked.insert(key, vec![answer]);
                let first = queue.waiting.is_empty();
                queue.waiting.push_back(Job {
                    key,
                    token: token.to_owned(),
                    deadline: Instant::now() + self.shared.queue_wait,
                    remember,
                });
                self.shared.work.notify_one();
                if first {
                    self.shared.timer.notify_one();
                }
            }
        }
        let issuer = self.shared.issuer.clone();
        wait.map(move |answered| {
            answered.unwrap_or_else(|_| {
                Err(Refusal::new(
                    Verdict::Unavailable,
                    format!("the introspection of {issuer}'s token was stopped; ask again"),
                ))
            })
        })
        .boxed()
    }
}

impl Drop for Introspector {
    fn drop(&mut self) {
        self.shared.queue().stopping = true;
        self.shared.work.notify_all();
        self.shared.timer.notify_all();
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Lists and flags only: consistent even after a panic.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn busy(&self) -> Refusal {
        Refusal::new(
            Verdict::Unavailable,
            format!(
                "too many tokens of {} are waiting for introspection; ask again later",
                self.issuer
            ),
        )
    }

    /// Gives `judged` to every caller waiting for `key`'s answer.
    fn answer(&self, key: &Key, judged: &Judged) {
        let waiters = self.queue().asked.remove(key).unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send(judged.clone());
        }
    }

    /// A caller thread: takes the first waiting job whose deadline has not passed, and calls.
    fn work(&self) {
        loop {
            let job = {
                let mut queue = self.queue();
                loop {
                    if queue.stopping {
                        return;
                    }
                    if let Some(job) = queue.waiting.pop_front() {
                        break job;
                    }
                    queue = self
                        .work
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            if job.deadline <= Instant::now() {
                crate::metrics::introspection(&self.issuer, "busy", None);
                self.answer(&job.key, &Err(self.busy()));
                continue;
            }
            let judged = self.call(&job.token);
            (job.remember)(&judged);
            self.answer(&job.key, &judged);
        }
    }

    /// The timer thread: answers the jobs whose wait has run out while every caller was busy.
    fn expire(&self) {
        let mut queue = self.queue();
        loop {
            if queue.stopping {
                return;
            }
            let now = Instant::now();
            let mut expired = Vec::new();
            while queue.waiting.front().is_some_and(|job| job.deadline <= now) {
                expired.extend(queue.waiting.pop_front());
            }
            if !expired.is_empty() {
                drop(queue);
                let busy = Err(self.busy());
                for job in expired {
                    crate::metrics::introspection(&self.issuer, "busy", None);
                    self.answer(&job.key, &busy);
                }
                queue = self.queue();
                continue;
            }
            let next = queue.waiting.front().map(|job| job.deadline);
            queue = match next {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.timer
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .timer
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// One call to the endpoint, judged.
    fn call(&self, token: &str) -> Judged {
        let Some(url) = self.endpoint.url() else {
            return Err(Refusal::new(
                Verdict::Unavailable,
                format!(
                    "{}'s introspection endpoint is not known yet (its OpenID configuration has \
                     not loaded, or names no introspection_endpoint); ask again later",
                    self.issuer
                ),
            ));
        };
        let authorization = self
            .authorization
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let started = Instant::now();
        let answered =
            call::introspect(&self.agent, &url, &authorization, token).and_then(|members| {
                answer::judge(members, &self.issuer, &self.rules, crate::time::unix_now())
            });
        let seconds = Some(started.elapsed().as_secs_f64());
        match answered {
            Ok(introspected) => {
                let outcome = match &introspected {
                    Introspected::Active(_) => "active",
                    Introspected::Refused(r) if r.verdict == Verdict::Inactive => "inactive",
                    Introspected::Refused(_) => "refused",
                };
                crate::metrics::introspection(&self.issuer, outcome, seconds);
                self.healthy(&url);
                Ok(Arc::new(introspected))
            }
            Err(why) => {
                crate::metrics::introspection(&self.issuer, "failed", seconds);
                self.failed(&url, &why);
                Err(Refusal::new(
                    Verdict::Unavailable,
                    format!(
                        "{}'s introspection endpoint cannot judge the token now: {why}; ask again \
                         later",
                        self.issuer
                    ),
                ))
            }
        }
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long calls are still held off, if they are.
    fn held_off(&self) -> Option<Duration> {
        let health = self.health();
        let until = health.held_off_until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn healthy(&self, url: &str) {
        let mut health = self.health();
        health.failures_in_a_row = 0;
        health.held_off_until = None;
        health.hold_off = FIRST_HOLD_OFF;
        if health.failing {
            health.failing = false;
            log::info!(
                "the introspection endpoint {url} of {} answers again",
                self.issuer
            );
        }
    }

    fn failed(&self, url: &str, why: &str) {
        let mut health = self.health();
        health.failing = true;
        health.failures_in_a_row = health.failures_in_a_row.saturating_add(1);
        if health.failures_in_a_row >= FAILURES_BEFORE_HOLD_OFF {
            let hold_off = health.hold_off.max(FIRST_HOLD_OFF);
            health.held_off_until = Some(Instant::now() + hold_off);
            health.hold_off = (hold_off * 2).min(LONGEST_HOLD_OFF);
        }
        let due = health
            .warned_at
            .is_none_or(|at| at.elapsed() >= WARN_INTERVAL);
        if !due {
            health.failures_since_warned = health.failures_since_warned.saturating_add(1);
            return;
        }
        let since = std::mem::take(&mut health.failures_since_warned);
        health.warned_at = Some(Instant::now());
        let more = if since > 0 {
            format!(" ({since} more failures since the last warning)")
        } else {
            String::new()
        };
        log::warn!(
            "the introspection endpoint {url} of {} fails: {why}; its tokens are answered \
             UNAVAILABLE meanwhile{more}, warned again in at most {} s",
            self.issuer,
            WARN_INTERVAL.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn an_answer_is_remembered_before_anyone_is_given_it_and_a_question_meanwhile_joins() {
        let dir = tempfile::tempdir().expect("a directory");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret").expect("written");
        // Nothing listens on port 1: each call fails at once, which is an answer too.
        let endpoint = IntrospectionEndpoint::Url("http://127.0.0.1:1/introspect".to_owned());
        let options = IntrospectionOptions::new(endpoint, "gateway", secret);
        let rules = Rules {
            audiences: Vec::new(),
            leeway: 0,
        };
        let introspector = Arc::new(
            Introspector::start("https://id.test", &options, rules, None, None).expect("started"),
        );
        let remembered = Arc::new(AtomicUsize::new(0));
        let (joined_tx, joined_rx) = mpsc::channel();
        let hook = {
            let (introspector, remembered) = (Arc::clone(&introspector), Arc::clone(&remembered));
            Box::new(move |_: &Judged| {
                remembered.fetch_add(1, Ordering::SeqCst);
                // Asked while the answer is being remembered: it joins the question, so it
                // makes no call and its own hook never runs.
                let again = Arc::clone(&remembered);
                let joined = introspector.ask(
                    [7; 32],
                    "tok",
                    Box::new(move |_| {
                        again.fetch_add(100, Ordering::SeqCst);
                    }),
                );
                joined_tx.send(joined).expect("sent");
            })
        };
        let first = futures::executor::block_on(introspector.ask([7; 32], "tok", hook));
        let joined = joined_rx.recv().expect("asked meanwhile");
        let joined = futures::executor::block_on(joined);
        let why = |judged: Judged| judged.expect_err("cannot be judged").reason;
        assert_eq!(why(first), why(joined));
        assert_eq!(remembered.load(Ordering::SeqCst), 1);
    }
}
