//! [`TokenValidator`]: what an app embeds to ask a token service whether bearer tokens are
//! valid. Created once and shared between threads, it sends every question over one
//! `ValidateBatches` call (the questions waiting at each moment to one message; a server older
//! than batches answers UNIMPLEMENTED, and is asked over `ValidateStream` from then on), keeps
//! each one until it is answered, and when the stream fails (the
//! server restarts, the connection resets, a silent peer is caught by keepalive) opens a new one
//! and sends the unanswered questions again. Validation is idempotent, so at-least-once on the
//! wire is right; each caller still gets exactly one answer, or an error once its own deadline
//! passes.

mod answer;
mod pending;
mod shared;
mod state;
mod stream;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use grpcio::{ChannelBuilder, EnvBuilder, RpcStatusCode};

pub use answer::TokenAnswer;
pub use pending::PendingValidation;

use super::connection::{ConnectError, LoadedTls, TlsOptions, DEFAULT_TIMEOUT};
use super::servers::{Servers, ServersError};
use crate::proto::{service_names, StatusOutput, TokenV1Input, TokenV1Output, TokenV1Verdict};
use crate::status::status_name;
use crate::tokens::{self, MAX_TOKEN_BYTES};
use shared::Shared;

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

/// The validator's defaults, written once: [`ValidatorConfig::default`] and the CLI's flags
/// both read them.
pub const VALIDATOR_DEFAULTS: ValidatorConfig = ValidatorConfig {
    timeout: DEFAULT_TIMEOUT,
    keepalive_time: Duration::from_secs(10),
    keepalive_timeout: Duration::from_secs(5),
    max_in_flight: 1024,
    max_queued: 65_536,
    reconnect_initial: Duration::from_millis(50),
    reconnect_max: Duration::from_secs(5),
};

impl Default for ValidatorConfig {
    fn default() -> Self {
        VALIDATOR_DEFAULTS
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
pub type Validation = Result<TokenAnswer, ValidateError>;

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
    /// Messages written: batches, or single questions to a server without batches.
    /// `sent / messages` is how many questions left together.
    pub messages: u64,
    /// Validations waiting now: sent or to be sent, and queued for room.
    pub in_flight: usize,
    pub queued: usize,
}

/// How an app's request presented its token, for a token bound to a key (DPoP, RFC 9449) or to
/// a client certificate (RFC 8705); every field optional. A bound token asked about without them
/// is refused, as the server refuses it at the proxies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presented {
    /// The request's `DPoP` header: set, the token came with the DPoP scheme.
    pub dpop_proof: String,
    /// The request's method, which the proof's `htm` must name.
    pub http_method: String,
    /// The request's URL (its query ignored), which the proof's `htu` must name.
    pub http_url: String,
    /// The client's TLS certificate, DER or PEM.
    pub client_certificate: Vec<u8>,
}

/// A client of `TokenV1Proto/ValidateStream` that apps create once and share between threads:
/// `Arc<TokenValidator>`, or a reference. See the module documentation.
pub struct TokenValidator {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl TokenValidator {
    /// A validator of tokens at `server` (HOST:PORT), over TLS when `tls` asks for it. The
    /// stream is opened at once and kept open; nothing waits for it here.
    pub fn connect(
        server: &str,
        tls: &TlsOptions,
        config: ValidatorConfig,
    ) -> Result<Self, ConnectError> {
        Ok(Self::connect_loaded(server, &tls.load()?, config)?)
    }

    /// As [`Self::connect`], with the TLS files already read (many validators, one read).
    pub fn connect_loaded(
        server: &str,
        tls: &LoadedTls,
        config: ValidatorConfig,
    ) -> Result<Self, ServersError> {
        // Several replicas: the stream opens on one whose token service is SERVING, and again
        // on another when that one is lost. Checked before any thread is started.
        let servers = Servers::new(server)?;
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
        let channel = servers.connect(builder, tls, service_names::TOKEN_V1_PROTO);
        let shared = Arc::new(Shared::new(
            grpcio::Client::new(channel),
            servers.describe().to_owned(),
            config,
        ));
        let supervisor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("token-validator".to_owned())
                .spawn(move || shared.supervise())
                .expect("a thread for the token validator")
        };
        Ok(Self {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        })
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
        self.validate_presented_async_before(token, &Presented::default(), deadline)
    }

    /// Validates `token` as the app's request `presented` it (its DPoP proof, method and URL,
    /// client certificate), for tokens bound to a key or certificate; blocking until the answer
    /// or the configured timeout.
    pub fn validate_presented(&self, token: &str, presented: &Presented) -> Validation {
        let deadline = Instant::now() + self.shared.config.timeout;
        futures::executor::block_on(
            self.validate_presented_async_before(token, presented, deadline),
        )
    }

    /// As [`Self::validate_presented`], as a future that resolves with the answer or once
    /// `deadline` has passed.
    pub fn validate_presented_async_before(
        &self,
        token: &str,
        presented: &Presented,
        deadline: Instant,
    ) -> PendingValidation {
        if token.len() > MAX_TOKEN_BYTES {
            // Answered here as the server would: a message the server cannot read would end the
            // stream, and every re-send would end the next one.
            return PendingValidation::ready(Ok(too_long(token.len()).into()));
        }
        let mut question = TokenV1Input::new();
        question.token = token.to_owned();
        question.dpop_proof.clone_from(&presented.dpop_proof);
        question.http_method.clone_from(&presented.http_method);
        question.http_url.clone_from(&presented.http_url);
        question
            .client_certificate
            .clone_from(&presented.client_certificate);
        self.shared.admit(question, deadline)
    }

    /// How the stream is doing.
    pub fn stats(&self) -> ValidatorStats {
        let state = self.shared.lock();
        ValidatorStats {
            in_flight: state.in_flight.len(),
            queued: state.queued.len(),
            messages: self.shared.messages.load(Ordering::Relaxed),
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
pub fn too_long(len: usize) -> TokenV1Output {
    malformed(tokens::too_long(len).reason)
}

/// A MALFORMED answer, in the shape of the server's, for input that cannot be a token at all and
/// so is never sent (over the size the server reads; not UTF-8, which a string field cannot hold).
pub fn malformed(reason: String) -> TokenV1Output {
    let mut answer = TokenV1Output::new();
    let mut status = StatusOutput::new();
    status.code = 401;
    status.message = reason;
    answer.status = Some(status).into();
    answer.verdict = TokenV1Verdict::TOKEN_V1_MALFORMED.into();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::jittered;

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
        assert_eq!(
            answer.output().verdict,
            TokenV1Verdict::TOKEN_V1_MALFORMED.into()
        );
        assert_eq!(answer.output().status.code, 401);
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
