//! A validation on its way, as a future that needs no particular executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::oneshot;

use super::{ValidateError, Validation};

/// A validation on its way: a future of its [`Validation`], independent of any executor.
#[must_use = "the answer comes through this future"]
pub struct PendingValidation(pub(super) Awaited);

pub(super) enum Awaited {
    /// Boxed: an answer is far larger than a receiver, and ready ones are the rare ones.
    Ready(Option<Box<Validation>>),
    Waiting(oneshot::Receiver<Validation>),
}

impl PendingValidation {
    pub(super) fn ready(validation: Validation) -> Self {
        Self(Awaited::Ready(Some(Box::new(validation))))
    }

    /// An answer already known, in line with answers on their way (a caller that keeps its
    /// answers in input order, and refuses some input itself).
    pub fn answered(answer: crate::proto::TokenV1Output) -> Self {
        Self::ready(Ok(answer.into()))
    }
}

impl Future for PendingValidation {
    type Output = Validation;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Validation> {
        match &mut self.0 {
            Awaited::Ready(validation) => Poll::Ready(
                *validation
                    .take()
                    .expect("a ready validation is polled once"),
            ),
            // The supervisor answers every request before it drops it; a dropped sender can
            // only mean the validator is gone.
            Awaited::Waiting(answer) => Pin::new(answer)
                .poll(cx)
                .map(|answer| answer.unwrap_or(Err(ValidateError::Closed))),
        }
    }
}
