#!/usr/bin/env python3
"""test_fhir_write_path.py — the REST write path's fast forms (fhir/rest_crud.c,
fhir/rest_bundle.c, engine/storage.c):

- a REST create or update computes its search-index rows on the loop thread, and a
  self-contained transaction gets its ids, references and index rows there too
  (hv__bundle_precompute); the rows must be exactly those the storage thread computes
  (HOLOVITALS_FHIR_WRITE_AHEAD=0): every index table, refs and the stored
  resources (but meta.lastUpdated) are compared row by row;
- those writes run in the group commit without a savepoint each
  (hv_storage_submit_rerun): concurrent creates, transactions and failing
  transactions must each keep their own outcome — nothing of a failed transaction is
  stored, everything answered is;
- a write answered is durable: kill -9 while creates and transactions are in flight,
  and every one answered 201/200 reads back after a restart.

On SQLite, and on PostgreSQL when HV_TEST_PG_URL is set.
"""
import glob
import json
import os
import subprocess
import threading
import time
import uuid

from harness import REFERENCE, EngineTestCase, main, replace_strings, stored_versions
from test_fhir_store import PG_URL, private_db, reset_pg
from test_fhir_import_ahead import TABLES, dump_store

REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)
FJ = "application/fhir+json"


def synthea(n):
    files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))
    if len(files) < n:
        raise AssertionError("the Synthea reference bundles are missing under %s" % REFERENCE)
    out = []
    for f in files[:n]:
        with open(f, encoding="utf-8") as fh:
            out.append(json.load(fh))
    return out


def as_puts(bundle):
    """The transaction with every POST turned into a PUT of the fullUrl's uuid, so that
    two engines store the same ids (references stay urn:uuid: the server rewrites them)."""
    b = json.loads(json.dumps(bundle))
    for e in b["entry"]:
        rid = e["fullUrl"].rsplit(":", 1)[-1]
        rt = e["resource"]["resourceType"]
        e["resource"]["id"] = rid
        e["request"] = {"method": "PUT", "url": "%s/%s" % (rt, rid)}
    return b


def resolved(bundle):
    """The entries' resources with urn:uuid references rewritten to Type/id (for PUTs one by one)."""
    text = replace_strings(json.dumps(as_puts(bundle)),
                           {e["fullUrl"]: "%s/%s" % (e["resource"]["resourceType"], e["fullUrl"].rsplit(":", 1)[-1])
                            for e in bundle["entry"]})
    return [e["resource"] for e in json.loads(text)["entry"]]


class WritePathTests(EngineTestCase):
    DB = None

    def start(self, env=None):
        args = ["--db", self.DB] if self.DB else []
        if self.DB:
            reset_pg(self.DB)
        self.eng = self.engine(args=args, env=env or {})
        return self.eng

    def req(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if body is not None:
            body = json.dumps(body)
            h.setdefault("Content-Type", FJ)
        status, _, data = self.eng.request(method, path, body=body, headers=h, timeout=60)
        return status, (json.loads(data) if data else None)

    def dump(self, data):
        return dump_store(self.DB, data)

    def write_all(self, ahead):
        """Stores two Synthea bundles as PUT transactions and a third one resource by
        resource (PUT), plus a few POST creates; returns the dump and the created rows."""
        eng = self.start(env={"HOLOVITALS_FHIR_WRITE_AHEAD": "1" if ahead else "0"})
        bundles = synthea(3)
        for b in bundles[:2]:
            st, body = self.req("POST", "/fhir", as_puts(b))
            self.assertEqual(st, 200, body)
            self.assertTrue(all(e["response"]["status"].startswith("201") for e in body["entry"]), body)
        for res in resolved(bundles[2])[:80]:
            st, body = self.req("PUT", "/fhir/%s/%s" % (res["resourceType"], res["id"]), res)
            self.assertEqual(st, 201, body)
        created = []
        for res in resolved(bundles[2])[:12]:
            res = dict(res)
            res.pop("id")
            st, body = self.req("POST", "/fhir/" + res["resourceType"], res)
            self.assertEqual(st, 201, body)
            created.append((res["resourceType"], body["id"]))
        # A transaction of creates (server-assigned ids: their text is serialized ahead, and
        # their index rows are written together, one INSERT per table: hv__search_batch_flush)
        # with updates among them, of stored resources and of new ids, before which the
        # creates' rows are written.
        entries = []
        for res in resolved(bundles[2])[12:24]:
            res = dict(res)
            res.pop("id")
            entries.append({"resource": res, "request": {"method": "POST", "url": res["resourceType"]}})
        for k, res in enumerate(resolved(bundles[2])[24:26] + resolved(bundles[2])[80:82]):
            entries.insert(3 + 3 * k, {"resource": res, "request": {
                "method": "PUT", "url": "%s/%s" % (res["resourceType"], res["id"])}})
        st, body = self.req("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
        self.assertEqual(st, 200, body)
        for sent, e in zip(entries, body["entry"]):
            if sent["request"]["method"] == "PUT":
                self.assertIn(e["response"]["status"][:3], ("200", "201"), body)
                continue
            self.assertTrue(e["response"]["status"].startswith("201"), body)
            rt, cid = e["response"]["location"].split("/")[:2]
            created.append((rt, cid))
        eng.stop()
        d = self.dump(eng.data)
        # Created ids differ between the runs: their rows are compared with the id masked.
        for t in d:
            for rt, cid in created:
                d[t] = sorted(r.replace(cid, "<created>") for r in d[t])
        return d

    def test_index_rows_computed_ahead_equal_the_storage_threads(self):
        before = self.write_all(ahead=False)
        after = self.write_all(ahead=True)
        self.assertGreater(len(after["sp_tok"]), 1000)
        self.assertGreater(len(after["sp_ref"]), 500)
        for t in TABLES + ("resources",):
            self.assertEqual(len(after[t]), len(before[t]), t)
            self.assertEqual(after[t], before[t], t)

    def test_created_text_ahead_carries_the_rows_meta(self):
        """A create and a transaction's creates are serialized on the loop thread with a
        placeholder lastUpdated that the storage thread overwrites (hv__fop_ahead,
        fhir/store_ops.c): each stored text's meta.versionId and meta.lastUpdated are its
        row's version and last_ms, the answer is the stored text, and a created resource
        updated later (serialized by the writer) keeps this too."""
        eng = self.start()
        ids = []
        for k in range(6):
            st, body = self.req("POST", "/fhir/Patient", {"resourceType": "Patient", "id": "ignored",
                                                           "meta": {"tag": [{"code": "t%d" % k}]},
                                                           "name": [{"family": "Ahead%d" % k}]})
            self.assertEqual(st, 201, body)
            self.assertNotEqual(body["id"], "ignored")
            self.assertEqual(body["meta"]["versionId"], "1")
            self.assertEqual(body["meta"]["tag"], [{"code": "t%d" % k}])
            st, read = self.req("GET", "/fhir/Patient/" + body["id"])
            self.assertEqual((st, read), (200, body))
            ids.append(("Patient", body["id"]))
        pu = "urn:uuid:" + str(uuid.uuid4())
        st, body = self.req("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": pu, "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": pu}},
             "request": {"method": "POST", "url": "Observation"}}]})
        self.assertEqual(st, 200, body)
        for e in body["entry"]:
            ids.append(tuple(e["response"]["location"].split("/")[:2]))
        st, obs = self.req("GET", "/fhir/%s/%s" % ids[-1])
        self.assertEqual(obs["subject"]["reference"], "%s/%s" % ids[-2])
        st, body = self.req("PUT", "/fhir/Patient/" + ids[0][1], {"resourceType": "Patient", "id": ids[0][1],
                                                                  "gender": "other"})
        self.assertEqual(st, 200, body)
        eng.stop()
        rows = stored_versions(eng.data, self.DB)
        seen = set()
        for t, i, v, ms, text in rows:
            meta = json.loads(text)["meta"]
            when = "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)), ms % 1000)
            self.assertEqual((meta["versionId"], meta["lastUpdated"]), (str(v), when), (t, i, v))
            self.assertEqual(json.loads(text)["id"], i)
            seen.add((t, i, v))
        for t, i in ids:
            self.assertIn((t, i, 1), seen)
        self.assertIn(("Patient", ids[0][1], 2), seen)

    def test_concurrent_writes_keep_their_own_outcomes(self):
        """Creates and self-contained transactions (no savepoint each) share batches with
        transactions that fail in the store (a conditional reference to nothing): each
        failed one leaves nothing, every success is stored."""
        self.start()
        results, lock = [], threading.Lock()

        def worker(k):
            for i in range(12):
                tag = "w%d-%d-%s" % (k, i, uuid.uuid4().hex[:8])
                kind = (k + i) % 3
                if kind == 0:
                    st, body = self.req("POST", "/fhir/Patient", {
                        "resourceType": "Patient", "identifier": [{"system": "urn:t", "value": tag}]})
                elif kind == 1:
                    pu = "urn:uuid:" + str(uuid.uuid4())
                    st, body = self.req("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
                        {"fullUrl": pu, "resource": {
                            "resourceType": "Patient", "identifier": [{"system": "urn:t", "value": tag}]},
                         "request": {"method": "POST", "url": "Patient"}},
                        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": tag},
                                      "identifier": [{"system": "urn:t", "value": tag}],
                                      "subject": {"reference": pu}},
                         "request": {"method": "POST", "url": "Observation"}}]})
                else:
                    st, body = self.req("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
                        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": tag}]},
                         "request": {"method": "POST", "url": "Patient"}},
                        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": tag},
                                      "subject": {"reference": "Patient?identifier=urn:t|nobody-" + tag}},
                         "request": {"method": "POST", "url": "Observation"}}]})
                with lock:
                    results.append((kind, tag, st, body))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 72)
        for kind, tag, st, body in results:
            if kind == 2:
                self.assertGreaterEqual(st, 400, body)
                self.assertLess(st, 500, body)
            else:
                self.assertIn(st, (200, 201), body)
            st, found = self.req("GET", "/fhir/Patient?identifier=urn:t|" + tag)
            self.assertEqual(st, 200, found)
            self.assertEqual(found.get("total", len(found.get("entry", []))), 0 if kind == 2 else 1, (kind, tag))
            if kind == 1:
                st, obs = self.req("GET", "/fhir/Observation?identifier=urn:t|" + tag)
                self.assertEqual(len(obs.get("entry", [])), 1, (tag, obs))

    def test_creates_sharing_a_flush_with_a_failing_transaction_keep_their_rows(self):
        """A group commit's plain creates and self-contained transactions leave their index
        rows to one flush (engine/storage.c, deferred writes). A self-contained transaction
        that fails in the store after its first create's rows were flushed with the others'
        (its second create has more index values than a resource may have) rolls the batch
        back and it runs again, each job in its savepoint, nothing deferred: the failed transaction's Patient has no rows, every
        create answered 201 is found by its identifier, so by its index rows."""
        self.start()
        # More identifier values than a resource may index (MAX_VALUES_PER_PARAM,
        # fhir/search_index.c): its rows cannot be computed ahead, and the store refuses it.
        costly = {"resourceType": "Patient",
                  "identifier": [{"system": "urn:c", "value": str(v)} for v in range(10001)]}
        results, lock = [], threading.Lock()

        def worker(k):
            for i in range(15):
                tag = "d%d-%d-%s" % (k, i, uuid.uuid4().hex[:8])
                kind = 2 if i % 5 == 2 else (k + i) % 2
                pat = {"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": tag}]}
                if kind == 0:
                    st, body = self.req("POST", "/fhir/Patient", pat)
                else:
                    entries = [{"resource": pat, "request": {"method": "POST", "url": "Patient"}}]
                    if kind == 2:
                        entries.append({"resource": costly, "request": {"method": "POST", "url": "Patient"}})
                    st, body = self.req("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction",
                                                          "entry": entries})
                with lock:
                    results.append((kind, tag, st, body))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 240)
        stored = 0
        for kind, tag, st, body in results:
            if kind == 2:
                self.assertEqual(st, 422, body)
            else:
                self.assertIn(st, (200, 201), body)
                stored += 1
            st, found = self.req("GET", "/fhir/Patient?identifier=urn:t|" + tag)
            self.assertEqual(st, 200, found)
            self.assertEqual(len(found.get("entry", [])), 0 if kind == 2 else 1, (kind, tag))
        st, n = self.req("GET", "/fhir/Patient?_summary=count")
        self.assertEqual(n["total"], stored)

    def test_kill9_loses_no_answered_write(self):
        """The default (fhir.commit_pipeline off): each batch's COMMIT syncs on the storage
        thread; kill -9 under load loses no answered write."""
        self.kill9_under_load()

    def test_kill9_with_pipelined_commits_loses_no_answered_write(self):
        """fhir.commit_pipeline on: answers wait for the sync thread's fdatasync of the WAL;
        kill -9 under load loses none of them."""
        self.kill9_under_load(env={"HOLOVITALS_FHIR_COMMIT_PIPELINE": "true"})

    def test_kill9_with_checkpoints_during_load_loses_no_answered_write(self):
        """Checkpoints every 8 WAL pages while creates and transactions commit (on SQLite
        on a connection of their own, engine/storage.c), then kill -9: every write
        answered reads back, and the store is sound."""
        self.kill9_under_load(env={"HOLOVITALS_FHIR_COMMIT_PIPELINE": "true", "HOLOVITALS_FHIR_CHECKPOINT_PAGES": "8"})
        if not self.DB:
            import sqlite3
            con = sqlite3.connect(os.path.join(self.eng.data, "fhir.db"))
            try:
                self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            finally:
                con.close()

    def test_kill9_with_the_checkpoint_thread_loses_no_answered_write(self):
        """fhir.checkpoint_thread (on by default; SQLite without the commit pipeline): a
        thread with its own connection checkpoints every 8 WAL pages while creates and
        transactions commit (engine/db_sqlite.c), then kill -9: every write answered reads
        back, and the store is sound."""
        self.kill9_under_load(env={"HOLOVITALS_FHIR_CHECKPOINT_PAGES": "8"})
        if not self.DB:
            import sqlite3
            con = sqlite3.connect(os.path.join(self.eng.data, "fhir.db"))
            try:
                self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            finally:
                con.close()

    def test_the_checkpoint_thread_keeps_the_wal_bounded(self):
        """With the checkpoint thread the writer no longer checkpoints, and a checkpointer
        beside a busy writer seldom sees the whole WAL copied, which SQLite needs to write
        it from its start again: the writer waits for a pass once a commit leaves 8 x
        fhir.checkpoint_pages frames (32 here). Far more than that is written; the -wal
        file (which only grows until the WAL restarts) stays a fraction of it. (A restart
        also needs no reader between snapshots at that moment, so the file's size varies
        from run to run: 1.9-4.4 MB seen; without the wait, 18-40 MB.)"""
        if self.DB:
            self.skipTest("SQLite's WAL")
        eng = self.start(env={"HOLOVITALS_FHIR_CHECKPOINT_PAGES": "4"})
        note = "x" * 2000
        for i in range(480):
            entries = [{"resource": {"resourceType": "Observation", "status": "final",
                                     "code": {"text": "wal %d %d" % (i, k)}, "note": [{"text": note}]},
                        "request": {"method": "POST", "url": "Observation"}} for k in range(20)]
            st, body = self.req("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
            self.assertEqual(st, 200, body)
        wal = os.path.getsize(os.path.join(eng.data, "fhir.db-wal"))
        db = os.path.getsize(os.path.join(eng.data, "fhir.db"))
        # 9,600 resources of over 2 KB: over 20 MB of table pages alone went through the WAL.
        self.assertGreater(db, 20 << 20)
        self.assertLess(wal, 10 << 20, "the WAL grew to %d bytes" % wal)
        st, found = self.req("GET", "/fhir/Observation?_summary=count")
        self.assertEqual(found["total"], 9600)

    def kill9_under_load(self, env=None):
        eng = self.start(env=env)
        answered, lock, stop = [], threading.Lock(), threading.Event()

        def worker(k):
            i = 0
            while not stop.is_set():
                i += 1
                tx = i % 2 == 0
                try:
                    if tx:
                        st, body = self.req("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction",
                                                              "entry": [
                            {"fullUrl": "urn:uuid:" + str(uuid.uuid4()), "resource": {"resourceType": "Patient"},
                             "request": {"method": "POST", "url": "Patient"}},
                            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "k"}},
                             "request": {"method": "POST", "url": "Observation"}}]})
                    else:
                        st, body = self.req("POST", "/fhir/Patient", {"resourceType": "Patient"})
                except Exception:  # the engine died under the request: not answered
                    return
                if st == 201:
                    with lock:
                        answered.append(("Patient", body["id"]))
                elif st == 200 and tx:
                    with lock:
                        for e in body["entry"]:
                            answered.append(tuple(e["response"]["location"].split("/_history")[0].split("/")[-2:]))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        while True:
            with lock:
                if len(answered) >= 150:
                    break
            threading.Event().wait(0.02)
        eng.kill9()
        stop.set()
        for t in threads:
            t.join()
        eng.start(fixed_ports=True)
        with lock:
            got = list(answered)
        self.assertGreaterEqual(len(got), 150)
        for rt, rid in got:
            st, body = self.req("GET", "/fhir/%s/%s" % (rt, rid))
            self.assertEqual(st, 200, (rt, rid, body))


if PG_URL:
    class WritePathPgTests(WritePathTests):
        DB = None

        @classmethod
        def setUpClass(cls):
            cls.DB_NAME = "hv_test_fhir_write_%d" % os.getpid()
            cls.DB = private_db(PG_URL, cls.DB_NAME)

        @classmethod
        def tearDownClass(cls):
            subprocess.run(["psql", "-q", "-X", PG_URL, "-c", "DROP DATABASE IF EXISTS %s" % cls.DB_NAME],
                           capture_output=True, timeout=60)


if __name__ == "__main__":
    main()
