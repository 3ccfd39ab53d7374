#!/usr/bin/env python3
"""test_fhir_search_combo.py — a code criterion together with a date or a value-quantity
criterion of Observation (FHIR R4 search.html#combining), answered from the combined index
rows (sp_tokdate, sp_tokqty: fhir/search_combo.c).

Observations with one or two codings (with and without a system), dates at every precision
and Periods (short, long, open), quantities in mg/dL and mmol/L or none are searched with
random code + date and code + value-quantity criteria (prefixes, OR, several date criteria,
system|code, |code, system|, UCUM units); each result set, followed page by page through
the keyset cursor, and each total must equal an independent evaluation in Python over the
resources written — before and after updates that move codes, dates and values and after
deletions — and, on SQLite, the answers of an engine with the rule turned off
(fhir.search_combined false). A single token criterion alone (code, status), paged from the
token index in row-id order (sp_tok_sr), is checked the same way (against an engine with
fhir.search_token_rid false), and so is a single string criterion alone (name, family, given,
address; starts-with and :exact), paged from the string index's row ids (sp_str_rc; against
an engine with fhir.search_string_rid false). Runs on PostgreSQL too when HV_TEST_PG_URL is set.
"""

import os
import random
import sqlite3
import subprocess

from harness import main
import test_fhir_store as store_tests
from test_fhir_search2 import SearchCase
from test_fhir_search3 import OPEN_HI, date_range, prefix_holds

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CODES = ["2339-0", "8867-4", "2093-3"]
# mmol/L of glucose is not convertible to mg/dL by UCUM alone (a molar mass): separate units


def make_obs(rnd, i):
    """One Observation and its (codings, date range or None, (value, unit) or None)."""
    code = rnd.choice(CODES)
    codings = [(LOINC, code)]
    r = rnd.random()
    if r < 0.2:
        codings.append(("urn:local", code))        # the same code in a second system
    elif r < 0.35:
        codings.append(("urn:local", "L%d" % rnd.randint(1, 3)))
    elif r < 0.45:
        codings = [(None, code)]                    # no system
    o = {"resourceType": "Observation", "id": "c%d" % i, "status": "final",
         "code": {"coding": [dict(([("system", s)] if s else []) + [("code", c)]) for s, c in codings]}}
    y, m, d = rnd.randint(2018, 2022), rnd.randint(1, 12), rnd.randint(1, 28)
    kind = rnd.randint(0, 7)
    rng = None
    if kind == 0:
        s = "%04d" % y
    elif kind == 1:
        s = "%04d-%02d" % (y, m)
    elif kind in (2, 3):
        s = "%04d-%02d-%02d" % (y, m, d)
    elif kind == 4:
        s = "%04d-%02d-%02dT%02d:%02d:00Z" % (y, m, d, rnd.randint(0, 23), rnd.randint(0, 59))
    if kind <= 4:
        o["effectiveDateTime"] = s
        rng = date_range(s)
    elif kind in (5, 6):
        a = "%04d-%02d-%02d" % (y, m, d)
        b = "%04d-%02d-%02d" % (y + rnd.randint(0, 1), rnd.randint(1, 12), 28)
        if b < a:
            a, b = b, a
        per = {"start": a} if kind == 6 and i % 2 else {"start": a, "end": b}
        o["effectivePeriod"] = per
        rng = (date_range(a)[0], date_range(b)[1] if "end" in per else OPEN_HI)
    qty = None
    q = rnd.random()
    if q < 0.75:
        qty = (rnd.randint(50, 400), "mg/dL")
    elif q < 0.9:
        qty = (rnd.randint(3, 20), "mmol/L")
    if qty:
        o["valueQuantity"] = {"value": qty[0], "unit": qty[1], "system": UCUM, "code": qty[1]}
    return o, (codings, rng, qty)


def token_holds(codings, v):
    if "," in v:
        return any(token_holds(codings, one) for one in v.split(","))
    if "|" not in v:
        return any(c == v for _, c in codings)
    sys_, code = v.split("|", 1)
    if sys_ == "":
        return any(s is None and c == code for s, c in codings)
    if code == "":
        return any(s == sys_ for s, _ in codings)
    return any(s == sys_ and c == code for s, c in codings)


def qty_holds(qty, v):
    """value-quantity criterion v (prefix, number, optional |system|unit) on (value, unit)."""
    if qty is None:
        return False
    pr = v[:2] if v[:2] in ("gt", "lt", "ge", "le", "eq", "ne", "sa", "eb") else "eq"
    rest = v[2:] if v[:2] == pr else v
    num, _, unit = rest.partition("|")
    if unit:
        unit = unit.split("|", 1)[1]
        if unit != qty[1]:
            return False
    x, val = float(num), qty[0]
    half = 0.5 if "." not in num else 0.5 * 10 ** -len(num.split(".")[1])
    eq = x - half <= val < x + half
    return {"gt": val > x, "sa": val > x, "lt": val < x, "eb": val < x, "ge": val >= x, "le": val <= x,
            "eq": eq, "ne": not eq}[pr]


class FhirSearchComboTests(SearchCase):
    """Code + date and code + value-quantity, compared with Python (and with the rule off)."""

    OFF = True  # compare with an engine whose rule is off (SQLite)

    def all_ids(self, eng, query):
        """Every match of query, page by page (no duplicates), and the first page's total."""
        saved = self.eng
        self.eng = eng
        try:
            st, _, b = self.jreq("GET", "/fhir/" + query)
            self.assertEqual(st, 200, (query, b))
            total = b.get("total")
            m, _ = self.search(query)
        finally:
            self.eng = saved
        self.assertEqual(len(m), len(set(m)), query)
        return sorted(k.split("/", 1)[1] for k in m), total

    def check(self, engines, model, queries):
        nonempty = 0
        for kind, code, crit in queries:
            if kind == "date":
                query = "Observation?code=%s&%s&_count=4" % (code, "&".join("date=%s" % c for c in crit))
                want = sorted(k for k, (cod, rng, _) in model.items() if token_holds(cod, code) and rng is not None
                              and all(any(prefix_holds(v[:2], rng[0], rng[1], v[2:]) for v in c.split(","))
                                      for c in crit))
            else:
                query = "Observation?code=%s&value-quantity=%s&_count=4" % (code, crit)
                want = sorted(k for k, (cod, _, qty) in model.items()
                              if token_holds(cod, code) and any(qty_holds(qty, v) for v in crit.split(",")))
            for eng in engines:
                got, total = self.all_ids(eng, query)
                self.assertEqual(got, want, query)
                self.assertEqual(total, len(want), query)
            st, _, b = self.jreq("GET", "/fhir/" + query + "&_summary=count")
            self.assertEqual((st, b.get("total")), (200, len(want)), query)
            nonempty += bool(want)
        return nonempty

    def queries(self, rnd, n):
        codes = CODES + ["%s|%s" % (LOINC, c) for c in CODES] + ["|" + c for c in CODES] + ["urn:local|",
                                                                                             "2339-0,8867-4"]
        dates = ["2019", "2020-03", "2020-03-15", "2021-07-01T10:00:00Z", "2018-12", "2022"]
        out = []
        for _ in range(n):
            code = rnd.choice(codes)
            if rnd.random() < 0.6:
                crit = ["%s%s" % (rnd.choice(["ge", "gt", "le", "lt", "eq", "sa", "eb", "ne"]), rnd.choice(dates))
                        for _ in range(rnd.choice((1, 2, 2, 3)))]
                if rnd.random() < 0.15:
                    crit.append("eq2020,eq2021")
                out.append(("date", code, crit))
            else:
                pr = rnd.choice(["gt", "lt", "ge", "le", "eq", "ne", ""])
                v = "%s%d" % (pr, rnd.choice([100, 240, 5, 12, 399]))
                if rnd.random() < 0.3:
                    v += "|%s|%s" % (UCUM, rnd.choice(["mg/dL", "mmol/L"]))
                elif rnd.random() < 0.15:
                    v += ",lt60"
                out.append(("qty", code, v))
        return out

    def test_code_date_and_code_quantity_match_python(self):
        eng = self.start()
        engines = [eng]
        if self.OFF and not self.DB:
            engines.append(self.engine(config={"fhir": {"search_combined": False}}))
        rnd = random.Random(11)
        model = {}
        resources = {}
        for i in range(90):
            o, m = make_obs(rnd, i)
            resources[o["id"]] = o
            model[o["id"]] = m
        for o in resources.values():
            self.put(o)
            for other in engines[1:]:
                self.eng, saved = other, self.eng
                self.put(o)
                self.eng = saved
        self.assertGreater(self.check(engines, model, self.queries(rnd, 45)), 15)
        # updates move codes, dates and values; deletions drop them
        for k in rnd.sample(sorted(model), 20):
            o, m = make_obs(rnd, int(k[1:]))
            model[k] = m
            for e in engines:
                self.eng, saved = e, self.eng
                self.put(o)
                self.eng = saved
        for k in rnd.sample(sorted(model), 8):
            del model[k]
            for e in engines:
                st, _, _ = e.request("DELETE", "/fhir/Observation/" + k)
                self.assertIn(st, (200, 204))
        self.assertGreater(self.check(engines, model, self.queries(rnd, 30)), 10)
        # the classic forms of the benchmark
        self.check(engines, model, [("date", "8867-4", ["ge2020-01-01", "lt2020-03-01"]),
                                    ("qty", "2339-0", "gt240")])

    def test_other_criteria_and_sort_still_apply(self):
        """A third criterion, _sort and _total=none around the combined criterion."""
        self.start()
        rnd = random.Random(3)
        model = {}
        for i in range(40):
            o, m = make_obs(rnd, i)
            o["subject"] = {"reference": "Patient/p%d" % (i % 3)}
            self.put(o)
            model[o["id"]] = (m, i % 3)
        want = sorted(k for k, ((cod, rng, _), p) in model.items()
                      if p == 1 and token_holds(cod, "2339-0") and rng is not None
                      and prefix_holds("ge", rng[0], rng[1], "2019"))
        self.assertEqual(self.q("Observation?subject=Patient/p1&code=2339-0&date=ge2019&_count=3"), want)
        # a _has after the folded pair: renumbered with its markers, it is still a _has (paged
        # until its matches) and still checked per candidate, in either order of the criteria
        reported = sorted(model)[::3]
        self.put({"resourceType": "DiagnosticReport", "id": "dr1", "status": "final",
                  "code": {"coding": [{"system": LOINC, "code": "24323-8"}]},
                  "result": [{"reference": "Observation/" + k} for k in reported]})
        want = sorted(k for k, ((cod, rng, _), _) in model.items()
                      if k in reported and token_holds(cod, "2339-0") and rng is not None
                      and prefix_holds("ge", rng[0], rng[1], "2019"))
        self.assertGreater(len(want), 2)  # more than one page of 2
        for q in ("Observation?code=2339-0&date=ge2019&_has:DiagnosticReport:result:status=final&_count=2",
                  "Observation?_has:DiagnosticReport:result:status=final&code=2339-0&date=ge2019&_count=2",
                  "Observation?code=2339-0&_has:DiagnosticReport:result:status=final&date=ge2019&_count=2"):
            self.assertEqual(self.q(q), want, q)
        self.assertEqual(self.q("Observation?code=2339-0&date=ge2019&_has:DiagnosticReport:result:status=amended"), [])
        want = [k for k, ((cod, _, qty), _) in model.items() if token_holds(cod, "8867-4") and qty_holds(qty, "gt100")]
        got = self.search("Observation?code=8867-4&value-quantity=gt100&_sort=-_id&_count=3&_total=none")[0]
        self.assertEqual(got, ["Observation/" + k for k in sorted(want, reverse=True)])
        # a date value criterion with :missing is not folded, and still answers
        want = sorted(k for k, ((cod, rng, _), _) in model.items() if token_holds(cod, "8867-4") and rng is None)
        self.assertEqual(self.q("Observation?code=8867-4&date:missing=true&_count=50"), want)

    def test_single_token_pages_match_python(self):
        """One token criterion alone (code, system|code, |code, status), paged from the token
        index in row-id order (sp_tok_sr), through updates that move codes and statuses and
        deletions; on SQLite also against an engine reading the page the generic way."""
        eng = self.start()
        engines = [eng]
        if self.OFF and not self.DB:
            engines.append(self.engine(config={"fhir": {"search_token_rid": False}}))
        rnd = random.Random(23)
        model = {}

        def one(i):
            o, (codings, _, _) = make_obs(rnd, i)
            o["status"] = rnd.choice(["final", "final", "amended", "preliminary"])
            model[o["id"]] = (codings, o["status"])
            self.write_all(engines, o)

        def check():
            crits = ["code=%s" % c for c in CODES] + ["code=%s|%s" % (LOINC, c) for c in CODES] + \
                ["code=|%s" % c for c in CODES] + ["code=urn:local|%s" % c for c in CODES] + \
                ["status=final", "status=amended", "status=cancelled"]
            nonempty = 0
            for crit in crits:
                name, v = crit.split("=", 1)
                want = sorted(k for k, (cod, status) in model.items()
                              if (token_holds(cod, v) if name == "code" else status == v))
                for count in (3, 50):
                    query = "Observation?%s&_count=%d" % (crit, count)
                    for e in engines:
                        got, total = self.all_ids(e, query)
                        self.assertEqual(got, want, query)
                        self.assertEqual(total, len(want), query)
                st, _, b = self.jreq("GET", "/fhir/Observation?%s&_summary=count" % crit)
                self.assertEqual((st, b.get("total")), (200, len(want)), crit)
                nonempty += bool(want)
            return nonempty

        # updates move codes and statuses (a later row id), deletions drop them, new ones follow
        self.churn(engines, "Observation", model, rnd, one, check, (70, 25, 10, 15), 12)

    def test_single_string_pages_match_python(self):
        """One string criterion alone (name, family, given, address; starts-with and :exact),
        paged from the string index's row ids (sp_str_rc) by 3 and by 50, through updates
        that change names and deletions; on SQLite also against an engine reading the page
        the generic way."""
        eng = self.start()
        engines = [eng]
        if self.OFF and not self.DB:
            engines.append(self.engine(config={"fhir": {"search_string_rid": False}}))
        rnd = random.Random(29)
        fams = ["Smith", "Smithers", "Smyth", "Jones", "Jonas", "Schmidt"]
        givens = ["Ann", "Anna", "Bob", "Sam", "Samuel"]
        places = ["Main St", "Mainz", "Market Rd", "Smith Lane"]
        model = {}

        def one(i):
            names = [dict([("family", rnd.choice(fams))] + ([("given", rnd.sample(givens, 2))]
                                                             if rnd.random() < 0.6 else []))
                     for _ in range(rnd.randint(1, 2))]
            o = {"resourceType": "Patient", "id": "s%d" % i, "name": names}
            addr = []
            if rnd.random() < 0.5:
                addr = [rnd.choice(places)]
                line = ["%d %s" % (rnd.randint(1, 9), addr[0])] if rnd.random() < 0.5 else []
                o["address"] = [dict([("city", addr[0])] + ([("line", line)] if line else []))]
                addr = [v.lower() for v in line + [addr[0]]]
            fam = [n["family"].lower() for n in names]
            giv = [g.lower() for n in names for g in n.get("given", [])]
            model[o["id"]] = {"family": fam, "given": giv, "name": fam + giv, "address": addr}
            self.write_all(engines, o)

        def check():
            crits = [("name", "smith"), ("name", "sm"), ("name", "an"), ("family", "jon"), ("family", "smyth"),
                     ("given", "sam"), ("address", "main"), ("address", "smith"), ("name:exact", "Smith"),
                     ("family:exact", "Jonas"), ("name", "zzz")]
            nonempty = 0
            for name, v in crits:
                code = name.split(":")[0]
                if name.endswith(":exact"):
                    want = sorted(k for k, m in model.items() if v.lower() in m[code])
                else:
                    want = sorted(k for k, m in model.items() if any(x.startswith(v) for x in m[code]))
                for count in (3, 50):
                    query = "Patient?%s=%s&_count=%d" % (name, v, count)
                    for e in engines:
                        got, total = self.all_ids(e, query)
                        self.assertEqual(got, want, query)
                        self.assertEqual(total, len(want), query)
                nonempty += bool(want)
            return nonempty

        self.churn(engines, "Patient", model, rnd, one, check, (60, 20, 8, 10), 8)

    def write_all(self, engines, o):
        """Writes o to every engine."""
        for e in engines:
            self.eng, saved = e, self.eng
            self.put(o)
            self.eng = saved

    def churn(self, engines, rtype, model, rnd, one, check, sizes, least):
        """Writes sizes[0] resources (one(i)), checks, updates sizes[1] of them, deletes
        sizes[2], writes sizes[3] more, checks again; each check must find more than least
        criteria with matches."""
        first, updates, deletes, more = sizes
        for i in range(first):
            one(i)
        self.assertGreater(check(), least)
        for k in rnd.sample(sorted(model), updates):
            one(int(k[1:]))
        for k in rnd.sample(sorted(model), deletes):
            del model[k]
            for e in engines:
                st, _, _ = e.request("DELETE", "/fhir/%s/%s" % (rtype, k))
                self.assertIn(st, (200, 204))
        for i in range(first, first + more):
            one(i)
        self.assertGreater(check(), least)

    def q(self, query):
        return sorted(k.split("/", 1)[1] for k in self.search(query)[0])

    # The token value indexes before the eleventh migration of the index (fhir/search_combo.c).
    OLD_SR = "CREATE INDEX sp_tok_sr ON sp_tok (type, code, value, system, rid)"
    OLD_VC = "CREATE INDEX sp_tok_vc ON sp_tok (type, code, value, id, system)"

    # PostgreSQL's sp_tok_idc before its migration to (type, id, code, value), the one after
    # the eleventh (fhir/search_combo.c, hv__search_migration_idcv_pg).
    OLD_IDC = "CREATE INDEX sp_tok_idc ON sp_tok (type, id, code)"

    def old_schema(self, eng, deferred):
        """Turns eng's stopped store into what main before the eleventh migration left: two
        token value indexes, the one named deferred dropped and kept in import_deferred as
        an import killed before its end leaves it (SQLite; PostgreSQL defers nothing), and
        on PostgreSQL sp_tok_idc without the value."""
        sqls = ["DROP INDEX sp_tok_sr", self.OLD_SR, self.OLD_VC]
        if self.DB:
            sqls += ["DROP INDEX sp_tok_idc", self.OLD_IDC,
                     # the eleventh, the value in sp_tok_idc, and import_deferred on PostgreSQL
                     "UPDATE hv_schema SET version = version - 3 WHERE module = 'fhir'"]
            subprocess.run(["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", self.DB, "-c",
                            "SET search_path TO fhir; " + "; ".join(sqls)],
                           check=True, capture_output=True, timeout=60)
            return
        sqls.append("UPDATE hv_schema SET version = version - 1 WHERE module = 'fhir'")
        db = sqlite3.connect(os.path.join(eng.data, "fhir.db"), timeout=10)
        for sql in sqls:
            db.execute(sql)
        db.execute("DROP INDEX %s" % deferred)
        db.execute("INSERT INTO import_deferred (name, sql) VALUES (?, ?)",
                   (deferred, self.OLD_SR if deferred == "sp_tok_sr" else self.OLD_VC))
        db.commit()
        db.close()

    def token_indexes(self, eng):
        """{name: definition} of sp_tok's indexes, and import_deferred's names (SQLite)."""
        if self.DB:
            out = subprocess.run(["psql", "-q", "-X", "-A", "-t", self.DB, "-c",
                                  "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'fhir'"
                                  " AND tablename = 'sp_tok'"],
                                 check=True, capture_output=True, text=True, timeout=60).stdout
            return dict(l.split("|", 1) for l in out.splitlines() if l), []
        db = sqlite3.connect(os.path.join(eng.data, "fhir.db"), timeout=10)
        try:
            idx = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                                  " AND tbl_name = 'sp_tok' AND sql IS NOT NULL").fetchall())
            deferred = [r[0] for r in db.execute("SELECT name FROM import_deferred")]
        finally:
            db.close()
        return idx, deferred

    def test_a_store_with_two_token_value_indexes_migrates_to_one(self):
        """A store made before the eleventh migration (sp_tok_vc and sp_tok_sr without the id;
        on SQLite one of them deferred by a killed import) opens with sp_tok_sr (type, code,
        value, system, rid, id) alone, nothing left deferred (on PostgreSQL sp_tok_idc with the
        value), and answers token searches and their counts (one code, system|code, two codes,
        system| alone, :not, two criteria, a _has over a status, a status and a code checked per
        candidate of a subject) as before."""
        queries = ["Observation?code=8867-4", "Observation?code=%s|2093-3" % LOINC,
                   "Observation?code=8867-4,2339-0", "Observation?code=urn:local|",
                   "Observation?code:not=2093-3", "Observation?code=2339-0&status=final",
                   "Patient?_has:Observation:subject:status=amended",
                   "Observation?subject=Patient/mp&status=amended",
                   "Observation?subject=Patient/mp&code=%s|8867-4" % LOINC]
        for deferred in (["sp_tok_vc", "sp_tok_sr"] if not self.DB else ["sp_tok_vc"]):
            eng = self.start()
            rnd = random.Random(23)
            self.put({"resourceType": "Patient", "id": "mp"})
            for i in range(30):
                o, _ = make_obs(rnd, i)
                if i % 3 == 0:
                    o["subject"] = {"reference": "Patient/mp"}
                    o["status"] = "amended"
                self.put(o)
            want = {q: (self.q(q), self.jreq("GET", "/fhir/%s&_summary=count" % q)[2]["total"]) for q in queries}
            self.assertTrue(all(w[0] for w in want.values()), want)
            eng.stop()
            self.old_schema(eng, deferred)
            eng.start()
            got = {q: (self.q(q), self.jreq("GET", "/fhir/%s&_summary=count" % q)[2]["total"]) for q in queries}
            self.assertEqual(got, want)
            idx, left = self.token_indexes(eng)
            self.assertNotIn("sp_tok_vc", idx)
            self.assertRegex(idx.get("sp_tok_sr", ""), r"\(type, code, value, system, rid, id\)")
            self.assertRegex(idx.get("sp_tok_idc", ""),
                             r"\(type, id, code, value\)" if self.DB else r"\(type, id, code\)")
            self.assertEqual(left, [])
            eng.stop()


if store_tests.PG_URL:
    class FhirSearchComboTestsPg(FhirSearchComboTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search_combo")


if __name__ == "__main__":
    main()
