//! The same call on two fresh nodes gives byte-identical output, even for
//! functions that read the clock and random bytes.

use crate::common::{TestNode, function};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_nodes_give_byte_identical_answers() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestNode::start(dir_a.path()).await;
    let b = TestNode::start(dir_b.path()).await;
    let calls: &[(&str, &[u8])] = &[
        ("clock-random", b"hello world"),
        ("monte-carlo-pi", b"100000"),
        ("birthday", b"30 5000"),
        ("transform", b"some text"),
    ];
    for (name, _) in calls {
        assert_eq!(a.deploy(function(name), name).await, b.deploy(function(name), name).await);
    }
    for (name, input) in calls {
        let (on_a, on_b) = (a.call(name, input, "").await, b.call(name, input, "").await);
        assert_eq!(on_a.header("x-nebula-cache"), "miss");
        assert_eq!(on_b.header("x-nebula-cache"), "miss");
        assert_eq!(on_a.body, on_b.body, "{name} differs between nodes");
        assert_eq!(on_a.header("x-nebula-fuel"), on_b.header("x-nebula-fuel"), "fuel is deterministic too");
    }
    // The clock is frozen and randomness depends on the input.
    let seen = a.call("clock-random", b"hello world", "").await.text();
    assert!(seen.starts_with("wall=1000000000000000000 elapsed=0ns"), "{seen}");
    let other_input = a.call("clock-random", b"hello there", "").await.text();
    let random = |text: &str| text.rsplit("random=").next().unwrap().to_owned();
    assert_ne!(random(&seen), random(&other_input));
    a.stop().await;
    b.stop().await;
}
