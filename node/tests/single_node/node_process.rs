//! A real `nebula node` process, found through its ready file (never its
//! log), and the one wait for a ready file that every test starting node
//! processes uses: the mesh tests include this file too.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nebula_node::ready::Readiness;

use crate::common::nebula_binary;

/// How long a node may take to write its ready file.
const READY_PATIENCE: Duration = Duration::from_secs(60);
/// How many of a node's last log lines a failure shows.
const LOG_TAIL_LINES: usize = 50;

/// Spawns `command`, a `nebula node ...`, with `--ready-file ready_file`, and
/// waits (bounded) for that file: the node writes it atomically once it
/// accepts calls and its p2p listeners have addresses. The node's stderr is
/// drained on a thread for as long as it runs, so it never blocks on a full
/// pipe. Panics, with the end of the node's log, if the node exits first or
/// writes nothing within READY_PATIENCE (it is killed then). A file there
/// that does not parse (one left by an earlier run, which the node removes
/// at start) is waited past; a whole one from an earlier run is not, so
/// `ready_file` should be a fresh path.
pub(crate) fn spawn_until_ready(command: &mut Command, ready_file: &Path) -> (Child, Readiness) {
    let mut child = command
        .arg("--ready-file")
        .arg(ready_file)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning nebula node");
    let log_tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL_LINES)));
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let drain = {
        let log_tail = log_tail.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log_tail = log_tail.lock().unwrap();
                if log_tail.len() == LOG_TAIL_LINES {
                    log_tail.pop_front();
                }
                log_tail.push_back(line);
            }
        })
    };
    let started = Instant::now();
    let failure = loop {
        let written = std::fs::read(ready_file).ok();
        if let Some(readiness) = written.and_then(|bytes| serde_json::from_slice::<Readiness>(&bytes).ok()) {
            return (child, readiness);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break format!("the node exited ({status}) before it was ready");
        }
        if started.elapsed() > READY_PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            break format!("the node wrote no ready file within {} s", READY_PATIENCE.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Its stderr closed when it exited: the drain has read everything.
    let _ = drain.join();
    let log_tail = Vec::from(std::mem::take(&mut *log_tail.lock().unwrap()));
    panic!("{failure}; its log ends with:\n{}", log_tail.join("\n"));
}

/// A standalone node on a free loopback port, killed when dropped.
pub(crate) struct NodeProcess {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) readiness: Readiness,
    /// Where its ready file is, when the node has a directory of its own for it.
    _ready_dir: Option<tempfile::TempDir>,
}

impl NodeProcess {
    pub(crate) fn start(data: &Path) -> NodeProcess {
        Self::start_with(data, &[])
    }

    /// With `extra` arguments; its ready file in a fresh temporary directory
    /// (not beside `data`, where a restart would find the earlier run's).
    pub(crate) fn start_with(data: &Path, extra: &[&str]) -> NodeProcess {
        let ready_dir = tempfile::tempdir().unwrap();
        let mut node = Self::start_announcing(data, extra, &ready_dir.path().join("node.ready"));
        node._ready_dir = Some(ready_dir);
        node
    }

    /// With `extra` arguments, writing its ready file at `ready_file`.
    pub(crate) fn start_announcing(data: &Path, extra: &[&str], ready_file: &Path) -> NodeProcess {
        let mut command = Command::new(nebula_binary());
        command.args(["node", "--data", data.to_str().unwrap(), "--http", "127.0.0.1:0", "--standalone"]).args(extra);
        let (child, readiness) = spawn_until_ready(&mut command, ready_file);
        NodeProcess { child, url: readiness.http_url.clone(), readiness, _ready_dir: None }
    }

    /// Runs the `nebula` client command `args` against this node.
    pub(crate) fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new(nebula_binary())
            .args(args)
            .args(["--node", &self.url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            input.write_all(bytes).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
