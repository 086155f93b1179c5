//! Identical concurrent calls execute once; hostile calls do not stop the
//! node from serving everyone else.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;

use crate::common::{TestNode, fixture, function};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_calls_execute_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    node.deploy(function("fibonacci-recursive"), "fib").await;

    let answers = join_all((0..8).map(|_| node.call("fib", b"27", ""))).await;
    for answer in &answers {
        assert_eq!(answer.text(), "196418");
    }
    assert_eq!(node.metric("nebula_executions_total").await, 1.0, "one execution for eight identical calls");
    let misses =
        answers.iter().filter(|a| a.header("x-nebula-cache") == "miss" && a.header("x-nebula-joined").is_empty());
    assert_eq!(misses.count(), 1, "exactly one caller started the execution");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_calls_do_not_stop_other_calls() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), |config| config.concurrency = 4).await;
    node.deploy(fixture("endless-loop"), "loop").await;
    node.deploy(fixture("memory-bomb"), "bomb").await;
    node.deploy(function("fibonacci"), "fibonacci").await;

    // Two endless loops bounded only by a 4 s deadline, and a memory bomb.
    let started = Instant::now();
    let hostile = tokio::spawn({
        let url = node.url.clone();
        async move {
            let client = reqwest::Client::new();
            let slow = |input: &'static str| {
                client.post(format!("{url}/api/loop?fuel=1000000000000&deadline_ms=4000")).body(input).send()
            };
            let bomb = client.post(format!("{url}/api/bomb")).send();
            let (a, b, c) = tokio::join!(slow("a"), slow("b"), bomb);
            [a.unwrap().status(), b.unwrap().status(), c.unwrap().status()]
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Uncached calls keep being answered while the loops spin.
    for n in 0..20 {
        let answer = node.call("fibonacci", n.to_string().as_bytes(), "").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    assert_eq!(node.get("/health").await.status, StatusCode::OK);
    let normal_done = started.elapsed();
    assert!(!hostile.is_finished(), "the hostile calls were still running while the normal ones were served");

    let statuses = hostile.await.unwrap();
    assert_eq!(statuses[0], StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(statuses[1], StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(statuses[2], StatusCode::UNPROCESSABLE_ENTITY);
    assert!(started.elapsed() > normal_done);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_one_module_cannot_hold_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), |config| {
        config.concurrency = 2;
        // Quick calls count as recent for the whole test, and fibonacci as
        // quick, however slow the machine.
        config.quick_traffic_window = Duration::from_secs(600);
        config.slow_hold = Duration::from_secs(1);
    })
    .await;
    node.deploy(fixture("endless-loop"), "loop").await;
    node.deploy(function("fibonacci"), "fibonacci").await;
    // Its first run teaches the node that fibonacci is quick; the second is quick traffic.
    for input in [b"10", b"11"] {
        assert_eq!(node.call("fibonacci", input, "").await.status, StatusCode::OK);
    }

    // Three endless loops for two slots, each bounded by a 3 s deadline.
    let hostile = tokio::spawn({
        let url = node.url.clone();
        async move {
            let client = reqwest::Client::new();
            let spin = |input: &'static str| {
                client.post(format!("{url}/api/loop?fuel=1000000000000&deadline_ms=3000")).body(input).send()
            };
            let (a, b, c) = tokio::join!(spin("a"), spin("b"), spin("c"));
            [a.unwrap().status(), b.unwrap().status(), c.unwrap().status()]
        }
    });
    // The loops' module was never run: it counts as slow, so one loop runs
    // and two wait, with the second slot kept free for quick calls.
    let waited = Instant::now();
    loop {
        let status = node.get("/status").await.json();
        if status["calls_in_flight"] == 3 && status["calls_queued"] == 2 {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(30), "the loops never queued: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 0..5 {
        let answer = node.call("fibonacci", format!("{}", 20 + n).as_bytes(), "").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    assert!(!hostile.is_finished(), "the quick calls did not wait for a loop's deadline");
    assert_eq!(hostile.await.unwrap(), [StatusCode::GATEWAY_TIMEOUT; 3]);
    node.stop().await;
}
