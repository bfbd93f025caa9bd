//! The client the proxy reaches nodes with: HTTP/1.1 connections made with hyper's
//! connection API and pooled per server thread.
//!
//! Each actix-web worker thread has its own [`NodeClient`], so a connection is only ever
//! used, and driven, by the thread that opened it: no lock, no shared pool map, and no
//! request that wakes another thread. reqwest (still used for health checks, fan-out and
//! aggregate routes) parses its URL twice per request and keeps one pool behind a mutex
//! for all threads; on the proxy's hot path both showed up in the profile.
//!
//! A connection goes back to its node's idle list only once its answer has been read to
//! the end ([`Connection::release`]); one dropped before that (a client that left, an
//! error) is closed. Idle connections are used most recent first, and one the node has
//! closed, or that sat idle for [`IDLE_TIMEOUT`], is dropped when met. A request that a
//! reused connection refuses before writing anything moves to another connection.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyDataStream, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// What a request body's stream may fail with.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request body for a node: buffered bytes, nothing, or the client's upload as it comes.
pub type UpstreamBody = BoxBody<Bytes, BodyError>;

/// Idle connections kept per node and thread; more are closed.
const MAX_IDLE_PER_NODE: usize = 256;
/// An idle connection older than this is closed rather than used.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    #[error("connection failed: no connection within {0:?} (setting connect_timeout_ms)")]
    ConnectTimeout(Duration),
    #[error("connection failed: {}", root_cause(.0))]
    Handshake(hyper::Error),
    #[error("request failed: {}", root_cause(.0))]
    Request(hyper::Error),
}

impl SendError {
    /// The node could not be reached at all (nothing was sent).
    pub fn is_connect(&self) -> bool {
        !matches!(self, Self::Request(_))
    }
}

struct IdleConnection {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

impl IdleConnection {
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.duration_since(self.since) < IDLE_TIMEOUT
    }
}

struct NodeConnections {
    key: String,
    idle: Vec<IdleConnection>,
}

struct Pool {
    connect_timeout: Duration,
    nodes: RefCell<Vec<NodeConnections>>,
}

/// One server thread's connections to the nodes. Cheap to clone (clones share the pool);
/// not `Send`: it belongs to the thread that made it.
#[derive(Clone)]
pub struct NodeClient {
    pool: Rc<Pool>,
}

/// A connection in use; see [`Connection::release`].
pub struct Connection {
    pool: Rc<Pool>,
    key: String,
    sender: SendRequest<UpstreamBody>,
}

impl Connection {
    /// Returns the connection to its node's idle list: call once the answer has been read
    /// to the end. Dropping it instead closes the connection.
    pub fn release(self) {
        let mut nodes = self.pool.nodes.borrow_mut();
        let index = match nodes.iter().position(|node| node.key == self.key) {
            Some(index) => index,
            None => {
                nodes.push(NodeConnections {
                    key: self.key,
                    idle: Vec::new(),
                });
                nodes.len() - 1
            }
        };
        let idle = &mut nodes[index].idle;
        if idle.len() < MAX_IDLE_PER_NODE && !self.sender.is_closed() {
            idle.push(IdleConnection {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

impl NodeClient {
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            pool: Rc::new(Pool {
                connect_timeout,
                nodes: RefCell::new(Vec::new()),
            }),
        }
    }

    /// Sends `request` to the node at `key` (`host:port`) and waits for the answer's head.
    pub async fn send(
        &self,
        key: &str,
        mut request: http::Request<UpstreamBody>,
    ) -> Result<(http::Response<Incoming>, Connection), SendError> {
        while let Some(mut sender) = self.take_idle(key) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, self.connection(key, sender))),
                Err(mut failed) => match failed.take_message() {
                    // Nothing was written: the connection was going away.
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Request(failed.into_error())),
                },
            }
        }
        let mut sender = self.connect(key).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(SendError::Request)?;
        Ok((response, self.connection(key, sender)))
    }

    fn connection(&self, key: &str, sender: SendRequest<UpstreamBody>) -> Connection {
        Connection {
            pool: self.pool.clone(),
            key: key.to_string(),
            sender,
        }
    }

    /// The most recently used idle connection to `key` that is still usable.
    fn take_idle(&self, key: &str) -> Option<SendRequest<UpstreamBody>> {
        let mut nodes = self.pool.nodes.borrow_mut();
        let node = nodes.iter_mut().find(|node| node.key == key)?;
        let now = Instant::now();
        // The oldest sits at the front: close it once it has been idle too long.
        if node.idle.first().is_some_and(|oldest| !oldest.usable(now)) {
            node.idle.remove(0);
        }
        while let Some(connection) = node.idle.pop() {
            if connection.usable(now) {
                return Some(connection.sender);
            }
        }
        None
    }

    async fn connect(&self, key: &str) -> Result<SendRequest<UpstreamBody>, SendError> {
        let timeout = self.pool.connect_timeout;
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(key))
            .await
            .map_err(|_| SendError::ConnectTimeout(timeout))?
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Handshake)?;
        // Driven on this thread; it ends when the node closes the connection or every
        // handle to it is dropped.
        actix_rt::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection to a node ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Reads a whole answer, then returns its connection to the pool.
pub async fn read_to_end(
    response: http::Response<Incoming>,
    connection: Connection,
) -> Result<Bytes, hyper::Error> {
    let body = response.into_body().collect().await?.to_bytes();
    connection.release();
    Ok(body)
}

/// An answer's body as a stream of chunks (errors already described); the connection
/// goes back to the pool when the last chunk has been read.
pub struct ReleasingBody {
    chunks: BodyDataStream<Incoming>,
    connection: Option<Connection>,
}

impl ReleasingBody {
    pub fn new(body: Incoming, connection: Connection) -> Self {
        Self {
            chunks: BodyDataStream::new(body),
            connection: Some(connection),
        }
    }
}

impl Stream for ReleasingBody {
    type Item = Result<Bytes, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.chunks).poll_next(cx) {
            Poll::Ready(None) => {
                if let Some(connection) = this.connection.take() {
                    connection.release();
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                this.connection = None;
                Poll::Ready(Some(Err(describe_body_error(&err))))
            }
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(chunk))),
            Poll::Pending => Poll::Pending,
        }
    }
}

pub fn bytes_body(bytes: Bytes) -> UpstreamBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

pub fn empty_body() -> UpstreamBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// What went wrong reading an answer's body.
pub fn describe_body_error(err: &hyper::Error) -> String {
    format!("response body failed: {}", root_cause(err))
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut source = err;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
