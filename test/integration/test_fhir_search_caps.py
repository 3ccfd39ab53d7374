#!/usr/bin/env python3
"""test_fhir_search_caps.py — no search-index value is dropped without a word
(fhir/search_index.c, fhir/search_combo.c, fhir/search_has.c).

Earlier writers indexed at most 64 values of one parameter per resource and wrote at most
64 x 64 combined rows per pair: the 65th member of a Group and the 65th coding of an
Observation were stored but never found. Every value is indexed now, up to hard limits
(10,000 values per parameter, 100,000 rows per version, 100,000 combined rows per pair), and
a resource past one is refused — 422 with an OperationOutcome naming the parameter and the
limit, a failed transaction, a failed Bundle of an import — never stored half-indexed. A
reindex of a resource stored before the limits and past them keeps its old rows and names it
(`holovitals reindex` exits 1, `$reindex` answers `refused`), reindexing the rest.
Checked through the REST API and through `holovitals import`, on SQLite and (when
HV_TEST_PG_URL is set) on PostgreSQL.
"""

import json
import os
import sqlite3
import subprocess

from harness import main
import test_fhir_store as store_tests
from test_fhir_search2 import SearchCase

LIMIT = 10000  # MAX_VALUES_PER_PARAM


def group(gid, n):
    return {"resourceType": "Group", "id": gid, "type": "person", "actual": True,
            "member": [{"entity": {"reference": "Patient/p%d" % i}} for i in range(n)]}


def obs70(oid, pid):
    """An Observation with 70 codings (c0 ... c69), one date, one quantity and a subject."""
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "urn:many", "code": "c%d" % i} for i in range(70)]},
            "effectiveDateTime": "2020-01-01", "valueQuantity": {"value": 7},
            "subject": {"reference": "Patient/%s" % pid}}


class FhirSearchCapsTests(SearchCase):
    """Every value indexed; past the hard limit, refused."""

    def ids(self, query):
        return sorted(k.split("/", 1)[1] for k in self.search(query)[0])

    def check_found(self):
        """The searches the old caps failed: the 100th member, the 70th coding, alone and combined."""
        self.assertEqual(self.ids("Group?member=Patient/p99"), ["g100"])
        self.assertEqual(self.ids("Group?member=Patient/p0"), ["g100"])
        self.assertEqual(self.ids("Observation?code=urn:many|c69"), ["o70"])
        self.assertEqual(self.ids("Observation?code=c69&date=2020-01-01"), ["o70"])
        self.assertEqual(self.ids("Observation?code=urn:many|c69&date=ge2019&date=lt2021"), ["o70"])
        self.assertEqual(self.ids("Observation?code=c69&date=2021"), [])
        self.assertEqual(self.ids("Observation?code=c69&value-quantity=7"), ["o70"])
        self.assertEqual(self.ids("Observation?code=c69&value-quantity=gt7"), [])
        self.assertEqual(self.ids("Patient?_has:Observation:subject:code=c69"), ["p7"])
        st, _, b = self.jreq("GET", "/fhir/Observation?code=c69&date=2020&_summary=count")
        self.assertEqual((st, b.get("total")), (200, 1))

    def test_every_member_and_coding_is_found(self):
        self.start()
        self.put({"resourceType": "Patient", "id": "p7"})
        self.put(group("g100", 100))
        self.put(obs70("o70", "p7"))
        self.check_found()
        # An update that drops the first 50 members and codings drops exactly those rows.
        g = group("g100", 100)
        g["member"] = g["member"][50:]
        self.put(g)
        o = obs70("o70", "p7")
        o["code"]["coding"] = o["code"]["coding"][50:]
        self.put(o)
        self.assertEqual(self.ids("Group?member=Patient/p99"), ["g100"])
        self.assertEqual(self.ids("Group?member=Patient/p49"), [])
        self.assertEqual(self.ids("Observation?code=c69&date=2020"), ["o70"])
        self.assertEqual(self.ids("Observation?code=c49&date=2020"), [])

    def test_a_resource_past_the_limit_is_refused_with_a_word(self):
        self.start()
        st, _, b = self.jreq("POST", "/fhir/Group", group("big", LIMIT + 1))
        self.assertEqual(st, 422, str(b)[:300])
        self.assertEqual(b["resourceType"], "OperationOutcome")
        issue = b["issue"][0]
        self.assertEqual((issue["severity"], issue["code"]), ("error", "too-costly"))
        self.assertIn("'member' of Group would index more than %d values" % LIMIT, issue["diagnostics"])
        st, _, b = self.jreq("PUT", "/fhir/Group/big", group("big", LIMIT + 1))
        self.assertEqual(st, 422, str(b)[:300])
        st, _, b = self.jreq("GET", "/fhir/Group?_summary=count")
        self.assertEqual((st, b.get("total")), (200, 0))
        st, _, _ = self.jreq("GET", "/fhir/Group/big")
        self.assertEqual(st, 404)
        # In a transaction: the whole Bundle fails, its other entries are not stored.
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "pt"}, "request": {"method": "PUT", "url": "Patient/pt"}},
            {"resource": group("big", LIMIT + 1), "request": {"method": "PUT", "url": "Group/big"}}]}
        st, _, b = self.jreq("POST", "/fhir", tx)
        self.assertEqual(st, 422, str(b)[:300])
        self.assertIn("'member'", json.dumps(b))
        st, _, _ = self.jreq("GET", "/fhir/Patient/pt")
        self.assertEqual(st, 404)
        # The limit itself is stored and found by its last value.
        self.put(group("edge", LIMIT))
        self.assertEqual(self.ids("Group?member=Patient/p%d" % (LIMIT - 1)), ["edge"])

    def test_import_indexes_every_value_and_refuses_past_the_limit(self):
        eng = self.engine(start=False, args=["--db", self.DB] if self.DB else [])
        if self.DB:
            store_tests.reset_pg(self.DB)
        path = os.path.join(eng.workdir, "pop.ndjson")
        with open(path, "w") as f:
            for r in ({"resourceType": "Patient", "id": "p7"}, group("g100", 100), obs70("o70", "p7")):
                f.write(json.dumps(r) + "\n")
        bad = os.path.join(eng.workdir, "big.ndjson")
        with open(bad, "w") as f:
            f.write(json.dumps({"resourceType": "Patient", "id": "q1"}) + "\n")
            f.write(json.dumps(group("big", LIMIT + 1)) + "\n")
        code, out, err = eng.cli("import", *(["--db", self.DB] if self.DB else []), path, bad)
        self.assertEqual(code, 1, (out, err))  # a Bundle failed
        self.assertIn("'member' of Group would index more than %d values" % LIMIT, err)
        self.assertIn("imported 3 resources", out)
        self.eng = eng
        eng.start()
        self.check_found()
        st, _, _ = self.jreq("GET", "/fhir/Patient/q1")  # the failed Bundle's other resource
        self.assertEqual(st, 404)
        self.assertEqual(self.ids("Group?member=Patient/p10000"), [])

    def set_stored_json(self, eng, res):
        """Rewrites the stored JSON of res's current version behind the engine's back: a
        resource stored before the limits, when the writer dropped values silently."""
        text = json.dumps(res)
        if self.DB:
            sql = "UPDATE fhir.resources SET json = $j$%s$j$ WHERE type = '%s' AND id = '%s';" % (
                text, res["resourceType"], res["id"])
            subprocess.run(["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", self.DB], input=sql, text=True,
                           check=True, capture_output=True, timeout=60)
        else:
            con = sqlite3.connect(os.path.join(eng.data, "fhir.db"))
            with con:
                n = con.execute("UPDATE resources SET json = ? WHERE type = ? AND id = ?",
                                (text, res["resourceType"], res["id"])).rowcount
            con.close()
            self.assertEqual(n, 1)

    def test_reindex_keeps_a_resource_past_the_limit_with_its_old_rows_and_names_it(self):
        eng = self.start()
        self.put({"resourceType": "Patient", "id": "p7"})
        self.put(group("old", 10))
        eng.stop()
        self.set_stored_json(eng, group("old", LIMIT + 1))
        code, out, err = eng.cli("reindex", *(["--db", self.DB] if self.DB else []))
        self.assertEqual(code, 1, (out, err))
        self.assertIn("reindexed 1 resources", out)  # the Patient
        self.assertIn("1 resources kept their old index rows", err)
        self.assertIn("the first: Group/old: ", err)
        self.assertIn("'member' of Group would index more than %d values" % LIMIT, err)
        eng.start()
        # Its old rows stayed (the savepoint undid their deletion); the new values are not indexed.
        self.assertEqual(self.ids("Group?member=Patient/p9"), ["old"])
        self.assertEqual(self.ids("Group?member=Patient/p10"), [])
        self.assertEqual(self.ids("Patient?_id=p7"), ["p7"])
        st, _, b = self.jreq("POST", "/fhir/$reindex")
        self.assertEqual(st, 200, b)
        params = {p["name"]: p for p in b["parameter"]}
        self.assertEqual(params["reindexed"]["valueInteger"], 1)
        self.assertEqual(params["refused"]["valueInteger"], 1)
        self.assertTrue(params["refusal"]["valueString"].startswith("Group/old: "), params["refusal"])
        self.assertEqual(self.ids("Group?member=Patient/p9"), ["old"])


if store_tests.PG_URL:
    class FhirSearchCapsTestsPg(FhirSearchCapsTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search_caps")


if __name__ == "__main__":
    main()
