#!/usr/bin/env python3
"""test_fhir_read.py — the FHIR read path and its read cache (fhir/read_cache.c) over the wire.

A read (FHIR R4 http.html#read) of a recently read resource is answered from a cache on
the loop thread. These tests check that the cache is used (hv_fhir_read_cache_hits_total
rises), and above all that it never serves a replaced version: a read after an update,
patch, delete, conditional update or transaction returns what the write answered, also
while reads run concurrently with the writes. Every test runs on SQLite (the cache's
default) and, when HV_TEST_PG_URL names a PostgreSQL server, on PostgreSQL with
fhir.read_cache=on.
"""

import json
import os
import subprocess
import threading
import time
import http.client

from harness import EngineTestCase, main

PG_URL = os.environ.get("HV_TEST_PG_URL")
FJ = "application/fhir+json"


class FhirReadTests(EngineTestCase):
    DB = None
    CACHE = "auto"

    def start(self, cache=None):
        args = ["--db", self.DB] if self.DB else []
        if self.DB:
            subprocess.run(["psql", "-q", "-X", self.DB, "-c", "DROP SCHEMA IF EXISTS fhir CASCADE"],
                           check=True, capture_output=True, timeout=30)
        self.eng = self.engine(args=args, config={"fhir": {"read_cache": cache or self.CACHE,
                                                            "validation": "off"}})
        return self.eng

    def jreq(self, method, path, body=None, headers=None, ctype=FJ):
        h = dict(headers or {})
        if body is not None:
            body = json.dumps(body)
            h.setdefault("Content-Type", ctype)
        status, hdrs, data = self.eng.request(method, path, body=body, headers=h)
        return status, hdrs, (json.loads(data) if data else None)

    def hits(self):
        return self.eng.metric("hv_fhir_read_cache_hits_total") or 0

    def patient(self, pid, family, ident=None):
        p = {"resourceType": "Patient", "id": pid, "name": [{"family": family}], "gender": "female"}
        if ident:
            p["identifier"] = [{"system": "urn:test", "value": ident}]
        return p

    def put(self, pid, family, ident=None):
        st, h, body = self.jreq("PUT", "/fhir/Patient/" + pid, self.patient(pid, family, ident))
        self.assertIn(st, (200, 201), body)
        return int(body["meta"]["versionId"])

    def read(self, pid, headers=None):
        return self.jreq("GET", "/fhir/Patient/" + pid, headers=headers)

    def assertReads(self, pid, family, version):
        st, h, body = self.read(pid)
        self.assertEqual(st, 200, body)
        self.assertEqual((body["name"][0]["family"], body["meta"]["versionId"], h["etag"]),
                         (family, str(version), 'W/"%d"' % version))

    # -- the cache is used --

    def test_read_cache_answers_repeated_reads(self):
        self.start()
        self.put("r1", "One")
        self.assertReads("r1", "One", 1)
        before = self.hits()
        for _ in range(5):
            self.assertReads("r1", "One", 1)
        self.assertGreaterEqual(self.hits() - before, 5)

    def test_read_cache_off_answers_from_the_store(self):
        self.start(cache="off")
        self.put("r1", "One")
        for _ in range(3):
            self.assertReads("r1", "One", 1)
        self.assertEqual(self.hits(), 0)

    def test_cached_read_keeps_http_semantics(self):
        self.start()
        self.put("r1", "One")
        st, h, body = self.read("r1")
        self.assertEqual(st, 200)
        st, h, _ = self.read("r1", headers={"If-None-Match": 'W/"1"'})
        self.assertEqual((st, h["etag"]), (304, 'W/"1"'))
        st, h, body = self.read("r1", headers={"If-None-Match": 'W/"0"'})
        self.assertEqual(st, 200)
        self.assertTrue(h["last-modified"].endswith("GMT"))
        status, hdrs, data = self.eng.request("GET", "/fhir/Patient/r1?_format=xml")
        self.assertEqual(status, 200)
        self.assertTrue(hdrs["content-type"].startswith("application/fhir+xml"), hdrs)
        self.assertIn(b'<family value="One"/>', data)
        st, _, body = self.jreq("GET", "/fhir/Patient/r1?_elements=gender")
        self.assertEqual((st, "name" in body, body["gender"]), (200, False, "female"))
        st, _, body = self.jreq("GET", "/fhir/Patient/nobody")
        self.assertEqual(st, 404)

    # -- never stale --

    def test_read_after_update_returns_the_new_version(self):
        self.start()
        for v in range(1, 21):
            self.assertEqual(self.put("u1", "F%d" % v), v)
            self.assertReads("u1", "F%d" % v, v)
            self.assertReads("u1", "F%d" % v, v)  # the second one from the cache

    def test_read_after_delete_is_gone_and_recreate_is_read(self):
        self.start()
        self.put("d1", "Del")
        self.assertReads("d1", "Del", 1)
        self.assertReads("d1", "Del", 1)
        st, _, _ = self.eng.request("DELETE", "/fhir/Patient/d1")
        self.assertEqual(st, 204)
        for _ in range(2):
            st, h, oo = self.read("d1")
            self.assertEqual((st, h["etag"]), (410, 'W/"2"'), oo)
        self.assertEqual(self.put("d1", "Again"), 3)
        self.assertReads("d1", "Again", 3)

    def test_read_after_patch_conditional_update_and_transaction(self):
        self.start()
        self.put("w1", "Orig", ident="W1")
        self.assertReads("w1", "Orig", 1)
        self.assertReads("w1", "Orig", 1)
        st, _, body = self.jreq("PATCH", "/fhir/Patient/w1",
                                [{"op": "replace", "path": "/name/0/family", "value": "Patched"}],
                                ctype="application/json-patch+json")
        self.assertEqual(st, 200, body)
        self.assertReads("w1", "Patched", 2)
        self.assertReads("w1", "Patched", 2)
        st, _, body = self.jreq("PUT", "/fhir/Patient?identifier=urn:test|W1", self.patient("w1", "Cond", "W1"))
        self.assertEqual(st, 200, body)
        self.assertReads("w1", "Cond", 3)
        self.assertReads("w1", "Cond", 3)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": self.patient("w1", "Tx", "W1"), "request": {"method": "PUT", "url": "Patient/w1"}}]}
        st, _, body = self.jreq("POST", "/fhir", bundle)
        self.assertEqual(st, 200, body)
        self.assertReads("w1", "Tx", 4)
        bundle["type"] = "batch"
        bundle["entry"][0]["resource"] = self.patient("w1", "Batch", "W1")
        st, _, body = self.jreq("POST", "/fhir", bundle)
        self.assertEqual(st, 200, body)
        self.assertReads("w1", "Batch", 5)

    def test_vread_from_a_cached_resource(self):
        self.start()
        self.put("v1", "First")
        self.put("v1", "Second")
        self.assertReads("v1", "Second", 2)
        for vid, family in ((1, "First"), (2, "Second"), (1, "First")):
            st, h, body = self.jreq("GET", "/fhir/Patient/v1/_history/%d" % vid)
            self.assertEqual((st, body["name"][0]["family"], h["etag"]), (200, family, 'W/"%d"' % vid))
        self.assertReads("v1", "Second", 2)  # a vread never replaces the current version
        st, _, _ = self.jreq("GET", "/fhir/Patient/v1/_history/3")
        self.assertEqual(st, 404)

    def test_concurrent_reads_never_see_a_version_older_than_an_answered_write(self):
        """Readers hammer one resource while a writer updates it: a read that started
        after the write of version k was answered must return version k or later."""
        self.start()
        self.put("c1", "V1")
        acked = {1: time.monotonic()}
        stop = threading.Event()
        seen, errors = [], []

        def reader():
            conn = http.client.HTTPConnection("127.0.0.1", self.eng.http_port, timeout=10)
            try:
                while not stop.is_set():
                    t0 = time.monotonic()
                    conn.request("GET", "/fhir/Patient/c1")
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200:
                        errors.append((r.status, data[:200]))
                        continue
                    seen.append((t0, int(json.loads(data)["meta"]["versionId"])))
            except Exception as e:  # reported below
                errors.append(repr(e))
            finally:
                conn.close()

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for v in range(2, 41):
                self.assertEqual(self.put("c1", "V%d" % v), v)
                acked[v] = time.monotonic()
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        self.assertEqual(errors, [])
        self.assertGreater(len(seen), 40)
        order = sorted(acked.items())
        stale = []
        for t0, ver in seen:
            floor = max(v for v, t in order if t <= t0) if order[0][1] <= t0 else 1
            if ver < floor:
                stale.append((t0, ver, floor))
        self.assertEqual(stale, [])
        self.assertReads("c1", "V40", 40)


class ImportBesideTheCacheTests(EngineTestCase):
    """The cache sees only its own process's writes: on SQLite, `holovitals import` into the
    data directory of an engine serving it with the cache on is refused (the engine holds
    <data>/fhir.read-cache.lock), and goes through when that engine runs with the cache off."""

    BUNDLE = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "imp1", "name": [{"family": "Imported"}]},
         "request": {"method": "PUT", "url": "Patient/imp1"}}]}

    def write_bundle(self):
        path = os.path.join(self.workdir, "bundle.json")
        with open(path, "w") as f:
            json.dump(self.BUNDLE, f)
        return path

    def test_import_is_refused_while_an_engine_serves_the_directory_with_its_cache(self):
        eng = self.engine(config={"fhir": {"validation": "off"}})
        st, _, _ = eng.request("PUT", "/fhir/Patient/imp1", headers={"Content-Type": FJ},
                               body=json.dumps(self.BUNDLE["entry"][0]["resource"] | {"name": [{"family": "Old"}]}))
        self.assertIn(st, (200, 201))
        self.assertEqual(eng.request("GET", "/fhir/Patient/imp1")[0], 200)  # now cached
        rc, _, err = eng.cli("import", self.write_bundle())
        self.assertEqual(rc, 2, err)
        self.assertIn("read cache", err)
        st, _, data = eng.request("GET", "/fhir/Patient/imp1")
        self.assertEqual(json.loads(data)["name"][0]["family"], "Old")
        eng.stop()
        rc, out, err = eng.cli("import", self.write_bundle())  # stopped: the lock is free
        self.assertEqual(rc, 0, err)

    def test_import_goes_through_beside_an_engine_with_the_cache_off(self):
        eng = self.engine(config={"fhir": {"validation": "off", "read_cache": "off"}})
        rc, _, err = eng.cli("import", self.write_bundle())
        self.assertEqual(rc, 0, err)
        st, _, data = eng.request("GET", "/fhir/Patient/imp1")
        self.assertEqual((st, json.loads(data)["name"][0]["family"]), (200, "Imported"))


if PG_URL:
    class FhirReadPgTests(FhirReadTests):
        DB = None
        CACHE = "on"

        @classmethod
        def setUpClass(cls):
            base, _, _ = PG_URL.rpartition("/")
            cls.DB_NAME = "hv_test_fhir_read_%d" % os.getpid()
            for sql in ("DROP DATABASE IF EXISTS %s" % cls.DB_NAME, "CREATE DATABASE %s" % cls.DB_NAME):
                subprocess.run(["psql", "-q", "-X", PG_URL, "-c", sql], check=True, capture_output=True, timeout=60)
            cls.DB = base + "/" + cls.DB_NAME

        @classmethod
        def tearDownClass(cls):
            subprocess.run(["psql", "-q", "-X", PG_URL, "-c", "DROP DATABASE IF EXISTS %s" % cls.DB_NAME],
                           capture_output=True, timeout=60)

        def test_read_cache_auto_is_off_on_postgresql(self):
            self.start(cache="auto")
            self.put("r1", "One")
            for _ in range(3):
                self.assertReads("r1", "One", 1)
            self.assertEqual(self.hits(), 0)


if __name__ == "__main__":
    main()
