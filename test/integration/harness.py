"""harness.py — starts a real `holovitals serve` for integration tests.

Every integration test drives the real binary over loopback, as its users do:

    from harness import Engine, EngineTestCase

    class HealthTest(EngineTestCase):
        def test_health(self):
            eng = self.engine()                 # fresh data dir, free ports, waits for /health
            status, headers, body = eng.get("/health")

An Engine runs in a work directory under $HV_BUILDDIR/test/integration/work/; it
holds the data directory, the engine's stdout and stderr (the logs), and
anything the test writes. The directory is removed when the test passes and
kept, with its path printed, when it fails.

Standard library only (the test command runs on a fresh Debian machine).
Environment: HOLOVITALS_BIN (the binary), HV_SRCDIR, HV_BUILDDIR (set by make check).
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

SRCDIR = os.environ.get("HV_SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILDDIR = os.environ.get("HV_BUILDDIR", SRCDIR)
BIN = os.environ.get("HOLOVITALS_BIN", os.path.join(BUILDDIR, "holovitals"))
REFERENCE = os.path.abspath(os.path.join(SRCDIR, "..", "shared", "reference"))
WORKROOT = os.path.join(BUILDDIR, "test", "integration", "work")


def free_port():
    """A TCP port that was free on 127.0.0.1 a moment ago, and that no other test of this
    build directory has been given.

    Ports come from one counter shared by every test of the run (a file under WORKROOT,
    taken under flock), walking 20000-31999 from a random start: tests running in parallel
    never get the same port, as they could with random picks (two did, in CI: a channel
    file's listener was refused and its test talked to another test's engine). Each port is
    also checked with bind(), which skips ports other processes hold. Below the kernel's
    ephemeral range (32768+), so outgoing connections do not take them."""
    import fcntl
    import random
    lo, hi = 20000, 32000
    os.makedirs(WORKROOT, exist_ok=True)
    fd = os.open(os.path.join(WORKROOT, ".ports"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = os.read(fd, 32).decode(errors="replace").strip()
        port = int(last) if last.isdigit() and lo <= int(last) < hi else random.randrange(lo, hi)
        for _ in range(hi - lo):
            port = port + 1 if port + 1 < hi else lo
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, str(port).encode())
            return port
    finally:
        os.close(fd)
    raise RuntimeError("no free TCP port in %d-%d on 127.0.0.1" % (lo, hi - 1))


def wait_until(pred, timeout=20, step=0.05):
    """Polls pred() until it returns a true value (returned) or timeout seconds pass (then
    pred()'s last value is returned). For engine-side state a test observes after a peer
    has: the engine records a delivery after reading its answer, a commit in a storage
    thread, so the state a sink, file or client sees first lags; a test waits for the
    state itself rather than sleeping a guess."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def stored_versions(data, db_url=None):
    """(type, id, version, last_ms, json) of every stored version: the fhir schema of the
    PostgreSQL database db_url when given, else the data directory's fhir.db."""
    q = "SELECT type, id, version, last_ms, json FROM resources"
    if db_url:
        p = subprocess.run(["psql", "-q", "-X", "-A", "-t", "-F", "\x1f", db_url, "-c",
                            "SET search_path TO fhir; " + q],
                           check=True, capture_output=True, text=True, timeout=60)
        rows = [line.split("\x1f", 4) for line in p.stdout.splitlines() if line]
        return [(t, i, int(v), int(ms), j) for t, i, v, ms, j in rows]
    import sqlite3
    con = sqlite3.connect(os.path.join(data, "fhir.db"))
    try:
        return list(con.execute(q))
    finally:
        con.close()


JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def replace_strings(text, new):
    """JSON text with every string equal to a key of new (e.g. a Bundle entry's fullUrl) made
    new's value instead (e.g. "Type/id"), in one pass over the text."""
    return JSON_STRING.sub(lambda m: '"%s"' % new[m.group(1)] if m.group(1) in new else m.group(0), text)


def run_cli(*args, env=None, input=None, timeout=60):
    """Runs `holovitals ARGS…` and returns (exit code, stdout, stderr) as text."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run([BIN, *args], capture_output=True, env=full_env, input=input,
                       timeout=timeout, text=True)
    return p.returncode, p.stdout, p.stderr


class Engine:
    """One `holovitals serve` process with its own data directory and ports."""

    def __init__(self, workdir, args=(), env=None, config=None, tls=None, auth=False):
        self.workdir = workdir
        # Tests of other features run with authentication off (--auth off); auth
        # tests pass auth=True and get the default (on).
        self.auth = auth
        os.makedirs(workdir, exist_ok=True)
        self.data = os.path.join(workdir, "data")
        self.channels = os.path.join(workdir, "channels")
        os.makedirs(self.channels, exist_ok=True)
        self.http_port = free_port()
        self.mllp_port = free_port()
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.tls = tls  # (certfile, keyfile) or None
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(workdir, "holovitals.json")
            with open(self.config_path, "w") as f:
                f.write(config if isinstance(config, str) else json.dumps(config))
        self.proc = None
        self.stdout_path = os.path.join(workdir, "stdout.log")
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.started_in = None

    # -- process --

    def command(self):
        cmd = [BIN, "serve", "--data", self.data, "--http", "127.0.0.1:%d" % self.http_port,
               "--mllp", "127.0.0.1:%d" % self.mllp_port, "--channels", self.channels]
        if self.config_path:
            cmd += ["--config", self.config_path]
        if self.tls:
            cmd += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        if not self.auth:
            cmd += ["--auth", "off"]
        return cmd + self.args

    def start(self, wait=True, timeout=15, fixed_ports=False):
        """Starts the engine. A port taken by another test between free_port() and the
        engine's bind (tests run in parallel) is retried on fresh ports, unless the
        test needs the ports it had (a restart)."""
        for attempt in range(5):
            self.close()
            self._out = open(self.stdout_path, "ab")
            self._err = open(self.stderr_path, "ab")
            t0 = time.monotonic()
            self.proc = subprocess.Popen(self.command(), stdout=self._out, stderr=self._err,
                                         env=self.env, cwd=self.workdir)
            if not wait:
                return self
            try:
                self.wait_healthy(timeout)
            except AssertionError:
                if (self.proc.poll() == 2 and "address already in use" in self.stderr()
                        and attempt < 4 and not fixed_ports and self.started_in is None):
                    self.http_port = free_port()
                    self.mllp_port = free_port()
                    continue
                raise
            self.started_in = time.monotonic() - t0
            return self

    def wait_healthy(self, timeout=15):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("engine exited with %s during start; stderr:\n%s"
                                     % (self.proc.returncode, self.stderr()[-4000:]))
            try:
                status, _, _ = self.request("GET", "/health", timeout=2)
                if status in (200, 503):
                    return
            except OSError as e:
                last = e
            time.sleep(0.02)
        raise AssertionError("engine did not answer /health within %ss (%s)" % (timeout, last))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10):
        """SIGTERM, then wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("engine did not exit within %ss of SIGTERM" % timeout)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()
        self._out = self._err = None

    def stderr(self):
        try:
            with open(self.stderr_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_events(self):
        """The JSON log lines written so far, parsed."""
        out = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    # -- HTTP --

    @property
    def base(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.http_port)

    def connection(self, timeout=10):
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.http_port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on a fresh connection: (status, headers dict lower-cased, body bytes)."""
        conn = self.connection(timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = dict(headers or {})
                headers.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def cli(self, *args, input=None):
        """Runs `holovitals ARGS… --data <this engine's data>`: (exit code, stdout, stderr)."""
        extra = ["--config", self.config_path] if self.config_path else []
        return run_cli(*args, "--data", self.data, *extra, input=input, env=self.env)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def get_json(self, path, **kw):
        status, headers, body = self.request("GET", path, **kw)
        return status, json.loads(body) if body else None

    def post_json(self, path, obj, **kw):
        status, headers, body = self.request("POST", path, body=obj, **kw)
        return status, json.loads(body) if body else None

    def raw(self, data, read_until_close=True, timeout=5):
        """Sends raw bytes on a new TCP connection; returns what came back until close or timeout."""
        s = socket.create_connection(("127.0.0.1", self.http_port), timeout=timeout)
        try:
            s.sendall(data)
            chunks = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    c = s.recv(65536)
                except socket.timeout:
                    break
                if not c:
                    break
                chunks.append(c)
                if not read_until_close:
                    break
            return b"".join(chunks)
        finally:
            s.close()

    def metric(self, name, labels=None):
        """The value of one series from /metrics, or None."""
        _, _, body = self.get("/metrics")
        want = name + ("{" + labels + "}" if labels else "")
        for line in body.decode().splitlines():
            if line.startswith(want + " "):
                return float(line.split(" ")[-1])
        return None


class EngineTestCase(unittest.TestCase):
    """Gives each test fresh engines in a work directory kept on failure."""

    def setUp(self):
        os.makedirs(WORKROOT, exist_ok=True)
        self.workdir = tempfile.mkdtemp(prefix=self.id().split(".")[-1] + "-", dir=WORKROOT)
        self._engines = []

    def engine(self, start=True, **kw):
        eng = Engine(os.path.join(self.workdir, "engine%d" % len(self._engines)), **kw)
        os.makedirs(eng.workdir, exist_ok=True)
        self._engines.append(eng)
        if start:
            eng.start()
        return eng

    def tearDown(self):
        for eng in self._engines:
            eng.close()
        failed = False
        outcome = getattr(self, "_outcome", None)
        if outcome is not None:
            result = getattr(outcome, "result", None)
            errors = getattr(outcome, "errors", None)
            if errors:  # Python < 3.11
                failed = any(exc for _, exc in errors)
            elif result is not None:
                failed = any(t is self for t, _ in result.failures + result.errors)
        if failed:
            sys.stderr.write("\n  logs kept in %s\n" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _TimedResult(unittest.TextTestResult):
    """Keeps each test's wall time, for the slowest ones in the log (what the CI time is made of)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.times = []

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.times.append((time.monotonic() - self._t0, test.id()))


def main():
    """Runs the tests of the calling module; exit status 0 only if all passed."""
    runner = unittest.TextTestRunner(verbosity=2, resultclass=_TimedResult)
    prog = unittest.main(exit=False, testRunner=runner)
    r = prog.result
    failed = len(r.failures) + len(r.errors)
    for t, name in sorted(r.times, reverse=True)[:5]:
        print("slowest: %6.1f s  %s" % (t, name))
    print("%d passed, %d failed" % (r.testsRun - failed - len(r.skipped), failed))
    sys.exit(1 if failed or r.testsRun == 0 else 0)
