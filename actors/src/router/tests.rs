//! Router tests on in-memory nodes: strategies, warm first, affinity, admission queue.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::node::{OutcomeKind, RequestOutcome};

fn cluster() -> Vec<NodeHandle> {
    vec![
        NodeHandle::for_tests("127.0.0.1:1001", &["llama3.2", "nomic-embed-text"]),
        NodeHandle::for_tests("127.0.0.1:1002", &["llama3.2"]),
        NodeHandle::for_tests("127.0.0.1:1003", &["llama3.2:1b"]),
    ]
}

fn request(model: &str) -> PickNode {
    PickNode {
        kind: RequestKind::Chat,
        ..PickNode::for_model(model)
    }
}

fn pick(router: &mut RouterActor, request: &PickNode) -> Result<Lease, RouteError> {
    match router.place(request, 0, Instant::now())? {
        Placement::Placed(lease) => Ok(lease),
        Placement::Full => panic!("unexpectedly full"),
    }
}

fn count_picks(router: &mut RouterActor, request: &PickNode, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let lease = pick(router, request).expect("a node");
        *counts.entry(lease.node.key().to_string()).or_default() += 1;
    }
    counts
}

fn teach(node: &NodeHandle, model: &str, latency_ms: u64) {
    node.record(&RequestOutcome {
        model: Some(normalize_model(model)),
        kind: RequestKind::Chat,
        weight: 1.0,
        latency: Duration::from_millis(latency_ms),
        ttfb: Some(Duration::from_millis(latency_ms / 10)),
        cold: false,
        kind_of_end: OutcomeKind::Success,
    });
}

#[test]
fn round_robin_alternates_among_nodes_with_the_model() {
    let mut router = RouterActor::new(cluster(), Strategy::RoundRobin);
    let counts = count_picks(&mut router, &request("Llama3.2"), 10);
    assert_eq!(counts.get("127.0.0.1:1001"), Some(&5));
    assert_eq!(counts.get("127.0.0.1:1002"), Some(&5));
    assert_eq!(counts.get("127.0.0.1:1003"), None);
}

#[test]
fn least_loaded_avoids_busy_nodes_and_spreads_ties() {
    let nodes = cluster();
    let _busy = nodes[0].begin();
    let mut router = RouterActor::new(nodes.clone(), Strategy::LeastLoaded);
    let lease = pick(&mut router, &request("llama3.2")).expect("node");
    assert_eq!(lease.node.key(), "127.0.0.1:1002");
    drop(lease);

    let mut router = RouterActor::new(cluster(), Strategy::LeastLoaded);
    let counts = count_picks(&mut router, &request("llama3.2"), 4);
    assert_eq!(
        counts.len(),
        2,
        "idle ties must not all go to the first node: {counts:?}"
    );
}

#[test]
fn fairness_and_latency_first_follow_their_measure() {
    let nodes = cluster();
    teach(&nodes[0], "llama3.2", 500);
    teach(&nodes[1], "llama3.2", 100);
    let mut router = RouterActor::new(nodes.clone(), Strategy::LatencyFirst);
    let counts = count_picks(&mut router, &request("llama3.2"), 3);
    assert_eq!(counts.get("127.0.0.1:1002"), Some(&3));

    teach(&nodes[1], "llama3.2", 100);
    let mut router = RouterActor::new(nodes, Strategy::Fairness);
    let lease = pick(&mut router, &request("llama3.2")).expect("node");
    assert_eq!(
        lease.node.key(),
        "127.0.0.1:1001",
        "the node that served fewer requests"
    );
}

#[test]
fn intelligent_prefers_the_faster_node_and_explores_unmeasured_ones() {
    let nodes = vec![
        NodeHandle::for_tests_with("127.0.0.1:2001", &["m"], &["m"], 4),
        NodeHandle::for_tests_with("127.0.0.1:2002", &["m"], &["m"], 4),
        NodeHandle::for_tests_with("127.0.0.1:2003", &["m"], &["m"], 4),
    ];
    teach(&nodes[0], "m", 1000);
    teach(&nodes[1], "m", 200);
    let mut router = RouterActor::new(nodes.clone(), Strategy::Intelligent);
    let first = pick(&mut router, &request("m")).expect("node");
    assert_eq!(
        first.node.key(),
        "127.0.0.1:2003",
        "a node with no history is explored"
    );
    assert!(first.reason.contains("exploring"), "{}", first.reason);
    drop(first);
    teach(&nodes[2], "m", 3000);
    let counts = count_picks(&mut router, &request("m"), 3);
    assert_eq!(counts.get("127.0.0.1:2002"), Some(&3), "{counts:?}");
}

#[test]
fn intelligent_counts_load_so_a_busy_fast_node_shares_with_a_slower_idle_one() {
    let nodes = vec![
        NodeHandle::for_tests_with("127.0.0.1:2101", &["m"], &["m"], 4),
        NodeHandle::for_tests_with("127.0.0.1:2102", &["m"], &["m"], 4),
    ];
    teach(&nodes[0], "m", 100);
    teach(&nodes[1], "m", 130);
    let mut router = RouterActor::new(nodes, Strategy::Intelligent);
    let leases: Vec<Lease> = (0..6)
        .map(|_| pick(&mut router, &request("m")).expect("node"))
        .collect();
    let keys: Vec<&str> = leases.iter().map(|l| l.node.key()).collect();
    // Expected finish on the fast node: 100, 125, 150, 175 ms with 0 to 3 running (then
    // full); on the slow one: 130, 162.5, 195 ms.
    let (fast, slow) = ("127.0.0.1:2101", "127.0.0.1:2102");
    assert_eq!(
        keys,
        [fast, fast, slow, fast, slow, fast],
        "each goes where it finishes soonest"
    );
}

#[test]
fn warm_nodes_come_first_and_one_cold_load_at_a_time() {
    let nodes = vec![
        NodeHandle::for_tests_with("127.0.0.1:3001", &["m"], &[], 2),
        NodeHandle::for_tests_with("127.0.0.1:3002", &["m"], &["m"], 2),
        NodeHandle::for_tests_with("127.0.0.1:3003", &["m"], &[], 2),
    ];
    // The warm node is slow enough that waiting for it costs more than a cold load.
    teach(&nodes[1], "m", 8000);
    let mut router = RouterActor::new(nodes, Strategy::Intelligent);
    let a = pick(&mut router, &request("m")).expect("node");
    let b = pick(&mut router, &request("m")).expect("node");
    assert_eq!(
        (a.node.key(), b.node.key()),
        ("127.0.0.1:3002", "127.0.0.1:3002"),
        "the warm node first"
    );
    assert!(!a.cold);
    // The warm node is full: one cold load starts, and the next request joins that node
    // (it is loading the model) instead of starting a second load.
    let c = pick(&mut router, &request("m")).expect("node");
    assert!(c.cold);
    let d = pick(&mut router, &request("m")).expect("node");
    assert_eq!(
        d.node.key(),
        c.node.key(),
        "a loading node is preferred over a second cold load"
    );
}

#[test]
fn a_request_waits_for_a_busy_fast_node_rather_than_finishing_later_elsewhere() {
    let nodes = vec![
        NodeHandle::for_tests_with("127.0.0.1:3101", &["m"], &["m"], 1),
        NodeHandle::for_tests_with("127.0.0.1:3102", &["m"], &["m"], 1),
    ];
    teach(&nodes[0], "m", 100);
    teach(&nodes[1], "m", 1000);
    let mut router = RouterActor::new(nodes, Strategy::Intelligent);
    let first = pick(&mut router, &request("m")).expect("node");
    assert_eq!(first.node.key(), "127.0.0.1:3101");
    // Waiting about 100 ms for the fast node beats 1000 ms on the idle slow one.
    let placement = router
        .place(&request("m"), 0, Instant::now())
        .expect("placement");
    assert!(matches!(placement, Placement::Full));
    // With nine requests already waiting for it, the slow node is the better bet.
    match router
        .place(&request("m"), 9, Instant::now())
        .expect("placement")
    {
        Placement::Placed(lease) => assert_eq!(lease.node.key(), "127.0.0.1:3102"),
        Placement::Full => panic!("should have gone to the idle node"),
    }
}

#[test]
fn affinity_sends_a_conversation_back_to_its_node() {
    let mut router = RouterActor::new(cluster(), Strategy::RoundRobin);
    let mut conversation = request("llama3.2");
    conversation.affinity_key = Some(42);
    conversation.follow_affinity = true;
    let first = pick(&mut router, &conversation).expect("node");
    assert_eq!(first.affinity, AffinityOutcome::New);
    let home = first.node.key().to_string();
    drop(first);
    for _ in 0..4 {
        let next = pick(&mut router, &conversation).expect("node");
        assert_eq!(next.affinity, AffinityOutcome::Hit);
        assert_eq!(next.node.key(), home);
    }
    let nodes = router.nodes();
    let home_node = nodes.iter().find(|n| n.key() == home).expect("home");
    home_node.record_failure("connection refused", true);
    let moved = pick(&mut router, &conversation).expect("node");
    assert_eq!(moved.affinity, AffinityOutcome::Miss);
    assert_ne!(moved.node.key(), home);
}

#[test]
fn unknown_model_is_not_found_and_unreachable_model_is_not() {
    let nodes = cluster();
    let mut router = RouterActor::new(nodes.clone(), Strategy::RoundRobin);
    assert_eq!(
        pick(&mut router, &request("mistral")).err(),
        Some(RouteError::ModelNotFound("mistral".into()))
    );
    nodes[2].record_failure("connection refused", true);
    assert_eq!(
        pick(&mut router, &request("llama3.2:1b")).err(),
        Some(RouteError::NoneReachable("llama3.2:1b".into()))
    );
}

#[test]
fn excluded_and_pinned_nodes() {
    let mut router = RouterActor::new(cluster(), Strategy::RoundRobin);
    let mut retry = request("llama3.2");
    retry.exclude.push("127.0.0.1:1001".into());
    for _ in 0..3 {
        assert_eq!(
            pick(&mut router, &retry).expect("node").node.key(),
            "127.0.0.1:1002"
        );
    }
    retry.exclude.push("127.0.0.1:1002".into());
    assert_eq!(
        pick(&mut router, &retry).err(),
        Some(RouteError::NoneReachable("llama3.2".into()))
    );

    let mut pinned = request("llama3.2");
    pinned.node = Some("127.0.0.1:1002".into());
    assert_eq!(
        pick(&mut router, &pinned).expect("node").node.key(),
        "127.0.0.1:1002"
    );
    pinned.node = Some("10.9.9.9:1".into());
    assert_eq!(
        pick(&mut router, &pinned).err(),
        Some(RouteError::UnknownNode("10.9.9.9:1".into()))
    );
    assert_eq!(
        RouterActor::new(vec![], Strategy::RoundRobin)
            .place(&retry, 0, Instant::now())
            .err(),
        Some(RouteError::NoNodes)
    );
}

#[test]
fn an_open_breaker_keeps_traffic_away() {
    let nodes = cluster();
    for _ in 0..3 {
        nodes[0].record_failure("HTTP 500", false);
    }
    let mut router = RouterActor::new(nodes, Strategy::RoundRobin);
    let counts = count_picks(&mut router, &request("llama3.2"), 4);
    assert_eq!(counts.get("127.0.0.1:1002"), Some(&4), "{counts:?}");
}

#[test]
fn strategies_parse_from_their_names() {
    assert_eq!(
        "least_loaded".parse::<Strategy>(),
        Ok(Strategy::LeastLoaded)
    );
    assert_eq!("INTELLIGENT".parse::<Strategy>(), Ok(Strategy::Intelligent));
    let err = "fastest".parse::<Strategy>().unwrap_err().to_string();
    assert!(
        err.contains("round_robin, least_loaded, latency_first, fairness, intelligent"),
        "{err}"
    );
}

#[test]
fn full_nodes_queue_requests_by_priority_and_refuse_past_the_bound() {
    System::new().block_on(async {
        let node = NodeHandle::for_tests_with("127.0.0.1:4001", &["m"], &["m"], 1);
        let settings = RouterSettings {
            strategy: Strategy::RoundRobin,
            queue_max: 3,
            queue_timeout: Duration::from_secs(5),
            ..RouterSettings::default()
        };
        let router = RouterActor::with_settings(vec![node.clone()], settings, None).start();
        let holder = router
            .send(request("m"))
            .await
            .expect("alive")
            .expect("placed");

        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for priority in [2u8, 9, 5] {
            let router = router.clone();
            let order = order.clone();
            waiting.push(actix_rt::spawn(async move {
                let mut ask = request("m");
                ask.priority = priority;
                let lease = router
                    .send(ask)
                    .await
                    .expect("alive")
                    .expect("placed eventually");
                order.lock().expect("lock").push(priority);
                actix_rt::time::sleep(Duration::from_millis(20)).await;
                drop(lease);
            }));
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let refused = router.send(request("m")).await.expect("alive");
        assert!(
            matches!(refused, Err(RouteError::QueueFull { .. })),
            "{refused:?}"
        );
        assert_eq!(router.send(GetRouterStats).await.expect("alive").queued, 3);

        drop(holder);
        for task in waiting {
            task.await.expect("task");
        }
        assert_eq!(
            *order.lock().expect("lock"),
            vec![9, 5, 2],
            "highest priority first"
        );
    });
}

#[test]
fn a_request_that_waits_too_long_gets_a_timeout() {
    System::new().block_on(async {
        let node = NodeHandle::for_tests_with("127.0.0.1:4101", &["m"], &["m"], 1);
        let settings = RouterSettings {
            queue_timeout: Duration::from_millis(100),
            ..RouterSettings::default()
        };
        let router = RouterActor::with_settings(vec![node], settings, None).start();
        let _holder = router
            .send(request("m"))
            .await
            .expect("alive")
            .expect("placed");
        let late = router.send(request("m")).await.expect("alive");
        assert!(
            matches!(
                late,
                Err(RouteError::QueueTimeout {
                    retry_after_secs: 5,
                    ..
                })
            ),
            "{late:?}"
        );
        assert_eq!(late.unwrap_err().retry_after(), Some(5));
    });
}
