use std::time::Duration;

use super::*;
use crate::event::EventType;

fn config() -> ObserverConfig {
    ObserverConfig {
        app_name: "t".into(),
        pid: 42,
        ..ObserverConfig::default()
    }
}

fn error(node: &str) -> Event {
    Event::ollama_error(node, "m", "HTTP 500", Duration::ZERO)
}

#[test]
fn stamps_app_and_pid_counts_and_keeps_a_bounded_ring() {
    System::new().block_on(async {
        let config = ObserverConfig {
            max_events: 3,
            ..config()
        };
        let observer = ObserverActor::new(config, None).start();
        for i in 0..5 {
            observer.do_send(Emit(error(&format!("n{i}"))));
        }
        let stats = observer.send(GetObserverStats).await.expect("alive");
        assert_eq!(stats.total_events, 5);
        assert_eq!(stats.events_in_memory, 3);
        assert_eq!(stats.events_by_type["ollama_error"], 5);
        assert_eq!(stats.errors_by_backend["n4"], 1);
        let recent = observer
            .send(RecentEvents { limit: 10 })
            .await
            .expect("alive");
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[0].backend, "n4");
        let details = recent[0].details();
        assert_eq!(details["app"], "t");
        assert_eq!(details["pid"], 42);
        assert_eq!(recent[0].event_type(), EventType::OllamaError);
    });
}

#[test]
fn sampling_drops_only_per_request_info_events_and_metrics_still_count_them() {
    System::new().block_on(async {
        let metrics = Metrics::new();
        let config = ObserverConfig {
            sample_rate: 0.0,
            ..config()
        };
        let observer = ObserverActor::new(config, None)
            .with_metrics(metrics.clone())
            .start();
        observer.do_send(Emit(Event::ollama_request("n", "m", "chat", false)));
        observer.do_send(Emit(Event::ollama_response(
            "n",
            "m",
            "chat",
            Duration::from_millis(3),
            200,
            false,
        )));
        observer.do_send(Emit(error("n")));
        observer.do_send(Emit(Event::node_status_change(
            "n",
            "unhealthy",
            "healthy",
            "check passed",
        )));
        let stats = observer.send(GetObserverStats).await.expect("alive");
        assert_eq!(stats.total_events, 4);
        assert_eq!(stats.dropped_by_sampling, 2);
        assert_eq!(stats.events_in_memory, 2);
        let text = metrics.encode();
        assert!(
            text.contains(r#"sollol_requests_total{node="n",model="m",route="chat",status="200",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"sollol_events_dropped_total{reason="sampling"} 2"#));
        let analytics = observer.send(GetAnalytics).await.expect("alive");
        assert_eq!(analytics.total_requests, 2);
        assert_eq!(analytics.success_rate, 0.5);
    });
}

#[test]
fn configured_thresholds_decide_severity() {
    System::new().block_on(async {
        let mut config = config();
        config.rules.slow_response = Duration::from_millis(1);
        let observer = ObserverActor::new(config, None).start();
        observer.do_send(Emit(Event::ollama_response(
            "n",
            "m",
            "chat",
            Duration::from_millis(5),
            200,
            false,
        )));
        let recent = observer
            .send(RecentEvents { limit: 1 })
            .await
            .expect("alive");
        assert_eq!(recent[0].severity, Severity::Warning);
    });
}

#[test]
fn subscribers_get_recent_then_live_items_matching_their_filter() {
    System::new().block_on(async {
        let observer = ObserverActor::new(config(), None).start();
        observer.do_send(Emit(error("a:1")));
        observer.do_send(Emit(error("b:2")));
        let filter = FeedFilter {
            node: Some("a:1".into()),
            ..FeedFilter::default()
        };
        let mut feed = observer
            .send(Subscribe {
                filter,
                capacity: 8,
                backlog: 10,
            })
            .await
            .expect("alive");
        assert_eq!(feed.recent.len(), 1);
        assert_eq!(feed.recent[0].node, "a:1");

        observer.do_send(Emit(error("b:2")));
        observer.do_send(Emit(error("a:1")));
        let item = feed.receiver.recv().await.expect("live item");
        assert_eq!(item.node, "a:1");
        assert_eq!(item.app.as_deref(), Some("t"));
        assert!(feed.receiver.try_recv().is_err(), "b:2 is filtered out");
    });
}

#[test]
fn a_subscriber_that_falls_behind_is_dropped_not_waited_for() {
    System::new().block_on(async {
        let observer = ObserverActor::new(config(), None).start();
        let slow = observer
            .send(Subscribe {
                filter: FeedFilter::default(),
                capacity: 2,
                backlog: 0,
            })
            .await
            .expect("alive");
        for _ in 0..10 {
            observer.do_send(Emit(error("n")));
        }
        let stats = observer.send(GetObserverStats).await.expect("alive");
        assert_eq!(stats.total_events, 10, "the observer went on");
        assert_eq!(stats.feed_subscribers, 0);
        assert_eq!(stats.feed_subscribers_dropped, 1);
        drop(slow);
    });
}

#[test]
fn relayed_items_reach_subscribers_without_being_counted() {
    System::new().block_on(async {
        let observer = ObserverActor::new(config(), None).start();
        let mut feed = observer
            .send(Subscribe {
                filter: FeedFilter::default(),
                capacity: 4,
                backlog: 0,
            })
            .await
            .expect("alive");
        let remote = FeedItem::from_event(&error("other:1"));
        observer.do_send(Relay(remote.clone()));
        assert_eq!(feed.receiver.recv().await, Some(remote));
        let stats = observer.send(GetObserverStats).await.expect("alive");
        assert_eq!(stats.total_events, 0);
    });
}
