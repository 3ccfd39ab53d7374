"""test_channels_window.py — http-send's pipelined window and file-write's batches.

http-send writes up to "window" requests back to back on one kept-alive HTTP/1.1
connection (engine/channel_pipe.c). These tests drive it against a local sink that
reads pipelined requests and fails on purpose in the middle of a window — a 503 for
one message, a connection closed without an answer — and across a kill -9 of the
engine: every message arrives, the last copy of each arrives in queue order, copies
appear only after a failure, and the pipeline really used few connections.

file-write: a batch whose middle file cannot be written (a directory sits at its
name) writes the files before it, none after it, reports the failing message with its
error, and writes the rest in order once the obstacle is gone — with and without fsync,
and in append mode.
"""

import json
import os
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import EngineTestCase, free_port, main


class PipeSink:
    """An HTTP/1.1 sink that reads pipelined requests in order on each connection.

    fail: {message index: "503" | "close"} applied to the first copy of that message
    (index = position in the order the test posted, looked up through X-Message-Id).
    Records every accepted request as (id, connection number) in arrival order."""

    def __init__(self, port, delay=0.0):
        self.port = port
        self.delay = delay
        self.accepted = []
        self.fail = {}
        self.order = {}  # X-Message-Id -> index
        self.seen = set()
        self.connections = 0
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with sink.lock:
                    sink.connections += 1
                    self.conn_no = sink.connections

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                mid = self.headers.get("X-Message-Id")
                with sink.lock:
                    idx = sink.order.get(mid)
                    first = mid not in sink.seen
                    sink.seen.add(mid)
                    action = sink.fail.get(idx) if first else None
                    if action is None:
                        sink.accepted.append((mid, self.conn_no))
                if sink.delay:
                    time.sleep(sink.delay)
                if action == "close":
                    # No answer: the connection closes with the rest of the window unread.
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(503 if action == "503" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        # A peer killed mid-window breaks pipes: expected here, not worth a traceback.
        self.server.handle_error = lambda request, address: None
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ids(self):
        with self.lock:
            return [m for m, _ in self.accepted]

    def wait_all(self, ids, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(ids) <= set(self.ids()):
                return True
            time.sleep(0.05)
        return False


def last_copies(seq):
    """The sequence of each id's last occurrence, in arrival order."""
    last = {m: i for i, m in enumerate(seq)}
    return [m for i, m in enumerate(seq) if last[m] == i]


class WindowTest(EngineTestCase):
    def setUp(self):
        super().setUp()
        self.sinks = []

    def tearDown(self):
        for s in self.sinks:
            s.stop()
        super().tearDown()

    def channel(self, eng, sink, window, extra=None):
        dest = {"name": "x", "type": "http-send", "url": "http://127.0.0.1:%d/in" % sink.port,
                "window": window,
                "queue": {"retry_interval_ms": 50, "max_attempts": 100, "breaker_threshold": 0}}
        dest.update(extra or {})
        with open(os.path.join(eng.channels, "w.json"), "w") as f:
            json.dump({"id": "w", "source": {"type": "http"}, "destinations": [dest]}, f)

    def post_paused(self, eng, sink, n):
        """n messages queued while x is paused (so they go as one batch), ids in order."""
        self.assertEqual(eng.post_json("/channels/w/destinations/x/pause", {})[0], 200)
        ids = []
        for i in range(n):
            status, _, data = eng.request("POST", "/channels/w/in", body=b"m%03d" % i,
                                          headers={"Content-Type": "text/plain"})
            self.assertEqual(status, 201, data)
            ids.append(json.loads(data)["id"])
        with sink.lock:
            sink.order = {m: i for i, m in enumerate(ids)}
        return ids

    def sink(self, **kw):
        s = PipeSink(free_port(), **kw).start()
        self.sinks.append(s)
        return s

    def test_window_failures_mid_window_resend_in_order_without_loss(self):
        sink = self.sink()
        sink.fail = {7: "503", 15: "close"}
        eng = self.engine(start=False)
        self.channel(eng, sink, 8)
        eng.start()
        ids = self.post_paused(eng, sink, 30)
        self.assertEqual(eng.post_json("/channels/w/destinations/x/resume", {})[0], 200)
        self.assertTrue(sink.wait_all(ids), "sink got %d of 30" % len(set(sink.ids())))
        got = sink.ids()
        # The last copy of every message arrived in queue order, nothing lost.
        self.assertEqual(last_copies(got), ids)
        # Copies only after the first failure: everything before message 7 came once.
        self.assertEqual(got[:7], ids[:7])
        self.assertEqual(len(set(got)), 30)
        # The window was used: far fewer connections than messages (the close costs one).
        self.assertLessEqual(sink.connections, 4)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, ch = eng.get_json("/channels/w")
            if ch["destinations"][0]["statistics"]["sent"] == 30:
                break
            time.sleep(0.05)
        st = ch["destinations"][0]["statistics"]
        self.assertEqual(st["sent"], 30)
        self.assertEqual(st["queued"], 0)
        self.assertGreaterEqual(st["failed_attempts"], 2)
        _, msg = eng.get_json("/channels/w/messages/%s" % ids[7])
        self.assertEqual(msg["destinations"][0]["attempts"], 2)

    def test_window_one_sends_one_request_at_a_time_in_order(self):
        sink = self.sink()
        sink.fail = {3: "503"}
        eng = self.engine(start=False)
        self.channel(eng, sink, 1)
        eng.start()
        ids = self.post_paused(eng, sink, 8)
        self.assertEqual(eng.post_json("/channels/w/destinations/x/resume", {})[0], 200)
        self.assertTrue(sink.wait_all(ids))
        time.sleep(0.2)
        self.assertEqual(sink.ids(), ids)  # no copies: nothing was in flight behind 3

    def test_window_order_and_no_loss_across_kill9(self):
        sink = self.sink(delay=0.01)
        eng = self.engine(start=False)
        self.channel(eng, sink, 16)
        eng.start()
        ids = self.post_paused(eng, sink, 60)
        self.assertEqual(eng.post_json("/channels/w/destinations/x/resume", {})[0], 200)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(sink.ids()) < 12:
            time.sleep(0.005)
        eng.kill9()  # mid-window: some answered but not recorded, some in flight
        before = len(sink.ids())
        self.assertLess(before, 60)
        eng.start()
        self.assertTrue(sink.wait_all(ids, timeout=30), "sink got %d" % len(set(sink.ids())))
        got = sink.ids()
        self.assertEqual(last_copies(got), ids)
        # Without a refusal the first copies are in order too: resending restarts at the
        # first message not recorded as sent.
        first = []
        for m in got:
            if m not in first:
                first.append(m)
        self.assertEqual(first, ids)

    def test_window_is_validated(self):
        eng = self.engine(start=False)
        with open(os.path.join(eng.channels, "bad.json"), "w") as f:
            json.dump({"id": "bad", "source": {"type": "http"},
                       "destinations": [{"name": "x", "type": "http-send",
                                         "url": "http://127.0.0.1:1/in", "window": 0}]}, f)
        eng.start()
        status, _ = eng.get_json("/channels/bad")
        self.assertEqual(status, 404)


class FileWriteBatchTest(EngineTestCase):
    def queue_paused(self, eng, cid, dest, bodies):
        """Starts eng with channel cid (http source, the one destination dest, paused)
        and posts bodies: the message ids."""
        with open(os.path.join(eng.channels, "%s.json" % cid), "w") as f:
            json.dump({"id": cid, "source": {"type": "http"}, "destinations": [dest]}, f)
        eng.start()
        self.assertEqual(eng.post_json("/channels/%s/destinations/%s/pause"
                                       % (cid, dest["name"]), {})[0], 200)
        ids = []
        for body in bodies:
            status, _, data = eng.request("POST", "/channels/%s/in" % cid, body=body,
                                          headers={"Content-Type": "text/plain"})
            self.assertEqual(status, 201, data)
            ids.append(json.loads(data)["id"])
        return ids

    def run_blocked(self, dest_extra, name_of):
        """Queues 10 messages, puts a directory at message 5's file, resumes: files 0-4
        are written, 6-9 are not, message 5 carries the error; then the obstacle goes."""
        out = os.path.join(self.workdir, "out")
        eng = self.engine(start=False)
        dest = {"name": "f", "type": "file-write", "dir": out,
                "queue": {"retry_interval_ms": 100, "max_attempts": 1000, "breaker_threshold": 0}}
        dest.update(dest_extra)
        ids = self.queue_paused(eng, "fw", dest, [b"m%03d" % i for i in range(10)])
        blocker = os.path.join(out, name_of(ids[5]))
        os.makedirs(os.path.join(blocker, "x"))
        self.assertEqual(eng.post_json("/channels/fw/destinations/f/resume", {})[0], 200)
        deadline = time.monotonic() + 10
        msg = None
        while time.monotonic() < deadline:
            _, msg = eng.get_json("/channels/fw/messages/%s" % ids[5])
            if msg["destinations"][0]["attempts"] >= 2:
                break
            time.sleep(0.05)
        self.assertGreaterEqual(msg["destinations"][0]["attempts"], 2)
        self.assertEqual(msg["destinations"][0]["state"], "queued")
        self.assertIn("directory", msg["destinations"][0]["last_error"])
        _, ch = eng.get_json("/channels/fw")
        self.assertEqual(ch["destinations"][0]["statistics"]["sent"], 5)
        self.assertEqual(ch["destinations"][0]["statistics"]["queued"], 5)
        for i in range(6, 10):  # nothing after the failing message was written first
            _, m = eng.get_json("/channels/fw/messages/%s" % ids[i])
            self.assertEqual(m["destinations"][0]["attempts"], 0)
        state = sorted(os.listdir(out))
        shutil.rmtree(blocker)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, ch = eng.get_json("/channels/fw")
            if ch["destinations"][0]["statistics"]["sent"] == 10:
                break
            time.sleep(0.05)
        self.assertEqual(ch["destinations"][0]["statistics"]["sent"], 10)
        return out, ids, state

    def test_file_write_batch_stops_at_failing_file_and_keeps_order(self):
        name = lambda mid: "fw-%s.msg" % mid
        out, ids, blocked = self.run_blocked({"fsync": False}, name)
        self.assertEqual(blocked, sorted([name(m) for m in ids[:5]] + [name(ids[5])]))
        for i, m in enumerate(ids):
            with open(os.path.join(out, name(m)), "rb") as f:
                self.assertEqual(f.read(), b"m%03d" % i)

    def test_file_write_durable_batch_stops_at_failing_file_and_keeps_order(self):
        name = lambda mid: "fw-%s.msg" % mid
        out, ids, blocked = self.run_blocked({"fsync": True}, name)
        # No temporary file is left behind by the failed batch.
        self.assertEqual(blocked, sorted([name(m) for m in ids[:5]] + [name(ids[5])]))
        self.assertEqual(sorted(os.listdir(out)), sorted(name(m) for m in ids))
        for i, m in enumerate(ids):
            with open(os.path.join(out, name(m)), "rb") as f:
                self.assertEqual(f.read(), b"m%03d" % i)

    def run_replacing(self, fsync):
        """Queues 6 messages whose files already exist (old content; one also with a
        crash's leftover temporary file), resumes: every file holds its message whole,
        and no temporary file is left."""
        out = os.path.join(self.workdir, "out-r%d" % fsync)
        eng = self.engine(start=False)
        ids = self.queue_paused(eng, "fr", {"name": "f", "type": "file-write", "dir": out,
                                            "filename": "${id}.msg", "fsync": fsync},
                                [b"new %d" % i for i in range(6)])
        for m in ids[:4]:  # files written before (a retry after a crash writes them again)
            with open(os.path.join(out, "%s.msg" % m), "wb") as f:
                f.write(b"an older and longer content that must not survive")
        with open(os.path.join(out, ".%s.msg.tmp" % ids[1]), "wb") as f:
            f.write(b"a crash's half-written temporary file")
        self.assertEqual(eng.post_json("/channels/fr/destinations/f/resume", {})[0], 200)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, ch = eng.get_json("/channels/fr")
            if ch["destinations"][0]["statistics"]["sent"] == 6:
                break
            time.sleep(0.05)
        self.assertEqual(ch["destinations"][0]["statistics"]["sent"], 6)
        self.assertEqual(sorted(os.listdir(out)), sorted("%s.msg" % m for m in ids))
        for i, m in enumerate(ids):
            with open(os.path.join(out, "%s.msg" % m), "rb") as f:
                self.assertEqual(f.read(), b"new %d" % i)
            self.assertEqual(os.stat(os.path.join(out, "%s.msg" % m)).st_mode & 0o777, 0o600)

    def test_file_write_replaces_existing_files_whole(self):
        self.run_replacing(False)

    def test_file_write_durable_replaces_existing_files_whole(self):
        self.run_replacing(True)

    def test_file_write_append_mode_appends_in_order(self):
        # One file per message id here so that message 5's can be blocked; then one file.
        name = lambda mid: "a-%s.log" % mid
        out, ids, blocked = self.run_blocked(
            {"mode": "append", "filename": "a-${id}.log", "separator": "|"}, name)
        self.assertEqual(blocked, sorted([name(m) for m in ids[:5]] + [name(ids[5])]))
        for i, m in enumerate(ids):
            with open(os.path.join(out, name(m)), "rb") as f:
                self.assertEqual(f.read(), b"m%03d|" % i)

    def test_file_write_append_to_one_file(self):
        out = os.path.join(self.workdir, "out1")
        eng = self.engine(start=False)
        with open(os.path.join(eng.channels, "ap.json"), "w") as f:
            json.dump({"id": "ap", "source": {"type": "http"},
                       "destinations": [{"name": "f", "type": "file-write", "dir": out,
                                         "mode": "append"}]}, f)
        eng.start()
        for i in range(20):
            status, _, _ = eng.request("POST", "/channels/ap/in", body=b"line %02d" % i)
            self.assertEqual(status, 201)
        deadline = time.monotonic() + 10
        want = b"".join(b"line %02d\n" % i for i in range(20))
        data = b""
        while time.monotonic() < deadline:
            p = os.path.join(out, "ap.log")
            data = b""
            if os.path.exists(p):
                with open(p, "rb") as f:
                    data = f.read()
            if data == want:
                break
            time.sleep(0.05)
        self.assertEqual(data, want)
        self.assertEqual(os.listdir(out), ["ap.log"])


if __name__ == "__main__":
    main()
