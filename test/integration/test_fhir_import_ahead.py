#!/usr/bin/env python3
"""test_fhir_import_ahead.py — `holovitals import` computes each Bundle's ids, reference
rewriting and search-index rows on its reader thread, ahead of the writer
(hv__bundle_precompute, fhir/rest_bundle.c; hv__search_index_rows, fhir/search_index.c).
The store it leaves must be exactly the one the writer-only path leaves
(HOLOVITALS_IMPORT_PRECOMPUTE=0): every index table (sp_str, sp_tok, sp_ref, sp_date,
sp_num, sp_uri), the reference index (refs) and the stored resources (but
meta.lastUpdated) are compared row by row. Bundles that need the store (conditional
references, If-None-Exist, conditional updates) fall back to the writer path.
HOLOVITALS_IMPORT_PRECOMPUTE=1 makes the importer say how many Bundles were computed
ahead, so the tests know which path ran, whether a worker built the shared tables
(model index, compiled search parameters, UCUM) before taking units, and whether the
reader loaded the UCUM table. On SQLite, and on PostgreSQL when
HV_TEST_PG_URL is set.
"""
import glob
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

from harness import BIN, REFERENCE, main, run_cli, stored_versions
import test_fhir_store as store_tests

REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)
TABLES = ("sp_str", "sp_tok", "sp_ref", "sp_date", "sp_num", "sp_uri", "refs")
AHEAD = re.compile(r"holovitals import: (\d+) of (\d+) Bundles computed ahead\n")
WARM = re.compile(r"holovitals import: shared tables built ahead: (yes|no)\n")
UCUM = re.compile(r"holovitals import: UCUM table loaded by the reader: (yes|no)\n")
# The count of commits reported with it (test_fhir_import_pool.py checks it).
COMMITS = re.compile(r"holovitals import: \d+ commits\n")
EARLY = re.compile(r"holovitals import: search indexes built before the end: ([^\n]*)\n")
OUTSIDE = re.compile(r"holovitals import: (search indexes built|Bundles written) outside the WAL: (yes|no)\n")
LAST_UPDATED = re.compile(r'"lastUpdated"\s*:\s*"[^"]*"')


# The tables whose rows hold a version's row id (resources.rid): dumped with the version it
# names instead. A row id is a surrogate key; on PostgreSQL it comes from a sequence, whose
# values a rolled-back run skips (fhir/rest_bundle.c take_rids), so two equal stores may
# number their versions differently.
BY_VERSION = {
    "sp_tok": "t.type, t.id, t.code, t.system, t.value, t.grp",
    "sp_str": "t.type, t.id, t.code, t.value, t.grp, t.raw",
}


def dump_store(db, data):
    """Every row of the index tables and the resources of a store (db: a PostgreSQL URL, or
    None for data/fhir.db), sorted, per table, lastUpdated left out, row ids as the versions
    they name (BY_VERSION)."""
    out = {}
    queries = {t: "SELECT * FROM %s" % t for t in TABLES}
    for t, cols in BY_VERSION.items():
        queries[t] = ("SELECT %s, r.type, r.id, r.version FROM %s t LEFT JOIN resources r ON r.rid = t.rid"
                      % (cols, t))
    queries["resources"] = "SELECT type, id, version, deleted, json FROM resources"
    if db:
        for t, q in queries.items():
            p = subprocess.run(["psql", "-q", "-X", "-A", "-t", "-F", "\x1f", db, "-c",
                                "SET search_path TO fhir; " + q],
                               check=True, capture_output=True, text=True, timeout=60)
            out[t] = sorted(LAST_UPDATED.sub("", line) for line in p.stdout.splitlines() if line)
    else:
        con = sqlite3.connect(os.path.join(data, "fhir.db"))
        try:
            for t, q in queries.items():
                out[t] = sorted(LAST_UPDATED.sub("", "\x1f".join(map(str, r))) for r in con.execute(q))
        finally:
            con.close()
    return out


class ImportAheadTests(unittest.TestCase):
    DB = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hv-import-ahead-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def dump(self, data):
        return dump_store(self.DB, data)

    def run_import(self, name, mode, batches, opts=()):
        """Imports each list of files of batches (one import each, with options opts) into a
        fresh store with HOLOVITALS_IMPORT_PRECOMPUTE=mode; returns (dump, [(ahead, bundles)...],
        [stderr...]); self.warm and self.ucum hold each import's answers to "shared tables built
        ahead" and "UCUM table loaded by the reader"."""
        data = os.path.join(self.tmp, name)
        if self.DB:
            store_tests.reset_pg(self.DB)
        counts, errs, self.warm, self.ucum, self.early = [], [], [], [], []
        for files in batches:
            args = ["import", "--data", data] + (["--db", self.DB] if self.DB else []) + list(opts) + list(files)
            code, out, err = run_cli(*args, env={"HOLOVITALS_IMPORT_PRECOMPUTE": mode}, timeout=600)
            for bad in ("Sanitizer", "runtime error"):
                self.assertNotIn(bad, err)
            m = AHEAD.search(err)
            counts.append((int(m.group(1)), int(m.group(2))) if m else None)
            w, u = WARM.search(err), UCUM.search(err)
            self.warm.append(w.group(1) if w else None)
            self.ucum.append(u.group(1) if u else None)
            e = EARLY.search(err)
            self.early.append(e.group(1) if e else None)
            err = OUTSIDE.sub("", EARLY.sub("", COMMITS.sub("", err)))
            errs.append((code, out.split(" in ")[0], UCUM.sub("", WARM.sub("", AHEAD.sub("", err)))))
        return self.dump(data), counts, errs

    def assert_same_store(self, batches):
        """Imports batches both ways and compares the stores row by row; returns the
        counts of the precomputing run."""
        old, old_counts, old_errs = self.run_import("old", "0", batches)
        new, new_counts, new_errs = self.run_import("new", "1", batches)
        self.assertEqual(old_counts, [None] * len(batches))  # mode 0 reports (and computes) nothing ahead
        self.assertNotIn(None, new_counts)
        self.assertEqual(old_errs, new_errs)
        for t in old:
            self.assertEqual(len(old[t]), len(new[t]), t)
            for a, b in zip(old[t], new[t]):
                self.assertEqual(a, b, t)
        self.codes = [c for c, _, _ in new_errs]
        return new_counts, new

    def write(self, name, doc):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            if isinstance(doc, list):
                f.write("".join(json.dumps(r) + "\n" for r in doc))
            else:
                json.dump(doc, f)
        return path

    def test_synthea_index_rows_equal_both_ways(self):
        files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))
        self.assertTrue(files, "no Synthea bundles under " + REFERENCE)
        counts, new = self.assert_same_store([files])
        self.assertEqual(counts, [(len(files), len(files))])  # every Synthea Bundle went ahead
        self.assertEqual(self.codes, [0])
        # The bundles share Practitioners and Organizations: the sixth writes some a second
        # time, so the writer's (type, id ...) indexes, deferred into the empty store (SQLite
        # and PostgreSQL), are built before it (fhir/import.c).
        self.assertEqual(self.early, ["the writer's"])
        for t in ("sp_str", "sp_tok", "sp_ref", "sp_date", "sp_num", "refs"):
            self.assertGreater(len(new[t]), 100, t)

    def test_a_worker_and_the_reader_build_the_shared_tables_ahead(self):
        """With two workers one builds the tables the first preparation would build (so that
        it overlaps the first Bundle's parse); with one worker none does; the reader loads the
        UCUM table after handing the first file over either way; the stores are the same."""
        files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))[:1]
        self.assertTrue(files, "no Synthea bundles under " + REFERENCE)
        one, _, one_errs = self.run_import("one", "1", [files], ("--workers", "1"))
        self.assertEqual(self.warm, ["no"])
        self.assertEqual(self.ucum, ["yes"])
        two, _, two_errs = self.run_import("two", "1", [files], ("--workers", "2"))
        self.assertEqual(self.warm, ["yes"])
        self.assertEqual(self.ucum, ["yes"])
        self.assertEqual([c for c, _, _ in two_errs], [0])
        self.assertEqual(one_errs, two_errs)
        self.assertEqual(one, two)

    def test_updates_replace_rows_equal_both_ways(self):
        """A second import of changed resources (new versions: the rows of the old ones are
        replaced) and an NDJSON collection, both computed ahead."""
        files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))[:1]
        self.assertTrue(files, "no Synthea bundles under " + REFERENCE)
        with open(files[0], encoding="utf-8") as f:
            bundle = json.load(f)
        pat = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"][0]
        changed = dict(pat, name=[{"family": "Aheadword", "given": ["Zed"]}], gender="other")
        upd = self.write("upd.json", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:11111111-2222-3333-4444-555555555555", "resource": changed,
             "request": {"method": "PUT", "url": "Patient/" + pat["id"]}},
            {"fullUrl": "urn:uuid:aaaaaaaa-2222-3333-4444-555555555555",
             "resource": {"resourceType": "Observation", "id": "ahead-obs", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                          "subject": {"reference": "urn:uuid:11111111-2222-3333-4444-555555555555"},
                          "valueQuantity": {"value": 61, "unit": "/min", "system": "http://unitsofmeasure.org",
                                            "code": "/min"}},
             "request": {"method": "POST", "url": "Observation"}}]})
        nd = self.write("more.ndjson", [
            {"resourceType": "Patient", "id": "nd-%d" % i, "birthDate": "1970-01-0%d" % (i + 1),
             "identifier": [{"system": "urn:x", "value": "v%d" % i}], "name": [{"family": "Ndj%d" % i}]}
            for i in range(3)])
        counts, new = self.assert_same_store([files, [upd, nd]])
        self.assertEqual(counts[1], (2, 2))
        self.assertEqual(self.codes, [0, 0])
        self.assertTrue(any(r.startswith("Patient\x1f" + pat["id"] + "\x1fname\x1f") and "\x1faheadword" in r
                            for r in new["sp_str"]))

    def test_bundles_needing_the_store_fall_back(self):
        """Conditional references and If-None-Exist are resolved by the writer; a dangling
        urn:uuid fails the Bundle the same way on both paths."""
        pat = {"resourceType": "Patient", "id": "cond-p", "identifier": [{"system": "urn:s", "value": "42"}]}
        first = self.write("first.json", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": pat, "request": {"method": "PUT", "url": "Patient/cond-p"}}]})
        cond = self.write("cond.json", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Observation", "id": "cond-obs", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "Patient?identifier=urn:s|42"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:s", "value": "42"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:s|42"}}]})
        dangling = self.write("dangling.json", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "y"},
                          "subject": {"reference": "urn:uuid:99999999-2222-3333-4444-555555555555"}},
             "request": {"method": "POST", "url": "Observation"}}]})
        counts, new = self.assert_same_store([[first], [cond], [dangling]])
        self.assertEqual(counts, [(1, 1), (0, 1), (0, 1)])
        self.assertEqual(self.codes, [0, 0, 1])  # the dangling reference fails its Bundle
        self.assertTrue(any(r.startswith("Observation\x1fcond-obs\x1f") and "\x1fPatient\x1fcond-p" in r
                            for r in new["sp_ref"]), new["sp_ref"])

    def test_text_ahead_meta_equals_the_version_row(self):
        """The import serializes a resource's first version on a worker with a placeholder
        lastUpdated that the writer overwrites (text_ahead, fhir/rest_bundle.c): every stored
        text's meta.versionId and meta.lastUpdated must be its row's version and last_ms,
        also for a resource written twice in one import (the second, an update, is serialized
        by the writer) and for one updated by a later import."""
        files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))[:2]
        self.assertTrue(files, "no Synthea bundles under " + REFERENCE)
        with open(files[0], encoding="utf-8") as f:
            bundle = json.load(f)
        pat = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"][0]
        twice = [self.write("twice-%d.json" % k, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "twice", "gender": g},
             "request": {"method": "PUT", "url": "Patient/twice"}}]}) for k, g in enumerate(("male", "female"))]
        again = self.write("again.json", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": dict(pat, gender="other"), "request": {"method": "PUT", "url": "Patient/" + pat["id"]}}]})
        _, counts, errs = self.run_import("meta", "1", [files + twice, [again]])
        self.assertEqual(counts, [(len(files) + 2, len(files) + 2), (1, 1)])
        self.assertEqual([c for c, _, _ in errs], [0, 0])
        rows = stored_versions(os.path.join(self.tmp, "meta"), self.DB)
        self.assertGreater(len(rows), 100)
        seen = {}
        for t, i, v, ms, text in rows:
            meta = json.loads(text)["meta"]
            when = "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)), ms % 1000)
            self.assertEqual((meta["versionId"], meta["lastUpdated"]), (str(v), when), (t, i, v))
            seen[(t, i)] = max(seen.get((t, i), 0), v)
        self.assertEqual(seen[("Patient", "twice")], 2)
        self.assertEqual(seen[("Patient", pat["id"])], 2)
        self.assertIn('"gender":"female"', [j for t, i, v, _, j in rows if (t, i, v) == ("Patient", "twice", 2)][0])


    def test_an_id_named_twice_in_a_bundle_or_again_later_gets_its_versions(self):
        """Into an empty store the writer skips reading the current version of a resource this
        import has not written (fhir/import.c, ids_seen): a transaction that names an id twice,
        and a later one naming it again, must still read it and write versions 1, 2 and 3, as
        without precomputing; a Bundle after them of new ids writes first versions."""
        def put(pid, gender):
            return {"resource": {"resourceType": "Patient", "id": pid, "gender": gender},
                    "request": {"method": "PUT", "url": "Patient/" + pid}}
        files = [self.write("fresh.json", {"resourceType": "Bundle", "type": "transaction",
                                           "entry": [put("one", "male"), put("two", "male")]}),
                 self.write("dup.json", {"resourceType": "Bundle", "type": "transaction",
                                         "entry": [put("dup", "male"), put("dup", "female")]}),
                 self.write("later.json", {"resourceType": "Bundle", "type": "transaction",
                                           "entry": [put("dup", "other"), put("one", "female")]}),
                 self.write("new.json", {"resourceType": "Bundle", "type": "transaction",
                                         "entry": [put("three", "male")]})]
        for mode in ("0", "1"):
            _, _, errs = self.run_import("twice-" + mode, mode, [files])
            self.assertEqual([c for c, _, _ in errs], [0])
            rows = stored_versions(os.path.join(self.tmp, "twice-" + mode), self.DB)
            versions = sorted((i, v, json.loads(text)["gender"]) for t, i, v, _, text in rows if t == "Patient")
            self.assertEqual(versions, [("dup", 1, "male"), ("dup", 2, "female"), ("dup", 3, "other"),
                                        ("one", 1, "male"), ("one", 2, "female"), ("three", 1, "male"),
                                        ("two", 1, "male")], mode)

def pg_rows(db, sql):
    p = subprocess.run(["psql", "-q", "-X", "-A", "-t", "-F", "\x1f", db, "-c", "SET search_path TO fhir; " + sql],
                       check=True, capture_output=True, text=True, timeout=60)
    return sorted(line for line in p.stdout.splitlines() if line)


if store_tests.PG_URL:
    class ImportAheadTestsPg(ImportAheadTests):
        """On PostgreSQL an import into an empty store defers the same indexes as on SQLite
        (their definitions from pg_indexes in import_deferred) and builds them at its end."""
        INDEXES = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'fhir'"

        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_import_ahead")

        def import_into(self, name, files, env=None):
            data = os.path.join(self.tmp, name)
            store_tests.reset_pg(self.DB)
            code, out, err = run_cli("import", "--data", data, "--db", self.DB, *files,
                                     env=dict({"HOLOVITALS_IMPORT_PRECOMPUTE": "1"}, **(env or {})), timeout=600)
            self.assertEqual(code, 0, err)
            return data

        def test_pg_deferred_indexes_are_built_at_the_end_as_if_kept(self):
            files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))
            kept = self.import_into("kept", files, {"HOLOVITALS_IMPORT_DEFER_INDEXES": "0"})
            kept_idx, kept_rows = pg_rows(self.DB, self.INDEXES), self.dump(kept)
            # The deferring import drops them while it writes: watched from outside.
            data = os.path.join(self.tmp, "deferred")
            store_tests.reset_pg(self.DB)
            proc = subprocess.Popen([BIN, "import", "--data", data, "--db", self.DB] + files,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            seen = set()
            while proc.poll() is None:
                try:
                    seen.update(r.split("\x1f")[0] for r in pg_rows(self.DB, "SELECT name FROM import_deferred"))
                except subprocess.CalledProcessError:
                    pass  # the schema is not created yet
                time.sleep(0.02)
            out, err = proc.communicate()
            self.assertEqual(proc.returncode, 0, err)
            self.assertIn("sp_tok_sr", seen)
            self.assertIn("sp_text_c", seen)
            self.assertNotIn("resources_tiv", seen)
            self.assertEqual(pg_rows(self.DB, "SELECT count(*) FROM import_deferred"), ["0"])
            self.assertEqual(pg_rows(self.DB, self.INDEXES), kept_idx)
            self.assertEqual(self.dump(data), kept_rows)
            # Row ids taken from the sequence ahead (fhir/rest_bundle.c, take_rids): every index
            # row names its version's row, and each Bundle's versions are in processing order.
            for t in ("sp_tok", "sp_str"):
                self.assertEqual(pg_rows(self.DB, "SELECT count(*) FROM %s s WHERE NOT EXISTS (SELECT 1 FROM"
                                         " resources r WHERE r.rid = s.rid AND r.type = s.type AND r.id = s.id)"
                                         % t), ["0"], t)
            self.assertEqual(pg_rows(self.DB, "SELECT count(*) FROM resources"),
                             pg_rows(self.DB, "SELECT count(DISTINCT rid) FROM resources"))

        def test_pg_a_failed_build_leaves_the_rest_deferred_for_the_next_opening(self):
            # The end builds each index in a transaction of its own, on two connections: one
            # that fails (made to, by an event trigger, once the store holds resources) is
            # reported, stays deferred with those not yet built, and nothing else is lost.
            files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))
            kept = self.import_into("kept", files, {"HOLOVITALS_IMPORT_DEFER_INDEXES": "0"})
            kept_idx, kept_rows = pg_rows(self.DB, self.INDEXES), self.dump(kept)
            store_tests.reset_pg(self.DB)
            pg_rows(self.DB, "CREATE FUNCTION public.hv_test_no_tok_sr() RETURNS event_trigger LANGUAGE plpgsql AS $$"
                             " BEGIN IF current_query() LIKE '%sp_tok_sr%' AND to_regclass('fhir.resources') IS NOT NULL"
                             " AND EXISTS (SELECT 1 FROM fhir.resources) THEN RAISE EXCEPTION 'no sp_tok_sr today';"
                             " END IF; END $$; CREATE EVENT TRIGGER hv_test_no_tok_sr ON ddl_command_start"
                             " WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION public.hv_test_no_tok_sr()")
            try:
                data = os.path.join(self.tmp, "failed")
                code, out, err = run_cli("import", "--data", data, "--db", self.DB, *files, timeout=600)
                self.assertNotEqual(code, 0, out)
                self.assertIn("building the search indexes failed: no sp_tok_sr today", err)
                left = [r.split("\x1f")[0] for r in pg_rows(self.DB, "SELECT name FROM import_deferred")]
                self.assertIn("sp_tok_sr", left)
                built = [r.split("\x1f")[0] for r in pg_rows(self.DB, self.INDEXES)]
                self.assertFalse(set(left) & set(built), left)
                self.assertEqual(self.dump(data), kept_rows)
            finally:
                pg_rows(self.DB, "DROP EVENT TRIGGER IF EXISTS hv_test_no_tok_sr;"
                                 " DROP FUNCTION IF EXISTS public.hv_test_no_tok_sr()")
            # The next opening builds what is left: here an import of a file stored already.
            code, out, err = run_cli("import", "--data", data, "--db", self.DB, files[0], timeout=600)
            self.assertEqual(code, 0, err)
            self.assertEqual(pg_rows(self.DB, "SELECT count(*) FROM import_deferred"), ["0"])
            self.assertEqual(pg_rows(self.DB, self.INDEXES), kept_idx)

        def test_pg_kill_mid_import_then_the_next_opening_builds_the_indexes(self):
            files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))
            self.import_into("kept", files[:1], {"HOLOVITALS_IMPORT_DEFER_INDEXES": "0"})
            kept_idx = pg_rows(self.DB, self.INDEXES)
            data = os.path.join(self.tmp, "killed")
            store_tests.reset_pg(self.DB)
            proc = subprocess.Popen([BIN, "import", "--data", data, "--db", self.DB] + files * 4,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if pg_rows(self.DB, "SELECT count(*) FROM resources") != ["0"] and \
                            pg_rows(self.DB, "SELECT count(*) FROM import_deferred") != ["0"]:
                        break
                except subprocess.CalledProcessError:
                    pass
                time.sleep(0.02)
            self.assertIsNone(proc.poll(), "the import ended before it could be killed")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.assertNotEqual(pg_rows(self.DB, "SELECT count(*) FROM import_deferred"), ["0"])
            self.assertNotEqual(pg_rows(self.DB, self.INDEXES), kept_idx)
            # Any opening of the store builds them: here a second import (of nothing new).
            code, out, err = run_cli("import", "--data", data, "--db", self.DB, files[0], timeout=600)
            self.assertEqual(code, 0, err)
            self.assertEqual(pg_rows(self.DB, "SELECT count(*) FROM import_deferred"), ["0"])
            self.assertEqual(pg_rows(self.DB, self.INDEXES), kept_idx)
            # The first file's Patient, committed before the kill, has its index rows.
            with open(files[0], encoding="utf-8") as f:
                first = json.load(f)
            pid = next(e["resource"]["id"] for e in first["entry"] if e["resource"]["resourceType"] == "Patient")
            self.assertNotEqual(pg_rows(self.DB, "SELECT count(*) FROM sp_tok WHERE type = 'Patient' AND id = '%s'"
                                        " AND code = 'identifier'" % pid), ["0"])


if __name__ == "__main__":
    main()
