"""test_channels_queue.py — destination batches and the event bus's pruning.

- file-write writes the ready messages of its queue in one batch: a message whose file
  cannot be written (its name is taken by a directory) holds the queue — the messages
  after it are not written until it is, then all are, once each.
- chan_events is pruned: rows every subscriber has consumed go (the table shrinks);
  rows a paused event channel's cursor has not passed stay, across a kill -9, and
  reach the channel when it runs again.
"""

import json
import os
import sqlite3
import time

from harness import EngineTestCase, main, wait_until


def files_in(d):
    return sorted(f for f in os.listdir(d) if not f.startswith(".")) if os.path.isdir(d) else []


class FileWriteBatchTest(EngineTestCase):
    def test_file_write_batch_stops_at_a_failing_file_and_keeps_order(self):
        eng = self.engine(start=False)
        out = os.path.join(self.workdir, "out")
        with open(os.path.join(eng.channels, "fw.json"), "w") as f:
            f.write(json.dumps({
                "id": "fw", "source": {"type": "http"},
                "destinations": [{"name": "f", "type": "file-write", "dir": out,
                                  "filename": "${id}.msg", "fsync": False,
                                  "queue": {"retry_interval_ms": 100, "backoff": 1.0,
                                            "max_attempts": 1000, "breaker_threshold": 0}}]}))
        eng.start()
        # Queue 12 messages while the destination is paused, so that one fetch holds them all.
        self.assertEqual(eng.post_json("/channels/fw/destinations/f/pause", {})[0], 200)
        ids = []
        for i in range(12):
            status, _, data = eng.request("POST", "/channels/fw/in", body=b"m%02d" % i)
            self.assertEqual(status, 201, data)
            ids.append(json.loads(data)["id"])
        blocked = os.path.join(out, "%s.msg" % ids[5])
        os.makedirs(blocked)  # rename() over a directory fails: message 5 cannot be written
        self.assertEqual(eng.post_json("/channels/fw/destinations/f/resume", {})[0], 200)

        def failed_attempts():
            _, ch = eng.get_json("/channels/fw")
            return ch["destinations"][0]["statistics"]["failed_attempts"] >= 3
        self.assertTrue(wait_until(failed_attempts), "message 5 was never retried")
        written = [f for f in files_in(out) if f != os.path.basename(blocked)]
        self.assertEqual(written, sorted("%s.msg" % i for i in ids[:5]),
                         "only the messages before the failing one are written")
        _, ch = eng.get_json("/channels/fw")
        self.assertEqual(ch["destinations"][0]["statistics"]["queued"], 7)
        os.rmdir(blocked)
        self.assertTrue(wait_until(lambda: len(files_in(out)) == 12), files_in(out))
        for i, mid in enumerate(ids):
            with open(os.path.join(out, "%s.msg" % mid), "rb") as f:
                self.assertEqual(f.read(), b"m%02d" % i)

        def stats():
            _, ch = eng.get_json("/channels/fw")
            return ch["destinations"][0]["statistics"]
        # The 12th file is renamed into place before its write is recorded as sent.
        self.assertTrue(wait_until(lambda: stats()["queued"] == 0), stats())
        st = stats()
        self.assertEqual((st["sent"], st["queued"], st["dead_lettered"]), (12, 0, 0))


class EventPruneTest(EngineTestCase):
    def count_events(self, eng):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(eng.data, "channels.db"), uri=True,
                             timeout=10)
        try:
            return db.execute("SELECT COUNT(*), COALESCE(MIN(id), 0), COALESCE(MAX(id), 0)"
                              " FROM chan_events").fetchone()
        finally:
            db.close()

    def cursors(self, eng):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(eng.data, "channels.db"), uri=True,
                             timeout=10)
        try:
            return db.execute("SELECT COUNT(*) FROM chan_event_cursors").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not made yet
            return 0
        finally:
            db.close()

    def publish(self, eng, n, first):
        for i in range(first, first + n):
            status, _ = eng.post_json("/events/lab.result", {"n": i})
            self.assertEqual(status, 201)

    def payloads(self, d):
        return sorted(json.load(open(os.path.join(d, f)))["n"] for f in files_in(d))

    def test_consumed_events_are_pruned_unconsumed_ones_survive_kill9(self):
        eng = self.engine(start=False, env={"HOLOVITALS_CHANNELS_EVENT_PRUNE_INTERVAL": "200ms"})
        out1 = os.path.join(self.workdir, "out1")
        out2 = os.path.join(self.workdir, "out2")
        for name, out in (("sub1", out1), ("sub2", out2)):
            with open(os.path.join(eng.channels, name + ".json"), "w") as f:
                f.write(json.dumps({
                    "id": name, "source": {"type": "event", "event_type": "lab.*"},
                    "destinations": [{"name": "f", "type": "file-write", "dir": out,
                                      "filename": "${id}.json", "fsync": False}]}))
        eng.start()
        # Both subscribers have made their cursors (an event published before a subscriber
        # has one is not its to consume).
        self.assertTrue(wait_until(lambda: self.cursors(eng) == 2), self.cursors(eng))
        self.publish(eng, 20, 0)
        self.assertTrue(wait_until(lambda: len(files_in(out1)) == 20 and len(files_in(out2)) == 20))
        # Both cursors passed all 20: every row but the newest goes.
        self.assertTrue(wait_until(lambda: self.count_events(eng)[0] == 1),
                        "chan_events kept %r" % (self.count_events(eng),))
        newest = self.count_events(eng)[2]

        # sub2 paused: its cursor stays, so what it has not consumed is kept.
        self.assertEqual(eng.post_json("/channels/sub2/pause", {})[0], 200)
        self.publish(eng, 30, 20)
        self.assertTrue(wait_until(lambda: len(files_in(out1)) == 50))
        # A prune tick after sub1 has consumed all 50 takes the row sub2 has consumed too;
        # what sub2 has not consumed stays, however many ticks run.
        self.assertTrue(wait_until(lambda: self.count_events(eng)[0] <= 30),
                        "chan_events kept %r" % (self.count_events(eng),))
        time.sleep(1.0)  # five more prune ticks
        count, low, high = self.count_events(eng)
        self.assertEqual(count, 30, "exactly the 30 events sub2 has not consumed")
        self.assertEqual(low, newest + 1)
        self.assertEqual(self.payloads(out2), list(range(20)))

        eng.kill9()
        eng.start()  # sub2 runs again (pause is not kept across a restart)
        self.assertTrue(wait_until(lambda: len(files_in(out2)) == 50), len(files_in(out2)))
        self.assertEqual(self.payloads(out2), list(range(50)))
        self.assertEqual(self.payloads(out1), list(range(50)))
        self.assertTrue(wait_until(lambda: self.count_events(eng)[0] == 1),
                        "chan_events kept %r" % (self.count_events(eng),))
        # Ids never go back under a cursor: the next event gets a higher id.
        self.publish(eng, 1, 50)
        self.assertTrue(wait_until(lambda: len(files_in(out2)) == 51))
        self.assertGreater(self.count_events(eng)[2], high)
        eng.stop()


def big_hl7(control_id, size):
    return ("MSH|^~\\&|LAB|FAC|HV|HV|20240101120000||ORU^R01^ORU_R01|%s|P|2.5.1\r"
            "PID|1||%s^^^MRN^MR||DOE^JANE\r"
            "OBX|1|TX|1^note||%s||||||F\r" % (control_id, control_id, "x" * size)).encode()


class SourceMemoryCapTest(EngineTestCase):
    def test_mllp_burst_past_max_held_bytes_gets_ae_and_nothing_is_lost(self):
        import socket
        from harness import free_port
        eng = self.engine(start=False, env={"HOLOVITALS_CHANNELS_MAX_HELD_BYTES": "16KiB"})
        port = free_port()
        with open(os.path.join(eng.channels, "v2.json"), "w") as f:
            f.write(json.dumps({"id": "v2", "source": {"type": "mllp",
                                                       "listen": "127.0.0.1:%d" % port}}))
        eng.start()
        n = 40
        frames = b"".join(b"\x0b" + big_hl7("C%02d" % i, 10000) + b"\x1c\r" for i in range(n))
        acks = []
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(frames)  # pipelined: 40 x 10 kB arrive before the first commit
            buf = b""
            while len(acks) < n:
                chunk = sock.recv(65536)
                self.assertTrue(chunk, "connection closed after %d ACKs" % len(acks))
                buf += chunk
                while b"\x1c\r" in buf:
                    frame, buf = buf.split(b"\x1c\r", 1)
                    acks.append(frame.lstrip(b"\x0b"))
        accepted = [i for i, a in enumerate(acks) if b"MSA|AA|C%02d" % i in a]
        refused = [i for i, a in enumerate(acks) if b"MSA|AE|C%02d" % i in a]
        self.assertEqual(len(accepted) + len(refused), n, acks)
        self.assertTrue(accepted and refused, "accepted %r refused %r" % (accepted, refused))
        self.assertIn(b"busy", acks[refused[0]])
        # Exactly the acknowledged messages are stored.
        _, lst = eng.get_json("/channels/v2/messages?limit=1000")
        self.assertEqual(len(lst["messages"]), len(accepted))
        # Once the store has caught up, a message larger than the cap alone is taken.
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(b"\x0b" + big_hl7("BIG", 40000) + b"\x1c\r")
            buf = b""
            while b"\x1c\r" not in buf:
                chunk = sock.recv(65536)
                self.assertTrue(chunk)
                buf += chunk
        self.assertIn(b"MSA|AA|BIG", buf)
        eng.stop()


if __name__ == "__main__":
    main()
