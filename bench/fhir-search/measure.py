#!/usr/bin/env python3
"""bench/fhir-search/measure.py — latency of a fixed FHIR search mix, against a ceiling.

    measure.py BASE_URL FHIR_DB [REPEAT [CEILING_REPEAT [PAGES]]]

For each query: REPEAT GET requests on one keep-alive connection, p50 and p99 in ms, the
number of entries the first page holds; the ceiling is a plain SQL query over the same
index tables, run REPEAT times on FHIR_DB (the SQLite file) with Python's sqlite3 — the
cost of the index lookup and of reading the JSON rows, without planning, HTTP or Bundle
building (CEILING_REPEAT 0: none). Deep paging follows `next` links PAGES (default 20) pages
deep, 20 resources per page, and reports the p50 of page 1 and of the last page.
"""
import http.client
import json
import sqlite3
import sys
import time
import urllib.parse

BASE = sys.argv[1]
DB = sys.argv[2]
REPEAT = int(sys.argv[3]) if len(sys.argv) > 3 else 30
CEILING_REPEAT = int(sys.argv[4]) if len(sys.argv) > 4 else REPEAT  # the hand-written SQL's runs
PAGES = int(sys.argv[5]) if len(sys.argv) > 5 else 20  # how deep deep paging goes
u = urllib.parse.urlsplit(BASE)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

LATEST = ("r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id"
          " AND n.version > r.version)")
QUERIES = [
    ("Patient by name", "Patient?name=smith&_count=50",
     "SELECT r.json FROM resources r WHERE r.type='Patient' AND " + LATEST + " AND r.id IN (SELECT id FROM sp_str"
     " WHERE type='Patient' AND code='name' AND value LIKE 'smith%') ORDER BY r.rid LIMIT 51"),
    ("Patient by identifier", "Patient?identifier=urn:bench:mrn|MRN0000042",
     "SELECT r.json FROM resources r WHERE r.type='Patient' AND " + LATEST + " AND r.id IN (SELECT id FROM sp_tok"
     " WHERE type='Patient' AND code='identifier' AND system='urn:bench:mrn' AND value='MRN0000042') LIMIT 51"),
    ("Observation by code", "Observation?code=http://loinc.org|8867-4&_count=50",
     "SELECT r.json FROM resources r WHERE r.type='Observation' AND " + LATEST + " AND r.id IN (SELECT id FROM"
     " sp_tok WHERE type='Observation' AND code='code' AND system='http://loinc.org' AND value='8867-4')"
     " ORDER BY r.rid LIMIT 51"),
    ("code + date range", "Observation?code=8867-4&date=ge2020-01-01&date=lt2020-03-01&_count=50",
     "SELECT r.json FROM resources r WHERE r.type='Observation' AND " + LATEST + " AND r.id IN (SELECT id FROM"
     " sp_tok WHERE type='Observation' AND code='code' AND value='8867-4') AND r.id IN (SELECT id FROM sp_date"
     " WHERE type='Observation' AND code='date' AND lo >= 1577836800000 AND hi < 1583020800000)"
     " ORDER BY r.rid LIMIT 51"),
    ("patient + code + date", "Observation?subject=Patient/p7&code=8867-4&date=ge2015",
     "SELECT r.json FROM resources r WHERE r.type='Observation' AND " + LATEST + " AND r.id IN (SELECT id FROM"
     " sp_ref WHERE type='Observation' AND code='subject' AND rtype='Patient' AND rid='p7') AND r.id IN (SELECT"
     " id FROM sp_tok WHERE type='Observation' AND code='code' AND value='8867-4') AND r.id IN (SELECT id FROM"
     " sp_date WHERE type='Observation' AND code='date' AND hi >= 1420070400000) ORDER BY r.rid LIMIT 51"),
    ("code + value-quantity", "Observation?code=2339-0&value-quantity=gt240&_count=50",
     "SELECT r.json FROM resources r WHERE r.type='Observation' AND " + LATEST + " AND r.id IN (SELECT id FROM"
     " sp_tok WHERE type='Observation' AND code='code' AND value='2339-0') AND r.id IN (SELECT id FROM sp_num"
     " WHERE type='Observation' AND code='value-quantity' AND value > 240) ORDER BY r.rid LIMIT 51"),
    ("chained subject:Patient.name", "Observation?subject:Patient.name=zyx97&_count=50",
     "SELECT r.json FROM resources r WHERE r.type='Observation' AND " + LATEST + " AND r.id IN (SELECT id FROM"
     " sp_ref WHERE type='Observation' AND code='subject' AND rtype='Patient' AND rid IN (SELECT id FROM sp_str"
     " WHERE type='Patient' AND code='name' AND value LIKE 'zyx97%')) ORDER BY r.rid LIMIT 51"),
    ("_has", "Patient?_has:Observation:patient:code=4548-4&name=zyx&_count=50",
     "SELECT r.json FROM resources r WHERE r.type='Patient' AND " + LATEST + " AND r.id IN (SELECT rid FROM"
     " sp_ref WHERE type='Observation' AND code='patient' AND rtype='Patient' AND id IN (SELECT id FROM sp_tok"
     " WHERE type='Observation' AND code='code' AND value='4548-4')) AND r.id IN (SELECT id FROM sp_str WHERE"
     " type='Patient' AND code='name' AND value LIKE 'zyx%') ORDER BY r.rid LIMIT 51"),
    ("_has + name, _total=accurate", "Patient?_has:Observation:patient:code=4548-4&name=zyx&_count=50&_total=accurate",
     None),
    ("_has alone", "Patient?_has:Observation:patient:code=4548-4&_count=50", None),
    ("nested _has", "Practitioner?_has:Patient:general-practitioner:_has:Observation:patient:code=4548-4&_count=50",
     None),
    ("_has + name, _summary=count", "Patient?_has:Observation:patient:code=4548-4&name=zyx&_summary=count", None),
    ("_has alone, _summary=count", "Patient?_has:Observation:patient:code=4548-4&_summary=count", None),
    ("_include subject", "Observation?code=2093-3&_include=Observation:subject&_count=50", None),
    ("_revinclude", "Patient?name=zyx194&_revinclude=Observation:subject&_count=10", None),
    ("_summary=count one code", "Observation?code=8867-4&_summary=count",
     "SELECT COUNT(*) FROM resources r WHERE r.type='Observation' AND " + LATEST + " AND r.id IN (SELECT id FROM"
     " sp_tok WHERE type='Observation' AND code='code' AND value='8867-4')"),
]


def get(path):
    global conn
    t = time.perf_counter()
    try:
        conn.request("GET", "/fhir/" + path)
        r = conn.getresponse()
    except (http.client.RemoteDisconnected, ConnectionError):
        # the server closed the idle keep-alive connection (a long ceiling run): reconnect
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        t = time.perf_counter()
        conn.request("GET", "/fhir/" + path)
        r = conn.getresponse()
    body = r.read()
    dt = (time.perf_counter() - t) * 1000
    if r.status != 200:
        raise SystemExit("%s: %d %s" % (path, r.status, body[:300]))
    return dt, json.loads(body)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    db = sqlite3.connect("file:%s?mode=ro" % DB, uri=True)
    print("%-30s %8s %8s %8s %10s %10s" % ("query", "entries", "p50 ms", "p99 ms", "SQL p50", "× SQL"))
    for name, path, ceiling in QUERIES:
        get(path)  # warm
        times = []
        for _ in range(REPEAT):
            dt, b = get(path)
            times.append(dt)
        n = len(b.get("entry", [])) if "entry" in b else b.get("total")
        ct = []
        if ceiling:
            for _ in range(min(REPEAT, CEILING_REPEAT)):
                t = time.perf_counter()
                db.execute(ceiling).fetchall()
                ct.append((time.perf_counter() - t) * 1000)
        p50 = pct(times, 50)
        print("%-30s %8s %8.2f %8.2f %10s %10s" % (name, n, p50, pct(times, 99),
                                                  "%.2f" % pct(ct, 50) if ct else "-",
                                                  "%.1f" % (p50 / pct(ct, 50)) if ct and pct(ct, 50) > 0 else "-"))
    # deep paging: page 1 vs page PAGES of one code, 20 per page
    path = "Observation?code=8867-4&_count=20"
    pages, t1, tn = 0, [], []
    for rep in range(5 if PAGES <= 50 else 2):
        p, k = path, 0
        while p and k < PAGES:
            dt, b = get(p)
            k += 1
            if k == 1:
                t1.append(dt)
            if k == PAGES:
                tn.append(dt)
            nxt = [l["url"] for l in b["link"] if l["relation"] == "next"]
            p = None
            if nxt:
                s = urllib.parse.urlsplit(nxt[0])
                p = s.path.split("/fhir/", 1)[1] + "?" + s.query
        pages = k
    print("%-30s %8s %8.2f %8s   page %d: p50 %.2f ms (%d pages followed)" % (
        "deep paging, page 1", 20, pct(t1, 50), "", PAGES, pct(tn, 50) if tn else float("nan"), pages))

if __name__ == "__main__":
    main()
