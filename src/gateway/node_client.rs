//! The client the proxy reaches nodes with: keep-alive HTTP/1.1 connections, pooled per
//! server thread, read and written by the request's own task.
//!
//! Each actix-web worker thread has its own [`NodeClient`], so a connection is only ever
//! used by the thread that opened it: no lock, no shared pool, no request that wakes
//! another thread or another task. The request head is written straight from the
//! client's request (method, path and query, headers, `Host` set to the node) together
//! with the body, and the answer is parsed with `httparse` and read by its framing
//! (length, chunked or until close; see [`body`]). A general HTTP client (reqwest, still
//! used for health checks, fan-out and aggregate routes) costs more per request than the
//! rest of the proxy: it parses URLs, keeps one pool behind a mutex for every thread and
//! drives each connection from a task of its own.
//!
//! A connection goes back to its node's idle list only once its answer has been read to
//! the end and the node did not ask to close; one dropped before that (a client that
//! left, an error) is closed, which is also how a node learns that a generation is no
//! longer wanted. Idle connections are used most recent first; one the node has closed
//! (its socket became readable while idle), or that sat idle for [`IDLE_TIMEOUT`], is
//! dropped when met, and a sweep every [`SWEEP_INTERVAL`] closes those no request meets.
//! A request whose write fails on a reused connection is sent once more on a new one:
//! nothing of it reached the node.

mod body;
pub mod wire;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use actix_web::HttpRequest;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::FutureExt;
use futures_util::stream::{LocalBoxStream, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

pub use body::BodyError;
use body::BodyReader;
pub use wire::ResponseHead;
use wire::{parse_response_head, write_request_head, HeadError, RequestFraming};

/// Idle connections kept per node and thread; more are closed.
const MAX_IDLE_PER_NODE: usize = 256;
/// An idle connection older than this is closed rather than used.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections that no request met are checked.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How long a node that stopped taking a request has to give its answer.
const EARLY_ANSWER_WAIT: Duration = Duration::from_secs(1);
/// Bodies up to this size are written with the head in one write.
const COALESCE_BODY_BYTES: usize = 64 * 1024;

/// Why a client's upload could not be passed on: the client's doing, never the node's.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Past the configured limit (a 413 for the client).
    #[error("{0}")]
    TooLarge(String),
    /// The client's upload broke off or could not be read.
    #[error("the upload could not be read: {0}")]
    Client(String),
    #[error("the client sent nothing of its upload for {}s (setting idle_timeout_ms)", .0.as_secs())]
    Stalled(Duration),
}

/// A request body for a node.
pub enum RequestBody {
    Bytes(Bytes),
    /// The client's upload as it comes, sent chunked; can be sent only once.
    Stream(LocalBoxStream<'static, Result<Bytes, UploadError>>),
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    #[error("connection failed: no connection within {0:?} (setting connect_timeout_ms)")]
    ConnectTimeout(Duration),
    #[error("request failed: cannot write to the node: {0}")]
    Write(std::io::Error),
    #[error("request failed: cannot read the node's answer: {0}")]
    Read(std::io::Error),
    #[error("request failed: the node closed the connection without answering")]
    Closed,
    #[error("request failed: {0}")]
    Head(#[from] HeadError),
    #[error("request failed: the node took more than {}s to read the upload (setting idle_timeout_ms)", .0.as_secs())]
    WriteStalled(Duration),
    #[error("{0}")]
    Upload(UploadError),
}

impl SendError {
    /// The node could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::ConnectTimeout(_))
    }
}

/// One open connection to a node and what has been read from it but not used yet.
pub struct NodeConnection {
    stream: TcpStream,
    buffer: BytesMut,
}

impl NodeConnection {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
        }
    }
}

struct IdleConnection {
    connection: NodeConnection,
    since: Instant,
}

impl IdleConnection {
    /// Not idle for too long, and nothing arrived while idle (a node that closes its side
    /// makes the socket readable). Checked without a system call.
    fn usable(&self, now: Instant) -> bool {
        if now.duration_since(self.since) >= IDLE_TIMEOUT {
            return false;
        }
        let readiness = self
            .connection
            .stream
            .ready(Interest::READABLE)
            .now_or_never();
        !matches!(readiness, Some(Ok(ready)) if ready.is_readable() || ready.is_read_closed())
            && !matches!(readiness, Some(Err(_)))
    }
}

struct NodeConnections {
    key: String,
    idle: Vec<IdleConnection>,
}

struct Pool {
    connect_timeout: Duration,
    nodes: RefCell<Vec<NodeConnections>>,
    /// The sweep runs (started with the first request, on the pool's own thread).
    sweeping: Cell<bool>,
}

impl Pool {
    /// Closes idle connections that are too old or that the node has closed.
    fn prune(&self, now: Instant) {
        for node in self.nodes.borrow_mut().iter_mut() {
            node.idle.retain(|idle| idle.usable(now));
        }
    }

    fn put_back(&self, key: &str, connection: NodeConnection) {
        let mut nodes = self.nodes.borrow_mut();
        let index = match nodes.iter().position(|node| node.key == key) {
            Some(index) => index,
            None => {
                nodes.push(NodeConnections {
                    key: key.to_string(),
                    idle: Vec::new(),
                });
                nodes.len() - 1
            }
        };
        let idle = &mut nodes[index].idle;
        if idle.len() < MAX_IDLE_PER_NODE {
            idle.push(IdleConnection {
                connection,
                since: Instant::now(),
            });
        }
    }
}

/// A request written to a node, whose answer is still to be read.
pub struct Sent {
    connection: NodeConnection,
    key: String,
    head_request: bool,
    /// The connection had served an earlier request.
    reused: bool,
    /// The buffered body, kept to send the request again if a reused connection fails.
    replay: Option<Bytes>,
    /// The answer the node gave before taking the whole request (then it closes).
    early_head: Option<ResponseHead>,
}

impl Sent {
    fn new(
        connection: NodeConnection,
        key: &str,
        head_request: bool,
        reused: bool,
        replay: Option<Bytes>,
    ) -> Self {
        Self {
            connection,
            key: key.to_string(),
            head_request,
            reused,
            replay,
            early_head: None,
        }
    }
}

/// One server thread's connections to the nodes. Cheap to clone (clones share the pool);
/// not `Send`: it belongs to the thread that made it.
#[derive(Clone)]
pub struct NodeClient {
    pool: Rc<Pool>,
}

/// A node's answer: its head, and its body still on the connection.
pub struct Answer {
    pub head: ResponseHead,
    body: BodyReader,
    pool: Rc<Pool>,
    key: String,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.head.header(name)
    }

    /// Splits the answer into its head and a body that reads to its end.
    pub fn into_parts(self) -> (ResponseHead, AnswerBody) {
        (
            self.head,
            AnswerBody {
                body: self.body,
                pool: self.pool,
                key: self.key,
            },
        )
    }
}

/// The body of an [`Answer`]; its connection is pooled again once it is read to the end.
pub struct AnswerBody {
    body: BodyReader,
    pool: Rc<Pool>,
    key: String,
}

impl AnswerBody {
    /// The whole body; the node may be silent for at most `idle` between two pieces.
    pub async fn read_to_end(mut self, idle: Duration) -> Result<Bytes, BodyError> {
        let mut collected: Option<Bytes> = None;
        let mut more = BytesMut::new();
        loop {
            // A piece already received needs no timer.
            let mut next = std::pin::pin!(self.body.next_chunk());
            let piece = match next.as_mut().now_or_never() {
                Some(piece) => piece,
                None => tokio::time::timeout(idle, next)
                    .await
                    .map_err(|_| BodyError::Stalled(idle))?,
            };
            let Some(chunk) = piece? else {
                break;
            };
            match &collected {
                None => collected = Some(chunk),
                Some(first) => {
                    if more.is_empty() {
                        more.extend_from_slice(first);
                    }
                    more.extend_from_slice(&chunk);
                }
            }
        }
        self.release();
        Ok(if more.is_empty() {
            collected.unwrap_or_default()
        } else {
            more.freeze()
        })
    }

    /// The body as it arrives (errors described for the client); the connection is
    /// pooled again after the last piece.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, String>> {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut body = state?;
            match body.body.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(body))),
                Ok(None) => {
                    body.release();
                    None
                }
                Err(err) => Some((Err(err.to_string()), None)),
            }
        })
    }

    fn release(self) {
        if let Some(connection) = self.body.into_reusable() {
            self.pool.put_back(&self.key, connection);
        }
    }
}

impl NodeClient {
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            pool: Rc::new(Pool {
                connect_timeout,
                nodes: RefCell::new(Vec::new()),
                sweeping: Cell::new(false),
            }),
        }
    }

    /// Sends `request` with `body` to the node at `key` (`host:port`): connects (or
    /// reuses an idle connection) and writes the head and the body. An upload is passed
    /// on as it arrives, each piece within `idle`. Then [`answer`](Self::answer) reads
    /// the node's answer.
    pub async fn send(
        &self,
        key: &str,
        request: &HttpRequest,
        body: RequestBody,
        idle: Duration,
    ) -> Result<Sent, SendError> {
        if !self.pool.sweeping.replace(true) {
            actix_rt::spawn(sweep(Rc::downgrade(&self.pool)));
        }
        let head_request = request.method() == actix_web::http::Method::HEAD;
        let (replay, upload) = match body {
            RequestBody::Bytes(bytes) => (Some(bytes), None),
            RequestBody::Stream(upload) => (None, Some(upload)),
        };
        let framing = match &replay {
            Some(bytes) => RequestFraming::Length(bytes.len()),
            None => RequestFraming::Chunked,
        };
        let mut sent = match self.take_idle(key) {
            Some(mut connection) => {
                match write_request(&mut connection, request, key, &framing, replay.as_ref()).await
                {
                    Ok(()) => Sent::new(connection, key, head_request, true, replay),
                    // Nothing reached the node: the idle connection was going away.
                    Err(SendError::Write(_)) if replay.is_some() => {
                        self.send_fresh(key, request, head_request, &framing, replay)
                            .await?
                    }
                    Err(err) => return Err(err),
                }
            }
            None => {
                self.send_fresh(key, request, head_request, &framing, replay)
                    .await?
            }
        };
        if let (Some(upload), None) = (upload, &sent.early_head) {
            match write_upload(&mut sent.connection, upload, idle).await {
                Ok(()) => {}
                Err(SendError::Write(err)) => {
                    sent.early_head =
                        Some(early_answer(&mut sent.connection, head_request, err).await?)
                }
                Err(err) => return Err(err),
            }
        }
        Ok(sent)
    }

    /// A new connection with the request written on it (or the answer the node gave
    /// before it would take the whole request).
    async fn send_fresh(
        &self,
        key: &str,
        request: &HttpRequest,
        head_request: bool,
        framing: &RequestFraming,
        replay: Option<Bytes>,
    ) -> Result<Sent, SendError> {
        let mut connection = self.connect(key).await?;
        let written = write_request(&mut connection, request, key, framing, replay.as_ref()).await;
        let mut sent = Sent::new(connection, key, head_request, false, replay);
        match written {
            Ok(()) => {}
            Err(SendError::Write(err)) => {
                sent.early_head = Some(early_answer(&mut sent.connection, head_request, err).await?)
            }
            Err(err) => return Err(err),
        }
        Ok(sent)
    }

    /// Reads the answer to a request [`send`](Self::send) wrote. When a reused connection
    /// ends before any byte of an answer (the node closed it as the request went out), a
    /// buffered request is sent once more on a new connection.
    pub async fn answer(&self, mut sent: Sent, request: &HttpRequest) -> Result<Answer, SendError> {
        if let Some(mut head) = sent.early_head.take() {
            head.reusable = false;
            return Ok(self.answer_from(sent, head));
        }
        match read_head(&mut sent.connection, sent.head_request).await {
            Ok(head) => Ok(self.answer_from(sent, head)),
            Err(SendError::Closed | SendError::Read(_))
                if sent.reused && sent.connection.buffer.is_empty() && sent.replay.is_some() =>
            {
                let framing = RequestFraming::Length(sent.replay.as_ref().map_or(0, Bytes::len));
                let mut fresh = self
                    .send_fresh(
                        &sent.key,
                        request,
                        sent.head_request,
                        &framing,
                        sent.replay.take(),
                    )
                    .await?;
                if let Some(mut head) = fresh.early_head.take() {
                    head.reusable = false;
                    return Ok(self.answer_from(fresh, head));
                }
                let head = read_head(&mut fresh.connection, fresh.head_request).await?;
                Ok(self.answer_from(fresh, head))
            }
            Err(err) => Err(err),
        }
    }

    fn answer_from(&self, sent: Sent, head: ResponseHead) -> Answer {
        let reusable = head.reusable;
        let framing = head.framing;
        Answer {
            head,
            body: BodyReader::new(sent.connection, framing, reusable),
            pool: self.pool.clone(),
            key: sent.key,
        }
    }

    /// The most recently used idle connection to `key` that is still usable.
    fn take_idle(&self, key: &str) -> Option<NodeConnection> {
        let mut nodes = self.pool.nodes.borrow_mut();
        let node = nodes.iter_mut().find(|node| node.key == key)?;
        let now = Instant::now();
        // The oldest sits at the front: close it once it has been idle too long.
        if node
            .idle
            .first()
            .is_some_and(|oldest| now.duration_since(oldest.since) >= IDLE_TIMEOUT)
        {
            node.idle.remove(0);
        }
        while let Some(idle) = node.idle.pop() {
            if idle.usable(now) {
                return Some(idle.connection);
            }
        }
        None
    }

    async fn connect(&self, key: &str) -> Result<NodeConnection, SendError> {
        let timeout = self.pool.connect_timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(key))
            .await
            .map_err(|_| SendError::ConnectTimeout(timeout))?
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(NodeConnection::new(stream))
    }
}

/// Prunes the pool every [`SWEEP_INTERVAL`] until it is dropped.
async fn sweep(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.prune(Instant::now());
    }
}

/// Writes the request head and, for a buffered body, the body.
async fn write_request(
    connection: &mut NodeConnection,
    request: &HttpRequest,
    key: &str,
    framing: &RequestFraming,
    body: Option<&Bytes>,
) -> Result<(), SendError> {
    let small = body.filter(|bytes| bytes.len() <= COALESCE_BODY_BYTES);
    let mut out = BytesMut::with_capacity(512 + small.map_or(0, Bytes::len));
    write_request_head(&mut out, request, key, framing);
    if let Some(bytes) = small {
        out.put_slice(bytes);
    }
    let stream = &mut connection.stream;
    stream.write_all(&out).await.map_err(SendError::Write)?;
    if let (None, Some(bytes)) = (small, body) {
        stream.write_all(bytes).await.map_err(SendError::Write)?;
    }
    Ok(())
}

/// After a failed write: the answer the node may have sent before refusing the rest
/// (a 413 from a node that does not read a body it will not take), or the write error.
async fn early_answer(
    connection: &mut NodeConnection,
    head_request: bool,
    write_error: std::io::Error,
) -> Result<ResponseHead, SendError> {
    match tokio::time::timeout(EARLY_ANSWER_WAIT, read_head(connection, head_request)).await {
        Ok(Ok(head)) => Ok(head),
        _ => Err(SendError::Write(write_error)),
    }
}

/// Sends an upload chunk by chunk as it arrives, then the closing chunk. The client has
/// `idle` to send each piece, and the node `idle` to take it.
async fn write_upload(
    connection: &mut NodeConnection,
    mut upload: LocalBoxStream<'static, Result<Bytes, UploadError>>,
    idle: Duration,
) -> Result<(), SendError> {
    let stream = &mut connection.stream;
    loop {
        let next = tokio::time::timeout(idle, upload.next())
            .await
            .map_err(|_| SendError::Upload(UploadError::Stalled(idle)))?;
        let Some(chunk) = next else {
            break;
        };
        let chunk = chunk.map_err(SendError::Upload)?;
        if chunk.is_empty() {
            continue;
        }
        let mut framed = BytesMut::with_capacity(chunk.len() + 20);
        framed.put_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        framed.put_slice(&chunk);
        framed.put_slice(b"\r\n");
        tokio::time::timeout(idle, stream.write_all(&framed))
            .await
            .map_err(|_| SendError::WriteStalled(idle))?
            .map_err(SendError::Write)?;
    }
    tokio::time::timeout(idle, stream.write_all(b"0\r\n\r\n"))
        .await
        .map_err(|_| SendError::WriteStalled(idle))?
        .map_err(SendError::Write)
}

/// Reads until a whole response head is in, skipping interim (1xx) answers.
async fn read_head(
    connection: &mut NodeConnection,
    head_request: bool,
) -> Result<ResponseHead, SendError> {
    loop {
        if let Some((head, length)) = parse_response_head(&connection.buffer, head_request)? {
            let _ = connection.buffer.split_to(length);
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            return Ok(head);
        }
        connection.buffer.reserve(16 * 1024);
        let read = connection
            .stream
            .read_buf(&mut connection.buffer)
            .await
            .map_err(SendError::Read)?;
        if read == 0 {
            return Err(SendError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// How the fake node answers each request on a connection.
    #[derive(Clone, Copy)]
    enum Node {
        /// `{}` with a length, keeping the connection open.
        KeepAlive,
        /// `{}` with a length, then closes its side (without saying so).
        CloseAfterAnswer,
        /// A chunked answer that never ends.
        EndlessStream,
        /// Answers the first request on a connection; closes without answering the next,
        /// as a node does that closes an idle connection as a request arrives.
        AnswerOnceThenDrop,
    }

    /// A node on a loopback port; returns its address and its count of connections.
    async fn fake_node(behaviour: Node) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        actix_rt::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                actix_rt::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = [0u8; 4096];
                    let mut answered = 0;
                    loop {
                        let Ok(read) = socket.read(&mut buffer).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..read]);
                        // Requests here have no body: a blank line ends each one.
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if matches!(behaviour, Node::AnswerOnceThenDrop) && answered == 1 {
                                return;
                            }
                            answered += 1;
                            match behaviour {
                                Node::KeepAlive
                                | Node::CloseAfterAnswer
                                | Node::AnswerOnceThenDrop => {
                                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                                    if socket.write_all(answer).await.is_err() {
                                        return;
                                    }
                                    if matches!(behaviour, Node::CloseAfterAnswer) {
                                        return;
                                    }
                                }
                                Node::EndlessStream => {
                                    let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n";
                                    let _ = socket.write_all(head).await;
                                    loop {
                                        if socket.write_all(b"3\r\n{}\n\r\n").await.is_err() {
                                            return;
                                        }
                                        tokio::time::sleep(Duration::from_millis(5)).await;
                                    }
                                }
                            }
                        }
                    }
                });
            }
        });
        (address, connections)
    }

    fn get() -> HttpRequest {
        actix_web::test::TestRequest::get()
            .uri("/api/version")
            .to_http_request()
    }

    const IDLE: Duration = Duration::from_secs(5);

    async fn roundtrip(client: &NodeClient, address: &str) -> Result<Answer, SendError> {
        let request = get();
        let sent = client
            .send(address, &request, RequestBody::Bytes(Bytes::new()), IDLE)
            .await?;
        client.answer(sent, &request).await
    }

    async fn fetch(client: &NodeClient, address: &str) -> Bytes {
        let answer = roundtrip(client, address).await.unwrap();
        assert_eq!(answer.status(), 200);
        let (_, body) = answer.into_parts();
        body.read_to_end(IDLE).await.unwrap()
    }

    #[test]
    fn a_connection_is_reused_once_its_answer_is_read() {
        actix_rt::System::new().block_on(async {
            let (address, connections) = fake_node(Node::KeepAlive).await;
            let client = NodeClient::new(Duration::from_secs(2));
            for _ in 0..5 {
                assert_eq!(fetch(&client, &address).await, "{}");
            }
            assert_eq!(connections.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn a_connection_the_node_closed_while_idle_is_not_used() {
        actix_rt::System::new().block_on(async {
            let (address, connections) = fake_node(Node::CloseAfterAnswer).await;
            let client = NodeClient::new(Duration::from_secs(2));
            for _ in 0..3 {
                assert_eq!(fetch(&client, &address).await, "{}");
                // Let the node's close arrive before the next request.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(connections.load(Ordering::SeqCst), 3);
        });
    }

    #[test]
    fn a_request_the_node_dropped_on_a_reused_connection_is_sent_again() {
        actix_rt::System::new().block_on(async {
            let (address, connections) = fake_node(Node::AnswerOnceThenDrop).await;
            let client = NodeClient::new(Duration::from_secs(2));
            for _ in 0..5 {
                assert_eq!(fetch(&client, &address).await, "{}");
            }
            // Every request after the first went out on a reused connection first.
            assert_eq!(connections.load(Ordering::SeqCst), 5);
        });
    }

    #[test]
    fn a_node_closing_as_the_request_goes_out_costs_no_request() {
        actix_rt::System::new().block_on(async {
            // Back to back: some requests go out on a connection the node is closing.
            let (address, connections) = fake_node(Node::CloseAfterAnswer).await;
            let client = NodeClient::new(Duration::from_secs(2));
            for _ in 0..30 {
                assert_eq!(fetch(&client, &address).await, "{}");
            }
            assert!(connections.load(Ordering::SeqCst) >= 30);
        });
    }

    #[test]
    fn an_answer_dropped_halfway_closes_its_connection() {
        actix_rt::System::new().block_on(async {
            let (address, connections) = fake_node(Node::EndlessStream).await;
            let client = NodeClient::new(Duration::from_secs(2));
            for _ in 0..2 {
                let answer = roundtrip(&client, &address).await.unwrap();
                let (_, body) = answer.into_parts();
                let mut stream = Box::pin(body.into_stream());
                let first = stream.next().await.unwrap().unwrap();
                assert_eq!(first, "{}\n");
            }
            assert_eq!(connections.load(Ordering::SeqCst), 2);
        });
    }

    #[test]
    fn a_node_that_refuses_is_a_connect_error() {
        actix_rt::System::new().block_on(async {
            // A port that was just free: nothing listens there.
            let address = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .to_string();
            let client = NodeClient::new(Duration::from_secs(2));
            let err = roundtrip(&client, &address).await.err().unwrap();
            assert!(err.is_connect(), "{err}");
            assert!(err.to_string().starts_with("connection failed"), "{err}");
        });
    }
}
