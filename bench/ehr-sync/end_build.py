#!/usr/bin/env python3
"""bench/ehr-sync/end_build.py — the end build of a first Bulk sync (the search indexes it
deferred, fhir/import.c restore_indexes) alone, on a copy of a synced store, in a few seconds
instead of a whole sync; for trying the build's settings (docs/performance.md, "EHR sync,
session 20").

  end_build.py capture OUT [RESOURCES=100000]
      run beside bench/ehr-sync/run.py (HOLOVITALS_LOG_LEVEL=debug, HV_BENCH_MODES=bulk): waits
      for its engine's first Bulk sync to write RESOURCES resources (its `ehr.sync.page` lines)
      and then no chunk for 0.5 s, then copies the engine's fhir.db
      and fhir.db-wal to OUT once the build has begun. The copy is consistent: while the build
      runs nothing commits, so the database file is not written and the WAL only grows past its
      last commit (frames a reader of the copy ignores); the copy's import_deferred rows name
      the indexes still to build.
  end_build.py build STORE [--threads N] [--cache-kib K] [--per-index] [--synchronous MODE]
      copies STORE (a capture's fhir.db, opened once with sqlite3 so its WAL is replayed) to a
      scratch file and builds import_deferred's indexes there in WAL mode as the engine does
      (PRAGMA threads, cache_size; temp_store=FILE), in one transaction with the rows' deletion
      (default) or one per index (--per-index), with a second connection checkpointing PASSIVE
      after each commit as the engine's checkpoint thread does. Prints the build's wall time
      to its last commit, the COMMITs' share, the checkpoint left after it, the process's CPU
      (all threads: the sorter's helpers too), the bytes written (WAL, sorter runs, checkpoint)
      and the WAL's size.

Uses Python's sqlite3 module, the system's libsqlite3 — the library the engine links
(configure.ac): the same SQL costs the same. Standard library only.
"""

import glob
import json
import os
import resource
import shutil
import sqlite3
import sys
import threading
import time


def engine_data_dir():
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
        except OSError:
            continue
        if len(cmd) > 3 and cmd[1] == b"serve" and any(b"hv-bench-ehr" in c and b"/local-" in c for c in cmd):
            args = [c.decode() for c in cmd]
            return args[args.index("--data") + 1]
    return None


def capture(out, resources):
    data = None
    while data is None:
        data = engine_data_dir()
        time.sleep(0.05)
    logs = glob.glob(os.path.join(os.path.dirname(data), "stderr*"))
    pages, stored, quiet_since = 0, 0, None
    while True:
        if not logs:
            logs = glob.glob(os.path.join(os.path.dirname(data), "stderr*"))
        lines = open(logs[0]).read().splitlines() if logs else []
        if any('"ehr.sync.indexes_built"' in line for line in lines):
            sys.exit("end_build.py: the build ended before the copy")
        chunks = [json.loads(line) for line in lines if '"ehr.sync.page"' in line]
        if len(chunks) != pages:
            pages, quiet_since = len(chunks), time.monotonic()
            stored = sum(c.get("resources", 0) for c in chunks)
        elif stored >= resources and time.monotonic() - quiet_since > 0.5:
            break  # the last chunk is written: the build runs
        time.sleep(0.05)
    os.makedirs(out, exist_ok=True)
    for f in ("fhir.db", "fhir.db-wal"):
        shutil.copyfile(os.path.join(data, f), os.path.join(out, f))
    print("copied %s after %d chunks, %d resources" % (out, pages, stored))


def written():
    for line in open("/proc/self/io"):
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def build(store, threads, cache_kib, per_index, synchronous):
    db = os.path.join(os.path.dirname(os.path.abspath(store)), "end_build.scratch.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    shutil.copyfile(store, db)
    os.sync()
    w = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    for p in ("journal_mode=WAL", "synchronous=" + synchronous, "temp_store=FILE",
              "journal_size_limit=67108864", "threads=%d" % threads, "cache_size=-%d" % cache_kib,
              "wal_autocheckpoint=0"):
        w.execute("PRAGMA " + p).fetchall()
    ck = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    ck.execute("PRAGMA synchronous=" + synchronous)
    rows = w.execute("SELECT name, sql FROM import_deferred ORDER BY rowid").fetchall()
    if not rows:
        sys.exit("end_build.py: %s has no import_deferred rows" % store)
    cond = threading.Condition()
    state = {"asked": 0, "done": 0, "stop": False, "busy": 0.0}

    def checkpointer():
        while True:
            with cond:
                while not state["stop"] and state["done"] == state["asked"]:
                    cond.wait()
                if state["done"] == state["asked"]:
                    return
                want = state["asked"]
            t = time.monotonic()
            ck.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with cond:
                state["busy"] += time.monotonic() - t
                state["done"] = want
                cond.notify_all()

    def commit():
        t = time.monotonic()
        w.execute("COMMIT")
        with cond:
            state["asked"] += 1
            cond.notify_all()
        return time.monotonic() - t

    th = threading.Thread(target=checkpointer)
    th.start()
    r0, b0, t0 = resource.getrusage(resource.RUSAGE_SELF), written(), time.monotonic()
    commits = 0.0
    if per_index:
        for name, sql in rows:
            w.execute("BEGIN")
            w.execute(sql)
            w.execute("DELETE FROM import_deferred WHERE name = ?", (name,))
            commits += commit()
    else:
        w.execute("BEGIN")
        for name, sql in rows:
            w.execute(sql)
        w.execute("DELETE FROM import_deferred")
        commits += commit()
    t1 = time.monotonic()
    wal = os.path.getsize(db + "-wal")
    with cond:
        state["stop"] = True
        cond.notify_all()
    th.join()
    t2, r1, b1 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF), written()
    print("%d indexes, %s, threads=%d cache=%d KiB synchronous=%s: build %.2f s (COMMIT %.2f s), "
          "checkpoint after it %.2f s (busy %.2f s in all); CPU user %.2f + sys %.2f s; written %.0f MB, "
          "WAL %.0f MB; load %.2f"
          % (len(rows), "per index" if per_index else "one transaction", threads, cache_kib, synchronous,
             t1 - t0, commits, t2 - t1, state["busy"], r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime,
             (b1 - b0) / 1e6, wal / 1e6, os.getloadavg()[0]))
    w.close()
    ck.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)


def main(argv):
    if len(argv) in (3, 4) and argv[1] == "capture":
        capture(argv[2], int(argv[3]) if len(argv) == 4 else 100000)
        return
    if len(argv) >= 3 and argv[1] == "build":
        opts = {"--threads": "2", "--cache-kib": "2000", "--synchronous": "FULL"}
        per_index, rest = False, argv[3:]
        while rest:
            if rest[0] == "--per-index":
                per_index, rest = True, rest[1:]
            elif rest[0] in opts and len(rest) > 1:
                opts[rest[0]], rest = rest[1], rest[2:]
            else:
                sys.exit(__doc__)
        build(argv[2], int(opts["--threads"]), int(opts["--cache-kib"]), per_index, opts["--synchronous"])
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
