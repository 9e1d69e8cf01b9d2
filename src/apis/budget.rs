//! One memory budget for the work the token streams have in flight, across every stream and
//! connection of `ValidateStream` and `ValidateBatches`: the questions read and not yet
//! answered, and the answers written and not yet taken by the client (accepted into its HTTP/2
//! window). A stream that holds some of it reads a further question only when the budget has
//! room for one as large as the largest it has sent, and reserves that room until the question
//! arrives; otherwise it stops reading (HTTP/2 flow control then holds its client back, in the
//! client). A stream that holds nothing (its client has taken every answer) may always read its
//! next question, so that a client that keeps up is never held back by one that does not. Each
//! stream holds at most the question it is answering and two answer messages (one with the C
//! core, one being written): its share, however long its client leaves them unread.
//!
//! Plain Rust: counts and wakers, nothing of gRPC.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::metrics;

/// What the streams may hold at once unless told otherwise: 64 MiB.
pub const DEFAULT_STREAM_BUDGET: usize = 64 << 20;

/// The budget every token stream shares.
pub struct StreamBudget {
    limit: usize,
    /// Held, and reserved for reads under way.
    held: AtomicUsize,
    /// Streams waiting for room, each with its waker, woken together when room comes back.
    waiting: Mutex<Vec<(u64, Waker)>>,
    anyone_waiting: AtomicBool,
    next_waiter: AtomicU64,
}

impl StreamBudget {
    /// A budget of `limit` bytes, none held.
    pub fn new(limit: usize) -> Arc<Self> {
        metrics::stream_budget_limit(limit);
        Arc::new(Self {
            limit,
            held: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
            anyone_waiting: AtomicBool::new(false),
            next_waiter: AtomicU64::new(0),
        })
    }

    /// The bytes held now, by every stream.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn has_room_for(&self, bytes: usize) -> bool {
        self.held().saturating_add(bytes) <= self.limit
    }

    /// A new stream's share: nothing held yet.
    pub fn holding(self: &Arc<Self>) -> Holding {
        Holding {
            budget: Arc::clone(self),
            questions: 0,
            answers_sent: 0,
            answer_latest: 0,
            reserved: 0,
            largest_question: 0,
        }
    }

    fn charge(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.held.fetch_add(bytes, Ordering::Relaxed);
        metrics::stream_budget_held(bytes as i64);
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        // SeqCst with `wait`: either this sees the waiter, or the waiter sees the room.
        let before = self.held.fetch_sub(bytes, Ordering::SeqCst);
        metrics::stream_budget_held(-(bytes as i64));
        // Waiters want different amounts: every release wakes them while any wait. They are few
        // (streams that hold some of a spent budget) and each only looks again.
        if self.anyone_waiting.load(Ordering::SeqCst) {
            self.wake_all();
        }
        debug_assert!(before >= bytes, "released more than was held");
    }

    fn wake_all(&self) {
        let woken = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            self.anyone_waiting.store(false, Ordering::SeqCst);
            std::mem::take(&mut *waiting)
        };
        for (_, waker) in woken {
            waker.wake();
        }
    }

    /// Registers (or refreshes) waiter `id`; true if the budget has room for `bytes` after all.
    fn wait(&self, id: u64, bytes: usize, waker: &Waker) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match waiting.iter_mut().find(|(waiter, _)| *waiter == id) {
            Some((_, known)) => known.clone_from(waker),
            None => waiting.push((id, waker.clone())),
        }
        self.anyone_waiting.store(true, Ordering::SeqCst);
        // Room may have come back between the caller's look and the registration.
        self.held.load(Ordering::SeqCst).saturating_add(bytes) <= self.limit
    }

    fn stop_waiting(&self, id: u64) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.retain(|(waiter, _)| *waiter != id);
    }
}

/// What one stream holds of the budget; all of it is given back when the stream ends (dropped).
pub struct Holding {
    budget: Arc<StreamBudget>,
    /// Questions read and not yet answered.
    questions: usize,
    /// Answer messages handed to the transport whose writes have not completed, but the latest.
    answers_sent: usize,
    /// The latest answer message, which the transport may hold until the next write or flush.
    answer_latest: usize,
    /// Room taken for the question being read, until it arrives.
    reserved: usize,
    /// The largest question this stream has sent: what a read ahead reserves.
    largest_question: usize,
}

impl Holding {
    /// Everything this stream holds now, room reserved included.
    pub fn bytes(&self) -> usize {
        self.questions + self.answers_sent + self.answer_latest + self.reserved
    }

    /// Takes the room the next question needs, if the stream may read it now: always when it
    /// holds nothing (a client that has taken every answer is never held back); otherwise when
    /// the budget has room for a question as large as the largest it has sent, which is
    /// reserved until the question arrives (so that many streams reading ahead at once cannot
    /// all pass the same room).
    pub fn try_reserve(&mut self) -> bool {
        if self.bytes() == 0 || self.reserved > 0 {
            // Nothing held, or room already taken for the question being read.
            return true;
        }
        let wanted = self.largest_question;
        if !self.budget.has_room_for(wanted) {
            return false;
        }
        self.reserved = wanted;
        self.budget.charge(wanted);
        true
    }

    /// Resolves once the budget may have room for this stream's next question (or at once):
    /// what a stream that holds some of it waits for before [`Holding::try_reserve`] again.
    /// Counted as a read held back.
    pub fn room(&self) -> Room<'_> {
        Room {
            budget: &self.budget,
            bytes: self.largest_question,
            id: None,
        }
    }

    /// A question of `bytes` has been read: it takes the place of the room reserved for it.
    pub fn hold_question(&mut self, bytes: usize) {
        self.largest_question = self.largest_question.max(bytes);
        self.budget.release(std::mem::take(&mut self.reserved));
        self.questions += bytes;
        self.budget.charge(bytes);
    }

    /// Questions of `bytes` (of those held) have been answered.
    pub fn answered(&mut self, bytes: usize) {
        let bytes = bytes.min(self.questions);
        self.questions -= bytes;
        self.budget.release(bytes);
    }

    /// Every question held has been answered (what a batch held beyond its questions' own bytes
    /// included).
    pub fn answered_all(&mut self) {
        self.budget.release(std::mem::take(&mut self.questions));
    }

    /// An answer message of `bytes` has been handed to the transport.
    pub fn sent(&mut self, bytes: usize) {
        self.answers_sent += std::mem::replace(&mut self.answer_latest, bytes);
        self.budget.charge(bytes);
    }

    /// Every write but the latest has completed (the transport is ready for the next).
    pub fn writes_done_but_latest(&mut self) {
        self.budget.release(std::mem::take(&mut self.answers_sent));
    }

    /// Every write has completed (a flush). A stream that holds no question either then holds
    /// nothing, and needs no room reserved to read its next one: what it reserved is given back
    /// (an idle stream holds none of the budget).
    pub fn writes_done(&mut self) {
        self.writes_done_but_latest();
        self.budget.release(std::mem::take(&mut self.answer_latest));
        if self.questions == 0 {
            self.budget.release(std::mem::take(&mut self.reserved));
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.budget.release(self.bytes());
    }
}

/// The wait [`Holding::room`] returns.
pub struct Room<'a> {
    budget: &'a StreamBudget,
    bytes: usize,
    id: Option<u64>,
}

impl Future for Room<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.budget.has_room_for(self.bytes) {
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                metrics::stream_read_held_back();
                let id = self.budget.next_waiter.fetch_add(1, Ordering::Relaxed);
                self.id = Some(id);
                id
            }
        };
        if self.budget.wait(id, self.bytes, cx.waker()) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.budget.stop_waiting(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    #[test]
    fn a_stream_holding_nothing_may_always_read_one_holding_some_only_with_room() {
        let budget = StreamBudget::new(1000);
        let mut greedy = budget.holding();
        let mut polite = budget.holding();
        assert!(greedy.try_reserve(), "nothing held");
        greedy.hold_question(200);
        greedy.answered(200);
        greedy.sent(300);
        assert!(greedy.try_reserve(), "300 + 200 of 1000: room");
        assert_eq!(budget.held(), 500);
        greedy.hold_question(100);
        assert_eq!(budget.held(), 400, "the question takes its room's place");
        greedy.answered(100);
        greedy.sent(700);
        assert_eq!(budget.held(), 1000);
        assert!(!greedy.try_reserve(), "spent, and it holds some");
        assert!(polite.try_reserve(), "it holds none");
        assert!(greedy.room().now_or_never().is_none());
        greedy.writes_done_but_latest();
        assert_eq!(greedy.bytes(), 700);
        assert!(greedy.try_reserve(), "700 + 200 of 1000");
        greedy.writes_done();
        assert_eq!(budget.held(), 0, "idle, it holds no room either");
    }

    #[test]
    fn reads_ahead_reserve_so_that_many_cannot_pass_the_same_room() {
        let budget = StreamBudget::new(1000);
        let mut streams: Vec<Holding> = (0..10).map(|_| budget.holding()).collect();
        for stream in &mut streams {
            stream.hold_question(300);
            stream.answered(300);
            stream.sent(10);
        }
        let reading: usize = streams
            .iter_mut()
            .map(|s| usize::from(s.try_reserve()))
            .sum();
        assert_eq!(reading, 3, "900 free: three reads of 300, then 1000 held");
        assert!(budget.held() <= 1000);
    }

    #[test]
    fn a_stream_waiting_for_room_is_woken_when_room_comes_back() {
        let budget = StreamBudget::new(100);
        let mut hog = budget.holding();
        let mut waiter = budget.holding();
        hog.hold_question(150);
        waiter.hold_question(1);
        let woken = Arc::new(AtomicBool::new(false));
        let waker = {
            struct Flag(Arc<AtomicBool>);
            impl std::task::Wake for Flag {
                fn wake(self: Arc<Self>) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            Waker::from(Arc::new(Flag(Arc::clone(&woken))))
        };
        let mut room = waiter.room();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut room).poll(&mut cx).is_pending());
        drop(hog);
        assert!(woken.load(Ordering::SeqCst));
        assert!(Pin::new(&mut room).poll(&mut cx).is_ready());
        drop(room);
        assert!(
            budget.waiting.lock().unwrap().is_empty(),
            "a finished wait leaves no waker"
        );
    }

    #[test]
    fn a_stream_that_ends_gives_back_all_it_held() {
        let budget = StreamBudget::new(100);
        let mut holding = budget.holding();
        holding.hold_question(30);
        holding.sent(20);
        holding.sent(10);
        assert_eq!(budget.held(), 60);
        drop(holding);
        assert_eq!(budget.held(), 0);
    }
}
