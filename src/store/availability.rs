//! Whether a store's database answers, as its monitor last found it, and who to tell when that
//! changes (the server's health checking).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

type Watcher = Box<dyn Fn(bool) + Send + Sync>;

/// Up or down, shared by a store, its monitor and the server. Clones share the same state.
#[derive(Clone)]
pub struct Availability {
    inner: Arc<Inner>,
}

struct Inner {
    up: AtomicBool,
    watchers: Mutex<Vec<Watcher>>,
}

impl Availability {
    /// A store with no database to lose (memory, an embedded file).
    pub fn always_up() -> Self {
        Self {
            inner: Arc::new(Inner {
                up: AtomicBool::new(true),
                watchers: Mutex::default(),
            }),
        }
    }

    /// Whether the database answered the last time it was asked.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Calls `watcher` with the current state now and with every change from now on.
    pub fn watch(&self, watcher: impl Fn(bool) + Send + Sync + 'static) {
        let mut watchers = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        watcher(self.is_up());
        watchers.push(Box::new(watcher));
    }

    /// Records what the monitor (or a test double) found; tells the watchers when it is a change.
    pub fn set(&self, up: bool) {
        // Under the lock, so watchers see changes in the order they happened.
        let watchers = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.up.swap(up, Ordering::AcqRel) != up {
            for watcher in watchers.iter() {
                watcher(up);
            }
        }
    }
}
