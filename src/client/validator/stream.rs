//! One stream to the server: a writer that sends the questions handed to it, and a reader that
//! hands the answers back, until the call ends. Over `ValidateBatches`, the writer coalesces by
//! itself, with nothing to tune: a question goes out at once when no write is in flight, and the
//! questions that arrive while one is leave together in the next batch (Nagle's algorithm
//! without its delay), within the server's bounds on a batch. A server without it (an older
//! version) is asked over `ValidateStream`, one question to a message, from then on.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt as _, Stream, StreamExt as _};
use grpcio::{CallOption, RpcStatusCode, WriteFlags};

use super::answer::{TokenAnswer, VALIDATE_BATCHES, VALIDATE_STREAM};
use super::shared::Shared;
use crate::proto::{TokenV1Input, TokenV1InputBatch};
use crate::tokens::{MAX_BATCH_QUESTIONS, MAX_BATCH_TOKEN_BYTES};

impl Shared {
    /// Opens stream `generation`: its writer takes questions from the returned sender, its
    /// reader hands answers back. Called without the lock: the first poll of a spawned future
    /// runs here and may take it.
    pub(super) fn open(
        self: &Arc<Self>,
        generation: u64,
    ) -> Option<mpsc::UnboundedSender<TokenV1Input>> {
        let (sender, questions) = mpsc::unbounded::<TokenV1Input>();
        let opened = if self.batches.load(Ordering::Acquire) {
            self.open_batches(generation, questions)
        } else {
            self.open_stream(generation, questions)
        };
        if let Err(e) = opened {
            self.stream_ended(
                generation,
                Some((
                    RpcStatusCode::UNKNOWN,
                    format!("cannot start the call: {e}"),
                )),
            );
            return None;
        }
        Some(sender)
    }

    fn open_batches(
        self: &Arc<Self>,
        generation: u64,
        mut questions: mpsc::UnboundedReceiver<TokenV1Input>,
    ) -> grpcio::Result<()> {
        // No deadline: the stream lives as long as the validator; each question has its own.
        let (mut sink, answers) = self
            .client
            .duplex_streaming(&VALIDATE_BATCHES, CallOption::default())?;
        let shared = Arc::clone(self);
        self.client.spawn(async move {
            let mut carried = None;
            while let Some(batch) = next_batch(&mut questions, &mut carried).await {
                // Sent, not fed: the next batch is made once this one is written, of every
                // question that arrived meanwhile. A failed write shows in the reader as the
                // call's status.
                if sink.send((batch, WriteFlags::default())).await.is_err() {
                    return;
                }
                shared.messages.fetch_add(1, Ordering::Relaxed);
            }
            let _ = sink.close().await;
        });
        self.client
            .spawn(Arc::clone(self).read(generation, answers, true));
        Ok(())
    }

    fn open_stream(
        self: &Arc<Self>,
        generation: u64,
        questions: mpsc::UnboundedReceiver<TokenV1Input>,
    ) -> grpcio::Result<()> {
        let (mut sink, answers) = self
            .client
            .duplex_streaming(&VALIDATE_STREAM, CallOption::default())?;
        // Questions queued together go out in one write, not one write each.
        sink.enhance_batch(true);
        let shared = Arc::clone(self);
        self.client.spawn(async move {
            let mut questions = questions.map(|q| {
                shared.messages.fetch_add(1, Ordering::Relaxed);
                Ok((q, WriteFlags::default()))
            });
            // A failed write shows in the reader as the call's status.
            if sink.send_all(&mut questions).await.is_ok() {
                let _ = sink.close().await;
            }
        });
        let answers = answers.map(|answer| answer.map(|answer| vec![answer]));
        self.client
            .spawn(Arc::clone(self).read(generation, answers, false));
        Ok(())
    }

    /// Hands every answer of stream `generation` back until it ends, and says how it ended.
    async fn read(
        self: Arc<Self>,
        generation: u64,
        mut answers: impl Stream<Item = grpcio::Result<Vec<TokenAnswer>>> + Unpin,
        batches: bool,
    ) {
        let mut answered = false;
        while let Some(answer) = answers.next().await {
            match answer {
                Ok(outputs) => {
                    answered = true;
                    self.answered(generation, outputs);
                }
                Err(grpcio::Error::RpcFailure(status))
                    if batches && !answered && status.code() == RpcStatusCode::UNIMPLEMENTED =>
                {
                    // Not a refusal of the questions: the server predates batches.
                    self.batches.store(false, Ordering::Release);
                    log::info!(
                        "{} has no ValidateBatches (an older version): asking over \
                         ValidateStream",
                        self.server
                    );
                    return self.stream_ended(
                        generation,
                        Some((
                            RpcStatusCode::UNAVAILABLE,
                            "the server has no ValidateBatches; asking again over ValidateStream"
                                .to_owned(),
                        )),
                    );
                }
                Err(grpcio::Error::RpcFailure(status)) => {
                    let message = status.message().to_owned();
                    return self.stream_ended(generation, Some((status.code(), message)));
                }
                Err(e) => {
                    return self
                        .stream_ended(generation, Some((RpcStatusCode::UNKNOWN, e.to_string())))
                }
            }
        }
        self.stream_ended(generation, None);
    }
}

/// The next batch: the first question waiting (waited for), and every other already waiting, up
/// to the server's bounds; a question that would break them is `carried` to the next. None once
/// the questions end.
async fn next_batch(
    questions: &mut mpsc::UnboundedReceiver<TokenV1Input>,
    carried: &mut Option<TokenV1Input>,
) -> Option<TokenV1InputBatch> {
    let first = match carried.take() {
        Some(first) => first,
        None => questions.next().await?,
    };
    let mut bytes = first.token.len();
    let mut batch = TokenV1InputBatch::new();
    batch.inputs.push(first);
    while batch.inputs.len() < MAX_BATCH_QUESTIONS {
        let Ok(question) = questions.try_recv() else {
            break;
        };
        // Each token is at most MAX_TOKEN_BYTES (longer ones are answered here), so one always
        // fits a batch of its own.
        match bytes.checked_add(question.token.len()) {
            Some(more) if more <= MAX_BATCH_TOKEN_BYTES => {
                bytes = more;
                batch.inputs.push(question);
            }
            _ => {
                *carried = Some(question);
                break;
            }
        }
    }
    Some(batch)
}
