//! Functions as web pages (Academemes), the content type a module declares,
//! the headers that keep function output from attacking the node's origin,
//! and the dashboard, all checked over HTTP (the browser tests are in the
//! mesh tests).

use crate::common::{HOSTILE_CAPTION, TestNode, academemes, catalogue_with_hostile_meme, function};

fn assert_no_markup_from(text: &str) {
    for markup in ["<script", "<img", "onerror=alert(1)>"] {
        assert!(!text.contains(markup), "'{markup}' reached the page unescaped:\n{text}");
    }
}

#[tokio::test]
async fn academemes_pages_are_html_declared_by_the_module_and_escape_the_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let module = node.deploy(academemes(&catalogue_with_hostile_meme()), "academemes").await;

    let page = node.get("/api/academemes/42").await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    let csp = page.header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("sandbox"), "{csp}");
    assert!(page.header("cache-control").starts_with("public"));
    let html = page.text();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg") && html.contains("#42 The answer"), "{html}");

    // The hostile meme renders, as text.
    let hostile = node.get("/api/academemes/99").await;
    assert_eq!(hostile.status, 200);
    let html = hostile.text();
    assert_no_markup_from(&html);
    assert!(html.contains("&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;"), "{html}");
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), "{html}");

    // The index links every meme; a seeded pick is the same for the same seed.
    let index = node.get("/api/academemes/index").await.text();
    assert!(index.contains("href=\"/api/academemes/42\"") && index.contains("href=\"/api/academemes/pick-3\""));
    assert_no_markup_from(&index);
    assert_eq!(node.get("/api/academemes").await.text(), index, "no input is the index too");
    let packed = node.get("/api/academemes/catalogue").await.text();
    assert!(packed.contains("Reproducibility") && packed.contains("&lt;script&gt;alert(&#39;title&#39;)"), "{packed}");
    assert_no_markup_from(&packed);
    let pick = node.get("/api/academemes/pick-7").await;
    assert!(pick.text().contains("Picked for seed"));
    let again = node.get("/api/academemes/pick-7").await;
    assert_eq!((again.text(), again.header("x-nebula-cache")), (pick.text(), "hit"));
    assert_eq!(node.get("/api/academemes/12345").await.status, 422, "an unknown id is the function's error");

    // By hash, the answer never changes; the call key is its ETag.
    let by_hash = node.get(&format!("/api/{module}/42")).await;
    assert!(by_hash.header("cache-control").contains("immutable"));
    let etag = by_hash.header("etag").to_owned();
    assert_eq!(etag, format!("\"{}\"", by_hash.header("x-nebula-call-key")));
    let revalidated = reqwest::Client::new()
        .get(format!("{}/api/{module}/42", node.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);

    // Adding a meme is a deploy: the same code, other data, a new module.
    let mut catalogue: serde_json::Value = serde_json::from_slice(&catalogue_with_hostile_meme()).unwrap();
    catalogue["memes"].as_array_mut().unwrap().push(serde_json::json!({
        "id": 100, "template": "drake", "title": "New meme", "captions": ["Recompiling", "Deploying data"]
    }));
    let newer = node.deploy(academemes(&serde_json::to_vec(&catalogue).unwrap()), "academemes").await;
    assert_ne!(newer, module);
    assert!(node.get("/api/academemes/100").await.text().contains("Deploying data"));
    assert_eq!(node.get(&format!("/api/{module}/100")).await.status, 422, "the old module is unchanged");
    node.stop().await;
}

/// Every header but the time taken, in order: what a client sees of an answer.
fn headers_but_time(answer: &crate::common::Answer) -> Vec<(String, String)> {
    let varying = ["x-nebula-micros", "date"];
    let headers = answer.headers.iter().filter(|(name, _)| !varying.contains(&name.as_str()));
    headers.map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned())).collect()
}

#[tokio::test]
async fn repeated_answers_carry_the_headers_of_the_first_hit_by_name_and_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let module = node.deploy(function("echo"), "echo").await;
    let miss = node.get("/api/echo/same").await;
    assert_eq!((miss.header("x-nebula-cache"), miss.header("x-nebula-footprint")), ("miss", "here"));

    for path in ["/api/echo/same".to_owned(), format!("/api/{module}/same")] {
        // The first hit builds its headers, the next ones reuse them.
        let first = node.get(&path).await;
        let again = node.get(&path).await;
        assert_eq!(first.status, 200);
        assert_eq!(again.status, 200);
        assert_eq!((first.header("x-nebula-cache"), first.header("x-nebula-footprint")), ("hit", "cached"));
        assert_eq!(headers_but_time(&first), headers_but_time(&again), "{path}");
        assert_eq!(again.text(), "same");
        for same in ["x-nebula-call-key", "etag", "x-nebula-module", "x-nebula-executed-by", "content-type"] {
            assert_eq!(again.header(same), miss.header(same), "{same} of {path}");
        }
        assert!(!again.header("x-nebula-micros").is_empty());
    }
    // Served by name and by hash, the same answer is kept apart: only one may be kept forever.
    assert_eq!(node.get("/api/echo/same").await.header("cache-control"), "public, max-age=5");
    assert!(node.get(&format!("/api/{module}/same")).await.header("cache-control").contains("immutable"));

    let etag = miss.header("etag");
    for (tags, status) in [(etag.to_owned(), 304), (format!("\"other\", {etag}"), 304), ("\"other\"".to_owned(), 200)] {
        let response = reqwest::Client::new()
            .get(format!("{}/api/echo/same", node.url))
            .header("if-none-match", &tags)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "if-none-match: {tags}");
        assert_eq!(response.headers()["etag"], etag);
    }
    node.stop().await;
}

#[tokio::test]
async fn the_hot_route_and_the_router_answer_alike() {
    // Plain `GET /api/{module}/{input}` skips axum's router; an escaped byte
    // or a query takes the router. A client must not see the difference.
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    node.deploy(function("echo"), "echo").await;
    let first = node.get("/api/echo/same").await;
    assert_eq!(first.header("x-nebula-cache"), "miss");
    let hot = node.get("/api/echo/same").await;
    for routed in ["/api/echo/%73ame", "/api/echo/same?fuel=100000000"] {
        let answer = node.get(routed).await;
        assert_eq!((answer.status, answer.text()), (hot.status, hot.text()), "{routed}");
        assert_eq!(headers_but_time(&answer), headers_but_time(&hot), "{routed}");
    }
    // Errors too: an unknown function, over the hot route and the router.
    let (hot, routed) = (node.get("/api/nope/x").await, node.get("/api/nope/%78").await);
    assert_eq!(hot.status, 404);
    assert_eq!((hot.status, hot.text()), (routed.status, routed.text()));
    assert_eq!(headers_but_time(&hot), headers_but_time(&routed));
    // And what only the router knows: no such route, HEAD, another method.
    assert_eq!(node.get("/api/echo/same/more").await.status, 404);
    let client = reqwest::Client::new();
    let head = client.head(format!("{}/api/echo/same", node.url)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-nebula-cache"], "hit");
    let delete = client.delete(format!("{}/api/echo/same", node.url)).send().await.unwrap();
    assert_eq!(delete.status(), 405);
    node.stop().await;
}

#[tokio::test]
async fn output_never_chooses_its_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    node.deploy(function("echo"), "echo").await;
    let answer = node.call("echo", b"<!DOCTYPE html><script>alert(1)</script>", "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(answer.header("x-content-type-options"), "nosniff");
    assert!(answer.header("content-security-policy").contains("sandbox"));
    // Academemes with no catalogue packed says so, as an error.
    node.deploy(function("academemes"), "unpacked").await;
    let unpacked = node.get("/api/unpacked/1").await;
    assert_eq!(unpacked.status, 422);
    assert!(unpacked.text().contains("no catalogue packed"), "{}", unpacked.text());
    node.stop().await;
}

#[tokio::test]
async fn a_module_may_declare_only_a_listed_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let module = |content_type: &str| {
        wat::parse_str(format!(
            "(module (@custom \"nebula:content-type\" \"{content_type}\") (memory (export \"memory\") 1) \
             (func (export \"_start\")))"
        ))
        .unwrap()
    };
    let (status, body) = node.deploy_raw(module("application/javascript"), Some("js")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_module");
    assert!(body["message"].as_str().unwrap().contains("application/javascript"), "{body}");
    let id = node.deploy(module("application/json"), "json").await;
    let answer = node.get("/api/json/x").await;
    assert_eq!(answer.header("content-type"), "application/json");
    let listed = node.get(&format!("/modules/{id}")).await;
    assert_eq!(listed.status, 200);
    node.stop().await;
}

#[tokio::test]
async fn the_dashboard_shows_the_node_and_escapes_what_callers_sent() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    node.deploy(function("echo"), "echo").await;
    node.deploy(function("fibonacci"), "fibonacci").await;
    for _ in 0..3 {
        node.get("/api/fibonacci/20").await;
    }
    node.call("echo", HOSTILE_CAPTION.as_bytes(), "").await;
    let missing = node.get("/api/%3Cscript%3Ealert(1)%3C%2Fscript%3E/x").await;
    assert_eq!(missing.status, 404);

    let page = node.get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let csp = page.header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    let html = page.text();
    assert_no_markup_from(&html);
    assert!(html.contains("http-equiv=\"refresh\""));
    assert!(html.contains(node.node.id()));
    for section in [
        "id=\"calls-chart\"",
        "id=\"cache-chart\"",
        "id=\"peers\"",
        "id=\"modules\"",
        "id=\"footprint\"",
        "id=\"recent\"",
    ] {
        assert!(html.contains(section), "no {section}");
    }
    // The footprint of what ran here: fibonacci executed once, its energy labelled.
    let footprint = &html[html.find("id=\"footprint\"").unwrap()..html.find("id=\"recent\"").unwrap()];
    assert!(footprint.contains("fibonacci") && footprint.contains("µWh"), "{footprint}");
    assert!(footprint.contains("estimated") || footprint.contains("measured"), "{footprint}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the hostile reference is shown, escaped");
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), "the hostile input is shown, escaped");
    assert!(html.contains("fibonacci") && html.contains("echo"));
    // 4 calls of fibonacci-20 and echo reached a module; 2 of them were hits.
    assert!(html.contains("2 hits"), "{html}");
    assert!(node.get("/?refresh=0").await.text().contains("not refreshing"));
    assert!(node.get("/help").await.text().contains("/api/{module}"));
    node.stop().await;
}

/// The PNG's width and height, from its IHDR chunk (which must come first).
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memeify_draws_a_real_png_and_academemes_links_to_it() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = TestNode::start(dir_a.path()).await;
    node.deploy(function("memeify"), "memeify").await;
    node.deploy(academemes(&catalogue_with_hostile_meme()), "academemes").await;

    // Academemes links each meme to memeify; the link works.
    let page = node.get("/api/academemes/5").await.text();
    let link = page.split("id=\"png\" href=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a PNG link");
    assert_eq!(link, "/api/memeify/fine%20This%20is%20fine.%7CThesis%20due%20in%20two%20days");
    let png = node.get(link).await;
    assert_eq!(png.status, 200, "{}", png.text());
    assert_eq!(png.header("content-type"), "image/png");
    assert_eq!(png.header("x-content-type-options"), "nosniff");
    assert!(png.header("content-security-policy").contains("sandbox"));
    assert_eq!(png_size(&png.body), (600, 400));
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("memeify-fine.png"), &png.body).unwrap();

    // Captions change the picture; the same input is the same bytes, on any node.
    let other = node.get("/api/memeify/fine%20Tests%20pass%7CCI%20is%20red").await;
    assert_eq!(png_size(&other.body), (600, 400));
    assert_ne!(other.body, png.body);
    let fresh = TestNode::start(dir_b.path()).await;
    fresh.deploy(function("memeify"), "memeify").await;
    let elsewhere = fresh.get("/api/memeify/fine%20Tests%20pass%7CCI%20is%20red").await;
    assert_eq!(elsewhere.header("x-nebula-cache"), "miss");
    assert_eq!(elsewhere.body, other.body, "a fresh node draws the same bytes");

    // A template it does not know is the function's clear error.
    let unknown = node.get("/api/memeify/nosuch%20a%7Cb").await;
    assert_eq!((unknown.status.as_u16(), unknown.error_kind().as_str()), (422, "non_zero_exit"));
    assert!(unknown.text().contains("templates: fine"), "{}", unknown.text());
    fresh.stop().await;
    node.stop().await;
}
