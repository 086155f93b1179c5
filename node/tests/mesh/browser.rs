//! The web pages in a real browser: Debian's headless Chromium opens an
//! Academemes page and the dashboard on a node answering from its cache
//! (the answer came over the mesh), checks what it rendered, and keeps
//! screenshots under target/browser-artifacts/.
//!
//! scripts/test installs Chromium when it is missing. If it cannot be had,
//! this test says so loudly and passes, unless NEBULA_REQUIRE_BROWSER is set
//! (scripts/test sets it once Chromium is installed), then it fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{HOSTILE_CAPTION, academemes, catalogue_with_hostile_meme, function};
use crate::harness::{Mesh, eventually};

fn chromium() -> Option<PathBuf> {
    let candidates = ["chromium", "chromium-browser", "google-chrome"];
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| candidates.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Browser {
    binary: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    async fn run(&self, args: &[&str], url: &str) -> String {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .args(["--hide-scrollbars", "--mute-audio", "--disable-extensions", "--disable-background-networking"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(90), command.output())
            .await
            .unwrap_or_else(|_| panic!("chromium took over 90 s on {url}"))
            .expect("chromium runs");
        assert!(output.status.success(), "chromium failed on {url}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The DOM after the page loaded (what the browser made of the HTML).
    async fn dom(&self, url: &str) -> String {
        self.run(&["--dump-dom"], url).await
    }

    async fn screenshot(&self, url: &str, file: &str, height: u32) -> PathBuf {
        let path = artifacts_dir().join(file);
        let _ = std::fs::remove_file(&path);
        let window = format!("--window-size=1280,{height}");
        self.run(&[&format!("--screenshot={}", path.display()), &window], url).await;
        let size = std::fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is {size} bytes: not a real screenshot", path.display());
        eprintln!("screenshot: {}", path.display());
        path
    }
}

/// No element a hostile string could have made: only text.
fn assert_nothing_injected(dom: &str) {
    for element in ["<script", "<img", "onerror=\""] {
        assert!(!dom.contains(element), "the DOM holds '{element}':\n{dom}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_academemes_and_the_dashboard_from_cached_answers() {
    let Some(binary) = chromium() else {
        let banner = "!".repeat(78);
        eprintln!("\n{banner}\n!! BROWSER TEST SKIPPED: Chromium is not installed.");
        eprintln!(
            "!! scripts/test installs it (apt-get install chromium); run that, or install it by hand.\n{banner}\n"
        );
        assert!(
            std::env::var_os("NEBULA_REQUIRE_BROWSER").is_none(),
            "NEBULA_REQUIRE_BROWSER is set but Chromium is missing"
        );
        return;
    };
    let browser = Browser { binary, profile: tempfile::tempdir().unwrap() };
    let mesh = Mesh::start(2, |_, _| {}).await;
    let (a, b) = (&mesh.nodes[0], &mesh.nodes[1]);

    let module = a.deploy(academemes(&catalogue_with_hostile_meme()), "academemes").await;
    a.deploy(function("echo"), "echo").await;
    eventually("B holds the modules and the name", Duration::from_secs(20), || async {
        b.node.modules().await.len() == 2 && b.node.resolve("academemes").is_ok_and(|m| m.to_hex() == module)
    })
    .await;

    // A is asked for the pages; each runs at its key's best owner, but on a
    // busy machine A may run it too, or instead: when the owner keeps it
    // waiting (`Core::lose_patience`) or answered slowly before
    // (`core/slow_owners.rs`). The answer names whoever finished first; the
    // runner hands it to the other node (both own every key). When both
    // ran a page, B keeps its own run: the same bytes, named after B.
    let module_id: nebula_protocol::ModuleId = module.parse().unwrap();
    let mut run_by = std::collections::BTreeMap::new();
    let mut bodies = std::collections::BTreeMap::new();
    let mut owned_by_b = 0;
    for page in ["index", "42", "99"] {
        let key = nebula_protocol::CallKey::new(&module_id, page.as_bytes());
        owned_by_b += u64::from(a.node.owners(&key).await.remove(0) == b.node.id());
        let answer = a.get(&format!("/api/academemes/{page}")).await;
        assert_eq!((answer.status.as_u16(), answer.header("x-nebula-cache")), (200, "miss"), "{page}");
        let runner = answer.header("x-nebula-executed-by").to_string();
        assert!([a.node.id(), b.node.id()].contains(&runner.as_str()), "{page} ran at {runner}");
        run_by.insert(page, runner);
        bodies.insert(page, answer.body.clone());
    }
    eventually("B has the meme pages in its cache", Duration::from_secs(20), || async {
        ["index", "42", "99"].iter().all(|page| b.node.is_cached("academemes", page.as_bytes()))
    })
    .await;
    let index = b.get("/api/academemes/index").await;
    assert_eq!((index.status.as_u16(), &index.body), (200, &bodies["index"]), "the same bytes at both nodes");
    let named_by_b = index.header("x-nebula-executed-by");
    assert!(named_by_b == run_by["index"] || named_by_b == b.node.id(), "index named after {named_by_b}");
    assert!(index.body.len() > 16 << 10, "the index is a big answer");
    let on_b = b.get("/api/academemes/42").await;
    assert_eq!(on_b.header("x-nebula-node"), b.node.id());
    assert_eq!(on_b.body, bodies["42"], "the same bytes at both nodes");
    let named_by_b = on_b.header("x-nebula-executed-by");
    assert!(named_by_b == run_by["42"] || named_by_b == b.node.id(), "42 named after {named_by_b}");
    assert_eq!(on_b.header("x-nebula-cache"), "hit");
    assert_eq!(on_b.header("content-type"), "text/html; charset=utf-8", "B knows the declared type");

    // The meme page, in the browser, from B.
    let page_url = format!("{}/api/academemes/42", b.url);
    let dom = browser.dom(&page_url).await;
    assert!(dom.contains("#42 The answer"), "{dom}");
    assert!(dom.contains("<svg") && dom.contains("<tspan"), "the meme is drawn as inline SVG");
    assert!(dom.contains("Asking the reviewers"));
    assert_nothing_injected(&dom);
    browser.screenshot(&page_url, "academemes-42-on-node-b.png", 1100).await;
    browser.screenshot(&format!("{}/api/academemes/index", b.url), "academemes-index-on-node-b.png", 1600).await;

    // The meme whose catalogue entry tries to inject markup: text, not elements.
    let hostile_url = format!("{}/api/academemes/99", b.url);
    let dom = browser.dom(&hostile_url).await;
    assert_nothing_injected(&dom);
    assert!(dom.contains("&lt;script&gt;alert('title')&lt;/script&gt;"), "{dom}");
    assert!(dom.contains("\"&gt;&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    browser.screenshot(&hostile_url, "academemes-injection-attempt.png", 1100).await;

    // B ran every page whose answer names it, and beyond those at most the
    // other pages it owns, each once, whatever the browser fetched.
    let counters = b.node.activity().modules.get(&module_id).copied().unwrap_or_default();
    let run_at_b = run_by.values().filter(|runner| *runner == b.node.id()).count() as u64;
    let ran = counters.executions;
    assert!(
        (run_at_b..=owned_by_b).contains(&ran),
        "B ran {ran} pages: answers name it for {run_at_b}, it owns {owned_by_b} ({counters:?}, {run_by:?})"
    );
    assert!(counters.hits >= 3, "{counters:?}");

    // Callers try to inject markup into B's dashboard: a reference and an input.
    let missing =
        b.get("/api/%3Cscript%3Ealert(1)%3C%2Fscript%3E/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E").await;
    assert_eq!(missing.status, 404);
    assert_eq!(b.call("echo", HOSTILE_CAPTION.as_bytes(), "").await.status, 200);
    eventually("B has pinged A", Duration::from_secs(30), || async {
        b.node.peers().await.iter().any(|peer| peer.connected && peer.rtt_ms.is_some())
    })
    .await;

    let dashboard_url = format!("{}/", b.url);
    let dom = browser.dom(&dashboard_url).await;
    assert_nothing_injected(&dom);
    assert!(dom.contains(b.node.id()), "the dashboard names its node");
    assert!(dom.contains(a.node.id()), "the dashboard lists the peer");
    assert!(dom.contains(" ms<"), "a round-trip time is shown");
    assert!(dom.contains("academemes") && dom.contains("text/html; charset=utf-8"));
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the hostile reference shows as text");
    assert!(dom.contains("\"&gt;&lt;img src=x onerror=alert(1)&gt;"), "the hostile input shows as text");
    for chart in ["calls-chart", "cache-chart", "rtt-chart", "calls-per-module-chart"] {
        assert!(dom.contains(&format!("id=\"{chart}\"")), "no {chart}");
    }
    browser.screenshot(&dashboard_url, "dashboard-node-b.png", 2200).await;
    eprintln!("browser artefacts in {}", artifacts_dir().display());
    mesh.stop().await;
}

/// The content type lives in the module's bytes. A node holding an answer
/// but not (yet) the module cannot know it: it serves the answer as plain
/// text, which is safe, and forbids caching it, so nothing keeps the wrong type.
#[tokio::test]
async fn an_answer_served_before_its_module_arrives_is_plain_text_and_not_cached() {
    let mesh = Mesh::start(2, |i, config| {
        if i == 1 {
            config.replicate_budget_bytes = 0; // B fetches modules only when a call needs them
        }
    })
    .await;
    let (a, b) = (&mesh.nodes[0], &mesh.nodes[1]);
    let module: nebula_protocol::ModuleId =
        a.deploy(academemes(&catalogue_with_hostile_meme()), "academemes").await.parse().unwrap();
    eventually("B knows the name", Duration::from_secs(20), || async { b.node.resolve("academemes").is_ok() }).await;
    // A page A owns (a meme picked by a seed: any seed is a page): A runs it
    // and hands the answer to B, its other owner (one B owned first would
    // make B fetch the module to run it).
    let mut seed = 0;
    while a.node.owners(&nebula_protocol::CallKey::new(&module, format!("pick-{seed}").as_bytes())).await[0]
        != a.node.id()
    {
        seed += 1;
    }
    let input = format!("pick-{seed}");
    assert_eq!(a.get(&format!("/api/academemes/{input}")).await.header("content-type"), "text/html; charset=utf-8");
    eventually("the answer reaches B", Duration::from_secs(20), || async {
        b.node.is_cached("academemes", input.as_bytes())
    })
    .await;
    assert_eq!(b.node.content_type(&module), None, "B does not hold the module");
    let answer = b.get(&format!("/api/academemes/{input}")).await;
    assert_eq!((answer.status.as_u16(), answer.header("x-nebula-cache")), (200, "hit"));
    assert_eq!(answer.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(answer.header("cache-control"), "no-store");
    mesh.stop().await;
}
