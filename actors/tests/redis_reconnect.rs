//! The Redis publisher against a private `redis-server` on a loopback port: events wait
//! in the backlog while Redis is down and are delivered, in order, once it is up.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use sollol_actors::redis_publisher::{GetPublisherStats, Publish, PublisherConfig, RedisPublisher};
use sollol_actors::RedactedUrl;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn start_redis(port: u16) -> Server {
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (.ci/run installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child)
}

#[test]
fn backlog_is_flushed_after_redis_comes_up() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    System::new().block_on(async move {
        let mut config = PublisherConfig::new(RedactedUrl::new(url.clone()));
        config.max_reconnect_delay = Duration::from_millis(200);
        let publisher = RedisPublisher::new(config).expect("valid url").start();
        for i in 0..50 {
            publisher.do_send(Publish::new("sollol:test:backlog", format!("{i}")));
        }
        let stats = publisher.send(GetPublisherStats).await.expect("alive");
        assert!(!stats.connected);
        assert_eq!(stats.backlog, 50);

        let _server = start_redis(port);
        // Subscribe on another thread. Blocking here until it is subscribed also keeps the
        // publisher (on this thread) from flushing before anyone listens.
        let (messages, received_messages) = std::sync::mpsc::channel::<String>();
        let (ready, subscribed) = std::sync::mpsc::channel::<()>();
        let subscriber_url = url.clone();
        std::thread::spawn(move || {
            let client = redis::Client::open(subscriber_url.as_str()).expect("url");
            let mut connection = client.get_connection().expect("connect");
            let mut pubsub = connection.as_pubsub();
            pubsub.subscribe("sollol:test:backlog").expect("subscribe");
            pubsub
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let _ = ready.send(());
            while let Ok(message) = pubsub.get_message() {
                if messages
                    .send(message.get_payload::<String>().expect("text"))
                    .is_err()
                {
                    return;
                }
            }
        });
        subscribed
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribed");
        let mut received = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.len() < 50 && Instant::now() < deadline {
            match received_messages.try_recv() {
                Ok(message) => received.push(message),
                Err(_) => actix_rt::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(received, expected, "in order, none lost");
        let stats = publisher.send(GetPublisherStats).await.expect("alive");
        assert!(stats.connected);
        assert_eq!(stats.published, 50);
        assert_eq!(stats.dropped_by_backlog, 0);
    });
}
