//! A node with an admin token: changing what it serves needs the token,
//! calling it does not.

use std::process::Command;

use reqwest::StatusCode;

use crate::common::{TestNode, function, nebula_binary};

const TOKEN: &str = "lab-token-0123456789";

#[tokio::test]
async fn deploys_and_name_changes_need_the_token_calls_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), |config| config.admin_token = Some(TOKEN.into())).await;
    let client = reqwest::Client::new();
    let wasm = function("fibonacci");

    for authorization in [None, Some("Bearer wrong-token-0123456789"), Some(TOKEN)] {
        let mut request = client.post(format!("{}/modules?name=fib", node.url)).body(wasm.clone());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert!(answer.text().await.unwrap().contains("admin token"));
    }
    assert!(node.node.modules().await.is_empty(), "nothing was deployed without the token");

    let deployed =
        client.post(format!("{}/modules?name=fib", node.url)).bearer_auth(TOKEN).body(wasm).send().await.unwrap();
    assert_eq!(deployed.status(), StatusCode::CREATED);
    let module: serde_json::Value = deployed.json().await.unwrap();
    let module = module["module"].as_str().unwrap().to_owned();

    let rename = |token: Option<&'static str>| {
        let mut request = client.put(format!("{}/names/fibo", node.url)).json(&serde_json::json!({ "module": module }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(rename(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rename(Some(TOKEN)).await.unwrap().status(), StatusCode::OK);

    // Calls and reads stay open.
    assert_eq!(node.get("/api/fibo/10").await.text(), "55");
    assert_eq!(node.get("/modules").await.status, 200);
    assert_eq!(node.get("/status").await.json()["deploys_open"], false, "status says deploys need the token");
    node.stop().await;
}

// Multi-threaded: the CLI runs as a blocking child process while the node serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_nebula_token() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), |config| config.admin_token = Some(TOKEN.into())).await;
    let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions/echo.wasm");
    let deploy = |token: Option<&str>| {
        let mut command = Command::new(nebula_binary());
        command.args(["deploy", wasm.to_str().unwrap(), "--node", &node.url]).env_remove("NEBULA_TOKEN");
        if let Some(token) = token {
            command.env("NEBULA_TOKEN", token);
        }
        command.output().unwrap()
    };
    let refused = deploy(None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin token"), "{refused:?}");
    let accepted = deploy(Some(TOKEN));
    assert!(accepted.status.success(), "{accepted:?}");
    node.stop().await;
}

#[test]
fn a_node_refuses_a_short_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "short\n").unwrap();
    let output = Command::new(nebula_binary())
        .args(["node", "--standalone", "--http", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--token-file")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 16 characters"), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_token_says_its_deploys_are_open() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    assert_eq!(node.get("/status").await.json()["deploys_open"], true);
    let dashboard = node.get("/").await.text();
    assert!(dashboard.contains("<b>open</b><span>deploys and names</span>"), "{dashboard}");
    node.stop().await;
}
