//! The group-commit writer: one task owns every write of declarations.
//!
//! Requests hand their declarations to the writer and wait. While a transaction commits, the
//! next requests queue up; the writer then judges and stores all of them in one transaction, so
//! one fsync makes many declarations durable. A request is answered only after its transaction
//! has committed and the store has made it durable ([`Store::sync_then`]: on SQLite the log's
//! flusher thread answers as soon as its flush ends), so an acknowledged declaration is on disk.
//! On SQLite one transaction runs at a time, which also serialises each meter's declarations,
//! and the next one starts while the disk flushes the last one; on PostgreSQL a few overlap
//! (small ones only while the server is lightly loaded, [`OVERLAP_MIN`]), and the store locks
//! the meter rows of each transaction instead. A reviewer's decision moves a meter's chain too,
//! so it goes through the same queue, in a transaction of its own.
//!
//! On SQLite the writer's thread keeps looking for the next request for a moment after each
//! group ([`SPIN`]) before it sleeps, so that a request arriving then does not wait for a sleeping
//! thread to be woken.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Incoming, Outcome, ReviewRequest, ReviewResult, Store, StoreError};

/// The most declarations one transaction takes from the queue before it commits.
const MAX_GROUP: usize = 4_000;
/// Where transactions overlap (PostgreSQL), the fewest declarations a group must hold to start
/// while another is in flight once the server is busy ([`BUSY`]); a smaller one waits for it,
/// and gathers meanwhile. Overlapping pays for large groups, whose work the database spreads
/// over both processors, but it split the one-declaration requests into a large group and a
/// group of one or two behind it, each paying a whole transaction (median group 1 request, mean
/// 12, 2.7 ms each, from the writer's debug log). With this rule one-declaration requests rose
/// from 11.0k/s to 13.0–13.3k/s and batches kept their 58–62k declarations a second (alternating
/// runs, `cargo xtask bench --seconds 4 --backend postgres`); 32 did as well as 128 for single
/// requests. One transaction at a time throughout gave the same single rate but batches fell to
/// 42k/s.
const OVERLAP_MIN: usize = 128;
/// The recent groups' average size from which a small group waits ([`OVERLAP_MIN`]). Below it
/// the server is lightly loaded, and overlapping costs no throughput while it saves the wait:
/// holding small groups back at any load raised one-declaration requests' p50 from 1.1 to
/// 1.3–1.7 ms under `cargo xtask load --backend postgres` (1,000 mixed requests a second); with
/// this condition it stays at 1.1 ms, and the bench's 64 clients keep the rate above.
const BUSY: f64 = 8.0;
/// How many requests may wait for the writer before new ones are refused with 503.
const QUEUE: usize = 4_096;
/// How long the writer's own thread (SQLite's) keeps looking for the next request, giving way to
/// any other runnable thread between looks, before it sleeps. On the virtual machines this runs
/// on, waking a thread whose processor has gone idle costs tens of microseconds (`perf bench
/// sched pipe`: 86 µs a round trip across the two processors, 8 µs on one), and a request that
/// arrives just after a group committed would otherwise pay that before its group starts. Looking
/// for 200 µs after each group raised one-declaration requests from 46.0 % to 47.7 % of the bare
/// handler's rate and batches from 89k to 97k declarations a second (means of fifteen runs each,
/// alternating, `cargo xtask bench --backend sqlite`); 500 µs did no better, and the log flusher
/// looking the same way did worse. An idle server sleeps. On a later machine (Intel, `perf bench
/// sched pipe` 8.4 µs) looking cost about 1.5 µs of server time a declaration and changed neither
/// rate: 41.6 % of the bare handler with it, 40.4 % without, batches 131–153k against
/// 130–151k (five alternating pairs, `--seconds 6`), so it stays. Once the HTTP threads left the
/// writer a processor (`crate::http_threads`), looking gave 52 % and not looking 51 % (four
/// alternating pairs, `--seconds 4`, the same machine).
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// Why the writer could not store a request's declarations. Nothing of the request was stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the writer is overloaded or stopping")]
    Busy,
    #[error("the store failed: {0}")]
    Failed(String),
}

impl From<&StoreError> for WriteError {
    fn from(err: &StoreError) -> Self {
        let chain = error_chain(err);
        match err {
            StoreError::Unavailable(_) => Self::Unavailable(chain),
            _ => Self::Failed(chain),
        }
    }
}

/// An error and its causes on one line, for logs.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct Job {
    items: Vec<Incoming>,
    reply: oneshot::Sender<Result<Vec<Outcome>, WriteError>>,
}

/// What the writer is asked to do.
enum Work {
    Declarations(Job),
    Review(ReviewRequest, oneshot::Sender<Result<ReviewResult, WriteError>>),
}

/// A handle for submitting declarations to the writer task.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Work>,
}

impl Writer {
    /// Starts the writer; it stops when the last handle is dropped, after its queue. The receiver
    /// completes when it has stopped (with an error if it failed).
    ///
    /// A store that asks for it ([`Store::writes_on_own_thread`]: SQLite, which stores
    /// declarations on the calling thread) gets a thread with a runtime of its own, so that a
    /// transaction never holds up the HTTP tasks and the single writer never waits behind them.
    pub fn spawn(store: Arc<dyn Store>) -> (Self, oneshot::Receiver<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (done, finished) = oneshot::channel();
        if store.writes_on_own_thread() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(runtime) => {
                    let spawned = std::thread::Builder::new().name("kontor-writer".into()).spawn(move || {
                        runtime.block_on(run(store, queue));
                        let _ = done.send(());
                    });
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "no thread for the writer");
                    }
                }
                Err(e) => tracing::error!(error = %e, "no runtime for the writer"),
            }
        } else {
            tokio::spawn(async move {
                run(store, queue).await;
                let _ = done.send(());
            });
        }
        (Self { jobs }, finished)
    }

    /// Judges and stores `items`, answering one outcome per item once they are durable.
    pub async fn submit(&self, items: Vec<Incoming>) -> Result<Vec<Outcome>, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(Work::Declarations(Job { items, reply })).map_err(|_| WriteError::Busy)?;
        answer.await.map_err(|_| WriteError::Busy)?
    }

    /// Carries out a reviewer's decision, answering once it is durable.
    pub async fn review(&self, request: ReviewRequest) -> Result<ReviewResult, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(Work::Review(request, reply)).map_err(|_| WriteError::Busy)?;
        answer.await.map_err(|_| WriteError::Busy)?
    }
}

async fn run(store: Arc<dyn Store>, mut queue: mpsc::Receiver<Work>) {
    // SQLite takes one writer; PostgreSQL overlaps a few transactions (its row locks on the meters
    // keep each meter's chain in order, its UNIQUE index keeps each id once).
    let slots = Arc::new(tokio::sync::Semaphore::new(store.concurrent_writes().max(1)));
    let mut in_flight = tokio::task::JoinSet::new();
    // A review met while gathering declarations waits for the next turn.
    let mut held: Option<Work> = None;
    // Only a thread of its own may spin: on PostgreSQL the writer is a task among the handlers.
    let spin = store.writes_on_own_thread();
    let overlap_min = if store.concurrent_writes() > 1 { OVERLAP_MIN } else { 0 };
    let mut closed = false;
    // The declarations of a recent group, on average (a moving average over about eight groups).
    let mut typical = 0.0_f64;
    loop {
        // Take a slot before gathering: while every slot is busy, requests queue up and the
        // next group is larger.
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let first = match held.take() {
            Some(work) => work,
            None => match next_work(&mut queue, spin).await {
                Some(work) => work,
                None => break,
            },
        };
        let first = match first {
            Work::Declarations(job) => job,
            Work::Review(request, reply) => {
                let store = store.clone();
                in_flight.spawn(async move { review(store.as_ref(), request, reply, slot).await });
                continue;
            }
        };
        let mut total = first.items.len();
        let mut jobs = vec![first];
        while total < MAX_GROUP {
            match queue.try_recv() {
                Ok(Work::Declarations(job)) => {
                    total += job.items.len();
                    jobs.push(job);
                }
                Ok(review) => {
                    held = Some(review);
                    break;
                }
                Err(_) => break,
            }
        }
        // Under load, a small group waits for the transaction in flight instead of overlapping
        // it, gathering meanwhile (see [`OVERLAP_MIN`]).
        while total < overlap_min && typical >= BUSY && !in_flight.is_empty() {
            tokio::select! {
                _ = in_flight.join_next() => {}
                work = queue.recv(), if held.is_none() && !closed => match work {
                    Some(Work::Declarations(job)) => {
                        total += job.items.len();
                        jobs.push(job);
                    }
                    Some(review) => held = Some(review),
                    None => closed = true,
                },
            }
        }
        typical += (total as f64 - typical) / 8.0;
        let store = store.clone();
        in_flight.spawn(async move { commit_group(store.as_ref(), jobs, slot).await });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

/// The next request for the writer; `None` once every handle is gone. With `spin`, looks again
/// and again for [`SPIN`] before it waits (blocking the thread's runtime meanwhile: only for the
/// writer's own thread).
async fn next_work(queue: &mut mpsc::Receiver<Work>, spin: bool) -> Option<Work> {
    if spin {
        let until = std::time::Instant::now() + SPIN;
        loop {
            match queue.try_recv() {
                Ok(work) => return Some(work),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) if std::time::Instant::now() < until => std::thread::yield_now(),
                Err(mpsc::error::TryRecvError::Empty) => break,
            }
        }
    }
    queue.recv().await
}

/// Carries out one review decision, durably.
async fn review(
    store: &dyn Store,
    request: ReviewRequest,
    reply: oneshot::Sender<Result<ReviewResult, WriteError>>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let decided = store.decide(&request, OffsetDateTime::now_utc()).await;
    drop(slot);
    let result = match decided {
        Ok(result) => store.sync().await.map(|()| result),
        Err(e) => Err(e),
    };
    let _ = reply.send(result.map_err(|e| {
        tracing::error!(error = %error_chain(&e), seq = request.seq, "storing a review decision failed");
        WriteError::from(&e)
    }));
}

type Answer = (oneshot::Sender<Result<Vec<Outcome>, WriteError>>, Result<Vec<Outcome>, WriteError>);

/// Commits a group, then (with the next group free to start) has its requests answered once
/// the commit is durable, by whichever thread learns that first ([`Store::sync_then`]).
async fn commit_group(store: &dyn Store, jobs: Vec<Job>, slot: tokio::sync::OwnedSemaphorePermit) {
    let started = std::time::Instant::now();
    let (requests, items) = (jobs.len(), jobs.iter().map(|j| j.items.len()).sum::<usize>());
    let mut answers = Vec::with_capacity(jobs.len());
    apply_group(store, jobs, OffsetDateTime::now_utc(), &mut answers).await;
    let committed = started.elapsed();
    drop(slot);
    let any_stored = answers.iter().any(|(_, result)| result.is_ok());
    let answer = move |synced: Result<(), StoreError>| {
        // Committed but perhaps not on disk when the flush fails: answer 503, and the retry gets
        // the stored outcome (or stores it, if the commit was lost with the disk).
        if let Err(e) = synced {
            tracing::error!(error = %error_chain(&e), "making a commit durable failed");
            let failed = WriteError::from(&e);
            for (_, result) in &mut answers {
                *result = Err(failed.clone());
            }
        }
        for (reply, result) in answers {
            let _ = reply.send(result);
        }
        tracing::debug!(
            requests,
            items,
            commit_micros = committed.as_micros() as u64,
            durable_micros = started.elapsed().as_micros() as u64,
            "group stored"
        );
    };
    if any_stored {
        store.sync_then(Box::new(answer));
    } else {
        answer(Ok(()));
    }
}

async fn apply_group(store: &dyn Store, mut jobs: Vec<Job>, now: OffsetDateTime, answers: &mut Vec<Answer>) {
    if jobs.len() == 1 {
        for job in jobs {
            let result = store.apply(&job.items, now).await.map_err(|e| {
                tracing::error!(error = %error_chain(&e), "storing declarations failed");
                WriteError::from(&e)
            });
            answers.push((job.reply, result));
        }
        return;
    }
    let sizes: Vec<usize> = jobs.iter().map(|j| j.items.len()).collect();
    let mut combined: Vec<Incoming> = Vec::with_capacity(sizes.iter().sum());
    for job in &mut jobs {
        combined.append(&mut job.items);
    }
    match store.apply(&combined, now).await {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (job, size) in jobs.into_iter().zip(sizes) {
                let mine: Vec<Outcome> = outcomes.by_ref().take(size).collect();
                answers.push((job.reply, Ok(mine)));
            }
        }
        Err(err) => {
            // One request's data must not fail the others: try each request on its own.
            tracing::warn!(error = %error_chain(&err), requests = jobs.len(), "group commit failed; retrying one by one");
            let mut combined = combined.into_iter();
            for (mut job, size) in jobs.into_iter().zip(sizes) {
                job.items = combined.by_ref().take(size).collect();
                Box::pin(apply_group(store, vec![job], now, answers)).await;
            }
        }
    }
}
