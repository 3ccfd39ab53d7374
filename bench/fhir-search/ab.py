#!/usr/bin/env python3
"""bench/fhir-search/ab.py — same-run A/B of two servers on the same store (copies).

    ab.py BEFORE_PORT BEFORE_PID AFTER_PORT AFTER_PID [REPEAT [SET]]

SET "has" runs the reverse-chaining (_has) queries instead of the default mix.

For each query: REPEAT requests alternated before, after, before, … on one keep-alive
connection each (p50 and p99 of each side, and the p50 ratio), then REPEAT requests in a
block per side while the serving process's CPU time (utime + stime from /proc/PID/stat,
clock ticks) is read before and after: the server's CPU per request, which a loaded
machine stretches far less than the wall time.
"""
import http.client
import os
import sys
import time

BP, BPID, AP, APID = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
R = int(sys.argv[5]) if len(sys.argv) > 5 else 30
TICK = os.sysconf("SC_CLK_TCK")
QUERIES = [
    ("Patient by name", "Patient?name=smith&_count=50"),
    ("Patient by name, _total=none", "Patient?name=smith&_count=50&_total=none"),
    ("Patient by family:exact", "Patient?family:exact=smith&_count=50"),
    ("code + date range", "Observation?code=8867-4&date=ge2020-01-01&date=lt2020-03-01&_count=50"),
    ("code + value-quantity", "Observation?code=2339-0&value-quantity=gt240&_count=50"),
    ("_summary=count one code", "Observation?code=8867-4&_summary=count"),
    ("Observation by code", "Observation?code=http://loinc.org|8867-4&_count=50"),
    ("_include subject", "Observation?code=2093-3&_include=Observation:subject&_count=50"),
    ("status=final", "Observation?status=final&_count=50"),
    ("Patient by identifier", "Patient?identifier=urn:bench:mrn|MRN0000042"),
]
QUERIES_HAS = [
    ("_has + name", "Patient?_has:Observation:patient:code=4548-4&name=zyx&_count=50"),
    ("_has + name, accurate", "Patient?_has:Observation:patient:code=4548-4&name=zyx&_count=50&_total=accurate"),
    ("_has + name, count", "Patient?_has:Observation:patient:code=4548-4&name=zyx&_summary=count"),
    ("_has alone", "Patient?_has:Observation:patient:code=4548-4&_count=50"),
    ("_has alone, accurate", "Patient?_has:Observation:patient:code=4548-4&_count=50&_total=accurate"),
    ("_has alone, count", "Patient?_has:Observation:patient:code=4548-4&_summary=count"),
    ("nested _has", "Practitioner?_has:Patient:general-practitioner:_has:Observation:patient:code=4548-4&_count=50"),
    ("Patient by name", "Patient?name=smith&_count=50"),
]
if len(sys.argv) > 6 and sys.argv[6] == "has":
    QUERIES = QUERIES_HAS
conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=60) for p in (BP, AP)}


def get(port, path):
    t = time.perf_counter()
    conns[port].request("GET", "/fhir/" + path)
    r = conns[port].getresponse()
    r.read()
    if r.status != 200:
        raise SystemExit("%s: %d" % (path, r.status))
    return (time.perf_counter() - t) * 1000


def cpu_ms(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000.0 / TICK


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1))))]


print("load", open("/proc/loadavg").read().split()[:3])
for name, path in QUERIES:
    t = {BP: [], AP: []}
    for p in t:
        get(p, path)
    for _ in range(R):
        for p in (BP, AP):
            t[p].append(get(p, path))
    c = {}
    for p, pid in ((BP, BPID), (AP, APID)):
        c0 = cpu_ms(pid)
        for _ in range(R):
            get(p, path)
        c[p] = (cpu_ms(pid) - c0) / R
    print("%-24s before p50 %8.2f p99 %8.2f cpu %7.2f | after p50 %7.2f p99 %7.2f cpu %6.2f | p50 %.1fx cpu %.1fx" % (
        name, pct(t[BP], 50), pct(t[BP], 99), c[BP], pct(t[AP], 50), pct(t[AP], 99), c[AP],
        pct(t[BP], 50) / pct(t[AP], 50), c[BP] / max(c[AP], 0.01)))
print("load", open("/proc/loadavg").read().split()[:3])
