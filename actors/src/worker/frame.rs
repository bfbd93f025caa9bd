//! Frames: a 4-byte big-endian length, then that many bytes of JSON
//! `{"v": <protocol version>, "msg": {...}}`.
//!
//! A reader never allocates more than its limit, so a child that writes garbage (a stray
//! `println!`, a program that is not a worker at all) produces a [`FrameError`], not a
//! huge allocation or a hang.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PROTOCOL_VERSION: u32 = 1;
/// Default largest frame, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {found} (this side speaks {PROTOCOL_VERSION})")]
    Version { found: u32 },
    #[error("the other side closed the stream")]
    Closed,
    #[error("i/o error on the worker pipe: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Serialize)]
struct Outgoing<'a, T> {
    v: u32,
    msg: &'a T,
}

#[derive(Deserialize)]
struct Incoming<T> {
    v: u32,
    msg: Option<T>,
}

pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(&Outgoing {
        v: PROTOCOL_VERSION,
        msg: message,
    })
    .map_err(|err| FrameError::Malformed(err.to_string()))?;
    let length = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        size: body.len(),
        limit: u32::MAX as usize,
    })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    writer.write_all(&encode(message)?).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one frame. A clean end of stream between frames is [`FrameError::Closed`].
pub async fn read_frame<R, T>(reader: &mut R, max_frame: usize) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut length = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        let n = reader.read(&mut length[filled..]).await?;
        if n == 0 {
            return Err(if filled == 0 {
                FrameError::Closed
            } else {
                FrameError::Malformed("stream ended inside a frame header".into())
            });
        }
        filled += n;
    }
    let size = u32::from_be_bytes(length) as usize;
    if size > max_frame {
        return Err(FrameError::TooLarge {
            size,
            limit: max_frame,
        });
    }
    let mut body = vec![0u8; size];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                FrameError::Malformed("stream ended inside a frame".into())
            }
            _ => FrameError::Io(err),
        })?;
    let incoming: Incoming<serde_json::Value> = serde_json::from_slice(&body).map_err(|err| {
        FrameError::Malformed(format!("{err} (first bytes: {:?})", preview(&body)))
    })?;
    if incoming.v != PROTOCOL_VERSION {
        return Err(FrameError::Version { found: incoming.v });
    }
    let msg = incoming
        .msg
        .ok_or_else(|| FrameError::Malformed("frame has no `msg`".into()))?;
    serde_json::from_value(msg).map_err(|err| FrameError::Malformed(err.to_string()))
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn round_trips_and_reports_clean_close() {
        run(async {
            let (mut a, mut b) = tokio::io::duplex(1024);
            write_frame(&mut a, &json!({"type": "job", "id": 7}))
                .await
                .expect("write");
            drop(a);
            let value: Value = read_frame(&mut b, 1024).await.expect("read");
            assert_eq!(value["id"], 7);
            assert!(matches!(
                read_frame::<_, Value>(&mut b, 1024).await,
                Err(FrameError::Closed)
            ));
        });
    }

    #[test]
    fn rejects_oversized_garbage_and_wrong_versions() {
        run(async {
            let mut text: &[u8] = b"hello world, I am not a worker\n";
            let err = read_frame::<_, Value>(&mut text, 1024).await.unwrap_err();
            assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");

            let mut frame = 5u32.to_be_bytes().to_vec();
            frame.extend_from_slice(b"{oops");
            let err = read_frame::<_, Value>(&mut frame.as_slice(), 1024)
                .await
                .unwrap_err();
            assert!(matches!(err, FrameError::Malformed(_)), "{err}");

            let body = br#"{"v":9,"msg":{}}"#;
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(body);
            let err = read_frame::<_, Value>(&mut frame.as_slice(), 1024)
                .await
                .unwrap_err();
            assert!(matches!(err, FrameError::Version { found: 9 }), "{err}");
        });
    }
}
