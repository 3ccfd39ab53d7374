"""test_hl7v2.py — the HL7 v2 adapter over the wire: MLLP listener, ACKs, message store, CLI.

Drives a real `holovitals serve` on loopback (harness.py) as an EHR interface does:
many concurrent MLLP connections, resends, a kill -9 in the middle of a burst, and
broken frames. Every ACK is checked against the MSH-10 of the message it answers.
"""

import json
import os
import socket
import threading
import time

from harness import REFERENCE, EngineTestCase, main, run_cli

# HV_REFERENCE_DIR overrides the CI layout (a worktree has no shared/ beside it).
REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)

SB, EB, CR = b"\x0b", b"\x1c", b"\r"


def message(control_id, app="SENDER", facility="FAC", trigger="R01", body=None):
    seg = [
        "MSH|^~\\&|%s|%s|HOLOVITALS|HV|20240101120000||ORU^%s^ORU_R01|%s|P|2.5.1" % (
            app, facility, trigger, control_id),
        "PID|1||%s^^^MRN^MR||DOE^JANE||19800101|F" % control_id,
        "OBR|1||%s|2345-7^Glucose^LN" % control_id,
        "OBX|1|NM|2345-7^Glucose^LN||%d|mg/dL|70-99|N|||F" % (len(control_id) * 7),
    ]
    if body:
        seg.append(body)
    return ("\r".join(seg) + "\r").encode()


def frame(msg):
    return SB + msg + EB + CR


class MllpClient:
    """A blocking MLLP connection that reads whole frames."""

    def __init__(self, port, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, msg):
        self.sock.sendall(frame(msg))

    def read_frame(self):
        """The next frame's content, or None when the peer closed."""
        while True:
            start = self.buf.find(SB)
            end = self.buf.find(EB + CR, start + 1) if start >= 0 else -1
            if start >= 0 and end >= 0:
                out = self.buf[start + 1:end]
                self.buf = self.buf[end + 2:]
                return out
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def close(self):
        self.sock.close()


def ack_fields(ack):
    """(MSA-1, MSA-2, segments) of an ACK."""
    segs = [s for s in ack.split(b"\r") if s]
    assert segs[0].startswith(b"MSH|"), ack
    msa = [s for s in segs if s.startswith(b"MSA|")]
    assert len(msa) == 1, ack
    f = msa[0].split(b"|")
    return f[1].decode(), f[2].decode(), segs


def list_all(eng):
    """Every stored message of the default channel, following the keyset cursor."""
    out, cursor = [], None
    while True:
        path = "/channels/hl7v2-inbound/messages?limit=1000"
        if cursor:
            path += "&cursor=" + cursor
        status, body = eng.get_json(path)
        assert status == 200, (status, body)
        for m in body["messages"]:
            # The mllp source keys each message by MSH-3|MSH-4|MSH-10 (its dedup key).
            m["control_id"] = m["source_key"].split("|")[-1]
        out += body["messages"]
        cursor = body["next"]
        if cursor is None:
            return out


class Hl7v2Mllp(EngineTestCase):
    def test_200_concurrent_connections_interleaved_every_ack_matches(self):
        eng = self.engine()
        conns = [MllpClient(eng.mllp_port) for _ in range(200)]
        per_conn = 5
        try:
            for rnd in range(per_conn):
                # Round-robin over all connections; odd rounds pipeline two messages.
                for i, c in enumerate(conns):
                    c.send(message("C%03d-M%d" % (i, rnd)))
                for i, c in enumerate(conns):
                    ack = c.read_frame()
                    self.assertIsNotNone(ack, "connection %d closed" % i)
                    code, ctl, segs = ack_fields(ack)
                    self.assertEqual((code, ctl), ("AA", "C%03d-M%d" % (i, rnd)))
                    msh = segs[0].split(b"|")
                    # Sender and receiver swapped, MSH-9 ACK^R01^ACK, same version.
                    self.assertEqual(msh[2:6], [b"HOLOVITALS", b"HV", b"SENDER", b"FAC"])
                    self.assertEqual(msh[8], b"ACK^R01^ACK")
                    self.assertEqual(msh[11], b"2.5.1")
            # Pipelining: three messages before reading; ACKs come back in order.
            for i, c in enumerate(conns[:50]):
                for k in range(3):
                    c.send(message("P%03d-%d" % (i, k)))
            for i, c in enumerate(conns[:50]):
                for k in range(3):
                    code, ctl, _ = ack_fields(c.read_frame())
                    self.assertEqual((code, ctl), ("AA", "P%03d-%d" % (i, k)))
        finally:
            for c in conns:
                c.close()
        stored = list_all(eng)
        ids = [m["control_id"] for m in stored]
        self.assertEqual(len(ids), 200 * per_conn + 150)
        self.assertEqual(len(set(ids)), len(ids))
        # Newest first, ids strictly decreasing.
        nums = [int(m["id"]) for m in stored]
        self.assertEqual(nums, sorted(nums, reverse=True))
        self.assertEqual(stored[0]["content_type"], "x-application/hl7-v2+er7")
        self.assertRegex(stored[0]["source_key"], r"^msh:SENDER\|FAC\|P0\d\d-2$")
        # The built-in hl7v2-inbound has no destinations: stored is final.
        self.assertEqual(stored[0]["status"], "sent")

    def test_resend_gets_the_original_ack_and_is_stored_once(self):
        eng = self.engine()
        c = MllpClient(eng.mllp_port)
        msg = message("RESEND-1")
        c.send(msg)
        first = c.read_frame()
        time.sleep(0.01)  # a later ACK would carry another MSH-7
        c.send(msg)
        second = c.read_frame()
        c.close()
        self.assertEqual(ack_fields(first)[:2], ("AA", "RESEND-1"))
        self.assertEqual(first, second)
        # Same control id from another sending facility is another message.
        c = MllpClient(eng.mllp_port)
        c.send(message("RESEND-1", facility="OTHER"))
        third = c.read_frame()
        c.close()
        self.assertNotEqual(third, first)
        stored = list_all(eng)
        self.assertEqual(len(stored), 2)
        oldest = stored[-1]
        status, one = eng.get_json("/channels/hl7v2-inbound/messages/" + oldest["id"])
        self.assertEqual(status, 200)
        self.assertEqual(one["content"].encode(), msg)
        self.assertEqual(one["source_key"], "msh:SENDER|FAC|RESEND-1")
        self.assertEqual(eng.metric("hv_hl7v2_messages_duplicate_total"), 1)
        self.assertEqual(eng.metric("hv_hl7v2_messages_stored_total"), 2)
        status, ch = eng.get_json("/channels/hl7v2-inbound")
        self.assertEqual(status, 200)
        self.assertEqual(ch["statistics"]["received"], 2)
        status, _ = eng.get_json("/channels/hl7v2-inbound/messages/999999")
        self.assertEqual(status, 404)
        status, _ = eng.get_json("/channels/hl7v2-inbound/messages?limit=0")
        self.assertEqual(status, 400)

    def test_kill9_mid_burst_loses_and_duplicates_no_acked_message(self):
        eng = self.engine()
        acked = set()
        lock = threading.Lock()
        stop = threading.Event()

        def client(n):
            try:
                c = MllpClient(eng.mllp_port, timeout=5)
            except OSError:
                return
            k = 0
            try:
                while not stop.is_set():
                    cid = "K%02d-%05d" % (n, k)
                    c.send(message(cid))
                    ack = c.read_frame()
                    if ack is None:
                        return
                    code, ctl, _ = ack_fields(ack)
                    if code == "AA" and ctl == cid:
                        with lock:
                            acked.add(cid)
                    k += 1
            except OSError:
                return
            finally:
                c.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= 300:
                    break
            time.sleep(0.01)
        eng.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        self.assertGreaterEqual(len(acked), 300, "too few ACKs before the kill")
        eng.start()
        stored = [m["control_id"] for m in list_all(eng)]
        counts = {}
        for cid in stored:
            counts[cid] = counts.get(cid, 0) + 1
        self.assertEqual([cid for cid, n in counts.items() if n > 1], [])
        missing = sorted(acked - set(stored))
        self.assertEqual(missing, [], "ACKed but not stored")

    def test_bad_frames_close_or_reject_and_others_keep_working(self):
        eng = self.engine(env={"HOLOVITALS_MLLP_MAX_MESSAGE": "4KiB"})
        good = MllpClient(eng.mllp_port)

        # Oversized: the ACK of the message before it still arrives, then the close.
        c = MllpClient(eng.mllp_port)
        c.send(message("BEFORE-BIG"))
        c.sock.sendall(SB + b"MSH|^~\\&|A|B|C|D|1||ADT^A01|BIG|P|2.5\r" + b"X" * 8000 + EB + CR)
        self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "BEFORE-BIG"))
        self.assertIsNone(c.read_frame())
        c.close()

        # Garbage outside a frame: closed without an answer.
        c = MllpClient(eng.mllp_port)
        c.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIsNone(c.read_frame())
        c.close()

        # A frame without MSH: AR with default MSH fields, nothing stored.
        c = MllpClient(eng.mllp_port)
        c.sock.sendall(frame(b"PID|1||X\r"))
        self.assertEqual(ack_fields(c.read_frame())[0], "AR")
        c.close()

        # Bad escape, bad charset, missing MSH-10: AR with an ERR saying where.
        cases = [
            (message("ESC-1", body="NTE|1||bad \\Q\\ escape"), "NTE^1^3", b"102^Data type error^HL70357"),
            (message("CS-1").replace(b"|2.5.1", b"|2.5.1||||||KOI8-R"), "MSH^1^18", b"103^"),
            (b"MSH|^~\\&|A|B|C|D|1||ADT^A01||P|2.5\rPID|1\r", "MSH^1^10", b"101^Required field missing"),
        ]
        c = MllpClient(eng.mllp_port)
        for msg, loc, code in cases:
            c.send(msg)
            ack = c.read_frame()
            self.assertIsNotNone(ack)
            msa1, _, segs = ack_fields(ack)
            self.assertEqual(msa1, "AR")
            err = [s for s in segs if s.startswith(b"ERR|")]
            self.assertEqual(len(err), 1, ack)
            f = err[0].split(b"|")
            self.assertTrue(f[2].decode().startswith(loc), err[0])
            self.assertTrue(f[3].startswith(code), err[0])
            self.assertEqual(f[4], b"E")
        # Truncated frame then disconnect: nothing stored from it.
        t = socket.create_connection(("127.0.0.1", eng.mllp_port))
        t.sendall(SB + message("TRUNC")[:30])
        t.close()
        c.close()

        # A peer that pipelines and leaves without reading its ACKs: all stored.
        t = socket.create_connection(("127.0.0.1", eng.mllp_port))
        t.sendall(b"".join(frame(message("GONE-%02d" % k)) for k in range(30)))
        t.close()

        # Meanwhile the first connection is still served.
        good.send(message("STILL-OK"))
        self.assertEqual(ack_fields(good.read_frame())[:2], ("AA", "STILL-OK"))
        good.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(list_all(eng)) < 32:
            time.sleep(0.02)
        ids = sorted(m["control_id"] for m in list_all(eng))
        self.assertEqual(ids, ["BEFORE-BIG"] + ["GONE-%02d" % k for k in range(30)] + ["STILL-OK"])
        # A clean stop frees everything (the sanitizer build reports leaks at exit).
        self.assertEqual(eng.stop(), 0)
        self.assertNotIn("LeakSanitizer", eng.stderr())
        # Logs carry no message content.
        log = eng.stderr()
        self.assertNotIn("DOE^JANE", log)
        self.assertNotIn("Glucose", log)

    def test_limits_idle_timeout_connection_cap_and_back_pressure(self):
        eng = self.engine(env={"HOLOVITALS_MLLP_IDLE_TIMEOUT": "300ms",
                               "HOLOVITALS_MLLP_MAX_CONNECTIONS": "3",
                               "HOLOVITALS_MLLP_MAX_INFLIGHT": "4"})
        # Idle: closed after the timeout without a byte.
        idle = MllpClient(eng.mllp_port, timeout=5)
        # (the client's 5 s timeout would raise; the default idle timeout is 5 min)
        self.assertIsNone(idle.read_frame())
        idle.close()
        # Connection cap: the fourth concurrent connection is closed at once.
        conns = [MllpClient(eng.mllp_port, timeout=5) for _ in range(3)]
        time.sleep(0.05)
        extra = MllpClient(eng.mllp_port, timeout=5)
        self.assertIsNone(extra.read_frame())
        extra.close()
        # Back-pressure: 60 pipelined messages with at most 4 in flight per connection;
        # reading pauses and resumes, every ACK arrives, in order.
        c = conns[0]
        c.sock.sendall(b"".join(frame(message("BP-%02d" % k)) for k in range(60)))
        for k in range(60):
            self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "BP-%02d" % k))
        for x in conns:
            x.close()
        self.assertEqual(len(list_all(eng)), 60)

    def test_enhanced_mode_commit_ack(self):
        eng = self.engine()
        c = MllpClient(eng.mllp_port)
        msg = message("ENH-1").replace(b"|2.5.1\r", b"|2.5.1|||AL|NE\r", 1)
        c.send(msg)
        code, ctl, segs = ack_fields(c.read_frame())
        self.assertEqual((code, ctl), ("CA", "ENH-1"))
        self.assertTrue(segs[0].endswith(b"|NE|NE"), segs[0])
        c.close()


class BuiltinWithoutChannelsDir(EngineTestCase):
    def test_builtin_inbound_runs_when_the_channels_directory_is_missing(self):
        """`serve --mllp` with no channels directory still listens (the built-in
        hl7v2-inbound), and a text search sees a message as soon as it is acknowledged
        (full-text indexing is deferred; a search catches up first)."""
        eng = self.engine(start=False)
        os.rmdir(eng.channels)
        eng.start()
        c = MllpClient(eng.mllp_port)
        try:
            for i in range(20):
                c.send(message("NODIR%02d" % i))
                self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "NODIR%02d" % i))
        finally:
            c.close()
        status, body = eng.get_json("/channels/hl7v2-inbound/messages?text=NODIR07")
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["messages"]), 1, body)
        status, body = eng.get_json("/channels/hl7v2-inbound/messages?text=SENDER&limit=100")
        self.assertEqual(len(body["messages"]), 20, body)


class ShippedInboundChannel(EngineTestCase):
    def test_shipped_file_replaces_the_builtin_on_the_mllp_address_and_reaches_the_fhir_store(self):
        import shutil
        from harness import SRCDIR
        eng = self.engine(start=False)
        shutil.copy(os.path.join(SRCDIR, "channels", "hl7v2-inbound.json"), eng.channels)
        eng.start()
        status, ch = eng.get_json("/channels/hl7v2-inbound")
        self.assertEqual(status, 200)
        self.assertEqual([d["name"] for d in ch["destinations"]], ["store", "audit"])
        # --mllp (the harness's port) is the listen address of the file's source.
        c = MllpClient(eng.mllp_port)
        c.send(message("SHIP-1"))
        self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "SHIP-1"))
        c.close()
        deadline = time.monotonic() + 15
        obs = []
        while time.monotonic() < deadline and not obs:
            status, b = eng.get_json("/fhir/Observation?code=http://loinc.org|2345-7")
            obs = b.get("entry", []) if status == 200 else []
            time.sleep(0.1)
        self.assertEqual(len(obs), 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, ch = eng.get_json("/channels/hl7v2-inbound")
            sent = {d["name"]: d["statistics"]["sent"] for d in ch["destinations"]}
            if sent == {"store": 1, "audit": 1}:
                break
            time.sleep(0.1)
        self.assertEqual(sent, {"store": 1, "audit": 1})
        self.assertEqual(list_all(eng)[0]["control_id"], "SHIP-1")


class Hl7v2Cli(EngineTestCase):
    def test_parse_prints_tree_and_errors(self):
        path = os.path.join(REFERENCE, "hl7v2", "fhir-converter", "ADT-A01-02.hl7")
        rc, out, err = run_cli("hl7", "parse", path)
        self.assertEqual(rc, 0, err)
        tree = json.loads(out)
        self.assertEqual(tree["segments"][0]["id"], "MSH")
        self.assertEqual(tree["segments"][0]["fields"][9], ["ADT", "A01", "ADT_A01"])
        bad = os.path.join(self.workdir, "bad.hl7")
        with open(bad, "wb") as f:
            f.write(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|1||\\Q\\\r")
        rc, out, err = run_cli("hl7", "parse", bad)
        self.assertEqual(rc, 1)
        self.assertIn("segment 2, column 8, PID-3: invalid escape sequence", err)

    def test_send_prints_acks_and_exit_code(self):
        eng = self.engine()
        good = os.path.join(self.workdir, "good.hl7")
        bad = os.path.join(self.workdir, "bad.hl7")
        with open(good, "wb") as f:
            f.write(b"BHS|^~\\&\r" + message("CLI-1") + message("CLI-2") + b"BTS|2\r")
        with open(bad, "wb") as f:
            f.write(message("CLI-3", body="NTE|1||\\Q\\"))
        rc, out, err = run_cli("hl7", "send", "--host", "127.0.0.1", "--port", str(eng.mllp_port), good)
        self.assertEqual(rc, 0, err)
        self.assertIn("MSA|AA|CLI-1\n", out)
        self.assertIn("MSA|AA|CLI-2\n", out)
        rc, out, err = run_cli("hl7", "send", "--host", "127.0.0.1", "--port", str(eng.mllp_port), bad)
        self.assertEqual(rc, 1)
        self.assertIn("MSA|AR|CLI-3\n", out)
        # Nobody listening: three attempts with backoff, then exit 1.
        port = eng.mllp_port
        eng.stop()
        t0 = time.monotonic()
        rc, out, err = run_cli("hl7", "send", "--host", "127.0.0.1", "--port", str(port), good)
        self.assertEqual(rc, 1)
        self.assertIn("no ACK", err)
        self.assertGreater(time.monotonic() - t0, 0.5)  # 200 + 400 ms of backoff


if __name__ == "__main__":
    main()
