//! [`Flusher`]: SQLite's durability, taken into our hands.
//!
//! The connections commit with `synchronous = NORMAL` (the commit lands in the write-ahead log,
//! not yet on disk), and the flusher then flushes the log file. The log is appended in commit
//! order, so one flush makes every earlier commit durable; a checkpoint flushes the log itself
//! before it copies pages into the database and flushes that too. Nobody is answered before a
//! flush that began after their commit, so this gives `synchronous = FULL`'s guarantee while the
//! writer's next transaction runs during the flush instead of after it.
//!
//! One thread (`kontor-flush`) flushes, one flush at a time: whoever asks while one is under way
//! is covered by the next, which starts as soon as the last ends and covers everyone who asked
//! meanwhile. Flushing once per group, each on its own thread, had the flushes of one file queue
//! up in the kernel anyway, and cost a seventh of the server's time on one-declaration requests
//! (`perf`, the bench's one-declaration scenario).
//!
//! Whoever asks hands over what to do once durable ([`Flusher::then`]); the thread does it as
//! soon as its flush ends. The writer answers its requests that way, straight from this thread,
//! and its own thread goes on to the next group at once. Before, each flush was a task handed to
//! the runtime's blocking pool (0.1–0.2 ms before it started) and a task on the writer's thread
//! answered, after the writer's current transaction. In the bench's one-declaration scenario a
//! group now takes 0.9–1.0 ms from its start to its answers instead of 1.3–2.1 ms (the writer's
//! debug log, `KONTOR_BENCH_LOG=server=debug`), but the requests' rate did not move: on two cores
//! shared with the load client, an answered request's task still waits ~0.7 ms for a runtime
//! thread to run it.
//!
//! Taking this thread's hand-off off the path when it is idle, by having the writer flush on its
//! own thread after a group when nothing waited in its queue, did not pay either: one-declaration
//! requests at 43.9 % of the bare handler with it against 46.4 % without, batches 119k against
//! 114k declarations a second, and 5 µs more server time a declaration, as the writer's thread
//! took on more than the flusher's gave up (five alternating pairs, `cargo xtask bench --seconds 4
//! --backend sqlite`, an AMD EPYC with `perf bench sched pipe` at 7.8 µs).
//!
//! Under that load a flush takes 0.22 ms at the median and 0.95 ms at the 90th percentile
//! (`KONTOR_BENCH_LOG=server::store=trace`), against 0.07–0.10 ms for one 24 kB write and
//! `fdatasync` on an idle machine. While the log grows, each flush also records the file's new
//! size in the file system's journal (0.09–0.11 ms against 0.07–0.08 ms when overwriting, on the
//! idle machine); but writing the log file full of zeros up to its 64 MiB backstop before the
//! first commit, so that no flush had a new size to record, changed nothing: 41.8 % of the bare
//! handler with it, 41.3 % without (four alternating pairs, an Intel Xeon with `perf bench sched
//! pipe` at 11 µs). So the journal is not what makes a flush slower under load than idle; the
//! flusher waiting for a processor may be, which was not measured.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use super::worker::Worker;

/// What to do once the commits made before it was handed over are durable (or the flush failed).
pub(super) type Then = Box<dyn FnOnce(&std::io::Result<()>) + Send>;

/// The log flusher of one SQLite database.
pub(super) struct Flusher {
    queue: Arc<Queue>,
    thread: Worker,
}

struct Queue {
    waiting: Mutex<Waiting>,
    wake: Condvar,
}

#[derive(Default)]
struct Waiting {
    /// Handed over since the thread last looked.
    then: Vec<Then>,
    stopping: bool,
}

impl Flusher {
    /// Starts the flusher of the SQLite database file at `database`.
    pub(super) fn start(database: &str) -> std::io::Result<Self> {
        let queue = Arc::new(Queue { waiting: Mutex::new(Waiting::default()), wake: Condvar::new() });
        let files = Files { database: database.into(), wal: format!("{database}-wal").into(), known: None };
        let shared = queue.clone();
        let thread = Worker::start("kontor-flush", move || flushes(&shared, files))?;
        Ok(Self { queue, thread })
    }

    /// Calls `then` on the flusher's thread once a flush that began after this call has ended,
    /// with its outcome. A failed flush is reported to everyone it was to cover (the caller
    /// answers 503 and the client sends again, which is safe: what was committed is answered as a
    /// replay). `then` must be quick: the next flush waits for it.
    pub(super) fn then(&self, then: Then) {
        let mut waiting = self.queue.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.stopping {
            drop(waiting);
            then(&Err(std::io::Error::other("the store is closed")));
            return;
        }
        waiting.then.push(then);
        if waiting.then.len() == 1 {
            self.queue.wake.notify_one();
        }
    }

    /// Returns once a flush that began after this call has ended, with its outcome.
    pub(super) async fn sync(&self) -> std::io::Result<()> {
        let (tell, told) = tokio::sync::oneshot::channel();
        self.then(Box::new(move |flushed| {
            let _ = tell.send(owned(flushed));
        }));
        told.await.unwrap_or_else(|_| Err(std::io::Error::other("the log flusher stopped")))
    }

    /// Stops the thread once it has flushed for everyone who asked.
    pub(super) fn stop(&self) {
        {
            let mut waiting = self.queue.waiting.lock().unwrap_or_else(|p| p.into_inner());
            waiting.stopping = true;
            self.queue.wake.notify_one();
        }
        self.thread.join();
    }
}

impl Drop for Flusher {
    /// A store dropped without `close` (a test's, say) does not leave its thread behind.
    fn drop(&mut self) {
        self.stop();
    }
}

/// A flush's outcome of one's own: each of those it covered gets it.
pub(super) fn owned(flushed: &std::io::Result<()>) -> std::io::Result<()> {
    flushed.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string()))
}

/// The thread: takes everything handed over, flushes, answers, until stopped with nothing left.
fn flushes(queue: &Queue, mut files: Files) {
    loop {
        let batch = {
            let mut waiting = queue.waiting.lock().unwrap_or_else(|p| p.into_inner());
            while waiting.then.is_empty() && !waiting.stopping {
                waiting = queue.wake.wait(waiting).unwrap_or_else(|p| p.into_inner());
            }
            if waiting.then.is_empty() {
                return;
            }
            std::mem::take(&mut waiting.then)
        };
        // Everything in `batch` was handed over after its commit, so before this flush began.
        let started = std::time::Instant::now();
        let flushed = files.flush();
        match &flushed {
            Ok(()) => {
                tracing::trace!(micros = started.elapsed().as_micros() as u64, covered = batch.len(), "log flushed")
            }
            Err(e) => tracing::error!(error = %e, "flushing the write-ahead log failed"),
        }
        for then in batch {
            then(&flushed);
        }
    }
}

/// The database's files, as the flusher knows them.
struct Files {
    database: PathBuf,
    wal: PathBuf,
    /// The log file last flushed (device, inode): a new log's directory entry is flushed once.
    known: Option<(u64, u64)>,
}

impl Files {
    fn flush(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        match std::fs::File::open(&self.wal) {
            Ok(file) => {
                file.sync_data()?;
                let meta = file.metadata()?;
                let id = (meta.dev(), meta.ino());
                if self.known != Some(id) {
                    if let Some(dir) = self.wal.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::File::open(dir)?.sync_all()?;
                    }
                    self.known = Some(id);
                }
                Ok(())
            }
            // The last connection closed, and SQLite folded the log into the database and
            // removed it: flush the database instead.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::File::open(&self.database)?.sync_all(),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A folder of its own under the system's temporary one, holding `db` and `db-wal`.
    fn database(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("kontor-flusher-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let db = dir.join("db");
        std::fs::write(&db, b"database").expect("a database file");
        std::fs::write(dir.join("db-wal"), b"log").expect("a log file");
        db.to_string_lossy().into_owned()
    }

    fn ask(flusher: &Flusher, answers: &mpsc::Sender<bool>) {
        let answers = answers.clone();
        flusher.then(Box::new(move |flushed| {
            let _ = answers.send(flushed.is_ok());
        }));
    }

    #[test]
    fn everyone_who_asks_from_any_thread_is_answered_once() {
        let db = database("many");
        let flusher = Arc::new(Flusher::start(&db).expect("the flusher starts"));
        let (tell, answers) = mpsc::channel();
        let askers: Vec<_> = (0..8)
            .map(|_| {
                let (flusher, tell) = (flusher.clone(), tell.clone());
                std::thread::spawn(move || (0..50).for_each(|_| ask(&flusher, &tell)))
            })
            .collect();
        askers.into_iter().for_each(|a| a.join().expect("an asker finished"));
        drop(tell);
        let got: Vec<bool> = answers.iter().take(400).collect();
        assert_eq!(got.len(), 400);
        assert!(got.iter().all(|ok| *ok), "every flush succeeded");
        flusher.stop();
        assert!(answers.try_recv().is_err(), "nobody is answered twice");
        let _ = std::fs::remove_dir_all(std::path::Path::new(&db).parent().expect("a folder"));
    }

    #[test]
    fn a_failed_flush_is_reported_to_everyone_it_was_to_cover() {
        let missing = std::env::temp_dir().join(format!("kontor-flusher-missing-{}", std::process::id()));
        let flusher = Flusher::start(&missing.join("db").to_string_lossy()).expect("the flusher starts");
        let (tell, answers) = mpsc::channel();
        (0..5).for_each(|_| ask(&flusher, &tell));
        let got: Vec<bool> = answers.iter().take(5).collect();
        assert_eq!(got, vec![false; 5]);
    }

    #[test]
    fn stopping_answers_who_asked_before_and_refuses_who_asks_after() {
        let db = database("stop");
        let flusher = Flusher::start(&db).expect("the flusher starts");
        let (tell, answers) = mpsc::channel();
        (0..3).for_each(|_| ask(&flusher, &tell));
        flusher.stop();
        let before: Vec<bool> = answers.try_iter().collect();
        assert_eq!(before, vec![true; 3]);
        ask(&flusher, &tell);
        assert_eq!(answers.try_recv(), Ok(false), "asking a stopped flusher is answered at once, with an error");
        let _ = std::fs::remove_dir_all(std::path::Path::new(&db).parent().expect("a folder"));
    }
}
