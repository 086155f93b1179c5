//! Big modules: uploads stream to disk within the node's limit, every
//! refusal is a JSON error that leaves nothing behind, and compiling happens
//! after the deploy is answered, while calls wait for it.

use std::path::Path;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TestNode, function, padded};

fn leftover_temp_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("blobs"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().starts_with(".tmp-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_of_100_mib_streams_in_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let wasm = padded(function("echo"), 100 << 20);
    let (expected, size) = (blake3::hash(&wasm).to_hex().to_string(), wasm.len() as u64);
    let (status, body) = node.deploy_raw(wasm, Some("big-echo")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((body["module"].as_str().unwrap(), body["size"].as_u64().unwrap()), (expected.as_str(), size));
    assert_eq!(node.call("big-echo", b"still an echo", "").await.text(), "still an echo");
    assert_eq!(leftover_temp_files(dir.path()), 0);
    node.stop().await;
}

/// A deploy sent in chunks without a length, as a stream would be.
async fn chunked_deploy(url: &str, total: usize) -> (u16, serde_json::Value) {
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head =
        format!("POST /modules HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut sent = 0;
    while sent < total {
        let piece = &chunk[..(total - sent).min(chunk.len())];
        let framed = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        // The node may stop reading once it has refused: that is its right.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
        sent += piece.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    // The body itself may be chunked: the JSON object is what lies between its braces.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    (status, serde_json::from_str(json).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_limit_are_refused_as_json_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), |config| config.max_module_bytes = 1 << 20).await;

    // Announced too big: refused before reading.
    let (status, body) = node.deploy_raw(padded(function("echo"), 3 << 20), None).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (StatusCode::PAYLOAD_TOO_LARGE, "module_too_large"));
    assert!(body["message"].as_str().unwrap().contains("1048576"), "{body}");
    // Streamed without a length: refused once it passes the limit.
    let (status, body) = chunked_deploy(&node.url, 3 << 20).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (413, "module_too_large"));
    // Within the limit, a chunked upload is a deploy like any other.
    let (status, body) = chunked_deploy(&node.url, 1000).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (400, "invalid_module"), "zeros are not wasm");
    assert_eq!(leftover_temp_files(dir.path()), 0, "nothing of a refused upload stays");
    assert!(node.get("/modules").await.json().as_array().unwrap().is_empty());

    // A call's body over the input limit, and a malformed query: JSON too.
    let input = vec![b'x'; (node.node.config().max_limits.input_bytes + 1) as usize];
    let over = node.call("echo", &input, "").await;
    assert_eq!((over.status, over.error_kind().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "input_too_large"));
    let malformed = node.get("/api/echo/1?fuel=lots").await;
    assert_eq!((malformed.status, malformed.error_kind().as_str()), (StatusCode::BAD_REQUEST, "bad_request"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_module_compiles_after_its_deploy_is_answered_and_calls_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let generated = dir.path().join("code.wasm");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-big-module");
    let made = std::process::Command::new(script).arg(&generated).arg("12").output().unwrap();
    assert!(made.status.success(), "{made:?}");
    let wasm = std::fs::read(&generated).unwrap();
    assert!(wasm.len() > nebula_node::runtime::BIG_MODULE_BYTES as usize);

    let module = node.deploy(wasm, "big").await;
    // Answered with the bytes stored: twelve MiB of code take seconds to compile.
    let listed = node.get(&format!("/modules/{module}")).await.json();
    assert_eq!(listed["state"], "compiling", "{listed}");
    assert_eq!(node.get("/status").await.json()["compiling"], 1);
    // A small module deployed meanwhile is not held up behind it.
    node.deploy(function("echo"), "echo").await;
    assert_eq!(node.call("echo", b"not waiting", "").await.text(), "not waiting");
    // A call to the big one waits for its compile, then runs.
    let answer = node.call("big", b"", "").await;
    assert_eq!((answer.status, answer.text().as_str()), (StatusCode::OK, "big module ok\n"));
    assert_eq!(node.get(&format!("/modules/{module}")).await.json()["state"], "ready");
    assert_eq!(node.get("/status").await.json()["compiling"], 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_unloaded_for_the_byte_budget_are_reloaded_from_the_compiled_cache() {
    let dir = tempfile::tempdir().unwrap();
    // A budget smaller than any module: loading one unloads every other.
    let node = TestNode::start_with(dir.path(), |config| config.runtime.loaded_module_bytes = 1).await;
    node.deploy(function("echo"), "echo").await;
    node.deploy(function("fibonacci"), "fibonacci").await;
    for round in 0..3 {
        let echo = node.call("echo", format!("round {round}").as_bytes(), "").await;
        assert_eq!(echo.text(), format!("round {round}"));
        assert_eq!(
            node.call("fibonacci", format!("{}", 10 + round).as_bytes(), "").await.text(),
            ["55", "89", "144"][round]
        );
    }
    // Only the last one loaded stays in memory.
    let code_bytes = |extension: &str| -> Vec<u64> {
        std::fs::read_dir(dir.path().join("compiled"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().unwrap() == extension)
            .map(|path| std::fs::metadata(path).unwrap().len())
            .collect()
    };
    let sizes = code_bytes("code");
    assert_eq!(sizes.len(), 2);
    let loaded = node.get("/status").await.json()["loaded_code_bytes"].as_u64().unwrap();
    assert!(sizes.contains(&loaded), "{loaded} is one module's code, of {sizes:?}");
    node.stop().await;
}
