#!/usr/bin/env python3
"""test_fhir_store_text.py — the deferred full-text index of `_text` / `_content` (issue 5,
the write path; fhir/search_special.c). On SQLite a write stores the version and drops the
superseded version's full-text row; the rows of new versions are written after the commit
by a catch-up that moves a mark (sp_text_mark.last_rid) in the same transaction, and every
`_text`/`_content` search runs the catch-up first. So a search sees every acknowledged
write, also after a kill -9 between a commit and its catch-up, and the mark is never
ahead of the rows. `holovitals import` leaves the full text to the engine's first search
or idle tick. PostgreSQL writes its tsvector with the version; the same searches run there
when HV_TEST_PG_URL is set.
"""
import glob
import json
import os
import sqlite3

from harness import REFERENCE, main, run_cli
import test_fhir_store as store_tests
from test_fhir_search2 import SearchCase

REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)


class FhirStoreTextTests(SearchCase):
    def db_args(self):
        return ["--db", self.DB] if self.DB else []

    def sqlite_state(self, eng):
        """(mark, max rid, text rowids, rids of the current live versions) of the SQLite store."""
        con = sqlite3.connect(os.path.join(eng.data, "fhir.db"), timeout=10)
        try:
            mark = con.execute("SELECT last_rid FROM sp_text_mark").fetchone()[0]
            top = con.execute("SELECT COALESCE(MAX(rid), 0) FROM resources").fetchone()[0]
            text = {r[0] for r in con.execute("SELECT rowid FROM sp_text")}
            live = {r[0] for r in con.execute(
                "SELECT rid FROM resources r WHERE deleted = 0 AND NOT EXISTS (SELECT 1 FROM resources n"
                " WHERE n.type = r.type AND n.id = r.id AND n.version > r.version)")}
        finally:
            con.close()
        return mark, top, text, live

    def test_every_acknowledged_write_is_found_after_kill9(self):
        eng = self.start()
        ids = []
        for i in range(40):
            st, h, b = self.jreq("POST", "/fhir/Patient",
                                 {"resourceType": "Patient", "name": [{"family": "Kilnword", "given": ["g%d" % i]}]})
            self.assertEqual(st, 201, b)
            ids.append(b["id"])
        upd = {"resourceType": "Patient", "id": ids[0], "name": [{"family": "Otherword"}]}
        self.assertEqual(self.jreq("PUT", "/fhir/Patient/" + ids[0], upd)[0], 200)
        self.assertIn(self.jreq("DELETE", "/fhir/Patient/" + ids[1])[0], (200, 204))
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "Kilnword"}]},
             "request": {"method": "POST", "url": "Patient"}} for _ in range(2)]}
        st, _, b = self.jreq("POST", "/fhir", tx)
        self.assertEqual(st, 200, b)
        ids += [e["response"]["location"].split("/")[1] for e in b["entry"]]
        eng.kill9()  # at once: the catch-up may not have run for the last writes
        if not self.DB:
            mark, top, text, live = self.sqlite_state(eng)
            self.assertLessEqual(mark, top)
            self.assertEqual({r for r in text if r > mark}, set(), "a full-text row above the mark")
            self.assertEqual({r for r in live if r <= mark} - text, set(), "a version behind the mark not indexed")
            self.assertLessEqual(text, live)  # no row of a superseded or deleted version
        eng.start()
        self.assertEqual(sorted(self.q("Patient?_content=kilnword&_count=1000")), sorted(ids[2:]))
        self.assertEqual(self.q("Patient?_content=otherword"), [ids[0]])
        if not self.DB:
            mark, top, text, live = self.sqlite_state(eng)
            self.assertEqual(mark, top)
            self.assertEqual(text, live)

    def test_import_is_indexed_by_the_first_search(self):
        files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))
        self.assertTrue(files, "no Synthea bundles under " + REFERENCE)
        bundle = json.load(open(files[0], encoding="utf-8"))
        pat = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"][0]
        family = pat["name"][0]["family"]
        if self.DB:
            store_tests.reset_pg(self.DB)
        eng = self.engine(start=False, args=self.db_args())
        code, out, err = run_cli(*(["import", "--data", eng.data] + self.db_args() + [files[0]]))
        self.assertEqual(code, 0, err)
        if not self.DB:
            mark, top, text, live = self.sqlite_state(eng)
            self.assertEqual((mark, len(text)), (0, 0))  # the import wrote no full text
            self.assertGreater(top, 50)
        eng.start()
        self.eng = eng
        self.assertEqual(self.q("Patient?_content=%s" % family.lower()), [pat["id"]])
        if not self.DB:
            mark, top, text, live = self.sqlite_state(eng)
            self.assertEqual((mark, text), (top, live))


if store_tests.PG_URL:
    class FhirStoreTextTestsPg(FhirStoreTextTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_store_text")


if __name__ == "__main__":
    main()
