"""test_channel_sources.py — the file source, the split-bundle step and the
"after-destinations" response, through a real `holovitals serve`.

file: files appear in a polled directory (written whole with the .tmp rename
convention, or slowly without it), each becomes one message exactly once, and is
moved to done/ after the commit; a file too large goes to error/; a file put
back in place after it was stored (the state a crash between commit and move
leaves) is recognised by its key and not stored twice.
split-bundle: a Bundle becomes one message per entry (or per resource type),
each delivered on its own; the Bundle is stored as "split" with its parts' ids.
after-destinations: the HTTP answer waits for the named destinations: 201 once
delivered, 504 at the timeout, 502 when a destination dead-letters the message.
"""

import json
import os
import socket
import time

import test_channels as tc
from harness import free_port, main, run_cli, wait_until


def wait_files(d, n, timeout=10):
    deadline = time.monotonic() + timeout
    names = []
    while time.monotonic() < deadline:
        names = sorted(f for f in os.listdir(d) if not f.startswith(".")) if os.path.isdir(d) else []
        if len(names) >= n:
            return names
        time.sleep(0.05)
    return names


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def put(path, data, mtime_ago=None):
    """Writes a file with the .tmp rename convention (never seen half-written)."""
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    if mtime_ago is not None:
        t = time.time() - mtime_ago
        os.utime(path + ".tmp", (t, t))
    os.rename(path + ".tmp", path)


def file_channel(inbox, out, **source):
    src = {"type": "file", "dir": inbox, "glob": "*.hl7", "poll_interval_ms": 100,
           "stable_ms": 200}
    src.update(source)
    return json.dumps({"id": "files", "source": src,
                       "destinations": [{"name": "out", "type": "file-write", "dir": out,
                                         "filename": "${id}.msg", "fsync": False}]})


class FileSourceTest(tc.ChannelTestCase):
    def setUp(self):
        super().setUp()
        self.inbox = os.path.join(self.workdir, "inbox")
        self.out = os.path.join(self.workdir, "out")
        os.makedirs(self.inbox)

    def messages(self, eng, channel="files"):
        status, _, data = eng.request("GET", "/channels/%s/messages?limit=100" % channel)
        self.assertEqual(status, 200, data)
        return json.loads(data)["messages"]

    def test_files_become_messages_once_in_order_and_move_to_done(self):
        eng = self.engine(start=False)
        self.write_channel(eng, "files.json", file_channel(self.inbox, self.out))
        # Older files first (modification time), whatever their names.
        put(os.path.join(self.inbox, "b.hl7"), b"MSH|first", mtime_ago=30)
        put(os.path.join(self.inbox, "a.hl7"), b"MSH|second", mtime_ago=20)
        put(os.path.join(self.inbox, "skip.txt"), b"not matched by the glob", mtime_ago=20)
        eng.start()
        put(os.path.join(self.inbox, "c.hl7"), b"MSH|third")
        names = wait_files(self.out, 3)
        self.assertEqual(len(names), 3, names)
        got = [read(os.path.join(self.out, n)) for n in sorted(names, key=lambda n: int(n.split(".")[0]))]
        self.assertEqual(got, [b"MSH|first", b"MSH|second", b"MSH|third"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and set(os.listdir(self.inbox)) != {"skip.txt", "done", "error"}:
            time.sleep(0.05)
        self.assertEqual(set(os.listdir(self.inbox)), {"skip.txt", "done", "error"})
        self.assertEqual(sorted(os.listdir(os.path.join(self.inbox, "done"))), ["a.hl7", "b.hl7", "c.hl7"])
        msgs = self.messages(eng)
        self.assertEqual(len(msgs), 3)
        self.assertTrue(all(m["content_type"] == "x-application/hl7-v2+er7" for m in msgs), msgs)
        eng.stop()

    def test_a_file_still_being_written_is_read_whole(self):
        eng = self.engine(start=False)
        self.write_channel(eng, "files.json", file_channel(self.inbox, self.out, stable_ms=400))
        eng.start()
        path = os.path.join(self.inbox, "slow.hl7")
        with open(path, "wb") as f:  # no .tmp: the source must wait for it to be stable
            f.write(b"MSH|part one;")
            f.flush()
            time.sleep(0.2)
            f.write(b"part two")
        names = wait_files(self.out, 1)
        self.assertEqual(len(names), 1)
        self.assertEqual(read(os.path.join(self.out, names[0])), b"MSH|part one;part two")
        time.sleep(0.3)
        self.assertEqual(len(os.listdir(self.out)), 1)
        eng.stop()

    def test_a_file_put_back_after_it_was_stored_is_not_stored_twice(self):
        """The state a crash between the commit and the move leaves: the file is still in
        the inbox though its message is stored. Its key (name, size, mtime, inode) finds
        the stored message: nothing new is stored or delivered, and the file is moved."""
        eng = self.engine(start=False)
        self.write_channel(eng, "files.json", file_channel(self.inbox, self.out))
        put(os.path.join(self.inbox, "x.hl7"), b"MSH|once", mtime_ago=5)
        eng.start()
        self.assertEqual(len(wait_files(self.out, 1)), 1)
        done = os.path.join(self.inbox, "done", "x.hl7")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not os.path.exists(done):
            time.sleep(0.05)
        eng.kill9()
        os.rename(done, os.path.join(self.inbox, "x.hl7"))  # same inode, size and mtime
        eng.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not os.path.exists(done):
            time.sleep(0.05)
        self.assertTrue(os.path.exists(done), os.listdir(self.inbox))
        time.sleep(0.3)
        self.assertEqual(len(self.messages(eng)), 1)
        self.assertEqual(len(os.listdir(self.out)), 1)
        # A new file of the same name and content is a new message.
        put(os.path.join(self.inbox, "x.hl7"), b"MSH|once", mtime_ago=5)
        self.assertEqual(len(wait_files(self.out, 2)), 2)
        self.assertEqual(len(self.messages(eng)), 2)
        eng.stop()

    def test_a_file_over_max_size_goes_to_the_error_folder(self):
        eng = self.engine(start=False)
        self.write_channel(eng, "files.json", file_channel(self.inbox, self.out, max_size=1024,
                                                          after="delete"))
        put(os.path.join(self.inbox, "big.hl7"), b"x" * 2048, mtime_ago=5)
        put(os.path.join(self.inbox, "ok.hl7"), b"MSH|small", mtime_ago=5)
        eng.start()
        self.assertEqual(len(wait_files(self.out, 1)), 1)
        err = os.path.join(self.inbox, "error")
        self.assertEqual(wait_files(err, 1), ["big.hl7"])
        # ok.hl7 is deleted after its message's commit, which its delivery does not wait for.
        self.assertTrue(wait_until(lambda: sorted(os.listdir(self.inbox)) == ["error"]),
                        os.listdir(self.inbox))
        self.assertEqual(sorted(os.listdir(self.inbox)), ["error"])  # ok.hl7 deleted, no done/
        self.assertEqual(len(self.messages(eng)), 1)
        self.assertTrue(any(e.get("event") == "channel.file.refused" for e in eng.log_events()))
        eng.stop()

    def test_validate_rejects_bad_file_source_keys(self):
        path = os.path.join(self.workdir, "bad.json")
        for source, needle in [({"type": "file"}, "needs \"dir\""),
                               ({"type": "file", "dir": "/tmp/x", "after": "keep"}, "move or delete"),
                               ({"type": "file", "dir": "/tmp/x", "poll_interval_ms": 1}, "poll_interval_ms"),
                               ({"type": "file", "dir": "/tmp/x", "move_to": "/tmp/x"}, "must not be"),
                               ({"type": "file", "dir": "/tmp/x", "glb": "*"}, "unknown key")]:
            with open(path, "w") as f:
                json.dump({"id": "f", "source": source}, f)
            code, out, err = run_cli("channel", "validate", path)
            self.assertNotEqual(code, 0, source)
            self.assertIn(needle, err, source)
            self.assertIn("bad.json:", err)


BUNDLE = {"resourceType": "Bundle", "type": "transaction", "entry": [
    {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p1"}},
    {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation", "id": "o1", "status": "final"}},
    {"request": {"method": "DELETE", "url": "Patient/x"}},
    {"fullUrl": "urn:uuid:3", "resource": {"resourceType": "Observation", "id": "o2", "status": "final"}},
]}


class SplitBundleTest(tc.ChannelTestCase):
    def split_channel(self, eng, out, **step):
        st = {"type": "split-bundle"}
        st.update(step)
        self.write_channel(eng, "split.json", json.dumps({
            "id": "split", "source": {"type": "http"},
            "steps": [st, {"type": "set", "pointer": "/meta/tag", "value": "split"}],
            "destinations": [{"name": "f", "type": "file-write", "dir": out,
                              "filename": "${id}.json", "fsync": False}]}))

    def get_msg(self, eng, path):
        status, obj = eng.get_json(path)
        self.assertEqual(status, 200, obj)
        return obj

    def post(self, eng, obj):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        status, _, data = eng.request("POST", "/channels/split/in", body=body,
                                      headers={"Content-Type": "application/fhir+json"})
        self.assertEqual(status, 201, data)
        return json.loads(data)["id"]

    def test_one_message_per_entry_each_through_the_later_steps(self):
        out = os.path.join(self.workdir, "out")
        eng = self.engine(start=False)
        self.split_channel(eng, out)
        eng.start()
        mid = self.post(eng, BUNDLE)
        names = wait_files(out, 3)
        self.assertEqual(len(names), 3, names)
        got = [json.loads(read(os.path.join(out, n)))
               for n in sorted(names, key=lambda n: int(n.split(".")[0]))]
        self.assertEqual([g["id"] for g in got], ["p1", "o1", "o2"])
        self.assertTrue(all(g["meta"]["tag"] == "split" for g in got))
        m = self.get_msg(eng, "/channels/split/messages/%s" % mid)
        self.assertEqual(m["status"], "split")
        self.assertEqual(m["destinations"], [])
        self.assertEqual(len(m["parts"]), 3)
        part = self.get_msg(eng, "/channels/split/messages/%s" % m["parts"][1])
        self.assertEqual(part["parent"], mid)
        self.assertEqual(json.loads(part["content"])["id"], "o1")
        self.assertEqual(part["content_type"], "application/fhir+json")
        # Reprocessing a part runs only the steps after the split (no second split).
        status, _, data = eng.request("POST", "/channels/split/messages/%s/reprocess" % m["parts"][1])
        self.assertEqual(status, 200, data)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            part = self.get_msg(eng, "/channels/split/messages/%s" % m["parts"][1])
            if [d["state"] for d in part["destinations"]] == ["sent", "sent"]:
                break
            time.sleep(0.05)
        self.assertEqual([d["state"] for d in part["destinations"]], ["sent", "sent"], part)
        self.assertEqual(part["status"], "sent")
        self.assertNotIn("parts", part)
        self.assertEqual(len(os.listdir(out)), 3)  # the same id: the same file again
        eng.stop()

    def test_by_resource_type_makes_one_bundle_per_type(self):
        out = os.path.join(self.workdir, "out")
        eng = self.engine(start=False)
        self.split_channel(eng, out, by="resource-type")
        eng.start()
        self.post(eng, BUNDLE)
        names = wait_files(out, 2)
        self.assertEqual(len(names), 2)
        got = [json.loads(read(os.path.join(out, n)))
               for n in sorted(names, key=lambda n: int(n.split(".")[0]))]
        self.assertEqual([g["type"] for g in got], ["collection", "collection"])
        self.assertEqual([[e["resource"]["id"] for e in g["entry"]] for g in got], [["p1"], ["o1", "o2"]])
        self.assertEqual(got[1]["entry"][0]["fullUrl"], "urn:uuid:2")
        eng.stop()

    def test_not_a_bundle_or_too_many_parts_is_errored(self):
        out = os.path.join(self.workdir, "out")
        eng = self.engine(start=False)
        self.split_channel(eng, out, max_parts=2)
        eng.start()
        a = self.post(eng, {"resourceType": "Patient"})
        b = self.post(eng, b"not json")
        c = self.post(eng, BUNDLE)  # three parts > max_parts 2
        for mid, needle in [(a, "not a FHIR Bundle"), (b, "not a JSON object"), (c, "more than 2 parts")]:
            m = self.get_msg(eng, "/channels/split/messages/%s" % mid)
            self.assertEqual(m["status"], "errored")
            self.assertIn(needle, m["error"])
            self.assertIn("step 1 (split-bundle)", m["error"])
        time.sleep(0.2)
        self.assertFalse(os.path.isdir(out) and os.listdir(out))
        eng.stop()

    def test_two_split_steps_refused(self):
        path = os.path.join(self.workdir, "two.json")
        with open(path, "w") as f:
            json.dump({"id": "two", "source": {"type": "http"},
                       "steps": [{"type": "split-bundle"}, {"type": "split-bundle", "by": "x"}]}, f)
        code, _, err = run_cli("channel", "validate", path)
        self.assertNotEqual(code, 0)
        self.assertIn("two.json:", err)


class AfterDestinationsTest(tc.ChannelTestCase):
    def channel(self, eng, a, b, **extra):
        conf = {"id": "wait", "source": {"type": "http"}, "response": "after-destinations",
                "destinations": [
                    {"name": "a", "type": "http-send", "url": "http://127.0.0.1:%d/in" % a.port,
                     "queue": {"retry_interval_ms": 100, "max_attempts": 3, "jitter_pct": 0}},
                    {"name": "b", "type": "http-send", "url": "http://127.0.0.1:%d/in" % b.port,
                     "queue": {"retry_interval_ms": 100, "jitter_pct": 0}}]}
        conf.update(extra)
        self.write_channel(eng, "wait.json", json.dumps(conf))

    def test_answer_waits_for_delivery(self):
        a, b = self.sink(), self.sink()
        eng = self.engine(start=False)
        self.channel(eng, a, b)
        eng.start()
        for i in range(3):
            status, _, data = eng.request("POST", "/channels/wait/in", body=b"m%d" % i)
            self.assertEqual(status, 201, data)
            # Answered only after both destinations have it.
            self.assertEqual(len(a.bodies()), i + 1)
            self.assertEqual(len(b.bodies()), i + 1)

    def test_timeout_then_dead_letter_answers(self):
        a, b = self.sink(), self.sink(start=False)  # b is down
        eng = self.engine(start=False)
        self.channel(eng, a, b, response_timeout_ms=600)
        eng.start()
        t0 = time.monotonic()
        status, _, data = eng.request("POST", "/channels/wait/in", body=b"late")
        self.assertEqual(status, 504, data)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        self.assertIn("stored", json.loads(data)["message"] if data.startswith(b"{") else data.decode())
        # Only destination a named: b being down does not matter.
        self.channel(eng, a, b, response_destinations=["a"])
        status, _, data = eng.request("POST", "/channels/wait/deploy")
        self.assertEqual(status, 200, data)
        status, _, data = eng.request("POST", "/channels/wait/in", body=b"a-only")
        self.assertEqual(status, 201, data)
        # a refuses the message (400: error, dead-lettered at once): 502.
        a.status = 400
        status, _, data = eng.request("POST", "/channels/wait/in", body=b"refused")
        self.assertEqual(status, 502, data)
        eng.stop()

    def test_response_keys_checked(self):
        path = os.path.join(self.workdir, "r.json")
        for conf, needle in [
                ({"response_destinations": ["a"]}, "after-destinations"),
                ({"response": "after-destinations", "response_destinations": ["zz"]}, "no destination is named"),
                ({"response": "after-destinations", "response_timeout_ms": 0}, "response_timeout_ms")]:
            doc = {"id": "r", "source": {"type": "http"},
                   "destinations": [{"name": "a", "type": "file-write", "dir": "/tmp/x"}]}
            doc.update(conf)
            with open(path, "w") as f:
                json.dump(doc, f)
            code, _, err = run_cli("channel", "validate", path)
            self.assertNotEqual(code, 0, conf)
            self.assertIn(needle, err, conf)


class MllpSourceParityTest(tc.ChannelTestCase):
    def mllp_channel(self, eng, port, out, **source):
        src = {"type": "mllp", "listen": "127.0.0.1:%d" % port}
        src.update(source)
        self.write_channel(eng, "v2.json", json.dumps({
            "id": "v2", "source": src,
            "destinations": [{"name": "f", "type": "file-write", "dir": out,
                              "filename": "${id}.hl7", "fsync": False}]}))

    def test_resend_within_window_is_acked_not_stored_again(self):
        eng = self.engine(start=False)
        port = free_port()
        out = os.path.join(self.workdir, "out")
        self.mllp_channel(eng, port, out)
        eng.start()
        acks = tc.mllp_roundtrip(port, [tc.hl7("R1"), tc.hl7("R2"), tc.hl7("R1")])
        self.assertEqual(len(acks), 3)
        self.assertTrue(all(b"MSA|AA|" in a for a in acks), acks)
        acks = tc.mllp_roundtrip(port, [tc.hl7("R2")])  # on another connection too
        self.assertIn(b"MSA|AA|R2", acks[0])
        self.assertEqual(len(wait_files(out, 2)), 2)
        time.sleep(0.3)
        self.assertEqual(len(os.listdir(out)), 2)
        _, ch = eng.get_json("/channels/v2")
        self.assertEqual(ch["statistics"]["received"], 2)
        eng.stop()

    def test_no_dedup_when_window_is_zero(self):
        eng = self.engine(start=False)
        port = free_port()
        out = os.path.join(self.workdir, "out")
        self.mllp_channel(eng, port, out, dedup_window_ms=0)
        eng.start()
        acks = tc.mllp_roundtrip(port, [tc.hl7("R1"), tc.hl7("R1")])
        self.assertEqual(len(acks), 2)
        self.assertEqual(len(wait_files(out, 2)), 2)
        eng.stop()

    def test_idle_timeout_and_connection_cap(self):
        eng = self.engine(start=False)
        port = free_port()
        out = os.path.join(self.workdir, "out")
        self.mllp_channel(eng, port, out, idle_timeout_ms=300, max_connections=2)
        eng.start()
        a = socket.create_connection(("127.0.0.1", port), timeout=5)
        b = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.1)
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.assertEqual(c.recv(10), b"")  # over the cap: closed at once
        c.close()
        # idle: closed by the engine after its 300 ms (the socket's 5 s timeout would raise;
        # the default idle timeout is 5 min)
        self.assertEqual(a.recv(10), b"")
        a.close()
        b.close()
        acks = tc.mllp_roundtrip(port, [tc.hl7("I1")])  # a fresh connection works
        self.assertIn(b"MSA|AA|I1", acks[0])
        eng.stop()

    def test_tls_with_client_certificates(self):
        import test_mllp_tls as tt
        certs = tt.Certs(os.path.join(self.workdir, "certs"))
        eng = self.engine(start=False)
        port = free_port()
        out = os.path.join(self.workdir, "out")
        self.mllp_channel(eng, port, out, tls_cert=certs.path("server.pem"),
                          tls_key=certs.path("server.key"), tls_client_ca=certs.path("ca.pem"))
        eng.start()
        c = tt.TlsMllpClient(port, certs.path("ca.pem"), cert=certs.path("client.pem"),
                             key=certs.path("client.key"))
        for cid in ("T1", "T2"):
            c.send(tc.hl7(cid))
            self.assertIn(b"MSA|AA|" + cid.encode(), c.read_frame())
        c.close()
        self.assertEqual(len(wait_files(out, 2)), 2)
        # No client certificate, or plaintext: no ACK, nothing stored.
        self.assertTrue(tt.refused(port, certs.path("ca.pem")))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"\x0b" + tc.hl7("P1") + b"\x1c\r")
            raw.settimeout(5)
            try:
                data = raw.recv(100)
            except OSError:
                data = b""
            self.assertNotIn(b"MSA", data)
        time.sleep(0.3)
        self.assertEqual(len(os.listdir(out)), 2)
        eng.stop()

    def test_after_destinations_ack_waits_and_ae_on_timeout(self):
        sink = self.sink(start=False)  # down
        eng = self.engine(start=False)
        port = free_port()
        self.write_channel(eng, "v2.json", json.dumps({
            "id": "v2", "source": {"type": "mllp", "listen": "127.0.0.1:%d" % port},
            "response": "after-destinations", "response_timeout_ms": 500,
            "destinations": [{"name": "h", "type": "http-send",
                              "url": "http://127.0.0.1:%d/in" % sink.port,
                              "queue": {"retry_interval_ms": 100, "jitter_pct": 0}}]}))
        eng.start()
        t0 = time.monotonic()
        acks = tc.mllp_roundtrip(port, [tc.hl7("W1")])
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertIn(b"MSA|AE|W1", acks[0])
        sink.start()
        self.assertTrue(sink.wait_for(1))
        acks = tc.mllp_roundtrip(port, [tc.hl7("W2")])
        self.assertIn(b"MSA|AA|W2", acks[0])
        self.assertEqual(len(sink.bodies()), 2)  # delivered before the ACK
        # W1 resent after the AE: recognised, not stored a second time.
        acks = tc.mllp_roundtrip(port, [tc.hl7("W1")])
        self.assertIn(b"MSA|AA|W1", acks[0])
        time.sleep(0.3)
        self.assertEqual(len(sink.bodies()), 2)
        eng.stop()


if __name__ == "__main__":
    main()
