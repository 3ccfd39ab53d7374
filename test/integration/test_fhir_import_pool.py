#!/usr/bin/env python3
"""test_fhir_import_pool.py — `holovitals import` prepares units (parse, model check, ids,
references, index rows) on a pool of --workers threads and writes them in the files' order;
into an empty SQLite store it drops the search tables' indexes (and refs', resources_trid,
resources_dead) for the import and builds them at its end, keeping their definitions in table import_deferred until then (fhir/import.c).

- The store a pool of three workers leaves, with the deferred indexes, equals row by row the
  store one worker leaves with the indexes kept all along (HOLOVITALS_IMPORT_DEFER_INDEXES=0):
  every index table (the combined ones too), identifiers, references, resources, and the
  schema's index definitions; for the Synthea bundles and for NDJSON cut into many units.
- The reader and the workers start before the store is opened: a store that cannot be
  opened (locked by another connection) ends them and the run (exit 1, named), though the
  reader waits for room in the full queue by then.
- An invalid NDJSON line in the middle is named with its file's line number; the run fails
  (exit 1), every other line is stored whole with its index rows, the bad one not at all.
- Bundles share commits of --batch resources when --batch is given, else commits that grow
  with the import from a fifth of fhir.import_commit (a quarter of what was committed
  before) up to it, and a Bundle is never split (the count of commits that
  HOLOVITALS_IMPORT_PRECOMPUTE=1 reports).
- A Bundle that writes a resource the import stored already finds the search tables'
  (type, id ...) indexes built first (deferred too until then), the value indexes still
  deferred; the store equals an import's with every index kept (the count of what was
  built early that HOLOVITALS_IMPORT_PRECOMPUTE=1 reports).
- kill -9 in the middle of an import into an empty store leaves only whole resources (each
  stored resource has exactly its index rows) and the deferred indexes (refs' and
  resources_trid/_dead too, not resources_tiv) in import_deferred, the next opening of the
  store builds them, and importing again gives the clean import's index rows and contents.
- At its end the import builds the deferred indexes outside the WAL (journal_mode=DELETE,
  then back to WAL) when it holds the store alone, and in the WAL when another connection
  has it open; either way the store equals the one an import with every index kept leaves.
- A kill during a build in rollback-journal mode leaves a hot journal; the next opening of
  the store rolls it back, returns to WAL and builds the indexes again.
- Alone with the store, the import writes its Bundles in rollback-journal mode too (from its
  start); with another connection open it writes them into the WAL. A kill -9 while it writes
  them leaves a hot journal; the next opening rolls the open transaction back, returns to WAL
  and builds the deferred indexes: the Bundles committed before the kill are whole, the one
  being written is gone, and the store passes integrity_check.
"""
import functools
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

from harness import BIN, REFERENCE, main, replace_strings, run_cli
from test_fhir_import_ahead import TABLES, dump_store

REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)
COMBO = ("sp_tokdate", "sp_tokqty")


def synthea_files():
    return sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))


@functools.lru_cache(maxsize=None)
def _synthea_texts():
    out = []
    for f in synthea_files():
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        b = json.loads(text)
        text = replace_strings(text, {e["fullUrl"]: "%s/%s" % (e["resource"]["resourceType"], e["resource"]["id"])
                                      for e in b["entry"]})
        out.extend(json.dumps(e["resource"], separators=(",", ":"), ensure_ascii=False) for e in json.loads(text)["entry"])
    return tuple(out)


def synthea_resources():
    """The Synthea bundles' resources, urn:uuid references rewritten to Type/id (as the
    import does), one JSON text per resource (a new list; the bundles are read once a run)."""
    return list(_synthea_texts())


def indexes(data):
    con = sqlite3.connect(os.path.join(data, "fhir.db"))
    try:
        idx = sorted(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
        pending = con.execute("SELECT count(*) FROM import_deferred").fetchone()[0]
    finally:
        con.close()
    return idx, pending


def full_dump(data):
    out = dump_store(None, data)
    con = sqlite3.connect(os.path.join(data, "fhir.db"))
    try:
        for t in COMBO:
            out[t] = sorted("\x1f".join(map(str, r)) for r in con.execute("SELECT * FROM %s" % t))
    finally:
        con.close()
    return out


def strip_meta(text):
    r = json.loads(text)
    r.get("meta", {}).pop("versionId", None)
    r.get("meta", {}).pop("lastUpdated", None)
    return json.dumps(r, sort_keys=True)


class ImportPoolTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hv-import-pool-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def imp(self, name, files, *opts, env=None):
        data = os.path.join(self.tmp, name)
        code, out, err = run_cli("import", "--data", data, *opts, *files, env=env, timeout=300)
        for bad in ("Sanitizer", "runtime error"):
            self.assertNotIn(bad, err)
        return data, code, out, err

    def assert_same(self, files, *opts):
        one, c1, o1, e1 = self.imp("one", files, "--workers", "1", *opts, env={"HOLOVITALS_IMPORT_DEFER_INDEXES": "0"})
        pool, c2, o2, e2 = self.imp("pool", files, "--workers", "3", *opts)
        self.assertEqual((c1, c2), (0, 0), e1 + e2)
        self.assertEqual(o1.split(" in ")[0], o2.split(" in ")[0])
        a, b = full_dump(one), full_dump(pool)
        for t in a:
            self.assertTrue(a[t] or t in ("sp_uri",), t)
            self.assertEqual(len(a[t]), len(b[t]), t)
            self.assertEqual(a[t], b[t], t)
        # The deferred indexes are all back, with the schema's own definitions.
        self.assertEqual(indexes(one), indexes(pool))
        self.assertEqual(indexes(pool)[1], 0)
        return a

    def test_pool_with_deferred_indexes_equals_one_thread_synthea(self):
        files = synthea_files()[:5]
        self.assertEqual(len(files), 5, "no Synthea bundles under " + REFERENCE)
        rows = self.assert_same(files)
        self.assertEqual(len(rows["resources"]), sum(len(json.load(open(f, encoding="utf-8"))["entry"]) for f in files))

    def test_pool_equals_one_thread_ndjson_many_units(self):
        lines = synthea_resources()[:900]
        path = os.path.join(self.tmp, "all.ndjson")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        rows = self.assert_same([path], "--batch", "97")
        self.assertEqual(len(rows["resources"]), len(lines))

    def test_commits_grow_up_to_fhir_import_commit_unless_batch_is_given(self):
        # Bundles share a commit until it holds --batch resources when that is given, else
        # at least a fifth of fhir.import_commit and a quarter of what the import committed
        # before it, up to fhir.import_commit; a Bundle is never split. The count of
        # commits is reported with HOLOVITALS_IMPORT_PRECOMPUTE=1.
        files = synthea_files()
        self.assertEqual(len(files), 13, "no Synthea bundles under " + REFERENCE)
        sizes = [len(json.load(open(f, encoding="utf-8"))["entry"]) for f in files]

        def expected(most, grow):
            commits, committed, pending = [], 0, 0
            for n in sizes:
                pending += n
                want = min(max(committed // 4, most // 5), most) if grow else most
                if pending >= want:
                    commits.append(pending)
                    committed, pending = committed + pending, 0
            return commits + ([pending] if pending else [])

        for name, opts, env, want in (("default", (), {}, expected(5000, True)),
                                      ("setting", (), {"HOLOVITALS_FHIR_IMPORT_COMMIT": "1000"}, expected(1000, True)),
                                      ("batch", ("--batch", "500"), {"HOLOVITALS_FHIR_IMPORT_COMMIT": "1000"},
                                       expected(500, False))):
            env = dict(env, HOLOVITALS_IMPORT_PRECOMPUTE="1")
            data, code, out, err = self.imp(name, files, *opts, env=env)
            self.assertEqual(code, 0, err)
            self.assertIn("imported %d resources" % sum(sizes), out)
            m = re.search(r"holovitals import: (\d+) commits\n", err)
            self.assertIsNotNone(m, err)
            self.assertEqual(int(m.group(1)), len(want), name)
            self.assertEqual(indexes(data)[1], 0)
        # The counts tell the rules apart: by default a small import commits about every
        # 1,000 resources (as before the setting), not once; with a setting of 1,000 the
        # commits grow from 200, which neither fixed size gives.
        self.assertEqual(len(expected(5000, True)), len(expected(1000, False)))
        self.assertNotEqual(len(expected(5000, True)), len(expected(5000, False)))
        self.assertNotIn(len(expected(1000, True)), (len(expected(1000, False)), len(expected(200, False)),
                                                     len(expected(500, False))))

    def test_a_resource_imported_again_finds_the_writers_indexes_built(self):
        # Into an empty store the search tables' (type, id ...) indexes are deferred with
        # the value indexes. A Bundle that writes a resource the import stored already (an
        # update, whose old rows are deleted through those indexes) has them built first;
        # the value indexes stay deferred to the end. Either way the store equals the one
        # an import with every index kept all along leaves, versions and rows.
        lines = synthea_resources()[:300]
        again = [l.replace('"status":"final"', '"status":"amended"') for l in lines[40:70]]
        self.assertTrue(any('"amended"' in l for l in again))
        for name, content, early in (("fresh", lines, "none"), ("again", lines + again, "the writer's")):
            path = os.path.join(self.tmp, name + ".ndjson")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(content) + "\n")
            kept, c1, o1, e1 = self.imp(name + "-kept", [path], "--workers", "1", "--batch", "97",
                                        env={"HOLOVITALS_IMPORT_DEFER_INDEXES": "0"})
            pool, c2, o2, e2 = self.imp(name + "-pool", [path], "--workers", "3", "--batch", "97",
                                        env={"HOLOVITALS_IMPORT_PRECOMPUTE": "1"})
            self.assertEqual((c1, c2), (0, 0), e1 + e2)
            self.assertIn("imported %d resources" % len(content), o2)
            self.assertIn("holovitals import: search indexes built before the end: %s\n" % early, e2)
            a, b = full_dump(kept), full_dump(pool)
            for t in a:
                self.assertEqual(a[t], b[t], t)
            self.assertEqual(indexes(kept), indexes(pool))
            self.assertEqual(indexes(pool)[1], 0)
        versions = sorted(int(r.split("\x1f")[2]) for r in b["resources"])
        self.assertEqual(versions.count(2), len(again))
        self.assertTrue(any("amended" in r for r in b["sp_tok"]))

    def test_store_that_cannot_be_opened_ends_the_threads_started_before(self):
        # The reader and the workers start before the store is opened. A store another
        # connection holds locked past the busy timeout cannot be opened: the import says
        # so and exits 1, and does not wait for ever on its reader, which by then waits
        # for room in the full queue (300 units of one line, room for three).
        data = os.path.join(self.tmp, "locked")
        os.makedirs(data)
        con = sqlite3.connect(os.path.join(data, "fhir.db"), isolation_level=None)
        try:
            con.execute("PRAGMA locking_mode=EXCLUSIVE")
            con.execute("BEGIN EXCLUSIVE")
            con.execute("CREATE TABLE held (x)")
            path = os.path.join(self.tmp, "many.ndjson")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(synthea_resources()[:300]) + "\n")
            _, code, out, err = self.imp("locked", [path], "--batch", "1", "--workers", "1")
        finally:
            con.close()
        self.assertEqual(code, 1, err)
        self.assertIn("cannot open the FHIR store", err)
        # Who may hold it, not SQLite's bare "database is locked".
        self.assertIn("database is locked; another process has held its lock for over 5 s", err)
        self.assertEqual(out, "")

    def test_a_file_that_cannot_be_read_is_named_with_the_systems_reason(self):
        good = synthea_files()[0]
        missing = os.path.join(self.tmp, "no-such-file.ndjson")
        folder = os.path.join(self.tmp, "a-folder")
        os.mkdir(folder)
        data, code, out, err = self.imp("unreadable", [missing, folder, good])
        self.assertEqual(code, 1, err)
        self.assertIn("%s: cannot read: No such file or directory" % missing, err)
        self.assertIn("%s: cannot read: Is a directory" % folder, err)
        self.assertIn(", 2 failed", out)
        # The readable file is imported whole all the same.
        with open(good, encoding="utf-8") as f:
            n = len(json.load(f)["entry"])
        self.assertTrue(out.startswith("imported %d resources from 3 files" % n), out)

    def test_invalid_line_in_the_middle_named_and_nothing_half_written(self):
        lines = synthea_resources()[:300]
        bad_no = 157
        bad_id = json.loads(lines[bad_no - 1])["id"]
        lines[bad_no - 1] = lines[bad_no - 1][:-7]  # cut: not JSON any more
        path = os.path.join(self.tmp, "bad.ndjson")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        data, code, out, err = self.imp("bad", [path], "--workers", "3", "--batch", "40")
        self.assertEqual(code, 1, err)
        self.assertIn("%s:%d:" % (path, bad_no), err)
        self.assertTrue(out.startswith("imported 299 resources"), out)
        self.assertIn(", 1 failed", out)
        rows = full_dump(data)
        ids = {r.split("\x1f")[1] for r in rows["resources"]}
        self.assertEqual(len(ids), 299)
        self.assertNotIn(bad_id, ids)
        for t in TABLES + COMBO:
            self.assertFalse([r for r in rows[t] if r.split("\x1f")[1] == bad_id], t)
        # The other 299 are whole: the same rows as a clean import of the good lines.
        good = os.path.join(self.tmp, "good.ndjson")
        with open(good, "w", encoding="utf-8") as f:
            f.write("\n".join(l for i, l in enumerate(lines) if i != bad_no - 1) + "\n")
        clean, code, _, err = self.imp("clean", [good], "--workers", "1", "--batch", "40",
                                       env={"HOLOVITALS_IMPORT_DEFER_INDEXES": "0"})
        self.assertEqual(code, 0, err)
        self.assertEqual(dump_store(None, clean), dump_store(None, data))
        self.assertEqual(indexes(clean), indexes(data))

    def test_kill_mid_import_then_reopen_and_rerun(self):
        lines = synthea_resources()[:1500]
        path = os.path.join(self.tmp, "all.ndjson")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        clean, code, _, err = self.imp("clean", [path], "--batch", "25")
        self.assertEqual(code, 0, err)
        want = dump_store(None, clean)
        data = os.path.join(self.tmp, "killed")
        # Killed once a commit is seen with the value indexes deferred.
        p = subprocess.Popen([BIN, "import", "--data", data, "--batch", "25", "--workers", "2", path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        db = os.path.join(data, "fhir.db")
        seen = 0
        deadline = time.time() + 120
        while p.poll() is None and time.time() < deadline:
            try:
                con = sqlite3.connect(db, timeout=0.2)
                try:
                    seen = con.execute("SELECT count(*) FROM resources").fetchone()[0]
                    pending = con.execute("SELECT count(*) FROM import_deferred").fetchone()[0]
                finally:
                    con.close()
            except sqlite3.Error:
                seen, pending = 0, 0
            if seen > 0 and pending > 0:
                break
            time.sleep(0.01)
        self.assertIsNone(p.poll(), "the import ended before it could be killed")
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()
        # What was committed is whole: each stored resource has exactly the clean store's rows.
        con = sqlite3.connect(db)
        try:
            stored = {(t, i) for t, i in con.execute("SELECT type, id FROM resources")}
            deferred = {n for (n,) in con.execute("SELECT name FROM import_deferred")}
            # The search tables' indexes, and those of refs and resources that no write of a
            # first version reads; resources_tiv (unique, read per version) stays.
            self.assertIn("sp_tok_idc", deferred)
            self.assertLessEqual({"refs_id", "refs_patient", "resources_trid", "resources_dead"}, deferred)
            self.assertNotIn("resources_tiv", deferred)
        finally:
            con.close()
        self.assertTrue(0 < len(stored) < len(lines), len(stored))
        got = dump_store(None, data)
        for t in TABLES:
            mine = [r for r in want[t] if tuple(r.split("\x1f")[:2]) in stored]
            self.assertEqual(got[t], mine, t)
        # The next opening of the store builds the deferred indexes (an import of nothing).
        empty = os.path.join(self.tmp, "empty.ndjson")
        with open(empty, "w", encoding="utf-8") as f:
            f.write("\n")
        self.imp("killed", [empty])
        self.assertEqual(indexes(data), (indexes(clean)[0], 0))
        # Importing again: the clean import's index rows, and its contents as current versions.
        _, code, out, err = self.imp("killed", [path], "--batch", "25")
        self.assertEqual(code, 0, err)
        # The resources committed before the kill are now at version 2, so their index rows
        # that carry the current version's row id differ from the clean store's by that id:
        # compare those rows with the id checked to be the current version's instead.
        got, want = dump_current_rid(data), dump_current_rid(clean)
        for t in TABLES:
            self.assertEqual(got[t], want[t], t)
        self.assertEqual(current(data), current(clean))
        self.assertEqual(indexes(data), indexes(clean))


    def test_indexes_built_outside_the_wal_when_the_import_is_alone(self):
        # Alone with the store, the import leaves WAL for the rollback journal to build the
        # deferred indexes (their pages written once, not into the WAL and again by the
        # checkpoint), then returns to WAL; with another connection open it cannot leave
        # WAL and builds them there. The stores equal the one with every index kept.
        files = synthea_files()[:5]
        self.assertEqual(len(files), 5, "no Synthea bundles under " + REFERENCE)
        kept, code, _, err = self.imp("kept", files, "--workers", "1", env={"HOLOVITALS_IMPORT_DEFER_INDEXES": "0"})
        self.assertEqual(code, 0, err)
        want = full_dump(kept)
        empty = os.path.join(self.tmp, "empty.ndjson")
        with open(empty, "w", encoding="utf-8") as f:
            f.write("\n")
        # Either store got its larger pages (fhir/import.c, larger_pages) from the import
        # that created it, alone with it: the "shared" one from the import of nothing.
        for name, other, outside in (("alone", False, "yes"), ("shared", True, "no")):
            data = os.path.join(self.tmp, name)
            con = None
            if other:
                # The store exists (empty), and a connection that read it keeps it open.
                self.imp(name, [empty])
                con = sqlite3.connect(os.path.join(data, "fhir.db"))
                self.assertEqual(con.execute("SELECT count(*) FROM resources").fetchall(), [(0,)])
            try:
                _, code, _, err = self.imp(name, files, env={"HOLOVITALS_IMPORT_PRECOMPUTE": "1"})
            finally:
                if con is not None:
                    con.close()
            self.assertEqual(code, 0, err)
            self.assertIn("holovitals import: search indexes built outside the WAL: %s\n" % outside, err)
            self.assertIn("holovitals import: Bundles written outside the WAL: %s\n" % outside, err)
            self.assertFalse(os.path.exists(os.path.join(data, "fhir.db-journal")))
            con = sqlite3.connect(os.path.join(data, "fhir.db"))
            try:
                self.assertEqual(con.execute("PRAGMA journal_mode").fetchone()[0], "wal")
                self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
                self.assertEqual(con.execute("PRAGMA page_size").fetchone()[0], 16384)
                self.assertEqual(con.execute("PRAGMA auto_vacuum").fetchone()[0], 2)
            finally:
                con.close()
            got = full_dump(data)
            for t in want:
                self.assertEqual(got[t], want[t], t)
            self.assertEqual(indexes(data), indexes(kept))

    def test_only_an_empty_store_gets_larger_pages(self):
        # The import changes the page size (VACUUM) only while the store holds no resource: a
        # store with resources keeps its pages, and imports into both end with the same rows.
        files = synthea_files()[:4]
        self.assertEqual(len(files), 4, "no Synthea bundles under " + REFERENCE)
        small = os.path.join(self.tmp, "small")
        os.makedirs(small)
        # A new store whose first import shares it with another connection stays in WAL,
        # with SQLite's 4 KiB pages.
        con = sqlite3.connect(os.path.join(small, "fhir.db"))
        try:
            con.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self.assertEqual(con.execute("PRAGMA journal_mode=WAL").fetchone()[0], "wal")
            self.assertEqual(con.execute("SELECT count(*) FROM sqlite_master").fetchall(), [(0,)])
            _, code, _, err = self.imp("small", [files[0]], "--workers", "1")
        finally:
            con.close()
        self.assertEqual(code, 0, err)
        # Alone with it now, but it holds resources.
        _, code, _, err = self.imp("small", files[1:], "--workers", "1", env={"HOLOVITALS_IMPORT_PRECOMPUTE": "1"})
        self.assertEqual(code, 0, err)
        self.assertIn("holovitals import: Bundles written outside the WAL: yes\n", err)
        big, code, _, err = self.imp("big", files, "--workers", "1")
        self.assertEqual(code, 0, err)
        for data, page in ((small, 4096), (big, 16384)):
            con = sqlite3.connect(os.path.join(data, "fhir.db"))
            try:
                self.assertEqual(con.execute("PRAGMA page_size").fetchone()[0], page, data)
                self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            finally:
                con.close()
        want, got = full_dump(big), full_dump(small)
        for t in want:
            self.assertEqual(got[t], want[t], t)

    def test_kill_while_writing_bundles_outside_the_wal_then_reopen(self):
        # Units of 200 NDJSON lines, one Bundle and one commit each (--batch 200). Killed once
        # the store is in rollback-journal mode (the file's header, read without a connection,
        # which would keep the import in WAL), something is committed, and a transaction has a
        # journal; a kill that happens to fall between two transactions leaves no hot journal,
        # and the run is tried again.
        lines = synthea_resources()[:1600]
        path = os.path.join(self.tmp, "all.ndjson")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        clean, code, _, err = self.imp("clean", [path], "--batch", "200")
        self.assertEqual(code, 0, err)
        want = dump_store(None, clean)
        empty = os.path.join(self.tmp, "empty.ndjson")
        with open(empty, "w", encoding="utf-8") as f:
            f.write("\n")
        for attempt in range(5):
            data = os.path.join(self.tmp, "killed%d" % attempt)
            db = os.path.join(data, "fhir.db")
            p = subprocess.Popen([BIN, "import", "--data", data, "--batch", "200", "--workers", "2", path],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 120
            while p.poll() is None and time.time() < deadline:
                if rollback_mode(db) and os.path.exists(db + "-journal"):
                    try:
                        con = sqlite3.connect(db, timeout=0.2)
                        try:
                            seen = con.execute("SELECT count(*) FROM resources").fetchone()[0]
                        finally:
                            con.close()
                    except sqlite3.Error:
                        seen = 0
                    if seen > 0 and os.path.exists(db + "-journal"):
                        break
                time.sleep(0.005)
            self.assertIsNone(p.poll(), "the import ended before it could be killed")
            p.send_signal(signal.SIGKILL)
            p.wait()
            if os.path.exists(db + "-journal"):
                break
        self.assertTrue(os.path.exists(db + "-journal"), "no kill left a hot journal")
        self.assertTrue(rollback_mode(db))
        # The next opening of the store (an import of nothing) rolls the journal back.
        self.imp(os.path.basename(data), [empty])
        self.assertFalse(os.path.exists(db + "-journal"))
        self.assertEqual(indexes(data), (indexes(clean)[0], 0))
        con = sqlite3.connect(db)
        try:
            self.assertEqual(con.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            stored = {(t, i) for t, i in con.execute("SELECT type, id FROM resources")}
        finally:
            con.close()
        # Whole Bundles only: the first k units' resources, each with exactly its clean rows.
        self.assertTrue(0 < len(stored) < len(lines), len(stored))
        self.assertEqual(len(stored) % 200, 0, len(stored))
        first = {(r["resourceType"], r["id"]) for r in map(json.loads, lines[:len(stored)])}
        self.assertEqual(stored, first)
        got = dump_store(None, data)
        for t in TABLES:
            mine = [r for r in want[t] if tuple(r.split("\x1f")[:2]) in stored]
            self.assertEqual(got[t], mine, t)

    def test_kill_during_the_build_outside_the_wal_then_reopen(self):
        # The state a kill -9 leaves during the import's index build in rollback-journal
        # mode, made deterministic: a child process defers the indexes of an imported store
        # as the import does (definitions in import_deferred, indexes dropped, the file
        # shrunk), then builds them in journal_mode=DELETE with a tiny page cache (so the new
        # index pages reach the database file past its old end), deletes import_deferred's
        # rows and is killed before COMMIT. The next opening rolls the hot journal back,
        # returns to WAL and builds the indexes again: the clean store's rows and indexes.
        files = synthea_files()[:5]
        self.assertEqual(len(files), 5, "no Synthea bundles under " + REFERENCE)
        clean, code, _, err = self.imp("clean", files)
        self.assertEqual(code, 0, err)
        data = os.path.join(self.tmp, "killed")
        shutil.copytree(clean, data)
        db = os.path.join(data, "fhir.db")
        con = sqlite3.connect(db, isolation_level=None)
        try:
            con.execute("BEGIN")
            con.execute("INSERT INTO import_deferred (name, sql) SELECT name, sql FROM sqlite_master"
                        " WHERE type = 'index' AND sql IS NOT NULL AND tbl_name LIKE 'sp\\_%' ESCAPE '\\'")
            names = [r[0] for r in con.execute("SELECT name FROM import_deferred")]
            self.assertGreater(len(names), 10)
            for n in names:
                con.execute('DROP INDEX "%s"' % n)
            con.execute("COMMIT")
            con.execute("VACUUM")
            self.assertEqual(con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0], 0)
            self.assertEqual(con.execute("PRAGMA freelist_count").fetchone()[0], 0)
        finally:
            con.close()
        before = os.path.getsize(db)
        child = (
            "import os, signal, sqlite3, sys\n"
            "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "assert con.execute('PRAGMA journal_mode=DELETE').fetchone()[0] == 'delete'\n"
            "con.execute('PRAGMA cache_size=8')\n"
            "con.execute('BEGIN')\n"
            "for (ddl,) in con.execute('SELECT sql FROM import_deferred').fetchall():\n"
            "    con.execute(ddl)\n"
            "con.execute('DELETE FROM import_deferred')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
        p = subprocess.run(["python3", "-c", child, db], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, -signal.SIGKILL, p.stderr)
        self.assertTrue(os.path.exists(db + "-journal"))
        self.assertGreater(os.path.getsize(db), before)
        # The next opening of the store (an import of nothing).
        empty = os.path.join(self.tmp, "empty.ndjson")
        with open(empty, "w", encoding="utf-8") as f:
            f.write("\n")
        self.imp("killed", [empty])
        self.assertFalse(os.path.exists(db + "-journal"))
        self.assertEqual(indexes(data), (indexes(clean)[0], 0))
        con = sqlite3.connect(db)
        try:
            self.assertEqual(con.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
        finally:
            con.close()
        got, want = full_dump(data), full_dump(clean)
        for t in want:
            self.assertEqual(got[t], want[t], t)


def rollback_mode(db):
    """Whether SQLite database file db is in rollback-journal mode, from its header (bytes 18
    and 19 are 1 in rollback mode, 2 in WAL mode: sqlite.org/fileformat.html#file_format_version_numbers),
    read without opening a connection."""
    try:
        with open(db, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18] == 1 and head[19] == 1


def dump_current_rid(data):
    """dump_store of a SQLite store, with the row-id column of the index tables that carry the
    current version's row id (sp_tok, sp_str where present) replaced by whether it is that."""
    out = dump_store(None, data)
    con = sqlite3.connect(os.path.join(data, "fhir.db"))
    try:
        for t in ("sp_tok", "sp_str"):
            cols = [r[1] for r in con.execute("PRAGMA table_info(%s)" % t)]
            if "rid" not in cols:
                continue
            sel = ", ".join("(t.rid = (SELECT MAX(x.rid) FROM resources x WHERE x.type = t.type AND x.id = t.id))"
                            if c == "rid" else "t." + c for c in cols)
            out[t] = sorted("\x1f".join(map(str, r)) for r in con.execute("SELECT %s FROM %s t" % (sel, t)))
    finally:
        con.close()
    return out


def current(data):
    """type/id -> the current version's JSON without meta.versionId and lastUpdated."""
    con = sqlite3.connect(os.path.join(data, "fhir.db"))
    try:
        return {(t, i): strip_meta(j) for t, i, j in con.execute(
            "SELECT type, id, json FROM resources r WHERE version = (SELECT max(version) FROM resources m"
            " WHERE m.type = r.type AND m.id = r.id)")}
    finally:
        con.close()


if __name__ == "__main__":
    main()
