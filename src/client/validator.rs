//! [`TokenValidator`]: what an app embeds to ask a token service whether bearer tokens are
//! valid. Created once and shared between threads, it sends every question over one
//! `ValidateStream` call, keeps each one until it is answered, and when the stream fails (the
//! server restarts, the connection resets, a silent peer is caught by keepalive) opens a new one
//! and sends the unanswered questions again. Validation is idempotent, so at-least-once on the
//! wire is right; each caller still gets exactly one answer, or an error once its own deadline
//! passes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{CallOption, ChannelBuilder, EnvBuilder, RpcStatusCode, WriteFlags};

use super::{LoadedTls, Servers, TlsOptions};
use crate::apis::call::status_name;
use crate::proto::{StatusOutput, TokenV1Input, TokenV1Output, TokenV1ProtoClient, TokenV1Verdict};
use crate::tls::TlsError;
use crate::tokens::{self, MAX_TOKEN_BYTES};

/// How a [`TokenValidator`] talks to its server.
#[derive(Clone, Debug)]
pub struct ValidatorConfig {
    /// Deadline of a validation that does not give its own, from the call to the answer.
    pub timeout: Duration,
    /// Ping the server after this long without hearing from it. At least the server's
    /// `--keepalive-min-ping-interval` (1 s by default), or the server closes the connection.
    pub keepalive_time: Duration,
    /// Give up on a connection whose ping is not answered within this long. A silent server is
    /// noticed within `keepalive_time + keepalive_timeout`, then the stream is opened again.
    pub keepalive_timeout: Duration,
    /// Questions sent and not yet answered, at most.
    pub max_in_flight: usize,
    /// Questions waiting for room beyond `max_in_flight`, at most; beyond that a validation fails
    /// at once with [`ValidateError::Overloaded`] rather than piling up.
    pub max_queued: usize,
    /// The first wait before opening a failed stream again; it doubles, with jitter, up to
    /// `reconnect_max`, and starts over once a stream has answered.
    pub reconnect_initial: Duration,
    /// The longest wait between attempts.
    pub reconnect_max: Duration,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            keepalive_time: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(5),
            max_in_flight: 1024,
            max_queued: 65_536,
            reconnect_initial: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

/// Why a validation has no answer. A token that is not valid is not an error: it is an answer,
/// with its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidateError {
    /// No answer before the caller's deadline; `link` says what the stream was doing.
    DeadlineExceeded { waited: Duration, link: String },
    /// Too many validations are waiting already (`max_in_flight` + `max_queued`).
    Overloaded { waiting: usize },
    /// The server refused the stream with a status that retrying will not change (no token
    /// service there, a client certificate it does not accept, ...).
    Refused {
        code: RpcStatusCode,
        message: String,
    },
    /// The validator was closed first.
    Closed,
}

impl fmt::Display for ValidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeadlineExceeded { waited, link } => write!(
                f,
                "no answer within {:.3}s; the validation stream {link}",
                waited.as_secs_f64()
            ),
            Self::Overloaded { waiting } => write!(
                f,
                "{waiting} validations are waiting already; this one was not queued"
            ),
            Self::Refused { code, message } => write!(
                f,
                "the server refused the validation stream: {} {message}",
                status_name(*code)
            ),
            Self::Closed => write!(f, "the validator is closed"),
        }
    }
}

impl std::error::Error for ValidateError {}

/// The answer to one validation, or why there is none.
pub type Validation = Result<TokenV1Output, ValidateError>;

/// Stream failures [`ValidatorStats::recent_failures`] keeps.
pub const RECENT_FAILURES: usize = 8;

/// Counters for a look at how the stream is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ValidatorStats {
    /// Streams opened, the first one included.
    pub streams_opened: u64,
    /// Streams that ended without the validator closing them.
    pub stream_failures: u64,
    /// How the last stream failure ended, e.g. `UNAVAILABLE: ...`.
    pub last_failure: Option<String>,
    /// How the last few (up to [`RECENT_FAILURES`]) ended, oldest first.
    pub recent_failures: Vec<String>,
    /// Questions sent (re-sends included) and answers taken.
    pub sent: u64,
    pub answered: u64,
    /// Validations waiting now: sent or to be sent, and queued for room.
    pub in_flight: usize,
    pub queued: usize,
}

/// A client of `TokenV1Proto/ValidateStream` that apps create once and share between threads:
/// `Arc<TokenValidator>`, or a reference. See the module documentation.
pub struct TokenValidator {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    client: TokenV1ProtoClient,
    server: String,
    config: ValidatorConfig,
    state: Mutex<State>,
    /// Wakes the supervisor: a stream ended, an earlier deadline, closing.
    wake: Condvar,
    /// Tells `close` that the supervisor has answered everyone and stopped.
    done: Condvar,
}

struct Request {
    token: String,
    deadline: Instant,
    admitted: Instant,
    reply: oneshot::Sender<Validation>,
}

enum Link {
    /// Opening stream `generation`; questions wait in `in_flight` until it is installed.
    Opening {
        generation: u64,
    },
    Up {
        generation: u64,
        sender: mpsc::UnboundedSender<TokenV1Input>,
        /// An answer came on it, so the server is there: the backoff starts over.
        answered: bool,
    },
    Down {
        retry_at: Instant,
    },
}

struct State {
    next_id: u64,
    next_generation: u64,
    /// Sent, or to be sent once a stream is up, and unanswered; re-sent oldest first.
    in_flight: BTreeMap<u64, Request>,
    /// Admitted beyond `max_in_flight`, waiting for room, oldest first.
    queued: VecDeque<(u64, Request)>,
    /// Every waiting validation by deadline, for the supervisor's sweep.
    deadlines: BTreeSet<(Instant, u64)>,
    link: Link,
    backoff: Duration,
    /// When the supervisor wakes next unless woken; a request with an earlier deadline wakes it.
    next_wake: Instant,
    closing: Option<Instant>,
    closed: bool,
    stats: ValidatorStats,
}

impl TokenValidator {
    /// A validator of tokens at `server` (HOST:PORT), over TLS when `tls` asks for it. The
    /// stream is opened at once and kept open; nothing waits for it here.
    pub fn connect(
        server: &str,
        tls: &TlsOptions,
        config: ValidatorConfig,
    ) -> Result<Self, TlsError> {
        Ok(Self::connect_loaded(server, &tls.load()?, config))
    }

    /// As [`Self::connect`], with the TLS files already read (many validators, one read).
    pub fn connect_loaded(server: &str, tls: &LoadedTls, config: ValidatorConfig) -> Self {
        let env = Arc::new(
            EnvBuilder::new()
                .cq_count(1)
                .name_prefix("token-validator")
                .build(),
        );
        let builder = ChannelBuilder::new(env)
            .keepalive_time(config.keepalive_time)
            .keepalive_timeout(config.keepalive_timeout)
            .keepalive_permit_without_calls(true)
            // Keep pinging an idle stream (the core stops after two pings without data).
            .http2_max_pings_without_data(0)
            .http2_min_sent_ping_interval_without_data(config.keepalive_time)
            // The channel's own reconnection paced like ours, so that a server back after a
            // restart is not missed for the core's default two minutes.
            .initial_reconnect_backoff(config.reconnect_initial)
            .max_reconnect_backoff(config.reconnect_max)
            // Its own connection, not one shared with other channels of the process.
            .use_local_subchannel_pool(true);
        // Several replicas: the stream opens on one whose token service is SERVING, and again
        // on another when that one is lost.
        let servers = Servers::new(server);
        let channel = servers.connect(builder, tls, crate::apis::token::v1::NAME);
        let now = Instant::now();
        let shared = Arc::new(Shared {
            client: TokenV1ProtoClient::new(channel),
            server: servers.describe().to_owned(),
            state: Mutex::new(State {
                next_id: 1,
                next_generation: 1,
                in_flight: BTreeMap::new(),
                queued: VecDeque::new(),
                deadlines: BTreeSet::new(),
                link: Link::Down { retry_at: now },
                backoff: config.reconnect_initial,
                next_wake: now,
                closing: None,
                closed: false,
                stats: ValidatorStats::default(),
            }),
            config,
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let supervisor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("token-validator".to_owned())
                .spawn(move || shared.supervise())
                .expect("a thread for the token validator")
        };
        Self {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        }
    }

    /// Validates `token`, blocking until the answer or the configured timeout. Not from a gRPC
    /// completion-queue thread (a handler or a spawned future): use [`Self::validate_async`].
    pub fn validate(&self, token: &str) -> Validation {
        futures::executor::block_on(self.validate_async(token))
    }

    /// Validates `token`, blocking until the answer or `deadline`.
    pub fn validate_before(&self, token: &str, deadline: Instant) -> Validation {
        futures::executor::block_on(self.validate_async_before(token, deadline))
    }

    /// Validates `token`; the future resolves with the answer or once the configured timeout
    /// has passed. It needs no particular executor.
    pub fn validate_async(&self, token: &str) -> PendingValidation {
        self.validate_async_before(token, Instant::now() + self.shared.config.timeout)
    }

    /// Validates `token`; the future resolves with the answer or once `deadline` has passed.
    pub fn validate_async_before(&self, token: &str, deadline: Instant) -> PendingValidation {
        if token.len() > MAX_TOKEN_BYTES {
            // Answered here as the server would: a message the server cannot read would end the
            // stream, and every re-send would end the next one.
            return PendingValidation::ready(Ok(too_long(token.len())));
        }
        self.shared.admit(token, deadline)
    }

    /// How the stream is doing.
    pub fn stats(&self) -> ValidatorStats {
        let state = self.shared.lock();
        ValidatorStats {
            in_flight: state.in_flight.len(),
            queued: state.queued.len(),
            ..state.stats.clone()
        }
    }

    /// Stops taking validations, waits up to the configured timeout for the answers still
    /// outstanding, fails the rest with [`ValidateError::Closed`], and ends the stream.
    pub fn close(&self) {
        self.close_within(self.shared.config.timeout);
    }

    /// As [`Self::close`], waiting at most `grace`.
    pub fn close_within(&self, grace: Duration) {
        {
            let mut state = self.shared.lock();
            let by = Instant::now() + grace;
            state.closing = Some(state.closing.map_or(by, |earlier| earlier.min(by)));
            self.shared.wake.notify_all();
            while !state.closed {
                state = self
                    .shared
                    .done
                    .wait(state)
                    .expect("the validator's lock is never poisoned");
            }
        }
        let supervisor = self
            .supervisor
            .lock()
            .expect("the validator's lock is never poisoned")
            .take();
        if let Some(supervisor) = supervisor {
            let _ = supervisor.join();
        }
    }
}

impl Drop for TokenValidator {
    /// Fails whatever is still waiting with [`ValidateError::Closed`]; call [`Self::close`]
    /// first to wait for their answers.
    fn drop(&mut self) {
        self.close_within(Duration::ZERO);
    }
}

/// The refusal of a token over the size the server reads, in the server's own words.
fn too_long(len: usize) -> TokenV1Output {
    let mut answer = TokenV1Output::new();
    let mut status = StatusOutput::new();
    status.code = 401;
    status.message = tokens::too_long(len).reason;
    answer.status = Some(status).into();
    answer.verdict = TokenV1Verdict::TOKEN_V1_MALFORMED.into();
    answer
}

/// Statuses after which a new stream would be refused the same way: the callers waiting are
/// told at once instead of at their deadline.
fn is_refusal(code: RpcStatusCode) -> bool {
    matches!(
        code,
        RpcStatusCode::UNIMPLEMENTED
            | RpcStatusCode::UNAUTHENTICATED
            | RpcStatusCode::PERMISSION_DENIED
            | RpcStatusCode::INVALID_ARGUMENT
            | RpcStatusCode::FAILED_PRECONDITION
    )
}

/// `delay` with up to half of it taken off at random, so that many clients of a restarted
/// server do not all come back in the same instant.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(1.0 - fastrand::f64() / 2.0)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the validator's lock is never poisoned")
    }

    fn admit(&self, token: &str, deadline: Instant) -> PendingValidation {
        let (reply, answer) = oneshot::channel();
        let mut state = self.lock();
        if state.closing.is_some() {
            return PendingValidation::ready(Err(ValidateError::Closed));
        }
        let waiting = state.in_flight.len() + state.queued.len();
        if state.in_flight.len() >= self.config.max_in_flight
            && state.queued.len() >= self.config.max_queued
        {
            return PendingValidation::ready(Err(ValidateError::Overloaded { waiting }));
        }
        let id = state.next_id;
        state.next_id += 1;
        let request = Request {
            token: token.to_owned(),
            deadline,
            admitted: Instant::now(),
            reply,
        };
        state.deadlines.insert((deadline, id));
        if state.in_flight.len() < self.config.max_in_flight {
            state.send(id, &request.token);
            state.in_flight.insert(id, request);
        } else {
            state.queued.push_back((id, request));
        }
        if deadline < state.next_wake {
            state.next_wake = deadline;
            self.wake.notify_one();
        }
        PendingValidation(Pending::Waiting(answer))
    }

    /// Takes an answer off stream `generation`.
    fn answered(&self, generation: u64, answer: TokenV1Output) {
        let mut state = self.lock();
        if let Link::Up {
            generation: up,
            answered,
            ..
        } = &mut state.link
        {
            *answered |= *up == generation;
        }
        state.stats.answered += 1;
        // An answer to a question already answered (sent on two streams) is dropped here.
        if let Some(request) = state.in_flight.remove(&answer.request_id) {
            state
                .deadlines
                .remove(&(request.deadline, answer.request_id));
            let _ = request.reply.send(Ok(answer));
            state.promote(self.config.max_in_flight);
        }
        if state.closing.is_some() && state.in_flight.is_empty() {
            self.wake.notify_one();
        }
    }

    /// Stream `generation` ended with `status` (None: the server closed it with OK).
    fn stream_ended(&self, generation: u64, status: Option<(RpcStatusCode, String)>) {
        let mut state = self.lock();
        let (current, answered) = match &state.link {
            Link::Opening { generation: g } => (*g == generation, false),
            Link::Up {
                generation: g,
                answered,
                ..
            } => (*g == generation, *answered),
            Link::Down { .. } => (false, false),
        };
        if answered {
            state.backoff = self.config.reconnect_initial;
        }
        if !current || state.closed {
            return;
        }
        let why = match &status {
            Some((code, message)) => format!("{}: {message}", status_name(*code)),
            None => "OK: the server ended it".to_owned(),
        };
        let delay = jittered(state.backoff);
        state.backoff = (state.backoff * 2).min(self.config.reconnect_max);
        state.link = Link::Down {
            retry_at: Instant::now() + delay,
        };
        state.stats.stream_failures += 1;
        if state.closing.is_none() {
            // A warning when it matters (a working stream lost, or callers waiting); an idle
            // validator retrying a server that is down says so only at debug.
            let level = if answered || !state.in_flight.is_empty() {
                log::Level::Warn
            } else {
                log::Level::Debug
            };
            log::log!(
                level,
                "token validation stream to {} ended ({why}); {} unanswered, opening a new one in \
                 {} ms",
                self.server,
                state.in_flight.len(),
                delay.as_millis()
            );
        }
        let recent = &mut state.stats.recent_failures;
        if recent.len() == RECENT_FAILURES {
            recent.remove(0);
        }
        recent.push(why.clone());
        state.stats.last_failure = Some(why);
        if let Some((code, message)) = status.filter(|(code, _)| is_refusal(*code)) {
            state.fail_all(&ValidateError::Refused { code, message });
        }
        self.wake.notify_one();
    }

    /// Opens stream `generation`: its writer takes questions from the returned sender, its
    /// reader hands answers back. Called without the lock: the first poll of a spawned future
    /// runs here and may take it.
    fn open(self: &Arc<Self>, generation: u64) -> Option<mpsc::UnboundedSender<TokenV1Input>> {
        // No deadline: the stream lives as long as the validator; each question has its own.
        let (mut sink, mut answers) = match self.client.validate_stream_opt(CallOption::default()) {
            Ok(call) => call,
            Err(e) => {
                self.stream_ended(
                    generation,
                    Some((
                        RpcStatusCode::UNKNOWN,
                        format!("cannot start the call: {e}"),
                    )),
                );
                return None;
            }
        };
        let (sender, questions) = mpsc::unbounded::<TokenV1Input>();
        // Questions queued together go out in one write, not one write each.
        sink.enhance_batch(true);
        self.client.spawn(async move {
            let mut questions = questions.map(|q| Ok((q, WriteFlags::default())));
            // A failed write shows in the reader as the call's status.
            if sink.send_all(&mut questions).await.is_ok() {
                let _ = sink.close().await;
            }
        });
        let shared = Arc::clone(self);
        self.client.spawn(async move {
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok(answer) => shared.answered(generation, answer),
                    Err(grpcio::Error::RpcFailure(status)) => {
                        let message = status.message().to_owned();
                        return shared.stream_ended(generation, Some((status.code(), message)));
                    }
                    Err(e) => {
                        return shared.stream_ended(
                            generation,
                            Some((RpcStatusCode::UNKNOWN, e.to_string())),
                        )
                    }
                }
            }
            shared.stream_ended(generation, None);
        });
        Some(sender)
    }

    /// The supervisor thread: opens the stream whenever it is down and due, fails validations
    /// whose deadline has passed, and answers everyone on close.
    fn supervise(self: Arc<Self>) {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            state.expire(now, self.config.max_in_flight);
            if let Some(by) = state.closing {
                if state.in_flight.is_empty() && state.queued.is_empty() || now >= by {
                    state.fail_all(&ValidateError::Closed);
                    // Dropping the sender half-closes the stream; the server then ends it.
                    state.link = Link::Down { retry_at: now };
                    state.closed = true;
                    self.done.notify_all();
                    return;
                }
            }
            if let Link::Down { retry_at } = state.link {
                if now >= retry_at && state.closing.is_none() {
                    let generation = state.next_generation;
                    state.next_generation += 1;
                    state.link = Link::Opening { generation };
                    state.stats.streams_opened += 1;
                    drop(state);
                    let sender = self.open(generation);
                    state = self.lock();
                    if let (Some(sender), Link::Opening { generation: g }) = (sender, &state.link) {
                        if *g == generation {
                            state.install(generation, sender);
                        }
                    }
                    continue;
                }
            }
            let mut wake = now + Duration::from_secs(1);
            if let Some(&(deadline, _)) = state.deadlines.first() {
                wake = wake.min(deadline);
            }
            if let Link::Down { retry_at } = state.link {
                wake = wake.min(retry_at);
            }
            if let Some(by) = state.closing {
                wake = wake.min(by);
            }
            state.next_wake = wake;
            let timeout = wake.saturating_duration_since(Instant::now());
            state = self
                .wake
                .wait_timeout(state, timeout)
                .expect("the validator's lock is never poisoned")
                .0;
        }
    }
}

impl State {
    /// Sends question `id` on the stream, if one is up; otherwise it goes when one is.
    fn send(&mut self, id: u64, token: &str) {
        if let Link::Up { sender, .. } = &self.link {
            let mut question = TokenV1Input::new();
            question.request_id = id;
            question.token = token.to_owned();
            // A closed receiver means the stream has ended; the question is re-sent on the next.
            if sender.unbounded_send(question).is_ok() {
                self.stats.sent += 1;
            }
        }
    }

    /// Makes the opened stream current and sends it every unanswered question, oldest first.
    fn install(&mut self, generation: u64, sender: mpsc::UnboundedSender<TokenV1Input>) {
        self.link = Link::Up {
            generation,
            sender,
            answered: false,
        };
        let pending: Vec<(u64, String)> = self
            .in_flight
            .iter()
            .map(|(id, request)| (*id, request.token.clone()))
            .collect();
        if !pending.is_empty() && generation > 1 {
            log::info!(
                "token validation stream open again; re-sending {} questions",
                pending.len()
            );
        }
        for (id, token) in pending {
            self.send(id, &token);
        }
    }

    /// Moves queued questions into the room that answers made.
    fn promote(&mut self, max_in_flight: usize) {
        while self.in_flight.len() < max_in_flight {
            let Some((id, request)) = self.queued.pop_front() else {
                break;
            };
            self.send(id, &request.token);
            self.in_flight.insert(id, request);
        }
    }

    /// Fails every validation whose deadline is `now` or earlier.
    fn expire(&mut self, now: Instant, max_in_flight: usize) {
        let link = self.describe_link();
        let mut expired = false;
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let request = match self.in_flight.remove(&id) {
                Some(request) => Some(request),
                None => self
                    .queued
                    .iter()
                    .position(|(queued, _)| *queued == id)
                    .and_then(|at| self.queued.remove(at))
                    .map(|(_, request)| request),
            };
            if let Some(request) = request {
                let waited = now.saturating_duration_since(request.admitted);
                let error = ValidateError::DeadlineExceeded {
                    waited,
                    link: link.clone(),
                };
                let _ = request.reply.send(Err(error));
                expired = true;
            }
        }
        if expired {
            self.promote(max_in_flight);
        }
    }

    /// Fails every waiting validation with `error`.
    fn fail_all(&mut self, error: &ValidateError) {
        let queued = self.queued.drain(..).map(|(_, request)| request);
        let in_flight = std::mem::take(&mut self.in_flight).into_values();
        for request in in_flight.chain(queued) {
            let _ = request.reply.send(Err(error.clone()));
        }
        self.deadlines.clear();
    }

    /// What the stream is doing, for a deadline error.
    fn describe_link(&self) -> String {
        let last = match &self.stats.last_failure {
            Some(why) => format!(" (last ended {why})"),
            None => String::new(),
        };
        match self.link {
            Link::Up { answered: true, .. } => "is up and answering".to_owned(),
            Link::Up { .. } | Link::Opening { .. } => {
                format!("is open but has not answered yet{last}")
            }
            Link::Down { .. } => format!("is down, reconnecting{last}"),
        }
    }
}

/// A validation on its way: a future of its [`Validation`], independent of any executor.
#[must_use = "the answer comes through this future"]
pub struct PendingValidation(Pending);

enum Pending {
    Ready(Option<Validation>),
    Waiting(oneshot::Receiver<Validation>),
}

impl PendingValidation {
    fn ready(validation: Validation) -> Self {
        Self(Pending::Ready(Some(validation)))
    }
}

impl Future for PendingValidation {
    type Output = Validation;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Validation> {
        match &mut self.0 {
            Pending::Ready(validation) => Poll::Ready(
                validation
                    .take()
                    .expect("a ready validation is polled once"),
            ),
            // The supervisor answers every request before it drops it; a dropped sender can
            // only mean the validator is gone.
            Pending::Waiting(answer) => Pin::new(answer)
                .poll(cx)
                .map(|answer| answer.unwrap_or(Err(ValidateError::Closed))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_takes_at_most_half_off() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(100));
            assert!(
                d > Duration::from_millis(49) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
    }

    #[test]
    fn an_oversized_token_is_answered_without_a_server() {
        let validator = TokenValidator::connect(
            "127.0.0.1:1",
            &TlsOptions::default(),
            ValidatorConfig::default(),
        )
        .expect("plaintext needs no files");
        let answer = validator
            .validate(&"a".repeat(MAX_TOKEN_BYTES + 1))
            .expect("an answer");
        assert_eq!(answer.verdict, TokenV1Verdict::TOKEN_V1_MALFORMED.into());
        assert_eq!(answer.status.code, 401);
    }

    #[test]
    fn an_unreachable_server_fails_at_the_deadline_and_close_answers_the_rest() {
        let validator = TokenValidator::connect(
            "127.0.0.1:1",
            &TlsOptions::default(),
            ValidatorConfig::default(),
        )
        .expect("plaintext needs no files");
        let soon = Instant::now() + Duration::from_millis(200);
        let error = validator.validate_before("a.b.c", soon).unwrap_err();
        assert!(
            matches!(error, ValidateError::DeadlineExceeded { .. }),
            "{error}"
        );
        let later =
            validator.validate_async_before("a.b.c", Instant::now() + Duration::from_secs(60));
        validator.close_within(Duration::ZERO);
        assert_eq!(
            futures::executor::block_on(later),
            Err(ValidateError::Closed)
        );
        assert_eq!(validator.validate("a.b.c"), Err(ValidateError::Closed));
    }
}
