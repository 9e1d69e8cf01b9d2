//! One `ValidateBatches` call: a writer that sends the questions handed to it, and a reader that
//! hands the answers back, until the call ends. The writer coalesces by itself, with nothing to
//! tune: a question goes out at once when no write is in flight, and the questions that arrive
//! while one is leave together in the next batch (Nagle's algorithm without its delay), within
//! the server's bounds on a batch.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{CallOption, RpcStatusCode, WriteFlags};

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
        // No deadline: the stream lives as long as the validator; each question has its own.
        let (mut sink, mut answers) = match self.client.validate_batches_opt(CallOption::default())
        {
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
        let (sender, mut questions) = mpsc::unbounded::<TokenV1Input>();
        self.client.spawn(async move {
            let mut carried = None;
            while let Some(batch) = next_batch(&mut questions, &mut carried).await {
                // Sent, not fed: the next batch is made once this one is written, of every
                // question that arrived meanwhile. A failed write shows in the reader as the
                // call's status.
                if sink.send((batch, WriteFlags::default())).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let shared = Arc::clone(self);
        self.client.spawn(async move {
            while let Some(answers) = answers.next().await {
                match answers {
                    Ok(batch) => {
                        for answer in batch.outputs {
                            shared.answered(generation, answer);
                        }
                    }
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
