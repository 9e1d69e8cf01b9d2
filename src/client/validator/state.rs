//! What the validator keeps between calls: the questions waiting (sent, queued, by deadline),
//! the stream's state, the backoff and the counters; and what each change does to them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};

use super::{ValidateError, Validation, ValidatorStats};
use crate::proto::TokenV1Input;

pub(super) struct Request {
    /// The question, its `request_id` set when it is sent.
    pub(super) question: TokenV1Input,
    pub(super) deadline: Instant,
    pub(super) admitted: Instant,
    pub(super) reply: oneshot::Sender<Validation>,
}

pub(super) enum Link {
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

pub(super) struct StreamState {
    pub(super) next_id: u64,
    pub(super) next_generation: u64,
    /// Sent, or to be sent once a stream is up, and unanswered; re-sent oldest first.
    pub(super) in_flight: BTreeMap<u64, Request>,
    /// Admitted beyond `max_in_flight`, waiting for room, oldest first.
    pub(super) queued: VecDeque<(u64, Request)>,
    /// Every waiting validation by deadline, for the supervisor's sweep.
    pub(super) deadlines: BTreeSet<(Instant, u64)>,
    pub(super) link: Link,
    pub(super) backoff: Duration,
    /// When the supervisor wakes next unless woken; a request with an earlier deadline wakes it.
    pub(super) next_wake: Instant,
    pub(super) closing: Option<Instant>,
    pub(super) closed: bool,
    pub(super) stats: ValidatorStats,
}

impl StreamState {
    /// Nothing waiting and no stream, one due at `now`; the first backoff is `backoff`.
    pub(super) fn new(now: Instant, backoff: Duration) -> Self {
        Self {
            next_id: 1,
            next_generation: 1,
            in_flight: BTreeMap::new(),
            queued: VecDeque::new(),
            deadlines: BTreeSet::new(),
            link: Link::Down { retry_at: now },
            backoff,
            next_wake: now,
            closing: None,
            closed: false,
            stats: ValidatorStats::default(),
        }
    }

    /// Sends question `id` on the stream, if one is up; otherwise it goes when one is.
    pub(super) fn send(&mut self, id: u64, question: &TokenV1Input) {
        if let Link::Up { sender, .. } = &self.link {
            let mut question = question.clone();
            question.request_id = id;
            // A closed receiver means the stream has ended; the question is re-sent on the next.
            if sender.unbounded_send(question).is_ok() {
                self.stats.sent += 1;
            }
        }
    }

    /// Makes the opened stream current and sends it every unanswered question, oldest first.
    pub(super) fn install(&mut self, generation: u64, sender: mpsc::UnboundedSender<TokenV1Input>) {
        self.link = Link::Up {
            generation,
            sender,
            answered: false,
        };
        let pending: Vec<(u64, TokenV1Input)> = self
            .in_flight
            .iter()
            .map(|(id, request)| (*id, request.question.clone()))
            .collect();
        if !pending.is_empty() && generation > 1 {
            log::info!(
                "token validation stream open again; re-sending {} questions",
                pending.len()
            );
        }
        for (id, question) in pending {
            self.send(id, &question);
        }
    }

    /// Moves queued questions into the room that answers made.
    pub(super) fn promote(&mut self, max_in_flight: usize) {
        while self.in_flight.len() < max_in_flight {
            let Some((id, request)) = self.queued.pop_front() else {
                break;
            };
            self.send(id, &request.question);
            self.in_flight.insert(id, request);
        }
    }

    /// Fails every validation whose deadline is `now` or earlier.
    pub(super) fn expire(&mut self, now: Instant, max_in_flight: usize) {
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
    pub(super) fn fail_all(&mut self, error: &ValidateError) {
        let queued = self.queued.drain(..).map(|(_, request)| request);
        let in_flight = std::mem::take(&mut self.in_flight).into_values();
        for request in in_flight.chain(queued) {
            let _ = request.reply.send(Err(error.clone()));
        }
        self.deadlines.clear();
    }

    /// What the stream is doing, for a deadline error.
    pub(super) fn describe_link(&self) -> String {
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
