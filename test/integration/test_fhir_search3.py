#!/usr/bin/env python3
"""test_fhir_search3.py — FHIR search, third slice (FHIR R4 search.html, issue 6).

The special parameters `_text` and `_content` (search.html#text, #content: full text over
the narrative, and over it and the values of the string and markdown elements, typed here
by the official JSON schema; SQLite FTS5, PostgreSQL tsvector) and Location
`near` (location.html#positional), and date ranges written as several criteria on one
parameter (`date=ge…&date=lt…`, planned as one range scan). Each result set is compared
with the same query evaluated independently in Python over the resources read back from
the server: words of the stripped narrative / of the string and markdown values, the haversine
distance, the date ranges of each value at its precision. `holovitals reindex` refills
the full-text and position rows. Runs on SQLite and, when HV_TEST_PG_URL is set, on
PostgreSQL too.
"""

import datetime
import glob
import html
import json
import math
import os
import random
import re
import sqlite3
import subprocess
import unicodedata

from harness import REFERENCE, main, run_cli
import test_fhir_store as store_tests
from test_fhir_search2 import SearchCase

REFERENCE = os.environ.get("HV_REFERENCE_DIR", REFERENCE)


def fold(s):
    """Lower case, Latin-1 letters folded to their base letter (as the index does)."""
    out = []
    for ch in s:
        if "\u00c0" <= ch <= "\u00ff" and ch not in "\u00d7\u00f7":
            ch = unicodedata.normalize("NFKD", ch)[0]
            ch = {"\u00c6": "a", "\u00e6": "a", "\u00d0": "d", "\u00f0": "d", "\u00d8": "o", "\u00f8": "o",
                  "\u00de": "t", "\u00fe": "t", "\u00df": "s"}.get(ch, ch)
        out.append(ch.lower() if ch < "\u0080" else ch)
    return "".join(out)


def strip_div(div):
    return html.unescape(re.sub(r"<[^>]*>", " ", div))


_SCHEMA = {}


def schema():
    """The type definitions of FHIR R4's JSON schema (fhir.schema.json), read once."""
    if not _SCHEMA:
        with open(os.path.join(REFERENCE, "fhir", "definitions", "fhir.schema.json"), encoding="utf-8") as fh:
            _SCHEMA.update(json.load(fh)["definitions"])
    return _SCHEMA


def member_type(owner, key):
    """The schema type of member key of an object of type owner; None for an unknown member
    or one with no type of its own (the schema writes required codes as enums)."""
    p = schema().get(owner, {}).get("properties", {}).get(key)
    if p is None:
        return None
    ref = p.get("items", p).get("$ref")
    return ref.rsplit("/", 1)[1] if ref else None


def content_strings(o, t="ResourceList"):
    """_content's values of o, of schema type t: the narrative's text and the string and
    markdown values (not an element's id), contained resources typed by their resourceType."""
    if isinstance(o, list):
        for v in o:
            yield from content_strings(v, t)
        return
    if t == "ResourceList":
        t = o.get("resourceType") if isinstance(o, dict) else None
        if "resourceType" not in schema().get(t, {}).get("properties", {}):
            return
    if isinstance(o, str):
        if t in ("string", "markdown"):
            yield o
        elif t == "xhtml":
            yield strip_div(o)
    elif isinstance(o, dict) and t in schema():
        for k, v in o.items():
            if k != "id":
                yield from content_strings(v, member_type(t, k))


def words_loose(text):
    return set(re.findall(r"[a-z0-9]+", fold(text)))


def words_plain(text):
    """Words separated by blanks and ordinary punctuation only (what every tokenizer agrees on)."""
    out = set()
    for tok in fold(text).split():
        tok = tok.strip(".,;:()!?\"'[]")
        if re.fullmatch(r"[a-z]+", tok):
            out.add(tok)
    return out


def haversine_m(lat1, lon1, lat2, lon2):
    f1, f2 = math.radians(lat1), math.radians(lat2)
    df, dl = f2 - f1, math.radians(lon2 - lon1)
    a = math.sin(df / 2) ** 2 + math.cos(f1) * math.cos(f2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, math.sqrt(a)))


def date_range(s):
    """[lo, hi] in ms of a FHIR date/dateTime at its precision (UTC 'Z' values only)."""
    def ms(dt):
        return int((dt - datetime.datetime(1970, 1, 1)).total_seconds() * 1000)
    if len(s) == 4:
        y = int(s)
        return ms(datetime.datetime(y, 1, 1)), ms(datetime.datetime(y + 1, 1, 1)) - 1
    if len(s) == 7:
        y, m = int(s[:4]), int(s[5:7])
        nxt = datetime.datetime(y + (m == 12), m % 12 + 1, 1)
        return ms(datetime.datetime(y, m, 1)), ms(nxt) - 1
    if len(s) == 10:
        d = datetime.datetime(int(s[:4]), int(s[5:7]), int(s[8:10]))
        return ms(d), ms(d) + 86400000 - 1
    d = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")
    return ms(d), ms(d) + 999


OPEN_LO, OPEN_HI = -(1 << 60), 1 << 60


def prefix_holds(pr, lo, hi, q):
    qlo, qhi = date_range(q)
    return {"eq": lo >= qlo and hi <= qhi, "ne": not (lo >= qlo and hi <= qhi), "gt": hi > qhi,
            "sa": lo > qhi, "lt": lo < qlo, "eb": hi < qlo, "ge": hi >= qlo, "le": lo <= qhi}[pr]


class FhirSearch3TextTests(SearchCase):
    """_text and _content over official examples, compared with Python."""

    def load_examples(self):
        files = []
        for t in ("Patient", "Practitioner", "Location", "Organization", "Observation", "Condition"):
            files += sorted(glob.glob(os.path.join(REFERENCE, "fhir", "examples", t + "-*.json")))[:25]
        self.assertGreater(len(files), 60, "the official examples are missing")
        for f in files:
            with open(f, encoding="utf-8") as fh:
                res = json.load(fh)
            if "id" not in res:
                continue
            self.jreq("PUT", "/fhir/%s/%s" % (res["resourceType"], res["id"]), res)
        back = {}
        for t in ("Patient", "Practitioner", "Location", "Organization", "Observation", "Condition"):
            st, _, b = self.jreq("GET", "/fhir/%s?_count=1000" % t)
            self.assertEqual(st, 200)
            back[t] = {e["resource"]["id"]: e["resource"] for e in b.get("entry", [])}
        self.assertGreater(sum(len(v) for v in back.values()), 50)
        return back

    def chosen_words(self, docs, k):
        """k words that some but not all docs hold, on which loose and plain tokenization agree."""
        loose = {i: words_loose(t) for i, t in docs.items()}
        plain = {i: words_plain(t) for i, t in docs.items()}
        cands = sorted(set().union(*plain.values())) if plain else []
        good = []
        for w in cands:
            if len(w) < 4:
                continue
            have = [i for i in docs if w in plain[i]]
            if not have or len(have) == len(docs):
                continue
            if all((w in loose[i]) == (w in plain[i]) for i in docs):
                good.append(w)
        rnd = random.Random(3)
        rnd.shuffle(good)
        return good[:k], plain

    def check_param(self, param, text_of, back):
        checked = 0
        for t, res in back.items():
            docs = {rid: text_of(r) for rid, r in res.items()}
            docs = {rid: d for rid, d in docs.items() if d}
            if len(docs) < 2:
                continue
            words, plain = self.chosen_words(docs, 4)
            for w in words:
                want = sorted(rid for rid in docs if w in plain[rid])
                self.assertEqual(self.q("%s?%s=%s&_count=1000" % (t, param, w)), want, (t, param, w))
                checked += 1
            if len(words) >= 2:
                a, b = words[0], words[1]
                both = sorted(rid for rid in docs if a in plain[rid] and b in plain[rid])
                either = sorted(rid for rid in docs if a in plain[rid] or b in plain[rid])
                # words of one value: all must occur; comma: either value; repeated: AND
                self.assertEqual(self.q("%s?%s=%s%%20%s&_count=1000" % (t, param, a.upper(), b)), both)
                self.assertEqual(self.q("%s?%s=%s,%s&_count=1000" % (t, param, a, b)), either)
                self.assertEqual(self.q("%s?%s=%s&%s=%s&_count=1000" % (t, param, a, param, b)), both)
        return checked

    def test_text_and_content_match_python(self):
        self.start()
        back = self.load_examples()
        n = self.check_param("_text", lambda r: strip_div(r.get("text", {}).get("div", "")), back)
        self.assertGreater(n, 10)
        n = self.check_param("_content", lambda r: " ".join(content_strings(r)), back)
        self.assertGreater(n, 10)

    def test_text_follows_updates_accents_and_errors(self):
        self.start()
        div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Jos&#233; has <b>diab</b>etes &amp; Asthma</p></div>'
        self.put({"resourceType": "Patient", "id": "t1", "text": {"status": "generated", "div": div},
                  "name": [{"family": "Müller"}]})
        self.put({"resourceType": "Patient", "id": "t2", "name": [{"family": "Zürich-Smith"}]})
        self.assertEqual(self.q("Patient?_text=asthma"), ["t1"])
        self.assertEqual(self.q("Patient?_text=diab"), ["t1"])       # a tag separates words
        self.assertEqual(self.q("Patient?_text=muller"), [])          # not in the narrative
        self.assertEqual(self.q("Patient?_content=MULLER"), ["t1"])   # accents and case folded
        self.assertEqual(self.q("Patient?_content=m%C3%BCller"), ["t1"])
        self.assertEqual(self.q("Patient?_content=zurich"), ["t2"])
        self.assertEqual(self.q("Patient?_content=asthma"), ["t1"])   # the narrative is content too
        # the index follows the current version, and deletion
        self.put({"resourceType": "Patient", "id": "t1", "name": [{"family": "Other"}]})
        self.assertEqual(self.q("Patient?_text=asthma"), [])
        self.assertEqual(self.q("Patient?_content=other"), ["t1"])
        st, _, _ = self.jreq("DELETE", "/fhir/Patient/t2")
        self.assertIn(st, (200, 204))
        self.assertEqual(self.q("Patient?_content=zurich"), [])
        # FTS syntax in a value is only words
        self.assertEqual(self.q('Patient?_content=other%22%20OR%20%22x'), [])
        self.assertEqual(self.q('Patient?_content=other*'), ["t1"])
        self.assertEqual(self.q('?_type=Patient&_content=other'), ["t1"])
        self.bad("Patient?_text=%21%21", "_text")
        self.bad("Patient?_text:exact=x", "_text")
        self.bad("Patient?_content=" + "%20".join("w%d" % i for i in range(17)), "_content")

    def test_content_is_string_and_markdown_values(self):
        """_content as HAPI FHIR JPA indexes it: a system URL's word, a date's year, a code
        and an id are not content; a valueString (also an extension's), an Annotation's text
        (markdown), an Identifier's value, a display and a contained resource's name are."""
        self.start()
        self.put({"resourceType": "Observation", "id": "o1", "status": "final",
                  "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "Body temperature"}]},
                  "effectiveDateTime": "2020-03-04T05:06:07Z", "valueString": "Crocodile tears",
                  "note": [{"text": "Seen after *pepperoni* pizza"}],
                  "extension": [{"url": "http://example.org/fhir/ext-unicorn", "valueString": "Narwhal"}]})
        self.put({"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:oid:1.2.36.146.595",
                  "value": "MRN778899"}], "gender": "female", "birthDate": "1974-12-25",
                  "contained": [{"resourceType": "Organization", "id": "org1", "name": "Gryphon Clinic"}],
                  "managingOrganization": {"reference": "#org1"}})
        for q in ("Observation?_content=loinc", "Observation?_content=org", "Observation?_content=2020",
                  "Observation?_content=final", "Observation?_content=8310", "Observation?_content=unicorn",
                  "Patient?_content=female", "Patient?_content=1974", "Patient?_content=p1",
                  "Patient?_content=595"):
            self.assertEqual(self.q(q), [], q)
        for q, want in (("Observation?_content=crocodile", ["o1"]), ("Observation?_content=pepperoni", ["o1"]),
                        ("Observation?_content=narwhal", ["o1"]), ("Observation?_content=temperature", ["o1"]),
                        ("Patient?_content=mrn778899", ["p1"]), ("Patient?_content=gryphon", ["p1"])):
            self.assertEqual(self.q(q), want, q)


class FhirSearch3CapabilityTests(SearchCase):
    """The CapabilityStatement lists exactly the parameters the planner answers."""

    SAMPLE = {"string": "x", "token": "x", "reference": "x", "date": "2020", "number": "1", "quantity": "1",
              "uri": "http://x", "composite": "x$1", "special": "1|2|3"}

    def test_capability_is_exact(self):
        self.start()
        st, _, cap = self.jreq("GET", "/fhir/metadata")
        self.assertEqual(st, 200)
        with open(os.path.join(REFERENCE, "fhir", "definitions", "search-parameters.json"), encoding="utf-8") as fh:
            defs = [e["resource"] for e in json.load(fh)["entry"]]
        conn = self.eng.connection(30)
        checked = listed_total = 0
        try:
            for res in cap["rest"][0]["resource"]:
                t = res["type"]
                listed = {p["name"]: p["type"] for p in res.get("searchParam", [])}
                self.assertEqual(len(listed), len(res.get("searchParam", [])), t)  # no parameter twice
                cands = {}
                for d in defs:
                    if t in d["base"] or "Resource" in d["base"] or "DomainResource" in d["base"]:
                        cands.setdefault(d["code"], d["type"])
                for code, typ in sorted(cands.items()):
                    conn.request("GET", "/fhir/%s?%s=%s" % (t, code, self.SAMPLE[typ]),
                                 headers={"Prefer": "handling=strict"})
                    r = conn.getresponse()
                    body = json.loads(r.read())
                    if r.status == 400 and "unknown search parameter" in body["issue"][0]["diagnostics"]:
                        self.assertNotIn(code, listed, (t, code))  # e.g. _text of a non-DomainResource
                        continue
                    self.assertIn(r.status, (200, 400, 501), (t, code, body))
                    if r.status == 501:
                        self.assertNotIn(code, listed, (t, code, "listed but refused as not supported"))
                        self.assertIn(code, body["issue"][0]["diagnostics"])
                    else:
                        self.assertIn(code, listed, (t, code, "answered but not listed"))
                        self.assertEqual(listed[code], typ, (t, code))
                    checked += 1
                # nothing listed that the definitions do not have
                self.assertEqual(sorted(set(listed) - set(cands)), [], t)
                listed_total += len(listed)
        finally:
            conn.close()
        self.assertGreater(checked, 1000)
        self.assertGreater(listed_total, 1000)
        loc = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Location")
        self.assertIn({"name": "near", "type": "special"},
                      [{"name": p["name"], "type": p["type"]} for p in loc["searchParam"]])


class FhirSearch3PagingTests(SearchCase):
    """Patient/$everything pages (_count, keyset next link, start/end); searches inside batch Bundles page."""

    def load_patient(self):
        self.start()
        self.put({"resourceType": "Organization", "id": "org1", "name": "Clinic"})
        self.put({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Who"}]})
        self.put({"resourceType": "Patient", "id": "ep", "managingOrganization": {"reference": "Organization/org1"}})
        self.put({"resourceType": "Patient", "id": "other"})
        dates = {}
        for i in range(25):
            when = "%04d-%02d-15" % (2015 + i % 10, 1 + i % 12)
            self.put({"resourceType": "Observation", "id": "eo%d" % i, "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/ep"}, "effectiveDateTime": when,
                      "performer": [{"reference": "Practitioner/dr1"}]})
            dates["eo%d" % i] = when
        self.put({"resourceType": "Observation", "id": "eo-other", "status": "final", "code": {"text": "x"},
                  "subject": {"reference": "Patient/other"}})
        # a member without a care date (the Patient's own birthDate is left out of the compartment test)
        self.put({"resourceType": "Flag", "id": "ef", "status": "active", "code": {"text": "f"},
                  "subject": {"reference": "Patient/ep"}})
        return dates

    def pages(self, path, between=None):
        """(matches in order, includes per page, totals, number of pages)."""
        match, incs, totals, n = [], [], [], 0
        while path:
            st, _, b = self.jreq("GET", path)
            self.assertEqual(st, 200, (path, b))
            totals.append(b.get("total"))
            match += ["%s/%s" % (e["resource"]["resourceType"], e["resource"]["id"])
                      for e in b.get("entry", []) if e["search"]["mode"] == "match"]
            incs.append(sorted("%s/%s" % (e["resource"]["resourceType"], e["resource"]["id"])
                               for e in b.get("entry", []) if e["search"]["mode"] == "include"))
            nxt = [l["url"] for l in b["link"] if l["relation"] == "next"]
            path = nxt[0][nxt[0].index("/fhir/"):] if nxt else None
            n += 1
            if between and n == 1:
                between()
            self.assertLess(n, 50)
        return match, incs, totals, n

    def test_everything_pages_with_a_keyset_cursor(self):
        dates = self.load_patient()
        members = ["Patient/ep"] + ["Observation/eo%d" % i for i in range(25)] + ["Flag/ef"]
        match, incs, totals, n = self.pages("/fhir/Patient/ep/$everything?_count=7")
        self.assertEqual(match, members)  # row order, no duplicates, no gaps
        self.assertEqual(n, 4)
        self.assertEqual(set(totals), {27})
        self.assertEqual(incs[0], ["Organization/org1", "Practitioner/dr1"])
        for page in incs:
            self.assertFalse(set(page) & set(members), "a member is never an include")
        # one page with everything, as before
        match1, _, _, n1 = self.pages("/fhir/Patient/ep/$everything")
        self.assertEqual((sorted(match1), n1), (sorted(members), 1))
        # a member written between pages is not lost (it comes last), none repeats
        added = lambda: self.put({"resourceType": "Observation", "id": "eo-new", "status": "final",
                                  "code": {"text": "x"}, "subject": {"reference": "Patient/ep"}})
        match, _, _, _ = self.pages("/fhir/Patient/ep/$everything?_count=10", between=added)
        self.assertEqual(match, members + ["Observation/eo-new"])
        # start/end: members with a care date in the range, those without one, the Patient
        for start, end in (("2018", "2019"), ("2016-03", None), (None, "2015-06-30")):
            q = "&".join(k + "=" + v for k, v in (("start", start), ("end", end)) if v)
            lo = date_range(start)[0] if start else -(1 << 62)
            hi = date_range(end)[1] if end else 1 << 62
            want = ["Patient/ep"] + ["Observation/" + k for k, d in sorted(dates.items(), key=lambda kv: int(kv[0][2:]))
                                     if date_range(d)[1] >= lo and date_range(d)[0] <= hi]
            want += ["Observation/eo-new", "Flag/ef"]
            match, _, totals, _ = self.pages("/fhir/Patient/ep/$everything?_count=4&" + q)
            self.assertEqual(sorted(match), sorted(want), q)
            self.assertEqual(len(match), len(set(match)))
            self.assertEqual(totals[0], len(want))
        # _type with paging, and errors
        match, _, totals, _ = self.pages("/fhir/Patient/ep/$everything?_type=Flag,Patient&_count=1")
        self.assertEqual(match, ["Patient/ep", "Flag/ef"])
        for bad in ("start=notadate", "end=2020-13", "_cursor=x", "_count=-1"):
            st, _, oo = self.jreq("GET", "/fhir/Patient/ep/$everything?" + bad)
            self.assertEqual(st, 400, (bad, oo))

    def test_everything_count_zero_gives_the_total_and_no_next_link(self):
        """`$everything?_count=0` asks only for the total: it has no entries and no `next`
        link. A next link there carried the cursor of no member (0), so a client following
        next links fetched the same empty page forever."""
        self.load_patient()
        st, _, b = self.jreq("GET", "/fhir/Patient/ep/$everything?_count=0")
        self.assertEqual((st, b.get("total"), b.get("entry")), (200, 27, []), b)
        self.assertEqual([l["relation"] for l in b["link"]], ["self"], b["link"])

    def test_search_in_batch_has_next_link(self):
        self.load_patient()
        want = sorted(self.q("Observation?subject=Patient/ep&_count=1000"))
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Observation?subject=Patient/ep&_count=10&_sort=-date"}},
            {"request": {"method": "GET", "url": "Observation?subject=Patient/ep&_count=100"}}]}
        for kind in ("batch", "transaction"):
            batch["type"] = kind
            st, _, out = self.jreq("POST", "/fhir", batch)
            self.assertEqual(st, 200, out)
            inner = out["entry"][0]["resource"]
            self.assertEqual(len(inner["entry"]), 10)
            nxt = [l["url"] for l in inner["link"] if l["relation"] == "next"]
            self.assertEqual(len(nxt), 1, inner["link"])
            first = [e["resource"]["id"] for e in inner["entry"]]
            rest, _, _, _ = self.pages(nxt[0][nxt[0].index("/fhir/"):])
            got = first + [k.split("/", 1)[1] for k in rest]
            self.assertEqual(sorted(got), want)
            self.assertEqual(len(got), len(set(got)))
            # the order is the plain search's order (-date), across the pages
            plain, _, _, _ = self.pages("/fhir/Observation?subject=Patient/ep&_count=10&_sort=-date")
            self.assertEqual(got, [k.split("/", 1)[1] for k in plain])
            last = out["entry"][1]["resource"]
            self.assertEqual(len(last["entry"]), len(want))
            self.assertEqual([l["relation"] for l in last["link"]], ["self"])


class FhirSearch3SystemSortTests(SearchCase):
    """System-level _sort on a parameter every _type has; _contained."""

    def test_system_sort_and_contained(self):
        self.start()
        rnd = random.Random(9)
        people = {}
        for i in range(14):
            t = "Patient" if i % 2 else "Person"
            r = {"resourceType": t, "id": "s%d" % i, "name": [{"family": rnd.choice(["Ames", "Bock", "Cruz", "Diaz"])}]}
            if i % 5:
                r["birthDate"] = "19%02d-%02d-01" % (rnd.randint(40, 99), rnd.randint(1, 12))
            self.put(r)
            people["%s/s%d" % (t, i)] = r
        self.put({"resourceType": "Organization", "id": "s-org", "name": "Zed"})

        def key_birth(k, desc):
            b = people[k].get("birthDate")
            return (b is None, "" if b is None else b, int(k.split("/s")[1]))

        for sort, desc in (("birthdate", False), ("-birthdate", True)):
            keys = sorted(people, key=lambda k: int(k.split("/s")[1]))
            with_b = sorted((k for k in keys if "birthDate" in people[k]),
                            key=lambda k: people[k]["birthDate"], reverse=desc)
            # ties in birthDate fall back to row order; none are generated with this seed's spread
            want = with_b + [k for k in keys if "birthDate" not in people[k]]
            for count in (3, 5, 100):
                got, _ = self.search("?_type=Patient,Person&_sort=%s&_count=%d" % (sort, count))
                self.assertEqual(got, want, (sort, count))
        got, _ = self.search("?_type=Patient,Person&_sort=name,_id&_count=4")
        want = sorted(people, key=lambda k: (people[k]["name"][0]["family"].lower(), k.split("/")[1]))
        self.assertEqual(got, want)
        got, _ = self.search("?_type=Patient,Person,Organization&_sort=-_lastUpdated&_count=4")
        self.assertEqual(len(got), 15)
        self.bad("?_type=Patient,Organization&_sort=birthdate", "birthdate")
        self.bad("?_type=Patient,Practitioner&_sort=birthdate", "birthdate")
        self.bad("?_type=Patient,Observation&_sort=family", "family")
        # _contained: false is what every search does; true/both are not supported (501)
        self.assertEqual(self.q("Patient?_contained=false&_id=s1"), ["s1"])
        for q in ("Patient?_contained=true", "Patient?_contained=both", "Patient?_containedType=contained"):
            st, _, oo = self.jreq("GET", "/fhir/" + q)
            self.assertEqual(st, 501, (q, oo))
            self.assertIn("_contained", oo["issue"][0]["diagnostics"])
        self.bad("Patient?_contained=maybe", "_contained")


class FhirSearch3CanonicalTests(SearchCase):
    """_include through canonical references (url|version)."""

    def test_include_canonical(self):
        self.start()
        url = "http://example.org/fhir/Questionnaire/phq"
        for qid, ver in (("q2", "2"), ("q3", "3")):
            self.put({"resourceType": "Questionnaire", "id": qid, "url": url, "version": ver, "status": "active"})
        self.put({"resourceType": "Questionnaire", "id": "qo", "url": "http://example.org/other", "status": "active"})
        for rid, canon in (("r1", url + "|2"), ("r2", url), ("r3", "http://example.org/other"),
                           ("r4", "http://example.org/unknown")):
            self.put({"resourceType": "QuestionnaireResponse", "id": rid, "status": "completed",
                      "questionnaire": canon})
        cases = {"r1": ["Questionnaire/q2"], "r2": ["Questionnaire/q2", "Questionnaire/q3"],
                 "r3": ["Questionnaire/qo"], "r4": []}
        for rid, want in cases.items():
            for inc in ("QuestionnaireResponse:questionnaire", "QuestionnaireResponse:*",
                        "QuestionnaireResponse:questionnaire:Questionnaire"):
                m, got = self.search("QuestionnaireResponse?_id=%s&_include=%s" % (rid, inc))
                self.assertEqual((m, sorted(got)), (["QuestionnaireResponse/" + rid], want), (rid, inc))
        m, got = self.search("QuestionnaireResponse?_include=QuestionnaireResponse:questionnaire&_count=2")
        self.assertEqual(len(got), len(set(got)))  # never twice on one page
        # a retired version is gone from the include once deleted
        st, _, _ = self.jreq("DELETE", "/fhir/Questionnaire/q3")
        m, got = self.search("QuestionnaireResponse?_id=r2&_include=QuestionnaireResponse:questionnaire")
        self.assertEqual(got, ["Questionnaire/q2"])


class FhirSearch3ListTests(SearchCase):
    """_list: the items of a List (search.html#list)."""

    def test_list(self):
        self.start()
        for i in range(4):
            self.put({"resourceType": "Patient", "id": "lp%d" % i})
        self.put({"resourceType": "Observation", "id": "lo1", "status": "final", "code": {"text": "x"}})
        self.put({"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
                  "entry": [{"item": {"reference": "Patient/lp0"}}, {"item": {"reference": "Patient/lp2"}},
                            {"item": {"reference": "Observation/lo1"}}]})
        self.put({"resourceType": "List", "id": "l2", "status": "current", "mode": "working",
                  "entry": [{"item": {"reference": "Patient/lp3"}}]})
        self.assertEqual(self.q("Patient?_list=l1"), ["lp0", "lp2"])
        self.assertEqual(self.q("Observation?_list=l1"), ["lo1"])
        self.assertEqual(self.q("Patient?_list=l1,l2"), ["lp0", "lp2", "lp3"])
        self.assertEqual(self.q("Patient?_list=l1&_list=l2"), [])
        self.assertEqual(self.q("Patient?_list=nosuch"), [])
        self.put({"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
                  "entry": [{"item": {"reference": "Patient/lp1"}}]})
        self.assertEqual(self.q("Patient?_list=l1"), ["lp1"])
        self.bad("Patient?_list=a%20b", "_list")


class FhirSearch3NearTests(SearchCase):
    """Location near, compared with the haversine distance in Python."""

    def test_near_matches_haversine(self):
        self.start()
        rnd = random.Random(11)
        locs = {}
        center = (42.2565, -83.6948)
        for i in range(40):
            lat = center[0] + rnd.uniform(-1.5, 1.5)
            lon = center[1] + rnd.uniform(-2, 2)
            locs["l%d" % i] = (round(lat, 5), round(lon, 5))
        # near the antimeridian and a pole: the bounding box gives way to the exact test
        locs.update({"w1": (10.0, 179.95), "w2": (10.0, -179.95), "n1": (89.95, 0.0), "n2": (89.95, 180.0)})
        for lid, (lat, lon) in locs.items():
            self.put({"resourceType": "Location", "id": lid, "name": lid,
                      "position": {"latitude": lat, "longitude": lon}})
        self.put({"resourceType": "Location", "id": "nopos", "name": "no position"})
        cases = [(center, 10, "km"), (center, 50, "km"), (center, 120, "km"), (center, 30000, "m"),
                 (center, 40, "[mi_i]"), ((10.0, 179.99), 20, "km"), ((89.99, 90.0), 30, "km"),
                 ((42.5, -83.5), 0.5, "km"), ((0.0, 0.0), 20000, "km")]
        for (lat, lon), d, unit in cases:
            metres = d * {"km": 1000.0, "m": 1.0, "[mi_i]": 1609.344}[unit]
            want = sorted(k for k, (a, b) in locs.items() if haversine_m(lat, lon, a, b) <= metres)
            got = self.q("Location?near=%s|%s|%s|%s&_count=1000" % (lat, lon, d, unit.replace("[", "%5B").replace("]", "%5D")))
            self.assertEqual(got, want, (lat, lon, d, unit))
        # km when no unit; OR of two values; AND with another parameter
        want = sorted(k for k, (a, b) in locs.items() if haversine_m(center[0], center[1], a, b) <= 50000)
        self.assertEqual(self.q("Location?near=%s|%s|50&_count=1000" % center), want)
        self.assertEqual(self.q("Location?near=10|179.99|20,89.99|90|30&_count=1000"), ["n1", "n2", "w1", "w2"])
        self.assertEqual(self.q("Location?near=10|179.99|20&name=w1"), ["w1"])
        # moved: the row follows the version
        self.put({"resourceType": "Location", "id": "w1", "position": {"latitude": -10.0, "longitude": 0.0}})
        self.assertEqual(self.q("Location?near=10|179.99|20"), ["w2"])
        for bad in ("42", "x|1", "91|0|1", "1|0|-1", "1|0|1|lightyear", "1|2|3|km|5"):
            self.bad("Location?near=" + bad.replace("|", "%7C"), "near")
        self.bad("Location?near:below=1|2", "near")


class FhirSearch3DateTests(SearchCase):
    """Several criteria on one date parameter, as one range: compared with Python."""

    def test_date_ranges_match_python(self):
        self.start()
        rnd = random.Random(5)
        vals = {}
        for i in range(70):
            y, m, d = rnd.randint(2018, 2022), rnd.randint(1, 12), rnd.randint(1, 28)
            kind = i % 7
            o = {"resourceType": "Observation", "id": "d%d" % i, "status": "final", "code": {"text": "t"}}
            if kind == 0:
                s = "%04d" % y
            elif kind == 1:
                s = "%04d-%02d" % (y, m)
            elif kind == 2:
                s = "%04d-%02d-%02d" % (y, m, d)
            elif kind in (3, 4):
                s = "%04d-%02d-%02dT%02d:%02d:00Z" % (y, m, d, rnd.randint(0, 23), rnd.randint(0, 59))
            if kind <= 4:
                o["effectiveDateTime"] = s
                vals[o["id"]] = date_range(s)
            else:
                # Periods, some open-ended: long ranges come through the second branch
                a = "%04d-%02d-%02d" % (y, m, d)
                b = "%04d-%02d-%02d" % (y + rnd.randint(0, 2), rnd.randint(1, 12), 28)
                if b < a:
                    a, b = b, a
                per = {"start": a} if kind == 6 and i % 2 else {"start": a, "end": b}
                o["effectivePeriod"] = per
                vals[o["id"]] = (date_range(a)[0], date_range(b)[1] if "end" in per else OPEN_HI)
            self.put(o)
        dates = ["2019", "2020-03", "2020-03-15", "2021-07-01T10:00:00Z", "2018-12", "2022"]
        prefixes = ["ge", "gt", "le", "lt", "eq", "sa", "eb", "ne"]
        checked = 0
        for i in range(40):
            crit = [(rnd.choice(prefixes), rnd.choice(dates)) for _ in range(rnd.choice((1, 2, 2, 3)))]
            query = "&".join("date=%s%s" % c for c in crit)
            want = sorted(k for k, (lo, hi) in vals.items() if all(prefix_holds(p, lo, hi, d) for p, d in crit))
            self.assertEqual(self.q("Observation?%s&_count=1000" % query), want, query)
            checked += bool(want)
        self.assertGreater(checked, 10)
        # the classic range, and a value with OR next to a merged pair
        want = sorted(k for k, (lo, hi) in vals.items()
                      if prefix_holds("ge", lo, hi, "2020-01-01") and prefix_holds("lt", lo, hi, "2021-01-01"))
        self.assertEqual(self.q("Observation?date=ge2020-01-01&date=lt2021-01-01&_count=1000"), want)
        want2 = sorted(k for k in want if prefix_holds("eq", *vals[k], "2020-03") or prefix_holds("eq", *vals[k], "2020-04"))
        self.assertEqual(self.q("Observation?date=ge2020-01-01&date=eq2020-03,eq2020-04&date=lt2021-01-01&_count=1000"),
                         want2)
        self.bad("Observation?date=ge2020-01-01&date=lt2021-13", "date")


class FhirSearch3ReindexTests(SearchCase):
    """`holovitals reindex` fills the full-text and position rows of resources written before them."""

    def test_reindex_fills_text_and_geo(self):
        eng = self.start()
        self.put({"resourceType": "Patient", "id": "r1", "name": [{"family": "Quimby"}]})
        self.put({"resourceType": "Location", "id": "g1", "position": {"latitude": 1.0, "longitude": 2.0}})
        self.assertEqual(self.q("Patient?_content=quimby"), ["r1"])
        self.assertEqual(self.q("Location?near=1|2|1"), ["g1"])
        if self.DB:
            subprocess.run(["psql", "-q", "-X", self.DB, "-c", "DELETE FROM fhir.sp_text; DELETE FROM fhir.sp_geo"],
                           check=True, capture_output=True, timeout=30)
        else:
            con = sqlite3.connect(os.path.join(eng.data, "fhir.db"), timeout=10)
            with con:
                con.execute("DELETE FROM sp_text")
                con.execute("DELETE FROM sp_geo")
            con.close()
        self.assertEqual(self.q("Patient?_content=quimby"), [])
        self.assertEqual(self.q("Location?near=1|2|1"), [])
        eng.stop()
        code, out, err = run_cli(*(["reindex", "--data", eng.data] + (["--db", self.DB] if self.DB else [])))
        self.assertEqual(code, 0, err)
        eng.start()
        self.assertEqual(self.q("Patient?_content=quimby"), ["r1"])
        self.assertEqual(self.q("Location?near=1|2|1"), ["g1"])
        # reindexing again does not duplicate rows
        st, _, b = self.jreq("POST", "/fhir/$reindex")
        self.assertEqual(st, 200, b)
        m, _ = self.search("Patient?_content=quimby")
        self.assertEqual(m, ["Patient/r1"])
        # A row indexed under the rule before session 22 (every string value: here the word
        # of a code) keeps its words through a restart, until a reindex rewrites it.
        if self.DB:
            subprocess.run(["psql", "-q", "-X", self.DB, "-c", "UPDATE fhir.sp_text SET content = content ||"
                            " to_tsvector('simple', 'oldrule') WHERE id = 'r1'"], check=True, capture_output=True,
                           timeout=30)
        else:
            con = sqlite3.connect(os.path.join(eng.data, "fhir.db"), timeout=10)
            with con:
                con.execute("UPDATE sp_text SET content = content || ' oldrule' WHERE id = 'r1'")
            con.close()
        self.assertEqual(self.q("Patient?_content=oldrule"), ["r1"])
        eng.stop()
        eng.start()
        self.assertEqual(self.q("Patient?_content=oldrule"), ["r1"])
        st, _, b = self.jreq("POST", "/fhir/$reindex")
        self.assertEqual(st, 200, b)
        self.assertEqual(self.q("Patient?_content=oldrule"), [])
        self.assertEqual(self.q("Patient?_content=quimby"), ["r1"])


if store_tests.PG_URL:
    class FhirSearch3TextTestsPg(FhirSearch3TextTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search3t")

    class FhirSearch3PagingTestsPg(FhirSearch3PagingTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search3p")

    class FhirSearch3SystemSortTestsPg(FhirSearch3SystemSortTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search3s")

    class FhirSearch3CanonicalTestsPg(FhirSearch3CanonicalTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search3c")

    class FhirSearch3ListTestsPg(FhirSearch3ListTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search3l")

    class FhirSearch3NearTestsPg(FhirSearch3NearTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search3n")

    class FhirSearch3DateTestsPg(FhirSearch3DateTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search3d")

    class FhirSearch3ReindexTestsPg(FhirSearch3ReindexTests):
        @classmethod
        def setUpClass(cls):
            cls.DB = store_tests.private_db(store_tests.PG_URL, "hv_test_fhir_search3r")


if __name__ == "__main__":
    main()
