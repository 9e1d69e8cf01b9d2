//! `TokenV1Proto`: validates bearer tokens one at a time (`Validate`), over a long-lived stream
//! (`ValidateStream`) or many to a message (`ValidateBatches`, each batch answered in order by
//! one or more messages), and revokes them (`Revoke`, for admins on mutual TLS). The checks are
//! [`crate::tokens`]; this module translates between them and the wire, and holds the streams
//! to their memory budget ([`crate::apis::budget`]).

use std::mem::size_of;
use std::sync::Arc;

use futures::future::{self, BoxFuture};
use futures::stream::{self, Stream, TakeUntil};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _, TryStreamExt as _};
use grpcio::{
    DuplexSink, RequestStream, RpcContext, RpcStatus, RpcStatusCode, UnarySink, WriteFlags,
};
use protobuf::Message as _;

use super::claims::{encode_claims, CLAIMS_FIELD};
use crate::apis::budget::{Holding, StreamBudget};
use crate::apis::call::{application_status, keys_not_loaded, store_status, Call, Kind};
use crate::apis::offer::{Api, ApiOffer, DependsOn, ServingContext};
use crate::apis::streams::{self, StreamsEnd, StreamsPerConnection};
use crate::eventually::Eventually;
use crate::proto::{
    create_token_v1_proto, grpc_api, service_names, StatusOutput, TokenV1Input, TokenV1InputBatch,
    TokenV1Output, TokenV1OutputBatch, TokenV1Proto, TokenV1RevokeInput, TokenV1Verdict,
};
use crate::quote::quoted;
use crate::time::rfc3339;
use crate::tokens::binding::{certificate_thumbprint, htu, DpopRequest, Presentation};
use crate::tokens::{
    revocation_id, Outcome, Refusal, RevokeError, Revoked, TokenVerifier, Verdict,
    MAX_BATCH_QUESTIONS, MAX_BATCH_TOKEN_BYTES,
};

/// The name health checking and reflection know the service by.
pub const NAME: &str = service_names::TOKEN_V1_PROTO;

/// The status message of a stream that ends because the server shuts down.
pub const SHUTTING_DOWN: &str =
    "the server is shutting down; open a new stream (to another replica, if there is one)";

/// Largest answer message of `ValidateBatches`, in bytes: a batch's answers go in as many
/// messages as they need (the contract: in order, by one or more messages), so that every
/// message fits a client's default 4 MiB limit (a quarter of it) whatever the claims, and a
/// stream whose client does not read holds little. One answer alone is far smaller (a token is
/// at most 8 KiB, its claims' encoding a few times that).
pub const MAX_ANSWER_MESSAGE_BYTES: usize = 256 * 1024;

/// What a question holds in memory beside its token's bytes.
const QUESTION_BYTES: usize = size_of::<TokenV1Input>();

/// The token API, version 1.
#[derive(Clone)]
pub struct TokenV1Api {
    verifier: Arc<TokenVerifier>,
    /// Client certificate names (common name or DNS name) allowed to revoke.
    admins: Arc<[String]>,
    streams_end: StreamsEnd,
    /// What the streams together may hold.
    budget: Arc<StreamBudget>,
    /// The streams open on each connection.
    per_connection: Arc<StreamsPerConnection>,
}

/// Served when a key set is configured: tokens checked by the verifier, revocations allowed to
/// the token admins. Ready once the keys have loaded; validations never need the store (the
/// revocations they ask are in memory), so a store outage leaves it SERVING.
pub fn offer(serving: &ServingContext<'_>) -> ApiOffer {
    let Some(verifier) = serving.verifier else {
        return ApiOffer::NotServed {
            name: NAME,
            why: "no identity provider: --oidc-issuer, --jwks-file or --jwks-url, or --config",
        };
    };
    let api = TokenV1Api {
        verifier: Arc::clone(verifier),
        admins: serving.options.token_admins.clone().into(),
        streams_end: serving.streams_end.clone(),
        budget: StreamBudget::new(serving.options.stream_budget),
        per_connection: StreamsPerConnection::new(serving.options.streams_per_connection),
    };
    ApiOffer::Served(Api {
        name: NAME,
        service: create_token_v1_proto(api),
        file: grpc_api::file_descriptor(),
        depends_on: DependsOn::Keys,
    })
}

fn wire_verdict(verdict: Verdict) -> TokenV1Verdict {
    match verdict {
        Verdict::Valid => TokenV1Verdict::TOKEN_V1_VALID,
        Verdict::Malformed => TokenV1Verdict::TOKEN_V1_MALFORMED,
        Verdict::BadSignature => TokenV1Verdict::TOKEN_V1_BAD_SIGNATURE,
        Verdict::UnknownKey => TokenV1Verdict::TOKEN_V1_UNKNOWN_KEY,
        Verdict::UnsupportedAlgorithm => TokenV1Verdict::TOKEN_V1_UNSUPPORTED_ALGORITHM,
        Verdict::Expired => TokenV1Verdict::TOKEN_V1_EXPIRED,
        Verdict::NotYetValid => TokenV1Verdict::TOKEN_V1_NOT_YET_VALID,
        Verdict::WrongIssuer => TokenV1Verdict::TOKEN_V1_WRONG_ISSUER,
        Verdict::WrongAudience => TokenV1Verdict::TOKEN_V1_WRONG_AUDIENCE,
        Verdict::Revoked => TokenV1Verdict::TOKEN_V1_REVOKED,
        Verdict::Unavailable => TokenV1Verdict::TOKEN_V1_UNAVAILABLE,
        Verdict::Inactive => TokenV1Verdict::TOKEN_V1_INACTIVE,
        Verdict::InvalidDpopProof => TokenV1Verdict::TOKEN_V1_INVALID_DPOP_PROOF,
        Verdict::UseDpopNonce => TokenV1Verdict::TOKEN_V1_USE_DPOP_NONCE,
        Verdict::WrongBinding => TokenV1Verdict::TOKEN_V1_WRONG_BINDING,
    }
}

/// The answer to the input `request_id`.
fn output(request_id: u64, outcome: &Outcome) -> TokenV1Output {
    let mut answer = TokenV1Output::new();
    answer.request_id = request_id;
    match outcome {
        Ok(valid) => {
            answer.status = Some(application_status(200, "Valid")).into();
            answer.verdict = TokenV1Verdict::TOKEN_V1_VALID.into();
            answer.subject.clone_from(&valid.subject);
            answer.issuer.clone_from(&valid.issuer);
            answer.audience.clone_from(&valid.audience);
            answer.expires_at = valid.expires_at;
            answer.scopes.clone_from(&valid.scopes);
            answer.token_id.clone_from(&valid.token_id);
            // Encoded once per validated token, then copied into each answer as the bytes of
            // field 10: on the wire the same as setting `claims`.
            let encoded = valid
                .encoded_claims
                .get_or_init(|| encode_claims(&valid.claims));
            answer
                .special_fields
                .mut_unknown_fields()
                .add_length_delimited(CLAIMS_FIELD, encoded.clone());
        }
        Err(refusal) => {
            // 503: not a judgement of the token; the same question may be valid later.
            let code = if refusal.verdict == Verdict::Unavailable {
                503
            } else {
                401
            };
            answer.status = Some(application_status(code, &refusal.reason)).into();
            answer.verdict = wire_verdict(refusal.verdict).into();
            if let Some(nonce) = refusal.dpop.as_ref().and_then(|d| d.nonce.as_ref()) {
                answer.dpop_nonce.clone_from(nonce);
            }
        }
    }
    answer
}

/// Checks the question's token as it says the token was presented: with a DPoP proof for its
/// method and URL, and with its client certificate, when it gives them.
fn check(verifier: &Arc<TokenVerifier>, input: &TokenV1Input) -> Eventually<Outcome> {
    match presentation(input) {
        Ok(presented) => verifier.check_presented(&input.token, presented),
        Err(refusal) => Eventually::Now(Err(refusal)),
    }
}

/// How the question says its token was presented; a certificate that does not read is refused.
fn presentation(input: &TokenV1Input) -> Result<Presentation, Refusal> {
    let certificate = if input.client_certificate.is_empty() {
        None
    } else {
        Some(
            certificate_thumbprint(&input.client_certificate).map_err(|why| {
                Refusal::new(Verdict::Malformed, format!("client_certificate: {why}"))
            })?,
        )
    };
    let dpop = (!input.dpop_proof.is_empty()).then(|| DpopRequest {
        proofs: vec![input.dpop_proof.clone()],
        method: input.http_method.clone(),
        url: if input.http_url.is_empty() {
            Err("http_url is empty: give the URL the proof was made for".to_owned())
        } else {
            htu::normalize(&input.http_url).map_err(|why| format!("http_url: {why}"))
        },
    });
    Ok(Presentation { dpop, certificate })
}

/// A unary answer: a refusal that is not a judgement of the token (its provider's keys have not
/// loaded) is the gRPC status UNAVAILABLE, which a client retries (elsewhere, with replicas).
fn unary_answer(request_id: u64, outcome: &Outcome) -> Result<TokenV1Output, RpcStatus> {
    match outcome {
        Err(refusal) if refusal.verdict == Verdict::Unavailable => Err(RpcStatus::with_message(
            RpcStatusCode::UNAVAILABLE,
            refusal.reason.clone(),
        )),
        _ => Ok(output(request_id, outcome)),
    }
}

/// What the answer `output` made of `outcome` takes encoded, estimated from above without
/// encoding it (which its write does): the strings and claims it carries, and room for its
/// tags, lengths and numbers.
fn answer_bytes(outcome: &Outcome) -> usize {
    const FRAMING: usize = 64;
    match outcome {
        Ok(valid) => {
            let lists = valid
                .audience
                .iter()
                .chain(&valid.scopes)
                .map(|s| s.len() + 3)
                .sum::<usize>();
            let claims = valid.encoded_claims.get().map_or(0, |c| c.len() + 4);
            FRAMING
                + valid.subject.len()
                + valid.issuer.len()
                + valid.token_id.len()
                + lists
                + claims
        }
        Err(refusal) => FRAMING + refusal.reason.len(),
    }
}

/// Whether a batch is within the bounds, or the status that ends its stream.
fn batch_bounds(batch: &TokenV1InputBatch) -> Result<(), RpcStatus> {
    let questions = batch.inputs.len();
    let bytes = batch
        .inputs
        .iter()
        .try_fold(0usize, |sum, input| sum.checked_add(input.token.len()));
    let refused = if questions > MAX_BATCH_QUESTIONS {
        format!("a batch of {questions} questions; at most {MAX_BATCH_QUESTIONS} to a batch")
    } else if bytes.is_none_or(|bytes| bytes > MAX_BATCH_TOKEN_BYTES) {
        format!(
            "a batch with {} bytes of tokens; at most {MAX_BATCH_TOKEN_BYTES} to a batch",
            bytes.map_or_else(|| "too many".to_owned(), |b| b.to_string())
        )
    } else {
        return Ok(());
    };
    Err(RpcStatus::with_message(
        RpcStatusCode::RESOURCE_EXHAUSTED,
        format!("{refused}: send smaller batches"),
    ))
}

/// One answer message, made once the stream may send it.
struct Answered<O> {
    message: O,
    /// Its encoded size.
    bytes: usize,
    /// What the questions it answers held.
    answered: usize,
}

/// What a stream waiting for room in the budget stopped for.
enum Waited {
    Room,
    Flushed(grpcio::Result<()>),
    End,
}

/// Questions a stream may have started and not yet fully answered: while the first waits for its
/// provider (an introspection), those after it are judged meanwhile, their answers still sent in
/// order. Bounded, as everything a stream holds is by the budget.
const READ_AHEAD: usize = 64;

/// A question read, and its answers being made.
struct Ahead<S: Stream> {
    answers: std::pin::Pin<Box<stream::Peekable<S>>>,
    /// What the question holds of the budget.
    held: usize,
}

/// How reading inputs ended, if it has.
enum InputsEnded {
    /// The client ended the stream.
    Done,
    /// A read failed.
    Failed(grpcio::Error),
}

/// Serves one bidirectional stream: each input answered by the messages `answer` makes of it,
/// in order, until the client ends it (OK), the server shuts down (UNAVAILABLE, after every
/// answer due), an input does not decode (INTERNAL, likewise) or `answer` refuses one (its
/// status, likewise). What it holds is `holding`, of the budget every stream shares: it reads
/// its next input only when it holds nothing or the budget has room, and makes each answer
/// message only once the one before it has been taken by the client's flow control. Inputs
/// already received are started at once, up to [`READ_AHEAD`], so that one waiting for its
/// identity provider does not hold up the judging of those behind it.
async fn answer_each<I, O, F, S>(
    call: &Call,
    (mut inputs, end): (TakeUntil<RequestStream<I>, StreamsEnd>, StreamsEnd),
    mut sink: DuplexSink<O>,
    mut holding: Holding,
    weigh: fn(&I) -> usize,
    mut answer: F,
) -> grpcio::Result<RpcStatusCode>
where
    F: FnMut(I) -> S,
    S: Stream<Item = Result<Answered<O>, RpcStatus>>,
{
    // Answers to inputs that came together leave in one write; flushed below whenever no
    // further input is waiting, so an answer never waits for the next question.
    sink.enhance_batch(true);
    let mut ahead: std::collections::VecDeque<Ahead<S>> = std::collections::VecDeque::new();
    let mut ended: Option<InputsEnded> = None;
    loop {
        if ahead.is_empty() {
            if let Some(ended) = ended.take() {
                match ended {
                    InputsEnded::Done => break,
                    InputsEnded::Failed(error) => {
                        let Some(status) = streams::read_failure(&error) else {
                            return Err(error);
                        };
                        return end_with(sink, status).await;
                    }
                }
            }
            while !holding.try_reserve() {
                // Its own answers being taken free this stream's share as surely as room in the
                // budget: flush while waiting for either.
                let waited = {
                    let waits: [BoxFuture<'_, Waited>; 3] = [
                        holding.room().map(|()| Waited::Room).boxed(),
                        sink.flush().map(Waited::Flushed).boxed(),
                        end.clone().map(|()| Waited::End).boxed(),
                    ];
                    future::select_all(waits).await.0
                };
                match waited {
                    Waited::Room => {}
                    Waited::Flushed(flushed) => {
                        flushed?;
                        holding.writes_done();
                    }
                    Waited::End => return shut_down(sink).await,
                }
            }
            let next = match inputs.try_next().now_or_never() {
                Some(next) => next,
                None => {
                    sink.flush().await?;
                    holding.writes_done();
                    inputs.try_next().await
                }
            };
            match next {
                Ok(Some(input)) => start(call, &mut holding, &mut ahead, weigh, &mut answer, input),
                // Handled at the top of the loop, as when reading ahead.
                Ok(None) => ended = Some(InputsEnded::Done),
                Err(error) => ended = Some(InputsEnded::Failed(error)),
            }
        }
        // Start what has already arrived, without waiting for more.
        while ended.is_none() && ahead.len() < READ_AHEAD && holding.try_reserve() {
            match inputs.try_next().now_or_never() {
                Some(Ok(Some(input))) => {
                    start(call, &mut holding, &mut ahead, weigh, &mut answer, input);
                }
                Some(Ok(None)) => ended = Some(InputsEnded::Done),
                Some(Err(error)) => ended = Some(InputsEnded::Failed(error)),
                None => break,
            }
        }
        let Some(mut first) = ahead.pop_front() else {
            continue;
        };
        let mut answered_bytes = 0usize;
        loop {
            // The write before this one has been taken (all but the latest, which the sink
            // keeps to write with the next): at most two answer messages in flight. A client
            // that stops reading stops this loop, so the server stops reading it: flow
            // control, never an unbounded buffer.
            future::poll_fn(|cx| sink.poll_ready_unpin(cx)).await?;
            holding.writes_done_but_latest();
            let next = loop {
                if first.answers.as_mut().peek().now_or_never().is_some() {
                    break first.answers.next().await;
                }
                // Waiting for its provider: what was answered before leaves meanwhile, and the
                // questions after it are read and started while it waits.
                sink.flush().await?;
                holding.writes_done();
                let may_read = ended.is_none() && ahead.len() + 1 < READ_AHEAD;
                if !may_read || !holding.try_reserve() {
                    break first.answers.next().await;
                }
                let read = {
                    let head = first.answers.as_mut().peek().map(|_| ());
                    match future::select(head, inputs.try_next()).await {
                        future::Either::Left(((), _)) => None,
                        future::Either::Right((read, _)) => Some(read),
                    }
                };
                match read {
                    None => {}
                    Some(Ok(Some(input))) => {
                        start(call, &mut holding, &mut ahead, weigh, &mut answer, input);
                    }
                    Some(Ok(None)) => ended = Some(InputsEnded::Done),
                    Some(Err(error)) => ended = Some(InputsEnded::Failed(error)),
                }
            };
            let Some(answered) = next else {
                break;
            };
            let answered = match answered {
                Ok(answered) => answered,
                Err(status) => return end_with(sink, status).await,
            };
            holding.answered(answered.answered);
            answered_bytes = answered_bytes.saturating_add(answered.answered);
            // Started, not awaited: the write overlaps the read of the next input.
            sink.start_send_unpin((answered.message, WriteFlags::default()))?;
            holding.sent(answered.bytes);
            call.sent();
        }
        // What the question held beyond what its answers accounted for (a batch's own).
        holding.answered(first.held.saturating_sub(answered_bytes));
    }
    // Stopped by the server (not ended by the client): the end signal resolved.
    if inputs.take_result().is_some() {
        return shut_down(sink).await;
    }
    // grpcio's close sends the status without the message the sink holds back to write with the
    // next one (enhance_batch): flushed first, or a stream's last answers would be lost.
    sink.flush().await?;
    holding.writes_done();
    sink.close().await?;
    Ok(RpcStatusCode::OK)
}

/// Takes `input` in: held in the budget, its answers started (their first poll starts its
/// judging: a question for its provider is asked now, not when its turn comes).
fn start<I, F, S>(
    call: &Call,
    holding: &mut Holding,
    ahead: &mut std::collections::VecDeque<Ahead<S>>,
    weigh: fn(&I) -> usize,
    answer: &mut F,
    input: I,
) where
    F: FnMut(I) -> S,
    S: Stream,
{
    call.received();
    let held = weigh(&input);
    holding.hold_question(held);
    let mut answers = Box::pin(answer(input).peekable());
    let _ = answers.as_mut().peek().now_or_never();
    ahead.push_back(Ahead { answers, held });
}

/// Ends a stream because the server shuts down: every input read so far has its answer; then
/// UNAVAILABLE.
async fn shut_down<O>(sink: DuplexSink<O>) -> grpcio::Result<RpcStatusCode> {
    let status = RpcStatus::with_message(RpcStatusCode::UNAVAILABLE, SHUTTING_DOWN.to_owned());
    end_with(sink, status).await
}

/// Ends a stream with `status`, after every answer due.
async fn end_with<O>(mut sink: DuplexSink<O>, status: RpcStatus) -> grpcio::Result<RpcStatusCode> {
    sink.flush().await?;
    let code = status.code();
    sink.fail(status).await?;
    Ok(code)
}

/// What a `ValidateStream` question holds.
fn question_bytes(input: &TokenV1Input) -> usize {
    QUESTION_BYTES + input.token.capacity()
}

/// What a `ValidateBatches` batch holds.
fn batch_bytes(batch: &TokenV1InputBatch) -> usize {
    batch
        .inputs
        .iter()
        .fold(batch.inputs.capacity() * QUESTION_BYTES, |sum, input| {
            sum.saturating_add(input.token.capacity())
        })
}

/// The answer to one `ValidateStream` question, as its message.
fn stream_answer(
    verifier: Arc<TokenVerifier>,
    input: TokenV1Input,
) -> impl Stream<Item = Result<Answered<TokenV1Output>, RpcStatus>> {
    stream::once(async move {
        let outcome = check(&verifier, &input).get().await;
        let message = output(input.request_id, &outcome);
        Ok(Answered {
            bytes: answer_bytes(&outcome),
            message,
            answered: question_bytes(&input),
        })
    })
}

/// Where a batch's answers are: its questions not yet answered, and an answer made that did not
/// fit the message before.
struct BatchAnswers {
    /// Each question not yet answered, with its check, all started together when the batch
    /// came: a question waiting for its provider holds up only the answers after it, not the
    /// judging of the others.
    questions: std::vec::IntoIter<(TokenV1Input, Eventually<Outcome>)>,
    carried: Option<(TokenV1Output, usize, usize)>,
    /// Whether a message has been made (an empty batch is answered by one empty message).
    made_one: bool,
}

/// The answers to one `ValidateBatches` batch, in order, in messages of at most
/// [`MAX_ANSWER_MESSAGE_BYTES`], each made when the stream asks for it; or the status that
/// ends the stream when the batch is out of bounds.
fn batch_answers(
    verifier: Arc<TokenVerifier>,
    batch: TokenV1InputBatch,
) -> impl Stream<Item = Result<Answered<TokenV1OutputBatch>, RpcStatus>> {
    let state = batch_bounds(&batch).map(|()| BatchAnswers {
        questions: batch
            .inputs
            .into_iter()
            .map(|input| {
                let check = check(&verifier, &input);
                (input, check)
            })
            .collect::<Vec<_>>()
            .into_iter(),
        carried: None,
        made_one: false,
    });
    stream::unfold(Some(state), |state| async move {
        let mut answers = match state? {
            Ok(answers) => answers,
            Err(status) => return Some((Err(status), None)),
        };
        let message = answers.next_message().await?;
        Some((Ok(message), Some(Ok(answers))))
    })
}

impl BatchAnswers {
    /// The next message of answers, or None once every question has been answered.
    async fn next_message(&mut self) -> Option<Answered<TokenV1OutputBatch>> {
        let mut message = Answered {
            message: TokenV1OutputBatch::new(),
            bytes: 0,
            answered: 0,
        };
        if let Some((output, bytes, answered)) = self.carried.take() {
            message.message.outputs.push(output);
            message.bytes += bytes;
            message.answered += answered;
        }
        for (input, check) in self.questions.by_ref() {
            let output = output(input.request_id, &check.get().await);
            let size = output.compute_size();
            // The field's tag, its length and the answer.
            let bytes = 1 + protobuf::rt::compute_raw_varint64_size(size) as usize + size as usize;
            let answered = question_bytes(&input);
            if !message.message.outputs.is_empty()
                && message.bytes + bytes > MAX_ANSWER_MESSAGE_BYTES
            {
                self.carried = Some((output, bytes, answered));
                break;
            }
            message.message.outputs.push(output);
            message.bytes += bytes;
            message.answered += answered;
        }
        if message.message.outputs.is_empty() && self.made_one {
            return None;
        }
        self.made_one = true;
        Some(message)
    }
}

impl TokenV1Api {
    /// Why no token can be validated yet, if none can.
    fn not_ready(&self) -> Option<String> {
        keys_not_loaded(&self.verifier, NAME)
    }

    /// Serves one stream with [`answer_each`], or ends it UNAVAILABLE at once when no token
    /// can be validated yet.
    fn serve<I, O, F, S>(
        &self,
        ctx: &RpcContext,
        (requests, weigh): (RequestStream<I>, fn(&I) -> usize),
        sink: DuplexSink<O>,
        answer: F,
    ) where
        I: Send + 'static,
        O: Send + 'static,
        F: FnMut(I) -> S + Send + 'static,
        S: Stream<Item = Result<Answered<O>, RpcStatus>> + Send,
    {
        let call = Call::start_stream(ctx, Kind::BidiStream);
        let refusal = match self.not_ready() {
            Some(why) => Err((RpcStatusCode::UNAVAILABLE, why)),
            None => self
                .per_connection
                .open(ctx.peer())
                .map_err(|refused| (RpcStatusCode::RESOURCE_EXHAUSTED, refused.to_string())),
        };
        let open = match refusal {
            Ok(open) => open,
            Err((code, why)) => {
                let failed = sink.fail(RpcStatus::with_message(code, why));
                ctx.spawn(async move {
                    let sent = failed.await;
                    // Dropping the requests of a call not yet finished cancels it: held until
                    // the refusal has gone out, or the client may see CANCELLED instead of it.
                    drop(requests);
                    call.finish(sent.map(|()| code));
                });
                return;
            }
        };
        let end = self.streams_end.clone();
        let inputs = (requests.take_until(end.clone()), end);
        let holding = self.budget.holding();
        ctx.spawn(async move {
            let served = answer_each(&call, inputs, sink, holding, weigh, answer).await;
            drop(open);
            call.finish(served);
        });
    }

    /// The admin name the caller's client certificate carries, or why it may not revoke.
    fn authorize(&self, ctx: &RpcContext) -> Result<String, String> {
        let names = certificate_names(ctx);
        if names.is_empty() {
            return Err(
                "Revoke needs mutual TLS: call with a client certificate whose common \
                        name or DNS name is a --token-admin of this server"
                    .to_owned(),
            );
        }
        match names.iter().find(|name| self.admins.contains(name)) {
            Some(admin) => Ok(admin.clone()),
            None => {
                let shown: Vec<String> = names.iter().map(|n| quoted(n)).collect();
                Err(format!(
                    "the client certificate (names {}) is not a --token-admin of this server",
                    shown.join(", ")
                ))
            }
        }
    }
}

/// The common name and DNS names of the caller's verified client certificate; none without one.
fn certificate_names(ctx: &RpcContext) -> Vec<String> {
    let Some(auth) = ctx.auth_context() else {
        return Vec::new();
    };
    if !auth.peer_is_authenticated() {
        return Vec::new();
    }
    (&auth)
        .into_iter()
        .filter(|property| matches!(property.name(), "x509_common_name" | "peer_dns"))
        .filter_map(|property| property.value_str().ok().map(str::to_owned))
        .collect()
}

impl TokenV1Proto for TokenV1Api {
    fn validate(&mut self, ctx: RpcContext, req: TokenV1Input, sink: UnarySink<TokenV1Output>) {
        let call = Call::start(&ctx);
        if let Some(why) = self.not_ready() {
            return call.fail(&ctx, sink, RpcStatusCode::UNAVAILABLE, why);
        }
        let request_id = req.request_id;
        let outcome = check(&self.verifier, &req);
        call.answer(
            &ctx,
            sink,
            outcome.map(move |outcome| unary_answer(request_id, &outcome)),
        );
    }

    fn validate_stream(
        &mut self,
        ctx: RpcContext,
        requests: RequestStream<TokenV1Input>,
        sink: DuplexSink<TokenV1Output>,
    ) {
        let verifier = Arc::clone(&self.verifier);
        self.serve(&ctx, (requests, question_bytes), sink, move |input| {
            stream_answer(Arc::clone(&verifier), input)
        });
    }

    fn validate_batches(
        &mut self,
        ctx: RpcContext,
        requests: RequestStream<TokenV1InputBatch>,
        sink: DuplexSink<TokenV1OutputBatch>,
    ) {
        let verifier = Arc::clone(&self.verifier);
        self.serve(&ctx, (requests, batch_bytes), sink, move |batch| {
            batch_answers(Arc::clone(&verifier), batch)
        });
    }

    fn revoke(&mut self, ctx: RpcContext, req: TokenV1RevokeInput, sink: UnarySink<StatusOutput>) {
        let call = Call::start(&ctx);
        let admin = match self.authorize(&ctx) {
            Ok(admin) => admin,
            Err(why) => return call.fail(&ctx, sink, RpcStatusCode::PERMISSION_DENIED, why),
        };
        let (revoked, what) = match (req.token_id.is_empty(), req.token.is_empty()) {
            (false, true) => (
                self.verifier.revoke(&req.token_id, req.expires_at),
                format!("token id {}", quoted(&req.token_id)),
            ),
            (true, false) => (
                self.verifier.revoke_token(&req.token, req.expires_at),
                // The token is a secret: the audit line names its hash's start only.
                format!("the token {}...", &revocation_id(&req.token)[..23]),
            ),
            _ => {
                return call.fail(
                    &ctx,
                    sink,
                    RpcStatusCode::INVALID_ARGUMENT,
                    "give one of token_id (the token's jti) and token (the token itself, for \
                     one without a jti)"
                        .to_owned(),
                )
            }
        };
        let revoked = Eventually::of(revoked);
        let answer = revoked.map(move |revoked| {
            match revoked {
                Ok(Revoked::Until(until)) => {
                    // An audit line: who revoked which token (an id or a hash, not a secret).
                    log::info!(
                        "{what} revoked until {} by {}",
                        rfc3339(until),
                        quoted(&admin)
                    );
                    Ok(application_status(
                        200,
                        &format!("Revoked until {}", rfc3339(until)),
                    ))
                }
                Err(RevokeError::InvalidArgument(why)) => Err(RpcStatus::with_message(
                    RpcStatusCode::INVALID_ARGUMENT,
                    why,
                )),
                Err(RevokeError::Store(e)) => Err(store_status(&e)),
            }
        });
        call.answer(&ctx, sink, answer);
    }
}
