//! `GET /sollol/events`: the live activity feed as server-sent events.
//!
//! Each client gets its own bounded subscription at the observer: first the most recent
//! matching items, then every new one, each as one `data:` line of JSON (a
//! [`FeedItem`]). The feed holds this process's events and, when Redis is configured,
//! those of every other process that publishes to it (worker processes, other gateways).
//! Query parameters filter it: `node`, `model`, `event_type`, `app` (parts of the value
//! match) and `severity` (the least severity shown). A client that cannot keep up is
//! dropped by the observer; its stream ends and the browser's `EventSource` reconnects.
//! A comment line every 15 s keeps idle connections open through proxies.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use sollol_actors::event::Severity;
use sollol_actors::feed::{FeedFilter, FeedItem};
use sollol_actors::observer::Subscribe;
use tokio::sync::mpsc;

use super::error::{Flavour, GatewayError};
use super::state::AppState;

/// Items a client may fall behind by before it is dropped.
const CLIENT_BUFFER: usize = 256;
/// Recent items sent when a client connects, unless it asks for another number.
const DEFAULT_BACKLOG: usize = 50;
const MAX_BACKLOG: usize = 500;
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    node: Option<String>,
    model: Option<String>,
    event_type: Option<String>,
    app: Option<String>,
    severity: Option<String>,
    backlog: Option<usize>,
}

impl FeedQuery {
    fn filter(self) -> Result<(FeedFilter, usize), GatewayError> {
        let keep = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let min_severity = match keep(self.severity) {
            Some(text) => Some(
                text.parse::<Severity>()
                    .map_err(|err| GatewayError::bad_request(err.to_string()))?,
            ),
            None => None,
        };
        let filter = FeedFilter {
            node: keep(self.node),
            model: keep(self.model),
            event_type: keep(self.event_type),
            app: keep(self.app),
            min_severity,
        };
        let backlog = self.backlog.unwrap_or(DEFAULT_BACKLOG).min(MAX_BACKLOG);
        Ok((filter, backlog))
    }
}

pub async fn events(state: web::Data<AppState>, query: web::Query<FeedQuery>) -> HttpResponse {
    let (filter, backlog) = match query.into_inner().filter() {
        Ok(parsed) => parsed,
        Err(err) => return err.into_response(Flavour::Ollama),
    };
    let subscribe = Subscribe {
        filter,
        capacity: CLIENT_BUFFER,
        backlog,
    };
    let Ok(subscription) = state.observer.send(subscribe).await else {
        return GatewayError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "the observer has stopped",
        )
        .into_response(Flavour::Ollama);
    };
    let body = sse(subscription.recent, subscription.receiver);
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body)
}

/// The recent items, then live ones with keep-alive comments in between.
fn sse(
    recent: Vec<FeedItem>,
    receiver: mpsc::Receiver<FeedItem>,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let first = stream::iter(recent.iter().map(encode).collect::<Vec<_>>());
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    let live = stream::unfold(
        (receiver, keep_alive),
        |(mut receiver, mut keep_alive)| async move {
            let chunk = tokio::select! {
                item = receiver.recv() => encode(&item?),
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((chunk, (receiver, keep_alive)))
        },
    );
    stream::once(async { Bytes::from_static(b"retry: 2000\n\n") })
        .chain(first)
        .chain(live)
        .map(Ok)
}

fn encode(item: &FeedItem) -> Bytes {
    let json = serde_json::to_string(item).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("data: {json}\n\n"))
}
