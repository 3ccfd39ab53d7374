#!/usr/bin/env python3
"""test_fhir_search_fold.py — string search is case- and accent-insensitive for all of
Unicode (FHIR R4 search.html#string; the fold of fhir/search_fold.c: Unicode's
compatibility caseless form with every combining mark dropped), through the real binary:
starts-with and :contains (folded values), :exact (case and combining characters significant,
search.html#string; rows written before sp_str.raw match folded), the :text of a token,
_content, letters that do not decompose (they stay letters, case-folded), a value at the
index's length cap, invalid UTF-8 in a resource and in a query (never a 500), and the fold
upgrade of a store indexed by the old fold (rows doctored back to the old fold, the
upgrade mark reset: the restarted engine re-folds them). Runs on PostgreSQL too when
HV_TEST_PG_URL is set.
"""

import sqlite3
import subprocess
import urllib.parse

from harness import main, wait_until
import test_fhir_store as store_tests
from test_fhir_search2 import SearchCase

PATIENTS = [
    # id, family, given, city
    ("ae", "Ærøskøbing", "Søren", "København"),
    ("lo", "Łódź", "Józef", "Łódź"),
    ("si", "ΣΊΣΥΦΟΣ", "Νίκος", "Αθήνα"),
    ("is", "Yılmaz", "İpek", "İstanbul"),
    ("st", "Straße", "Jörg", "München"),
    ("m1", "Müller", "Zoë", "Zürich"),
    ("m2", "Mu\u0308ller", "Zoe\u0308", "Zu\u0308rich"),   # the same, decomposed (NFD)
    ("mu", "MULLER", "Anne", "Paris"),
    ("ja", "がっこう", "ﬁona", "ＴＯＫＹＯ"),
    ("sm", "Smith", "John", "Boston"),
]


def patient(pid, family, given, city):
    return {"resourceType": "Patient", "id": pid, "active": True,
            "name": [{"family": family, "given": [given]}],
            "address": [{"city": city}],
            "communication": [{"language": {"text": "Français — ÉPOUX"}}]}


class FhirSearchFoldTests(SearchCase):

    def load(self):
        self.start()
        for p in PATIENTS:
            self.put(patient(*p))

    def ids(self, param, value):
        return self.q("Patient?%s=%s" % (param, urllib.parse.quote(value)))

    def test_fold_variants_find_each_other(self):
        self.load()
        cases = [
            ("family", "ærøskøbing", ["ae"]), ("family", "ÆRØ", ["ae"]), ("family", "aeroskobing", []),
            ("family", "Łodz", ["lo"]), ("family", "łódź", ["lo"]), ("family", "lodz", []),
            ("address-city", "ŁÓDŹ", ["lo"]),
            ("family", "σίσυφος", ["si"]), ("family", "σισυφος", ["si"]), ("family", "ΣΙΣΥΦΟΣ", ["si"]),
            ("given", "ΝΙΚΟΣ", ["si"]), ("address-city", "αθηνα", ["si"]),
            ("given", "ipek", ["is"]), ("address-city", "ISTANBUL", ["is"]), ("family", "yilmaz", []),
            ("family", "STRASSE", ["st"]), ("family", "strasse", ["st"]), ("family", "straß", ["st"]),
            ("address-city", "munchen", ["st"]), ("given", "JORG", ["st"]),
            ("family", "muller", ["m1", "m2", "mu"]), ("family", "Mü", ["m1", "m2", "mu"]),
            ("family", "Mu\u0308l", ["m1", "m2", "mu"]), ("given", "zoe", ["m1", "m2"]),
            ("address-city", "ZÜRICH", ["m1", "m2"]),
            ("family", "かっこう", ["ja"]), ("given", "FIONA", ["ja"]), ("address-city", "tokyo", ["ja"]),
            ("family", "smi", ["sm"]),
        ]
        for param, value, want in cases:
            self.assertEqual(self.ids(param, value), want, (param, value))

    def test_exact_is_case_and_mark_sensitive_contains_folds(self):
        self.load()
        cases = [
            # search.html#string: ":exact ... including case and combining characters"
            ("family:exact", "Straße", ["st"]), ("family:exact", "STRASSE", []), ("family:exact", "strasse", []),
            ("family:exact", "Stra", []), ("family:exact", "MÜLLER", []), ("family:exact", "MULLER", ["mu"]),
            ("family:exact", "Müller", ["m1"]), ("family:exact", "Mu\u0308ller", ["m2"]),
            ("family:exact", "Muller", []), ("family:exact", "Ærøskøbing", ["ae"]),
            ("family:exact", "ærøskøbing", []), ("family:exact", "ærø", []),
            ("given:exact", "Zoë", ["m1"]), ("given:exact", "Zoe\u0308", ["m2"]),
            ("family:contains", "ASS", ["st"]), ("family:contains", "üll", ["m1", "m2", "mu"]),
            ("family:contains", "ΣΥΦ", ["si"]), ("family:contains", "røsk", ["ae"]),
            ("address-city:contains", "ØBENHAV", ["ae"]), ("address-city:contains", "obenhav", []),
        ]
        for param, value, want in cases:
            self.assertEqual(self.ids(param, value), want, (param, value))
        # a token's :text and _content fold the same way
        self.assertEqual(len(self.ids("language:text", "FRANCAIS")), len(PATIENTS))
        self.assertEqual(self.ids("_content", "KØBENHAVN"), ["ae"])
        self.assertEqual(self.ids("_content", "σισυφοσ"), ["si"])

    SMITHS = [("x1", ["Smith"]), ("x2", ["SMITH"]), ("x3", ["smith"]), ("x4", ["Smíth"]),
              ("x5", ["Smi\u0301th"]), ("x6", ["Smith", "SMITH"]), ("x7", ["Smith"]), ("x8", ["Smith"]),
              ("x9", ["Smithers"]), ("xa", ["Smith"])]

    def load_smiths(self):
        self.start()
        for pid, names in self.SMITHS:
            self.put({"resourceType": "Patient", "id": pid, "name": [{"family": n} for n in names]})
            self.put({"resourceType": "Observation", "id": "o" + pid, "status": "final",
                      "code": {"text": "x"}, "subject": {"reference": "Patient/" + pid}})

    def test_exact_finds_the_written_string_only(self):
        self.load_smiths()
        smith = ["x1", "x6", "x7", "x8", "xa"]
        self.assertEqual(self.ids("name:exact", "Smith"), smith)
        self.assertEqual(self.ids("family:exact", "Smith"), smith)
        self.assertEqual(self.ids("name:exact", "SMITH"), ["x2", "x6"])
        self.assertEqual(self.ids("name:exact", "smith"), ["x3"])
        self.assertEqual(self.ids("name:exact", "Smíth"), ["x4"])
        self.assertEqual(self.ids("name:exact", "Smi\u0301th"), ["x5"])
        self.assertEqual(self.ids("name:exact", "Smith,smith"), sorted(smith + ["x3"]))
        # the default (starts-with) stays folded: every variant, and the longer name
        self.assertEqual(self.ids("name", "smith"), sorted(p for p, _ in self.SMITHS))
        # a chain's inner criterion, and paging by 2: every match once, none missing
        self.assertEqual(self.q("Observation?subject:Patient.name:exact=Smith"), ["o" + p for p in smith])
        for query in ("Patient?name:exact=Smith&_count=2", "Patient?family:exact=Smith&_count=2&_total=accurate",
                      "Observation?subject:Patient.family:exact=Smith&_count=2"):
            got = [k.split("/", 1)[1] for k in self.search(query)[0]]
            self.assertEqual(len(got), len(set(got)), query)
            want = smith if query.startswith("Patient") else ["o" + p for p in smith]
            self.assertEqual(sorted(got), want, query)
        st, _, b = self.jreq("GET", "/fhir/Patient?name:exact=Smith&_summary=count")
        self.assertEqual((st, b["total"]), (200, len(smith)))

    def test_exact_rows_written_before_raw_match_folded(self):
        self.load_smiths()
        self.eng.stop()
        # Rows of a store written before the migration: raw NULL (x2 "SMITH", x4 "Smíth").
        self.sql(["UPDATE sp_str SET raw = NULL WHERE type = 'Patient' AND id IN ('x2', 'x4')"])
        self.eng.start()
        self.assertEqual(self.ids("name:exact", "Smith"), ["x1", "x2", "x4", "x6", "x7", "x8", "xa"])
        self.assertEqual(self.ids("name:exact", "smith"), ["x2", "x3", "x4"])
        # a new version of x2 writes raw again
        self.put({"resourceType": "Patient", "id": "x2", "name": [{"family": "SMITH"}]})
        self.assertEqual(self.ids("name:exact", "Smith"), ["x1", "x4", "x6", "x7", "x8", "xa"])

    def test_value_at_the_length_cap_and_invalid_utf8(self):
        self.load()
        # 300 "É" (600 bytes) fold to 300 "e": indexed up to the cap (255 bytes), found by a prefix
        self.put(patient("long", "É" * 300, "X", "Y"))
        self.assertEqual(self.ids("family", "e" * 200), ["long"])
        self.assertEqual(self.ids("family", "ÉÉÉ"), ["long"])
        # invalid UTF-8 in a resource: refused or kept, never a 500, and search still answers
        raw = b'{"resourceType":"Patient","id":"bad","name":[{"family":"Ab\xffcd"}]}'
        st, _, _ = self.eng.request("PUT", "/fhir/Patient/bad", body=raw,
                                    headers={"Content-Type": "application/fhir+json"})
        self.assertIn(st, (200, 201, 400), st)
        # invalid UTF-8 in a query value: folded (U+FFFD), never a 500
        for q in ("Patient?family=%FF", "Patient?family:exact=Ab%FFcd", "Patient?family:contains=%C3",
                  "Patient?_content=%E2%82"):
            st, _, _ = self.eng.request("GET", "/fhir/" + q)
            self.assertIn(st, (200, 400), q)
        self.assertEqual(self.ids("family", "smith"), ["sm"])

    def test_upgrade_refolds_a_store_indexed_by_the_old_fold(self):
        self.load()
        self.eng.stop()
        # What the old fold (ASCII and Latin-1 only) wrote: "Ærø" as "aro", Greek and Polish as given.
        old = [("ae", "family", "aroskobing"), ("si", "family", "ΣΊΣΥΦΟΣ"), ("lo", "family", "Łodź"),
               ("st", "family", "strase"), ("sm", "family", "smith")]
        self.doctor(old)
        self.eng.start()
        self.assertEqual(self.ids("family", "ærøskøbing"), ["ae"])
        self.assertEqual(self.ids("family", "aroskobing"), [])
        self.assertEqual(self.ids("family", "σισυφος"), ["si"])
        self.assertEqual(self.ids("family", "łodz"), ["lo"])
        self.assertEqual(self.ids("family", "strasse"), ["st"])
        self.assertEqual(self.ids("family", "smith"), ["sm"])
        # An info line reaches standard error at the engine's next log flush (every 250 ms).
        self.assertTrue(wait_until(lambda: "string index re-folded" in self.eng.stderr()),
                        self.eng.stderr()[-2000:])

    def doctor(self, rows):
        stmts = ["UPDATE sp_str SET value = '%s' WHERE type = 'Patient' AND id = '%s' AND code = '%s'"
                 % (v, pid, code) for pid, code, v in rows]
        stmts.append("UPDATE sp_fold SET after = 0")
        self.sql(stmts)

    def sql(self, stmts):
        """Runs stmts on the stopped engine's store, behind its back."""
        if self.DB:
            sql = "SET search_path TO fhir; " + "; ".join(stmts)
            subprocess.run(["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", self.DB, "-c", sql],
                           check=True, capture_output=True, timeout=30)
        else:
            db = sqlite3.connect(self.eng.data + "/fhir.db")
            for s in stmts:
                db.execute(s)
            db.commit()
            db.close()


if store_tests.PG_URL:
    class FhirSearchFoldTestsPg(FhirSearchFoldTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search_fold")


if __name__ == "__main__":
    main()
