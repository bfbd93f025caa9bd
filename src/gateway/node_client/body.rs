//! Reading a response body off a node's connection: by length, in chunks, or until the
//! node closes. Data is handed on as soon as it arrives (a streamed line is not held
//! back for the rest of its chunk), and the connection goes back to the pool only when
//! the body has been read to its end.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::wire::ResponseFraming;
use super::NodeConnection;

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("response body failed: {0}")]
    Read(std::io::Error),
    #[error("response body failed: the node closed the connection before the end of the answer")]
    Truncated,
    #[error("response body failed: bad chunked encoding ({0})")]
    BadChunk(&'static str),
    #[error("the answer stalled for {}s (setting idle_timeout_ms)", .0.as_secs())]
    Stalled(std::time::Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `remaining` bytes of a body with a length.
    Length {
        remaining: u64,
    },
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Inside a chunk.
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk.
    Trailers,
    UntilClose,
    Done,
}

/// A body being read; [`next_chunk`](Self::next_chunk) until `None`.
pub struct BodyReader {
    connection: Option<NodeConnection>,
    state: State,
    /// The connection may carry another request once the body is read.
    reusable: bool,
}

impl BodyReader {
    pub fn new(connection: NodeConnection, framing: ResponseFraming, reusable: bool) -> Self {
        let state = match framing {
            ResponseFraming::Empty | ResponseFraming::Length(0) => State::Done,
            ResponseFraming::Length(remaining) => State::Length { remaining },
            ResponseFraming::Chunked => State::ChunkSize,
            ResponseFraming::UntilClose => State::UntilClose,
        };
        Self {
            connection: Some(connection),
            state,
            reusable,
        }
    }

    /// True once the whole body has been read.
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The connection, if the body is complete and the connection can be used again.
    pub fn into_reusable(mut self) -> Option<NodeConnection> {
        if self.state == State::Done && self.reusable {
            self.connection.take().filter(|c| c.buffer.is_empty())
        } else {
            None
        }
    }

    /// The next piece of the body; `Ok(None)` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            let Some(connection) = self.connection.as_mut() else {
                return Ok(None);
            };
            let buffer = &mut connection.buffer;
            match self.state {
                State::Done => return Ok(None),
                State::Length { remaining } => {
                    let (piece, left) = take_up_to(connection, remaining).await?;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length { remaining: left }
                    };
                    return Ok(Some(piece));
                }
                State::UntilClose => {
                    if buffer.is_empty() && !fill(connection).await? {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    let all = connection.buffer.split().freeze();
                    return Ok(Some(all));
                }
                State::ChunkSize => {
                    let Some(line) = take_line(buffer)? else {
                        if !fill(connection).await? {
                            return Err(BodyError::Truncated);
                        }
                        continue;
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData { remaining: size }
                    };
                }
                State::ChunkData { remaining } => {
                    let (piece, left) = take_up_to(connection, remaining).await?;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData { remaining: left }
                    };
                    return Ok(Some(piece));
                }
                State::ChunkEnd => {
                    if buffer.len() < 2 {
                        if !fill(connection).await? {
                            return Err(BodyError::Truncated);
                        }
                        continue;
                    }
                    if &buffer[..2] != b"\r\n" {
                        return Err(BodyError::BadChunk("no line end after a chunk"));
                    }
                    buffer.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(line) = take_line(buffer)? else {
                        if !fill(connection).await? {
                            return Err(BodyError::Truncated);
                        }
                        continue;
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// What has arrived of the next `remaining` bytes (reading when nothing has), and how
/// many are still to come.
async fn take_up_to(
    connection: &mut NodeConnection,
    remaining: u64,
) -> Result<(Bytes, u64), BodyError> {
    if connection.buffer.is_empty() && !fill(connection).await? {
        return Err(BodyError::Truncated);
    }
    let take = usize::try_from(remaining)
        .unwrap_or(usize::MAX)
        .min(connection.buffer.len());
    let piece = connection.buffer.split_to(take).freeze();
    Ok((piece, remaining - take as u64))
}

/// Reads more from the node; false when it closed the connection.
async fn fill(connection: &mut NodeConnection) -> Result<bool, BodyError> {
    connection.buffer.reserve(READ_SIZE);
    let read = connection
        .stream
        .read_buf(&mut connection.buffer)
        .await
        .map_err(BodyError::Read)?;
    Ok(read > 0)
}

/// The next CRLF-terminated line (without the CRLF), if the buffer holds one.
fn take_line(buffer: &mut BytesMut) -> Result<Option<BytesMut>, BodyError> {
    match buffer.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) => {
            let line = buffer.split_to(end);
            buffer.advance(2);
            Ok(Some(line))
        }
        None if buffer.len() > MAX_LINE => Err(BodyError::BadChunk("line too long")),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(BodyError::BadChunk("bad chunk size"));
    }
    let mut size = 0u64;
    for &digit in digits {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return Err(BodyError::BadChunk("bad chunk size")),
        };
        size = size * 16 + u64::from(value);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connection whose node writes `parts` (with a pause between them) and then closes
    /// or stays open.
    async fn connection_with(parts: Vec<&'static [u8]>, close: bool) -> NodeConnection {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            for part in parts {
                socket.write_all(part).await.unwrap();
                socket.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            if !close {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
        NodeConnection::new(tokio::net::TcpStream::connect(address).await.unwrap())
    }

    async fn read_all(reader: &mut BodyReader) -> Result<Vec<u8>, BodyError> {
        let mut body = Vec::new();
        while let Some(chunk) = reader.next_chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn chunked_bodies_split_anywhere_are_reassembled() {
        run(async {
            let parts: Vec<&'static [u8]> = vec![
                b"5\r\nhel",
                b"lo\r\n6;ext=1\r",
                b"\n world\r\n0\r\nX-T: 1\r\n\r\n",
            ];
            let mut reader = BodyReader::new(
                connection_with(parts, false).await,
                ResponseFraming::Chunked,
                true,
            );
            assert_eq!(read_all(&mut reader).await.unwrap(), b"hello world");
            assert!(reader.into_reusable().is_some());
        });
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        run(async {
            let parts: Vec<&'static [u8]> = vec![b"abc", b"def"];
            let mut reader = BodyReader::new(
                connection_with(parts, false).await,
                ResponseFraming::Length(6),
                true,
            );
            assert_eq!(read_all(&mut reader).await.unwrap(), b"abcdef");
            assert!(reader.is_done());
        });
    }

    #[test]
    fn a_node_that_closes_early_is_an_error() {
        run(async {
            let parts: Vec<&'static [u8]> = vec![b"abc"];
            let mut reader = BodyReader::new(
                connection_with(parts, true).await,
                ResponseFraming::Length(6),
                true,
            );
            assert!(matches!(
                read_all(&mut reader).await,
                Err(BodyError::Truncated)
            ));
            let parts: Vec<&'static [u8]> = vec![b"5\r\nhel"];
            let mut reader = BodyReader::new(
                connection_with(parts, true).await,
                ResponseFraming::Chunked,
                true,
            );
            assert!(matches!(
                read_all(&mut reader).await,
                Err(BodyError::Truncated)
            ));
        });
    }

    #[test]
    fn bad_chunk_sizes_are_refused() {
        run(async {
            let parts: Vec<&'static [u8]> = vec![b"zz\r\n"];
            let mut reader = BodyReader::new(
                connection_with(parts, false).await,
                ResponseFraming::Chunked,
                true,
            );
            assert!(matches!(
                read_all(&mut reader).await,
                Err(BodyError::BadChunk(_))
            ));
        });
    }

    #[test]
    fn until_close_reads_everything_and_is_not_reused() {
        run(async {
            let parts: Vec<&'static [u8]> = vec![b"ab", b"cd"];
            let mut reader = BodyReader::new(
                connection_with(parts, true).await,
                ResponseFraming::UntilClose,
                false,
            );
            assert_eq!(read_all(&mut reader).await.unwrap(), b"abcd");
            assert!(reader.into_reusable().is_none());
        });
    }
}
