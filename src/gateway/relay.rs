//! Relays an upstream body to the client, line by line, as it arrives.
//!
//! Only complete lines are passed on (a chunk that ends on a line break goes out as is,
//! without copying), so if the node fails mid-stream the client gets whole lines followed
//! by one `{"error":"..."}` line, never half a JSON object. When the client goes away the
//! relay is dropped, which drops the upstream response and so cancels the request on the
//! node. Either way the [`Outcome`] is reported exactly once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;

use super::error::{stream_error_line, Flavour};

/// How a relayed response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    UpstreamFailed(String),
    ClientGone,
}

type Upstream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>>>>;

pub struct LineRelay<F: FnOnce(Outcome)> {
    upstream: Upstream,
    partial: BytesMut,
    flavour: Flavour,
    finished: bool,
    on_finish: Option<F>,
}

impl<F: FnOnce(Outcome)> LineRelay<F> {
    pub fn new(upstream: Upstream, flavour: Flavour, on_finish: F) -> Self {
        Self {
            upstream,
            partial: BytesMut::new(),
            flavour,
            finished: false,
            on_finish: Some(on_finish),
        }
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
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
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
                    let message = format!(
                        "the ollama node failed mid-stream: {}",
                        sollol_actors::node::describe_reqwest_error(&err)
                    );
                    this.partial.clear();
                    let line = stream_error_line(this.flavour, &message);
                    this.finish(Outcome::UpstreamFailed(message));
                    return Poll::Ready(Some(Ok(Bytes::from(line))));
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

    fn upstream(chunks: Vec<&'static [u8]>) -> Upstream {
        Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
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
        let relay = LineRelay::new(upstream(vec![b"{\"x\":", b"1}"]), Flavour::Ollama, |_| {});
        assert_eq!(collect(relay), vec![Bytes::from_static(b"{\"x\":1}")]);
    }

    #[test]
    fn dropping_early_reports_the_client_gone() {
        let seen = Rc::new(RefCell::new(None));
        let record = seen.clone();
        let relay = LineRelay::new(upstream(vec![b"a\n"]), Flavour::Ollama, move |o| {
            *record.borrow_mut() = Some(o)
        });
        drop(relay);
        assert_eq!(*seen.borrow(), Some(Outcome::ClientGone));
    }
}
