"""test_console.py — the admin console in a real browser.

Starts the engine with authentication on, two users (an admin and a clinician),
two channels — `adt` (MLLP in, a file, a destination that fails until told not to
and one that dead-letters at once) and `json` (HTTP in, a `set` step) —, an HTTP sink,
HL7 messages over MLLP (one carrying <script> in a name), FHIR resources and a large
message; then runs test/browser/console.mjs, which drives Debian's Chromium through
playwright-core and checks what a person would see (its lines say which check failed).
Screenshots of the main views are left in the build tree (test/browser/screenshots).
"""

import json
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import SRCDIR, EngineTestCase, free_port, main

BROWSER_DIR = os.path.join(SRCDIR, "test", "browser")
CHROMIUM = os.environ.get("HV_CHROMIUM", "/usr/bin/chromium")
ADMIN, ADMIN_PASS = "ada", "password-ada-console"
CLIN, CLIN_PASS = "cleo", "password-cleo-console"


class Sink:
    """An HTTP destination whose answer the browser script switches (POST /__status/N)."""

    def __init__(self):
        self.engine = None  # set by the test: /__stop and /__start stop and restart it
        self.status = 500
        self.count = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                if self.path in ("/__stop", "/__start"):
                    if self.path == "/__stop":
                        sink.engine.stop()
                    else:
                        sink.engine.start(fixed_ports=True)
                    code = 200
                elif self.path.startswith("/__status/"):
                    with sink.lock:
                        sink.status = int(self.path.rsplit("/", 1)[1])
                    code = 200
                else:
                    with sink.lock:
                        code = sink.status
                        if code == 200:
                            sink.count += 1
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                with sink.lock:
                    body = str(sink.count).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def mllp_send(port, msg):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\x0b" + msg.encode() + b"\x1c\r")
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def adt(control, name):
    return ("MSH|^~\\&|ADMIT|HOSP|HV|HV|20260101120000||ADT^A01^ADT_A01|%s|P|2.5.1\r"
            "EVN|A01|20260101120000\r"
            "PID|1||%s^^^HOSP^MR||%s^TEST||19700101|F\r"
            "PV1|1|I|W1^101^1\r") % (control, control, name)


class ConsoleServingTest(EngineTestCase):
    def test_files_are_served_with_etag_csp_and_no_data(self):
        eng = self.engine(auth=True)
        st, h, body = eng.request("GET", "/console")
        self.assertEqual((st, h.get("location")), (301, "/console/"))
        st, h, body = eng.request("GET", "/console/")
        self.assertEqual(st, 200)
        self.assertIn(b'<script type="module" src="app.js">', body)
        self.assertIn("script-src 'self'", h["content-security-policy"])
        self.assertEqual(h["x-content-type-options"], "nosniff")
        st, h2, _ = eng.request("GET", "/console/app.js", headers={"If-None-Match": h["etag"]})
        self.assertEqual(st, 200)  # another file, another ETag
        self.assertTrue(h2["content-type"].startswith("text/javascript"))
        st, _, body = eng.request("GET", "/console/app.js", headers={"If-None-Match": h2["etag"]})
        self.assertEqual((st, body), (304, b""))
        st, _, _ = eng.request("GET", "/console/nope.js")
        self.assertEqual(st, 404)
        st, _, _ = eng.request("GET", "/console/%2e%2e/%2e%2e/etc/passwd")
        self.assertIn(st, (401, 404))
        # The files are public; the data behind them is not.
        st, _, _ = eng.request("GET", "/channels")
        self.assertEqual(st, 401)
        st, _, _ = eng.request("POST", "/console/app.js")
        self.assertEqual(st, 401)


class AdminApiTest(EngineTestCase):
    """The users and clients API the Administration view uses (engine/auth/admin.c)."""

    def test_users_and_clients_are_managed_by_admins_only(self):
        eng = self.engine(start=False, auth=True)
        for user, role in (("root", "admin"), ("ivy", "integrator")):
            rc, _, err = eng.cli("user", "add", user, "--role", role, input="password-%s\n" % user)
            self.assertEqual(rc, 0, err)
        rc, out, err = eng.cli("client", "add", "--name", "App one", "--type", "public", "--redirect-uri",
                               "http://127.0.0.1:1/cb", "--scope", "launch/patient patient/*.read")
        self.assertEqual(rc, 0, err)
        eng.start()
        def token(user):
            st, body = eng.post_json("/auth/login", {"username": user, "password": "password-" + user})
            self.assertEqual(st, 200, body)
            return {"Authorization": "Bearer " + body["access_token"]}
        root, ivy = token("root"), token("ivy")
        st, _, _ = eng.request("GET", "/auth/users")
        self.assertEqual(st, 401)
        st, _, _ = eng.request("GET", "/auth/users", headers=ivy)
        self.assertEqual(st, 403)
        st, body = eng.get_json("/auth/users", headers=root)
        self.assertEqual([(u["username"], u["role"], u["disabled"]) for u in body["users"]],
                         [("ivy", "integrator", False), ("root", "admin", False)])
        st, body = eng.get_json("/auth/clients", headers=root)
        self.assertEqual([(c["name"], c["type"], c["disabled"]) for c in body["clients"]], [("App one", "public", False)])
        app1 = body["clients"][0]["client_id"]
        self.assertEqual(body["clients"][0]["redirect_uris"], ["http://127.0.0.1:1/cb"])
        self.assertNotIn("secret_hash", json.dumps(body))
        # Role change, password reset, disable (ends ivy's token), enable.
        st, _, _ = eng.request("PUT", "/auth/users/ivy/role", body={"role": "wizard"}, headers=root)
        self.assertEqual(st, 400)
        st, _, _ = eng.request("PUT", "/auth/users/ivy/role", body={"role": "auditor"}, headers=root)
        self.assertEqual(st, 204)
        st, _, _ = eng.request("POST", "/auth/users/ivy/password", body={"password": "short"}, headers=root)
        self.assertEqual(st, 400)
        st, _, _ = eng.request("POST", "/auth/users/ivy/password", body={"password": "a-new-password"}, headers=root)
        self.assertEqual(st, 204)
        st, _ = eng.post_json("/auth/login", {"username": "ivy", "password": "password-ivy"})
        self.assertEqual(st, 401)
        st, body = eng.post_json("/auth/login", {"username": "ivy", "password": "a-new-password"})
        self.assertEqual((st, body.get("role")), (200, "auditor"))
        ivy2 = {"Authorization": "Bearer " + body["access_token"]}
        st, _, _ = eng.request("POST", "/auth/users/ivy/disable", headers=root)
        self.assertEqual(st, 204)
        st, _, _ = eng.request("GET", "/auth/session", headers=ivy2)
        self.assertEqual(st, 401)
        st, _ = eng.post_json("/auth/login", {"username": "ivy", "password": "a-new-password"})
        self.assertEqual(st, 401)
        st, _, _ = eng.request("POST", "/auth/users/ivy/enable", headers=root)
        self.assertEqual(st, 204)
        st, _ = eng.post_json("/auth/login", {"username": "ivy", "password": "a-new-password"})
        self.assertEqual(st, 200)
        st, _, _ = eng.request("POST", "/auth/users/nobody/disable", headers=root)
        self.assertEqual(st, 404)
        st, _, _ = eng.request("POST", "/auth/clients/%s/revoke" % app1, headers=root)
        self.assertEqual(st, 204)
        st, body = eng.get_json("/auth/clients", headers=root)
        self.assertTrue(body["clients"][0]["disabled"])


class ConsoleBrowserTest(EngineTestCase):
    def test_console_in_chromium(self):
        self.assertTrue(os.path.exists(CHROMIUM), "Chromium is missing: run scripts/setup.sh")
        self.assertTrue(os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")),
                        "test/browser/node_modules is missing: run scripts/setup.sh")
        sink = Sink()
        self.addCleanup(sink.close)
        eng = self.engine(start=False, auth=True)
        mllp = free_port()
        out = os.path.join(self.workdir, "out")
        os.makedirs(out)
        # Written as a person would; the browser test breaks "retry_interval_ms": 300 on purpose.
        with open(os.path.join(eng.channels, "adt.json"), "w") as f:
            f.write("""{
  "id": "adt",
  "source": { "type": "mllp", "listen": "127.0.0.1:%d" },
  "steps": [ { "type": "hl7v2-to-fhir" } ],
  "destinations": [
    { "name": "archive", "type": "file-write", "dir": "%s" },
    { "name": "downstream", "type": "http-send", "url": "http://127.0.0.1:%d/in",
      "queue": { "retry_interval_ms": 300, "max_interval_ms": 1000, "max_attempts": 1000,
                 "breaker_open_ms": 1000 } },
    { "name": "fragile", "type": "http-send", "url": "http://127.0.0.1:%d/in",
      "queue": { "max_attempts": 1 } }
  ]
}
""" % (mllp, out, sink.port, sink.port))
        with open(os.path.join(eng.channels, "json.json"), "w") as f:
            json.dump({"id": "json", "source": {"type": "http"},
                       "steps": [{"type": "set", "pointer": "/stamped", "value": "by-the-set-step"}],
                       "destinations": [{"name": "archive", "type": "file-write", "dir": out}]}, f)
        with open(os.path.join(eng.channels, "docs.json"), "w") as f:
            json.dump({"id": "docs", "source": {"type": "http"},
                       "destinations": [{"name": "archive", "type": "file-write", "dir": out}]}, f)
        for user, role, pw in ((ADMIN, "admin", ADMIN_PASS), (CLIN, "clinician", CLIN_PASS)):
            rc, _, err = eng.cli("user", "add", user, "--role", role, input=pw + "\n")
            self.assertEqual(rc, 0, err)
        eng.start()
        sink.engine = eng
        st, tok = eng.post_json("/auth/login", {"username": ADMIN, "password": ADMIN_PASS})
        self.assertEqual(st, 200, tok)
        auth = {"Authorization": "Bearer " + tok["access_token"]}

        for control, name in (("CTRL001", "SMITH"), ("CTRL002", "ZEBEDIAH"),
                              ("CTRL003", "<script>window.__xss=1</script>")):
            ack = mllp_send(mllp, adt(control, name))
            self.assertIn("MSA|AA|" + control, ack)
        st, body = eng.get_json("/channels/adt/messages?text=CTRL003", headers=auth)
        self.assertEqual((st, len(body["messages"])), (200, 1), body)
        xss_id = body["messages"][0]["id"]

        st, _, body = eng.request("POST", "/channels/json/in", body=json.dumps({"resourceType": "Basic"}),
                                  headers=dict(auth, **{"Content-Type": "application/json"}))
        self.assertEqual(st, 201, body)
        json_id = json.loads(body)["id"]
        big = json.dumps({"resourceType": "Binary", "data": "A" * (8 << 20)})
        st, _, body = eng.request("POST", "/channels/json/in", body=big,
                                  headers=dict(auth, **{"Content-Type": "application/json"}), timeout=60)
        self.assertEqual(st, 201, body)
        big_id = json.loads(body)["id"]

        doc = ('<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><title>Summary</title>'
               '<component><section><code code="11450-4"/><text>Taking <b>aspirin</b>'
               '<script>window.__xss2=1</script></text></section></component></ClinicalDocument>')
        st, _, body = eng.request("POST", "/channels/docs/in", body=doc,
                                  headers=dict(auth, **{"Content-Type": "application/xml"}))
        self.assertEqual(st, 201, body)
        doc_id = json.loads(body)["id"]
        st, pat = eng.post_json("/fhir/Patient", {"resourceType": "Patient", "name": [{"family": "Consoleperson"}]},
                                headers=dict(auth, **{"Content-Type": "application/fhir+json"}))
        self.assertEqual(st, 201, pat)
        st, obs = eng.post_json("/fhir/Observation", {
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "subject": {"reference": "Patient/" + pat["id"]}},
            headers=dict(auth, **{"Content-Type": "application/fhir+json"}))
        self.assertEqual(st, 201, obs)

        shots = os.path.join(os.environ.get("HV_BUILDDIR", self.workdir), "test", "browser", "screenshots")
        env = dict(os.environ, BASE="http://127.0.0.1:%d" % eng.http_port, SHOTS=shots,
                   SINK="http://127.0.0.1:%d" % sink.port, CHANNEL="adt", JSON_CHANNEL="json",
                   CHROMIUM=CHROMIUM, ADMIN_USER=ADMIN, ADMIN_PASS=ADMIN_PASS, CLIN_USER=CLIN,
                   CLIN_PASS=CLIN_PASS, CONTROL_ID="CTRL002", WORD="ZEBEDIAH", XSS_ID=str(xss_id),
                   XSS_CONTROL_ID="CTRL003", JSON_ID=str(json_id), BIG_ID=str(big_id), DOC_ID=str(doc_id),
                   PATIENT_ID=pat["id"], PATIENT_FAMILY="Consoleperson")
        p = subprocess.run(["node", os.path.join(BROWSER_DIR, "console.mjs")], env=env, cwd=BROWSER_DIR,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=400)
        output = p.stdout.decode(errors="replace")
        print(output)
        self.assertEqual(p.returncode, 0, output)
        self.assertIn("console: all checks passed", output)


if __name__ == "__main__":
    main()
