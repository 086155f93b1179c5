//! A restarted node keeps its modules, names and results; a damaged blob is
//! reported and never executed.

use reqwest::StatusCode;

use crate::common::{TestNode, function};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_modules_names_and_results() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let hash = node.deploy(function("fibonacci"), "fibonacci").await;
    let first = node.get("/api/fibonacci/90").await;
    assert_eq!(first.header("x-nebula-cache"), "miss");
    node.stop().await;

    let node = TestNode::start(dir.path()).await;
    let again = node.get("/api/fibonacci/90").await;
    assert_eq!(again.text(), "2880067194370816120");
    assert_eq!(again.header("x-nebula-cache"), "hit", "the result survived the restart");
    assert_eq!(node.metric("nebula_executions_total").await, 0.0);

    // The module itself also survived: a new input runs (from the compiled-code cache).
    let fresh = node.get(&format!("/api/{}/91", &hash[..12])).await;
    assert_eq!((fresh.text().as_str(), fresh.header("x-nebula-cache")), ("4660046610375530309", "miss"));
    let compiled = std::fs::read_dir(dir.path().join("compiled")).unwrap().count();
    assert_eq!(compiled, 1, "compiled code is cached on disk");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_reported_and_never_executed() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let hash = node.deploy(function("fibonacci"), "fibonacci").await;
    assert_eq!(node.get("/api/fibonacci/10").await.text(), "55");
    node.stop().await;

    // Flip one byte of the stored module, as a failing disk would.
    let blob = dir.path().join("blobs").join(&hash);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&blob, bytes).unwrap();

    let node = TestNode::start(dir.path()).await;
    let answer = node.get("/api/fibonacci/11").await;
    assert_eq!((answer.status, answer.error_kind().as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "module_corrupt"));
    assert_eq!(node.metric("nebula_calls_total{outcome=\"module_corrupt\"}").await, 1.0);
    // A result computed from the verified bytes before the damage is still good.
    assert_eq!(node.get("/api/fibonacci/10").await.text(), "55");
    // The failure was not cached: redeploying the right bytes repairs the module.
    node.deploy(function("fibonacci"), "fibonacci").await;
    node.stop().await;
    let node = TestNode::start(dir.path()).await;
    assert_eq!(node.get("/api/fibonacci/11").await.text(), "89");
    node.stop().await;
}
