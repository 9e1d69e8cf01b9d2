//! An answer that is ready now, or comes later: a token whose provider's keys must reload first,
//! a store that answers after its database's commit. Handlers reply at once to the first and
//! wait for the second without holding their thread; written once here rather than as a match
//! in every API.

use futures::future::BoxFuture;
use futures::FutureExt as _;

/// A value ready now, or one a future will give.
pub enum Eventually<T> {
    /// Ready.
    Now(T),
    /// Given by this future once what it waits for is done.
    Later(BoxFuture<'static, T>),
}

impl<T: Send + 'static> Eventually<T> {
    /// What `future` gives: `Now` when it is ready at its first poll (a store in memory, a
    /// cached answer), `Later` otherwise.
    pub fn of(mut future: BoxFuture<'static, T>) -> Self {
        match (&mut future).now_or_never() {
            Some(ready) => Self::Now(ready),
            None => Self::Later(future),
        }
    }

    /// The value made by `f` of this one, now or once it is ready.
    pub fn map<U: Send + 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> Eventually<U> {
        match self {
            Self::Now(value) => Eventually::Now(f(value)),
            Self::Later(future) => Eventually::Later(future.map(f).boxed()),
        }
    }

    /// The value, waiting for it if it is not ready.
    pub async fn get(self) -> T {
        match self {
            Self::Now(value) => value,
            Self::Later(future) => future.await,
        }
    }
}
