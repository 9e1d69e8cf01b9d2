//! Whether something an API needs is there (the store's database answers, the token service's
//! keys have loaded), and who to tell when that changes: the server's health checking, the
//! metrics. Below both domains, so each reports its own and the server watches both alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

type Watcher = Box<dyn Fn(bool) + Send + Sync>;

/// Up or down, shared by what finds it out (a store's monitor, a key set's loader) and the
/// server. Clones share the same state.
#[derive(Clone)]
pub struct Availability {
    inner: Arc<Inner>,
}

struct Inner {
    up: AtomicBool,
    watchers: Mutex<Vec<Watcher>>,
}

impl Availability {
    /// Up until told otherwise: a store with no database to lose (memory, an embedded file).
    pub fn always_up() -> Self {
        Self::starting(true)
    }

    /// Down until told otherwise: keys that have yet to load.
    pub fn down() -> Self {
        Self::starting(false)
    }

    fn starting(up: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                up: AtomicBool::new(up),
                watchers: Mutex::default(),
            }),
        }
    }

    /// Whether it was there the last time it was asked.
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

    /// Records what was found (by a monitor, a loader, a test double); tells the watchers when it
    /// is a change.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn watchers_hear_the_state_now_and_each_change_once() {
        let keys = Availability::down();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let ear = Arc::clone(&heard);
        keys.watch(move |up| ear.lock().expect("not poisoned").push(up));
        keys.set(true);
        keys.set(true);
        keys.set(false);
        assert_eq!(*heard.lock().expect("not poisoned"), [false, true, false]);
        assert!(!keys.is_up());
    }

    #[test]
    fn clones_share_one_state() {
        let store = Availability::always_up();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&seen);
        store.clone().watch(move |_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        store.set(false);
        assert_eq!(seen.load(Ordering::Relaxed), 2);
        assert!(!store.clone().is_up());
    }
}
