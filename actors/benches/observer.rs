//! What observing costs.
//!
//! - `emit/do_send`: the request path's share: building a response event and handing it
//!   to the observer with `do_send` (the observer does its work later, elsewhere).
//! - `emit/sink`: the same through an [`EventSink`], the gateway's way: the event joins a
//!   buffer the observer drains every few milliseconds (one message per batch).
//! - `observer/handle`: the observer's own work per event (severity, metrics, analytics,
//!   log filter, Redis JSON), measured as events handled per second.
//! - `redis/publish`: events per second written to the Redis at 127.0.0.1:6379 by the
//!   publisher, pipelined (a `PUBLISH` and an `XADD` per event); the goal is at least
//!   100,000 per second. Skipped with a message when Redis is not running.
//!
//! Run with `cargo bench -p sollol-actors --bench observer`.

use std::future::Future;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sollol_actors::event::Event;
use sollol_actors::metrics::Metrics;
use sollol_actors::observer::{
    Emit, EventSink, FlushEvents, GetObserverStats, ObserverActor, ObserverConfig,
};
use sollol_actors::redis_publisher::{GetPublisherStats, Publish, PublisherConfig, RedisPublisher};
use sollol_actors::RedactedUrl;

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

fn response() -> Event {
    Event::ollama_response(
        "127.0.0.1:11434",
        "llama3.2",
        "chat",
        Duration::from_millis(42),
        200,
        true,
    )
    .with_first_byte(Duration::from_millis(7))
    .with_gateway_overhead(Duration::from_micros(250))
}

fn observer() -> Addr<ObserverActor> {
    observer_with_sink().0
}

fn observer_with_sink() -> (Addr<ObserverActor>, EventSink) {
    let config = ObserverConfig {
        max_events: 10_000,
        ..ObserverConfig::default()
    };
    ObserverActor::new(config, None)
        .with_metrics(Metrics::new())
        .start_with_sink()
}

/// Hands `count` events over with `emit` and returns the time spent doing so; after
/// each thousand, waits (not counted) until `settle` says the observer has them all.
async fn timed_emits<Settle: Future<Output = ()>>(
    count: u64,
    emit: impl Fn(),
    settle: impl Fn() -> Settle,
) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = count;
    while left > 0 {
        let chunk = left.min(1_000);
        let started = Instant::now();
        for _ in 0..chunk {
            emit();
        }
        spent += started.elapsed();
        left -= chunk;
        settle().await;
    }
    spent
}

/// Sends `count` events, one message each (the time spent sending).
async fn send_events(observer: &Addr<ObserverActor>, count: u64) -> Duration {
    timed_emits(
        count,
        || observer.do_send(Emit(response())),
        || async {
            let _ = observer.send(GetObserverStats).await;
        },
    )
    .await
}

/// The same through the sink; the observer's drain is not counted.
async fn sink_events(observer: &Addr<ObserverActor>, sink: &EventSink, count: u64) -> Duration {
    timed_emits(
        count,
        || sink.emit(response()),
        || async {
            let _ = observer.send(FlushEvents).await;
        },
    )
    .await
}

fn emit(c: &mut Criterion) {
    let system = System::new();
    let observer = system.block_on(async { observer() });
    let mut group = c.benchmark_group("emit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("do_send", |b| {
        b.iter_custom(|iters| system.block_on(send_events(&observer, iters)))
    });
    let (sink_observer, sink) = system.block_on(async { observer_with_sink() });
    group.bench_function("sink", |b| {
        b.iter_custom(|iters| system.block_on(sink_events(&sink_observer, &sink, iters)))
    });
    group.finish();

    let mut group = c.benchmark_group("observer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("handle", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let started = Instant::now();
                send_events(&observer, iters).await;
                started.elapsed()
            })
        })
    });
    group.finish();
}

fn redis_is_up() -> bool {
    std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().expect("address"),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn redis_publish(c: &mut Criterion) {
    if !redis_is_up() {
        eprintln!("redis/publish skipped: no redis at 127.0.0.1:6379 (start redis-server)");
        return;
    }
    const EVENTS: u64 = 100_000;
    let system = System::new();
    let channel: &'static str =
        Box::leak(format!("sollol:bench:{}", std::process::id()).into_boxed_str());
    let stream: &'static str =
        Box::leak(format!("sollol:bench:stream:{}", std::process::id()).into_boxed_str());
    let publisher = system.block_on(async {
        let mut config = PublisherConfig::new(RedactedUrl::new(REDIS_URL));
        config.max_backlog = EVENTS as usize;
        let publisher = RedisPublisher::new(config).expect("valid url").start();
        while !publisher
            .send(GetPublisherStats)
            .await
            .expect("alive")
            .connected
        {
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        publisher
    });
    let payload = response().to_json();

    let mut group = c.benchmark_group("redis");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("publish", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let before = publisher.send(GetPublisherStats).await.expect("alive");
                    let started = Instant::now();
                    for sent in 0..EVENTS {
                        publisher.do_send(Publish::event(channel, stream, payload.clone(), 1_000));
                        // Let the publisher write while events keep coming, as in a server.
                        if sent % 1_000 == 999 {
                            actix_rt::task::yield_now().await;
                        }
                    }
                    loop {
                        let stats = publisher.send(GetPublisherStats).await.expect("alive");
                        let done = stats.published + stats.dropped_by_backlog
                            - before.published
                            - before.dropped_by_backlog;
                        if done >= EVENTS {
                            assert_eq!(stats.dropped_by_backlog, before.dropped_by_backlog);
                            break;
                        }
                        actix_rt::time::sleep(Duration::from_micros(200)).await;
                    }
                    total += started.elapsed();
                }
                total
            })
        })
    });
    group.finish();
    if let Ok(client) = redis::Client::open(REDIS_URL) {
        if let Ok(mut connection) = client.get_connection() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(stream).query(&mut connection);
        }
    }
}

criterion_group!(benches, emit, redis_publish);
criterion_main!(benches);
