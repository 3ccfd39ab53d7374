#!/usr/bin/env python3
"""test_fhir_search.py — FHIR search over the wire (FHIR R4 search.html, issue 6).

A small hand-made data set covers each parameter type with its modifiers and prefixes,
OR (comma) and AND (repeated), _id/_lastUpdated, _count paging through the keyset cursor
without duplicates or gaps, _sort, _total, _summary=count, unknown parameters (ignored
and reported, or 400 under Prefer: handling=strict), malformed values (400 naming the
parameter), SQL metacharacters in values, POST _search, and that updates and deletes
replace the index rows. Synthea bundles imported with `holovitals import` are then
searched and the result sets compared with an independent evaluation by the FHIRPath
engine (`holovitals fhirpath`). Runs on SQLite and, when HV_TEST_PG_URL is set, on
PostgreSQL too.
"""

import glob
import json
import os
import subprocess
import tempfile
import urllib.parse

from harness import REFERENCE, EngineTestCase, main, run_cli
import test_fhir_store as store_tests

REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)
FJ = "application/fhir+json"


class FhirSearchTests(EngineTestCase):
    DB = None

    def start(self):
        args = ["--db", self.DB] if self.DB else []
        if self.DB:
            store_tests.reset_pg(self.DB)
        self.eng = self.engine(args=args)
        return self.eng

    def jreq(self, method, path, body=None, headers=None, ctype=FJ):
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if body is not None and ctype:
            h.setdefault("Content-Type", ctype)
        st, hdrs, data = self.eng.request(method, path, body=body, headers=h)
        return st, hdrs, (json.loads(data) if data else None)

    def put(self, res):
        st, _, body = self.jreq("PUT", "/fhir/%s/%s" % (res["resourceType"], res["id"]), res)
        self.assertIn(st, (200, 201), body)
        return body

    def ids(self, query, headers=None):
        """The ids a search matches, following every next link."""
        out = []
        path = "/fhir/" + query
        pages = 0
        while path:
            st, _, b = self.jreq("GET", path, headers=headers)
            self.assertEqual(st, 200, (query, b))
            self.assertEqual((b["resourceType"], b["type"]), ("Bundle", "searchset"))
            out += [e["resource"]["id"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]
            nxt = [l["url"] for l in b["link"] if l["relation"] == "next"]
            path = urllib.parse.urlsplit(nxt[0]) if nxt else None
            if path:
                path = path.path + "?" + path.query
            pages += 1
            self.assertLess(pages, 200)
        return out

    def q(self, query):
        return sorted(self.ids(query))

    def bad(self, query, name, headers=None):
        st, _, oo = self.jreq("GET", "/fhir/" + query, headers=headers)
        self.assertEqual(st, 400, (query, oo))
        self.assertEqual(oo["resourceType"], "OperationOutcome")
        self.assertIn(name, oo["issue"][0]["diagnostics"])

    def load(self):
        self.start()
        pats = [
            {"id": "p1", "name": [{"family": "Müller", "given": ["Anna"]}], "gender": "female",
             "birthDate": "1980-03-15", "identifier": [{"system": "urn:mrn", "value": "A1"}],
             "active": True, "generalPractitioner": [{"reference": "Practitioner/dr1"}]},
            {"id": "p2", "name": [{"family": "Muller", "given": ["Bob"]}], "gender": "male",
             "birthDate": "1980", "identifier": [{"system": "urn:other", "value": "A1"}],
             "active": False},
            {"id": "p3", "name": [{"family": "Smith", "given": ["Carol"]}], "gender": "female",
             "birthDate": "1975-12-31", "identifier": [{"value": "NOSYS"}],
             "generalPractitioner": [{"reference": "Practitioner/dr2"}]},
            {"id": "p4", "name": [{"family": "O'Brien%_x", "given": ["Dan"]}], "gender": "other",
             "birthDate": "2001-07"},
        ]
        for p in pats:
            self.put(dict(p, resourceType="Patient"))
        obs = [("o1", "p1", "8302-2", 170.5, "cm", "2020-01-01T10:00:00Z"),
               ("o2", "p1", "29463-7", 70, "kg", "2020-06-01"),
               ("o3", "p2", "8302-2", 181, "cm", "2021-02-03T04:05:06.789Z"),
               ("o4", "p3", "29463-7", 55.25, "kg", "2019")]
        for oid, pid, code, val, unit, when in obs:
            self.put({"resourceType": "Observation", "id": oid, "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                      "subject": {"reference": "Patient/" + pid}, "effectiveDateTime": when,
                      "valueQuantity": {"value": val, "unit": unit, "system": "http://unitsofmeasure.org",
                                        "code": unit}})
        self.put({"resourceType": "Encounter", "id": "e1", "status": "finished",
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                  "subject": {"reference": "Patient/p1"},
                  "period": {"start": "2020-01-01T09:00:00Z", "end": "2020-01-03T09:00:00Z"}})
        self.put({"resourceType": "Encounter", "id": "e2", "status": "in-progress",
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                  "subject": {"reference": "Patient/p2"}, "period": {"start": "2021-05-01"}})

    def test_string_token_reference(self):
        self.load()
        # string: starts-with, case- and accent-insensitive; :exact (case and accents count); :contains
        self.assertEqual(self.q("Patient?family=mul"), ["p1", "p2"])
        self.assertEqual(self.q("Patient?family=" + urllib.parse.quote("MÜLLER")), ["p1", "p2"])
        self.assertEqual(self.q("Patient?family:exact=muller"), [])
        self.assertEqual(self.q("Patient?family:exact=Muller"), ["p2"])
        self.assertEqual(self.q("Patient?family:exact=mul"), [])
        self.assertEqual(self.q("Patient?name:contains=ll"), ["p1", "p2"])
        self.assertEqual(self.q("Patient?name:contains=aro"), ["p3"])
        self.assertEqual(self.q("Patient?name=carol"), ["p3"])
        # SQL and LIKE metacharacters are values, not syntax
        self.assertEqual(self.q("Patient?family=" + urllib.parse.quote("o'brien%_")), ["p4"])
        self.assertEqual(self.q("Patient?family=" + urllib.parse.quote("%")), [])
        self.assertEqual(self.q("Patient?family=" + urllib.parse.quote("_")), [])
        self.assertEqual(self.q("Patient?name=" + urllib.parse.quote("x'); DROP TABLE resources;--")), [])
        self.assertEqual(len(self.q("Patient")), 4)
        # token: code, system|code, |code, system|, :not, :missing, booleans
        self.assertEqual(self.q("Patient?identifier=A1"), ["p1", "p2"])
        self.assertEqual(self.q("Patient?identifier=urn:mrn|A1"), ["p1"])
        self.assertEqual(self.q("Patient?identifier=|NOSYS"), ["p3"])
        self.assertEqual(self.q("Patient?identifier=|A1"), [])
        self.assertEqual(self.q("Patient?identifier=urn:other|"), ["p2"])
        self.assertEqual(self.q("Patient?gender:not=female"), ["p2", "p4"])
        self.assertEqual(self.q("Patient?identifier:missing=true"), ["p4"])
        self.assertEqual(self.q("Patient?identifier:missing=false"), ["p1", "p2", "p3"])
        self.assertEqual(self.q("Patient?active=true"), ["p1"])
        self.assertEqual(self.q("Observation?code=http://loinc.org|8302-2"), ["o1", "o3"])
        # OR and AND
        self.assertEqual(self.q("Patient?gender=male,other"), ["p2", "p4"])
        self.assertEqual(self.q("Patient?family=mul&gender=female"), ["p1"])
        self.assertEqual(self.q("Patient?gender=female&gender=male"), [])
        # reference: Type/id, id, absolute URL, :missing
        self.assertEqual(self.q("Observation?subject=Patient/p1"), ["o1", "o2"])
        self.assertEqual(self.q("Observation?patient=p1"), ["o1", "o2"])
        self.assertEqual(self.q("Observation?subject=http://x.example/fhir/Patient/p2"), ["o3"])
        self.assertEqual(self.q("Observation?subject=Patient/p1,Patient/p3"), ["o1", "o2", "o4"])
        self.assertEqual(self.q("Patient?general-practitioner:missing=true"), ["p2", "p4"])
        self.assertEqual(self.q("Patient?general-practitioner=Practitioner/dr2"), ["p3"])
        # _id
        self.assertEqual(self.q("Patient?_id=p1,p3"), ["p1", "p3"])

    def test_date_number_quantity(self):
        self.load()
        # birthdates: p1 1980-03-15, p2 1980 (the year), p3 1975-12-31, p4 2001-07
        self.assertEqual(self.q("Patient?birthdate=1980"), ["p1", "p2"])
        self.assertEqual(self.q("Patient?birthdate=1980-03"), ["p1"])
        self.assertEqual(self.q("Patient?birthdate=eq1980-03-15"), ["p1"])
        self.assertEqual(self.q("Patient?birthdate=ne1980"), ["p3", "p4"])
        self.assertEqual(self.q("Patient?birthdate=gt1980-06"), ["p2", "p4"])
        self.assertEqual(self.q("Patient?birthdate=lt1980-01-01"), ["p3"])
        self.assertEqual(self.q("Patient?birthdate=ge2001-07-31"), ["p4"])
        self.assertEqual(self.q("Patient?birthdate=le1975-12-31"), ["p3"])
        self.assertEqual(self.q("Patient?birthdate=sa1980"), ["p4"])
        self.assertEqual(self.q("Patient?birthdate=eb1980"), ["p3"])
        self.assertEqual(self.q("Patient?birthdate=ap2001-07-15"), ["p4"])
        self.assertEqual(self.q("Patient?birthdate=ge1976&birthdate=lt2000"), ["p1", "p2"])
        self.assertEqual(self.q("Patient?birthdate=1975,2001"), ["p3", "p4"])
        self.assertEqual(self.q("Observation?date=2021-02-03T04:05:06Z"), ["o3"])
        # a Period: e1 2020-01-01..03, e2 open from 2021-05-01
        self.assertEqual(self.q("Encounter?date=2020-01-02"), [])
        self.assertEqual(self.q("Encounter?date=ap2020-01-02"), ["e1"])
        self.assertEqual(self.q("Encounter?date=ge2030"), ["e2"])
        self.assertEqual(self.q("Encounter?date=lt2020-01-02"), ["e1"])
        # quantity: prefixes, precision, value|system|code
        self.assertEqual(self.q("Observation?value-quantity=170.5"), ["o1"])
        self.assertEqual(self.q("Observation?value-quantity=170"), [])
        self.assertEqual(self.q("Observation?value-quantity=gt100"), ["o1", "o3"])
        self.assertEqual(self.q("Observation?value-quantity=le70"), ["o2", "o4"])
        self.assertEqual(self.q("Observation?value-quantity=ap55"), ["o4"])
        self.assertEqual(self.q("Observation?value-quantity=ne70"), ["o1", "o3", "o4"])
        self.assertEqual(self.q("Observation?value-quantity=70|http://unitsofmeasure.org|kg"), ["o2"])
        self.assertEqual(self.q("Observation?value-quantity=70||cm"), [])
        # _lastUpdated: everything was written just now
        self.assertEqual(len(self.q("Patient?_lastUpdated=gt2020-01-01")), 4)
        self.assertEqual(self.q("Patient?_lastUpdated=lt2020-01-01"), [])

    def test_errors_unknown_and_results(self):
        self.load()
        for query, name in [("Patient?birthdate=19x0", "birthdate"), ("Observation?value-quantity=abc", "value-quantity"),
                            ("Patient?_id=bad%20id", "_id"), ("Patient?gender:missing=maybe", "gender"),
                            ("Patient?_count=-1", "_count"), ("Patient?_sort=nosuch", "nosuch"),
                            ("Patient?family:not=x", "family"), ("Observation?subject=Nope/x", "subject")]:
            self.bad(query, name)
        # unknown parameters: ignored and reported, or 400 when strict
        st, _, b = self.jreq("GET", "/fhir/Patient?nosuch=1&gender=male")
        self.assertEqual(st, 200, b)
        self.assertEqual([e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "match"], ["p2"])
        oo = [e for e in b["entry"] if e["search"]["mode"] == "outcome"]
        self.assertEqual(len(oo), 1)
        self.assertIn("nosuch", oo[0]["resource"]["issue"][0]["diagnostics"])
        self.bad("Patient?nosuch=1", "nosuch", headers={"Prefer": "handling=strict"})
        # _total and _summary=count
        st, _, b = self.jreq("GET", "/fhir/Patient?gender=female&_count=1")
        self.assertEqual((b["total"], len(b["entry"])), (2, 1))
        st, _, b = self.jreq("GET", "/fhir/Patient?_total=none")
        self.assertNotIn("total", b)
        st, _, b = self.jreq("GET", "/fhir/Observation?_summary=count")
        self.assertEqual((st, b["total"]), (200, 4))
        self.assertNotIn("entry", b)
        # POST _search with a form body
        st, _, b = self.jreq("POST", "/fhir/Patient/_search", "family=smith",
                             ctype="application/x-www-form-urlencoded")
        self.assertEqual((st, [e["resource"]["id"] for e in b["entry"]]), (200, ["p3"]), b)
        # updates and deletes replace the index rows
        st, _, p = self.jreq("GET", "/fhir/Patient/p3")
        p["name"][0]["family"] = "Jones"
        self.put(p)
        self.assertEqual(self.q("Patient?family=smith"), [])
        self.assertEqual(self.q("Patient?family=jones"), ["p3"])
        st, _, _ = self.jreq("DELETE", "/fhir/Patient/p3")
        self.assertEqual(self.q("Patient?family=jones"), [])
        self.assertEqual(self.q("Patient?gender=female"), ["p1"])
        # conditional update by any criteria
        st, _, b = self.jreq("PUT", "/fhir/Patient?birthdate=2001-07", {"resourceType": "Patient", "gender": "male"})
        self.assertEqual((st, b["id"]), (200, "p4"), b)

    def test_paging_and_sort(self):
        self.start()
        for i in range(23):
            self.put({"resourceType": "Patient", "id": "pg%02d" % i, "gender": "female" if i % 2 else "male",
                      "birthDate": "19%02d-01-01" % (50 + i)})
        for sort in ("", "&_sort=_lastUpdated", "&_sort=-_lastUpdated", "&_sort=_id", "&_sort=-_id"):
            got = self.ids("Patient?_count=4" + sort)
            self.assertEqual(len(got), 23, sort)
            self.assertEqual(len(set(got)), 23, sort)
            if sort.endswith("_id"):
                self.assertEqual(got, sorted(got, reverse=sort.startswith("&_sort=-")))
        # a date parameter: by the earliest value, descending by the latest; none last
        self.put({"resourceType": "Patient", "id": "pgnodate", "gender": "male"})
        for sort in ("birthdate", "-birthdate"):
            got = self.ids("Patient?_count=4&_sort=" + sort)
            self.assertEqual(len(got), 24, sort)
            self.assertEqual(got[-1], "pgnodate", sort)
            want = ["pg%02d" % i for i in range(23)]
            self.assertEqual(got[:-1], want if sort == "birthdate" else want[::-1], sort)
        self.jreq("DELETE", "/fhir/Patient/pgnodate")
        got = self.ids("Patient?gender=female&_count=3")
        self.assertEqual(sorted(got), ["pg%02d" % i for i in range(1, 23, 2)])
        # the cursor survives writes in between: no duplicates, no gaps
        st, _, b = self.jreq("GET", "/fhir/Patient?_count=5&_sort=_id")
        first = [e["resource"]["id"] for e in b["entry"]]
        self.put({"resourceType": "Patient", "id": "pg00", "gender": "male"})
        nxt = [l["url"] for l in b["link"] if l["relation"] == "next"][0]
        u = urllib.parse.urlsplit(nxt)
        st, _, b2 = self.jreq("GET", u.path + "?" + u.query)
        second = [e["resource"]["id"] for e in b2["entry"]]
        self.assertEqual(first + second, ["pg%02d" % i for i in range(10)])

    def test_counts_and_row_id_pages_follow_writes(self):
        """_summary=count and _total come from the index alone (fhir/search_run.c): they must
        follow updates and deletes, count a resource with two matching codings once, and
        agree with the matches the pages list. Pages in row-id order are read either by a
        row-id scan (a frequent match, small _count) or read-and-sort: both list every
        current match once, across a write between pages."""
        self.start()
        loinc = "http://loinc.org"

        def obs(i, code, extra=None):
            r = {"resourceType": "Observation", "id": "cn%02d" % i, "status": "final",
                 "code": {"coding": [{"system": loinc, "code": code}]},
                 "subject": {"reference": "Patient/cp%d" % (i % 3)},
                 "effectiveDateTime": "2020-%02d-15" % (1 + i % 12)}
            r.update(extra or {})
            self.put(r)

        for i in range(30):
            obs(i, "cnt-a" if i % 3 else "cnt-b")
        # a resource matching twice (two codings with the same code) counts once
        obs(30, "cnt-a", {"code": {"coding": [{"system": loinc, "code": "cnt-a"},
                                              {"system": "urn:other", "code": "cnt-a"}]}})

        def count(query):
            st, _, b = self.jreq("GET", "/fhir/Observation?" + query + "&_summary=count")
            self.assertEqual(st, 200, b)
            return b["total"]

        def total(query):
            st, _, b = self.jreq("GET", "/fhir/Observation?" + query)
            self.assertEqual(st, 200, b)
            return b.get("total")

        want_a = ["cn%02d" % i for i in range(31) if i % 3 or i == 30]
        for q in ("code=cnt-a", "code=%s|cnt-a" % loinc, "code=cnt-a&_count=2", "code=cnt-a&_count=50"):
            self.assertEqual(sorted(self.ids("Observation?" + q)), want_a, q)
        self.assertEqual(count("code=cnt-a"), len(want_a))
        self.assertEqual(count("code=urn:other|cnt-a"), 1)
        self.assertEqual(total("code=cnt-a&_count=2"), len(want_a))
        self.assertEqual(count("code=cnt-a,cnt-b"), 31)
        self.assertEqual(count("code=cnt-a&date=ge2020-06-01&date=lt2020-09-01"),
                         len([i for i in range(31) if (i % 3 or i == 30) and 6 <= 1 + i % 12 <= 8]))
        self.assertEqual(count("code=cnt-a&subject=Patient/cp1"), len([i for i in range(31) if i % 3 == 1]))
        # an update that changes the code moves the resource from one count to the other;
        # a second version of an unchanged resource is still counted and listed once
        obs(1, "cnt-b")
        obs(2, "cnt-a")
        self.assertEqual(count("code=cnt-a"), len(want_a) - 1)
        self.assertEqual(count("code=cnt-b"), 11)
        got = self.ids("Observation?code=cnt-a&_count=2")
        self.assertEqual(sorted(got), sorted(set(want_a) - {"cn01"}))
        # a delete drops it from the count, the total and the pages
        st, _, _ = self.jreq("DELETE", "/fhir/Observation/cn04")
        self.assertIn(st, (200, 204))
        self.assertEqual(count("code=cnt-a"), len(want_a) - 2)
        self.assertEqual(total("code=cnt-a&_count=3"), len(want_a) - 2)
        self.assertNotIn("cn04", self.ids("Observation?code=cnt-a&_count=2"))
        # :not, _id and _has are not counted from the index: still exact
        self.assertEqual(count("code:not=cnt-a&subject=Patient/cp0"),
                         len([i for i in range(31) if i % 3 == 0 and i != 30]))
        # a write between pages: every resource listed once, in row-id order
        st, _, b = self.jreq("GET", "/fhir/Observation?code=cnt-a&_count=3")
        first = [e["resource"]["id"] for e in b["entry"]]
        self.assertEqual(b["total"], len(want_a) - 2)
        obs(40, "cnt-a")
        nxt = [l["url"] for l in b["link"] if l["relation"] == "next"][0]
        u = urllib.parse.urlsplit(nxt)
        rest = self.ids("Observation?" + u.query)
        got = first + rest
        self.assertEqual(len(got), len(set(got)))
        self.assertEqual(sorted(got), sorted((set(want_a) - {"cn01", "cn04"}) | {"cn40"}))

    def test_type_pages_without_criteria_list_each_current_resource_once(self):
        """`Type?_count=N` (a full EHR sync's pages) is read from the cursor in row-id order
        without the general statement (fhir/search_run.c, type_page): its pages must list what
        the same search through the general statement lists (a criterion every resource
        matches), in the same order, each current live version once, across updates, a
        delete, and a delete then re-create; its total and _summary=count must agree; and
        the Bundle must carry the entries' stored JSON, fullUrl and search mode as before."""
        self.start()
        for i in range(9):
            self.put({"resourceType": "Patient", "id": "tp%d" % i, "gender": "male"})
        self.put({"resourceType": "Organization", "id": "tp-other", "name": "Other"})  # another type, never listed
        self.put({"resourceType": "Patient", "id": "tp1", "gender": "female"})  # a second version
        self.put({"resourceType": "Patient", "id": "tp2", "gender": "female"})
        for i in (3, 5):
            st, _, _ = self.jreq("DELETE", "/fhir/Patient/tp%d" % i)
            self.assertIn(st, (200, 204))
        self.put({"resourceType": "Patient", "id": "tp5", "gender": "other"})  # re-created
        want = ["tp0", "tp4", "tp6", "tp7", "tp8", "tp1", "tp2", "tp5"]  # row-id order of current versions
        for count in (1, 3, 8, 50):
            self.assertEqual(self.ids("Patient?_count=%d" % count), want, count)
            self.assertEqual(self.ids("Patient?_count=%d&_lastUpdated=gt1900-01-01" % count), want, count)
        st, _, b = self.jreq("GET", "/fhir/Patient?_count=3")
        self.assertEqual((st, b.get("total"), b["type"]), (200, len(want), "searchset"), b)
        self.assertEqual([e["search"]["mode"] for e in b["entry"]], ["match"] * 3)
        self.assertTrue(b["entry"][0]["fullUrl"].endswith("/fhir/Patient/tp0"), b["entry"][0])
        self.assertEqual(b["entry"][0]["resource"]["gender"], "male")
        nxt = [l["url"] for l in b["link"] if l["relation"] == "next"][0]
        u = urllib.parse.urlsplit(nxt)
        st, _, b2 = self.jreq("GET", u.path + "?" + u.query)
        self.assertEqual((st, b2.get("total")), (200, len(want)), b2)
        self.assertEqual([e["resource"]["id"] for e in b2["entry"]], want[3:6])
        st, _, b = self.jreq("GET", "/fhir/Patient?_summary=count")
        self.assertEqual((st, b.get("total"), b.get("entry")), (200, len(want), None), b)
        st, _, b = self.jreq("GET", "/fhir/Patient?_count=50&_total=none")
        self.assertEqual((st, "total" in b, len(b["entry"])), (200, False, len(want)), b)
        # an unknown parameter is reported in an outcome entry after the matches
        st, _, b = self.jreq("GET", "/fhir/Patient?_count=50&tp-unknown=1")
        self.assertEqual(st, 200, b)
        self.assertEqual([e["search"]["mode"] for e in b["entry"]], ["match"] * len(want) + ["outcome"])
        st, _, b = self.jreq("GET", "/fhir/Goal?_count=5")  # a type with nothing stored
        self.assertEqual((st, b.get("total"), b.get("entry")), (200, 0, []), b)

    def test_synthea_results_match_fhirpath(self):
        files = sorted(glob.glob(os.path.join(REFERENCE, "fhir", "synthea", "*.json")))[:3]
        self.assertEqual(len(files), 3, "the Synthea reference bundles are missing")
        eng = self.start()
        eng.stop()
        code, _, err = run_cli(*(["import", "--data", eng.data] + (["--db", self.DB] if self.DB else []) + files),
                               timeout=300)
        self.assertEqual(code, 0, err)
        eng.start()
        resources = {}
        for t in ("Patient", "Observation", "Encounter", "Condition"):
            path = "/fhir/%s?_count=1000" % t
            st, _, b = self.jreq("GET", path)
            self.assertEqual(st, 200)
            resources[t] = [e["resource"] for e in b.get("entry", [])]
            self.assertEqual(b["total"], len(resources[t]))
        self.assertGreater(len(resources["Observation"]), 50)
        obs = resources["Observation"][0]
        coding = obs["code"]["coding"][0]
        pat = resources["Patient"][0]
        fam = pat["name"][0]["family"][:3]
        cases = [
            ("Observation?code=%s|%s" % (coding["system"], coding["code"]), "Observation",
             "where(code.coding.where(system='%s' and code='%s').exists()).id" % (coding["system"], coding["code"])),
            ("Observation?subject=Patient/" + pat["id"], "Observation",
             "where(subject.reference = 'Patient/%s').id" % pat["id"]),
            ("Patient?family=" + urllib.parse.quote(fam), "Patient",
             "where(name.family.where(lower().startsWith('%s')).exists()).id" % fam.lower()),
            ("Observation?date=ge2015-01-01", "Observation",
             "where(effective.ofType(dateTime) >= @2015-01-01).id"),
            ("Encounter?status=finished", "Encounter", "where(status = 'finished').id"),
            ("Condition?clinical-status=active", "Condition",
             "where(clinicalStatus.coding.code = 'active').id"),
        ]
        with tempfile.TemporaryDirectory() as td:
            for query, t, expr in cases:
                path = os.path.join(td, t + ".json")
                with open(path, "w", encoding="utf-8") as fh:
                    json.dump({"resourceType": "Bundle", "type": "collection",
                               "entry": [{"resource": r} for r in resources[t]]}, fh)
                code, out, err = run_cli("fhirpath", "Bundle.entry.resource." + expr, path)
                self.assertEqual(code, 0, err)
                want = sorted(json.loads(out))
                self.assertEqual(self.q(query), want, query)
                self.assertGreater(len(want), 0, query)


if store_tests.PG_URL:
    class FhirSearchTestsPg(FhirSearchTests):
        DB = None

        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search")


if __name__ == "__main__":
    main()
