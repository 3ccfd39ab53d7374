#!/usr/bin/env python3
"""test_fhir_search_fold.py — string search is case- and accent-insensitive for all of
Unicode (FHIR R4 search.html#string; the fold of fhir/search_fold.c: Unicode's
compatibility caseless form with every combining mark dropped), through the real binary:
starts-with, :exact (equality of the folded values) and :contains, the :text of a token,
_content, letters that do not decompose (they stay letters, case-folded), a value at the
index's length cap, invalid UTF-8 in a resource and in a query (never a 500), and the fold
upgrade of a store indexed by the old fold (rows doctored back to the old fold, the
upgrade mark reset: the restarted engine re-folds them). Runs on PostgreSQL too when
HV_TEST_PG_URL is set.
"""

import sqlite3
import subprocess
import urllib.parse

from harness import main
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

    def test_exact_and_contains_compare_folded_values(self):
        self.load()
        cases = [
            ("family:exact", "STRASSE", ["st"]), ("family:exact", "Straße", ["st"]),
            ("family:exact", "Stra", []), ("family:exact", "MÜLLER", ["m1", "m2", "mu"]),
            ("family:exact", "Ærøskøbing", ["ae"]), ("family:exact", "ærø", []),
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
        self.assertIn("string index re-folded", self.eng.stderr())

    def doctor(self, rows):
        stmts = ["UPDATE sp_str SET value = '%s' WHERE type = 'Patient' AND id = '%s' AND code = '%s'"
                 % (v, pid, code) for pid, code, v in rows]
        stmts.append("UPDATE sp_fold SET after = 0")
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
