//! The Redis publisher: owns the connection, batches, pipelines, reconnects.
//!
//! Messages arrive with `do_send` and wait in a bounded backlog; a message is the commands
//! for one event (a `PUBLISH` and an `XADD`) or for one key update. A batch is written as one
//! pipeline (one round trip) when the backlog reaches `batch_size` or every
//! `flush_interval`, whichever comes first. While Redis is down the backlog keeps the
//! newest `max_backlog` messages and counts the ones it had to drop; the connection is
//! retried with exponential backoff and the backlog is flushed once it is back. Send
//! [`Flush`] before shutting down to drain what is left. Nobody else ever waits for Redis.
//! [`Fetch`] runs read commands on the same connection for the few periodic readers
//! (application registry); it answers at once with an error while Redis is down.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::secret::RedactedUrl;

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub url: RedactedUrl,
    /// Flush as soon as this many messages wait.
    pub batch_size: usize,
    /// Flush at least this often while messages wait.
    pub flush_interval: Duration,
    /// Messages kept while Redis is unreachable; older ones are dropped and counted.
    pub max_backlog: usize,
    /// Most messages written in one pipeline.
    pub max_pipeline: usize,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_reconnect_delay: Duration,
}

impl PublisherConfig {
    pub fn new(url: RedactedUrl) -> Self {
        Self {
            url,
            batch_size: 100,
            flush_interval: Duration::from_millis(50),
            max_backlog: 10_000,
            max_pipeline: 1_000,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            max_reconnect_delay: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("invalid redis url {url}: {reason}")]
    InvalidUrl { url: RedactedUrl, reason: String },
}

/// One Redis command the publisher will write.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisCommand {
    /// `PUBLISH channel payload`.
    Publish {
        channel: Cow<'static, str>,
        payload: String,
    },
    /// `XADD stream MAXLEN ~ max_len * field payload`.
    StreamAdd {
        stream: Cow<'static, str>,
        field: &'static str,
        payload: String,
        max_len: usize,
    },
    /// `SET key payload EX ttl_secs`.
    SetEx {
        key: Cow<'static, str>,
        payload: String,
        ttl_secs: u64,
    },
    /// `DEL key`.
    Del { key: Cow<'static, str> },
    /// `ZADD key score member`.
    SortedSetAdd {
        key: Cow<'static, str>,
        member: String,
        score: f64,
    },
    /// `ZREM key member`.
    SortedSetRemove {
        key: Cow<'static, str>,
        member: String,
    },
    /// `ZREMRANGEBYSCORE key -inf (below`: removes members scored below `below`.
    SortedSetTrim { key: Cow<'static, str>, below: f64 },
}

/// Queues the commands of one message, written together; send it with `do_send`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Publish(pub Vec<RedisCommand>);

impl Publish {
    /// A pub/sub message.
    pub fn new(channel: impl Into<Cow<'static, str>>, payload: String) -> Self {
        Self::one(RedisCommand::Publish {
            channel: channel.into(),
            payload,
        })
    }

    pub fn one(command: RedisCommand) -> Self {
        Self(vec![command])
    }

    /// An event: published on `channel` and appended to `stream` (trimmed to about
    /// `max_len`; 0 leaves the stream out).
    pub fn event(
        channel: &'static str,
        stream: &'static str,
        payload: String,
        max_len: usize,
    ) -> Self {
        let mut commands = Vec::with_capacity(2);
        if max_len > 0 {
            commands.push(RedisCommand::StreamAdd {
                stream: stream.into(),
                field: "event",
                payload: payload.clone(),
                max_len,
            });
        }
        commands.push(RedisCommand::Publish {
            channel: channel.into(),
            payload,
        });
        Self(commands)
    }

    /// An entry `{field: payload}` on a stream trimmed to about `max_len` entries.
    pub fn stream_add(
        stream: impl Into<Cow<'static, str>>,
        field: &'static str,
        payload: String,
        max_len: usize,
    ) -> Self {
        Self::one(RedisCommand::StreamAdd {
            stream: stream.into(),
            field,
            payload,
            max_len,
        })
    }

    /// A key that expires after `ttl_secs`.
    pub fn set_ex(key: impl Into<Cow<'static, str>>, payload: String, ttl_secs: u64) -> Self {
        Self::one(RedisCommand::SetEx {
            key: key.into(),
            payload,
            ttl_secs,
        })
    }

    pub fn del(key: impl Into<Cow<'static, str>>) -> Self {
        Self::one(RedisCommand::Del { key: key.into() })
    }
}

/// Writes everything waiting now; answers how many messages were written.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Flush;

/// Runs read commands on the publisher's connection and answers their replies, one per
/// command that is not ignored.
#[derive(Message)]
#[rtype(result = "Result<Vec<redis::Value>, FetchError>")]
pub struct Fetch(pub redis::Pipeline);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("redis is not connected")]
    NotConnected,
    #[error("redis read failed: {0}")]
    Failed(#[from] redis::RedisError),
}

#[derive(Message)]
#[rtype(result = "PublisherStats")]
pub struct GetPublisherStats;

#[derive(Debug, Clone, Default, Serialize)]
pub struct PublisherStats {
    /// The Redis URL with its password hidden.
    pub url: String,
    pub connected: bool,
    pub published: u64,
    pub dropped_by_backlog: u64,
    pub backlog: usize,
    pub failed_flushes: u64,
    pub reconnects: u64,
}

pub struct RedisPublisher {
    config: PublisherConfig,
    client: redis::Client,
    connection: Option<MultiplexedConnection>,
    /// True from a connection attempt until it succeeds or its retry timer fires.
    connecting: bool,
    /// True while a pipeline is being written; batches go one at a time to keep order.
    writing: bool,
    reconnect_delay: Duration,
    /// An outage was already reported; retries stay quiet until Redis is back.
    warned_down: bool,
    backlog: VecDeque<Publish>,
    stats: PublisherStats,
    metrics: Option<Metrics>,
}

impl RedisPublisher {
    pub fn new(config: PublisherConfig) -> Result<Self, PublisherError> {
        let client =
            redis::Client::open(config.url.expose()).map_err(|err| PublisherError::InvalidUrl {
                url: config.url.clone(),
                reason: err.to_string(),
            })?;
        let stats = PublisherStats {
            url: config.url.to_string(),
            ..PublisherStats::default()
        };
        Ok(Self {
            reconnect_delay: Duration::from_millis(100),
            warned_down: false,
            client,
            connection: None,
            connecting: false,
            writing: false,
            backlog: VecDeque::new(),
            stats,
            config,
            metrics: None,
        })
    }

    /// Also counts into `metrics` (published, dropped by backlog, backlog, connection).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn note_backlog(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.redis_backlog(self.backlog.len());
        }
    }

    fn note_published(&mut self, count: usize) {
        self.stats.published += count as u64;
        if let Some(metrics) = &self.metrics {
            metrics.published(count as u64);
        }
        self.note_backlog();
    }

    fn note_dropped(&mut self, count: u64) {
        self.stats.dropped_by_backlog += count;
        if let Some(metrics) = &self.metrics {
            metrics.dropped_by_backlog(count);
        }
    }

    fn note_connected(&self, connected: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.redis_connected(connected);
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.connection.is_some() {
            return;
        }
        self.connecting = true;
        let client = self.client.clone();
        let options = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.response_timeout));
        let attempt = async move {
            client
                .get_multiplexed_async_connection_with_config(&options)
                .await
        };
        ctx.spawn(attempt.into_actor(self).map(|result, act, ctx| match result {
            Ok(connection) => {
                tracing::info!(url = %act.config.url, backlog = act.backlog.len(), "connected to redis");
                act.connection = Some(connection);
                act.connecting = false;
                act.warned_down = false;
                act.reconnect_delay = Duration::from_millis(100);
                act.stats.reconnects += 1;
                act.note_connected(true);
                act.flush(ctx);
            }
            Err(err) if act.warned_down => {
                tracing::debug!(url = %act.config.url, error = %err, "redis still unreachable");
                let delay = act.reconnect_delay;
                act.reconnect_delay = (delay * 2).min(act.config.max_reconnect_delay);
                ctx.run_later(delay, |act, ctx| {
                    act.connecting = false;
                    act.connect(ctx);
                });
            }
            Err(err) => {
                act.warned_down = true;
                tracing::warn!(
                    url = %act.config.url,
                    retry_in_ms = act.reconnect_delay.as_millis() as u64,
                    backlog = act.backlog.len(),
                    error = %err,
                    "redis unreachable; events wait in the backlog"
                );
                let delay = act.reconnect_delay;
                act.reconnect_delay = (delay * 2).min(act.config.max_reconnect_delay);
                ctx.run_later(delay, |act, ctx| {
                    act.connecting = false;
                    act.connect(ctx);
                });
            }
        }));
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.backlog.is_empty() {
            return;
        }
        let Some(mut connection) = self.connection.clone() else {
            self.connect(ctx);
            return;
        };
        let count = self.backlog.len().min(self.config.max_pipeline);
        let batch: Vec<Publish> = self.backlog.drain(..count).collect();
        let pipeline = build_pipeline(&batch);
        self.writing = true;
        let write = async move { pipeline.query_async::<()>(&mut connection).await };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.writing = false;
            match result {
                Ok(()) => {
                    act.note_published(batch.len());
                    if act.backlog.len() >= act.config.batch_size {
                        act.flush(ctx);
                    }
                }
                Err(err) => {
                    tracing::warn!(url = %act.config.url, messages = batch.len(), error = %err, "redis write failed; reconnecting");
                    act.stats.failed_flushes += 1;
                    act.connection = None;
                    act.note_connected(false);
                    act.requeue(batch);
                    act.connect(ctx);
                }
            }
        }));
    }

    /// Puts a failed batch back at the front, keeping the backlog bound.
    fn requeue(&mut self, batch: Vec<Publish>) {
        for message in batch.into_iter().rev() {
            self.backlog.push_front(message);
        }
        let mut dropped = 0;
        while self.backlog.len() > self.config.max_backlog {
            self.backlog.pop_front();
            dropped += 1;
        }
        self.note_dropped(dropped);
        self.note_backlog();
    }
}

fn build_pipeline(batch: &[Publish]) -> redis::Pipeline {
    let mut pipeline = redis::pipe();
    for command in batch.iter().flat_map(|Publish(commands)| commands) {
        match command {
            RedisCommand::Publish { channel, payload } => {
                pipeline
                    .cmd("PUBLISH")
                    .arg(channel.as_ref())
                    .arg(payload)
                    .ignore();
            }
            RedisCommand::StreamAdd {
                stream,
                field,
                payload,
                max_len,
            } => {
                pipeline
                    .cmd("XADD")
                    .arg(stream.as_ref())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(*max_len)
                    .arg("*")
                    .arg(*field)
                    .arg(payload)
                    .ignore();
            }
            RedisCommand::SetEx {
                key,
                payload,
                ttl_secs,
            } => {
                pipeline
                    .cmd("SET")
                    .arg(key.as_ref())
                    .arg(payload)
                    .arg("EX")
                    .arg(*ttl_secs)
                    .ignore();
            }
            RedisCommand::Del { key } => {
                pipeline.cmd("DEL").arg(key.as_ref()).ignore();
            }
            RedisCommand::SortedSetAdd { key, member, score } => {
                pipeline
                    .cmd("ZADD")
                    .arg(key.as_ref())
                    .arg(*score)
                    .arg(member)
                    .ignore();
            }
            RedisCommand::SortedSetRemove { key, member } => {
                pipeline.cmd("ZREM").arg(key.as_ref()).arg(member).ignore();
            }
            RedisCommand::SortedSetTrim { key, below } => {
                pipeline
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(key.as_ref())
                    .arg("-inf")
                    .arg(format!("({below}"))
                    .ignore();
            }
        }
    }
    pipeline
}

impl Actor for RedisPublisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.connect(ctx);
        ctx.run_interval(self.config.flush_interval, |act, ctx| act.flush(ctx));
    }
}

impl Handler<Publish> for RedisPublisher {
    type Result = ();

    fn handle(&mut self, message: Publish, ctx: &mut Self::Context) {
        if self.backlog.len() >= self.config.max_backlog {
            self.backlog.pop_front();
            self.note_dropped(1);
        }
        self.backlog.push_back(message);
        self.note_backlog();
        if self.backlog.len() >= self.config.batch_size {
            self.flush(ctx);
        }
    }
}

impl Handler<Flush> for RedisPublisher {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: Flush, _ctx: &mut Self::Context) -> Self::Result {
        let Some(mut connection) = self.connection.clone() else {
            return Box::pin(fut::ready(0));
        };
        if self.backlog.is_empty() {
            return Box::pin(fut::ready(0));
        }
        let batch: Vec<Publish> = self.backlog.drain(..).collect();
        let pipeline = build_pipeline(&batch);
        let write = async move { pipeline.query_async::<()>(&mut connection).await };
        Box::pin(write.into_actor(self).map(move |result, act, _ctx| match result {
            Ok(()) => {
                act.note_published(batch.len());
                batch.len()
            }
            Err(err) => {
                tracing::warn!(url = %act.config.url, messages = batch.len(), error = %err, "final redis flush failed");
                act.stats.failed_flushes += 1;
                act.requeue(batch);
                0
            }
        }))
    }
}

impl Handler<Fetch> for RedisPublisher {
    type Result = ResponseFuture<Result<Vec<redis::Value>, FetchError>>;

    fn handle(&mut self, Fetch(pipeline): Fetch, _ctx: &mut Self::Context) -> Self::Result {
        let Some(mut connection) = self.connection.clone() else {
            return Box::pin(async { Err(FetchError::NotConnected) });
        };
        Box::pin(async move { Ok(pipeline.query_async(&mut connection).await?) })
    }
}

impl Handler<GetPublisherStats> for RedisPublisher {
    type Result = MessageResult<GetPublisherStats>;

    fn handle(&mut self, _: GetPublisherStats, _ctx: &mut Self::Context) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.connected = self.connection.is_some();
        stats.backlog = self.backlog.len();
        MessageResult(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_url_is_reported_without_the_password() {
        let url = RedactedUrl::new("nonsense://:pw@127.0.0.1:1");
        let err = RedisPublisher::new(PublisherConfig::new(url))
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(text.starts_with("invalid redis url"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }

    #[test]
    fn backlog_is_bounded_while_redis_is_unreachable() {
        let system = System::new();
        system.block_on(async {
            // Port 1 on loopback refuses connections, so every message stays in the backlog.
            let mut config = PublisherConfig::new(RedactedUrl::new("redis://127.0.0.1:1/0"));
            config.max_backlog = 10;
            config.batch_size = 1_000;
            let publisher = RedisPublisher::new(config).expect("valid url").start();
            for i in 0..25 {
                publisher.do_send(Publish::new("c", format!("{i}")));
            }
            let stats = publisher.send(GetPublisherStats).await.expect("alive");
            assert!(!stats.connected);
            assert_eq!(stats.backlog, 10);
            assert_eq!(stats.dropped_by_backlog, 15);
            assert_eq!(publisher.send(Flush).await.expect("alive"), 0);
        });
    }
}
