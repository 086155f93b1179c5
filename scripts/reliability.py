"""Shared helpers of scripts/crash-loop, scripts/load-run, scripts/hostile-flood
and scripts/partition-experiment: start and stop real `nebula` processes (and
wait for their ready files), talk HTTP to them, read their memory and file
descriptors from /proc, make distinct modules.

Python 3 standard library only. Everything is bounded: every process started
here is tracked and killed on exit, every request has a timeout.
"""

import atexit
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNCTIONS = os.path.join(ROOT, "target", "functions")
_STARTED = []


def log(message):
    print(message, flush=True)


def fail(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def binary():
    """The debug `nebula` that `cargo test` builds; NEBULA_BIN overrides it."""
    if os.environ.get("NEBULA_BIN"):
        return os.environ["NEBULA_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    path = os.path.join(target, "debug", "nebula")
    if not os.access(path, os.X_OK):
        log("building the nebula binary (debug)")
        subprocess.run(["cargo", "build", "--quiet", "-p", "nebula-node", "--bin", "nebula"], cwd=ROOT, check=True,
                       stdin=subprocess.DEVNULL)
    return path


def function(name):
    """Bytes of target/functions/NAME.wasm (fixtures/NAME for hostile ones), built if missing."""
    path = os.path.join(FUNCTIONS, f"{name}.wasm")
    if not os.path.exists(path):
        subprocess.run([os.path.join(ROOT, "scripts", "build-functions")], check=True, stdin=subprocess.DEVNULL)
    with open(path, "rb") as file:
        return file.read()


def leb128(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_custom_section(wasm, name, payload):
    """The same module plus a custom section: a distinct hash, the same behaviour."""
    name = name.encode()
    body = leb128(len(name)) + name + payload
    return wasm + b"\x00" + leb128(len(body)) + body


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workdir(prefix):
    path = tempfile.mkdtemp(prefix=prefix)
    keep = os.environ.get("NEBULA_KEEP_WORKDIR")
    atexit.register(lambda: None if keep else shutil.rmtree(path, ignore_errors=True))
    return path


# ---------------------------------------------------------------- HTTP


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower(), "")

    def json(self):
        return json.loads(self.body)

    def error_kind(self):
        try:
            return self.json().get("error", "")
        except ValueError:
            return ""


def request(base, method, path, body=None, timeout=10, headers=None):
    """One HTTP request on a fresh connection; raises OSError when the node is
    unreachable or too slow, returns an Answer for any HTTP status."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except http.client.HTTPException as error:
        raise OSError(f"{method} {path}: {error!r}") from error
    finally:
        connection.close()


def quote(text):
    return urllib.parse.quote(text, safe="")


# ---------------------------------------------------------------- processes


class Node:
    """One `nebula node` process with a fixed data dir, HTTP port and p2p port."""

    def __init__(self, name, work, extra=(), p2p=True):
        self.name = name
        self.data = os.path.join(work, name)
        self.log_path = os.path.join(work, f"{name}.log")
        self.ready_path = os.path.join(work, f"{name}.ready")
        self.readiness = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.p2p_port = free_port() if p2p else None
        self.extra = list(extra)
        self.process = None
        self.peer_id = None
        if p2p:
            out = subprocess.run([binary(), "id", "--data", self.data], check=True, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL)
            self.peer_id = out.stdout.strip()

    @property
    def address(self):
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    @property
    def pid(self):
        return self.process.pid

    def start(self, peers=(), standalone=False, extra=()):
        args = [binary(), "node", "--data", self.data, "--http", f"127.0.0.1:{self.port}"]
        if standalone or self.p2p_port is None:
            args.append("--standalone")
        else:
            args += ["--no-mdns", "--listen", f"/ip4/127.0.0.1/tcp/{self.p2p_port}"]
            for peer in peers:
                args += ["--peer", peer.address]
        args += self.extra + list(extra)
        self.process = start_node(args, self.ready_path, self.log_path)
        return self

    def wait_ready(self, timeout=60):
        """Waits for the node's ready file (see wait_ready); keeps the document as self.readiness."""
        self.readiness = wait_ready(self.ready_path, self.process, timeout, self.name, self.log_path)
        return self

    def kill(self):
        """kill -9: no flush, no clean shutdown."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process:
            self.process.wait()

    def stop(self, timeout=30):
        """SIGTERM (a clean shutdown); kill -9 if it takes too long."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process:
            self.process.wait()

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def rss_kb(self):
        return proc_status(self.pid, "VmRSS")

    def peak_rss_kb(self):
        return proc_status(self.pid, "VmHWM")

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return 0

    def tail(self, lines=20):
        return tail(self.log_path, lines)

    def get(self, path, timeout=10):
        return request(self.url, "GET", path, timeout=timeout)

    def deploy(self, wasm, name=None, timeout=60):
        path = "/modules" + (f"?name={quote(name)}" if name else "")
        return request(self.url, "POST", path, body=wasm, timeout=timeout)

    def set_name(self, name, module, timeout=30):
        body = json.dumps({"module": module}).encode()
        return request(self.url, "PUT", f"/names/{quote(name)}", body=body, timeout=timeout,
                       headers={"content-type": "application/json"})

    def call(self, module, input_bytes, timeout=30, query=""):
        path = f"/api/{module}" + (f"?{query}" if query else "")
        return request(self.url, "POST", path, body=input_bytes, timeout=timeout)


def start_node(args, ready_path, log_path=None):
    """Starts `args`, a `nebula node` command line (possibly behind a wrapper
    such as `ip netns exec NS`), with `--ready-file ready_path` added; its
    output goes to the end of log_path (or nowhere). A ready file left by an
    earlier run is removed first, so only this run's can appear. The process
    is killed on exit if still running. Returns the Popen; see wait_ready."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(ready_path)
    args = list(args) + ["--ready-file", ready_path]
    if log_path is None:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    else:
        with open(log_path, "a") as logfile:
            logfile.write(f"---- {' '.join(args)}\n")
            logfile.flush()
            process = subprocess.Popen(args, stdout=logfile, stderr=logfile, stdin=subprocess.DEVNULL)
    _STARTED.append(process)
    return process


def wait_ready(ready_path, process, timeout=60, what="the node", log_path=None):
    """Waits (bounded) for the ready file a node started by start_node writes
    (atomically) once it accepts calls and its p2p listeners have addresses;
    returns the parsed document: peer_id, http_url, p2p_addresses, version.
    Fails (exit 2) if the process exits first or no file comes in `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(ready_path) as file:
                return json.load(file)
        except (FileNotFoundError, ValueError):
            pass
        if process.poll() is not None:
            where = f"; see {log_path}:\n{tail(log_path)}" if log_path else ""
            fail(f"{what} exited with {process.returncode} before it was ready{where}")
        if time.monotonic() >= deadline:
            where = f"; see {log_path}" if log_path else ""
            fail(f"{what} wrote no ready file within {timeout} s{where}")
        time.sleep(0.02)


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as file:
            return "".join(file.readlines()[-lines:])
    except OSError:
        return ""


def proc_status(pid, field):
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.1)
    fail(f"timed out after {timeout} s waiting for {what}")


def _cleanup():
    for process in _STARTED:
        if process.poll() is None:
            process.kill()
            process.wait()


atexit.register(_cleanup)
for _signal in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signal, lambda *_: sys.exit(130))


# ---------------------------------------------------------------- figures


def percentile(values, p):
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def fibonacci(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
