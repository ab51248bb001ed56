//! Running consumers: inline after each command, or in a worker task.

use std::sync::Arc;

use super::Dispatcher;

impl Dispatcher {
    /// Wakes a worker started with [`Dispatcher::spawn`].
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Makes `bus` catch consumers up right after each command it commits (inline mode: low
    /// latency, in the same process). Errors are logged; the command has already succeeded.
    pub fn dispatch_inline(self: &Arc<Self>) {
        self.bus.set_after_commit(Arc::new(AfterCommit {
            dispatcher: Arc::downgrade(self),
            inline: true,
        }));
    }

    /// Runs consumers in a background task (worker mode). It wakes when `bus` commits, when
    /// another process appends (PostgreSQL LISTEN/NOTIFY), and otherwise every
    /// `poll_interval`. Stop it with [`Worker::shutdown`].
    pub fn spawn(self: &Arc<Self>) -> Worker {
        self.bus.set_after_commit(Arc::new(AfterCommit {
            dispatcher: Arc::downgrade(self),
            inline: false,
        }));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let dispatcher = Arc::clone(self);
        let task = tokio::spawn(async move {
            loop {
                if let Err(error) = dispatcher.catch_up().await {
                    tracing::warn!(%error, "dispatch round failed");
                }
                tokio::select! {
                    _ = dispatcher.wake.notified() => {}
                    waited = dispatcher.store.wait_for_append(dispatcher.config.poll_interval) => {
                        if let Err(error) = waited {
                            tracing::warn!(%error, "waiting for appends failed; polling");
                            tokio::time::sleep(dispatcher.config.poll_interval).await;
                        }
                    }
                    _ = stopped.changed() => break,
                }
            }
            for consumer in &dispatcher.consumers {
                let _ = dispatcher.release_all(&**consumer).await;
            }
            dispatcher.store.stop_waiting().await;
        });
        Worker {
            stop,
            task: Some(task),
        }
    }
}

/// A running dispatch worker.
///
/// [`shutdown`](Self::shutdown) stops it and waits until it stopped: the round in progress
/// finishes, the consumers' leases are released, and every connection it held is back in its
/// pool, so a `PgPool::close` after it returns at once. Dropping a `Worker` asks it to stop the
/// same way without waiting: the task finishes its round and releases what it holds on its
/// own (unless the runtime shuts down first, when leases run out instead).
#[derive(Debug)]
pub struct Worker {
    stop: tokio::sync::watch::Sender<bool>,
    /// `None` once `shutdown` took it.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// Stops after the current round, releases the consumers' leases and the store's LISTEN
    /// connection, and returns when the worker's task has ended.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What the bus tells about its commits: a dispatcher, which catches up at once (inline) or
/// wakes its worker. It holds the dispatcher weakly, so a dropped dispatcher hears nothing.
struct AfterCommit {
    dispatcher: std::sync::Weak<Dispatcher>,
    inline: bool,
}

impl crate::engine::CommitHook for AfterCommit {
    fn committed(&self) -> crate::error::BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(dispatcher) = self.dispatcher.upgrade() else {
                return;
            };
            if self.inline {
                if let Err(error) = dispatcher.catch_up().await {
                    tracing::warn!(%error, "inline dispatch failed; consumers catch up on the next run");
                }
            } else {
                dispatcher.notify();
            }
        })
    }
}
