//! Relays an upstream body to the client, line by line, as it arrives.
//!
//! Only complete lines are passed on (a chunk that ends on a line break goes out as is,
//! without copying), so if the node fails mid-stream the client gets whole lines followed
//! by one `{"error":"..."}` line, never half a JSON object. When the client goes away the
//! relay is dropped, which drops the upstream response and so cancels the request on the
//! node. Either way the [`Outcome`] is reported exactly once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::error::{stream_error_line, Flavour};

/// How a relayed response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    UpstreamFailed(String),
    ClientGone,
}

/// The node's answer as it arrives; an error is already described for the client.
pub type Upstream = Pin<Box<dyn Stream<Item = Result<Bytes, String>>>>;

pub struct LineRelay<F: FnOnce(Outcome)> {
    upstream: Upstream,
    partial: BytesMut,
    flavour: Flavour,
    finished: bool,
    on_finish: Option<F>,
    /// Longest silence allowed between two chunks from the node.
    idle: Duration,
    /// Started on the first poll (creating it needs the runtime).
    idle_timer: Option<Pin<Box<Sleep>>>,
}

impl<F: FnOnce(Outcome)> LineRelay<F> {
    pub fn new(upstream: Upstream, flavour: Flavour, idle: Duration, on_finish: F) -> Self {
        Self {
            upstream,
            partial: BytesMut::new(),
            flavour,
            finished: false,
            on_finish: Some(on_finish),
            idle,
            idle_timer: None,
        }
    }

    fn fail(&mut self, message: String) -> Poll<Option<Result<Bytes, actix_web::Error>>> {
        self.partial.clear();
        let line = stream_error_line(self.flavour, &message);
        self.finish(Outcome::UpstreamFailed(message));
        Poll::Ready(Some(Ok(Bytes::from(line))))
    }

    fn finish(&mut self, outcome: Outcome) {
        self.finished = true;
        if let Some(report) = self.on_finish.take() {
            report(outcome);
        }
    }

    /// The complete lines of `chunk` (with what was left over before), keeping the rest.
    fn complete_lines(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.partial.is_empty() && chunk.last() == Some(&b'\n') {
            return Some(chunk);
        }
        self.partial.extend_from_slice(&chunk);
        let end = self.partial.iter().rposition(|&b| b == b'\n')? + 1;
        Some(self.partial.split_to(end).freeze())
    }
}

impl<F: FnOnce(Outcome) + Unpin> Stream for LineRelay<F> {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => {
                    let idle = this.idle;
                    let timer = this
                        .idle_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if timer.as_mut().poll(cx).is_ready() {
                        let message = format!(
                            "the ollama node sent nothing for {}s (setting idle_timeout_ms)",
                            this.idle.as_secs()
                        );
                        return this.fail(message);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(timer) = this.idle_timer.as_mut() {
                        timer.as_mut().reset(Instant::now() + this.idle);
                    }
                    if let Some(lines) = this.complete_lines(chunk) {
                        return Poll::Ready(Some(Ok(lines)));
                    }
                }
                Poll::Ready(None) => {
                    let rest = std::mem::take(&mut this.partial);
                    this.finish(Outcome::Completed);
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(rest.freeze())));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(err))) => {
                    let message = format!("the ollama node failed mid-stream: {err}");
                    return this.fail(message);
                }
            }
        }
    }
}

impl<F: FnOnce(Outcome)> Drop for LineRelay<F> {
    fn drop(&mut self) {
        if let Some(report) = self.on_finish.take() {
            report(Outcome::ClientGone);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use futures_util::StreamExt;

    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn upstream(chunks: Vec<&'static [u8]>) -> Upstream {
        Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    #[test]
    fn a_silent_node_ends_the_stream_with_an_error_line() {
        let seen = Rc::new(RefCell::new(None));
        let record = seen.clone();
        let silent: Upstream = Box::pin(
            futures_util::stream::iter(vec![Ok(Bytes::from_static(b"{\"a\":1}\n"))])
                .chain(futures_util::stream::pending()),
        );
        let relay = LineRelay::new(
            silent,
            Flavour::Ollama,
            Duration::from_millis(50),
            move |o| *record.borrow_mut() = Some(o),
        );
        let out = collect(relay);
        assert_eq!(out.len(), 2);
        assert!(String::from_utf8_lossy(&out[1]).contains("idle_timeout_ms"));
        assert!(matches!(&*seen.borrow(), Some(Outcome::UpstreamFailed(_))));
    }

    fn collect(relay: LineRelay<impl FnOnce(Outcome) + Unpin>) -> Vec<Bytes> {
        actix_rt::System::new().block_on(relay.map(|item| item.expect("ok")).collect::<Vec<_>>())
    }

    #[test]
    fn passes_whole_lines_and_joins_split_ones() {
        let seen = Rc::new(RefCell::new(None));
        let record = seen.clone();
        let relay = LineRelay::new(
            upstream(vec![b"{\"a\":1}\n", b"{\"b\":", b"2}\n{\"c\"", b":3}\n"]),
            Flavour::Ollama,
            IDLE,
            move |outcome| *record.borrow_mut() = Some(outcome),
        );
        let out = collect(relay);
        assert_eq!(
            out,
            vec![
                Bytes::from_static(b"{\"a\":1}\n"),
                Bytes::from_static(b"{\"b\":2}\n"),
                Bytes::from_static(b"{\"c\":3}\n"),
            ]
        );
        assert_eq!(*seen.borrow(), Some(Outcome::Completed));
    }

    #[test]
    fn a_body_without_final_newline_is_kept_whole() {
        let relay = LineRelay::new(
            upstream(vec![b"{\"x\":", b"1}"]),
            Flavour::Ollama,
            IDLE,
            |_| {},
        );
        assert_eq!(collect(relay), vec![Bytes::from_static(b"{\"x\":1}")]);
    }

    #[test]
    fn dropping_early_reports_the_client_gone() {
        let seen = Rc::new(RefCell::new(None));
        let record = seen.clone();
        let relay = LineRelay::new(upstream(vec![b"a\n"]), Flavour::Ollama, IDLE, move |o| {
            *record.borrow_mut() = Some(o)
        });
        drop(relay);
        assert_eq!(*seen.borrow(), Some(Outcome::ClientGone));
    }
}
