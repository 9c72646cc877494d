"""harness.py - what the integration tests in this folder share (Python standard library only).

Each `*_test.py` here imports it (`import harness`; the script's own folder is put on sys.path first, so they run
from any working directory). It provides:

- checks and results: `check(name, cond, detail)` prints `ok   name` or `FAIL name detail` (detail cut to 600
  characters) and flushes stdout; `failures` lists the names of the failed checks; `summary()` prints
  `N passed, M failed` and returns the exit status (1 when anything failed).
- `keel_arg()`: parses the `--keel BINARY` command line every test takes and returns the binary's absolute path.
- ports and servers: `free_port()`; `serve(server_class, handler)`, a threaded server on a free 127.0.0.1 port
  served from a daemon thread (upstream HTTP servers, TCP backends).
- the proxy under test: `start_proxy(keel, mode, config_dir, admin, log, *args)` runs `keel proxy MODE --config
  DIR --admin 127.0.0.1:PORT ...` with its output in `log`; `wait_ready(keel, admin)` runs `keel proxy wait`
  (polls the admin `/ready`) and returns its exit status; `stop_proxy(proc)` terminates it if still running
  (SIGTERM, then SIGKILL after 10 s).
- config files: `write_atomic(path, text)` writes under a temporary name and renames, so the proxy's config
  loader never reads a half-written file.
- HTTP and data: `request(port, method, path, ...)` (one request over http.client, optionally on a kept-alive
  connection), `http_get(port, path)` -> (status, body), `metric(text, name)` (one value from Prometheus text),
  `pattern(n, seed)` (deterministic test bytes).
- the end of a test: `cleanup(tmp, tails)` prints the tail of each log when a check failed and removes the
  temporary folder.
"""
import argparse
import atexit
import hashlib
import http.client
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

failures = []       # names of the checks that failed
checks = [0]        # checks run


def check(name, cond, detail=""):
    checks[0] += 1
    if cond:
        print("ok   %s" % name)
    else:
        print("FAIL %s %s" % (name, str(detail)[:600]))
        failures.append(name)
    sys.stdout.flush()


def summary():
    """Prints the final `N passed, M failed` line; returns the exit status (1 when any check failed)."""
    print("%d passed, %d failed" % (checks[0] - len(failures), len(failures)))
    sys.stdout.flush()
    return 1 if failures else 0


def keel_arg():
    """The --keel argument (the binary under test), as an absolute path."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--keel", required=True)
    return os.path.abspath(ap.parse_args().keel)


# Test ports come from below the kernel's ephemeral range (32768-60999 on Debian): a port the kernel handed out
# with bind(0) may be taken again at once as the local port of any outgoing connection of a test running in
# parallel, and a proxy that then fails to listen on it turns into a flaky "connection refused".
_PORT_RANGE = (20000, 32000)
_BENCH_PORTS = set(range(18001, 18005))
_rng = random.Random(os.getpid() ^ int(time.time() * 1000))


_given = set()  # ports this process handed out: never twice (the first may not be bound yet)
_CLAIMS = os.path.join(tempfile.gettempdir(), "keel-test-ports")  # one file per port claimed by a running test
_CLAIM_TTL = 600  # seconds: a claim older than this belongs to a test that is over


def _claim(p):
    """Claims port p across the tests running in parallel (an O_EXCL file); False when another test has it."""
    os.makedirs(_CLAIMS, exist_ok=True)
    path = os.path.join(_CLAIMS, str(p))
    try:
        if time.time() - os.stat(path).st_mtime > _CLAIM_TTL:
            os.unlink(path)
    except OSError:
        pass
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except OSError:
        return False


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now, from 20000-31999 (see _PORT_RANGE), handed out once per
    process and claimed against the other tests running at the same time (two free_port() calls, here or in a
    parallel test, never get the same port before either is bound)."""
    for _ in range(1000):
        p = _rng.randrange(*_PORT_RANGE)
        if p in _BENCH_PORTS or p in _given:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        if not _claim(p):
            continue
        _given.add(p)
        return p
    raise RuntimeError("no free port in %d-%d" % _PORT_RANGE)


@atexit.register
def _release_claims():
    for p in _given:
        try:
            os.unlink(os.path.join(_CLAIMS, str(p)))
        except OSError:
            pass


def serve(server_class, handler):
    """Starts server_class (a socketserver class, e.g. http.server.ThreadingHTTPServer) with handler on a free
    127.0.0.1 port, serving from a daemon thread with daemon request threads, with a listen backlog of at least
    128 (socketserver's 5 drops handshakes when a proxy opens many connections at once). Returns (server, port)."""
    if getattr(server_class, "request_queue_size", 5) < 128:
        server_class = type(server_class.__name__, (server_class,), {"request_queue_size": 128})
    srv = server_class(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


def start_proxy(keel, mode, config_dir, admin, log, *args, env=None):
    """`keel proxy MODE --config DIR --admin 127.0.0.1:ADMIN ARGS...` with stdout and stderr into log (a file)."""
    proc = subprocess.Popen([keel, "proxy", mode, "--config", config_dir, "--admin", "127.0.0.1:%d" % admin]
                            + list(args), stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.keel_log = getattr(log, "name", None)
    return proc


def wait_ready(keel, admin, timeout=None):
    """`keel proxy wait` on the admin port (it polls /ready); returns its exit status (0: ready). Without a
    timeout, keel's default (60 s) applies."""
    cmd = [keel, "proxy", "wait", "--admin", "127.0.0.1:%d" % admin]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
    return subprocess.run(cmd).returncode


def stop_proxy(proc, grace=10):
    """Ends a proxy still running: SIGTERM, then SIGKILL if it has not exited after grace seconds. Then fails a
    check if its log holds a sanitizer report (check_sanitizers)."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    check_sanitizers(getattr(proc, "keel_log", None))


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
_sanitizer_checked = set()  # logs already checked (a proxy stopped twice is reported once)


def check_sanitizers(path):
    """Fails a check when the log at path holds an AddressSanitizer, LeakSanitizer or UBSan report (sanitizer
    builds print them to the proxy's stderr, which the tests send to a log file)."""
    if not path or path in _sanitizer_checked:
        return
    _sanitizer_checked.add(path)
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return
    hits = [ln for ln in text.splitlines() if any(m in ln for m in SANITIZER_MARKS)]
    check("no sanitizer report in %s" % os.path.basename(path), not hits, hits[:5])


def write_atomic(path, text):
    # the temporary name does not end in .yaml, so the loader never reads a half-written file
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def request(port, method, path, body=None, headers=None, conn=None, timeout=10):
    """One request to 127.0.0.1:port; on conn (kept open) when given. Returns (response, body bytes)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r, r.read()
    finally:
        if not conn:
            c.close()


def http_get(port, path, timeout=5):
    """GET http://127.0.0.1:port/path on a connection of its own; returns (status, body)."""
    r, body = request(port, "GET", path, timeout=timeout)
    return r.status, body


def metric(text, name):
    """The value of an unlabelled counter or gauge in Prometheus text, or None."""
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def wait_for_log(path, regex, timeout=10):
    """The log at path once regex (a str pattern) matches in it, or at the deadline (workers write their lines
    when an exchange ends, which another worker's later answer does not wait for). Returns the text."""
    deadline = time.time() + timeout
    while True:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        if re.search(regex, text) or time.time() > deadline:
            return text
        time.sleep(0.05)


def pattern(n, seed=b"keel"):
    """n bytes of a repeating, seed-dependent pattern (for checking bodies byte for byte)."""
    block = hashlib.sha256(seed).digest() * 64
    return (block * (n // len(block) + 1))[:n]


def print_tail(title, path, lines):
    """Prints `---- TITLE (tail)` and the last lines of the file at path (nothing of a missing file)."""
    print("---- %s (tail)" % title)
    try:
        with open(path) as f:
            print("".join(f.readlines()[-lines:]))
    except FileNotFoundError:
        print()


def cleanup(tmp, tails=()):
    """The end of a test: when a check failed, print_tail(title, path, lines) for each entry of tails; then remove
    the temporary folder tmp."""
    if failures:
        for title, path, lines in tails:
            print_tail(title, path, lines)
    shutil.rmtree(tmp, ignore_errors=True)
