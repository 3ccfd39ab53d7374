#!/usr/bin/env python3
"""bench/fhir-search/cpu_ab.py — server CPU per request of two servers on copies of one store.

    cpu_ab.py OLD_PORT OLD_PID[+PG_PID] NEW_PORT NEW_PID[+PG_PID] N [tok|few]

For each query, three rounds alternated old, new: 3 warm requests, then `perf stat -e task-clock
-p PID` attached while N requests run on one keep-alive connection: the serving process's CPU
time (all threads, user + system, nanosecond resolution) per request. Prints the median and the
minimum of the three rounds per side and the ratio of the medians. With "tok", the queries are instead
the forms that read the token rows (sp_tok) other than through one value's page: two token
criteria, an OR of codes, a system alone, :not, a chain ending on an identifier, a _has checked
per referencing row in its sp_ref + sp_tok form, the mix's _has counts, and a token checked per
candidate of a reference. With "few", intersections where one criterion selects few index rows
beside broad ones (and two without a small side, for what the counting costs). A loaded machine stretches
wall times several-fold; CPU time far less (cpu.py and ab.py read /proc in 10 ms ticks instead).

On PostgreSQL the statements run in the database's backend processes, not in the server's: give
a side's PID as PID+PG_PID, PG_PID the postmaster of that side's own cluster (the first line of
its data directory's postmaster.pid), and the postmaster's children at each round (the server's
connections, the cluster's helpers) are measured too, by a second perf stat: the figure is then
the server's CPU plus the database's, and the database's part is printed after it.
"""
import http.client, subprocess, sys, time, signal, os, re
def side(name, port, pids):
    pid, _, pg = pids.partition("+")
    return (name, int(port), int(pid), int(pg) if pg else None)
sides = [side("old", sys.argv[1], sys.argv[2]), side("new", sys.argv[3], sys.argv[4])]
N = int(sys.argv[5])
SETS = {}
SETS["mix"] = [
    ("Observation by code", "Observation?code=http://loinc.org|8867-4&_count=50"),
    ("Observation by code, _total=none", "Observation?code=http://loinc.org|8867-4&_count=50&_total=none"),
    ("_summary=count one code", "Observation?code=8867-4&_summary=count"),
    ("_include subject", "Observation?code=2093-3&_include=Observation:subject&_count=50"),
    ("paging page 1 (code, 20)", "Observation?code=8867-4&_count=20"),
    ("code + date range", "Observation?code=8867-4&date=ge2020-01-01&date=lt2020-03-01&_count=50"),
    ("Patient by identifier", "Patient?identifier=urn:bench:mrn|MRN0000042"),
    ("status=final", "Observation?status=final&_count=50"),
]
SETS["tok"] = [
    ("code + status (two tokens)", "Observation?code=8867-4&status=final&_count=50"),
    ("two codes (OR), _summary=count", "Observation?code=8867-4,2093-3&_summary=count"),
    ("two codes (OR), page", "Observation?code=8867-4,2093-3&_count=50"),
    ("status:not=final", "Observation?status:not=final&_count=50"),
    ("gender + identifier", "Patient?gender=female&identifier=urn:bench:mrn|MRN0000042"),
    ("chain to an identifier", "Observation?subject:Patient.identifier=urn:bench:mrn|MRN0000042&_count=50"),
    ("_has status (sp_ref + sp_tok) + name", "Patient?_has:Observation:patient:status=final&name=zyx&_count=50"),
    ("_has + name, _summary=count", "Patient?_has:Observation:patient:code=4548-4&name=zyx&_summary=count"),
    ("_has alone, _summary=count", "Patient?_has:Observation:patient:code=4548-4&_summary=count"),
    ("Encounter class, _summary=count", "Encounter?class=AMB&_summary=count"),
    ("reference + status (per candidate)", "Observation?subject=Patient/p7&status=final&_count=50"),
    ("reference + code (per candidate)", "Observation?subject=Patient/p7&code=8867-4&_count=50"),
]
# Intersections where one criterion selects few index rows (fhir/search_run.c, index_ids:
# the smallest criterion under INTERSECT_DRIVE_MAX drives, the others checked per id).
SETS["few"] = [
    ("chain to a name + date", "Observation?subject:Patient.name=Zyx97&date=ge2018&_count=50"),
    ("chain to a name + date, _summary=count", "Observation?subject:Patient.name=Zyx97&date=ge2018&_summary=count"),
    ("chain to a name + code", "Observation?subject:Patient.name=Zyx97&code=8867-4&_count=50"),
    ("chain to an identifier + status", "Observation?subject:Patient.identifier=urn:bench:mrn|MRN0000042&status=final&_count=50"),
    ("gender + identifier", "Patient?gender=female&identifier=urn:bench:mrn|MRN0000042"),
    ("name + birthdate", "Patient?name=zyx97&birthdate=ge1950"),
    ("code + date range (no small side)", "Observation?code=8867-4&date=ge2020-01-01&date=lt2020-03-01&_count=50"),
    ("code + status (no small side)", "Observation?code=8867-4&status=final&_count=50"),
]
if len(sys.argv) > 6 and sys.argv[6] not in SETS:
    sys.exit("cpu_ab.py: no query set %r (%s)" % (sys.argv[6], ", ".join(SETS)))
QUERIES = SETS[sys.argv[6] if len(sys.argv) > 6 else "mix"]
def run(port, path, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(n):
        c.request("GET", "/fhir/" + path); r = c.getresponse(); r.read()
        assert r.status == 200, r.status
def perf(pids):
    return subprocess.Popen(["perf", "stat", "-x,", "-e", "task-clock", "-p", ",".join(map(str, pids))],
                            stderr=subprocess.PIPE, text=True)
def clock(p):
    p.send_signal(signal.SIGINT); err = p.communicate()[1]
    for l in err.splitlines():
        f = l.split(",")
        if len(f) > 2 and f[2].startswith("task-clock"): return float(f[0])
    raise RuntimeError("perf stat: no task-clock in: " + err)
def med(xs):
    return sorted(xs)[len(xs) // 2]
for name, path in QUERIES:
    out = []
    for rep in range(3):
        for side, port, pid, pg in sides:
            run(port, path, 3)
            # The backends now connected (a pool opened during the warm requests included).
            pgp = perf(subprocess.run(["pgrep", "-P", str(pg)], capture_output=True, text=True).stdout.split()) if pg else None
            p = perf([pid])
            time.sleep(0.3)
            run(port, path, N)
            clk = clock(p); db = clock(pgp) if pgp else 0.0
            out.append((side, (clk + db) / N, db / N))
    o = [x for x in out if x[0] == "old"]; n = [x for x in out if x[0] == "new"]
    oc = sorted(x[1] for x in o); nc = sorted(x[1] for x in n)
    line = "%-34s server CPU ms/request old med %6.2f (min %6.2f) | new med %6.2f (min %6.2f) | ratio %.2fx" % (
        name, oc[1], oc[0], nc[1], nc[0], oc[1] / nc[1])
    if sides[0][3] or sides[1][3]:
        line += " | PostgreSQL's part old %.2f new %.2f" % (med([x[2] for x in o]), med([x[2] for x in n]))
    print(line, flush=True)
