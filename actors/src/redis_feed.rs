//! Brings events other processes publish to Redis (worker processes, other gateways,
//! other applications) into this process's live feed.
//!
//! One task holds a pub/sub connection with `PSUBSCRIBE` on [`FEED_PATTERNS`], turns each
//! message into a [`FeedItem`] and relays it to the observer, skipping this process's own
//! events (the observer has them already). When the connection is lost it reconnects with
//! backoff, so the feed comes back with Redis; it ends when the observer stops.

use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;

use crate::feed::FeedItem;
use crate::observer::{ObserverActor, Relay};
use crate::routing_event::ROUTING_CHANNEL;
use crate::secret::RedactedUrl;

/// What the feed subscribes to: SOLLOL's dashboard channels and the routing log.
pub const FEED_PATTERNS: [&str; 2] = ["sollol:dashboard:*", ROUTING_CHANNEL];

const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// This process, whose own events are not relayed twice.
#[derive(Debug, Clone)]
pub struct OwnProcess {
    pub app: String,
    pub pid: u32,
    pub hostname: String,
}

impl OwnProcess {
    fn emitted(&self, item: &FeedItem) -> bool {
        let same_host = item
            .details
            .get("hostname")
            .and_then(|h| h.as_str())
            .is_some_and(|h| h == self.hostname);
        item.pid == Some(self.pid) && (item.app.as_deref() == Some(&self.app) || same_host)
    }
}

/// Starts relaying; call inside an actix system. Returns at once.
pub fn spawn(url: RedactedUrl, observer: Addr<ObserverActor>, own: OwnProcess) {
    actix_rt::spawn(async move {
        let client = match redis::Client::open(url.expose()) {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(url = %url, error = %err, "live feed cannot use this redis url");
                return;
            }
        };
        let mut delay = Duration::from_millis(100);
        while observer.connected() {
            match relay(&client, &observer, &own).await {
                Ok(()) => {
                    delay = Duration::from_millis(100);
                    tracing::debug!(url = %url, "live feed lost its redis subscription; reconnecting");
                }
                Err(err) => {
                    tracing::debug!(url = %url, error = %err, retry_in_ms = delay.as_millis() as u64, "live feed cannot subscribe to redis");
                }
            }
            actix_rt::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    });
}

/// Subscribes and relays until the connection ends or the observer stops.
async fn relay(
    client: &redis::Client,
    observer: &Addr<ObserverActor>,
    own: &OwnProcess,
) -> redis::RedisResult<()> {
    let connect = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub());
    let mut pubsub = connect
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    for pattern in FEED_PATTERNS {
        pubsub.psubscribe(pattern).await?;
    }
    tracing::debug!("live feed subscribed to redis");
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        if !observer.connected() {
            break;
        }
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        match FeedItem::from_redis(message.get_channel_name(), &payload) {
            Ok(item) if !own.emitted(&item) => observer.do_send(Relay(item)),
            Ok(_) => {}
            Err(err) => tracing::trace!(error = %err, "ignoring a message the feed cannot read"),
        }
    }
    Ok(())
}
