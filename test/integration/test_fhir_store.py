#!/usr/bin/env python3
"""test_fhir_store.py — the FHIR R4 store and REST API over the wire (FHIR R4 http.html).

Drives a real `holovitals serve` (harness.py) with HTTP as FHIR clients do: CRUD and
versioning, the HTTP semantics (ETag, Last-Modified, Location, If-Match, If-None-Match,
If-Modified-Since, Prefer, JSON/XML, _pretty, _summary, _elements), conditional
operations, history with paging, batch and transaction Bundles, JSON Patch and FHIRPath
Patch, validation on write, the CapabilityStatement, and `holovitals import` of the
Synthea bundles read back equal. Every test runs on SQLite and, when HV_TEST_PG_URL
names a PostgreSQL server (scripts/pg.sh), again on PostgreSQL.
"""

import glob
import json
import os
import subprocess
import time
import http.client
import urllib.parse

from harness import REFERENCE, EngineTestCase, main, replace_strings, run_cli

REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)
PG_URL = os.environ.get("HV_TEST_PG_URL")
FJ = "application/fhir+json"


def private_db(url, name):
    """A database of its own on the test server (other test files run in parallel and use
    the fhir schema of theirs); created empty. Returns its URL."""
    base, _, _ = url.rpartition("/")
    for sql in ("DROP DATABASE IF EXISTS %s" % name, "CREATE DATABASE %s" % name):
        subprocess.run(["psql", "-q", "-X", url, "-c", sql], check=True, capture_output=True, timeout=60)
    return base + "/" + name


def reset_pg(url):
    """Drops the fhir schema so that a test starts from an empty store."""
    subprocess.run(["psql", "-q", "-X", url, "-c", "DROP SCHEMA IF EXISTS fhir CASCADE"],
                   check=True, capture_output=True, timeout=30)


class FhirStoreTests(EngineTestCase):
    DB = None

    def start(self, config=None):
        args = ["--db", self.DB] if self.DB else []
        if self.DB:
            reset_pg(self.DB)
        self.eng = self.engine(args=args, config=config)
        return self.eng

    # -- helpers --

    def req(self, method, path, body=None, headers=None, ctype=FJ):
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if body is not None and ctype:
            h.setdefault("Content-Type", ctype)
        status, hdrs, data = self.eng.request(method, path, body=body, headers=h)
        return status, hdrs, data

    def jreq(self, method, path, body=None, headers=None, ctype=FJ):
        status, hdrs, data = self.req(method, path, body, headers, ctype)
        return status, hdrs, (json.loads(data) if data else None)

    def assertOutcome(self, status, body, want_status, code=None):
        self.assertEqual(status, want_status, body)
        self.assertEqual(body["resourceType"], "OperationOutcome", body)
        if code:
            self.assertEqual(body["issue"][0]["code"], code, body)

    def patient(self, family="Doe", ident=None):
        p = {"resourceType": "Patient", "name": [{"family": family, "given": ["Jane"]}], "gender": "female",
             "birthDate": "1980-01-02"}
        if ident:
            p["identifier"] = [{"system": "http://hospital.example/mrn", "value": ident}]
        return p

    # -- CRUD and versioning --

    def test_create_read_update_delete_versions(self):
        self.start()
        st, h, body = self.jreq("POST", "/fhir/Patient", self.patient())
        self.assertEqual(st, 201, body)
        pid = body["id"]
        self.assertEqual(body["meta"]["versionId"], "1")
        self.assertEqual(h["etag"], 'W/"1"')
        self.assertTrue(h["location"].endswith("/fhir/Patient/%s/_history/1" % pid), h["location"])
        self.assertTrue(h["last-modified"].endswith("GMT"))
        self.assertTrue(h["content-type"].startswith("application/fhir+json"))
        st, h, got = self.jreq("GET", "/fhir/Patient/" + pid)
        self.assertEqual(st, 200)
        self.assertEqual(got, body)
        upd = dict(got, gender="other")
        st, h, body2 = self.jreq("PUT", "/fhir/Patient/" + pid, upd)
        self.assertEqual(st, 200, body2)
        self.assertEqual(body2["meta"]["versionId"], "2")
        self.assertEqual(h["etag"], 'W/"2"')
        st, _, v1 = self.jreq("GET", "/fhir/Patient/%s/_history/1" % pid)
        self.assertEqual((st, v1["gender"]), (200, "female"))
        st, _, v2 = self.jreq("GET", "/fhir/Patient/%s/_history/2" % pid)
        self.assertEqual((st, v2["gender"]), (200, "other"))
        st, _, oo = self.jreq("GET", "/fhir/Patient/%s/_history/3" % pid)
        self.assertOutcome(st, oo, 404, "not-found")
        st, h, data = self.req("DELETE", "/fhir/Patient/" + pid)
        self.assertEqual(st, 204)
        self.assertEqual(h["etag"], 'W/"3"')
        st, h, oo = self.jreq("GET", "/fhir/Patient/" + pid)
        self.assertOutcome(st, oo, 410, "deleted")
        # the old versions survive the deletion; deleting again writes nothing
        st, _, v2 = self.jreq("GET", "/fhir/Patient/%s/_history/2" % pid)
        self.assertEqual(st, 200)
        st, _, _ = self.req("DELETE", "/fhir/Patient/" + pid)
        self.assertEqual(st, 204)
        st, _, hist = self.jreq("GET", "/fhir/Patient/%s/_history" % pid)
        self.assertEqual([e["response"]["etag"] for e in hist["entry"]], ['W/"3"', 'W/"2"', 'W/"1"'])
        self.assertEqual(hist["entry"][0]["request"]["method"], "DELETE")
        # update after delete brings it back as a new version
        st, _, back = self.jreq("PUT", "/fhir/Patient/" + pid, dict(upd, gender="male"))
        self.assertEqual((st, back["meta"]["versionId"]), (201, "4"))

    def test_create_on_update_with_client_id_and_id_rules(self):
        self.start()
        st, h, body = self.jreq("PUT", "/fhir/Patient/abc-123.x", dict(self.patient(), id="abc-123.x"))
        self.assertEqual(st, 201, body)
        self.assertEqual(body["id"], "abc-123.x")
        st, _, oo = self.jreq("PUT", "/fhir/Patient/abc-123.x", dict(self.patient(), id="other"))
        self.assertOutcome(st, oo, 400, "invalid")
        st, _, oo = self.jreq("PUT", "/fhir/Patient/abc", self.patient())
        self.assertOutcome(st, oo, 400)
        st, _, oo = self.jreq("PUT", "/fhir/Patient/" + "x" * 65, dict(self.patient(), id="x" * 65))
        self.assertOutcome(st, oo, 400)
        # SQL metacharacters in an id are refused by the id rule, never spliced
        st, _, oo = self.jreq("GET", "/fhir/Patient/" + urllib.parse.quote("1'; DROP TABLE resources;--"))
        self.assertOutcome(st, oo, 400)
        st, _, oo = self.jreq("GET", "/fhir/Patient/nothere")
        self.assertOutcome(st, oo, 404, "not-found")
        st, _, oo = self.jreq("GET", "/fhir/NoSuchType/1")
        self.assertOutcome(st, oo, 404)
        # the body's resourceType must match the URL; a POSTed id is replaced
        st, _, oo = self.jreq("POST", "/fhir/Observation", self.patient())
        self.assertOutcome(st, oo, 400)
        st, _, body = self.jreq("POST", "/fhir/Patient", dict(self.patient(), id="mine"))
        self.assertEqual(st, 201)
        self.assertNotEqual(body["id"], "mine")
        # the store still answers: the metacharacters did nothing
        st, _, _ = self.jreq("GET", "/fhir/Patient/abc-123.x")
        self.assertEqual(st, 200)

    def test_bad_bodies_and_content_types(self):
        self.start()
        st, _, oo = self.jreq("POST", "/fhir/Patient", "{not json", ctype=FJ)
        self.assertOutcome(st, oo, 400)
        st, _, oo = self.jreq("POST", "/fhir/Patient", self.patient(), ctype="text/plain")
        self.assertOutcome(st, oo, 415)
        st, _, oo = self.jreq("POST", "/fhir/Patient", {"resourceType": "Patient", "bogus": 1})
        self.assertOutcome(st, oo, 400)
        self.assertIn("bogus", oo["issue"][0]["diagnostics"])
        st, _, oo = self.jreq("POST", "/fhir/Patient", None)
        self.assertOutcome(st, oo, 400)
        st, _, oo = self.jreq("DELETE", "/fhir/metadata")
        self.assertEqual(oo["resourceType"], "OperationOutcome")
        self.assertIn(st, (404, 405))

    def test_validation_rejects_invalid_resources_with_422(self):
        self.start()
        bad = dict(self.patient(), gender="robot")
        st, _, oo = self.jreq("POST", "/fhir/Patient", bad)
        self.assertOutcome(st, oo, 422)
        self.assertTrue(any("gender" in json.dumps(i) for i in oo["issue"]), oo)
        # nothing was written
        st, _, hist = self.jreq("GET", "/fhir/Patient/_history")
        self.assertEqual(hist.get("entry", []), [])

    def test_validation_off_accepts(self):
        self.start(config={"fhir": {"validation": "off"}})
        st, _, body = self.jreq("POST", "/fhir/Patient", dict(self.patient(), gender="robot"))
        self.assertEqual(st, 201, body)

    # -- HTTP semantics --

    def test_conditional_headers_and_prefer(self):
        self.start()
        st, h, body = self.jreq("POST", "/fhir/Patient", self.patient(), headers={"Prefer": "return=minimal"})
        self.assertEqual(st, 201)
        self.assertIsNone(body)
        pid = h["location"].split("/Patient/")[1].split("/")[0]
        st, h, _ = self.req("GET", "/fhir/Patient/" + pid, headers={"If-None-Match": 'W/"1"'})
        self.assertEqual(st, 304)
        st, h, _ = self.req("GET", "/fhir/Patient/" + pid, headers={"If-None-Match": 'W/"7"'})
        self.assertEqual(st, 200)
        lm = h["last-modified"]
        st, _, _ = self.req("GET", "/fhir/Patient/" + pid, headers={"If-Modified-Since": lm})
        self.assertEqual(st, 304)
        st, _, _ = self.req("GET", "/fhir/Patient/" + pid,
                            headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
        self.assertEqual(st, 200)
        st, _, got = self.jreq("GET", "/fhir/Patient/" + pid)
        # If-Match: a stale version is refused with 412, the current one accepted
        st, _, oo = self.jreq("PUT", "/fhir/Patient/" + pid, got, headers={"If-Match": 'W/"9"'})
        self.assertOutcome(st, oo, 412)
        st, _, oo = self.jreq("PUT", "/fhir/Patient/" + pid, got,
                              headers={"If-Match": 'W/"1"', "Prefer": "return=OperationOutcome"})
        self.assertEqual(st, 200, oo)
        self.assertEqual(oo["resourceType"], "OperationOutcome")
        st, _, oo = self.jreq("DELETE", "/fhir/Patient/" + pid, headers={"If-Match": 'W/"1"'})
        self.assertOutcome(st, oo, 412)

    def test_formats_pretty_summary_elements(self):
        self.start()
        p = self.patient()
        p["text"] = {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jane</div>"}
        p["contact"] = [{"name": {"family": "Roe"}}]
        st, _, body = self.jreq("POST", "/fhir/Patient", p)
        pid = body["id"]
        st, h, data = self.req("GET", "/fhir/Patient/%s?_format=xml" % pid)
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("application/fhir+xml"))
        self.assertIn(b'<Patient xmlns="http://hl7.org/fhir">', data)
        self.assertIn(b'<family value="Doe"/>', data)
        st, h, data2 = self.req("GET", "/fhir/Patient/" + pid, headers={"Accept": "application/fhir+xml"})
        self.assertEqual(data, data2)
        # XML in, JSON out: the same resource
        st, _, created = self.jreq("POST", "/fhir/Patient", data, ctype="application/fhir+xml")
        self.assertEqual(st, 201, created)
        self.assertEqual(created["name"], body["name"])
        st, _, data = self.req("GET", "/fhir/Patient/%s?_pretty=true" % pid)
        self.assertIn(b'\n  "id"', data)
        st, _, s = self.jreq("GET", "/fhir/Patient/%s?_summary=true" % pid)
        self.assertNotIn("text", s)
        self.assertNotIn("contact", s)  # Patient.contact is not a summary element
        self.assertEqual(s["name"], body["name"])
        self.assertIn("SUBSETTED", json.dumps(s["meta"]))
        st, _, s = self.jreq("GET", "/fhir/Patient/%s?_summary=data" % pid)
        self.assertNotIn("text", s)
        self.assertIn("contact", s)
        st, _, s = self.jreq("GET", "/fhir/Patient/%s?_elements=gender" % pid)
        self.assertEqual(sorted(s), ["gender", "id", "meta", "resourceType"])
        st, _, oo = self.jreq("GET", "/fhir/Patient/%s?_format=text/csv" % pid)
        self.assertEqual(st, 406)

    # -- conditional operations --

    def test_conditional_create_update_delete(self):
        self.start()
        hdr = {"If-None-Exist": "identifier=http://hospital.example/mrn|M1"}
        st, _, a = self.jreq("POST", "/fhir/Patient", self.patient(ident="M1"), headers=hdr)
        self.assertEqual(st, 201)
        st, _, b = self.jreq("POST", "/fhir/Patient", self.patient(ident="M1"), headers=hdr)
        self.assertEqual(st, 200)
        self.assertEqual(b["id"], a["id"])
        # identifier without system, and _id
        st, _, c = self.jreq("POST", "/fhir/Patient", self.patient(), headers={"If-None-Exist": "identifier=M1"})
        self.assertEqual((st, c["id"]), (200, a["id"]))
        st, _, c = self.jreq("POST", "/fhir/Patient", self.patient(), headers={"If-None-Exist": "_id=" + a["id"]})
        self.assertEqual((st, c["id"]), (200, a["id"]))
        # conditional update: one match updates it, none creates
        q = "/fhir/Patient?identifier=" + urllib.parse.quote("http://hospital.example/mrn|M1")
        st, _, u = self.jreq("PUT", q, self.patient(family="Updated", ident="M1"))
        self.assertEqual((st, u["id"], u["meta"]["versionId"]), (200, a["id"], "2"))
        q2 = "/fhir/Patient?identifier=" + urllib.parse.quote("http://hospital.example/mrn|M2")
        st, _, n = self.jreq("PUT", q2, self.patient(ident="M2"))
        self.assertEqual(st, 201)
        # two matches: 412
        st, _, dup = self.jreq("POST", "/fhir/Patient", self.patient(ident="M2"))
        self.assertEqual(st, 201)
        st, _, oo = self.jreq("PUT", q2, self.patient(ident="M2"))
        self.assertOutcome(st, oo, 412)
        st, _, oo = self.jreq("POST", "/fhir/Patient", self.patient(ident="M2"),
                              headers={"If-None-Exist": "identifier=http://hospital.example/mrn|M2"})
        self.assertOutcome(st, oo, 412)
        # unknown criteria: 400 naming the parameter (conditional operations are strict)
        st, _, oo = self.jreq("PUT", "/fhir/Patient?nosuchparam=Doe", self.patient())
        self.assertOutcome(st, oo, 400, "invalid")
        self.assertIn("nosuchparam", oo["issue"][0]["diagnostics"])
        # SQL metacharacters in criteria are bound values, never SQL
        evil = "x'); DROP TABLE resources;--"
        hdr2 = {"If-None-Exist": "identifier=" + urllib.parse.quote("urn:evil|" + evil)}
        ev = self.patient()
        ev["identifier"] = [{"system": "urn:evil", "value": evil}]
        st, _, e1 = self.jreq("POST", "/fhir/Patient", ev, headers=hdr2)
        self.assertEqual(st, 201, e1)
        st, _, e2 = self.jreq("POST", "/fhir/Patient", ev, headers=hdr2)
        self.assertEqual((st, e2["id"]), (200, e1["id"]))
        # conditional delete
        st, _, _ = self.req("DELETE", q)
        self.assertEqual(st, 204)
        st, _, oo = self.jreq("GET", "/fhir/Patient/" + a["id"])
        self.assertEqual(st, 410)
        st, _, _ = self.req("DELETE", q)  # no match any more
        self.assertEqual(st, 204)
        # a deleted resource no longer matches its identifier
        st, _, again = self.jreq("POST", "/fhir/Patient", self.patient(ident="M1"), headers=hdr)
        self.assertEqual(st, 201)
        self.assertNotEqual(again["id"], a["id"])

    # -- history --

    def test_history_levels_paging_since_at(self):
        self.start()
        st, _, a = self.jreq("POST", "/fhir/Patient", self.patient())
        time.sleep(0.01)
        st, _, o = self.jreq("POST", "/fhir/Observation", {
            "resourceType": "Observation", "status": "final", "code": {"text": "x"}})
        time.sleep(0.01)
        mid = a["meta"]["lastUpdated"]
        st, _, a2 = self.jreq("PUT", "/fhir/Patient/" + a["id"], dict(a, gender="male"))
        for i in range(5):
            self.jreq("POST", "/fhir/Patient", self.patient(family="P%d" % i))
        st, _, h = self.jreq("GET", "/fhir/_history")
        self.assertEqual(h["type"], "history")
        self.assertEqual(len(h["entry"]), 8)
        st, _, h = self.jreq("GET", "/fhir/Patient/_history")
        self.assertEqual(len(h["entry"]), 7)
        self.assertTrue(all(e["resource"]["resourceType"] == "Patient" for e in h["entry"]))
        st, _, h = self.jreq("GET", "/fhir/Patient/%s/_history" % a["id"])
        self.assertEqual([e["resource"]["meta"]["versionId"] for e in h["entry"]], ["2", "1"])
        self.assertEqual(h["entry"][0]["request"]["method"], "PUT")
        # paging by cursor: 3 + 3 + 2, no duplicates, newest first
        seen, url = [], "/fhir/_history?_count=3"
        while url:
            st, _, page = self.jreq("GET", url)
            self.assertEqual(st, 200)
            self.assertLessEqual(len(page["entry"]), 3)
            seen += [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in page["entry"]]
            nxt = [l["url"] for l in page["link"] if l["relation"] == "next"]
            url = nxt[0][nxt[0].index("/fhir/"):] if nxt else None
        self.assertEqual(len(seen), 8)
        self.assertEqual(len(set(seen)), 8)
        # _since: only what was written at or after the first update
        st, _, h = self.jreq("GET", "/fhir/_history?_since=" + urllib.parse.quote(a2["meta"]["lastUpdated"]))
        self.assertEqual(len(h["entry"]), 6)
        # _at: the version current at the time of the first write
        st, _, h = self.jreq("GET", "/fhir/Patient/%s/_history?_at=%s" % (a["id"], urllib.parse.quote(mid)))
        self.assertEqual([e["resource"]["meta"]["versionId"] for e in h["entry"]], ["1"])
        st, _, oo = self.jreq("GET", "/fhir/_history?_since=yesterday")
        self.assertOutcome(st, oo, 400)
        st, _, oo = self.jreq("GET", "/fhir/Patient/nope/_history")
        self.assertOutcome(st, oo, 404)

    # -- Bundles --

    def test_transaction_resolves_references_and_is_atomic(self):
        self.start()
        st, _, old = self.jreq("POST", "/fhir/Patient", self.patient(ident="T0"))
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
             "resource": self.patient(ident="T1"),
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
                          "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                          "performer": [{"reference": "Patient?identifier=http://hospital.example/mrn|T0"}]},
             "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "DELETE", "url": "Patient/" + old["id"]}},
        ]}
        st, _, resp = self.jreq("POST", "/fhir", bundle)
        self.assertEqual(st, 200, resp)
        self.assertEqual(resp["type"], "transaction-response")
        statuses = [e["response"]["status"] for e in resp["entry"]]
        self.assertEqual(statuses[0], "201 Created")
        self.assertEqual(statuses[1], "201 Created")
        self.assertTrue(statuses[2].startswith("204"))
        obs_loc = resp["entry"][1]["response"]["location"]
        pat_loc = resp["entry"][0]["response"]["location"]
        st, _, obs = self.jreq("GET", "/fhir/" + obs_loc.split("/_history")[0])
        self.assertEqual(obs["subject"]["reference"], pat_loc.split("/_history")[0])
        self.assertEqual(obs["performer"][0]["reference"], "Patient/" + old["id"])

    def test_transaction_failure_rolls_back_everything(self):
        self.start()
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:a", "resource": self.patient(ident="R1"),
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "urn:uuid:missing"}},
             "request": {"method": "POST", "url": "Observation"}},
        ]}
        st, _, oo = self.jreq("POST", "/fhir", bundle)
        self.assertOutcome(st, oo, 400)
        self.assertIn("urn:uuid:missing", oo["issue"][0]["diagnostics"])
        bundle["entry"][1] = {"resource": dict(self.patient(), id="zz"), "request": {
            "method": "PUT", "url": "Patient/zz"}, }
        bundle["entry"].append({"request": {"method": "PUT", "url": "Patient/yy"},
                                "resource": dict(self.patient(), id="yy")})
        bundle["entry"].append({"request": {"method": "DELETE", "url": "Patient/yy"}})
        bundle["entry"][-1]["request"]["ifMatch"] = 'W/"5"'
        st, _, oo = self.jreq("POST", "/fhir", bundle)
        self.assertOutcome(st, oo, 412)
        st, _, h = self.jreq("GET", "/fhir/_history")
        self.assertEqual(h.get("entry", []), [], "a failed transaction wrote something")
        st, _, oo = self.jreq("POST", "/fhir", {"resourceType": "Bundle", "type": "collection"})
        self.assertOutcome(st, oo, 400)

    def test_transaction_read_after_delete_in_processing_order(self):
        self.start()
        st, _, a = self.jreq("POST", "/fhir/Patient", self.patient())
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "PUT", "url": "Patient/" + a["id"]}, "resource": dict(a, gender="male")},
            {"request": {"method": "GET", "url": "Patient/" + a["id"]}},
        ]}
        st, _, resp = self.jreq("POST", "/fhir", bundle)
        self.assertEqual(st, 200, resp)
        # GET runs after PUT (http.html#trules), whatever the entry order
        self.assertEqual(resp["entry"][1]["resource"]["gender"], "male")
        self.assertEqual(resp["entry"][0]["response"]["status"], "200 OK")

    def test_search_entries_in_bundles_run_through_the_planner(self):
        self.start()
        st, _, a = self.jreq("POST", "/fhir/Patient", self.patient(ident="S1"))
        self.assertEqual(st, 201)
        obs = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": "Patient/" + a["id"]}}
        # In a transaction the GET runs last and sees the transaction's own writes.
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "GET", "url": "Observation?subject=Patient/%s&code=http://loinc.org|8867-4"
                         % a["id"]}},
            {"request": {"method": "POST", "url": "Observation"}, "resource": obs},
            {"request": {"method": "POST", "url": "Observation"},
             "resource": dict(obs, code={"coding": [{"system": "http://loinc.org", "code": "8480-6"}]})},
        ]}
        st, _, resp = self.jreq("POST", "/fhir", bundle)
        self.assertEqual(st, 200, resp)
        ss = resp["entry"][0]["resource"]
        self.assertEqual((resp["entry"][0]["response"]["status"], ss["type"], ss["total"]), ("200 OK", "searchset", 1))
        self.assertEqual(ss["entry"][0]["resource"]["id"], resp["entry"][1]["response"]["location"].split("/")[1])
        self.assertTrue(ss["entry"][0]["fullUrl"].endswith("/fhir/Observation/" + ss["entry"][0]["resource"]["id"]))
        # A batch search with _count, and a malformed one that fails the transaction.
        st, _, resp = self.jreq("POST", "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Observation?_count=1"}}]})
        self.assertEqual((st, len(resp["entry"][0]["resource"]["entry"])), (200, 1))
        st, _, oo = self.jreq("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "GET", "url": "Observation?nonsense=1"}}]})
        self.assertOutcome(st, oo, 400)

    def test_batch_entries_are_independent(self):
        self.start()
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": self.patient(ident="B1"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/doesnotexist"}},
            {"resource": self.patient(), "request": {"method": "PUT", "url": "Patient/b2"}},
            {"request": {"method": "GET", "url": "Patient?birthdate=notadate"}},
            {"resource": dict(self.patient(), id="b3"), "request": {"method": "PUT", "url": "Patient/b3"}},
        ]}
        st, _, resp = self.jreq("POST", "/fhir", bundle)
        self.assertEqual(st, 200, resp)
        self.assertEqual(resp["type"], "batch-response")
        codes = [e["response"]["status"].split()[0] for e in resp["entry"]]
        self.assertEqual(codes, ["201", "404", "201", "400", "201"])
        self.assertIn("birthdate", resp["entry"][3]["response"]["outcome"]["issue"][0]["diagnostics"])
        self.assertEqual(resp["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome")
        st, _, b3 = self.jreq("GET", "/fhir/Patient/b3")
        self.assertEqual(st, 200)

    # -- patch --

    def test_json_patch_and_fhirpath_patch(self):
        self.start()
        st, _, a = self.jreq("POST", "/fhir/Patient", self.patient())
        url = "/fhir/Patient/" + a["id"]
        ops = [{"op": "replace", "path": "/gender", "value": "male"},
               {"op": "add", "path": "/name/0/given/-", "value": "Q"},
               {"op": "test", "path": "/birthDate", "value": "1980-01-02"}]
        st, h, p = self.jreq("PATCH", url, ops, ctype="application/json-patch+json")
        self.assertEqual(st, 200, p)
        self.assertEqual((p["gender"], p["name"][0]["given"], p["meta"]["versionId"]), ("male", ["Jane", "Q"], "2"))
        st, _, oo = self.jreq("PATCH", url, [{"op": "test", "path": "/gender", "value": "female"}],
                              ctype="application/json-patch+json")
        self.assertEqual(st, 409, oo)
        st, _, oo = self.jreq("PATCH", url, [{"op": "replace", "path": "/id", "value": "other"}],
                              ctype="application/json-patch+json")
        self.assertOutcome(st, oo, 422)
        st, _, oo = self.jreq("PATCH", url, [{"op": "add", "path": "/bogus", "value": 1}],
                              ctype="application/json-patch+json")
        self.assertOutcome(st, oo, 422)
        params = {"resourceType": "Parameters", "parameter": [
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.birthDate"},
                {"name": "value", "valueDate": "1990-05-06"}]},
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "add"},
                {"name": "path", "valueString": "Patient"},
                {"name": "name", "valueString": "identifier"},
                {"name": "value", "valueIdentifier": {"system": "http://x", "value": "P1"}}]},
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "delete"},
                {"name": "path", "valueString": "Patient.name[0].given[1]"}]},
        ]}
        st, _, p = self.jreq("PATCH", url, params, headers={"If-Match": 'W/"2"'})
        self.assertEqual(st, 200, p)
        self.assertEqual(p["birthDate"], "1990-05-06")
        self.assertEqual(p["identifier"], [{"system": "http://x", "value": "P1"}])
        self.assertEqual(p["name"][0]["given"], ["Jane"])
        self.assertEqual(p["meta"]["versionId"], "3")
        # the identifier added by the patch is indexed: conditional create finds it
        st, _, c = self.jreq("POST", "/fhir/Patient", self.patient(), headers={"If-None-Exist": "identifier=http://x|P1"})
        self.assertEqual((st, c["id"]), (200, a["id"]))
        st, _, oo = self.jreq("PATCH", url, "x", ctype="text/plain")
        self.assertOutcome(st, oo, 415)

    # -- capabilities --

    def test_metadata_describes_what_works(self):
        self.start()
        st, h, cs = self.jreq("GET", "/fhir/metadata")
        self.assertEqual(st, 200)
        self.assertEqual(cs["resourceType"], "CapabilityStatement")
        self.assertEqual(cs["fhirVersion"], "4.0.1")
        rest = cs["rest"][0]
        types = {r["type"]: r for r in rest["resource"]}
        self.assertIn("Patient", types)
        self.assertIn("Observation", types)
        self.assertNotIn("DomainResource", types)
        codes = {i["code"] for i in types["Patient"]["interaction"]}
        self.assertEqual(codes, {"read", "vread", "update", "patch", "delete", "history-instance",
                                 "history-type", "create", "search-type"})
        sp = {p["name"]: p["type"] for p in types["Patient"]["searchParam"]}
        self.assertEqual((sp["birthdate"], sp["name"], sp["identifier"], sp["general-practitioner"]),
                         ("date", "string", "token", "reference"))
        self.assertEqual({i["code"] for i in rest["interaction"]}, {"transaction", "batch", "history-system"})
        self.assertEqual({o["name"] for o in types["Patient"]["operation"]}, {"validate", "everything", "export"})
        self.assertEqual([o["name"] for o in rest["operation"]], ["export"])
        st, _, b = self.jreq("GET", "/fhir/Patient?name=x")
        self.assertEqual((st, b["resourceType"], b["type"]), (200, "Bundle", "searchset"), b)

    # -- compartments and operations --

    def test_patient_compartment_everything_and_validate(self):
        self.start()
        st, _, a = self.jreq("POST", "/fhir/Patient", self.patient())
        st, _, b = self.jreq("POST", "/fhir/Patient", self.patient(family="Other"))
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
               "subject": {"reference": "Patient/" + a["id"]}}
        st, _, o1 = self.jreq("POST", "/fhir/Observation", obs)
        st, _, o2 = self.jreq("POST", "/fhir/Observation", dict(obs, subject={"reference": "Patient/" + b["id"]}))
        st, _, c1 = self.jreq("POST", "/fhir/Condition", {
            "resourceType": "Condition", "subject": {"reference": "Patient/" + a["id"]}, "code": {"text": "flu"}})
        st, _, bundle = self.jreq("GET", "/fhir/Patient/%s/Observation" % a["id"])
        self.assertEqual(st, 200, bundle)
        self.assertEqual(bundle["type"], "searchset")
        self.assertEqual([e["resource"]["id"] for e in bundle["entry"]], [o1["id"]])
        st, _, ev = self.jreq("GET", "/fhir/Patient/%s/$everything" % a["id"])
        self.assertEqual(st, 200, ev)
        self.assertEqual(sorted(e["resource"]["id"] for e in ev["entry"]), sorted([a["id"], o1["id"], c1["id"]]))
        self.assertEqual(ev["total"], 3)
        # moving the observation to the other patient moves it out of the compartment
        st, _, _ = self.jreq("PUT", "/fhir/Observation/" + o1["id"],
                             dict(o1, subject={"reference": "Patient/" + b["id"]}))
        st, _, bundle = self.jreq("GET", "/fhir/Patient/%s/Observation" % a["id"])
        self.assertEqual(bundle["total"], 0)
        st, _, bundle = self.jreq("GET", "/fhir/Patient/%s/Observation" % b["id"])
        self.assertEqual(bundle["total"], 2)
        st, _, oo = self.jreq("GET", "/fhir/Patient/nobody/$everything")
        self.assertOutcome(st, oo, 404)
        # the literal Patient routes still reach history and vread
        st, _, h = self.jreq("GET", "/fhir/Patient/%s/_history" % a["id"])
        self.assertEqual(len(h["entry"]), 1)
        st, _, v = self.jreq("GET", "/fhir/Patient/%s/_history/1" % a["id"])
        self.assertEqual((st, v["id"]), (200, a["id"]))
        # $validate answers 200 with the OperationOutcome, valid or not
        st, _, oo = self.jreq("POST", "/fhir/Patient/$validate", dict(self.patient(), gender="robot"))
        self.assertEqual(st, 200)
        self.assertTrue(any(i["severity"] == "error" for i in oo["issue"]), oo)
        st, _, oo = self.jreq("POST", "/fhir/Patient/$validate", {"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": self.patient()}]})
        self.assertEqual(st, 200)
        self.assertFalse(any(i["severity"] in ("error", "fatal") for i in oo["issue"]), oo)
        st, _, oo = self.jreq("POST", "/fhir/Observation/$validate", self.patient())
        self.assertOutcome(st, oo, 400)

    def test_compartment_search_with_criteria_other_compartments_and_everything_references(self):
        self.start()
        st, _, org = self.jreq("PUT", "/fhir/Organization/org1", {"resourceType": "Organization", "id": "org1",
                                                                   "name": "Clinic"})
        st, _, dr = self.jreq("PUT", "/fhir/Practitioner/dr1", {"resourceType": "Practitioner", "id": "dr1",
                                                               "name": [{"family": "Who"}]})
        self.assertEqual(st, 201)
        st, _, a = self.jreq("POST", "/fhir/Patient", dict(self.patient(),
                                                           managingOrganization={"reference": "Organization/org1"}))
        st, _, enc = self.jreq("POST", "/fhir/Encounter", {
            "resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": "Patient/" + a["id"]},
            "participant": [{"individual": {"reference": "Practitioner/dr1"}}]})
        self.assertEqual(st, 201, enc)

        def obs(code, enc_id=None):
            o = {"resourceType": "Observation", "status": "final",
                 "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                 "subject": {"reference": "Patient/" + a["id"]},
                 "performer": [{"reference": "Practitioner/dr1"}]}
            if enc_id:
                o["encounter"] = {"reference": "Encounter/" + enc_id}
            st, _, r = self.jreq("POST", "/fhir/Observation", o)
            self.assertEqual(st, 201, r)
            return r["id"]
        hr, bp, hr2 = obs("8867-4", enc["id"]), obs("8480-6", enc["id"]), obs("8867-4")
        ids = lambda b: [e["resource"]["id"] for e in b.get("entry", [])]
        # Patient compartment with criteria, through the search planner
        st, _, b = self.jreq("GET", "/fhir/Patient/%s/Observation?code=http://loinc.org|8867-4" % a["id"])
        self.assertEqual((st, ids(b), b["total"]), (200, [hr, hr2], 2), b)
        # paging with _count follows the next link (keyset cursor) inside the compartment
        st, _, b = self.jreq("GET", "/fhir/Patient/%s/Observation?_count=2" % a["id"])
        self.assertEqual(ids(b), [hr, bp])
        nxt = [l["url"] for l in b["link"] if l["relation"] == "next"][0]
        st, _, b2 = self.jreq("GET", nxt[nxt.index("/fhir/"):])
        self.assertEqual((st, ids(b2)), (200, [hr2]))
        st, _, oo = self.jreq("GET", "/fhir/Patient/%s/Observation?date=notadate" % a["id"])
        self.assertOutcome(st, oo, 400)
        # the Encounter compartment (Observation.encounter), the Practitioner compartment (performer)
        st, _, b = self.jreq("GET", "/fhir/Encounter/%s/Observation" % enc["id"])
        self.assertEqual((st, ids(b)), (200, [hr, bp]), b)
        st, _, b = self.jreq("GET", "/fhir/Encounter/%s/Observation?code=8480-6" % enc["id"])
        self.assertEqual(ids(b), [bp])
        st, _, b = self.jreq("GET", "/fhir/Practitioner/dr1/Observation")
        self.assertEqual(ids(b), [hr, bp, hr2])
        st, _, b = self.jreq("GET", "/fhir/Practitioner/dr1/Encounter")
        self.assertEqual(ids(b), [enc["id"]])
        st, _, oo = self.jreq("GET", "/fhir/Encounter/%s/Organization" % enc["id"])
        self.assertOutcome(st, oo, 400)
        st, _, oo = self.jreq("GET", "/fhir/Encounter/nope/Observation")
        self.assertOutcome(st, oo, 404)
        st, _, oo = self.jreq("GET", "/fhir/Observation/%s/Patient" % hr)
        self.assertOutcome(st, oo, 404)
        # history still has its own route for every type
        st, _, h = self.jreq("GET", "/fhir/Encounter/%s/_history" % enc["id"])
        self.assertEqual((st, len(h["entry"])), (200, 1))
        # $everything follows references out of the compartment (mode include), _type and _since filter
        st, _, ev = self.jreq("GET", "/fhir/Patient/%s/$everything" % a["id"])
        self.assertEqual(st, 200, ev)
        modes = {(e["resource"]["resourceType"], e["resource"]["id"]): e["search"]["mode"] for e in ev["entry"]}
        self.assertEqual(modes[("Organization", "org1")], "include")
        self.assertEqual(modes[("Practitioner", "dr1")], "include")
        self.assertEqual(modes[("Observation", hr)], "match")
        self.assertEqual(len(ev["entry"]), 1 + 1 + 3 + 2)  # Patient, Encounter, 3 Observations, 2 included
        self.assertEqual(ev["total"], 5)
        st, _, ev = self.jreq("GET", "/fhir/Patient/%s/$everything?_type=Patient,Practitioner" % a["id"])
        self.assertEqual(sorted(e["resource"]["resourceType"] for e in ev["entry"]), ["Patient", "Practitioner"])
        future = "2999-01-01T00:00:00Z"
        st, _, ev = self.jreq("GET", "/fhir/Patient/%s/$everything?_since=%s" % (a["id"], future))
        self.assertEqual((st, ev.get("entry", [])), (200, []))
        # _count: members per page, with what they refer to; the rest through the next link
        st, _, ev = self.jreq("GET", "/fhir/Patient/%s/$everything?_count=2" % a["id"])
        self.assertEqual(len([e for e in ev["entry"] if e["search"]["mode"] == "match"]), 2)
        self.assertEqual(ev["total"], 5)
        self.assertEqual([l["relation"] for l in ev["link"]], ["self", "next"])
        st, _, oo = self.jreq("GET", "/fhir/Patient/%s/$everything?_type=Nothing" % a["id"])
        self.assertOutcome(st, oo, 400)

    # -- Bulk Data export --

    def poll_export(self, rel, timeout=60):
        """Polls an export's status URL until it is no longer 202 (the export runs in the
        background: 200 polls of 20 ms were too few on a loaded machine); the last answer."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.req("GET", rel)
            if answer[0] != 202 or time.monotonic() > deadline:
                return answer
            time.sleep(0.02)

    def export(self, path):
        st, h, body = self.req("GET", path, headers={"Prefer": "respond-async"})
        self.assertEqual(st, 202, body)
        status_url = h["content-location"]
        self.assertIn("/fhir/$export-poll-status/", status_url)
        rel = status_url[status_url.index("/fhir/"):]
        st, h, body = self.poll_export(rel)
        self.assertEqual(st, 200, body)
        manifest = json.loads(body)
        files = {}
        for o in manifest["output"]:
            st, h, data = self.req("GET", o["url"][o["url"].index("/fhir/"):])
            self.assertEqual(st, 200)
            self.assertTrue(h["content-type"].startswith("application/fhir+ndjson"))
            lines = [json.loads(l, parse_float=str) for l in data.decode().splitlines() if l]
            self.assertEqual(len(lines), o["count"])
            files[o["type"]] = lines
        return manifest, files, rel

    def test_bulk_export_system_patient_group(self):
        self.start()
        st, _, a = self.jreq("POST", "/fhir/Patient", self.patient())
        st, _, b = self.jreq("POST", "/fhir/Patient", self.patient(family="B"))
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
               "subject": {"reference": "Patient/" + a["id"]}}
        st, _, o1 = self.jreq("POST", "/fhir/Observation", obs)
        st, _, o2 = self.jreq("POST", "/fhir/Observation", dict(obs, subject={"reference": "Patient/" + b["id"]}))
        st, _, org = self.jreq("POST", "/fhir/Organization", {"resourceType": "Organization", "name": "Org"})
        st, _, g = self.jreq("POST", "/fhir/Group", {"resourceType": "Group", "type": "person", "actual": True,
                                                     "member": [{"entity": {"reference": "Patient/" + b["id"]}}]})
        manifest, files, rel = self.export("/fhir/$export")
        self.assertEqual(sorted(files), ["Group", "Observation", "Organization", "Patient"])
        self.assertEqual(sorted(p["id"] for p in files["Patient"]), sorted([a["id"], b["id"]]))
        self.assertFalse(manifest["requiresAccessToken"])
        manifest, files, _ = self.export("/fhir/$export?_type=Observation")
        self.assertEqual(list(files), ["Observation"])
        manifest, files, _ = self.export("/fhir/Patient/$export")
        # no Organization: it is in no Patient compartment (the Group is: Group.member)
        self.assertEqual(sorted(files), ["Group", "Observation", "Patient"])
        manifest, files, _ = self.export("/fhir/Group/%s/$export" % g["id"])
        self.assertEqual(sorted(r["id"] for rs in files.values() for r in rs), sorted([b["id"], o2["id"], g["id"]]))
        later = o2["meta"]["lastUpdated"]
        manifest, files, _ = self.export("/fhir/$export?_since=" + urllib.parse.quote(later))
        self.assertNotIn(a["id"], [p["id"] for p in files.get("Patient", [])])
        st, _, _ = self.req("DELETE", rel)
        self.assertEqual(st, 202)
        st, _, _ = self.req("GET", rel)
        self.assertEqual(st, 404)
        st, _, oo = self.jreq("GET", "/fhir/$export")
        self.assertOutcome(st, oo, 400)  # not asynchronous
        st, _, oo = self.jreq("GET", "/fhir/$export?_type=Nope", headers={"Prefer": "respond-async"})
        self.assertOutcome(st, oo, 400)
        st, _, oo = self.jreq("GET", "/fhir/$export-file/nope/Patient.ndjson")
        self.assertOutcome(st, oo, 404)

    def test_bulk_export_state_survives_restart_resumes_and_expires(self):
        eng = self.start(config={"fhir": {"export_retention": "3s"}})
        st, _, a = self.jreq("POST", "/fhir/Patient", self.patient())
        manifest, files, rel = self.export("/fhir/$export?_type=Patient")
        self.assertEqual([p["id"] for p in files["Patient"]], [a["id"]])
        # a restart keeps the finished job: its manifest and its files
        eng.stop()
        eng.start(fixed_ports=True)
        st, _, body = self.req("GET", rel)
        self.assertEqual(st, 200, body)
        again = json.loads(body)
        self.assertEqual(again["output"][0]["count"], 1)
        self.assertEqual(again["transactionTime"], manifest["transactionTime"])
        url = again["output"][0]["url"]
        st, _, data = self.req("GET", url[url.index("/fhir/"):])
        self.assertEqual((st, json.loads(data.decode().splitlines()[0])["id"]), (200, a["id"]))
        if not self.DB:
            # a job the engine was running when it stopped runs again at the next start
            eng.stop()
            import sqlite3
            db = sqlite3.connect(os.path.join(eng.data, "fhir.db"))
            db.execute("INSERT INTO export_jobs (id, request, level, grp, types, since_ms, started_ms, state)"
                       " VALUES ('00aa11bb22cc33dd', 'http://x/fhir/$export', 0, NULL, 'Patient', -1, 1, 0)")
            db.commit()
            db.close()
            eng.start(fixed_ports=True)
            st, _, body = self.poll_export("/fhir/$export-poll-status/00aa11bb22cc33dd")
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body)["output"][0]["count"], 1)
        # finished jobs expire after fhir.export_retention: the row and the files go
        deadline = time.monotonic() + 20
        while True:
            st, _, _ = self.req("GET", rel)
            if st == 404:
                break
            self.assertLess(time.monotonic(), deadline, "the export did not expire")
            time.sleep(0.2)
        self.assertFalse(os.path.exists(os.path.join(eng.data, "fhir-export", rel.rsplit("/", 1)[1])))
        # writes are not held up by a running export (it reads on its own connection)
        st, h, _ = self.req("GET", "/fhir/$export", headers={"Prefer": "respond-async"})
        self.assertEqual(st, 202)
        st, _, _ = self.jreq("POST", "/fhir/Patient", self.patient())
        self.assertEqual(st, 201)
        self.assertEqual(eng.stop(), 0, eng.stderr()[-3000:])

    # -- the plan's /patients views --

    def test_patients_views(self):
        self.start()
        st, h, v = self.jreq("POST", "/patients", {"firstName": "Ada", "lastName": "Lovelace",
                                                    "birthDate": "1815-12-10", "gender": "female",
                                                    "identifiers": [{"system": "urn:mrn", "value": "A1"}]},
                             ctype="application/json")
        self.assertEqual(st, 201, v)
        pid = v["id"]
        self.assertEqual(h["location"], "/patients/" + pid)
        self.assertEqual((v["name"], v["family"], v["given"], v["gender"]), ("Ada Lovelace", "Lovelace", ["Ada"], "female"))
        self.assertEqual(v["identifiers"], [{"system": "urn:mrn", "value": "A1"}])
        # the same resource through FHIR
        st, _, fp = self.jreq("GET", "/fhir/Patient/" + pid)
        self.assertEqual(fp["name"][0]["family"], "Lovelace")
        st, _, lst = self.jreq("GET", "/patients")
        self.assertEqual((st, lst["total"], lst["patients"][0]["id"]), (200, 1, pid))
        st, _, u = self.jreq("PUT", "/patients/" + pid, {"gender": "other"}, ctype="application/json")
        self.assertEqual((st, u["gender"], u["versionId"], u["family"]), (200, "other", "2", "Lovelace"))
        st, _, e = self.jreq("PUT", "/patients/" + pid, {"gender": "robot"}, ctype="application/json")
        self.assertEqual(st, 422, e)
        vitals = {"resourceType": "Observation", "status": "final",
                  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                            "code": "vital-signs"}]}],
                  "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                  "effectiveDateTime": "2024-01-01T10:00:00Z",
                  "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
        st, _, r = self.jreq("POST", "/patients/%s/fhir-resources" % pid, vitals, ctype="application/json")
        self.assertEqual(st, 201, r)
        self.assertEqual(r["fhir"]["subject"]["reference"], "Patient/" + pid)
        lab = dict(vitals, category=[{"coding": [{"code": "laboratory"}]}], code={"text": "Glucose"})
        st, _, r = self.jreq("POST", "/patients/%s/fhir-resources" % pid, lab, ctype="application/json")
        self.assertEqual(st, 201, r)
        for path, body in (("conditions", {"resourceType": "Condition", "code": {"text": "Asthma"},
                                          "recordedDate": "2020-01-01"}),
                           ("allergies", {"resourceType": "AllergyIntolerance", "code": {"text": "Peanut"},
                                         "clinicalStatus": {"coding": [{
                                             "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                             "code": "active"}]}}),
                           ("medications", {"resourceType": "MedicationRequest", "status": "active",
                                            "intent": "order", "medicationCodeableConcept": {"text": "Albuterol"}})):
            st, _, r = self.jreq("POST", "/patients/%s/fhir-resources" % pid, body, ctype="application/json")
            self.assertEqual(st, 201, r)
        st, _, vs = self.jreq("GET", "/patients/%s/vitals" % pid)
        self.assertEqual([(x["display"], x["value"], x["unit"]) for x in vs["vitals"]], [("Heart rate", 72, "/min")])
        st, _, c = self.jreq("GET", "/patients/%s/conditions" % pid)
        self.assertEqual([x["display"] for x in c["conditions"]], ["Asthma"])
        st, _, a = self.jreq("GET", "/patients/%s/allergies" % pid)
        self.assertEqual([x["display"] for x in a["allergies"]], ["Peanut"])
        st, _, m = self.jreq("GET", "/patients/%s/medications" % pid)
        self.assertEqual([(x["display"], x["status"]) for x in m["medications"]], [("Albuterol", "active")])
        st, _, rs = self.jreq("GET", "/patients/%s/fhir-resources" % pid)
        self.assertEqual(len(rs["resources"]), 6)  # the Patient and five resources
        st, _, rs = self.jreq("GET", "/patients/%s/fhir-resources?type=Observation" % pid)
        self.assertEqual(len(rs["resources"]), 2)
        st, _, _ = self.req("DELETE", "/patients/" + pid)
        self.assertEqual(st, 204)
        st, _, e = self.jreq("GET", "/patients/" + pid)
        self.assertEqual(st, 410)
        st, _, e = self.jreq("GET", "/patients/%s/vitals" % pid)
        self.assertEqual(st, 404)
        st, _, e = self.jreq("GET", "/patients/bad%20id")
        self.assertEqual(st, 400)

    # -- import --

    def test_import_synthea_reads_back_equal(self):
        files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))
        self.assertGreater(len(files), 5, "the Synthea reference bundles are missing")
        eng = self.start()
        eng.stop()
        args = ["import", "--data", eng.data] + (["--db", self.DB] if self.DB else []) + files
        code, cli_out, err = run_cli(*args, timeout=300)
        self.assertEqual(code, 0, err)
        self.assertRegex(cli_out, r"imported \d+ resources from %d files" % len(files))
        entries = 0
        eng.start()
        expected = {}
        for f in files:
            with open(f, encoding="utf-8") as fh:
                bundle = json.load(fh, parse_float=str)
            entries += len(bundle["entry"])
            text = replace_strings(json.dumps(bundle), {e["fullUrl"]: "%s/%s" % (e["resource"]["resourceType"],
                                                                                   e["resource"]["id"])
                                                        for e in bundle["entry"]})
            for e in json.loads(text, parse_float=str)["entry"]:
                want = e["resource"]
                want.pop("meta", None)
                expected["%s/%s" % (want["resourceType"], want["id"])] = want
        # every resource, through a Bulk Data export (one pass over the store)
        _, out, _ = self.export("/fhir/$export")
        got = {}
        for rs in out.values():
            for r in rs:
                r.pop("meta")
                got["%s/%s" % (r["resourceType"], r["id"])] = r
        self.assertEqual(sorted(got), sorted(expected))
        for k, want in expected.items():
            self.assertEqual(got[k], want, "%s differs" % k)
        # and a sample one by one with read, decimals compared as text
        conn = http.client.HTTPConnection("127.0.0.1", eng.http_port, timeout=30)
        try:
            for k in sorted(expected)[::25]:
                conn.request("GET", "/fhir/" + k)
                r = conn.getresponse()
                data = r.read()
                self.assertEqual(r.status, 200, data[:300])
                one = json.loads(data, parse_float=str)
                one.pop("meta")
                self.assertEqual(one, expected[k], "%s differs" % k)
        finally:
            conn.close()
        self.assertGreater(len(expected), 1000)
        # every entry was written (Organizations and Practitioners repeat across the bundles:
        # one resource, several versions)
        self.assertIn("imported %d resources" % entries, cli_out)

    def test_import_ndjson_and_bad_files(self):
        eng = self.start()
        eng.stop()
        path = os.path.join(self.workdir, "p.ndjson")
        with open(path, "w") as f:
            for i in range(25):
                f.write(json.dumps(dict(self.patient(ident="N%d" % i), id="n%d" % i)) + "\n")
        bad = os.path.join(self.workdir, "bad.json")
        with open(bad, "w") as f:
            f.write('{"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST",'
                    ' "url": "Patient"}, "resource": {"resourceType": "Patient", "bogus": true}}]}')
        db = ["--db", self.DB] if self.DB else []
        code, out, err = run_cli("import", "--data", eng.data, *db, "--batch", "10", path)
        self.assertEqual(code, 0, err)
        self.assertIn("imported 25 resources", out)
        code, out, err = run_cli("import", "--data", eng.data, *db, bad)
        self.assertEqual(code, 1)
        self.assertIn("bogus", err)
        # A JSON syntax error is named at its line and column; a rule of FHIR's JSON found
        # after the parse (json.html: no empty arrays) at its element, with no made-up position.
        syntax = os.path.join(self.workdir, "syntax.json")
        with open(syntax, "w") as f:
            f.write('{"resourceType": "Bundle",\n "type": "batch", "entry": [}')
        empty = os.path.join(self.workdir, "empty.json")
        with open(empty, "w") as f:
            f.write('{"resourceType": "Bundle", "type": "batch", "entry": []}')
        code, out, err = run_cli("import", "--data", eng.data, *db, syntax, empty)
        self.assertEqual(code, 1)
        self.assertIn("holovitals import: %s:2:" % syntax, err)
        self.assertIn("holovitals import: %s: Bundle.entry: Arrays must not be empty\n" % empty, err)
        self.assertIn(", 2 failed", out)
        eng.start()
        st, _, p = self.jreq("GET", "/fhir/Patient/n24")
        self.assertEqual((st, p["identifier"][0]["value"]), (200, "N24"))


if PG_URL:
    class FhirStorePgTests(FhirStoreTests):
        DB = None

        @classmethod
        def setUpClass(cls):
            # unique per run: two test runs may share the server
            cls.DB_NAME = "hv_test_fhir_store_%d" % os.getpid()
            cls.DB = private_db(PG_URL, cls.DB_NAME)

        @classmethod
        def tearDownClass(cls):
            subprocess.run(["psql", "-q", "-X", PG_URL, "-c", "DROP DATABASE IF EXISTS %s" % cls.DB_NAME],
                           capture_output=True, timeout=60)


if __name__ == "__main__":
    main()
