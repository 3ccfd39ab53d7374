"""ehrpeer.py — the EHR side of the ehr integration tests.

A second `holovitals serve` plays the EHR (its FHIR API, its SMART backend-services token
endpoint with a client registered by `holovitals client add`), loaded with Synthea bundles by
`holovitals import`. FaultProxy sits between the engine under test and that peer and injects
what real EHRs do: 429/5xx storms with Retry-After, HTML error pages, next-link loops,
truncated NDJSON, slow answers, and the recorded quirks of Epic (patient-scoped searches,
OperationOutcome warnings in search Bundles) and Oracle Health (tenant base URLs, system
accounts with a client secret in HTTP Basic). Standard library only.
"""

import base64
import http.client
import json
import os
import re
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import free_port

TENANT = "0b8a0111-e8e6-4c26-a91c-5069cbc6b1ca"


class FaultProxy:
    """A reverse proxy to the peer. `rules` is a list of callables rule(proxy, method, path) that
    may return (status, headers, body) to answer instead of the peer, or None. `rewrite` maps a
    response body (bytes) to another one. The peer sees the proxy's Host, so its links point
    back through the proxy."""

    def __init__(self, peer_port):
        self.peer_port = peer_port
        self.port = free_port()
        self.rules = []
        self.rewrite = None
        self.log = []  # (method, path, status)
        self.lock = threading.Lock()
        self.delay = 0.0
        self.cerner = False
        self.cerner_secret = None
        self.cerner_tokens = set()
        self.peer_token = None
        self.server = None

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def count(self, pattern, method=None):
        with self.lock:
            return sum(1 for m, p, _ in self.log if re.search(pattern, p) and (method is None or m == method))

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self):
                n = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(n) if n else None
                path = self.path
                if proxy.delay:
                    time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
                if proxy.cerner:
                    answer = proxy.cerner_gate(self.command, path, headers, body)
                    if answer is not None:
                        return self.send(*answer, path=path)
                    path = path.replace("/r4/%s" % TENANT, "/fhir", 1)
                for rule in list(proxy.rules):
                    answer = rule(proxy, self.command, path)
                    if answer is not None:
                        return self.send(*answer, path=path)
                conn = http.client.HTTPConnection("127.0.0.1", proxy.peer_port, timeout=60)
                try:
                    conn.request(self.command, path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    hdrs = [(k, v) for k, v in r.getheaders()
                            if k.lower() not in ("content-length", "connection", "transfer-encoding")]
                    status = r.status
                finally:
                    conn.close()
                if proxy.cerner:
                    data = data.replace(b"127.0.0.1:%d/fhir" % proxy.port,
                                        b"127.0.0.1:%d/r4/%s" % (proxy.port, TENANT.encode()))
                    hdrs = [(k, v.replace("127.0.0.1:%d/fhir" % proxy.port, "127.0.0.1:%d/r4/%s" % (proxy.port, TENANT)))
                            for k, v in hdrs]
                if proxy.rewrite is not None:
                    data = proxy.rewrite(self.command, path, data)
                self.send(status, hdrs, data, path=path)

            def send(self, status, hdrs, data, path=""):
                with proxy.lock:
                    proxy.log.append((self.command, path, status))
                try:
                    self.send_response(status)
                    for k, v in hdrs:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the engine was killed mid-request (the kill -9 test)

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def cerner_gate(self, method, path, headers, body):
        """Oracle Health system accounts: a token endpoint per tenant taking the client secret in
        HTTP Basic; the FHIR API takes those tokens. Behind it, the peer gets its own token."""
        tenant = "/r4/%s" % TENANT
        if path.startswith(tenant + "/.well-known/smart-configuration"):
            doc = {"token_endpoint": "%s/tenants/%s/token" % (self.base, TENANT),
                   "grant_types_supported": ["client_credentials"]}
            return 200, [("Content-Type", "application/json")], json.dumps(doc).encode()
        if path.startswith("/tenants/%s/token" % TENANT):
            auth = headers.get("Authorization", "")
            ok = auth.startswith("Basic ") and base64.b64decode(auth[6:]).decode() == self.cerner_secret
            form = urllib.parse.parse_qs((body or b"").decode())
            if not ok or form.get("grant_type") != ["client_credentials"]:
                return 401, [("Content-Type", "application/json")], b'{"error":"invalid_client"}'
            tok = secrets.token_hex(16)
            self.cerner_tokens.add(tok)
            return 200, [("Content-Type", "application/json")], json.dumps(
                {"access_token": tok, "token_type": "Bearer", "expires_in": 570, "scope": form.get("scope", [""])[0]}).encode()
        if path.startswith(tenant + "/"):
            auth = headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.cerner_tokens:
                return 401, [("Content-Type", "application/json")], b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}'
            headers["Authorization"] = "Bearer " + self.peer_token
            return None
        return 404, [("Content-Type", "text/plain")], b"not found"

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def storm(pattern, statuses, retry_after="0"):
    """A rule answering the next len(statuses) requests matching pattern with those statuses."""
    left = list(statuses)

    def rule(proxy, method, path):
        if left and re.search(pattern, path):
            st = left.pop(0)
            hdrs = [("Content-Type", "application/fhir+json")]
            if retry_after is not None:
                hdrs.append(("Retry-After", retry_after))
            return st, hdrs, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient"}]}'
        return None
    return rule


def html_page(pattern, times=1000):
    left = [times]

    def rule(proxy, method, path):
        if left[0] > 0 and re.search(pattern, path):
            left[0] -= 1
            return 200, [("Content-Type", "text/html")], b"<html><body><h1>Service Temporarily Unavailable</h1></body></html>"
        return None
    return rule


def epic_patient_required(types):
    """Epic refuses searches of clinical types without a patient parameter."""
    def rule(proxy, method, path):
        u = urllib.parse.urlparse(path)
        t = u.path.rsplit("/", 1)[-1]
        q = urllib.parse.parse_qs(u.query)
        if method == "GET" and t in types and "patient" not in q and "_cursor" not in q:
            return 400, [("Content-Type", "application/fhir+json")], json.dumps({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "fatal", "code": "required",
                           "diagnostics": "a patient parameter is required for this search"}]}).encode()
        return None
    return rule


def epic_warning(method, path, data):
    """Epic puts OperationOutcome warnings into search Bundles (search.mode outcome)."""
    if method != "GET" or b'"searchset"' not in data:
        return data
    try:
        b = json.loads(data)
    except ValueError:
        return data
    b.setdefault("entry", []).append({
        "resource": {"resourceType": "OperationOutcome",
                     "issue": [{"severity": "warning", "code": "suppressed",
                                "diagnostics": "Some results were filtered by the EHR"}]},
        "search": {"mode": "outcome"}})
    return json.dumps(b).encode()
