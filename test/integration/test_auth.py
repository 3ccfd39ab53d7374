"""test_auth.py — authentication and authorization over the wire (issue 10).

Users, sessions and refresh rotation; JWT validation defects; roles on the
engine's endpoints; rate limits and CORS; SMART Backend Services with RS384 and
ES384 assertions signed by OpenSSL; the SMART App Launch authorization-code flow
with PKCE driven as a browser-less client; JWKS by URL; dynamic client
registration; key rotation picked up by running engines; `--auth off`;
`tls selfsigned`. SMART scopes on the FHIR API end to end: test_auth_fhir.py.
"""

import json
import os
import re
import secrets
import ssl
import socket
import time
import urllib.parse

from authlib import FORM, Key, assertion, b64u, b64u_dec, form, jwt_parts, pkce, unsigned
from harness import SRCDIR, EngineTestCase, free_port, main, run_cli
import subprocess

# cheap password hashing and a roomy login throttle, so the tests stay fast
FAST = {"auth": {"password": {"scrypt_n": 1024}, "rate": {"login_per_min": 600, "login_burst": 100}}}


def merge(a, b):
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


class AuthCase(EngineTestCase):
    def tearDown(self):
        # every engine a test left running must stop cleanly: exit 0, and under
        # --enable-sanitizers no leak or error report in its log
        problems = []
        for eng in self._engines:
            if eng.proc is not None and eng.proc.poll() is None:
                rc = eng.stop()
                err = eng.stderr()
                if rc != 0 or "Sanitizer" in err or "runtime error" in err:
                    problems.append("engine exit %s:\n%s" % (rc, err[-3000:]))
        super().tearDown()
        if problems:
            raise AssertionError("\n".join(problems))

    def auth_engine(self, users=(("admin", "admin"),), config=None, start=True, **kw):
        eng = self.engine(start=False, auth=True, config=merge(FAST, config or {}), **kw)
        for name, role in users:
            rc, out, err = eng.cli("user", "add", name, "--role", role, input="password-%s\n" % name)
            self.assertEqual(rc, 0, err)
        if start:
            eng.start()
        return eng

    def login(self, eng, name, password=None):
        st, body = eng.post_json("/auth/login", {"username": name, "password": password or "password-%s" % name})
        self.assertEqual(st, 200, body)
        return body

    def bearer(self, tok):
        return {"Authorization": "Bearer " + tok}

    def form_post(self, eng, path, d, headers=None):
        h = dict(FORM)
        h.update(headers or {})
        st, hd, body = eng.request("POST", path, body=form(d), headers=h)
        return st, hd, (json.loads(body) if body and hd.get("content-type", "").startswith("application/json") else body)


class Users(AuthCase):
    def test_login_session_verify_logout(self):
        eng = self.auth_engine(config={"auth": {"password": {"scrypt_n": 32768}}})  # the default cost
        st, _, _ = eng.get("/errors")
        self.assertEqual(st, 401)
        t = self.login(eng, "admin")
        self.assertEqual((t["token_type"], t["expires_in"], t["role"]), ("Bearer", 300, "admin"))
        self.assertTrue(t["refresh_token"].startswith("rt."))
        h, claims, _ = jwt_parts(t["access_token"])
        self.assertEqual(h["alg"], "ES256")
        self.assertEqual(claims["iss"], "http://127.0.0.1:%d" % eng.http_port)
        self.assertEqual(claims["aud"], "http://127.0.0.1:%d/fhir" % eng.http_port)
        for k in ("sub", "exp", "iat", "jti", "scope", "sid"):
            self.assertIn(k, claims)
        st, _, _ = eng.get("/errors", headers=self.bearer(t["access_token"]))
        self.assertEqual(st, 200)
        st, s = eng.get_json("/auth/session", headers=self.bearer(t["access_token"]))
        self.assertEqual((st, s["username"], s["role"]), (200, "admin", "admin"))
        st, v = eng.get_json("/auth/verify", headers=self.bearer(t["access_token"]))
        self.assertEqual((st, v["active"], v["sub"]), (200, True, "admin"))
        st, _, _ = eng.request("POST", "/auth/logout", headers=self.bearer(t["access_token"]))
        self.assertEqual(st, 204)
        for path in ("/auth/verify", "/errors"):
            st, hd, _ = eng.get(path, headers=self.bearer(t["access_token"]))
            self.assertEqual(st, 401, path)
        self.assertIn("invalid_token", hd["www-authenticate"])
        # the refresh token died with the session
        st, _ = eng.post_json("/auth/refresh", {"refresh_token": t["refresh_token"]})
        self.assertEqual(st, 401)
        # the password is stored as scrypt, never in clear
        import sqlite3
        db = sqlite3.connect(os.path.join(eng.data, "auth.db"))
        (h,) = db.execute("SELECT hash FROM users WHERE name='admin'").fetchone()
        self.assertRegex(h, r"^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$")
        with open(os.path.join(eng.data, "auth.db"), "rb") as f:
            self.assertNotIn(b"password-admin", f.read())

    def test_wrong_password_and_lockout_with_backoff(self):
        eng = self.auth_engine(config={"auth": {"lockout": {"threshold": 3, "duration": "30s"}}})
        for _ in range(3):
            st, body = eng.post_json("/auth/login", {"username": "admin", "password": "nope-nope"})
            self.assertEqual((st, body["error"]), (401, "invalid_grant"))
        st, hd, body = eng.request("POST", "/auth/login", body={"username": "admin", "password": "password-admin"})
        self.assertEqual(st, 429)
        self.assertIn(json.loads(body)["error"], "account_locked")
        self.assertGreater(int(hd["retry-after"]), 20)
        # unknown users answer exactly like wrong passwords
        st, body = eng.post_json("/auth/login", {"username": "ghost", "password": "whatever1"})
        self.assertEqual((st, body), (401, {"error": "invalid_grant", "error_description": "invalid credentials"}))
        rc, out, _ = eng.cli("user", "list")
        self.assertIn("admin\tadmin\tactive,locked", out)
        # an admin resets the password: the lock goes too
        rc, _, err = eng.cli("user", "passwd", "admin", input="brand-new-pass\n")
        self.assertEqual(rc, 0, err)
        self.login(eng, "admin", "brand-new-pass")

    def test_bad_login_requests(self):
        eng = self.auth_engine()
        cases = [
            ({"username": "admin"}, 400),
            ({"password": "x"}, 400),
            ("not json", 400),
            ({"username": "a" * 65, "password": "x"}, 400),
            ({"username": "admin' OR '1'='1", "password": "' OR '1'='1"}, 401),
        ]
        for body, want in cases:
            st, hd, b = eng.request("POST", "/auth/login", body=body,
                                    headers={"Content-Type": "application/json"})
            self.assertEqual(st, want, body)
        # duplicated form parameters are refused
        st, hd, b = eng.request("POST", "/auth/login", body="username=admin&username=root&password=password-admin",
                                headers=FORM)
        self.assertEqual(st, 400)

    def test_refresh_rotation_and_reuse_detection(self):
        eng = self.auth_engine()
        t1 = self.login(eng, "admin")
        st, t2 = eng.post_json("/auth/refresh", {"refresh_token": t1["refresh_token"]})
        self.assertEqual(st, 200, t2)
        self.assertNotEqual(t2["refresh_token"], t1["refresh_token"])
        self.assertEqual(jwt_parts(t2["access_token"])[1]["sid"], jwt_parts(t1["access_token"])[1]["sid"])
        st, _, _ = eng.get("/errors", headers=self.bearer(t2["access_token"]))
        self.assertEqual(st, 200)
        # the spent token again: reuse → the whole session ends
        st, body = eng.post_json("/auth/refresh", {"refresh_token": t1["refresh_token"]})
        self.assertEqual((st, body["error"]), (401, "invalid_grant"))
        st, _ = eng.post_json("/auth/refresh", {"refresh_token": t2["refresh_token"]})
        self.assertEqual(st, 401)
        st, _, _ = eng.get("/errors", headers=self.bearer(t2["access_token"]))
        self.assertEqual(st, 401)
        st, _ = eng.post_json("/auth/refresh", {"refresh_token": "rt." + "0" * 64})
        self.assertEqual(st, 401)

    def test_register_is_admin_only_and_first_admin_comes_from_cli(self):
        eng = self.auth_engine(users=())
        # no user, no default password: nobody can log in or register
        st, _ = eng.post_json("/auth/login", {"username": "admin", "password": "admin"})
        self.assertEqual(st, 401)
        st, _ = eng.post_json("/auth/register", {"username": "x", "password": "password-x", "role": "admin"})
        self.assertEqual(st, 401)
        rc, _, err = eng.cli("user", "add", "root", "--role", "admin", input="password-root\n")  # while running
        self.assertEqual(rc, 0, err)
        adm = self.login(eng, "root")["access_token"]
        st, body = eng.post_json("/auth/register", {"username": "carol", "password": "password-carol",
                                                    "role": "clinician"}, headers=self.bearer(adm))
        self.assertEqual((st, body), (201, {"username": "carol", "role": "clinician"}))
        st, _ = eng.post_json("/auth/register", {"username": "carol", "password": "password-carol",
                                                 "role": "clinician"}, headers=self.bearer(adm))
        self.assertEqual(st, 409)
        st, _ = eng.post_json("/auth/register", {"username": "dave", "password": "password-dave",
                                                 "role": "superuser"}, headers=self.bearer(adm))
        self.assertEqual(st, 400)
        carol = self.login(eng, "carol")["access_token"]
        st, _ = eng.post_json("/auth/register", {"username": "eve", "password": "password-eve", "role": "admin"},
                              headers=self.bearer(carol))
        self.assertEqual(st, 403)

    def test_cli_contract(self):
        eng = self.auth_engine(start=False, users=())
        rc, _, err = eng.cli("user", "add", "bob", "--role", "wizard", input="password-bob\n")
        self.assertEqual(rc, 2)
        self.assertIn("unknown role", err)
        rc, _, err = eng.cli("user", "add", "bob", "--role", "admin", input="short\n")
        self.assertEqual(rc, 2)
        rc, _, err = eng.cli("user", "add", "bob", "--role", "auditor", input="password-bob\n")
        self.assertEqual(rc, 0)
        rc, _, err = eng.cli("user", "add", "bob", "--role", "auditor", input="password-bob\n")
        self.assertEqual(rc, 1)
        self.assertIn("exists", err)
        rc, out, _ = eng.cli("user", "list")
        self.assertEqual(out, "bob\tauditor\tactive\n")
        rc, _, _ = eng.cli("user", "disable", "bob")
        self.assertEqual(rc, 0)
        rc, out, _ = eng.cli("user", "list")
        self.assertEqual(out, "bob\tauditor\tdisabled\n")
        rc, _, _ = eng.cli("user", "disable", "nobody")
        self.assertEqual(rc, 1)

    def test_disable_user_ends_access_while_running(self):
        eng = self.auth_engine(users=(("admin", "admin"), ("carol", "clinician")))
        t = self.login(eng, "carol")
        st, _, _ = eng.get("/auth/verify", headers=self.bearer(t["access_token"]))
        self.assertEqual(st, 200)
        rc, _, err = eng.cli("user", "disable", "carol")
        self.assertEqual(rc, 0, err)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            st, _, _ = eng.get("/auth/verify", headers=self.bearer(t["access_token"]))
            if st == 401:
                break
            time.sleep(0.2)
        self.assertEqual(st, 401)
        st, _ = eng.post_json("/auth/login", {"username": "carol", "password": "password-carol"})
        self.assertEqual(st, 401)
        st, _ = eng.post_json("/auth/refresh", {"refresh_token": t["refresh_token"]})
        self.assertEqual(st, 401)


class Tokens(AuthCase):
    def test_token_defects_are_401_and_leak_nothing(self):
        eng = self.auth_engine()
        good = self.login(eng, "admin")["access_token"]
        h, c, sig = jwt_parts(good)
        other = Key(self.workdir, "EC")
        now = int(time.time())
        tampered = dict(c, sub="root")
        jwks = json.loads(eng.get("/auth/jwks")[2])
        defects = {
            "alg none": unsigned({"alg": "none", "typ": "JWT"}, c) + ".",
            "alg none with kid": unsigned(dict(h, alg="none"), c) + ".",
            "alg switched to HS256 keyed with the public key":
                unsigned(dict(h, alg="HS256"), c) + "." + b64u(__import__("hmac").new(
                    json.dumps(jwks).encode(), unsigned(dict(h, alg="HS256"), c).encode(),
                    "sha256").digest()),
            "alg switched to RS256": unsigned(dict(h, alg="RS256"), c) + "." + sig,
            "payload tampered": unsigned(h, tampered) + "." + sig,
            "signature truncated": good[:-10],
            "signature of another key, our kid": other.jwt(dict(c), alg="ES384", header={"kid": h["kid"]}),
            "unknown kid": other.jwt(dict(c), alg="ES384"),
            "four segments": good + ".x",
            "garbage": "abc.def.ghi",
            "empty": "",
            "huge": "a" * 9000,
            "base64 padding": good.split(".")[0] + "==." + ".".join(good.split(".")[1:]),
            "DER signature": ".".join(good.split(".")[:2]) + "." + b64u(b"\x30" + b"\x00" * 70),
            "critical header": unsigned(dict(h, crit=["exp"]), c) + "." + sig,
        }
        for name, tok in defects.items():
            st, hd, body = eng.get("/errors", headers={"Authorization": "Bearer " + tok})
            self.assertEqual(st, 401, name)
            self.assertIn("invalid_token", hd.get("www-authenticate", ""), name)
            self.assertNotIn(b"signature", body, name)  # the reason is logged, not told
        st, _, _ = eng.get("/errors", headers={"Authorization": "Basic YWRtaW46eA=="})
        self.assertEqual(st, 401)
        st, _, _ = eng.get("/errors", headers={"Authorization": "bearer " + good})  # scheme is case-insensitive
        self.assertEqual(st, 200)

    def test_expired_wrong_issuer_and_audience(self):
        eng = self.auth_engine(config={"auth": {"access_ttl": "1s", "leeway": "0s"}})
        t = self.login(eng, "admin")["access_token"]
        st, _, _ = eng.get("/errors", headers=self.bearer(t))
        self.assertEqual(st, 200)
        time.sleep(2.2)
        st, _, _ = eng.get("/errors", headers=self.bearer(t))
        self.assertEqual(st, 401)
        # same keys, another issuer or audience: refused
        eng.stop()
        cfg = merge(FAST, {"auth": {"issuer": "https://ehr.example.org"}})
        with open(eng.config_path, "w") as f:
            json.dump(cfg, f)
        eng.start()
        t2 = self.login(eng, "admin")["access_token"]
        self.assertEqual(jwt_parts(t2)[1]["iss"], "https://ehr.example.org")
        eng.stop()
        cfg = merge(FAST, {"auth": {"issuer": "https://ehr.example.org", "audience": "https://other/fhir"}})
        with open(eng.config_path, "w") as f:
            json.dump(cfg, f)
        eng.start()
        st, _, _ = eng.get("/errors", headers=self.bearer(t2))
        self.assertEqual(st, 401, "wrong audience accepted")
        eng.stop()
        cfg = merge(FAST, {"auth": {"issuer": "https://elsewhere.example.org", "audience": "https://ehr.example.org/fhir"}})
        with open(eng.config_path, "w") as f:
            json.dump(cfg, f)
        eng.start()
        st, _, _ = eng.get("/errors", headers=self.bearer(t2))
        self.assertEqual(st, 401, "wrong issuer accepted")

    def test_jwks_and_key_rotation(self):
        eng = self.auth_engine()
        t1 = self.login(eng, "admin")["access_token"]
        st, jwks = eng.get_json("/auth/jwks")
        self.assertEqual(st, 200)
        self.assertEqual(len(jwks["keys"]), 1)
        k = jwks["keys"][0]
        self.assertEqual((k["kty"], k["crv"], k["alg"]), ("EC", "P-256", "ES256"))
        self.assertNotIn("d", k)
        rc, kid, err = eng.cli("keys", "rotate")
        self.assertEqual(rc, 0, err)
        kid = kid.strip()
        # the running engine picks the new key up without a restart (auth.keys_check, 2 s)
        deadline = time.time() + 10
        while time.time() < deadline:
            st, jwks = eng.get_json("/auth/jwks")
            if jwks["keys"][0]["kid"] == kid:
                break
            time.sleep(0.2)
        self.assertEqual([x["kid"] for x in jwks["keys"]][0], kid)
        self.assertEqual(len(jwks["keys"]), 2)
        t2 = self.login(eng, "admin")["access_token"]
        self.assertEqual(jwt_parts(t2)[0]["kid"], kid)
        for t in (t1, t2):  # old tokens keep working until they expire
            st, _, _ = eng.get("/errors", headers=self.bearer(t))
            self.assertEqual(st, 200)

    def test_unknown_kid_rereads_the_keys(self):
        # two engines on one database (as processes behind a load balancer), one issuer;
        # the second never looks for new keys on its own (auth.keys_check 0)
        cfg = {"auth": {"issuer": "http://hv.test"}}
        a = self.auth_engine(config=cfg)
        b = self.engine(start=False, auth=True, config=merge(FAST, {"auth": {"issuer": "http://hv.test",
                                                                              "keys_check": "0s"}}))
        b.data = a.data
        b.start()
        rc, kid, err = a.cli("keys", "rotate")
        self.assertEqual(rc, 0, err)
        deadline = time.time() + 10
        while time.time() < deadline and self.login(a, "admin") and \
                jwt_parts(self.login(a, "admin")["access_token"])[0]["kid"] != kid.strip():
            time.sleep(0.2)
        tok = self.login(a, "admin")["access_token"]
        self.assertEqual(jwt_parts(tok)[0]["kid"], kid.strip())
        # b has not read the new key: the first request with it is refused and makes b
        # re-read its keys; the next ones pass — no restart
        sts = []
        for _ in range(30):
            st, _, _ = b.get("/errors", headers=self.bearer(tok))
            sts.append(st)
            if st == 200:
                break
            time.sleep(0.1)
        self.assertEqual(sts[0], 401)
        self.assertEqual(sts[-1], 200)
        self.assertEqual(sts.count(401), 1)
        st, jwks = b.get_json("/auth/jwks")
        self.assertEqual(jwks["keys"][0]["kid"], kid.strip())
        # forged kids are refused (and make at most one cheap re-read a second)
        forged = unsigned({"alg": "ES256", "kid": "nope", "typ": "JWT"}, {"sub": "x"}) + ".AAAA"
        for _ in range(20):
            st, _, _ = b.get("/errors", headers=self.bearer(forged))
            self.assertEqual(st, 401)
        self.assertEqual(b.stop(), 0)  # flushes its log
        self.assertEqual(sum(1 for e in b.log_events() if e.get("event") == "auth.keys_reloaded"), 1)

    def test_encrypted_keys_and_rs256(self):
        eng = self.auth_engine(config={"auth": {"alg": "RS256", "key_passphrase": "correct horse"}})
        t = self.login(eng, "admin")["access_token"]
        self.assertEqual(jwt_parts(t)[0]["alg"], "RS256")
        import sqlite3
        (pem,) = sqlite3.connect(os.path.join(eng.data, "auth.db")).execute(
            "SELECT private_pem FROM signing_keys").fetchone()
        self.assertIn("ENCRYPTED PRIVATE KEY", pem)
        eng.stop()
        with open(eng.config_path, "w") as f:
            json.dump(merge(FAST, {"auth": {"alg": "RS256", "key_passphrase": "wrong"}}), f)
        eng.start(wait=False)
        self.assertEqual(eng.proc.wait(10), 2)
        self.assertIn("auth.key_passphrase", eng.stderr())


class Guard(AuthCase):
    def test_roles_guard_engine_endpoints(self):
        eng = self.auth_engine(users=(("admin", "admin"), ("ivy", "integrator"), ("carl", "clinician"),
                                      ("audrey", "auditor"), ("sam", "service")))
        tok = {n: self.login(eng, n)["access_token"] for n in ("admin", "ivy", "carl", "audrey", "sam")}
        # (method, path, {user: expected status}); 404 means "passed the guard, no route yet"
        matrix = [
            ("GET", "/errors", {"admin": 200, "ivy": 200, "carl": 403, "audrey": 403, "sam": 403}),
            ("GET", "/alerts", {"admin": 200, "ivy": 200, "carl": 403, "audrey": 403, "sam": 403}),
            ("GET", "/performance", {"admin": 200, "ivy": 200, "carl": 403, "audrey": 403, "sam": 403}),
            ("GET", "/metrics", {"admin": 200, "ivy": 200, "carl": 403, "audrey": 403, "sam": 200}),
            ("GET", "/channels", {"admin": 200, "ivy": 200, "carl": 403, "audrey": 403, "sam": 403}),
            ("GET", "/audit/events", {"admin": 404, "ivy": 403, "carl": 403, "audrey": 404, "sam": 403}),
            ("POST", "/terminology/load", {"admin": 404, "ivy": 403, "carl": 403, "audrey": 403, "sam": 403}),
            # passed the guard: FHIR type search answers 200 to the roles whose login tokens
            # carry FHIR scopes; a service login token has none (403, fhir/rest_authz.c)
            ("GET", "/fhir/Patient", {"admin": 200, "ivy": 200, "carl": 200, "audrey": 200, "sam": 403}),
        ]
        for method, path, want in matrix:
            for user, status in want.items():
                st, _, _ = eng.request(method, path, headers=self.bearer(tok[user]))
                self.assertEqual(st, status, "%s %s as %s" % (method, path, user))
            st, _, _ = eng.request(method, path)
            self.assertEqual(st, 401, "%s %s anonymous" % (method, path))
        # POST /errors: any authenticated caller may report
        st, _ = eng.post_json("/errors", {"message": "x"}, headers=self.bearer(tok["carl"]))
        self.assertEqual(st, 201)
        # anonymous: /health and /.well-known only
        for path in ("/health", "/.well-known/smart-configuration", "/auth/jwks"):
            st, _, _ = eng.get(path)
            self.assertEqual(st, 200, path)
        st, _, _ = eng.get("/healthz")
        self.assertEqual(st, 401)

    def test_guard_runs_whatever_services_are_chosen(self):
        eng = self.auth_engine(args=["--services", "terminology"])
        st, _, _ = eng.get("/errors")
        self.assertEqual(st, 401)
        t = self.login(eng, "admin")["access_token"]
        st, _, _ = eng.get("/errors", headers=self.bearer(t))
        self.assertEqual(st, 200)

    def test_anonymous_paths_are_configurable(self):
        eng = self.auth_engine(config={"auth": {"anonymous": "/metrics"}})
        st, _, _ = eng.get("/metrics")
        self.assertEqual(st, 200)
        st, _, _ = eng.get("/errors")
        self.assertEqual(st, 401)

    def test_rate_limits_per_ip_and_per_client(self):
        eng = self.auth_engine(config={"auth": {"rate": {"ip_per_sec": 1, "ip_burst": 5}, "anonymous": "/metrics"}})
        codes = [eng.get("/health")[0] for _ in range(8)]
        self.assertIn(429, codes)
        self.assertLessEqual(codes.count(200), 6)  # the burst (start-up probes used some) + refill
        st, hd, body = eng.get("/health")
        self.assertEqual(st, 429)
        self.assertGreaterEqual(int(hd["retry-after"]), 1)
        time.sleep(1.1)
        self.assertEqual(eng.get("/health")[0], 200)
        time.sleep(1.1)
        self.assertGreater(eng.metric("holovitals_auth_requests_total", 'result="rate_limited"'), 0)

    def test_per_client_bucket_and_login_throttle(self):
        eng = self.auth_engine(config={"auth": {"rate": {"client_per_sec": 1, "client_burst": 3,
                                                         "login_per_min": 1, "login_burst": 3}}})
        t = self.login(eng, "admin")["access_token"]
        codes = [eng.get("/errors", headers=self.bearer(t))[0] for _ in range(5)]
        self.assertEqual(codes[:3], [200] * 3)
        self.assertEqual(codes[3:], [429, 429])
        self.assertEqual(eng.get("/health")[0], 200)  # the IP bucket is separate
        codes = [eng.post_json("/auth/login", {"username": "admin", "password": "bad-bad-bad"})[0] for _ in range(3)]
        self.assertEqual(codes[-1], 429)

    def test_cors_allow_list(self):
        eng = self.auth_engine(config={"auth": {"cors_origins": "https://app.example.org, http://localhost:3000"}})
        pre = {"Origin": "https://app.example.org", "Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "authorization"}
        st, hd, _ = eng.request("OPTIONS", "/fhir/Patient", headers=pre)
        self.assertEqual(st, 204)
        self.assertEqual(hd["access-control-allow-origin"], "https://app.example.org")
        self.assertIn("Authorization", hd["access-control-allow-headers"])
        st, hd, _ = eng.request("OPTIONS", "/fhir/Patient", headers=dict(pre, Origin="https://evil.example.org"))
        self.assertEqual(st, 403)
        self.assertNotIn("access-control-allow-origin", hd)
        st, hd, _ = eng.get("/.well-known/smart-configuration", headers={"Origin": "http://localhost:3000"})
        self.assertEqual((st, hd["access-control-allow-origin"]), (200, "http://localhost:3000"))
        st, hd, _ = eng.get("/.well-known/smart-configuration", headers={"Origin": "https://app.example.org.evil"})
        self.assertNotIn("access-control-allow-origin", hd)


class AuthOff(AuthCase):
    def test_auth_off_warns_and_allows(self):
        eng = self.engine(config=FAST)  # the harness default: --auth off
        st, _, _ = eng.get("/errors")
        self.assertEqual(st, 200)
        st, doc = eng.get_json("/health")
        self.assertEqual(doc["status"], "warn")
        self.assertEqual(doc["checks"]["auth"][0]["status"], "warn")
        self.assertIn("authentication is off", eng.stderr())
        eng2 = self.engine(config=FAST, auth=True, env={"HOLOVITALS_AUTH": "off"})
        eng2.auth = True
        st, _, _ = eng2.get("/errors")
        self.assertEqual(st, 200)


class BackendServices(AuthCase):
    def setUp(self):
        super().setUp()
        self.eng = self.auth_engine(config={"auth": {"jwks": {"min_refetch": "1s"}}})
        self.token_url = "http://127.0.0.1:%d/auth/token" % self.eng.http_port

    def register(self, keys, scope="system/*.rs"):
        path = os.path.join(self.workdir, "jwks-%s.json" % secrets.token_hex(4))
        with open(path, "w") as f:
            json.dump({"keys": [k.jwk for k in keys]}, f)
        rc, out, err = self.eng.cli("client", "add", "--name", "peer", "--type", "backend", "--jwks", path,
                                    "--scope", scope)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^[0-9a-f]{32}\n$")  # the client_id alone on stdout
        return out.strip()

    def token(self, a, scope="system/*.rs", extra=None):
        d = {"grant_type": "client_credentials", "scope": scope,
             "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
             "client_assertion": a}
        d.update(extra or {})
        return self.form_post(self.eng, "/auth/token", d)

    def test_rs384_and_es384_assertions(self):
        rsa, ec = Key(self.workdir, "RSA"), Key(self.workdir, "EC")
        cid = self.register([rsa, ec], scope="system/*.rs system/Observation.cruds")
        for key in (rsa, ec):
            st, hd, body = self.token(assertion(key, cid, self.token_url), scope="system/Patient.rs system/Observation.c")
            self.assertEqual(st, 200, body)
            self.assertEqual(hd["cache-control"], "no-store")
            self.assertEqual((body["token_type"], body["scope"]), ("Bearer", "system/Patient.rs system/Observation.c"))
            self.assertNotIn("refresh_token", body)
            st, v = self.eng.get_json("/auth/verify", headers=self.bearer(body["access_token"]))
            self.assertEqual((st, v["client_id"], v["sub"]), (200, cid, cid))
            # a service token is no role: engine endpoints refuse it
            st, _, _ = self.eng.get("/errors", headers=self.bearer(body["access_token"]))
            self.assertEqual(st, 403)
            st, _, _ = self.eng.get("/fhir/Patient", headers=self.bearer(body["access_token"]))
            self.assertEqual(st, 200)  # through the guard: the FHIR type search answers

    def test_assertion_defects(self):
        key, stranger = Key(self.workdir, "RSA"), Key(self.workdir, "RSA")
        cid = self.register([key])
        replayed = assertion(key, cid, self.token_url)
        st, _, _ = self.token(replayed)
        self.assertEqual(st, 200)
        now = int(time.time())
        defects = {
            "replayed jti": (replayed, 401),
            "lifetime over 5 minutes": (assertion(key, cid, self.token_url, lifetime=600), 401),
            "expired": (assertion(key, cid, self.token_url, extra={"exp": now - 120, "iat": now - 400}), 401),
            "wrong audience": (assertion(key, cid, self.token_url + "x"), 401),
            "iss differs from sub": (assertion(key, cid, self.token_url, extra={"sub": "other"}), 401),
            "unknown client": (assertion(key, "f" * 32, self.token_url), 401),
            "signed by an unregistered key": (assertion(stranger, cid, self.token_url), 401),
            "unregistered key claiming a registered kid":
                (stranger.jwt({"iss": cid, "sub": cid, "aud": self.token_url, "exp": now + 60,
                               "jti": secrets.token_hex(8)}, header={"kid": key.kid}), 401),
            "RS256 instead of RS384": (assertion(key, cid, self.token_url, alg="RS256"), 401),
            "no jti": (key.jwt({"iss": cid, "sub": cid, "aud": self.token_url, "exp": now + 60}), 401),
            "alg none": (unsigned({"alg": "none"}, {"iss": cid, "sub": cid, "aud": self.token_url,
                                                    "exp": now + 60, "jti": "x"}) + ".", 401),
            "malformed": ("not-a-jwt", 401),
        }
        for name, (a, want) in defects.items():
            st, hd, body = self.token(a)
            self.assertEqual(st, want, name)
            self.assertEqual(body["error"], "invalid_client", name)
        # scope escalation: the registered scope is system/*.rs
        st, _, body = self.token(assertion(key, cid, self.token_url), scope="system/*.cruds")
        self.assertEqual((st, body["error"]), (400, "invalid_scope"))
        st, _, body = self.token(assertion(key, cid, self.token_url), scope="user/*.rs")
        self.assertEqual((st, body["error"]), (400, "invalid_scope"))
        # wrong assertion type, duplicated parameter, unknown grant
        st, _, body = self.token(assertion(key, cid, self.token_url),
                                 extra={"client_assertion_type": "urn:x"})
        self.assertEqual(st, 400)
        st, _, body = self.eng.request("POST", "/auth/token", headers=FORM,
                                       body="grant_type=client_credentials&grant_type=password")
        self.assertEqual(st, 400)
        st, _, body = self.token(assertion(key, cid, self.token_url), extra={"grant_type": "password"})
        self.assertEqual(json.loads(body)["error"] if isinstance(body, bytes) else body["error"], "unsupported_grant_type")

    def test_jwks_by_url_cached_and_refetched_for_a_new_key(self):
        import http.server
        import threading
        k1, k2, k3 = Key(self.workdir, "EC"), Key(self.workdir, "EC"), Key(self.workdir, "EC")
        served = {"keys": [k1.jwk]}
        hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                body = json.dumps(served).encode() if self.path == "/jwks.json" else b'{"keys":[' + b" " * 100000 + b"]}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=300")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.shutdown)
        url = "http://127.0.0.1:%d/jwks.json" % srv.server_address[1]
        rc, _, err = self.eng.cli("client", "add", "--name", "peer", "--type", "backend", "--jwks-uri",
                                  "http://example.org/jwks.json")
        self.assertEqual(rc, 2, err)  # plain http only to loopback
        rc, out, err = self.eng.cli("client", "add", "--name", "peer", "--type", "backend", "--jwks-uri", url)
        self.assertEqual(rc, 0, err)
        cid = out.strip()
        for _ in range(2):
            st, _, body = self.token(assertion(k1, cid, self.token_url))
            self.assertEqual(st, 200, body)
        self.assertEqual(len(hits), 1)  # fetched once, then cached (max-age=300)
        served["keys"].append(k2.jwk)  # the client rotates: a new key, a new kid
        time.sleep(1.1)  # auth.jwks.min_refetch is 1 s in this test (10 s by default)
        st, _, body = self.token(assertion(k2, cid, self.token_url))
        self.assertEqual(st, 200, body)
        self.assertEqual(len(hits), 2)  # the unknown kid made one refetch
        for _ in range(3):  # kids nobody published: refused, and no fetch storm
            st, _, body = self.token(assertion(k3, cid, self.token_url))
            self.assertEqual((st, body["error"]), (401, "invalid_client"))
        self.assertEqual(len(hits), 2)
        # a JWKS larger than auth.jwks.max_bytes is not read
        rc, out, err = self.eng.cli("client", "add", "--name", "big", "--type", "backend", "--jwks-uri",
                                    url.replace("jwks.json", "big.json"))
        big = out.strip()
        st, _, body = self.token(assertion(k1, big, self.token_url))
        self.assertEqual((st, body["error"]), (401, "invalid_client"))

    def test_dynamic_client_registration(self):
        url = "/auth/register-client"
        app = {"client_name": "reg app", "token_endpoint_auth_method": "none",
               "redirect_uris": ["https://app.example.org/cb"], "scope": "launch/patient patient/*.rs system/*.cruds"}
        st, body = self.eng.post_json(url, app)
        self.assertEqual(st, 401)  # no credential
        carl = None
        rc, _, err = self.eng.cli("user", "add", "carl", "--role", "clinician", input="password-carl\n")
        self.assertEqual(rc, 0, err)
        carl = self.login(self.eng, "carl")["access_token"]
        st, body = self.eng.post_json(url, app, headers=self.bearer(carl))
        self.assertEqual(st, 403)  # not an admin
        # an initial access token: single use, and the scope is narrowed to auth.registration.max_scope
        rc, out, err = self.eng.cli("client", "initial-token", "--ttl", "10m")
        self.assertEqual(rc, 0, err)
        iat = out.strip()
        self.assertRegex(iat, r"^iat\.[0-9a-f]{64}$")
        st, body = self.eng.post_json(url, app, headers=self.bearer(iat))
        self.assertEqual(st, 201, body)
        self.assertEqual(body["scope"], "launch/patient patient/*.rs")  # system/*.cruds dropped
        self.assertEqual(body["redirect_uris"], app["redirect_uris"])
        self.assertNotIn("client_secret", body)
        st, _ = self.eng.post_json(url, app, headers=self.bearer(iat))
        self.assertEqual(st, 401)  # spent
        st, _, _ = self.eng.get("/fhir/metadata", headers=self.bearer(iat))
        self.assertEqual(st, 401)  # it is no access token anywhere else
        # the registered app can run the authorization flow at once
        verifier, challenge = pkce()
        params = {"response_type": "code", "client_id": body["client_id"], "redirect_uri": app["redirect_uris"][0],
                  "scope": "launch/patient patient/*.rs", "state": "x", "aud": self.eng.base + "/fhir",
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        st, _, page = self.eng.get("/auth/authorize?" + form(params))
        self.assertEqual(st, 200, page)
        # an admin registers a backend service with inline keys; a confidential app gets its secret once
        admin = self.login(self.eng, "admin")["access_token"]
        key = Key(self.workdir, "EC")
        st, b2 = self.eng.post_json(url, {"client_name": "svc", "token_endpoint_auth_method": "private_key_jwt",
                                          "jwks": {"keys": [key.jwk]}, "scope": "system/*.cruds"},
                                    headers=self.bearer(admin))
        self.assertEqual((st, b2["scope"], b2["grant_types"]), (201, "system/*.cruds", ["client_credentials"]), b2)
        st, _, tok = self.token(assertion(key, b2["client_id"], self.token_url), scope="system/*.cruds")
        self.assertEqual(st, 200, tok)
        st, b3 = self.eng.post_json(url, {"client_name": "portal", "redirect_uris": ["https://p.example/cb"]},
                                    headers=self.bearer(admin))
        self.assertEqual((st, len(b3["client_secret"])), (201, 64))
        # bad metadata: 400 with an RFC 7591 error, nothing stored
        bad = [
            ({"client_name": "x", "token_endpoint_auth_method": "none", "redirect_uris": ["https://a/cb#frag"]},
             "invalid_redirect_uri"),
            ({"client_name": "x", "token_endpoint_auth_method": "none", "redirect_uris": []}, "invalid_redirect_uri"),
            ({"client_name": "x", "token_endpoint_auth_method": "private_key_jwt",
              "jwks": {"keys": [dict(key.jwk, d="AAAA")]}}, "invalid_client_metadata"),
            ({"client_name": "x", "token_endpoint_auth_method": "private_key_jwt",
              "jwks_uri": "http://example.org/jwks"}, "invalid_client_metadata"),
            ({"client_name": "x", "token_endpoint_auth_method": "tls_client_auth",
              "redirect_uris": ["https://a/cb"]}, "invalid_client_metadata"),
            ({"token_endpoint_auth_method": "none", "redirect_uris": ["https://a/cb"]}, "invalid_client_metadata"),
            ({"client_name": "x", "token_endpoint_auth_method": "none", "redirect_uris": ["https://a/cb"],
              "scope": "patient/Obs.xyz"}, "invalid_client_metadata"),
        ]
        for meta, err in bad:
            st, body = self.eng.post_json(url, meta, headers=self.bearer(admin))
            self.assertEqual((st, body["error"]), (400, err), meta)
        st, _, _ = self.eng.request("POST", url, body="not json", headers=self.bearer(admin))
        self.assertEqual(st, 400)

    def test_client_add_contract(self):
        rc, out, err = self.eng.cli("client", "add", "--name", "x", "--type", "backend")
        self.assertEqual(rc, 2)
        bad = os.path.join(self.workdir, "bad.json")
        with open(bad, "w") as f:
            json.dump({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}, f)
        rc, out, err = self.eng.cli("client", "add", "--name", "x", "--type", "backend", "--jwks", bad)
        self.assertEqual((rc, out), (2, ""))
        priv = Key(self.workdir, "EC")
        with open(bad, "w") as f:
            json.dump({"keys": [dict(priv.jwk, d="AAAA")]}, f)
        rc, out, err = self.eng.cli("client", "add", "--name", "x", "--type", "backend", "--jwks", bad)
        self.assertEqual(rc, 2)
        self.assertIn("private", err)
        rc, out, err = self.eng.cli("client", "add", "--name", "web", "--type", "confidential",
                                    "--redirect-uri", "https://app.example.org/cb")
        self.assertEqual(rc, 0, err)
        lines = out.split("\n")
        self.assertRegex(lines[0], r"^[0-9a-f]{32}$")
        self.assertRegex(lines[1], r"^[0-9a-f]{64}$")


class AppLaunch(AuthCase):
    REDIRECT = "https://app.example.org/callback"

    def setUp(self):
        super().setUp()
        self.eng = self.auth_engine(users=(("admin", "admin"), ("carl", "clinician")))
        self.base = "http://127.0.0.1:%d" % self.eng.http_port
        self.aud = self.base + "/fhir"
        rc, out, err = self.eng.cli("client", "add", "--name", "app", "--type", "public",
                                    "--redirect-uri", self.REDIRECT,
                                    "--scope", "launch/patient openid fhirUser offline_access patient/*.rs user/*.rs")
        self.assertEqual(rc, 0, err)
        self.cid = out.strip()

    def authorize_params(self, challenge, **over):
        p = {"response_type": "code", "client_id": self.cid, "redirect_uri": self.REDIRECT,
             "scope": "launch/patient openid fhirUser offline_access patient/Observation.rs",
             "state": "st-" + secrets.token_hex(4), "aud": self.aud, "code_challenge": challenge,
             "code_challenge_method": "S256"}
        p.update(over)
        return {k: v for k, v in p.items() if v is not None}

    def get_authorize(self, params):
        return self.eng.get("/auth/authorize?" + form(params))

    def login_and_consent(self, params, user="carl", patient="pat-1", decision="allow"):
        d = dict(params, username=user, password="password-%s" % user, decision=decision)
        if patient:
            d["patient"] = patient
        st, hd, body = self.eng.request("POST", "/auth/authorize", body=form(d), headers=FORM)
        return st, hd, body

    def redirect_query(self, hd):
        loc = hd["location"]
        self.assertTrue(loc.startswith(self.REDIRECT + "?"), loc)
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))

    def test_smart_configuration(self):
        st, doc = self.eng.get_json("/.well-known/smart-configuration")
        self.assertEqual(st, 200)
        st, doc2 = self.eng.get_json("/fhir/.well-known/smart-configuration")  # [base]/.well-known, anonymous
        self.assertEqual((st, doc2), (200, doc))
        self.assertEqual(doc["code_challenge_methods_supported"], ["S256"])
        self.assertEqual(doc["token_endpoint"], self.base + "/auth/token")
        self.assertEqual(doc["authorization_endpoint"], self.base + "/auth/authorize")
        for k in ("introspection_endpoint", "revocation_endpoint", "jwks_uri", "grant_types_supported",
                  "scopes_supported", "capabilities", "token_endpoint_auth_methods_supported"):
            self.assertIn(k, doc)
        self.assertIn("client_credentials", doc["grant_types_supported"])
        self.assertIn("private_key_jwt", doc["token_endpoint_auth_methods_supported"])

    def test_full_flow_with_pkce_refresh_introspect_revoke(self):
        verifier, challenge = pkce()
        params = self.authorize_params(challenge)
        st, hd, page = self.get_authorize(params)
        self.assertEqual(st, 200)
        self.assertIn(b"<form method=post", page)
        self.assertIn(b"name=patient", page)
        self.assertIn("frame-ancestors 'none'", hd["content-security-policy"])
        st, hd, page = self.login_and_consent(params, user="carl", patient="pat-1")
        self.assertEqual(st, 302, page)
        q = self.redirect_query(hd)
        self.assertEqual(q["state"], params["state"])
        code = q["code"]
        tok = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.REDIRECT,
               "client_id": self.cid, "code_verifier": verifier}
        st, hd, body = self.form_post(self.eng, "/auth/token", tok)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["patient"], "pat-1")
        self.assertEqual(body["scope"], "launch/patient openid fhirUser offline_access patient/Observation.rs")
        self.assertIn("refresh_token", body)
        _, idc, _ = jwt_parts(body["id_token"])
        self.assertEqual((idc["sub"], idc["aud"]), ("carl", self.cid))
        self.assertEqual(idc["fhirUser"], self.aud + "/Practitioner/carl")
        _, ac, _ = jwt_parts(body["access_token"])
        self.assertEqual((ac["patient"], ac["client_id"]), ("pat-1", self.cid))
        self.assertNotIn("role", ac)  # an app token is limited by its scopes, not the user's role
        # the code is single use
        st, _, again = self.form_post(self.eng, "/auth/token", tok)
        self.assertEqual((st, again["error"]), (400, "invalid_grant"))
        # introspection (RFC 7662) needs a token of its own
        st, _, _ = self.form_post(self.eng, "/auth/introspect", {"token": body["access_token"]})
        self.assertEqual(st, 401)
        admin = self.login(self.eng, "admin")["access_token"]
        st, _, info = self.form_post(self.eng, "/auth/introspect", {"token": body["access_token"]},
                                     headers=self.bearer(admin))
        self.assertEqual((st, info["active"], info["patient"], info["client_id"]), (200, True, "pat-1", self.cid))
        st, _, info = self.form_post(self.eng, "/auth/introspect", {"token": "junk"}, headers=self.bearer(admin))
        self.assertEqual(info, {"active": False})
        # refresh: rotates; another client's id is refused
        st, _, r2 = self.form_post(self.eng, "/auth/token", {"grant_type": "refresh_token", "client_id": self.cid,
                                                            "refresh_token": body["refresh_token"]})
        self.assertEqual(st, 200, r2)
        self.assertEqual(r2["patient"], "pat-1")
        self.assertNotEqual(r2["refresh_token"], body["refresh_token"])
        # revoke the refresh token: the session ends
        st, _, _ = self.form_post(self.eng, "/auth/revoke", {"token": r2["refresh_token"]})
        self.assertEqual(st, 200)
        st, _, r3 = self.form_post(self.eng, "/auth/token", {"grant_type": "refresh_token", "client_id": self.cid,
                                                            "refresh_token": r2["refresh_token"]})
        self.assertEqual(st, 400)
        st, _, _ = self.eng.get("/auth/verify", headers=self.bearer(r2["access_token"]))
        self.assertEqual(st, 401)
        # revoking an access token
        st, _, _ = self.form_post(self.eng, "/auth/revoke", {"token": admin})
        self.assertEqual(st, 200)
        st, _, _ = self.eng.get("/auth/verify", headers=self.bearer(admin))
        self.assertEqual(st, 401)

    def test_authorize_request_defects(self):
        verifier, challenge = pkce()
        good = self.authorize_params(challenge)
        # no redirect at all when the client or redirect_uri is wrong (no open redirect)
        for over in ({"redirect_uri": self.REDIRECT + "/"}, {"redirect_uri": self.REDIRECT[:-1]},
                     {"redirect_uri": "https://evil.example.org/callback"},
                     {"redirect_uri": self.REDIRECT + "?x=1"}, {"client_id": "nope"}, {"client_id": None}):
            st, hd, body = self.get_authorize(dict(good, **over) if None not in over.values()
                                              else {k: v for k, v in good.items() if k not in over})
            self.assertEqual(st, 400, over)
            self.assertNotIn("location", hd, over)
        # duplicated parameters: refused without redirect
        st, hd, _ = self.eng.get("/auth/authorize?" + form(good) + "&redirect_uri=https%3A%2F%2Fevil.example.org%2F")
        self.assertEqual(st, 400)
        self.assertNotIn("location", hd)
        # then errors go back to the app with the state
        for over, err in (({"code_challenge": None}, "invalid_request"),
                          ({"code_challenge_method": "plain"}, "invalid_request"),
                          ({"code_challenge_method": None}, "invalid_request"),
                          ({"code_challenge": "short"}, "invalid_request"),
                          ({"aud": "https://other.example.org/fhir"}, "invalid_request"),
                          ({"response_type": "token"}, "unsupported_response_type"),
                          ({"scope": "system/*.cruds"}, "invalid_scope"),
                          ({"scope": "patient/Obs.xyz"}, "invalid_scope")):
            p = {k: v for k, v in dict(good, **over).items() if v is not None}
            st, hd, _ = self.get_authorize(p)
            self.assertEqual(st, 302, over)
            q = self.redirect_query(hd)
            self.assertEqual((q["error"], q["state"]), (err, good["state"]), over)
            self.assertNotIn("code", q)

    def test_code_exchange_defects(self):
        verifier, challenge = pkce()
        params = self.authorize_params(challenge)
        st, hd, _ = self.login_and_consent(params, user="carl", patient="pat-1", decision="deny")
        self.assertEqual(self.redirect_query(hd)["error"], "access_denied")
        st, hd, page = self.login_and_consent(dict(params), user="carl", patient="pat-1")
        code = self.redirect_query(hd)["code"]
        # wrong password keeps the page, issues nothing
        d = dict(params, username="carl", password="wrong-wrong", decision="allow", patient="pat-1")
        st, hd, page = self.eng.request("POST", "/auth/authorize", body=form(d), headers=FORM)
        self.assertEqual(st, 401)
        self.assertNotIn("location", hd)
        base = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.REDIRECT,
                "client_id": self.cid, "code_verifier": verifier}
        # a wrong verifier spends the code (RFC 6749 §4.1.2)
        st, _, body = self.form_post(self.eng, "/auth/token", dict(base, code_verifier=pkce()[0]))
        self.assertEqual((st, body["error"]), (400, "invalid_grant"))
        st, _, body = self.form_post(self.eng, "/auth/token", base)
        self.assertEqual((st, body["error"]), (400, "invalid_grant"))
        # a fresh code with the redirect_uri changed, without verifier, or for another client
        for over in ({"redirect_uri": self.REDIRECT + "x"}, {"code_verifier": None}):
            st, hd, _ = self.login_and_consent(params, user="carl", patient="pat-1")
            c = self.redirect_query(hd)["code"]
            d = {k: v for k, v in dict(base, code=c, **over).items() if v is not None}
            st, _, body = self.form_post(self.eng, "/auth/token", d)
            self.assertEqual((st, body["error"]), (400, "invalid_grant"), over)
        st, _, body = self.form_post(self.eng, "/auth/token", dict(base, client_id="nope"))
        self.assertEqual((st, body["error"]), (401, "invalid_client"))
        # a patient id that is not a FHIR id: the user has signed in, so the picker comes
        # (with a ticket standing for the sign-in, no password field), and no code
        st, hd, page = self.login_and_consent(params, user="carl", patient="../Patient/x")
        self.assertEqual(st, 200)
        self.assertNotIn("location", hd)
        self.assertIn(b"choose a patient", page)
        self.assertIn(b'name="ticket"', page)
        self.assertNotIn(b"name=password", page)

    def test_confidential_client_needs_its_secret(self):
        rc, out, err = self.eng.cli("client", "add", "--name", "srv", "--type", "confidential",
                                    "--redirect-uri", self.REDIRECT, "--scope", "user/*.rs openid")
        cid, secret = out.split("\n")[:2]
        verifier, challenge = pkce()
        p = self.authorize_params(challenge, client_id=cid, scope="user/Observation.rs")
        st, hd, _ = self.login_and_consent(p, user="carl", patient=None)
        self.assertEqual(st, 302)
        code = self.redirect_query(hd)["code"]
        tok = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.REDIRECT,
               "code_verifier": verifier}
        st, _, body = self.form_post(self.eng, "/auth/token", dict(tok, client_id=cid))
        self.assertEqual((st, body["error"]), (401, "invalid_client"))
        import base64 as b64
        basic = "Basic " + b64.b64encode(("%s:%s" % (cid, "0" * 64)).encode()).decode()
        st, hd, body = self.form_post(self.eng, "/auth/token", tok, headers={"Authorization": basic})
        self.assertEqual(st, 401)
        self.assertIn("Basic", hd["www-authenticate"])
        # the code was not spent by failed client authentication? it was looked up only after auth
        basic = "Basic " + b64.b64encode(("%s:%s" % (cid, secret)).encode()).decode()
        st, _, body = self.form_post(self.eng, "/auth/token", tok, headers={"Authorization": basic})
        self.assertEqual(st, 200, body)
        self.assertEqual(body["scope"], "user/Observation.rs")
        self.assertNotIn("patient", body)


class FhirClientLaunch(AuthCase):
    """The App Launch flow driven by the real SMART client library, npm fhirclient, under Node."""

    CLIENT = os.path.join(SRCDIR, "test", "integration", "smart-client")

    def test_fhirclient_standalone_launch_with_pkce(self):
        if not os.path.isdir(os.path.join(self.CLIENT, "node_modules", "fhirclient")):
            self.fail("npm fhirclient is not installed: run scripts/setup.sh "
                      "(npm ci --legacy-peer-deps in test/integration/smart-client)")
        eng = self.auth_engine(users=(("carl", "clinician"),))
        app_port = free_port()
        rc, out, err = eng.cli("client", "add", "--name", "fhirclient", "--type", "public",
                               "--redirect-uri", "http://127.0.0.1:%d/callback" % app_port)
        self.assertEqual(rc, 0, err)
        cid = out.strip()
        iss = "http://127.0.0.1:%d/fhir" % eng.http_port
        p = subprocess.run(["node", os.path.join(self.CLIENT, "smart_app.js"), iss, cid, str(app_port), "carl",
                            "password-carl", "pat-7"], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        out = json.loads(p.stdout.strip().splitlines()[-1])
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(out["authorizeUrl"]).query))
        self.assertEqual((q["code_challenge_method"], q["aud"], q["client_id"]), ("S256", iss, cid))
        res = out["result"]
        self.assertEqual(res["patient"], "pat-7")
        self.assertEqual(res["fhirUser"], "Practitioner/carl")
        tr = res["tokenResponse"]
        self.assertEqual(tr["token_type"], "Bearer")
        self.assertIn("patient/Observation.rs", tr["scope"].split())
        for k in ("access_token", "refresh_token", "id_token"):
            self.assertIn(k, tr)
        st, v = eng.get_json("/auth/verify", headers=self.bearer(tr["access_token"]))
        self.assertEqual((st, v["patient"], v["client_id"], v["sub"]), (200, "pat-7", cid, "carl"))


class Tls(AuthCase):
    def test_selfsigned_certificate_serves_https(self):
        eng = self.engine(start=False, auth=True, config=FAST)
        rc, out, err = eng.cli("tls", "selfsigned")
        self.assertEqual(rc, 0, err)
        cert = os.path.join(eng.data, "tls", "cert.pem")
        key = os.path.join(eng.data, "tls", "key.pem")
        self.assertEqual(out, "certificate: %s\nprivate key: %s\n" % (cert, key))
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        eng.tls = (cert, key)
        eng.start()
        ctx = ssl.create_default_context(cafile=cert)  # verifies the chain and the name
        with socket.create_connection(("127.0.0.1", eng.http_port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                self.assertIn(t.version(), ("TLSv1.2", "TLSv1.3"))
                t.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                self.assertTrue(t.recv(100).startswith(b"HTTP/1.1 200"))
        st, doc = eng.get_json("/.well-known/smart-configuration")
        self.assertTrue(doc["token_endpoint"].startswith("https://"))


if __name__ == "__main__":
    main()
