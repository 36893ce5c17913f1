//! Queue depths for the status API and self-metrics, read without holding the queue open.

use std::sync::Arc;

use tokio::sync::mpsc;

/// Reads a queue's depth without keeping the queue open; `None` once it has closed.
#[derive(Clone)]
pub struct QueueProbe(Arc<dyn Fn() -> Option<usize> + Send + Sync>);

impl std::fmt::Debug for QueueProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueProbe")
    }
}

impl QueueProbe {
    pub fn new(depth: impl Fn() -> Option<usize> + Send + Sync + 'static) -> QueueProbe {
        QueueProbe(Arc::new(depth))
    }

    pub fn of<T: Send + 'static>(queue: mpsc::WeakSender<T>) -> QueueProbe {
        QueueProbe(Arc::new(move || {
            queue.upgrade().map(|s| s.max_capacity() - s.capacity())
        }))
    }

    pub fn depth(&self) -> Option<usize> {
        (self.0)()
    }
}
