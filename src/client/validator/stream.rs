//! One `ValidateStream` call: a writer that sends the questions handed to it, and a reader that
//! hands the answers back, until the call ends.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt as _, StreamExt as _};
use grpcio::{CallOption, RpcStatusCode, WriteFlags};

use super::shared::Shared;
use crate::proto::TokenV1Input;

impl Shared {
    /// Opens stream `generation`: its writer takes questions from the returned sender, its
    /// reader hands answers back. Called without the lock: the first poll of a spawned future
    /// runs here and may take it.
    pub(super) fn open(
        self: &Arc<Self>,
        generation: u64,
    ) -> Option<mpsc::UnboundedSender<TokenV1Input>> {
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
}
