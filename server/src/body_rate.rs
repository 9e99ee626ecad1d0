//! A request body must keep coming: after a short grace it has to average a minimum rate, or the
//! request is cut off. Without it, a body that trickles one byte every few seconds never falls
//! silent long enough for the silence limit and holds its connection until the request's overall
//! limit (30 s), so a few hundred tricklers could keep every connection slot busy for good.
//!
//! The rule is a moving deadline: a body that has delivered `n` bytes must deliver more before
//! `GRACE + n / MIN_RATE` from its first poll. A phone on a poor 2G link (a few KB/s) sends a full
//! sync batch well inside it; a trickler of 1 byte a second is cut off a few seconds in.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// What any body gets before its rate counts.
const GRACE: Duration = Duration::from_secs(5);
/// The slowest average a body may keep after the grace, in bytes a second.
const MIN_RATE: u64 = 1024;

/// Wraps every request's body in the rate rule.
pub async fn enforce(request: Request, next: Next) -> Response {
    let request = request.map(|body| Body::new(RateLimited::new(body)));
    next.run(request).await
}

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived more slowly than {MIN_RATE} bytes a second")]
pub struct TooSlow;

/// A body that fails with [`TooSlow`] once it falls behind the minimum rate.
struct RateLimited {
    inner: Body,
    started: Option<Instant>,
    received: u64,
    deadline: Pin<Box<Sleep>>,
}

impl RateLimited {
    fn new(inner: Body) -> Self {
        // Armed on the first poll: a handler that reads its body late is not the client's fault.
        Self { inner, started: None, received: 0, deadline: Box::pin(tokio::time::sleep(Duration::from_secs(3600))) }
    }

    fn due(&self, started: Instant) -> Instant {
        started + GRACE + Duration::from_millis(self.received.saturating_mul(1000) / MIN_RATE)
    }
}

impl HttpBody for RateLimited {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let started = match this.started {
            Some(started) => started,
            None => {
                let now = Instant::now();
                this.started = Some(now);
                this.deadline.as_mut().reset(now + GRACE);
                now
            }
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len() as u64);
                    let due = this.due(started);
                    this.deadline.as_mut().reset(due);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(TooSlow)))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A body fed by hand: `(delay before, bytes)` for each chunk.
    fn trickle(chunks: Vec<(Duration, &'static [u8])>) -> Body {
        let stream = futures_util::stream::unfold(chunks.into_iter(), |mut chunks| async move {
            let (delay, bytes) = chunks.next()?;
            tokio::time::sleep(delay).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(bytes)), chunks))
        });
        Body::from_stream(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_a_phone_s_pace_arrives_whole() {
        // 20 KiB over 12 s: 1.7 KiB a second, past the grace.
        let chunks = (0..20).map(|_| (Duration::from_millis(600), &[b'x'; 1024][..])).collect();
        let body = RateLimited::new(trickle(chunks)).collect().await.expect("the whole body");
        assert_eq!(body.to_bytes().len(), 20 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off_soon_after_the_grace() {
        let chunks = (0..100).map(|_| (Duration::from_secs(1), &b"x"[..])).collect();
        let started = Instant::now();
        let err = RateLimited::new(trickle(chunks)).collect().await.expect_err("cut off");
        assert!(err.to_string().contains("bytes a second"), "{err}");
        let took = started.elapsed();
        assert!(took >= GRACE && took < GRACE + Duration::from_secs(1), "cut off after {took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_starts_is_cut_off_at_the_grace() {
        let chunks = vec![(Duration::from_secs(60), &b"{}"[..])];
        let started = Instant::now();
        assert!(RateLimited::new(trickle(chunks)).collect().await.is_err());
        assert_eq!(started.elapsed(), GRACE);
    }
}
