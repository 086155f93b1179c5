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
    let compiled = std::fs::read_dir(dir.path().join("compiled")).unwrap();
    let code = compiled.filter(|entry| entry.as_ref().unwrap().path().extension().unwrap() == "code").count();
    assert_eq!(code, 1, "compiled code is cached on disk");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_entry_whose_blob_is_gone_is_forgotten_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let hash = node.deploy(function("fibonacci"), "fibonacci").await;
    node.stop().await;

    // Lost by hand (the node itself writes a blob before its index entry).
    std::fs::remove_file(dir.path().join("blobs").join(&hash)).unwrap();
    let report = nebula_node::store::check_data_dir(dir.path());
    assert_eq!(report.problems.len(), 1, "{}", report.render());
    assert_eq!(report.problems[0].kind, "missing_blob");

    let node = TestNode::start(dir.path()).await;
    assert!(node.node.modules().await.is_empty(), "a module without its bytes is not offered");
    let answer = node.get(&format!("/api/{hash}/10")).await;
    assert_eq!((answer.status, answer.error_kind().as_str()), (StatusCode::NOT_FOUND, "module_not_found"));
    let by_name = node.get("/api/fibonacci/10").await;
    assert_eq!(by_name.status, StatusCode::NOT_FOUND, "the name stays, its module is gone");
    node.stop().await;
    // The node dropped the dangling entry, so the directory checks clean again.
    let report = nebula_node::store::check_data_dir(dir.path());
    assert!(report.is_consistent(), "{}", report.render());

    // Deploying the bytes again brings it back.
    let node = TestNode::start(dir.path()).await;
    node.deploy(function("fibonacci"), "fibonacci").await;
    assert_eq!(node.get("/api/fibonacci/10").await.text(), "55");
    node.stop().await;
}
