//! Running synchronous work from async code, and async code on a plain thread: the two ways
//! the gateway crosses between tokio's workers and CPU-bound or blocking work (plugins, disk
//! queues, the Prometheus store).

use std::sync::Arc;

/// Drives a future on the current (non-runtime) thread, parking it while the future waits. Not
/// tokio's `block_on`: that would mark the thread as inside the runtime, where the sync WASI
/// calls of plugins (which `block_on` themselves) are refused.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Runs CPU-bound plugin work without stalling the runtime's other tasks.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
