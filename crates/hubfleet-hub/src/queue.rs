//! The fair spawn queue: instead of JupyterHub's 429 "too many users" at class start, starts beyond
//! `spawner.concurrent_starts` (and beyond `spawner.active_server_limit`) wait in first-come,
//! first-served order, and each waiting person sees their position and an estimated wait. Only a
//! full queue (`spawner.max_queue`) refuses a start, with `Retry-After`.
//!
//! The queue is in memory on purpose: a spawn in the queue has not touched a spawner yet, so a hub
//! restart loses nothing that cannot be retried, and admission is a lock and two integers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

/// How many recent start durations the wait estimate averages.
const RECENT_STARTS: usize = 20;

#[derive(Debug)]
pub(crate) struct QueueLimits {
    pub concurrent_starts: usize,
    pub max_queue: usize,
    /// 0 = no limit.
    pub active_server_limit: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Ticket numbers, oldest first.
    waiting: VecDeque<u64>,
    next_ticket: u64,
    /// Spawns admitted and not yet finished.
    starting: usize,
    /// Servers running (or stopping), as the hub last counted them.
    running: usize,
    recent_start_seconds: VecDeque<f64>,
}

pub(crate) struct SpawnQueue {
    limits: QueueLimits,
    state: Mutex<QueueState>,
    /// Bumped on every change so waiters re-check their position.
    changed: watch::Sender<u64>,
}

/// Why a start was refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull {
    pub waiting: usize,
    pub retry_after_seconds: u64,
}

/// Where a waiting spawn stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QueuePosition {
    /// 1-based: 1 means next in line.
    pub position: usize,
    pub estimated_wait_seconds: Option<u64>,
}

/// A place in the queue. Dropping it (e.g. the spawn was cancelled) gives the place up.
pub(crate) struct Ticket {
    queue: Arc<SpawnQueue>,
    number: u64,
    admitted: bool,
}

/// An admitted start. Dropping it frees the start slot.
pub(crate) struct StartSlot {
    queue: Arc<SpawnQueue>,
    started: Instant,
}

impl SpawnQueue {
    pub fn new(limits: QueueLimits) -> Arc<SpawnQueue> {
        Arc::new(SpawnQueue {
            limits,
            state: Mutex::new(QueueState::default()),
            changed: watch::channel(0).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().expect("spawn queue poisoned")
    }

    fn notify(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    pub fn set_running(&self, running: usize) {
        self.lock().running = running;
        self.notify();
    }

    pub fn server_stopped(&self) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        drop(state);
        self.notify();
    }

    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Joins the queue, or refuses when it is full.
    pub fn join(self: &Arc<Self>) -> Result<Ticket, QueueFull> {
        let mut state = self.lock();
        if state.waiting.len() >= self.limits.max_queue {
            let waiting = state.waiting.len();
            let retry_after_seconds = self.estimate(&state, waiting).unwrap_or(30).clamp(10, 600);
            return Err(QueueFull {
                waiting,
                retry_after_seconds,
            });
        }
        let number = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back(number);
        drop(state);
        self.notify();
        Ok(Ticket {
            queue: Arc::clone(self),
            number,
            admitted: false,
        })
    }

    /// Seconds until the spawn at 1-based `position` can start, from recent start durations.
    fn estimate(&self, state: &QueueState, position: usize) -> Option<u64> {
        if state.recent_start_seconds.is_empty() {
            return None;
        }
        let mean = state.recent_start_seconds.iter().sum::<f64>()
            / state.recent_start_seconds.len() as f64;
        // Starts run `concurrent_starts` at a time, so each "round" of the queue takes one start.
        let rounds = position.div_ceil(self.limits.concurrent_starts.max(1));
        Some((mean * rounds as f64).ceil() as u64)
    }

    fn can_admit(&self, state: &QueueState) -> bool {
        let under_concurrency = state.starting < self.limits.concurrent_starts;
        let under_active = self.limits.active_server_limit == 0
            || state.running + state.starting < self.limits.active_server_limit;
        under_concurrency && under_active
    }
}

impl Ticket {
    /// The current position, or `None` once admitted.
    pub fn position(&self) -> Option<QueuePosition> {
        let state = self.queue.lock();
        let index = state.waiting.iter().position(|n| *n == self.number)?;
        Some(QueuePosition {
            position: index + 1,
            estimated_wait_seconds: self.queue.estimate(&state, index + 1),
        })
    }

    /// Waits for this ticket's turn, calling `on_move` whenever its position changes.
    pub async fn admitted(mut self, mut on_move: impl FnMut(QueuePosition)) -> StartSlot {
        let mut changes = self.queue.changed.subscribe();
        let mut last_reported = None;
        loop {
            {
                let mut state = self.queue.lock();
                let at_head = state.waiting.front() == Some(&self.number);
                if at_head && self.queue.can_admit(&state) {
                    state.waiting.pop_front();
                    state.starting += 1;
                    drop(state);
                    self.admitted = true;
                    self.queue.notify();
                    return StartSlot {
                        queue: Arc::clone(&self.queue),
                        started: Instant::now(),
                    };
                }
            }
            if let Some(position) = self.position()
                && last_reported != Some(position)
            {
                on_move(position);
                last_reported = Some(position);
            }
            if changes.changed().await.is_err() {
                // The queue is gone with the hub; there is nothing left to wait for.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.admitted {
            return;
        }
        let mut state = self.queue.lock();
        state.waiting.retain(|n| *n != self.number);
        drop(state);
        self.queue.notify();
    }
}

impl StartSlot {
    /// Ends the start; a successful one feeds the wait estimate and counts as running.
    pub fn finish(self, succeeded: bool) {
        let mut state = self.queue.lock();
        if succeeded {
            state.running += 1;
            if state.recent_start_seconds.len() == RECENT_STARTS {
                state.recent_start_seconds.pop_front();
            }
            state
                .recent_start_seconds
                .push_back(self.started.elapsed().as_secs_f64());
        }
        // `starting` is released by Drop.
    }
}

impl Drop for StartSlot {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.starting = state.starting.saturating_sub(1);
        drop(state);
        self.queue.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(concurrent_starts: usize, max_queue: usize, active: usize) -> Arc<SpawnQueue> {
        SpawnQueue::new(QueueLimits {
            concurrent_starts,
            max_queue,
            active_server_limit: active,
        })
    }

    #[tokio::test]
    async fn admits_up_to_the_concurrency_limit_then_first_come_first_served() {
        let queue = queue(2, 10, 0);
        let first = queue.join().unwrap().admitted(|_| {}).await;
        let second = queue.join().unwrap().admitted(|_| {}).await;
        let third = queue.join().unwrap();
        let fourth = queue.join().unwrap();
        assert_eq!(third.position().unwrap().position, 1);
        assert_eq!(fourth.position().unwrap().position, 2);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let waiter = tokio::spawn({
            let tx = tx.clone();
            async move {
                // Third in line must be admitted before fourth.
                let slot = third.admitted(|_| {}).await;
                tx.send(3).unwrap();
                slot.finish(true);
            }
        });
        first.finish(true);
        assert_eq!(rx.recv().await, Some(3));
        waiter.await.unwrap();
        assert_eq!(fourth.position().unwrap().position, 1);
        drop(second);
        let slot = fourth.admitted(|_| {}).await;
        drop(slot);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_with_retry_after() {
        let queue = queue(1, 2, 0);
        let _slot = queue.join().unwrap().admitted(|_| {}).await;
        let _a = queue.join().unwrap();
        let _b = queue.join().unwrap();
        let full = queue.join().err().expect("third waiter is refused");
        assert_eq!(full.waiting, 2);
        assert!(full.retry_after_seconds >= 10);
    }

    #[tokio::test]
    async fn giving_up_a_ticket_moves_everyone_behind_it_up() {
        let queue = queue(1, 10, 0);
        let _slot = queue.join().unwrap().admitted(|_| {}).await;
        let a = queue.join().unwrap();
        let b = queue.join().unwrap();
        assert_eq!(b.position().unwrap().position, 2);
        drop(a);
        assert_eq!(b.position().unwrap().position, 1);
    }

    #[tokio::test]
    async fn the_active_server_limit_holds_starts_until_a_server_stops() {
        let queue = queue(5, 10, 1);
        queue.set_running(1);
        let ticket = queue.join().unwrap();
        let admitted = tokio::spawn(async move { drop(ticket.admitted(|_| {}).await) });
        tokio::task::yield_now().await;
        assert_eq!(queue.waiting(), 1, "held while the one allowed server runs");
        queue.server_stopped();
        admitted.await.unwrap();
        assert_eq!(queue.waiting(), 0);
    }

    #[test]
    fn wait_estimate_grows_with_position_in_rounds_of_concurrent_starts() {
        let queue = queue(2, 10, 0);
        let mut state = QueueState::default();
        state.recent_start_seconds.extend([4.0, 6.0]);
        assert_eq!(queue.estimate(&state, 1), Some(5));
        assert_eq!(queue.estimate(&state, 2), Some(5));
        assert_eq!(queue.estimate(&state, 3), Some(10));
    }
}
