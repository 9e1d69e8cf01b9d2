//! The validator's shared state and its supervisor thread: admitting validations, taking
//! answers, noticing a stream's end, and opening the next stream when one is due.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use grpcio::RpcStatusCode;

use super::answer::TokenAnswer;
use super::pending::{Awaited, PendingValidation};
use super::state::{Link, Request, StreamState};
use super::{ValidateError, ValidatorConfig, RECENT_FAILURES};
use crate::proto::TokenV1Input;
use crate::status::status_name;

/// What every caller and the supervisor share.
pub(super) struct Shared {
    pub(super) client: grpcio::Client,
    pub(super) server: String,
    pub(super) config: ValidatorConfig,
    state: Mutex<StreamState>,
    /// Wakes the supervisor: a stream ended, an earlier deadline, closing.
    pub(super) wake: Condvar,
    /// Tells `close` that the supervisor has answered everyone and stopped.
    pub(super) done: Condvar,
    /// Whether to ask over `ValidateBatches`; cleared for good by a server without it.
    pub(super) batches: AtomicBool,
    /// Messages written, for [`super::ValidatorStats::messages`].
    pub(super) messages: AtomicU64,
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
pub(super) fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(1.0 - fastrand::f64() / 2.0)
}

impl Shared {
    /// Shared state for a validator over `client`, with no stream yet (one is due at once).
    pub(super) fn new(client: grpcio::Client, server: String, config: ValidatorConfig) -> Self {
        Self {
            client,
            server,
            state: Mutex::new(StreamState::new(Instant::now(), config.reconnect_initial)),
            config,
            wake: Condvar::new(),
            done: Condvar::new(),
            batches: AtomicBool::new(true),
            messages: AtomicU64::new(0),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state
            .lock()
            .expect("the validator's lock is never poisoned")
    }

    pub(super) fn admit(&self, question: TokenV1Input, deadline: Instant) -> PendingValidation {
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
            question,
            deadline,
            admitted: Instant::now(),
            reply,
        };
        state.deadlines.insert((deadline, id));
        if state.in_flight.len() < self.config.max_in_flight {
            state.send(id, &request.question);
            state.in_flight.insert(id, request);
        } else {
            state.queued.push_back((id, request));
        }
        if deadline < state.next_wake {
            state.next_wake = deadline;
            self.wake.notify_one();
        }
        PendingValidation(Awaited::Waiting(answer))
    }

    /// Takes the answers of one message off stream `generation`.
    pub(super) fn answered(&self, generation: u64, answers: Vec<TokenAnswer>) {
        let mut replies = Vec::with_capacity(answers.len());
        {
            let mut state = self.lock();
            if let Link::Up {
                generation: up,
                answered,
                ..
            } = &mut state.link
            {
                *answered |= *up == generation;
            }
            state.stats.answered += answers.len() as u64;
            for answer in answers {
                // An answer to a question already answered (sent on two streams) is dropped.
                let id = answer.output().request_id;
                if let Some(request) = state.in_flight.remove(&id) {
                    state.deadlines.remove(&(request.deadline, id));
                    replies.push((request.reply, answer));
                }
            }
            state.promote(self.config.max_in_flight);
            if state.closing.is_some() && state.in_flight.is_empty() {
                self.wake.notify_one();
            }
        }
        // Out of the lock: each reply may wake its caller's thread, which then wants the lock.
        for (reply, answer) in replies {
            let _ = reply.send(Ok(answer));
        }
    }

    /// Stream `generation` ended with `status` (None: the server closed it with OK).
    pub(super) fn stream_ended(&self, generation: u64, status: Option<(RpcStatusCode, String)>) {
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

    /// The supervisor thread: opens the stream whenever it is down and due, fails validations
    /// whose deadline has passed, and answers everyone on close.
    pub(super) fn supervise(self: Arc<Self>) {
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
