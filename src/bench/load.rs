//! Drives a phase of a benchmark: a fixed number of calls in flight, each slot a loop on a
//! connection's completion queue that makes the next call as soon as the last one has ended.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use grpcio::{ClientDuplexReceiver, ClientDuplexSender, WriteFlags};
use hdrhistogram::Histogram;

use super::workload::{failed, verdict, CallOutcome, Caller, Workload};
use crate::proto::{TokenV1Input, TokenV1Output};

/// When a phase stops measuring.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this long (calls in flight then finish and count).
    After(Duration),
    /// After this many measured calls.
    AfterCalls(u64),
}

/// One phase: what to call, how many at once, for how long.
pub struct Phase {
    pub workload: Workload,
    pub in_flight: u32,
    pub warmup: Duration,
    pub stop: Stop,
    /// Preloaded resource ids to pick from.
    pub ids: Arc<Vec<u64>>,
    /// Tokens to pick from (--tokens).
    pub tokens: Arc<Vec<String>>,
    pub read_percent: u8,
    /// The label of a live progress line on stderr, or None for no progress line.
    pub progress: Option<&'static str>,
}

/// What a phase measured (the warm-up excluded).
pub struct PhaseResult {
    /// Latency of the successful calls, in microseconds.
    pub latency: Histogram<u64>,
    /// Failed calls by gRPC status name.
    pub errors: BTreeMap<String, u64>,
    /// Ids given to created resources.
    pub created: Vec<u64>,
    /// From the end of the warm-up until the last call ended.
    pub elapsed: Duration,
}

impl PhaseResult {
    /// Calls that succeeded.
    pub fn successes(&self) -> u64 {
        self.latency.len()
    }

    /// Calls that failed.
    pub fn failures(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latencies from 1 µs to 100 s, to three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// What one slot measured.
struct SlotResult {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    created: Vec<u64>,
    finished: Instant,
}

impl SlotResult {
    fn new() -> Self {
        Self {
            latency: histogram(),
            errors: BTreeMap::new(),
            created: Vec::new(),
            finished: Instant::now(),
        }
    }

    /// Counts a measured call that started at `started` and ended now with `outcome`.
    fn record(&mut self, started: Instant, outcome: CallOutcome, live: &Live) {
        live.calls.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(created) => {
                let micros = u64::try_from(started.elapsed().as_micros().max(1));
                self.latency.saturating_record(micros.unwrap_or(u64::MAX));
                self.created.extend(created);
            }
            Err(status) => self.fail(status, 1, live),
        }
    }

    /// Counts `calls` measured calls that failed with `status`.
    fn fail(&mut self, status: String, calls: u64, live: &Live) {
        live.errors.fetch_add(calls, Ordering::Relaxed);
        *self.errors.entry(status).or_default() += calls;
    }
}

/// Counters the progress line reads.
#[derive(Default)]
struct Live {
    calls: AtomicU64,
    errors: AtomicU64,
    /// Measured calls started, for `Stop::AfterCalls`.
    started: AtomicU64,
}

/// When a phase starts measuring and when it stops making calls.
#[derive(Clone, Copy)]
struct Schedule {
    measure_from: Instant,
    end: Option<Instant>,
    limit: Option<u64>,
}

impl Schedule {
    fn new(phase: &Phase) -> Self {
        let measure_from = Instant::now() + phase.warmup;
        let (end, limit) = match phase.stop {
            Stop::After(duration) => (Some(measure_from + duration), None),
            Stop::AfterCalls(calls) => (None, Some(calls)),
        };
        Self {
            measure_from,
            end,
            limit,
        }
    }

    /// Whether to make a call starting `now`; a measured one is counted against the limit.
    fn admit(&self, now: Instant, live: &Live) -> bool {
        if self.end.is_some_and(|end| now >= end) {
            return false;
        }
        match self.limit {
            Some(limit) if now >= self.measure_from => {
                live.started.fetch_add(1, Ordering::Relaxed) < limit
            }
            _ => true,
        }
    }
}

/// Runs `phase` on `callers` (slots spread over them in turn) and waits for it to end.
pub fn drive(callers: &[Caller], phase: &Phase) -> PhaseResult {
    let schedule = Schedule::new(phase);
    let live = Arc::new(Live::default());
    let (results_tx, results) = mpsc::channel();

    for slot in 0..phase.in_flight {
        let caller = callers[slot as usize % callers.len()].clone();
        let (workload, read_percent) = (phase.workload, phase.read_percent);
        let (ids, tokens) = (phase.ids.clone(), phase.tokens.clone());
        let live = Arc::clone(&live);
        let results_tx = results_tx.clone();
        let spawner = caller.clone();
        spawner.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(u64::from(slot));
            let mut result = SlotResult::new();
            loop {
                let started = Instant::now();
                if !schedule.admit(started, &live) {
                    break;
                }
                let outcome = caller
                    .call(workload, &ids, &tokens, read_percent, &mut rng)
                    .await;
                if started >= schedule.measure_from {
                    result.record(started, outcome, &live);
                }
            }
            result.finished = Instant::now();
            let _ = results_tx.send(result);
        });
    }
    drop(results_tx);
    gather(
        &results,
        phase.in_flight,
        schedule.measure_from,
        phase.progress,
        &live,
    )
}

/// Adds up what `expected` slots (or streams) send to `results`, showing progress meanwhile.
fn gather(
    results: &mpsc::Receiver<SlotResult>,
    expected: u32,
    measure_from: Instant,
    progress: Option<&'static str>,
    live: &Live,
) -> PhaseResult {
    let mut total = PhaseResult {
        latency: histogram(),
        errors: BTreeMap::new(),
        created: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut last_finish = measure_from;
    let mut received = 0;
    while received < expected {
        match results.recv_timeout(Duration::from_millis(500)) {
            Ok(slot) => {
                received += 1;
                total
                    .latency
                    .add(&slot.latency)
                    .expect("histograms of the same bounds add");
                for (status, count) in slot.errors {
                    *total.errors.entry(status).or_default() += count;
                }
                total.created.extend(slot.created);
                last_finish = last_finish.max(slot.finished);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(label) = progress {
                    show_progress(label, measure_from, live);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if progress.is_some() {
        eprint!("\r\x1b[2K");
    }
    total.created.sort_unstable();
    total.elapsed = last_finish.saturating_duration_since(measure_from);
    total
}

/// Runs a token-stream `phase`: one ValidateStream per caller, each keeping its share of
/// `in_flight` questions outstanding, the next question sent as each answer comes. One task per
/// stream, so no answer has to wake another thread.
pub fn drive_streams(callers: &[Caller], phase: &Phase) -> PhaseResult {
    let schedule = Schedule::new(phase);
    let live = Arc::new(Live::default());
    let (results_tx, results) = mpsc::channel();
    let streams = callers.len().min(phase.in_flight as usize);
    for (n, caller) in callers.iter().take(streams).enumerate() {
        // The in-flight questions shared out as evenly as they go.
        let window = phase.in_flight as usize / streams
            + usize::from(n < phase.in_flight as usize % streams);
        let mut stream = Stream {
            schedule,
            live: live.clone(),
            tokens: phase.tokens.clone(),
            window,
            rng: fastrand::Rng::with_seed(n as u64),
            next_id: 0,
            sent: VecDeque::with_capacity(window),
            result: SlotResult::new(),
        };
        let results_tx = results_tx.clone();
        let opened = caller
            .token_client()
            .validate_stream_opt(grpcio::CallOption::default());
        caller.spawn(async move {
            let ran = match opened {
                Ok((sink, answers)) => stream.run(sink, answers).await,
                Err(e) => Err(failed(e)),
            };
            if let Err(status) = ran {
                // Every question outstanding when the stream failed is a failure.
                let measured = stream
                    .sent
                    .iter()
                    .filter(|at| **at >= schedule.measure_from);
                let calls = measured.count().max(1) as u64;
                stream.result.fail(status, calls, &stream.live);
            }
            stream.result.finished = Instant::now();
            let _ = results_tx.send(stream.result);
        });
    }
    drop(results_tx);
    gather(
        &results,
        streams as u32,
        schedule.measure_from,
        phase.progress,
        &live,
    )
}

/// One stream of a token-stream phase and what it has measured.
struct Stream {
    schedule: Schedule,
    live: Arc<Live>,
    tokens: Arc<Vec<String>>,
    /// Questions outstanding at most.
    window: usize,
    rng: fastrand::Rng,
    next_id: u64,
    /// When each outstanding question was sent: answers come in question order, so the send
    /// times queue up the same way.
    sent: VecDeque<Instant>,
    result: SlotResult,
}

impl Stream {
    /// Asks and takes answers until the phase stops admitting questions and every one is
    /// answered; then ends the call.
    async fn run(
        &mut self,
        mut sink: ClientDuplexSender<TokenV1Input>,
        mut answers: ClientDuplexReceiver<TokenV1Output>,
    ) -> Result<(), String> {
        sink.enhance_batch(true);
        loop {
            self.ask(&mut sink).await?;
            if self.sent.is_empty() {
                break;
            }
            sink.flush().await.map_err(failed)?;
            self.take_answers(&mut answers).await?;
        }
        sink.close().await.or_else(|e| match e {
            // The status can overtake the half-close: the call ended all the same.
            grpcio::Error::RpcFinished(_) => Ok(()),
            e => Err(failed(e)),
        })?;
        // Every question has had its answer: anything more is the server's mistake.
        if let Some(answer) = answers.next().await {
            answer.map_err(failed)?;
            return Err(MORE_ANSWERS.to_owned());
        }
        Ok(())
    }

    /// Fills the window with questions (held back by enhance_batch until the caller flushes
    /// them together).
    async fn ask(&mut self, sink: &mut ClientDuplexSender<TokenV1Input>) -> Result<(), String> {
        while self.sent.len() < self.window {
            // One instant decides whether a question is measured and when it started: one
            // admitted in the warm-up must not count as measured.
            let at = Instant::now();
            if !self.schedule.admit(at, &self.live) {
                break;
            }
            let mut question = TokenV1Input::new();
            self.next_id += 1;
            question.request_id = self.next_id;
            question.token = self.tokens[self.rng.usize(..self.tokens.len())].clone();
            sink.feed((question, WriteFlags::default()))
                .await
                .map_err(failed)?;
            self.sent.push_back(at);
        }
        Ok(())
    }

    /// One answer, then every other one already here, before asking again.
    async fn take_answers(
        &mut self,
        answers: &mut ClientDuplexReceiver<TokenV1Output>,
    ) -> Result<(), String> {
        let mut answer = answers.next().await;
        loop {
            match answer {
                Some(Ok(a)) => {
                    // Any server of the contract may be loaded, a faulty one too.
                    let Some(started) = self.sent.pop_front() else {
                        return Err(MORE_ANSWERS.to_owned());
                    };
                    if started >= self.schedule.measure_from {
                        self.result.record(started, verdict(&a), &self.live);
                    }
                }
                Some(Err(e)) => return Err(failed(e)),
                None => return Err("the server ended the stream".to_owned()),
            }
            if self.sent.is_empty() {
                return Ok(());
            }
            match answers.next().now_or_never() {
                Some(more) => answer = more,
                None => return Ok(()),
            }
        }
    }
}

/// How a stream that answers more questions than it was asked is reported.
pub const MORE_ANSWERS: &str = "the server sent more answers than questions";

/// `measuring  3.5 s  calls 41234  rate 11781/s  errors 0`, redrawn in place.
fn show_progress(label: &str, measure_from: Instant, live: &Live) {
    let now = Instant::now();
    if now < measure_from {
        eprint!("\r\x1b[2Kwarming up");
    } else {
        let seconds = (now - measure_from).as_secs_f64();
        let calls = live.calls.load(Ordering::Relaxed);
        eprint!(
            "\r\x1b[2K{label}  {seconds:.1} s  calls {calls}  rate {:.0}/s  errors {}",
            calls as f64 / seconds.max(1e-9),
            live.errors.load(Ordering::Relaxed)
        );
    }
    let _ = std::io::stderr().flush();
}
