"""test_channels.py — the channel runtime over the wire.

Drives a real `holovitals serve` (harness.py) with channel files in its channels
directory and local HTTP sinks as destinations: the lab-fanout channel of the
issue with one destination down for a while (messages queue, then arrive in order,
none duplicated), the same across a kill -9 and a restart, dead-lettering after
max attempts and requeue, reprocessing, filter accounting, hot reload (an invalid
file is refused and the running version kept), and `channel validate`.
"""

import json
import re
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import EngineTestCase, free_port, main, run_cli, wait_until

LAB_FANOUT = """// channels/lab-fanout.json
{
  "id": "lab-fanout",
  "source": { "type": "http" },
  "destinations": [
    { "name": "a", "type": "http-send", "url": "http://127.0.0.1:9001/in" },
    { "name": "b", "type": "http-send", "url": "http://127.0.0.1:9002/in",
      "queue": { "retry_interval_ms": 500, "max_attempts": 1000 } }
  ]
}
"""


class Sink:
    """A local HTTP server that records every POST (headers and body) and answers `status`."""

    def __init__(self, port):
        self.port = port
        self.received = []
        self.status = 200
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with sink.lock:
                    status = sink.status
                    if status == 200:
                        sink.received.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self):
        with self.lock:
            return [b for _, b in self.received]

    def ids(self):
        with self.lock:
            return [h.get("X-Message-Id") for h, _ in self.received]

    def wait_for(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return True
            time.sleep(0.05)
        return False


class ChannelTestCase(EngineTestCase):
    def setUp(self):
        super().setUp()
        self.sinks = []

    def tearDown(self):
        for s in self.sinks:
            s.stop()
        super().tearDown()

    def sink(self, start=True):
        s = Sink(free_port())
        self.sinks.append(s)
        if start:
            s.start()
        return s

    def write_channel(self, eng, name, text):
        with open(os.path.join(eng.channels, name), "w") as f:
            f.write(text)

    def fanout(self, eng, a, b):
        # Colon and slash included: a port of a that contains "9002" (say 29002) is not replaced again.
        text = LAB_FANOUT.replace(":9001/", ":%d/" % a.port).replace(":9002/", ":%d/" % b.port)
        self.write_channel(eng, "lab-fanout.json", text)

    def post(self, eng, i):
        body = ("message %03d" % i).encode()
        status, _, data = eng.request("POST", "/channels/lab-fanout/in", body=body,
                                      headers={"Content-Type": "text/x-lab; charset=utf-8"})
        self.assertEqual(status, 201, data)
        return json.loads(data)["id"]

    def dest_stats(self, eng, channel="lab-fanout"):
        """Each destination's statistics, by name, as GET /channels/ID shows them."""
        _, ch = eng.get_json("/channels/%s" % channel)
        return {d["name"]: d["statistics"] for d in ch["destinations"]}


class LabFanoutTest(ChannelTestCase):
    def test_lab_fanout_file_validates_as_written(self):
        path = os.path.join(self.workdir, "lab-fanout.json")
        with open(path, "w") as f:
            f.write(LAB_FANOUT)
        code, out, err = run_cli("channel", "validate", path)
        self.assertEqual(code, 0, err)
        self.assertIn("lab-fanout", out)

    def test_down_destination_queues_then_delivers_in_order_once(self):
        a, b = self.sink(), self.sink(start=False)  # b is down
        eng = self.engine(start=False)
        self.fanout(eng, a, b)
        eng.start()
        ids = [self.post(eng, i) for i in range(20)]
        self.assertTrue(a.wait_for(20), "destination a got %d" % len(a.bodies()))
        self.assertEqual(a.bodies(), [("message %03d" % i).encode() for i in range(20)])
        self.assertEqual(a.ids(), ids)
        for h, _ in a.received:
            self.assertEqual(h.get("Content-Type"), "text/x-lab; charset=utf-8")
        # b's first failed attempt is counted when its worker has tried, not when a has all.
        self.assertTrue(wait_until(lambda: self.dest_stats(eng)["b"]["failed_attempts"] > 0),
                        self.dest_stats(eng))
        status, ch = eng.get_json("/channels/lab-fanout")
        self.assertEqual(status, 200)
        dest_b = [d for d in ch["destinations"] if d["name"] == "b"][0]
        self.assertEqual(dest_b["statistics"]["queued"], 20)
        b.start()  # b comes back
        self.assertTrue(b.wait_for(20, timeout=20), "destination b got %d" % len(b.bodies()))
        time.sleep(0.5)
        self.assertEqual(b.bodies(), [("message %03d" % i).encode() for i in range(20)])
        self.assertEqual(b.ids(), ids)
        # The sinks have the 20th message before the engine has read each ACK and recorded it.
        self.assertTrue(wait_until(lambda: (self.dest_stats(eng)["a"]["sent"],
                                            self.dest_stats(eng)["b"]["sent"]) == (20, 20)),
                        self.dest_stats(eng))
        status, ch = eng.get_json("/channels/lab-fanout")
        self.assertEqual(ch["statistics"]["received"], 20)
        self.assertEqual(ch["statistics"]["sent"], 20)
        for d in ch["destinations"]:
            self.assertEqual(d["statistics"]["sent"], 20)
            self.assertEqual(d["statistics"]["queued"], 0)
        self.assertEqual(eng.metric("hv_channel_received_total", 'channel="lab-fanout"'), 20)
        self.assertEqual(eng.metric("hv_channel_delivered_total",
                                    'channel="lab-fanout",destination="b"'), 20)
        self.assertGreater(eng.metric("hv_channel_failed_attempts_total",
                                      'channel="lab-fanout",destination="b"'), 0)

    def test_queue_survives_kill9_and_restart(self):
        a, b = self.sink(), self.sink(start=False)
        eng = self.engine(start=False)
        self.fanout(eng, a, b)
        eng.start()
        ids = [self.post(eng, i) for i in range(10)]
        self.assertTrue(a.wait_for(10))
        # The engine promises never to resend what it recorded as sent; a delivery whose
        # answer arrived but whose record had not committed when the process died is sent
        # again with the same X-Message-Id (at-least-once on the wire, docs/channels.md).
        # So kill only once every delivery to a is recorded.
        deadline = time.time() + 20
        while time.time() < deadline:
            status, ch = eng.get_json("/channels/lab-fanout")
            sent = [d for d in ch["destinations"] if d["name"] == "a"][0]["statistics"]["sent"]
            if sent == 10:
                break
            time.sleep(0.05)
        self.assertEqual(sent, 10)
        eng.kill9()  # b never got anything; its queue is on disk
        eng.start()
        ids += [self.post(eng, i) for i in range(10, 15)]
        b.start()
        self.assertTrue(b.wait_for(15, timeout=20), "destination b got %d" % len(b.bodies()))
        self.assertTrue(a.wait_for(15))
        time.sleep(0.5)
        self.assertEqual(b.ids(), ids)
        self.assertEqual(a.ids(), ids)  # nothing sent twice to a across the kill
        self.assertEqual(b.bodies(), [("message %03d" % i).encode() for i in range(15)])
        eng.stop()


def fnv1a(s):
    h = 1469598103934665603
    for b in s.encode():
        h ^= b
        h = (h * 1099511628211) % (1 << 64)
    return h


class LanesTest(ChannelTestCase):
    def test_workers_with_ordering_key_keep_each_patient_in_order(self):
        # four patients in four different lanes of 8
        keys, lanes = [], set()
        for i in range(100):
            k = "P%d" % i
            if fnv1a(k) % 8 not in lanes:
                lanes.add(fnv1a(k) % 8)
                keys.append(k)
            if len(keys) == 4:
                break
        s = self.sink(start=False)
        # the first patient is refused until the test lifts the block (not a time window:
        # under sanitizers on a loaded machine the posts alone may take seconds)
        blocked = {"key": keys[0], "on": True}
        received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                pid = body.split(b"PID|1||")[1].split(b"^")[0].decode()
                if pid == blocked["key"] and blocked["on"]:
                    self.send_response(503)
                else:
                    with s.lock:
                        received.append((pid, body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        s.server = ThreadingHTTPServer(("127.0.0.1", s.port), Handler)
        s.server.daemon_threads = True
        threading.Thread(target=s.server.serve_forever, daemon=True).start()
        eng = self.engine(start=False)
        self.write_channel(eng, "lanes.json", json.dumps({
            "id": "lanes", "source": {"type": "http"},
            "destinations": [{"name": "x", "type": "http-send", "url": "http://127.0.0.1:%d/" % s.port,
                              "queue": {"workers": 8, "ordering_key": {"path": "PID-3.1"},
                                        "retry_interval_ms": 100, "max_interval_ms": 200, "max_attempts": 1000,
                                        "breaker_threshold": 0}}]}))
        eng.start()
        sent = []
        for n in range(10):
            for k in keys:
                body = hl7("%s-%d" % (k, n)).replace(b"PID|1||%s-%d^" % (k.encode(), n),
                                                      b"PID|1||%s^" % k.encode())
                body = body.replace(b"DOE^JANE", b"DOE^JANE|%d" % n)
                self.assertEqual(eng.request("POST", "/channels/lanes/in", body=body)[0], 201)
                sent.append((k, body))
        # while the first patient is refused, the others are delivered
        time.sleep(1.0)
        with s.lock:
            early = [pid for pid, _ in received]
        self.assertNotIn(keys[0], early)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(early) < 30:
            time.sleep(0.05)
            with s.lock:
                early = [pid for pid, _ in received]
        self.assertEqual(len(early), 30)
        self.assertNotIn(keys[0], early)
        blocked["on"] = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(received) < 40:
            time.sleep(0.05)
        self.assertEqual(len(received), 40)
        for k in keys:
            self.assertEqual([b for pid, b in received if pid == k], [b for kk, b in sent if kk == k])
        # The 40th delivery is recorded after the sink has answered it.
        self.assertTrue(wait_until(lambda: self.dest_stats(eng, "lanes")["x"]["sent"] == 40),
                        self.dest_stats(eng, "lanes"))
        _, ch = eng.get_json("/channels/lanes")
        self.assertEqual(ch["destinations"][0]["workers"], 8)
        self.assertEqual(ch["destinations"][0]["statistics"]["sent"], 40)


class EventTest(ChannelTestCase):
    def test_event_destination_feeds_event_source(self):
        eng = self.engine(start=False)
        out = os.path.join(self.workdir, "events")
        self.write_channel(eng, "pub.json", json.dumps({
            "id": "pub", "source": {"type": "http"},
            "destinations": [{"name": "ev", "type": "event", "event_type": "patient.created"}]}))
        self.write_channel(eng, "sub.json", json.dumps({
            "id": "sub", "source": {"type": "event", "event_type": "patient.*"},
            "destinations": [{"name": "f", "type": "file-write", "dir": out, "filename": "${id}.json"}]}))
        eng.start()
        status, _, _ = eng.request("POST", "/channels/pub/in", body=b'{"resourceType": "Patient"}',
                                   headers={"Content-Type": "application/fhir+json"})
        self.assertEqual(status, 201)
        status, _, _ = eng.request("POST", "/events/patient.updated", body=b'{"id": "p1"}')
        self.assertEqual(status, 201)
        status, _, _ = eng.request("POST", "/events/document.uploaded", body=b'{"id": "d1"}')
        self.assertEqual(status, 201)
        deadline = time.monotonic() + 10
        files = []
        while time.monotonic() < deadline and len(files) < 2:
            files = sorted(f for f in os.listdir(out) if not f.startswith(".")) if os.path.isdir(out) else []
            time.sleep(0.05)
        time.sleep(0.3)
        got = sorted(open(os.path.join(out, f), "rb").read() for f in os.listdir(out) if not f.startswith("."))
        self.assertEqual(got, sorted([b'{"resourceType": "Patient"}', b'{"id": "p1"}']))


class TogetherTest(ChannelTestCase):
    def test_every_type_together_then_clean_exit(self):
        """Every built-in type at once, operations, reloads; exit 0 without sanitizer reports."""
        a, b = self.sink(), self.sink(start=False)
        eng = self.engine(start=False)
        self.fanout(eng, a, b)
        out = os.path.join(self.workdir, "o")
        self.write_channel(eng, "x.json", json.dumps({"id": "x", "source": {"type": "http"},
            "filter": {"fhirpath": "Patient.active = true"},
            "steps": [{"type": "set", "pointer": "/a/b", "value": 1}],
            "destinations": [{"name": "f", "type": "file-write", "dir": out},
                             {"name": "c", "type": "channel", "channel": "lab-fanout"},
                             {"name": "e", "type": "event", "event_type": "patient.updated"}]}))
        port = free_port()
        self.write_channel(eng, "m.json", json.dumps({"id": "m", "source": {"type": "mllp", "listen": "127.0.0.1:%d" % port},
            "filter": {"path": "MSH-9.1", "equals": "ORU"},
            "destinations": [{"name": "s", "type": "mllp-send", "host": "127.0.0.1", "port": eng.mllp_port}]}))
        self.write_channel(eng, "t.json", json.dumps({"id": "t", "source": {"type": "timer", "interval_ms": 50},
            "destinations": [{"name": "f", "type": "file-write", "dir": out}]}))
        self.write_channel(eng, "ev.json", json.dumps({"id": "ev", "source": {"type": "event", "event_type": "*"}}))
        eng.start()
        for i in range(5):
            eng.request("POST", "/channels/lab-fanout/in", body=b"m%d" % i)
            eng.request("POST", "/channels/x/in", body=b'{"resourceType":"Patient","active":true}')
            eng.request("POST", "/channels/x/in", body=b'{"resourceType":"Patient","active":false}')
            eng.request("POST", "/channels/x/in", body=b'not json')
        mllp_roundtrip(port, [hl7("A%d" % i) for i in range(5)] + [b"junk"])
        eng.get_json("/channels"); eng.get_json("/channels/x/messages?text=Patient"); eng.get_json("/channels/x/messages/2")
        eng.post_json("/channels/x/messages/2/reprocess", {})
        eng.post_json("/channels/lab-fanout/destinations/a/pause", {})
        eng.post_json("/channels/lab-fanout/destinations/a/resume", {})
        eng.post_json("/channels/lab-fanout/deploy", {})
        eng.signal(signal.SIGHUP)
        time.sleep(1.5)
        eng.post_json("/channels/t/undeploy", {})
        self.assertEqual(eng.stop(), 0)
        err = eng.stderr()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
            self.assertNotIn(bad, err, err[-3000:])


class PruneTest(ChannelTestCase):
    def test_prune_deletes_finished_messages_and_gives_pages_back(self):
        s = self.sink()
        eng = self.engine(start=False)
        self.write_channel(eng, "big.json", json.dumps({
            "id": "big", "source": {"type": "http"},
            "destinations": [{"name": "x", "type": "http-send", "url": "http://127.0.0.1:%d/" % s.port}]}))
        eng.start()
        body = b"lorem ipsum " * 2000  # 24 KB
        for _ in range(1200):
            self.assertEqual(eng.request("POST", "/channels/big/in", body=body)[0], 201)
        self.assertTrue(s.wait_for(1200, timeout=60))
        # Prune takes finished messages only: wait until the last delivery is recorded.
        self.assertTrue(wait_until(lambda: self.dest_stats(eng, "big")["x"]["sent"] == 1200),
                        self.dest_stats(eng, "big"))
        status, res = eng.post_json("/channels/big/prune?before=%d" % (int(time.time() * 1000) + 1000), {})
        self.assertEqual(status, 200)
        self.assertEqual(res["pruned"], 1200)  # in two jobs of at most 1,000
        self.assertLess(res["pages_after"], res["pages_before"] / 4)
        _, lst = eng.get_json("/channels/big/messages")
        self.assertEqual(lst["messages"], [])
        _, lst = eng.get_json("/channels/big/messages?text=lorem")
        self.assertEqual(lst["messages"], [])


class FhirEventTest(ChannelTestCase):
    def test_patient_created_in_fhir_store_reaches_an_event_channel(self):
        eng = self.engine(start=False)
        out = os.path.join(self.workdir, "ev")
        self.write_channel(eng, "pat.json", json.dumps({
            "id": "pat", "source": {"type": "event", "event_type": "patient.*"},
            "destinations": [{"name": "f", "type": "file-write", "dir": out, "filename": "${id}.json"}]}))
        eng.start()
        status, _, body = eng.request("POST", "/fhir/Patient",
                                      body=json.dumps({"resourceType": "Patient", "active": True}),
                                      headers={"Content-Type": "application/fhir+json"})
        self.assertIn(status, (200, 201), body)
        deadline = time.monotonic() + 10
        files = []
        while time.monotonic() < deadline and not files:
            files = [f for f in os.listdir(out) if not f.startswith(".")] if os.path.isdir(out) else []
            time.sleep(0.05)
        self.assertEqual(len(files), 1)
        with open(os.path.join(out, files[0])) as f:
            ev = json.load(f)
        self.assertEqual(ev["resourceType"], "Patient")
        self.assertEqual(ev["version"], 1)


class CliTest(ChannelTestCase):
    def test_channel_test_on_shipped_channel(self):
        from harness import SRCDIR
        msg = os.path.join(self.workdir, "oru.hl7")
        with open(msg, "wb") as f:
            f.write(hl7("C9") + b"OBR|1||C9|2345-7^Glucose^LN\r"
                    b"OBX|1|NM|2345-7^Glucose^LN||95|mg/dL|70-99|N|||F\r")
        shipped = os.path.join(SRCDIR, "channels", "hl7v2-inbound.json")
        code, out, err = run_cli("channel", "test", shipped, msg)
        self.assertEqual(code, 0, err + out)
        self.assertIn("channel hl7v2-inbound", out)
        self.assertIn("dry run", out)
        self.assertIn("source: mllp", out)
        self.assertIn("filter: none", out)
        # Every stage: the mapping's Bundle, the LOINC step's (longer: codes and units
        # added), and both destinations.
        self.assertRegex(out, r"step 1 \(hl7v2-to-fhir\) output \(\d+ bytes\):\n  \{\"resourceType\":\"Bundle\"")
        sizes = [int(x) for x in re.findall(r"step \d \([a-z0-9-]+\) output \((\d+) bytes\)", out)]
        self.assertEqual(len(sizes), 2, out)
        self.assertGreater(sizes[1], sizes[0])
        self.assertIn("destination store (fhir-store): would receive %d bytes, content type "
                      "application/fhir+json" % sizes[1], out)
        self.assertIn("destination audit (audit): would receive %d bytes" % sizes[1], out)
        code, out, err = run_cli("channel", "validate", shipped)
        self.assertEqual(code, 0, err + out)

    def test_channel_test_reports_a_failing_step(self):
        from harness import SRCDIR
        msg = os.path.join(self.workdir, "obs.json")
        with open(msg, "w") as f:
            f.write('{"resourceType": "Observation", "status": "final"}')
        code, out, err = run_cli("channel", "test",
                                 os.path.join(SRCDIR, "channels", "examples", "fhir-intake.json"), msg)
        self.assertEqual(code, 1)
        self.assertIn("step 1 (validate): ERROR: 1 validation error", out)
        self.assertIn("Observation.code", out)

    def test_validate_every_shipped_example(self):
        from harness import SRCDIR
        d = os.path.join(SRCDIR, "channels", "examples")
        files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json"))
        self.assertGreaterEqual(len(files), 5)
        code, out, err = run_cli("channel", "validate", *files)
        self.assertEqual(code, 0, err)
        self.assertEqual(out.count(": ok"), len(files))

    def test_validate_reports_file_line_column(self):
        path = os.path.join(self.workdir, "bad.json")
        with open(path, "w") as f:
            f.write('{"id": "x",\n "source": {"type": "mllp", "listen": "nowhere"}}')
        code, out, err = run_cli("channel", "validate", path)
        self.assertEqual(code, 2)
        self.assertEqual(err.strip(), path + ':2:29: "listen" must be "host:port" or ":port"')


class DeadLetterTest(ChannelTestCase):
    def test_dead_letter_after_max_attempts_then_requeue(self):
        s = self.sink()
        s.status = 503
        eng = self.engine(start=False)
        self.write_channel(eng, "dl.json", json.dumps({
            "id": "dl", "source": {"type": "http"},
            "destinations": [{"name": "x", "type": "http-send",
                              "url": "http://127.0.0.1:%d/in" % s.port,
                              "queue": {"retry_interval_ms": 20, "max_attempts": 3,
                                        "breaker_threshold": 0}}]}))
        eng.start()
        status, _, data = eng.request("POST", "/channels/dl/in", body=b"hello")
        self.assertEqual(status, 201)
        mid = json.loads(data)["id"]
        deadline = time.monotonic() + 10
        dead = []
        while time.monotonic() < deadline and not dead:
            _, body = eng.get_json("/channels/dl/deadletter")
            dead = body["dead_letters"]
            time.sleep(0.05)
        self.assertEqual(len(dead), 1)
        self.assertEqual(dead[0]["message"], mid)
        self.assertEqual(dead[0]["attempts"], 3)
        self.assertEqual(dead[0]["last_error"], "HTTP 503")
        _, msg = eng.get_json("/channels/dl/messages/%s" % mid)
        self.assertEqual(msg["status"], "errored")
        self.assertEqual(msg["content"], "hello")
        s.status = 200
        status, body = eng.post_json("/channels/dl/deadletter/requeue", {})
        self.assertEqual(status, 200)
        self.assertEqual(body["requeued"], 1)
        self.assertTrue(s.wait_for(1))
        self.assertEqual(s.bodies(), [b"hello"])
        # reprocess sends it again, with the same message id
        status, _ = eng.post_json("/channels/dl/messages/%s/reprocess" % mid, {})
        self.assertEqual(status, 200)
        self.assertTrue(s.wait_for(2))
        self.assertEqual(s.ids(), [mid, mid])

    def test_pause_stop_start_and_destination_pause(self):
        s = self.sink()
        eng = self.engine(start=False)
        self.write_channel(eng, "p.json", json.dumps({
            "id": "p", "source": {"type": "http"},
            "destinations": [{"name": "x", "type": "http-send", "url": "http://127.0.0.1:%d/" % s.port}]}))
        eng.start()
        self.assertEqual(eng.post_json("/channels/p/destinations/x/pause", {})[0], 200)
        self.assertEqual(eng.request("POST", "/channels/p/in", body=b"1")[0], 201)
        time.sleep(0.5)
        self.assertEqual(s.bodies(), [])  # queued while the destination is paused
        self.assertEqual(eng.post_json("/channels/p/pause", {})[0], 200)
        self.assertEqual(eng.request("POST", "/channels/p/in", body=b"2")[0], 503)  # source off
        eng.post_json("/channels/p/destinations/x/resume", {})
        self.assertTrue(s.wait_for(1))  # the queue of a paused channel still delivers
        eng.post_json("/channels/p/stop", {})
        _, ch = eng.get_json("/channels/p")
        self.assertEqual(ch["state"], "stopped")
        eng.post_json("/channels/p/start", {})
        self.assertEqual(eng.request("POST", "/channels/p/in", body=b"3")[0], 201)
        self.assertTrue(s.wait_for(2))
        self.assertEqual(s.bodies(), [b"1", b"3"])

    def test_filter_accounting_and_browser(self):
        s = self.sink()
        eng = self.engine(start=False)
        self.write_channel(eng, "f.json", """{
          "id": "f", "source": {"type": "http"},
          // only JSON passes
          "filter": {"any": [{"metadata": "content_type", "equals": "application/json"}],
                     "name": "json-only"},
          "destinations": [{"name": "x", "type": "http-send", "url": "http://127.0.0.1:%d/"}]
        }""" % s.port)
        eng.start()
        eng.request("POST", "/channels/f/in", body=b'{"a": "needle"}',
                    headers={"Content-Type": "application/json"})
        eng.request("POST", "/channels/f/in", body=b"plain", headers={"Content-Type": "text/plain"})
        self.assertTrue(s.wait_for(1))
        time.sleep(0.3)
        self.assertEqual(s.bodies(), [b'{"a": "needle"}'])
        _, ch = eng.get_json("/channels/f")
        self.assertEqual(ch["statistics"]["received"], 2)
        self.assertEqual(ch["statistics"]["filtered"], 1)
        # bulk reprocess of the filtered ones: still filtered, by the same rule
        status, body = eng.post_json("/channels/f/reprocess?status=filtered", {})
        self.assertEqual(status, 200)
        self.assertEqual(body, {"reprocessed": 1, "failed": 0})
        _, ch = eng.get_json("/channels/f")
        self.assertEqual(ch["statistics"]["filtered"], 1)
        _, lst = eng.get_json("/channels/f/messages?status=filtered")
        self.assertEqual(len(lst["messages"]), 1)
        self.assertEqual(lst["messages"][0]["filtered_by"], "json-only")
        _, lst = eng.get_json("/channels/f/messages?text=needle")
        self.assertEqual(len(lst["messages"]), 1)
        _, lst = eng.get_json("/channels/f/messages?limit=1")
        self.assertEqual(len(lst["messages"]), 1)
        self.assertIsNotNone(lst["next"])
        _, lst2 = eng.get_json("/channels/f/messages?limit=1&cursor=%s" % lst["next"])
        self.assertEqual(len(lst2["messages"]), 1)
        self.assertLess(int(lst2["messages"][0]["id"]), int(lst["messages"][0]["id"]))


class ReloadTest(ChannelTestCase):
    def test_invalid_file_refused_running_version_kept(self):
        s1, s2 = self.sink(), self.sink()
        eng = self.engine(start=False)
        tmpl = '{"id": "r", "source": {"type": "http"}, "destinations": [{"name": "x", "type": "http-send", "url": "http://127.0.0.1:%d/"}]}'
        self.write_channel(eng, "r.json", tmpl % s1.port)
        eng.start()
        eng.request("POST", "/channels/r/in", body=b"one")
        self.assertTrue(s1.wait_for(1))
        # a broken version is refused: the running one keeps working
        self.write_channel(eng, "r.json", '{"id": "r",\n  "source": {"type": "htp"}}')
        eng.signal(signal.SIGHUP)
        time.sleep(0.5)
        eng.request("POST", "/channels/r/in", body=b"two")
        self.assertTrue(s1.wait_for(2))
        _, lst = eng.get_json("/channels")
        self.assertIn("r.json:2:22: unknown source type \"htp\"", lst["last_refused"])
        # a valid change is deployed on SIGHUP
        self.write_channel(eng, "r.json", tmpl % s2.port)
        eng.signal(signal.SIGHUP)
        time.sleep(0.5)
        eng.request("POST", "/channels/r/in", body=b"three")
        self.assertTrue(s2.wait_for(1))
        self.assertEqual(s2.bodies(), [b"three"])
        self.assertEqual(s1.bodies(), [b"one", b"two"])
        # POST deploy of a broken file answers 422 with the position
        self.write_channel(eng, "r.json", '{"id": "r", "source": {"type": "http"}, "x": 1}')
        status, body = eng.post_json("/channels/r/deploy", {})
        self.assertEqual(status, 422)
        self.assertIn("r.json:1:41: unknown key", body["message"])

    def test_cycle_of_channel_destinations_refused(self):
        eng = self.engine(start=False)
        self.write_channel(eng, "a.json", json.dumps({
            "id": "a", "source": {"type": "http"},
            "destinations": [{"name": "to-b", "type": "channel", "channel": "b"}]}))
        self.write_channel(eng, "b.json", json.dumps({
            "id": "b", "source": {"type": "http"},
            "destinations": [{"name": "to-a", "type": "channel", "channel": "a"}]}))
        eng.start()
        _, lst = eng.get_json("/channels")
        # Besides the built-in hl7v2-inbound (the MLLP listener on --mllp).
        self.assertEqual(len(files_channels(lst)), 1)
        self.assertIn("form a cycle", lst["last_refused"])

    def test_duplicate_mllp_port_refused(self):
        eng = self.engine(start=False)
        port = free_port()
        for name in ("m1", "m2"):
            self.write_channel(eng, name + ".json", json.dumps({
                "id": name, "source": {"type": "mllp", "listen": "127.0.0.1:%d" % port}}))
        eng.start()
        _, lst = eng.get_json("/channels")
        self.assertEqual(len(files_channels(lst)), 1)
        self.assertIn("cannot listen on 127.0.0.1:%d" % port, lst["last_refused"])
        acks = mllp_roundtrip(port, [hl7("D1")])
        self.assertIn(b"MSA|AA|D1", acks[0])

    def test_stop_does_not_wait_for_a_hanging_peer(self):
        import socket
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)  # accepts (in the kernel), never answers
        self.addCleanup(hole.close)
        eng = self.engine(start=False)
        self.write_channel(eng, "hang.json", json.dumps({
            "id": "hang", "source": {"type": "http"},
            "destinations": [
                {"name": "h", "type": "http-send", "timeout_ms": 60000,
                 "url": "http://127.0.0.1:%d/" % hole.getsockname()[1]},
                {"name": "m", "type": "mllp-send", "host": "127.0.0.1", "port": hole.getsockname()[1],
                 "ack_timeout_ms": 60000}]}))
        eng.start()
        self.assertEqual(eng.request("POST", "/channels/hang/in", body=hl7("H1"))[0], 201)
        time.sleep(0.5)
        self.assertEqual(eng.post_json("/channels/hang/undeploy", {})[0], 200)
        self.assertEqual(eng.stop(timeout=10), 0)  # not held by the 60 s timeouts

    def test_missing_module_type_refused_with_clear_message(self):
        # Every type of the catalog is provided by some module; one left out of --services
        # (here the mapping module) does not register its types, and a channel naming one
        # is refused with a message that says so.
        eng = self.engine(start=False)
        eng.args += ["--services", "fhir,fhir-channels,hl7v2,hl7v2-channels,channels"]
        self.write_channel(eng, "m.json", '{"id": "m", "source": {"type": "http"},\n'
                           ' "steps": [{"type": "ccda-to-fhir"}]}')
        eng.start()
        _, lst = eng.get_json("/channels")
        self.assertEqual([c["id"] for c in files_channels(lst)], [])
        self.assertIn("m.json:2:21: step type \"ccda-to-fhir\" is not available",
                      lst["last_refused"])


def files_channels(lst):
    """The channels of GET /channels other than the built-in hl7v2-inbound."""
    return [c for c in lst["channels"] if c["id"] != "hl7v2-inbound"]


def hl7(control_id, trigger="ORU^R01^ORU_R01"):
    return ("MSH|^~\\&|LAB|FAC|HV|HV|20240101120000||%s|%s|P|2.5.1\r"
            "PID|1||%s^^^MRN^MR||DOE^JANE\r" % (trigger, control_id, control_id)).encode()


def mllp_roundtrip(port, msgs, timeout=10):
    """Sends each message on one connection and returns the ACK frames."""
    import socket
    acks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        buf = b""
        for m in msgs:
            sock.sendall(b"\x0b" + m + b"\x1c\r")
            while b"\x1c\r" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return acks
                buf += chunk
            frame, buf = buf.split(b"\x1c\r", 1)
            acks.append(frame.lstrip(b"\x0b"))
    return acks


class MllpChannelTest(ChannelTestCase):
    def test_mllp_source_filter_file_write_and_mllp_send(self):
        eng = self.engine(start=False)
        port = free_port()
        out = os.path.join(self.workdir, "out")
        self.write_channel(eng, "v2.json", json.dumps({
            "id": "v2", "source": {"type": "mllp", "listen": "127.0.0.1:%d" % port},
            "filter": {"path": "MSH-9.1", "in": ["ORU", "ADT"], "name": "lab-and-adt"},
            "destinations": [
                {"name": "files", "type": "file-write", "dir": out, "filename": "${id}.hl7"},
                {"name": "fwd", "type": "mllp-send", "host": "127.0.0.1", "port": eng.mllp_port,
                 "when": {"path": "MSH-9.1", "equals": "ORU"}}]}))
        eng.start()
        acks = mllp_roundtrip(port, [hl7("C1"), hl7("C2", "SIU^S12^SIU_S12"), hl7("C3", "ADT^A01^ADT_A01"),
                                     b"garbage"])
        self.assertEqual(len(acks), 4)
        self.assertIn(b"MSA|AR", acks[3])  # a frame without MSH is rejected, not stored
        self.assertIn(b"MSA|AA|C1", acks[0])
        self.assertIn(b"MSA|AA|C2", acks[1])  # stored (and filtered), so accepted
        self.assertIn(b"MSA|AA|C3", acks[2])
        deadline = time.monotonic() + 10
        files = []
        while time.monotonic() < deadline and len(files) < 2:
            files = sorted(f for f in os.listdir(out) if not f.startswith(".")) if os.path.isdir(out) else []
            time.sleep(0.05)
        self.assertEqual(len(files), 2)
        got = [open(os.path.join(out, f), "rb").read() for f in files]
        self.assertEqual(sorted(got), sorted([hl7("C1"), hl7("C3", "ADT^A01^ADT_A01")]))
        # only the ORU went on over MLLP, into the hl7v2-inbound store
        deadline = time.monotonic() + 10
        inbound = []
        while time.monotonic() < deadline and not inbound:
            _, body = eng.get_json("/channels/hl7v2-inbound/messages")
            inbound = body["messages"]
            time.sleep(0.05)
        self.assertEqual([m["source_key"] for m in inbound], ["msh:LAB|FAC|C1"])
        _, ch = eng.get_json("/channels/v2")
        self.assertEqual(ch["statistics"]["received"], 3)
        self.assertEqual(ch["statistics"]["filtered"], 1)
        _, lst = eng.get_json("/channels/v2/messages?status=filtered")
        self.assertEqual(lst["messages"][0]["filtered_by"], "lab-and-adt")

    def test_garbage_frame_gets_reject_ack(self):
        eng = self.engine(start=False)
        port = free_port()
        self.write_channel(eng, "g.json", json.dumps({
            "id": "g", "source": {"type": "mllp", "listen": "127.0.0.1:%d" % port}}))
        eng.start()
        acks = mllp_roundtrip(port, [b"not hl7 at all"])
        self.assertEqual(len(acks), 1)
        self.assertIn(b"MSA|AR", acks[0])

    def test_hot_reload_while_mllp_flows_on_another_channel(self):
        s1 = self.sink()
        eng = self.engine(start=False)
        port = free_port()
        self.write_channel(eng, "v2.json", json.dumps({
            "id": "v2", "source": {"type": "mllp", "listen": "127.0.0.1:%d" % port}}))
        tmpl = '{"id": "h", "source": {"type": "http"}, "name": "%s", "destinations": [{"name": "x", "type": "http-send", "url": "http://127.0.0.1:%d/"}]}'
        self.write_channel(eng, "h.json", tmpl % ("v1", s1.port))
        eng.start()
        results = []

        def traffic():
            results.extend(mllp_roundtrip(port, [hl7("T%d" % i) for i in range(300)]))

        t = threading.Thread(target=traffic)
        t.start()
        for i in range(5):
            self.write_channel(eng, "h.json", tmpl % ("v%d" % (i + 2), s1.port))
            eng.signal(signal.SIGHUP)
            time.sleep(0.05)
        t.join(30)
        self.assertEqual(len(results), 300)
        for i, a in enumerate(results):
            self.assertIn(b"MSA|AA|T%d\r" % i, a + b"\r")
        _, ch = eng.get_json("/channels/h")
        self.assertEqual(ch["name"], "v6")


if __name__ == "__main__":
    main()
