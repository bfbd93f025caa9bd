//! Paced response streams, and the simulated node failure that cuts them short.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream};

use crate::config::SimConfig;

/// How a streamed reply is delivered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    /// Pause before every frame but the first.
    pub(crate) gap: Duration,
    /// Abort the connection once this many frames have been sent.
    pub(crate) drop_after: Option<usize>,
}

impl Pacing {
    /// The pacing of every streamed reply of a node with `config`.
    pub(crate) fn of(config: &SimConfig) -> Self {
        Self {
            gap: config.token_delay,
            drop_after: config.drop_after_chunks,
        }
    }
}

/// A stream of `frames` frames, where `render(i)` builds frame `i` at the moment it is sent (so
/// timestamps inside it are current).
///
/// When `pacing.drop_after` is below `frames`, the stream fails after that many frames. actix
/// then closes the connection without writing the chunked-encoding terminator, which a client
/// sees exactly like a node that died mid-reply: no error line, no final line, a truncated body.
pub(crate) fn paced<F>(
    frames: usize,
    pacing: Pacing,
    render: F,
) -> impl Stream<Item = Result<Bytes, io::Error>> + 'static
where
    F: FnMut(usize) -> Bytes + 'static,
{
    stream::unfold((0, render), move |(index, mut render)| async move {
        if index >= frames {
            return None;
        }
        if index > 0 && !pacing.gap.is_zero() {
            tokio::time::sleep(pacing.gap).await;
        }

        if pacing.drop_after == Some(index) {
            // Yield once first: actix flushes what it has buffered while the body is pending,
            // so the frames already "sent" really reach the client before the cut.
            tokio::task::yield_now().await;
            tracing::info!(frames_sent = index, "simulating node failure mid-stream");
            let cut = io::Error::new(io::ErrorKind::ConnectionAborted, "simulated node failure");
            return Some((Err(cut), (frames, render)));
        }

        Some((Ok(render(index)), (index + 1, render)))
    })
}

/// How long a non-streamed reply of `frames` frames takes to produce with this pacing.
pub(crate) fn total_gap(frames: usize, pacing: Pacing) -> Duration {
    let gaps = u32::try_from(frames.saturating_sub(1)).unwrap_or(u32::MAX);
    pacing.gap.saturating_mul(gaps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn frame(index: usize) -> Bytes {
        Bytes::from(format!("{index}\n"))
    }

    #[actix_rt::test]
    async fn yields_every_frame_in_order() {
        let pacing = Pacing {
            gap: Duration::ZERO,
            drop_after: None,
        };
        let items: Vec<_> = paced(3, pacing, frame).collect().await;
        let bodies: Vec<_> = items.into_iter().map(|item| item.expect("frame")).collect();
        assert_eq!(bodies, vec![frame(0), frame(1), frame(2)]);
    }

    #[actix_rt::test]
    async fn fails_after_the_configured_frame_count() {
        let pacing = Pacing {
            gap: Duration::ZERO,
            drop_after: Some(2),
        };
        let items: Vec<_> = paced(5, pacing, frame).collect().await;
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert!(items[2].is_err());
    }

    #[actix_rt::test]
    async fn a_limit_beyond_the_reply_changes_nothing() {
        let pacing = Pacing {
            gap: Duration::ZERO,
            drop_after: Some(3),
        };
        let items: Vec<_> = paced(3, pacing, frame).collect().await;
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(items.len(), 3);
    }
}
