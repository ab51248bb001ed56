//! Merging concurrent requests, so that one round trip and one commit serve many.
//!
//! Every request joins a queue, then waits for its answer or for one of a few slots, whichever
//! comes first. Whoever gets a slot takes the oldest queued requests, up to the batch limits,
//! and runs them in a task of its own, so a caller that gives up waiting cannot cut short work
//! that carries other callers' requests; then it waits again, until its own request is
//! answered. While a batch is running the queue fills, and the next batch takes it: the busier
//! the store, the larger the batches, and a lone caller pays for a queue it never waits in.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Semaphore, oneshot};

/// A request in a batch, and where its answer goes.
pub(crate) struct Queued<T, R> {
    /// The request.
    pub(crate) item: T,
    reply: oneshot::Sender<R>,
    /// Which caller queued it.
    caller: u64,
}

impl<T, R> Queued<T, R> {
    /// Sends the answer; a caller that stopped waiting does not mind.
    pub(crate) fn answer(self, answer: R) {
        let _ = self.reply.send(answer);
    }

    /// The request and its reply slot, for answering after the request was consumed.
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn split(self) -> (T, Reply<R>) {
        (self.item, Reply(self.reply))
    }
}

/// Where the answer of a [`Queued`] request goes, once the request was taken out.
#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
pub(crate) struct Reply<R>(oneshot::Sender<R>);

#[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
impl<R> Reply<R> {
    /// Sends the answer; a caller that stopped waiting does not mind.
    pub(crate) fn send(self, answer: R) {
        let _ = self.0.send(answer);
    }
}

/// The queue of one kind of request.
pub(crate) struct Batcher<T, R> {
    queue: Mutex<Vec<Queued<T, R>>>,
    /// Numbers the callers, so that one can tell a batch of its own request alone.
    callers: std::sync::atomic::AtomicU64,
    slots: Arc<Semaphore>,
    max_items: usize,
    max_weight: usize,
    weight: fn(&T) -> usize,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// A batcher running at most `slots` batches at once, each of at most `max_items` requests,
    /// and taking no more requests once they weigh `max_weight` in total by `weight` (so a
    /// batch may go over it by its last request, and a request heavier than it goes alone).
    pub(crate) fn new(
        slots: usize,
        max_items: usize,
        max_weight: usize,
        weight: fn(&T) -> usize,
    ) -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            callers: std::sync::atomic::AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(slots)),
            max_items,
            max_weight,
            weight,
        }
    }

    /// Queues `item` and returns its answer. Whenever this caller gets a slot while requests
    /// are queued, `run` makes the work for the oldest of them, which is spawned (or, when it
    /// is this caller's request alone, run in place); the caller then waits again for its
    /// answer or a slot, since its own request may not have fitted in that batch.
    ///
    /// `None` means the task running the batch ended without answering (it panicked), so
    /// whether the request was carried out is unknown. A caller that stops waiting before its
    /// request left the queue withdraws it; after that, it is carried out with its batch.
    pub(crate) async fn submit<F, Fut>(&self, item: T, run: F) -> Option<R>
    where
        F: Fn(Vec<Queued<T, R>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel();
        let caller = self
            .callers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().push(Queued {
            item,
            reply,
            caller,
        });
        loop {
            let slot = tokio::select! {
                // A slot holder took this request with its batch and has answered.
                answered = &mut answer => return answered.ok(),
                slot = Arc::clone(&self.slots).acquire_owned() => slot.ok()?,
            };
            let batch = self.take();
            if batch.is_empty() {
                // The queue is empty, so an earlier slot holder took this request.
                drop(slot);
                return answer.await.ok();
            }
            let alone = matches!(batch.as_slice(), [only] if only.caller == caller);
            let work = run(batch);
            if alone {
                // This caller's request alone, no one else's: run it here, which saves a task
                // and two wake-ups; stopping it can cut short only this caller's own request.
                // A panic is contained as a spawned task's would be: the answer is `None`.
                let _ = CatchUnwind(Box::pin(work)).await;
                drop(slot);
                return answer.await.ok();
            }
            tokio::spawn(async move {
                work.await;
                drop(slot);
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Queued<T, R>>> {
        // The queue is a plain list; a panic elsewhere cannot leave it half changed.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch: queued requests whose callers still wait, oldest first, within the
    /// limits.
    fn take(&self) -> Vec<Queued<T, R>> {
        let mut queue = self.lock();
        queue.retain(|queued| !queued.reply.is_closed());
        let mut weight = 0;
        let mut count = 0;
        for queued in queue.iter() {
            if count == self.max_items || (count > 0 && weight >= self.max_weight) {
                break;
            }
            weight += (self.weight)(&queued.item);
            count += 1;
        }
        queue.drain(..count).collect()
    }
}

/// A future that turns a panic of the future it runs into `Err`, as a spawned task would.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(_) => std::task::Poll::Ready(Err(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Concurrent requests are answered each with its own result, in batches that grow while
    /// a batch is running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_get_their_own_answers() {
        let batcher = Arc::new(Batcher::<usize, usize>::new(1, 100, 100, |_| 1));
        let batches = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..64 {
            let batcher = Arc::clone(&batcher);
            let batches = Arc::clone(&batches);
            tasks.spawn(async move {
                let answer = batcher
                    .submit(n, |batch| {
                        let batches = Arc::clone(&batches);
                        async move {
                            batches.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            for queued in batch {
                                let doubled = queued.item * 2;
                                queued.answer(doubled);
                            }
                        }
                    })
                    .await;
                (n, answer)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (n, answer) = done.expect("task");
            assert_eq!(answer, Some(n * 2));
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(batches < 64, "{batches} batches for 64 requests");
    }

    /// A batch stops at its limits, and a request too heavy for any batch still goes alone.
    #[tokio::test]
    async fn batches_keep_to_their_limits() {
        let batcher = Batcher::<usize, ()>::new(1, 3, 10, |w| *w);
        let mut waiting = Vec::new();
        for weight in [4, 4, 4, 20, 1, 1, 1, 1] {
            let (reply, answer) = oneshot::channel();
            batcher.lock().push(Queued {
                item: weight,
                reply,
                caller: u64::MAX,
            });
            waiting.push(answer);
        }
        let batches: Vec<Vec<usize>> = (0..5)
            .map(|_| batcher.take().into_iter().map(|q| q.item).collect())
            .collect();
        assert_eq!(
            batches,
            [vec![4, 4, 4], vec![20], vec![1, 1, 1], vec![1], vec![]]
        );
    }

    /// A request whose caller stopped waiting is dropped from the queue.
    #[tokio::test]
    async fn withdrawn_requests_are_dropped() {
        let batcher = Batcher::<usize, ()>::new(1, 10, 10, |_| 1);
        let (reply, answer) = oneshot::channel();
        batcher.lock().push(Queued {
            item: 1,
            reply,
            caller: u64::MAX,
        });
        drop(answer);
        assert!(batcher.take().is_empty());
    }

    /// A caller whose request did not fit in the batch it started still gets its answer, with
    /// nobody else submitting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_left_out_of_its_callers_batch_is_answered() {
        let batcher = Batcher::<usize, usize>::new(1, 1, 10, |_| 1);
        // An earlier request that is queued but whose caller has not asked for a slot yet.
        let (reply, mut earlier) = oneshot::channel();
        batcher.lock().push(Queued {
            item: 1,
            reply,
            caller: u64::MAX,
        });
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            batcher.submit(2, |batch| async move {
                for queued in batch {
                    let doubled = queued.item * 2;
                    queued.answer(doubled);
                }
            }),
        )
        .await;
        assert_eq!(answer, Ok(Some(4)), "answered, not left in the queue");
        assert_eq!(earlier.try_recv(), Ok(2));
    }

    /// A batch panicking answers `None`, not a hang.
    #[tokio::test]
    async fn a_batch_that_panics_answers_none() {
        let batcher = Batcher::<(), ()>::new(1, 10, 10, |_| 1);
        let answer = batcher
            .submit((), |_batch| async move { panic!("deliberate") })
            .await;
        assert_eq!(answer, None);
    }
}
