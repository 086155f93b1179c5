//! Starting nodes on loopback and talking to them.

use std::path::{Path, PathBuf};

use nebula_node::{Node, NodeConfig};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestNode {
    pub url: String,
    pub node: Node,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl TestNode {
    pub async fn start(data_dir: &Path) -> TestNode {
        Self::start_with(data_dir, |_| {}).await
    }

    pub async fn start_with(data_dir: &Path, configure: impl FnOnce(&mut NodeConfig)) -> TestNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = NodeConfig::new(data_dir, listener.local_addr().unwrap());
        // Calls always ask their keys' owners: whether a module counts as
        // quick (`run_here_below_us`) would depend on how busy the machine
        // is. A test of that rule sets it.
        config.run_here_below_us = 0;
        configure(&mut config);
        let node = Node::open(config).await.expect("node opens");
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = node.clone();
        let server = tokio::spawn(async move {
            nebula_node::serve(serving, listener, async {
                let _ = stop.await;
            })
            .await
            .expect("server runs");
        });
        TestNode { url: format!("http://{}", node.config().http_addr), node, shutdown, server }
    }

    /// Stops the server and waits until the node has let go of its data dir.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.server.await.unwrap();
        self.node.shutdown().await;
    }

    pub async fn deploy(&self, wasm: Vec<u8>, name: &str) -> String {
        let (status, body) = self.deploy_raw(wasm, Some(name)).await;
        assert!(status.is_success(), "deploy of {name} failed: {status} {body}");
        body["module"].as_str().unwrap().to_owned()
    }

    pub async fn deploy_raw(&self, wasm: Vec<u8>, name: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut request = reqwest::Client::new().post(format!("{}/modules", self.url)).body(wasm);
        if let Some(name) = name {
            request = request.query(&[("name", name)]);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// POSTs `input` to `/api/{module}?{query}`.
    pub async fn call(&self, module: &str, input: &[u8], query: &str) -> Answer {
        let url = format!("{}/api/{module}?{query}", self.url);
        let response = reqwest::Client::new().post(url).body(input.to_vec()).send().await.unwrap();
        Answer::read(response).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::read(reqwest::get(format!("{}{path}", self.url)).await.unwrap()).await
    }

    /// Value of an unlabelled metric, or the sum of a labelled one's series.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await.text();
        text.lines()
            .filter(|line| line.starts_with(name) && !line.starts_with('#'))
            .filter(|line| line[name.len()..].starts_with([' ', '{']))
            .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap().to_vec();
        Answer { status, headers, body }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|value| value.to_str().unwrap()).unwrap_or("")
    }

    /// The `error` kind of a failed call.
    pub fn error_kind(&self) -> String {
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

fn functions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions")
}

fn read_built(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error}; run scripts/build-functions first", path.display()))
}

/// A guest function built by scripts/build-functions.
pub fn function(name: &str) -> Vec<u8> {
    read_built(functions_dir().join(format!("{name}.wasm")))
}

/// A hostile or broken test module.
pub fn fixture(name: &str) -> Vec<u8> {
    read_built(functions_dir().join("fixtures").join(format!("{name}.wasm")))
}

/// `wasm` with a custom section of `bytes` bytes appended: as big as asked,
/// and free to compile.
pub fn padded(mut wasm: Vec<u8>, bytes: usize) -> Vec<u8> {
    let name = b"padding";
    let payload = name.len() + 1 + bytes;
    wasm.push(0);
    let mut size = payload;
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        wasm.push(if size > 0 { byte | 0x80 } else { byte });
        if size == 0 {
            break;
        }
    }
    wasm.push(name.len() as u8);
    wasm.extend_from_slice(name);
    wasm.resize(wasm.len() + bytes, 0xab);
    wasm
}

pub fn nebula_binary() -> &'static str {
    env!("CARGO_BIN_EXE_nebula")
}

// ---- Academemes, with a catalogue that tries to inject markup ----

pub const HOSTILE_TITLE: &str = "<script>alert('title')</script>";
pub const HOSTILE_CAPTION: &str = "\"><img src=x onerror=alert(1)>";

/// The shipped catalogue plus a meme whose title and captions try to inject markup.
pub fn catalogue_with_hostile_meme() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/academemes/memes.json");
    let mut catalogue: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    catalogue["memes"].as_array_mut().unwrap().push(serde_json::json!({
        "id": 99, "template": "sign", "title": HOSTILE_TITLE,
        "captions": [HOSTILE_CAPTION, "</text></svg><script>alert(3)</script>"]
    }));
    serde_json::to_vec(&catalogue).unwrap()
}

pub fn academemes(catalogue: &[u8]) -> Vec<u8> {
    nebula_node::data_slot::pack(&function("academemes"), catalogue).unwrap()
}
