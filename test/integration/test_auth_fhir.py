#!/usr/bin/env python3
"""test_auth_fhir.py — SMART scopes enforced on the FHIR REST API end to end (issue 10).

Real tokens against a real engine: an app token from the authorization-code flow
with PKCE (patient/ scopes and a launch patient), login tokens (user/ scopes by
role) and a backend-services token (system/ scopes, an RS384 assertion signed by
OpenSSL). Two patients with data of their own; every way a patient/ token could
reach the other patient's data — by id, vread, search (plain, by reference, by
_id), history (instance, type, system), the compartment, $everything, batch
Bundles, Bulk Data export, the /patients views — is refused (403 by type, 404 for
a resource outside the compartment) or filtered, and the answer is checked to hold
nothing of the other patient. Writes into another compartment are refused. Runs on
SQLite and, when HV_TEST_PG_URL names a server (scripts/pg.sh), on PostgreSQL.
"""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse

from authlib import FORM, Key, assertion, form, jwt_parts, pkce
from harness import WORKROOT, Engine, EngineTestCase, main

PG_URL = os.environ.get("HV_TEST_PG_URL")
FJ = "application/fhir+json"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
FAST = {"auth": {"password": {"scrypt_n": 1024},
                 "rate": {"login_per_min": 6000, "login_burst": 1000, "ip_per_sec": 10000, "ip_burst": 10000,
                          "client_per_sec": 10000, "client_burst": 10000}}}
REDIRECT = "https://app.example.org/callback"
SECRET_OF_PAT2 = "Zebediah-of-pat-2"  # a marker only pat-2's data holds


def obs(oid, patient, category, extra=""):
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": category}]}],
            "code": {"text": "test " + oid + extra}, "subject": {"reference": "Patient/" + patient}}


class FhirScopes(EngineTestCase):
    DB = None

    # -- one engine per class (starting one, adding users and the data cost a second): the
    #    tests only read the seeded data or write resources of their own, and undo it --

    @classmethod
    def setUpClass(cls):
        config = json.loads(json.dumps(FAST))
        if cls.DB:
            subprocess.run(["psql", "-q", "-X", cls.DB, "-c",
                            "DROP SCHEMA IF EXISTS fhir CASCADE; DROP SCHEMA IF EXISTS auth CASCADE"],
                           check=True, capture_output=True, timeout=30)
            config["db"] = cls.DB
        os.makedirs(WORKROOT, exist_ok=True)
        cls.classdir = tempfile.mkdtemp(prefix=cls.__name__ + "-", dir=WORKROOT)
        cls.eng = Engine(os.path.join(cls.classdir, "engine"), auth=True, config=config)
        for name, role in (("admin", "admin"), ("carl", "clinician"), ("aud", "auditor")):
            rc, _, err = cls.eng.cli("user", "add", name, "--role", role, input="password-%s\n" % name)
            assert rc == 0, err
        rc, out, err = cls.eng.cli("client", "add", "--name", "app", "--type", "public", "--redirect-uri", REDIRECT,
                                   "--scope", "launch launch/patient openid fhirUser patient/*.cruds")
        assert rc == 0, err
        cls.app = out.strip()
        cls.eng.start()
        cls.base = "http://127.0.0.1:%d" % cls.eng.http_port
        st, body = cls.eng.post_json("/auth/login", {"username": "admin", "password": "password-admin"})
        assert st == 200, body
        cls.admin = body["access_token"]
        cls.seed()

    @classmethod
    def tearDownClass(cls):
        # the engine must stop cleanly: exit 0, and under --enable-sanitizers no report
        rc = cls.eng.stop()
        err = cls.eng.stderr()
        cls.eng.close()
        if rc != 0 or "Sanitizer" in err or "runtime error" in err:
            raise AssertionError("engine exit %s (logs in %s):\n%s" % (rc, cls.classdir, err[-3000:]))
        shutil.rmtree(cls.classdir, ignore_errors=True)

    # -- helpers --

    def login(self, name):
        st, body = self.eng.post_json("/auth/login", {"username": name, "password": "password-" + name})
        self.assertEqual(st, 200, body)
        return body["access_token"]

    def app_token(self, scope, patient="pat-1"):
        """The SMART App Launch flow (authorization code + PKCE) as a browser-less client."""
        verifier, challenge = pkce()
        params = {"response_type": "code", "client_id": self.app, "redirect_uri": REDIRECT,
                  "scope": "launch/patient " + scope, "state": secrets.token_hex(4), "aud": self.base + "/fhir",
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        d = dict(params, username="carl", password="password-carl", decision="allow", patient=patient)
        st, hd, body = self.eng.request("POST", "/auth/authorize", body=form(d), headers=FORM)
        self.assertEqual(st, 302, body)
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(hd["location"]).query))["code"]
        st, hd, body = self.eng.request("POST", "/auth/token", body=form({
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": self.app,
            "code_verifier": verifier}), headers=FORM)
        tok = json.loads(body)
        self.assertEqual((st, tok.get("patient")), (200, patient), tok)
        return tok["access_token"]

    def backend_token(self, scope):
        key = Key(self.workdir, "RSA")
        path = os.path.join(self.workdir, "jwks-%s.json" % key.kid)
        with open(path, "w") as f:
            json.dump({"keys": [key.jwk]}, f)
        rc, out, err = self.eng.cli("client", "add", "--name", "peer", "--type", "backend", "--jwks", path,
                                    "--scope", scope)
        self.assertEqual(rc, 0, err)
        cid = out.strip()
        a = assertion(key, cid, self.base + "/auth/token")
        st, _, body = self.eng.request("POST", "/auth/token", body=form({
            "grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": a}), headers=FORM)
        self.assertEqual(st, 200, body)
        return json.loads(body)["access_token"]

    def req(self, tok, method, path, body=None, headers=None, ctype=FJ):
        h = {"Authorization": "Bearer " + tok} if tok else {}
        h.update(headers or {})
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if body is not None:
            h.setdefault("Content-Type", ctype)
        st, hd, out = self.eng.request(method, path, body=body, headers=h)
        return st, hd, out

    def jreq(self, tok, method, path, body=None, **kw):
        st, hd, out = self.req(tok, method, path, body, **kw)
        return st, (json.loads(out) if out else None)

    def ids(self, bundle):
        return sorted("%s/%s" % (e["resource"]["resourceType"], e["resource"]["id"])
                      for e in bundle.get("entry", []) if e.get("search", {}).get("mode") != "outcome"
                      and "resource" in e)

    @classmethod
    def seed(cls):
        data = [
            {"resourceType": "Patient", "id": "pat-1", "name": [{"family": "One"}]},
            {"resourceType": "Patient", "id": "pat-2", "name": [{"family": SECRET_OF_PAT2}]},
            obs("obs-1", "pat-1", "laboratory"),
            obs("obs-3", "pat-1", "vital-signs"),
            obs("obs-2", "pat-2", "laboratory", " " + SECRET_OF_PAT2),
            {"resourceType": "Condition", "id": "cond-2", "subject": {"reference": "Patient/pat-2"},
             "code": {"text": SECRET_OF_PAT2}},
            {"resourceType": "Medication", "id": "med-1", "code": {"text": "aspirin"}},
        ]
        for r in data:
            st, hd, out = cls.eng.request("PUT", "/fhir/%s/%s" % (r["resourceType"], r["id"]), body=json.dumps(r),
                                          headers={"Authorization": "Bearer " + cls.admin, "Content-Type": FJ})
            assert st == 201, out

    def assert_no_leak(self, raw):
        """Every resource of pat-2's (the Patient, obs-2, cond-2) holds the marker; an
        answer may echo the id the request named, nothing more."""
        self.assertNotIn(SECRET_OF_PAT2.encode(), raw if isinstance(raw, bytes) else raw.encode())

    # -- tests --

    def test_patient_token_reads_by_id_only_its_compartment(self):
        tok = self.app_token("patient/*.rs")
        for path in ("/fhir/Patient/pat-1", "/fhir/Observation/obs-1", "/fhir/Observation/obs-1/_history/1"):
            st, _, out = self.req(tok, "GET", path)
            self.assertEqual(st, 200, path)
        # another patient's resources answer exactly as unknown ones do (404, same wording),
        # also when an unrestricted read has just put them in the read cache (fhir/read_cache.c)
        for path in ("/fhir/Patient/pat-2", "/fhir/Observation/obs-2", "/fhir/Condition/cond-2"):
            for _ in range(2):
                st, _, _ = self.req(self.admin, "GET", path)
                self.assertEqual(st, 200, path)
        st_unknown, _, unknown = self.req(tok, "GET", "/fhir/Observation/obs-404")
        for path in ("/fhir/Patient/pat-2", "/fhir/Observation/obs-2", "/fhir/Observation/obs-2/_history/1",
                     "/fhir/Condition/cond-2", "/fhir/Medication/med-1"):
            st, _, out = self.req(tok, "GET", path)
            self.assertEqual(st, 404, path)
            self.assert_no_leak(out)
            self.assertEqual(json.loads(out)["issue"][0]["code"], json.loads(unknown)["issue"][0]["code"])
        self.assertEqual(st_unknown, 404)
        # no token at all: 401; a type outside the scopes: 403 with an OperationOutcome
        st, _, _ = self.req(None, "GET", "/fhir/Observation/obs-1")
        self.assertEqual(st, 401)
        narrow = self.app_token("patient/Observation.rs")
        st, oo = self.jreq(narrow, "GET", "/fhir/Condition/cond-1")
        self.assertEqual((st, oo["resourceType"], oo["issue"][0]["code"]), (403, "OperationOutcome", "forbidden"))
        st, _ = self.jreq(narrow, "GET", "/fhir/Condition")
        self.assertEqual(st, 403)

    def test_patient_token_searches_are_limited_to_the_compartment(self):
        tok = self.app_token("patient/*.rs")
        cases = [
            ("/fhir/Observation", ["Observation/obs-1", "Observation/obs-3"]),
            ("/fhir/Observation?subject=Patient/pat-2", []),
            ("/fhir/Observation?_id=obs-2", []),
            ("/fhir/Observation?category=laboratory", ["Observation/obs-1"]),
            ("/fhir/Patient", ["Patient/pat-1"]),
            ("/fhir/Patient?_id=pat-2", []),
            ("/fhir/Condition", []),
            ("/fhir/Medication", []),
        ]
        for path, want in cases:
            st, out = self.jreq(tok, "GET", path)
            self.assertEqual(st, 200, (path, out))
            self.assertEqual(self.ids(out), want, path)
            self.assertEqual(out["total"], len(want), path)  # totals count only what the token sees
            self.assert_no_leak(json.dumps(out))
        st, out = self.jreq(tok, "GET", "/fhir/Observation?_summary=count")
        self.assertEqual(out["total"], 2)
        st, out = self.jreq(tok, "POST", "/fhir/Observation/_search", body="subject=Patient/pat-2",
                            ctype="application/x-www-form-urlencoded")
        self.assertEqual((st, self.ids(out)), (200, []))
        # paging under the restriction: one per page, two pages, never the other patient
        st, out = self.jreq(tok, "GET", "/fhir/Observation?_count=1")
        seen = self.ids(out)
        nxt = [l["url"] for l in out["link"] if l["relation"] == "next"]
        self.assertEqual(len(nxt), 1)
        st, out = self.jreq(tok, "GET", nxt[0][len(self.base):])
        seen += self.ids(out)
        self.assertEqual(sorted(seen), ["Observation/obs-1", "Observation/obs-3"])
        # _include/_revinclude and system-level search stay within the compartment too
        st, out = self.jreq(tok, "GET", "/fhir/Patient?_revinclude=Observation:subject")
        self.assertEqual((st, self.ids(out)), (200, ["Observation/obs-1", "Observation/obs-3", "Patient/pat-1"]))
        st, out = self.jreq(tok, "GET", "/fhir/Observation?_include=Observation:subject")
        self.assertEqual(self.ids(out), ["Observation/obs-1", "Observation/obs-3", "Patient/pat-1"])
        st, out = self.jreq(tok, "GET", "/fhir?_type=Observation,Condition,Patient")
        self.assertEqual((st, self.ids(out)), (200, ["Observation/obs-1", "Observation/obs-3", "Patient/pat-1"]))
        self.assert_no_leak(json.dumps(out))
        # the same searches for a clinician's user/ scopes see both patients
        st, out = self.jreq(self.login("carl"), "GET", "/fhir/Observation")
        self.assertEqual(self.ids(out), ["Observation/obs-1", "Observation/obs-2", "Observation/obs-3"])

    def test_granular_category_scope(self):
        tok = self.app_token("patient/Observation.rs?category=" + LAB)
        st, out = self.jreq(tok, "GET", "/fhir/Observation")
        self.assertEqual((st, self.ids(out)), (200, ["Observation/obs-1"]))
        st, _ = self.jreq(tok, "GET", "/fhir/Observation/obs-3")  # vital signs: not granted
        self.assertEqual(st, 404)
        st, _ = self.jreq(tok, "GET", "/fhir/Observation/obs-1")
        self.assertEqual(st, 200)

    def test_patient_token_history_compartment_everything_and_bundles(self):
        tok = self.app_token("patient/*.rs")
        st, out = self.jreq(tok, "GET", "/fhir/Observation/obs-2/_history")
        self.assertEqual(st, 404)
        for path in ("/fhir/Observation/_history", "/fhir/_history"):
            st, out = self.jreq(tok, "GET", path)
            self.assertEqual(st, 200, path)
            self.assertTrue(out["entry"], path)
            self.assert_no_leak(json.dumps(out))
        st, out = self.jreq(tok, "GET", "/fhir/Observation/obs-1/_history")
        self.assertEqual((st, len(out["entry"])), (200, 1))
        for path in ("/fhir/Patient/pat-2/$everything", "/fhir/Patient/pat-2/Observation",
                     "/fhir/Patient/pat-2/_history"):
            st, out = self.jreq(tok, "GET", path)
            self.assertEqual(st, 404, path)
            self.assert_no_leak(json.dumps(out))
        st, out = self.jreq(tok, "GET", "/fhir/Patient/pat-1/$everything")
        self.assertEqual(self.ids(out), ["Observation/obs-1", "Observation/obs-3", "Patient/pat-1"])
        self.assertEqual(out["total"], 3)
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Observation/obs-2"}},
            {"request": {"method": "GET", "url": "Observation/obs-1"}},
            {"request": {"method": "GET", "url": "Observation?_count=50"}},
            {"request": {"method": "GET", "url": "Patient"}}]}
        st, out = self.jreq(tok, "POST", "/fhir", body=batch)
        self.assertEqual(st, 200, out)
        self.assertEqual([e["response"]["status"][:3] for e in out["entry"]], ["404", "200", "200", "200"])
        self.assertEqual(self.ids(out["entry"][2]["resource"]), ["Observation/obs-1", "Observation/obs-3"])
        self.assertEqual(self.ids(out["entry"][3]["resource"]), ["Patient/pat-1"])
        self.assert_no_leak(json.dumps(out))
        narrow = self.app_token("patient/Observation.rs")
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Condition"}}, {"request": {"method": "GET", "url": "Observation"}}]}
        st, out = self.jreq(narrow, "POST", "/fhir", body=batch)
        self.assertEqual([e["response"]["status"][:3] for e in out["entry"]], ["403", "200"])
        st, _ = self.jreq(narrow, "POST", "/fhir", body=dict(batch, type="transaction"))
        self.assertEqual(st, 403)
        # the /patients views are the same data under the same scopes
        st, out = self.jreq(tok, "GET", "/patients")
        self.assertEqual([p["id"] for p in out["patients"]], ["pat-1"])
        self.assertEqual(out["total"], 1)
        for path in ("/patients/pat-2", "/patients/pat-2/fhir-resources", "/patients/pat-2/conditions"):
            st, out = self.jreq(tok, "GET", path)
            self.assertEqual(st, 404, path)
        st, out = self.jreq(tok, "GET", "/patients/pat-1/fhir-resources")
        self.assertEqual(sorted(r["id"] for r in out["resources"]), ["obs-1", "obs-3", "pat-1"])

    def test_writes_into_another_compartment_are_refused(self):
        tok = self.app_token("patient/*.cruds")
        ro = self.app_token("patient/*.rs")
        st, _ = self.jreq(ro, "POST", "/fhir/Observation", body=obs("x", "pat-1", "laboratory"))
        self.assertEqual(st, 403)  # no c in the scope
        st, out = self.jreq(tok, "POST", "/fhir/Observation", body=obs("x", "pat-2", "laboratory"))
        self.assertEqual(st, 403, out)
        st, out = self.jreq(tok, "POST", "/fhir/Observation", body=obs("x", "pat-1", "laboratory"))
        self.assertEqual(st, 201, out)
        mine = out["id"]
        # overwriting pat-2's Observation, even with a body that names pat-1
        st, out = self.jreq(tok, "PUT", "/fhir/Observation/obs-2", body=obs("obs-2", "pat-1", "laboratory"))
        self.assertEqual(st, 403, out)
        st, _ = self.jreq(tok, "DELETE", "/fhir/Observation/obs-2")
        self.assertEqual(st, 403)
        # moving one's own resource into another compartment
        st, out = self.jreq(tok, "PUT", "/fhir/Observation/" + mine, body=obs(mine, "pat-2", "laboratory"))
        self.assertEqual(st, 403, out)
        patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/pat-2"}]
        st, out = self.jreq(tok, "PATCH", "/fhir/Observation/" + mine, body=json.dumps(patch),
                            ctype="application/json-patch+json")
        self.assertEqual(st, 403, out)
        st, _ = self.jreq(tok, "POST", "/fhir/Patient", body={"resourceType": "Patient"})
        self.assertEqual(st, 403)
        # a transaction with one entry outside the compartment fails as a whole
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Observation"}, "resource": obs("a", "pat-1", "laboratory")},
            {"request": {"method": "DELETE", "url": "Observation/obs-2"}}]}
        st, _ = self.jreq(tok, "POST", "/fhir", body=tx)
        self.assertEqual(st, 403)
        # nothing of pat-2 changed
        st, out = self.jreq(self.admin, "GET", "/fhir/Observation/obs-2")
        self.assertEqual((st, out["meta"]["versionId"], out["subject"]["reference"]), (200, "1", "Patient/pat-2"))
        st, _ = self.jreq(tok, "DELETE", "/fhir/Observation/" + mine)
        self.assertEqual(st, 204)

    def test_roles_and_system_scopes(self):
        aud = self.login("aud")  # auditor: user/*.rs
        st, _ = self.jreq(aud, "GET", "/fhir/Observation/obs-2")
        self.assertEqual(st, 200)
        st, _ = self.jreq(aud, "PUT", "/fhir/Observation/obs-2", body=obs("obs-2", "pat-2", "laboratory"))
        self.assertEqual(st, 403)
        st, _ = self.jreq(aud, "DELETE", "/fhir/Medication/med-1")
        self.assertEqual(st, 403)
        svc = self.backend_token("system/Observation.rs")
        st, out = self.jreq(svc, "GET", "/fhir/Observation")
        self.assertEqual(len(self.ids(out)), 3)
        st, _ = self.jreq(svc, "GET", "/fhir/Patient/pat-1")
        self.assertEqual(st, 403)
        st, _ = self.jreq(svc, "POST", "/fhir/Observation", body=obs("y", "pat-1", "laboratory"))
        self.assertEqual(st, 403)

    def test_patient_picker_lists_patients_only_after_sign_in(self):
        verifier, challenge = pkce()
        params = {"response_type": "code", "client_id": self.app, "redirect_uri": REDIRECT,
                  "scope": "launch/patient patient/*.rs", "state": "s1", "aud": self.base + "/fhir",
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        st, _, page = self.eng.get("/auth/authorize?" + form(params))
        self.assertEqual(st, 200)
        self.assertNotIn(SECRET_OF_PAT2.encode(), page)  # nobody is listed before sign-in
        self.assertNotIn(b"<select", page)
        # signed in without choosing: the picker, served by a search of Patient on the store
        d = dict(params, username="carl", password="password-carl", decision="allow")
        st, hd, page = self.eng.request("POST", "/auth/authorize", body=form(d), headers=FORM)
        self.assertEqual(st, 200, page)
        self.assertIn(b'<option value="pat-2">' + SECRET_OF_PAT2.encode() + b" (pat-2)</option>", page)
        self.assertIn(b'<option value="pat-1">One (pat-1)</option>', page)
        ticket = page.split(b'name="ticket" value="')[1].split(b'"')[0].decode()
        # a forged or foreign ticket is not a sign-in
        for bad in (ticket[:-4] + "AAAA", ticket + "x"):
            d = dict(params, ticket=bad, patient="pat-2", decision="allow")
            st, hd, page = self.eng.request("POST", "/auth/authorize", body=form(d), headers=FORM)
            self.assertEqual(st, 401)
            self.assertNotIn("location", hd)
        d = dict(params, ticket=ticket, patient="pat-2", decision="allow", code_challenge=pkce()[1])
        st, hd, _ = self.eng.request("POST", "/auth/authorize", body=form(d), headers=FORM)
        self.assertEqual(st, 401)  # bound to the PKCE challenge it was issued for
        d = dict(params, ticket=ticket, patient="pat-2", decision="allow")
        st, hd, _ = self.eng.request("POST", "/auth/authorize", body=form(d), headers=FORM)
        self.assertEqual(st, 302)
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(hd["location"]).query))["code"]
        st, _, body = self.eng.request("POST", "/auth/token", body=form({
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": self.app,
            "code_verifier": verifier}), headers=FORM)
        tok = json.loads(body)
        self.assertEqual((st, tok["patient"]), (200, "pat-2"))
        st, out = self.jreq(tok["access_token"], "GET", "/fhir/Observation")
        self.assertEqual(self.ids(out), ["Observation/obs-2"])

    def ehr_launch(self, launch, scope="launch openid fhirUser patient/*.rs"):
        verifier, challenge = pkce()
        params = {"response_type": "code", "client_id": self.app, "redirect_uri": REDIRECT, "scope": scope,
                  "state": "s2", "aud": self.base + "/fhir", "code_challenge": challenge,
                  "code_challenge_method": "S256", "launch": launch}
        d = dict(params, username="carl", password="password-carl", decision="allow")
        st, hd, page = self.eng.request("POST", "/auth/authorize", body=form(d), headers=FORM)
        self.assertEqual(st, 302, page)
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(hd["location"]).query))
        if "code" not in q:
            return q
        st, _, body = self.eng.request("POST", "/auth/token", body=form({
            "grant_type": "authorization_code", "code": q["code"], "redirect_uri": REDIRECT, "client_id": self.app,
            "code_verifier": verifier}), headers=FORM)
        self.assertEqual(st, 200, body)
        return json.loads(body)

    def test_ehr_launch_and_linked_fhir_user(self):
        rc, _, err = self.eng.cli("user", "link", "carl", "Practitioner/prac-1")
        self.assertEqual(rc, 0, err)
        rc, _, _ = self.eng.cli("user", "link", "carl", "Observation/x")
        self.assertEqual(rc, 2)
        # the EHR (a clinician's session) makes a launch context for pat-2
        carl = self.login("carl")
        st, lc = self.eng.post_json("/auth/launch", {"patient": "pat-2"}, headers={"Authorization": "Bearer " + carl})
        self.assertEqual(st, 201, lc)
        self.assertRegex(lc["launch"], r"^lc\.[0-9a-f]{64}$")
        for tok, want in ((self.login("aud"), 403), (self.app_token("patient/*.rs"), 403), (None, 401)):
            h = {"Authorization": "Bearer " + tok} if tok else {}
            st, _ = self.eng.post_json("/auth/launch", {"patient": "pat-2"}, headers=h)
            self.assertEqual(st, want)
        st, _ = self.eng.post_json("/auth/launch", {"patient": "../x"}, headers={"Authorization": "Bearer " + carl})
        self.assertEqual(st, 400)
        # the app launched with it gets pat-2 as its patient, with no picker, and fhirUser is the link
        tok = self.ehr_launch(lc["launch"])
        self.assertEqual(tok["patient"], "pat-2")
        _, idc, _ = jwt_parts(tok["id_token"])
        self.assertEqual(idc["fhirUser"], self.base + "/fhir/Practitioner/prac-1")
        st, out = self.jreq(tok["access_token"], "GET", "/fhir/Observation")
        self.assertEqual(self.ids(out), ["Observation/obs-2"])
        # a launch is single use; an unknown one and one without the launch scope are refused
        self.assertEqual(self.ehr_launch(lc["launch"])["error"], "invalid_request")
        self.assertEqual(self.ehr_launch("lc." + "0" * 64)["error"], "invalid_request")
        rc, out, err = self.eng.cli("launch", "create", "--patient", "pat-1")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"^lc\.[0-9a-f]{64}\n$")
        self.assertEqual(self.ehr_launch(out.strip(), scope="openid patient/*.rs")["error"], "invalid_scope")
        tok = self.ehr_launch(out.strip())  # the refused request did not spend it
        self.assertEqual(tok["patient"], "pat-1")
        rc, _, err = self.eng.cli("user", "link", "carl", "-")
        self.assertEqual(rc, 0, err)

    def export(self, tok, path):
        st, hd, out = self.req(tok, "GET", path, headers={"Prefer": "respond-async"})
        self.assertEqual(st, 202, out)
        poll = hd["content-location"][len(self.base):]
        # The export runs in the background: poll as a client does, for as long as a loaded
        # machine may take (200 polls were too few).
        deadline = time.monotonic() + 60
        while True:
            st, hd, out = self.req(tok, "GET", poll)
            if st != 202 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(st, 200, out)
        files = {}
        for o in json.loads(out)["output"]:
            st, _, data = self.req(tok, "GET", o["url"][len(self.base):])
            self.assertEqual(st, 200)
            files[o["type"]] = sorted(json.loads(line)["id"] for line in data.decode().splitlines() if line)
        return poll, files

    def test_bulk_export_is_filtered_and_private_to_its_owner(self):
        tok = self.app_token("patient/*.rs")
        for path in ("/fhir/$export", "/fhir/Patient/$export"):
            poll, files = self.export(tok, path)
            self.assertEqual(files, {"Patient": ["pat-1"], "Observation": ["obs-1", "obs-3"]}, path)
        # another principal cannot poll or download the job
        st, _, _ = self.req(self.admin, "GET", poll)
        self.assertEqual(st, 404)
        narrow = self.app_token("patient/Observation.rs")
        st, _, _ = self.req(narrow, "GET", "/fhir/$export?_type=Condition", headers={"Prefer": "respond-async"})
        self.assertEqual(st, 403)
        _, files = self.export(self.admin, "/fhir/$export")
        self.assertEqual(files["Observation"], ["obs-1", "obs-2", "obs-3"])


if PG_URL:
    class FhirScopesPg(FhirScopes):
        @classmethod
        def setUpClass(cls):
            base, _, _ = PG_URL.rpartition("/")
            cls.DB_NAME = "hv_test_auth_fhir_%d" % os.getpid()
            for sql in ("DROP DATABASE IF EXISTS %s" % cls.DB_NAME, "CREATE DATABASE %s" % cls.DB_NAME):
                subprocess.run(["psql", "-q", "-X", PG_URL, "-c", sql], check=True, capture_output=True, timeout=60)
            cls.DB = base + "/" + cls.DB_NAME
            super().setUpClass()

        @classmethod
        def tearDownClass(cls):
            super().tearDownClass()
            subprocess.run(["psql", "-q", "-X", PG_URL, "-c", "DROP DATABASE IF EXISTS %s" % cls.DB_NAME],
                           capture_output=True, timeout=60)


if __name__ == "__main__":
    main()
