"""test_mllp_tls.py — MLLP over TLS: the listener (mllp.tls_*) and `hl7 send --tls`.

Certificates are made at test time with the `openssl` command: a CA, a server
certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1), a client certificate
signed by the CA, and a second, unrelated CA. Clients are Python's ssl module
(verifying the engine against the CA) and the engine's own `hl7 send`.
"""

import os
import socket
import ssl
import subprocess
import time

from harness import EngineTestCase, main, run_cli
from test_hl7v2 import CR, EB, SB, ack_fields, frame, list_all, message


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "openssl %s failed: %s" % (" ".join(args), p.stderr)


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
            "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, name, cn, ca, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
            cwd=d)


class Certs:
    """CA, server (127.0.0.1), client (CN lab-system-01) and an unrelated CA, in d."""

    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.dir = d
        make_ca(d, "ca", "HoloVitals Test CA")
        make_ca(d, "other", "Some Other CA")
        make_leaf(d, "server", "127.0.0.1", "ca",
                  "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
        make_leaf(d, "client", "lab-system-01", "ca", "extendedKeyUsage=clientAuth")

    def path(self, name):
        return os.path.join(self.dir, name)


class TlsMllpClient:
    """A blocking MLLP-over-TLS connection verifying the engine against ca."""

    def __init__(self, port, ca, cert=None, key=None, timeout=20):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
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


def refused(port, ca, **kw):
    """Sends one message on a TLS connection; True when no ACK comes back (the handshake
    or the first read fails, or the engine closes)."""
    try:
        c = TlsMllpClient(port, ca, timeout=10, **kw)
    except (ssl.SSLError, OSError):
        return True
    try:
        c.send(message("REFUSED-1"))
        return c.read_frame() is None
    except (ssl.SSLError, OSError):
        return True
    finally:
        c.close()


class MllpTls(EngineTestCase):
    def setUp(self):
        super().setUp()
        self.certs = Certs(os.path.join(self.workdir, "certs"))

    def tls_engine(self, client_ca=False):
        env = {"HOLOVITALS_MLLP_TLS_CERT": self.certs.path("server.pem"),
               "HOLOVITALS_MLLP_TLS_KEY": self.certs.path("server.key")}
        if client_ca:
            env["HOLOVITALS_MLLP_TLS_CLIENT_CA"] = self.certs.path("ca.pem")
        return self.engine(env=env)

    def test_messages_over_tls_get_acks_and_plaintext_client_gets_none(self):
        eng = self.tls_engine()
        ca = self.certs.path("ca.pem")
        c = TlsMllpClient(eng.mllp_port, ca)
        try:
            c.send(message("TLS-1"))
            self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "TLS-1"))
            # Pipelined over one TLS connection: ACKs in order.
            for k in range(3):
                c.send(message("TLS-P%d" % k))
            for k in range(3):
                self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "TLS-P%d" % k))
            # A frame of 600 KB spans many TLS records and reads.
            c.send(message("TLS-BIG", body="NTE|1||" + "x" * 600000))
            self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "TLS-BIG"))
            # A plaintext MLLP client on the TLS port: no ACK, the connection is closed.
            s = socket.create_connection(("127.0.0.1", eng.mllp_port), timeout=10)
            try:
                s.sendall(frame(message("PLAIN-1")))
                got = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            finally:
                s.close()
            self.assertNotIn(b"MSA|", got)
            # The open TLS connection and new ones keep working.
            c.send(message("TLS-2"))
            self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "TLS-2"))
            c2 = TlsMllpClient(eng.mllp_port, ca)
            c2.send(message("TLS-3"))
            self.assertEqual(ack_fields(c2.read_frame())[:2], ("AA", "TLS-3"))
            c2.close()
        finally:
            c.close()
        self.assertGreaterEqual(eng.metric("hv_hl7v2_mllp_tls_handshake_failures_total"), 1)
        ids = sorted(m["control_id"] for m in list_all(eng))
        self.assertEqual(ids, ["TLS-1", "TLS-2", "TLS-3", "TLS-BIG", "TLS-P0", "TLS-P1",
                               "TLS-P2"])
        self.assertEqual(eng.stop(), 0)  # flushes the logs
        events = [e.get("event") for e in eng.log_events()]
        self.assertIn("hl7v2.mllp.tls_handshake_failed", events)
        self.assertEqual(events.count("hl7v2.mllp.tls"), 2)  # one per completed handshake
        logs = eng.stderr()
        self.assertNotIn("PLAIN-1", logs)  # never message content
        self.assertNotIn("DOE^JANE", logs)

    def test_mutual_tls_refuses_clients_without_a_certificate_of_the_ca(self):
        eng = self.tls_engine(client_ca=True)
        ca = self.certs.path("ca.pem")
        # No client certificate: refused, counted.
        self.assertTrue(refused(eng.mllp_port, ca))
        # A certificate from another CA: refused.
        with open(self.certs.path("other.pem")) as f:
            self.assertIn("CERTIFICATE", f.read())
        self.assertTrue(refused(eng.mllp_port, ca, cert=self.certs.path("other.pem"),
                                key=self.certs.path("other.key")))
        # The CA's client certificate: served.
        c = TlsMllpClient(eng.mllp_port, ca, cert=self.certs.path("client.pem"),
                          key=self.certs.path("client.key"))
        try:
            c.send(message("MTLS-1"))
            self.assertEqual(ack_fields(c.read_frame())[:2], ("AA", "MTLS-1"))
        finally:
            c.close()
        self.assertGreaterEqual(eng.metric("hv_hl7v2_mllp_tls_handshake_failures_total"), 2)
        self.assertEqual([m["control_id"] for m in list_all(eng)], ["MTLS-1"])
        self.assertEqual(eng.stop(), 0)  # flushes the logs
        # The peer's certificate CN is logged; the refusals are logged as warnings.
        events = eng.log_events()
        tls = [e for e in events if e.get("event") == "hl7v2.mllp.tls"]
        self.assertEqual([e.get("peer_cn") for e in tls], ["lab-system-01"])
        failed = [e for e in events if e.get("event") == "hl7v2.mllp.tls_handshake_failed"]
        self.assertGreaterEqual(len(failed), 2)

    def test_hl7_send_tls_verifies_the_server_and_presents_a_client_certificate(self):
        eng = self.tls_engine(client_ca=True)
        msgs = os.path.join(self.workdir, "msgs.hl7")
        with open(msgs, "wb") as f:
            f.write(message("CLI-TLS-1") + message("CLI-TLS-2"))
        port = str(eng.mllp_port)
        base = ["hl7", "send", "--host", "127.0.0.1", "--port", port, "--tls"]
        client = ["--cert", self.certs.path("client.pem"), "--key", self.certs.path("client.key")]
        rc, out, err = run_cli(*base, "--ca", self.certs.path("ca.pem"), *client, msgs)
        self.assertEqual(rc, 0, err)
        self.assertIn("MSA|AA|CLI-TLS-1\n", out)
        self.assertIn("MSA|AA|CLI-TLS-2\n", out)
        # The wrong CA: the server is not trusted; exit 1 with a clear message.
        t0 = time.monotonic()
        rc, out, err = run_cli(*base, "--ca", self.certs.path("other.pem"), *client, msgs)
        self.assertEqual(rc, 1)
        self.assertIn("TLS handshake with 127.0.0.1:%s failed" % port, err)
        self.assertIn("not signed by the given CA", err)
        self.assertNotIn("MSA|", out)
        self.assertLess(time.monotonic() - t0, 20)
        # --insecure skips the verification.
        rc, out, err = run_cli(*base, "--insecure", *client, msgs)
        self.assertEqual(rc, 0, err)
        self.assertIn("MSA|AA|CLI-TLS-1\n", out)  # a resend: the original ACK
        # No client certificate: the engine refuses it.
        rc, out, err = run_cli(*base, "--ca", self.certs.path("ca.pem"), msgs)
        self.assertEqual(rc, 1)
        self.assertIn("no ACK", err)
        self.assertIn("TLS", err)
        # A CA file that does not exist, and TLS options without --tls.
        rc, out, err = run_cli(*base, "--ca", self.certs.path("missing.pem"), msgs)
        self.assertEqual(rc, 1)
        self.assertIn("missing.pem", err)
        rc, out, err = run_cli("hl7", "send", "--host", "127.0.0.1", "--port", port, "--ca",
                               self.certs.path("ca.pem"), msgs)
        self.assertEqual(rc, 2)
        self.assertIn("need --tls", err)
        stored = list_all(eng)
        self.assertEqual(sorted(m["control_id"] for m in stored), ["CLI-TLS-1", "CLI-TLS-2"])

    def test_bad_tls_settings_stop_the_start_with_a_message(self):
        eng = self.engine(start=False, env={"HOLOVITALS_MLLP_TLS_CERT":
                                            self.certs.path("server.pem")})
        eng.start(wait=False)
        self.assertNotEqual(eng.proc.wait(15), 0)
        self.assertIn("mllp.tls_cert and mllp.tls_key must be set together", eng.stderr())
        eng2 = self.engine(start=False, env={
            "HOLOVITALS_MLLP_TLS_CERT": self.certs.path("server.pem"),
            "HOLOVITALS_MLLP_TLS_KEY": self.certs.path("client.key")})
        eng2.start(wait=False)
        self.assertNotEqual(eng2.proc.wait(15), 0)
        self.assertIn("cannot load the TLS key", eng2.stderr())


if __name__ == "__main__":
    main()
