//! [`Worker`]: a named thread a store starts beside its writer (the log's flusher, the
//! checkpoints) and waits for when it stops, so that nothing is left running behind a closed
//! store.

use std::sync::Mutex;
use std::thread::JoinHandle;

pub(super) struct Worker {
    name: &'static str,
    /// `None` once joined.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    /// Starts `run` on a thread called `name`.
    pub(super) fn start(name: &'static str, run: impl FnOnce() + Send + 'static) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new().name(name.into()).spawn(run)?;
        Ok(Self { name, thread: Mutex::new(Some(thread)) })
    }

    /// Waits for the thread to end (its owner has told it to); later calls return at once.
    pub(super) fn join(&self) {
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && thread.join().is_err()
        {
            tracing::warn!(thread = self.name, "a store's thread panicked");
        }
    }
}
