//! Routing decisions through the observer and the publisher into the Redis at
//! 127.0.0.1:6379: SOLLOL's routing-log JSON on `sollol:routing_events`, the same entry on
//! the trimmed `sollol:routing_stream`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::Value;
use sollol_actors::observer::{EmitRouting, ObserverActor, ObserverConfig};
use sollol_actors::redis_publisher::{Flush, GetPublisherStats, PublisherConfig, RedisPublisher};
use sollol_actors::routing_event::{
    RoutingEvent, RoutingEventType, ROUTING_CHANNEL, ROUTING_STREAM,
};
use sollol_actors::RedactedUrl;

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

#[test]
fn routing_events_reach_the_channel_and_the_trimmed_stream_in_sollols_shape() {
    let model = format!("routing-test-{}", std::process::id());
    let client = redis::Client::open(REDIS_URL).expect("url");
    let (messages, received) = std::sync::mpsc::channel::<String>();
    let (ready, subscribed) = std::sync::mpsc::channel::<()>();
    let subscriber = client.clone();
    std::thread::spawn(move || {
        let mut connection = subscriber
            .get_connection()
            .expect("redis at 127.0.0.1:6379 (started by .ci/run)");
        let mut pubsub = connection.as_pubsub();
        pubsub.subscribe(ROUTING_CHANNEL).expect("subscribe");
        pubsub
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let _ = ready.send(());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(message) = pubsub.get_message() {
                if messages.send(message.get_payload().expect("text")).is_err() {
                    return;
                }
            }
        }
    });
    subscribed
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");

    System::new().block_on(async {
        let publisher = RedisPublisher::new(PublisherConfig::new(RedactedUrl::new(REDIS_URL)))
            .expect("url")
            .start();
        while !publisher
            .send(GetPublisherStats)
            .await
            .expect("alive")
            .connected
        {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let observer = ObserverActor::new(
            ObserverConfig::default(),
            Some(publisher.clone().recipient()),
        )
        .start();
        observer.do_send(EmitRouting(RoutingEvent::new(
            RoutingEventType::NodeSelected,
            &model,
            "127.0.0.1:11434",
            "Strategy: round_robin",
            5,
        )));
        observer.do_send(EmitRouting(
            RoutingEvent::new(
                RoutingEventType::FallbackTriggered,
                &model,
                "127.0.0.1:11435",
                "connection refused",
                5,
            )
            .with("from_backend", "127.0.0.1:11434"),
        ));
        let _ = observer
            .send(sollol_actors::observer::GetObserverStats)
            .await;
        publisher.send(Flush).await.expect("alive");
    });

    let mut events: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.len() < 2 && Instant::now() < deadline {
        if let Ok(text) = received.recv_timeout(Duration::from_millis(100)) {
            let event: Value = serde_json::from_str(&text).expect("json");
            if event["model"] == model.as_str() {
                events.push(event);
            }
        }
    }
    assert_eq!(events.len(), 2, "{events:?}");
    let common = [
        "timestamp",
        "instance_id",
        "hostname",
        "pid",
        "event_type",
        "model",
        "backend",
        "node_url",
        "reason",
        "confidence",
        "priority",
    ];
    let keys = |event: &Value| -> BTreeSet<String> {
        event.as_object().expect("object").keys().cloned().collect()
    };
    let expected: BTreeSet<String> = common.iter().map(|k| k.to_string()).collect();
    assert_eq!(keys(&events[0]), expected);
    assert_eq!(events[0]["event_type"], "OLLAMA_NODE_SELECTED");
    assert_eq!(events[0]["backend"], "ollama");
    assert_eq!(events[0]["node_url"], "127.0.0.1:11434");
    let mut with_from = expected.clone();
    with_from.insert("from_backend".into());
    assert_eq!(keys(&events[1]), with_from);
    assert_eq!(events[1]["event_type"], "FALLBACK_TRIGGERED");

    let mut connection = client.get_connection().expect("connection");
    let entries: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(ROUTING_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(200)
        .query(&mut connection)
        .expect("xrevrange");
    let stored: Vec<Value> = entries
        .ids
        .iter()
        .filter_map(|entry| entry.get::<String>("event"))
        .filter_map(|text| serde_json::from_str(&text).ok())
        .filter(|event: &Value| event["model"] == model.as_str())
        .collect();
    assert_eq!(stored.len(), 2, "both decisions are in the stream");
    let length: usize = redis::cmd("XLEN")
        .arg(ROUTING_STREAM)
        .query(&mut connection)
        .expect("xlen");
    assert!(length <= 10_000 + 200, "trimmed to about 10000: {length}");
}
