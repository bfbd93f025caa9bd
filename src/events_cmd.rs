//! `sollol events`: tails the Redis event feed in a terminal.
//!
//! It does what `redis-cli PSUBSCRIBE "sollol:dashboard:*"` did for SOLLOL users, and
//! reads the messages: one line per event (`time severity type node summary [app pid]`),
//! or the published JSON as it is with `--json`, filtered by node, model, type,
//! application and least severity. `--history N` first prints the last N entries of
//! the activity stream. It stops after `--count` events or `--duration` seconds, or on
//! Ctrl-C; a lost connection is retried.

use std::io::Write;
use std::time::{Duration, Instant};

use sollol_actors::event::ACTIVITY_STREAM;
use sollol_actors::feed::{FeedFilter, FeedItem};
use sollol_actors::RedactedUrl;

use crate::cli::EventsArgs;

/// Where `sollol events` looks when neither `--redis-url` nor `SOLLOL_REDIS_URL` is set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const READ_TIMEOUT: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("invalid redis url {url}: {source}")]
    InvalidUrl {
        url: RedactedUrl,
        source: redis::RedisError,
    },
    #[error("cannot reach redis at {url}: {source}")]
    Connect {
        url: RedactedUrl,
        source: redis::RedisError,
    },
    #[error("setting `severity`: {0}")]
    Severity(#[from] sollol_actors::event::UnknownSeverity),
    #[error("cannot write to standard output: {0}")]
    Output(#[from] std::io::Error),
}

struct Tail {
    filter: FeedFilter,
    json: bool,
    printed: u64,
    limit: Option<u64>,
    deadline: Option<Instant>,
}

impl Tail {
    fn done(&self) -> bool {
        self.limit.is_some_and(|limit| self.printed >= limit)
            || self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Prints one message if it passes the filter.
    fn show(&mut self, out: &mut impl Write, channel: &str, payload: &str) -> std::io::Result<()> {
        let Ok(item) = FeedItem::from_redis(channel, payload) else {
            return Ok(());
        };
        if !self.filter.matches(&item) || self.done() {
            return Ok(());
        }
        if self.json {
            writeln!(out, "{payload}")?;
        } else {
            writeln!(out, "{}", item.line())?;
        }
        self.printed += 1;
        Ok(())
    }
}

pub fn run(args: EventsArgs, env_url: Option<String>) -> Result<(), EventsError> {
    let url = RedactedUrl::new(
        args.redis_url
            .or(env_url)
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string()),
    );
    let min_severity = args.severity.as_deref().map(str::parse).transpose()?;
    let patterns = if args.patterns.is_empty() {
        vec!["sollol:dashboard:*".to_string()]
    } else {
        args.patterns
    };
    let mut tail = Tail {
        filter: FeedFilter {
            node: args.node,
            model: args.model,
            event_type: args.event_type,
            app: args.app,
            min_severity,
        },
        json: args.json,
        printed: 0,
        limit: args.count,
        deadline: args
            .duration
            .map(|secs| Instant::now() + Duration::from_secs(secs)),
    };
    let client = redis::Client::open(url.expose()).map_err(|source| EventsError::InvalidUrl {
        url: url.clone(),
        source,
    })?;
    let connect = || {
        client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|source| EventsError::Connect {
                url: url.clone(),
                source,
            })
    };
    let mut connection = connect()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();

    if args.history > 0 {
        let entries: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(ACTIVITY_STREAM)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(args.history)
            .query(&mut connection)
            .map_err(|source| EventsError::Connect {
                url: url.clone(),
                source,
            })?;
        for entry in entries.ids.iter().rev() {
            if let Some(payload) = entry.get::<String>("event") {
                tail.show(&mut out, ACTIVITY_STREAM, &payload)?;
            }
        }
    }

    let mut delay = Duration::from_millis(100);
    loop {
        match follow(&mut connection, &patterns, &mut tail, &mut out, &url) {
            Ok(()) => return Ok(()),
            Err(FollowError::Output(err)) => return Err(err.into()),
            Err(FollowError::Redis(err)) => {
                eprintln!("sollol events: lost redis at {url} ({err}); reconnecting");
            }
        }
        loop {
            if tail.done() {
                return Ok(());
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(MAX_RETRY_DELAY);
            if let Ok(fresh) = connect() {
                connection = fresh;
                delay = Duration::from_millis(100);
                break;
            }
        }
    }
}

enum FollowError {
    Redis(redis::RedisError),
    Output(std::io::Error),
}

/// Subscribes and prints until the tail is done or the connection fails.
fn follow(
    connection: &mut redis::Connection,
    patterns: &[String],
    tail: &mut Tail,
    out: &mut impl Write,
    url: &RedactedUrl,
) -> Result<(), FollowError> {
    let mut pubsub = connection.as_pubsub();
    for pattern in patterns {
        pubsub.psubscribe(pattern).map_err(FollowError::Redis)?;
    }
    pubsub
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(FollowError::Redis)?;
    eprintln!(
        "sollol events: subscribed to {} at {url}",
        patterns.join(", ")
    );
    while !tail.done() {
        match pubsub.get_message() {
            Ok(message) => {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                tail.show(out, message.get_channel_name(), &payload)
                    .map_err(FollowError::Output)?;
            }
            Err(err) if err.is_timeout() => {}
            Err(err) => return Err(FollowError::Redis(err)),
        }
    }
    Ok(())
}
