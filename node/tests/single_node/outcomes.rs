//! Every outcome of a call, over HTTP, with its status code and error kind.

use reqwest::StatusCode;

use crate::common::{TestNode, fixture, function};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thesis_functions_answer_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let cases: &[(&str, &str, &str)] = &[
        ("add", "3 4", "7"),
        ("add", "123456789012345678901234567890 1", "123456789012345678901234567891"),
        ("exponential", "2 100", "1267650600228229401496703205376"),
        ("factorial", "20", "2432902008176640000"),
        ("factorial", "25", "15511210043330985984000000"),
        ("fibonacci", "10", "55"),
        ("fibonacci", "100", "354224848179261915075"),
        ("fibonacci-recursive", "20", "6765"),
        ("prime-number", "6", "13"),
        ("prime-number", "1000", "7919"),
        ("echo", "bytes in, bytes out", "bytes in, bytes out"),
        ("hash", "abc", "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"),
    ];
    for (name, _, _) in cases {
        node.deploy(function(name), name).await;
    }
    for (name, input, expected) in cases {
        let answer = node.call(name, input.as_bytes(), "").await;
        assert_eq!(answer.status, StatusCode::OK, "{name}({input}): {}", answer.text());
        assert_eq!(answer.text(), *expected, "{name}({input})");
    }
    // Monte Carlo estimates are pure (seeded from the input) and roughly right.
    for (name, input, truth) in
        [("monte-carlo-pi", "200000", std::f64::consts::PI), ("monte-carlo-e", "200000", std::f64::consts::E)]
    {
        node.deploy(function(name), name).await;
        let estimate: f64 = node.call(name, input.as_bytes(), "").await.text().parse().unwrap();
        assert!((estimate - truth).abs() < 0.02, "{name} gave {estimate}");
    }
    node.deploy(function("birthday"), "birthday").await;
    let probability: f64 = node.call("birthday", b"23 20000", "").await.text().parse().unwrap();
    assert!((probability - 0.507).abs() < 0.02, "birthday gave {probability}");
    node.deploy(function("transform"), "transform").await;
    let sorted = node.call("transform", br#"{"b":1,"a":2}"#, "").await.text();
    assert!(sorted.find("\"a\"").unwrap() < sorted.find("\"b\"").unwrap(), "{sorted}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_to_a_function_is_a_clear_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    node.deploy(function("fibonacci-recursive"), "fibonacci-recursive").await;
    let answer = node.call("fibonacci-recursive", b"94", "").await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = answer.json();
    assert_eq!(body["error"], "non_zero_exit");
    assert_eq!(body["detail"]["NonZeroExit"]["code"], 2);
    assert!(body["message"].as_str().unwrap().contains("overflows 64 bits"), "{body}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_is_its_own_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    for name in ["exit-code", "panic", "endless-loop", "memory-bomb", "huge-output", "deep-recursion", "read-files-env"]
    {
        node.deploy(fixture(name), name).await;
    }

    let exit = node.call("exit-code", b"", "").await;
    assert_eq!((exit.status, exit.error_kind().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "non_zero_exit"));
    assert!(exit.text().contains("something went wrong on purpose"));

    let trap = node.call("panic", b"boom", "").await;
    assert_eq!((trap.status, trap.error_kind().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "trap"));
    assert!(trap.text().contains("refusing input"), "the panic message reaches the caller: {}", trap.text());

    let fuel = node.call("endless-loop", b"", "fuel=1000000").await;
    assert_eq!((fuel.status, fuel.error_kind().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "out_of_fuel"));
    assert_eq!(fuel.header("x-nebula-fuel"), "1000000");

    let deadline = node.call("endless-loop", b"", "fuel=100000000000&deadline_ms=200").await;
    assert_eq!((deadline.status, deadline.error_kind().as_str()), (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"));

    let memory = node.call("memory-bomb", b"", "memory_bytes=33554432").await;
    assert_eq!((memory.status, memory.error_kind().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"));
    assert_eq!(memory.json()["detail"]["MemoryLimit"]["limit_bytes"], 33554432);

    let output = node.call("huge-output", b"", "output_bytes=100000").await;
    assert_eq!((output.status, output.error_kind().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "output_too_large"));

    let stack = node.call("deep-recursion", b"", "").await;
    assert_eq!(stack.error_kind(), "trap");
    assert!(stack.text().contains("call stack exhausted"), "{}", stack.text());

    // The purity profile: no files, no directories, no environment, and one
    // fixed argument 0.
    let sandbox = node.call("read-files-env", b"", "").await;
    assert_eq!(sandbox.status, StatusCode::OK);
    let seen = sandbox.text();
    assert!(seen.starts_with("file=denied") && seen.contains("cwd=denied"), "{seen}");
    assert!(seen.ends_with("env=[] args=[\"main\"]"), "{seen}");

    // None of the limit hits was cached: asking with more room gives a new answer.
    let roomy = node.call("huge-output", b"", "output_bytes=100000&deadline_ms=200").await;
    assert_eq!(roomy.header("x-nebula-cache"), "miss");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_beyond_the_limit_is_rejected_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), |config| config.default_limits.input_bytes = 1024).await;
    node.deploy(function("echo"), "echo").await;
    let answer = node.call("echo", &[b'x'; 1025], "").await;
    assert_eq!((answer.status, answer.error_kind().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "input_too_large"));
    assert_eq!(node.metric("nebula_executions_total").await, 0.0);
    let fits = node.call("echo", &[b'x'; 1024], "").await;
    assert_eq!(fits.body.len(), 1024);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_what_is_not_a_pure_wasi_command() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;

    let (status, body) = node.deploy_raw(fixture("not-wasm"), None).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "invalid_module"));
    assert!(body["message"].as_str().unwrap().contains("not a WebAssembly binary"), "{body}");

    let (status, body) = node.deploy_raw(fixture("forbidden-import"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("env::open_socket"), "names the import: {body}");

    // Valid wasm, but a library: no _start.
    let library = wat::parse_str(r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0))"#).unwrap();
    let (status, body) = node.deploy_raw(library, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("_start"), "{body}");

    // A WASI import name that WASI preview 1 does not have.
    let bogus = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "launch_missiles" (func)) (func (export "_start")))"#,
    )
    .unwrap();
    let (status, body) = node.deploy_raw(bogus, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("launch_missiles"), "{body}");

    // Truncated wasm.
    let mut truncated = function("echo");
    truncated.truncate(truncated.len() / 2);
    assert_eq!(node.deploy_raw(truncated, None).await.0, StatusCode::BAD_REQUEST);

    let (status, body) = node.deploy_raw(function("echo"), Some("Bad Name")).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "invalid_name"));

    let modules = node.get("/modules").await.json();
    assert_eq!(modules.as_array().unwrap().len(), 0, "nothing rejected was stored");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_are_found_by_name_hash_or_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let hash = node.deploy(function("fibonacci"), "fibonacci").await;

    for reference in [hash.as_str(), &hash[..8], "fibonacci"] {
        let answer = node.get(&format!("/api/{reference}/10")).await;
        assert_eq!(answer.text(), "55", "{reference}");
        assert_eq!(answer.header("x-nebula-module"), hash);
    }
    let unknown = node.get("/api/nosuchname/1").await;
    assert_eq!((unknown.status, unknown.error_kind().as_str()), (StatusCode::NOT_FOUND, "name_not_found"));
    let missing = node.get(&format!("/api/{}/1", "0".repeat(64))).await;
    assert_eq!((missing.status, missing.error_kind().as_str()), (StatusCode::NOT_FOUND, "module_not_found"));

    // Re-pointing a name takes effect at once.
    let echo = node.deploy(function("echo"), "echo").await;
    let response = reqwest::Client::new()
        .put(format!("{}/names/fibonacci", node.url))
        .json(&serde_json::json!({ "module": echo }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(node.get("/api/fibonacci/10").await.text(), "10", "now points at echo");

    let listed = node.get(&format!("/modules/{}", &echo[..10])).await.json();
    assert_eq!(listed["names"], serde_json::json!(["echo", "fibonacci"]));
    node.stop().await;
}
