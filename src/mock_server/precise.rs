//! A high-resolution timer for the mock's first-token deadlines.
//!
//! tokio's timer wheel fires on 1 ms ticks, so a deadline served by `tokio::time::sleep_until`
//! is 0–1 ms late (more when the tick is rounded up), and that error lands in every TTFT a client
//! measures against the mock. One OS thread keeps the pending deadlines in a heap and waits on a
//! condition variable with the earliest one as its timeout (a futex wait on Linux: high-resolution
//! timers, tens of µs late), then completes each due deadline's oneshot. Only first tokens use it:
//! one wake-up per request costs nothing measurable, while per-token wake-ups through a thread
//! would cost the mock throughput that the client benchmark's ceiling needs.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

/// One pending deadline; the heap pops the earliest first (ties in arrival order).
struct Entry {
    due: Instant,
    seq: u64,
    done: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct Pending {
    heap: BinaryHeap<Entry>,
    seq: u64,
    stop: bool,
}

/// See the module doc. Dropping it stops its thread.
pub struct PreciseTimer {
    shared: Arc<(Mutex<Pending>, Condvar)>,
}

impl PreciseTimer {
    /// Start the timer thread.
    pub fn start() -> std::io::Result<PreciseTimer> {
        let shared = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("mock-precise-timer".into())
            .spawn(move || run(&worker))?;
        Ok(PreciseTimer { shared })
    }

    /// Resolves at `due` (at once when it has passed).
    pub async fn sleep_until(&self, due: Instant) {
        let (done, wait) = oneshot::channel();
        {
            let (lock, cv) = &*self.shared;
            let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
            p.seq += 1;
            let seq = p.seq;
            p.heap.push(Entry { due, seq, done });
            cv.notify_one();
        }
        // A closed channel (the timer stopped) also ends the wait: never hang a request.
        let _ = wait.await;
    }
}

impl Drop for PreciseTimer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
    }
}

fn run(shared: &(Mutex<Pending>, Condvar)) {
    let (lock, cv) = shared;
    let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if p.stop {
            return;
        }
        let now = Instant::now();
        while p.heap.peek().is_some_and(|e| e.due <= now) {
            if let Some(e) = p.heap.pop() {
                let _ = e.done.send(());
            }
        }
        p = match p.heap.peek().map(|e| e.due - now) {
            None => cv.wait(p).unwrap_or_else(|e| e.into_inner()),
            Some(wait) => {
                cv.wait_timeout(p, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_resolve_in_order_never_early() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let timer = PreciseTimer::start().unwrap();
        rt.block_on(async {
            let start = Instant::now();
            let waits = [6u64, 2, 4, 0];
            let mut set = tokio::task::JoinSet::new();
            let timer = std::sync::Arc::new(timer);
            for (i, ms) in waits.into_iter().enumerate() {
                let timer = timer.clone();
                set.spawn(async move {
                    let due = start + Duration::from_millis(ms);
                    timer.sleep_until(due).await;
                    (i, Instant::now() >= due)
                });
            }
            let mut resolved = 0;
            while let Some(r) = set.join_next().await {
                let (_, on_time) = r.unwrap();
                assert!(on_time, "a deadline resolved early");
                resolved += 1;
            }
            assert_eq!(resolved, 4);
        });
    }
}
